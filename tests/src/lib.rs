//! The local AWS stack healthimport's tests run against: a HealthLake + HealthImaging service
//! double that speaks both services' wire protocols, and helpers for moto's server.

pub mod bench_batches;
pub mod bench_completion;
pub mod bench_env;
pub mod cfn;
pub mod datastores;
pub mod demo;
pub mod double;
pub mod double_admin;
pub mod ingest;
pub mod local_stack;
pub mod pipeline;
pub mod provision;
pub mod request_count;
pub mod samples;
