//! Keyword-PIR database processing (Apple's `KeywordPirServer.process`, `ProcessKeywordDatabase`)
//! and the server that answers `api.pir.v1.PIRRequest`s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use sift_he::{Ciphertext, Context, EncryptionParameters, EvalPlaintext, EvaluationKey, Format};
use sift_proto::{api, he as pb, pir as pp};

use crate::PirError;
use crate::bucket::SLOT_OVERHEAD;
use crate::cuckoo::{BucketCount, CuckooConfig, CuckooTable};
use crate::database::{self, ProcessedDatabase};
use crate::index_pir;
use crate::keyword::ShardingFunction;
use crate::params::{DimensionChoice, IndexPirParameter, KeyCompression};
use crate::wire::{self, ShardParameters};

/// Keyword database rows: (keyword, value).
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// How many shards (Apple's `Sharding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharding {
    /// Exactly this many shards.
    ShardCount(usize),
    /// max(rows / this, 1) shards.
    EntryCountPerShard(usize),
}

impl Sharding {
    /// The shard count for `rows` rows.
    pub fn shard_count(&self, rows: usize) -> Result<usize, PirError> {
        match *self {
            Sharding::ShardCount(0) | Sharding::EntryCountPerShard(0) => {
                Err(PirError::InvalidParameters("sharding value 0".into()))
            }
            Sharding::ShardCount(n) => Ok(n),
            Sharding::EntryCountPerShard(m) => Ok((rows / m).max(1)),
        }
    }
}

/// Keyword-PIR processing options (Apple's `KeywordPirConfig` + `KeywordDatabaseConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct KeywordPirConfig {
    /// Cuckoo table options.
    pub cuckoo: CuckooConfig,
    /// Evaluation-key compression.
    pub key_compression: KeyCompression,
    /// Use `max_serialized_bucket_size` as the entry size.
    pub use_max_serialized_bucket_size: bool,
    /// Shard count rule.
    pub sharding: Sharding,
    /// Keyword → shard function.
    pub sharding_function: ShardingFunction,
    /// How the index-PIR dimensions are chosen.
    pub dimension_choice: DimensionChoice,
}

impl KeywordPirConfig {
    /// Apple's defaults for `params` and the given rows: 2 functions, 100 evictions,
    /// expansion, 3 slots, default max bucket size (see [`default_max_serialized_bucket_size`]).
    pub fn default_for(params: &EncryptionParameters, max_value_len: usize) -> KeywordPirConfig {
        let bpp = params.bytes_per_plaintext();
        KeywordPirConfig {
            cuckoo: CuckooConfig::default_keyword_pir(default_max_serialized_bucket_size(
                bpp,
                3,
                max_value_len,
            )),
            key_compression: KeyCompression::NoCompression,
            use_max_serialized_bucket_size: false,
            sharding: Sharding::ShardCount(1),
            sharding_function: ShardingFunction::Sha256,
            dimension_choice: DimensionChoice::default(),
        }
    }
}

/// PIRProcessDatabase's default `maxSerializedBucketSize`: bytesPerPlaintext/2, unless one full
/// bucket (slot_count slots of the largest value) needs at least that, in which case that size
/// rounded up to a multiple of bytesPerPlaintext.
pub fn default_max_serialized_bucket_size(
    bpp: usize,
    slot_count: usize,
    max_value_len: usize,
) -> usize {
    let single = 1 + slot_count * (SLOT_OVERHEAD + max_value_len);
    if single >= bpp / 2 {
        single.div_ceil(bpp) * bpp
    } else {
        bpp / 2
    }
}

/// One processed shard: its parameters and plaintexts (tables concatenated).
#[derive(Clone, Debug)]
pub struct ProcessedShard {
    /// Parameters (written as `<stem>-<i>.params.txtpb`).
    pub params: ShardParameters,
    /// Plaintexts (written as `<stem>-<i>.bin`).
    pub database: ProcessedDatabase,
}

