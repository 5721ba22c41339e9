//! Sub-URL enumeration and key normalisation under Apple's `ParsingConfiguration`: the examples
//! of Apple's pages (`tests/vectors/urlkeys/parsing_configurations.txt`, page named per case),
//! each option alone and combined, round trips, the refused options and the mismatch reasons.

use sift_urlkeys::{KeyError, Mismatch, ParsingConfiguration, ParsingError, suburls};

const CASES: &str = include_str!("../../../tests/vectors/urlkeys/parsing_configurations.txt");
const OVERVIEW: &str =
    include_str!("../../../tests/vectors/urlkeys/neurlfiltermanager_overview.txt");

fn cfg(json: &str) -> ParsingConfiguration {
    ParsingConfiguration::from_json(json, "test").unwrap()
}

/// Every configuration in the fixture, and every URL given under it.
fn fixture_configs() -> Vec<(ParsingConfiguration, Vec<String>)> {
    let mut out: Vec<(ParsingConfiguration, Vec<String>)> = Vec::new();
    for l in CASES.lines() {
        if let Some(j) = l.strip_prefix("config ") {
            out.push((cfg(j), Vec::new()));
        } else if let Some(u) = l.strip_prefix("url ") {
            out.last_mut().unwrap().1.push(u.to_owned());
        }
    }
    out
}

#[test]
fn apple_pages_and_documented_options() {
    let mut c = ParsingConfiguration::default();
    let (mut url, mut subs) = (String::new(), Vec::new());
    let (mut cases, mut checks) = (0, 0);
    for (n, l) in CASES.lines().enumerate() {
        let n = n + 1;
        if l.starts_with('#') || l.trim().is_empty() {
            continue;
        }
        let (op, arg) = l.split_once(' ').unwrap_or((l, ""));
        match op {
            "page" => {}
            "config" => c = cfg(arg),
            "url" => {
                url = arg.to_owned();
                subs = c
                    .suburls(&url)
                    .unwrap_or_else(|e| panic!("line {n}: {url}: {e}"));
                cases += 1;
            }
            "key" => {
                assert_eq!(
                    c.normalize_key(&url).unwrap(),
                    arg,
                    "line {n}: key of {url}"
                );
                checks += 1;
            }
            "has" => {
                assert!(
                    subs.iter().any(|s| s == arg),
                    "line {n}: {arg} missing from {subs:?}"
                );
                checks += 1;
            }
            "not" => {
                assert!(
                    !subs.iter().any(|s| s == arg),
                    "line {n}: {arg} in {subs:?}"
                );
                checks += 1;
            }
            "count" => {
                assert_eq!(
                    subs.len(),
                    arg.parse::<usize>().unwrap(),
                    "line {n}: {subs:?}"
                );
                checks += 1;
            }
            _ => panic!("line {n}: bad line {l:?}"),
        }
    }
    assert!(
        cases >= 25 && checks >= 80,
        "{cases} cases, {checks} checks"
    );
}

/// The NEURLFilterManager overview's 48 sub-URLs under the default configuration, whether it
/// comes from `Default`, from an empty file, or from a file spelling out every default.
#[test]
fn default_configuration_is_ios26() {
    let mut it = OVERVIEW
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let url = it.next().unwrap().strip_prefix("url ").unwrap();
    let want: Vec<&str> = it.collect();
    let spelled = r#"{"excludeScheme": true,
        "domain": {"excluded": false, "stripWWW": true, "levels": 0, "enumerateHierarchy": true},
        "path": {"excluded": false, "segments": 0, "enumerateHierarchy": true},
        "query": {"excluded": false}, "excludeFragment": false, "excludeIntermediates": false,
        "caseSensitive": false}"#;
    let toml = "excludeScheme = true\ncaseSensitive = false\n[domain]\nstripWWW = true\n";
    for c in [
        ParsingConfiguration::default(),
        cfg("{}"),
        cfg(spelled),
        ParsingConfiguration::from_toml(toml, "t").unwrap(),
    ] {
        assert!(c.is_default());
        assert_eq!(c.suburls(url).unwrap(), want);
        assert_eq!(c.summary(), ParsingConfiguration::default().summary());
    }
    assert_eq!(suburls(url).unwrap(), want);
}

