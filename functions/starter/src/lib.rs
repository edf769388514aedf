//! The starter Lambda function: S3 `ObjectCreated` → exactly one import job, recorded and
//! tracked. `handler` holds the behaviour, `wiring` its AWS adapters; `main.rs` runs it.

pub mod config;
pub mod handler;
pub mod wiring;
