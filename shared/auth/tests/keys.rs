//! JWK Set parsing checks that need generated keys (`healthimport-auth-testing`). The others are
//! unit tests in `src/keys.rs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use healthimport_auth::keys::{KeySet, SkipReason, SkippedKey};
use healthimport_auth::AllowedAlgorithms;
use healthimport_auth_testing::TestKey;
use jsonwebtoken::Algorithm;
use serde_json::json;

fn allowed(raw: &str) -> AllowedAlgorithms {
    raw.parse().expect("valid list")
}

fn parse(set: serde_json::Value, allowed: &AllowedAlgorithms) -> (KeySet, Vec<SkippedKey>) {
    KeySet::parse(set.to_string().as_bytes(), allowed).expect("a JWK Set")
}

#[test]
fn keeps_signature_keys_by_kid() {
    let rsa = TestKey::rsa("r1");
    let ec = TestKey::es256("e1");
    let (set, skipped) = parse(
        json!({"keys": [rsa.jwk(), ec.jwk()]}),
        &AllowedAlgorithms::default(),
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(set.kids(), vec!["e1", "r1"]);
    let r1 = set.get("r1").expect("r1");
    assert!(r1.accepts(Algorithm::RS256) && r1.accepts(Algorithm::PS256));
    assert!(!r1.accepts(Algorithm::ES256));
    let e1 = set.get("e1").expect("e1");
    assert!(e1.accepts(Algorithm::ES256) && !e1.accepts(Algorithm::RS256));
}

#[test]
fn pinned_alg_restricts_the_key() {
    let mut jwk = TestKey::rsa("r1").jwk();
    jwk["alg"] = json!("PS256");
    let (set, _) = parse(json!({"keys": [jwk]}), &AllowedAlgorithms::default());
    let key = set.get("r1").expect("kept");
    assert!(key.accepts(Algorithm::PS256));
    assert!(!key.accepts(Algorithm::RS256));
}

#[test]
fn unusable_keys_are_skipped_with_a_reason() {
    let rsa = TestKey::rsa("r1").jwk();
    let mut enc = rsa.clone();
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    let mut ops = rsa.clone();
    ops["kid"] = json!("ops");
    ops["key_ops"] = json!(["encrypt"]);
    let mut private = rsa.clone();
    private["kid"] = json!("priv");
    private["d"] = json!("AAAA");
    let mut no_kid = rsa.clone();
    no_kid.as_object_mut().expect("object").remove("kid");
    let mut unknown_alg = rsa.clone();
    unknown_alg["kid"] = json!("alg");
    unknown_alg["alg"] = json!("RSA-OAEP");
    let mut bad_n = rsa.clone();
    bad_n["kid"] = json!("badn");
    bad_n["n"] = json!("!!!");
    let weak = json!({"kty": "RSA", "kid": "weak", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"});
    let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
    let p521 = json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"});
    let short_ec = json!({"kty": "EC", "kid": "short", "crv": "P-256", "x": "AAAA", "y": "AAAA"});
    let duplicate = TestKey::rsa("r1").jwk();

    let (set, skipped) = parse(
        json!({"keys": [rsa, enc, ops, private, no_kid, unknown_alg, bad_n, weak, oct, p521, short_ec, duplicate, 42]}),
        &AllowedAlgorithms::default(),
    );
    assert_eq!(set.kids(), vec!["r1"]);
    let reasons: Vec<(Option<&str>, &SkipReason)> = skipped
        .iter()
        .map(|s| (s.kid.as_deref(), &s.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (Some("enc"), &SkipReason::NotForSignatures),
            (Some("ops"), &SkipReason::NotForSignatures),
            (Some("priv"), &SkipReason::PrivateKeyMaterial),
            (None, &SkipReason::NoKid),
            (
                Some("alg"),
                &SkipReason::UnknownAlgorithm("RSA-OAEP".into())
            ),
            (Some("badn"), &SkipReason::BadParameters),
            (Some("weak"), &SkipReason::WeakRsaKey { bits: 1024 }),
            (Some("hmac"), &SkipReason::Symmetric),
            (Some("p521"), &SkipReason::UnsupportedCurve("P-521".into())),
            (Some("short"), &SkipReason::BadParameters),
            (Some("r1"), &SkipReason::DuplicateKid),
            (None, &SkipReason::NotAJwk),
        ]
    );
}

#[test]
fn keys_outside_the_allow_list_are_skipped() {
    let (set, skipped) = parse(
        json!({"keys": [TestKey::es256("e1").jwk(), TestKey::rsa("r1").jwk()]}),
        &allowed("ES256"),
    );
    assert_eq!(set.kids(), vec!["e1"]);
    assert_eq!(skipped[0].reason, SkipReason::AlgorithmNotAllowed);
}
