//! The token decoder Lambda function: HealthLake's SMART-on-FHIR identity provider. `config`
//! holds what a failed init does (its `errorType`, the Runtime API report), `wiring` builds the
//! decoder from the configuration with its HTTP(S) JWKS fetcher and the system clock, `handler`
//! holds the per-request handler; `main.rs` runs it. The validation is the `healthimport-auth`
//! crate.

pub mod config;
pub mod handler;
pub mod wiring;
