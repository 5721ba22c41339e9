//! Rows → a published version: automatic sharding, shard processing (in parallel), trial
//! queries, reuse of unchanged shards from a previous version, and the manifest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use sift_he::Context;
use sift_pir::bucket::SLOT_OVERHEAD;
use sift_pir::keyword::{ShardingFunction, keyword_hash};
use sift_pir::params::EvaluationKeyConfig;
use sift_pir::server::{self, KeywordPirConfig, Rows, Sharding};
use sift_pir::wire;

use crate::layout::{self, Layout};
use crate::manifest::{Manifest, ShardEntry};
use crate::writer::{ManifestInfo, Published, VersionWriter};

/// The per-shard row budget of automatic sharding for 1-byte values (URL lists): a device
/// queries one shard, so server time per query follows the largest shard. With at most
/// 100,000 rows in the largest shard (hash imbalance counted), a query at 10M or 100M rows
/// costs what it costs on a 100k-row list (see docs/datasets.md); the bound is 200,000.
pub const TARGET_ROWS_PER_SHARD: usize = 100_000;

/// The most rows automatic sharding puts in one shard for values of `value_len` bytes: the
/// shard's bucket bytes (`rows × (SLOT_OVERHEAD + value_len)`) stay within those of
/// [`TARGET_ROWS_PER_SHARD`] 1-byte rows.
pub fn target_rows_per_shard(value_len: usize) -> usize {
    let budget = TARGET_ROWS_PER_SHARD * (SLOT_OVERHEAD + 1);
    (budget / (SLOT_OVERHEAD + value_len.max(1))).max(1)
}

/// Rows per shard for `shard_count` shards (the sharding function applied to every keyword).
pub fn shard_sizes(hashes: &[u64], function: ShardingFunction, shard_count: usize) -> Vec<usize> {
    let mut sizes = vec![0usize; shard_count];
    for &h in hashes {
        sizes[function.shard_of_hash(h, shard_count)] += 1;
    }
    sizes
}

/// The smallest shard count (from an estimate that allows for hash imbalance, raised until it
/// holds) whose largest shard has at most [`target_rows_per_shard`] rows, counting the actual
/// imbalance of the sharding function on these keywords.
pub fn auto_shard_count(rows: &[(Vec<u8>, Vec<u8>)], function: ShardingFunction) -> usize {
    let max_value = rows.iter().map(|r| r.1.len()).max().unwrap_or(1);
    let target = target_rows_per_shard(max_value);
    if rows.len() <= target {
        return 1;
    }
    let hashes: Vec<u64> = rows.par_iter().map(|r| keyword_hash(&r.0)).collect();
    let mut k = first_shard_count_guess(rows.len(), target);
    loop {
        let sizes = shard_sizes(&hashes, function, k);
        if sizes.iter().max().copied().unwrap_or(0) <= target {
            return k;
        }
        k += (k / 64).max(1);
    }
}

/// The first shard count automatic sharding tries for `rows` rows: the mean m with
/// m + 4·√m ≤ `target` (the largest of k Poisson-like shards is a few standard deviations
/// above the mean); the count is then raised until the actual largest shard fits.
pub fn first_shard_count_guess(rows: usize, target: usize) -> usize {
    let t = target as f64;
    let mean = {
        let s = (-4.0 + (16.0 + 4.0 * t).sqrt()) / 2.0;
        (s * s).max(1.0)
    };
    ((rows as f64) / mean).ceil().max(1.0) as usize
}

/// A shard's rows digest (see [`rows_digest`]), as a number that rows are added to and taken
/// from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowsDigest([u64; 4]);

impl RowsDigest {
    /// SHA-256 of one row (`u32 LE len ‖ keyword ‖ u32 LE len ‖ value`) as four LE limbs.
    fn row(k: &[u8], v: &[u8]) -> [u64; 4] {
        let mut h = Sha256::new();
        h.update((k.len() as u32).to_le_bytes());
        h.update(k);
        h.update((v.len() as u32).to_le_bytes());
        h.update(v);
        let d = h.finalize();
        std::array::from_fn(|i| u64::from_le_bytes(d[8 * i..8 * i + 8].try_into().expect("8")))
    }

