//! Durable file writes: the one `write_atomic` of the dataset format.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` atomically and durably: a temporary file in the same directory,
/// `fsync`, rename over `path`, then `fsync` of the directory. A crash leaves either the old
/// file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    sync_dir(dir)
}

/// `fsync`s a directory so that renames and new entries in it survive a crash.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let d = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    d.sync_all()
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// SHA-256 (hex) and size of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}
