//! The JWK Set cache: loaded at init, kept across warm invocations, refreshed after its TTL, and
//! re-fetched for an unknown `kid` at most once per [`CachePolicy::min_refetch_interval`], so a
//! flood of forged `kid`s costs the identity provider one request a minute, not one per token.
//!
//! The warm path is a read lock and a hash lookup. The network is touched only when a refresh is
//! due, and then by one caller at a time; a failed refresh keeps the previous keys (an identity
//! provider outage must not lock every user out once the TTL passes) and is retried no sooner
//! than the refetch interval. A JWK Set with no usable key (empty, symmetric keys only, key types
//! or algorithms we do not accept) counts as a failed refresh: swapping it in would deny every
//! token until the next refresh, so it is never allowed to replace keys that work.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tracing::{info, warn};

use super::alg::AllowedAlgorithms;
use super::clock::Clock;
use super::fetch::{FetchError, JwksFetcher, NoFetch};

use super::keys::{JwksError, KeySet, SkippedKey};
use super::reason::DenyReason;

/// When the cache may go to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Age after which the key set is refreshed (`JWKS_REFRESH_SECONDS`).
    pub refresh_after: Duration,
    /// Minimum time between an attempt and an unknown-`kid` (or retried TTL) re-fetch.
    pub min_refetch_interval: Duration,
    /// Minimum time between attempts while no key set has ever loaded. Shorter than the refetch
    /// interval: until the first load every request is denied, so recovering fast matters more,
    /// and one request every few seconds is still no flood.
    pub retry_while_empty: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            refresh_after: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(60),
            retry_while_empty: Duration::from_secs(5),
        }
    }
}

/// Why a fetch happens; logged with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshCause {
    Init,
    NeverLoaded,
    Expired,
    UnknownKid,
}

impl RefreshCause {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::NeverLoaded => "never_loaded",
            Self::Expired => "expired",
            Self::UnknownKid => "unknown_kid",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("fetching the JWK Set failed")]
    Fetch(#[from] FetchError),
    #[error("the fetched document is not a JWK Set")]
    Parse(#[from] JwksError),
    /// The document parsed, but none of its keys is usable (with these allowed algorithms).
    #[error(
        "the JWK Set has no usable signing key ({skipped} skipped; allowed algorithms: {allowed})"
    )]
    NoUsableKey { skipped: usize, allowed: String },
}

struct State {
    keys: Arc<KeySet>,
    /// Monotonic time of the last successful load; `None` until one succeeds.
    loaded_at: Option<Duration>,
    /// Monotonic time of the last fetch attempt, successful or not.
    last_attempt: Option<Duration>,
}

/// Decides whether a fetch is due. Pure, so the rate limits are tested without async or time.
fn refresh_due(
    loaded_at: Option<Duration>,
    last_attempt: Option<Duration>,
    kid_known: bool,
    now: Duration,
    policy: &CachePolicy,
) -> Option<RefreshCause> {
    let waited = |min: Duration| last_attempt.is_none_or(|t| now.saturating_sub(t) >= min);
    match loaded_at {
        None => waited(policy.retry_while_empty).then_some(RefreshCause::NeverLoaded),
        Some(t) if now.saturating_sub(t) >= policy.refresh_after => {
            waited(policy.refresh_after.min(policy.min_refetch_interval))
                .then_some(RefreshCause::Expired)
        }
        Some(_) if !kid_known => {
            waited(policy.min_refetch_interval).then_some(RefreshCause::UnknownKid)
        }
        Some(_) => None,
    }
}

pub struct JwksCache<F = NoFetch, C = super::clock::SystemClock> {
    /// `None` for an inline `JWKS_JSON`: fixed keys, no network, no refresh.
    fetcher: Option<F>,
    clock: C,
    allowed: AllowedAlgorithms,
    policy: CachePolicy,
    state: RwLock<State>,
    /// Serialises fetches, so concurrent callers that all find a refresh due trigger one fetch.
    refresh_gate: tokio::sync::Mutex<()>,
}

