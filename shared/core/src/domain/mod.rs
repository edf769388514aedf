//! The domain: decisions with no AWS types and no I/O, each unit-tested on its own.

pub mod batch;
pub mod export;
pub mod finished;
pub mod ids;
pub mod job;
pub mod job_event;
pub mod manifest;
pub mod outcome;
pub mod retry;
pub mod routing;
pub mod s3_uri;
pub mod status;
