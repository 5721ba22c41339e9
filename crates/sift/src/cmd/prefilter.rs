//! `sift prefilter`: build Apple's Bloom prefilter from blocklists, and test URLs against one.

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use sift_bloom::{Builder, Metadata, OutputFormat, Params};
use sift_urlkeys::Importer;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Subcommands of `sift prefilter`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Build a prefilter from blocklists.
    #[command(
        long_about = "Build a Bloom prefilter in Apple's NEURLFilterPrefilter format from \
blocklists.\n\nInputs may mix formats, detected per line: plain URLs or hosts, hosts files \
(`0.0.0.0 ads.example`), AdBlock domain rules (`||ads.example^`; cosmetic, exception and \
option rules are skipped with a reason), and Apple's KeywordDatabase in text format \
(`rows { keyword: \"...\" value: \"1\" }`, any layout, including the one-line list \
`rows: [{ ... }, { ... }]`; detected by a `.txtpb` extension or a first entry starting with \
`rows`) or binary format (`.binpb`). Keys are normalised like the device's sub-URLs (scheme and `www.` \
dropped, lowercased, Punycode) and duplicates merged.\n\nWrites into DIR: `prefilter.bin` (the \
bit array, for `.temporaryFilepath`) and `prefilter.json` (bitCount, hashCount, murmurSeed, tag, \
...) and/or `prefilter.plist` (the property list Apple's SimpleURLFilter sample loads). Build \
the PIR database from the same lists so both hold the same keys."
    )]
    Build(BuildArgs),
    /// Show which sub-URLs of a URL hit a prefilter.
    #[command(
        long_about = "Expand URL into the sub-URLs a device checks and test each against the \
prefilter in DIR, printing `maybe` (in the filter: the device would ask the PIR server) or `no`. \
Exit status 0 either way."
    )]
    Test(TestArgs),
}

/// Output files of `sift prefilter build`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// `prefilter.bin` + `prefilter.json`.
    Json,
    /// `prefilter.plist` only (Apple's SimpleURLFilter sample format).
    Plist,
    /// All three files.
    Both,
}

/// Arguments of `sift prefilter build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// Blocklist files (plain, hosts, AdBlock `||domain^`, KeywordDatabase `.txtpb`/`.binpb`).
    #[arg(required = true, value_name = "LISTS")]
    pub lists: Vec<PathBuf>,
    /// Output directory (created if missing; files are replaced atomically).
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// False-positive tolerance, as in Apple's tool (sizing rounds bits and hashes up).
    #[arg(long, default_value_t = 0.001, value_name = "P")]
    pub fp_rate: f64,
    /// MurmurHash3 seed (default: random per build, like Apple's tool).
    #[arg(long, value_name = "N")]
    pub seed: Option<u32>,
    /// Which description files to write.
    #[arg(long, value_enum, default_value = "both")]
    pub format: Format,
    /// Skipped lines to list in the summary, in full (all are counted by reason).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub show_issues: usize,
    /// The app's URL parsing configuration: keys are normalised under it and it is recorded
    /// as `parsing.json` in DIR.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
}

/// Arguments of `sift prefilter test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Prefilter directory written by `sift prefilter build`.
    pub dir: PathBuf,
    /// URL to check, e.g. `https://www.example.com/a?b=c`.
    pub url: String,
    /// The app's URL parsing configuration. Default: the `parsing.json` in DIR, else the
    /// iOS 26 parsing.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
}

