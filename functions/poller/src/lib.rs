//! The poller Lambda function: the one task of the tracking workflow (one Step Functions execution
//! per job). Each invocation does one step (`start`, `poll`, `finish`, `recordFailure`) and
//! returns what the workflow's Choice and Wait states need.
//!
//! `config` reads its environment, `steps` holds the steps' shapes, `error` the errorTypes,
//! `handler` the behaviour, `schedule` the polling backoff and `wiring` its AWS adapters;
//! `main.rs` runs it.

pub mod config;
pub mod error;
pub mod handler;
pub mod schedule;
pub mod steps;
pub mod wiring;

#[cfg(test)]
mod workflow_definition;
