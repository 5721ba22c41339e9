//! `sift build` and `sift update`: blocklists → a new version of a dataset (keyword-PIR shards
//! in Apple's `<stem>-<i>.bin` / `.params.txtpb` layout, the evaluation-key config, the
//! prefilter and a manifest), published atomically. The format and the processing live in
//! the `sift-dataset` crate; this module imports the inputs and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sift_dataset::config::{ProcessConfig, SymmetricPirArguments, parse_key_compression};
use sift_dataset::partition::RowBuckets;
use sift_dataset::process::{self, BuildRequest, Event};
use sift_he::EncryptionParameters;
use sift_pir::keyword::ShardingFunction;
use sift_pir::server::{KeywordPirConfig, Sharding};
use sift_pir::wire;

use super::build_summary as summary;

/// Default parameters: Apple's NEURLFilter example and PIRProcessDatabase docs use
/// `n_4096_logq_27_28_28_logt_5` — the smallest query/response for 1-byte values with enough
/// noise budget for MulPir (our round-trip tests pass on it).
const DEFAULT_PARAMETERS: &str = "n_4096_logq_27_28_28_logt_5";

/// Arguments of `sift build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Blocklist files (plain one URL per line, hosts, AdBlock, or Apple `KeywordDatabase` .txtpb).
    /// Default: the `--config` file's `inputDatabase`.
    #[arg(required_unless_present = "config")]
    pub inputs: Vec<PathBuf>,
    /// Dataset folder: each build publishes `versions/<id>/` there and points `current` at it
    /// (`current/` is Apple's `<stem>-<i>.bin` layout). A service's `dataset_dir` names it.
    /// Default: `.`, or none when the `--config` file names `outputDatabase` (then only
    /// Apple's files are written, at the config's paths).
    #[arg(short, long)]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub options: BuildOptions,
    /// Reuse the unchanged shards of this dataset's current version (hard links): only shards
    /// whose rows changed are processed. Its shard count is kept unless given explicitly.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// The app's URL parsing configuration: keys are normalised under it; it is recorded in
    /// the manifest and as `parsing.json` in the output directory.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
    /// Print the summary (version, rows, shards, bytes, skipped lines by reason, warnings) as
    /// one JSON object on stdout; the messages for people stay on stderr.
    #[arg(long)]
    pub json: bool,
}

/// The options of a build, recorded in the manifest so that `sift update` repeats them.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildOptions {
    /// File stem: shard i goes to `<stem>-<i>.bin` and `<stem>-<i>.params.txtpb`.
    #[arg(long, default_value = "url")]
    pub stem: String,
    /// Apple PIRProcessDatabase JSON config (rlweParameters, sharding, shardingFunction,
    /// cuckooTableArguments, keyCompression, useMaxSerializedBucketSize, trialsPerShard,
    /// symmetricPirArguments); flags override it. Unknown keys are errors.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The parsed config (recorded; not a flag).
    #[arg(skip)]
    #[serde(default)]
    pub process_config: Option<Box<ProcessConfig>>,
    /// Predefined encryption parameters (Apple's names; default n_4096_logq_27_28_28_logt_5).
    #[arg(
        long,
        value_parser = clap::builder::PossibleValuesParser::new(
            EncryptionParameters::predefined_names()
        )
    )]
    pub rlwe_parameters: Option<String>,
    /// Number of shards. Default: chosen from the rows (no shard above 100,000 1-byte rows).
    #[arg(
        long,
        visible_alias = "shards",
        conflicts_with = "entry_count_per_shard"
    )]
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
    /// False-positive tolerance of the prefilter written into the version.
    #[arg(long, default_value_t = 0.001)]
    pub prefilter_fp_rate: f64,
    /// Test queries per processed shard (Apple's `trialsPerShard`): each looks up a present and
    /// an absent keyword through a fresh client and checks the answers and the remaining noise
    /// budget. 0 skips the check. Default: the JSON config's `trialsPerShard`, else 1.
    #[arg(long)]
    pub trials_per_shard: Option<usize>,
    /// Published versions kept on disk, the new one included (older ones are removed; set it
    /// to at least the services' `versions_kept`).
    #[arg(long, default_value_t = 3)]
    pub versions_kept: usize,
    /// Do not keep the shards' rows in the version (saves disk; `sift update` then needs a
    /// full `sift build --from`).
    #[arg(long)]
    #[serde(default)]
    pub no_rows: bool,
    /// Write no prefilter (datasets a device does not prefilter, e.g. Live Caller ID).
    #[arg(long)]
    #[serde(default)]
    pub no_prefilter: bool,
    /// Also write Apple's processed database (`<stem>-<i>.bin`) beside each shard, for
    /// Apple's example server or tools. sift serves from the `.words` files alone, so by
    /// default a shard is stored once. Implied when `--config` names Apple's outputs.
    #[arg(long)]
    #[serde(default)]
    pub apple_layout: bool,
    /// Keyword → shard function when not given by `--config` (Live Caller ID pairs its two
    /// datasets with `doubleMod`).
    #[arg(skip)]
    #[serde(skip)]
    pub sharding_function: Option<ShardingFunction>,
}

