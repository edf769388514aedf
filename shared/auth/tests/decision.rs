//! Decision-level tests: the whole path from HealthLake's event to the response, with scripted
//! JWKS fetches and a manual clock (no network, no sleeps).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use healthimport_auth::cache::RefreshError;
use healthimport_auth::{
    keys, token, AllowedAlgorithms, CachePolicy, ClaimPolicy, Decision, DenyReason, JwksCache,
    NoFetch, TokenDecoder,
};
use healthimport_auth_testing::{
    b64, hmac_token, jwks, unsigned_token, ManualClock, ScriptedFetcher, TestKey,
};

const NOW: i64 = 1_750_000_000;
const ISSUER: &str = "https://idp.example.com/oauth2/default";
const ENDPOINT: &str =
    "https://healthlake.us-east-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4/";
const ROLE: &str = "arn:aws:iam::123456789012:role/healthlake-smart";

type Decoder = TokenDecoder<Arc<ScriptedFetcher>, Arc<ManualClock>>;

struct Fixture {
    decoder: Decoder,
    fetcher: Arc<ScriptedFetcher>,
    clock: Arc<ManualClock>,
}

async fn fixture_with(fetcher: Arc<ScriptedFetcher>, allowed: AllowedAlgorithms) -> Fixture {
    let clock = ManualClock::at(NOW);
    let cache = JwksCache::remote(
        Arc::clone(&fetcher),
        Arc::clone(&clock),
        allowed.clone(),
        CachePolicy::default(),
    );
    // Init: a failure is logged and tolerated, exactly as in `main`.
    let _ = cache.load().await;
    let policy = ClaimPolicy {
        issuer: ISSUER.into(),
        audiences: vec![],
        clock_skew_seconds: 60,
    };
    Fixture {
        decoder: TokenDecoder::new(policy, allowed, ROLE.into(), cache),
        fetcher,
        clock,
    }
}

async fn fixture() -> Fixture {
    let fetcher = ScriptedFetcher::serving(&jwks(&[&rsa(), &ec()]));
    fixture_with(fetcher, AllowedAlgorithms::default()).await
}

fn rsa() -> TestKey {
    TestKey::rsa("rsa-1")
}

fn ec() -> TestKey {
    TestKey::es256("ec-1")
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "0oa1b2c3",
        "aud": ENDPOINT,
        "iat": NOW - 30,
        "exp": NOW + 3600,
        "scope": "openid fhirUser launch/patient patient/Observation.rs patient/Patient.r",
        "fhirUser": "https://fhir.example.com/Patient/123",
        "patient": "123",
        "email": "not-passed-through@example.com",
    })
}

fn event(token: &str) -> Value {
    json!({"datastoreEndpoint": ENDPOINT, "bearerToken": token, "operationName": "SearchWithGet"})
}

impl Fixture {
    async fn decide(&self, token: &str) -> Decision {
        self.decoder.decide(&event(token)).await
    }

    async fn reason(&self, token: &str) -> Option<DenyReason> {
        let decision = self.decide(token).await;
        assert_deny_shape(&decision);
        decision.deny_reason
    }
}

/// Every response, allow or deny, carries HealthLake's required fields with the right types.
fn assert_deny_shape(decision: &Decision) {
    let json = serde_json::to_value(&decision.response).expect("serializable");
    let payload = &json["authPayload"];
    assert_eq!(payload["isAuthorized"], json!(decision.is_allowed()));
    for field in ["iat", "nbf", "exp"] {
        assert!(payload[field].is_i64(), "{field} in {json}");
    }
    for field in ["iss", "aud", "uid", "scope"] {
        assert!(payload[field].is_string(), "{field} in {json}");
    }
    assert_eq!(json["iamRoleARN"], json!(ROLE));
    if !decision.is_allowed() {
        assert_eq!(payload["scope"], json!(""));
        assert!(payload.get("fhirUser").is_none() && payload.get("patient").is_none());
    }
}

