//! Blocklist import: formats, reports and malformed input (binary, invalid UTF-8, empty files,
//! a 100 MB single line streamed without being allocated).

use sift_urlkeys::{ImportReport, Importer, MAX_LINE};
use std::io::Read;

const BLOCKLIST: &str = include_str!("../../../tests/vectors/urlkeys/sample_blocklist.txt");
const TXTPB: &str = include_str!("../../../tests/vectors/urlkeys/sample_keywords.txtpb");

fn import(name: &str, bytes: &[u8], txtpb: bool) -> (Vec<String>, ImportReport) {
    let mut im = Importer::new();
    im.import_reader(name, bytes, txtpb).unwrap();
    let (keys, rep) = im.finish();
    (keys.into_iter().map(String::from).collect(), rep)
}

#[test]
fn mixed_formats() {
    let (keys, rep) = import("list.txt", BLOCKLIST.as_bytes(), false);
    assert_eq!(
        keys,
        [
            "adblock.example",
            "ads.example.net",
            "example.com",
            "example.org/path?x=1",
            "opt.example",
            "tracker.example.net",
            "xn--bcher-kva.de",
        ]
    );
    assert_eq!(rep.duplicates, 1);
    let reasons: Vec<String> = rep.issues.iter().map(|i| i.to_string()).collect();
    let has = |needle: &str, line: u64| {
        assert!(
            rep.issues
                .iter()
                .any(|i| i.line == line && i.reason.contains(needle)),
            "no issue {needle:?} at line {line}: {reasons:?}"
        )
    };
    has("exception", 9);
    has("cosmetic", 10);
    has("AdBlock", 11);
    has("several words", 12);
    has("wildcard", 14);
    assert_eq!(rep.skipped, 5, "{reasons:?}");
    assert!(reasons[0].starts_with("list.txt:9: "), "{reasons:?}");
    // `||opt.example^$third-party` (line 8) blocks the host: see the option policy.
    assert!(!rep.issues.iter().any(|i| i.line == 8), "{reasons:?}");
}

#[test]
fn keyword_database_text_format() {
    let (keys, rep) = import("db.txtpb", TXTPB.as_bytes(), true);
    assert_eq!(
        keys,
        [
            "apple.com/url-filter-test",
            "escaped.example",
            "example10.com/resource?query=bugs"
        ]
    );
    assert_eq!(rep.skipped, 1);
    assert!(rep.issues[0].reason.contains("without keyword"));
    assert_eq!(rep.issues[0].line, 7);
    // Detected from content too.
    let (keys2, _) = import("db.txt", TXTPB.as_bytes(), false);
    assert_eq!(keys, keys2);
}

/// Any text-format layout is read (Apple's testing instructions write the whole database on one
/// line, in list syntax), and the binary format too; a malformed file is reported where it goes
/// wrong, keeping the rows before it.
#[test]
fn keyword_database_one_line_list_binary_and_malformed() {
    let one_line = br#"rows: [{ keyword: "www.example.com" value: "1" }, { keyword: "ads.example/a?b=1" value: "1" }]"#;
    let (keys, rep) = import("one-line.txt", one_line, false);
    assert_eq!(keys, ["ads.example/a?b=1", "example.com"]);
    assert_eq!((rep.skipped, rep.lines), (0, 1), "{rep}");
    let (forced, _) = import("db.txtpb", one_line, true);
    assert_eq!(forced, keys);

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("db.binpb");
    let rows = vec![
        (b"Tracker.example".to_vec(), b"1".to_vec()),
        (b"cdn.example/x".to_vec(), vec![]),
    ];
    std::fs::write(&bin, sift_keyworddb::encode_binary(&rows)).unwrap();
    let mut im = Importer::new();
    im.import_path(&bin).unwrap();
    let (keys, rep) = im.finish();
    let keys: Vec<String> = keys.into_iter().map(String::from).collect();
    assert_eq!(keys, ["cdn.example/x", "tracker.example"]);
    assert_eq!((rep.files, rep.skipped), (1, 0));

    let (keys, rep) = import("bad.txtpb", b"rows { keyword: \"a.example\" }\nrows { keyword: \"b\\q\" }\nrows { keyword: \"c.example\" }\n", true);
    assert_eq!(keys, ["a.example"]);
    assert_eq!(rep.skipped, 1);
    assert_eq!(rep.issues[0].line, 2);
    assert!(rep.issues[0].reason.contains("bad escape"), "{rep}");
    assert!(rep.issues[0].reason.contains("not read"), "{rep}");
}

#[test]
fn empty_and_binary_files() {
    let (keys, rep) = import("empty.txt", b"", false);
    assert!(keys.is_empty());
    assert_eq!(rep.issues[0].reason, "empty file");
    let junk: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .chain([0])
        .collect();
    let (keys, rep) = import("junk.bin", &junk, false);
    assert!(keys.is_empty());
    assert!(rep.issues[0].reason.contains("binary"), "{:?}", rep.issues);
}

#[test]
fn invalid_utf8_lines_are_reported() {
    let (keys, rep) = import(
        "bad.txt",
        b"good.example\n\xff\xfe.example\nother.example\n",
        false,
    );
    assert_eq!(keys, ["good.example", "other.example"]);
    assert_eq!(rep.issues.len(), 1);
    assert_eq!(rep.issues[0].line, 2);
    assert_eq!(rep.issues[0].reason, "invalid UTF-8");
}

