//! Evaluation-key storage. Devices upload their evaluation key once (`POST /key`) and later
//! queries refer to it by identifier, so the store must survive restarts and stay bounded.
//!
//! Keys are addressed like Apple's `pir-service-example` does: by `(User-Identifier, key
//! identifier)`, the identifier being the SHA-256 of the evaluation-key configuration. Two
//! devices that share a `User-Identifier` and a configuration therefore share one slot (the
//! last upload wins, as in Apple's server); different configurations are kept side by side.
//!
//! - [`file::FileKeyStore`] (default): one file per key under `state_dir/keys`, an index log
//!   read at start (the key files themselves are read on first use), a byte budget per user
//!   and in total with least-recently-used eviction.
//! - [`redis::RedisKeyStore`]: a Redis server shared by several replicas.
//!
//! [`ByteLru`] bounds the in-process cache of deserialized keys by bytes.

pub mod file;
pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use sha2::{Digest, Sha256};
use sift_proto::api;

pub use file::FileKeyStore;

/// Where evaluation keys live.
pub trait KeyStore: Send + Sync {
    /// Stores `key` for `user` under its metadata identifier, replacing an older one.
    fn put(&self, user: &str, key: &api::EvaluationKey) -> anyhow::Result<()>;
    /// The key `user` stored under `identifier`.
    fn get(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<api::EvaluationKey>>;
    /// The metadata timestamp of the key `user` stored under `identifier`, without loading the
    /// key itself where the store can (`/config` reports it; the key cache is keyed by it).
    fn timestamp(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<u64>> {
        Ok(self
            .get(user, identifier)?
            .map(|k| k.metadata.map_or(0, |m| m.timestamp)))
    }
    /// Number of stored keys (for metrics).
    fn len(&self) -> usize;
    /// Total size of the stored keys in bytes, where the store tracks it cheaply (for
    /// metrics); `None` otherwise.
    fn stored_bytes(&self) -> Option<u64> {
        None
    }
    /// `true` when nothing is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Applies new budgets (SIGHUP after editing `[limits]`); enforced from the next upload.
    fn set_budget(&self, _budget: Budget) {}
}

/// Hex SHA-256 of a user identifier: stores never keep the identifier itself.
pub(crate) fn user_dir_name(user: &str) -> String {
    hex::encode(Sha256::digest(user.as_bytes()))
}

/// The budgets `[limits]` sets for a key store.
pub fn budget(l: &crate::config::Limits) -> Budget {
    Budget {
        max_keys_per_user: l.max_keys_per_user,
        max_bytes_per_user: l.max_key_bytes_per_user,
        max_users: l.max_users,
        max_bytes_total: l.max_key_bytes_total,
    }
}

/// Byte budgets of the embedded store (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Keys kept per user (least recently used evicted first).
    pub max_keys_per_user: usize,
    /// Serialized key bytes kept per user.
    pub max_bytes_per_user: u64,
    /// Users with at least one key.
    pub max_users: usize,
    /// Serialized key bytes kept in total.
    pub max_bytes_total: u64,
}

/// Opens the store `config.key_store` selects: files under `state_dir/keys`, or Redis.
pub fn open(config: &crate::config::ServerConfig) -> anyhow::Result<std::sync::Arc<dyn KeyStore>> {
    use anyhow::Context as _;
    let l = &config.limits;
    Ok(match &config.key_store {
        crate::config::KeyStoreConfig::File => std::sync::Arc::new(
            FileKeyStore::open(
                &config.state_dir.join("keys"),
                Budget {
                    max_keys_per_user: l.max_keys_per_user,
                    max_bytes_per_user: l.max_key_bytes_per_user,
                    max_users: l.max_users,
                    max_bytes_total: l.max_key_bytes_total,
                },
            )
            .with_context(|| {
                format!(
                    "opening the key store {}",
                    config.state_dir.join("keys").display()
                )
            })?,
        ),
        crate::config::KeyStoreConfig::Redis(r) => std::sync::Arc::new(
            redis::RedisKeyStore::open(r, l.max_keys_per_user)
                .context("opening the Redis key store")?
                .with_byte_budget(l.max_key_bytes_per_user, l.max_key_bytes_total),
        ),
    })
}

/// The timestamp of the key `user` stored for `identifier`, or 0 (Apple's `KeyStatus`).
pub fn stored_timestamp(store: &dyn KeyStore, user: &str, identifier: &[u8]) -> u64 {
    store
        .timestamp(user, identifier)
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// A map bounded by the total weight (bytes) of its values, evicting the least recently used.
///
/// A value heavier than the whole budget is not kept at all.
pub struct ByteLru<K, V> {
    entries: HashMap<K, (V, u64, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
    bytes: u64,
    max_bytes: u64,
    max_entries: usize,
}

impl<K: Hash + Eq + Clone, V> ByteLru<K, V> {
    /// An empty cache holding at most `max_bytes` of values and `max_entries` entries.
    pub fn new(max_bytes: u64, max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_bytes,
            max_entries,
        }
    }

    /// The value under `key`, marked most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.tick += 1;
        let tick = self.tick;
        let (_, _, t) = self.entries.get_mut(key)?;
        let old = std::mem::replace(t, tick);
        if let Some(k) = self.order.remove(&old) {
            self.order.insert(tick, k);
        }
        self.entries.get(key).map(|(v, _, _)| v)
    }

    /// Inserts `value` weighing `bytes`, evicting least recently used entries to fit.
    pub fn insert(&mut self, key: K, value: V, bytes: u64) {
        self.remove(&key);
        if bytes > self.max_bytes || self.max_entries == 0 {
            return;
        }
        while self.bytes + bytes > self.max_bytes || self.entries.len() >= self.max_entries {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, w, _)) = self.entries.remove(&victim) {
                self.bytes -= w;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, bytes, self.tick));
        self.bytes += bytes;
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (v, w, t) = self.entries.remove(key)?;
        self.order.remove(&t);
        self.bytes -= w;
        Some(v)
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let gone: Vec<K> = self.entries.keys().filter(|k| !keep(k)).cloned().collect();
        for k in gone {
            self.remove(&k);
        }
    }

    /// Some entry satisfying `pred`, marked most recently used.
    pub fn find(&mut self, mut pred: impl FnMut(&K) -> bool) -> Option<&V> {
        let k = self.entries.keys().find(|k| pred(k))?.clone();
        self.get(&k)
    }

    /// Total weight of the values held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Approximate resident bytes of a deserialized evaluation key: its polynomials, plus the
