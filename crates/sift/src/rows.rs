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
//! Every row is checked before anything is published: a value longer than Apple's limit, the
//! same keyword with two different values, or a malformed row refuses the whole build with the
//! file and position.
//!
//! [`collect_rows`] holds every row in memory (the added and removed lists of `sift update`);
//! [`partition_rows`] streams the inputs into buckets on disk and merges duplicates one bucket
//! at a time (`sift build`; see `sift_dataset::partition` for the design).

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
    /// The first keywords read (up to [`KEYWORD_SAMPLE`]), to tell URL-filter data from other
    /// keyword data without holding the rows.
    pub keyword_sample: Vec<Vec<u8>>,
    /// The rows of Apple's onboarding test entry met while reading (either spelling).
    pub test_entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How many keywords [`RowsReport::keyword_sample`] keeps.
pub const KEYWORD_SAMPLE: usize = 1000;

/// How many unlikely-lookup examples a report keeps.
const MAX_EXAMPLES: usize = 5;

/// Why a device would never look up `keyword` as a URL key, if it looks like a URL at all.
/// Apple's onboarding test entry, which Apple spells with `www.`, is not a mistake.
fn unlikely_lookup(keyword: &[u8]) -> Option<&'static str> {
    if keyword == sift_client::onboarding::APPLE_TEST_ENTRY.as_bytes() {
        return None;
    }
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Why a keyword given twice with different values refuses the build: each value's length
/// and where it was read, the first occurrence first.
fn two_values(
    inputs: &[PathBuf],
    keyword: &[u8],
    first: (usize, Origin),
    second: (usize, Origin),
) -> String {
    format!(
        "keyword {:?} has two different values: {} bytes at {} and {} bytes at {}; keep one \
         row per keyword",
        String::from_utf8_lossy(keyword),
        first.0,
        describe(inputs, first.1),
        second.0,
        describe(inputs, second.1)
    )
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
            let origin = report.check_keyword_row(inputs, input, &row)?;
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
                bail!("{}", two_values(inputs, &k, (pv.len(), po), (v.len(), o)));
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

/// Origin and order of a partitioned row: `seq u64 ‖ input u32 ‖ kind u8 ‖ a u64 ‖ b u64`,
/// kind 0 = a URL-list key (its value is the URL-list value), 1 = whole file, 2 = text
/// line:col, 3 = binary offset.
fn encode_meta(seq: u64, input: usize, url: bool, position: Position) -> [u8; 29] {
    let (kind, a, b) = match (url, position) {
        (true, _) => (0u8, 0, 0),
        (false, Position::File) => (1, 0, 0),
        (false, Position::Text { line, col }) => (2, line, col),
        (false, Position::Binary { offset }) => (3, offset, 0),
    };
    let mut m = [0u8; 29];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8..12].copy_from_slice(&(input as u32).to_le_bytes());
    m[12] = kind;
    m[13..21].copy_from_slice(&a.to_le_bytes());
    m[21..29].copy_from_slice(&b.to_le_bytes());
    m
}

fn decode_meta(m: &[u8]) -> anyhow::Result<(u64, Origin, bool)> {
    anyhow::ensure!(m.len() == 29, "corrupt partition record");
    let u = |r: std::ops::Range<usize>| u64::from_le_bytes(m[r].try_into().expect("8 bytes"));
    let input = u32::from_le_bytes(m[8..12].try_into().expect("4 bytes")) as usize;
    let (a, b) = (u(13..21), u(21..29));
    let position = match m[12] {
        2 => Position::Text { line: a, col: b },
        3 => Position::Binary { offset: a },
        _ => Position::File,
    };
    Ok((u(0..8), Origin { input, position }, m[12] == 0))
}

/// What de-duplicating one bucket found.
#[derive(Default)]
struct BucketStats {
    rows: u64,
    url_keys: u64,
    url_duplicates: u64,
    duplicates: u64,
    max_value_len: usize,
}

/// A keyword given twice with different values (the smallest such keyword is reported).
struct Conflict {
    keyword: Vec<u8>,
    message: String,
}

