//! The poller Lambda function: the one task of the tracking workflow (one Step Functions execution
//! per job). Each invocation does one step (`start`, `poll`, `finish`, `recordFailure`) and
//! returns what the workflow's Choice and Wait states need. `main.rs` wires it to AWS; `handler`
//! holds the behaviour; `schedule` is the polling backoff.

pub mod handler;
pub mod schedule;

#[cfg(test)]
mod workflow_definition;
