//! `TokenDecoderConfig` checks that need generated keys (`healthimport-auth-testing`). The others
//! are unit tests in `src/config.rs`.

use std::collections::HashMap;

use healthimport::config::ConfigError;
use healthimport_auth::config::{
    ALLOWED_ALGORITHMS, HEALTHLAKE_ROLE_ARN, JWKS_JSON, JWKS_URL, TOKEN_ISSUER,
};
use healthimport_auth::{KeySource, TokenDecoderConfig};
use healthimport_auth_testing::TestKey;

const ROLE: &str = "arn:aws:iam::123456789012:role/healthlake-smart";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn minimal() -> Vec<(&'static str, String)> {
    vec![
        (TOKEN_ISSUER, "https://idp.example.com".to_owned()),
        (JWKS_URL, "https://idp.example.com/jwks".to_owned()),
        (HEALTHLAKE_ROLE_ARN, ROLE.to_owned()),
    ]
}

fn load(pairs: &[(&'static str, String)]) -> Result<TokenDecoderConfig, ConfigError> {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TokenDecoderConfig::from_env(&env(&borrowed))
}

fn with(
    mut pairs: Vec<(&'static str, String)>,
    name: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    pairs.retain(|(k, _)| *k != name);
    pairs.push((name, value.to_owned()));
    pairs
}

fn without(mut pairs: Vec<(&'static str, String)>, name: &str) -> Vec<(&'static str, String)> {
    pairs.retain(|(k, _)| *k != name);
    pairs
}

fn error_names(result: Result<TokenDecoderConfig, ConfigError>, name: &str) {
    match result {
        Err(e) => assert!(e.to_string().contains(name), "{e} should name {name}"),
        Ok(c) => panic!("expected an error naming {name}, got {c:?}"),
    }
}

#[test]
fn inline_jwks_is_parsed_at_init() {
    let jwks = serde_json::json!({"keys": [TestKey::rsa("r1").jwk()]}).to_string();
    let pairs = with(without(minimal(), JWKS_URL), JWKS_JSON, &jwks);
    match load(&pairs).expect("valid").keys {
        KeySource::Inline { keys, skipped } => {
            assert_eq!(keys.kids(), vec!["r1"]);
            assert!(skipped.is_empty());
        }
        other => panic!("expected inline keys, got {other:?}"),
    }
    error_names(load(&with(minimal(), JWKS_JSON, &jwks)), JWKS_JSON);
    let base = without(minimal(), JWKS_URL);
    error_names(load(&with(base.clone(), JWKS_JSON, "{not json")), JWKS_JSON);
    error_names(
        load(&with(base.clone(), JWKS_JSON, r#"{"keys": []}"#)),
        JWKS_JSON,
    );
    // RSA keys only, but only ES256 allowed: nothing usable.
    let base = with(base, ALLOWED_ALGORITHMS, "ES256");
    error_names(load(&with(base, JWKS_JSON, &jwks)), JWKS_JSON);
}
