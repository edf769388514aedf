//! JWK Set parsing: the identity provider's public keys, by `kid`, each knowing which algorithms
//! it may verify. Pure: bytes in, keys out.
//!
//! Keys are parsed one by one so that a key we cannot use (an encryption key, an unknown `kty`, an
//! algorithm outside the allow-list) is skipped and reported instead of failing the whole set:
//! identity providers routinely publish such keys next to their signing keys.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::alg::AllowedAlgorithms;

/// RSA moduli below this are refused (NIST SP 800-131A; every mainstream identity provider uses
/// 2048 bits or more).
const MIN_RSA_BITS: usize = 2048;

/// The kind of public key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn algorithms(self) -> &'static [Algorithm] {
        match self {
            Self::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Self::EcP256 => &[Algorithm::ES256],
            Self::EcP384 => &[Algorithm::ES384],
            Self::Ed25519 => &[Algorithm::EdDSA],
        }
    }
}

/// One usable public key.
pub struct VerifyingKey {
    kind: KeyKind,
    /// The JWK's own `alg`, when it pins one: then only that algorithm may use the key.
    pinned: Option<Algorithm>,
    decoding: DecodingKey,
}

impl VerifyingKey {
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether this key may verify a signature made with `alg`. The algorithm is decided by the
    /// allow-list and the key together, never by the token header alone.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.algorithms().contains(&alg) && self.pinned.is_none_or(|p| p == alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kind", &self.kind)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// Why a JWK was left out of the key set. Logged with the key's `kid` at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Not a JSON object with a string `kty`.
    NotAJwk,
    /// No `kid`: we only select keys by `kid`.
    NoKid,
    /// `use` is not `sig`, or `key_ops` lacks `verify`.
    NotForSignatures,
    /// A symmetric (`oct`) key: HMAC is never accepted.
    Symmetric,
    /// The JWK carries private key material (`d`): a published private key is a leaked key.
    PrivateKeyMaterial,
    UnsupportedKeyType(String),
    UnsupportedCurve(String),
    /// The JWK's `alg` is not a signature algorithm we know.
    UnknownAlgorithm(String),
    /// None of the algorithms this key could verify is in `ALLOWED_ALGORITHMS`.
    AlgorithmNotAllowed,
    /// Missing or malformed key parameters (`n`, `e`, `x`, `y`), or coordinates of the wrong size.
    BadParameters,
    /// An RSA modulus under 2048 bits.
    WeakRsaKey {
        bits: usize,
    },
    /// A second key with an already-seen `kid`: the first one is kept.
    DuplicateKid,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAJwk => f.write_str("not a JWK"),
            Self::NoKid => f.write_str("no kid"),
            Self::NotForSignatures => f.write_str("not a signature key"),
            Self::Symmetric => f.write_str("symmetric key"),
            Self::PrivateKeyMaterial => f.write_str("contains private key material"),
            Self::UnsupportedKeyType(kty) => write!(f, "unsupported kty {kty:?}"),
            Self::UnsupportedCurve(crv) => write!(f, "unsupported crv {crv:?}"),
            Self::UnknownAlgorithm(alg) => write!(f, "unknown alg {alg:?}"),
            Self::AlgorithmNotAllowed => f.write_str("no allowed algorithm fits this key"),
            Self::BadParameters => f.write_str("malformed key parameters"),
            Self::WeakRsaKey { bits } => write!(f, "RSA key of {bits} bits"),
            Self::DuplicateKid => f.write_str("duplicate kid"),
        }
    }
}

/// A JWK left out of the set, with its `kid` when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub kid: Option<String>,
    pub reason: SkipReason,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWK Set is not a JSON object with a \"keys\" array")]
    NotAJwkSet(#[source] serde_json::Error),
}

