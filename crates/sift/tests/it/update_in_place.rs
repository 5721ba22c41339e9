//! `sift update` in place on a symmetric-PIR dataset: the changes are OPRF-transformed with the
//! build's key, applied at bucket level, and served to the device flow.

use crate::common;

use common::{sift, stdout_of_success};

const USECASE: &str = "com.example.app.url.filtering";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sift_update_changes_a_symmetric_pir_dataset_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    let keys: Vec<String> = (0..60).map(|i| format!("k-{i}.example")).collect();
    std::fs::write(&list, keys.join("\n") + "\n").unwrap();
    let key_file = dir.path().join("key.txt");
    let cfg = dir.path().join("gen.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"symmetricPirArguments": {
            "outputDatabaseEncryptionKeyFilePath": key_file}})
        .to_string(),
    )
    .unwrap();
    let data = dir.path().join("data");
    stdout_of_success(
        sift()
            .arg("build")
            .arg(&list)
            .arg("-o")
            .arg(&data)
            .args(["--config"])
            .arg(&cfg)
            .args(["--shard-count", "2"]),
    );
    let params = |i: usize| std::fs::read(data.join(format!("current/url-{i}.params.txtpb")));
    let before = (params(0).unwrap(), params(1).unwrap());

    let add = dir.path().join("add.txt");
    let remove = dir.path().join("remove.txt");
    std::fs::write(&add, "new.example\n").unwrap();
    std::fs::write(&remove, "k-3.example\n").unwrap();
    let err = common::update(&data, &add, &remove);
    assert!(err.contains("1 removed, 1 added"), "{err}");
    assert!(
        !err.contains("now. 0 shard(s) changed in place") && !err.contains("processed afresh:"),
        "{err}"
    );
    // Shards changed in place keep their parameters (and so the config id) byte for byte.
    assert_eq!((params(0).unwrap(), params(1).unwrap()), before);

    let config = common::symmetric_config(&dir.path().join("state"), USECASE, &data, &key_file);
    let (server, mut devices) = common::serve_devices(&config, &[USECASE]).await;
    let device = &mut devices[0];
    for (k, expect) in [
        ("new.example", true),
        ("k-3.example", false),
        ("k-4.example", true),
        ("allowed.example", false),
    ] {
        assert_eq!(device.lookup(k).await.unwrap().0.is_some(), expect, "{k}");
    }
    server.stop().await;
}
