//! Test support for the token decoder: key pairs generated at runtime (no key material in the
//! repository), token minting that does not go through `jsonwebtoken` (so the library is not
//! tested against itself), hostile tokens, a scriptable fetcher and a manual clock.
//!
//! A dev-dependency only: of `healthimport-auth`'s integration tests and of the token decoder's
//! tests, benches and examples (and a dependency of the fuzz target and of the demo). Never a
//! dependency of a deployed binary. Panics here are test failures, by design.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};

use healthimport_auth::fetch::{FetchError, JwksFetcher};
use healthimport_auth::Clock;

enum Material {
    Rsa(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

/// A signing key with its `kid`. The same `(kind, kid)` always yields the same key within a
/// process (RSA generation is slow in debug builds), and different kids yield different keys.
#[derive(Clone)]
pub struct TestKey {
    kid: String,
    material: Arc<Material>,
}

/// Generated keys by (is RSA, kid).
type KeyCache = Mutex<HashMap<(bool, String), Arc<Material>>>;

fn key_cache() -> &'static KeyCache {
    static CACHE: OnceLock<KeyCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl TestKey {
    /// A 2048-bit RSA key (RS256 / PS256).
    pub fn rsa(kid: &str) -> Self {
        Self::cached(true, kid, || {
            Material::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
        })
    }

    /// A P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        Self::cached(false, kid, || {
            Material::Es256(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("EC key generation"),
            )
        })
    }

    fn cached(rsa: bool, kid: &str, generate: impl FnOnce() -> Material) -> Self {
        let mut cache = key_cache().lock().unwrap_or_else(PoisonError::into_inner);
        let material = cache
            .entry((rsa, kid.to_owned()))
            .or_insert_with(|| Arc::new(generate()))
            .clone();
        TestKey {
            kid: kid.to_owned(),
            material,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The same key material under another `kid`.
    pub fn with_kid(&self, kid: &str) -> Self {
        TestKey {
            kid: kid.to_owned(),
            material: Arc::clone(&self.material),
        }
    }

    /// The algorithm [`token`](Self::token) signs with.
    pub fn default_alg(&self) -> &'static str {
        match *self.material {
            Material::Rsa(_) => "RS256",
            Material::Es256(_) => "ES256",
        }
    }

    /// The public JWK (no `alg`, `use: sig`).
    pub fn jwk(&self) -> Value {
        match &*self.material {
            Material::Rsa(pair) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({
                    "kty": "RSA", "kid": self.kid, "use": "sig",
                    "n": b64(&components.n), "e": b64(&components.e),
                })
            }
            Material::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC", "kid": self.kid, "use": "sig", "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
        }
    }

    /// The public key in DER: what a key-confusion attacker uses as an HMAC secret.
    pub fn public_key_der(&self) -> Vec<u8> {
        match &*self.material {
            Material::Rsa(pair) => pair
                .public_key()
                .as_der()
                .expect("RSA public key DER")
                .as_ref()
                .to_vec(),
            Material::Es256(pair) => pair.public_key().as_ref().to_vec(),
        }
    }

    /// A token over `claims` with header `{alg: default, kid, typ: JWT}`.
    pub fn token(&self, claims: &Value) -> String {
        self.token_alg(self.default_alg(), claims)
    }

    /// A token signed with `alg` (`RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512` for RSA
    /// keys; `ES256` for P-256), header `{alg, kid, typ: JWT}`.
    pub fn token_alg(&self, alg: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "kid": self.kid, "typ": "JWT"});
        self.sign(alg, &header, claims)
    }

    /// Signs `header.claims` with this key using `sign_alg`, whatever the header says: for
    /// tokens whose header lies about their algorithm.
    pub fn sign(&self, sign_alg: &str, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = match &*self.material {
            Material::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match sign_alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("an RSA test key cannot sign {other}"),
                };
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
                    .expect("RSA signing");
                sig
            }
            Material::Es256(pair) => {
                assert_eq!(sign_alg, "ES256", "a P-256 test key signs ES256 only");
                pair.sign(&SystemRandom::new(), input.as_bytes())
                    .expect("ECDSA signing")
                    .as_ref()
                    .to_vec()
            }
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// `base64url(header).base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// An unsigned token: `header.claims.` (what `alg: none` looks like).
pub fn unsigned_token(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// A token "signed" with HMAC-SHA256 under `secret`.
pub fn hmac_token(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// A JWK Set document holding the public keys of `keys`.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A clock tests move by hand. Both the wall clock and the monotonic clock advance together.
#[derive(Debug)]
pub struct ManualClock {
    unix: AtomicI64,
    monotonic_ms: AtomicU64,
}

impl ManualClock {
    pub fn at(unix_seconds: i64) -> Arc<Self> {
        Arc::new(ManualClock {
            unix: AtomicI64::new(unix_seconds),
            monotonic_ms: AtomicU64::new(0),
        })
    }

    pub fn advance(&self, by: Duration) {
        self.unix.fetch_add(
            i64::try_from(by.as_secs()).expect("test durations fit"),
            Ordering::SeqCst,
        );
        self.monotonic_ms.fetch_add(
            u64::try_from(by.as_millis()).expect("test durations fit"),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn unix_seconds(&self) -> i64 {
        self.unix.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.monotonic_ms.load(Ordering::SeqCst))
    }
}

/// A fetcher serving whatever the test sets, counting calls. `None` simulates an outage.
#[derive(Debug, Default)]
pub struct ScriptedFetcher {
    body: Mutex<Option<Bytes>>,
    calls: AtomicUsize,
}

impl ScriptedFetcher {
    pub fn serving(jwks: &Value) -> Arc<Self> {
        let fetcher = Arc::new(ScriptedFetcher::default());
        fetcher.serve(jwks);
        fetcher
    }

    pub fn down() -> Arc<Self> {
        Arc::new(ScriptedFetcher::default())
    }

    pub fn serve(&self, jwks: &Value) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Bytes::from(jwks.to_string()));
    }

    pub fn serve_raw(&self, body: &'static str) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Bytes::from_static(body.as_bytes()));
    }

    pub fn go_down(&self) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl JwksFetcher for ScriptedFetcher {
    async fn fetch(&self) -> Result<Bytes, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(FetchError::Status(http::StatusCode::SERVICE_UNAVAILABLE))
    }
}
