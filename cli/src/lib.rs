//! `healthimport`, the operator's CLI: what happened to an upload, the jobs and open batches, a
//! retry of a failed import, an on-demand export, and a live view, on the same ports and adapters
//! as the functions (`healthimport` for the domain and the intake path, `healthimport-aws` for the
//! jobs table and the workflow).
//!
//! - [`args`]: the command line (clap);
//! - [`config`]: the resources, from the environment or a stack's Outputs and Parameters
//!   ([`stack`]), failing fast with the variable's name;
//! - [`commands`]: one module per command, generic over the ports they use, so each is tested on
//!   the core's in-memory fakes;
//! - [`render`]: tables for people, JSON for scripts;
//! - [`exporter`]: the exporter function, invoked through Lambda;
//! - [`error`]: what went wrong, what to do, and the exit code.

pub mod app;
pub mod args;
pub mod commands;
pub mod config;
pub mod error;
pub mod exporter;
pub mod render;
pub mod stack;
