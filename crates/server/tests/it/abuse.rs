//! Abuse resistance (issue 19): replays across restarts and replicas, rate limits, cost bounds
//! checked before any work, declared oversize bodies, slow bodies, long key identifiers.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use sift_client::tokens::TokenSource;
use sift_proto::api;

fn transport() -> sift_client::Transport {
    sift_client::Transport::new(None, Duration::from_secs(30)).unwrap()
}

/// Stops `server` and starts a new one on `cfg` (the same state, as after a restart).
async fn restart(
    server: sift_server::RunningServer,
    cfg: sift_server::ServerConfig,
) -> sift_server::RunningServer {
    server.stop().await;
    sift_server::spawn(cfg, None).await.unwrap()
}

async fn token(base: &str) -> String {
    TokenSource {
        issuer_url: base.to_owned(),
        user_token: "user-token-1".into(),
    }
    .fetch(&transport())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_token_is_refused_after_a_restart_and_on_a_second_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example_config_with_tokens(tmp.path());
    // Two replicas sharing one state directory.
    let a = sift_server::spawn(cfg.clone(), None).await.unwrap();
    let b = sift_server::spawn(cfg.clone(), None).await.unwrap();
    let (base_a, base_b) = (a.base_url(), b.base_url());

    let t = token(&base_a).await;
    assert_eq!(config_status_with_auth(&base_a, t.clone()).await, 200);
    assert_eq!(
        config_status_with_auth(&base_b, t).await,
        401,
        "a token spent on replica A was accepted by replica B"
    );

    let t = token(&base_b).await;
    assert_eq!(config_status_with_auth(&base_a, t.clone()).await, 200);
    let a = restart(a, cfg).await;
    assert_eq!(
        config_status_with_auth(&a.base_url(), t).await,
        401,
        "a spent token was accepted again after a restart"
    );
    // Fresh tokens still work on both.
    assert_eq!(
        config_status_with_auth(&a.base_url(), token(&base_b).await).await,
        200
    );
    assert_eq!(
        config_status_with_auth(&base_b, token(&base_b).await).await,
        200
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_ohttp_request_is_refused_after_a_restart_and_on_a_second_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&example_dataset(tmp.path()), &tmp.path().join("state"), 2);
    let a = sift_server::spawn(cfg.clone(), None).await.unwrap();
    let b = sift_server::spawn(cfg.clone(), None).await.unwrap();
    let keys = get_bytes(format!("{}/ohttp-keys", a.base_url())).await;

    let captured = encapsulated_healthz(&keys);
    assert_eq!(post_ohttp(&a.base_url(), captured.clone()).await, 200);
    assert_eq!(
        post_ohttp(&b.base_url(), captured.clone()).await,
        400,
        "a request answered by replica A was answered again by replica B"
    );
    let a = restart(a, cfg).await;
    assert_eq!(
        post_ohttp(&a.base_url(), captured).await,
        400,
        "a captured request was answered again after a restart"
    );
    assert_eq!(
        post_ohttp(&a.base_url(), encapsulated_healthz(&keys)).await,
        200
    );
    a.stop().await;
    b.stop().await;
}

/// A config without tokens with extra `[limits]` lines.
fn limited_config(dir: &std::path::Path, limits: &str) -> sift_server::ServerConfig {
    let data = dir.join("data");
    if !data.exists() {
        example_dataset(dir);
    }
    parse_config(&format!(
        "{}{USERS_TOML}{}[limits]\n{limits}",
        config_head(&dir.join("state"), false),
        usecase_toml(&data)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_get_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = limited_config(
        tmp.path(),
        "issue_per_minute = 6\nissue_burst = 3\nqueries_per_minute = 6\nqueries_burst = 3\n",
    );
    let server = sift_server::spawn(cfg, None).await.unwrap();
    let base = server.base_url();
    let http = reqwest::Client::new();

    // Issuance per user token.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let t = TokenSource {
            issuer_url: base.clone(),
            user_token: "user-token-1".into(),
        }
        .fetch(&transport())
        .await;
        statuses.push(t.map_or_else(|e| e.to_string(), |_| "ok".to_owned()));
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "ok").count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses[3..].iter().all(|s| s.contains("429")),
        "{statuses:?}"
    );
    let r = http
        .post(format!("{base}/issue"))
        .header("authorization", "Bearer user-token-1")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());

    // Queries per User-Identifier; another identifier is not affected.
    let dev = Device::new(server.addr, "flooder");
    let codes: Vec<u16> = futures_codes(&dev, 8).await;
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
    let other = Device::new(server.addr, "someone-else");
    assert_eq!(other.post("/config", vec![]).await.0, 200);
    server.stop().await;
}

