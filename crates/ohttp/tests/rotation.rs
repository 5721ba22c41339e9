//! Key rotation: retired keys keep working for the grace period and stop after it, only the
//! current key is published, and the key file is private (0600) and replaced atomically.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sift_ohttp::config::decode_list;
use sift_ohttp::{ClientRequest, Gateway, GatewayConfig, KeyStore, OhttpError, error_response};

fn request() -> http::Request<Bytes> {
    http::Request::post("https://pir.example.com/queries")
        .body(Bytes::from_static(b"q"))
        .unwrap()
}

/// Sends one fresh request from `client` and reports the gateway's verdict.
fn send(gw: &Gateway, client: &ClientRequest) -> Result<(), OhttpError> {
    let (body, pending) = client.encapsulate(&request()).unwrap();
    let (req, ctx) = gw.decapsulate(&body)?;
    let enc = ctx.encapsulate(http::Response::new(req.into_body()))?;
    assert_eq!(pending.decapsulate(&enc)?.body(), "q");
    Ok(())
}

/// A client holding the configuration `gw` publishes now.
fn client_of(gw: &Gateway) -> ClientRequest {
    ClientRequest::from_encoded_config_list(&gw.key_configs()).unwrap()
}

/// A freshly generated in-memory key store with `grace` and a gateway serving it.
fn fresh_gateway(grace: Duration) -> (KeyStore, Gateway) {
    let store = KeyStore::generate(grace).unwrap();
    let gw = Gateway::new(&store, GatewayConfig::default()).unwrap();
    (store, gw)
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn old_key_works_within_grace_and_only_the_current_key_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohttp-keys.json");
    let grace = Duration::from_secs(3600);
    let mut store = KeyStore::load_or_generate(&path, grace).unwrap();
    let gw = Gateway::new(&store, GatewayConfig::default()).unwrap();
    let old_client = client_of(&gw);
    assert_eq!(old_client.key_id(), 1);
    send(&gw, &old_client).unwrap();

    let old_public = *store.current().public_key();
    store.rotate(SystemTime::now()).unwrap();
    store.save(&path).unwrap();
    gw.update_keys(&store).unwrap();

    // Published: the new key only, the same bytes from the store and the gateway.
    let published = decode_list(&gw.key_configs()).unwrap();
    assert_eq!(published, vec![store.current().config()]);
    assert_eq!(published[0].key_id, 2);
    assert_ne!(published[0].public_key, old_public);
    assert_eq!(
        &gw.key_configs()[..],
        &store.published_configs().unwrap()[..]
    );
    let resp = gw.key_config_response();
    assert_eq!(resp.headers()["content-type"], "application/ohttp-keys");

    // Both clients are served during the grace period.
    let new_client = client_of(&gw);
    assert_eq!(new_client.key_id(), 2);
    send(&gw, &old_client).unwrap();
    send(&gw, &new_client).unwrap();

    // A restart reads both keys back and keeps serving both.
    let reloaded = KeyStore::load_or_generate(&path, grace).unwrap();
    assert_eq!(
        reloaded.current().public_key(),
        store.current().public_key()
    );
    assert_eq!(reloaded.previous().len(), 1);
    assert_eq!(reloaded.previous()[0].key.public_key(), &old_public);
    let gw2 = Gateway::new(&reloaded, GatewayConfig::default()).unwrap();
    send(&gw2, &old_client).unwrap();
    send(&gw2, &new_client).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn old_key_fails_after_grace() {
    let grace = Duration::from_secs(60);
    let (mut store, gw) = fresh_gateway(grace);
    let old_client = client_of(&gw);
    // Retired 61 s ago: its grace period is over.
    store
        .rotate(SystemTime::now() - grace - Duration::from_secs(1))
        .unwrap();
    gw.update_keys(&store).unwrap();
    let err = send(&gw, &old_client).unwrap_err();
    assert!(matches!(err, OhttpError::UnknownKeyId(1)), "{err:?}");
    assert!(err.is_key_problem());
    assert_eq!(error_response(&err).status(), 400);
    // The client's remedy works: refetch the configuration.
    let fresh = client_of(&gw);
    send(&gw, &fresh).unwrap();
    // Pruning drops it from the store as well.
    assert_eq!(store.previous().len(), 1);
    store.prune(SystemTime::now());
    assert!(store.previous().is_empty());
}

#[test]
fn grace_ends_without_refreshing_the_gateway() {
    let grace = Duration::from_secs(60);
    let (mut store, gw) = fresh_gateway(grace);
    let old_client = client_of(&gw);
    // Retired so that its grace period ends 1 s from now.
    let expiry = SystemTime::now() + Duration::from_secs(1);
    store.rotate(expiry - grace).unwrap();
    gw.update_keys(&store).unwrap();
    // No `update_keys` from here on: the gateway checks expiry per request. Poll (no fixed
    // margin, so a slow machine cannot fail this) until the old key is refused: every request
    // sent before the expiry is accepted, and the refusal comes only once it has passed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut accepted = 0;
    loop {
        let sent_at = SystemTime::now();
        match send(&gw, &old_client) {
            Ok(()) => {
                assert!(
                    sent_at < expiry,
                    "accepted a request sent after the grace period"
                );
                accepted += 1;
            }
            Err(OhttpError::UnknownKeyId(1)) => {
                assert!(
                    SystemTime::now() >= expiry,
                    "refused within the grace period"
                );
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the old key was still accepted 29 s after its grace period ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A request in the grace period was accepted (unless this machine stalled past the expiry
    // before the first send, which the loop's own checks already cover).
    assert!(accepted > 0 || SystemTime::now() >= expiry);
}

#[test]
fn key_file_is_private_atomic_and_strict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    // A world-readable file left by someone else is replaced by a private one.
    let mut store = KeyStore::generate(Duration::from_secs(10)).unwrap();
    std::fs::write(&path, "placeholder").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for _ in 0..3 {
        store.rotate(SystemTime::now()).unwrap();
        store.save(&path).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }
    // Only the key file: no temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keys.json")]);
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format"], "sift-ohttp-keys-v1");
    assert_eq!(json["previous"].as_array().unwrap().len(), 3);

    // Hostile or broken files are errors, never panics or silently new keys.
    let mut hostile = json.clone();
    hostile["current"]["since_unix"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, hostile.to_string()).unwrap();
    assert!(KeyStore::load(&path).is_err());
    let mut short = json.clone();
    short["current"]["secret"] = serde_json::json!("abcd");
    std::fs::write(&path, short.to_string()).unwrap();
    assert!(KeyStore::load_or_generate(&path, Duration::from_secs(1)).is_err());
    let mut dup = json.clone();
    dup["previous"][0]["key_id"] = dup["current"]["key_id"].clone();
    std::fs::write(&path, dup.to_string()).unwrap();
    assert!(KeyStore::load(&path).is_err(), "duplicate key ids");
    let mut huge_grace = json;
    huge_grace["grace_secs"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, huge_grace.to_string()).unwrap();
    // An enormous grace must not overflow time arithmetic.
    let loaded = KeyStore::load(&path).unwrap();
    assert_eq!(loaded.accepted_keys(SystemTime::now()).len(), 4);
    let gw = Gateway::new(&loaded, GatewayConfig::default()).unwrap();
    assert_eq!(decode_list(&gw.key_configs()).unwrap().len(), 1);
}

/// Records what the gateway asks the durable store to keep, and for how long.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<Option<SystemTime>>>);

impl sift_ohttp::SpentRequests for Recorder {
    fn spend(
        &self,
        _public_key: &[u8; 32],
        _enc: &[u8; 32],
        valid_until: Option<SystemTime>,
    ) -> Result<bool, String> {
        self.0.lock().unwrap().push(valid_until);
        Ok(true)
    }
}

/// RFC 9458 §6.5: an inner request dated outside the window gets an encapsulated 400 with the
/// `date` problem type and the gateway's `Date`, and is not recorded; one inside it is served
/// and its replay record only needs to outlive the window; one without `Date` is served and
/// kept as long as its key.
#[tokio::test]
async fn date_window() {
    let (_store, gw) = fresh_gateway(Duration::from_secs(60));
    let recorder = std::sync::Arc::new(Recorder::default());
    gw.set_spent_requests(recorder.clone());
    let client = client_of(&gw);
    let now = SystemTime::now();
    let dated = |t: SystemTime| {
        http::Request::post("https://pir.example.com/queries")
            .header("date", httpdate::fmt_http_date(t))
            .body(Bytes::from_static(b"q"))
            .unwrap()
    };
    let run = |req: http::Request<Bytes>| {
        let (body, pending) = client.encapsulate(&req).unwrap();
        let gw = &gw;
        async move {
            let enc = gw
                .handle(&body, |r| async move { http::Response::new(r.into_body()) })
                .await
                .unwrap();
            pending.decapsulate(&enc).unwrap()
        }
    };
    for stale in [
        now - Duration::from_secs(600),
        now + Duration::from_secs(600),
    ] {
        let resp = run(dated(stale)).await;
        assert_eq!(resp.status(), 400);
        assert!(
            std::str::from_utf8(resp.body())
                .unwrap()
                .contains("http-problem-types#date")
        );
        let server_date =
            httpdate::parse_http_date(resp.headers()["date"].to_str().unwrap()).unwrap();
        assert!(server_date + Duration::from_secs(5) >= now);
    }
    assert!(
        recorder.0.lock().unwrap().is_empty(),
        "refused requests are not recorded"
    );

    let resp = run(dated(now)).await;
    assert_eq!((resp.status().as_u16(), &resp.body()[..]), (200, &b"q"[..]));
    let resp = run(request()).await;
    assert_eq!(resp.status(), 200, "no Date: accepted");
    let kept = recorder.0.lock().unwrap().clone();
    assert_eq!(kept.len(), 2);
    let until = kept[0].expect("a dated request's record ends with its window");
    let window = sift_ohttp::DEFAULT_DATE_WINDOW;
    assert!(
        until <= now + window + Duration::from_secs(1)
            && until + Duration::from_secs(2) >= now + window
    );
    assert_eq!(
        kept[1], None,
        "an undated request is kept as long as its key"
    );
}
