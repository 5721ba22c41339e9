//! Durable file writes of the dataset format (over `sift_fsutil`) and file checksums.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` atomically and durably (`sift_fsutil::write_atomic`: a synced
/// temporary file renamed over `path`, then the directory synced), with the path in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    sift_fsutil::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
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
