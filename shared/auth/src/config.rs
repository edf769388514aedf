//! The token decoder's configuration, read once at init. A missing or invalid variable stops the
//! function there, with the variable's name in the error: a misconfigured decoder must fail its
//! first cold start loudly, not deny (or worse, allow) quietly.

use std::time::Duration;

use healthimport::config::{self as env_config, ConfigError, Env};

use super::alg::AllowedAlgorithms;
use super::claims::ClaimPolicy;
use super::fetch::{JwksUrl, DEFAULT_FETCH_TIMEOUT};
use super::keys::{KeySet, SkippedKey};

pub const TOKEN_ISSUER: &str = "TOKEN_ISSUER";
pub const JWKS_URL: &str = "JWKS_URL";
pub const JWKS_JSON: &str = "JWKS_JSON";
pub const TOKEN_AUDIENCE: &str = "TOKEN_AUDIENCE";
pub const HEALTHLAKE_ROLE_ARN: &str = "HEALTHLAKE_ROLE_ARN";
pub const ALLOWED_ALGORITHMS: &str = "ALLOWED_ALGORITHMS";
pub const CLOCK_SKEW_SECONDS: &str = "CLOCK_SKEW_SECONDS";
pub const JWKS_REFRESH_SECONDS: &str = "JWKS_REFRESH_SECONDS";
pub const JWKS_TIMEOUT_MS: &str = "JWKS_TIMEOUT_MS";

const DEFAULT_CLOCK_SKEW_SECONDS: u32 = 60;
/// More skew than this would keep an expired token valid for long: a typo, not a setting.
const MAX_CLOCK_SKEW_SECONDS: u32 = 300;
const DEFAULT_JWKS_REFRESH_SECONDS: u64 = 3600;
const MIN_JWKS_REFRESH_SECONDS: u64 = 60;
const MAX_JWKS_REFRESH_SECONDS: u64 = 7 * 24 * 3600;
/// Below this, even a nearby identity provider cannot answer over TLS: every fetch would fail.
const MIN_JWKS_TIMEOUT_MS: u64 = 50;
/// HealthLake gives the whole invocation one second, cold start included; a fetch allowed more
/// than this would leave no time for init and the decision.
const MAX_JWKS_TIMEOUT_MS: u64 = 900;

/// Where the keys come from.
#[derive(Debug)]
pub enum KeySource {
    Url(JwksUrl),
    /// `JWKS_JSON`, parsed at init, with the keys that were left out.
    Inline {
        keys: KeySet,
        skipped: Vec<SkippedKey>,
    },
}

#[derive(Debug)]
pub struct TokenDecoderConfig {
    pub issuer: String,
    pub keys: KeySource,
    /// `TOKEN_AUDIENCE`; empty means the event's data store endpoint.
    pub audiences: Vec<String>,
    pub role_arn: String,
    pub algorithms: AllowedAlgorithms,
    pub clock_skew_seconds: u32,
    pub refresh_after: Duration,
    /// `JWKS_TIMEOUT_MS`: the whole-request deadline of a JWK Set fetch.
    pub jwks_timeout: Duration,
}

impl TokenDecoderConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let issuer = env_config::required(env, TOKEN_ISSUER)?;
        let role_arn = env_config::required(env, HEALTHLAKE_ROLE_ARN)?;
        validate_role_arn(&role_arn).map_err(|reason| invalid(HEALTHLAKE_ROLE_ARN, reason))?;

        let algorithms = match env_config::optional(env, ALLOWED_ALGORITHMS) {
            None => AllowedAlgorithms::default(),
            Some(raw) => raw
                .parse()
                .map_err(|e| invalid(ALLOWED_ALGORITHMS, format!("{raw:?}: {e}")))?,
        };

        let keys = match (
            env_config::optional(env, JWKS_URL),
            env_config::optional(env, JWKS_JSON),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    JWKS_JSON,
                    format!("set either {JWKS_URL} or {JWKS_JSON}, not both"),
                ))
            }
            (None, None) => return Err(ConfigError::Missing(JWKS_URL.to_owned())),
            (Some(url), None) => KeySource::Url(
                JwksUrl::parse(&url).map_err(|e| invalid(JWKS_URL, format!("{url:?}: {e}")))?,
            ),
            (None, Some(json)) => {
                let (keys, skipped) = KeySet::parse(json.as_bytes(), &algorithms)
                    .map_err(|e| invalid(JWKS_JSON, e.to_string()))?;
                if keys.is_empty() {
                    return Err(invalid(
                        JWKS_JSON,
                        format!("no usable signing key (allowed algorithms: {algorithms})"),
                    ));
                }
                KeySource::Inline { keys, skipped }
            }
        };

        let clock_skew_seconds =
            env_config::parsed_or(env, CLOCK_SKEW_SECONDS, DEFAULT_CLOCK_SKEW_SECONDS)?;
        if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
            return Err(invalid(
                CLOCK_SKEW_SECONDS,
                format!("{clock_skew_seconds} is above the maximum of {MAX_CLOCK_SKEW_SECONDS}"),
            ));
        }
        let refresh =
            env_config::parsed_or(env, JWKS_REFRESH_SECONDS, DEFAULT_JWKS_REFRESH_SECONDS)?;
        if !(MIN_JWKS_REFRESH_SECONDS..=MAX_JWKS_REFRESH_SECONDS).contains(&refresh) {
            return Err(invalid(
                JWKS_REFRESH_SECONDS,
                format!(
                    "{refresh} is outside {MIN_JWKS_REFRESH_SECONDS}..={MAX_JWKS_REFRESH_SECONDS}"
                ),
            ));
        }

        let default_timeout_ms =
            u64::try_from(DEFAULT_FETCH_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        let timeout_ms = env_config::parsed_or(env, JWKS_TIMEOUT_MS, default_timeout_ms)?;
        if !(MIN_JWKS_TIMEOUT_MS..=MAX_JWKS_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(invalid(
                JWKS_TIMEOUT_MS,
                format!(
                    "{timeout_ms} is outside {MIN_JWKS_TIMEOUT_MS}..={MAX_JWKS_TIMEOUT_MS} \
                     (HealthLake allows the decoder one second in all)"
                ),
            ));
        }

        Ok(TokenDecoderConfig {
            issuer,
            keys,
            audiences: env_config::list(env, TOKEN_AUDIENCE),
            role_arn,
            algorithms,
            clock_skew_seconds,
            refresh_after: Duration::from_secs(refresh),
            jwks_timeout: Duration::from_millis(timeout_ms),
        })
    }

    pub fn claim_policy(&self) -> ClaimPolicy {
        ClaimPolicy {
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            clock_skew_seconds: i64::from(self.clock_skew_seconds),
        }
    }
}

fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// `arn:<partition>:iam::<12-digit account>:role/<path/name>`: HealthLake assumes this role, so a
/// typo here would fail every allowed request at HealthLake instead of at init.
fn validate_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = matches!(
        parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty())
    );
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{arn:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        ))
    }
}
