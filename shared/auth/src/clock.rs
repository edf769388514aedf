//! Time, injectable: the token checks need wall-clock Unix seconds; the JWKS cache's TTL and
//! rate limit need a monotonic clock (an NTP step must not make the cache refetch in a loop or
//! never again). Tests drive both with `ManualClock`
//! (crate `healthimport-auth-testing`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_seconds(&self) -> i64;
    /// Time elapsed since an arbitrary fixed origin; never goes backwards.
    fn monotonic(&self) -> Duration;
}

/// The real clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn unix_seconds(&self) -> i64 {
        // A clock before 1970 is a broken host; 0 makes every token look expired (fail closed).
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn unix_seconds(&self) -> i64 {
        (**self).unix_seconds()
    }

    fn monotonic(&self) -> Duration {
        (**self).monotonic()
    }
}