/// 32-bit rows built on first use (half as large again).
pub fn resident_bytes(key: &sift_he::EvaluationKey) -> u64 {
    let poly_bytes: usize = key
        .galois
        .values()
        .chain(key.relin.as_ref())
        .flat_map(|k| &k.ciphertexts)
        .flat_map(|c| c.polys())
        .map(|p| p.data().len() * 8)
        .sum();
    (poly_bytes as u64).saturating_mul(3) / 2 + 4096
}

/// A stand-in evaluation key for tests and benchmarks: one seeded relinearization ciphertext whose
/// `poly0` is `payload` (so its stored size is a little over `payload.len()` bytes).
#[doc(hidden)]
pub fn stand_in_key(
    identifier: Vec<u8>,
    timestamp: u64,
    payload: Vec<u8>,
    seed: Vec<u8>,
) -> api::EvaluationKey {
    use sift_proto::he;
    let ct = he::SerializedCiphertext {
        serialized_ciphertext_type: Some(
            he::serialized_ciphertext::SerializedCiphertextType::Seeded(
                he::SerializedSeededCiphertext {
                    poly0: payload,
                    seed,
                },
            ),
        ),
    };
    api::EvaluationKey {
        metadata: Some(api::EvaluationKeyMetadata {
            timestamp,
            identifier,
        }),
        evaluation_key: Some(he::SerializedEvaluationKey {
            galois_key: None,
            relin_key: Some(he::SerializedRelinKey {
                relin_key: Some(he::SerializedKeySwitchKey {
                    key_switch_key: Some(he::SerializedCiphertextVec {
                        ciphertexts: vec![ct],
                    }),
                }),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_lru_evicts_least_recently_used_by_bytes() {
        let mut c = ByteLru::new(100, 10);
        c.insert("a", 1, 40);
        c.insert("b", 2, 40);
        assert_eq!(c.get(&"a"), Some(&1));
        c.insert("c", 3, 40);
        assert_eq!(c.get(&"b"), None, "b was least recently used");
        assert_eq!((c.len(), c.bytes()), (2, 80));
        c.insert("huge", 4, 101);
        assert_eq!(c.get(&"huge"), None, "heavier than the budget: not kept");
        assert_eq!(c.bytes(), 80);
        c.insert("a", 5, 10);
        assert_eq!(c.bytes(), 50);
        assert_eq!(c.get(&"a"), Some(&5));
        c.retain(|k| *k != "a");
        assert_eq!((c.len(), c.bytes()), (1, 40));
        let mut c = ByteLru::new(1000, 2);
        for (i, k) in ["x", "y", "z"].into_iter().enumerate() {
            c.insert(k, i, 1);
        }
        assert_eq!((c.len(), c.get(&"x")), (2, None), "entry bound too");
    }
}
