//! The ports: what the handlers need from the outside world, as small traits whose errors are in
//! the domain's words. `healthimport-aws` implements each one over an AWS service; `fakes`
//! implements each one in memory.

pub mod admission;
pub mod announce;
pub mod batches;
pub mod completion;
pub mod objects;
pub mod outputs;
pub mod queries;
pub mod service_jobs;
pub mod store;
pub mod workflow;
