//! Updates in place: a new version that differs from the current one only in the cuckoo
//! buckets, and so the plaintexts, that the changed keys touch.
//!
//! A build that keeps its rows also keeps each shard's cuckoo table (`<stem>-<i>.cuckoo`).
//! An update takes a touched shard's table up again, removes the deleted keys, inserts the new
//! ones by cuckoo insertion into the table of the same size (evicting as a build does),
//! re-encodes only the plaintexts holding a changed bucket and writes them over copies of the
//! shard's `.bin` and `.words`. The shard's parameters stay the same, so devices' existing
//! configuration keeps working. A shard whose table has no room left (or that has no table
//! file) is processed afresh from its rows, alone; untouched shards are hard-linked.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use sift_he::Context;
use sift_pir::bucket::Slot;
use sift_pir::cuckoo::{CuckooTable, InsertLimits};
use sift_pir::keyword::keyword_hash;
use sift_pir::params::EvaluationKeyConfig;
use sift_pir::server::{self, KeywordPirConfig, Rows, Sharding, WordsChange};
use sift_pir::wire::{self, ShardParameters};

use crate::manifest::{Manifest, ShardEntry};
use crate::process::{Trial, current_version, decode_rows, encode_rows, run_trials};
use crate::writer::{ManifestInfo, Published, VersionWriter};

/// Magic of a `.cuckoo` file: `"SIFTCKO1" ‖ u64 LE slot count ‖ u64 LE max serialized bucket
/// size ‖ u64 LE max evictions ‖` [`CuckooTable::serialize`].
const MAGIC: &[u8; 8] = b"SIFTCKO1";

/// The name of shard `i`'s cuckoo table file.
pub fn table_file_name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}.cuckoo")
}

/// Writes shard `i`'s cuckoo table (built with `config`) into the version `writer` stages, so
/// that `sift update` can change the shard in place. The build calls this for every
/// processed shard when it keeps rows.
pub fn write_table(
    writer: &VersionWriter,
    stem: &str,
    i: usize,
    table: &CuckooTable,
    config: &KeywordPirConfig,
) -> anyhow::Result<()> {
    let mut out = MAGIC.to_vec();
    for v in [
        config.cuckoo.slot_count,
        config.cuckoo.max_serialized_bucket_size,
        config.cuckoo.max_eviction_count,
    ] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    out.extend_from_slice(&table.serialize()?);
    writer.write_file(&table_file_name(stem, i), &out)?;
    Ok(())
}

/// Shares shard `i`'s cuckoo table file of the version in `from_dir` (when it has one) with
/// the version being written: the build calls this for every shard it reuses.
pub fn link_table(
    writer: &VersionWriter,
    from_dir: &Path,
    from: &Manifest,
    stem: &str,
    i: usize,
) -> anyhow::Result<()> {
    let name = table_file_name(stem, i);
    if let Some(e) = from.file(&name) {
        writer.link_from(from_dir, e, &name)?;
    }
    Ok(())
}

