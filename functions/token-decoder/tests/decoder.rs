//! Integration tests of the token decoder, in one test binary (one link instead of several).
//!
//! The module is named `auth` so that `cargo test -p token-decoder -p healthimport auth` selects
//! these tests together with the shared crate's `auth` unit tests.

mod auth {
    mod http_jwks;
    mod init_and_logs;
}