/// Splits rows into shards with `config`'s sharding.
pub fn shard_rows(
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    config: &KeywordPirConfig,
) -> Result<Vec<Rows>, PirError> {
    let count = config.sharding.shard_count(rows.len())?;
    let mut shards = vec![Vec::new(); count];
    for (k, v) in rows {
        let i = config.sharding_function.shard_index(&k, count)?;
        shards[i].push((k, v));
    }
    Ok(shards)
}

/// Processes one shard's rows: cuckoo table, buckets, index-PIR parameters, plaintexts.
pub fn process_shard(
    ctx: &Context,
    rows: &[(Vec<u8>, Vec<u8>)],
    config: &KeywordPirConfig,
    seed: u64,
) -> Result<ProcessedShard, PirError> {
    process_shard_with_table(ctx, rows, config, seed).map(|(s, _)| s)
}

/// [`process_shard`], also returning the shard's cuckoo table (which an update in place
/// takes up again, see [`patch_shard`]).
pub fn process_shard_with_table(
    ctx: &Context,
    rows: &[(Vec<u8>, Vec<u8>)],
    config: &KeywordPirConfig,
    seed: u64,
) -> Result<(ProcessedShard, CuckooTable), PirError> {
    let table = CuckooTable::build(rows, &config.cuckoo, seed)?;
    let entry_size = if config.use_max_serialized_bucket_size {
        config.cuckoo.max_serialized_bucket_size
    } else {
        match config.cuckoo.bucket_count {
            BucketCount::AllowExpansion { .. } => table.max_serialized_bucket_size(),
            BucketCount::FixedSize { .. } => config.cuckoo.max_serialized_bucket_size,
        }
    };
    let h = config.cuckoo.hash_function_count;
    let bpp = ctx.params.bytes_per_plaintext();
    let index = IndexPirParameter::generate_with(
        config.dimension_choice,
        table.buckets_per_table,
        entry_size,
        h,
        bpp,
        ctx.n,
        config.key_compression,
    )?;
    let database = process_tables(ctx, &index, (h, table.buckets_per_table), &|t, e| {
        table.tables[t][e].serialize()
    })?;
    let shard = ProcessedShard {
        params: ShardParameters {
            encryption: ctx.params.clone(),
            index,
            hash_function_count: h,
            sharding_function: config.sharding_function,
        },
        database,
    };
    Ok((shard, table))
}

/// The processed database of a cuckoo table's `h` tables of `buckets` entries each, entry `e`
/// of table `t` being `entry(t, e)` (a serialized bucket): the tables' plaintexts in order.
fn process_tables(
    ctx: &Context,
    index: &IndexPirParameter,
    (h, buckets): (usize, usize),
    entry: &dyn Fn(usize, usize) -> Result<Vec<u8>, PirError>,
) -> Result<ProcessedDatabase, PirError> {
    let mut plaintexts = Vec::new();
    for t in 0..h {
        let entries = (0..buckets)
            .map(|e| entry(t, e))
            .collect::<Result<Vec<_>, _>>()?;
        plaintexts.extend(database::process(ctx, &entries, index)?.plaintexts);
    }
    Ok(ProcessedDatabase { plaintexts })
}

/// The shape of a shard's `.words` tables for `params` over `ctx`.
pub fn words_shape(ctx: &Context, params: &ShardParameters) -> crate::storage::Shape {
    let bpp = ctx.params.bytes_per_plaintext();
    let (d0, per_pass) = compact_shape(&params.index, bpp);
    crate::storage::Shape {
        tables: params.hash_function_count,
        d0,
        per_chunk: per_pass,
        len: params.index.chunk_count(bpp) * params.index.per_chunk_plaintext_count(),
    }
}

/// A shard's files after some of its cuckoo buckets changed (see [`patch_shard`]).
#[derive(Debug)]
pub struct PatchedShard {
    /// The new `.bin`, when the shard had one.
    pub bin: Option<Vec<u8>>,
    /// How the `.words` changed, when the shard had one.
    pub words: Option<WordsChange>,
    /// Plaintexts re-encoded.
    pub plaintexts: usize,
}

