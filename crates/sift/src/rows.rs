//! Inputs → exact `(keyword, value)` rows and a report: the step `sift build` and
//! `sift lcid build` share before any output is written.
//!
//! Two kinds of input:
//! - Apple's `KeywordDatabase` (`.txtpb` text format, `.binpb` binary): rows are kept byte for
//!   byte, values included. No URL normalisation: a keyword with a scheme, `www.` or upper case
//!   is kept as given and counted in the report, because a device never looks it up.
//! - URL lists (plain, hosts, AdBlock): keys are normalised the way a device looks them up, and
//!   each gets the one URL-list value (`--value`, Apple's placeholder `1`).
//!
//! Every row is checked before anything is written: a value longer than Apple's limit, the same
//! keyword with two different values, or a malformed row refuses the whole build with the file
//! and position.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use sift_keyworddb::{Encoding, Position};

/// Longest value a keyword-PIR row may hold: Apple serializes a hash-bucket entry's value
/// length as a `UInt16` (`HashBucketEntry.maxValueSize` in swift-homomorphic-encryption).
pub const MAX_VALUE_LEN: usize = u16::MAX as usize;

/// The rows of all inputs, sorted by keyword, one per keyword.
pub struct Rows {
    /// `(keyword, value)` pairs, sorted by keyword, keywords distinct.
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    /// What was read, for the summary.
    pub report: RowsReport,
}

/// What the inputs held.
#[derive(Debug, Default)]
pub struct RowsReport {
    /// Rows read from keyword databases.
    pub keyword_db_rows: u64,
    /// Keys read from URL lists (after normalisation, before duplicates are merged).
    pub url_list_keys: u64,
    /// Rows dropped because an identical row (same keyword and value) came earlier.
    pub duplicates: u64,
    /// The longest value, in bytes.
    pub max_value_len: usize,
    /// Keyword-database keywords a device never looks up (scheme, `www.`, upper case), with
    /// where they are; the first few only.
    pub unlikely_lookups: Vec<String>,
    /// How many such keywords in all.
    pub unlikely_lookup_count: u64,
    /// URL-list import issues (skipped lines), as the URL importer reports them.
    pub url_list: Option<sift_urlkeys::ImportReport>,
}

/// How many unlikely-lookup examples a report keeps.
const MAX_EXAMPLES: usize = 5;

/// Why a device would never look up `keyword` as a URL key, if it looks like a URL at all.
fn unlikely_lookup(keyword: &[u8]) -> Option<&'static str> {
    let k = std::str::from_utf8(keyword).ok()?;
    let lower = k.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some("it has a scheme (the device looks up keys without one)");
    }
    let host = k.split(['/', '?', '#']).next().unwrap_or(k);
    // Only keys whose first part is a dotted host name are URL keys.
    if !host.contains('.') || host.contains(' ') {
        return None;
    }
    if lower.starts_with("www.") {
        return Some("it starts with `www.` (the device strips it)");
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("its host has upper case (the device lower-cases hosts)");
    }
    None
}

/// Where a row came from: input index and position, for duplicate messages.
#[derive(Clone, Copy)]
struct Origin {
    input: usize,
    position: Position,
}

fn describe(inputs: &[PathBuf], o: Origin) -> String {
    let file = inputs[o.input].display();
    match o.position {
        Position::File => format!("{file}"),
        p => format!("{file}:{p}"),
    }
}

