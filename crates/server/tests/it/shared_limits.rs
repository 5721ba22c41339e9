//! Issue 19 with Redis: the byte budgets of the shared key store (least recently used keys
//! evicted per user and in total, across replicas) and rate limits counted once for all
//! replicas. Both need a Redis (`SIFT_TEST_REDIS_URL`); see `common::redis_url_or_skip`.

use crate::common;

use common::*;
use sift_proto::api;
use sift_server::keystore::KeyStore;
use sift_server::keystore::redis::RedisKeyStore;

/// A prefix no other run shares.
fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sifttest{tag}{}x{nanos}", std::process::id())
}

fn redis_section(url: &str, prefix: &str) -> String {
    format!("[key_store]\nkind = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\n")
}

/// A key for identifier `id` whose serialized form is a little over `payload` bytes.
fn key(id: u8, payload: usize) -> api::EvaluationKey {
    sift_server::keystore::stand_in_key(vec![id], u64::from(id), vec![0; payload], vec![])
}

#[test]
fn redis_store_keeps_byte_budgets_per_user_and_in_total() {
    let Some(url) = redis_url_or_skip("redis_store_keeps_byte_budgets_per_user_and_in_total")
    else {
        return;
    };
    let cfg: sift_server::ServerConfig = toml::from_str(&format!(
        "state_dir = \"/x\"\n{}",
        redis_section(&url, &unique_prefix("bytes"))
    ))
    .unwrap();
    let sift_server::config::KeyStoreConfig::Redis(rc) = &cfg.key_store else {
        panic!("redis config expected")
    };
    let one = key(1, 1000).encode_len_for_test();
    // Per user: room for two keys; in total: room for five.
    let a = RedisKeyStore::open(rc, 10)
        .unwrap()
        .with_byte_budget(2 * one + one / 2, 5 * one + one / 2);
    // A second replica on the same Redis.
    let b = RedisKeyStore::open(rc, 10)
        .unwrap()
        .with_byte_budget(2 * one + one / 2, 5 * one + one / 2);

    a.put("alice", &key(1, 1000)).unwrap();
    b.put("alice", &key(2, 1000)).unwrap();
    // Reading key 1 makes key 2 the least recently used.
    assert!(b.get("alice", &[1]).unwrap().is_some());
    a.put("alice", &key(3, 1000)).unwrap();
    assert!(a.get("alice", &[2]).unwrap().is_none(), "LRU key evicted");
    assert!(a.get("alice", &[1]).unwrap().is_some());
    assert!(a.get("alice", &[3]).unwrap().is_some());
    assert_eq!(a.stored_bytes(), Some(2 * one));

    // In total: bob and carol fill the store; alice's keys, least recently used, go first.
    b.put("bob", &key(1, 1000)).unwrap();
    b.put("bob", &key(2, 1000)).unwrap();
    a.put("carol", &key(1, 1000)).unwrap();
    assert_eq!(a.stored_bytes(), Some(5 * one));
    a.put("carol", &key(2, 1000)).unwrap();
    assert_eq!(b.stored_bytes(), Some(5 * one));
    assert!(
        b.get("alice", &[1]).unwrap().is_none(),
        "oldest use in total evicted"
    );
    assert!(b.get("alice", &[3]).unwrap().is_some());
    assert_eq!(b.len(), 5);

    // Replacing a key does not count it twice.
    a.put("carol", &key(2, 1000)).unwrap();
    assert_eq!(b.stored_bytes(), Some(5 * one));
    // A key larger than the per-user budget is refused, not stored.
    let err = a.put("dave", &key(9, 3 * 1000)).unwrap_err();
    assert!(
        format!("{err:#}").contains("max_key_bytes_per_user"),
        "{err:#}"
    );
    assert!(a.get("dave", &[9]).unwrap().is_none());
}

/// Encoded length, as the stores count it.
trait EncodedLen {
    fn encode_len_for_test(&self) -> u64;
}

impl EncodedLen for api::EvaluationKey {
    fn encode_len_for_test(&self) -> u64 {
        prost::Message::encoded_len(self) as u64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_issuance_limit() {
    let Some(url) = redis_url_or_skip("two_replicas_share_one_issuance_limit") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("rl");
    let config = |name: &str| {
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nrequire_tokens = false\n\
             state_dir = \"{}\"\n[[users]]\ntier = \"t\"\ntokens = [\"user-1\"]\n\
             [limits]\nissue_per_minute = 4\nissue_burst = 4\n{}",
            tmp.path().join(name).display(),
            redis_section(&url, &prefix)
        );
        let cfg: sift_server::ServerConfig = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        cfg
    };
    let a = sift_server::spawn(config("a"), None).await.unwrap();
    let b = sift_server::spawn(config("b"), None).await.unwrap();
    let http = reqwest::Client::new();
    // A malformed token request: 400 when the limit lets it through, 429 when not.
    let issue = |base: String| {
        let http = http.clone();
        async move {
            status_of(
                http.post(format!("{base}/issue"))
                    .header("authorization", "Bearer user-1")
                    .body(vec![0u8; 10]),
            )
            .await
        }
    };
    // Each replica alone would allow 4 (its own burst); together they allow 4 a minute.
    let minute = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60
    };
    let before = minute();
    let mut codes = Vec::new();
    for i in 0..6 {
        let base = if i % 2 == 0 {
            a.base_url()
        } else {
            b.base_url()
        };
        codes.push(issue(base).await);
    }
    if minute() == before {
        assert_eq!(codes, [400, 400, 400, 400, 429, 429], "{codes:?}");
    } else {
        // A minute boundary fell in the middle and reset the shared count (rare).
        println!("two_replicas_share_one_issuance_limit: window changed, codes {codes:?}");
    }
    a.stop().await;
    b.stop().await;
}
