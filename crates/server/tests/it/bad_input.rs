//! Every kind of bad request gets the documented 4xx and the server stays up.

use crate::common;

use common::*;
use prost::Message;
use sift_proto::api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_documented_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, dev) = example_server_with_device(tmp.path(), "user-1").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", server.addr);

    // Missing headers.
    let r = http
        .post(url("/config"))
        .header("User-Agent", "x iOS/26.0")
        .body(vec![])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("User-Identifier"));
    let r = http.post(url("/queries")).header("User-Identifier", "u");
    assert_eq!(status_of(r.body(vec![])).await, 400, "missing User-Agent");

    // Garbage and truncated protobuf.
    assert_eq!(dev.post("/config", vec![0xFF, 0xFF, 0xFF]).await.0, 400);
    let good = dev.request("example.com").encode_to_vec();
    assert_eq!(
        dev.post("/queries", good[..good.len() / 2].to_vec())
            .await
            .0,
        400
    );

    // 11 MB body: 413. The server may close the connection before the client has sent the whole
    // body, in which case the client sees the connection end instead of reading the 413.
    let big = http
        .post(url("/key"))
        .header("User-Identifier", "u")
        .header("User-Agent", "x iOS/26.0")
        .body(vec![0u8; 11 * 1024 * 1024])
        .send()
        .await;
    match big {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "unexpected error: {e:?}"),
    }

    // /key without metadata.
    let k = api::EvaluationKeys {
        keys: vec![api::EvaluationKey::default()],
    };
    assert_eq!(dev.post("/key", k.encode_to_vec()).await.0, 400);

    // Unknown use case: 404 on /config, 400 on /queries.
    let req = api::ConfigRequest {
        usecases: vec!["nope".into()],
        existing_config_ids: vec![],
    };
    assert_eq!(dev.post("/config", req.encode_to_vec()).await.0, 404);
    let mut q = dev.request("example.com");
    q.requests[0].usecase = "nope".into();
    assert_eq!(dev.post("/queries", q.encode_to_vec()).await.0, 400);

    // existing_config_ids of the wrong length.
    let req = api::ConfigRequest {
        usecases: vec![USECASE.into()],
        existing_config_ids: vec![vec![], vec![]],
    };
    assert_eq!(dev.post("/config", req.encode_to_vec()).await.0, 400);

    // Out-of-range shard, shard_id routing, unknown config hash (retired: 410), missing key.
    let with = |f: &dyn Fn(&mut api::PirRequest)| {
        let mut q = dev.request("example.com");
        let Some(api::request::Request::PirRequest(p)) = q.requests[0].request.as_mut() else {
            unreachable!()
        };
        f(p);
        q.encode_to_vec()
    };
    assert_eq!(
        dev.post("/queries", with(&|p| p.shard_index = 5)).await.0,
        400
    );
    assert_eq!(
        dev.post("/queries", with(&|p| p.shard_id = Some("s1".into())))
            .await
            .0,
        501
    );
    assert_eq!(
        dev.post("/queries", with(&|p| p.configuration_hash = vec![1; 32]))
            .await
            .0,
        410
    );
    assert_eq!(
        dev.post("/queries", with(&|p| p.evaluation_key_metadata = None))
            .await
            .0,
        400
    );
    let (status, body) = dev
        .post(
            "/queries",
            with(&|p| p.evaluation_key_metadata.as_mut().unwrap().identifier = vec![9]),
        )
        .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("Evaluation key not found"));

    // Evaluation key for other encryption parameters.
    let other_ctx = sift_he::Context::predefined("n_4096_logq_27_28_28_logt_17").unwrap();
    let sk = sift_he::SecretKey::generate(&other_ctx, &mut rand::thread_rng());
    let evk =
        sift_he::EvaluationKey::generate(&other_ctx, &sk, &[3], false, &mut rand::thread_rng())
            .unwrap();
    let evk = sift_pir::wire::evaluation_key_to_proto(&evk.serialize(&other_ctx));
    let bad_key = with(&|p| {
        p.evaluation_key = Some(api::EvaluationKey {
            metadata: p.evaluation_key_metadata.clone(),
            evaluation_key: Some(evk.clone()),
        })
    });
    assert_eq!(dev.post("/queries", bad_key).await.0, 400);

    // Reports: protobuf and JSON, and junk.
    let rep = sift_proto::service::UrlFilterReport {
        urls: vec!["example.com".into()],
    };
    assert_eq!(dev.post("/report", rep.encode_to_vec()).await.0, 200);
    let json_report = |body: &'static str| {
        status_of(
            http.post(url("/report"))
                .header("Content-Type", "application/json")
                .body(body),
        )
    };
    assert_eq!(json_report(r#"["a.example","b.example"]"#).await, 200);
    assert_eq!(json_report("{").await, 400);
    let reports = std::fs::read_to_string(tmp.path().join("state/reports/reports.jsonl")).unwrap();
    assert_eq!(reports.lines().count(), 2);

    // Still up and answering.
    assert_eq!(
        dev.lookup("example.com").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    server.stop().await;
}
