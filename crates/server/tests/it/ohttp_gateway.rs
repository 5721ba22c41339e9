//! The OHTTP gateway of a running server over TLS with HTTP/2: an independent client (the
//! `ohttp` and `bhttp` crates, not ours) reaches the service through it, and malformed, replayed,
//! wrongly keyed, mistyped and oversized encapsulated requests get errors while the server
//! stays up.

use crate::common;

use std::io::Cursor;

use sift_server::RunningServer;

async fn start_tls(dir: &std::path::Path) -> (RunningServer, reqwest::Client) {
    let data = dir.join("data");
    common::write_dataset(&data, &[("blocked.example", "1")], 1, 7);
    let ca = common::write_leaf(dir);
    let mut cfg = common::config(&data, &dir.join("state"), 2);
    common::use_tls(&mut cfg, dir);
    cfg.limits.max_body_bytes = 1024 * 1024;
    let server = common::start(cfg).await;
    (server, common::https_client(&ca, false))
}

/// A binary HTTP request built with the independent `bhttp` crate.
fn bhttp_request(method: &str, authority: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = bhttp::Message::request(
        method.as_bytes().to_vec(),
        b"https".to_vec(),
        authority.as_bytes().to_vec(),
        path.as_bytes().to_vec(),
    );
    msg.put_header("user-identifier", "interop-user");
    msg.put_header("user-agent", "interop/1 iOS/26.0");
    msg.write_content(body);
    let mut out = Vec::new();
    msg.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
    out
}

/// The gateway's published key configuration.
async fn fetch_keys(http: &reqwest::Client, base: &str) -> Vec<u8> {
    common::bytes_of(http.get(format!("{base}/ohttp-keys"))).await
}

/// [`start_tls`] in a new temporary directory: the directory, the server, its HTTPS client and
/// the gateway's published key configuration.
async fn fresh_gateway() -> (tempfile::TempDir, RunningServer, reqwest::Client, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (server, http) = start_tls(dir.path()).await;
    let keys = fetch_keys(&http, &server.base_url()).await;
    (dir, server, http, keys)
}

