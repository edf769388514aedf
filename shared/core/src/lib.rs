//! healthimport's core: the job domain and the ports the Lambda handlers are generic over.
//!
//! Pure by construction: this crate depends on no AWS SDK, no HTTP client and no TLS stack, so the
//! compiler keeps AWS types out of domain decisions. The adapters live in `healthimport-aws`,
//! token validation in `healthimport-auth`.
//!
//! - [`domain`]: what a job is and how it may move, routing, exports, manifests, the Finished
//!   event. No I/O.
//! - [`ports`]: the traits the handlers use and their error enums, in the domain's words.
//! - [`intake`]: an upload's way into its batch; [`completion`]: a job's end from its service's
//!   event or the backstop's re-check; [`launch`]: the one record → start → track path; [`job_output`]: reading a finished job's
//!   output through its port.
//! - [`config`], [`telemetry`]: environment and tracing, shared by every function;
//!   [`metrics`]: the pipeline's metrics in CloudWatch Embedded Metric Format.
//! - `fakes` (feature `fakes`): in-memory ports that obey the adapters' rules, for handler tests.

pub mod completion;
pub mod config;
pub mod domain;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod intake;
pub mod job_output;
pub mod launch;
pub mod metrics;
pub mod ports;
pub mod telemetry;
