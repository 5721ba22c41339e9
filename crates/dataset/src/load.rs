//! Loading a dataset for the server: exactly the files the current version's manifest lists.
//!
//! Every listed file must exist with its listed size. Small files (parameters) and Apple's
//! `.bin` shards are checked against their SHA-256 before they are parsed. A shard with a
//! `.words` file (the form the server computes on) is memory-mapped instead of read: its
//! header is checked against the parameters at once, and its SHA-256 over the mapped bytes
//! before the shard's first answer (or at once for all shards with
//! [`KeywordPirServer::verify_all`], which is also the warm-up). A shard whose bytes do not
//! match refuses every query with an error naming the file, so a corrupt file is never
//! answered from, and loading a 100M-row dataset does not read it all before serving.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use sift_pir::server::{ContextCache, KeywordPirServer, ServerShard, ShardCheck, parse_parameters};

use crate::layout::{self, Layout};
use crate::manifest::{FileEntry, MANIFEST_FILE, Manifest};

/// A shard file as a loader saw it: its device and inode (the same file, also through a
/// hard link in a later version), size and the manifest's SHA-256. Versions are immutable,
/// so a file a running server verified need not be hashed again when a later version shares
/// it (see [`load_trusting`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    sha256: String,
}

/// The identity of `path`, listed in the manifest as `entry`.
fn identity(path: &Path, entry: &FileEntry) -> anyhow::Result<FileIdentity> {
    let m = std::fs::metadata(path).with_context(|| path.display().to_string())?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (u64::MAX, u64::MAX);
    Ok(FileIdentity {
        dev,
        ino,
        size: m.len(),
        sha256: entry.sha256.clone(),
    })
}

/// A loaded dataset.
pub struct Loaded {
    /// The PIR evaluator over its shards.
    pub server: KeywordPirServer,
    /// Per shard, the identity of its mapped `.words` file (None for a shard read whole).
    pub mapped_files: Vec<Option<FileIdentity>>,
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
    load_trusting(dataset_dir, stem, &HashSet::new())
}

/// [`load`], taking the mapped shard files in `trusted` (files a running server has verified,
/// shared by hard links with the new version: same inode, size and SHA-256) as verified, so
/// a reload after an update hashes only the files that are new.
pub fn load_trusting(
    dataset_dir: &Path,
    stem: &str,
    trusted: &HashSet<FileIdentity>,
) -> anyhow::Result<Loaded> {
    match layout::resolve(dataset_dir)? {
        Layout::Versioned { id, dir } => {
            let manifest = load_manifest(&dir, &id)?;
            if manifest.stem != stem {
                bail!(
                    "version {id} was built with --stem {:?} but the use case's stem is {stem:?}",
                    manifest.stem
                );
            }
            let (server, mapped_files) = load_version_shards(&dir, &manifest, trusted)
                .with_context(|| format!("version {id} in {}", dir.display()))?;
            Ok(Loaded {
                server,
                mapped_files,
                manifest: Some(manifest),
                dir,
                signature: format!("version:{id}"),
            })
        }
        Layout::Legacy { dir } => {
            let signature = legacy_signature(&dir, stem)?;
            let server = KeywordPirServer::load(&dir, stem).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Loaded {
                mapped_files: vec![None; server.shards().len()],
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
    let e = listed(manifest, rel)?;
    let p = dir.join(rel);
    let bytes =
        std::fs::read(&p).with_context(|| format!("{} (listed in the manifest)", p.display()))?;
    check_listed(&p, e, &bytes)?;
    Ok(bytes)
}

/// Maps a listed file (`sift_pir::storage::map_file`) and checks its size and SHA-256 over the
/// mapped bytes, so the file is read once.
pub fn map_verified(
    dir: &Path,
    manifest: &Manifest,
    rel: &str,
) -> anyhow::Result<std::sync::Arc<sift_pir::storage::Mmap>> {
    let (map, e) = map_listed(dir, manifest, rel)?;
    check_listed(&dir.join(rel), e, &map)?;
    Ok(map)
}

/// Maps a listed file and checks its size only (nothing is read); returns the map and the
/// file's manifest entry.
fn map_listed<'m>(
    dir: &Path,
    manifest: &'m Manifest,
    rel: &str,
) -> anyhow::Result<(std::sync::Arc<sift_pir::storage::Mmap>, &'m FileEntry)> {
    let e = listed(manifest, rel)?;
    let p = dir.join(rel);
    let map = sift_pir::storage::map_file(&p)
        .map_err(|err| anyhow::anyhow!("{err} (listed in the manifest)"))?;
    anyhow::ensure!(
        map.len() as u64 == e.size,
        "{} has {} bytes, the manifest says {}: the file is truncated or was replaced",
        p.display(),
        map.len(),
        e.size
    );
    Ok((map, e))
}

/// The manifest entry of `rel`.
fn listed<'m>(manifest: &'m Manifest, rel: &str) -> anyhow::Result<&'m FileEntry> {
    manifest
        .file(rel)
        .with_context(|| format!("{rel} is not in the manifest"))
}

