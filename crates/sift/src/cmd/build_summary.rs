//! The summary `sift build` and `sift update` print once a version is published: what was
//! built, how large it is, where to serve it from, and what looks wrong in the data (warnings
//! with a count and a few examples). The same facts go to stdout as one JSON object with
//! `--json`, for scripts.

use std::path::Path;

use serde::Serialize;
use sift_client::onboarding::APPLE_TEST_ENTRY;
use sift_dataset::process;

use crate::rows::RowsReport;

/// Examples kept per skip reason and per warning.
const EXAMPLES: usize = 3;

/// Something in a built dataset that is probably a mistake; the build still publishes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Warning {
    /// Stable identifier for scripts (`apple_test_entry_missing`, `unlikely_lookups`, …).
    pub code: &'static str,
    /// What is wrong and how to fix it, for people.
    pub message: String,
    /// How many rows or keys it concerns.
    pub count: u64,
    /// A few of them, with where they come from when known.
    pub examples: Vec<String>,
}

/// Whether the keywords (the first 1,000 are enough) look like a URL-filter dataset
/// (host-like keywords), as opposed to e.g. phone numbers: only those need Apple's URL-filter
/// test entry.
pub(crate) fn looks_like_url_filter(
    keywords: &mut dyn Iterator<Item = &[u8]>,
    report: &RowsReport,
) -> bool {
    report.url_list.is_some()
        || keywords.take(1000).any(|k| {
            let host = k
                .split(|b| matches!(b, b'/' | b'?' | b'#'))
                .next()
                .unwrap_or(k);
            host.contains(&b'.')
                && host
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        })
}

/// The keys that count as Apple's onboarding test entry under `parsing`: the literal entry and
/// the key a device looks it up as.
pub(crate) fn test_entry_keys(parsing: &sift_urlkeys::ParsingConfiguration) -> Vec<String> {
    let mut keys = vec![APPLE_TEST_ENTRY.to_owned()];
    if let Ok(k) = parsing.normalize_key(APPLE_TEST_ENTRY) {
        keys.push(k);
    }
    keys
}

/// A keyword lookup over rows sorted by keyword, for [`test_entry_warning`].
pub(crate) fn sorted_lookup(rows: &[(Vec<u8>, Vec<u8>)]) -> impl Fn(&[u8]) -> Option<Vec<u8>> + '_ {
    |k| {
        rows.binary_search_by(|r| r.0.as_slice().cmp(k))
            .ok()
            .map(|i| rows[i].1.clone())
    }
}

/// Checks Apple's onboarding test entry: Apple's validator looks up
/// `www.apple.com/url-filter-test` (Onboarding checklist of pir-service-example) and expects the
/// value `1`. `lookup` gives a keyword's value in the dataset; either of [`test_entry_keys`]
/// counts.
pub(crate) fn test_entry_warning(
    lookup: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    parsing: &sift_urlkeys::ParsingConfiguration,
) -> Option<Warning> {
    let keys = test_entry_keys(parsing);
    let found = keys
        .iter()
        .find_map(|k| lookup(k.as_bytes()).map(|v| (k, v)));
    match found {
        Some((_, v)) if v.as_slice() == b"1" => None,
        Some((k, v)) => Some(Warning {
            code: "apple_test_entry_value",
            message: format!(
                "Apple's test entry {k} has the value {:?}, but Apple's onboarding validation \
                 expects 1: give it the value 1 (--value 1, the default) and rebuild",
                String::from_utf8_lossy(&v)
            ),
            count: 1,
            examples: vec![k.clone()],
        }),
        None => Some(Warning {
            code: "apple_test_entry_missing",
            message: format!(
                "Apple's test entry {APPLE_TEST_ENTRY} is not in the dataset: Apple's onboarding \
                 validation looks it up and expects the value 1; add the line \
                 {APPLE_TEST_ENTRY} to one of the lists and rebuild"
            ),
            count: 1,
            examples: Vec::new(),
        }),
    }
}

/// The warning for keyword-database keywords a device never looks up (scheme, `www.`, upper
/// case), if there are any.
pub(crate) fn unlikely_lookup_warning(report: &RowsReport) -> Option<Warning> {
    (report.unlikely_lookup_count > 0).then(|| Warning {
        code: "unlikely_lookups",
        message: format!(
            "{} keyword(s) are kept as given but a device would never look them up (it asks \
             for keys without scheme or leading www., in lower case): fix them in the keyword \
             database, or give the URLs as a plain list so that sift normalises them",
            report.unlikely_lookup_count
        ),
        count: report.unlikely_lookup_count,
        examples: report.unlikely_lookups.clone(),
    })
}

