//! Streaming blocklist import: plain URLs/hosts, hosts files, AdBlock domain rules and Apple's
//! text-format `KeywordDatabase`, read line by line with a bounded line length.

use crate::ParsingConfiguration;
use sift_keyworddb::{Encoding, Position};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Longest line kept (bytes). Longer lines are reported and skipped without being buffered.
pub const MAX_LINE: usize = 64 * 1024;
/// Issues kept in full in an [`ImportReport`]; the rest are only counted.
const MAX_ISSUES: usize = 100;

/// A skipped line (or file) with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// File name as given.
    pub file: String,
    /// 1-based line number (0 for a whole-file issue).
    pub line: u64,
    /// Why it was skipped.
    pub reason: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

/// Counts and the first issues of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Files read.
    pub files: u64,
    /// Lines read (all kinds).
    pub lines: u64,
    /// Keys accepted (before duplicate merging).
    pub accepted: u64,
    /// Duplicates merged by [`Importer::finish`].
    pub duplicates: u64,
    /// Comments and blank lines.
    pub comments: u64,
    /// Lines or files skipped with a reason.
    pub skipped: u64,
    /// The first issues, in order found.
    pub issues: Vec<Issue>,
    /// Skipped lines counted per reason (every skip, not only the first issues kept); at
    /// most `MAX_REASONS` (64) distinct reasons, the rest under `"other"`.
    pub skipped_by_reason: std::collections::BTreeMap<String, u64>,
    /// Issues to keep in full (None: the first 100; see [`Importer::keep_issues`]).
    keep_issues: Option<usize>,
}

/// Distinct reasons counted in [`ImportReport::skipped_by_reason`].
pub const MAX_REASONS: usize = 64;

impl std::fmt::Display for ImportReport {
    /// A summary for people: counts, then skipped lines per reason (most frequent first).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} file(s), {} line(s): {} key(s) accepted, {} duplicate(s), {} comment/blank, {} skipped",
            self.files, self.lines, self.accepted, self.duplicates, self.comments, self.skipped
        )?;
        let mut reasons: Vec<(&String, &u64)> = self.skipped_by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, n) in reasons {
            write!(f, "\n  {n:>8}  {reason}")?;
        }
        Ok(())
    }
}

impl ImportReport {
    fn issue(&mut self, file: &str, line: u64, reason: impl Into<String>) {
        self.skipped += 1;
        let reason = reason.into();
        let kind = if self.skipped_by_reason.contains_key(&reason)
            || self.skipped_by_reason.len() < MAX_REASONS
        {
            reason.clone()
        } else {
            "other".to_owned()
        };
        *self.skipped_by_reason.entry(kind).or_default() += 1;
        if self.issues.len() < self.keep_issues.unwrap_or(MAX_ISSUES) {
            self.issues.push(Issue {
                file: file.to_string(),
                line,
                reason,
            });
        }
    }
}

/// Collects normalised keys from many lists; [`Importer::finish`] sorts and merges duplicates.
#[derive(Debug, Default)]
pub struct Importer {
    keys: Vec<Box<str>>,
    report: ImportReport,
    /// How keys are normalised (the app's parsing configuration; default: iOS 26).
    parsing: ParsingConfiguration,
}

/// Reads one line into `buf` (without the newline), keeping at most `MAX_LINE` bytes and
/// discarding the rest of an over-long line. Returns `None` at end of input, else whether the
/// line was truncated.
fn read_capped_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        if !too_long {
            if buf.len() + part.len() > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        r.consume(used);
        if done {
            return Ok(Some(too_long));
        }
    }
}

/// Per-line classification outcome.
enum Line {
    Keys(Vec<String>),
    Comment,
    Skip(String),
}

fn is_ip(tok: &str) -> bool {
    tok.parse::<std::net::IpAddr>().is_ok()
}

