//! Where a dataset's files live.
//!
//! ```text
//! OUT/                      the folder given to `sift build -o` (a use case's `dataset_dir`)
//!   current -> versions/ID  symlink, replaced atomically (rename) when a version is published
//!   versions/ID/            one immutable version: Apple's layout plus the manifest
//!     url-0.bin url-0.params.txtpb … url-evaluation-key-config.txtpb
//!     url-0.rows …          the shards' rows (for `sift update`)
//!     prefilter/            the Bloom prefilter for exactly these rows
//!     manifest.json         written last
//!   versions/.staging-ID/   a build in progress (removed by the next build when abandoned)
//! ```
//!
//! A folder without `current` is a legacy flat dataset (`OUT/<stem>-<i>.bin` …) and loads as
//! before. Once `current` exists, flat files next to it are ignored, so a stale one can never
//! be mixed into a versioned dataset.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::fsutil::sync_dir;
use crate::manifest::MANIFEST_FILE;

/// The `current` pointer's name.
pub const CURRENT: &str = "current";
/// The directory holding versions.
pub const VERSIONS: &str = "versions";
/// Prefix of in-progress version directories.
pub const STAGING_PREFIX: &str = ".staging-";

/// What a dataset folder holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A versioned dataset; `current` names this version.
    Versioned {
        /// The version id.
        id: String,
        /// `OUT/versions/<id>`.
        dir: PathBuf,
    },
    /// A flat folder of `<stem>-<i>` files (written by older `sift build` or by Apple's tool).
    Legacy {
        /// The folder itself.
        dir: PathBuf,
    },
}

/// The directory of version `id`.
pub fn version_dir(dataset_dir: &Path, id: &str) -> PathBuf {
    dataset_dir.join(VERSIONS).join(id)
}

/// Reads what `dataset_dir` holds (cheap: one `readlink`).
pub fn resolve(dataset_dir: &Path) -> anyhow::Result<Layout> {
    let cur = dataset_dir.join(CURRENT);
    match std::fs::read_link(&cur) {
        Ok(target) => {
            let id = version_id_of_target(&target).with_context(|| {
                format!(
                    "{} points to {}, not to {VERSIONS}/<id>",
                    cur.display(),
                    target.display()
                )
            })?;
            Ok(Layout::Versioned {
                dir: version_dir(dataset_dir, &id),
                id,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dataset_dir.is_dir() {
                bail!(
                    "dataset folder {} does not exist: run `sift build -o {}` first",
                    dataset_dir.display(),
                    dataset_dir.display()
                );
            }
            Ok(Layout::Legacy {
                dir: dataset_dir.to_path_buf(),
            })
        }
        Err(e) => {
            Err(e).with_context(|| format!("{} is not a symlink to a version", cur.display()))
        }
    }
}

fn version_id_of_target(target: &Path) -> Option<String> {
    let mut comps = target.components();
    let first = comps.next()?.as_os_str().to_str()?;
    let id = comps.next()?.as_os_str().to_str()?;
    (first == VERSIONS && comps.next().is_none() && valid_id(id)).then(|| id.to_string())
}

/// Whether `id` is a well-formed version id (`[0-9a-zA-Z_-]`, not starting with `.`).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The directory of the current version's prefilter (`current/prefilter` resolved to its
/// version, so that a caller serving it does not race a switch), or the legacy
/// `OUT/prefilter`.
pub fn prefilter_dir(dataset_dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(match resolve(dataset_dir)? {
        Layout::Versioned { dir, .. } => dir.join("prefilter"),
        Layout::Legacy { dir } => dir.join("prefilter"),
    })
}

/// A new version id: nanoseconds since the epoch (zero-padded, so ids sort by age, also
/// within one second) and a random suffix.
pub fn new_version_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:020}-{:08x}", rand::random::<u32>())
}

/// Points `current` at version `id` atomically: a new symlink under a temporary name, renamed
/// over `current`, then the folder is `fsync`ed. The version must be complete (have its
/// manifest) already.
pub fn switch_current(dataset_dir: &Path, id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(valid_id(id), "invalid version id {id:?}");
    let dir = version_dir(dataset_dir, id);
    anyhow::ensure!(
        dir.join(MANIFEST_FILE).is_file(),
        "version {} has no manifest",
        dir.display()
    );
    let tmp = dataset_dir.join(format!(".{CURRENT}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    symlink_dir(&Path::new(VERSIONS).join(id), &tmp)?;
    std::fs::rename(&tmp, dataset_dir.join(CURRENT))
        .with_context(|| format!("switching {}/{CURRENT}", dataset_dir.display()))?;
    sync_dir(dataset_dir)
}

#[cfg(unix)]
fn symlink_dir(target: &Path, link: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("creating symlink {}", link.display()))
}

#[cfg(not(unix))]
fn symlink_dir(target: &Path, link: &Path) -> anyhow::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
        .with_context(|| format!("creating symlink {}", link.display()))
}

/// Published versions (with a manifest), oldest first.
pub fn list_versions(dataset_dir: &Path) -> anyhow::Result<Vec<String>> {
    let root = dataset_dir.join(VERSIONS);
    let mut ids = Vec::new();
    let rd = match std::fs::read_dir(&root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    for e in rd {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if valid_id(&name) && e.path().join(MANIFEST_FILE).is_file() {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

/// Removes published versions beyond the newest `keep` (at least 1), never the current one,
/// and abandoned staging folders (builds that were killed). Returns the removed ids.
/// A server that still serves a removed version keeps its copy in memory (files are read
/// whole at load); devices holding its config get 410 once the server retires it.
pub fn prune(dataset_dir: &Path, keep: usize) -> anyhow::Result<Vec<String>> {
    let current = match resolve(dataset_dir)? {
        Layout::Versioned { id, .. } => Some(id),
        Layout::Legacy { .. } => None,
    };
    let ids = list_versions(dataset_dir)?;
    let keep = keep.max(1);
    let mut removed = Vec::new();
    if ids.len() > keep {
        for id in &ids[..ids.len() - keep] {
            if Some(id) == current.as_ref() {
                continue;
            }
            let dir = version_dir(dataset_dir, id);
            // Remove the manifest first: a half-removed version is then "incomplete", never
            // mistaken for a complete one.
            let _ = std::fs::remove_file(dir.join(MANIFEST_FILE));
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing old version {}", dir.display()))?;
            removed.push(id.clone());
        }
    }
    Ok(removed)
}

/// Removes `versions/.staging-*` folders left by builds that did not finish. Only call this
/// while holding the dataset's build lock.
pub fn remove_abandoned_staging(dataset_dir: &Path) -> anyhow::Result<usize> {
    let root = dataset_dir.join(VERSIONS);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    let mut n = 0;
    for e in rd {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Takes the dataset's build lock (`OUT/.build.lock`, an OS file lock released when the
/// returned file is dropped or the process dies), so two builds never publish into one
/// folder at once.
pub fn lock_for_build(dataset_dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dataset_dir.join(VERSIONS))
        .with_context(|| format!("creating {}", dataset_dir.join(VERSIONS).display()))?;
    let p = dataset_dir.join(".build.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another build is writing to {} (it holds {}); wait for it to finish",
            dataset_dir.display(),
            p.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", p.display()))
        }
    }
}