/// Prints warnings for people (stderr), each with its examples.
pub(crate) fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("warning: {}", w.message);
        for e in &w.examples {
            eprintln!("  e.g. {e}");
        }
    }
}

/// Skipped input lines of one reason.
#[derive(Debug, Serialize)]
struct SkipReason {
    reason: String,
    count: u64,
    /// `file:line: reason` of the first few.
    examples: Vec<String>,
}

/// What the URL lists held.
#[derive(Debug, Serialize)]
struct UrlListsJson {
    files: u64,
    lines: u64,
    accepted: u64,
    duplicates: u64,
    comments: u64,
    skipped: u64,
    skipped_by_reason: Vec<SkipReason>,
}

/// What the inputs held.
#[derive(Debug, Serialize)]
struct InputJson {
    keyword_db_rows: u64,
    url_list_keys: u64,
    duplicates_merged: u64,
    max_value_bytes: usize,
    url_lists: Option<UrlListsJson>,
}

/// Rows per shard.
#[derive(Debug, Serialize)]
struct ShardRowsJson {
    min: usize,
    max: usize,
    each: Vec<usize>,
}

/// Sizes in bytes.
#[derive(Debug, Serialize)]
struct BytesJson {
    on_disk: u64,
    shards: u64,
    server_memory_estimate: u64,
}

/// The `--json` summary of `sift build` / `sift update`.
#[derive(Debug, Serialize)]
struct SummaryJson<'a> {
    command: &'a str,
    dataset_dir: String,
    version: &'a str,
    removed_versions: &'a [String],
    rlwe_parameters: &'a str,
    rows: u64,
    shards: usize,
    rows_per_shard: ShardRowsJson,
    processed_shards: usize,
    shared_shards: usize,
    bytes: BytesJson,
    expected_ms_per_query: Option<f64>,
    input: Option<InputJson>,
    warnings: &'a [Warning],
}

fn input_json(r: &RowsReport) -> InputJson {
    let url_lists = r.url_list.as_ref().map(|u| {
        let mut reasons: Vec<SkipReason> = u
            .skipped_by_reason
            .iter()
            .map(|(reason, &count)| SkipReason {
                reason: reason.clone(),
                count,
                examples: u
                    .issues
                    .iter()
                    .filter(|i| &i.reason == reason)
                    .take(EXAMPLES)
                    .map(ToString::to_string)
                    .collect(),
            })
            .collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        UrlListsJson {
            files: u.files,
            lines: u.lines,
            accepted: u.accepted,
            duplicates: u.duplicates,
            comments: u.comments,
            skipped: u.skipped,
            skipped_by_reason: reasons,
        }
    });
    InputJson {
        keyword_db_rows: r.keyword_db_rows,
        url_list_keys: r.url_list_keys,
        duplicates_merged: r.duplicates,
        max_value_bytes: r.max_value_len,
        url_lists,
    }
}

/// Bytes of the shards' stored forms (`.words` and any `.bin`), and of what a server holds:
/// the mapped `.words` where there is one (in the page cache, shared by the processes of a
/// host), else the plaintexts read from the `.bin` (about half its size in 32-bit words).
fn shard_bytes(m: &sift_dataset::manifest::Manifest) -> (u64, u64) {
    let size = |name: Option<&String>| name.and_then(|n| m.file(n)).map_or(0, |f| f.size);
    m.shards.iter().fold((0, 0), |(disk, memory), s| {
        let (words, bin) = (size(s.words.as_ref()), size(s.database.as_ref()));
        let held = if s.words.is_some() { words } else { bin / 2 };
        (disk + words + bin, memory + held)
    })
}

/// The summary as one JSON object (what `--json` prints on stdout). `command` is `build` or
/// `update`; `input` is what the inputs held, when known.
pub(crate) fn summary_json(
    command: &str,
    report: &process::BuildReport,
    out: &Path,
    params: &str,
    input: Option<&RowsReport>,
    warnings: &[Warning],
) -> String {
    let m = &report.published.manifest;
    let (db_bytes, memory) = shard_bytes(m);
    let s = SummaryJson {
        command,
        dataset_dir: out.display().to_string(),
        version: &m.id,
        removed_versions: &report.published.removed,
        rlwe_parameters: params,
        rows: m.row_count,
        shards: m.shards.len(),
        rows_per_shard: ShardRowsJson {
            min: report.shard_rows.iter().min().copied().unwrap_or(0),
            max: report.shard_rows.iter().max().copied().unwrap_or(0),
            each: report.shard_rows.clone(),
        },
        processed_shards: report.processed,
        shared_shards: report.reused,
        bytes: BytesJson {
            on_disk: m.total_bytes(),
            shards: db_bytes,
            server_memory_estimate: memory,
        },
        expected_ms_per_query: report
            .largest_trial
            .map(|t| (t.answer_time.as_secs_f64() * 1e4).round() / 10.0),
        input: input.map(input_json),
        warnings,
    };
    serde_json::to_string_pretty(&s).unwrap_or_else(|_| "{}".to_owned())
}

