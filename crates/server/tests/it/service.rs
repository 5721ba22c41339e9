//! The real server on loopback, driven by a device-like client through Apple's protobuf API.

use crate::common;

use common::*;
use prost::Message;
use sift_proto::api;

const ROWS: &[(&str, &str)] = &[
    ("example.com", "1"),
    ("ads.example.net", "1"),
    ("www.apple.com/url-filter-test", "1"),
    ("tracker.example.org/pixel", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_key_query_flow_answers_present_and_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with_dataset(tmp.path(), ROWS, 1, 7).await;
    let mut dev = Device::new(server.addr, "user-1");
    let resp = dev.setup().await;
    assert_eq!(resp.key_info[0].timestamp, 0, "no key stored before upload");

    for (k, v) in ROWS {
        assert_eq!(
            dev.lookup(k).await.unwrap().as_deref(),
            Some(v.as_bytes()),
            "{k}"
        );
    }
    assert_eq!(dev.lookup("not-blocked.example").await.unwrap(), None);

    // Config again with the known id: reuse, and the key is now known to the server.
    let req = api::ConfigRequest {
        usecases: vec![USECASE.into()],
        existing_config_ids: vec![dev.config_id.clone()],
    };
    let (status, body) = dev.post("/config", req.encode_to_vec()).await;
    assert_eq!(status, 200);
    let resp = api::ConfigResponse::decode(body.as_slice()).unwrap();
    assert!(resp.configs[USECASE].reuse_existing_config);
    assert!(resp.configs[USECASE].config.is_none());
    assert_eq!(resp.key_info[0].timestamp, 1_700_000_000);

    // Inline evaluation key (field 6) works for a user with no stored key.
    let mut other = Device::new(server.addr, "user-2");
    other.pir = None;
    let mut req = dev.request("example.com");
    let Some(api::request::Request::PirRequest(p)) = req.requests[0].request.as_mut() else {
        unreachable!()
    };
    let key = dev
        .pir
        .as_ref()
        .unwrap()
        .evaluation_key(&mut rand::thread_rng())
        .unwrap();
    p.evaluation_key = Some(api::EvaluationKey {
        metadata: p.evaluation_key_metadata.clone(),
        evaluation_key: Some(key),
    });
    let (status, _) = other.post("/queries", req.encode_to_vec()).await;
    assert_eq!(status, 200);

    // Metrics show the traffic.
    let (_, m) = get_text(format!("http://{}/metrics", server.addr)).await;
    assert!(m.contains("route=\"/queries\",status=\"200\""), "{m}");
    assert!(m.contains("sift_stored_evaluation_keys 1"), "{m}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(&tmp.path().join("data"), ROWS, 1, 7);
    let cfg = config(&tmp.path().join("data"), &tmp.path().join("state"), 2);
    let server = start(cfg.clone()).await;
    let mut dev = Device::new(server.addr, "user-1");
    dev.setup().await;
    server.stop().await;
    let server = start(cfg).await;
    dev.base = format!("http://{}", server.addr);
    assert_eq!(
        dev.lookup("example.com").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_dataset_uses_repeated_shard_config() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> = (0..40)
        .map(|i| (format!("site{i}.example"), "1".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let server = start_with_dataset(tmp.path(), &refs, 2, 3).await;
    let mut dev = Device::new(server.addr, "u");
    let resp = dev.setup().await;
    let Some(api::config::Config::PirConfig(pir)) = &resp.configs[USECASE].config else {
        panic!()
    };
    // The shards differ in size unless the data happens to split evenly; either form must work.
    assert!(pir.pir_shard_configs.is_some() || pir.shard_configs.len() == 2);
    for (k, _) in refs.iter().take(6) {
        assert_eq!(
            dev.lookup(k).await.unwrap().as_deref(),
            Some(&b"1"[..]),
            "{k}"
        );
    }
    server.stop().await;
}

/// `/config` is gzip-compressed for a client that accepts it (Apple's devices do), and the
/// decompressed body is the same `ConfigResponse` an uncompressed request gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_gzipped_when_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with_dataset(tmp.path(), EXAMPLE_ROWS, 1, 1).await;
    // reqwest's own decoding off: the test sees the bytes on the wire.
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let body = api::ConfigRequest {
        usecases: vec![USECASE.to_string()],
        ..Default::default()
    }
    .encode_to_vec();
    let post = |encoding: &'static str| {
        http.post(format!("http://{}/config", server.addr))
            .header("User-Identifier", "u")
            .header("User-Agent", "com.apple.ciphermld/1.0 iOS/26.0")
            .header("Accept-Encoding", encoding)
            .body(body.clone())
            .send()
    };
    let plain = post("identity").await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    let gz = post("gzip").await.unwrap();
    assert_eq!(gz.status(), 200);
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz = gz.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain);
    let resp = api::ConfigResponse::decode(&unzipped[..]).unwrap();
    assert!(resp.configs.contains_key(USECASE));
    server.stop().await;
}
