//! Symmetric PIR end to end: a dataset processed with an OPRF key, the server answering
//! `OPRFRequest`s with that key, and the device flow (OPRF, keyword PIR for keyword′, value
//! decryption) through `sift_client::device`.

use crate::common;

use std::path::Path;

use common::*;
use prost::Message;
use sift_client::device::{DeviceClient, ServiceConfig};
use sift_proto::api;
use sift_spir::OprfPrivateKey;

const ROWS: &[(&str, &str)] = &[
    ("example.com", "1"),
    ("blocked.example.org", "1"),
    ("phone.example/+14085551212", "Alice Example, category 3"),
    ("a.example", "1"),
    ("b.example", "1"),
    ("c.example", "1"),
];

/// A server for [`ROWS`] in `shards` shards under a fresh OPRF key, and that key.
async fn start_under_fresh_key(
    dir: &Path,
    shards: usize,
) -> (sift_server::RunningServer, OprfPrivateKey) {
    let key = OprfPrivateKey::generate(&mut rand::thread_rng());
    (start(symmetric_setup(dir, &key, shards)).await, key)
}

/// Writes the symmetric dataset and its key file under `dir`; returns the server config.
fn symmetric_setup(dir: &Path, key: &OprfPrivateKey, shards: usize) -> sift_server::ServerConfig {
    write_dataset_with_key(&dir.join("data"), ROWS, shards, 7, Some(key));
    let key_file = dir.join("oprf-key.txt");
    sift_spir::write_key_file(&key_file, key).unwrap();
    with_key_file(dir, &key_file)
}

fn with_key_file(dir: &Path, key_file: &Path) -> sift_server::ServerConfig {
    let mut cfg = config(&dir.join("data"), &dir.join("state"), 2);
    cfg.usecases[0].symmetric_pir = Some(sift_server::config::SymmetricPirConfig {
        database_encryption_key_file: key_file.to_path_buf(),
        config_type: "OPRF_P384_AES_GCM_192_NONCE_96_TAG_128".into(),
    });
    cfg.validate().unwrap();
    cfg
}

fn device(server: &sift_server::RunningServer) -> DeviceClient {
    let transport = sift_client::Transport::new(None, std::time::Duration::from_secs(60)).unwrap();
    DeviceClient::new(transport, ServiceConfig::new(&server.base_url(), USECASE))
}

