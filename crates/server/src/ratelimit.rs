//! Token-bucket rate limits keyed by caller (a user token for issuance, a `User-Identifier` for
//! queries), answered with 429 and `Retry-After`. Memory is bounded: at most
//! [`MAX_TRACKED`] callers are tracked; when full, buckets that have refilled (callers
//! indistinguishable from new ones) are dropped first, then the stalest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::error::ApiError;

/// Callers tracked at once per limiter.
pub const MAX_TRACKED: usize = 100_000;

/// One caller's bucket: tokens left and when it was last refilled.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A per-caller token bucket: `per_minute` sustained, bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<Vec<u8>, Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests a minute per caller with bursts of `burst`;
    /// `None` when `per_minute` is 0 (unlimited).
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `caller`; `Err` is the 429 to answer, with `Retry-After`.
    pub fn check(&self, caller: &[u8]) -> Result<(), ApiError> {
        self.check_at(caller, Instant::now())
    }

    fn check_at(&self, caller: &[u8], now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(caller) {
            self.evict(&mut buckets, now);
        }
        let b = buckets.entry(caller.to_vec()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / self.per_sec).ceil().max(1.0) as u64;
        Err(too_many(Duration::from_secs(wait)))
    }

    /// Drops refilled buckets; if none, the least recently used half.
    fn evict(&self, buckets: &mut HashMap<Vec<u8>, Bucket>, now: Instant) {
        let full_after = self.burst / self.per_sec;
        buckets.retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() < full_after);
        if buckets.len() >= MAX_TRACKED {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
            let mid = ages.len() / 2;
            let (_, cut, _) = ages.select_nth_unstable(mid);
            let cut = *cut;
            buckets.retain(|_, b| b.at > cut);
        }
    }
}

/// `429 Too Many Requests` with `Retry-After` in seconds.
pub fn too_many(retry_after: Duration) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "rate limit exceeded: retry in {} s",
            retry_after.as_secs().max(1)
        ),
    );
    e.retry_after_secs = Some(retry_after.as_secs().max(1));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_then_refills() {
        let l = RateLimiter::new(60, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check_at(b"a", t0).unwrap();
        }
        let e = l.check_at(b"a", t0).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after_secs, Some(1));
        // Another caller has its own bucket.
        l.check_at(b"b", t0).unwrap();
        // One token a second comes back.
        l.check_at(b"a", t0 + Duration::from_millis(1100)).unwrap();
        assert!(l.check_at(b"a", t0 + Duration::from_millis(1200)).is_err());
        assert!(RateLimiter::new(0, 10).is_none());
    }
}