/// The usable keys of a JWK Set, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// Parses a JWK Set document, keeping the keys usable with `allowed` and reporting the others.
    pub fn parse(
        json: &[u8],
        allowed: &AllowedAlgorithms,
    ) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = serde_json::from_slice(json).map_err(JwksError::NotAJwkSet)?;

        let mut keys = HashMap::with_capacity(raw.keys.len());
        let mut skipped = Vec::new();
        for value in raw.keys {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let outcome = match (parse_key(value, allowed), kid) {
                (Err(reason), kid) => Err((kid, reason)),
                (Ok(_), None) => Err((None, SkipReason::NoKid)),
                (Ok(_), Some(kid)) if keys.contains_key(&kid) => {
                    Err((Some(kid), SkipReason::DuplicateKid))
                }
                (Ok(key), Some(kid)) => Ok((kid, key)),
            };
            match outcome {
                Ok((kid, key)) => {
                    keys.insert(kid, key);
                }
                Err((kid, reason)) => skipped.push(SkippedKey { kid, reason }),
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, sorted (for logs and tests).
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde_json::Value>,
}

fn parse_key(
    value: serde_json::Value,
    allowed: &AllowedAlgorithms,
) -> Result<VerifyingKey, SkipReason> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|_| SkipReason::NotAJwk)?;
    if jwk.d.is_some() {
        return Err(SkipReason::PrivateKeyMaterial);
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig")
        || jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err(SkipReason::NotForSignatures);
    }

    let (kind, decoding) = match jwk.kty.as_str() {
        "RSA" => {
            let n = b64(jwk.n.as_deref())?;
            let e = b64(jwk.e.as_deref())?;
            let significant = &n[n.iter().position(|b| *b != 0).unwrap_or(n.len())..];
            let bits = significant.first().map_or(0, |top| {
                significant.len() * 8 - top.leading_zeros() as usize
            });
            if bits < MIN_RSA_BITS {
                return Err(SkipReason::WeakRsaKey { bits });
            }
            if e.iter().all(|b| *b == 0) {
                return Err(SkipReason::BadParameters);
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let (kind, size) = match jwk.crv.as_deref() {
                Some("P-256") => (KeyKind::EcP256, 32),
                Some("P-384") => (KeyKind::EcP384, 48),
                other => return Err(SkipReason::UnsupportedCurve(other.unwrap_or("").to_owned())),
            };
            let x = b64(jwk.x.as_deref())?;
            let y = b64(jwk.y.as_deref())?;
            if x.len() != size || y.len() != size {
                return Err(SkipReason::BadParameters);
            }
            // The uncompressed SEC1 point aws-lc expects; it checks the point is on the curve.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(SkipReason::UnsupportedCurve(jwk.crv.unwrap_or_default()));
            }
            let x = b64(jwk.x.as_deref())?;
            if x.len() != 32 {
                return Err(SkipReason::BadParameters);
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        "oct" => return Err(SkipReason::Symmetric),
        other => return Err(SkipReason::UnsupportedKeyType(other.to_owned())),
    };

    let pinned = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(
            name.parse::<Algorithm>()
                .map_err(|_| SkipReason::UnknownAlgorithm(name.to_owned()))?,
        ),
    };
    let key = VerifyingKey {
        kind,
        pinned,
        decoding,
    };
    if allowed.iter().any(|alg| key.accepts(alg)) {
        Ok(key)
    } else {
        Err(SkipReason::AlgorithmNotAllowed)
    }
}

fn b64(field: Option<&str>) -> Result<Vec<u8>, SkipReason> {
    let field = field.ok_or(SkipReason::BadParameters)?;
    URL_SAFE_NO_PAD
        .decode(field)
        .ok()
        .filter(|bytes| !bytes.is_empty())
        .ok_or(SkipReason::BadParameters)
}

#[cfg(test)]
mod tests {
    // The checks that need no test key. Those parsing generated keys
    // (`healthimport-auth-testing`) are integration tests, `tests/keys.rs`.

    use super::*;
    use serde_json::json;

    fn parse(set: serde_json::Value, allowed: &AllowedAlgorithms) -> (KeySet, Vec<SkippedKey>) {
        KeySet::parse(set.to_string().as_bytes(), allowed).expect("a JWK Set")
    }

    #[test]
    fn not_a_jwk_set_is_an_error() {
        for doc in ["", "[]", "{}", "{\"keys\": {}}", "<html>"] {
            assert!(
                KeySet::parse(doc.as_bytes(), &AllowedAlgorithms::default()).is_err(),
                "{doc}"
            );
        }
        let (set, _) = parse(json!({"keys": []}), &AllowedAlgorithms::default());
        assert!(set.is_empty());
    }
}
