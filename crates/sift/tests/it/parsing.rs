//! The app's URL parsing configuration end to end, as separate processes: per configuration C,
//! `sift build --parsing C` a dataset from a list, `sift serve` all of them, and `sift check
//! --parsing C` finds every listed URL; a dataset built under one configuration and an app
//! using another is flagged by `sift doctor`.

use std::path::Path;

use crate::common;

use common::{serve, sift, stdout_of_success, usecase_toml, users_toml, verdicts, write_file};

const USER_TOKEN: &str = "parsing-user-token";

/// What operators list: mixed case, `www.`, ports, queries, fragments, IDN, percent-encoding.
const LISTED: &[&str] = &[
    "https://www.Example.com/Shop/Cart?Item=7#Top",
    "http://WWW.Tracker.example/Pixel.gif",
    "ads.example",
    "https://sub.domain.example/a/b/c",
    "www.apple.com/url-filter-test",
    "https://bücher.example/Café",
    "https://example.net/a%20b/C",
];

/// (name, configuration file, listed URLs' variants the device must NOT block under it).
const CONFIGS: &[(&str, &str, &[&str])] = &[
    ("default", "{}", &["https://www.example.com/shop"]),
    (
        "casesensitive-www",
        r#"{"caseSensitive": true, "domain": {"stripWWW": false}}"#,
        &["https://www.example.com/shop/cart?item=7#top"],
    ),
    (
        "excluded-parts",
        r#"{"path": {"excluded": true}, "query": {"excluded": true}, "excludeFragment": true}"#,
        &["https://www.example.com/"],
    ),
    (
        "scheme-levels-segments",
        "excludeScheme = false\n[domain]\nlevels = 2\n[path]\nsegments = 1\n",
        &["https://example.org/a"],
    ),
];

fn config_file(root: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let ext = if text.trim_start().starts_with('{') {
        "json"
    } else {
        "toml"
    };
    write_file(root, &format!("{name}.{ext}"), text)
}

fn build(list: &Path, out: &Path, parsing: &Path) {
    let mut cmd = sift();
    cmd.arg("build").arg(list).arg("-o").arg(out);
    stdout_of_success(cmd.arg("--parsing").arg(parsing));
}

/// The verdicts of `sift check --json` for `urls`, as (url, blocked).
fn check(
    base: &str,
    usecase: &str,
    dataset: &Path,
    parsing: &Path,
    urls: &[&str],
) -> Vec<(String, bool)> {
    let stdout = stdout_of_success(
        sift()
            .args(["check", "--json", "--usecase", usecase])
            .args(["--service", base, "--issuer", base])
            .args(["--user-token", USER_TOKEN])
            .arg("--prefilter")
            .arg(dataset.join("current/prefilter"))
            .arg("--parsing")
            .arg(parsing)
            .args(urls),
    );
    verdicts(&stdout)
}

#[test]
fn listed_urls_are_blocked_under_each_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let list = write_file(root, "list.txt", &LISTED.join("\n"));
    let mut toml =
        "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nstate_dir = \"state\"\n".to_owned();
    toml += &users_toml(USER_TOKEN);
    let mut files = Vec::new();
    for (name, text, _) in CONFIGS {
        let file = config_file(root, name, text);
        let out = root.join(name);
        build(&list, &out, &file);
        // The configuration is recorded with the dataset, with Apple's property names.
        let record = std::fs::read_to_string(out.join("parsing.json")).unwrap();
        assert!(record.contains("\"stripWWW\""), "{record}");
        toml += &usecase_toml(&format!("com.example.{name}.url.filtering"), name);
        files.push(file);
    }
    let (_server, base) = serve(&write_file(root, "sift.toml", &toml));
    for ((name, _, allowed), file) in CONFIGS.iter().zip(&files) {
        let usecase = format!("com.example.{name}.url.filtering");
        let mut urls: Vec<&str> = LISTED.to_vec();
        urls.extend_from_slice(allowed);
        let got = check(&base, &usecase, &root.join(name), file, &urls);
        let want: Vec<(String, bool)> = urls
            .iter()
            .enumerate()
            .map(|(i, u)| (u.to_string(), i < LISTED.len()))
            .collect();
        assert_eq!(got, want, "configuration {name}");
    }
    // The same dataset checked as an iOS 26 device would: the case-sensitive keys are missed.
    // This is the wrong answer the recorded configuration exists to prevent.
    let default = &files[0];
    let got = check(
        &base,
        "com.example.casesensitive-www.url.filtering",
        &root.join("casesensitive-www"),
        default,
        &["https://www.Example.com/Shop/Cart?Item=7#Top"],
    );
    assert!(!got[0].1, "{got:?}");
}

#[test]
fn doctor_flags_a_dataset_built_for_another_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let list = write_file(root, "list.txt", &LISTED.join("\n"));
    let app = config_file(
        root,
        "app",
        r#"{"caseSensitive": true, "domain": {"stripWWW": false}}"#,
    );
    let ios26 = config_file(root, "ios26", "{}");
    // A prefilter folder built under the iOS 26 default (no real service needed for doctor).
    let prefilter_build = |out: &Path, parsing: &Path| {
        let mut cmd = sift();
        cmd.args(["prefilter", "build"]).arg(&list);
        stdout_of_success(cmd.arg("-o").arg(out).arg("--parsing").arg(parsing));
    };
    let pf = root.join("pf");
    prefilter_build(&pf, &ios26);
    // `sift doctor` for the app's parsing file (none: the iOS 26 default) and a dataset.
    let doctor = |app_file: Option<&Path>, dataset: &Path| {
        let mut cmd = sift();
        cmd.args(["doctor", "--bundle-id", "com.example.app"])
            .args(["--service", "https://pir.example.com"])
            .args(["--issuer", "https://issuer.example.com"])
            .args(["--gateway", "https://ohttp.example.com"]);
        if let Some(file) = app_file {
            cmd.arg("--parsing").arg(file);
        }
        let o = cmd
            .arg("--dataset")
            .arg(dataset)
            .arg("--lists")
            .arg(&list)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, out) = doctor(Some(&ios26), &pf);
    assert!(ok, "{out}");
    assert!(
        out.contains("all 7 keys of the lists can be asked for"),
        "{out}"
    );
    let (ok, out) = doctor(Some(&app), &pf);
    assert!(!ok, "{out}");
    assert!(out.contains("dataset built under iOS 26 default"), "{out}");
    assert!(out.contains("caseSensitive=true"), "{out}");
    // The keys themselves: the default build lowercased them and stripped www., which a
    // case-sensitive app that keeps www. can still ask for only where the URL had neither.
    assert!(out.contains("FAIL"), "{out}");

    // Keys built for the app, checked against the iOS 26 default: upper case and www. counted.
    let pf2 = root.join("pf2");
    prefilter_build(&pf2, &app);
    let (ok, out) = doctor(None, &pf2);
    assert!(!ok, "{out}");
    assert!(
        out.contains("keys can never match: upper-case letters"),
        "{out}"
    );
    assert!(out.contains("keys can never match: `www.` host"), "{out}");
    assert!(
        out.contains("www.example.com/Shop/Cart?Item=7#Top")
            || out.contains("www.tracker.example/Pixel.gif"),
        "{out}"
    );
}