/// A `.cuckoo` file's limits and table; `verified`: its bytes were checked against the
/// manifest, so the per-row placement checks are skipped.
fn read_table(bytes: &[u8], verified: bool) -> anyhow::Result<(InsertLimits, CuckooTable)> {
    anyhow::ensure!(
        bytes.len() >= TABLE_HEADER && &bytes[..8] == MAGIC,
        "not a sift cuckoo table file"
    );
    let field = |i: usize| {
        usize::try_from(u64::from_le_bytes(
            bytes[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"),
        ))
        .unwrap_or(usize::MAX)
    };
    let limits = InsertLimits {
        slot_count: field(0),
        max_bucket_bytes: field(1),
        max_evictions: field(2),
    };
    let table = if verified {
        CuckooTable::deserialize_verified(&bytes[TABLE_HEADER..])?
    } else {
        CuckooTable::deserialize(&bytes[TABLE_HEADER..])?
    };
    Ok((limits, table))
}

/// Bytes before the table in a `.cuckoo` file (magic and three limits).
const TABLE_HEADER: usize = 32;

/// The default largest share of a shard's plaintexts an update keeps as an overlay beside
/// the shard's unchanged `.words` (see `sift_pir::overlay`) before it rewrites the file. The
/// server adds each overlay plaintext to the first dimension's sums (measured by `cargo bench
/// -p sift-pir --bench overlay`, see docs/datasets.md), so an overlay of this size costs a
/// small fraction of the query time, while the update writes only the replaced plaintexts.
pub const DEFAULT_MAX_OVERLAY_FRACTION: f64 = 0.35;

/// What to change in the current version.
pub struct UpdateRequest {
    /// The dataset folder (`sift build -o`).
    pub dataset_dir: PathBuf,
    /// Keywords to remove, as stored (OPRF-transformed for symmetric PIR).
    pub remove: Vec<Vec<u8>>,
    /// Rows to add, as stored; a row whose keyword is present replaces its value (and wins
    /// over a removal of the same keyword).
    pub add: Rows,
    /// The processing options the version was built with (a shard that has to be processed
    /// afresh uses them; the shard count stays the version's).
    pub config: KeywordPirConfig,
    /// The build's cuckoo seed (shard i uses seed + i).
    pub seed: u64,
    /// Trial queries per shard processed afresh.
    pub trials: usize,
    /// Published versions to keep on disk (with the new one).
    pub versions_kept: usize,
    /// Build options to record in the manifest.
    pub build_options: serde_json::Value,
    /// The largest share of a shard's plaintexts kept as an overlay beside its `.words`
    /// ([`DEFAULT_MAX_OVERLAY_FRACTION`]); beyond it the file is rewritten (0: always).
    pub max_overlay_fraction: f64,
}

/// What happened to one shard.
#[derive(Clone, Debug, PartialEq)]
pub enum ShardOutcome {
    /// Untouched: its files are shared with the previous version.
    Reused,
    /// Changed in place: this many plaintexts re-encoded, parameters unchanged.
    Patched {
        /// Plaintexts re-encoded.
        plaintexts: usize,
        /// Whether the shard's `.words` file is shared with the previous version and the
        /// replaced plaintexts are kept in an overlay beside it (else it was rewritten).
        overlay: bool,
    },
    /// Processed afresh from its rows (its parameters may differ), and why.
    Rebuilt {
        /// Why it could not be changed in place.
        reason: String,
    },
}

/// What [`update`] did.
#[derive(Debug)]
pub struct UpdateReport {
    /// The published version.
    pub published: Published,
    /// Per shard, what happened.
    pub shards: Vec<ShardOutcome>,
    /// Keywords that were present and are now gone.
    pub removed: usize,
    /// Rows that are new or have a new value.
    pub added: usize,
    /// Trials of shards processed afresh.
    pub trials: Vec<Trial>,
}

/// One shard's new rows and what the change did to them.
struct ShardChange {
    /// The new rows, encoded as a `.rows` file (sorted by keyword, so that its SHA-256 is the
    /// shard's [`rows_digest`]).
    rows: Vec<u8>,
    /// How many rows that is.
    row_count: usize,
    /// Keywords removed or replaced (present before).
    gone: Vec<Vec<u8>>,
    /// Rows inserted (new keywords or new values).
    new: Rows,
    /// Keywords removed and not added back.
    removed: usize,
}

impl ShardChange {
    /// The new rows, decoded (for a shard processed afresh).
    fn decoded_rows(&self) -> anyhow::Result<Rows> {
        decode_rows(&self.rows)
    }
}

/// One length-prefixed field of a `.rows` record, advancing `b` past it.
fn row_field<'a>(b: &mut &'a [u8]) -> anyhow::Result<&'a [u8]> {
    anyhow::ensure!(b.len() >= 4, "truncated rows file");
    let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    anyhow::ensure!(b.len() >= 4 + n, "truncated rows file");
    let (v, rest) = b[4..].split_at(n);
    *b = rest;
    Ok(v)
}

/// The records of an encoded `.rows` file, borrowed.
fn row_records(mut bytes: &[u8]) -> impl Iterator<Item = anyhow::Result<(&[u8], &[u8])>> {
    let field = row_field;
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let mut b = bytes;
        let r = field(&mut b).and_then(|k| Ok((k, field(&mut b)?)));
        bytes = if r.is_ok() { b } else { &[] };
        Some(r)
    })
}

