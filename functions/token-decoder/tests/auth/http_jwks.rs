//! The decoder end to end with its real HTTP fetcher: the identity provider's JWK Set is served
//! over HTTP on 127.0.0.1 by a small axum server inside each test. Time is a manual clock, so the
//! TTL and the unknown-`kid` rate limit are exercised without sleeping.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use healthimport::fakes::RecordingMetrics;
use healthimport_auth::{
    AuthResponse, DenyReason, HttpJwksFetcher, TokenDecoder, TokenDecoderConfig,
};
use healthimport_auth_testing::{hmac_token, jwks, unsigned_token, ManualClock, TestKey};
use serde_json::{json, Value};
use token_decoder::{handler, wiring};

const NOW: i64 = 1_750_000_000;
const ISSUER: &str = "https://idp.example.com/oauth2/default";
const ENDPOINT: &str =
    "https://healthlake.us-east-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4/";
const ROLE: &str = "arn:aws:iam::123456789012:role/healthlake-smart";

/// What the fake identity provider serves at `/jwks`.
#[derive(Clone)]
enum Serve {
    Jwks(Value),
    Status(StatusCode),
    Body(String),
    /// Accepts the request and never answers.
    Hang,
}

#[derive(Clone)]
struct Idp {
    serve: Arc<Mutex<Serve>>,
    hits: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl Idp {
    async fn start(serve: Serve) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let idp = Idp {
            serve: Arc::new(Mutex::new(serve)),
            hits: Arc::new(AtomicUsize::new(0)),
            addr: listener.local_addr().expect("local addr"),
        };
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(idp.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake IdP");
        });
        idp
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn set(&self, serve: Serve) {
        *self.serve.lock().expect("lock") = serve;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(State(idp): State<Idp>) -> Response {
    idp.hits.fetch_add(1, Ordering::SeqCst);
    let serve = idp.serve.lock().expect("lock").clone();
    match serve {
        Serve::Jwks(v) => ([("content-type", "application/json")], v.to_string()).into_response(),
        Serve::Status(status) => status.into_response(),
        Serve::Body(body) => body.into_response(),
        Serve::Hang => std::future::pending::<Response>().await,
    }
}

fn env(jwks_url: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("TOKEN_ISSUER", ISSUER),
        ("JWKS_URL", jwks_url),
        ("HEALTHLAKE_ROLE_ARN", ROLE),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

async fn decoder_for(
    env: &HashMap<String, String>,
) -> (
    TokenDecoder<HttpJwksFetcher, Arc<ManualClock>>,
    Arc<ManualClock>,
) {
    let clock = ManualClock::at(NOW);
    let config = TokenDecoderConfig::from_env(env).expect("valid configuration");
    let decoder = wiring::init_with(config, Arc::clone(&clock))
        .await
        .expect("init");
    (decoder, clock)
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "0oa1b2c3", "aud": ENDPOINT,
        "iat": NOW - 5, "exp": NOW + 3600,
        "scope": "launch/patient patient/Observation.rs",
        "patient": "123",
    })
}

fn event(token: &str) -> Value {
    json!({"datastoreEndpoint": ENDPOINT, "bearerToken": token, "operationName": "ReadResource"})
}

async fn respond<F: healthimport_auth::JwksFetcher>(
    decoder: &TokenDecoder<F, Arc<ManualClock>>,
    event: Value,
) -> AuthResponse {
    handler::handle(decoder, &RecordingMetrics::default(), event)
        .await
        .unwrap_or_else(|never| match never {})
}

async fn reason<F: healthimport_auth::JwksFetcher>(
    decoder: &TokenDecoder<F, Arc<ManualClock>>,
    token: &str,
) -> Option<DenyReason> {
    decoder.decide(&event(token)).await.deny_reason
}

/// With no key set loaded, even a well-signed token is denied for want of keys.
async fn assert_denied_for_want_of_keys<F: healthimport_auth::JwksFetcher>(
    decoder: &TokenDecoder<F, Arc<ManualClock>>,
) {
    let token = TestKey::rsa("rsa-1").token(&claims());
    assert_eq!(
        reason(decoder, &token).await,
        Some(DenyReason::JwksUnavailable)
    );
}

#[tokio::test]
async fn allows_rs256_ps256_and_es256_against_a_served_jwks() {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::es256("ec-1");
    let idp = Idp::start(Serve::Jwks(jwks(&[&rsa, &ec]))).await;
    let (decoder, _) = decoder_for(&env(&idp.url(), &[])).await;
    assert_eq!(idp.hits(), 1, "fetched once at init");

    for (key, alg) in [(&rsa, "RS256"), (&rsa, "PS256"), (&ec, "ES256")] {
        let response = respond(&decoder, event(&key.token_alg(alg, &claims()))).await;
        let json = serde_json::to_value(&response).expect("json");
        assert_eq!(json["authPayload"]["isAuthorized"], json!(true), "{alg}");
        assert_eq!(json["authPayload"]["uid"], json!("0oa1b2c3"));
        assert_eq!(json["authPayload"]["aud"], json!(ENDPOINT));
        assert_eq!(json["authPayload"]["patient"], json!("123"));
        assert_eq!(json["iamRoleARN"], json!(ROLE));
    }
    assert_eq!(idp.hits(), 1, "no network call on the warm path");
}

#[tokio::test]
async fn every_forgery_is_a_deny_not_an_error() {
    let rsa = TestKey::rsa("rsa-1");
    let idp = Idp::start(Serve::Jwks(jwks(&[&rsa]))).await;
    let (decoder, clock) = decoder_for(&env(&idp.url(), &[])).await;
    let header = |alg: &str| json!({"alg": alg, "kid": "rsa-1"});
    let c = claims();
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("https://healthlake.us-east-1.amazonaws.com/datastore/other/r4/");
    let mut wrong_iss = claims();
    wrong_iss["iss"] = json!("https://evil.example.com");
    let mut no_scope = claims();
    no_scope["scope"] = json!("openid email");
    let mut future = claims();
    future["nbf"] = json!(NOW + 600);
    let mut expired = claims();
    expired["exp"] = json!(NOW - 600);

    let cases = vec![
        ("expired", rsa.token(&expired), DenyReason::Expired),
        ("not yet valid", rsa.token(&future), DenyReason::NotYetValid),
        (
            "wrong issuer",
            rsa.token(&wrong_iss),
            DenyReason::WrongIssuer,
        ),
        (
            "wrong audience",
            rsa.token(&wrong_aud),
            DenyReason::WrongAudience,
        ),
        (
            "no SMART scope",
            rsa.token(&no_scope),
            DenyReason::NoSmartScope,
        ),
        (
            "unknown key",
            TestKey::rsa("other").token(&c),
            DenyReason::UnknownKid,
        ),
        (
            "wrongly signed",
            TestKey::rsa("other").with_kid("rsa-1").token(&c),
            DenyReason::BadSignature,
        ),
        (
            "alg none",
            unsigned_token(&header("none"), &c),
            DenyReason::AlgNone,
        ),
        (
            "RS256→HS256 confusion",
            hmac_token(&rsa.public_key_der(), &header("HS256"), &c),
            DenyReason::AlgHmac,
        ),
        (
            "truncated in the payload",
            rsa.token(&c)[..200].to_owned(),
            DenyReason::MalformedToken,
        ),
        (
            "truncated signature",
            {
                let t = rsa.token(&c);
                t[..t.len() - 20].to_owned()
            },
            DenyReason::BadSignature,
        ),
        ("oversized", "a".repeat(20_000), DenyReason::OversizedToken),
        (
            "not a JWT",
            "opaque-access-token-1234".to_owned(),
            DenyReason::MalformedToken,
        ),
    ];
    for (name, token, expected) in cases {
        let response = respond(&decoder, event(&token)).await;
        assert!(!response.is_authorized(), "{name}");
        assert_eq!(response.auth_payload.scope, "", "{name}");
        assert_eq!(reason(&decoder, &token).await, Some(expected), "{name}");
    }
    // The forged kid above was inside the init minute: no refetch. One minute on, one refetch.
    assert_eq!(idp.hits(), 1);
    clock.advance(Duration::from_secs(60));
    let forged = TestKey::rsa("other").token(&c);
    for _ in 0..50 {
        assert_eq!(
            reason(&decoder, &forged).await,
            Some(DenyReason::UnknownKid)
        );
    }
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn malformed_events_get_a_well_formed_deny() {
    let idp = Idp::start(Serve::Jwks(jwks(&[&TestKey::rsa("rsa-1")]))).await;
    let (decoder, _) = decoder_for(&env(&idp.url(), &[])).await;
    for raw in [
        json!({}),
        json!([1, 2]),
        json!({"datastoreEndpoint": ENDPOINT, "bearerToken": 7}),
    ] {
        let json = serde_json::to_value(respond(&decoder, raw.clone()).await).expect("json");
        assert_eq!(json["authPayload"]["isAuthorized"], json!(false), "{raw}");
        assert!(json["authPayload"]["exp"].is_i64());
        assert_eq!(json["iamRoleARN"], json!(ROLE));
    }
}

#[tokio::test]
async fn rotation_new_kid_is_fetched_once_the_minute_has_passed() {
    let old = TestKey::rsa("2024-01");
    let new = TestKey::es256("2024-07");
    let idp = Idp::start(Serve::Jwks(jwks(&[&old]))).await;
    let (decoder, clock) = decoder_for(&env(&idp.url(), &[])).await;

    idp.set(Serve::Jwks(jwks(&[&old, &new])));
    let token = new.token(&claims());
    assert_eq!(reason(&decoder, &token).await, Some(DenyReason::UnknownKid));
    clock.advance(Duration::from_secs(60));
    assert_eq!(reason(&decoder, &token).await, None);
    assert_eq!(reason(&decoder, &old.token(&claims())).await, None);
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn ttl_refresh_follows_jwks_refresh_seconds() {
    let old = TestKey::rsa("rsa-1");
    let idp = Idp::start(Serve::Jwks(jwks(&[&old]))).await;
    let (decoder, clock) = decoder_for(&env(&idp.url(), &[("JWKS_REFRESH_SECONDS", "300")])).await;
    let token = |key: &TestKey| key.token(&claims());

    clock.advance(Duration::from_secs(299));
    assert_eq!(reason(&decoder, &token(&old)).await, None);
    assert_eq!(idp.hits(), 1);
    // The provider drops the old key; after the TTL the decoder follows.
    let new = TestKey::es256("ec-2");
    idp.set(Serve::Jwks(jwks(&[&new])));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        reason(&decoder, &token(&old)).await,
        Some(DenyReason::UnknownKid)
    );
    assert_eq!(idp.hits(), 2);
    assert_eq!(reason(&decoder, &token(&new)).await, None);
}

#[tokio::test]
async fn identity_provider_down_then_back() {
    let key = TestKey::rsa("rsa-1");
    let idp = Idp::start(Serve::Status(StatusCode::SERVICE_UNAVAILABLE)).await;
    let (decoder, clock) = decoder_for(&env(&idp.url(), &[])).await;

    assert_denied_for_want_of_keys(&decoder).await;
    assert_eq!(idp.hits(), 1, "no retry within the retry interval");

    idp.set(Serve::Jwks(jwks(&[&key])));
    clock.advance(Duration::from_secs(5));
    assert_eq!(reason(&decoder, &key.token(&claims())).await, None);
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn unreachable_identity_provider_does_not_stop_init() {
    // A port that was just free: connection refused.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (decoder, _) = decoder_for(&env(&format!("http://{addr}/jwks"), &[])).await;
    assert_denied_for_want_of_keys(&decoder).await;
}

#[tokio::test]
async fn a_hanging_identity_provider_costs_at_most_the_timeout() {
    let idp = Idp::start(Serve::Hang).await;
    let started = Instant::now();
    let (decoder, _) = decoder_for(&env(&idp.url(), &[])).await;
    let elapsed = started.elapsed();
    assert_eq!(idp.hits(), 1, "the request reached the provider");
    // The deadline is 400 ms; the bound leaves room for a loaded CI machine but would catch a
    // missing timeout (the server never answers).
    assert!(elapsed < Duration::from_secs(3), "init took {elapsed:?}");
    assert_denied_for_want_of_keys(&decoder).await;
}

#[tokio::test]
async fn garbage_or_oversized_jwks_is_not_loaded() {
    for serve in [
        Serve::Body("<html>login</html>".into()),
        Serve::Body(format!(
            "{{\"keys\": [], \"pad\": \"{}\"}}",
            "x".repeat(300 * 1024)
        )),
    ] {
        let idp = Idp::start(serve).await;
        let (decoder, _) = decoder_for(&env(&idp.url(), &[])).await;
        assert_denied_for_want_of_keys(&decoder).await;
    }
}

#[tokio::test]
async fn inline_jwks_needs_no_network() {
    let key = TestKey::es256("ec-1");
    let inline = jwks(&[&key]).to_string();
    let mut env = env(
        "",
        &[
            ("JWKS_JSON", &inline),
            ("TOKEN_AUDIENCE", "fhir-api, other"),
        ],
    );
    env.remove("JWKS_URL");
    let (decoder, _) = decoder_for(&env).await;
    let mut c = claims();
    c["aud"] = json!("fhir-api");
    assert_eq!(reason(&decoder, &key.token(&c)).await, None);
    // With TOKEN_AUDIENCE set, the endpoint is no longer an accepted audience.
    assert_eq!(
        reason(&decoder, &key.token(&claims())).await,
        Some(DenyReason::WrongAudience)
    );
}

#[tokio::test]
async fn sample_events_decide_as_documented() {
    let idp = Idp::start(Serve::Jwks(jwks(&[&TestKey::rsa("rsa-1")]))).await;
    let (decoder, _) = decoder_for(&env(&idp.url(), &[])).await;
    let samples = [
        (
            include_str!("../../../../events/token-decoder-search.json"),
            DenyReason::UnknownKid,
        ),
        (
            include_str!("../../../../events/token-decoder-bearer-prefix.json"),
            DenyReason::UnknownKid,
        ),
        (
            include_str!("../../../../events/token-decoder-alg-none.json"),
            DenyReason::AlgNone,
        ),
        (
            include_str!("../../../../events/token-decoder-hs256-key-confusion.json"),
            DenyReason::AlgHmac,
        ),
        (
            include_str!("../../../../events/token-decoder-not-a-jwt.json"),
            DenyReason::MalformedToken,
        ),
        (
            include_str!("../../../../events/token-decoder-malformed-event.json"),
            DenyReason::MalformedEvent,
        ),
    ];
    for (raw, expected) in samples {
        let event: Value = serde_json::from_str(raw).expect("sample event is JSON");
        assert_eq!(
            decoder.decide(&event).await.deny_reason,
            Some(expected),
            "{raw}"
        );
    }
}
