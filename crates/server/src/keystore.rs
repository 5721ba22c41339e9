//! Evaluation-key storage. Devices upload their evaluation key once (`POST /key`) and later
//! queries refer to it by identifier, so the store must survive restarts and stay bounded.
//!
//! The embedded store keeps keys as files under `state_dir/keys/<sha256(user)>/<hex(id)>.binpb`
//! (atomic temp+rename), indexed in memory; per-user and global caps evict the oldest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use prost::Message;
use sha2::{Digest, Sha256};
use sift_proto::api;

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
}

/// One user's keys: identifier → (upload sequence number, timestamp).
type UserKeys = BTreeMap<Vec<u8>, (u64, u64)>;

/// File-backed store with an in-memory index.
pub struct FileKeyStore {
    root: PathBuf,
    max_per_user: usize,
    max_users: usize,
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    users: HashMap<String, UserKeys>,
    /// user dir name → last use sequence number, for least-recently-used eviction.
    last_use: HashMap<String, u64>,
    seq: u64,
    count: usize,
    /// Bytes of the key files (kept up to date by `put`; for metrics).
    bytes: u64,
}

/// Hex SHA-256 of a user identifier: stores never keep the identifier itself.
pub(crate) fn user_dir_name(user: &str) -> String {
    hex::encode(Sha256::digest(user.as_bytes()))
}

impl FileKeyStore {
    /// Opens (creating) the store under `root` and indexes the keys already there.
    pub fn open(root: &Path, max_per_user: usize, max_users: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let mut index = Index::default();
        for user in std::fs::read_dir(root)? {
            let user = user?;
            if !user.file_type()?.is_dir() {
                continue;
            }
            let name = user.file_name().to_string_lossy().into_owned();
            let mut keys = UserKeys::new();
            for f in std::fs::read_dir(user.path())? {
                let f = f?;
                let fname = f.file_name().to_string_lossy().into_owned();
                let Some(stem) = fname.strip_suffix(".binpb") else {
                    continue;
                };
                let Ok(id) = hex::decode(stem) else { continue };
                index.bytes += f.metadata().map_or(0, |m| m.len());
                let ts = std::fs::read(f.path())
                    .ok()
                    .and_then(|b| api::EvaluationKey::decode(b.as_slice()).ok())
                    .and_then(|k| k.metadata.map(|m| m.timestamp))
                    .unwrap_or(0);
                index.seq += 1;
                keys.insert(id, (index.seq, ts));
                index.count += 1;
            }
            index.seq += 1;
            index.last_use.insert(name.clone(), index.seq);
            index.users.insert(name, keys);
        }
        Ok(Self {
            root: root.to_owned(),
            max_per_user,
            max_users,
            index: Mutex::new(index),
        })
    }

