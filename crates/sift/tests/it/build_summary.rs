//! `sift build --json` and `sift update --json`: one JSON object on stdout (version, rows,
//! shards, bytes, skipped lines by reason with examples, warnings) while people's messages stay
//! on stderr; warnings for Apple's missing test entry and keywords a device never looks up.

use crate::common;

use std::path::Path;

use common::sift;

fn run_json(args: &[&std::ffi::OsStr]) -> (serde_json::Value, String) {
    let out = sift().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    (json, stderr)
}

fn build_json(inputs: &[&Path], out: &Path) -> (serde_json::Value, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["build".as_ref()];
    args.extend(inputs.iter().map(|p| p.as_os_str()));
    args.extend(["-o".as_ref(), out.as_os_str()]);
    args.extend(["--trials-per-shard", "0", "--json"].map(std::ffi::OsStr::new));
    run_json(&args)
}

fn warning_codes(json: &serde_json::Value) -> Vec<String> {
    json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn build_json_reports_the_version_its_shape_and_skipped_lines_by_reason() {
    let (tmp, list) = common::temp_dir_with(
        "list.txt",
        "ads.example\n||tracker.example^\nexample.org/path\n##.banner\nexample.com##.ad\n@@||good.example^\n",
    );
    let out = tmp.path().join("ds");
    let (json, stderr) = build_json(&[&list], &out);
    assert_eq!(json["command"], "build");
    let version = json["version"].as_str().unwrap();
    assert!(out.join("versions").join(version).is_dir(), "{json}");
    assert_eq!(json["rows"], 3);
    let shards = json["shards"].as_u64().unwrap();
    assert!(shards >= 1);
    let each = json["rows_per_shard"]["each"].as_array().unwrap();
    assert_eq!(each.len() as u64, shards);
    assert_eq!(each.iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 3);
    assert!(json["bytes"]["on_disk"].as_u64().unwrap() > 0);
    assert_eq!(json["rlwe_parameters"], "n_4096_logq_27_28_28_logt_5");
    let lists = &json["input"]["url_lists"];
    assert_eq!(lists["lines"], 6);
    assert_eq!(lists["skipped"], 3);
    let reasons = lists["skipped_by_reason"].as_array().unwrap();
    let counted: u64 = reasons.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 3, "{reasons:?}");
    for r in reasons {
        let examples = r["examples"].as_array().unwrap();
        assert!(!examples.is_empty() && examples.len() <= 3, "{r}");
        assert!(
            examples[0].as_str().unwrap().contains("list.txt:"),
            "examples name file:line: {r}"
        );
    }
    // No Apple test entry in this list: a warning, in JSON and for people.
    assert_eq!(warning_codes(&json), ["apple_test_entry_missing"]);
    assert!(
        stderr.contains(
            "warning: Apple's test entry www.apple.com/url-filter-test is not in the dataset"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.trim_start().starts_with('{'),
        "people's messages stay on stderr"
    );
}

#[test]
fn the_test_entry_silences_its_warning_and_update_json_reports_too() {
    let (tmp, list) =
        common::temp_dir_with("list.txt", "ads.example\nwww.apple.com/url-filter-test\n");
    let out = tmp.path().join("ds");
    let (json, stderr) = build_json(&[&list], &out);
    assert!(warning_codes(&json).is_empty(), "{json}");
    assert!(!stderr.contains("warning:"), "{stderr}");

    // sift update --json: the same summary with command "update"; removing the test entry
    // brings its warning back.
    let remove = common::write_file(
        tmp.path(),
        "remove.txt",
        "https://www.apple.com/url-filter-test\n",
    );
    let (json, _) = run_json(&[
        "update".as_ref(),
        out.as_os_str(),
        "--remove".as_ref(),
        remove.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(json["command"], "update");
    assert_eq!(json["rows"], 1);
    assert_eq!(warning_codes(&json), ["apple_test_entry_missing"]);
}

#[test]
fn keywords_a_device_never_looks_up_are_a_counted_warning_with_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("input.txtpb");
    std::fs::write(
        &db,
        r#"rows: [
  { keyword: "www.apple.com/url-filter-test", value: "1" },
  { keyword: "https://ads.example/x", value: "1" },
  { keyword: "Tracker.example", value: "1" },
  { keyword: "fine.example/path", value: "1" }
]
"#,
    )
    .unwrap();
    let out = tmp.path().join("ds");
    let (json, stderr) = build_json(&[&db], &out);
    assert_eq!(warning_codes(&json), ["unlikely_lookups"], "{json}");
    let w = &json["warnings"][0];
    assert_eq!(w["count"], 2);
    let examples: Vec<&str> = w["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(examples.len(), 2);
    assert!(
        examples
            .iter()
            .any(|e| e.contains("https://ads.example/x") && e.contains("scheme"))
    );
    assert!(
        examples
            .iter()
            .any(|e| e.contains("Tracker.example") && e.contains("upper case"))
    );
    assert!(
        stderr.contains(
            "warning: 2 keyword(s) are kept as given but a device would never look them up"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("e.g. ") && stderr.contains("input.txtpb"),
        "{stderr}"
    );
}

#[test]
fn phone_number_datasets_need_no_url_filter_test_entry() {
    let (tmp, db) = common::temp_dir_with(
        "numbers.txtpb",
        "rows: [{ keyword: \"+14085551212\", value: \"Johnny Appleseed\" }]\n",
    );
    let (json, _) = build_json(&[&db], &tmp.path().join("ds"));
    assert!(warning_codes(&json).is_empty(), "{json}");
}
