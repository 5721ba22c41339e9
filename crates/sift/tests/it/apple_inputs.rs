//! Apple's own input shapes: a one-line list-syntax `KeywordDatabase` for `sift prefilter build`
//! (as in pir-service-example's `TestingInstructionsNEURLFilter.md`), and a PIRProcessDatabase
//! JSON configuration whose `inputDatabase`, `outputDatabase` and `outputPirParameters` are used
//! as Apple's tool uses them.

use std::path::Path;

use crate::common::{sift, stderr_of_success};

/// The keys of Apple's prefilter sample (SimpleURLFilter), as a one-line `rows: [...]` file.
fn one_line_database() -> String {
    let mut keys = vec!["example.com".to_string()];
    keys.extend((2..=9).map(|i| format!("example{i}.com")));
    keys.push("example10.com/resource?query=bugs".into());
    let rows: Vec<String> = keys
        .iter()
        .map(|k| format!("{{ keyword: \"{k}\" value: \"1\" }}"))
        .collect();
    format!("rows: [{}]", rows.join(", "))
}

#[test]
fn prefilter_build_reads_a_one_line_list_syntax_database() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txtpb");
    std::fs::write(&input, one_line_database()).unwrap();
    let out_dir = dir.path().join("out");
    let err = stderr_of_success(
        sift()
            .args(["prefilter", "build"])
            .arg(&input)
            .arg("-o")
            .arg(&out_dir)
            .args(["--seed", "1267652889", "--format", "plist"]),
    );
    assert!(err.contains("10 keys"), "{err}");
    // The same filter as Apple's sample built from the plain list (cli.rs).
    let plist = std::fs::read_to_string(out_dir.join("prefilter.plist")).unwrap();
    assert!(plist.contains("JGguOvZzlBEHYkUWJC5vw/eH"), "{plist}");
}

/// Runs `sift build` in `cwd` with `args`; its stderr, or a panic with it on failure.
fn build_in(cwd: &Path, args: &[&str]) -> String {
    stderr_of_success(sift().current_dir(cwd).arg("build").args(args))
}

#[test]
fn build_config_paths_work_as_in_pir_process_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("input.txtpb"), one_line_database()).unwrap();
    // Apple's documented shape (PIRProcessDatabase.md), with relative paths and two shards.
    let config = serde_json::json!({
        "inputDatabase": "input.txtpb",
        "outputDatabase": "apple/database-SHARD_ID.bin",
        "outputPirParameters": "apple/pir-parameters-SHARD_ID.binpb",
        "outputEvaluationKeyConfig": "apple/evaluation-key-config.txtpb",
        "rlweParameters": "n_4096_logq_27_28_28_logt_5",
        "sharding": { "shardCount": 2 },
        "trialsPerShard": 1
    });
    std::fs::write(d.join("config.json"), config.to_string()).unwrap();

    // No input and no -o: Apple's files only, no dataset and no scratch folder left behind.
    let err = build_in(d, &["--config", "config.json"]);
    assert!(err.contains("apple/database-1.bin"), "{err}");
    let mut left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["apple", "config.json", "input.txtpb"]);
    let apple = d.join("apple");
    let first: Vec<Vec<u8>> = (0..2)
        .map(|i| std::fs::read(apple.join(format!("database-{i}.bin"))).unwrap())
        .collect();
    for i in 0..2 {
        let p = apple.join(format!("pir-parameters-{i}.binpb"));
        let params = sift_pir::server::parse_parameters(&p, &std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(params.dimensions.len(), 2, "shard {i}");
        assert!(params.num_entries > 0, "shard {i}");
    }
    assert!(
        std::fs::read_to_string(apple.join("evaluation-key-config.txtpb"))
            .unwrap()
            .contains("galois")
    );

    // With -o: the versioned dataset as well, and Apple's files are its shards.
    let err = build_in(
        d,
        &["--config", "config.json", "-o", "dataset", "--seed", "3"],
    );
    assert!(err.contains("published version"), "{err}");
    for i in 0..2 {
        assert_eq!(
            std::fs::read(apple.join(format!("database-{i}.bin"))).unwrap(),
            std::fs::read(d.join(format!("dataset/current/url-{i}.bin"))).unwrap()
        );
    }
    assert_eq!(first.len(), 2);
}

#[test]
fn build_config_outputs_without_shard_id_or_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("input.txtpb"), one_line_database()).unwrap();
    let run = |config: serde_json::Value| {
        std::fs::write(d.join("c.json"), config.to_string()).unwrap();
        let out = sift()
            .current_dir(d)
            .args(["build", "--config", "c.json"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(serde_json::json!({
        "inputDatabase": "input.txtpb",
        "outputDatabase": "db-0.bin",
        "outputPirParameters": "p-SHARD_ID.txtpb",
        "sharding": { "shardCount": 2 }
    }));
    assert!(
        err.contains("outputDatabase") && err.contains("SHARD_ID"),
        "{err}"
    );
    let err = run(serde_json::json!({ "outputDatabase": "db-SHARD_ID.bin" }));
    assert!(err.contains("outputPirParameters"), "{err}");
    let err = run(serde_json::json!({ "rlweParameters": "n_4096_logq_27_28_28_logt_5" }));
    assert!(err.contains("inputDatabase"), "{err}");
    assert!(!d.join("db-0.bin").exists());
}
