//! Updates in place: a new version that differs from the current one only in the cuckoo
//! buckets, and so the plaintexts, that the changed keys touch.
//!
//! A build that keeps its rows also keeps each shard's cuckoo table (`<stem>-<i>.cuckoo`).
//! An update takes a touched shard's table up again (decoding only the buckets it touches),
//! removes the deleted keys, inserts the new ones by cuckoo insertion into the table of the
//! same size (evicting as a build does) and re-encodes only the plaintexts holding a changed
//! bucket. Those go into an overlay beside the shard's unchanged `.words` (or, past
//! [`DEFAULT_MAX_OVERLAY_FRACTION`], into a `.words` processed afresh from the table), and the
//! changed rows and buckets into logs beside its unchanged `.rows` and `.cuckoo`
//! ([`crate::logs`]); a `.bin` is patched whole. The shard's parameters stay the same, so
//! devices' existing configuration keeps working. A shard whose table has no room left (or
//! that has no table file) is processed afresh from its rows, alone; untouched shards are
//! hard-linked.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use sift_he::Context;
use sift_pir::bucket::HashBucket;
use sift_pir::bucket::Slot;
use sift_pir::cuckoo::{Buckets, CuckooTable, InsertLimits, insert_into, remove_from, value_in};
use sift_pir::keyword::keyword_hash;
use sift_pir::params::EvaluationKeyConfig;
use sift_pir::server::{self, KeywordPirConfig, Rows, Sharding, WordsChange};
use sift_pir::wire::{self, ShardParameters};

use crate::manifest::{Manifest, ShardEntry};
use crate::process::{Trial, current_version, encode_rows, run_trials};
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
    write_table_bytes(writer, stem, i, &table.serialize()?, config)
}

/// [`write_table`] of a table already serialized ([`CuckooTable::serialize`]'s bytes).
fn write_table_bytes(
    writer: &VersionWriter,
    stem: &str,
    i: usize,
    table: &[u8],
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
    out.extend_from_slice(table);
    writer.write_file(&table_file_name(stem, i), &out)?;
    Ok(())
}

/// A `.cuckoo` file's insertion limits (its header).
fn read_limits(bytes: &[u8]) -> anyhow::Result<InsertLimits> {
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
    Ok(InsertLimits {
        slot_count: field(0),
        max_bucket_bytes: field(1),
        max_evictions: field(2),
    })
}

/// A `.cuckoo` file's limits and table, with every row's placement checked.
#[cfg(test)]
fn read_table(bytes: &[u8]) -> anyhow::Result<(InsertLimits, CuckooTable)> {
    let limits = read_limits(bytes)?;
    Ok((limits, CuckooTable::deserialize(&bytes[TABLE_HEADER..])?))
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

/// What a change does to one shard's rows, found in its cuckoo table (which holds every row's
/// keyword hash and value), so the shard's `.rows` file is not read.
#[derive(Debug, Default)]
struct TableChange {
    /// Keywords removed or given a new value, with their value before.
    gone: Vec<(Vec<u8>, Vec<u8>)>,
    /// Rows inserted (new keywords, or new values), sorted.
    new: Rows,
    /// Keywords removed and not added back.
    removed: usize,
}

impl TableChange {
    fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.new.is_empty()
    }
}