/// TOML and JSON with Apple's names give the same configuration; `parsing.json` round-trips.
#[test]
fn files_with_apple_property_names() {
    let toml = "caseSensitive = true\nexcludeFragment = true\n[domain]\nstripWWW = false\nlevels = 3\n[path]\nexcluded = true\n[query]\nexcluded = true\n";
    let a = ParsingConfiguration::from_toml(toml, "t").unwrap();
    let b = cfg(r#"{"caseSensitive": true, "excludeFragment": true,
        "domain": {"stripWWW": false, "levels": 3}, "path": {"excluded": true},
        "query": {"excluded": true}}"#);
    assert_eq!(a, b);
    assert!(!a.domain.strip_www && a.domain.levels == 3 && a.path.excluded);
    assert_eq!(cfg(&a.to_json()), a);
    let json = a.to_json();
    for name in [
        "\"stripWWW\"",
        "\"caseSensitive\"",
        "\"excludeFragment\"",
        "\"enumerateHierarchy\"",
    ] {
        assert!(json.contains(name), "{name} missing from {json}");
    }
    let d = a.differences();
    assert!(d.contains(&"domain.stripWWW=false".to_owned()), "{d:?}");
    assert!(d.contains(&"caseSensitive=true".to_owned()), "{d:?}");
}