/// Appends one row to an encoded `.rows` buffer.
fn push_row(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

/// Applies `remove` and `add` to one shard's rows (`old`, an encoded `.rows` file) without
/// decoding them into owned rows: the kept rows and the new ones are merged in keyword order
/// straight into the new file's bytes. Rows files of older versions that are not in keyword
/// order are sorted first.
fn change_rows(
    old: &[u8],
    remove: &HashSet<&[u8]>,
    add: &HashMap<&[u8], &[u8]>,
) -> anyhow::Result<ShardChange> {
    let mut sorted = true;
    let mut prev: Option<&[u8]> = None;
    for r in row_records(old) {
        let (k, _) = r?;
        sorted &= prev.is_none_or(|p| p < k);
        prev = Some(k);
    }
    if !sorted {
        let mut rows = decode_rows(old)?;
        rows.sort_unstable();
        return change_rows(&encode_rows(&rows), remove, add);
    }
    // A row whose keyword is added with another value, or removed and not added, goes.
    let goes = |k: &[u8], v: &[u8]| match add.get(k) {
        Some(nv) => *nv != v,
        None => remove.contains(k),
    };
    let mut gone = Vec::new();
    let mut unchanged_adds: HashSet<&[u8]> = HashSet::new();
    for r in row_records(old) {
        let (k, v) = r?;
        if goes(k, v) {
            gone.push(k.to_vec());
        } else if add.contains_key(k) {
            unchanged_adds.insert(k);
        }
    }
    let mut new: Rows = add
        .iter()
        .filter(|(k, _)| !unchanged_adds.contains(*k))
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    new.sort_unstable();
    let removed = gone
        .iter()
        .filter(|k| !add.contains_key(k.as_slice()))
        .count();
    let mut rows = Vec::with_capacity(
        old.len() + new.iter().map(|r| 8 + r.0.len() + r.1.len()).sum::<usize>(),
    );
    let mut row_count = 0;
    let mut pending = new.iter().peekable();
    for r in row_records(old) {
        let (k, v) = r?;
        if goes(k, v) {
            continue;
        }
        while let Some((nk, nv)) = pending.next_if(|(nk, _)| nk.as_slice() < k) {
            push_row(&mut rows, nk, nv);
            row_count += 1;
        }
        push_row(&mut rows, k, v);
        row_count += 1;
    }
    for (nk, nv) in pending {
        push_row(&mut rows, nk, nv);
        row_count += 1;
    }
    Ok(ShardChange {
        rows,
        row_count,
        gone,
        new,
        removed,
    })
}

/// A touched shard's files, written into the new version's folder.
struct Written {
    outcome: ShardOutcome,
    /// SHA-256 of the new rows file: the shard's rows digest.
    rows_sha256: String,
    key_config: EvaluationKeyConfig,
    has_words: bool,
    has_bin: bool,
    has_overlay: bool,
    trial: Option<Trial>,
}

/// Shard parameters from a `.params.txtpb` text.
fn parse_params(text: &str, name: &str) -> anyhow::Result<ShardParameters> {
    let proto: sift_proto::pir::PirParameters =
        sift_proto::from_text(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(wire::pir_parameters_from_proto(&proto)?)
}

/// Everything one shard's update needs from the previous version.
struct ShardJob<'a> {
    i: usize,
    ctx: &'a Context,
    pdir: &'a Path,
    pm: &'a Manifest,
    writer: &'a VersionWriter,
    change: &'a ShardChange,
    req: &'a UpdateRequest,
    shard_count: usize,
}

impl ShardJob<'_> {
    fn entry(&self) -> &ShardEntry {
        &self.pm.shards[self.i]
    }

    /// Changes the shard in place; `Ok(Err(reason))` when it cannot be (no room, no table).
    fn patch(&self) -> anyhow::Result<Result<Written, String>> {
        let (i, ctx, pm, pdir) = (self.i, self.ctx, self.pm, self.pdir);
        let stem = &pm.stem;
        let table_name = table_file_name(stem, i);
        if pm.file(&table_name).is_none() {
            return Ok(Err("the version has no cuckoo table for it".into()));
        }
        // The file's bytes stay: they hold every bucket as it was before the change, which
        // the overlay's differences are computed from.
        let read = crate::load::read_verified(pdir, pm, &table_name).and_then(|b| {
            let (limits, table) = read_table(&b, true).with_context(|| table_name.clone())?;
            let spans = CuckooTable::bucket_spans(&b[TABLE_HEADER..])?;
            Ok((b, limits, table, spans))
        });
        let (table_bytes, limits, mut table, spans) = match read {
            Ok(t) => t,
            Err(e) => return Ok(Err(format!("its cuckoo table is unusable ({e:#})"))),
        };
        let before = |t: usize, e: usize| {
            spans
                .get(t)
                .and_then(|s| s.get(e))
                .map(|r| table_bytes[TABLE_HEADER..][r.clone()].to_vec())
                .ok_or_else(|| {
                    sift_pir::PirError::DamagedDataset(format!(
                        "{table_name} has no bucket {e} in table {t}"
                    ))
                })
        };
        let s = self.entry();
        let params = parse_params(
            &String::from_utf8(crate::load::read_verified(pdir, pm, &s.parameters)?)?,
            &s.parameters,
        )?;
        if table.len() as u64 != s.rows {
            return Ok(Err(format!(
                "{table_name} holds {} rows, the manifest says {}",
                table.len(),
                s.rows
            )));
        }
        let limits = InsertLimits {
            max_bucket_bytes: limits.max_bucket_bytes.min(params.index.entry_size),
            ..limits
        };
        let mut changed = Vec::new();
        for k in &self.change.gone {
            match table.remove(keyword_hash(k)) {
                Some(c) => changed.push(c),
                None => return Ok(Err(format!("{table_name} lacks a row of the shard"))),
            }
        }
        let mut rng = StdRng::seed_from_u64(
            self.req.seed
                ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ pm.row_count.rotate_left(32),
        );
        for (k, v) in &self.change.new {
            let hash = keyword_hash(k);
            if table.contains(hash) {
                return Ok(Err("two keywords share a keyword hash".into()));
            }
            let slot = Slot {
                keyword_hash: hash,
                value: v.clone(),
            };
            if table.insert(slot, limits, &mut rng, &mut changed).is_err() {
                return Ok(Err("its cuckoo table has no room for the new rows".into()));
            }
        }
        let old_bin = match &s.database {
            Some(b) => Some(crate::load::read_verified(pdir, pm, b)?),
            None => None,
        };
        let old_overlay = match &s.overlay {
            Some(o) => Some(crate::load::read_verified(pdir, pm, o)?),
            None => None,
        };
        let old = server::ShardFiles {
            bin: old_bin.as_deref(),
            words: s.words.is_some(),
            overlay: old_overlay.as_deref(),
        };
        let patched = server::patch_shard(
            ctx,
            &params,
            &table,
            &changed,
            &before,
            old,
            self.req.max_overlay_fraction,
        )
        .with_context(|| format!("shard {i}"))?;
        drop(old_bin);
        let writer = self.writer;
        if let (Some(b), Some(name)) = (&patched.bin, &s.database) {
            writer.write_file(name, b)?;
        }
        let mut has_overlay = false;
        match (&patched.words, &s.words) {
            (Some(WordsChange::Overlay(o)), Some(name)) => {
                let e = pm.file(name).context("manifest lacks a shard file")?;
                writer.link_from(pdir, e, name)?;
                writer.write_file(&overlay_name(stem, i), o)?;
                has_overlay = true;
            }
            (Some(WordsChange::Rewritten(w)), Some(name)) => {
                writer.write_file(name, w)?;
            }
            _ => {}
        }
        let rows_sha256 = writer.write_file(&rows_name(stem, i), &self.change.rows)?;
        let cfg = KeywordPirConfig {
            cuckoo: sift_pir::cuckoo::CuckooConfig {
                slot_count: limits.slot_count,
                max_eviction_count: limits.max_evictions,
                ..self.req.config.cuckoo.clone()
            },
            ..self.req.config.clone()
        };
        write_table(writer, stem, i, &table, &cfg)?;
        Ok(Ok(Written {
            outcome: ShardOutcome::Patched {
                plaintexts: patched.plaintexts,
                overlay: has_overlay,
            },
            rows_sha256,
            key_config: params.index.evaluation_key_config,
            has_words: patched.words.is_some() && s.words.is_some(),
            has_bin: patched.bin.is_some() && s.database.is_some(),
            has_overlay,
            trial: None,
        }))
    }

    /// Processes the shard afresh from its new rows (as a build does).
    fn rebuild(&self, reason: String) -> anyhow::Result<Written> {
        let (i, ctx, writer, stem) = (self.i, self.ctx, self.writer, &self.pm.stem);
        let mut cfg = self.req.config.clone();
        cfg.sharding = Sharding::ShardCount(self.shard_count);
        let rows = &self.change.decoded_rows()?;
        let (shard, table) =
            server::process_shard_with_table(ctx, rows, &cfg, self.req.seed.wrapping_add(i as u64))
                .with_context(|| format!("shard {i}"))?;
        let trial = run_trials(&shard, rows, self.req.trials)
            .with_context(|| format!("shard {i}: trial query failed, so nothing was published"))?;
        let s = self.entry();
        let words = server::words_file(ctx, &shard).with_context(|| format!("shard {i}"))?;
        if let Some(w) = &words {
            writer.write_file(&words_name(stem, i), w)?;
        }
        // Apple's .bin where the previous version had one or the server needs it.
        let has_bin = s.database.is_some() || words.is_none();
        if has_bin {
            writer.write_file(&bin_name(stem, i), &shard.database.serialize(ctx))?;
        }
        let mut proto = wire::pir_parameters_to_proto(&shard.params);
        // The symmetric-PIR client configuration (the OPRF public key) is the previous one's.
        let old: sift_proto::pir::PirParameters = sift_proto::from_text(&String::from_utf8(
            crate::load::read_verified(self.pdir, self.pm, &s.parameters)?,
        )?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", s.parameters))?;
        let symmetric = wire::symmetric_pir_client_config(&old)?;
        wire::set_symmetric_pir_client_config(&mut proto, symmetric.as_ref());
        writer.write_file(&s.parameters, sift_proto::to_text(&proto)?.as_bytes())?;
        let rows_sha256 = writer.write_file(&rows_name(stem, i), &self.change.rows)?;
        write_table(writer, stem, i, &table, &cfg)?;
        Ok(Written {
            outcome: ShardOutcome::Rebuilt { reason },
            rows_sha256,
            key_config: shard.params.index.evaluation_key_config,
            has_words: words.is_some(),
            has_bin,
            has_overlay: false,
            trial,
        })
    }
}

fn rows_name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}.rows")
}

