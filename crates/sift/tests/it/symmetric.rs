//! `sift build` with Apple's `symmetricPirArguments`, served by `sift-server` and queried by the
//! device flow: generate the key, reuse it, and look values up through OPRF + keyword PIR.

use crate::common;

use common::{sift, stdout_of_success};

const USECASE: &str = "com.example.app.url.filtering";

fn build(list: &std::path::Path, out: &std::path::Path, config: &std::path::Path) {
    stdout_of_success(
        sift()
            .arg("build")
            .arg(list)
            .arg("-o")
            .arg(out)
            .arg("--config")
            .arg(config),
    );
}

fn published_key(out: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read_to_string(out.join("current/url-0.params.txtpb")).unwrap();
    let p: sift_proto::pir::PirParameters = sift_proto::from_text(&text).unwrap();
    sift_pir::wire::symmetric_pir_client_config(&p)
        .unwrap()
        .expect("the parameters carry the symmetric PIR config")
        .server_public_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_serve_and_look_up_with_symmetric_pir() {
    let (dir, list) = common::temp_dir_with(
        "list.txt",
        "blocked.example\nads.example.net\nexample.org/path\n",
    );
    let key_file = dir.path().join("key.txt");

    // Generate a key (outputDatabaseEncryptionKeyFilePath).
    let cfg = dir.path().join("gen.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"symmetricPirArguments": {
            "outputDatabaseEncryptionKeyFilePath": key_file,
            "configType": "OPRF_P384_AES_GCM_192_NONCE_96_TAG_128"}})
        .to_string(),
    )
    .unwrap();
    let out1 = dir.path().join("out1");
    build(&list, &out1, &cfg);
    let key = sift_spir::read_key_file(&key_file).unwrap();
    assert_eq!(published_key(&out1), key.public_key().to_vec());

    // Reuse it (databaseEncryptionKeyFilePath): same public key, key file untouched.
    let cfg = dir.path().join("reuse.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"symmetricPirArguments": {"databaseEncryptionKeyFilePath": key_file}})
            .to_string(),
    )
    .unwrap();
    let out2 = dir.path().join("out2");
    build(&list, &out2, &cfg);
    assert_eq!(published_key(&out2), key.public_key().to_vec());
    assert_eq!(
        sift_spir::read_key_file(&key_file).unwrap().to_bytes(),
        key.to_bytes()
    );

    // Serve it and look up as the device does.
    let config = common::symmetric_config(&dir.path().join("state"), USECASE, &out2, &key_file);
    let (server, mut devices) = common::serve_devices(&config, &[USECASE]).await;
    let device = &mut devices[0];
    for k in ["blocked.example", "example.org/path"] {
        assert_eq!(
            device.lookup(k).await.unwrap().0.as_deref(),
            Some(&b"1"[..])
        );
    }
    assert_eq!(device.lookup("allowed.example").await.unwrap().0, None);
    server.stop().await;

    // Both key sources at once is an error, not a panic.
    let cfg = dir.path().join("both.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"symmetricPirArguments": {
            "databaseEncryptionKeyFilePath": key_file,
            "outputDatabaseEncryptionKeyFilePath": key_file}})
        .to_string(),
    )
    .unwrap();
    let out = sift()
        .arg("build")
        .arg(&list)
        .arg("-o")
        .arg(dir.path().join("out3"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
