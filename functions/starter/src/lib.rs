//! The starter Lambda function: S3 `ObjectCreated` → exactly one import job, recorded and
//! tracked. `event` types what it is invoked with, `config` reads its environment, `handler` holds
//! the behaviour, `wiring` its AWS adapters; `main.rs` runs it.

pub mod config;
pub mod event;
pub mod handler;
pub mod wiring;
