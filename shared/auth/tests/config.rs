//! `TokenDecoderConfig`: every check in one place, the ones that need generated keys
//! (`healthimport-auth-testing`) included, so they share one set of environment helpers.

use std::collections::HashMap;
use std::time::Duration;

use healthimport::config::ConfigError;
use healthimport_auth::config::{
    ALLOWED_ALGORITHMS, CLOCK_SKEW_SECONDS, HEALTHLAKE_ROLE_ARN, JWKS_JSON, JWKS_REFRESH_SECONDS,
    JWKS_TIMEOUT_MS, JWKS_URL, TOKEN_AUDIENCE, TOKEN_ISSUER,
};
use healthimport_auth::{AllowedAlgorithms, KeySource, TokenDecoderConfig};
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
fn defaults() {
    let c = load(&minimal()).expect("valid");
    assert_eq!(c.issuer, "https://idp.example.com");
    assert!(matches!(c.keys, KeySource::Url(_)));
    assert!(c.audiences.is_empty());
    assert_eq!(c.algorithms, AllowedAlgorithms::default());
    assert_eq!(c.clock_skew_seconds, 60);
    assert_eq!(c.refresh_after, Duration::from_secs(3600));
    assert_eq!(c.jwks_timeout, Duration::from_millis(400));
}

#[test]
fn every_variable_is_read() {
    let pairs = minimal();
    let pairs = with(pairs, TOKEN_AUDIENCE, "api://fhir, fhir-client");
    let pairs = with(pairs, ALLOWED_ALGORITHMS, "ES256");
    let pairs = with(pairs, CLOCK_SKEW_SECONDS, "5");
    let pairs = with(pairs, JWKS_REFRESH_SECONDS, "600");
    let pairs = with(pairs, JWKS_TIMEOUT_MS, "250");
    let c = load(&pairs).expect("valid");
    assert_eq!(c.audiences, vec!["api://fhir", "fhir-client"]);
    assert_eq!(c.algorithms, "ES256".parse().expect("valid"));
    assert_eq!(c.clock_skew_seconds, 5);
    assert_eq!(c.refresh_after, Duration::from_secs(600));
    assert_eq!(c.jwks_timeout, Duration::from_millis(250));
}

#[test]
fn jwks_timeout_ms_fits_healthlakes_one_second_budget() {
    // Blank is unset (CloudFormation renders an empty parameter as ""): the default.
    for (raw, ms) in [("50", 50), ("900", 900), (" 120 ", 120), ("", 400)] {
        let c = load(&with(minimal(), JWKS_TIMEOUT_MS, raw)).expect("valid");
        assert_eq!(c.jwks_timeout, Duration::from_millis(ms), "{raw:?}");
    }
    for raw in ["0", "49", "901", "1000", "-1", "0.5", "fast", "400ms"] {
        error_names(
            load(&with(minimal(), JWKS_TIMEOUT_MS, raw)),
            JWKS_TIMEOUT_MS,
        );
    }
}

#[test]
fn missing_required_variables_are_named() {
    for name in [TOKEN_ISSUER, HEALTHLAKE_ROLE_ARN, JWKS_URL] {
        error_names(load(&without(minimal(), name)), name);
    }
}

#[test]
fn invalid_variables_are_named() {
    let cases = [
        (HEALTHLAKE_ROLE_ARN, "arn:aws:iam::123:role/x"),
        (HEALTHLAKE_ROLE_ARN, "arn:aws:iam::123456789012:user/x"),
        (HEALTHLAKE_ROLE_ARN, "role/x"),
        (JWKS_URL, "http://idp.example.com/jwks"),
        (JWKS_URL, "not a url"),
        (ALLOWED_ALGORITHMS, "RS256,HS256"),
        (ALLOWED_ALGORITHMS, "XY999"),
        (CLOCK_SKEW_SECONDS, "-1"),
        (CLOCK_SKEW_SECONDS, "3600"),
        (JWKS_REFRESH_SECONDS, "10"),
        (JWKS_REFRESH_SECONDS, "soon"),
        (JWKS_TIMEOUT_MS, "10"),
        (JWKS_TIMEOUT_MS, "2000"),
    ];
    for (name, value) in cases {
        error_names(load(&with(minimal(), name, value)), name);
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
