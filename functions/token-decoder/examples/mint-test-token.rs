//! Writes a test JWK Set and a HealthLake event carrying a valid token signed by it, for local
//! runs and the bench script (`scripts/bench-token-decoder.sh`). TEST KEYS ONLY: the private keys
//! are generated in memory and discarded on exit.
//!
//! `cargo run -p token-decoder --example mint-test-token -- <out-dir> <issuer> [RS256|PS256|ES256]`
//! writes `<out-dir>/jwks.json` and `<out-dir>/event.json` (valid for 24 hours).

use std::path::PathBuf;
use std::process::ExitCode;

use healthimport_auth::{Clock, SystemClock};
use healthimport_auth_testing::{jwks, TestKey};
use serde_json::json;

const ENDPOINT: &str =
    "https://healthlake.us-east-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4/";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, issuer, rest @ ..] = args.as_slice() else {
        eprintln!("usage: mint-test-token <out-dir> <issuer> [RS256|PS256|ES256]");
        return ExitCode::from(2);
    };
    let alg = rest.first().map_or("RS256", String::as_str);
    let rsa = TestKey::rsa("test-rsa");
    let ec = TestKey::es256("test-ec");
    let key = if alg == "ES256" { &ec } else { &rsa };
    let now = SystemClock::new().unix_seconds();
    let token = key.token_alg(
        alg,
        &json!({
            "iss": issuer, "sub": "test-user", "aud": ENDPOINT, "iat": now, "exp": now + 86_400,
            "scope": "openid fhirUser launch/patient patient/*.rs",
            "fhirUser": "https://fhir.example.com/Patient/123", "patient": "123",
        }),
    );
    let event = json!({"datastoreEndpoint": ENDPOINT, "bearerToken": token, "operationName": "SearchWithGet"});
    let dir = PathBuf::from(dir);
    let written = std::fs::write(dir.join("jwks.json"), jwks(&[&rsa, &ec]).to_string())
        .and_then(|()| std::fs::write(dir.join("event.json"), event.to_string()));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing to {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
