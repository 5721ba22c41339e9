//! Interoperability with an independent implementation: Mozilla's `ohttp` crate (0.8, pure
//! Rust HPKE) and its `bhttp` crate (0.8).
//!
//! - their client → our gateway → their response decoding, both AEADs, both bhttp framings;
//! - our client → their server → our response decoding, both AEADs;
//! - binary HTTP encoded by one side and decoded by the other, both directions, plus the
//!   RFC 9292 examples decoded by both.

mod common;

use std::io::Cursor;

use bytes::Bytes;
use ohttp::hpke::{Aead as TheirAead, Kdf as TheirKdf, Kem as TheirKem};
use sift_ohttp::bhttp as ours;
use sift_ohttp::config::{Aead, SymmetricSuite};
use sift_ohttp::{
    ClientRequest, DEFAULT_GRACE, Gateway, GatewayConfig, GatewayKey, KeyStore, OhttpError,
};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// A request as the `bhttp` crate builds it.
fn their_request(mode: bhttp::Mode) -> Vec<u8> {
    let mut msg = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"pir.example.com".to_vec(),
        b"/queries?v=1".to_vec(),
    );
    msg.put_header("content-type", "application/octet-stream");
    msg.put_header("user-identifier", "abc123");
    msg.put_header("authorization", "PrivateToken token=AAAA");
    msg.write_content(b"\x00\x01encrypted query\xff");
    let mut buf = Vec::new();
    msg.write_bhttp(mode, &mut buf).unwrap();
    buf
}

fn check_request_from_them(req: &http::Request<Bytes>) {
    assert_eq!(req.method(), "POST");
    assert_eq!(req.uri(), "https://pir.example.com/queries?v=1");
    assert_eq!(req.headers()["content-type"], "application/octet-stream");
    assert_eq!(req.headers()["user-identifier"], "abc123");
    assert_eq!(req.headers()["authorization"], "PrivateToken token=AAAA");
    assert_eq!(&req.body()[..], b"\x00\x01encrypted query\xff");
}

fn our_response() -> http::Response<Bytes> {
    http::Response::builder()
        .status(201)
        .header("content-type", "application/octet-stream")
        .header("x-pir", "1")
        .body(Bytes::from_static(b"pir response \x00\xff"))
        .unwrap()
}

fn check_response_from_us(plain: &[u8]) {
    let msg = bhttp::Message::read_bhttp(&mut Cursor::new(plain)).unwrap();
    assert_eq!(msg.control().status().map(u16::from), Some(201));
    assert_eq!(
        msg.header().get(b"content-type"),
        Some(&b"application/octet-stream"[..])
    );
    assert_eq!(msg.header().get(b"x-pir"), Some(&b"1"[..]));
    assert_eq!(msg.content(), b"pir response \x00\xff");
}

/// Their client (both framings) through our gateway's `handle`, answers read by their client.
fn their_client_our_gateway(gateway: &Gateway, expect_aead: Aead) {
    for mode in [bhttp::Mode::KnownLength, bhttp::Mode::IndeterminateLength] {
        let client = ohttp::ClientRequest::from_encoded_config_list(&gateway.key_configs())
            .expect("their client accepts our published key configuration");
        let (enc_request, pending) = client.encapsulate(&their_request(mode)).unwrap();
        assert_eq!(
            u16::from_be_bytes([enc_request[5], enc_request[6]]),
            expect_aead.id()
        );
        let enc_response = block_on(gateway.handle(&enc_request, |req| async move {
            check_request_from_them(&req);
            our_response()
        }))
        .unwrap();
        let plain = pending.decapsulate(&enc_response).unwrap();
        check_response_from_us(&plain);
    }
}

#[test]
fn their_client_to_our_gateway_aes() {
    let store = KeyStore::generate(DEFAULT_GRACE).unwrap();
    let gateway = Gateway::new(&store, GatewayConfig::default()).unwrap();
    their_client_our_gateway(&gateway, Aead::Aes128Gcm);
}

#[test]
fn their_client_to_our_gateway_chacha() {
    // Their client takes the first offered suite: offer ChaCha20-Poly1305 first.
    let key = GatewayKey::from_secret(
        9,
        &common::vector(common::RFC9458, "server_secret_key"),
        vec![
            SymmetricSuite::CHACHA20_POLY1305,
            SymmetricSuite::AES_128_GCM,
        ],
    )
    .unwrap();
    let gateway = Gateway::with_keys(vec![key], GatewayConfig::default()).unwrap();
    their_client_our_gateway(&gateway, Aead::ChaCha20Poly1305);
}