/// Host names that hosts files map to themselves, not blocking entries.
const HOSTS_LOCAL: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// The AdBlock option policy: whether a `||host^$options` or `||host/path^$options` rule
/// becomes a block entry. The device filters every URL load, navigations included, so options
/// that only narrow *which kind of request* is blocked (`$script`, `$image`, `$third-party`,
/// `$document`, `$popup`, `$all`, `$important`, `$match-case`, negated types, …) still block the
/// host or URL. Options that make the rule apply only on some sites (`$domain=`, `$from=`,
/// `$denyallow=`, …) or do something other than block (`$redirect`, `$removeparam`, `$csp`,
/// `$badfilter`, hiding options, …) are skipped, with the option named in the reason.
fn adblock_options_block(options: &str) -> Result<(), String> {
    const NARROWING: &[&str] = &[
        "all",
        "document",
        "doc",
        "popup",
        "popunder",
        "important",
        "third-party",
        "3p",
        "first-party",
        "1p",
        "strict1p",
        "strict3p",
        "match-case",
        "script",
        "image",
        "stylesheet",
        "css",
        "xmlhttprequest",
        "xhr",
        "subdocument",
        "frame",
        "media",
        "font",
        "object",
        "ping",
        "websocket",
        "webrtc",
        "other",
        "beacon",
        "fetch",
        "inline-script",
        "inline-font",
    ];
    for opt in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let name = opt.trim_start_matches('~');
        let key = name.split('=').next().unwrap_or(name).to_ascii_lowercase();
        if opt.starts_with('~') || NARROWING.contains(&key.as_str()) {
            continue;
        }
        return Err(match key.as_str() {
            "domain" | "from" | "to" | "denyallow" | "method" | "header" | "app" => format!(
                "AdBlock rule with ${key}= applies only in some contexts (not a block everywhere)"
            ),
            _ => format!("AdBlock rule with ${key} does not block (or is not supported)"),
        });
    }
    Ok(())
}

fn classify(line: &str, parsing: &ParsingConfiguration) -> Line {
    let normalize_key = |s: &str| parsing.normalize_key(s);
    let t = line.trim();
    // A generic cosmetic rule (`##.ad-banner`, `##a[href^=…]`) starts like a comment.
    if t.starts_with("##") && t[2..].starts_with(|c: char| !c.is_whitespace() && c != '#') {
        return Line::Skip("AdBlock cosmetic rule (element hiding) is not a URL".into());
    }
    if t.is_empty() || t.starts_with('#') || t.starts_with('!') || t.starts_with("[Adblock") {
        return Line::Comment;
    }
    // AdBlock syntax first: its markers never occur in plain host lines.
    if t.starts_with("@@") {
        return Line::Skip("AdBlock exception rule (@@) is not a block entry".into());
    }
    if ["##", "#@#", "#?#", "#$#", "#%#"]
        .iter()
        .any(|m| t.contains(m))
    {
        return Line::Skip("AdBlock cosmetic rule (element hiding) is not a URL".into());
    }
    if let Some(rule) = t.strip_prefix("||") {
        let rule = match rule.rfind('$') {
            Some(i) => {
                if let Err(reason) = adblock_options_block(&rule[i + 1..]) {
                    return Line::Skip(reason);
                }
                &rule[..i]
            }
            None => rule,
        };
        let body = rule.trim_end_matches(['^', '|']);
        if body.contains(['*', '^', '|']) {
            return Line::Skip("AdBlock rule with wildcards or separators inside".into());
        }
        return match normalize_key(body) {
            Ok(k) => Line::Keys(vec![k]),
            Err(e) => Line::Skip(format!("AdBlock rule: {e}")),
        };
    }
    if t.starts_with('|')
        || (t.starts_with('/') && t.ends_with('/') && t.len() > 1)
        || t.contains('^')
        || t.contains('$')
    {
        return Line::Skip("unsupported AdBlock rule (only ||domain^ rules are imported)".into());
    }
    // Strip a trailing comment (`host # note`); '#' right after text is a URL fragment.
    let t = match t.find(" #").or_else(|| t.find("\t#")) {
        Some(i) => t[..i].trim_end(),
        None => t,
    };
    let toks: Vec<&str> = t.split_whitespace().collect();
    if toks.len() >= 2 && is_ip(toks[0]) {
        // hosts file: IP then one or more names.
        let mut keys = Vec::new();
        for h in &toks[1..] {
            if HOSTS_LOCAL.contains(&h.to_ascii_lowercase().as_str()) {
                continue;
            }
            match normalize_key(h) {
                Ok(k) => keys.push(k),
                Err(e) => return Line::Skip(format!("hosts entry {h:?}: {e}")),
            }
        }
        return if keys.is_empty() {
            Line::Comment
        } else {
            Line::Keys(keys)
        };
    }
    if toks.len() == 1 && is_ip(toks[0]) && HOSTS_LOCAL.contains(&toks[0]) {
        return Line::Comment;
    }
    if toks.len() > 1 {
        return Line::Skip("several words on a line that is not a hosts entry".into());
    }
    match normalize_key(t) {
        Ok(k) => Line::Keys(vec![k]),
        Err(e) => Line::Skip(e.to_string()),
    }
}

