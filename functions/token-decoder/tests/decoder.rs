//! Integration tests of the token decoder, in one test binary (one link instead of several).
//!
//! The module is named `auth`, so `cargo test -p token-decoder auth` selects these tests. The
//! validation's own tests belong to the `healthimport-auth` crate;
//! `cargo test -p healthimport-auth -p token-decoder` runs both.

mod auth {
    mod binary_logs;
    mod http_jwks;
    mod init_and_logs;
}
