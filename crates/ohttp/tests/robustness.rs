//! The gateway answers every bad input with an error (never a panic): malformed requests,
//! unknown key ids, unsupported algorithms, truncated or tampered ciphertext, oversized
//! bodies, replays, and invalid binary HTTP inside a valid encryption.

mod common;

use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use sift_ohttp::bhttp::{BhttpError, Limits};
use sift_ohttp::config::SymmetricSuite;
use sift_ohttp::{
    ClientRequest, Gateway, GatewayConfig, GatewayKey, OhttpError, REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE, error_response,
};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn client_for(gw: &Gateway) -> ClientRequest {
    ClientRequest::from_encoded_config_list(&gw.key_configs()).unwrap()
}

fn request(body: &'static [u8]) -> http::Request<Bytes> {
    http::Request::post("https://pir.example.com/queries")
        .body(Bytes::from_static(body))
        .unwrap()
}

async fn ok_forward(req: http::Request<Bytes>) -> http::Response<Bytes> {
    http::Response::new(req.into_body())
}

#[test]
fn malformed_encapsulated_requests() {
    let gw = common::rfc_gateway(GatewayConfig::default());
    let valid = common::vector(common::RFC9458, "encapsulated_request");
    for len in [0, 1, 6, 7, 8, 38] {
        let err = gw.decapsulate(&valid[..len]).unwrap_err();
        assert!(matches!(err, OhttpError::Malformed(_)), "{len}: {err:?}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(!err.is_key_problem());
    }
    // Header and enc but a ciphertext shorter than the tag.
    let err = gw.decapsulate(&valid[..39 + 15]).unwrap_err();
    assert!(matches!(err, OhttpError::Malformed(_)), "{err:?}");
}

#[test]
fn wrong_key_id_is_a_key_problem() {
    let gw = common::rfc_gateway(GatewayConfig::default());
    let mut req = common::vector(common::RFC9458, "encapsulated_request");
    req[0] = 2;
    let err = gw.decapsulate(&req).unwrap_err();
    assert!(matches!(err, OhttpError::UnknownKeyId(2)));
    assert!(err.is_key_problem());
    let resp = error_response(&err);
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#ohttp-key"
    );
}

#[test]
fn unsupported_kem_kdf_aead() {
    let valid = common::vector(common::RFC9458, "encapsulated_request");
    let gw = common::rfc_gateway(GatewayConfig::default());
    // (offset, value): P-256 KEM, HKDF-SHA384, AES-256-GCM, export-only AEAD.
    for (at, value) in [(1usize, 0x0010u16), (3, 0x0002), (5, 0x0002), (5, 0xffff)] {
        let mut req = valid.clone();
        req[at..at + 2].copy_from_slice(&value.to_be_bytes());
        let err = gw.decapsulate(&req).unwrap_err();
        assert!(
            matches!(err, OhttpError::UnsupportedAlgorithm { .. }),
            "{at}: {err:?}"
        );
        assert!(err.is_key_problem());
    }
    // A suite we implement but the key does not offer: the RFC key restricted to AES.
    let aes_only = GatewayKey::from_secret(
        1,
        &common::vector(common::RFC9458, "server_secret_key"),
        vec![SymmetricSuite::AES_128_GCM],
    )
    .unwrap();
    let gw = Gateway::with_keys(vec![aes_only], GatewayConfig::default()).unwrap();
    let config =
        sift_ohttp::KeyConfig::decode(&common::vector(common::RFC9458, "key_config")).unwrap();
    let chacha = ClientRequest::with_suite(&config, SymmetricSuite::CHACHA20_POLY1305).unwrap();
    let (body, _) = chacha.encapsulate(&request(b"x")).unwrap();
    assert!(matches!(
        gw.decapsulate(&body),
        Err(OhttpError::UnsupportedAlgorithm {
            kem: 0x20,
            kdf: 1,
            aead: 3
        })
    ));
    // And a client refuses a suite the configuration does not list.
    let published = sift_ohttp::KeyConfig::decode(&gw.key_configs()[2..]).unwrap();
    assert!(ClientRequest::with_suite(&published, SymmetricSuite::CHACHA20_POLY1305).is_err());
}

