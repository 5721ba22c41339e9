//! `manifest.json`: what a dataset version holds, so that a loader reads exactly those files.

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The `format` value of manifests this crate writes and reads.
pub const FORMAT: &str = "sift-dataset/1";

/// The manifest's file name inside a version directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A version's manifest. Written last into the version directory, so a version without one
/// is incomplete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The version id (also the directory name under `versions/`).
    pub id: String,
    /// Seconds since the Unix epoch when the version was published.
    pub created_unix: u64,
    /// The tool that wrote it, e.g. `sift 0.1.0`.
    pub tool_version: String,
    /// Shard file stem (`<stem>-<i>.bin`).
    pub stem: String,
    /// Rows (keywords) in the dataset.
    pub row_count: u64,
    /// Predefined encryption parameters name.
    pub rlwe_parameters: String,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardEntry>,
    /// Every file of the version (paths relative to the version directory, `/`-separated),
    /// except the manifest itself.
    pub files: Vec<FileEntry>,
    /// The prefilter directory, relative to the version directory, if the version has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefilter: Option<String>,
    /// The build options as given (typed processing config plus `sift build` flags).
    pub build: serde_json::Value,
    /// Digest of everything besides the rows that determines a shard's bytes (parameters,
    /// cuckoo options, seed, symmetric key): shards can only be reused between versions with
    /// the same settings digest.
    pub settings_digest: String,
    /// The URL parsing configuration the keys were made with (free-form, owned by `urlkeys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsing: Option<serde_json::Value>,
}

/// One shard of a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// Rows in this shard.
    pub rows: u64,
    /// Digest of the shard's rows (see [`crate::rows_digest`]): equal digests
    /// and settings mean identical shard files.
    pub rows_sha256: String,
    /// Apple's processed database (`.bin`), relative to the version directory: written where
    /// the server needs it (no `.words`: a modulus of 2^30 or more) or the operator asked
    /// for Apple's layout (`sift build --apple-layout`); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The `PirParameters` file (`.params.txtpb`), relative to the version directory.
    pub parameters: String,
    /// The shard in the form the server computes on (`.words`, see `sift_pir::storage`),
    /// memory-mapped at load; `None` when not written (parameters with a modulus of 2^30 or
    /// more, or versions of older sift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<String>,
    /// Plaintexts an update replaced without rewriting the `.words` file (`.overlay`, see
    /// `sift_pir::overlay`): the server adds them to what it computes on the `.words`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
    /// Rows changed since the `.rows` file was written (`.rows-log`, see [`crate::logs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_log: Option<String>,
    /// Cuckoo buckets changed since the `.cuckoo` file was written (`.cuckoo-log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_log: Option<String>,
    /// The shard's rows (`.rows`), kept so that `sift update` can rebuild it; `None` when not
    /// written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_file: Option<String>,
}

/// One file with its size and checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the version directory, `/`-separated, no `..`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// Reads and checks a manifest: format, relative paths only, every shard file listed.
    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        m.check()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(m)
    }

    /// Structural checks (no file access).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.format != FORMAT {
            bail!(
                "manifest format {:?}, this sift reads {FORMAT:?}",
                self.format
            );
        }
        if self.shards.is_empty() {
            bail!("manifest lists no shards");
        }
        for f in &self.files {
            if !safe_relative(&f.path) {
                bail!("manifest path {:?} leaves the version directory", f.path);
            }
        }
        for (i, s) in self.shards.iter().enumerate() {
            if s.database.is_none() && s.words.is_none() {
                bail!("shard {i} has neither a .bin nor a .words file");
            }
            if s.overlay.is_some() && s.words.is_none() {
                bail!("shard {i} has an overlay but no .words file");
            }
            for p in [&s.parameters]
                .into_iter()
                .chain(s.database.as_ref())
                .chain(s.overlay.as_ref())
                .chain(s.rows_log.as_ref())
                .chain(s.table_log.as_ref())
                .chain(s.rows_file.as_ref())
                .chain(s.words.as_ref())
            {
                if self.file(p).is_none() {
                    bail!("shard {i}'s {p} is not in the manifest's file list");
                }
            }
        }
        Ok(())
    }

    /// The file entry for `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Total bytes of the listed files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}