/// Runs `sift prefilter`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(a) => build(a),
        Command::Test(a) => test(a),
    }
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    // RandomState is keyed randomly per process; mix in the time for good measure.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// Imports `lists` and builds the prefilter for their keys: the filter, the import report and
/// the key count (the first `keep_issues` skipped lines kept in full). Progress bars appear
/// when `progress` is set and stderr is a terminal.
fn build_from_lists(
    lists: &[std::path::PathBuf],
    fp_rate: f64,
    seed: Option<u32>,
    progress: bool,
    parsing: &sift_urlkeys::ParsingConfiguration,
    keep_issues: usize,
) -> anyhow::Result<(sift_bloom::BloomFilter, sift_urlkeys::ImportReport, usize)> {
    let tty = progress && std::io::stderr().is_terminal();
    let bar = |len: u64, msg: &str| {
        if !tty {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(msg.to_string());
        pb
    };
    let mut importer = Importer::with_parsing(parsing.clone());
    importer.keep_issues(keep_issues);
    let pb = bar(lists.len() as u64, "import");
    for path in lists {
        importer
            .import_path(path)
            .with_context(|| format!("reading {}", path.display()))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let (keys, report) = importer.finish();
    if keys.is_empty() {
        anyhow::bail!(
            "no usable keys in {} file(s) ({} lines, {} skipped); nothing to build",
            report.files,
            report.lines,
            report.skipped
        );
    }
    let pb = bar(keys.len() as u64, "hash");
    let filter = filter_from_keys(keys.iter().map(|k| k.as_bytes()), fp_rate, seed, &pb)?;
    pb.finish_and_clear();
    Ok((filter, report, keys.len()))
}

/// Builds the prefilter for `keys` (sized for their count and `fp_rate`), reporting progress on
/// `pb`; `seed` defaults to a random one, as in Apple's tool.
pub fn filter_from_keys<'a, I>(
    keys: I,
    fp_rate: f64,
    seed: Option<u32>,
    pb: &ProgressBar,
) -> anyhow::Result<sift_bloom::BloomFilter>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: ExactSizeIterator,
{
    const BATCH: usize = 1 << 18;
    let keys = keys.into_iter();
    let sizing = sift_bloom::sizing(keys.len() as u64, fp_rate)?;
    let params = Params {
        bit_count: sizing.bit_count,
        hash_count: sizing.hash_count,
        murmur_seed: seed.unwrap_or_else(random_seed),
    };
    let mut builder = Builder::new(params)?;
    let mut batch = Vec::with_capacity(BATCH.min(keys.len()));
    for key in keys {
        batch.push(key);
        if batch.len() == BATCH {
            builder.insert_batch(&batch);
            pb.inc(batch.len() as u64);
            batch.clear();
        }
    }
    builder.insert_batch(&batch);
    pb.inc(batch.len() as u64);
    Ok(builder.finish())
}

fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let parsing = a.parsing.load()?;
    let (filter, report, key_count) =
        build_from_lists(&a.lists, a.fp_rate, a.seed, true, &parsing, a.show_issues)?;
    let meta = Metadata::for_filter(&filter, key_count as u64, a.fp_rate);
    let fmt = match a.format {
        Format::Json => OutputFormat::Json,
        Format::Plist => OutputFormat::Plist,
        Format::Both => OutputFormat::Both,
    };
    sift_bloom::write_dir(&a.out, &filter, &meta, fmt)?;
    super::parsing::write_record(&a.out, &parsing)?;

    eprintln!(
        "read {} file(s), {} lines: {} keys ({} duplicates merged), {} comments/blank, {} skipped",
        report.files, report.lines, key_count, report.duplicates, report.comments, report.skipped
    );
    for i in report.issues.iter().take(a.show_issues) {
        eprintln!("  skipped {i}");
    }
    if report.skipped as usize > a.show_issues.min(report.issues.len()) {
        eprintln!(
            "  ... {} more skipped",
            report.skipped as usize - a.show_issues.min(report.issues.len())
        );
    }
    println!(
        "wrote {}: bitCount {} hashCount {} murmurSeed {} byteCount {} itemCount {} \
         expected FP rate {:.6} tag {}",
        a.out.display(),
        meta.bit_count,
        meta.hash_count,
        meta.murmur_seed,
        meta.byte_count,
        meta.item_count,
        meta.expected_false_positive_rate,
        meta.tag
    );
    Ok(ExitCode::SUCCESS)
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let pf = sift_bloom::read_dir(&a.dir)?;
    let (parsing, _) = a.parsing.load_or_recorded(&a.dir)?;
    let subs = parsing
        .suburls(&a.url)
        .map_err(|e| anyhow::anyhow!("cannot expand {:?}: {e}", a.url))?;
    let mut hits = 0;
    for s in &subs {
        let hit = pf.filter.contains(s.as_bytes());
        hits += usize::from(hit);
        println!("{:<5} {s}", if hit { "maybe" } else { "no" });
    }
    if hits == 0 {
        println!(
            "no sub-URL in the prefilter: the device allows {} without asking PIR",
            a.url
        );
    } else {
        println!(
            "{hits} of {} sub-URLs may be listed: the device asks the PIR server",
            subs.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