/// Applies `remove` and `add` (an added keyword wins over its removal) to the rows `value_of`
/// looks up (a keyword's value, if present): what goes, what comes, in keyword order.
fn change_with(
    remove: &HashSet<&[u8]>,
    add: &HashMap<&[u8], &[u8]>,
    mut value_of: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> TableChange {
    let mut c = TableChange::default();
    let mut removes: Vec<&[u8]> = remove
        .iter()
        .copied()
        .filter(|k| !add.contains_key(k))
        .collect();
    removes.sort_unstable();
    for k in removes {
        if let Some(v) = value_of(k) {
            c.gone.push((k.to_vec(), v));
            c.removed += 1;
        }
    }
    let mut adds: Vec<(&[u8], &[u8])> = add.iter().map(|(k, v)| (*k, *v)).collect();
    adds.sort_unstable();
    for (k, v) in adds {
        match value_of(k) {
            Some(old) if old == v => {}
            Some(old) => {
                c.gone.push((k.to_vec(), old));
                c.new.push((k.to_vec(), v.to_vec()));
            }
            None => c.new.push((k.to_vec(), v.to_vec())),
        }
    }
    c
}

/// The change to the rows `table` holds, found by keyword hash (as a device's query finds a
/// keyword), so the shard's `.rows` file is not read.
fn change_from_table<B: Buckets + ?Sized>(
    table: &mut B,
    remove: &HashSet<&[u8]>,
    add: &HashMap<&[u8], &[u8]>,
) -> TableChange {
    change_with(remove, add, |k| value_in(table, keyword_hash(k)))
}

/// Applies `remove` and `add` to whole rows: the new rows (sorted by keyword) and what changed.
fn change_rows(
    rows: Rows,
    remove: &HashSet<&[u8]>,
    add: &HashMap<&[u8], &[u8]>,
) -> (Rows, TableChange) {
    let mut map: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = rows.into_iter().collect();
    let c = change_with(remove, add, |k| map.get(k).cloned());
    for (k, _) in &c.gone {
        map.remove(k);
    }
    for (k, v) in &c.new {
        map.insert(k.clone(), v.clone());
    }
    (map.into_iter().collect(), c)
}

/// A touched shard's files, written into the new version's folder.
struct Written {
    outcome: ShardOutcome,
    /// Rows in the shard now, and their digest.
    rows: u64,
    rows_sha256: String,
    key_config: EvaluationKeyConfig,
    has_words: bool,
    has_bin: bool,
    has_overlay: bool,
    /// Whether the shard has a row log and a table log beside its base files.
    logs: bool,
    removed: usize,
    added: usize,
    trial: Option<Trial>,
}

/// Shard parameters from a `.params.txtpb` text.
fn parse_params(text: &str, name: &str) -> anyhow::Result<ShardParameters> {
    let proto: sift_proto::pir::PirParameters =
        sift_proto::from_text(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(wire::pir_parameters_from_proto(&proto)?)
}

/// A shard's cuckoo table as the version holds it (the `.cuckoo` file with its table log
/// applied), decoded one bucket at a time as the update touches it: an update changes a few
/// rows of a table of 100k, and decoding them all cost a third of an update at 100M rows.
struct LoadedTable {
    limits: InsertLimits,
    base: Vec<u8>,
    spans: Vec<Vec<std::ops::Range<usize>>>,
    log: crate::logs::TableLog,
    /// The buckets decoded so far (and changed, if the update changed them).
    decoded: HashMap<(usize, usize), HashBucket>,
    /// A bucket that did not decode (the file was checked against its checksum, so only a
    /// writer's bug gets here): the update refuses the shard's table.
    damaged: Option<String>,
}

impl LoadedTable {
    /// Bucket `e` of table `t` before the update (the log's, else the base file's bytes).
    fn before(&self, t: usize, e: usize) -> Result<Vec<u8>, sift_pir::PirError> {
        if let Some(b) = self.log.get(&(t, e)) {
            return Ok(b.clone());
        }
        self.spans
            .get(t)
            .and_then(|s| s.get(e))
            .map(|r| self.base[TABLE_HEADER..][r.clone()].to_vec())
            .ok_or_else(|| {
                sift_pir::PirError::DamagedDataset(format!("no bucket {e} in cuckoo table {t}"))
            })
    }

    /// Bucket `e` of table `t` now, serialized.
    fn after(&self, t: usize, e: usize) -> Result<Vec<u8>, sift_pir::PirError> {
        match self.decoded.get(&(t, e)) {
            Some(b) => b.serialize(),
            None => self.before(t, e),
        }
    }

    /// Rows the table holds before the update: every bucket's slot count (its serialized
    /// form's first byte), the log's buckets in place of the base file's.
    fn row_count(&self) -> u64 {
        let first = |b: &[u8]| u64::from(b.first().copied().unwrap_or(0));
        let mut rows = 0;
        for (t, spans) in self.spans.iter().enumerate() {
            for (e, r) in spans.iter().enumerate() {
                rows += match self.log.get(&(t, e)) {
                    Some(b) => first(b),
                    None => first(&self.base[TABLE_HEADER + r.start..]),
                };
            }
        }
        rows
    }

    /// The whole table now, serialized as [`CuckooTable::serialize`] writes it.
    fn serialized(&self) -> Result<Vec<u8>, sift_pir::PirError> {
        let (h, per_table) = self.shape();
        let mut out = Vec::with_capacity(self.base.len());
        out.extend_from_slice(&(h as u64).to_le_bytes());
        out.extend_from_slice(&(per_table as u64).to_le_bytes());
        for t in 0..h {
            for e in 0..per_table {
                out.extend_from_slice(&self.after(t, e)?);
            }
        }
        Ok(out)
    }
}

impl Buckets for LoadedTable {
    fn shape(&self) -> (usize, usize) {
        (self.spans.len(), self.spans.first().map_or(0, Vec::len))
    }

    fn bucket(&mut self, t: usize, b: usize) -> &mut HashBucket {
        if !self.decoded.contains_key(&(t, b)) {
            let bucket = self
                .before(t, b)
                .and_then(|bytes| HashBucket::deserialize(&bytes))
                .unwrap_or_else(|e| {
                    self.damaged.get_or_insert(e.to_string());
                    HashBucket::default()
                });
            self.decoded.insert((t, b), bucket);
        }
        self.decoded.get_mut(&(t, b)).expect("inserted above")
    }
}

/// Everything one shard's update needs from the previous version.
struct ShardJob<'a> {
    i: usize,
    ctx: &'a Context,
    pdir: &'a Path,
    pm: &'a Manifest,
    writer: &'a VersionWriter,
    remove: &'a HashSet<&'a [u8]>,
    add: &'a HashMap<&'a [u8], &'a [u8]>,
    req: &'a UpdateRequest,
    shard_count: usize,
}

impl ShardJob<'_> {
    fn entry(&self) -> &ShardEntry {
        &self.pm.shards[self.i]
    }

    /// Reads the shard's table and its log.
    fn load_table(&self) -> anyhow::Result<LoadedTable> {
        let (pdir, pm) = (self.pdir, self.pm);
        let name = table_file_name(&pm.stem, self.i);
        let base = crate::load::read_verified(pdir, pm, &name)?;
        let limits = read_limits(&base).with_context(|| name.clone())?;
        let spans =
            CuckooTable::bucket_spans(&base[TABLE_HEADER..]).with_context(|| name.clone())?;
        let log = match &self.entry().table_log {
            Some(l) => crate::logs::decode_table_log(&crate::load::read_verified(pdir, pm, l)?)
                .with_context(|| l.clone())?,
            None => Default::default(),
        };
        let (h, per_table) = (spans.len(), spans.first().map_or(0, Vec::len));
        if let Some((t, b)) = log.keys().find(|&&(t, b)| t >= h || b >= per_table) {
            anyhow::bail!("its table log names bucket {b} of table {t}, beyond the table");
        }
        Ok(LoadedTable {
            limits,
            base,
            spans,
            log,
            decoded: HashMap::new(),
            damaged: None,
        })
    }

    /// Links one of the previous version's files into the new one.
    fn link(&self, name: &str) -> anyhow::Result<()> {
        let e = self.pm.file(name).context("manifest lacks a shard file")?;
        self.writer.link_from(self.pdir, e, name)
    }

    /// Runs the shard's update: `None` when nothing changes in it.
    fn run(&self) -> anyhow::Result<Option<Written>> {
        let s = self.entry();
        crate::process::rows_file(self.pm, self.i)?;
        if self
            .pm
            .file(&table_file_name(&self.pm.stem, self.i))
            .is_none()
        {
            return self.rebuild("the version has no cuckoo table for it".into());
        }
        let loaded = match self.load_table() {
            Ok(t) => t,
            Err(e) => return self.rebuild(format!("its cuckoo table is unusable ({e:#})")),
        };
        let held = loaded.row_count();
        if held != s.rows {
            return self.rebuild(format!(
                "its cuckoo table holds {held} rows, the manifest says {}",
                s.rows
            ));
        }
        let mut loaded = loaded;
        let change = change_from_table(&mut loaded, self.remove, self.add);
        if change.is_empty() {
            return Ok(None);
        }
        match self.patch(loaded, &change)? {
            Ok(w) => Ok(Some(w)),
            Err(reason) => self.rebuild(reason),
        }
    }

    /// Changes the shard in place; `Ok(Err(reason))` when its table has no room.
    fn patch(
        &self,
        mut loaded: LoadedTable,
        change: &TableChange,
    ) -> anyhow::Result<Result<Written, String>> {
        let (i, ctx, pm, pdir, writer) = (self.i, self.ctx, self.pm, self.pdir, self.writer);
        let stem = &pm.stem;
        let s = self.entry();
        let params = parse_params(
            &String::from_utf8(crate::load::read_verified(pdir, pm, &s.parameters)?)?,
            &s.parameters,
        )?;
        let limits = InsertLimits {
            max_bucket_bytes: loaded.limits.max_bucket_bytes.min(params.index.entry_size),
            ..loaded.limits
        };
        let table = &mut loaded;
        let mut changed = Vec::new();
        for (k, _) in &change.gone {
            match remove_from(table, keyword_hash(k)) {
                Some(c) => changed.push(c),
                None => return Ok(Err("its cuckoo table lacks a row of the shard".into())),
            }
        }
        let mut rng = StdRng::seed_from_u64(
            self.req.seed
                ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ pm.row_count.rotate_left(32),
        );
        for (k, v) in &change.new {
            let hash = keyword_hash(k);
            if value_in(table, hash).is_some() {
                return Ok(Err("two keywords share a keyword hash".into()));
            }
            let slot = Slot {
                keyword_hash: hash,
                value: v.clone(),
            };
            if insert_into(table, slot, limits, &mut rng, &mut changed).is_err() {
                return Ok(Err("its cuckoo table has no room for the new rows".into()));
            }
        }
        if let Some(e) = &loaded.damaged {
            return Ok(Err(format!("its cuckoo table is unusable ({e})")));
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
        let loaded = &loaded;
        let table = server::TableView {
            shape: loaded.shape(),
            after: &|t, e| loaded.after(t, e),
            before: &|t, e| loaded.before(t, e),
        };
        let patched = server::patch_shard(
            ctx,
            &params,
            table,
            &changed,
            old,
            self.req.max_overlay_fraction,
        )
        .with_context(|| format!("shard {i}"))?;
        drop(old_bin);
        if let (Some(b), Some(name)) = (&patched.bin, &s.database) {
            writer.write_file(name, b)?;
        }
        let cfg = KeywordPirConfig {
            cuckoo: sift_pir::cuckoo::CuckooConfig {
                slot_count: limits.slot_count,
                max_eviction_count: limits.max_evictions,
                ..self.req.config.cuckoo.clone()
            },
            ..self.req.config.clone()
        };
        let rows = s.rows + change.new.len() as u64 - change.gone.len() as u64;
        let overlay = matches!(patched.words, Some(WordsChange::Overlay(_)));
        // The shard's rows after the change, when they are needed whole: a rewrite, or a
        // digest written by an older sift (not a sum that can be adjusted).
        let all_rows = || -> anyhow::Result<Rows> {
            let rows = crate::process::shard_rows(pdir, pm, i)?;
            Ok(change_rows(rows, self.remove, self.add).0)
        };
        let (logs, digest) = if overlay || (patched.words.is_none() && patched.bin.is_some()) {
            // The base .rows and .cuckoo stay; logs say what changed since they were written.
            self.link(crate::process::rows_file(pm, i)?)?;
            self.link(&table_file_name(stem, i))?;
            let mut row_log = match &s.rows_log {
                Some(l) => crate::logs::decode_row_log(&crate::load::read_verified(pdir, pm, l)?)
                    .with_context(|| l.clone())?,
                None => Default::default(),
            };
            for (k, _) in &change.gone {
                row_log.insert(k.clone(), None);
            }
            for (k, v) in &change.new {
                row_log.insert(k.clone(), Some(v.clone()));
            }
            writer.write_file(
                &rows_log_name(stem, i),
                &crate::logs::encode_row_log(&row_log),
            )?;
            let mut table_log = loaded.log.clone();
            for &(t, b) in &changed {
                table_log.insert((t, b), loaded.after(t, b)?);
            }
            writer.write_file(
                &table_log_name(stem, i),
                &crate::logs::encode_table_log(&table_log),
            )?;
            let digest = match crate::process::RowsDigest::from_hex(&s.rows_sha256) {
                Some(mut d) => {
                    for (k, v) in &change.gone {
                        d.remove(k, v);
                    }
                    for (k, v) in &change.new {
                        d.add(k, v);
                    }
                    d.hex()
                }
                None => crate::rows_digest(&all_rows()?),
            };
            (true, digest)
        } else {
            // Everything rewritten: fresh base files, no logs.
            let all = all_rows()?;
            writer.write_file(&rows_name(stem, i), &encode_rows(&all))?;
            write_table_bytes(writer, stem, i, &loaded.serialized()?, &cfg)?;
            (false, crate::rows_digest(&all))
        };
        self.link(&s.parameters)?;
        match (&patched.words, &s.words) {
            (Some(WordsChange::Overlay(o)), Some(name)) => {
                self.link(name)?;
                writer.write_file(&overlay_name(stem, i), o)?;
            }
            (Some(WordsChange::Rewritten(w)), Some(name)) => {
                writer.write_file(name, w)?;
            }
            _ => {}
        }
        Ok(Ok(Written {
            outcome: ShardOutcome::Patched {
                plaintexts: patched.plaintexts,
                overlay,
            },
            rows,
            rows_sha256: digest,
            key_config: params.index.evaluation_key_config,
            has_words: s.words.is_some(),
            has_bin: s.database.is_some(),
            has_overlay: overlay,
            logs,
            removed: change.removed,
            added: change.new.len(),
            trial: None,
        }))
    }

    /// Processes the shard afresh from its new rows (as a build does).
    fn rebuild(&self, reason: String) -> anyhow::Result<Option<Written>> {
        let (i, ctx, writer, stem) = (self.i, self.ctx, self.writer, &self.pm.stem);
        let mut cfg = self.req.config.clone();
        cfg.sharding = Sharding::ShardCount(self.shard_count);
        let (rows, change) = change_rows(
            crate::process::shard_rows(self.pdir, self.pm, i)?,
            self.remove,
            self.add,
        );
        if change.is_empty() {
            return Ok(None);
        }
        let (shard, table) = server::process_shard_with_table(
            ctx,
            &rows,
            &cfg,
            self.req.seed.wrapping_add(i as u64),
        )
        .with_context(|| format!("shard {i}"))?;
        let trial = run_trials(&shard, &rows, self.req.trials)
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
        writer.write_file(&rows_name(stem, i), &encode_rows(&rows))?;
        write_table(writer, stem, i, &table, &cfg)?;
        Ok(Some(Written {
            outcome: ShardOutcome::Rebuilt { reason },
            rows: rows.len() as u64,
            rows_sha256: crate::rows_digest(&rows),
            key_config: shard.params.index.evaluation_key_config,
            has_words: words.is_some(),
            has_bin,
            has_overlay: false,
            logs: false,
            removed: change.removed,
            added: change.new.len(),
            trial,
        }))
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

/// The name of shard `i`'s row log (rows changed since its `.rows`).
pub fn rows_log_name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}.rows-log")
}

/// The name of shard `i`'s table log (buckets changed since its `.cuckoo`).
pub fn table_log_name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}.cuckoo-log")
}