#[test]
fn truncated_extended_and_tampered_ciphertext() {
    let gw = common::rfc_gateway(GatewayConfig::default());
    let client = client_for(&gw);
    let (body, _) = client.encapsulate(&request(b"payload")).unwrap();
    for bad in [
        body[..body.len() - 1].to_vec(),
        [&body[..], &[0u8][..]].concat(),
        {
            let mut b = body.to_vec();
            b[20] ^= 1; // in enc
            b
        },
        {
            let mut b = body.to_vec();
            let last = b.len() - 1;
            b[last] ^= 0x80; // in the tag
            b
        },
    ] {
        assert!(matches!(gw.decapsulate(&bad), Err(OhttpError::Decrypt)));
    }
    // Failed attempts are not remembered: the genuine request still goes through once.
    assert!(gw.decapsulate(&body).is_ok());
    assert!(matches!(gw.decapsulate(&body), Err(OhttpError::Replay)));
}

#[test]
fn oversized_body_and_inner_limits() {
    let config = GatewayConfig {
        max_request_body: 200,
        bhttp_limits: Limits {
            max_content: 100,
            ..Limits::default()
        },
        ..GatewayConfig::default()
    };
    let gw = common::rfc_gateway(config);
    let client = client_for(&gw);
    let big = Bytes::from(vec![1u8; 300]);
    let (body, _) = client
        .encapsulate(&http::Request::post("/").body(big).unwrap())
        .unwrap();
    let err = gw.decapsulate(&body).unwrap_err();
    assert!(matches!(
        err,
        OhttpError::TooLarge {
            limit: 200,
            actual: _
        }
    ));
    assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_response(&err).status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Under the outer limit but over the inner content limit: decapsulate reports the bhttp
    // error, `handle` answers it inside the encryption with 413.
    let medium = Bytes::from(vec![1u8; 120]);
    let req = http::Request::post("/").body(medium).unwrap();
    let (body, _) = client.encapsulate(&req).unwrap();
    assert!(body.len() <= 200);
    assert!(matches!(
        gw.decapsulate(&body),
        Err(OhttpError::Bhttp(BhttpError::TooLarge { .. }))
    ));
    let (body, pending) = client.encapsulate(&req).unwrap();
    let enc = block_on(gw.handle(&body, ok_forward)).unwrap();
    let resp = pending.decapsulate(&enc).unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn replay_is_rejected_and_the_cache_is_bounded() {
    let config = GatewayConfig {
        replay_capacity: 3,
        ..GatewayConfig::default()
    };
    let gw = common::rfc_gateway(config);
    let client = client_for(&gw);
    let (first, pending) = client.encapsulate(&request(b"one")).unwrap();
    let enc = block_on(gw.handle(&first, ok_forward)).unwrap();
    assert_eq!(pending.decapsulate(&enc).unwrap().body(), "one");
    let err = block_on(gw.handle(&first, ok_forward)).unwrap_err();
    assert!(matches!(err, OhttpError::Replay));
    assert_eq!(error_response(&err).status(), StatusCode::BAD_REQUEST);
    // Through the outer route too.
    let outer = ClientRequest::outer_request("https://gw.example.com/", first.clone()).unwrap();
    let resp = block_on(gw.serve(outer, ok_forward));
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Bounded: after `capacity` newer requests the oldest is forgotten (documented trade-off:
    // rotation and the relay bound the window instead).
    for _ in 0..3 {
        let (b, _) = client.encapsulate(&request(b"n")).unwrap();
        gw.decapsulate(&b).unwrap();
    }
    assert!(gw.decapsulate(&first).is_ok());

    // Capacity 0 disables the check.
    let off = common::rfc_gateway(GatewayConfig {
        replay_capacity: 0,
        ..GatewayConfig::default()
    });
    let (b, _) = client.encapsulate(&request(b"n")).unwrap();
    assert!(off.decapsulate(&b).is_ok() && off.decapsulate(&b).is_ok());
}

#[test]
fn concurrent_copies_of_one_request_succeed_once() {
    let gw = std::sync::Arc::new(common::rfc_gateway(GatewayConfig::default()));
    let client = client_for(&gw);
    let (body, _) = client.encapsulate(&request(b"race")).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let gw = gw.clone();
            let body = body.clone();
            std::thread::spawn(move || gw.decapsulate(&body).is_ok())
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(wins, 1);
}

#[test]
fn malformed_bhttp_inside_valid_encryption() {
    let gw = common::rfc_gateway(GatewayConfig::default());
    let client = client_for(&gw);
    let cases: [&[u8]; 6] = [
        b"",                                               // no framing indicator
        b"\x01\x40\xc8",                                   // a response, not a request
        b"\x00\x03GET\x05https\x00\x40",                   // truncated inside a varint
        b"\x00\x03G T\x05https\x00\x01/",                  // invalid method
        b"\x00\x03GET\x05https\x00\x01/\x00\x00\x00\x07",  // non-zero padding
        b"\x00\x03GET\x05https\x00\x01/\x04\x01A\x01\x0a", // field value with a newline
    ];
    for plain in cases {
        let (body, _) = client.encapsulate_bhttp(plain).unwrap();
        let err = gw.decapsulate(&body).unwrap_err();
        assert!(matches!(err, OhttpError::Bhttp(_)), "{plain:?}: {err:?}");
        // `handle` answers inside the encryption, so the client learns it.
        let (body, pending) = client.encapsulate_bhttp(plain).unwrap();
        let enc = block_on(gw.handle(&body, ok_forward)).unwrap();
        let resp = pending.decapsulate(&enc).unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{plain:?}");
    }
}

#[test]
fn outer_route_content_type_and_success() {
    let gw = common::rfc_gateway(GatewayConfig::default());
    let client = client_for(&gw);
    let (body, pending) = client.encapsulate(&request(b"ping")).unwrap();
    let mut wrong = ClientRequest::outer_request("https://gw.example.com/", body.clone()).unwrap();
    wrong
        .headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    let resp = block_on(gw.serve(wrong, ok_forward));
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let outer = ClientRequest::outer_request("https://gw.example.com/", body).unwrap();
    assert_eq!(outer.headers()[CONTENT_TYPE], REQUEST_MEDIA_TYPE);
    let resp = block_on(gw.serve(outer, ok_forward));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], RESPONSE_MEDIA_TYPE);
    let inner = pending.decapsulate_outer(&resp).unwrap();
    assert_eq!(inner.body(), "ping");

    // The client reports gateway errors, key problems marked.
    let (_, pending) = client.encapsulate(&request(b"x")).unwrap();
    let problem = error_response(&OhttpError::UnknownKeyId(9));
    assert!(matches!(
        pending.decapsulate_outer(&problem),
        Err(OhttpError::GatewayRejected {
            status: 400,
            key_problem: true
        })
    ));
}

#[test]
fn client_rejects_bad_configs_and_responses() {
    assert!(ClientRequest::from_encoded_config(&[]).is_err());
    assert!(ClientRequest::from_encoded_config_list(&[0, 5, 1, 2]).is_err());
    assert!(ClientRequest::from_encoded_config_list(&[]).is_err());
    // A low-order public key (all zero) is refused when sealing.
    let mut config =
        sift_ohttp::KeyConfig::decode(&common::vector(common::RFC9458, "key_config")).unwrap();
    config.public_key = vec![0; 32];
    let client = ClientRequest::from_config(&config).unwrap();
    assert!(matches!(
        client.encapsulate(&request(b"x")),
        Err(OhttpError::InvalidKeyConfig(_))
    ));
    // Short or forged responses.
    let gw = common::rfc_gateway(GatewayConfig::default());
    let client = client_for(&gw);
    for bad in [&[][..], &[0u8; 31][..], &[0u8; 64][..]] {
        let (_, pending) = client.encapsulate(&request(b"x")).unwrap();
        assert!(pending.decapsulate(bad).is_err());
    }
}