impl Default for BuildOptions {
    /// The flags' defaults.
    fn default() -> Self {
        BuildOptions {
            stem: "url".into(),
            config: None,
            process_config: None,
            rlwe_parameters: None,
            shard_count: None,
            entry_count_per_shard: None,
            hash_function_count: None,
            key_compression: None,
            value: "1".into(),
            seed: 0,
            prefilter_fp_rate: 0.001,
            trials_per_shard: None,
            versions_kept: 3,
            no_rows: false,
            no_prefilter: false,
            apple_layout: false,
            sharding_function: None,
        }
    }
}

/// Arguments of `sift update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// The dataset folder (as given to `sift build -o`).
    pub dataset: PathBuf,
    /// Files of keys to add (same formats as `sift build`).
    #[arg(long)]
    pub add: Vec<PathBuf>,
    /// Files of keys to remove.
    #[arg(long)]
    pub remove: Vec<PathBuf>,
    /// Print the summary as one JSON object on stdout (as `sift build --json`).
    #[arg(long)]
    pub json: bool,
    /// The largest share (0 to 1) of a shard's plaintexts kept as an overlay beside its
    /// unchanged `.words` file; a shard whose overlay would grow beyond it gets a rewritten
    /// `.words` (0: rewrite every touched shard, folding its overlay in).
    #[arg(long, default_value_t = sift_dataset::update::DEFAULT_MAX_OVERLAY_FRACTION)]
    pub max_overlay: f64,
}

/// Apple's `symmetricPirArguments` (PIRProcessDatabase `SymmetricPirArguments`).
#[derive(Debug, PartialEq, Eq)]
enum SymmetricKeySource {
    /// `databaseEncryptionKeyFilePath`: an existing key file (hex).
    Read(PathBuf),
    /// `outputDatabaseEncryptionKeyFilePath`: generate a key and write it there.
    Generate(PathBuf),
}

/// Checks `symmetricPirArguments`: exactly one of `databaseEncryptionKeyFilePath` and
/// `outputDatabaseEncryptionKeyFilePath`, and `configType` (default, and only value,
/// `OPRF_P384_AES_GCM_192_NONCE_96_TAG_128`).
fn symmetric_args(a: &SymmetricPirArguments) -> anyhow::Result<SymmetricKeySource> {
    if let Some(t) = &a.config_type
        && sift_spir::ConfigType::from_name(t).is_none()
    {
        bail!("unsupported symmetric PIR configType {t}");
    }
    match (
        a.database_encryption_key_file_path
            .as_ref()
            .map(PathBuf::from),
        a.output_database_encryption_key_file_path
            .as_ref()
            .map(PathBuf::from),
    ) {
        (Some(_), Some(_)) => bail!(
            "symmetricPirArguments: give either databaseEncryptionKeyFilePath or \
             outputDatabaseEncryptionKeyFilePath, not both"
        ),
        (Some(p), None) => Ok(SymmetricKeySource::Read(p)),
        (None, Some(p)) => Ok(SymmetricKeySource::Generate(p)),
        (None, None) => bail!(
            "symmetricPirArguments needs databaseEncryptionKeyFilePath or \
             outputDatabaseEncryptionKeyFilePath"
        ),
    }
}

