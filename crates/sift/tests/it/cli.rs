//! The `sift` binary end to end: the README's main command and the prefilter known answer.

use crate::common;

use std::path::Path;

use common::{assert_contains_all, output_of_failure, sift, stdout_of_success, write_file};

#[test]
fn demo_blocks_listed_urls_and_allows_others() {
    let stdout = stdout_of_success(sift().args([
        "demo",
        "https://www.apple.com/url-filter-test",
        "https://cdn.badsite.example/x",
        "https://www.example.com/",
    ]));
    // After the URL checks, the caller-ID lookups: Apple's example identities.
    let grocery = "identity: \"Grocery Store\" (business), cache 18 min, icon 3000 bytes";
    assert_contains_all(
        &stdout,
        &[
            "BLOCKED  https://www.apple.com/url-filter-test",
            "BLOCKED  https://cdn.badsite.example/x",
            "allowed  https://www.example.com/",
            "+1234: BLOCK ",
            grocery,
            "+1999: not in the block dataset",
        ],
    );
}

/// Runs `sift prefilter build LIST -o OUT EXTRA…`, which must succeed.
fn prefilter_build(list: &Path, out: &Path, extra: &[&str]) {
    stdout_of_success(
        sift()
            .args(["prefilter", "build"])
            .arg(list)
            .arg("-o")
            .arg(out)
            .args(extra),
    );
}

#[test]
fn prefilter_build_reproduces_apples_sample() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = vec!["example.com".to_string()];
    items.extend((2..=9).map(|i| format!("example{i}.com")));
    items.push("example10.com/resource?query=bugs".into());
    let list = write_file(dir.path(), "sample.txt", &items.join("\n"));
    let out_dir = dir.path().join("out");
    prefilter_build(
        &list,
        &out_dir,
        &["--seed", "1267652889", "--format", "plist"],
    );
    let plist = std::fs::read_to_string(out_dir.join("prefilter.plist")).unwrap();
    assert!(plist.contains("JGguOvZzlBEHYkUWJC5vw/eH"), "{plist}");
}

#[test]
fn bad_input_gives_an_error_not_a_panic() {
    let (_, err) = output_of_failure(sift().args([
        "prefilter",
        "build",
        "/nonexistent/list.txt",
        "-o",
        "/tmp/sift-never",
    ]));
    assert!(err.contains("error"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = sift()
        .args(["suburls", "not a url at all"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn doctor_flags_onboarding_rule_violations() {
    let stdout = stdout_of_success(
        sift()
            .args([
                "doctor",
                "--service",
                "https://pir.example.com",
                "--issuer",
                "https://issuer.example.com",
            ])
            .args([
                "--gateway",
                "https://ohttp.example.com",
                "--bundle-id",
                "com.example.app",
            ]),
    );
    assert!(
        stdout.contains("apple-url-filter=com.example.app"),
        "{stdout}"
    );
    let bad = sift()
        .args([
            "doctor",
            "--service",
            "https://example.com/pir",
            "--issuer",
            "https://example.com:8443",
        ])
        .args([
            "--gateway",
            "http://example.com/",
            "--bundle-id",
            "com.example.app",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success());
    let rules = [
        "path `/pir`",
        "custom port 8443",
        "HTTPS required",
        "separate subdomains",
    ];
    assert_contains_all(&stdout, &rules);
}

#[test]
fn empty_lists_are_refused_without_partial_output() {
    let (dir, empty) = common::temp_dir_with("empty.txt", "");
    let blank = write_file(dir.path(), "blank.txt", "\n   \n\n");
    for list in [&empty, &blank] {
        let out_dir = dir.path().join("dataset");
        let (_, err) = output_of_failure(sift().arg("build").arg(list).arg("-o").arg(&out_dir));
        assert!(err.contains("nothing to build"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out_dir.exists(), "sift build left {}", out_dir.display());
        let out_dir = dir.path().join("prefilter");
        let mut cmd = sift();
        cmd.args(["prefilter", "build"]).arg(list);
        let (_, err) = output_of_failure(cmd.arg("-o").arg(&out_dir));
        assert!(err.contains("no usable keys"), "{err}");
        assert!(
            !out_dir.exists(),
            "sift prefilter build left {}",
            out_dir.display()
        );
    }
}

#[test]
fn prefilter_test_says_which_sub_urls_may_be_listed() {
    let (dir, list) = common::temp_dir_with("list.txt", "blocked.example\nbad.example.org/path\n");
    let out_dir = dir.path().join("pf");
    prefilter_build(&list, &out_dir, &["--seed", "7"]);
    let test =
        |url: &str| stdout_of_success(sift().args(["prefilter", "test"]).arg(&out_dir).arg(url));
    let hit = test("https://www.blocked.example/some/page");
    assert!(hit.contains("maybe blocked.example"), "{hit}");
    assert!(
        hit.contains("may be listed: the device asks the PIR server"),
        "{hit}"
    );
    let miss = test("https://allowed.example/");
    assert!(miss.contains("no sub-URL in the prefilter"), "{miss}");
    assert!(!miss.contains("maybe"), "{miss}");
    // A missing prefilter directory is an error naming it, not a panic.
    let (_, err) = output_of_failure(
        sift()
            .args(["prefilter", "test"])
            .arg(dir.path().join("none"))
            .arg("https://a.example/"),
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Unknown encryption parameters are refused before any input is read (the input here does
/// not exist, so an error about it would mean the import ran first), naming the valid sets.
#[test]
fn unknown_rlwe_parameters_are_refused_before_the_import() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-list.txt");
    let out = tmp.path().join("out");
    let (_, err) = output_of_failure(
        sift()
            .args(["build", "--rlwe-parameters", "n_4096_typo"])
            .arg(&missing)
            .arg("-o")
            .arg(&out),
    );
    assert!(err.contains("n_4096_logq_27_28_28_logt_5"), "{err}");
    assert!(!err.contains("no-such-list"), "{err}");

    let config = write_file(
        tmp.path(),
        "pir.json",
        r#"{"rlweParameters": "n_4096_typo"}"#,
    );
    let (_, err) = output_of_failure(
        sift()
            .arg("build")
            .arg("--config")
            .arg(&config)
            .arg(&missing)
            .arg("-o")
            .arg(&out),
    );
    assert!(
        err.contains("pir.json") && err.contains("n_4096_logq_27_28_28_logt_5"),
        "{err}"
    );
    assert!(!err.contains("no-such-list"), "{err}");
    assert!(!out.exists(), "no output for a refused build");
}
