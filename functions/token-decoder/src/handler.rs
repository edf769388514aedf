//! The token decoder's per-request handler: one decision, one log line, one metric line. The
//! validation itself is the `healthimport-auth` crate; building the decoder is `wiring`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use healthimport::metrics::{MetricsSink, Observation};
use healthimport_auth::{AuthResponse, Clock, Decision, DenyReason, JwksFetcher, TokenDecoder};
use serde_json::Value;
use tracing::{info, warn};

/// One FHIR request's decision. Never fails: every problem is a deny in the response.
pub async fn handle<F: JwksFetcher, C: Clock>(
    decoder: &TokenDecoder<F, C>,
    metrics: &impl MetricsSink,
    event: Value,
) -> Result<AuthResponse, Infallible> {
    let started = Instant::now();
    let decision = decoder.decide(&event).await;
    let latency = started.elapsed();
    log_decision(&decision, latency);
    // The verdict, its reason code and the time: nothing of the token, its claims or the caller.
    metrics.emit(Observation::TokenDecision {
        allowed: decision.is_allowed(),
        reason: decision.deny_reason.map_or("none", DenyReason::code),
        latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
    });
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
    // `tracing` fixes a callsite's level at compile time, so two levels need two callsites; the
    // macro gives them one field list, so the warn and info lines cannot drift apart.
    macro_rules! token_decision {
        ($level:ident) => {
            $level!(
                operation,
                kid,
                issuer,
                decision = verdict,
                reason,
                latency_us,
                "token decision"
            )
        };
    }
    if decision.deny_reason == Some(DenyReason::JwksUnavailable) {
        // Not the caller's fault: the operator must look at the identity provider.
        token_decision!(warn);
    } else {
        token_decision!(info);
    }
}