/// How [`patch_shard`] changed a shard's `.words`.
#[derive(Debug)]
pub enum WordsChange {
    /// The `.words` file stays as it is; these are the bytes of its new overlay file (every
    /// plaintext replaced since the file was written, see [`crate::overlay`]).
    Overlay(Vec<u8>),
    /// A new `.words` file, with the previous overlay and the changes folded in.
    Rewritten(Vec<u8>),
}

/// A shard's stored forms, as [`patch_shard`] reads them: Apple's `.bin` and / or the mapped
/// `.words` (at least one), and the `.words` file's overlay, if it has one.
#[derive(Clone, Copy, Debug)]
pub struct ShardFiles<'a> {
    /// The `.bin` bytes, when the shard has one.
    pub bin: Option<&'a [u8]>,
    /// Whether the shard has a `.words` file (it is not read: an overlay is made from the
    /// table, a rewrite processes the table afresh).
    pub words: bool,
    /// The overlay file's bytes, when the `.words` has one.
    pub overlay: Option<&'a [u8]>,
}

/// A shard's cuckoo table as [`patch_shard`] reads it: its shape and each bucket's
/// serialized form after and before the change (the table need not be in memory whole).
pub struct TableView<'a> {
    /// Tables (hash functions) and buckets per table.
    pub shape: (usize, usize),
    /// Bucket `e` of table `t` after the change, serialized.
    pub after: &'a (dyn Fn(usize, usize) -> Result<Vec<u8>, PirError> + Sync),
    /// Bucket `e` of table `t` before the change, serialized.
    pub before: &'a (dyn Fn(usize, usize) -> Result<Vec<u8>, PirError> + Sync),
}

/// Re-encodes only the plaintexts that hold the `changed` (table, bucket) pairs of `table`
/// (the shard's cuckoo table, same size as when `params` were made) and replaces them: in a
/// copy of the `.bin`, and for the `.words` in an overlay beside the unchanged file while the
/// overlay holds at most `max_overlay_fraction` of the shard's plaintexts, else in a
/// rewritten `.words` file. The overlay's differences come from re-encoding the buckets as
/// they were before the change, so the `.words` file is never read. The parameters stay as
/// they are, so devices' configuration keeps working.
pub fn patch_shard(
    ctx: &Context,
    params: &ShardParameters,
    table: TableView,
    changed: &[(usize, usize)],
    old: ShardFiles,
    max_overlay_fraction: f64,
) -> Result<PatchedShard, PirError> {
    let h = params.hash_function_count;
    let (tables, buckets) = table.shape;
    if tables != h || buckets != params.index.entry_count {
        return Err(PirError::InvalidParameters(format!(
            "the cuckoo table ({tables} tables of {buckets} buckets) does not match the shard's \
             parameters ({h} tables of {} entries)",
            params.index.entry_count
        )));
    }
    let (after, before) = (table.after, table.before);
    if old.bin.is_none() && !old.words {
        return Err(PirError::InvalidParameters(
            "a shard with neither a .bin nor a .words file".into(),
        ));
    }
    let bpp = ctx.params.bytes_per_plaintext();
    let per_table = params.index.chunk_count(bpp) * params.index.per_chunk_plaintext_count();
    let mut changes = Vec::with_capacity(h);
    let mut which_per_table = Vec::with_capacity(h);
    for t in 0..h {
        let mut which: Vec<usize> = changed
            .iter()
            .filter(|c| c.0 == t)
            .flat_map(|&(_, b)| database::plaintexts_of_entry(&params.index, bpp, b))
            .collect();
        which.sort_unstable();
        which.dedup();
        changes.push(database::reencode(
            ctx,
            &params.index,
            &|e| after(t, e),
            &which,
        )?);
        which_per_table.push(which);
    }
    let plaintexts = changes.iter().map(Vec::len).sum();
    let words = match old.words {
        false => None,
        true => {
            let shape = words_shape(ctx, params);
            let previous = old
                .overlay
                .map(|b| crate::overlay::Overlay::decode(ctx, shape, b))
                .transpose()?;
            let olds = which_per_table
                .iter()
                .enumerate()
                .map(|(t, which)| database::reencode(ctx, &params.index, &|e| before(t, e), which))
                .collect::<Result<Vec<_>, _>>()?;
            let overlay = crate::overlay::Overlay::build_from_before(
                ctx,
                shape,
                previous.as_ref(),
                &changes,
                &olds,
            )?;
            let most =
                (max_overlay_fraction.clamp(0.0, 1.0) * (shape.tables * shape.len) as f64) as usize;
            Some(if overlay.len() <= most {
                WordsChange::Overlay(overlay.encode())
            } else {
                // Every plaintext processed afresh from the table, as a build of it would: the
                // old file is not read, so a damaged one cannot pass into the new one.
                let shard = ProcessedShard {
                    params: params.clone(),
                    database: process_tables(ctx, &params.index, (h, buckets), after)?,
                };
                WordsChange::Rewritten(words_file(ctx, &shard)?.ok_or_else(|| {
                    PirError::InvalidParameters("these parameters have no .words form".into())
                })?)
            })
        }
    };
    let bin = match old.bin {
        None => None,
        Some(old_bin) => {
            let global: std::collections::HashMap<usize, Option<EvalPlaintext>> = changes
                .iter()
                .enumerate()
                .flat_map(|(t, c)| c.iter().map(move |(i, p)| (t * per_table + i, p.clone())))
                .collect();
            let bin = database::patch_bin(ctx, old_bin, &global)?;
            check_plaintext_count(ctx, params, database::plaintext_spans(ctx, &bin)?.len())?;
            Some(bin)
        }
    };
    Ok(PatchedShard {
        bin,
        words,
        plaintexts,
    })
}