impl Importer {
    /// An empty importer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the first `n` skipped lines in full in the report (default 100; every skip is
    /// counted either way), for a summary that lists more of them.
    pub fn keep_issues(&mut self, n: usize) {
        self.report.keep_issues = Some(n);
    }

    /// An empty importer that normalises keys under `parsing` (case kept when case-sensitive,
    /// `www.` kept when not stripped, excluded components replaced by `%*`).
    pub fn with_parsing(parsing: ParsingConfiguration) -> Self {
        Self {
            parsing,
            ..Self::default()
        }
    }

    /// Imports a file; formats are detected per line, or per file for Apple's
    /// `KeywordDatabase` (text format: `.txtpb`/`.textproto` files and files whose first entry
    /// starts with `rows`; binary: `.binpb`/`.pb` files).
    pub fn import_path(&mut self, path: &Path) -> std::io::Result<()> {
        let mut keys = std::mem::take(&mut self.keys);
        let r = self.import_path_with(path, &mut |k| {
            keys.push(k.into_boxed_str());
            Ok(())
        });
        self.keys = keys;
        r
    }

    /// Imports the rows of a `KeywordDatabase` reader: each keyword normalised like a URL-list
    /// key; a row without a keyword, or a keyword that is not a URL key, is skipped with its
    /// line; a malformed file is reported where it goes wrong and read no further.
    fn import_rows(
        &mut self,
        name: &str,
        rows: impl Iterator<Item = Result<sift_keyworddb::Row, sift_keyworddb::Error>>,
        sink: &mut dyn FnMut(String) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let line = |p: Position| match p {
            Position::Text { line, .. } => line,
            _ => 0,
        };
        for row in rows {
            match row {
                Ok(row) if row.keyword.is_empty() => {
                    self.report
                        .issue(name, line(row.position), "row without keyword, skipped")
                }
                Ok(row) => match String::from_utf8(row.keyword) {
                    Ok(k) => match self.parsing.normalize_key(&k) {
                        Ok(k) => {
                            sink(k)?;
                            self.report.accepted += 1;
                        }
                        Err(e) => self.report.issue(
                            name,
                            line(row.position),
                            format!("keyword {k:?}: {e}"),
                        ),
                    },
                    Err(_) => self
                        .report
                        .issue(name, line(row.position), "keyword is not UTF-8"),
                },
                Err(e) => {
                    let reason = match e.position {
                        Position::Text { col, .. } => format!("column {col}: {}", e.reason),
                        Position::Binary { offset } => format!("byte {offset}: {}", e.reason),
                        Position::File => e.reason.clone(),
                    };
                    self.report.issue(
                        name,
                        line(e.position),
                        format!("{reason} (the rest of the file is not read)"),
                    );
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Imports from any reader (streamed; memory use is bounded by [`MAX_LINE`] per line).
    /// `txtpb` forces the `KeywordDatabase` text format.
    pub fn import_reader<R: Read>(
        &mut self,
        name: &str,
        reader: R,
        txtpb: bool,
    ) -> std::io::Result<()> {
        let mut keys = std::mem::take(&mut self.keys);
        let r = self.import_reader_with(name, reader, txtpb, &mut |k| {
            keys.push(k.into_boxed_str());
            Ok(())
        });
        self.keys = keys;
        r
    }

    /// Imports a file like [`Importer::import_path`], but hands every accepted key to `sink`
    /// as it is read instead of keeping it (a streaming build partitions keys on disk);
    /// duplicates are then the sink's to merge. An error from `sink` stops the import.
    pub fn import_path_with(
        &mut self,
        path: &Path,
        sink: &mut dyn FnMut(String) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let name = path.display().to_string();
        let f = std::fs::File::open(path)?;
        match Encoding::from_path(path) {
            Some(Encoding::Binary) => {
                self.report.files += 1;
                let rows = sift_keyworddb::BinaryReader::new(&name, f);
                self.import_rows(&name, rows, sink)
            }
            Some(Encoding::Text) => self.import_reader_with(&name, f, true, sink),
            None => self.import_reader_with(&name, f, false, sink),
        }
    }

    /// The report of a streaming import (see [`Importer::import_path_with`]); its duplicate
    /// count is the caller's.
    pub fn into_report(self) -> ImportReport {
        self.report
    }

    /// [`Importer::import_reader`] with a sink for the keys.
    pub fn import_reader_with<R: Read>(
        &mut self,
        name: &str,
        reader: R,
        txtpb: bool,
        sink: &mut dyn FnMut(String) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut r = BufReader::with_capacity(64 * 1024, reader);
        self.report.files += 1;
        let head = r.fill_buf()?;
        if head.is_empty() {
            self.report.issue(name, 0, "empty file");
            return Ok(());
        }
        if head.iter().take(8192).any(|&b| b == 0) {
            self.report
                .issue(name, 0, "binary file (NUL bytes), skipped");
            return Ok(());
        }
        if txtpb || starts_with_rows(head) {
            let lines = std::rc::Rc::new(std::cell::Cell::new((0u64, b'\n')));
            let counted = CountLines {
                inner: r,
                lines: lines.clone(),
            };
            let rows = sift_keyworddb::TextReader::new(name, counted).keyword_optional();
            self.import_rows(name, rows, sink)?;
            // A last line without a line break counts too.
            let (breaks, last) = lines.get();
            self.report.lines += breaks + u64::from(last != b'\n');
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut lineno = 0u64;
        while let Some(too_long) = read_capped_line(&mut r, &mut buf)? {
            lineno += 1;
            self.report.lines += 1;
            if too_long {
                self.report.issue(
                    name,
                    lineno,
                    format!("line longer than {MAX_LINE} bytes, skipped"),
                );
                continue;
            }
            if buf.contains(&0) {
                self.report.issue(name, lineno, "binary data (NUL byte)");
                continue;
            }
            let Ok(line) = std::str::from_utf8(&buf) else {
                self.report.issue(name, lineno, "invalid UTF-8");
                continue;
            };
            let line = line.strip_prefix('\u{feff}').unwrap_or(line);
            match classify(line, &self.parsing) {
                Line::Keys(ks) => {
                    for k in ks {
                        sink(k)?;
                        self.report.accepted += 1;
                    }
                }
                Line::Comment => self.report.comments += 1,
                Line::Skip(reason) => self.report.issue(name, lineno, reason),
            }
        }
        Ok(())
    }

    /// Adds one already-normalised key.
    pub fn push(&mut self, key: String) {
        self.keys.push(key.into_boxed_str());
        self.report.accepted += 1;
    }

    /// Report so far (duplicates are counted by [`Importer::finish`]).
    pub fn report(&self) -> &ImportReport {
        &self.report
    }

    /// Sorts and merges duplicates; returns the distinct keys and the final report.
    pub fn finish(mut self) -> (Vec<Box<str>>, ImportReport) {
        self.keys.sort_unstable();
        let before = self.keys.len();
        self.keys.dedup();
        self.keys.shrink_to_fit();
        self.report.duplicates = (before - self.keys.len()) as u64;
        (self.keys, self.report)
    }
}

/// Whether the first entry of a file (its first line that is neither blank nor a `#` / `!`
/// comment, within `head`) starts with `rows`: Apple's text-format `KeywordDatabase`.
fn starts_with_rows(head: &[u8]) -> bool {
    let head = head.strip_prefix("\u{feff}".as_bytes()).unwrap_or(head);
    head.split(|&b| b == b'\n')
        .map(|l| l.trim_ascii_start())
        .find(|l| !l.is_empty() && !l.starts_with(b"#") && !l.starts_with(b"!"))
        .is_some_and(|l| l.starts_with(b"rows"))
}

/// A reader that counts the line breaks read through it and keeps the last byte (the lines of
/// a text-format file read by a parser that does not report them).
struct CountLines<R> {
    inner: R,
    lines: std::rc::Rc<std::cell::Cell<(u64, u8)>>,
}

impl<R: Read> Read for CountLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let (breaks, last) = self.lines.get();
        let more = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        self.lines
            .set((breaks + more, buf[..n].last().copied().unwrap_or(last)));
        Ok(n)
    }
}
