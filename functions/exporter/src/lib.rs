//! The exporter Lambda function: a schedule tick or an on-demand request → exactly one HealthLake
//! export job, recorded and tracked like an import. `handler` holds the behaviour, `wiring` its
//! AWS adapters; `main.rs` runs it.

pub mod handler;
pub mod wiring;