#[test]
fn their_client_with_stale_key_is_a_key_problem_for_our_gateway() {
    let old = Gateway::new(
        &KeyStore::generate(DEFAULT_GRACE).unwrap(),
        GatewayConfig::default(),
    )
    .unwrap();
    let other = Gateway::with_keys(
        vec![GatewayKey::generate(1).unwrap()],
        GatewayConfig::default(),
    )
    .unwrap();
    // Same key id, different key: decryption fails (not a key problem the gateway can see).
    let client = ohttp::ClientRequest::from_encoded_config_list(&old.key_configs()).unwrap();
    let (enc_request, _) = client
        .encapsulate(&their_request(bhttp::Mode::KnownLength))
        .unwrap();
    assert!(matches!(
        other.decapsulate(&enc_request),
        Err(OhttpError::Decrypt)
    ));
    // A key id the gateway never had: the RFC 9458 §5.3 key problem.
    let gw2 = Gateway::with_keys(
        vec![GatewayKey::generate(2).unwrap()],
        GatewayConfig::default(),
    )
    .unwrap();
    let err = gw2.decapsulate(&enc_request).unwrap_err();
    assert!(matches!(err, OhttpError::UnknownKeyId(1)));
    assert!(err.is_key_problem());
}

fn their_server(key_id: u8) -> ohttp::Server {
    let config = ohttp::KeyConfig::new(
        key_id,
        TheirKem::X25519Sha256,
        vec![
            ohttp::SymmetricSuite::new(TheirKdf::HkdfSha256, TheirAead::Aes128Gcm),
            ohttp::SymmetricSuite::new(TheirKdf::HkdfSha256, TheirAead::ChaCha20Poly1305),
        ],
    )
    .unwrap();
    ohttp::Server::new(config).unwrap()
}

fn our_request() -> http::Request<Bytes> {
    http::Request::builder()
        .method("POST")
        .uri("https://pir.example.com/key")
        .header("content-type", "application/octet-stream")
        .header("user-agent", "sift-check")
        .body(Bytes::from(vec![7u8; 3000]))
        .unwrap()
}

