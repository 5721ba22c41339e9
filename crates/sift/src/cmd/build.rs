//! `sift build`: blocklists → keyword-PIR shards (`<stem>-<i>.bin`, `<stem>-<i>.params.txtpb`)
//! and the evaluation-key config, as Apple's `PIRProcessDatabase` writes them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::Value;
use sift_he::{Context, EncryptionParameters};
use sift_pir::cuckoo::BucketCount;
use sift_pir::keyword::ShardingFunction;
use sift_pir::params::{EvaluationKeyConfig, KeyCompression};
use sift_pir::server::{self, KeywordPirConfig, Sharding};
use sift_pir::wire;

/// Default parameters: Apple's NEURLFilter example and PIRProcessDatabase docs use
/// `n_4096_logq_27_28_28_logt_5` — the smallest query/response for 1-byte values with enough
/// noise budget for MulPir (our round-trip tests pass on it).
const DEFAULT_PARAMETERS: &str = "n_4096_logq_27_28_28_logt_5";

/// Arguments of `sift build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Blocklist files (plain one URL per line, hosts, AdBlock, or Apple `KeywordDatabase` .txtpb).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory.
    #[arg(short, long, default_value = ".")]
    pub output_dir: PathBuf,
    /// File stem: shard i goes to `<stem>-<i>.bin` and `<stem>-<i>.params.txtpb`.
    #[arg(long, default_value = "url")]
    pub stem: String,
    /// Apple PIRProcessDatabase JSON config (rlweParameters, sharding, shardingFunction,
    /// cuckooTableArguments, keyCompression, useMaxSerializedBucketSize, symmetricPirArguments);
    /// flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Predefined encryption parameters.
    #[arg(long)]
    pub rlwe_parameters: Option<String>,
    /// Number of shards.
    #[arg(long, conflicts_with = "entry_count_per_shard")]
    pub shard_count: Option<usize>,
    /// Shards = max(rows / this, 1).
    #[arg(long)]
    pub entry_count_per_shard: Option<usize>,
    /// Cuckoo hash functions (= PIR calls per query).
    #[arg(long)]
    pub hash_function_count: Option<usize>,
    /// noCompression | hybridCompression | maxCompression.
    #[arg(long)]
    pub key_compression: Option<String>,
    /// Value stored for every key (Apple's NEURLFilter placeholder is "1").
    #[arg(long, default_value = "1")]
    pub value: String,
    /// Seed for cuckoo evictions (reproducible output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// False-positive tolerance of the prefilter written to `<output-dir>/prefilter`.
    #[arg(long, default_value_t = 0.001)]
    pub prefilter_fp_rate: f64,
    /// Test queries per processed shard (Apple's `trialsPerShard`): each looks up a present and
    /// an absent keyword through a fresh client and checks the answers and the remaining noise
    /// budget. 0 skips the check. Default: the JSON config's `trialsPerShard`, else 1.
    #[arg(long)]
    pub trials_per_shard: Option<usize>,
    /// The app's URL parsing configuration: keys are normalised under it and it is recorded
    /// as `parsing.json` in the output directory.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
}

fn parse_compression(s: &str) -> anyhow::Result<KeyCompression> {
    Ok(match s {
        "noCompression" => KeyCompression::NoCompression,
        "hybridCompression" => KeyCompression::HybridCompression,
        "maxCompression" => KeyCompression::MaxCompression,
        _ => bail!("unknown key compression {s}"),
    })
}

