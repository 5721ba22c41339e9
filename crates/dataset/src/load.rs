//! Loading a dataset for the server: exactly the files the current version's manifest lists,
//! each checked against its size and SHA-256 before it is parsed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};
use sift_pir::server::{KeywordPirServer, parse_parameters};

use crate::layout::{self, Layout};
use crate::manifest::{MANIFEST_FILE, Manifest};

/// A loaded dataset.
pub struct Loaded {
    /// The PIR evaluator over its shards.
    pub server: KeywordPirServer,
    /// The version's manifest; `None` for a legacy flat folder.
    pub manifest: Option<Manifest>,
    /// The folder the shard files were read from.
    pub dir: PathBuf,
    /// What [`signature`] returned for this state.
    pub signature: String,
}

/// A cheap fingerprint of what `dataset_dir` would load: `version:<id>` for a versioned
/// dataset (versions are immutable, so the id is enough), the shard files' sizes and
/// modification times for a legacy folder. Compare it between polls to decide whether to
/// reload, and remember a refused one to avoid re-reading it on every poll.
pub fn signature(dataset_dir: &Path, stem: &str) -> anyhow::Result<String> {
    match layout::resolve(dataset_dir)? {
        Layout::Versioned { id, .. } => Ok(format!("version:{id}")),
        Layout::Legacy { dir } => legacy_signature(&dir, stem),
    }
}

/// Loads the dataset in `dataset_dir`: the current version (verified), or a legacy flat folder.
pub fn load(dataset_dir: &Path, stem: &str) -> anyhow::Result<Loaded> {
    match layout::resolve(dataset_dir)? {
        Layout::Versioned { id, dir } => {
            let manifest = load_manifest(&dir, &id)?;
            if manifest.stem != stem {
                bail!(
                    "version {id} was built with --stem {:?} but the use case's stem is {stem:?}",
                    manifest.stem
                );
            }
            let server = load_version_shards(&dir, &manifest)
                .with_context(|| format!("version {id} in {}", dir.display()))?;
            Ok(Loaded {
                server,
                manifest: Some(manifest),
                dir,
                signature: format!("version:{id}"),
            })
        }
        Layout::Legacy { dir } => {
            let signature = legacy_signature(&dir, stem)?;
            let server = KeywordPirServer::load(&dir, stem).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Loaded {
                server,
                manifest: None,
                dir,
                signature,
            })
        }
    }
}

/// Reads version `id`'s manifest from `dir`, checking that it names itself.
pub fn load_manifest(dir: &Path, id: &str) -> anyhow::Result<Manifest> {
    let p = dir.join(MANIFEST_FILE);
    if !p.is_file() {
        bail!(
            "version {id} is incomplete: {} is missing (an interrupted build?)",
            p.display()
        );
    }
    let m = Manifest::read(&p)?;
    anyhow::ensure!(
        m.id == id,
        "{} names version {:?}, its folder is {id:?}",
        p.display(),
        m.id
    );
    Ok(m)
}

/// Reads a listed file whole and checks its size and SHA-256.
pub fn read_verified(dir: &Path, manifest: &Manifest, rel: &str) -> anyhow::Result<Vec<u8>> {
    let e = manifest
        .file(rel)
        .with_context(|| format!("{rel} is not in the manifest"))?;
    let p = dir.join(rel);
    let bytes =
        std::fs::read(&p).with_context(|| format!("{} (listed in the manifest)", p.display()))?;
    if bytes.len() as u64 != e.size {
        bail!(
            "{} has {} bytes, the manifest says {}: the file is truncated or was replaced",
            p.display(),
            bytes.len(),
            e.size
        );
    }
    if hex::encode(Sha256::digest(&bytes)) != e.sha256 {
        bail!(
            "{} does not match its SHA-256 in the manifest: the file is corrupt or was replaced",
            p.display()
        );
    }
    Ok(bytes)
}

/// Checks that every listed file exists with its size; with `full`, also its checksum.
pub fn verify(dir: &Path, manifest: &Manifest, full: bool) -> anyhow::Result<()> {
    for f in &manifest.files {
        let p = dir.join(&f.path);
        if full {
            let (sha, size) = crate::fsutil::hash_file(&p)
                .with_context(|| format!("{} (listed in the manifest)", p.display()))?;
            anyhow::ensure!(
                size == f.size && sha == f.sha256,
                "{} does not match the manifest (size or SHA-256)",
                p.display()
            );
        } else {
            let m = std::fs::metadata(&p)
                .with_context(|| format!("{} (listed in the manifest)", p.display()))?;
            anyhow::ensure!(
                m.len() == f.size,
                "{} has {} bytes, the manifest says {}",
                p.display(),
                m.len(),
                f.size
            );
        }
    }
    Ok(())
}

fn load_version_shards(dir: &Path, manifest: &Manifest) -> anyhow::Result<KeywordPirServer> {
    // Files the server does not parse (rows, prefilter) must still be present and whole.
    verify(dir, manifest, false)?;
    let mut shards = Vec::with_capacity(manifest.shards.len());
    for (i, s) in manifest.shards.iter().enumerate() {
        let params_bytes =
            read_verified(dir, manifest, &s.parameters).with_context(|| format!("shard {i}"))?;
        let proto = parse_parameters(&dir.join(&s.parameters), &params_bytes)
            .map_err(|e| anyhow::anyhow!("shard {i}: {e}"))?;
        let db = read_verified(dir, manifest, &s.database).with_context(|| format!("shard {i}"))?;
        shards.push((proto, db));
    }
    KeywordPirServer::from_serialized(shards).map_err(|e| anyhow::anyhow!("{e}"))
}

fn legacy_signature(dir: &Path, stem: &str) -> anyhow::Result<String> {
    let mut sig = String::from("legacy:");
    let mut found = false;
    for i in 0.. {
        let txt = dir.join(format!("{stem}-{i}.params.txtpb"));
        let bin = dir.join(format!("{stem}-{i}.params.binpb"));
        let params = if txt.exists() {
            txt
        } else if bin.exists() {
            bin
        } else {
            break;
        };
        found = true;
        sig.push_str(&file_signature(&params)?);
        sig.push_str(&file_signature(&dir.join(format!("{stem}-{i}.bin")))?);
    }
    anyhow::ensure!(
        found,
        "no {stem}-0.params.txtpb and no versioned dataset (current) in {}",
        dir.display()
    );
    Ok(sig)
}

/// Size and modification time of a file, for change detection.
pub fn file_signature(f: &Path) -> anyhow::Result<String> {
    let m = std::fs::metadata(f).with_context(|| f.display().to_string())?;
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{}:{}:{t};", f.display(), m.len()))
}
