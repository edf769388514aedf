//! The token decoder Lambda function: HealthLake's SMART-on-FHIR identity provider. `main.rs`
//! wires it to the Lambda runtime; `handler` holds init and the per-request handler; the
//! validation is the `healthimport-auth` crate.

pub mod handler;