fn oprf_request(element: Vec<u8>) -> Vec<u8> {
    api::Requests {
        requests: vec![api::Request {
            usecase: USECASE.into(),
            request: Some(api::request::Request::OprfRequest(api::OprfRequest {
                query_element: element,
                config_id: vec![],
            })),
        }],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn present_values_round_trip_and_absent_keywords_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = start_under_fresh_key(dir.path(), 2).await;

    let mut dev = device(&server);
    for (k, v) in [ROWS[0], ROWS[2], ROWS[5]] {
        let (value, cost) = dev.lookup(k).await.unwrap();
        assert_eq!(value.as_deref(), Some(v.as_bytes()), "{k}");
        assert!(cost.query_bytes > 0 && cost.response_bytes > 0);
    }
    for k in ["absent.example", "example.co", ""] {
        assert_eq!(dev.lookup(k).await.unwrap().0, None, "{k:?}");
    }

    // The plain keyword is not in the database: a client that skips the OPRF finds nothing,
    // and the stored value is ciphertext ‖ tag, not the plain value.
    let mut raw = Device::new(server.addr, "raw-device");
    let resp = raw.setup().await;
    let Some(api::config::Config::PirConfig(pir)) = &resp.configs[USECASE].config else {
        panic!("no PIR config")
    };
    let published = pir
        .keyword_pir_params
        .as_ref()
        .and_then(|k| k.symmetric_pir_client_config.as_ref())
        .expect("the config publishes the OPRF public key");
    assert_eq!(published.server_public_key, key.public_key().to_vec());
    assert_eq!(published.config_type, 1);
    assert_eq!(raw.lookup(ROWS[0].0).await.unwrap(), None);
    let kw = key.evaluate(ROWS[0].0.as_bytes()).unwrap();
    let stored = raw
        .pir
        .as_ref()
        .unwrap()
        .symmetric_pir_client_config()
        .cloned();
    assert!(stored.is_some());
    let parsed = sift_spir::ParsedOprfOutput::new(kw, sift_spir::ConfigType::default());
    let mut q = raw.request("unused");
    let pir_client = raw.pir.as_ref().unwrap();
    let mut p = pir_client
        .query(parsed.oblivious_keyword(), &mut rand::thread_rng())
        .unwrap();
    p.configuration_hash = raw.config_id.clone();
    p.evaluation_key_metadata = Some(api::EvaluationKeyMetadata {
        timestamp: 1_700_000_000,
        identifier: raw.key_id.clone(),
    });
    q.requests[0].request = Some(api::request::Request::PirRequest(p));
    let (status, body) = raw.post("/queries", q.encode_to_vec()).await;
    assert_eq!(status, 200);
    let r = api::Responses::decode(body.as_slice()).unwrap();
    let Some(api::response::Response::PirResponse(r)) = &r.responses[0].response else {
        panic!("no PIR response")
    };
    let entry = pir_client
        .decode(parsed.oblivious_keyword(), r)
        .unwrap()
        .expect("keyword′ is in the database");
    assert_eq!(entry.len(), 1 + sift_spir::TAG_LEN);
    assert_eq!(parsed.decrypt(&entry).unwrap(), b"1");

    // Malformed OPRF requests are 400s.
    assert_eq!(raw.post("/queries", oprf_request(vec![2; 49])).await.0, 400);
    assert_eq!(raw.post("/queries", oprf_request(vec![])).await.0, 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oprf_on_a_plain_use_case_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_dataset(dir.path(), EXAMPLE_ROWS, 1, 1).await;
    let dev = Device::new(server.addr, "u1");
    let key = OprfPrivateKey::generate(&mut rand::thread_rng());
    let client = sift_spir::OprfClient::new(&key.public_key(), Default::default()).unwrap();
    let q = client
        .blind(b"example.com", &mut rand::thread_rng())
        .unwrap();
    let (status, body) = dev
        .post("/queries", oprf_request(q.element().to_vec()))
        .await;
    // Apple's service answers 400 "SymmetricPIR not configured." here.
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not configured"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_must_match_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let key = OprfPrivateKey::generate(&mut rand::thread_rng());
    let good = symmetric_setup(dir.path(), &key, 1);
    // Another key than the one the dataset was processed with.
    let wrong = dir.path().join("wrong-key.txt");
    sift_spir::write_key_file(&wrong, &OprfPrivateKey::generate(&mut rand::thread_rng())).unwrap();
    let err = sift_server::spawn(with_key_file(dir.path(), &wrong), None)
        .await
        .err()
        .expect("a mismatched key is refused");
    assert!(format!("{err:#}").contains("not the key"), "{err:#}");
    // A symmetric dataset without a key.
    let mut no_key = good.clone();
    no_key.usecases[0].symmetric_pir = None;
    assert!(sift_server::spawn(no_key, None).await.is_err());
    // A key for a plain dataset.
    let plain = tempfile::tempdir().unwrap();
    write_dataset(&plain.path().join("data"), ROWS, 1, 1);
    let key_file = dir.path().join("oprf-key.txt");
    assert!(
        sift_server::spawn(with_key_file(plain.path(), &key_file), None)
            .await
            .is_err()
    );
    // The matching key loads.
    let server = start(good).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_keeps_serving_devices_on_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_under_fresh_key(dir.path(), 1).await;
    let mut old_device = device(&server);
    assert_eq!(
        old_device.lookup("example.com").await.unwrap().0.as_deref(),
        Some(&b"1"[..])
    );

    // New data under a new key (same files, as `sift build` rewrites them), then a reload.
    let new_key = OprfPrivateKey::generate(&mut rand::thread_rng());
    write_dataset_with_key(
        &dir.path().join("data"),
        &[("example.com", "2"), ("new.example", "1")],
        1,
        8,
        Some(&new_key),
    );
    sift_spir::write_key_file(&dir.path().join("oprf-key.txt"), &new_key).unwrap();
    assert_eq!(server.state.reload(), vec![USECASE.to_string()]);

    // The old device's OPRF request names its config id, so the kept old version's key
    // answers it and its proof verifies against the public key that device holds.
    assert_eq!(
        old_device.lookup("example.com").await.unwrap().0.as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(old_device.lookup("new.example").await.unwrap().0, None);
    // A new device gets the new configuration and key.
    let mut new_device = device(&server);
    assert_eq!(
        new_device.lookup("example.com").await.unwrap().0.as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        new_device.lookup("new.example").await.unwrap().0.as_deref(),
        Some(&b"1"[..])
    );
    server.stop().await;
}

/// A proxy in front of `upstream` that passes requests on and lets `tamper` rewrite each
/// decoded response (`/config` and `/queries`), as a man in the middle or a misconfigured
/// server would. Returns the proxy's base URL.
async fn tampering_proxy(
    upstream: String,
    tamper: fn(&str, &mut Vec<u8>),
) -> (String, tokio::task::JoinHandle<()>) {
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let path = req.uri().path().to_string();
            let mut fwd = http.request(req.method().clone(), format!("{upstream}{path}"));
            for name in [
                "user-identifier",
                "user-agent",
                "authorization",
                "content-type",
            ] {
                if let Some(v) = req.headers().get(name) {
                    fwd = fwd.header(name, v.as_bytes());
                }
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 24)
                .await
                .unwrap();
            let resp = fwd.body(body).send().await.unwrap();
            let status = resp.status().as_u16();
            let mut bytes = resp.bytes().await.unwrap().to_vec();
            tamper(&path, &mut bytes);
            (axum::http::StatusCode::from_u16(status).unwrap(), bytes)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, task)
}

/// Rewrites every OPRF response in a `/queries` answer with `f`.
fn rewrite_oprf(path: &str, body: &mut Vec<u8>, f: fn(&mut api::OprfResponse)) {
    if path != "/queries" {
        return;
    }
    let mut r = api::Responses::decode(body.as_slice()).unwrap();
    for resp in &mut r.responses {
        if let Some(api::response::Response::OprfResponse(o)) = &mut resp.response {
            f(o);
        }
    }
    *body = r.encode_to_vec();
}

/// Symmetric PIR on the device: a proof that fails, or an OPRF key other than the one the
/// configuration published, is an error for present and absent keywords alike, never
/// "absent" (which a URL filter would read as "allowed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_proof_or_wrong_key_is_an_error_never_absent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_under_fresh_key(dir.path(), 1).await;
    let lookup_all = |base: String| async move {
        let transport =
            sift_client::Transport::new(None, std::time::Duration::from_secs(60)).unwrap();
        let mut dev = DeviceClient::new(transport, ServiceConfig::new(&base, USECASE));
        let mut outcomes = Vec::new();
        for k in [ROWS[0].0, "absent.example"] {
            outcomes.push(dev.lookup(k).await.map(|(v, _)| v));
        }
        outcomes
    };
    // Untampered, through the same proxy: the lookups work (the proxy itself is sound).
    let (base, proxy) = tampering_proxy(server.base_url(), |_, _| {}).await;
    let ok = lookup_all(base).await;
    assert_eq!(ok[0].as_ref().unwrap().as_deref(), Some(b"1".as_slice()));
    assert_eq!(ok[1].as_ref().unwrap(), &None);
    proxy.abort();

    let proof_flipped: fn(&str, &mut Vec<u8>) = |p, b| rewrite_oprf(p, b, |o| o.proof[5] ^= 1);
    let element_of_another_key: fn(&str, &mut Vec<u8>) = |p, b| {
        rewrite_oprf(p, b, |o| {
            // A different key's evaluation, with a proof made by that key: the device must
            // check the proof against the published key and refuse.
            let other = OprfPrivateKey::from_bytes(&[3; 48]).unwrap();
            let e = other.blind_evaluate(&o.evaluated_element).unwrap();
            o.evaluated_element = e.evaluated_element.to_vec();
            o.proof = e.proof.to_vec();
        })
    };
    let wrong_public_key: fn(&str, &mut Vec<u8>) = |p, b| {
        if p != "/config" {
            return;
        }
        let mut r = api::ConfigResponse::decode(b.as_slice()).unwrap();
        for c in r.configs.values_mut() {
            if let Some(api::config::Config::PirConfig(pir)) = &mut c.config
                && let Some(s) = pir
                    .keyword_pir_params
                    .as_mut()
                    .and_then(|k| k.symmetric_pir_client_config.as_mut())
            {
                let other = OprfPrivateKey::from_bytes(&[3; 48]).unwrap();
                s.server_public_key = other.public_key().to_vec();
            }
        }
        *b = r.encode_to_vec();
    };
    for (name, tamper) in [
        ("flipped proof", proof_flipped),
        ("another key's evaluation", element_of_another_key),
        ("wrong published key", wrong_public_key),
    ] {
        let (base, proxy) = tampering_proxy(server.base_url(), tamper).await;
        for outcome in lookup_all(base).await {
            let Err(e) = outcome else {
                panic!("{name}: got {outcome:?} instead of an error");
            };
            // Refused by the OPRF check, not by some other failure of the tampered answer.
            assert!(format!("{e:#}").contains("OPRF"), "{name}: {e:#}");
        }
        proxy.abort();
    }
    server.stop().await;
}