/// Sorts one import bucket, merges identical rows and writes the exact rows back.
fn dedup_bucket(
    parts: &sift_dataset::partition::Partitions,
    i: usize,
    inputs: &[PathBuf],
    url_value: &[u8],
) -> anyhow::Result<Result<BucketStats, Conflict>> {
    use sift_dataset::partition::take_field;
    let bytes = parts.take(i)?;
    // (keyword, value, input order, origin, from a URL list)
    type Rec<'a> = (&'a [u8], &'a [u8], u64, Origin, bool);
    let mut recs: Vec<Rec> = Vec::new();
    let mut b = bytes.as_slice();
    while !b.is_empty() {
        let k = take_field(&mut b)?;
        let v = take_field(&mut b)?;
        let (seq, origin, url) = decode_meta(take_field(&mut b)?)?;
        recs.push((k, if url { url_value } else { v }, seq, origin, url));
    }
    // Input order within a keyword, so the message names the first occurrence first.
    recs.sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.2.cmp(&b.2)));
    let mut st = BucketStats::default();
    let mut out = Vec::new();
    let mut j = 0;
    while j < recs.len() {
        let (k, v, _, first, _) = recs[j];
        let mut end = j + 1;
        while end < recs.len() && recs[end].0 == k {
            end += 1;
        }
        let run = &recs[j..end];
        if let Some(other) = run.iter().find(|r| r.1 != v) {
            return Ok(Err(Conflict {
                keyword: k.to_vec(),
                message: two_values(inputs, k, (v.len(), first), (other.1.len(), other.3)),
            }));
        }
        // As the in-memory path counts: URL-list keys are merged among themselves first
        // (the URL report's duplicates), then identical rows across inputs.
        let urls = run.iter().filter(|r| r.4).count() as u64;
        st.url_keys += u64::from(urls > 0);
        let url_dups = urls.saturating_sub(1);
        st.url_duplicates += url_dups;
        st.duplicates += run.len() as u64 - url_dups - 1;
        st.rows += 1;
        st.max_value_len = st.max_value_len.max(v.len());
        sift_dataset::partition::put_field(&mut out, k);
        sift_dataset::partition::put_field(&mut out, v);
        j = end;
    }
    drop(recs);
    parts.append(i, &out)?;
    Ok(Ok(st))
}

/// Streams every input into [`sift_dataset::partition::IMPORT_BUCKETS`] buckets under `dir`
/// (created; removed when the result is dropped), then merges identical rows bucket by bucket
/// (in parallel). The same checks and report as [`collect_rows`], in memory bounded by
/// `buffer_bytes` plus one bucket per thread. `on_rows` is told how many rows were read (import)
/// and, with `true`, how many were merged (per bucket).
pub fn partition_rows(
    inputs: &[PathBuf],
    url_value: &[u8],
    parsing: sift_urlkeys::ParsingConfiguration,
    dir: &std::path::Path,
    buffer_bytes: usize,
    on_rows: &(dyn Fn(bool, u64) + Sync),
) -> anyhow::Result<(sift_dataset::partition::RowBuckets, RowsReport)> {
    use rayon::prelude::*;
    use sift_dataset::partition::{IMPORT_BUCKETS, Partitions, RowBuckets, import_bucket};
    if url_value.len() > MAX_VALUE_LEN {
        bail!(
            "--value is {} bytes, over the limit of {MAX_VALUE_LEN}",
            url_value.len()
        );
    }
    let parts = Partitions::new(&dir.join("rows"), IMPORT_BUCKETS, buffer_bytes)?;
    let mut report = RowsReport::default();
    let test_keys = crate::cmd::build_summary::test_entry_keys(&parsing);
    let mut urls = sift_urlkeys::Importer::with_parsing(parsing);
    let mut any_url = false;
    let mut seq = 0u64;
    const TICK: u64 = 1 << 14;
    for (input, path) in inputs.iter().enumerate() {
        if Encoding::from_path(path).is_none() {
            any_url = true;
            let mut failed: Option<anyhow::Error> = None;
            let r = urls.import_path_with(path, &mut |k: String| {
                let meta = encode_meta(seq, input, true, Position::File);
                report.observe(&test_keys, k.as_bytes(), url_value);
                seq += 1;
                if seq.is_multiple_of(TICK) {
                    on_rows(false, TICK);
                }
                let b = import_bucket(k.as_bytes(), IMPORT_BUCKETS);
                parts.push(b, &[k.as_bytes(), b"", &meta]).map_err(|e| {
                    let m = format!("{e:#}");
                    failed = Some(e);
                    std::io::Error::other(m)
                })
            });
            if let Some(e) = failed {
                return Err(e);
            }
            r.with_context(|| format!("reading {}", path.display()))?;
            continue;
        }
        for row in sift_keyworddb::open(path)? {
            let row = row?;
            report.check_keyword_row(inputs, input, &row)?;
            let meta = encode_meta(seq, input, false, row.position);
            report.observe(&test_keys, &row.keyword, &row.value);
            seq += 1;
            if seq.is_multiple_of(TICK) {
                on_rows(false, TICK);
            }
            let b = import_bucket(&row.keyword, IMPORT_BUCKETS);
            parts.push(b, &[&row.keyword, &row.value, &meta])?;
        }
    }
    on_rows(false, seq % TICK);
    let results: Vec<Result<BucketStats, Conflict>> = (0..IMPORT_BUCKETS)
        .into_par_iter()
        .map(|i| {
            let r = dedup_bucket(&parts, i, inputs, url_value);
            if let Ok(Ok(s)) = &r {
                on_rows(true, s.rows);
            }
            r
        })
        .collect::<anyhow::Result<_>>()?;
    let mut total = BucketStats::default();
    let mut conflict: Option<Conflict> = None;
    for r in results {
        match r {
            Ok(s) => {
                total.rows += s.rows;
                total.url_keys += s.url_keys;
                total.url_duplicates += s.url_duplicates;
                total.duplicates += s.duplicates;
                total.max_value_len = total.max_value_len.max(s.max_value_len);
            }
            Err(c) => {
                if conflict.as_ref().is_none_or(|o| c.keyword < o.keyword) {
                    conflict = Some(c);
                }
            }
        }
    }
    if let Some(c) = conflict {
        bail!("{}", c.message);
    }
    report.duplicates = total.duplicates;
    report.max_value_len = total.max_value_len;
    if any_url {
        let mut r = urls.into_report();
        r.duplicates = total.url_duplicates;
        report.url_list_keys = total.url_keys;
        report.url_list = Some(r);
    }
    let buckets = RowBuckets::new(dir, parts, total.rows, total.max_value_len, buffer_bytes);
    Ok((buckets, report))
}