/// A reader yielding `n` bytes of `b'a'` without allocating them.
struct Repeat(u64);
impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(b'a');
        self.0 -= n as u64;
        Ok(n)
    }
}

#[test]
fn hundred_megabyte_line_is_skipped_not_buffered() {
    let input = b"first.example\n"
        .chain(Repeat(100 << 20))
        .chain(&b"\nlast.example\n"[..]);
    let mut im = Importer::new();
    im.import_reader("huge.txt", input, false).unwrap();
    let (keys, rep) = im.finish();
    assert_eq!(keys.len(), 2);
    assert_eq!(rep.issues.len(), 1);
    assert_eq!(rep.issues[0].line, 2);
    assert!(rep.issues[0].reason.contains(&MAX_LINE.to_string()));
}

#[test]
fn line_at_limit_is_kept() {
    let host = format!("{}.example", "a".repeat(60));
    let path = "/p".repeat((8000 - host.len()) / 2);
    let line = format!("{host}{path}\n");
    let (keys, rep) = import("long.txt", line.as_bytes(), false);
    assert_eq!(keys.len(), 1, "{:?}", rep.issues);
}

#[test]
fn import_from_path_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("list.txt");
    std::fs::write(&p, "a.example\r\nb.example\r\n").unwrap();
    let mut im = Importer::new();
    im.import_path(&p).unwrap();
    let (keys, rep) = im.finish();
    assert_eq!(keys.len(), 2, "{:?}", rep.issues);
    assert!(im_missing(&dir.path().join("nope.txt")));
}

fn im_missing(p: &std::path::Path) -> bool {
    Importer::new().import_path(p).is_err()
}

/// Excerpts of EasyList, EasyPrivacy and URLhaus as Debian ships them (sources in
/// tests/vectors/urlkeys/real_lists/README.md): rules with options that only narrow the request
/// type block their host or URL, `||host/path^` rules stay URL keys, and rules limited to some
/// sites, exceptions and cosmetic rules are skipped and counted per reason.
#[test]
fn real_list_excerpts_follow_the_option_policy() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/urlkeys/real_lists"
    );
    let mut im = Importer::new();
    for f in [
        "easylist_excerpt.txt",
        "easyprivacy_excerpt.txt",
        "urlhaus_excerpt.txt",
    ] {
        im.import_path(&std::path::Path::new(dir).join(f)).unwrap();
    }
    let (keys, rep) = im.finish();
    let keys: Vec<String> = keys.into_iter().map(String::from).collect();
    let has = |k: &str| keys.iter().any(|x| x == k);
    // EasyList's `||doubleclick.net^$popup`: the device filters navigations, so it blocks.
    assert!(has("doubleclick.net"), "{keys:?}");
    assert!(has("ad.doubleclick.net"));
    assert!(has("123date.me"), "$third-party blocks the host");
    // URLhaus's `||host/path^$all` rules are URL keys.
    assert!(
        has("2024.sci-hub.se/2294/7a43bb4cf6c57229b02a9604a1f4614e/skidmore1966.pdf"),
        "{keys:?}"
    );
    assert!(has("1.15.25.148"));
    // EasyPrivacy's `||host/path^` (with and without $third-party).
    assert!(has("amazonaws.com/beacon"), "{keys:?}");
    assert!(has("tagtray.com/api"), "{keys:?}");
    // Site-limited rules, exceptions and cosmetic rules are skipped, counted by reason.
    assert!(!has("bannersnack.com"));
    assert!(!keys.iter().any(|k| k.starts_with("youtube.com")));
    let count = |needle: &str| -> u64 {
        rep.skipped_by_reason
            .iter()
            .filter(|(r, _)| r.contains(needle))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(count("$domain="), 2, "{:?}", rep.skipped_by_reason);
    assert_eq!(count("cosmetic"), 2, "{:?}", rep.skipped_by_reason);
    assert_eq!(count("exception"), 1, "{:?}", rep.skipped_by_reason);
    assert_eq!(
        rep.skipped_by_reason.values().sum::<u64>(),
        rep.skipped,
        "every skip is counted"
    );
    // People read the summary: counts and reasons, no Rust debug syntax.
    let text = rep.to_string();
    assert!(text.contains("skipped\n"), "{text}");
    assert!(text.contains("AdBlock rule with $domain="), "{text}");
    assert!(
        !text.contains("ImportReport") && !text.contains("Issue {"),
        "{text}"
    );
}

/// The report keeps the first 100 skipped lines in full by default and as many as asked with
/// `keep_issues`; every skip is counted either way.
#[test]
fn kept_issues_follow_keep_issues() {
    let bad: String = (0..250).map(|i| format!("bad host {i}!\n")).collect();
    let mut default = Importer::new();
    default
        .import_reader("bad.txt", bad.as_bytes(), false)
        .unwrap();
    let (_, rep) = default.finish();
    assert_eq!((rep.skipped, rep.issues.len()), (250, 100));

    let mut more = Importer::new();
    more.keep_issues(240);
    more.import_reader("bad.txt", bad.as_bytes(), false)
        .unwrap();
    let (_, rep) = more.finish();
    assert_eq!((rep.skipped, rep.issues.len()), (250, 240));
    assert_eq!(rep.issues[239].line, 240);
}
