//! A bounded cache of recently seen encapsulated keys (`enc`) for replay detection.
//!
//! Every honest encapsulated request carries a fresh ephemeral X25519 key, so the same `enc`
//! twice means the relay (or someone on the path) replayed a request. Trade-offs:
//! - the cache is bounded (FIFO eviction), so a replay older than `capacity` requests goes
//!   unnoticed; an attacker able to produce valid requests (anyone with the public key) can
//!   flush it by sending `capacity` fresh ones, so it stops opportunistic replays, not a
//!   determined flood (the relay's rate limits are the other half);
//! - only successfully decrypted requests are inserted, so garbage cannot evict entries;
//! - the cache is per process: several gateway replicas each see only their own traffic;
//! - rotation limits the useful window: once a key leaves its grace period, replays of
//!   requests made to it fail to decrypt regardless of the cache.
//!
//! Memory is about 80 bytes per entry (the 32-byte key in a set and a queue); the default
//! 65 536 entries cost roughly 5 MiB.

use std::collections::{HashSet, VecDeque};

use crate::config::X25519_LEN;

/// Default number of remembered `enc` values.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// FIFO-bounded set of `enc` values.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    seen: HashSet<[u8; X25519_LEN]>,
    order: VecDeque<[u8; X25519_LEN]>,
}

impl ReplayCache {
    /// A cache remembering up to `capacity` values (0 disables replay detection).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::with_capacity(capacity.min(DEFAULT_CAPACITY)),
            order: VecDeque::with_capacity(capacity.min(DEFAULT_CAPACITY)),
        }
    }

    /// Whether `enc` is remembered.
    pub fn contains(&self, enc: &[u8; X25519_LEN]) -> bool {
        self.seen.contains(enc)
    }

    /// Remembers `enc`; returns false (a replay) if it was already there.
    pub fn insert(&mut self, enc: [u8; X25519_LEN]) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.seen.insert(enc) {
            return false;
        }
        self.order.push_back(enc);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Number of remembered values.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_replays_and_evicts_oldest() {
        let mut c = ReplayCache::new(2);
        assert!(c.insert([1; 32]));
        assert!(!c.insert([1; 32]));
        assert!(c.insert([2; 32]));
        assert!(c.insert([3; 32]));
        assert_eq!(c.len(), 2);
        assert!(!c.contains(&[1; 32]), "oldest evicted");
        assert!(c.insert([1; 32]));
        assert!(!c.insert([3; 32]));
        let mut off = ReplayCache::new(0);
        assert!(off.insert([1; 32]) && off.insert([1; 32]));
        assert!(off.is_empty());
    }
}