/// Checks the bytes of the file `p` against its manifest entry (size, then SHA-256).
fn check_listed(p: &Path, e: &FileEntry, bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.len() as u64 != e.size {
        bail!(
            "{} has {} bytes, the manifest says {}: the file is truncated or was replaced",
            p.display(),
            bytes.len(),
            e.size
        );
    }
    if hex::encode(Sha256::digest(bytes)) != e.sha256 {
        bail!(
            "{} does not match its SHA-256 in the manifest: the file is corrupt or was replaced",
            p.display()
        );
    }
    Ok(())
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

fn load_version_shards(
    dir: &Path,
    manifest: &Manifest,
    trusted: &HashSet<FileIdentity>,
) -> anyhow::Result<(KeywordPirServer, Vec<Option<FileIdentity>>)> {
    // Files the server does not parse (rows, prefilter, .bin beside .words) must still be
    // present and of their listed size.
    verify(dir, manifest, false)?;
    // In parallel: each shard reads and checks its parameters (and overlay, if any).
    let contexts = ContextCache::default();
    let (shards, files): (Vec<ServerShard>, Vec<Option<FileIdentity>>) = manifest
        .shards
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            load_shard(dir, manifest, s, i, &contexts, trusted)
                .with_context(|| format!("shard {i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let server = KeywordPirServer::from_shards(shards).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((server, files))
}

fn load_shard(
    dir: &Path,
    manifest: &Manifest,
    s: &crate::manifest::ShardEntry,
    i: usize,
    contexts: &ContextCache,
    trusted: &HashSet<FileIdentity>,
) -> anyhow::Result<(ServerShard, Option<FileIdentity>)> {
    let params_bytes = read_verified(dir, manifest, &s.parameters)?;
    let proto = parse_parameters(&dir.join(&s.parameters), &params_bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let params =
        sift_pir::wire::pir_parameters_from_proto(&proto).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = contexts
        .get(i, &params)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(words) = &s.words {
        let (map, entry) = map_listed(dir, manifest, words)?;
        let entry = entry.clone();
        let path = dir.join(words);
        let file = identity(&path, &entry)?;
        let check = (!trusted.contains(&file)).then(|| {
            let map = map.clone();
            ShardCheck(Box::new(move || {
                if hex::encode(Sha256::digest(&map[..])) == entry.sha256 {
                    Ok(())
                } else {
                    Err(format!(
                        "{} does not match its SHA-256 in the manifest: the file is corrupt \
                         or was replaced; this shard refuses queries until a good version \
                         is published (`sift dataset verify` checks every file)",
                        path.display()
                    ))
                }
            }))
        });
        let mut shard = ServerShard::from_words(&ctx, proto, &map, check)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(words).display()))?;
        if let Some(o) = &s.overlay {
            let bytes = read_verified(dir, manifest, o)?;
            let shape = sift_pir::server::words_shape(&ctx, &shard.params);
            shard = sift_pir::overlay::Overlay::decode(&ctx, shape, &bytes)
                .and_then(|overlay| shard.with_overlay(overlay))
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(o).display()))?;
        }
        return Ok((shard, Some(file)));
    }
    let bin = s
        .database
        .as_ref()
        .context("the shard has neither a .words nor a .bin file")?;
    let db = read_verified(dir, manifest, bin)?;
    let shard = ServerShard::from_bin(&ctx, proto, &db)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(bin).display()))?;
    Ok((shard, None))
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
