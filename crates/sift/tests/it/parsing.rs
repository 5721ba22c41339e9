//! The app's URL parsing configuration end to end, as separate processes: per configuration C,
//! `sift build --parsing C` a dataset from a list, `sift serve` all of them, and `sift check
//! --parsing C` finds every listed URL; a dataset built under one configuration and an app
//! using another is flagged by `sift doctor`.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use crate::common;

use common::{sift, stdout_of_success};

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

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(config: &Path) -> (Server, String) {
    let mut child = sift()
        .args(["serve", "--poll-secs", "0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("sift serve exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("sift serve: listening on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, base)
}

fn config_file(root: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let ext = if text.trim_start().starts_with('{') {
        "json"
    } else {
        "toml"
    };
    let p = root.join(format!("{name}.{ext}"));
    std::fs::write(&p, text).unwrap();
    p
}

fn build(list: &Path, out: &Path, parsing: &Path) {
    let o = sift()
        .arg("build")
        .arg(list)
        .arg("-o")
        .arg(out)
        .arg("--parsing")
        .arg(parsing)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sift build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
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
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["url"].as_str().unwrap().to_owned(),
                v["blocked"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn listed_urls_are_blocked_under_each_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let list = root.join("list.txt");
    std::fs::write(&list, LISTED.join("\n")).unwrap();
    let mut toml = format!(
        "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nstate_dir = \"state\"\n\
         [[users]]\ntier = \"tier1\"\ntokens = [\"{USER_TOKEN}\"]\n"
    );
    let mut files = Vec::new();
    for (name, text, _) in CONFIGS {
        let file = config_file(root, name, text);
        let out = root.join(name);
        build(&list, &out, &file);
        // The configuration is recorded with the dataset, with Apple's property names.
        let record = std::fs::read_to_string(out.join("parsing.json")).unwrap();
        assert!(record.contains("\"stripWWW\""), "{record}");
        toml.push_str(&format!(
            "[[usecases]]\nname = \"com.example.{name}.url.filtering\"\ndataset_dir = \"{name}\"\n"
        ));
        files.push(file);
    }
    let config = root.join("sift.toml");
    std::fs::write(&config, toml).unwrap();
    let (_server, base) = start_server(&config);
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
    let list = root.join("list.txt");
    std::fs::write(&list, LISTED.join("\n")).unwrap();
    let app = config_file(
        root,
        "app",
        r#"{"caseSensitive": true, "domain": {"stripWWW": false}}"#,
    );
    let ios26 = config_file(root, "ios26", "{}");
    // A prefilter folder built under the iOS 26 default (no real service needed for doctor).
    let pf = root.join("pf");
    stdout_of_success(
        sift()
            .args(["prefilter", "build"])
            .arg(&list)
            .arg("-o")
            .arg(&pf)
            .arg("--parsing")
            .arg(&ios26),
    );
    let doctor = |app_file: &Path| {
        let o = sift()
            .args(["doctor", "--bundle-id", "com.example.app"])
            .args(["--service", "https://pir.example.com"])
            .args(["--issuer", "https://issuer.example.com"])
            .args(["--gateway", "https://ohttp.example.com"])
            .arg("--parsing")
            .arg(app_file)
            .arg("--dataset")
            .arg(&pf)
            .arg("--lists")
            .arg(&list)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, out) = doctor(&ios26);
    assert!(ok, "{out}");
    assert!(
        out.contains("all 7 keys of the lists can be asked for"),
        "{out}"
    );
    let (ok, out) = doctor(&app);
    assert!(!ok, "{out}");
    assert!(out.contains("dataset built under iOS 26 default"), "{out}");
    assert!(out.contains("caseSensitive=true"), "{out}");
    // The keys themselves: the default build lowercased them and stripped www., which a
    // case-sensitive app that keeps www. can still ask for only where the URL had neither.
    assert!(out.contains("FAIL"), "{out}");

    // Keys built for the app, checked against the iOS 26 default: upper case and www. counted.
    let pf2 = root.join("pf2");
    stdout_of_success(
        sift()
            .args(["prefilter", "build"])
            .arg(&list)
            .arg("-o")
            .arg(&pf2)
            .arg("--parsing")
            .arg(&app),
    );
    let o = sift()
        .args(["doctor", "--bundle-id", "com.example.app"])
        .args(["--service", "https://pir.example.com"])
        .args(["--issuer", "https://issuer.example.com"])
        .args(["--gateway", "https://ohttp.example.com"])
        .arg("--dataset")
        .arg(&pf2)
        .arg("--lists")
        .arg(&list)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
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
