//! The Redis evaluation-key store shared by replicas: a key uploaded through server A answers
//! queries on server B, a replaced key is picked up by the other replica despite its key cache,
//! the per-user bound evicts the oldest key, and a failing Redis gives 503 instead of a panic.
//!
//! The replica tests need a Redis: CI's `.ci/run` starts one and sets `SIFT_TEST_REDIS_URL`;
//! without it they print a SKIPPED line and return (or fail, under CI's `SIFT_REQUIRE_REDIS=1`). The outage test runs everywhere against a fake
//! Redis that answers the connection handshake and then fails every command.

use crate::common;

use common::*;
use prost::Message;
use sift_proto::api;
use sift_server::keystore::KeyStore;
use sift_server::keystore::redis::RedisKeyStore;

/// A fresh temporary directory with a one-shard dataset of `rows` in its `data` folder.
fn temp_dataset(rows: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, rows, 1, 3);
    (tmp, data)
}

/// `SIFT_TEST_REDIS_URL`, checked: when it is set, an unreachable Redis fails the test
/// instead of skipping it.
fn redis_url() -> Option<String> {
    let url = std::env::var("SIFT_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    if let Err(e) = reachable {
        panic!("SIFT_TEST_REDIS_URL={url} is set but Redis does not answer: {e}");
    }
    Some(url)
}

/// A `redis-server` this test owns (so that it can kill and restart it), on a free port.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// `None` when `redis-server` is not installed and no Redis is configured for tests;
    /// with `SIFT_TEST_REDIS_URL` set, a missing `redis-server` fails the test.
    fn start() -> Option<Self> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                redis_url().is_none(),
                "SIFT_TEST_REDIS_URL is set but redis-server is not on PATH"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self { port, child: None };
        r.restart();
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let up = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if up {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A prefix no other run shares, so parallel CI jobs on one Redis do not collide.
fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sifttest{}x{nanos}", std::process::id())
}

fn redis_config(
    data: &std::path::Path,
    state: &std::path::Path,
    url: &str,
    prefix: &str,
    max_per_user: usize,
) -> sift_server::ServerConfig {
    let mut cfg = config(data, state, 2);
    let extra = format!(
        r#"
        state_dir = "/unused"
        [key_store]
        kind = "redis"
        url = "{url}"
        ttl_secs = 600
        max_per_user = {max_per_user}
        timeout_ms = 2000
        prefix = "{prefix}"
        "#
    );
    let parsed: sift_server::ServerConfig = toml::from_str(&extra).unwrap();
    cfg.key_store = parsed.key_store;
    cfg
}

/// An evaluation key with metadata but an empty key: enough for the store, not for queries.
fn placeholder_key(timestamp: u64, identifier: Vec<u8>) -> api::EvaluationKey {
    api::EvaluationKey {
        metadata: Some(api::EvaluationKeyMetadata {
            timestamp,
            identifier,
        }),
        evaluation_key: Some(Default::default()),
    }
}