    fn path(&self, dir: &str, id: &[u8]) -> PathBuf {
        self.root
            .join(dir)
            .join(format!("{}.binpb", hex::encode(id)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KeyStore for FileKeyStore {
    fn put(&self, user: &str, key: &api::EvaluationKey) -> anyhow::Result<()> {
        let meta = key
            .metadata
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("key without metadata"))?;
        let dir = user_dir_name(user);
        let path = self.path(&dir, &meta.identifier);
        std::fs::create_dir_all(path.parent().expect("key path has a parent"))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let encoded = key.encode_to_vec();
        std::fs::write(&tmp, &encoded)?;
        let replaced = std::fs::metadata(&path).map_or(0, |m| m.len());
        std::fs::rename(&tmp, &path)?;

        let mut idx = self.lock();
        idx.bytes = (idx.bytes + encoded.len() as u64).saturating_sub(replaced);
        idx.seq += 1;
        let seq = idx.seq;
        idx.last_use.insert(dir.clone(), seq);
        let keys = idx.users.entry(dir.clone()).or_default();
        let added = keys
            .insert(meta.identifier.clone(), (seq, meta.timestamp))
            .is_none();
        let mut evicted = Vec::new();
        while keys.len() > self.max_per_user {
            let oldest = keys
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                keys.remove(&k);
                evicted.push((dir.clone(), k));
            }
        }
        let mut count = idx.count + usize::from(added) - evicted.len();
        while idx.users.len() > self.max_users {
            let lru = idx
                .last_use
                .iter()
                .min_by_key(|(_, s)| **s)
                .map(|(d, _)| d.clone());
            let Some(lru) = lru else { break };
            idx.last_use.remove(&lru);
            if let Some(keys) = idx.users.remove(&lru) {
                count -= keys.len();
                let freed = dir_bytes(&self.root.join(&lru));
                idx.bytes = idx.bytes.saturating_sub(freed);
                let _ = std::fs::remove_dir_all(self.root.join(&lru));
            }
        }
        idx.count = count;
        drop(idx);
        let mut freed = 0;
        for (d, k) in evicted {
            let p = self.path(&d, &k);
            freed += std::fs::metadata(&p).map_or(0, |m| m.len());
            let _ = std::fs::remove_file(p);
        }
        if freed > 0 {
            let mut idx = self.lock();
            idx.bytes = idx.bytes.saturating_sub(freed);
        }
        Ok(())
    }

    fn get(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<api::EvaluationKey>> {
        let dir = user_dir_name(user);
        {
            let mut idx = self.lock();
            if !idx
                .users
                .get(&dir)
                .is_some_and(|k| k.contains_key(identifier))
            {
                return Ok(None);
            }
            idx.seq += 1;
            let seq = idx.seq;
            idx.last_use.insert(dir.clone(), seq);
        }
        match std::fs::read(self.path(&dir, identifier)) {
            Ok(bytes) => Ok(Some(api::EvaluationKey::decode(bytes.as_slice())?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn timestamp(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<u64>> {
        let dir = user_dir_name(user);
        let idx = self.lock();
        Ok(idx
            .users
            .get(&dir)
            .and_then(|k| k.get(identifier))
            .map(|(_, ts)| *ts))
    }

    fn len(&self) -> usize {
        self.lock().count
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(self.lock().bytes)
    }
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Opens the store `config.key_store` selects: files under `state_dir/keys`, or Redis.
pub fn open(config: &crate::config::ServerConfig) -> anyhow::Result<std::sync::Arc<dyn KeyStore>> {
    use anyhow::Context as _;
    Ok(match &config.key_store {
        crate::config::KeyStoreConfig::File => std::sync::Arc::new(
            FileKeyStore::open(
                &config.state_dir.join("keys"),
                config.limits.max_keys_per_user,
                config.limits.max_users,
            )
            .context("opening the key store")?,
        ),
        crate::config::KeyStoreConfig::Redis(r) => std::sync::Arc::new(
            crate::keystore_redis::RedisKeyStore::open(r, config.limits.max_keys_per_user)
                .context("opening the Redis key store")?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8, ts: u64) -> api::EvaluationKey {
        api::EvaluationKey {
            metadata: Some(api::EvaluationKeyMetadata {
                timestamp: ts,
                identifier: vec![id],
            }),
            evaluation_key: None,
        }
    }

    #[test]
    fn keys_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileKeyStore::open(dir.path(), 4, 10).unwrap();
        s.put("alice", &key(1, 7)).unwrap();
        drop(s);
        let s = FileKeyStore::open(dir.path(), 4, 10).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(stored_timestamp(&s, "alice", &[1]), 7);
        assert_eq!(stored_timestamp(&s, "bob", &[1]), 0);
    }

    #[test]
    fn per_user_and_global_caps_evict_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileKeyStore::open(dir.path(), 2, 2).unwrap();
        for id in 0..3 {
            s.put("alice", &key(id, 1)).unwrap();
        }
        assert!(
            s.get("alice", &[0]).unwrap().is_none(),
            "oldest key evicted"
        );
        assert!(s.get("alice", &[2]).unwrap().is_some());
        assert_eq!(s.len(), 2);
        s.put("bob", &key(0, 1)).unwrap();
        s.get("alice", &[2]).unwrap();
        s.put("carol", &key(0, 1)).unwrap();
        assert!(
            s.get("bob", &[0]).unwrap().is_none(),
            "least recently used user evicted"
        );
        assert!(s.get("alice", &[2]).unwrap().is_some());
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn replacing_a_key_keeps_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileKeyStore::open(dir.path(), 4, 10).unwrap();
        s.put("u", &key(1, 1)).unwrap();
        s.put("u", &key(1, 2)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(stored_timestamp(&s, "u", &[1]), 2);
    }
}