/// The OPRF key for a symmetric-PIR build: read, or generated and written atomically (before
/// any shard, as PIRProcessDatabase does; the server checks the key against the shards'
/// public key, so a key written for a build that then fails is never served with old shards).
fn symmetric_key(src: &SymmetricKeySource) -> anyhow::Result<sift_spir::OprfPrivateKey> {
    match src {
        SymmetricKeySource::Read(p) => Ok(sift_spir::read_key_file(p)?),
        SymmetricKeySource::Generate(p) => {
            let key = sift_spir::OprfPrivateKey::generate(&mut rand::rngs::OsRng);
            sift_spir::write_key_file(p, &key)?;
            eprintln!("wrote a new database encryption key to {}", p.display());
            Ok(key)
        }
    }
}

/// The `SymmetricPirClientConfig` the shards' parameters carry for `key`.
fn symmetric_client_config(key: &sift_spir::OprfPrivateKey) -> wire::SymmetricPirClientConfig {
    wire::SymmetricPirClientConfig {
        server_public_key: key.public_key().to_vec(),
        config_type: wire::SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128,
    }
}

/// Noise budget (bits) below which a trial warns: answers still decrypt, but a parameter set
/// this close to its limit leaves no margin.
const LOW_NOISE_BUDGET_BITS: f64 = 2.0;

/// Reads the inputs into exact `(keyword, value)` rows, sorted and distinct, with what was read
/// (the import step; URL lists take `value`, keyword databases keep theirs).
fn import_rows(
    inputs: &[PathBuf],
    value: &[u8],
    parsing: &sift_urlkeys::ParsingConfiguration,
) -> anyhow::Result<crate::rows::Rows> {
    let rows = crate::rows::collect_rows(inputs, value, parsing.clone())?;
    eprintln!("read {}", rows.report.summary(rows.rows.len()));
    Ok(rows)
}

/// Runs `sift build`: the inputs are streamed into buckets on disk inside the new version's
/// staging folder (so memory does not grow with the dataset), merged, sharded and processed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let parsing = args.parsing.load()?;
    let mut options = args.options;
    // The config and its parameter names are checked before the (possibly long) import.
    if let Some(p) = &options.config {
        options.process_config = Some(Box::new(ProcessConfig::read(p)?));
    }
    rlwe_parameters(&options)?;
    let apple = options
        .process_config
        .as_deref()
        .filter(|c| c.has_apple_outputs())
        .cloned();
    if let Some(c) = &apple {
        c.apple_outputs(1)?;
        options.apple_layout = true;
    }
    let inputs = match (args.inputs.is_empty(), options.process_config.as_deref()) {
        (false, _) => args.inputs.clone(),
        (true, Some(c)) => vec![c.input().context(
            "no input: give the blocklist files on the command line or inputDatabase in the \
             --config file",
        )?],
        (true, None) => bail!("no input: give the blocklist files to build from"),
    };
    // Without -o, a config that names Apple's outputs gets only those: the versioned dataset
    // is built in a scratch folder, removed afterwards.
    let (output_dir, scratch) = match (&args.output_dir, &apple) {
        (Some(d), _) => (d.clone(), None),
        (None, Some(_)) => {
            let t = tempfile::Builder::new()
                .prefix(".sift-build-")
                .tempdir_in(".")
                .context("creating a scratch folder in the current directory")?;
            (t.path().to_path_buf(), Some(t))
        }
        (None, None) => (PathBuf::from("."), None),
    };
    // A build that fails leaves no trace: its staging folder goes (with its partitions), and
    // so does the output folder when this build created it.
    let created = !output_dir.exists();
    let result = build_streaming(
        &inputs,
        &output_dir,
        args.from.as_deref(),
        options,
        &parsing,
    );
    if result.is_err() && created {
        let _ = std::fs::remove_dir_all(&output_dir);
    }
    let (report, params, read) = result?;
    let mut warnings = Vec::new();
    if summary::looks_like_url_filter(&mut read.keyword_sample.iter().map(Vec::as_slice), &read) {
        warnings.extend(summary::test_entry_warning(
            &|k| read.test_entry_value(k),
            &parsing,
        ));
    }
    warnings.extend(summary::unlikely_lookup_warning(&read));
    summary::print_warnings(&warnings);
    if let Some(c) = &apple {
        let published = &report.published;
        let written = c.write_apple_outputs(&published.dir, &published.manifest)?;
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "wrote Apple's layout (the config's paths): {}",
            names.join(", ")
        );
        if scratch.is_some() {
            eprintln!(
                "  no -o given: only these files were kept (give -o DIR for a served dataset)"
            );
        }
    }
    if args.json {
        println!(
            "{}",
            summary::summary_json(
                "build",
                &report,
                &output_dir,
                &params,
                Some(&read),
                &warnings
            )
        );
    }
    drop(scratch);
    Ok(ExitCode::SUCCESS)
}

