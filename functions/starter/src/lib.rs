//! The starter Lambda function: S3 `ObjectCreated` → exactly one import job, recorded and
//! tracked. `main.rs` wires it to AWS; `handler` holds the behaviour.

pub mod handler;