/// The `.words` file of a processed shard (its tables in the form the server computes on,
/// see [`crate::storage`]), or None when the server would keep Eval plaintexts for these
/// parameters (a modulus of 2^30 or more).
pub fn words_file(ctx: &Context, shard: &ProcessedShard) -> Result<Option<Vec<u8>>, PirError> {
    let tables = shard.database.tables(shard.params.hash_function_count)?;
    let (d0, per_pass) = compact_shape(&shard.params.index, ctx.params.bytes_per_plaintext());
    let compact = tables
        .iter()
        .map(|t| index_pir::CompactDatabase::new(ctx, t, d0, per_pass))
        .collect::<Option<Vec<_>>>();
    Ok(compact.map(|c| crate::storage::encode(&c)))
}

/// Shards and processes a whole keyword database (shards in parallel).
pub fn process_keyword_database(
    ctx: &Context,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    config: &KeywordPirConfig,
    seed: u64,
) -> Result<Vec<ProcessedShard>, PirError> {
    let shards = shard_rows(rows, config)?;
    shards
        .par_iter()
        .enumerate()
        .map(|(i, r)| process_shard(ctx, r, config, seed.wrapping_add(i as u64)))
        .collect()
}

/// A check of a shard's stored bytes (its file's checksum), run once before the shard's
/// first answer; the error says what is wrong and where.
pub struct ShardCheck(pub Box<dyn Fn() -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for ShardCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardCheck")
    }
}

/// A loaded shard ready to answer queries.
#[derive(Debug)]
pub struct ServerShard {
    /// Shard parameters.
    pub params: ShardParameters,
    /// `PirParameters` as loaded (for building `PIRConfig`).
    pub proto: pp::PirParameters,
    /// The Eval plaintexts (emptied once `compact` holds them).
    database: ProcessedDatabase,
    /// Per table, the 32-bit copy used for answering (moduli below 2^30).
    compact: Option<Vec<index_pir::CompactDatabase>>,
    /// Run before the first answer (mapped shards: their checksum); `None`: checked at load.
    check: Option<ShardCheck>,
    /// The check's outcome, once run: a shard that failed it never answers.
    verified: OnceLock<Result<(), String>>,
    /// Plaintexts replaced since `compact` was written (see [`crate::overlay`]).
    overlay: Option<crate::overlay::Overlay>,
}

/// Keyword-PIR server over the shards of one use case (all with the same encryption parameters).
#[derive(Debug)]
pub struct KeywordPirServer {
    ctx: Arc<Context>,
    shards: Vec<ServerShard>,
}