fn words_name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}.words")
}

fn bin_name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}.bin")
}

/// The name of shard `i`'s overlay file (plaintexts replaced beside its `.words`).
pub fn overlay_name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}.overlay")
}

/// Publishes the current version of `req.dataset_dir` minus `req.remove` plus `req.add` as a
/// new version: untouched shards shared, touched ones changed in place where their cuckoo
/// table has room, else processed afresh (each alone). `extra` writes more files into the new
/// version's folder (the prefilter), given the previous version's folder and manifest.
pub fn update(
    req: UpdateRequest,
    extra: impl FnOnce(&Path, &Path, &Manifest) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<UpdateReport> {
    let (pdir, pm) = current_version(&req.dataset_dir)?.with_context(|| {
        format!(
            "{} is not a versioned dataset: build it with `sift build -o {}` first",
            req.dataset_dir.display(),
            req.dataset_dir.display()
        )
    })?;
    let ctx = Context::predefined(&pm.rlwe_parameters)?;
    let shard_count = pm.shards.len();
    let stem = pm.stem.clone();
    let first = &pm.shards[0].parameters;
    let sharding = parse_params(
        &String::from_utf8(crate::load::read_verified(&pdir, &pm, first)?)?,
        first,
    )?
    .sharding_function;
    // Route the changes to their shards.
    let mut removes: Vec<HashSet<&[u8]>> = vec![HashSet::new(); shard_count];
    let mut adds: Vec<HashMap<&[u8], &[u8]>> = vec![HashMap::new(); shard_count];
    for k in &req.remove {
        removes[sharding.shard_index(k, shard_count)?].insert(k);
    }
    for (k, v) in &req.add {
        adds[sharding.shard_index(k, shard_count)?].insert(k, v);
    }
    let touched: Vec<usize> = (0..shard_count)
        .filter(|&i| !removes[i].is_empty() || !adds[i].is_empty())
        .collect();
    // New rows of every touched shard (in parallel: each reads and checks its rows file).
    let changes: Vec<(usize, ShardChange)> = touched
        .par_iter()
        .map(|&i| -> anyhow::Result<_> {
            let name = pm.shards[i].rows_file.as_ref().with_context(|| {
                format!(
                    "version {} was built without its rows (shard {i}): rebuild it with this \
                     sift before updating in place",
                    pm.id
                )
            })?;
            let old = crate::load::read_verified(&pdir, &pm, name)?;
            Ok((i, change_rows(&old, &removes[i], &adds[i])?))
        })
        .collect::<anyhow::Result<_>>()?;
    let changes: Vec<(usize, ShardChange)> = changes
        .into_iter()
        .filter(|(_, c)| !c.gone.is_empty() || !c.new.is_empty())
        .collect();
    let removed: usize = changes.iter().map(|(_, c)| c.removed).sum();
    let added: usize = changes.iter().map(|(_, c)| c.new.len()).sum();
    anyhow::ensure!(
        !changes.is_empty(),
        "nothing changes: every key to add is present with that value and none to remove is"
    );

    let writer = VersionWriter::begin(&req.dataset_dir)?;
    let changed_at: HashMap<usize, &ShardChange> = changes.iter().map(|(i, c)| (*i, c)).collect();
    let mut outcomes = vec![ShardOutcome::Reused; shard_count];
    let mut key_configs: Vec<Option<EvaluationKeyConfig>> = vec![None; shard_count];
    let mut has_words: Vec<bool> = pm.shards.iter().map(|s| s.words.is_some()).collect();
    let mut has_bin: Vec<bool> = pm.shards.iter().map(|s| s.database.is_some()).collect();
    let mut has_overlay: Vec<bool> = pm.shards.iter().map(|s| s.overlay.is_some()).collect();
    let mut rows_digests: Vec<Option<String>> = vec![None; shard_count];
    for (i, s) in pm.shards.iter().enumerate() {
        if changed_at.contains_key(&i) {
            continue;
        }
        for name in [s.database.as_ref(), Some(&s.parameters), s.words.as_ref()]
            .into_iter()
            .chain([s.rows_file.as_ref(), s.overlay.as_ref()])
            .flatten()
        {
            let e = pm.file(name).context("manifest lacks a shard file")?;
            writer.link_from(&pdir, e, name)?;
        }
        link_table(&writer, &pdir, &pm, &stem, i)?;
    }
    let written: Vec<(usize, Written)> = changes
        .par_iter()
        .map(|(i, change)| -> anyhow::Result<_> {
            let job = ShardJob {
                i: *i,
                ctx: &ctx,
                pdir: &pdir,
                pm: &pm,
                writer: &writer,
                change,
                req: &req,
                shard_count,
            };
            let w = match job.patch()? {
                Ok(w) => w,
                Err(reason) => job.rebuild(reason)?,
            };
            Ok((*i, w))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut trials = Vec::new();
    for (i, w) in written {
        if let ShardOutcome::Patched { .. } = w.outcome {
            let s = &pm.shards[i];
            let e = pm
                .file(&s.parameters)
                .context("manifest lacks a shard file")?;
            writer.link_from(&pdir, e, &s.parameters)?;
        }
        outcomes[i] = w.outcome;
        key_configs[i] = Some(w.key_config);
        has_words[i] = w.has_words;
        has_bin[i] = w.has_bin;
        has_overlay[i] = w.has_overlay;
        rows_digests[i] = Some(w.rows_sha256);
        trials.extend(w.trial);
    }
    for (i, s) in pm.shards.iter().enumerate() {
        if key_configs[i].is_none() {
            let text = std::fs::read_to_string(writer.dir().join(&s.parameters))?;
            key_configs[i] = Some(
                parse_params(&text, &s.parameters)?
                    .index
                    .evaluation_key_config,
            );
        }
    }
    let key_configs: Vec<EvaluationKeyConfig> = key_configs.into_iter().flatten().collect();
    let union = EvaluationKeyConfig::union(&key_configs);
    writer.write_file(
        &format!("{stem}-evaluation-key-config.txtpb"),
        sift_proto::to_text(&wire::evaluation_key_config_to_proto(&union, &ctx.params))?.as_bytes(),
    )?;
    let prefilter = extra(writer.dir(), &pdir, &pm)?;
    let shards: Vec<ShardEntry> = pm
        .shards
        .iter()
        .enumerate()
        .map(|(i, s)| match changed_at.get(&i) {
            None => s.clone(),
            Some(c) => ShardEntry {
                rows: c.row_count as u64,
                rows_sha256: rows_digests[i].clone().unwrap_or_default(),
                database: has_bin[i].then(|| bin_name(&stem, i)),
                parameters: s.parameters.clone(),
                words: has_words[i].then(|| words_name(&stem, i)),
                overlay: has_overlay[i].then(|| overlay_name(&stem, i)),
                rows_file: Some(rows_name(&stem, i)),
            },
        })
        .collect();
    let row_count = shards.iter().map(|s| s.rows).sum();
    let published = writer.publish(
        ManifestInfo {
            stem,
            row_count,
            rlwe_parameters: pm.rlwe_parameters.clone(),
            shards,
            prefilter,
            build: req.build_options.clone(),
            settings_digest: pm.settings_digest.clone(),
            parsing: pm.parsing.clone(),
        },
        req.versions_kept,
    )?;
    Ok(UpdateReport {
        published,
        shards: outcomes,
        removed,
        added,
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{BuildRequest, build};
    use crate::rows_digest;
    use rand::Rng;
    use sift_pir::database::ProcessedDatabase;
    use std::collections::BTreeMap;

    const PARAMS: &str = "n_4096_logq_27_28_28_logt_5";
    const SHARDS: usize = 3;

    fn config() -> KeywordPirConfig {
        let p = sift_he::EncryptionParameters::predefined(PARAMS).unwrap();
        let mut c = KeywordPirConfig::default_for(&p, 2);
        c.sharding = Sharding::ShardCount(SHARDS);
        c
    }

    /// Builds `rows` into `dir`, with Apple's `.bin` beside each `.words` (`apple_layout`).
    fn build_rows(
        dir: &Path,
        rows: &BTreeMap<Vec<u8>, Vec<u8>>,
        apple_layout: bool,
    ) -> crate::BuildReport {
        let req = BuildRequest {
            dataset_dir: dir.to_path_buf(),
            rows: rows.clone().into_iter().collect(),
            rlwe_parameters: PARAMS.into(),
            config: config(),
            stem: "url".into(),
            seed: 7,
            trials: 0,
            versions_kept: 2,
            symmetric: None,
            build_options: serde_json::json!({}),
            parsing: None,
            previous: None,
            keep_rows: true,
            apple_layout,
        };
        build(req, |_| Ok(None), &|_| {}).unwrap()
    }

    fn apply(dir: &Path, remove: Vec<Vec<u8>>, add: Rows) -> UpdateReport {
        apply_with(dir, remove, add, DEFAULT_MAX_OVERLAY_FRACTION)
    }

    /// [`apply`] keeping overlays up to `max_overlay` of a shard's plaintexts.
    fn apply_with(dir: &Path, remove: Vec<Vec<u8>>, add: Rows, max_overlay: f64) -> UpdateReport {
        let req = UpdateRequest {
            dataset_dir: dir.to_path_buf(),
            remove,
            add,
            config: config(),
            seed: 7,
            trials: 0,
            versions_kept: 2,
            build_options: serde_json::json!({}),
            max_overlay_fraction: max_overlay,
        };
        update(req, |_, _, _| Ok(None)).unwrap()
    }

    /// Checks a published version exactly, without queries: every shard's cuckoo table holds
    /// exactly its rows, each in one of its candidate buckets, and its `.bin` and `.words`
    /// are byte for byte what processing that table with the shard's parameters gives.
    fn check_version(dir: &Path, rows: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let (vdir, m) = current_version(dir).unwrap().unwrap();
        let ctx = Context::predefined(PARAMS).unwrap();
        assert_eq!(m.row_count as usize, rows.len());
        let mut seen = 0;
        for (i, s) in m.shards.iter().enumerate() {
            let read = |n: &str| crate::load::read_verified(&vdir, &m, n).unwrap();
            let params = parse_params(
                &String::from_utf8(read(&s.parameters)).unwrap(),
                &s.parameters,
            )
            .unwrap();
            let (_, table) = read_table(&read(&table_file_name("url", i)), false).unwrap();
            let shard_rows = decode_rows(&read(s.rows_file.as_ref().unwrap())).unwrap();
            assert_eq!(table.len(), shard_rows.len());
            assert_eq!(rows_digest(&shard_rows), s.rows_sha256);
            for (k, v) in &shard_rows {
                assert_eq!(
                    rows.get(k),
                    Some(v),
                    "shard {i} holds a row not in the list"
                );
                assert_eq!(
                    params
                        .sharding_function
                        .shard_index(k, m.shards.len())
                        .unwrap(),
                    i
                );
                let h = keyword_hash(k);
                let found = sift_pir::keyword::hash_indices_for_hash(
                    h,
                    table.buckets_per_table,
                    table.tables.len(),
                )
                .into_iter()
                .enumerate()
                .filter_map(|(b, x)| table.tables[b][x].find(h))
                .collect::<Vec<_>>();
                assert_eq!(found, vec![v.as_slice()], "shard {i}: {k:?}");
            }
            seen += shard_rows.len();
            // The plaintexts are exactly those of the table under the unchanged parameters.
            let mut plaintexts = Vec::new();
            for t in &table.tables {
                let entries: Vec<Vec<u8>> = t.iter().map(|b| b.serialize().unwrap()).collect();
                plaintexts.extend(
                    sift_pir::database::process(&ctx, &entries, &params.index)
                        .unwrap()
                        .plaintexts,
                );
            }
            let fresh = ProcessedDatabase { plaintexts };
            if let Some(bin) = &s.database {
                assert!(
                    fresh.serialize(&ctx) == read(bin),
                    "shard {i}: .bin differs from processing its table"
                );
            }
            let words = server::words_file(
                &ctx,
                &server::ProcessedShard {
                    params: params.clone(),
                    database: fresh,
                },
            )
            .unwrap();
            assert_eq!(words.is_some(), s.words.is_some());
            if let (Some(w), Some(n)) = (words, &s.words) {
                // With an overlay: the .words and its overlay folded together.
                let stored = match &s.overlay {
                    None => read(n),
                    Some(o) => {
                        let shape = server::words_shape(&ctx, &params);
                        let map = crate::load::map_verified(&vdir, &m, n).unwrap();
                        let base = sift_pir::storage::decode(&map, &ctx, shape).unwrap();
                        let overlay =
                            sift_pir::overlay::Overlay::decode(&ctx, shape, &read(o)).unwrap();
                        assert!(
                            !overlay.is_empty(),
                            "shard {i}: an empty overlay is written"
                        );
                        let none = vec![Vec::new(); base.len()];
                        let tables = sift_pir::overlay::rewrite(
                            &ctx,
                            &base,
                            Some(&overlay),
                            &none,
                            (shape.d0, shape.per_chunk),
                        )
                        .unwrap();
                        sift_pir::storage::encode(&tables)
                    }
                };
                assert!(w == stored, "shard {i}: .words differs");
            }
        }
        assert_eq!(seen, rows.len());
    }

    /// Looks keywords up through a device-like client against what `dir` serves.
    fn lookup(dir: &Path, words: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        crate::test_device::lookup_all(&crate::load(dir, "url").unwrap().server, words)
    }

    fn key(i: u32) -> Vec<u8> {
        format!("k{i}.example/p").into_bytes()
    }

    /// Random sequences of removals, additions and value changes: after each step the
    /// version holds exactly the expected rows in place-changed shards (checked exactly), a
    /// few queries answer present, changed, removed and absent keys correctly, and the
    /// answers equal those of a fresh build of the final rows.
    #[test]
    fn random_updates_answer_exactly_the_current_rows() {
        random_updates(false);
    }

    /// [`random_updates_answer_exactly_the_current_rows`] on a dataset that keeps Apple's
    /// `.bin` beside each `.words`: both are changed in place, byte-exact.
    #[test]
    fn random_updates_keep_apples_layout_exact() {
        random_updates(true);
    }

    fn random_updates(apple_layout: bool) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        let mut rng = StdRng::seed_from_u64(18 + u64::from(apple_layout));
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> =
            (0..240u32).map(|i| (key(i), b"1".to_vec())).collect();
        build_rows(&d, &rows, apple_layout);
        let mut next = 240u32;
        let mut patched = 0;
        let mut overlays = 0;
        let mut removed_keys = Vec::new();
        // Overlays always, by the default share, or never (folding earlier overlays in).
        for (step, max_overlay) in [1.0, 1.0, DEFAULT_MAX_OVERLAY_FRACTION, 0.0, 1.0, 1.0]
            .into_iter()
            .enumerate()
        {
            let step = step as u32;
            let present: Vec<Vec<u8>> = rows.keys().cloned().collect();
            let remove: Vec<Vec<u8>> = (0..rng.gen_range(0..8))
                .map(|_| present[rng.gen_range(0..present.len())].clone())
                .chain([key(1_000_000 + step)]) // absent: ignored
                .collect();
            let mut add: Rows = (0..rng.gen_range(0..8))
                .map(|_| {
                    next += 1;
                    (key(next), vec![b'a' + (next % 3) as u8])
                })
                .collect();
            // A value change of a present key.
            let changed = present[rng.gen_range(0..present.len())].clone();
            add.push((changed.clone(), b"v".to_vec()));
            for k in &remove {
                if rows.remove(k).is_some() {
                    removed_keys.push(k.clone());
                }
            }
            for (k, v) in &add {
                rows.insert(k.clone(), v.clone());
                removed_keys.retain(|r| r != k);
            }
            let report = apply_with(&d, remove, add.clone(), max_overlay);
            patched += report
                .shards
                .iter()
                .filter(|o| matches!(o, ShardOutcome::Patched { .. }))
                .count();
            overlays += report
                .shards
                .iter()
                .filter(|o| matches!(o, ShardOutcome::Patched { overlay: true, .. }))
                .count();
            if max_overlay == 0.0 {
                let (_, m) = current_version(&d).unwrap().unwrap();
                assert!(m.shards.iter().all(|s| s.overlay.is_none()), "folded in");
            }
            check_version(&d, &rows);
            let (_, m) = current_version(&d).unwrap().unwrap();
            assert!(
                m.shards
                    .iter()
                    .all(|s| s.database.is_some() == apple_layout)
            );
            // Queries: the value-changed key, an added one, a removed one, an absent one.
            let mut words: Vec<&[u8]> = vec![&changed, &add[0].0];
            if let Some(r) = removed_keys.last() {
                words.push(r);
            }
            let absent = key(2_000_000);
            words.push(&absent);
            let got = lookup(&d, &words);
            for (w, g) in words.iter().zip(got) {
                assert_eq!(g.as_deref(), rows.get(*w).map(Vec::as_slice), "step {step}");
            }
        }
        assert!(patched >= 6, "shards were changed in place ({patched})");
        assert!(
            overlays >= 3,
            "shards were changed by overlays ({overlays})"
        );
        // A fresh build of the same final rows answers the same.
        let fresh = tmp.path().join("fresh");
        build_rows(&fresh, &rows, apple_layout);
        check_version(&fresh, &rows);
        let sample: Vec<&[u8]> = rows
            .keys()
            .step_by(rows.len() / 4)
            .map(Vec::as_slice)
            .chain(removed_keys.iter().map(Vec::as_slice).take(2))
            .collect();
        assert_eq!(lookup(&d, &sample), lookup(&fresh, &sample));
    }

    /// The streaming merge of a rows file: removals, value changes, unchanged re-adds and new
    /// rows land in keyword order, also from a file of an older sift that is not sorted, and
    /// the file's SHA-256 is the rows digest.
    #[test]
    fn change_rows_merges_in_keyword_order() {
        let row = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let old = vec![row("d", "1"), row("b", "1"), row("f", "1"), row("a", "1")];
        let remove: HashSet<&[u8]> = [&b"b"[..], b"zz"].into_iter().collect();
        let add: HashMap<&[u8], &[u8]> = [
            (&b"c"[..], &b"2"[..]),
            (b"d", b"1"),
            (b"f", b"9"),
            (b"g", b"1"),
        ]
        .into_iter()
        .collect();
        for bytes in [encode_rows(&old), {
            let mut sorted = old.clone();
            sorted.sort();
            encode_rows(&sorted)
        }] {
            let c = change_rows(&bytes, &remove, &add).unwrap();
            let expected = vec![
                row("a", "1"),
                row("c", "2"),
                row("d", "1"),
                row("f", "9"),
                row("g", "1"),
            ];
            assert_eq!(decode_rows(&c.rows).unwrap(), expected);
            assert_eq!(c.row_count, 5);
            assert_eq!(
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&c.rows)),
                rows_digest(&expected)
            );
            let mut gone = c.gone.clone();
            gone.sort();
            assert_eq!(gone, vec![b"b".to_vec(), b"f".to_vec()]);
            assert_eq!(c.new, vec![row("c", "2"), row("f", "9"), row("g", "1")]);
            assert_eq!(c.removed, 1);
        }
        assert!(change_rows(&[1, 0, 0], &remove, &add).is_err(), "truncated");
    }

    /// Filling one shard's table beyond its room processes that shard afresh, alone: the
    /// other shards are changed in place or shared, with their parameters unchanged.
    #[test]
    fn a_full_cuckoo_table_rebuilds_only_its_shard() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> =
            (0..240u32).map(|i| (key(i), b"1".to_vec())).collect();
        build_rows(&d, &rows, true);
        let (_, before) = current_version(&d).unwrap().unwrap();
        let shard_of = |k: &[u8]| {
            sift_pir::keyword::ShardingFunction::Sha256
                .shard_index(k, SHARDS)
                .unwrap()
        };
        // Twice shard 1's rows into shard 1, one row into shard 0, nothing into shard 2.
        let mut add: Rows = (10_000u32..)
            .map(key)
            .filter(|k| shard_of(k) == 1)
            .take(2 * before.shards[1].rows as usize)
            .map(|k| (k, b"1".to_vec()))
            .collect();
        let k0 = (20_000u32..).map(key).find(|k| shard_of(k) == 0).unwrap();
        add.push((k0.clone(), b"1".to_vec()));
        rows.extend(add.iter().cloned());
        let report = apply(&d, Vec::new(), add);
        assert!(matches!(report.shards[0], ShardOutcome::Patched { .. }));
        assert!(
            matches!(&report.shards[1], ShardOutcome::Rebuilt { reason } if reason.contains("room")),
            "{:?}",
            report.shards[1]
        );
        assert_eq!(report.shards[2], ShardOutcome::Reused);
        let after = &report.published.manifest;
        for (i, same) in [(0, true), (1, false), (2, true)] {
            let f = |m: &Manifest| m.file(&m.shards[i].parameters).unwrap().sha256.clone();
            assert_eq!(f(&before) == f(after), same, "shard {i}'s parameters");
        }
        let f = |m: &Manifest| {
            m.file(m.shards[2].database.as_ref().unwrap())
                .unwrap()
                .clone()
        };
        assert_eq!(f(&before), f(after), "shard 2 is shared");
        check_version(&d, &rows);
        let added = (10_000u32..).map(key).find(|k| shard_of(k) == 1).unwrap();
        assert_eq!(
            lookup(&d, &[&k0, &added, &key(3)]),
            vec![Some(b"1".to_vec()); 3]
        );
    }
}
