//! Keyword-PIR database processing (Apple's `KeywordPirServer.process`, `ProcessKeywordDatabase`)
//! and the server that answers `api.pir.v1.PIRRequest`s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sift_he::{Ciphertext, Context, EncryptionParameters, EvaluationKey, Format};
use sift_proto::{api, he as pb, pir as pp};

use crate::PirError;
use crate::bucket::SLOT_OVERHEAD;
use crate::cuckoo::{BucketCount, CuckooConfig, CuckooTable};
use crate::database::{self, ProcessedDatabase};
use crate::index_pir;
use crate::keyword::ShardingFunction;
use crate::params::{IndexPirParameter, KeyCompression};
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
    let index = IndexPirParameter::generate(
        table.buckets_per_table,
        entry_size,
        h,
        bpp,
        ctx.n,
        true,
        config.key_compression,
    )?;
    let mut plaintexts = Vec::new();
    for t in &table.tables {
        let entries = t
            .iter()
            .map(|b| b.serialize())
            .collect::<Result<Vec<_>, _>>()?;
        plaintexts.extend(database::process(ctx, &entries, &index)?.plaintexts);
    }
    Ok(ProcessedShard {
        params: ShardParameters {
            encryption: ctx.params.clone(),
            index,
            hash_function_count: h,
            sharding_function: config.sharding_function,
        },
        database: ProcessedDatabase { plaintexts },
    })
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
        let mut ctx: Option<Arc<Context>> = None;
        for (i, (proto, bytes)) in shards.into_iter().enumerate() {
            let params = wire::pir_parameters_from_proto(&proto)?;
            let c = match &ctx {
                Some(c) if c.params == params.encryption => c.clone(),
                Some(_) => {
                    return Err(PirError::InvalidParameters(format!(
                        "shard {i} uses different encryption parameters than shard 0"
                    )));
                }
                None => {
                    let c = Context::new(params.encryption.clone())?;
                    ctx = Some(c.clone());
                    c
                }
            };
            let db = ProcessedDatabase::deserialize(&c, &bytes)
                .map_err(|e| PirError::DamagedDataset(format!("shard {i}: {e}")))?;
            let mut shard = ServerShard::new(&c, params, db)
                .map_err(|e| PirError::DamagedDataset(format!("shard {i}: {e}")))?;
            shard.proto = proto;
            out.push(shard);
        }
        let ctx = ctx.ok_or_else(|| PirError::InvalidParameters("no shards".into()))?;
        Ok(KeywordPirServer { ctx, shards: out })
    }

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

impl ServerShard {
    fn new(
        ctx: &Context,
        params: ShardParameters,
        database: ProcessedDatabase,
    ) -> Result<Self, PirError> {
        let bpp = ctx.params.bytes_per_plaintext();
        let expect = params.hash_function_count
            * params.index.chunk_count(bpp)
            * params.index.per_chunk_plaintext_count();
        if database.plaintexts.len() != expect {
            return Err(PirError::DamagedDataset(format!(
                "database has {} plaintexts, parameters need {expect}",
                database.plaintexts.len()
            )));
        }
        let tables = database.tables(params.hash_function_count)?;
        let compact = tables
            .iter()
            .map(|t| {
                index_pir::CompactDatabase::new(
                    ctx,
                    t,
                    params.index.dimensions[0],
                    params.index.per_chunk_plaintext_count(),
                )
            })
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
        })
    }

    /// Computes the replies (one per table) for serialized query ciphertexts.
    pub fn respond(
        &self,
        ctx: &Context,
        query: &[pb::SerializedCiphertext],
        key: &EvaluationKey,
    ) -> Result<Vec<Vec<Ciphertext>>, PirError> {
        self.respond_timed(ctx, query, key, &mut index_pir::PhaseTimes::default())
    }

    /// [`ServerShard::respond`], adding each phase's wall time to `times` (for benchmarks).
    pub fn respond_timed(
        &self,
        ctx: &Context,
        query: &[pb::SerializedCiphertext],
        key: &EvaluationKey,
        times: &mut index_pir::PhaseTimes,
    ) -> Result<Vec<Vec<Ciphertext>>, PirError> {
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
        index_pir::compute_response_timed(
            ctx,
            &self.params.index,
            &tables,
            &cts,
            self.params.index.batch_size,
            key,
            times,
        )
    }
}
