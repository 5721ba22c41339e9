//! Issue 19, Privacy Pass windows through the running server: the issuer directory publishes
//! each key's `not-before` (RFC 9578; Apple's client checks it), and the issuance rate limit
//! follows a config reload without a restart.

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_has_not_before_and_the_issue_limit_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nrequire_tokens = false\n\
         state_dir = \"{}\"\n[[users]]\ntier = \"t\"\ntokens = [\"user-1\"]\n",
        tmp.path().display()
    );
    let cfg: sift_server::ServerConfig = toml::from_str(&text).unwrap();
    let server = sift_server::spawn(cfg.clone(), None).await.unwrap();
    let base = server.base_url();
    let http = reqwest::Client::new();

    let body =
        common::bytes_of(http.get(format!("{base}/.well-known/private-token-issuer-directory")))
            .await;
    let dir: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let keys = dir["token-keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{dir}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nb = keys[0]["not-before"].as_u64().expect("not-before");
    assert!(nb <= now, "the signing key is valid now: {nb} > {now}");
    // The key file carries its start.
    let files: Vec<String> = std::fs::read_dir(tmp.path().join("issuer"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.len() == 1 && files[0].starts_with("t.") && files[0].ends_with(".pem"),
        "{files:?}"
    );

    // A malformed token request: 400 when the limit lets it through, 429 when not.
    let issue = || async {
        common::status_of(
            http.post(format!("{base}/issue"))
                .header("authorization", "Bearer user-1")
                .body(vec![0u8; 10]),
        )
        .await
    };
    for _ in 0..3 {
        assert_eq!(issue().await, 400);
    }
    let mut next = cfg.clone();
    next.limits.issue_per_minute = 1;
    next.limits.issue_burst = 1;
    let notes = server.state.apply_config(&next).unwrap().join("\n");
    assert!(notes.contains("[limits] applied"), "{notes}");
    assert!(
        !notes.contains("issue_per_minute"),
        "no restart needed: {notes}"
    );
    assert_eq!(issue().await, 400);
    assert_eq!(issue().await, 429);
    server.stop().await;
}
