//! Warm decision latency: a token verified against an already-loaded JWK Set, no network.
//! `cargo bench -p token-decoder --bench decision`. Target: ≤ 50 µs median (RS256 and ES256).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use healthimport::metrics::{EmfLines, Namespace};
use healthimport_auth::keys::KeySet;
use healthimport_auth::token;
use healthimport_auth::{
    AllowedAlgorithms, ClaimPolicy, Clock, JwksCache, NoFetch, SystemClock, TokenDecoder,
};
use healthimport_auth_testing::{jwks, TestKey};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use token_decoder::handler;

const ISSUER: &str = "https://idp.example.com/oauth2/default";
const ENDPOINT: &str =
    "https://healthlake.us-east-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4/";

fn decoder(keys: &[&TestKey]) -> TokenDecoder<NoFetch, SystemClock> {
    let (set, _) = KeySet::parse(
        jwks(keys).to_string().as_bytes(),
        &AllowedAlgorithms::default(),
    )
    .expect("bench JWK Set");
    TokenDecoder::new(
        ClaimPolicy {
            issuer: ISSUER.into(),
            audiences: vec![],
            clock_skew_seconds: 60,
        },
        AllowedAlgorithms::default(),
        "arn:aws:iam::123456789012:role/healthlake-smart".into(),
        JwksCache::fixed(set, SystemClock::new()),
    )
}

fn event(key: &TestKey, alg: &str) -> Value {
    let now = SystemClock::new().unix_seconds();
    let claims = json!({
        "iss": ISSUER, "sub": "0oa1b2c3", "aud": ENDPOINT,
        "iat": now, "exp": now + 86_400,
        "scope": "openid fhirUser launch/patient patient/Observation.rs patient/Patient.r",
        "fhirUser": "https://fhir.example.com/Patient/123", "patient": "123",
    });
    json!({
        "datastoreEndpoint": ENDPOINT,
        "bearerToken": key.token_alg(alg, &claims),
        "operationName": "SearchWithGet",
    })
}

fn warm_decision(c: &mut Criterion) {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::es256("ec-1");
    let decoder = decoder(&[&rsa, &ec]);
    // Each decision's metric line is rendered and written, to a sink instead of stdout.
    let metrics = EmfLines::new(Namespace::default(), std::io::sink());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");

    let mut group = c.benchmark_group("warm_decision");
    group.measurement_time(Duration::from_secs(5));
    for (name, key, alg) in [
        ("RS256", &rsa, "RS256"),
        ("PS256", &rsa, "PS256"),
        ("ES256", &ec, "ES256"),
    ] {
        let event = event(key, alg);
        let decision = runtime.block_on(decoder.decide(&event));
        assert!(decision.is_allowed(), "{name}: {:?}", decision.deny_reason);
        // The handler as Lambda runs it, minus the runtime's HTTP: event bytes in, response bytes
        // out (JSON parse, decision, log call, metric line, JSON serialisation).
        let bytes = serde_json::to_vec(&event).expect("event JSON");
        group.bench_function(name, |b| {
            b.iter(|| {
                let event: Value = serde_json::from_slice(black_box(&bytes)).expect("event JSON");
                let response = runtime
                    .block_on(handler::handle(&decoder, &metrics, event))
                    .unwrap_or_else(|never| match never {});
                black_box(serde_json::to_vec(&response).expect("response JSON"))
            })
        });
    }
    // The signature check alone (the crypto, through `jsonwebtoken`/aws-lc), to separate the
    // primitive's cost from the decoder's own.
    let (set, _) = KeySet::parse(
        jwks(&[&rsa, &ec]).to_string().as_bytes(),
        &AllowedAlgorithms::default(),
    )
    .expect("bench JWK Set");
    for (name, key, alg) in [
        ("RS256", &rsa, Algorithm::RS256),
        ("ES256", &ec, Algorithm::ES256),
    ] {
        let event = event(key, name);
        let token = event["bearerToken"].as_str().expect("token").to_owned();
        let verifying = set.get(key.kid()).expect("key");
        group.bench_function(format!("signature_only_{name}"), |b| {
            b.iter(|| {
                let segments = token::split(black_box(&token)).expect("segments");
                token::verify(&segments, verifying, alg).expect("valid signature")
            })
        });
    }
    // A forged kid: the cheapest deny path still parses the header.
    let forged = event(&TestKey::rsa("forger"), "RS256");
    group.bench_function("deny_unknown_kid", |b| {
        b.iter(|| runtime.block_on(decoder.decide(black_box(&forged))))
    });
    group.finish();
}

criterion_group!(benches, warm_decision);
criterion_main!(benches);