async fn futures_codes(dev: &Device, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(dev.post("/config", vec![]).await.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_doubled_query_bodies_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = limited_config(tmp.path(), "");
    let server = sift_server::spawn(cfg, None).await.unwrap();
    let mut dev = Device::new(server.addr, "u");
    dev.setup().await;
    assert_eq!(dev.lookup("example.com").await, Ok(Some(b"1".to_vec())));

    // 300 copies of a valid request: refused at once.
    let one = dev.request("example.com");
    let many = api::Requests {
        requests: vec![one.requests[0].clone(); 300],
    };
    let start = Instant::now();
    let (status, body) = dev.post("/queries", many.encode_to_vec()).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // A request whose query ciphertexts are doubled.
    let mut doubled = one.clone();
    let Some(api::request::Request::PirRequest(p)) = &mut doubled.requests[0].request else {
        panic!()
    };
    let q = p.query.as_mut().unwrap();
    let copy = q.ciphertexts.clone();
    q.ciphertexts.extend(copy);
    let (status, body) = dev.post("/queries", doubled.encode_to_vec()).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    // A 200-byte key identifier: 400, on upload and in a query.
    let mut long = dev.request("example.com");
    let Some(api::request::Request::PirRequest(p)) = &mut long.requests[0].request else {
        panic!()
    };
    p.evaluation_key_metadata.as_mut().unwrap().identifier = vec![7; 200];
    assert_eq!(dev.post("/queries", long.encode_to_vec()).await.0, 400);
    let key = api::EvaluationKey {
        metadata: Some(api::EvaluationKeyMetadata {
            timestamp: 1,
            identifier: vec![7; 200],
        }),
        evaluation_key: Some(Default::default()),
    };
    let (status, body) = dev.post_key(key).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_huge_bodies_get_413_at_once_and_short_bodies_408_on_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let cfg = limited_config(tmp.path(), "request_timeout_secs = 1\n");
    let server = sift_server::spawn(cfg, None).await.unwrap();
    let exchange = |head: String| async move {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        (
            String::from_utf8_lossy(&buf[..n]).into_owned(),
            start.elapsed(),
        )
    };
    for path in ["/queries", "/issue", "/"] {
        let (answer, took) = exchange(format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-token-1\r\n\
             Content-Length: 10737418240\r\n\r\n"
        ))
        .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(took < Duration::from_millis(500), "{path}: {took:?}");
        let (answer, took) = exchange(format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-token-1\r\n\
             Content-Type: message/ohttp-req\r\nContent-Length: 100\r\n\r\nshort"
        ))
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(took < Duration::from_secs(3), "{path}: {took:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tokens_in_one_authorization_header_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example_config_with_tokens(tmp.path());
    let server = sift_server::spawn(cfg, None).await.unwrap();
    let base = server.base_url();
    let (t1, t2) = (token(&base).await, token(&base).await);
    let value2 = t2.strip_prefix("PrivateToken ").unwrap().to_owned();
    assert_eq!(
        config_status_with_auth(&base, format!("{t1}, {value2}")).await,
        401
    );
    assert_eq!(
        config_status_with_auth(&base, format!("{t1}, {t2}")).await,
        401
    );
    server.stop().await;
}
