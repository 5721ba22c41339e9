//! The embedded key store: one file per key, `root/<sha256(user)>/<hex(id)>.binpb` (written to a
//! unique temporary file, then renamed), and an index log `root/index.log` that start-up reads
//! instead of every key file.
//!
//! The index log has one line per change: `+ <user> <id> <timestamp> <bytes>` after a key file
//! is in place, `- <user> <id>` before one is removed. A crash between the two steps loses at
//! most that key (the device re-uploads it when `/config` reports it missing); a line cut short
//! by a crash is ignored. The log is rewritten compactly at start-up and whenever it holds four
//! times more lines than keys. Stores written before the index existed are indexed once by
//! listing their directories.
//!
//! Bounds (`[limits]`): keys and bytes per user, users, and bytes in total; the least recently
//! used key (upload or query) is evicted first. Recency is kept in memory: after a restart the
//! upload order stands in for it. The index costs about 200 bytes of memory per stored key;
//! key contents are only held by the caller's cache ([`super::ByteLru`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use prost::Message;
use sift_proto::api;

use super::{Budget, KeyStore, user_dir_name};

const INDEX: &str = "index.log";

/// File-backed store with an in-memory index.
pub struct FileKeyStore {
    root: PathBuf,
    /// `[limits]` budgets; replaced on reload.
    budget: Mutex<Budget>,
    index: Mutex<Index>,
    /// Makes temporary file names unique within the process (concurrent uploads of one slot).
    tmp_seq: AtomicU64,
}

#[derive(Clone, Copy)]
struct Entry {
    timestamp: u64,
    bytes: u64,
    tick: u64,
}

#[derive(Default)]
struct UserKeys {
    ids: BTreeMap<Vec<u8>, Entry>,
    bytes: u64,
}

#[derive(Default)]
struct Index {
    users: HashMap<String, UserKeys>,
    /// tick → (user, id): least recently used first.
    lru: BTreeMap<u64, (String, Vec<u8>)>,
    tick: u64,
    count: usize,
    bytes: u64,
    log: Option<BufWriter<File>>,
    log_lines: usize,
}

impl Index {
    fn insert(&mut self, user: &str, id: &[u8], timestamp: u64, bytes: u64) {
        self.remove(user, id);
        self.tick += 1;
        let tick = self.tick;
        let u = self.users.entry(user.to_owned()).or_default();
        u.ids.insert(
            id.to_vec(),
            Entry {
                timestamp,
                bytes,
                tick,
            },
        );
        u.bytes += bytes;
        self.lru.insert(tick, (user.to_owned(), id.to_vec()));
        self.count += 1;
        self.bytes += bytes;
    }

    fn remove(&mut self, user: &str, id: &[u8]) -> bool {
        let Some(u) = self.users.get_mut(user) else {
            return false;
        };
        let Some(e) = u.ids.remove(id) else {
            return false;
        };
        u.bytes -= e.bytes;
        if u.ids.is_empty() {
            self.users.remove(user);
        }
        self.lru.remove(&e.tick);
        self.count -= 1;
        self.bytes -= e.bytes;
        true
    }

    fn touch(&mut self, user: &str, id: &[u8]) -> Option<Entry> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.users.get_mut(user)?.ids.get_mut(id)?;
        let old = std::mem::replace(&mut e.tick, tick);
        let e = *e;
        if let Some(v) = self.lru.remove(&old) {
            self.lru.insert(tick, v);
        }
        Some(e)
    }

    fn append(&mut self, line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        if let Some(log) = &mut self.log {
            log.write_fmt(line)?;
            log.flush()?;
            self.log_lines += 1;
        }
        Ok(())
    }
}

fn parse_line(line: &str) -> Option<(bool, &str, Vec<u8>, u64, u64)> {
    let mut f = line.split(' ');
    let op = f.next()?;
    let user = f.next()?;
    if user.len() != 64 || !user.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = hex::decode(f.next()?).ok()?;
    match op {
        "+" => {
            let ts = f.next()?.parse().ok()?;
            let bytes = f.next()?.parse().ok()?;
            f.next().is_none().then_some((true, user, id, ts, bytes))
        }
        "-" => f.next().is_none().then_some((false, user, id, 0, 0)),
        _ => None,
    }
}

