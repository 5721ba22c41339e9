//! `--parsing FILE`: the app's URL parsing configuration (Apple's
//! `NEURLFilterManager.urlParsingConfiguration`, iOS/macOS 27) for the commands that enumerate
//! sub-URLs or normalise list keys, and its record beside a built dataset.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sift_urlkeys::ParsingConfiguration;

/// Reads and validates the configuration in `path`; refusals name the file.
fn load_file(path: &Path) -> anyhow::Result<ParsingConfiguration> {
    ParsingConfiguration::load(path).map_err(|e| match e {
        sift_urlkeys::ParsingError::Unsupported { .. } => {
            anyhow::anyhow!("{}: {e}", path.display())
        }
        e => e.into(),
    })
}

/// The name of the record a build writes into its output directory.
pub const RECORD_NAME: &str = "parsing.json";

/// The `--parsing FILE` option, shared by the commands that take it.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ParsingArg {
    /// The app's URL parsing configuration (iOS/macOS 27 `urlParsingConfiguration`): a JSON or
    /// TOML file with Apple's property names, e.g. `{"domain": {"stripWWW": false},
    /// "caseSensitive": true}`. Default: the iOS 26 parsing (no scheme, no `www.`, lower case).
    /// See docs/parsing.md.
    #[arg(long = "parsing", value_name = "FILE")]
    pub parsing: Option<PathBuf>,
}

impl ParsingArg {
    /// The configuration from `--parsing`, else the default.
    pub fn load(&self) -> anyhow::Result<ParsingConfiguration> {
        match &self.parsing {
            Some(path) => load_file(path),
            None => Ok(ParsingConfiguration::default()),
        }
    }

    /// The configuration from `--parsing`, else the record in `dataset_dir` (or in its parent,
    /// for a prefilter folder inside a dataset), else the default; with where it came from.
    pub fn load_or_recorded(
        &self,
        dataset_dir: &Path,
    ) -> anyhow::Result<(ParsingConfiguration, String)> {
        if let Some(path) = &self.parsing {
            return Ok((load_file(path)?, path.display().to_string()));
        }
        for dir in [Some(dataset_dir), dataset_dir.parent()]
            .into_iter()
            .flatten()
        {
            if let Some(c) = read_record(dir)? {
                return Ok((c, dir.join(RECORD_NAME).display().to_string()));
            }
        }
        Ok((ParsingConfiguration::default(), "default".into()))
    }
}

/// Records the configuration a dataset's keys were normalised under, as `parsing.json` with
/// Apple's property names in `dir`. The one place that writes it (a dataset manifest may take
/// it over).
pub fn write_record(dir: &Path, parsing: &ParsingConfiguration) -> anyhow::Result<()> {
    let path = dir.join(RECORD_NAME);
    sift_fsutil::write_atomic(&path, (parsing.to_json() + "\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads the record in `dir`: `None` when there is none (datasets built before the record
/// existed used the iOS 26 default).
pub fn read_record(dir: &Path) -> anyhow::Result<Option<ParsingConfiguration>> {
    let path = dir.join(RECORD_NAME);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(load_file(&path)?))
}

/// Examples listed per mismatch reason.
const EXAMPLES: usize = 3;

/// `sift doctor`'s parsing findings: the app's configuration; whether the dataset was built
/// under the same one (`dataset`'s record); and the keys of `lists`, normalised as the build
/// did, that the device can never ask for under the app's configuration (counts and examples
/// per reason).
pub fn doctor_findings(
    app: &ParsingArg,
    dataset: Option<&Path>,
    lists: &[PathBuf],
) -> anyhow::Result<Vec<sift_client::onboarding::Finding>> {
    use sift_client::onboarding::Finding;
    let finding = |subject: &str, ok: bool, message: String| Finding {
        subject: subject.to_owned(),
        ok,
        message,
    };
    let mut out = Vec::new();
    let app_cfg = app.load()?;
    let app_source = app
        .parsing
        .as_ref()
        .map_or("default, no --parsing given".to_owned(), |p| {
            p.display().to_string()
        });
    if app.parsing.is_none() && dataset.is_none() && lists.is_empty() {
        return Ok(out);
    }
    out.push(finding(
        "parsing",
        true,
        format!("app's URL parsing ({app_source}): {}", app_cfg.summary()),
    ));
    let mut built = ParsingConfiguration::default();
    if let Some(dir) = dataset {
        let (cfg, src) = match read_record(dir)? {
            Some(c) => (c, dir.join(RECORD_NAME).display().to_string()),
            None => (
                ParsingConfiguration::default(),
                format!(
                    "{} has no {RECORD_NAME}: iOS 26 default assumed",
                    dir.display()
                ),
            ),
        };
        let same = cfg == app_cfg;
        out.push(finding(
            "parsing",
            same,
            if same {
                format!("dataset built under the app's parsing ({src})")
            } else {
                format!(
                    "dataset built under {} ({src}), but the app parses with {}: rebuild with \
                     `sift build --parsing <the app's file>` or change the app's \
                     urlParsingConfiguration",
                    cfg.summary(),
                    app_cfg.summary()
                )
            },
        ));
        built = cfg;
    }
    if lists.is_empty() {
        return Ok(out);
    }
    let mut importer = sift_urlkeys::Importer::with_parsing(built.clone());
    for p in lists {
        importer
            .import_path(p)
            .with_context(|| format!("reading {}", p.display()))?;
    }
    let (keys, _) = importer.finish();
    let mut by_reason: std::collections::BTreeMap<sift_urlkeys::Mismatch, (u64, Vec<String>)> =
        Default::default();
    let mut bad = 0u64;
    for k in &keys {
        if let Some(m) = app_cfg.key_mismatch(k) {
            bad += 1;
            let e = by_reason.entry(m).or_default();
            e.0 += 1;
            if e.1.len() < EXAMPLES {
                e.1.push(k.to_string());
            }
        }
    }
    if bad == 0 {
        out.push(finding(
            "keys",
            true,
            format!(
                "all {} keys of the lists can be asked for under the app's parsing",
                keys.len()
            ),
        ));
    }
    for (m, (n, examples)) in by_reason {
        out.push(finding(
            "keys",
            false,
            format!(
                "{n} of {} keys can never match: {} (e.g. {}); rebuild the dataset with \
                 `--parsing` set to the app's configuration",
                keys.len(),
                m.describe(),
                examples.join(", ")
            ),
        ));
    }
    Ok(out)
}