async fn stored_timestamp_via_config(dev: &Device) -> u64 {
    let req = api::ConfigRequest {
        usecases: vec![USECASE.into()],
        existing_config_ids: vec![],
    };
    let (status, body) = dev.post("/config", req.encode_to_vec()).await;
    assert_eq!(status, 200);
    api::ConfigResponse::decode(body.as_slice())
        .unwrap()
        .key_info[0]
        .timestamp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_keys_through_redis() {
    let Some(url) = redis_url_or_skip("replicas_share_keys_through_redis") else {
        return;
    };
    let (tmp, data) = temp_dataset(&[("blocked.example", "1"), ("evil.example", "2")]);
    let prefix = unique_prefix();
    let a = start(redis_config(&data, &tmp.path().join("a"), &url, &prefix, 2)).await;
    let b = start(redis_config(&data, &tmp.path().join("b"), &url, &prefix, 2)).await;
    let base_a = format!("http://{}", a.addr);
    let base_b = format!("http://{}", b.addr);

    // Key uploaded through A (nothing lands in A's state_dir), queries answered by B.
    let mut dev = Device::new(a.addr, "alice");
    let resp = dev.setup().await;
    assert!(
        !tmp.path().join("a").join("keys").exists(),
        "the file store must not be used"
    );
    dev.base = base_b.clone();
    assert_eq!(stored_timestamp_via_config(&dev).await, 1_700_000_000);
    assert_eq!(
        dev.lookup("blocked.example").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(dev.lookup("fine.example").await.unwrap(), None);
    assert_eq!(b.state.keys.len(), 1, "one live key under this prefix");

    // The device rotates its key (same id, new timestamp) through A; B has the old key cached
    // and must notice the replacement, or it would answer with the wrong key.
    dev.base = base_a.clone();
    dev.upload_new_key(&resp, 1_700_000_500).await;
    dev.base = base_b.clone();
    assert_eq!(stored_timestamp_via_config(&dev).await, 1_700_000_500);
    assert_eq!(
        dev.lookup("evil.example").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );

    // Per-user bound (2): two more key ids uploaded through B evict alice's key; A then
    // reports it missing, and queries with it are refused.
    for id in [b"other-1".to_vec(), b"other-2".to_vec()] {
        let (status, _) = dev.post_key(placeholder_key(5, id)).await;
        assert_eq!(status, 200);
    }
    dev.base = base_a.clone();
    assert_eq!(
        stored_timestamp_via_config(&dev).await,
        0,
        "oldest key evicted"
    );
    assert_eq!(dev.lookup("blocked.example").await, Err(400));

    // Another user's keys are untouched by alice's bound.
    let mut bob = Device::new(b.addr, "bob");
    bob.setup().await;
    bob.base = base_a.clone();
    assert_eq!(
        bob.lookup("blocked.example").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    a.stop().await;
    b.stop().await;
}

#[test]
fn store_evicts_oldest_and_counts() {
    let Some(url) = redis_url_or_skip("store_evicts_oldest_and_counts") else {
        return;
    };
    let cfg: sift_server::ServerConfig = toml::from_str(&format!(
        "state_dir = \"/x\"\n[key_store]\nkind = \"redis\"\nurl = \"{url}\"\nprefix = \"{}\"",
        unique_prefix()
    ))
    .unwrap();
    let sift_server::config::KeyStoreConfig::Redis(rc) = &cfg.key_store else {
        panic!("redis config expected")
    };
    let s = RedisKeyStore::open(rc, 3).unwrap();
    let key = |id: u8, ts: u64| api::EvaluationKey {
        metadata: Some(api::EvaluationKeyMetadata {
            timestamp: ts,
            identifier: vec![id],
        }),
        evaluation_key: None,
    };
    assert_eq!(s.len(), 0);
    for id in 0..3 {
        s.put("u", &key(id, 10 + u64::from(id))).unwrap();
    }
    // Re-uploading id 0 makes it the newest, so id 1 is the one evicted by the fourth key.
    s.put("u", &key(0, 20)).unwrap();
    s.put("u", &key(3, 13)).unwrap();
    assert_eq!(s.get("u", &[1]).unwrap(), None);
    assert_eq!(s.timestamp("u", &[1]).unwrap(), None);
    assert_eq!(s.timestamp("u", &[0]).unwrap(), Some(20));
    assert_eq!(s.get("u", &[3]).unwrap(), Some(key(3, 13)));
    assert_eq!(s.timestamp("v", &[3]).unwrap(), None, "keys are per user");
    s.put("v", &key(3, 1)).unwrap();
    assert_eq!(s.len(), 4);
}

/// A fake Redis: answers `PING`/`CLIENT …`/`HELLO`-less handshakes, then fails every command.
async fn fake_failing_redis() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some((cmd, used)) = parse_command(&buf) {
                        buf.drain(..used);
                        let reply: &[u8] = match cmd.as_str() {
                            "PING" => b"+PONG\r\n",
                            "CLIENT" | "SELECT" => b"+OK\r\n",
                            _ => b"-ERR simulated outage\r\n",
                        };
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The first word of one RESP array command in `buf` and the bytes it spans, if complete.
fn parse_command(buf: &[u8]) -> Option<(String, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut first = String::new();
    for i in 0..n {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        if buf.len() < next + len + 2 {
            return None;
        }
        if i == 0 {
            first = String::from_utf8_lossy(&buf[next..next + len]).to_ascii_uppercase();
        }
        at = next + len + 2;
    }
    Some((first, at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503() {
    let fake = fake_failing_redis().await;
    let (tmp, data) = temp_dataset(&[("blocked.example", "1")]);
    let server = start(redis_config(
        &data,
        &tmp.path().join("s"),
        &format!("redis://{fake}/"),
        "sift",
        4,
    ))
    .await;
    let dev = Device::new(server.addr, "alice");
    let (status, body) = dev.post_key(placeholder_key(1, vec![1])).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    // A query naming a stored key needs the store: 503 as well. (The query has the shape its
    // configuration takes, so that it passes the cost check made before any work.)
    let version = server.state.usecases()[USECASE].current().clone();
    let index = &version.server.shards()[0].params.index;
    let cts =
        (index.expanded_query_count() * index.batch_size).div_ceil(version.server.context().n);
    let req = api::Requests {
        requests: vec![api::Request {
            usecase: USECASE.into(),
            request: Some(api::request::Request::PirRequest(api::PirRequest {
                configuration_hash: version.config_id.clone(),
                evaluation_key_metadata: Some(api::EvaluationKeyMetadata {
                    timestamp: 1,
                    identifier: vec![1],
                }),
                query: Some(sift_proto::pir::EncryptedIndices {
                    ciphertexts: vec![Default::default(); cts],
                    num_pir_calls: index.batch_size as u64,
                }),
                ..Default::default()
            })),
        }],
    };
    let (status, body) = dev.post("/queries", req.encode_to_vec()).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    // Metrics still render (the key count falls back to 0).
    let r = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_replay_records_through_redis() {
    let Some(url) = redis_url_or_skip("replicas_share_replay_records_through_redis") else {
        return;
    };
    let (tmp, data) = temp_dataset(&[("blocked.example", "1")]);
    let prefix = unique_prefix();
    // Same gateway keys (one state dir), replay records in Redis only.
    let cfg = redis_config(&data, &tmp.path().join("s"), &url, &prefix, 2);
    let a = start(cfg.clone()).await;
    let b = start(cfg).await;
    let keys = get_bytes(format!("http://{}/ohttp-keys", a.addr)).await;
    let captured = encapsulated_healthz(&keys);
    assert_eq!(post_ohttp(&a.base_url(), captured.clone()).await, 200);
    assert_eq!(
        post_ohttp(&b.base_url(), captured).await,
        400,
        "replayed on replica B"
    );
    // The store itself: a second spend of one id is a replay.
    let store = sift_server::spent::open(&redis_config(
        &data,
        &tmp.path().join("s"),
        &url,
        &prefix,
        2,
    ))
    .unwrap();
    assert!(store.spend("token-test", &[1; 32], None).unwrap());
    assert!(!store.spend("token-test", &[1; 32], None).unwrap());
    a.stop().await;
    b.stop().await;
}

/// Redis killed under a running server: queries whose key this process already holds keep
/// being answered, uploads get a prompt 503, and once Redis is back the store reconnects by
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted() {
    let Some(mut redis) = OwnRedis::start() else {
        println!("skipped: redis-server is not installed");
        return;
    };
    let (tmp, data) = temp_dataset(&[("blocked.example", "1")]);
    let mut cfg = redis_config(&data, &tmp.path().join("s"), &redis.url(), "sift", 4);
    if let sift_server::config::KeyStoreConfig::Redis(r) = &mut cfg.key_store {
        r.timeout_ms = 500;
    }
    let server = start(cfg).await;
    let mut dev = Device::new(server.addr, "alice");
    let resp = dev.setup().await;
    assert_eq!(
        dev.lookup("blocked.example").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );

    redis.kill();
    // The key is cached in process: answers go on, right ones.
    for _ in 0..3 {
        assert_eq!(
            dev.lookup("blocked.example").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(dev.lookup("fine.example").await.unwrap(), None);
    }
    // Storing needs Redis: a prompt 503, not a hang.
    let t = std::time::Instant::now();
    let (status, body) = dev.post_key(placeholder_key(9, vec![9])).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );

    // Redis back (empty: it kept nothing): the store reconnects on its own; the device sees
    // its key missing and uploads it again.
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    assert_eq!(
        dev.lookup("blocked.example").await,
        Err(400),
        "Redis is back and says the key is gone: the device must upload it again"
    );
    dev.upload_new_key(&resp, 1_700_000_900).await;
    assert_eq!(stored_timestamp_via_config(&dev).await, 1_700_000_900);
    assert_eq!(
        dev.lookup("blocked.example").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    drop(redis);
    server.stop().await;
}
