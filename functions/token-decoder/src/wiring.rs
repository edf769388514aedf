//! The decoder as deployed: built once at init from its configuration, with the HTTP(S) JWKS
//! fetcher and the system clock. The binary and the integration tests build it here, so they run
//! the same wiring.

use std::time::Instant;

use healthimport::config::Env;
use healthimport_auth::cache::{error_chain, log_skipped};
use healthimport_auth::{
    CachePolicy, Clock, HttpJwksFetcher, JwksCache, KeySource, SystemClock, TokenDecoder,
    TokenDecoderConfig,
};
use tracing::{info, warn};

use crate::config::InitError;

/// The decoder as deployed: JWK Set over HTTP(S), real clocks.
pub type Decoder = TokenDecoder<HttpJwksFetcher, SystemClock>;

/// Reads the configuration and loads the JWK Set. An unreachable identity provider does not fail
/// init: the function starts and denies (`jwks_unavailable`) until a retry succeeds.
pub async fn init(env: &impl Env) -> Result<Decoder, InitError> {
    let config = TokenDecoderConfig::from_env(env)?;
    init_with(config, SystemClock::new()).await
}

/// [`init`] with an injected clock (tests). The fetch deadline is the configuration's
/// (`JWKS_TIMEOUT_MS`).
pub async fn init_with<C: Clock>(
    config: TokenDecoderConfig,
    clock: C,
) -> Result<TokenDecoder<HttpJwksFetcher, C>, InitError> {
    let policy = config.claim_policy();
    let algorithms = config.algorithms.clone();
    let (cache, source) = match config.keys {
        KeySource::Inline { keys, skipped } => {
            log_skipped(&skipped);
            (JwksCache::fixed(keys, clock), "inline")
        }
        KeySource::Url(url) => {
            let fetcher = HttpJwksFetcher::new(url, config.jwks_timeout)?;
            let cache_policy = CachePolicy {
                refresh_after: config.refresh_after,
                ..CachePolicy::default()
            };
            let cache = JwksCache::remote(fetcher, clock, algorithms.clone(), cache_policy);
            let started = Instant::now();
            if let Err(e) = cache.load().await {
                warn!(
                    error = %e,
                    source = error_chain(&e),
                    elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "JWKS not loaded at init; denying until it loads"
                );
            }
            (cache, "url")
        }
    };
    info!(
        issuer = %config.issuer,
        jwks = source,
        algorithms = %algorithms,
        audiences = config.audiences.len(),
        jwks_timeout_ms = u64::try_from(config.jwks_timeout.as_millis()).unwrap_or(u64::MAX),
        "token decoder ready"
    );
    Ok(TokenDecoder::new(
        policy,
        algorithms,
        config.role_arn,
        cache,
    ))
}