#[test]
fn typos_and_undocumented_outputs_are_refused() {
    // A misspelt name would otherwise silently mean the default.
    let e = ParsingConfiguration::from_json(r#"{"domain": {"stripWww": false}}"#, "p.json")
        .unwrap_err();
    assert!(matches!(e, ParsingError::Syntax { .. }), "{e}");
    assert!(e.to_string().contains("stripWWW"), "{e}");
    for (json, option) in [
        (
            r#"{"urlParsingRegularExpression": "^(.*)$"}"#,
            "urlParsingRegularExpression",
        ),
        (r#"{"excludeIntermediates": true}"#, "excludeIntermediates"),
        (r#"{"query": {"parameters": ["id"]}}"#, "query.parameters"),
        (
            r#"{"path": {"enumerateHierarchy": false}}"#,
            "path.enumerateHierarchy = false",
        ),
    ] {
        let e = ParsingConfiguration::from_json(json, "p.json").unwrap_err();
        match &e {
            ParsingError::Unsupported { option: o, .. } => assert_eq!(*o, option),
            _ => panic!("{json}: {e}"),
        }
        assert!(e.to_string().contains("will not guess"), "{e}");
        // Built in code, the same configuration fails every walk instead of guessing.
        let c: ParsingConfiguration = serde_json::from_str(json).unwrap();
        assert_eq!(
            c.suburls("https://example.com/a").unwrap_err(),
            KeyError::UnsupportedParsing(option)
        );
        assert!(c.normalize_key("example.com").is_err());
    }
    // Ignored options under an excluded component are fine ("parsing ignores all other options").
    cfg(r#"{"query": {"excluded": true, "parameters": ["id"]}}"#);
    cfg(r#"{"path": {"excluded": true, "enumerateHierarchy": false}}"#);
}

/// The round trip per configuration: every URL of the fixture, listed and normalised under C,
/// is among the sub-URLs the device enumerates for that URL under C, and the doctor's check
/// finds nothing wrong with the key.
#[test]
fn listed_urls_are_found_under_their_configuration() {
    let mut n = 0;
    for (c, urls) in fixture_configs() {
        for u in urls {
            let key = c.normalize_key(&u).unwrap();
            let subs = c.suburls(&u).unwrap();
            assert!(
                subs.contains(&key),
                "{u} -> {key} not in {subs:?} under {}",
                c.summary()
            );
            assert_eq!(c.key_mismatch(&key), None, "{key} under {}", c.summary());
            n += 1;
        }
    }
    assert!(n >= 25);
}

/// Keys normalised for one configuration, looked up under another: the mismatch is named.
#[test]
fn mismatches_are_named() {
    let default = ParsingConfiguration::default();
    // The configurations the cases use, by what they change.
    const NO_QUERY: &str = r#"{"query": {"excluded": true}}"#;
    const NO_PATH: &str = r#"{"path": {"excluded": true}}"#;
    const NO_FRAGMENT: &str = r#"{"excludeFragment": true}"#;
    const NO_DOMAIN: &str = r#"{"domain": {"excluded": true}}"#;
    const TWO_LEVELS: &str = r#"{"domain": {"levels": 2}}"#;
    const ONE_SEGMENT: &str = r#"{"path": {"segments": 1}}"#;
    const WITH_SCHEME: &str = r#"{"excludeScheme": false}"#;
    const CASE_SENSITIVE: &str = r#"{"caseSensitive": true}"#;
    const KEEP_WWW: &str = r#"{"domain": {"stripWWW": false}}"#;
    let cases = [
        ("{}", "example.com/Path", Some(Mismatch::UpperCase)),
        ("{}", "www.example.com/a", Some(Mismatch::Www)),
        ("{}", "https://example.com", Some(Mismatch::Scheme)),
        ("{}", "example.com/a?q=1", None),
        (NO_QUERY, "example.com/a?q=1", Some(Mismatch::Query)),
        (NO_QUERY, "example.com/a?%*", None),
        (NO_PATH, "example.com/a", Some(Mismatch::Path)),
        (NO_PATH, "example.com/%*", None),
        (NO_FRAGMENT, "example.com/#x", Some(Mismatch::Fragment)),
        (NO_DOMAIN, "example.com/a", Some(Mismatch::Domain)),
        (NO_DOMAIN, "%*/a", None),
        (TWO_LEVELS, "a.example.com", Some(Mismatch::Truncated)),
        (ONE_SEGMENT, "example.com/a/b", Some(Mismatch::Truncated)),
        (WITH_SCHEME, "example.com", Some(Mismatch::Scheme)),
        (CASE_SENSITIVE, "example.com/Path", None),
        (KEEP_WWW, "www.example.com/a", None),
    ];
    for (json, key, want) in cases {
        assert_eq!(cfg(json).key_mismatch(key), want, "{key} under {json}");
    }
    // The default-normalised key of a mixed-case URL cannot match a case-sensitive app that
    // sees the upper-case URL: the keys differ, which is why the configuration is recorded.
    let cs = cfg(r#"{"caseSensitive": true}"#);
    let k = default.normalize_key("https://example.com/Path").unwrap();
    assert!(!cs.suburls("https://example.com/Path").unwrap().contains(&k));
}

/// The list importer normalises every format under the app's configuration.
#[test]
fn importer_normalises_under_the_configuration() {
    let list = "https://WWW.Example.com/A?x=1#f\n0.0.0.0 www.Ads.example\n||WWW.Tracker.example^\n";
    let run = |json: &str| {
        let mut imp = sift_urlkeys::Importer::with_parsing(cfg(json));
        imp.import_reader("list.txt", list.as_bytes(), false)
            .unwrap();
        let (keys, report) = imp.finish();
        assert_eq!(report.accepted, 3, "{report:?}");
        keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(
        run("{}"),
        ["ads.example", "example.com/a?x=1#f", "tracker.example"]
    );
    assert_eq!(
        run(
            r#"{"caseSensitive": true, "domain": {"stripWWW": false}, "query": {"excluded": true}}"#
        ),
        [
            "www.ads.example",
            "www.example.com/A?%*#f",
            "www.tracker.example"
        ]
    );
}
