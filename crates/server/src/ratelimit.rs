//! Token-bucket rate limits keyed by caller (a user token for issuance, a `User-Identifier` for
//! queries), answered with 429 and `Retry-After`. Memory is bounded: at most
//! [`MAX_TRACKED`] callers are tracked; when full, buckets that have refilled (callers
//! indistinguishable from new ones) are dropped first, then the stalest.
//!
//! With the Redis key store, replicas also share a fixed-window count per caller
//! (`INCR` + `EXPIRE` on `<prefix>:rl:<limit>:<hash of caller>:<minute>`): a caller gets at
//! most `max(per_minute, burst)` a minute over all replicas together, besides each replica's
//! own bucket. When Redis does not answer, each replica falls back to its own bucket alone and
//! logs it (once per outage), so an outage neither stops the service nor goes unnoticed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

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

/// Seconds of the shared fixed window.
const WINDOW_SECS: u64 = 60;

/// A counter shared by replicas (Redis).
pub trait SharedCounter: Send + Sync {
    /// Adds one to `key`, which expires after `ttl_secs` if it is new; returns the new count.
    fn incr(&self, key: &str, ttl_secs: u64) -> anyhow::Result<u64>;
}

/// Redis: `INCR` then `EXPIRE … NX`, in one round trip.
impl SharedCounter for crate::keystore::redis::RedisKeyStore {
    fn incr(&self, key: &str, ttl_secs: u64) -> anyhow::Result<u64> {
        let key = self.prefixed(key);
        self.run(|c| {
            let (n, _): (u64, i64) = redis::pipe()
                .cmd("INCR")
                .arg(&key)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(ttl_secs)
                .arg("NX")
                .query(c)?;
            Ok(n)
        })
    }
}

/// The counter replicas share when `[key_store]` is Redis; `None` for the file store.
pub fn shared_counter(
    config: &crate::config::ServerConfig,
) -> anyhow::Result<Option<Arc<dyn SharedCounter>>> {
    Ok(match &config.key_store {
        crate::config::KeyStoreConfig::File => None,
        crate::config::KeyStoreConfig::Redis(r) => Some(Arc::new(
            crate::keystore::redis::RedisKeyStore::open(r, config.limits.max_keys_per_user)?,
        )),
    })
}

/// A limiter named `name` (`issue`, `queries`) allowing `per_minute` with bursts of `burst`,
/// shared across replicas through `shared` when given; `None` when `per_minute` is 0.
pub fn limiter(
    name: &'static str,
    per_minute: u32,
    burst: u32,
    shared: Option<&Arc<dyn SharedCounter>>,
) -> Option<RateLimiter> {
    let l = RateLimiter::new(per_minute, burst)?;
    Some(match shared {
        Some(s) => l.with_shared(name, s.clone()),
        None => l,
    })
}

/// The replicas' shared count of one limiter.
struct Shared {
    name: &'static str,
    counter: Arc<dyn SharedCounter>,
    per_window: u64,
    /// Redis did not answer last time (logged once until it does again).
    degraded: AtomicBool,
}

/// A per-caller token bucket: `per_minute` sustained, bursts of up to `burst`.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<Vec<u8>, Bucket>>,
    shared: Option<Shared>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_sec", &self.per_sec)
            .field("burst", &self.burst)
            .field("shared", &self.shared.as_ref().map(|s| s.name))
            .finish()
    }
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests a minute per caller with bursts of `burst`;
    /// `None` when `per_minute` is 0 (unlimited).
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            shared: None,
        })
    }

    /// Also counts every caller in `counter`, shared by the replicas, allowing at most
    /// `max(per_minute, burst)` per caller and minute over all of them.
    pub fn with_shared(mut self, name: &'static str, counter: Arc<dyn SharedCounter>) -> Self {
        let per_window = (self.per_sec * WINDOW_SECS as f64).round().max(self.burst) as u64;
        self.shared = Some(Shared {
            name,
            counter,
            per_window,
            degraded: AtomicBool::new(false),
        });
        self
    }

    /// Takes one token for `caller`; `Err` is the 429 to answer, with `Retry-After`.
    pub fn check(&self, caller: &[u8]) -> Result<(), ApiError> {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_full(caller, Instant::now(), unix)
    }

    /// [`check`](Self::check) at a given time: the own bucket, then the shared window.
    fn check_full(&self, caller: &[u8], at: Instant, now: u64) -> Result<(), ApiError> {
        self.check_at(caller, at)?;
        let Some(s) = &self.shared else {
            return Ok(());
        };
        let window = now / WINDOW_SECS;
        let who = hex::encode(&Sha256::digest(caller)[..16]);
        let key = format!("rl:{}:{who}:{window}", s.name);
        match s.counter.incr(&key, WINDOW_SECS * 2) {
            Ok(n) => {
                if s.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(limit = s.name, "shared rate limit counting again");
                }
                if n > s.per_window {
                    return Err(too_many(Duration::from_secs(
                        WINDOW_SECS - now % WINDOW_SECS,
                    )));
                }
                Ok(())
            }
            Err(e) => {
                if !s.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        limit = s.name,
                        error = %format!("{e:#}"),
                        "shared rate limit unavailable: each replica limits on its own until \
                         Redis answers again"
                    );
                }
                Ok(())
            }
        }
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

    /// A shared counter in memory that can be switched off.
    #[derive(Default)]
    struct Counter {
        counts: Mutex<HashMap<String, u64>>,
        down: AtomicBool,
    }

    impl SharedCounter for Counter {
        fn incr(&self, key: &str, _ttl: u64) -> anyhow::Result<u64> {
            anyhow::ensure!(!self.down.load(Ordering::Relaxed), "down");
            let mut c = self.counts.lock().unwrap();
            let n = c.entry(key.to_owned()).or_default();
            *n += 1;
            Ok(*n)
        }
    }

    #[test]
    fn replicas_share_one_count_and_fall_back_to_their_own() {
        let counter = Arc::new(Counter::default());
        let shared: Arc<dyn SharedCounter> = counter.clone();
        // Two replicas, each allowing a burst of 4, sharing 4 a minute in total.
        let a = limiter("issue", 4, 4, Some(&shared)).unwrap();
        let b = limiter("issue", 4, 4, Some(&shared)).unwrap();
        let (t0, minute) = (Instant::now(), 1_000_020);
        let ok: Vec<bool> = [&a, &b, &a, &b, &a, &b]
            .iter()
            .map(|l| l.check_full(b"caller", t0, minute).is_ok())
            .collect();
        assert_eq!(ok, [true, true, true, true, false, false]);
        // The next minute counts afresh (the own buckets still have room).
        assert!(b.check_full(b"caller", t0, minute + 60).is_ok());
        let e = a.check_full(b"caller", t0, minute + 1).unwrap_err();
        assert_eq!(e.retry_after_secs, Some(59));
        // Redis down: each replica's own bucket still limits.
        counter.down.store(true, Ordering::Relaxed);
        let c = limiter("issue", 4, 2, Some(&shared)).unwrap();
        assert!(c.check(b"x").is_ok() && c.check(b"x").is_ok());
        assert_eq!(
            c.check(b"x").unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
