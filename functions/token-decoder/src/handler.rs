//! The token decoder's behaviour: init (configuration, JWK Set load) and the per-request handler.
//! The validation itself is the `healthimport-auth` crate; this module wires it to Lambda and
//! logs.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use healthimport::config::{ConfigError, Env};
use healthimport_auth::cache::{error_chain, log_skipped};
use healthimport_auth::fetch::{FetcherInitError, FETCH_TIMEOUT};
use healthimport_auth::{
    AuthResponse, CachePolicy, Clock, Decision, DenyReason, HttpJwksFetcher, JwksCache,
    JwksFetcher, KeySource, SystemClock, TokenDecoder, TokenDecoderConfig,
};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_runtime::Diagnostic;
use serde_json::Value;
use tracing::{error, info, warn};

/// The decoder as deployed: JWK Set over HTTP(S), real clocks.
pub type Decoder = TokenDecoder<HttpJwksFetcher, SystemClock>;

/// What can stop the function at init. A bad token is never an error (it is a deny); only a
/// deployment problem is, and it is reported to Lambda with an `errorType` that says which.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("building the JWKS HTTP client failed")]
    HttpClient(#[from] FetcherInitError),
}

impl InitError {
    pub fn error_type(&self) -> &'static str {
        match self {
            InitError::Config(_) => "TokenDecoder.InvalidConfiguration",
            InitError::HttpClient(_) => "TokenDecoder.HttpClient",
        }
    }
}

impl From<&InitError> for Diagnostic {
    fn from(error: &InitError) -> Self {
        let mut message = error.to_string();
        let chain = error_chain(error);
        if !chain.is_empty() {
            message = format!("{message}: {chain}");
        }
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: message,
        }
    }
}

impl From<InitError> for Diagnostic {
    fn from(error: InitError) -> Self {
        Diagnostic::from(&error)
    }
}

/// Reads the configuration and loads the JWK Set. An unreachable identity provider does not fail
/// init: the function starts and denies (`jwks_unavailable`) until a retry succeeds.
pub async fn init(env: &impl Env) -> Result<Decoder, InitError> {
    let config = TokenDecoderConfig::from_env(env)?;
    init_with(config, SystemClock::new(), FETCH_TIMEOUT).await
}

/// [`init`] with an injected clock and fetch timeout (tests).
pub async fn init_with<C: Clock>(
    config: TokenDecoderConfig,
    clock: C,
    fetch_timeout: Duration,
) -> Result<TokenDecoder<HttpJwksFetcher, C>, InitError> {
    let policy = config.claim_policy();
    let algorithms = config.algorithms.clone();
    let (cache, source) = match config.keys {
        KeySource::Inline { keys, skipped } => {
            log_skipped(&skipped);
            (JwksCache::fixed(keys, clock), "inline")
        }
        KeySource::Url(url) => {
            let fetcher = HttpJwksFetcher::new(url, fetch_timeout)?;
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
        "token decoder ready"
    );
    Ok(TokenDecoder::new(
        policy,
        algorithms,
        config.role_arn,
        cache,
    ))
}

/// One FHIR request's decision. Never fails: every problem is a deny in the response.
pub async fn handle<F: JwksFetcher, C: Clock>(
    decoder: &TokenDecoder<F, C>,
    event: Value,
) -> Result<AuthResponse, Infallible> {
    let started = Instant::now();
    let decision = decoder.decide(&event).await;
    log_decision(&decision, started.elapsed());
    Ok(decision.response)
}

/// One line per decision: operation, kid, issuer, decision, reason code, latency. Never the
/// token, never the claims.
fn log_decision(decision: &Decision, latency: Duration) {
    let log = &decision.log;
    let operation = log.operation.as_deref().unwrap_or("-");
    let kid = log.kid.as_deref().unwrap_or("-");
    let issuer = log.issuer.as_deref().unwrap_or("-");
    let reason = decision.deny_reason.map_or("-", DenyReason::code);
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let verdict = decision.verdict();
    if decision.deny_reason == Some(DenyReason::JwksUnavailable) {
        // Not the caller's fault: the operator must look at the identity provider.
        warn!(
            operation,
            kid,
            issuer,
            decision = verdict,
            reason,
            latency_us,
            "token decision"
        );
    } else {
        info!(
            operation,
            kid,
            issuer,
            decision = verdict,
            reason,
            latency_us,
            "token decision"
        );
    }
}

/// Logs an init failure, reports it to the Lambda Runtime API when running on Lambda, and returns
/// the error for `main` to exit with.
pub async fn init_failed(error: InitError) -> lambda_runtime::Error {
    let diagnostic = Diagnostic::from(&error);
    error!(error_type = %diagnostic.error_type, error = %diagnostic.error_message, "init failed");
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        report_init_error(&api, &diagnostic).await;
    }
    error.into()
}

/// Tells Lambda why init failed (`POST /runtime/init/error`), so the init report carries our
/// `errorType` rather than a bare `Runtime.ExitError`. Best effort: the process exits next anyway.
pub async fn report_init_error(runtime_api: &str, diagnostic: &Diagnostic) {
    let body = match serde_json::to_vec(diagnostic) {
        Ok(body) => body,
        Err(e) => {
            error!(error = %e, "could not serialise the init error");
            return;
        }
    };
    // Lambda sets `host:port`; local emulators (cargo lambda) set a full `http://` base URL.
    let base = if runtime_api.starts_with("http://") {
        runtime_api.trim_end_matches('/').to_owned()
    } else {
        format!("http://{runtime_api}")
    };
    let request = http::Request::post(format!("{base}/2018-06-01/runtime/init/error"))
        .header(
            "Lambda-Runtime-Function-Error-Type",
            diagnostic.error_type.as_str(),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)));
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            error!(error = %e, "could not build the init error report");
            return;
        }
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    match tokio::time::timeout(Duration::from_secs(2), client.request(request)).await {
        Ok(Ok(response)) if response.status().is_success() => {}
        Ok(Ok(response)) => {
            error!(status = %response.status(), "the runtime API refused the init error report")
        }
        Ok(Err(e)) => error!(error = %e, "reporting the init error failed"),
        Err(_) => error!("reporting the init error timed out"),
    }
}
