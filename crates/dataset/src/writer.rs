//! Writing a new version: a staging folder, every file `fsync`ed, the manifest last, one
//! rename into `versions/`, then the atomic `current` switch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::fsutil::{hash_file, sync_dir, write_atomic};
use crate::layout::{self, STAGING_PREFIX, VERSIONS};
use crate::manifest::{FORMAT, FileEntry, MANIFEST_FILE, Manifest};

/// A version being written. Dropping it without [`VersionWriter::publish`] leaves a staging
/// folder that the next build removes; the dataset's `current` is untouched.
pub struct VersionWriter {
    dataset_dir: PathBuf,
    id: String,
    staging: PathBuf,
    /// Files whose size and checksum are known already (written through the writer, or
    /// shared with a previous version), so that publishing does not read them again.
    known: Mutex<HashMap<String, FileEntry>>,
    _lock: std::fs::File,
}

/// What [`VersionWriter::publish`] did.
#[derive(Clone, Debug)]
pub struct Published {
    /// The new version's id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Older versions removed.
    pub removed: Vec<String>,
}

/// The manifest fields the caller decides; [`VersionWriter::publish`] fills in the rest.
#[derive(Clone, Debug)]
pub struct ManifestInfo {
    /// Shard file stem.
    pub stem: String,
    /// Rows in the dataset.
    pub row_count: u64,
    /// Encryption parameters name.
    pub rlwe_parameters: String,
    /// Shards in order.
    pub shards: Vec<crate::manifest::ShardEntry>,
    /// Prefilter directory (relative), if written.
    pub prefilter: Option<String>,
    /// Build options.
    pub build: serde_json::Value,
    /// See [`Manifest::settings_digest`].
    pub settings_digest: String,
    /// URL parsing configuration, if any.
    pub parsing: Option<serde_json::Value>,
}

impl VersionWriter {
    /// Starts a version in `dataset_dir` (created if needed): takes the build lock, removes
    /// folders of builds that were killed, creates `versions/.staging-<id>`.
    pub fn begin(dataset_dir: &Path) -> anyhow::Result<VersionWriter> {
        let lock = layout::lock_for_build(dataset_dir)?;
        let n = layout::remove_abandoned_staging(dataset_dir)?;
        if n > 0 {
            tracing::info!(
                "removed {n} unfinished build folder(s) in {}",
                dataset_dir.display()
            );
        }
        let id = layout::new_version_id();
        let staging = dataset_dir
            .join(VERSIONS)
            .join(format!("{STAGING_PREFIX}{id}"));
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        Ok(VersionWriter {
            dataset_dir: dataset_dir.to_path_buf(),
            id,
            staging,
            known: Mutex::new(HashMap::new()),
            _lock: lock,
        })
    }