#[tokio::test]
async fn rs256_ps256_and_es256_tokens_are_allowed() {
    let f = fixture().await;
    for (key, alg) in [(rsa(), "RS256"), (rsa(), "PS256"), (ec(), "ES256")] {
        let decision = f.decide(&key.token_alg(alg, &claims())).await;
        assert_eq!(decision.deny_reason, None, "{alg}");
        let payload =
            serde_json::to_value(&decision.response).expect("json")["authPayload"].clone();
        assert_eq!(
            payload,
            json!({
                "iss": ISSUER,
                "aud": ENDPOINT,
                "iat": NOW - 30,
                "nbf": NOW - 30,
                "exp": NOW + 3600,
                "isAuthorized": true,
                "uid": "0oa1b2c3",
                "scope": "openid fhirUser launch/patient patient/Observation.rs patient/Patient.r",
                "fhirUser": "https://fhir.example.com/Patient/123",
                "patient": "123",
            }),
            "{alg}"
        );
        assert_eq!(decision.log.kid.as_deref(), Some(key.kid()));
        assert_eq!(decision.log.issuer.as_deref(), Some(ISSUER));
        assert_eq!(decision.log.operation.as_deref(), Some("SearchWithGet"));
    }
    assert_eq!(f.fetcher.calls(), 1, "warm decisions make no fetch");
}

#[tokio::test]
async fn bearer_prefix_is_tolerated() {
    let f = fixture().await;
    let token = rsa().token(&claims());
    assert_eq!(f.reason(&format!("Bearer {token}")).await, None);
    assert_eq!(f.reason(&format!(" bearer  {token} ")).await, None);
}

#[tokio::test]
async fn smart_v1_v2_and_v22_scopes_pass_through_unchanged() {
    let f = fixture().await;
    for scope in [
        "patient/*.read user/Observation.write launch",
        "system/*.cruds patient/Observation.rs",
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    ] {
        let mut c = claims();
        c["scope"] = json!(scope);
        let decision = f.decide(&rsa().token(&c)).await;
        assert_eq!(decision.response.auth_payload.scope, scope);
    }
    let mut c = claims();
    c.as_object_mut().expect("object").remove("scope");
    c["scp"] = json!(["user/*.rs", "launch"]);
    let decision = f.decide(&ec().token(&c)).await;
    assert_eq!(decision.response.auth_payload.scope, "user/*.rs launch");
}

#[tokio::test]
async fn claim_failures_are_denied_with_their_reason() {
    let f = fixture().await;
    let cases: Vec<(&str, Value, DenyReason)> = vec![
        ("exp", json!(NOW - 61), DenyReason::Expired),
        ("nbf", json!(NOW + 120), DenyReason::NotYetValid),
        (
            "iss",
            json!("https://evil.example.com"),
            DenyReason::WrongIssuer,
        ),
        (
            "aud",
            json!("https://healthlake.us-east-1.amazonaws.com/datastore/other/r4/"),
            DenyReason::WrongAudience,
        ),
        ("scope", json!("openid profile"), DenyReason::NoSmartScope),
        ("exp", json!("9999999999"), DenyReason::InvalidClaims),
        ("sub", json!(null), DenyReason::MissingClaim),
    ];
    for (field, value, reason) in cases {
        let mut c = claims();
        c[field] = value;
        assert_eq!(f.reason(&rsa().token(&c)).await, Some(reason), "{field}");
    }
}

#[tokio::test]
async fn time_moves_a_token_from_valid_to_expired() {
    let f = fixture().await;
    let token = rsa().token(&claims());
    assert_eq!(f.reason(&token).await, None);
    f.clock.advance(Duration::from_secs(3600 + 60));
    assert_eq!(f.reason(&token).await, Some(DenyReason::Expired));
}

