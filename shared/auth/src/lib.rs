//! SMART-on-FHIR token validation for HealthLake's identity-provider Lambda (the token decoder).
//!
//! HealthLake calls the decoder for every FHIR request with the caller's bearer token; the decoder
//! answers with the authorization HealthLake enforces. Tokens are verified locally against the
//! identity provider's JWK Set, cached in memory, so a warm decision makes no network call.
//!
//! Layout, pure first:
//! - [`reason`]: the deny reasons and their log codes;
//! - [`alg`]: the algorithm allow-list (asymmetric only);
//! - [`token`]: the compact JWS envelope and the signature check;
//! - [`claims`], [`scope`]: claim checks and SMART scopes;
//! - [`keys`]: JWK Set parsing;
//! - [`event`]: HealthLake's event and response;
//! - [`config`]: the environment variables;
//! - [`cache`], [`fetch`], [`clock`]: the JWK Set cache, its HTTP fetcher, injectable time;
//! - [`decide`]: the whole decision.
//!
//! The crate depends on the core crate (`healthimport`) only for its environment reader
//! (`healthimport::config`), and compiles no AWS SDK: the token decoder links the JOSE and HTTP
//! crates it needs and nothing else. Test support (runtime-generated keys, token minting, a
//! scripted fetcher, a manual clock) is the separate `healthimport-auth-testing` crate, a
//! dev-dependency only; the tests that use it are this crate's integration tests (`tests/`).
//! Run them with `cargo test -p healthimport-auth`.

pub mod alg;
pub mod cache;
pub mod claims;
pub mod clock;
pub mod config;
pub mod decide;
pub mod event;
pub mod fetch;
pub mod keys;
pub mod reason;
pub mod scope;
pub mod token;

pub use alg::AllowedAlgorithms;
pub use cache::{CachePolicy, JwksCache};
pub use claims::ClaimPolicy;
pub use clock::{Clock, SystemClock};
pub use config::{KeySource, TokenDecoderConfig};
pub use decide::{Decision, DecisionLog, TokenDecoder};
pub use event::{AuthPayload, AuthResponse};
pub use fetch::{HttpJwksFetcher, JwksFetcher, JwksUrl, NoFetch};
pub use reason::DenyReason;
