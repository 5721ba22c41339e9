//! Durable replay protection: what has been spent (Privacy Pass token nonces, OHTTP request
//! encapsulations), recorded in the key store's backend so that neither a restart nor a second
//! replica re-opens it.
//!
//! Every record belongs to a *scope* tied to the key that makes it valid (an issuer key, an
//! OHTTP gateway key) and is kept as long as that key is accepted: once the key is gone the
//! request or token cannot be presented again anyway.
//!
//! - Files (default): `state_dir/spent/<scope>/<hh>/<hex id>`, created with `O_EXCL`, so of
//!   two processes sharing the directory exactly one spends a given id. Scopes of retired keys
//!   are removed by [`SpentStore::retire_scopes_except`].
//! - Redis: `SET <prefix>:spent:<scope>:<hex id> 1 NX EXAT <keep_until>`, atomic across
//!   replicas; records expire at the latest time their key can still be accepted.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where spent identifiers are recorded.
pub trait SpentStore: Send + Sync {
    /// Records `id` in `scope`. `keep_until` is the latest time the scope's key can still be
    /// accepted (`None`: no known end); backends that expire records use it. `Ok(true)` the
    /// first time, `Ok(false)` for a replay; an error when the store cannot answer (the caller
    /// refuses the request: replay checks fail closed).
    fn spend(&self, scope: &str, id: &[u8], keep_until: Option<SystemTime>)
    -> anyhow::Result<bool>;

    /// Forgets every scope whose name starts with `prefix` except those in `keep` (the keys
    /// still accepted). No-op where records expire by themselves.
    fn retire_scopes_except(&self, _prefix: &str, _keep: &[String]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Seconds since the Unix epoch.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Scope names appear in paths and Redis keys: letters, digits, `-` and `_` only.
fn check_scope(scope: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !scope.is_empty()
            && scope.len() <= 100
            && scope
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "invalid replay scope {scope:?}"
    );
    Ok(())
}

/// Spent identifiers as empty files under a directory (default backend).
#[derive(Debug)]
pub struct FileSpentStore {
    root: PathBuf,
}

impl FileSpentStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", root.display()))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }
}

impl SpentStore for FileSpentStore {
    fn spend(
        &self,
        scope: &str,
        id: &[u8],
        _keep_until: Option<SystemTime>,
    ) -> anyhow::Result<bool> {
        check_scope(scope)?;
        let name = hex::encode(id);
        let dir = self.root.join(scope).join(&name[..2.min(name.len())]);
        std::fs::create_dir_all(&dir)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(&name))
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn retire_scopes_except(&self, prefix: &str, keep: &[String]) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && !keep.contains(&name) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Opens the replay store `config.key_store` selects: files under `state_dir/spent`, or the
/// same Redis as the keys.
pub fn open(
    config: &crate::config::ServerConfig,
) -> anyhow::Result<std::sync::Arc<dyn SpentStore>> {
    Ok(match &config.key_store {
        crate::config::KeyStoreConfig::File => {
            std::sync::Arc::new(FileSpentStore::open(&config.state_dir.join("spent"))?)
        }
        crate::config::KeyStoreConfig::Redis(r) => std::sync::Arc::new(
            crate::keystore::redis::RedisKeyStore::open(r, config.limits.max_keys_per_user)?,
        ),
    })
}

/// Redis: `SET … NX EXAT`, so replicas agree and records expire with their key.
impl SpentStore for crate::keystore::redis::RedisKeyStore {
    fn spend(
        &self,
        scope: &str,
        id: &[u8],
        keep_until: Option<SystemTime>,
    ) -> anyhow::Result<bool> {
        check_scope(scope)?;
        let key = self.spent_key(scope, id);
        self.run(|c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(1).arg("NX");
            if let Some(end) = keep_until {
                cmd.arg("EXAT").arg(secs(end).max(1));
            }
            let set: Option<String> = cmd.query(c)?;
            Ok(set.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_spend_is_a_replay_until_its_scope_is_retired() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileSpentStore::open(dir.path()).unwrap();
        let b = FileSpentStore::open(dir.path()).unwrap();
        assert!(a.spend("ohttp-1", &[7; 32], None).unwrap());
        assert!(!b.spend("ohttp-1", &[7; 32], None).unwrap());
        assert!(b.spend("ohttp-2", &[7; 32], None).unwrap());
        assert!(a.spend("token-x", &[7; 32], None).unwrap());
        a.retire_scopes_except("ohttp-", &["ohttp-1".to_owned()])
            .unwrap();
        assert!(!a.spend("ohttp-1", &[7; 32], None).unwrap());
        assert!(a.spend("ohttp-2", &[7; 32], None).unwrap());
        assert!(!a.spend("token-x", &[7; 32], None).unwrap());
        assert!(a.spend("../x", &[1], None).is_err());
    }
}
