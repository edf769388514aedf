//! Fuzz target over the token decoder's whole decision path. See ../README.md.

#![no_main]

use std::sync::OnceLock;

use healthimport_auth::keys::KeySet;
use healthimport_auth::scope::has_smart_scope;
use healthimport_auth::token::strip_bearer;
use healthimport_auth::{
    AllowedAlgorithms, ClaimPolicy, Clock, Decision, JwksCache, NoFetch, SystemClock, TokenDecoder,
};
use healthimport_auth_testing::{jwks, TestKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.example.com";
const ENDPOINT: &str = "https://healthlake.us-east-1.amazonaws.com/datastore/abc/r4/";

struct Harness {
    decoder: TokenDecoder<NoFetch, SystemClock>,
    runtime: tokio::runtime::Runtime,
    key: TestKey,
    valid_token: String,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let key = TestKey::es256("fuzz-ec");
        let rsa = TestKey::rsa("fuzz-rsa");
        let (keys, _) = KeySet::parse(
            jwks(&[&key, &rsa]).to_string().as_bytes(),
            &AllowedAlgorithms::default(),
        )
        .expect("fuzz JWK Set");
        let decoder = TokenDecoder::new(
            ClaimPolicy {
                issuer: ISSUER.into(),
                audiences: vec![],
                clock_skew_seconds: 60,
            },
            AllowedAlgorithms::default(),
            "arn:aws:iam::123456789012:role/fuzz".into(),
            JwksCache::fixed(keys, SystemClock::new()),
        );
        let now = SystemClock::new().unix_seconds();
        let valid_token = key.token(&json!({
            "iss": ISSUER, "sub": "fuzz", "aud": ENDPOINT, "iat": now, "exp": now + 86_400,
            "scope": "launch patient/*.rs",
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        Harness {
            decoder,
            runtime,
            key,
            valid_token,
        }
    })
}

fn decide(h: &Harness, event: &Value) -> Decision {
    let decision = h.runtime.block_on(h.decoder.decide(event));
    let json = serde_json::to_value(&decision.response).expect("response serialises");
    assert_eq!(
        json["authPayload"]["isAuthorized"],
        json!(decision.is_allowed())
    );
    for field in ["iat", "nbf", "exp"] {
        assert!(json["authPayload"][field].is_i64());
    }
    decision
}

fn event(token: &str) -> Value {
    json!({"datastoreEndpoint": ENDPOINT, "bearerToken": token, "operationName": "ReadResource"})
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    match mode % 4 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            if decide(h, &event(&token)).is_allowed() {
                assert_eq!(
                    strip_bearer(&token),
                    h.valid_token,
                    "allowed a token we did not mint"
                );
            }
        }
        1 => {
            let mut token = h.valid_token.clone().into_bytes();
            for edit in rest.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % token.len();
                token[at] = edit[2];
            }
            let token = String::from_utf8_lossy(&token).into_owned();
            if decide(h, &event(&token)).is_allowed() {
                assert_eq!(
                    strip_bearer(&token),
                    h.valid_token,
                    "allowed an edited token"
                );
            }
        }
        2 => {
            let Ok(claims) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            let token = h.key.token(&claims);
            let decision = decide(h, &event(&token));
            if decision.is_allowed() {
                let payload = &decision.response.auth_payload;
                assert_eq!(payload.iss, ISSUER);
                assert_eq!(payload.aud, ENDPOINT);
                assert!(has_smart_scope(&payload.scope), "{}", payload.scope);
                assert!(payload.exp > SystemClock::new().unix_seconds() - 61);
            }
        }
        _ => {
            let Ok(raw) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            let decision = decide(h, &raw);
            if decision.is_allowed() {
                let token = raw["bearerToken"].as_str().unwrap_or_default();
                assert_eq!(
                    strip_bearer(token),
                    h.valid_token,
                    "allowed an event we did not mint"
                );
            }
        }
    }
});