impl KeywordPirServer {
    /// Builds a server from processed shards (in memory).
    pub fn from_processed(shards: Vec<ProcessedShard>) -> Result<KeywordPirServer, PirError> {
        let first = shards
            .first()
            .ok_or_else(|| PirError::InvalidParameters("no shards".into()))?;
        let ctx = Context::new(first.params.encryption.clone())?;
        let shards = shards
            .into_iter()
            .map(|s| ServerShard::new(&ctx, s.params, s.database))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeywordPirServer { ctx, shards })
    }

    /// Loads `<dir>/<stem>-<i>.params.txtpb` (or `.binpb`) and `<dir>/<stem>-<i>.bin` for
    /// i = 0, 1, … while they exist (Apple's `PirUsecase` layout).
    pub fn load(dir: &Path, stem: &str) -> Result<KeywordPirServer, PirError> {
        let mut shards = Vec::new();
        for i in 0.. {
            let txt = dir.join(format!("{stem}-{i}.params.txtpb"));
            let bin = dir.join(format!("{stem}-{i}.params.binpb"));
            let proto = if txt.exists() {
                parse_parameters(&txt, &read(&txt)?)?
            } else if bin.exists() {
                parse_parameters(&bin, &read(&bin)?)?
            } else {
                break;
            };
            shards.push((proto, read(&dir.join(format!("{stem}-{i}.bin")))?));
        }
        if shards.is_empty() {
            return Err(PirError::InvalidParameters(format!(
                "no shard files {stem}-0.params.txtpb in {}",
                dir.display()
            )));
        }
        KeywordPirServer::from_serialized(shards)
    }

    /// Builds a server from each shard's `PirParameters` and `.bin` bytes, in shard order
    /// (the dataset crate reads and verifies the files, then calls this).
    pub fn from_serialized(
        shards: Vec<(pp::PirParameters, Vec<u8>)>,
    ) -> Result<KeywordPirServer, PirError> {
        let mut out = Vec::with_capacity(shards.len());
        let contexts = ContextCache::default();
        for (i, (proto, bytes)) in shards.into_iter().enumerate() {
            let params = wire::pir_parameters_from_proto(&proto)?;
            let c = contexts.get(i, &params)?;
            let shard = ServerShard::from_bin(&c, proto, &bytes)
                .map_err(|e| PirError::DamagedDataset(format!("shard {i}: {e}")))?;
            drop(bytes);
            out.push(shard);
        }
        KeywordPirServer::from_shards(out)
    }

    /// Builds a server from loaded shards (see [`ServerShard::from_bin`] and
    /// [`ServerShard::from_words`]), in shard order, all over the same encryption parameters.
    pub fn from_shards(shards: Vec<ServerShard>) -> Result<KeywordPirServer, PirError> {
        let contexts = ContextCache::default();
        for (i, s) in shards.iter().enumerate() {
            contexts.get(i, &s.params)?;
        }
        let ctx = contexts
            .0
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or_else(|| PirError::InvalidParameters("no shards".into()))?;
        Ok(KeywordPirServer { ctx, shards })
    }

    /// Runs every shard's pending check (in parallel) and returns the first failure: call it
    /// to warm a freshly mapped dataset up (the check reads every page) or to verify it
    /// fully in the background. Shards that fail never answer, whether or not this is called.
    pub fn verify_all(&self) -> Result<(), PirError> {
        self.shards
            .par_iter()
            .enumerate()
            .try_for_each(|(i, s)| s.ensure_verified().map_err(|e| shard_error(i, e)))
    }
}

fn shard_error(i: usize, e: PirError) -> PirError {
    match e {
        PirError::DamagedDataset(m) => PirError::DamagedDataset(format!("shard {i}: {m}")),
        e => e,
    }
}

/// The HE context shared by a server's shards, made from the first shard's parameters
/// (shards may be loaded from several threads).
#[derive(Default)]
pub struct ContextCache(std::sync::Mutex<Option<Arc<Context>>>);

