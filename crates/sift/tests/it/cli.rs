//! The `sift` binary end to end: the README's main command and the prefilter known answer.

use crate::common;

use common::{sift, stdout_of_success};

#[test]
fn demo_blocks_listed_urls_and_allows_others() {
    let stdout = stdout_of_success(sift().args([
        "demo",
        "https://www.apple.com/url-filter-test",
        "https://cdn.badsite.example/x",
        "https://www.example.com/",
    ]));
    assert!(
        stdout.contains("BLOCKED  https://www.apple.com/url-filter-test"),
        "{stdout}"
    );
    assert!(
        stdout.contains("BLOCKED  https://cdn.badsite.example/x"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed  https://www.example.com/"),
        "{stdout}"
    );
    // The caller-ID lookups beside the URL checks: Apple's example identities.
    assert!(stdout.contains("+1234: BLOCK "), "{stdout}");
    assert!(
        stdout.contains("identity: \"Grocery Store\" (business), cache 18 min, icon 3000 bytes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+1999: not in the block dataset"),
        "{stdout}"
    );
}

#[test]
fn prefilter_build_reproduces_apples_sample() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("sample.txt");
    let mut items = vec!["example.com".to_string()];
    items.extend((2..=9).map(|i| format!("example{i}.com")));
    items.push("example10.com/resource?query=bugs".into());
    std::fs::write(&list, items.join("\n")).unwrap();
    let out_dir = dir.path().join("out");
    let out = sift()
        .args(["prefilter", "build"])
        .arg(&list)
        .arg("-o")
        .arg(&out_dir)
        .args(["--seed", "1267652889", "--format", "plist"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plist = std::fs::read_to_string(out_dir.join("prefilter.plist")).unwrap();
    assert!(plist.contains("JGguOvZzlBEHYkUWJC5vw/eH"), "{plist}");
}

#[test]
fn bad_input_gives_an_error_not_a_panic() {
    let out = sift()
        .args([
            "prefilter",
            "build",
            "/nonexistent/list.txt",
            "-o",
            "/tmp/sift-never",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
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
    let good = sift()
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
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{stdout}");
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
    for needle in [
        "path `/pir`",
        "custom port 8443",
        "HTTPS required",
        "separate subdomains",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in {stdout}");
    }
}

#[test]
fn empty_lists_are_refused_without_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "\n   \n\n").unwrap();
    for list in [&empty, &blank] {
        let out_dir = dir.path().join("dataset");
        let out = sift()
            .arg("build")
            .arg(list)
            .arg("-o")
            .arg(&out_dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "sift build {}: {err}",
            list.display()
        );
        assert!(err.contains("nothing to build"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out_dir.exists(), "sift build left {}", out_dir.display());
        let out_dir = dir.path().join("prefilter");
        let out = sift()
            .args(["prefilter", "build"])
            .arg(list)
            .arg("-o")
            .arg(&out_dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "sift prefilter build: {err}");
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
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "blocked.example\nbad.example.org/path\n").unwrap();
    let out_dir = dir.path().join("pf");
    stdout_of_success(
        sift()
            .args(["prefilter", "build"])
            .arg(&list)
            .arg("-o")
            .arg(&out_dir)
            .args(["--seed", "7"]),
    );
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
    let out = sift()
        .args(["prefilter", "test"])
        .arg(dir.path().join("none"))
        .arg("https://a.example/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
}

/// Unknown encryption parameters are refused before any input is read (the input here does
/// not exist, so an error about it would mean the import ran first), naming the valid sets.
#[test]
fn unknown_rlwe_parameters_are_refused_before_the_import() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-list.txt");
    let out = tmp.path().join("out");
    let flag = sift()
        .args(["build", "--rlwe-parameters", "n_4096_typo"])
        .arg(&missing)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&flag.stderr);
    assert!(!flag.status.success());
    assert!(err.contains("n_4096_logq_27_28_28_logt_5"), "{err}");
    assert!(!err.contains("no-such-list"), "{err}");

    let config = tmp.path().join("pir.json");
    std::fs::write(&config, r#"{"rlweParameters": "n_4096_typo"}"#).unwrap();
    let file = sift()
        .arg("build")
        .arg("--config")
        .arg(&config)
        .arg(&missing)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&file.stderr);
    assert!(!file.status.success());
    assert!(
        err.contains("pir.json") && err.contains("n_4096_logq_27_28_28_logt_5"),
        "{err}"
    );
    assert!(!err.contains("no-such-list"), "{err}");
    assert!(!out.exists(), "no output for a refused build");
}