impl<F: JwksFetcher, C: Clock> JwksCache<F, C> {
    /// A fixed key set (`JWKS_JSON`): never fetched, never refreshed. Generic over the fetcher
    /// type only so that one decoder type covers both key sources.
    pub fn fixed(keys: KeySet, clock: C) -> Self {
        let now = clock.monotonic();
        JwksCache {
            fetcher: None,
            clock,
            allowed: AllowedAlgorithms::default(),
            policy: CachePolicy::default(),
            state: RwLock::new(State {
                keys: Arc::new(keys),
                loaded_at: Some(now),
                last_attempt: Some(now),
            }),
            refresh_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// An empty cache over `fetcher`; call [`load`](Self::load) at init.
    pub fn remote(fetcher: F, clock: C, allowed: AllowedAlgorithms, policy: CachePolicy) -> Self {
        JwksCache {
            fetcher: Some(fetcher),
            clock,
            allowed,
            policy,
            state: RwLock::new(State {
                keys: Arc::new(KeySet::default()),
                loaded_at: None,
                last_attempt: None,
            }),
            refresh_gate: tokio::sync::Mutex::new(()),
        }
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Fetches now, whatever the rate limits say (init). On failure the cache stays as it was and
    /// the function keeps running: requests are denied until a later refresh succeeds.
    pub async fn load(&self) -> Result<usize, RefreshError> {
        let _gate = self.refresh_gate.lock().await;
        self.fetch_and_store(RefreshCause::Init).await
    }

    /// The key set holding `kid`, refreshing first if a refresh is due.
    pub async fn lookup(&self, kid: &str) -> Result<Arc<KeySet>, DenyReason> {
        let (keys, due) = self.snapshot(kid);
        let keys = match due {
            None => keys,
            Some(cause) => {
                self.refresh(cause, kid).await;
                self.snapshot(kid).0
            }
        };
        if keys.get(kid).is_some() {
            Ok(keys)
        } else if self.read().loaded_at.is_none() {
            Err(DenyReason::JwksUnavailable)
        } else {
            Err(DenyReason::UnknownKid)
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Poison only means another thread panicked mid-read or mid-swap; every write replaces
        // whole values, so the state is consistent either way.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(&self, kid: &str) -> (Arc<KeySet>, Option<RefreshCause>) {
        let state = self.read();
        let due = self.fetcher.as_ref().and_then(|_| {
            refresh_due(
                state.loaded_at,
                state.last_attempt,
                state.keys.get(kid).is_some(),
                self.clock.monotonic(),
                &self.policy,
            )
        });
        (Arc::clone(&state.keys), due)
    }

    async fn refresh(&self, cause: RefreshCause, kid: &str) {
        let _gate = self.refresh_gate.lock().await;
        // Another caller may have refreshed while this one waited for the gate.
        if self.snapshot(kid).1.is_none() {
            return;
        }
        if let Err(error) = self.fetch_and_store(cause).await {
            let kept = self.read().keys.len();
            warn!(
                cause = cause.as_str(),
                error = %error,
                source = error_chain(&error),
                kept_keys = kept,
                "JWKS refresh failed; keeping the previous keys"
            );
        }
    }

    /// Fetches and parses; the caller holds the gate.
    async fn fetch_and_store(&self, cause: RefreshCause) -> Result<usize, RefreshError> {
        let Some(fetcher) = &self.fetcher else {
            return Ok(self.read().keys.len());
        };
        let started = self.clock.monotonic();
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .last_attempt = Some(started);
        let body = fetcher.fetch().await?;
        let (keys, skipped) = KeySet::parse(&body, &self.allowed)?;
        log_skipped(&skipped);
        let count = keys.len();
        if count == 0 {
            // Not stored: the previous keys (if any) stay, and the attempt time set above makes
            // the next try wait like any failed refresh. The caller logs the decision.
            return Err(RefreshError::NoUsableKey {
                skipped: skipped.len(),
                allowed: self.allowed.to_string(),
            });
        }
        info!(
            cause = cause.as_str(),
            keys = count,
            kids = ?keys.kids(),
            "JWKS loaded"
        );
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.keys = Arc::new(keys);
        state.loaded_at = Some(started);
        Ok(count)
    }
}

/// Logs the keys a JWK Set load left out, one warning each (kid and reason only).
pub fn log_skipped(skipped: &[SkippedKey]) {
    for key in skipped {
        warn!(kid = key.kid.as_deref().unwrap_or("-"), reason = %key.reason, "JWK skipped");
    }
}

/// The `source()` chain of an error, for one log field (hyper's top-level errors say little).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = String::new();
    let mut source = error.source();
    while let Some(e) = source {
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&e.to_string());
        source = e.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> CachePolicy {
        CachePolicy::default()
    }

    /// Loaded at, last attempt, kid known, now (seconds), and the refresh that must be due.
    type Case = (Option<u64>, Option<u64>, bool, u64, Option<RefreshCause>);

    fn assert_due(p: &CachePolicy, cases: &[Case]) {
        for &(loaded_at, last_attempt, kid_known, now, expected) in cases {
            assert_eq!(
                refresh_due(loaded_at.map(S), last_attempt.map(S), kid_known, S(now), p),
                expected,
                "loaded at {loaded_at:?}, attempted at {last_attempt:?}, kid known {kid_known}, now {now}"
            );
        }
    }

    #[test]
    fn never_loaded_retries_every_few_seconds() {
        assert_due(
            &policy(),
            &[
                (None, None, false, 0, Some(RefreshCause::NeverLoaded)),
                (None, Some(10), false, 14, None),
                (None, Some(10), false, 15, Some(RefreshCause::NeverLoaded)),
            ],
        );
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        assert_due(
            &policy(),
            &[
                // Loaded at 0: a known kid never triggers a fetch before the TTL.
                (Some(0), Some(0), true, 59, None),
                (Some(0), Some(0), false, 59, None),
                (Some(0), Some(0), false, 60, Some(RefreshCause::UnknownKid)),
                // A failed attempt at 100 counts too.
                (Some(0), Some(100), false, 159, None),
                (
                    Some(0),
                    Some(100),
                    false,
                    160,
                    Some(RefreshCause::UnknownKid),
                ),
            ],
        );
    }

    #[test]
    fn ttl_expiry_refreshes_and_failed_refreshes_back_off() {
        assert_due(
            &policy(),
            &[
                (Some(0), Some(0), true, 3599, None),
                (Some(0), Some(0), true, 3600, Some(RefreshCause::Expired)),
                // The refresh at 3600 failed: stale keys are used, next attempt a minute later.
                (Some(0), Some(3600), true, 3659, None),
                (Some(0), Some(3600), false, 3659, None),
                (Some(0), Some(3600), true, 3660, Some(RefreshCause::Expired)),
            ],
        );
    }

    #[test]
    fn short_ttl_is_not_stretched_by_the_refetch_interval() {
        let p = CachePolicy {
            refresh_after: S(10),
            ..policy()
        };
        assert_due(
            &p,
            &[(Some(0), Some(0), true, 10, Some(RefreshCause::Expired))],
        );
    }

    #[test]
    fn error_chain_joins_sources() {
        let e = RefreshError::Fetch(FetchError::Request("connection refused".into()));
        assert_eq!(error_chain(&e), "request failed: connection refused");
    }
}
