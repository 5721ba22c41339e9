//! Our Privacy Pass issuer and token check against an independent client: the crates.io
//! `privacypass` crate (RFC 9578 publicly verifiable tokens, type 2) reads our issuer directory,
//! builds the blinded token request, finalizes our blind signature into a token, and the token
//! opens a PIR route once (a replay, and a token with a flipped authenticator bit, get 401).
//!
//! Nothing of `sift-privacypass` or `sift-client` is used on the client side.

use crate::common;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use common::*;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::auth::authorize::build_authorization_header;
use privacypass::public_tokens::{
    PublicKey, TokenRequest, TokenResponse, public_key_to_truncated_token_key_id,
};
use privacypass::{Deserialize as _, Serialize as _, TokenType};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_client_obtains_and_redeems_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example_config_with_tokens(tmp.path());
    let server = sift_server::spawn(cfg, None).await.unwrap();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    // Issuer directory (RFC 9578 §4): the token key is a base64url RSASSA-PSS SPKI.
    let dir = http
        .get(format!("{base}/.well-known/private-token-issuer-directory"))
        .send()
        .await
        .unwrap();
    assert_eq!(dir.status().as_u16(), 200);
    assert_eq!(
        dir.headers()["content-type"],
        "application/private-token-issuer-directory"
    );
    let dir: serde_json::Value = serde_json::from_slice(&dir.bytes().await.unwrap()).unwrap();
    let request_uri = dir["issuer-request-uri"].as_str().unwrap().to_owned();
    let key = &dir["token-keys"][0];
    assert_eq!(key["token-type"], 2);
    let spki = URL_SAFE_NO_PAD
        .decode(key["token-key"].as_str().unwrap())
        .unwrap();
    let public_key = PublicKey::from_spki(&spki).expect("their parser accepts our SPKI");
    let truncated = public_key_to_truncated_token_key_id(&public_key).unwrap();

    // Their token request (Apple's device challenge: issuer name only).
    let challenge = TokenChallenge::new(TokenType::Public, "127.0.0.1", None, &[]);
    let mut rng = blind_rsa_signatures::reexports::rand::rng();
    let (request, state) = TokenRequest::new(&mut rng, public_key, &challenge).unwrap();
    let request_bytes = request.tls_serialize_detached().unwrap();
    assert_eq!(request_bytes.len(), 2 + 1 + 256);
    assert_eq!(request_bytes[2], truncated);

    // Issuance needs a known Bearer user token.
    let issue = |bearer: &'static str, body: Vec<u8>| {
        let http = http.clone();
        let url = format!("{base}{request_uri}");
        async move {
            http.post(url)
                .header("Authorization", format!("Bearer {bearer}"))
                .header("Content-Type", "application/private-token-request")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        issue("someone-else", request_bytes.clone())
            .await
            .status()
            .as_u16(),
        401
    );
    let resp = issue("user-token-1", request_bytes).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/private-token-response"
    );
    let resp = TokenResponse::tls_deserialize_exact(resp.bytes().await.unwrap().as_ref()).unwrap();
    // Their finalize verifies our blind signature against the directory key.
    let token = resp.issue_token(&state).expect("our signature verifies");
    let (_, header) = build_authorization_header(&token).unwrap();
    let header = header.to_str().unwrap().to_owned();

    // A tampered copy (last authenticator bit flipped) must be refused.
    let mut raw = token.tls_serialize_detached().unwrap();
    *raw.last_mut().unwrap() ^= 1;
    let tampered = format!("PrivateToken token={}", URL_SAFE.encode(&raw));

    let config = |auth: String| config_status_with_auth(&base, auth);
    assert_eq!(config(tampered).await, 401, "tampered token");
    assert_eq!(config(header.clone()).await, 200, "fresh token accepted");
    assert_eq!(config(header).await, 401, "replayed token");
    server.stop().await;
}
