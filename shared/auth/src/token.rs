//! The compact JWS envelope: size limit, `Bearer ` prefix, the three segments, the protected
//! header and the signature check. Pure; the signature math is `jsonwebtoken`'s (aws-lc).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::keys::VerifyingKey;
use super::reason::DenyReason;

/// Longest token accepted. Real access tokens are 1–4 KB; a larger one is refused before any
/// decoding so a hostile caller cannot make us base64-decode and parse megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest `kid` accepted (also bounds what a forged `kid` puts in the logs).
pub const MAX_KID_CHARS: usize = 256;

/// Removes surrounding whitespace and a leading `Bearer ` (the auth scheme is case-insensitive,
/// RFC 9110 §11.1). HealthLake documents the raw token, but some clients send the header value.
pub fn strip_bearer(raw: &str) -> &str {
    let trimmed = raw.trim();
    match trimmed.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => trimmed[7..].trim_start(),
        _ => trimmed,
    }
}

/// The three base64url segments of a compact JWS, borrowed from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
}

/// Splits a token into its segments, refusing oversized and structurally broken tokens. The
/// signature segment may be empty (that is what an `alg: none` token looks like); the header check
/// reports those as [`DenyReason::AlgNone`].
pub fn split(token: &str) -> Result<Segments<'_>, DenyReason> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(DenyReason::OversizedToken);
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(DenyReason::MalformedToken);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DenyReason::MalformedToken);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(DenyReason::MalformedToken);
    }
    Ok(Segments {
        header,
        payload,
        signature,
        signing_input: &token[..header.len() + 1 + payload.len()],
    })
}

/// The protected header fields we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: String,
    pub kid: Option<String>,
    /// `crit` present: the token demands extensions we do not implement.
    pub has_crit: bool,
}

/// Decodes the protected header. Header parameters that could point us at keys (`jku`, `jwk`,
/// `x5u`, `x5c`) are deliberately ignored: keys come from the configured JWK Set only.
pub fn decode_header(segment: &str) -> Result<JoseHeader, DenyReason> {
    #[derive(Deserialize)]
    struct Raw {
        alg: String,
        kid: Option<String>,
        crit: Option<IgnoredAny>,
    }
    let bytes = decode_segment(segment)?;
    // A derived struct also rejects duplicate members ("alg" twice), a classic parser-differential
    // trick.
    let raw: Raw = serde_json::from_slice(&bytes).map_err(|_| DenyReason::MalformedToken)?;
    if raw
        .kid
        .as_ref()
        .is_some_and(|k| k.chars().count() > MAX_KID_CHARS)
    {
        return Err(DenyReason::MalformedToken);
    }
    Ok(JoseHeader {
        alg: raw.alg,
        kid: raw.kid,
        has_crit: raw.crit.is_some(),
    })
}

/// Base64url (no padding, canonical trailing bits) decoding of one segment.
pub fn decode_segment(segment: &str) -> Result<Vec<u8>, DenyReason> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| DenyReason::MalformedToken)
}

/// Verifies the signature with `key` under `alg`. The caller has already checked that `alg` is
/// allowed and that `key` accepts it; the check is repeated here so this function is safe alone.
pub fn verify(
    segments: &Segments<'_>,
    key: &VerifyingKey,
    alg: Algorithm,
) -> Result<(), DenyReason> {
    if !key.accepts(alg) {
        return Err(DenyReason::KeyAlgMismatch);
    }
    match jsonwebtoken::crypto::verify(
        segments.signature,
        segments.signing_input.as_bytes(),
        key.decoding_key(),
        alg,
    ) {
        Ok(true) => Ok(()),
        // Err: undecodable signature or a key aws-lc refuses (e.g. an EC point off the curve).
        Ok(false) | Err(_) => Err(DenyReason::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_prefix_is_tolerated_in_any_case() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("  bearer   abc \n"), "abc");
        assert_eq!(strip_bearer("BEARER abc"), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
        assert_eq!(strip_bearer("Bearer"), "Bearer");
        assert_eq!(strip_bearer("Bearerabc"), "Bearerabc");
        assert_eq!(strip_bearer("Beé"), "Beé");
    }

    #[test]
    fn split_accepts_three_segments_only() {
        let s = split("aGVh.cGF5.c2ln").expect("three segments");
        assert_eq!(
            (s.header, s.payload, s.signature, s.signing_input),
            ("aGVh", "cGF5", "c2ln", "aGVh.cGF5")
        );
        assert_eq!(split("aGVh.cGF5.").map(|s| s.signature), Ok(""));
        for bad in [
            "", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.c=", "a b.c.d", "a.b+.c", "a.b/.c",
            "é.b.c",
        ] {
            assert_eq!(split(bad), Err(DenyReason::MalformedToken), "{bad:?}");
        }
    }

    #[test]
    fn oversized_token_is_refused_first() {
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(split(&big), Err(DenyReason::OversizedToken));
        let big_garbage = "!".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(split(&big_garbage), Err(DenyReason::OversizedToken));
    }

    fn enc(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn header_fields_are_read_strictly() {
        let h = decode_header(&enc(
            r#"{"alg":"RS256","kid":"k1","typ":"at+jwt","jku":"https://evil"}"#,
        ))
        .expect("valid");
        assert_eq!(
            h,
            JoseHeader {
                alg: "RS256".into(),
                kid: Some("k1".into()),
                has_crit: false
            }
        );
        assert!(
            decode_header(&enc(r#"{"alg":"RS256","crit":["exp"]}"#))
                .expect("valid")
                .has_crit
        );
        for bad in [
            r#"{"kid":"k1"}"#,
            r#"{"alg":256}"#,
            r#"{"alg":"RS256","kid":7}"#,
            r#"{"alg":"RS256","alg":"none"}"#,
            r#"["RS256"]"#,
            "not json",
        ] {
            assert_eq!(
                decode_header(&enc(bad)),
                Err(DenyReason::MalformedToken),
                "{bad}"
            );
        }
        let long_kid = format!(
            r#"{{"alg":"RS256","kid":"{}"}}"#,
            "k".repeat(MAX_KID_CHARS + 1)
        );
        assert_eq!(
            decode_header(&enc(&long_kid)),
            Err(DenyReason::MalformedToken)
        );
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        // "QQ" is canonical for "A"; "QR" has non-zero trailing bits.
        assert_eq!(decode_segment("QQ"), Ok(b"A".to_vec()));
        assert_eq!(decode_segment("QR"), Err(DenyReason::MalformedToken));
        assert_eq!(decode_segment("Q"), Err(DenyReason::MalformedToken));
    }
}
