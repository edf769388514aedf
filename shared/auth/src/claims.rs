//! Claim checks on a token whose signature has already been verified. Pure: the claims, the
//! policy and "now" in; the granted authorization or a deny reason out.
//!
//! Claims are deserialized into strict types: a time claim that is not a JSON number (the
//! `exp`/`nbf` type confusion behind CVE-2026-25537) or a string claim that is not a string makes
//! the whole token invalid rather than making that claim "absent".

use serde::{Deserialize, Deserializer};

use super::reason::DenyReason;
use super::scope;

/// What the token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// The exact `iss` accepted.
    pub issuer: String,
    /// Accepted `aud` values; empty means "the data store endpoint of the event".
    pub audiences: Vec<String>,
    /// Tolerance for clock differences with the identity provider, in seconds.
    pub clock_skew_seconds: i64,
}

/// The verified facts the response is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Space-separated, every scope passed through unchanged.
    pub scope: String,
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
}

/// The claims we read. Unknown claims are ignored; known ones must have the right JSON type.
#[derive(Debug, Deserialize)]
pub struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
    iat: Option<NumericDate>,
    scope: Option<OneOrMany>,
    scp: Option<OneOrMany>,
    #[serde(rename = "fhirUser")]
    fhir_user: Option<String>,
    patient: Option<String>,
}

impl Claims {
    /// Parses the decoded payload. Duplicate members are refused (serde's derived struct does).
    pub fn from_json(payload: &[u8]) -> Result<Claims, DenyReason> {
        serde_json::from_slice(payload).map_err(|_| DenyReason::InvalidClaims)
    }

    /// The `iss` claim: the one claim the decision log carries.
    pub fn issuer(&self) -> Option<&str> {
        self.iss.as_deref()
    }
}

/// A string or an array of strings (`aud`; `scope`/`scp` as some providers emit them).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let slice: &[String] = match self {
            Self::One(s) => std::slice::from_ref(s),
            Self::Many(v) => v,
        };
        slice.iter().map(String::as_str)
    }
}

/// RFC 7519 NumericDate: a JSON number of seconds, possibly fractional; truncated to whole
/// seconds. Anything else (a string, a bool, NaN-like overflow) is a type error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        if let Some(i) = number.as_i64() {
            return Ok(NumericDate(i));
        }
        match number.as_f64() {
            // ±2^53 keeps the cast exact and far beyond any real date.
            Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(NumericDate(f.trunc() as i64)),
            _ => Err(serde::de::Error::custom("NumericDate out of range")),
        }
    }
}

/// Checks the claims against the policy at `now` (Unix seconds). `datastore_endpoint` is the
/// event's endpoint, the expected audience when the policy lists none.
pub fn check(
    claims: Claims,
    policy: &ClaimPolicy,
    datastore_endpoint: &str,
    now: i64,
) -> Result<Granted, DenyReason> {
    let iss = claims.iss.ok_or(DenyReason::WrongIssuer)?;
    if iss != policy.issuer {
        return Err(DenyReason::WrongIssuer);
    }

    let aud = claims.aud.ok_or(DenyReason::WrongAudience)?;
    if !aud
        .iter()
        .any(|a| audience_matches(a, policy, datastore_endpoint))
    {
        return Err(DenyReason::WrongAudience);
    }

    let skew = policy.clock_skew_seconds;
    let exp = claims.exp.ok_or(DenyReason::MissingClaim)?.0;
    if now.saturating_sub(skew) >= exp {
        return Err(DenyReason::Expired);
    }
    let iat = claims.iat.map(|d| d.0);
    let nbf = claims.nbf.map(|d| d.0);
    // The response needs both; a token carrying only one of them gets it for the other.
    let (iat, nbf) = match (iat, nbf) {
        (Some(iat), Some(nbf)) => (iat, nbf),
        (Some(iat), None) => (iat, iat),
        (None, Some(nbf)) => (nbf, nbf),
        (None, None) => return Err(DenyReason::MissingClaim),
    };
    if nbf > now.saturating_add(skew) || iat > now.saturating_add(skew) {
        return Err(DenyReason::NotYetValid);
    }

    let sub = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or(DenyReason::MissingClaim)?;

    // `scope` wins when both are present: it is the standard claim (RFC 8693 / RFC 9068); `scp`
    // is the Okta / Entra spelling.
    let scopes = claims.scope.as_ref().or(claims.scp.as_ref());
    let scope = scopes.map(|s| scope::join(s.iter())).unwrap_or_default();
    if !scope::has_smart_scope(&scope) {
        return Err(DenyReason::NoSmartScope);
    }

    Ok(Granted {
        iss,
        sub,
        iat,
        nbf,
        exp,
        scope,
        fhir_user: claims.fhir_user,
        patient: claims.patient,
    })
}