impl RowsReport {
    /// Checks one keyword-database row read from `inputs[input]` and counts it: fails on a
    /// value over [`MAX_VALUE_LEN`], notes a keyword a device would never look up. Returns
    /// where the row came from.
    fn check_keyword_row(
        &mut self,
        inputs: &[PathBuf],
        input: usize,
        row: &sift_keyworddb::Row,
    ) -> anyhow::Result<Origin> {
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
        if let Some(why) = unlikely_lookup(&row.keyword) {
            self.unlikely_lookup_count += 1;
            if self.unlikely_lookups.len() < MAX_EXAMPLES {
                self.unlikely_lookups.push(format!(
                    "{}: {:?}: {why}",
                    describe(inputs, origin),
                    String::from_utf8_lossy(&row.keyword)
                ));
            }
        }
        self.keyword_db_rows += 1;
        Ok(origin)
    }

    /// Notes one row as read: the keyword sample, and the row itself if its keyword is one of
    /// `test_keys` (Apple's test entry).
    fn observe(&mut self, test_keys: &[String], keyword: &[u8], value: &[u8]) {
        if self.keyword_sample.len() < KEYWORD_SAMPLE {
            self.keyword_sample.push(keyword.to_vec());
        }
        if test_keys.iter().any(|k| k.as_bytes() == keyword) {
            self.test_entries.push((keyword.to_vec(), value.to_vec()));
        }
    }

    /// The value read for `keyword` if it is one of Apple's test-entry keys.
    pub fn test_entry_value(&self, keyword: &[u8]) -> Option<Vec<u8>> {
        self.test_entries
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.clone())
    }

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

    /// The keyword-database checks `collect_rows` (the update path) shares with the build's
    /// streaming path: rows counted, an unlikely keyword reported with its place, an
    /// oversized value refused with its place.
    #[test]
    fn collect_rows_checks_keyword_database_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("in.txtpb");
        // Reads `pairs` as the keyword database `in.txtpb`.
        let read = |pairs: &[(&str, &str)]| {
            let text: String = pairs
                .iter()
                .map(|(k, v)| format!("rows {{ keyword: \"{k}\" value: \"{v}\" }}\n"))
                .collect();
            std::fs::write(&db, text).unwrap();
            collect_rows(std::slice::from_ref(&db), b"1", Default::default())
        };
        let ok = read(&[("www.example.com", "1"), ("example.org", "2")]).unwrap();
        assert_eq!(ok.report.keyword_db_rows, 2);
        assert_eq!(ok.report.unlikely_lookup_count, 1);
        let example = &ok.report.unlikely_lookups[0];
        assert!(
            example.contains("in.txtpb") && example.contains("www.example.com"),
            "{example}"
        );
        let big = "x".repeat(MAX_VALUE_LEN + 1);
        let e = read(&[("a.example", &big)]).err().unwrap().to_string();
        assert!(
            e.contains("in.txtpb") && e.contains("over the limit"),
            "{e}"
        );
    }
}