/// Applies Apple's JSON config keys to `cfg`; returns rlweParameters if given.
fn apply_json(v: &Value, cfg: &mut KeywordPirConfig) -> anyhow::Result<Option<String>> {
    let u = |x: &Value, what: &str| {
        x.as_u64()
            .map(|n| n as usize)
            .with_context(|| format!("{what} must be a non-negative integer"))
    };
    if let Some(s) = v.get("sharding") {
        if let Some(n) = s.get("shardCount") {
            cfg.sharding = Sharding::ShardCount(u(n, "shardCount")?);
        } else if let Some(n) = s.get("entryCountPerShard") {
            cfg.sharding = Sharding::EntryCountPerShard(u(n, "entryCountPerShard")?);
        }
    }
    if let Some(f) = v.get("shardingFunction") {
        if let Some(k) = f.get("doubleMod") {
            cfg.sharding_function = ShardingFunction::DoubleMod {
                other_shard_count: u32::try_from(u(k, "doubleMod")?)?,
            };
        } else if f.get("sha256").is_some() {
            cfg.sharding_function = ShardingFunction::Sha256;
        }
    }
    if let Some(c) = v.get("cuckooTableArguments") {
        if let Some(n) = c.get("hashFunctionCount") {
            cfg.cuckoo.hash_function_count = u(n, "hashFunctionCount")?;
        }
        if let Some(n) = c.get("maxEvictionCount") {
            cfg.cuckoo.max_eviction_count = u(n, "maxEvictionCount")?;
        }
        if let Some(n) = c.get("maxSerializedBucketSize") {
            cfg.cuckoo.max_serialized_bucket_size = u(n, "maxSerializedBucketSize")?;
        }
        if let Some(n) = c.get("slotCount") {
            cfg.cuckoo.slot_count = u(n, "slotCount")?;
        }
        if let Some(b) = c.get("bucketCount") {
            if let Some(a) = b.get("allowExpansion") {
                cfg.cuckoo.bucket_count = BucketCount::AllowExpansion {
                    expansion_factor: a
                        .get("expansionFactor")
                        .and_then(Value::as_f64)
                        .unwrap_or(1.1),
                    target_load_factor: a
                        .get("targetLoadFactor")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.9),
                };
            } else if let Some(f) = b.get("fixedSize") {
                let n = f.get("bucketCount").unwrap_or(f);
                cfg.cuckoo.bucket_count = BucketCount::FixedSize {
                    bucket_count: u(n, "fixedSize.bucketCount")?,
                };
            }
        }
    }
    if let Some(k) = v.get("keyCompression").and_then(Value::as_str) {
        cfg.key_compression = parse_compression(k)?;
    }
    if let Some(b) = v.get("useMaxSerializedBucketSize").and_then(Value::as_bool) {
        cfg.use_max_serialized_bucket_size = b;
    }
    if let Some(a) = v.get("algorithm").and_then(Value::as_str)
        && a != "mulPir"
    {
        bail!("only algorithm mulPir is supported");
    }
    Ok(v.get("rlweParameters")
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// Symmetric PIR's row transform (one P-384 OPRF evaluation per row, about a millisecond
/// each) in chunks, with a progress bar: a million rows take minutes.
fn oprf_rows_with_progress(
    key: &sift_oprf::OprfPrivateKey,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    const CHUNK: usize = 4096;
    let bar = ProgressBar::new(rows.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("OPRF-encrypting rows");
    let mut out = Vec::with_capacity(rows.len());
    let mut it = rows.into_iter();
    loop {
        let chunk: Vec<_> = it.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len() as u64;
        out.extend(sift_oprf::process_database(key, chunk)?);
        bar.inc(n);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Apple's `symmetricPirArguments` (PIRProcessDatabase `SymmetricPirArguments`).
#[derive(Debug, PartialEq, Eq)]
enum SymmetricKeySource {
    /// `databaseEncryptionKeyFilePath`: an existing key file (hex).
    Read(PathBuf),
    /// `outputDatabaseEncryptionKeyFilePath`: generate a key and write it there.
    Generate(PathBuf),
}

/// Parses `symmetricPirArguments`: exactly one of `databaseEncryptionKeyFilePath` and
/// `outputDatabaseEncryptionKeyFilePath`, and `configType` (default, and only value,
/// `OPRF_P384_AES_GCM_192_NONCE_96_TAG_128`). `None` when the key is absent.
fn symmetric_args(v: &Value) -> anyhow::Result<Option<SymmetricKeySource>> {
    let Some(a) = v.get("symmetricPirArguments") else {
        return Ok(None);
    };
    if let Some(t) = a.get("configType") {
        let t = t.as_str().context("configType must be a string")?;
        if sift_oprf::ConfigType::from_name(t).is_none() {
            bail!("unsupported symmetric PIR configType {t}");
        }
    }
    let path = |k: &str| -> anyhow::Result<Option<PathBuf>> {
        a.get(k)
            .map(|p| {
                p.as_str()
                    .map(PathBuf::from)
                    .with_context(|| format!("{k} must be a string"))
            })
            .transpose()
    };
    match (
        path("databaseEncryptionKeyFilePath")?,
        path("outputDatabaseEncryptionKeyFilePath")?,
    ) {
        (Some(_), Some(_)) => bail!(
            "symmetricPirArguments: give either databaseEncryptionKeyFilePath or \
             outputDatabaseEncryptionKeyFilePath, not both"
        ),
        (Some(p), None) => Ok(Some(SymmetricKeySource::Read(p))),
        (None, Some(p)) => Ok(Some(SymmetricKeySource::Generate(p))),
        (None, None) => bail!(
            "symmetricPirArguments needs databaseEncryptionKeyFilePath or \
             outputDatabaseEncryptionKeyFilePath"
        ),
    }
}

/// The OPRF key for a symmetric-PIR build: read, or generated and written atomically (before
/// any shard, as PIRProcessDatabase does; the server checks the key against the shards'
/// public key, so a key written for a build that then fails is never served with old shards).
fn symmetric_key(src: &SymmetricKeySource) -> anyhow::Result<sift_oprf::OprfPrivateKey> {
    match src {
        SymmetricKeySource::Read(p) => Ok(sift_oprf::read_key_file(p)?),
        SymmetricKeySource::Generate(p) => {
            let key = sift_oprf::OprfPrivateKey::generate(&mut rand::rngs::OsRng);
            sift_oprf::write_key_file(p, &key)?;
            eprintln!("wrote a new database encryption key to {}", p.display());
            Ok(key)
        }
    }
}

/// The `SymmetricPirClientConfig` the shards' parameters carry for `key`.
fn symmetric_client_config(key: &sift_oprf::OprfPrivateKey) -> wire::SymmetricPirClientConfig {
    wire::SymmetricPirClientConfig {
        server_public_key: key.public_key().to_vec(),
        config_type: wire::SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128,
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Noise budget (bits) below which a trial warns: answers still decrypt, but a parameter set
/// this close to its limit leaves no margin.
const LOW_NOISE_BUDGET_BITS: f64 = 2.0;

/// Queries `shard` `trials` times, each for a present keyword (spread over the shard) and an
/// absent one, with a fresh client, as Apple's `trialsPerShard` does. Returns the smallest
/// noise budget seen, or `None` when `trials` is 0.
fn run_trials(
    shard: &server::ProcessedShard,
    rows: &[(Vec<u8>, Vec<u8>)],
    trials: usize,
) -> anyhow::Result<Option<f64>> {
    if trials == 0 || rows.is_empty() {
        return Ok(None);
    }
    let proto = wire::pir_parameters_to_proto(&shard.params);
    let server = server::KeywordPirServer::from_processed(vec![shard.clone()])?;
    let mut rng = rand::thread_rng();
    let client = sift_pir::client::KeywordPirClient::new(std::slice::from_ref(&proto), &mut rng)?;
    let key = client.evaluation_key(&mut rng)?;
    let mut min_budget = f64::INFINITY;
    for t in 0..trials {
        let (keyword, value) = &rows[t * rows.len() / trials];
        let absent = format!("sift-trial-absent-{t}.invalid");
        for (kw, expected) in [
            (keyword.as_slice(), Some(value.as_slice())),
            (absent.as_bytes(), None),
        ] {
            let response = server.answer(&client.query(kw, &mut rng)?, &key)?;
            let got = client.decode(kw, &response)?;
            anyhow::ensure!(
                got.as_deref() == expected,
                "lookup of {:?} returned {:?}, expected {:?}",
                String::from_utf8_lossy(kw),
                got.as_deref().map(String::from_utf8_lossy),
                expected.map(String::from_utf8_lossy)
            );
            min_budget = min_budget.min(client.response_noise_budget(&response)?);
        }
    }
    if min_budget < LOW_NOISE_BUDGET_BITS {
        tracing::warn!(
            "noise budget after a trial query is only {min_budget:.1} bits: consider other rlweParameters"
        );
    }
    Ok(Some(min_budget))
}

/// Runs `sift build`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Keys.
    let parsing = args.parsing.load()?;
    let mut importer = sift_urlkeys::Importer::with_parsing(parsing.clone());
    for p in &args.inputs {
        importer
            .import_path(p)
            .with_context(|| format!("reading {}", p.display()))?;
    }
    let (keys, report) = importer.finish();
    eprintln!("imported {} distinct keys ({report:?})", keys.len());
    if keys.is_empty() {
        bail!("no keys in the inputs");
    }
    let value = args.value.as_bytes().to_vec();

    // Configuration: defaults ← JSON ← flags.
    let json: Option<Value> = args
        .config
        .as_ref()
        .map(|p| -> anyhow::Result<Value> {
            Ok(serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            )?)
        })
        .transpose()?;
    let json_params = json
        .as_ref()
        .and_then(|v| v.get("rlweParameters"))
        .and_then(Value::as_str);
    let name = args
        .rlwe_parameters
        .clone()
        .or(json_params.map(str::to_string))
        .unwrap_or_else(|| DEFAULT_PARAMETERS.to_string());
    let params = EncryptionParameters::predefined(&name)?;
    let ctx = Context::new(params.clone())?;
    // Symmetric PIR stores keyword′ and value ‖ 16-byte tag instead of the plain row.
    let symmetric = json.as_ref().map(symmetric_args).transpose()?.flatten();
    let stored_value_len = match symmetric {
        Some(_) => value.len() + sift_oprf::TAG_LEN,
        None => value.len(),
    };
    let mut cfg = KeywordPirConfig::default_for(&params, stored_value_len);
    if let Some(v) = &json {
        apply_json(v, &mut cfg)?;
    }
    if let Some(n) = args.shard_count {
        cfg.sharding = Sharding::ShardCount(n);
    }
    if let Some(n) = args.entry_count_per_shard {
        cfg.sharding = Sharding::EntryCountPerShard(n);
    }
    if let Some(n) = args.hash_function_count {
        cfg.cuckoo.hash_function_count = n;
    }
    if let Some(k) = &args.key_compression {
        cfg.key_compression = parse_compression(k)?;
    }

    // The prefilter for the same keys, so device and server agree on what may be blocked.
    let filter = super::prefilter::filter_from_keys(
        &keys,
        args.prefilter_fp_rate,
        None,
        &ProgressBar::hidden(),
    )?;
    let meta = sift_bloom::Metadata::for_filter(&filter, keys.len() as u64, args.prefilter_fp_rate);

    let trials = match args.trials_per_shard {
        Some(n) => n,
        None => match json.as_ref().and_then(|v| v.get("trialsPerShard")) {
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .context("trialsPerShard must be a non-negative integer")?,
            None => 1,
        },
    };
    let rows: Vec<(Vec<u8>, Vec<u8>)> = keys
        .into_iter()
        .map(|k| (k.into_boxed_bytes().into_vec(), value.clone()))
        .collect();
    let (rows, symmetric_config) = match &symmetric {
        Some(src) => {
            let key = symmetric_key(src)?;
            let rows = oprf_rows_with_progress(&key, rows)?;
            eprintln!("encrypted {} rows for symmetric PIR", rows.len());
            (rows, Some(symmetric_client_config(&key)))
        }
        None => (rows, None),
    };
    let shards = server::shard_rows(rows, &cfg)?;
    let bar = ProgressBar::new(shards.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} shards ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("processing");
    std::fs::create_dir_all(&args.output_dir)?;
    super::parsing::write_record(&args.output_dir, &parsing)?;
    let configs: Vec<EvaluationKeyConfig> = shards
        .par_iter()
        .enumerate()
        .map(|(i, rows)| -> anyhow::Result<EvaluationKeyConfig> {
            let shard = server::process_shard(&ctx, rows, &cfg, args.seed.wrapping_add(i as u64))
                .with_context(|| format!("shard {i}"))?;
            let budget = run_trials(&shard, rows, trials).with_context(|| {
                format!(
                    "shard {i}: trial query failed, so the shard was not written. A wrong answer \
                     usually means {name} leaves MulPir too little noise budget (larger \
                     plaintext moduli do); the default {DEFAULT_PARAMETERS} or \
                     n_8192_logq_3x55_logt_24 work"
                )
            })?;
            if let Some(b) = budget {
                bar.suspend(|| {
                    eprintln!(
                        "shard {i}: {trials} trial quer{} answered correctly, noise budget left {b:.1} bits",
                        if trials == 1 { "y" } else { "ies" }
                    )
                });
            }
            let stem = &args.stem;
            write_atomic(
                &args.output_dir.join(format!("{stem}-{i}.bin")),
                &shard.database.serialize(&ctx),
            )?;
            let mut proto = wire::pir_parameters_to_proto(&shard.params);
            wire::set_symmetric_pir_client_config(&mut proto, symmetric_config.as_ref());
            let text = sift_proto::to_text(&proto)?;
            write_atomic(
                &args.output_dir.join(format!("{stem}-{i}.params.txtpb")),
                text.as_bytes(),
            )?;
            bar.inc(1);
            Ok(shard.params.index.evaluation_key_config)
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_with_message("done");
    let union = EvaluationKeyConfig::union(&configs);
    let text = sift_proto::to_text(&wire::evaluation_key_config_to_proto(&union, &params))?;
    write_atomic(
        &args
            .output_dir
            .join(format!("{}-evaluation-key-config.txtpb", args.stem)),
        text.as_bytes(),
    )?;
    eprintln!(
        "wrote {} shard(s) with {name} to {}",
        shards.len(),
        args.output_dir.display()
    );
    // Written last, so a failed build never leaves a prefilter without its shards.
    let prefilter_dir = args.output_dir.join("prefilter");
    sift_bloom::write_dir(
        &prefilter_dir,
        &filter,
        &meta,
        sift_bloom::OutputFormat::Both,
    )?;
    eprintln!(
        "wrote the prefilter ({} bytes, {} hashes) to {}",
        meta.byte_count,
        meta.hash_count,
        prefilter_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_pir_arguments_follow_pir_process_database() {
        let parse = |j: &str| symmetric_args(&serde_json::from_str(j).unwrap());
        assert_eq!(parse("{}").unwrap(), None);
        assert_eq!(
            parse(r#"{"symmetricPirArguments":{"databaseEncryptionKeyFilePath":"k.txt"}}"#)
                .unwrap(),
            Some(SymmetricKeySource::Read("k.txt".into()))
        );
        assert_eq!(
            parse(
                r#"{"symmetricPirArguments":{"outputDatabaseEncryptionKeyFilePath":"o.txt",
                    "configType":"OPRF_P384_AES_GCM_192_NONCE_96_TAG_128"}}"#
            )
            .unwrap(),
            Some(SymmetricKeySource::Generate("o.txt".into()))
        );
        for bad in [
            r#"{"symmetricPirArguments":{}}"#,
            r#"{"symmetricPirArguments":{"databaseEncryptionKeyFilePath":"a",
                "outputDatabaseEncryptionKeyFilePath":"b"}}"#,
            r#"{"symmetricPirArguments":{"databaseEncryptionKeyFilePath":"a","configType":"X"}}"#,
            r#"{"symmetricPirArguments":{"databaseEncryptionKeyFilePath":3}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_key_is_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.txt");
        let k = symmetric_key(&SymmetricKeySource::Generate(p.clone())).unwrap();
        let r = symmetric_key(&SymmetricKeySource::Read(p)).unwrap();
        assert_eq!(k.to_bytes(), r.to_bytes());
        assert_eq!(
            symmetric_client_config(&k).server_public_key,
            k.public_key().to_vec()
        );
    }
}