impl ContextCache {
    /// The context for shard `i`'s parameters: the first shard's, or an error when they
    /// differ from it.
    pub fn get(&self, i: usize, params: &ShardParameters) -> Result<Arc<Context>, PirError> {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some(c) if c.params == params.encryption => Ok(c.clone()),
            Some(_) => Err(PirError::InvalidParameters(format!(
                "shard {i} uses different encryption parameters than the others"
            ))),
            None => {
                let c = Context::new(params.encryption.clone())?;
                *cached = Some(c.clone());
                Ok(c)
            }
        }
    }
}

impl KeywordPirServer {
    /// The HE context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The loaded shards.
    pub fn shards(&self) -> &[ServerShard] {
        &self.shards
    }

    /// Answers a request with the given evaluation key (the server's stored key or the
    /// request's own `evaluation_key`).
    pub fn answer(
        &self,
        request: &api::PirRequest,
        key: &pb::SerializedEvaluationKey,
    ) -> Result<api::PirResponse, PirError> {
        let key = EvaluationKey::deserialize(&self.ctx, &wire::evaluation_key_from_proto(key)?)?;
        self.answer_with_key(request, &key)
    }

    /// [`KeywordPirServer::answer`] with an already deserialized evaluation key (cache it per
    /// user to skip the deserialization).
    pub fn answer_with_key(
        &self,
        request: &api::PirRequest,
        key: &EvaluationKey,
    ) -> Result<api::PirResponse, PirError> {
        let shard = self
            .shards
            .get(request.shard_index as usize)
            .ok_or_else(|| {
                PirError::Malformed(format!("shard {} out of range", request.shard_index))
            })?;
        let query = request
            .query
            .as_ref()
            .ok_or_else(|| PirError::Malformed("request without query".into()))?;
        let calls = usize::try_from(query.num_pir_calls)
            .map_err(|_| PirError::Malformed("num_pir_calls too large".into()))?;
        if calls != shard.params.index.batch_size {
            return Err(PirError::Malformed(format!(
                "{calls} PIR calls, shard expects {}",
                shard.params.index.batch_size
            )));
        }
        let replies = shard.respond(&self.ctx, &query.ciphertexts, key)?;
        Ok(api::PirResponse {
            replies: replies
                .iter()
                .map(|r| pb::SerializedCiphertextVec {
                    ciphertexts: r
                        .iter()
                        .map(|c| wire::ciphertext_to_proto(&c.serialize(&self.ctx, true)))
                        .collect(),
                })
                .collect(),
            stash: None,
        })
    }
}

fn read(p: &PathBuf) -> Result<Vec<u8>, PirError> {
    std::fs::read(p).map_err(|e| PirError::DamagedDataset(format!("{}: {e}", p.display())))
}

/// Parses a `PirParameters` file's bytes: text format when `path` ends in `.txtpb`, binary
/// otherwise (`path` only names the file in errors and picks the format).
pub fn parse_parameters(path: &Path, bytes: &[u8]) -> Result<pp::PirParameters, PirError> {
    if path.extension().is_some_and(|e| e == "txtpb") {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| PirError::DamagedDataset(format!("{} is not UTF-8", path.display())))?;
        sift_proto::from_text(text)
            .map_err(|e| PirError::DamagedDataset(format!("{}: {e}", path.display())))
    } else {
        prost::Message::decode(bytes)
            .map_err(|e| PirError::DamagedDataset(format!("{}: {e}", path.display())))
    }
}

/// The (d₀, plaintexts per pass) shape a table's compact database is laid out in: one chunk
/// per pass, or with d₁ = 1 all chunks in one pass (the chunks are then the columns, which all
/// use the same selections, so each selection word loaded serves several of them).
fn compact_shape(index: &IndexPirParameter, bpp: usize) -> (usize, usize) {
    let per_chunk = index.per_chunk_plaintext_count();
    if index.dimensions[1] == 1 {
        (index.dimensions[0], per_chunk * index.chunk_count(bpp))
    } else {
        (index.dimensions[0], per_chunk)
    }
}

