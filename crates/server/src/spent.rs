//! Durable replay protection: what has been spent (Privacy Pass token nonces, OHTTP request
//! encapsulations), recorded in the key store's backend so that neither a restart nor a second
//! replica re-opens it.
//!
//! Every record belongs to a *scope* tied to the key that makes it valid (an issuer key, an
//! OHTTP gateway key) and is kept as long as that key is accepted: once the key is gone the
//! request or token cannot be presented again anyway.
//!
//! - Files (default): `state_dir/spent/<scope>/<hh>/<hex id>`, created with `O_EXCL`, so of
//!   two processes sharing the directory exactly one spends a given id. A record with an end
//!   (`keep_until`) holds one byte and carries the end as its modification time; at most once
//!   an hour (and at the first spend after a start) a background sweep deletes the records
//!   whose end has passed, so the directory holds only what can still be presented. Scopes of
//!   retired keys are removed whole by [`SpentStore::retire_scopes_except`].
//! - Redis: `SET <prefix>:spent:<scope>:<hex id> 1 NX EXAT <keep_until>`, atomic across
//!   replicas; records expire at the latest time their key can still be accepted.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the file store sweeps out expired records.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

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

    /// Forgets every record of `scope` (its key is gone). No-op where records expire by
    /// themselves.
    fn retire_scope(&self, _scope: &str) -> anyhow::Result<()> {
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

/// Spent identifiers as small files under a directory (default backend).
#[derive(Debug)]
pub struct FileSpentStore {
    root: PathBuf,
    /// When the last sweep started (`None`: not since this process opened the store).
    last_purge: Mutex<Option<Instant>>,
    /// A sweep is running in the background.
    purging: Arc<AtomicBool>,
}

impl FileSpentStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", root.display()))?;
        Ok(Self {
            root: root.to_owned(),
            last_purge: Mutex::new(None),
            purging: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Deletes every record whose `keep_until` is at or before `now`; returns how many. Records
    /// without an end are kept (their scope is retired with its key). Empty folders left
    /// behind are removed.
    pub fn purge_expired(&self, now: SystemTime) -> anyhow::Result<u64> {
        purge_dir(&self.root, now)
    }

    /// Starts a background sweep when none ran in the last [`PURGE_EVERY`].
    fn maybe_purge(&self) {
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < PURGE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        if self.purging.swap(true, Ordering::AcqRel) {
            return;
        }
        let (root, purging) = (self.root.clone(), self.purging.clone());
        let spawned = std::thread::Builder::new()
            .name("spent-purge".into())
            .spawn(move || {
                match purge_dir(&root, SystemTime::now()) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "purged expired replay records"),
                    Err(e) => tracing::warn!(error = %e, "purging expired replay records"),
                }
                purging.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.purging.store(false, Ordering::Release);
        }
    }
}

/// Sweeps `<root>/<scope>/<hh>/<id>` for records that ended at or before `now`.
fn purge_dir(root: &Path, now: SystemTime) -> anyhow::Result<u64> {
    let mut purged = 0;
    for scope in std::fs::read_dir(root)? {
        let scope = scope?.path();
        if !scope.is_dir() {
            continue;
        }
        for bucket in std::fs::read_dir(&scope)? {
            let bucket = bucket?.path();
            if !bucket.is_dir() {
                continue;
            }
            for rec in std::fs::read_dir(&bucket)? {
                let rec = rec?;
                let Ok(meta) = rec.metadata() else { continue };
                // One byte: the modification time is the record's end. Empty: no end.
                if meta.len() == 1 && meta.modified().is_ok_and(|end| end <= now) {
                    match std::fs::remove_file(rec.path()) {
                        Ok(()) => purged += 1,
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            // Fails (and is left) when not empty.
            let _ = std::fs::remove_dir(&bucket);
        }
    }
    Ok(purged)
}

/// Creates the record `dir/name`: `Ok(false)` when it exists. `keep_until` becomes the file's
/// modification time (with one byte of content marking that it has one).
fn create_record(dir: &Path, name: &str, keep_until: Option<SystemTime>) -> std::io::Result<bool> {
    use std::io::Write;
    let path = dir.join(name);
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    if let Some(end) = keep_until {
        f.write_all(b"e")?;
        f.set_modified(end)?;
    }
    Ok(true)
}

impl SpentStore for FileSpentStore {
    fn spend(
        &self,
        scope: &str,
        id: &[u8],
        keep_until: Option<SystemTime>,
    ) -> anyhow::Result<bool> {
        check_scope(scope)?;
        anyhow::ensure!(!id.is_empty(), "empty replay identifier");
        self.maybe_purge();
        let name = hex::encode(id);
        let dir = self.root.join(scope).join(&name[..2]);
        std::fs::create_dir_all(&dir)?;
        match create_record(&dir, &name, keep_until) {
            // A sweep removed the (empty) folder between the two calls: once more.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)?;
                Ok(create_record(&dir, &name, keep_until)?)
            }
            out => Ok(out?),
        }
    }

    fn retire_scope(&self, scope: &str) -> anyhow::Result<()> {
        check_scope(scope)?;
        match std::fs::remove_dir_all(self.root.join(scope)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
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
        a.retire_scope("token-x").unwrap();
        assert!(a.spend("token-x", &[7; 32], None).unwrap());
        a.retire_scope("token-never-used").unwrap();
    }

    #[test]
    fn expired_records_are_purged_and_live_ones_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let store = FileSpentStore::open(dir.path()).unwrap();
        let past = now - Duration::from_secs(10);
        let future = now + Duration::from_secs(3600);
        assert!(store.spend("token-a", &[1; 32], Some(past)).unwrap());
        assert!(store.spend("token-a", &[2; 32], Some(future)).unwrap());
        assert!(store.spend("token-a", &[3; 32], None).unwrap());
        drop(store);
        // A restart: a new store on the same directory.
        let store = FileSpentStore::open(dir.path()).unwrap();
        assert!(!store.spend("token-a", &[2; 32], Some(future)).unwrap());
        // (The store's own background sweep, started by the first spend, may get there first.)
        assert!(store.purge_expired(now).unwrap() <= 1);
        let files = |d: &Path| {
            walk(d)
                .into_iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        let left = files(dir.path());
        assert!(!left.contains(&hex::encode([1u8; 32])), "{left:?}");
        assert!(left.contains(&hex::encode([2u8; 32])), "{left:?}");
        // The live record and the one without an end still refuse a replay.
        assert!(!store.spend("token-a", &[2; 32], Some(future)).unwrap());
        assert!(!store.spend("token-a", &[3; 32], None).unwrap());
        // Nothing else expires before the live record's end.
        assert_eq!(store.purge_expired(now).unwrap(), 0);
        assert_eq!(store.purge_expired(future).unwrap(), 1);
        assert_eq!(files(dir.path()), vec![hex::encode([3u8; 32])]);
    }

    fn walk(d: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