impl FileKeyStore {
    /// Opens (creating) the store under `root`: reads the index log (or, for a store written
    /// before it existed, lists the key directories once), then enforces `budget`.
    pub fn open(root: &Path, budget: Budget) -> anyhow::Result<Self> {
        anyhow::ensure!(
            budget.max_keys_per_user >= 1 && budget.max_users >= 1,
            "key store limits must allow at least one key and one user"
        );
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let mut index = Index::default();
        let log_path = root.join(INDEX);
        match File::open(&log_path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line.with_context(|| format!("reading {}", log_path.display()))?;
                    match parse_line(&line) {
                        Some((true, user, id, ts, bytes)) => index.insert(user, &id, ts, bytes),
                        Some((false, user, id, _, _)) => {
                            index.remove(user, &id);
                        }
                        // A line cut short by a crash (only the last can be).
                        None => {
                            tracing::warn!(path = %log_path.display(), "skipping a malformed key index line")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                scan_legacy(root, &mut index)?;
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", log_path.display())),
        }
        let store = Self {
            root: root.to_owned(),
            budget: Mutex::new(budget),
            index: Mutex::new(index),
            tmp_seq: AtomicU64::new(0),
        };
        {
            let mut idx = store.lock();
            store.rewrite_log(&mut idx)?;
            let victims = store.over_budget(&mut idx, None);
            store.evict(&mut idx, victims);
        }
        Ok(store)
    }

    fn path(&self, user: &str, id: &[u8]) -> PathBuf {
        self.root
            .join(user)
            .join(format!("{}.binpb", hex::encode(id)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the live index to a new log and switches to it.
    fn rewrite_log(&self, idx: &mut Index) -> anyhow::Result<()> {
        let path = self.root.join(INDEX);
        let tmp = self.root.join(format!("{INDEX}.tmp{}", std::process::id()));
        let mut w = BufWriter::new(
            File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let mut lines = 0;
        for (user, id) in idx.lru.values() {
            let e = idx.users[user].ids[id];
            writeln!(
                w,
                "+ {user} {} {} {}",
                hex::encode(id),
                e.timestamp,
                e.bytes
            )?;
            lines += 1;
        }
        w.flush()?;
        drop(w);
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        idx.log = Some(BufWriter::new(f));
        idx.log_lines = lines;
        Ok(())
    }

    /// The budgets as they apply now.
    fn budget(&self) -> Budget {
        *self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys to evict so that the budget holds, never `keep`.
    fn over_budget(&self, idx: &mut Index, keep: Option<(&str, &[u8])>) -> Vec<(String, Vec<u8>)> {
        let b = self.budget();
        let mut out = Vec::new();
        // Per user: the user just written, or every user at start-up.
        let users: Vec<String> = match keep {
            Some((u, _)) => vec![u.to_owned()],
            None => idx.users.keys().cloned().collect(),
        };
        for user in users {
            while let Some(u) = idx.users.get(&user) {
                if u.ids.len() <= b.max_keys_per_user && u.bytes <= b.max_bytes_per_user {
                    break;
                }
                let victim = u
                    .ids
                    .iter()
                    .filter(|(id, _)| keep != Some((user.as_str(), id.as_slice())))
                    .min_by_key(|(_, e)| e.tick)
                    .map(|(id, _)| id.clone());
                let Some(id) = victim else { break };
                idx.remove(&user, &id);
                out.push((user.clone(), id));
            }
        }
        // In total: least recently used first.
        while idx.bytes > b.max_bytes_total || idx.users.len() > b.max_users {
            let victim = idx
                .lru
                .values()
                .find(|(u, id)| keep != Some((u.as_str(), id.as_slice())))
                .cloned();
            let Some((u, id)) = victim else { break };
            idx.remove(&u, &id);
            out.push((u, id));
        }
        out
    }

    /// Logs and deletes evicted keys.
    fn evict(&self, idx: &mut Index, victims: Vec<(String, Vec<u8>)>) {
        for (u, id) in victims {
            if let Err(e) = idx.append(format_args!("- {u} {}\n", hex::encode(&id))) {
                tracing::warn!("key index: {e}");
            }
            let _ = std::fs::remove_file(self.path(&u, &id));
        }
    }

    /// Bytes of stored keys (for tests and metrics).
    pub fn stored_bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// Indexes a store written before the index log existed (reads each key once).
fn scan_legacy(root: &Path, index: &mut Index) -> anyhow::Result<()> {
    for user in std::fs::read_dir(root)? {
        let user = user?;
        let name = user.file_name().to_string_lossy().into_owned();
        if !user.file_type()?.is_dir() || name.len() != 64 {
            continue;
        }
        for f in std::fs::read_dir(user.path())? {
            let f = f?;
            let fname = f.file_name().to_string_lossy().into_owned();
            let Some(stem) = fname.strip_suffix(".binpb") else {
                continue;
            };
            let Ok(id) = hex::decode(stem) else { continue };
            let Ok(bytes) = std::fs::read(f.path()) else {
                continue;
            };
            let Some(ts) = api::EvaluationKey::decode(bytes.as_slice())
                .ok()
                .and_then(|k| k.metadata.map(|m| m.timestamp))
            else {
                continue;
            };
            index.insert(&name, &id, ts, bytes.len() as u64);
        }
    }
    Ok(())
}

impl KeyStore for FileKeyStore {
    fn set_budget(&self, budget: Budget) {
        *self.budget.lock().unwrap_or_else(|p| p.into_inner()) = budget;
    }

    fn put(&self, user: &str, key: &api::EvaluationKey) -> anyhow::Result<()> {
        let meta = key
            .metadata
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("key without metadata"))?;
        let bytes = key.encode_to_vec();
        let size = bytes.len() as u64;
        let budget = self.budget();
        anyhow::ensure!(
            size <= budget.max_bytes_per_user && size <= budget.max_bytes_total,
            "the key has {size} bytes, more than limits.max_key_bytes_per_user ({}) or \
             limits.max_key_bytes_total ({})",
            budget.max_bytes_per_user,
            budget.max_bytes_total
        );
        let dir = user_dir_name(user);
        let path = self.path(&dir, &meta.identifier);
        std::fs::create_dir_all(path.parent().expect("key path has a parent"))?;
        let tmp = path.with_extension(format!(
            "tmp{}-{}",
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, &bytes)?;
        // Renaming and indexing under the lock keeps file and index in the same order when two
        // uploads race for one slot.
        let mut idx = self.lock();
        if let Err(e) = std::fs::rename(&tmp, &path) {
            drop(idx);
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        idx.insert(&dir, &meta.identifier, meta.timestamp, size);
        idx.append(format_args!(
            "+ {dir} {} {} {size}\n",
            hex::encode(&meta.identifier),
            meta.timestamp
        ))?;
        let victims = self.over_budget(&mut idx, Some((&dir, &meta.identifier)));
        self.evict(&mut idx, victims);
        if idx.log_lines > 4 * idx.count + 10_000
            && let Err(e) = self.rewrite_log(&mut idx)
        {
            tracing::warn!("compacting the key index: {e:#}");
        }
        Ok(())
    }

    fn get(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<api::EvaluationKey>> {
        let dir = user_dir_name(user);
        if self.lock().touch(&dir, identifier).is_none() {
            return Ok(None);
        }
        match std::fs::read(self.path(&dir, identifier)) {
            Ok(bytes) => Ok(Some(
                api::EvaluationKey::decode(bytes.as_slice()).context("stored key is corrupt")?,
            )),
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
            .and_then(|k| k.ids.get(identifier))
            .map(|e| e.timestamp))
    }

    fn len(&self) -> usize {
        self.lock().count
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(FileKeyStore::stored_bytes(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::stored_timestamp;

    /// A key whose evaluation key carries about `payload` bytes.
    fn key(id: u8, ts: u64, payload: usize) -> api::EvaluationKey {
        crate::keystore::stand_in_key(vec![id], ts, vec![0; payload], vec![])
    }

    fn budget(per_user: usize, users: usize) -> Budget {
        Budget {
            max_keys_per_user: per_user,
            max_bytes_per_user: u64::MAX,
            max_users: users,
            max_bytes_total: u64::MAX,
        }
    }

    /// Opens the store in `dir` with room for 4 keys a user and 10 users.
    fn store_in(dir: &tempfile::TempDir) -> FileKeyStore {
        FileKeyStore::open(dir.path(), budget(4, 10)).unwrap()
    }

    /// A fresh temporary directory and the [`store_in`] it.
    fn fresh_store() -> (tempfile::TempDir, FileKeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = store_in(&dir);
        (dir, s)
    }

    #[test]
    fn keys_persist_across_reopen_from_the_index() {
        let (dir, s) = fresh_store();
        s.put("alice", &key(1, 7, 0)).unwrap();
        s.put("alice", &key(2, 8, 0)).unwrap();
        s.put("alice", &key(2, 9, 0)).unwrap();
        drop(s);
        let s = store_in(&dir);
        assert_eq!(s.len(), 2);
        assert_eq!(stored_timestamp(&s, "alice", &[1]), 7);
        assert_eq!(stored_timestamp(&s, "alice", &[2]), 9);
        assert_eq!(stored_timestamp(&s, "bob", &[1]), 0);
        // The index, not the key files, answers timestamps: a key file deleted behind the
        // store's back is only noticed on use.
        std::fs::remove_file(s.path(&user_dir_name("alice"), &[1])).unwrap();
        drop(s);
        let s = store_in(&dir);
        assert_eq!(stored_timestamp(&s, "alice", &[1]), 7);
        assert!(s.get("alice", &[1]).unwrap().is_none());
        assert!(s.get("alice", &[2]).unwrap().is_some());
    }

    #[test]
    fn a_torn_index_line_and_a_legacy_store_are_read() {
        let (dir, s) = fresh_store();
        s.put("alice", &key(1, 7, 0)).unwrap();
        drop(s);
        let log = dir.path().join(INDEX);
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("+ abc");
        std::fs::write(&log, &text).unwrap();
        let s = store_in(&dir);
        assert_eq!(stored_timestamp(&s, "alice", &[1]), 7);
        drop(s);
        // Without the index (a store from before it), the directories are listed once.
        std::fs::remove_file(&log).unwrap();
        let s = store_in(&dir);
        assert_eq!((s.len(), stored_timestamp(&s, "alice", &[1])), (1, 7));
        assert!(log.exists());
    }

    #[test]
    fn per_user_and_global_caps_evict_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileKeyStore::open(dir.path(), budget(2, 2)).unwrap();
        for id in 0..3 {
            s.put("alice", &key(id, 1, 0)).unwrap();
        }
        assert!(
            s.get("alice", &[0]).unwrap().is_none(),
            "oldest key evicted"
        );
        assert!(s.get("alice", &[2]).unwrap().is_some());
        assert_eq!(s.len(), 2);
        s.put("bob", &key(0, 1, 0)).unwrap();
        s.get("alice", &[2]).unwrap();
        s.get("alice", &[1]).unwrap();
        s.put("carol", &key(0, 1, 0)).unwrap();
        assert!(
            s.get("bob", &[0]).unwrap().is_none(),
            "least recently used user evicted"
        );
        assert!(s.get("alice", &[2]).unwrap().is_some());
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn byte_budgets_per_user_and_in_total() {
        let dir = tempfile::tempdir().unwrap();
        let one = key(0, 1, 1000).encoded_len() as u64;
        let b = Budget {
            max_keys_per_user: 10,
            max_bytes_per_user: 2 * one + one / 2,
            max_users: 100,
            max_bytes_total: 5 * one + one / 2,
        };
        let s = FileKeyStore::open(dir.path(), b).unwrap();
        for id in 0..3 {
            s.put("alice", &key(id, 1, 1000)).unwrap();
        }
        assert_eq!(s.len(), 2, "per-user bytes: two keys fit");
        assert!(s.get("alice", &[0]).unwrap().is_none());
        for u in ["bob", "carol"] {
            for id in 0..2 {
                s.put(u, &key(id, 1, 1000)).unwrap();
            }
        }
        assert_eq!(s.len(), 5, "total bytes: five keys fit");
        assert!(s.stored_bytes() <= b.max_bytes_total);
        assert!(
            s.get("alice", &[1]).unwrap().is_none(),
            "alice's older key was the least recently used"
        );
        // Start-up enforces a smaller budget too.
        drop(s);
        let s = FileKeyStore::open(
            dir.path(),
            Budget {
                max_bytes_total: 2 * one,
                ..b
            },
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.get("carol", &[1]).unwrap().is_some(), "newest kept");
        // A key larger than a budget is refused, not stored.
        let err = s.put("dave", &key(9, 1, 4000)).unwrap_err();
        assert!(format!("{err}").contains("max_key_bytes_per_user"), "{err}");
        let files = walk(dir.path());
        assert_eq!(files, 2, "evicted key files are deleted");
    }

    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    usize::from(e.file_name().to_string_lossy().ends_with(".binpb"))
                }
            })
            .sum()
    }

    #[test]
    fn replacing_a_key_keeps_the_count() {
        let (_dir, s) = fresh_store();
        s.put("u", &key(1, 1, 0)).unwrap();
        s.put("u", &key(1, 2, 0)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(stored_timestamp(&s, "u", &[1]), 2);
    }

    /// Two devices behind one `User-Identifier`: keys for different configurations are both
    /// kept; uploads racing for one slot leave one whole key (the last), never a mix.
    #[test]
    fn devices_sharing_a_user_identifier() {
        let (dir, s) = fresh_store();
        let s = std::sync::Arc::new(s);
        s.put("shared", &key(1, 5, 0)).unwrap();
        s.put("shared", &key(2, 6, 0)).unwrap();
        assert_eq!(stored_timestamp(s.as_ref(), "shared", &[1]), 5);
        assert_eq!(stored_timestamp(s.as_ref(), "shared", &[2]), 6);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        s.put("shared", &key(3, t * 100 + i, 2000 + t as usize * 500))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let got = s.get("shared", &[3]).unwrap().expect("stored");
        let ts = got.metadata.as_ref().unwrap().timestamp;
        assert_eq!(stored_timestamp(s.as_ref(), "shared", &[3]), ts);
        assert_eq!(got, key(3, ts, 2000 + (ts / 100) as usize * 500));
        let leftovers = std::fs::read_dir(dir.path().join(user_dir_name("shared")))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".binpb")
            })
            .count();
        assert_eq!(leftovers, 0, "no temporary files left");
    }
}