    /// The folder files are written into (not yet visible to servers).
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// The id the version will have.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Writes `bytes` to `rel` inside the version (durably) and records their size and
    /// checksum for the manifest; returns the checksum (SHA-256, hex). Callable from several
    /// threads at once. The file is new and synced; no temporary file or directory sync per
    /// file: [`VersionWriter::publish`] syncs the staging folders once before the rename, and
    /// a crash before it leaves a staging folder that the next build removes.
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> anyhow::Result<String> {
        let path = self.staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        sift_fsutil::write_synced(&path, bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        self.record(FileEntry {
            path: rel.to_string(),
            size: bytes.len() as u64,
            sha256: sha256.clone(),
        });
        Ok(sha256)
    }

    fn record(&self, entry: FileEntry) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.path.clone(), entry);
    }

    /// Shares `entry` of the version in `from_dir` (a previous version) as `rel`: a hard link
    /// (same inode, no copy), or a copy where links are not possible. The previous manifest's
    /// size and checksum are reused after checking the size.
    pub fn link_from(&self, from_dir: &Path, entry: &FileEntry, rel: &str) -> anyhow::Result<()> {
        link_file(from_dir, entry, &self.staging.join(rel))?;
        self.record_linked(entry, rel);
        Ok(())
    }

    /// Records that `rel` (already in the staging folder, e.g. by [`link_file`]) is a copy
    /// of `entry`, so that publishing reuses its size and checksum.
    pub fn record_linked(&self, entry: &FileEntry, rel: &str) {
        self.record(FileEntry {
            path: rel.to_string(),
            size: entry.size,
            sha256: entry.sha256.clone(),
        });
    }

    /// Lists and checksums every file, writes the manifest last, renames the staging folder
    /// to `versions/<id>`, switches `current` to it and removes versions beyond `keep`.
    pub fn publish(self, info: ManifestInfo, keep: usize) -> anyhow::Result<Published> {
        let mut files = Vec::new();
        collect_files(&self.staging, "", &mut files)?;
        files.sort();
        files.retain(|rel| rel != MANIFEST_FILE);
        let known = std::mem::take(&mut *self.known.lock().unwrap_or_else(|e| e.into_inner()));
        let entries = files
            .into_par_iter()
            .map(|rel| -> anyhow::Result<FileEntry> {
                if let Some(e) = known.get(&rel) {
                    return Ok(e.clone());
                }
                let p = self.staging.join(&rel);
                // Files written by other crates (the prefilter) may not be synced yet.
                std::fs::File::open(&p)
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("syncing {}", p.display()))?;
                let (sha256, size) = hash_file(&p)?;
                Ok(FileEntry {
                    path: rel,
                    size,
                    sha256,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let manifest = Manifest {
            format: FORMAT.to_string(),
            id: self.id.clone(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            tool_version: format!("sift {}", env!("CARGO_PKG_VERSION")),
            stem: info.stem,
            row_count: info.row_count,
            rlwe_parameters: info.rlwe_parameters,
            shards: info.shards,
            files: entries,
            prefilter: info.prefilter,
            build: info.build,
            settings_digest: info.settings_digest,
            parsing: info.parsing,
        };
        manifest.check()?;
        let mut subdirs = Vec::new();
        collect_dirs(&self.staging, &mut subdirs)?;
        for d in &subdirs {
            sync_dir(d)?;
        }
        write_atomic(
            &self.staging.join(MANIFEST_FILE),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        let dir = layout::version_dir(&self.dataset_dir, &self.id);
        std::fs::rename(&self.staging, &dir)
            .with_context(|| format!("renaming {} to {}", self.staging.display(), dir.display()))?;
        sync_dir(&self.dataset_dir.join(VERSIONS))?;
        layout::switch_current(&self.dataset_dir, &self.id)?;
        let removed = layout::prune(&self.dataset_dir, keep)?;
        Ok(Published {
            id: self.id.clone(),
            dir,
            manifest,
            removed,
        })
    }
}

/// Hard-links (or copies, where links are not possible) `entry` of the version in `from_dir`
/// to `dst`, after checking its size against the entry.
pub fn link_file(from_dir: &Path, entry: &FileEntry, dst: &Path) -> anyhow::Result<()> {
    let src = from_dir.join(&entry.path);
    let len = std::fs::metadata(&src)
        .with_context(|| format!("reading {}", src.display()))?
        .len();
    anyhow::ensure!(
        len == entry.size,
        "{} has {len} bytes, its manifest says {}",
        src.display(),
        entry.size
    );
    if std::fs::hard_link(&src, dst).is_err() {
        std::fs::copy(&src, dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

impl Drop for VersionWriter {
    /// A version that was not published (an error, a panic) leaves nothing behind: its
    /// staging folder is removed. After [`VersionWriter::publish`] the folder has been
    /// renamed, so there is nothing to remove.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

fn collect_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e
            .file_name()
            .to_str()
            .map(str::to_string)
            .with_context(|| format!("non-UTF-8 file name in {}", dir.display()))?;
        if name.starts_with('.') {
            continue; // temporary files of an atomic write
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let t = e.file_type()?;
        if t.is_dir() {
            collect_files(&e.path(), &rel, out)?;
        } else if t.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            collect_dirs(&e.path(), out)?;
        }
    }
    out.push(dir.to_path_buf());
    Ok(())
}