fn audience_matches(aud: &str, policy: &ClaimPolicy, datastore_endpoint: &str) -> bool {
    if policy.audiences.is_empty() {
        // HealthLake sends the endpoint with a trailing slash; identity providers are configured
        // with or without it.
        let endpoint = datastore_endpoint.trim_end_matches('/');
        !endpoint.is_empty()
            && aud.trim_end_matches('/') == endpoint
            && aud.len() <= endpoint.len() + 1
    } else {
        policy.audiences.iter().any(|accepted| accepted == aud)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000;
    const ENDPOINT: &str = "https://healthlake.us-east-1.amazonaws.com/datastore/abc/r4/";

    fn policy() -> ClaimPolicy {
        ClaimPolicy {
            issuer: "https://idp.example.com".into(),
            audiences: vec![],
            clock_skew_seconds: 60,
        }
    }

    fn base() -> serde_json::Value {
        json!({
            "iss": "https://idp.example.com",
            "sub": "user-1",
            "aud": ENDPOINT,
            "iat": NOW - 10,
            "exp": NOW + 300,
            "scope": "openid launch/patient patient/Observation.rs",
        })
    }

    fn run(claims: serde_json::Value) -> Result<Granted, DenyReason> {
        run_with(claims, &policy())
    }

    fn run_with(claims: serde_json::Value, policy: &ClaimPolicy) -> Result<Granted, DenyReason> {
        let claims = Claims::from_json(claims.to_string().as_bytes())?;
        check(claims, policy, ENDPOINT, NOW)
    }

    fn with(mut v: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
        v[key] = value;
        v
    }

    fn without(mut v: serde_json::Value, key: &str) -> serde_json::Value {
        v.as_object_mut().expect("object").remove(key);
        v
    }

    #[test]
    fn valid_claims_are_granted_with_nbf_falling_back_to_iat() {
        let g = run(base()).expect("granted");
        assert_eq!(g.iss, "https://idp.example.com");
        assert_eq!(g.sub, "user-1");
        assert_eq!((g.iat, g.nbf, g.exp), (NOW - 10, NOW - 10, NOW + 300));
        assert_eq!(g.scope, "openid launch/patient patient/Observation.rs");
        assert_eq!((g.fhir_user, g.patient), (None, None));
    }

    #[test]
    fn explicit_nbf_and_fractional_dates() {
        let g = run(with(
            with(base(), "nbf", json!(NOW - 5)),
            "exp",
            json!(NOW as f64 + 300.9),
        ))
        .expect("granted");
        assert_eq!((g.iat, g.nbf, g.exp), (NOW - 10, NOW - 5, NOW + 300));
        let g = run(with(without(base(), "iat"), "nbf", json!(NOW - 7))).expect("granted");
        assert_eq!((g.iat, g.nbf), (NOW - 7, NOW - 7));
    }

    #[test]
    fn fhir_user_and_patient_pass_through() {
        let claims = with(
            with(
                base(),
                "fhirUser",
                json!("https://fhir.example.com/Practitioner/7"),
            ),
            "patient",
            json!("123"),
        );
        let g = run(claims).expect("granted");
        assert_eq!(
            g.fhir_user.as_deref(),
            Some("https://fhir.example.com/Practitioner/7")
        );
        assert_eq!(g.patient.as_deref(), Some("123"));
    }

    #[test]
    fn issuer_must_match_exactly() {
        assert_eq!(run(without(base(), "iss")), Err(DenyReason::WrongIssuer));
        for iss in [
            "https://idp.example.com/",
            "https://IDP.example.com",
            "https://evil.example.com",
        ] {
            assert_eq!(
                run(with(base(), "iss", json!(iss))),
                Err(DenyReason::WrongIssuer),
                "{iss}"
            );
        }
    }

    #[test]
    fn audience_defaults_to_the_datastore_endpoint_with_or_without_slash() {
        let no_slash = ENDPOINT.trim_end_matches('/');
        assert!(run(with(base(), "aud", json!(no_slash))).is_ok());
        assert!(run(with(base(), "aud", json!(["other", ENDPOINT]))).is_ok());
        for aud in [
            json!("https://healthlake.us-east-1.amazonaws.com/datastore/other/r4/"),
            json!(format!("{ENDPOINT}/")),
            json!(format!("{ENDPOINT}x")),
            json!([]),
            json!(""),
        ] {
            assert_eq!(
                run(with(base(), "aud", aud.clone())),
                Err(DenyReason::WrongAudience),
                "{aud}"
            );
        }
        assert_eq!(run(without(base(), "aud")), Err(DenyReason::WrongAudience));
    }

    #[test]
    fn configured_audiences_replace_the_endpoint() {
        let policy = ClaimPolicy {
            audiences: vec!["api://fhir".into(), "fhir-client".into()],
            ..policy()
        };
        assert!(run_with(with(base(), "aud", json!("fhir-client")), &policy).is_ok());
        assert_eq!(run_with(base(), &policy), Err(DenyReason::WrongAudience));
    }

    #[test]
    fn time_claims_respect_the_skew() {
        assert!(run(with(base(), "exp", json!(NOW - 59))).is_ok());
        assert_eq!(
            run(with(base(), "exp", json!(NOW - 60))),
            Err(DenyReason::Expired)
        );
        assert_eq!(run(with(base(), "exp", json!(0))), Err(DenyReason::Expired));
        assert!(run(with(base(), "nbf", json!(NOW + 60))).is_ok());
        assert_eq!(
            run(with(base(), "nbf", json!(NOW + 61))),
            Err(DenyReason::NotYetValid)
        );
        assert_eq!(
            run(with(base(), "iat", json!(NOW + 61))),
            Err(DenyReason::NotYetValid)
        );
        let strict = ClaimPolicy {
            clock_skew_seconds: 0,
            ..policy()
        };
        assert_eq!(
            run_with(with(base(), "exp", json!(NOW)), &strict),
            Err(DenyReason::Expired)
        );
    }

    #[test]
    fn missing_claims() {
        assert_eq!(run(without(base(), "exp")), Err(DenyReason::MissingClaim));
        assert_eq!(run(without(base(), "iat")), Err(DenyReason::MissingClaim));
        assert_eq!(run(without(base(), "sub")), Err(DenyReason::MissingClaim));
        assert_eq!(
            run(with(base(), "sub", json!(""))),
            Err(DenyReason::MissingClaim)
        );
    }

    #[test]
    fn wrongly_typed_claims_invalidate_the_token() {
        for (key, value) in [
            ("exp", json!("9999999999")),
            ("nbf", json!("0")),
            ("iat", json!(true)),
            ("exp", json!(1e300)),
            ("iss", json!(1)),
            ("sub", json!(["a"])),
            ("aud", json!(1)),
            ("scope", json!({"a": 1})),
            ("fhirUser", json!(7)),
            ("patient", json!(["1"])),
        ] {
            assert_eq!(
                run(with(base(), key, value.clone())),
                Err(DenyReason::InvalidClaims),
                "{key}: {value}"
            );
        }
        // JSON null is "absent": still refused, because exp is required.
        assert_eq!(
            run(with(base(), "exp", json!(null))),
            Err(DenyReason::MissingClaim)
        );
        for payload in ["[]", "\"x\"", "{", r#"{"exp":1,"exp":2}"#] {
            assert!(
                matches!(
                    Claims::from_json(payload.as_bytes()),
                    Err(DenyReason::InvalidClaims)
                ),
                "{payload}"
            );
        }
    }

    #[test]
    fn scp_array_is_joined_and_scope_wins() {
        let scp = with(
            without(base(), "scope"),
            "scp",
            json!(["patient/*.read", "launch"]),
        );
        assert_eq!(
            run(scp.clone()).expect("granted").scope,
            "patient/*.read launch"
        );
        let both = with(scp, "scope", json!("system/*.cruds"));
        assert_eq!(run(both).expect("granted").scope, "system/*.cruds");
    }

    #[test]
    fn a_token_without_smart_scope_is_denied() {
        for scope in [json!("openid profile fhirUser"), json!(""), json!([])] {
            assert_eq!(
                run(with(base(), "scope", scope.clone())),
                Err(DenyReason::NoSmartScope),
                "{scope}"
            );
        }
        assert_eq!(run(without(base(), "scope")), Err(DenyReason::NoSmartScope));
    }
}