/// [`run`] after the options are checked.
fn build_streaming(
    inputs: &[PathBuf],
    output_dir: &Path,
    from: Option<&Path>,
    options: BuildOptions,
    parsing: &sift_urlkeys::ParsingConfiguration,
) -> anyhow::Result<(process::BuildReport, String, crate::rows::RowsReport)> {
    std::fs::create_dir_all(output_dir)
        .with_context(|| format!("creating {}", output_dir.display()))?;
    // Taking the dataset's build lock first: a second build into the same folder stops now,
    // not after its import.
    let writer = sift_dataset::VersionWriter::begin(output_dir)?;
    let pdir = writer.dir().join(process::PARTITION_DIR);
    let import_bar = phase_bar("importing");
    let merge_bar = std::sync::OnceLock::new();
    let on_rows = |merged: bool, n: u64| {
        if merged {
            merge_bar
                .get_or_init(|| {
                    import_bar.finish_and_clear();
                    phase_bar("merging duplicates")
                })
                .inc(n)
        } else {
            import_bar.inc(n)
        }
    };
    let (buckets, report) = crate::rows::partition_rows(
        inputs,
        options.value.as_bytes(),
        parsing.clone(),
        &pdir,
        sift_dataset::partition::buffer_bytes(),
        &on_rows,
    )?;
    import_bar.finish_and_clear();
    if let Some(b) = merge_bar.get() {
        b.finish_and_clear();
    }
    eprintln!("read {}", report.summary(buckets.row_count as usize));
    if buckets.row_count == 0 {
        bail!("no rows in the inputs: nothing to build");
    }
    let (built, params) = write_version_from(writer, buckets, options, output_dir, from, parsing)?;
    // After the version is published: a build that fails leaves the record of the version
    // still served (each version also holds its own copy).
    super::parsing::write_record(output_dir, parsing)?;
    Ok((built, params, report))
}

/// A progress bar for one build phase (rows and rows/s); drawn only on a terminal.
fn phase_bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} rows ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar
}