/// Checks that a shard's database holds `found` plaintexts, what `params` need over `ctx`, and
/// returns that count.
fn check_plaintext_count(
    ctx: &Context,
    params: &ShardParameters,
    found: usize,
) -> Result<usize, PirError> {
    let expect = params.hash_function_count
        * params.index.chunk_count(ctx.params.bytes_per_plaintext())
        * params.index.per_chunk_plaintext_count();
    if found != expect {
        return Err(PirError::DamagedDataset(format!(
            "database has {found} plaintexts, parameters need {expect}"
        )));
    }
    Ok(expect)
}

impl ServerShard {
    fn new(
        ctx: &Context,
        params: ShardParameters,
        database: ProcessedDatabase,
    ) -> Result<Self, PirError> {
        let bpp = ctx.params.bytes_per_plaintext();
        check_plaintext_count(ctx, &params, database.plaintexts.len())?;
        let tables = database.tables(params.hash_function_count)?;
        let shape = compact_shape(&params.index, bpp);
        let compact = tables
            .iter()
            .map(|t| index_pir::CompactDatabase::new(ctx, t, shape.0, shape.1))
            .collect::<Option<Vec<_>>>();
        let database = if compact.is_some() {
            ProcessedDatabase::default()
        } else {
            database
        };
        Ok(ServerShard {
            proto: wire::pir_parameters_to_proto(&params),
            params,
            database,
            compact,
            check: None,
            verified: OnceLock::new(),
            overlay: None,
        })
    }

    /// A shard from its `PirParameters` and Apple's `.bin` bytes (the bytes must have been
    /// verified by the caller): straight into the compact form, a few plaintexts at a time, so
    /// the Eval form (twice the size) is never held whole; the Eval form where the compact one
    /// does not apply.
    pub fn from_bin(
        ctx: &Context,
        proto: pp::PirParameters,
        bytes: &[u8],
    ) -> Result<ServerShard, PirError> {
        /// Plaintexts decoded at once (in parallel), about 16 MB at n = 4096.
        const BATCH: usize = 256;
        let params = wire::pir_parameters_from_proto(&proto)?;
        let spans = database::plaintext_spans(ctx, bytes)?;
        let h = params.hash_function_count;
        let per_table = check_plaintext_count(ctx, &params, spans.len())? / h;
        let shape = compact_shape(&params.index, ctx.params.bytes_per_plaintext());
        let mut compact = Vec::with_capacity(h);
        for table in spans.chunks(per_table) {
            let Some(mut db) =
                index_pir::CompactDatabase::zeroed(ctx, per_table, shape, sift_he::pack28::vbmi())
            else {
                let mut shard =
                    ServerShard::new(ctx, params, ProcessedDatabase::deserialize(ctx, bytes)?)?;
                shard.proto = proto;
                return Ok(shard);
            };
            for (b, batch) in table.chunks(BATCH).enumerate() {
                let pts = database::decode_spans(ctx, bytes, batch)?;
                for (j, pt) in pts.iter().enumerate() {
                    if let Some(pt) = pt
                        && !db.set(b * BATCH + j, pt)
                    {
                        return Err(PirError::DamagedDataset(format!(
                            "plaintext {} has the wrong shape",
                            b * BATCH + j
                        )));
                    }
                }
            }
            db.compact();
            compact.push(db);
        }
        Ok(ServerShard {
            proto,
            params,
            database: ProcessedDatabase::default(),
            compact: Some(compact),
            check: None,
            verified: OnceLock::new(),
            overlay: None,
        })
    }

    /// Memory the loaded database holds, in bytes (the compact words, or the Eval plaintexts).
    pub fn database_bytes(&self) -> usize {
        match &self.compact {
            Some(c) => c.iter().map(index_pir::CompactDatabase::heap_bytes).sum(),
            None => self
                .database
                .plaintexts
                .iter()
                .flatten()
                .map(|p| p.poly.data().len() * 8)
                .sum(),
        }
    }

