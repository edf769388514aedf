//! The job-events Lambda function: the services' own job events (EventBridge rules on
//! `aws.healthlake` and `aws.medical-imaging`) and the backstop's per-job re-checks (the
//! completion-check queue) → each job's end recorded, forward only, and the workflow waiting for it
//! released. `event` types what it is invoked with, `config` reads its environment, `handler` holds
//! the behaviour, `wiring` its AWS adapters; `main.rs` runs it.

pub mod config;
pub mod event;
pub mod handler;
pub mod wiring;