    /// Counts a row in.
    pub fn add(&mut self, k: &[u8], v: &[u8]) {
        let r = Self::row(k, v);
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(r) {
            let (x, c1) = a.overflowing_add(b);
            let (x, c2) = x.overflowing_add(u64::from(carry));
            *a = x;
            carry = c1 || c2;
        }
    }

    /// Takes a row that was counted in out.
    pub fn remove(&mut self, k: &[u8], v: &[u8]) {
        let r = Self::row(k, v);
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(r) {
            let (x, b1) = a.overflowing_sub(b);
            let (x, b2) = x.overflowing_sub(u64::from(borrow));
            *a = x;
            borrow = b1 || b2;
        }
    }

    /// The digest as the manifest stores it (64 hex digits, little-endian).
    pub fn hex(&self) -> String {
        hex::encode(
            self.0
                .iter()
                .flat_map(|l| l.to_le_bytes())
                .collect::<Vec<u8>>(),
        )
    }

    /// Parses [`RowsDigest::hex`]; None for anything else (a digest of an older sift).
    pub fn from_hex(s: &str) -> Option<RowsDigest> {
        let b = hex::decode(s).ok().filter(|b| b.len() == 32)?;
        Some(RowsDigest(std::array::from_fn(|i| {
            u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8"))
        })))
    }
}

/// A shard's rows digest: the sum mod 2^256 of SHA-256 over each row (`u32 LE len ‖ keyword ‖
/// u32 LE len ‖ value`), in hex. Independent of the rows' order, and `sift update` adjusts it
/// by the rows it removes and adds without reading the others ([`RowsDigest`]).
pub fn rows_digest(rows: &[(Vec<u8>, Vec<u8>)]) -> String {
    let mut d = RowsDigest::default();
    for (k, v) in rows {
        d.add(k, v);
    }
    d.hex()
}

/// Serializes rows for a `.rows` file (`u32 LE len ‖ keyword ‖ u32 LE len ‖ value` each).
pub fn encode_rows(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| 8 + r.0.len() + r.1.len()).sum());
    for (k, v) in rows {
        crate::logs::put_len_prefixed(&mut out, k);
        crate::logs::put_len_prefixed(&mut out, v);
    }
    out
}

/// Parses a `.rows` file.
pub fn decode_rows(mut bytes: &[u8]) -> anyhow::Result<Rows> {
    let mut rows = Vec::new();
    while !bytes.is_empty() {
        let k = crate::logs::take(&mut bytes, "rows file")?.to_vec();
        let v = crate::logs::take(&mut bytes, "rows file")?.to_vec();
        rows.push((k, v));
    }
    Ok(rows)
}

/// Everything needed to write a version from rows.
pub struct BuildRequest {
    /// The dataset folder (`sift build -o`).
    pub dataset_dir: PathBuf,
    /// Rows as stored (already OPRF-transformed for symmetric PIR).
    pub rows: Rows,
    /// Predefined encryption parameters name.
    pub rlwe_parameters: String,
    /// Processing options; `sharding` decides the shard count.
    pub config: KeywordPirConfig,
    /// Shard file stem.
    pub stem: String,
    /// Cuckoo seed (shard i uses seed + i).
    pub seed: u64,
    /// Trial queries per processed shard (0: none).
    pub trials: usize,
    /// Published versions to keep on disk (with the new one).
    pub versions_kept: usize,
    /// Symmetric PIR client config the shards' parameters carry.
    pub symmetric: Option<wire::SymmetricPirClientConfig>,
    /// Build options to record in the manifest.
    pub build_options: serde_json::Value,
    /// URL parsing configuration to record.
    pub parsing: Option<serde_json::Value>,
    /// Reuse unchanged shards of this dataset's current version.
    pub previous: Option<PathBuf>,
    /// Keep each shard's rows (`<stem>-<i>.rows`) so that `sift update` can apply changes.
    pub keep_rows: bool,
    /// Also write Apple's `<stem>-<i>.bin` for every shard (a shard the server computes on
    /// as `.words` needs none; Apple's tools and JSON outputs do).
    pub apple_layout: bool,
}

