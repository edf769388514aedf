//! healthimport shared library: the job domain, S3 routing, the ports the Lambda handlers are
//! generic over, and the AWS SDK adapters that implement them.
//!
//! Pure modules (`job`, `routing`, `auth`'s claim checks) hold no AWS types; adapters live next to
//! the port they implement.

pub mod announce;
pub mod auth;
pub mod config;
pub mod export;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod fhir;
pub mod fhir_rest;
pub mod imaging;
pub mod imports;
pub mod job;
pub mod manifest;
pub mod objects;
pub mod routing;
pub mod start;
pub mod store;
pub mod store_outcome;
pub mod telemetry;
pub mod workflow;