/// Prints what a build published: version, rows, shards, bytes and where to serve it from.
pub(crate) fn print_summary(report: &process::BuildReport, out: &Path, params: &str) {
    let m = &report.published.manifest;
    let min = report.shard_rows.iter().min().copied().unwrap_or(0);
    let max = report.shard_rows.iter().max().copied().unwrap_or(0);
    let (db_bytes, memory) = shard_bytes(m);
    eprintln!(
        "published version {} in {} ({} rows, {} shard(s) with {params}: {min}..{max} rows per shard; {} processed, {} shared with the previous version)",
        m.id,
        out.display(),
        m.row_count,
        m.shards.len(),
        report.processed,
        report.reused
    );
    eprintln!(
        "  bytes on disk: {} (shards {}); server memory for the shards: about {}",
        human_bytes(m.total_bytes()),
        human_bytes(db_bytes),
        human_bytes(memory)
    );
    if let Some(t) = report.largest_trial {
        eprintln!(
            "  expected server time per query (largest processed shard, measured now): {:.1} ms",
            t.answer_time.as_secs_f64() * 1e3
        );
    }
    if !report.published.removed.is_empty() {
        eprintln!(
            "  removed old version(s): {}",
            report.published.removed.join(", ")
        );
    }
    if m.shards.iter().all(|s| s.database.is_some()) {
        eprintln!(
            "  serve it with dataset_dir = {:?}; Apple's layout is in {}",
            out.display().to_string(),
            out.join("current").display()
        );
    } else {
        eprintln!(
            "  serve it with dataset_dir = {:?} (add --apple-layout for Apple's <stem>-<i>.bin files too)",
            out.display().to_string()
        );
    }
    if out.join(format!("{}-0.params.txtpb", m.stem)).exists() {
        eprintln!(
            "  note: the flat {}-<i>.* files of an older build in {} are no longer served; remove them",
            m.stem,
            out.display()
        );
    }
}

/// `n` bytes in binary units (KiB, MiB, …) with one decimal.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keys: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut r: Vec<_> = keys
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        r.sort();
        r
    }

    #[test]
    fn the_test_entry_counts_in_either_spelling_and_only_with_value_1() {
        let parsing = sift_urlkeys::ParsingConfiguration::default();
        for key in ["apple.com/url-filter-test", "www.apple.com/url-filter-test"] {
            assert!(
                test_entry_warning(
                    &sorted_lookup(&rows(&[("a.example", "1"), (key, "1")])),
                    &parsing
                )
                .is_none(),
                "{key}"
            );
        }
        let missing =
            test_entry_warning(&sorted_lookup(&rows(&[("a.example", "1")])), &parsing).unwrap();
        assert_eq!(missing.code, "apple_test_entry_missing");
        let wrong = test_entry_warning(
            &sorted_lookup(&rows(&[("apple.com/url-filter-test", "blocked")])),
            &parsing,
        )
        .unwrap();
        assert_eq!(wrong.code, "apple_test_entry_value");
        assert!(wrong.message.contains("\"blocked\""), "{}", wrong.message);
    }

    #[test]
    fn only_host_like_datasets_are_taken_for_url_filters() {
        let none = RowsReport::default();
        assert!(looks_like_url_filter(
            &mut rows(&[("ads.example/x", "1")])
                .iter()
                .map(|r| r.0.as_slice()),
            &none
        ));
        assert!(!looks_like_url_filter(
            &mut rows(&[("+14085551212", "Johnny Appleseed")])
                .iter()
                .map(|r| r.0.as_slice()),
            &none
        ));
        assert!(!looks_like_url_filter(
            &mut rows(&[("\u{1}\u{2}.\u{3}", "x")])
                .iter()
                .map(|r| r.0.as_slice()),
            &none
        ));
    }
}