/// Progress events of [`build`].
#[derive(Clone, Debug)]
pub enum Event {
    /// Shard `index` was processed (and passed its trials: smallest noise budget, answer time).
    Processed {
        /// Shard index.
        index: usize,
        /// Rows in the shard.
        rows: usize,
        /// Trial results.
        trial: Option<Trial>,
    },
    /// Shard `index` was unchanged and shared with the previous version.
    Reused {
        /// Shard index.
        index: usize,
    },
}

/// One shard's trial queries.
#[derive(Clone, Copy, Debug)]
pub struct Trial {
    /// Smallest noise budget (bits) left in a response.
    pub min_noise_budget: f64,
    /// Median server time to answer one query.
    pub answer_time: Duration,
}

/// What [`build`] did.
#[derive(Debug)]
pub struct BuildReport {
    /// The published version.
    pub published: Published,
    /// Shards processed.
    pub processed: usize,
    /// Shards shared with the previous version.
    pub reused: usize,
    /// Rows in each shard.
    pub shard_rows: Vec<usize>,
    /// Trials of the largest processed shard (the calibration of the server time per query).
    pub largest_trial: Option<Trial>,
}

/// Digest of everything but the rows that determines shard bytes.
pub fn settings_digest(req: &BuildRequest, shard_count: usize) -> String {
    let s = format!(
        "{}|words/1|{}|{:?}|{}|{}|{:?}|{}",
        crate::manifest::FORMAT,
        req.rlwe_parameters,
        req.config,
        req.seed,
        req.stem,
        req.symmetric
            .as_ref()
            .map(|s| hex::encode(&s.server_public_key)),
        shard_count
    );
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The current version of `dataset_dir` and its manifest, if it is versioned.
pub fn current_version(dataset_dir: &Path) -> anyhow::Result<Option<(PathBuf, Manifest)>> {
    match layout::resolve(dataset_dir)? {
        Layout::Versioned { id, dir } => {
            let m = crate::load::load_manifest(&dir, &id)?;
            Ok(Some((dir, m)))
        }
        Layout::Legacy { .. } => Ok(None),
    }
}

/// Where [`build_from`] takes each shard's rows from.
pub enum ShardSource {
    /// Rows already sharded in memory (taken one shard at a time).
    Memory(Vec<std::sync::Mutex<Rows>>),
    /// One on-disk partition per shard (`.rows` encoding), see [`crate::partition`].
    Partitioned(crate::partition::Partitions),
}

impl ShardSource {
    /// Shards.
    pub fn shard_count(&self) -> usize {
        match self {
            ShardSource::Memory(v) => v.len(),
            ShardSource::Partitioned(p) => p.count(),
        }
    }

    /// Takes shard `i`'s rows (in no particular order); a second take returns nothing.
    pub fn take(&self, i: usize) -> anyhow::Result<Rows> {
        match self {
            ShardSource::Memory(v) => Ok(std::mem::take(
                &mut *v[i].lock().unwrap_or_else(|e| e.into_inner()),
            )),
            ShardSource::Partitioned(p) => decode_rows(&p.take(i)?),
        }
    }
}

/// The folder, inside a version's staging folder, that holds a streaming build's partitions
/// (hidden: never listed in the manifest; removed before publishing).
pub const PARTITION_DIR: &str = ".partition";

/// Shards the rows, processes every shard whose rows changed since `previous` (all when there
/// is none) in parallel, runs the trial queries, shares unchanged shard files with the
/// previous version, lets `extra` write more files (the prefilter) into the version folder,
/// and publishes the version. `on_event` is called from worker threads.
pub fn build(
    mut req: BuildRequest,
    extra: impl FnOnce(&Path) -> anyhow::Result<Option<String>>,
    on_event: &(dyn Fn(Event) + Sync),
) -> anyhow::Result<BuildReport> {
    let rows = std::mem::take(&mut req.rows);
    let row_count = rows.len() as u64;
    let shard_count = req.config.sharding.shard_count(rows.len())?;
    let mut cfg = req.config.clone();
    cfg.sharding = Sharding::ShardCount(shard_count);
    let shards = server::shard_rows(rows, &cfg)?;
    let writer = VersionWriter::begin(&req.dataset_dir)?;
    let source = ShardSource::Memory(shards.into_iter().map(std::sync::Mutex::new).collect());
    build_from(writer, req, source, row_count, extra, on_event)
}

/// [`build`] from rows already sharded (`req.rows` is ignored; `req.config.sharding` must
/// give `source`'s shard count), into the version `writer` stages. Shards are loaded,
/// sorted, compared with the previous version and processed one per worker thread, so
/// memory follows the shards in flight. The partition folder ([`PARTITION_DIR`]) is removed
/// before the version is published.
pub fn build_from(
    writer: VersionWriter,
    req: BuildRequest,
    source: ShardSource,
    row_count: u64,
    extra: impl FnOnce(&Path) -> anyhow::Result<Option<String>>,
    on_event: &(dyn Fn(Event) + Sync),
) -> anyhow::Result<BuildReport> {
    let ctx = Context::predefined(&req.rlwe_parameters)?;
    let shard_count = source.shard_count();
    anyhow::ensure!(
        req.config.sharding.shard_count(row_count as usize)? == shard_count,
        "the rows were partitioned into {shard_count} shards, the configuration asks for {:?}",
        req.config.sharding
    );
    let mut cfg = req.config.clone();
    cfg.sharding = Sharding::ShardCount(shard_count);
    let settings = settings_digest(&req, shard_count);
    let previous = match &req.previous {
        Some(p) => current_version(p)?
            .filter(|(_, m)| m.settings_digest == settings && m.shards.len() == shard_count),
        None => None,
    };
    let stem = &req.stem;
    let names = |i: usize| {
        (
            format!("{stem}-{i}.bin"),
            format!("{stem}-{i}.params.txtpb"),
            format!("{stem}-{i}.rows"),
            format!("{stem}-{i}.words"),
        )
    };
    let dir = writer.dir().to_path_buf();
    struct Done {
        index: usize,
        rows: usize,
        digest: String,
        key_config: EvaluationKeyConfig,
        trial: Option<Trial>,
        words: bool,
        bin: bool,
        overlay: bool,
        /// Row and table logs shared with the previous version.
        logs: (bool, bool),
        reused: bool,
    }
    let results: Vec<Done> = (0..shard_count)
        .into_par_iter()
        .with_max_len(1)
        .map(|i| -> anyhow::Result<Done> {
            let mut rows = source.take(i).with_context(|| format!("shard {i}"))?;
            // Rows in keyword order: a shard's files then depend only on its set of rows (and
            // the settings), so an updated version and a fresh build are byte-identical.
            rows.sort_unstable();
            let digest = rows_digest(&rows);
            let (bin, params, rows_name, words_name) = names(i);
            if let Some((pdir, pm)) = &previous {
                let ps = &pm.shards[i];
                if ps.rows_sha256 == digest
                    && !(req.keep_rows && ps.rows_file.is_none())
                    && !(req.apple_layout && ps.database.is_none())
                {
                    let entry =
                        |p: &str| pm.file(p).cloned().context("manifest lacks a shard file");
                    let mut pairs = vec![(entry(&ps.parameters)?, params.clone())];
                    // The .bin goes along where the server needs it or the build asks for it.
                    let keep_bin = req.apple_layout || ps.words.is_none();
                    if let Some(b) = ps.database.as_ref().filter(|_| keep_bin) {
                        pairs.push((entry(b)?, bin.clone()));
                    }
                    if let Some(w) = &ps.words {
                        pairs.push((entry(w)?, words_name.clone()));
                    }
                    if let Some(o) = &ps.overlay {
                        pairs.push((entry(o)?, crate::update::overlay_name(stem, i)));
                    }
                    if req.keep_rows
                        && let Some(r) = &ps.rows_file
                    {
                        pairs.push((entry(r)?, rows_name.clone()));
                        let table = crate::update::table_file_name(stem, i);
                        if let Some(e) = pm.file(&table) {
                            pairs.push((e.clone(), table));
                        }
                        if let Some(l) = &ps.rows_log {
                            pairs.push((entry(l)?, crate::update::rows_log_name(stem, i)));
                        }
                        if let Some(l) = &ps.table_log {
                            pairs.push((entry(l)?, crate::update::table_log_name(stem, i)));
                        }
                    }
                    for (e, rel) in &pairs {
                        writer.link_from(pdir, e, rel)?;
                    }
                    let text = std::fs::read_to_string(dir.join(&params))?;
                    let proto: sift_proto::pir::PirParameters = sift_proto::from_text(&text)
                        .map_err(|e| anyhow::anyhow!("{params}: {e}"))?;
                    let key_config = wire::pir_parameters_from_proto(&proto)?
                        .index
                        .evaluation_key_config;
                    on_event(Event::Reused { index: i });
                    return Ok(Done {
                        index: i,
                        rows: rows.len(),
                        digest,
                        key_config,
                        trial: None,
                        words: ps.words.is_some(),
                        bin: ps.database.is_some() && keep_bin,
                        overlay: ps.overlay.is_some(),
                        logs: if req.keep_rows {
                            (ps.rows_log.is_some(), ps.table_log.is_some())
                        } else {
                            (false, false)
                        },
                        reused: true,
                    });
                }
            }
            let (shard, table) = server::process_shard_with_table(
                &ctx,
                &rows,
                &cfg,
                req.seed.wrapping_add(i as u64),
            )
            .with_context(|| format!("shard {i}"))?;
            let trial = run_trials(&shard, &rows, req.trials).with_context(|| {
                format!("shard {i}: trial query failed, so nothing was published")
            })?;
            let words = server::words_file(&ctx, &shard).with_context(|| format!("shard {i}"))?;
            if let Some(w) = &words {
                writer.write_file(&words_name, w)?;
            }
            let with_bin = req.apple_layout || words.is_none();
            if with_bin {
                writer.write_file(&bin, &shard.database.serialize(&ctx))?;
            }
            let mut proto = wire::pir_parameters_to_proto(&shard.params);
            wire::set_symmetric_pir_client_config(&mut proto, req.symmetric.as_ref());
            writer.write_file(&params, sift_proto::to_text(&proto)?.as_bytes())?;
            if req.keep_rows {
                writer.write_file(&rows_name, &encode_rows(&rows))?;
                crate::update::write_table(&writer, stem, i, &table, &cfg)?;
            }
            on_event(Event::Processed {
                index: i,
                rows: rows.len(),
                trial,
            });
            Ok(Done {
                index: i,
                rows: rows.len(),
                digest,
                key_config: shard.params.index.evaluation_key_config,
                trial,
                words: words.is_some(),
                bin: with_bin,
                overlay: false,
                logs: (false, false),
                reused: false,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    drop(source);
    let _ = std::fs::remove_dir_all(dir.join(PARTITION_DIR));
    let shard_rows: Vec<usize> = results.iter().map(|d| d.rows).collect();
    let largest = results
        .iter()
        .filter(|d| !d.reused)
        .max_by_key(|d| d.rows)
        .and_then(|d| d.trial);
    let processed = results.iter().filter(|d| !d.reused).count();
    let reused = results.len() - processed;
    let key_configs: Vec<EvaluationKeyConfig> =
        results.iter().map(|d| d.key_config.clone()).collect();
    let union = EvaluationKeyConfig::union(&key_configs);
    writer.write_file(
        &format!("{stem}-evaluation-key-config.txtpb"),
        sift_proto::to_text(&wire::evaluation_key_config_to_proto(&union, &ctx.params))?.as_bytes(),
    )?;
    let prefilter = extra(writer.dir())?;
    let entries = results
        .iter()
        .map(|d| {
            let (bin, params, rows_name, words) = names(d.index);
            ShardEntry {
                rows: d.rows as u64,
                rows_sha256: d.digest.clone(),
                database: d.bin.then_some(bin),
                parameters: params,
                words: d.words.then_some(words),
                overlay: d
                    .overlay
                    .then(|| crate::update::overlay_name(stem, d.index)),
                rows_log: d
                    .logs
                    .0
                    .then(|| crate::update::rows_log_name(stem, d.index)),
                table_log: d
                    .logs
                    .1
                    .then(|| crate::update::table_log_name(stem, d.index)),
                rows_file: req.keep_rows.then_some(rows_name),
            }
        })
        .collect();
    let published = writer.publish(
        ManifestInfo {
            stem: req.stem.clone(),
            row_count,
            rlwe_parameters: req.rlwe_parameters.clone(),
            shards: entries,
            prefilter,
            build: req.build_options.clone(),
            settings_digest: settings,
            parsing: req.parsing.clone(),
        },
        req.versions_kept,
    )?;
    Ok(BuildReport {
        published,
        processed,
        reused,
        shard_rows,
        largest_trial: largest,
    })
}

/// The rows (sorted by keyword) of the one shard that holds `keyword` in a version written with
/// `keep_rows`, read alone; `function` is the version's sharding function. Empty when the
/// version has no rows file for that shard.
pub fn shard_rows_of(
    dir: &Path,
    manifest: &Manifest,
    function: ShardingFunction,
    keyword: &[u8],
) -> anyhow::Result<Rows> {
    let i = function.shard_index(keyword, manifest.shards.len())?;
    if manifest.shards[i].rows_file.is_none() {
        return Ok(Vec::new());
    }
    shard_rows(dir, manifest, i)
}

/// Shard `i`'s `.rows` file, or an error saying that `sift update` needs the version rebuilt
/// with its rows.
pub fn rows_file(manifest: &Manifest, i: usize) -> anyhow::Result<&str> {
    manifest.shards[i].rows_file.as_deref().with_context(|| {
        format!(
            "version {} was built without its rows (shard {i}): rebuild it with this sift \
             before updating in place",
            manifest.id
        )
    })
}

/// Shard `i`'s rows, sorted by keyword: its `.rows` file with its row log applied (an error
/// when the version was built without rows).
pub fn shard_rows(dir: &Path, manifest: &Manifest, i: usize) -> anyhow::Result<Rows> {
    let s = &manifest.shards[i];
    let name = rows_file(manifest, i)?;
    let mut rows = decode_rows(&crate::load::read_verified(dir, manifest, name)?)?;
    match &s.rows_log {
        Some(l) => {
            let log = crate::logs::decode_row_log(&crate::load::read_verified(dir, manifest, l)?)
                .with_context(|| l.clone())?;
            Ok(crate::logs::apply_row_log(rows, &log))
        }
        None => {
            rows.sort_unstable();
            Ok(rows)
        }
    }
}

/// Queries `shard` `trials` times, each for a present keyword and an absent one, with a
/// fresh client (Apple's `trialsPerShard`). `None` when `trials` is 0 or the shard is empty.
pub fn run_trials(
    shard: &server::ProcessedShard,
    rows: &[(Vec<u8>, Vec<u8>)],
    trials: usize,
) -> anyhow::Result<Option<Trial>> {
    if trials == 0 || rows.is_empty() {
        return Ok(None);
    }
    let proto = wire::pir_parameters_to_proto(&shard.params);
    let server = server::KeywordPirServer::from_processed(vec![shard.clone()])?;
    let mut rng = rand::thread_rng();
    let client = sift_pir::client::KeywordPirClient::new(std::slice::from_ref(&proto), &mut rng)?;
    let key = client.evaluation_key(&mut rng)?;
    let mut min_budget = f64::INFINITY;
    let mut times = Vec::new();
    for t in 0..trials {
        let (keyword, value) = &rows[t * rows.len() / trials];
        let absent = format!("sift-trial-absent-{t}.invalid");
        for (kw, expected) in [
            (keyword.as_slice(), Some(value.as_slice())),
            (absent.as_bytes(), None),
        ] {
            let query = client.query(kw, &mut rng)?;
            let start = Instant::now();
            let response = server.answer(&query, &key)?;
            times.push(start.elapsed());
            let got = client.decode(kw, &response)?;
            anyhow::ensure!(
                got.as_deref() == expected,
                "lookup of {:?} returned {:?}, expected {:?}: the parameters leave too little \
                 noise budget",
                String::from_utf8_lossy(kw),
                got.as_deref().map(String::from_utf8_lossy),
                expected.map(String::from_utf8_lossy)
            );
            min_budget = min_budget.min(client.response_noise_budget(&response)?);
        }
    }
    times.sort();
    Ok(Some(Trial {
        min_noise_budget: min_budget,
        answer_time: times[times.len() / 2],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_sharding_keeps_every_shard_under_the_target() {
        let rows: Rows = (0..450_000u32)
            .map(|i| (format!("host-{i}.example/p").into_bytes(), b"1".to_vec()))
            .collect();
        let k = auto_shard_count(&rows, ShardingFunction::Sha256);
        let hashes: Vec<u64> = rows.iter().map(|r| keyword_hash(&r.0)).collect();
        let sizes = shard_sizes(&hashes, ShardingFunction::Sha256, k);
        assert!(
            *sizes.iter().max().unwrap() <= TARGET_ROWS_PER_SHARD,
            "{sizes:?}"
        );
        assert_eq!(k, 5, "the smallest count that fits: {sizes:?}");
        let fewer = shard_sizes(&hashes, ShardingFunction::Sha256, k - 1);
        assert!(
            *fewer.iter().max().unwrap() > TARGET_ROWS_PER_SHARD,
            "{fewer:?}"
        );
        // The counting agrees with the sharding function the server and client use.
        let sharded = server::shard_rows(
            rows[..1000].to_vec(),
            &KeywordPirConfig {
                sharding: Sharding::ShardCount(k),
                ..KeywordPirConfig::default_for(
                    &sift_he::EncryptionParameters::predefined("n_4096_logq_27_28_28_logt_5")
                        .unwrap(),
                    1,
                )
            },
        )
        .unwrap();
        assert_eq!(
            sharded.iter().map(Vec::len).collect::<Vec<_>>(),
            shard_sizes(&hashes[..1000], ShardingFunction::Sha256, k)
        );
        assert_eq!(auto_shard_count(&rows[..1000], ShardingFunction::Sha256), 1);
        // Larger values: fewer rows per shard.
        assert!(target_rows_per_shard(100) < TARGET_ROWS_PER_SHARD / 8);
    }

    #[test]
    fn rows_files_round_trip_and_digests_ignore_order() {
        let rows: Rows = vec![(b"b".to_vec(), b"1".to_vec()), (b"a".to_vec(), vec![])];
        assert_eq!(decode_rows(&encode_rows(&rows)).unwrap(), rows);
        let rev: Rows = rows.iter().rev().cloned().collect();
        assert_eq!(rows_digest(&rows), rows_digest(&rev));
        assert!(decode_rows(&encode_rows(&rows)[..5]).is_err());
    }
}