/// Every file of shard entry `s` (those a version lists for it, table file included).
fn shard_files(s: &ShardEntry, table: String) -> Vec<String> {
    [
        s.database.as_ref(),
        Some(&s.parameters),
        s.words.as_ref(),
        s.overlay.as_ref(),
        s.rows_file.as_ref(),
        s.rows_log.as_ref(),
        s.table_log.as_ref(),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .chain([table])
    .collect()
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

    let writer = VersionWriter::begin(&req.dataset_dir)?;
    let link_all = |i: usize| -> anyhow::Result<()> {
        for name in shard_files(&pm.shards[i], table_file_name(&stem, i)) {
            if let Some(e) = pm.file(&name) {
                writer.link_from(&pdir, e, &name)?;
            }
        }
        Ok(())
    };
    let written: Vec<(usize, Option<Written>)> = touched
        .par_iter()
        .map(|&i| -> anyhow::Result<_> {
            let job = ShardJob {
                i,
                ctx: &ctx,
                pdir: &pdir,
                pm: &pm,
                writer: &writer,
                remove: &removes[i],
                add: &adds[i],
                req: &req,
                shard_count,
            };
            Ok((i, job.run()?))
        })
        .collect::<anyhow::Result<_>>()?;
    let written: HashMap<usize, Written> = written
        .into_iter()
        .filter_map(|(i, w)| w.map(|w| (i, w)))
        .collect();
    anyhow::ensure!(
        !written.is_empty(),
        "nothing changes: every key to add is present with that value and none to remove is"
    );
    for i in (0..shard_count).filter(|i| !written.contains_key(i)) {
        link_all(i)?;
    }
    let mut outcomes = vec![ShardOutcome::Reused; shard_count];
    let mut key_configs: Vec<Option<EvaluationKeyConfig>> = vec![None; shard_count];
    let (mut removed, mut added, mut trials) = (0, 0, Vec::new());
    for (&i, w) in &written {
        outcomes[i] = w.outcome.clone();
        key_configs[i] = Some(w.key_config.clone());
        removed += w.removed;
        added += w.added;
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
        .map(|(i, s)| match written.get(&i) {
            None => s.clone(),
            Some(w) => ShardEntry {
                rows: w.rows,
                rows_sha256: w.rows_sha256.clone(),
                database: w.has_bin.then(|| bin_name(&stem, i)),
                parameters: s.parameters.clone(),
                words: w.has_words.then(|| words_name(&stem, i)),
                overlay: w.has_overlay.then(|| overlay_name(&stem, i)),
                rows_log: w.logs.then(|| rows_log_name(&stem, i)),
                table_log: w.logs.then(|| table_log_name(&stem, i)),
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
        build_rows_with(dir, rows, apple_layout, false)
    }

    /// [`build_rows`], sharing unchanged shards with `dir`'s current version (`--from`).
    fn build_rows_with(
        dir: &Path,
        rows: &BTreeMap<Vec<u8>, Vec<u8>>,
        apple_layout: bool,
        from: bool,
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
            previous: from.then(|| dir.to_path_buf()),
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
            let (_, mut table) = read_table(&read(&table_file_name("url", i))).unwrap();
            if let Some(l) = &s.table_log {
                let log = crate::logs::decode_table_log(&read(l)).unwrap();
                crate::logs::apply_table_log(&mut table, &log).unwrap();
            }
            let shard_rows = crate::process::shard_rows(&vdir, &m, i).unwrap();
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
        // A `build --from` of the same rows shares every updated shard (the digests follow
        // the updates), with its overlay and logs, and still answers the same.
        let (_, before) = current_version(&d).unwrap().unwrap();
        let r = build_rows_with(&d, &rows, apple_layout, true);
        assert_eq!((r.processed, r.reused), (0, SHARDS));
        let after = &r.published.manifest;
        for (a, b) in before.shards.iter().zip(&after.shards) {
            assert_eq!(
                (&a.overlay, &a.rows_log, &a.table_log, &a.rows_sha256),
                (&b.overlay, &b.rows_log, &b.table_log, &b.rows_sha256)
            );
        }
        check_version(&d, &rows);
        assert_eq!(lookup(&d, &sample), lookup(&fresh, &sample));
    }

    /// A change found in a shard's cuckoo table (by keyword hash, as `sift update` finds it
    /// without reading the rows) is the change found in its rows: removals, value changes,
    /// unchanged re-adds, new rows, and an add that wins over its removal.
    #[test]
    fn a_change_found_in_the_table_is_the_change_in_the_rows() {
        let row = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let rows = vec![row("a", "1"), row("b", "1"), row("d", "1"), row("f", "1")];
        let mut table = CuckooTable::build(&rows, &config().cuckoo, 3).unwrap();
        let remove: HashSet<&[u8]> = [&b"b"[..], b"c", b"d", b"zz"].into_iter().collect();
        let add: HashMap<&[u8], &[u8]> = [
            (&b"c"[..], &b"2"[..]),
            (b"d", b"1"),
            (b"f", b"9"),
            (b"g", b"1"),
        ]
        .into_iter()
        .collect();
        let t = change_from_table(&mut table, &remove, &add);
        let (all, r) = change_rows(rows, &remove, &add);
        assert_eq!(
            all,
            vec![
                row("a", "1"),
                row("c", "2"),
                row("d", "1"),
                row("f", "9"),
                row("g", "1")
            ]
        );
        assert_eq!(t.gone, vec![row("b", "1"), row("f", "1")]);
        assert_eq!(t.new, vec![row("c", "2"), row("f", "9"), row("g", "1")]);
        assert_eq!(t.removed, 1);
        assert_eq!((r.gone, r.new, r.removed), (t.gone, t.new, t.removed));
        // The digest follows the change without the other rows.
        let mut d = crate::process::RowsDigest::from_hex(&rows_digest(&[
            row("a", "1"),
            row("b", "1"),
            row("d", "1"),
            row("f", "1"),
        ]))
        .unwrap();
        for (k, v) in &[row("b", "1"), row("f", "1")] {
            d.remove(k, v);
        }
        for (k, v) in &[row("c", "2"), row("f", "9"), row("g", "1")] {
            d.add(k, v);
        }
        assert_eq!(d.hex(), rows_digest(&all));
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
