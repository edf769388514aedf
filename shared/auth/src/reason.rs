//! Why a request was denied. Every deny carries exactly one reason; its [`code`](DenyReason::code)
//! is the stable string the logs show (`reason=expired`), so dashboards and alarms can key on it.

use std::fmt;

/// The reason a token (or event) was refused. A deny is a normal answer, not an error: the
/// function returns `isAuthorized: false` and logs the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The event is not an object with string `datastoreEndpoint` and `bearerToken` fields.
    MalformedEvent,
    /// The event carries no token, or only whitespace / a bare `Bearer`.
    MissingToken,
    /// The token is longer than any real access token; refused before any parsing.
    OversizedToken,
    /// Not a compact JWS: wrong number of segments, bad base64url, header not a JSON object.
    MalformedToken,
    /// `alg: none` (in any letter case): an unsigned token.
    AlgNone,
    /// An HMAC algorithm (`HS256`...): never accepted, which also defeats the RS256→HS256
    /// key-confusion trick (signing with the public key as an HMAC secret).
    AlgHmac,
    /// A signature algorithm outside `ALLOWED_ALGORITHMS`, or not a JOSE algorithm at all.
    AlgNotAllowed,
    /// The header lists `crit` extensions; we implement none, so RFC 7515 §4.1.11 says reject.
    UnsupportedHeader,
    /// No `kid` in the header: we only ever pick the key by `kid`.
    MissingKid,
    /// No key with this `kid` in the JWK Set, even after the rate-limited re-fetch.
    UnknownKid,
    /// No JWK Set has been loaded yet (the identity provider could not be reached).
    JwksUnavailable,
    /// The key with this `kid` cannot verify this `alg` (wrong key type or curve, or the JWK
    /// pins a different `alg`).
    KeyAlgMismatch,
    /// The signature does not verify.
    BadSignature,
    /// The payload is not a JSON object of well-typed claims (e.g. `exp` as a string).
    InvalidClaims,
    /// `iss` missing or not the configured issuer.
    WrongIssuer,
    /// `aud` missing or not an accepted audience.
    WrongAudience,
    /// A claim the response needs is absent: `exp`, `sub`, or both `iat` and `nbf`.
    MissingClaim,
    /// `exp` is in the past (beyond the clock skew).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the clock skew).
    NotYetValid,
    /// No SMART scope (`patient/`, `user/`, `system/`, `launch`) among the token's scopes.
    NoSmartScope,
}

impl DenyReason {
    /// Every reason, for exhaustive tests and documentation.
    pub const ALL: [DenyReason; 20] = [
        Self::MalformedEvent,
        Self::MissingToken,
        Self::OversizedToken,
        Self::MalformedToken,
        Self::AlgNone,
        Self::AlgHmac,
        Self::AlgNotAllowed,
        Self::UnsupportedHeader,
        Self::MissingKid,
        Self::UnknownKid,
        Self::JwksUnavailable,
        Self::KeyAlgMismatch,
        Self::BadSignature,
        Self::InvalidClaims,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::MissingClaim,
        Self::Expired,
        Self::NotYetValid,
        Self::NoSmartScope,
    ];

    /// The stable code written to the logs.
    pub const fn code(self) -> &'static str {
        match self {
            Self::MalformedEvent => "malformed_event",
            Self::MissingToken => "missing_token",
            Self::OversizedToken => "oversized_token",
            Self::MalformedToken => "malformed_token",
            Self::AlgNone => "alg_none",
            Self::AlgHmac => "alg_hmac",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::UnsupportedHeader => "unsupported_header",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::JwksUnavailable => "jwks_unavailable",
            Self::KeyAlgMismatch => "key_alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::InvalidClaims => "invalid_claims",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim => "missing_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::NoSmartScope => "no_smart_scope",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let codes: HashSet<_> = DenyReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), DenyReason::ALL.len());
        for code in codes {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }
}
