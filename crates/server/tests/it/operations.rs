//! What an operator changes on a running server: a renewed certificate, new user tokens and
//! use cases take effect without a restart or a dropped connection; a broken certificate is
//! refused while the old one keeps serving; every request is counted once with bounded labels.

use crate::common;

use common::*;

/// A CA and a leaf for 127.0.0.1 signed by it, written to `dir/cert.pem`, `dir/key.pem`;
/// returns the CA's PEM.
fn write_leaf(dir: &std::path::Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca.pem()
}

fn client_trusting(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_serves_without_dropping_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    write_dataset(&data, &[("example.com", "1")], 1, 1);
    let ca_old = write_leaf(dir);
    let mut cfg = config(&data, &dir.join("state"), 2);
    cfg.dev_plain_http = false;
    cfg.tls = Some(sift_server::config::TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        acme: None,
    });
    let server = start(cfg).await;
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let old = client_trusting(&ca_old);
    assert_eq!(
        old.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Renewal: new files, then the reload SIGHUP triggers.
    let ca_new = write_leaf(dir);
    let certs = server.state.ops.certificates().unwrap().clone();
    assert!(
        certs.reload_if_changed().unwrap(),
        "changed files are noticed"
    );
    assert!(!certs.reload_if_changed().unwrap(), "and loaded once");
    // The open HTTP/2 connection of the old client keeps working...
    for _ in 0..3 {
        assert_eq!(
            old.get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // ...and new handshakes get the new certificate.
    let new = client_trusting(&ca_new);
    assert_eq!(
        new.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        client_trusting(&ca_old)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err(),
        "a fresh connection must not get the old certificate"
    );

    // A broken renewal (key does not match) is refused; the good certificate keeps serving.
    let good_key = std::fs::read(dir.join("key.pem")).unwrap();
    std::fs::write(
        dir.join("key.pem"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err = certs.reload().unwrap_err();
    assert!(format!("{err:#}").contains("usable pair"), "{err:#}");
    assert_eq!(
        client_trusting(&ca_new)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    std::fs::write(dir.join("key.pem"), good_key).unwrap();

    // Expiry is exported.
    let m = new
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = m
        .lines()
        .find(|l| l.starts_with("sift_tls_certificate_expiry_timestamp_seconds "))
        .expect("expiry metric");
    let t: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(t, certs.not_after_unix());
    assert!(t > 1_700_000_000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_swaps_user_tokens_and_use_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, &[("example.com", "1")], 1, 1);
    let cfg = config_with_tokens(&data, &tmp.path().join("state"));
    let server = start(cfg.clone()).await;
    let base = server.base_url();
    let key_status = |token: &'static str| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/token-key-for-user-token"))
                .header("Authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(key_status("user-token-1").await, 200);
    assert_eq!(key_status("user-token-2").await, 401);

    // New token, old one revoked, and a second use case.
    let mut next = cfg.clone();
    next.users[0].tokens = vec!["user-token-2".into()];
    let mut uc = next.usecases[0].clone();
    uc.name = "com.example.other.url.filtering".into();
    next.usecases.push(uc);
    let notes = server.state.apply_config(&next).unwrap();
    assert!(notes.iter().any(|n| n.contains("added")), "{notes:?}");
    assert_eq!(key_status("user-token-1").await, 401);
    assert_eq!(key_status("user-token-2").await, 200);
    assert_eq!(server.state.usecases().len(), 2);

    // A config that cannot work changes nothing.
    let mut bad = next.clone();
    bad.usecases[1].dataset_dir = tmp.path().join("missing");
    bad.users[0].tokens = vec!["user-token-3".into()];
    assert!(server.state.apply_config(&bad).is_err());
    assert_eq!(key_status("user-token-3").await, 401);
    assert_eq!(key_status("user-token-2").await, 200);
    assert_eq!(server.state.usecases().len(), 2);
    // A new tier needs a new issuer key: refused with the reason.
    let mut tier = next.clone();
    tier.users.push(sift_server::config::UserTier {
        tier: "tier2".into(),
        tokens: vec!["t".into()],
    });
    let e = server.state.apply_config(&tier).unwrap_err().to_string();
    assert!(e.contains("restart"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_query_is_counted_once_with_bounded_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with_dataset(tmp.path(), &[("example.com", "1")], 1, 1).await;
    let mut dev = Device::new(server.addr, "u1");
    dev.setup().await;
    assert_eq!(dev.lookup("example.com").await, Ok(Some(b"1".to_vec())));
    // Paths a scanner might send do not become labels.
    for p in ["/wp-login.php", "/a/b/c", "/prefilter/x/y/z"] {
        reqwest::get(format!("{}{p}", server.base_url()))
            .await
            .unwrap();
    }
    let m = reqwest::get(format!("{}/metrics", server.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let queries: u64 = m
        .lines()
        .filter(|l| l.starts_with("sift_requests_total{route=\"/queries\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(queries, 1, "{m}");
    assert!(!m.contains("evaluate"), "{m}");
    assert!(!m.contains("wp-login"), "{m}");
    assert!(m.contains(&format!(
        "sift_request_seconds_count{{route=\"/queries\",usecase=\"{USECASE}\"}} 1"
    )));
    assert!(m.contains("sift_dataset_shards{usecase=\"com.example.app.url.filtering\"} 1"));
    assert!(m.contains("process_uptime_seconds"));
    assert!(m.contains("sift_reloads_total{result=\"failed\"} 0"));
    server.stop().await;
}

/// Reads `url` as text.
async fn text(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_shows_gateway_issuer_and_key_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, &[("example.com", "1")], 1, 1);
    let mut cfg = config_with_tokens(&data, &tmp.path().join("state"));
    cfg.require_tokens = false;
    cfg.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let server = start(cfg).await;
    let base = server.base_url();
    let metrics_url = format!("http://{}/metrics", server.metrics_addr.unwrap());
    // Not on the public listener any more.
    assert_eq!(text(format!("{base}/metrics")).await.0, 404);

    let mut dev = Device::new(server.addr, "u1");
    dev.setup().await;
    assert_eq!(dev.lookup("example.com").await, Ok(Some(b"1".to_vec())));
    // Through the gateway (in process): counted as POST / and as /healthz via="ohttp".
    let plain = sift_client::Transport::new(None, std::time::Duration::from_secs(10)).unwrap();
    let keys = plain.fetch_gateway_keys(&base).await.unwrap();
    let oblivious = plain.clone().via_gateway(&base, &keys).unwrap();
    let r = oblivious
        .send(
            http::Method::GET,
            &format!("{base}/healthz"),
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let wrong_type = reqwest::Client::new()
        .post(format!("{base}/"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    let refused = reqwest::Client::new()
        .post(format!("{base}/issue"))
        .header("Authorization", "Bearer not-a-user")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (status, m) = text(metrics_url).await;
    assert_eq!(status, 200);
    for line in [
        "sift_requests_total{route=\"/healthz\",status=\"200\",via=\"ohttp\"} 1",
        "sift_requests_total{route=\"/\",status=\"200\",via=\"direct\"} 1",
        "sift_requests_total{route=\"/queries\",status=\"200\",via=\"direct\"} 1",
        "sift_ohttp_requests_total{result=\"forwarded\"} 1",
        "sift_ohttp_requests_total{result=\"wrong_content_type\"} 1",
        "sift_issuer_requests_total{route=\"/issue\",result=\"unauthorized\"} 1",
        "sift_stored_evaluation_keys 1",
        "sift_dataset_versions_kept{usecase=\"com.example.app.url.filtering\"} 1",
    ] {
        assert!(m.contains(line), "{line} missing in\n{m}");
    }
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{m}"))
    };
    assert!(value("sift_stored_evaluation_key_bytes ") > 1000.0);
    assert!(value("process_start_time_seconds ") > 1.7e9);
    assert!(value("process_resident_memory_bytes ") > 1e6);
    assert!(value("process_open_fds ") >= 3.0);
    assert!(m.contains("sift_dataset_info{usecase=\"com.example.app.url.filtering\",version=\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_reload_without_restart_and_restart_only_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, &[("example.com", "1")], 1, 1);
    let cfg = config(&data, &tmp.path().join("state"), 2);
    let server = start(cfg.clone()).await;
    let base = server.base_url();
    let report = |urls: usize, pad: usize| {
        let base = base.clone();
        async move {
            let list: Vec<String> = (0..urls)
                .map(|i| format!("https://e{i}.example/{}", "a".repeat(pad)))
                .collect();
            reqwest::Client::new()
                .post(format!("{base}/report"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&list).unwrap())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(report(3, 600).await, 200);
    // A client holding a connection open across the reload.
    let kept = reqwest::Client::new();
    assert_eq!(
        kept.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let mut next = cfg.clone();
    next.limits.max_body_bytes = 1024;
    next.limits.max_report_urls = 2;
    next.limits.max_users = 7;
    next.listen = "127.0.0.1:1".parse().unwrap();
    next.log.access = true;
    let notes = server.state.apply_config(&next).unwrap();
    let all = notes.join("\n");
    assert!(all.contains("[limits] applied"), "{all}");
    assert!(all.contains("access log on"), "{all}");
    assert!(
        all.contains("listen changed: needs a restart to take effect"),
        "{all}"
    );
    assert!(
        all.contains("max_users for the key store's retention changed: needs a restart"),
        "{all}"
    );
    assert_eq!(server.state.limits().max_body_bytes, 1024);
    assert!(server.state.access_log());
    // The open connection still answers, under the new limits.
    assert_eq!(
        kept.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(report(3, 10).await, 413, "max_report_urls is 2 now");
    assert_eq!(report(2, 600).await, 413, "max_body_bytes is 1024 now");
    assert_eq!(report(2, 10).await, 200);

    // One connection per address from the next connection on: `kept`'s stays open, a second
    // one is closed at once.
    assert_eq!(
        kept.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    next.limits.max_connections_per_address = 1;
    server.state.apply_config(&next).unwrap();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert!(
        fresh.get(format!("{base}/healthz")).send().await.is_err(),
        "a second connection from this address must be refused"
    );
    drop(kept);
    // Once the first one closes, new connections are served again.
    let mut served = false;
    for _ in 0..40 {
        if fresh.get(format!("{base}/healthz")).send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_is_named_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, &[("example.com", "1")], 1, 1);
    let first = start(config(&data, &tmp.path().join("state"), 2)).await;
    let mut cfg = config(&data, &tmp.path().join("state2"), 2);
    cfg.listen = first.addr;
    let e = format!(
        "{:#}",
        sift_server::spawn(cfg.clone(), None).await.err().unwrap()
    );
    assert!(
        e.contains(&format!("cannot listen on {}", first.addr)) && e.contains("another process"),
        "{e}"
    );
    // The metrics listener too, named as such.
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics.listen = Some(first.addr);
    let e = format!("{:#}", sift_server::spawn(cfg, None).await.err().unwrap());
    assert!(e.contains("[metrics] listen"), "{e}");
    assert!(e.contains(&first.addr.to_string()), "{e}");
    first.stop().await;
}