    /// A shard answering from a mapped `.words` file (see [`crate::storage`]): nothing is
    /// read but its header until queries come (a file packed for another CPU is unpacked into
    /// memory at once). `check` runs once before the first answer (the file's checksum; a
    /// shard that fails it refuses every query).
    pub fn from_words(
        ctx: &Context,
        proto: pp::PirParameters,
        map: &Arc<crate::storage::Mmap>,
        check: Option<ShardCheck>,
    ) -> Result<ServerShard, PirError> {
        let params = wire::pir_parameters_from_proto(&proto)?;
        let shape = words_shape(ctx, &params);
        let tables = crate::storage::decode(map, ctx, shape)?;
        Ok(ServerShard {
            params,
            proto,
            database: ProcessedDatabase::default(),
            compact: Some(tables),
            check,
            verified: OnceLock::new(),
            overlay: None,
        })
    }

    /// The shard answering as if the overlay's plaintexts replaced its own (see
    /// [`crate::overlay`]); an error when the shard has no compact tables (moduli of 2^30 or
    /// more) or the overlay was made for other parameters or table shapes.
    pub fn with_overlay(
        mut self,
        overlay: crate::overlay::Overlay,
    ) -> Result<ServerShard, PirError> {
        let tables = self.compact.as_ref().ok_or_else(|| {
            PirError::InvalidParameters(
                "an overlay needs a shard in the compact form (moduli below 2^30)".into(),
            )
        })?;
        overlay.check_fits(&self.params.encryption, tables)?;
        self.overlay = Some(overlay);
        Ok(self)
    }

    /// Plaintexts the shard's overlay replaces (0 without one).
    pub fn overlay_len(&self) -> usize {
        self.overlay
            .as_ref()
            .map_or(0, crate::overlay::Overlay::len)
    }

    /// Whether the shard answers from a mapped file.
    pub fn is_mapped(&self) -> bool {
        self.compact
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| t.words.is_mapped()))
    }

    /// Whether the shard's data is known good: it had no check to run (read and checked at
    /// load) or its check has run and passed.
    pub fn is_verified(&self) -> bool {
        self.check.is_none() || matches!(self.verified.get(), Some(Ok(())))
    }

    /// Runs the shard's check if it has not run yet (once, also when called concurrently)
    /// and returns its outcome.
    pub fn ensure_verified(&self) -> Result<(), PirError> {
        match &self.check {
            None => Ok(()),
            Some(c) => self
                .verified
                .get_or_init(|| (c.0)())
                .clone()
                .map_err(PirError::DamagedDataset),
        }
    }

    /// Computes the replies (one per table) for serialized query ciphertexts.
    pub fn respond(
        &self,
        ctx: &Context,
        query: &[pb::SerializedCiphertext],
        key: &EvaluationKey,
    ) -> Result<Vec<Vec<Ciphertext>>, PirError> {
        self.respond_with(ctx, query, key, &mut ())
    }

    /// [`ServerShard::respond`], telling `observer` each phase's wall time (for benchmarks).
    pub fn respond_with(
        &self,
        ctx: &Context,
        query: &[pb::SerializedCiphertext],
        key: &EvaluationKey,
        observer: &mut impl index_pir::PhaseObserver,
    ) -> Result<Vec<Vec<Ciphertext>>, PirError> {
        // A mapped shard is answered from only after its bytes matched their checksum.
        self.ensure_verified()?;
        let cts = query
            .iter()
            .map(|c| {
                Ok(Ciphertext::deserialize(
                    ctx,
                    &wire::ciphertext_from_proto(c)?,
                    None,
                    Format::Coeff,
                )?)
            })
            .collect::<Result<Vec<_>, PirError>>()?;
        let tables: Vec<index_pir::DatabaseRef> = match &self.compact {
            Some(c) => c.iter().map(index_pir::DatabaseRef::Compact).collect(),
            None => self
                .database
                .tables(self.params.hash_function_count)?
                .into_iter()
                .map(index_pir::DatabaseRef::Eval)
                .collect(),
        };
        let overlays: Vec<&crate::overlay::OverlayTable> = self
            .overlay
            .as_ref()
            .map_or_else(Vec::new, |o| o.tables.iter().collect());
        index_pir::compute_response_overlaid(
            ctx,
            &self.params.index,
            (&tables, &overlays),
            &cts,
            self.params.index.batch_size,
            key,
            observer,
        )
    }
}
