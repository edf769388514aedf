//! The decision: HealthLake's event in, an allow or a reasoned deny out. Every step that can fail
//! maps to a [`DenyReason`]; nothing here returns an error or panics on any input, so a hostile
//! token can only ever produce `isAuthorized: false`.

use serde_json::Value;

use super::alg::AllowedAlgorithms;
use super::cache::JwksCache;
use super::claims::{self, ClaimPolicy, Claims};
use super::clock::Clock;
use super::event::{AuthEvent, AuthResponse};
use super::fetch::JwksFetcher;
use super::reason::DenyReason;
use super::token;

/// Longest excerpt of an untrusted string (`kid`, `iss`, operation) that goes into a log line.
const MAX_LOGGED_CHARS: usize = 64;

/// What the handler returns and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub response: AuthResponse,
    /// `None` when allowed.
    pub deny_reason: Option<DenyReason>,
    /// Safe-to-log context: never the token, never the claim set.
    pub log: DecisionLog,
}

/// The fields a decision is logged with, already sanitised (printable ASCII, truncated): they
/// come from untrusted input and must not be able to forge log lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionLog {
    pub operation: Option<String>,
    pub kid: Option<String>,
    /// The token's `iss`, once its signature has verified.
    pub issuer: Option<String>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.deny_reason.is_none()
    }

    /// `allow` or `deny`, for the log line.
    pub fn verdict(&self) -> &'static str {
        if self.is_allowed() {
            "allow"
        } else {
            "deny"
        }
    }
}

pub struct TokenDecoder<F, C> {
    policy: ClaimPolicy,
    allowed: AllowedAlgorithms,
    role_arn: String,
    keys: JwksCache<F, C>,
}

impl<F: JwksFetcher, C: Clock> TokenDecoder<F, C> {
    pub fn new(
        policy: ClaimPolicy,
        allowed: AllowedAlgorithms,
        role_arn: String,
        keys: JwksCache<F, C>,
    ) -> Self {
        TokenDecoder {
            policy,
            allowed,
            role_arn,
            keys,
        }
    }

    pub fn keys(&self) -> &JwksCache<F, C> {
        &self.keys
    }

    pub async fn decide(&self, event: &Value) -> Decision {
        let mut log = DecisionLog::default();
        let endpoint = event
            .get("datastoreEndpoint")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.evaluate(event, &mut log).await {
            Ok(granted) => Decision {
                response: AuthResponse::allow(granted, endpoint, &self.role_arn),
                deny_reason: None,
                log,
            },
            Err(reason) => Decision {
                response: AuthResponse::deny(
                    &self.policy.issuer,
                    endpoint,
                    &self.role_arn,
                    self.keys.clock().unix_seconds(),
                ),
                deny_reason: Some(reason),
                log,
            },
        }
    }

    async fn evaluate(
        &self,
        event: &Value,
        log: &mut DecisionLog,
    ) -> Result<claims::Granted, DenyReason> {
        let event = AuthEvent::from_value(event)?;
        log.operation = event.operation_name.map(loggable);

        let token = token::strip_bearer(event.bearer_token);
        if token.is_empty() {
            return Err(DenyReason::MissingToken);
        }
        let segments = token::split(token)?;
        let header = token::decode_header(segments.header)?;
        log.kid = header.kid.as_deref().map(loggable);

        // The algorithm must be allowed before anything else is looked at: `none` and HMAC end
        // here, whatever the rest of the token says.
        let alg = self.allowed.admit(&header.alg)?;
        if header.has_crit {
            return Err(DenyReason::UnsupportedHeader);
        }
        let kid = header.kid.ok_or(DenyReason::MissingKid)?;
        let key_set = self.keys.lookup(&kid).await?;
        let key = key_set.get(&kid).ok_or(DenyReason::UnknownKid)?;
        if !key.accepts(alg) {
            return Err(DenyReason::KeyAlgMismatch);
        }
        token::verify(&segments, key, alg)?;

        // Only now, with the signature verified, is the payload read at all.
        let payload =
            token::decode_segment(segments.payload).map_err(|_| DenyReason::InvalidClaims)?;
        let claims = Claims::from_json(&payload)?;
        log.issuer = claims.issuer().map(loggable);
        // Wall-clock time taken after any JWKS fetch, so a slow fetch cannot stretch validity.
        let now = self.keys.clock().unix_seconds();
        claims::check(claims, &self.policy, event.datastore_endpoint, now)
    }
}

/// Printable ASCII only, at most [`MAX_LOGGED_CHARS`] characters.
fn loggable(untrusted: &str) -> String {
    let mut out: String = untrusted
        .chars()
        .take(MAX_LOGGED_CHARS)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if untrusted.chars().nth(MAX_LOGGED_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_neutralises_untrusted_text() {
        assert_eq!(loggable("kid-1"), "kid-1");
        assert_eq!(loggable("a\nb\"c é"), "a?b\"c??");
        let long = "k".repeat(100);
        assert_eq!(loggable(&long), format!("{}...", "k".repeat(64)));
    }
}
