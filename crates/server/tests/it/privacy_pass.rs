//! PIR routes behind Privacy Pass: tokens from our issuer (fetched with a Bearer user token) are
//! accepted once; missing, replayed or foreign tokens get 401.

use crate::common;

use common::*;
use sift_client::device::{DeviceClient, ServiceConfig};
use sift_client::tokens::TokenSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_pir_routes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example_config_with_tokens(tmp.path());
    assert!(cfg.require_tokens, "tokens are required by default");
    let server = sift_server::spawn(cfg.clone(), None).await.unwrap();
    let base = format!("http://{}", server.addr);
    let transport = sift_client::Transport::new(None, std::time::Duration::from_secs(30)).unwrap();

    // The device path with real tokens works.
    let mut svc = ServiceConfig::new(&base, USECASE);
    svc.tokens = Some(TokenSource {
        issuer_url: base.clone(),
        user_token: "user-token-1".into(),
    });
    let mut device = DeviceClient::new(transport.clone(), svc);
    let (value, _) = device.lookup("example.com").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"1"[..]));
    let (value, _) = device.lookup("allowed.example").await.unwrap();
    assert_eq!(value, None);

    // No token, a replayed token, a garbage token: 401.
    let dev = Device::new(server.addr, "u");
    assert_eq!(dev.post("/config", vec![]).await.0, 401);
    let src = TokenSource {
        issuer_url: base.clone(),
        user_token: "user-token-1".into(),
    };
    let token = src.fetch(&transport).await.unwrap();
    let post = |auth: String| config_status_with_auth(&base, auth);
    assert_eq!(post(token.clone()).await, 200);
    assert_eq!(post(token).await, 401, "replayed token");
    assert_eq!(post("PrivateToken token=AAAA".into()).await, 401);

    // Unknown user token cannot get tokens.
    let bad = TokenSource {
        issuer_url: base.clone(),
        user_token: "nope".into(),
    };
    assert!(
        bad.fetch(&transport)
            .await
            .unwrap_err()
            .to_string()
            .contains("401")
    );

    // The directory lists the tier key.
    let (_, dir) = get_text(format!("{base}/.well-known/private-token-issuer-directory")).await;
    assert!(dir.contains("\"token-type\":2"), "{dir}");
    server.stop().await;

    // The issuer key persists: a token fetched before a restart still verifies after it.
    let token = {
        let server = sift_server::spawn(cfg.clone(), None).await.unwrap();
        let src = TokenSource {
            issuer_url: format!("http://{}", server.addr),
            user_token: "user-token-1".into(),
        };
        let t = src.fetch(&transport).await.unwrap();
        server.stop().await;
        t
    };
    let server = sift_server::spawn(cfg, None).await.unwrap();
    let status = config_status_with_auth(&format!("http://{}", server.addr), token).await;
    assert_eq!(status, 200);
    server.stop().await;
}