/// Reads every input into exact rows; `url_value` is the value of URL-list keys.
/// Fails, before anything is written, on malformed input, an oversized value or a keyword
/// given twice with different values.
pub fn collect_rows(
    inputs: &[PathBuf],
    url_value: &[u8],
    parsing: sift_urlkeys::ParsingConfiguration,
) -> anyhow::Result<Rows> {
    let mut report = RowsReport::default();
    let mut rows: Vec<(Vec<u8>, Vec<u8>, Origin)> = Vec::new();
    let mut urls = sift_urlkeys::Importer::with_parsing(parsing);
    let mut url_inputs = Vec::new();
    for (input, path) in inputs.iter().enumerate() {
        if Encoding::from_path(path).is_none() {
            urls.import_path(path)
                .with_context(|| format!("reading {}", path.display()))?;
            url_inputs.push(input);
            continue;
        }
        for row in sift_keyworddb::open(path)? {
            let row = row?;
            let origin = Origin {
                input,
                position: row.position,
            };
            if row.value.len() > MAX_VALUE_LEN {
                bail!(
                    "{}: the value is {} bytes, over the limit of {MAX_VALUE_LEN} (Apple stores \
                     a value's length in 16 bits); shorten it",
                    describe(inputs, origin),
                    row.value.len()
                );
            }
            // Apple's onboarding asks for its test entry spelled with `www.`: not a mistake.
            let apple_test_entry =
                row.keyword == sift_client::onboarding::APPLE_TEST_ENTRY.as_bytes();
            if let Some(why) = unlikely_lookup(&row.keyword).filter(|_| !apple_test_entry) {
                report.unlikely_lookup_count += 1;
                if report.unlikely_lookups.len() < MAX_EXAMPLES {
                    report.unlikely_lookups.push(format!(
                        "{}: {:?}: {why}",
                        describe(inputs, origin),
                        String::from_utf8_lossy(&row.keyword)
                    ));
                }
            }
            report.keyword_db_rows += 1;
            rows.push((row.keyword, row.value, origin));
        }
    }
    if !url_inputs.is_empty() {
        if url_value.len() > MAX_VALUE_LEN {
            bail!(
                "--value is {} bytes, over the limit of {MAX_VALUE_LEN}",
                url_value.len()
            );
        }
        let (keys, url_report) = urls.finish();
        report.url_list_keys = keys.len() as u64;
        // The URL importer does not say which list a key came from: name the first list.
        let input = url_inputs[0];
        rows.extend(keys.into_iter().map(|k| {
            (
                k.into_boxed_bytes().into_vec(),
                url_value.to_vec(),
                Origin {
                    input,
                    position: Position::File,
                },
            )
        }));
        report.url_list = Some(url_report);
    }
    // Sorting by keyword only (stable) keeps each keyword's rows in input order, so the
    // message below names the first occurrence first.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(rows.len());
    let mut last_origin: Option<Origin> = None;
    for (k, v, o) in rows {
        if let (Some((pk, pv)), Some(po)) = (out.last(), last_origin)
            && *pk == k
        {
            if *pv != v {
                bail!(
                    "keyword {:?} has two different values: {} bytes at {} and {} bytes at {}; \
                     keep one row per keyword",
                    String::from_utf8_lossy(&k),
                    pv.len(),
                    describe(inputs, po),
                    v.len(),
                    describe(inputs, o)
                );
            }
            report.duplicates += 1;
            continue;
        }
        report.max_value_len = report.max_value_len.max(v.len());
        out.push((k, v));
        last_origin = Some(o);
    }
    Ok(Rows { rows: out, report })
}

impl RowsReport {
    /// A short human summary for stderr (the unlikely lookups are a warning of the build's
    /// final summary instead, see `cmd::build_summary`).
    pub fn summary(&self, distinct: usize) -> String {
        let mut s = format!("{distinct} distinct keywords");
        if self.keyword_db_rows > 0 {
            s += &format!(", {} from keyword databases", self.keyword_db_rows);
        }
        if let Some(r) = &self.url_list {
            s += &format!(
                ", {} from URL lists ({} lines, {} skipped)",
                self.url_list_keys, r.lines, r.skipped
            );
        }
        if self.duplicates > 0 {
            s += &format!(", {} identical duplicates merged", self.duplicates);
        }
        s += &format!(", values up to {} bytes", self.max_value_len);
        if let Some(r) = &self.url_list {
            s += &format!("\nURL lists: {r}");
            for i in r.issues.iter().take(10) {
                s += &format!("\n  e.g. {i}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_like_keywords_a_device_never_looks_up_are_flagged() {
        assert!(unlikely_lookup(b"https://example.com/x").is_some());
        assert!(unlikely_lookup(b"www.example.com").is_some());
        assert!(unlikely_lookup(b"Example.com/Path").is_some());
        assert!(unlikely_lookup(b"example.com/Path").is_none());
        assert!(unlikely_lookup(b"+14155550123").is_none());
        assert!(unlikely_lookup(b"\xff\x00").is_none());
    }
}