/// Runs `sift update`: the current version's keys, minus `--remove`, plus `--add`, published
/// as a new version in which only the cuckoo buckets and plaintexts that the changed keys
/// touch differ (see `sift_dataset::update`); every other shard is shared with the current one.
pub fn run_update(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.max_overlay),
        "--max-overlay {} is not a share between 0 and 1 (0 rewrites every touched shard)",
        args.max_overlay
    );
    if args.add.is_empty() && args.remove.is_empty() {
        bail!("nothing to do: give --add FILE and/or --remove FILE");
    }
    let start = std::time::Instant::now();
    let (_, manifest) = process::current_version(&args.dataset)?.with_context(|| {
        format!(
            "{} is not a versioned dataset: build it with `sift build -o {}` first",
            args.dataset.display(),
            args.dataset.display()
        )
    })?;
    let options: BuildOptions = serde_json::from_value(manifest.build.clone())
        .context("the manifest's build options are not readable by this sift")?;
    // The keys are normalised as the version's were (its recorded parsing configuration).
    let parsing = match &manifest.parsing {
        Some(v) => {
            sift_urlkeys::ParsingConfiguration::from_json(&v.to_string(), "the manifest's parsing")
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => super::parsing::read_record(&args.dataset)?.unwrap_or_default(),
    };
    let value = options.value.as_bytes().to_vec();
    let remove: Vec<Vec<u8>> = if args.remove.is_empty() {
        Vec::new()
    } else {
        import_rows(&args.remove, &value, &parsing)?
            .rows
            .into_iter()
            .map(|r| r.0)
            .collect()
    };
    let mut warnings = Vec::new();
    let add = if args.add.is_empty() {
        Vec::new()
    } else {
        let read = import_rows(&args.add, &value, &parsing)?;
        warnings.extend(summary::unlikely_lookup_warning(&read.report));
        read.rows
    };
    let (json, params_name, params) = config_and_parameters(&options)?;
    let max_value_len = add
        .iter()
        .map(|r| r.1.len())
        .chain([value.len()])
        .max()
        .unwrap_or(0);
    // Symmetric PIR stores OPRF-transformed rows: transform the changes with the same key.
    let (stored_add, stored_remove, stored_value_len) = match &json.symmetric_pir_arguments {
        Some(a) => {
            let path = match symmetric_args(a)? {
                SymmetricKeySource::Read(p) | SymmetricKeySource::Generate(p) => p,
            };
            let key = sift_spir::read_key_file(&path).with_context(|| {
                format!(
                    "reading the database encryption key {} that the version was built with",
                    path.display()
                )
            })?;
            let removed = sift_spir::process_database(
                &key,
                remove.iter().map(|k| (k.clone(), Vec::new())).collect(),
            )?
            .into_iter()
            .map(|r| r.0)
            .collect();
            (
                sift_spir::process_database(&key, add.clone())?,
                removed,
                max_value_len + sift_spir::TAG_LEN,
            )
        }
        None => (add.clone(), remove.clone(), max_value_len),
    };
    let cfg = keyword_config(&options, &json, &params, stored_value_len)?;
    let sharding_function = cfg.sharding_function;
    let trials = options
        .trials_per_shard
        .or(json.trials_per_shard)
        .unwrap_or(1);
    let request = sift_dataset::update::UpdateRequest {
        dataset_dir: args.dataset.clone(),
        remove: stored_remove,
        add: stored_add,
        config: cfg,
        seed: options.seed,
        trials,
        versions_kept: options.versions_kept,
        build_options: serde_json::to_value(&options)?,
        max_overlay_fraction: args.max_overlay,
    };
    let write_extra =
        |dir: &Path, pdir: &Path, pm: &sift_dataset::Manifest| -> anyhow::Result<Option<String>> {
            super::parsing::write_record(dir, &parsing)?;
            let Some(p) = &pm.prefilter else {
                return Ok(None);
            };
            // Added keys are set in the previous filter; a removed key's bits stay set (a false
            // positive, which the PIR query then answers "absent"). `sift build --from` resizes it.
            let old = sift_bloom::read_dir(&pdir.join(p))
                .with_context(|| format!("reading the previous version's prefilter {p}"))?;
            let mut filter = old.filter;
            for (k, _) in &add {
                filter.insert(k);
            }
            let count = old.meta.item_count + add.len() as u64;
            let meta =
                sift_bloom::Metadata::for_filter(&filter, count, old.meta.false_positive_tolerance);
            sift_bloom::write_dir(&dir.join(p), &filter, &meta, sift_bloom::OutputFormat::Both)?;
            Ok(Some(p.clone()))
        };
    let report = sift_dataset::update::update(request, write_extra)?;
    let (mut patched, mut plaintexts, mut rebuilt, mut overlays) = (0, 0, 0, 0);
    for (i, o) in report.shards.iter().enumerate() {
        match o {
            sift_dataset::update::ShardOutcome::Reused => {}
            sift_dataset::update::ShardOutcome::Patched {
                plaintexts: n,
                overlay,
            } => {
                patched += 1;
                plaintexts += n;
                overlays += usize::from(*overlay);
            }
            sift_dataset::update::ShardOutcome::Rebuilt { reason } => {
                rebuilt += 1;
                eprintln!("shard {i}: processed afresh: {reason}");
            }
        }
    }
    let shared = report.shards.len() - patched - rebuilt;
    let m = &report.published.manifest;
    eprintln!(
        "{} removed, {} added: {} keys now. {patched} shard(s) changed in place \
         ({plaintexts} plaintexts re-encoded, parameters unchanged; {overlays} kept beside their \
         .words as overlays, {} rewritten), {rebuilt} processed afresh, {} shared with the \
         previous version. Published version {} in {:.1} s.",
        report.removed,
        report.added,
        m.row_count,
        patched - overlays,
        shared,
        m.id,
        start.elapsed().as_secs_f64()
    );
    // Apple's test entry, looked up in the new version (the rows of the shard that would hold
    // it, which also tell whether this is URL-filter data); symmetric PIR stores transformed
    // keywords, so it has nothing to look up.
    if json.symmetric_pir_arguments.is_none() {
        let published = &report.published;
        let mut rows = Vec::new();
        for key in summary::test_entry_keys(&parsing) {
            rows.extend(process::shard_rows_of(
                &published.dir,
                &published.manifest,
                sharding_function,
                key.as_bytes(),
            )?);
        }
        rows.sort_unstable();
        rows.dedup();
        if summary::looks_like_url_filter(
            &mut rows.iter().map(|r| r.0.as_slice()),
            &Default::default(),
        ) {
            warnings.extend(summary::test_entry_warning(
                &summary::sorted_lookup(&rows),
                &parsing,
            ));
        }
    }
    summary::print_warnings(&warnings);
    if args.json {
        let shard_rows = m.shards.iter().map(|s| s.rows as usize).collect();
        let built = process::BuildReport {
            processed: patched + rebuilt,
            reused: shared,
            shard_rows,
            largest_trial: report.trials.iter().max_by_key(|t| t.answer_time).copied(),
            published: report.published,
        };
        println!(
            "{}",
            summary::summary_json(
                "update",
                &built,
                &args.dataset,
                &params_name,
                None,
                &warnings
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The keyword-PIR processing options of `options` (and its parsed JSON config `json`) for
/// stored values of up to `stored_value_len` bytes; the sharding is decided by the caller.
fn keyword_config(
    options: &BuildOptions,
    json: &ProcessConfig,
    params: &EncryptionParameters,
    stored_value_len: usize,
) -> anyhow::Result<KeywordPirConfig> {
    let mut cfg = KeywordPirConfig::default_for(params, stored_value_len);
    if let Some(f) = options.sharding_function {
        cfg.sharding_function = f;
    }
    json.apply(&mut cfg)?;
    if let Some(n) = options.hash_function_count {
        cfg.cuckoo.hash_function_count = n;
    }
    if let Some(k) = &options.key_compression {
        cfg.key_compression = parse_key_compression(k)?;
    }
    Ok(cfg)
}

/// Processes exact `(keyword, value)` rows (sorted, keywords distinct) held in memory into a
/// new version of the dataset in `out`, with `options`, through the same bucket path as a build
/// (what `sift lcid build` uses for its two datasets); prints the summary for people.
pub fn write_dataset(
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    options: BuildOptions,
    out: &Path,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        bail!("no keys in the inputs");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let writer = sift_dataset::VersionWriter::begin(out)?;
    let buckets = RowBuckets::from_rows(&writer.dir().join(process::PARTITION_DIR), rows)?;
    write_version_from(writer, buckets, options, out, None, &Default::default()).map(|_| ())
}

/// Resolves the options, shards (automatically unless told), processes and publishes exact rows
/// in buckets (distinct keywords) into the version `writer` stages: prefilter, symmetric PIR,
/// sharding and processing each stream over the buckets. Prints the summary for people and
/// returns the report with the encryption parameters' name.
fn write_version_from(
    writer: sift_dataset::VersionWriter,
    mut buckets: RowBuckets,
    mut options: BuildOptions,
    out: &Path,
    from: Option<&Path>,
    parsing: &sift_urlkeys::ParsingConfiguration,
) -> anyhow::Result<(process::BuildReport, String)> {
    let max_value_len = buckets.max_value_len;
    let row_count = buckets.row_count;
    let (json, name, params) = config_and_parameters(&options)?;
    // Symmetric PIR stores keyword′ and value ‖ 16-byte tag instead of the plain row.
    let symmetric = json
        .symmetric_pir_arguments
        .as_ref()
        .map(symmetric_args)
        .transpose()?;
    let stored_value_len = match symmetric {
        Some(_) => max_value_len + sift_spir::TAG_LEN,
        None => max_value_len,
    };
    if stored_value_len > crate::rows::MAX_VALUE_LEN {
        bail!(
            "values of {max_value_len} bytes plus symmetric PIR's {}-byte tag exceed the \
             {}-byte limit of a stored value",
            sift_spir::TAG_LEN,
            crate::rows::MAX_VALUE_LEN
        );
    }
    let mut cfg = keyword_config(&options, &json, &params, stored_value_len)?;
    let mut explicit = json.sharding();
    if let Some(n) = options.shard_count {
        explicit = Some(Sharding::ShardCount(n));
    }
    if let Some(n) = options.entry_count_per_shard {
        explicit = Some(Sharding::EntryCountPerShard(n));
    }
    let trials = options
        .trials_per_shard
        .or(json.trials_per_shard)
        .unwrap_or(1);

    // The prefilter for the same keywords, so device and server agree on what may be blocked.
    let prefilter = if options.no_prefilter {
        None
    } else {
        let filter = prefilter_from_buckets(&buckets, options.prefilter_fp_rate)?;
        let meta = sift_bloom::Metadata::for_filter(&filter, row_count, options.prefilter_fp_rate);
        Some((filter, meta))
    };

    let symmetric_config = match &symmetric {
        Some(src) => {
            let key = symmetric_key(src)?;
            let bar = ProgressBar::new(row_count);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} rows ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message("OPRF-encrypting rows");
            buckets.transform(|rows| Ok(sift_spir::process_database(&key, rows)?), &|n| {
                bar.inc(n)
            })?;
            bar.finish_and_clear();
            eprintln!("encrypted {row_count} rows for symmetric PIR");
            Some(symmetric_client_config(&key))
        }
        None => None,
    };

    // Sharding: explicit options, else the previous version's count (to share its shards),
    // else chosen from the rows.
    let previous_shards = match from {
        Some(p) => process::current_version(p)?.map(|(_, m)| m.shards.len()),
        None => None,
    };
    cfg.sharding = match (explicit, previous_shards) {
        (Some(s), _) => s,
        (None, Some(n)) => {
            eprintln!(
                "sharding: {n} shards, as the version in {}",
                from.map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            );
            Sharding::ShardCount(n)
        }
        (None, None) => {
            let n = buckets.auto_shard_count(cfg.sharding_function)?;
            eprintln!(
                "sharding: {n} shard(s) chosen automatically (at most {} rows per shard for {}-byte values; --shard-count overrides)",
                process::target_rows_per_shard(stored_value_len),
                stored_value_len
            );
            Sharding::ShardCount(n)
        }
    };
    let shard_count = cfg.sharding.shard_count(row_count as usize)?;
    options.shard_count = Some(shard_count);
    options.entry_count_per_shard = None;
    let partition_bar = phase_bar("partitioning into shards");
    let shards = buckets.into_shards(cfg.sharding_function, shard_count, &|n| {
        partition_bar.inc(n)
    })?;
    partition_bar.finish_and_clear();

    let bar = ProgressBar::new(shard_count as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} shards ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("processing shards");
    let stem = options.stem.clone();
    let request = BuildRequest {
        dataset_dir: out.to_path_buf(),
        rows: Vec::new(),
        rlwe_parameters: name.clone(),
        config: cfg,
        stem: stem.clone(),
        seed: options.seed,
        trials,
        versions_kept: options.versions_kept,
        symmetric: symmetric_config,
        build_options: serde_json::to_value(&options)?,
        parsing: serde_json::from_str(&parsing.to_json()).ok(),
        previous: from.map(Path::to_path_buf),
        keep_rows: !options.no_rows,
        apple_layout: options.apple_layout,
    };
    let on_event = |e: Event| {
        if let Event::Processed {
            index,
            trial: Some(t),
            ..
        } = &e
        {
            bar.suspend(|| {
                eprintln!(
                    "shard {index}: {trials} trial quer{} answered correctly, noise budget left {:.1} bits",
                    if trials == 1 { "y" } else { "ies" },
                    t.min_noise_budget
                )
            });
        }
        if let Event::Processed {
            index,
            trial: Some(t),
            ..
        } = &e
            && t.min_noise_budget < LOW_NOISE_BUDGET_BITS
        {
            bar.suspend(|| {
                tracing::warn!(
                    "shard {index}: noise budget after a trial query is only {:.1} bits: consider other rlweParameters",
                    t.min_noise_budget
                )
            });
        }
        bar.inc(1);
    };
    let write_prefilter = |dir: &Path| -> anyhow::Result<Option<String>> {
        // Also inside the version, beside its prefilter (where `sift check` looks for it).
        super::parsing::write_record(dir, parsing)?;
        let Some((filter, meta)) = &prefilter else {
            return Ok(None);
        };
        sift_bloom::write_dir(
            &dir.join("prefilter"),
            filter,
            meta,
            sift_bloom::OutputFormat::Both,
        )?;
        Ok(Some("prefilter".to_string()))
    };
    let source = process::ShardSource::Partitioned(shards);
    let report = process::build_from(
        writer,
        request,
        source,
        row_count,
        write_prefilter,
        &on_event,
    )
    .with_context(|| {
        format!(
            "nothing was published. A failed trial usually means {name} leaves MulPir too \
             little noise budget (larger plaintext moduli do); the default {DEFAULT_PARAMETERS} \
             or n_8192_logq_3x55_logt_24 work"
        )
    })?;
    bar.finish_and_clear();
    summary::print_summary(&report, out, &name);
    Ok((report, name))
}

/// The prefilter of every keyword in `buckets` (read one bucket at a time).
fn prefilter_from_buckets(
    buckets: &RowBuckets,
    fp_rate: f64,
) -> anyhow::Result<sift_bloom::BloomFilter> {
    let sizing = sift_bloom::sizing(buckets.row_count, fp_rate)?;
    let mut builder = sift_bloom::Builder::new(sift_bloom::Params {
        bit_count: sizing.bit_count,
        hash_count: sizing.hash_count,
        murmur_seed: rand::random(),
    })?;
    buckets.for_each_bucket(|rows| {
        let keys: Vec<&[u8]> = rows.iter().map(|r| r.0.as_slice()).collect();
        builder.insert_batch(&keys);
    })?;
    Ok(builder.finish())
}

/// The build's parsed `--config` (all defaults without one) and its encryption parameters, by
/// name, as [`rlwe_parameters`] chooses them.
fn config_and_parameters(
    options: &BuildOptions,
) -> anyhow::Result<(ProcessConfig, String, EncryptionParameters)> {
    let json = options
        .process_config
        .as_deref()
        .cloned()
        .unwrap_or_default();
    let (name, params) = rlwe_parameters(options)?;
    Ok((json, name, params))
}

/// The encryption parameters a build uses, by name: `--rlwe-parameters` (checked by its
/// parser), else the config file's `rlweParameters`, else the default. An unknown name from the
/// file is an error naming the file and the valid choices (checked before the import).
fn rlwe_parameters(options: &BuildOptions) -> anyhow::Result<(String, EncryptionParameters)> {
    let name = options
        .rlwe_parameters
        .clone()
        .or_else(|| {
            options
                .process_config
                .as_deref()
                .and_then(|c| c.rlwe_parameters.clone())
        })
        .unwrap_or_else(|| DEFAULT_PARAMETERS.to_string());
    let params = EncryptionParameters::predefined(&name).map_err(|_| {
        let valid: Vec<&str> = EncryptionParameters::predefined_names().collect();
        anyhow::anyhow!(
            "{}: rlweParameters {name:?} is not a predefined parameter set; use one of: {}",
            options
                .config
                .as_deref()
                .map_or_else(|| "the config".to_string(), |p| p.display().to_string()),
            valid.join(", ")
        )
    })?;
    Ok((name, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_pir_arguments_follow_pir_process_database() {
        let parse = |j: &str| {
            let c = ProcessConfig::from_json(j)?;
            c.symmetric_pir_arguments
                .as_ref()
                .map(symmetric_args)
                .transpose()
        };
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