#[tokio::test]
async fn forged_tokens_are_denied() {
    let f = fixture().await;
    let c = claims();
    let header = |alg: &str| json!({"alg": alg, "kid": rsa().kid(), "typ": "JWT"});

    // Unsigned, in several spellings.
    for alg in ["none", "None", "NONE"] {
        assert_eq!(
            f.reason(&unsigned_token(&header(alg), &c)).await,
            Some(DenyReason::AlgNone)
        );
    }
    // HMAC with the RSA public key as the secret: the RS256 → HS256 key-confusion trick.
    let confused = hmac_token(&rsa().public_key_der(), &header("HS256"), &c);
    assert_eq!(f.reason(&confused).await, Some(DenyReason::AlgHmac));
    let confused_jwk = hmac_token(rsa().jwk().to_string().as_bytes(), &header("HS512"), &c);
    assert_eq!(f.reason(&confused_jwk).await, Some(DenyReason::AlgHmac));

    // Signed by a key the identity provider does not have, under its kid.
    let impostor = TestKey::rsa("impostor").with_kid(rsa().kid());
    assert_eq!(
        f.reason(&impostor.token(&c)).await,
        Some(DenyReason::BadSignature)
    );

    // A valid token whose payload was swapped.
    let good = rsa().token(&c);
    let mut evil = c.clone();
    evil["scope"] = json!("system/*.cruds");
    let evil_payload = b64(evil.to_string().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
    assert_eq!(f.reason(&tampered).await, Some(DenyReason::BadSignature));

    // Header says ES256 but names the RSA key (and vice versa).
    let lying = ec().sign("ES256", &header("ES256"), &c);
    assert_eq!(f.reason(&lying).await, Some(DenyReason::KeyAlgMismatch));
    let lying = rsa().sign("RS256", &json!({"alg": "RS256", "kid": ec().kid()}), &c);
    assert_eq!(f.reason(&lying).await, Some(DenyReason::KeyAlgMismatch));

    // Supported but not allowed.
    assert_eq!(
        f.reason(&rsa().token_alg("RS512", &c)).await,
        Some(DenyReason::AlgNotAllowed)
    );

    // Header tricks.
    let no_kid = rsa().sign("RS256", &json!({"alg": "RS256"}), &c);
    assert_eq!(f.reason(&no_kid).await, Some(DenyReason::MissingKid));
    let crit = rsa().sign(
        "RS256",
        &json!({"alg": "RS256", "kid": rsa().kid(), "crit": ["b64"], "b64": false}),
        &c,
    );
    assert_eq!(f.reason(&crit).await, Some(DenyReason::UnsupportedHeader));
    let embedded_jwk = TestKey::rsa("attacker").sign(
        "RS256",
        &json!({"alg": "RS256", "kid": "attacker", "jwk": TestKey::rsa("attacker").jwk()}),
        &c,
    );
    assert_eq!(f.reason(&embedded_jwk).await, Some(DenyReason::UnknownKid));
}

#[tokio::test]
async fn garbage_is_denied_never_panics() {
    let f = fixture().await;
    let token = rsa().token(&claims());
    let truncated = &token[..token.len() - 10];
    let cases: Vec<(String, DenyReason)> = vec![
        (String::new(), DenyReason::MissingToken),
        ("Bearer ".into(), DenyReason::MalformedToken),
        ("   ".into(), DenyReason::MissingToken),
        ("not-a-jwt".into(), DenyReason::MalformedToken),
        ("a.b".into(), DenyReason::MalformedToken),
        ("a.b.c.d".into(), DenyReason::MalformedToken),
        (truncated.to_owned(), DenyReason::BadSignature),
        (
            token.split('.').take(2).collect::<Vec<_>>().join("."),
            DenyReason::MalformedToken,
        ),
        (
            "eyJhbGciOiJSUzI1NiJ9.e30.!!".into(),
            DenyReason::MalformedToken,
        ),
        (
            "x".repeat(token::MAX_TOKEN_BYTES + 1),
            DenyReason::OversizedToken,
        ),
        (
            format!("{token}{}", "A".repeat(token::MAX_TOKEN_BYTES)),
            DenyReason::OversizedToken,
        ),
        ("ey.ey.ey".into(), DenyReason::MalformedToken),
        ("\u{0000}.\u{feff}.x".into(), DenyReason::MalformedToken),
    ];
    for (token, reason) in cases {
        let shown = token.chars().take(40).collect::<String>();
        assert_eq!(f.reason(&token).await, Some(reason), "{shown:?}");
    }
}

#[tokio::test]
async fn malformed_events_are_denied_with_a_well_formed_response() {
    let f = fixture().await;
    for (raw, reason) in [
        (json!(null), DenyReason::MalformedEvent),
        (json!("a.b.c"), DenyReason::MalformedEvent),
        (
            json!({"bearerToken": rsa().token(&claims())}),
            DenyReason::MalformedEvent,
        ),
        (
            json!({"datastoreEndpoint": ENDPOINT}),
            DenyReason::MissingToken,
        ),
        (
            json!({"datastoreEndpoint": ENDPOINT, "bearerToken": ["x"]}),
            DenyReason::MalformedEvent,
        ),
    ] {
        let decision = f.decoder.decide(&raw).await;
        assert_deny_shape(&decision);
        assert_eq!(decision.deny_reason, Some(reason), "{raw}");
    }
}

#[tokio::test]
async fn key_rotation_is_picked_up_on_the_first_token_with_the_new_kid() {
    let f = fixture().await;
    let rotated = TestKey::rsa("rsa-2");
    let token = rotated.token(&claims());

    f.fetcher.serve(&jwks(&[&rsa(), &rotated]));
    // Within a minute of the init fetch, an unknown kid does not reach the identity provider.
    assert_eq!(f.reason(&token).await, Some(DenyReason::UnknownKid));
    assert_eq!(f.fetcher.calls(), 1);

    f.clock.advance(Duration::from_secs(60));
    assert_eq!(f.reason(&token).await, None);
    assert_eq!(f.fetcher.calls(), 2);
    // Old and new keys both work, and nothing more is fetched.
    assert_eq!(f.reason(&rsa().token(&claims())).await, None);
    assert_eq!(f.fetcher.calls(), 2);
}

#[tokio::test]
async fn a_flood_of_forged_kids_costs_one_fetch_a_minute() {
    async fn flood(f: &Fixture) {
        for i in 0..500 {
            let forged = TestKey::es256("forger").with_kid(&format!("forged-{i}"));
            assert_eq!(
                f.reason(&forged.token(&claims())).await,
                Some(DenyReason::UnknownKid)
            );
        }
    }

    let f = fixture().await;
    flood(&f).await;
    assert_eq!(f.fetcher.calls(), 1);
    f.clock.advance(Duration::from_secs(61));
    flood(&f).await;
    assert_eq!(f.fetcher.calls(), 2);
}

#[tokio::test]
async fn ttl_refresh_replaces_keys_and_a_failed_refresh_keeps_them() {
    let f = fixture().await;
    let token = || rsa().token(&claims());

    // TTL passes while the identity provider is down: the old keys keep working.
    f.clock.advance(Duration::from_secs(3600));
    f.fetcher.go_down();
    assert_eq!(f.reason(&token()).await, None);
    assert_eq!(f.fetcher.calls(), 2);
    // No retry within the minute.
    assert_eq!(f.reason(&token()).await, None);
    assert_eq!(f.fetcher.calls(), 2);

    // The provider is back, without rsa-1 (revoked): the next refresh drops it.
    f.fetcher.serve(&jwks(&[&ec()]));
    f.clock.advance(Duration::from_secs(60));
    let fresh = {
        let mut c = claims();
        c["iat"] = json!(NOW + 3600);
        c["exp"] = json!(NOW + 7200);
        c
    };
    assert_eq!(
        f.reason(&rsa().token(&fresh)).await,
        Some(DenyReason::UnknownKid)
    );
    assert_eq!(f.fetcher.calls(), 3);
    assert_eq!(f.reason(&ec().token(&fresh)).await, None);
}

#[tokio::test]
async fn identity_provider_down_at_init_denies_until_it_recovers() {
    let fetcher = ScriptedFetcher::down();
    let f = fixture_with(Arc::clone(&fetcher), AllowedAlgorithms::default()).await;
    assert_eq!(fetcher.calls(), 1);
    let token = rsa().token(&claims());
    assert_eq!(f.reason(&token).await, Some(DenyReason::JwksUnavailable));
    assert_eq!(
        fetcher.calls(),
        1,
        "retries are spaced, not one per request"
    );

    fetcher.serve(&jwks(&[&rsa()]));
    f.clock.advance(Duration::from_secs(5));
    assert_eq!(f.reason(&token).await, None);
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test]
async fn an_unparsable_jwks_is_a_failed_refresh() {
    let fetcher = ScriptedFetcher::down();
    fetcher.serve_raw("<html>maintenance</html>");
    let f = fixture_with(Arc::clone(&fetcher), AllowedAlgorithms::default()).await;
    assert_eq!(
        f.reason(&rsa().token(&claims())).await,
        Some(DenyReason::JwksUnavailable)
    );
}

/// A JWK Set serving `keys` only.
fn jwk_set(keys: Vec<Value>) -> Value {
    json!({ "keys": keys })
}

/// The RSA test key's public JWK under another kid, with `alg` pinned.
fn rsa_jwk_with_alg(kid: &str, alg: &str) -> Value {
    let mut jwk = rsa().jwk();
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(alg);
    jwk
}

/// The shared secret of the symmetric key below: must never reach a log or an error message.
const HMAC_SECRET_B64: &str = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LW11c3Qtbm90LWxlYWs";

/// JWK Sets that parse but hold no key we can verify with: each must count as a failed refresh.
fn unusable_jwk_sets() -> Vec<(&'static str, Value)> {
    vec![
        ("an empty keys array", jwk_set(vec![])),
        (
            "a symmetric (oct, HS256) key only",
            jwk_set(vec![json!({
                "kty": "oct", "kid": "hmac-1", "alg": "HS256", "use": "sig", "k": HMAC_SECRET_B64,
            })]),
        ),
        (
            "an RSA key pinned to HS256",
            jwk_set(vec![rsa_jwk_with_alg("rsa-hs", "HS256")]),
        ),
        (
            "an RSA key with an unknown alg",
            jwk_set(vec![rsa_jwk_with_alg("rsa-x", "RS1")]),
        ),
        (
            "unsupported key types and curves",
            jwk_set(vec![
                json!({"kty": "XYZ", "kid": "x-1"}),
                json!({"kty": "EC", "kid": "ec-521", "crv": "P-521", "x": b64(&[1; 66]), "y": b64(&[2; 66])}),
                json!({"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64(&[3; 32])}),
            ]),
        ),
    ]
}

/// `claims()` issued `at` seconds after `NOW`, so they are still valid once the clock has moved.
fn claims_at(at: i64) -> Value {
    let mut c = claims();
    c["iat"] = json!(NOW + at - 30);
    c["exp"] = json!(NOW + at + 3600);
    c
}

#[tokio::test]
async fn a_refresh_without_usable_keys_keeps_the_cached_keys_and_backs_off() {
    for (what, set) in unusable_jwk_sets() {
        let f = fixture().await;
        assert_eq!(f.fetcher.calls(), 1, "{what}");
        f.fetcher.serve(&set);

        // Unknown-kid refetch a minute after init: fails, so the cached keys stay.
        f.clock.advance(Duration::from_secs(60));
        let rotated = TestKey::rsa("rsa-2").token(&claims());
        assert_eq!(
            f.reason(&rotated).await,
            Some(DenyReason::UnknownKid),
            "{what}"
        );
        assert_eq!(f.fetcher.calls(), 2, "{what}");
        assert_eq!(f.reason(&rsa().token(&claims())).await, None, "{what}");
        assert_eq!(f.reason(&ec().token(&claims())).await, None, "{what}");
        // Backed off like any failed refresh: no refetch within the minute.
        assert_eq!(f.reason(&rotated).await, Some(DenyReason::UnknownKid));
        assert_eq!(f.fetcher.calls(), 2, "{what}");

        // TTL refresh (an hour after the init load): fails too, keys stay, next try a minute on.
        f.clock.advance(Duration::from_secs(3540));
        let token = rsa().token(&claims_at(3600));
        assert_eq!(f.reason(&token).await, None, "{what}");
        assert_eq!(f.fetcher.calls(), 3, "{what}");
        f.clock.advance(Duration::from_secs(59));
        assert_eq!(f.reason(&token).await, None, "{what}");
        assert_eq!(f.fetcher.calls(), 3, "{what}");
        f.clock.advance(Duration::from_secs(1));
        assert_eq!(f.reason(&token).await, None, "{what}");
        assert_eq!(f.fetcher.calls(), 4, "{what}");

        // A usable set replaces the keys as usual, even a smaller one (revocation still works).
        f.fetcher.serve(&jwks(&[&ec()]));
        f.clock.advance(Duration::from_secs(60));
        assert_eq!(
            f.reason(&rsa().token(&claims_at(3720))).await,
            Some(DenyReason::UnknownKid),
            "{what}"
        );
        assert_eq!(f.fetcher.calls(), 5, "{what}");
        assert_eq!(f.reason(&ec().token(&claims_at(3720))).await, None);
    }
}

#[tokio::test]
async fn a_jwks_without_usable_keys_at_init_is_unavailable_and_retried_soon() {
    for (what, set) in unusable_jwk_sets() {
        let fetcher = ScriptedFetcher::serving(&set);
        let f = fixture_with(Arc::clone(&fetcher), AllowedAlgorithms::default()).await;
        let token = rsa().token(&claims());
        // Never loaded, not "loaded with no keys": the operator's reason, and the short retry.
        assert_eq!(
            f.reason(&token).await,
            Some(DenyReason::JwksUnavailable),
            "{what}"
        );
        assert_eq!(fetcher.calls(), 1, "{what}");
        f.clock.advance(Duration::from_secs(4));
        assert_eq!(f.reason(&token).await, Some(DenyReason::JwksUnavailable));
        assert_eq!(fetcher.calls(), 1, "{what}");

        fetcher.serve(&jwks(&[&rsa()]));
        f.clock.advance(Duration::from_secs(1));
        assert_eq!(f.reason(&token).await, None, "{what}");
        assert_eq!(fetcher.calls(), 2, "{what}");
    }
}

#[tokio::test]
async fn a_load_without_usable_keys_is_an_error_without_key_material() {
    for (what, set) in unusable_jwk_sets() {
        let cache = JwksCache::remote(
            ScriptedFetcher::serving(&set),
            ManualClock::at(NOW),
            AllowedAlgorithms::default(),
            CachePolicy::default(),
        );
        let error = cache.load().await.expect_err(what);
        let skipped = set["keys"].as_array().map_or(0, Vec::len);
        assert!(
            matches!(error, RefreshError::NoUsableKey { skipped: s, .. } if s == skipped),
            "{what}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("no usable signing key"), "{message}");
        assert!(
            message.contains("RS256"),
            "names the allowed algorithms: {message}"
        );
        assert!(!message.contains(HMAC_SECRET_B64), "{message}");
    }
}

#[tokio::test]
async fn allow_list_narrows_what_verifies() {
    let fetcher = ScriptedFetcher::serving(&jwks(&[&rsa(), &ec()]));
    let f = fixture_with(fetcher, "ES256".parse().expect("valid")).await;
    assert_eq!(f.reason(&ec().token(&claims())).await, None);
    assert_eq!(
        f.reason(&rsa().token(&claims())).await,
        Some(DenyReason::AlgNotAllowed)
    );
}

#[tokio::test]
async fn fixed_keys_never_fetch() {
    let (keys, _) = keys::KeySet::parse(
        jwks(&[&rsa()]).to_string().as_bytes(),
        &AllowedAlgorithms::default(),
    )
    .expect("valid");
    let clock = ManualClock::at(NOW);
    let decoder = TokenDecoder::new(
        ClaimPolicy {
            issuer: ISSUER.into(),
            audiences: vec!["fhir-api".into()],
            clock_skew_seconds: 60,
        },
        AllowedAlgorithms::default(),
        ROLE.into(),
        JwksCache::<NoFetch, _>::fixed(keys, Arc::clone(&clock)),
    );
    let mut c = claims();
    c["aud"] = json!(["fhir-api"]);
    let decision = decoder.decide(&event(&rsa().token(&c))).await;
    assert_eq!(decision.deny_reason, None);
    // The response's aud is the data store endpoint, whatever the token's audience.
    assert_eq!(decision.response.auth_payload.aud, ENDPOINT);
    clock.advance(Duration::from_secs(10 * 3600));
    let unknown = TestKey::rsa("rsa-2").token(&c);
    assert_eq!(
        decoder.decide(&event(&unknown)).await.deny_reason,
        Some(DenyReason::UnknownKid)
    );
}

#[tokio::test]
async fn log_fields_are_sanitised_and_never_hold_the_token() {
    let f = fixture().await;
    let hostile_kid = TestKey::rsa("x").sign(
        "RS256",
        &json!({"alg": "RS256", "kid": "evil\n{\"decision\":\"allow\"}"}),
        &claims(),
    );
    let decision = f.decide(&hostile_kid).await;
    assert_eq!(decision.deny_reason, Some(DenyReason::UnknownKid));
    let kid = decision.log.kid.expect("kid logged");
    assert!(!kid.contains('\n'), "{kid}");
    let token = rsa().token(&claims());
    let decision = f.decide(&token).await;
    let logged = format!("{:?}", decision.log);
    for part in token.split('.') {
        assert!(!logged.contains(part), "log context holds a token segment");
    }
}
