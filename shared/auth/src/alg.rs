//! The signature-algorithm allow-list. Only asymmetric JOSE algorithms can be allowed: the
//! identity provider signs with a private key and we hold only public keys, so an HMAC "signature"
//! could only ever be made with a secret we do not have, or with public key bytes (the key
//! confusion attack).

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::Algorithm;

use super::reason::DenyReason;

/// The `ALLOWED_ALGORITHMS` default.
pub const DEFAULT_ALGORITHMS: &str = "RS256,PS256,ES256";

/// Every algorithm this crate can verify, by its JOSE name.
const ASYMMETRIC: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// A non-empty set of asymmetric signature algorithms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedAlgorithms(Vec<Algorithm>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmListError {
    #[error("the list is empty")]
    Empty,
    #[error("{0:?} is not allowed: only asymmetric algorithms can be verified with a JWK Set")]
    Symmetric(String),
    #[error("{0:?} is not a supported signature algorithm (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)")]
    Unknown(String),
}

impl AllowedAlgorithms {
    pub fn contains(&self, alg: Algorithm) -> bool {
        self.0.contains(&alg)
    }

    pub fn iter(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.0.iter().copied()
    }

    /// Maps a token header's `alg` to an allowed algorithm, or to the reason it is refused.
    /// Matching is exact (JOSE names are case-sensitive), except that `none` is recognised in any
    /// case so that `"None"` / `"NONE"` attempts are reported as what they are.
    pub fn admit(&self, header_alg: &str) -> Result<Algorithm, DenyReason> {
        if header_alg.eq_ignore_ascii_case("none") {
            return Err(DenyReason::AlgNone);
        }
        // Bytes, not `&str[..2]`: slicing a str mid-character would panic on hostile input.
        if header_alg
            .as_bytes()
            .get(..2)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"HS"))
        {
            return Err(DenyReason::AlgHmac);
        }
        ASYMMETRIC
            .iter()
            .find(|(name, _)| *name == header_alg)
            .map(|(_, alg)| *alg)
            .filter(|alg| self.contains(*alg))
            .ok_or(DenyReason::AlgNotAllowed)
    }
}

impl FromStr for AllowedAlgorithms {
    type Err = AlgorithmListError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let mut algs = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
                return Err(AlgorithmListError::Symmetric(name.to_owned()));
            }
            let alg = ASYMMETRIC
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, alg)| *alg)
                .ok_or_else(|| AlgorithmListError::Unknown(name.to_owned()))?;
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        if algs.is_empty() {
            return Err(AlgorithmListError::Empty);
        }
        Ok(Self(algs))
    }
}

impl Default for AllowedAlgorithms {
    fn default() -> Self {
        Self(vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256])
    }
}

impl fmt::Display for AllowedAlgorithms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for alg in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{alg:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_the_documented_default() {
        assert_eq!(
            DEFAULT_ALGORITHMS.parse::<AllowedAlgorithms>(),
            Ok(AllowedAlgorithms::default())
        );
        assert_eq!(AllowedAlgorithms::default().to_string(), DEFAULT_ALGORITHMS);
    }

    #[test]
    fn hmac_and_none_cannot_be_configured() {
        for raw in ["RS256,HS256", "hs512", "none", "RS256, None"] {
            assert!(
                matches!(
                    raw.parse::<AllowedAlgorithms>(),
                    Err(AlgorithmListError::Symmetric(_))
                ),
                "{raw}"
            );
        }
        assert_eq!(
            " , ".parse::<AllowedAlgorithms>(),
            Err(AlgorithmListError::Empty)
        );
        assert_eq!(
            "RS256,rs256".parse::<AllowedAlgorithms>(),
            Err(AlgorithmListError::Unknown("rs256".into()))
        );
    }

    #[test]
    fn admit_names_the_refusal() {
        let allowed = AllowedAlgorithms::default();
        assert_eq!(allowed.admit("RS256"), Ok(Algorithm::RS256));
        assert_eq!(allowed.admit("ES256"), Ok(Algorithm::ES256));
        assert_eq!(allowed.admit("none"), Err(DenyReason::AlgNone));
        assert_eq!(allowed.admit("nOnE"), Err(DenyReason::AlgNone));
        assert_eq!(allowed.admit("HS256"), Err(DenyReason::AlgHmac));
        assert_eq!(allowed.admit("hs256"), Err(DenyReason::AlgHmac));
        // Supported but not in this allow-list.
        assert_eq!(allowed.admit("RS512"), Err(DenyReason::AlgNotAllowed));
        assert_eq!(allowed.admit("rs256"), Err(DenyReason::AlgNotAllowed));
        assert_eq!(allowed.admit(""), Err(DenyReason::AlgNotAllowed));
        assert_eq!(allowed.admit("H"), Err(DenyReason::AlgNotAllowed));
        assert_eq!(allowed.admit("aé"), Err(DenyReason::AlgNotAllowed));
    }
}