async fn post_outer(
    http: &reqwest::Client,
    base: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    http.post(format!("{base}/"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Encapsulates `inner` to the gateway configuration list `keys` with the independent `ohttp`
/// client; returns the encapsulated request and what opens its response.
fn encapsulate(keys: &[u8], inner: &[u8]) -> (Vec<u8>, ohttp::ClientResponse) {
    ohttp::ClientRequest::from_encoded_config_list(keys)
        .unwrap()
        .encapsulate(inner)
        .unwrap()
}

/// Posts `inner` through the gateway at `base`, expects the outer 200, and returns the
/// decapsulated inner response.
async fn through_gateway(
    http: &reqwest::Client,
    base: &str,
    keys: &[u8],
    inner: &[u8],
) -> bhttp::Message {
    let (enc, pending) = encapsulate(keys, inner);
    let resp = post_outer(http, base, "message/ohttp-req", enc).await;
    assert_eq!(resp.status(), 200);
    open(pending, resp).await
}

/// Decapsulates an outer response and parses the inner binary HTTP message.
async fn open(pending: ohttp::ClientResponse, resp: reqwest::Response) -> bhttp::Message {
    let plain = pending.decapsulate(&resp.bytes().await.unwrap()).unwrap();
    bhttp::Message::read_bhttp(&mut Cursor::new(&plain[..])).unwrap()
}

/// The inner response's status code.
fn status(msg: &bhttp::Message) -> Option<u16> {
    msg.control().status().map(|s| s.code())
}

/// A `/config` request body for the test use case.
fn config_request() -> Vec<u8> {
    prost::Message::encode_to_vec(&sift_proto::api::ConfigRequest {
        usecases: vec![common::USECASE.to_owned()],
        existing_config_ids: vec![],
    })
}

/// Asserts that the inner response is a `/config` answer naming the test use case.
fn assert_has_usecase(msg: &bhttp::Message) {
    let config =
        <sift_proto::api::ConfigResponse as prost::Message>::decode(msg.content()).unwrap();
    assert!(config.configs.contains_key(common::USECASE));
}

#[tokio::test]
async fn independent_client_reaches_the_service_through_the_gateway_over_h2() {
    let dir = tempfile::tempdir().unwrap();
    let (server, http) = start_tls(dir.path()).await;
    let base = server.base_url();

    // The key configuration, over HTTPS with HTTP/2 (what Apple's relay requires).
    let resp = http.get(format!("{base}/ohttp-keys")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/ohttp-keys"
    );
    let keys = resp.bytes().await.unwrap().to_vec();
    let well_known = common::bytes_of(http.get(format!("{base}/.well-known/ohttp-gateway"))).await;
    assert_eq!(well_known, keys);

    // /config through the gateway with the `ohttp` crate's client.
    let inner = bhttp_request("POST", "127.0.0.1", "/config", &config_request());
    let (encapsulated, pending) = encapsulate(&keys, &inner);
    let resp = post_outer(&http, &base, "message/ohttp-req", encapsulated.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "message/ohttp-res"
    );
    let msg = open(pending, resp).await;
    assert_eq!(status(&msg), Some(200));
    assert_has_usecase(&msg);

    // The same encapsulated request again is a replay.
    let resp = post_outer(&http, &base, "message/ohttp-req", encapsulated.clone()).await;
    assert_eq!(resp.status(), 400);

    // A route that does not exist behind the gateway: an encapsulated 404, not a gateway error.
    let inner = bhttp_request("GET", "127.0.0.1", "/no-such-route", b"");
    let msg = through_gateway(&http, &base, &keys, &inner).await;
    assert_eq!(status(&msg), Some(404));

    // Nesting: the gateway is not reachable from inside the gateway.
    let inner = bhttp_request("POST", "127.0.0.1", "/", &encapsulated);
    let (enc, pending) = encapsulate(&keys, &inner);
    let resp = post_outer(&http, &base, "message/ohttp-req", enc).await;
    let msg = open(pending, resp).await;
    assert_ne!(status(&msg), Some(200));

    server.stop().await;
}

#[tokio::test]
async fn bad_encapsulated_requests_get_errors_and_the_server_stays_up() {
    let (_dir, server, http, keys) = fresh_gateway().await;
    let base = server.base_url();
    let inner = bhttp_request("GET", "127.0.0.1", "/healthz", b"");
    let (good, _) = encapsulate(&keys, &inner);

    let mut wrong_key = good.clone();
    wrong_key[0] ^= 0xff;
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut wrong_aead = good.clone();
    wrong_aead[6] = 0x7f;
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("empty body", "message/ohttp-req", vec![], 400),
        ("garbage", "message/ohttp-req", vec![0xab; 100], 400),
        ("truncated", "message/ohttp-req", good[..20].to_vec(), 400),
        ("wrong key id", "message/ohttp-req", wrong_key, 400),
        ("unsupported AEAD", "message/ohttp-req", wrong_aead, 400),
        ("tampered ciphertext", "message/ohttp-req", flipped, 400),
        ("wrong content type", "application/json", good.clone(), 415),
        (
            "oversized",
            "message/ohttp-req",
            vec![0u8; 2 * 1024 * 1024],
            413,
        ),
    ];
    for (what, content_type, body, status) in cases {
        let resp = post_outer(&http, &base, content_type, body).await;
        assert_eq!(resp.status().as_u16(), status, "{what}");
    }
    // A wrong key id is a key problem in RFC 9458 §5.3's problem-details form.
    let mut wrong_key = good.clone();
    wrong_key[0] ^= 0xff;
    let resp = post_outer(&http, &base, "message/ohttp-req", wrong_key).await;
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("http-problem-types#ohttp-key")
    );

    // Still serving: the untouched request works.
    let resp = post_outer(&http, &base, "message/ohttp-req", good).await;
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn gateway_keys_survive_a_restart_and_rotation_keeps_the_old_key_in_grace() {
    let (dir, server, http, before) = fresh_gateway().await;
    let base = server.base_url();
    let gw = server.gateway.clone().unwrap();
    let new_id = gw.rotate_now().unwrap();
    let after = fetch_keys(&http, &base).await;
    assert_ne!(before, after);
    // `application/ohttp-keys`: a 2-byte length, then the config starting with its key id.
    assert_eq!(after[2], new_id);
    // A client still holding the old configuration is served during the grace period.
    let inner = bhttp_request("GET", "127.0.0.1", "/healthz", b"");
    through_gateway(&http, &base, &before, &inner).await;
    server.stop().await;

    // Restarted on the same state directory: the same published key.
    let (server, http) = start_tls(dir.path()).await;
    let again = fetch_keys(&http, &server.base_url()).await;
    assert_eq!(again, after);
    server.stop().await;
}

#[tokio::test]
async fn gateway_forwards_to_an_upstream_service_over_http() {
    let dir = tempfile::tempdir().unwrap();
    // The service on its own (no gateway), as on a separate machine.
    let data = dir.path().join("data");
    common::write_dataset(&data, &[("blocked.example", "1")], 1, 7);
    let mut service_cfg = common::config(&data, &dir.path().join("service-state"), 2);
    service_cfg.ohttp.enabled = false;
    let service = common::start(service_cfg).await;
    // A gateway-only server forwarding everything to it.
    let gateway_cfg: sift_server::ServerConfig = toml::from_str(&format!(
        "{}[ohttp]\nupstream = \"{}\"\n",
        common::config_head(&dir.path().join("gateway-state"), false),
        service.base_url()
    ))
    .unwrap();
    let gateway = common::start(gateway_cfg).await;
    let http = reqwest::Client::new();
    let base = gateway.base_url();
    // The service itself publishes no gateway.
    let resp = http
        .get(format!("{}/ohttp-keys", service.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let keys = fetch_keys(&http, &base).await;
    let inner = bhttp_request("POST", "pir.example", "/config", &config_request());
    let msg = through_gateway(&http, &base, &keys, &inner).await;
    assert_eq!(status(&msg), Some(200));
    assert_has_usecase(&msg);

    // Upstream down: an encapsulated 502, not a hang or a gateway crash.
    service.stop().await;
    let msg = through_gateway(&http, &base, &keys, &inner).await;
    assert_eq!(status(&msg), Some(502));
    gateway.stop().await;
}
