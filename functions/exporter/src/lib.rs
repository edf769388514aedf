//! The exporter Lambda function: a schedule tick or an on-demand request → exactly one HealthLake
//! export job, recorded and tracked like an import. `event` types what it is invoked with,
//! `config` reads its environment, `handler`
//! holds the behaviour, `wiring` its AWS adapters; `main.rs` runs it.

pub mod config;
pub mod event;
pub mod handler;
pub mod wiring;