/// Our client → their server → their bhttp response (given framing) → our client.
fn our_client_their_server(client: &ClientRequest, server: &ohttp::Server, mode: bhttp::Mode) {
    let (enc_request, pending) = client.encapsulate(&our_request()).unwrap();
    let (plain, server_response) = server.decapsulate(&enc_request).unwrap();
    let msg = bhttp::Message::read_bhttp(&mut Cursor::new(&plain[..])).unwrap();
    assert_eq!(msg.control().method(), Some(&b"POST"[..]));
    assert_eq!(msg.control().scheme(), Some(&b"https"[..]));
    assert_eq!(msg.control().authority(), Some(&b"pir.example.com"[..]));
    assert_eq!(msg.control().path(), Some(&b"/key"[..]));
    assert_eq!(msg.header().get(b"user-agent"), Some(&b"sift-check"[..]));
    assert_eq!(msg.content(), &[7u8; 3000][..]);

    let mut resp = bhttp::Message::response(bhttp::StatusCode::try_from(200u16).unwrap());
    resp.put_header("content-type", "application/octet-stream");
    resp.write_content(b"stored");
    resp.put_trailer("x-trailer", "t");
    let mut buf = Vec::new();
    resp.write_bhttp(mode, &mut buf).unwrap();
    let enc_response = server_response.encapsulate(&buf).unwrap();
    let decoded = pending.decapsulate(&enc_response).unwrap();
    assert_eq!(decoded.status(), 200);
    assert_eq!(
        decoded.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(&decoded.body()[..], b"stored");
}

#[test]
fn our_client_to_their_server_both_suites_and_framings() {
    let server = their_server(7);
    let encoded = server.config().encode().unwrap();
    let aes = ClientRequest::from_encoded_config(&encoded).unwrap();
    assert_eq!((aes.key_id(), aes.aead()), (7, Aead::Aes128Gcm));
    let config = sift_ohttp::KeyConfig::decode(&encoded).unwrap();
    let chacha = ClientRequest::with_suite(&config, SymmetricSuite::CHACHA20_POLY1305).unwrap();
    for client in [&aes, &chacha] {
        for mode in [bhttp::Mode::KnownLength, bhttp::Mode::IndeterminateLength] {
            our_client_their_server(client, &server, mode);
        }
    }
}

#[test]
fn our_client_picks_x25519_from_their_mixed_list() {
    // A list with a P-256 configuration first: we skip the KEM we do not implement.
    let p256 = ohttp::KeyConfig::new(
        3,
        TheirKem::P256Sha256,
        vec![ohttp::SymmetricSuite::new(
            TheirKdf::HkdfSha256,
            TheirAead::Aes128Gcm,
        )],
    )
    .unwrap();
    let server = their_server(4);
    let list = ohttp::KeyConfig::encode_list(&[&p256, server.config()]).unwrap();
    let client = ClientRequest::from_encoded_config_list(&list).unwrap();
    assert_eq!(client.key_id(), 4);
    our_client_their_server(&client, &server, bhttp::Mode::KnownLength);
    // Their parser reads our published list too.
    let gw = Gateway::new(
        &KeyStore::generate(DEFAULT_GRACE).unwrap(),
        GatewayConfig::default(),
    )
    .unwrap();
    assert_eq!(
        ohttp::KeyConfig::decode_list(&gw.key_configs())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bhttp_theirs_to_ours() {
    for mode in [bhttp::Mode::KnownLength, bhttp::Mode::IndeterminateLength] {
        let req = ours::decode_request(&their_request(mode), &ours::Limits::default()).unwrap();
        check_request_from_them(&req);

        let mut resp = bhttp::Message::response(bhttp::StatusCode::try_from(404u16).unwrap());
        resp.put_header("x-a", "1");
        resp.put_header("x-a", "2");
        resp.write_content(b"not here");
        resp.put_trailer("x-t", "end");
        let mut buf = Vec::new();
        resp.write_bhttp(mode, &mut buf).unwrap();
        let decoded = ours::BhttpResponse::decode(&buf, &ours::Limits::default()).unwrap();
        assert_eq!(decoded.status, 404);
        assert_eq!(
            decoded.headers,
            vec![ours::Field::new("x-a", "1"), ours::Field::new("x-a", "2")]
        );
        assert_eq!(decoded.content, b"not here");
        assert_eq!(decoded.trailers, vec![ours::Field::new("x-t", "end")]);
        let http = decoded.into_http().unwrap();
        let values: Vec<_> = http.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }
}

#[test]
fn bhttp_ours_to_theirs() {
    let req = our_request();
    let known = ours::encode_request(&req).unwrap();
    let ind = ours::BhttpRequest::from_http(&req)
        .encode_indeterminate_length()
        .unwrap();
    for wire in [known, ind] {
        let msg = bhttp::Message::read_bhttp(&mut Cursor::new(&wire[..])).unwrap();
        assert_eq!(msg.control().method(), Some(&b"POST"[..]));
        assert_eq!(msg.control().path(), Some(&b"/key"[..]));
        assert_eq!(
            msg.header().get(b"content-type"),
            Some(&b"application/octet-stream"[..])
        );
        assert_eq!(msg.content(), &[7u8; 3000][..]);
    }

    let resp = ours::BhttpResponse {
        informational: vec![ours::Informational {
            status: 103,
            headers: vec![ours::Field::new("link", "</a>")],
        }],
        status: 200,
        headers: vec![ours::Field::new("content-type", "text/plain")],
        content: b"hello".to_vec(),
        trailers: vec![ours::Field::new("x-t", "1")],
    };
    for wire in [
        resp.encode_known_length().unwrap(),
        resp.encode_indeterminate_length().unwrap(),
        ours::encode_response(&our_response()).unwrap(),
    ] {
        let msg = bhttp::Message::read_bhttp(&mut Cursor::new(&wire[..])).unwrap();
        let status = msg.control().status().map(u16::from);
        assert!(status == Some(200) || status == Some(201));
        if status == Some(200) {
            assert_eq!(msg.informational().len(), 1);
            assert_eq!(u16::from(msg.informational()[0].status()), 103);
            assert_eq!(msg.content(), b"hello");
            assert_eq!(msg.trailer().get(b"x-t"), Some(&b"1"[..]));
        } else {
            check_response_from_us(&wire);
        }
    }
}

#[test]
fn rfc9292_examples_decode_the_same_in_both() {
    for name in ["request_known_length", "request_indeterminate_length"] {
        let wire = common::vector(common::RFC9292, name);
        let theirs = bhttp::Message::read_bhttp(&mut Cursor::new(&wire[..])).unwrap();
        let ours = ours::BhttpRequest::decode(&wire, &ours::Limits::default()).unwrap();
        assert_eq!(theirs.control().method(), Some(&ours.method[..]));
        assert_eq!(theirs.control().path(), Some(&ours.path[..]));
        let their_fields: Vec<_> = theirs
            .header()
            .iter()
            .map(|f| ours::Field::new(f.name(), f.value()))
            .collect();
        assert_eq!(their_fields, ours.headers);
    }
    for name in [
        "response_indeterminate_length",
        "response_known_length_chunked",
    ] {
        let wire = common::vector(common::RFC9292, name);
        let theirs = bhttp::Message::read_bhttp(&mut Cursor::new(&wire[..])).unwrap();
        let ours = ours::BhttpResponse::decode(&wire, &ours::Limits::default()).unwrap();
        assert_eq!(theirs.control().status().map(u16::from), Some(ours.status));
        assert_eq!(theirs.informational().len(), ours.informational.len());
        assert_eq!(theirs.content(), &ours.content[..]);
        assert_eq!(theirs.trailer().len(), ours.trailers.len());
    }
}
