//! Known-answer tests: RFC 9458 Appendix A (both directions, byte for byte) and every RFC 9292
//! §5 example (decode, and re-encode in the form the RFC shows).

mod common;

use common::{RFC9292, RFC9458, rfc_gateway, vector, vector32};
use sift_ohttp::bhttp::{self, BhttpRequest, BhttpResponse, Field, Limits};
use sift_ohttp::config::{Aead, KeyConfig, SymmetricSuite, decode_list};
use sift_ohttp::{ClientRequest, ClientResponse, GatewayConfig, OhttpError};

/// Our client for RFC 9458 Appendix A's key configuration.
fn rfc_client() -> ClientRequest {
    ClientRequest::from_encoded_config(&vector(RFC9458, "key_config")).unwrap()
}

/// The RFC's request encapsulated by [`rfc_client`] with the ephemeral secret `eph`.
fn rfc_encapsulate(eph: &[u8; 32]) -> (bytes::Bytes, ClientResponse) {
    rfc_client()
        .encapsulate_bhttp_with_ephemeral(&vector(RFC9458, "request"), eph)
        .unwrap()
}

#[test]
fn rfc9458_key_config_is_what_the_gateway_publishes() {
    let gw = rfc_gateway(GatewayConfig::default());
    let config = vector(RFC9458, "key_config");
    let decoded = KeyConfig::decode(&config).unwrap();
    assert_eq!(decoded.key_id, 1);
    assert_eq!(decoded.public_key, vector(RFC9458, "server_public_key"));
    assert_eq!(decoded.suites, SymmetricSuite::DEFAULT.to_vec());
    assert_eq!(decoded.encode().unwrap(), config);
    let published = gw.key_configs();
    assert_eq!(&published[..2], &(config.len() as u16).to_be_bytes());
    assert_eq!(&published[2..], &config[..]);
    assert_eq!(decode_list(&published).unwrap(), vec![decoded]);
}

#[test]
fn rfc9458_client_reproduces_the_encapsulated_request() {
    let client = rfc_client();
    assert_eq!(client.key_id(), 1);
    assert_eq!(client.aead(), Aead::Aes128Gcm, "first offered suite");
    let (enc_request, pending) = rfc_encapsulate(&vector32(RFC9458, "client_secret_key"));
    assert_eq!(
        hex::encode(&enc_request),
        hex::encode(vector(RFC9458, "encapsulated_request"))
    );
    // enc sits right after the 7-byte header.
    assert_eq!(
        &enc_request[7..39],
        &vector(RFC9458, "client_public_key")[..]
    );
    // The client opens the RFC's encapsulated response with the context of this request.
    let plain = pending
        .decapsulate_bhttp(&vector(RFC9458, "encapsulated_response"))
        .unwrap();
    assert_eq!(plain, vector(RFC9458, "response"));
}

#[test]
fn rfc9458_client_decodes_the_response_as_http() {
    let (_, pending) = rfc_encapsulate(&vector32(RFC9458, "client_secret_key"));
    let resp = pending
        .decapsulate(&vector(RFC9458, "encapsulated_response"))
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().is_empty() && resp.body().is_empty());
}

#[test]
fn rfc9458_gateway_decapsulates_and_reproduces_the_encapsulated_response() {
    let gw = rfc_gateway(GatewayConfig::default());
    let (req, ctx) = gw
        .decapsulate(&vector(RFC9458, "encapsulated_request"))
        .unwrap();
    assert_eq!(req.method(), "GET");
    assert_eq!(req.uri(), "https://example.com/");
    assert!(req.body().is_empty());
    assert_eq!(ctx.aead(), Aead::Aes128Gcm);
    let enc_response = ctx
        .encapsulate_bhttp_with_nonce(
            &vector(RFC9458, "response"),
            &vector(RFC9458, "response_nonce"),
        )
        .unwrap();
    assert_eq!(
        hex::encode(&enc_response),
        hex::encode(vector(RFC9458, "encapsulated_response"))
    );
    // The response nonce is the tail of the RFC's salt (enc || nonce).
    let salt = vector(RFC9458, "response_salt");
    assert_eq!(&salt[..32], &vector(RFC9458, "client_public_key")[..]);
    assert_eq!(&salt[32..], &vector(RFC9458, "response_nonce")[..]);
}

#[test]
fn rfc9458_wrong_ephemeral_or_tampering_breaks_the_example() {
    let mut eph = vector32(RFC9458, "client_secret_key");
    eph[0] ^= 0x40;
    let (other, pending) = rfc_encapsulate(&eph);
    assert_ne!(other, vector(RFC9458, "encapsulated_request"));
    assert!(matches!(
        pending.decapsulate_bhttp(&vector(RFC9458, "encapsulated_response")),
        Err(OhttpError::Decrypt)
    ));
}

#[test]
fn rfc9458_chacha_suite_round_trip() {
    // The same key with the second offered suite: ChaCha20-Poly1305, 32-byte response nonce.
    let config = KeyConfig::decode(&vector(RFC9458, "key_config")).unwrap();
    let client = ClientRequest::with_suite(&config, SymmetricSuite::CHACHA20_POLY1305).unwrap();
    let (body, pending) = client
        .encapsulate_bhttp(&vector(RFC9458, "request"))
        .unwrap();
    assert_eq!(&body[5..7], &[0, 3]);
    let gw = rfc_gateway(GatewayConfig::default());
    let (plain, ctx) = gw.decapsulate_bhttp(&body).unwrap();
    assert_eq!(plain, vector(RFC9458, "request"));
    assert_eq!(ctx.aead(), Aead::ChaCha20Poly1305);
    let enc_resp = ctx.encapsulate_bhttp(&vector(RFC9458, "response")).unwrap();
    assert_eq!(enc_resp.len(), 32 + 3 + 16);
    assert_eq!(
        pending.decapsulate_bhttp(&enc_resp).unwrap(),
        vector(RFC9458, "response")
    );
}

fn hello_request() -> BhttpRequest {
    BhttpRequest {
        method: b"GET".to_vec(),
        scheme: b"https".to_vec(),
        authority: Vec::new(),
        path: b"/hello.txt".to_vec(),
        headers: vec![
            Field::new(
                "user-agent",
                "curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3",
            ),
            Field::new("host", "www.example.com"),
            Field::new("accept-language", "en, mi"),
        ],
        content: Vec::new(),
        trailers: Vec::new(),
    }
}

#[test]
fn rfc9292_known_length_request() {
    let wire = vector(RFC9292, "request_known_length");
    let decoded = BhttpRequest::decode(&wire, &Limits::default()).unwrap();
    assert_eq!(decoded, hello_request());
    // This is the form we produce: all sections present, known length.
    assert_eq!(decoded.encode_known_length().unwrap(), wire);
    // §5.1: the last two bytes (content, trailers) may be truncated without effect.
    for cut in 1..=2 {
        let truncated = &wire[..wire.len() - cut];
        assert_eq!(
            BhttpRequest::decode(truncated, &Limits::default()).unwrap(),
            decoded
        );
    }
    // One byte more is a truncated header section, not a shorter message.
    assert!(BhttpRequest::decode(&wire[..wire.len() - 3], &Limits::default()).is_err());
    // As an `http` request: no authority, so the URI is the path; Host stays a header.
    let req = bhttp::decode_request(&wire, &Limits::default()).unwrap();
    assert_eq!(req.method(), "GET");
    assert_eq!(req.uri(), "/hello.txt");
    assert_eq!(req.headers()["host"], "www.example.com");
    assert_eq!(req.headers()["accept-language"], "en, mi");
}

#[test]
fn rfc9292_indeterminate_length_request_with_padding() {
    let wire = vector(RFC9292, "request_indeterminate_length");
    let decoded = BhttpRequest::decode(&wire, &Limits::default()).unwrap();
    assert_eq!(decoded, hello_request());
    // We encode without padding: the RFC's message minus its 10 padding bytes.
    let ours = decoded.encode_indeterminate_length().unwrap();
    assert_eq!(ours, &wire[..wire.len() - 10]);
    assert!(wire[wire.len() - 12..].iter().all(|b| *b == 0));
    // §5.1: up to 12 bytes can be removed without changing the meaning.
    for cut in 0..=12 {
        assert_eq!(
            BhttpRequest::decode(&wire[..wire.len() - cut], &Limits::default()).unwrap(),
            decoded,
            "cut {cut}"
        );
    }
    // Non-zero padding is invalid (§3.8).
    let mut bad = wire.clone();
    *bad.last_mut().unwrap() = 1;
    assert!(BhttpRequest::decode(&bad, &Limits::default()).is_err());
}

#[test]
fn rfc9292_response_with_informational_responses() {
    let wire = vector(RFC9292, "response_indeterminate_length");
    let decoded = BhttpResponse::decode(&wire, &Limits::default()).unwrap();
    assert_eq!(decoded.informational.len(), 2);
    assert_eq!(decoded.informational[0].status, 102);
    assert_eq!(
        decoded.informational[0].headers,
        vec![Field::new("running", "\"sleep 15\"")]
    );
    assert_eq!(decoded.informational[1].status, 103);
    assert_eq!(
        decoded.informational[1].headers,
        vec![
            Field::new("link", "</style.css>; rel=preload; as=style"),
            Field::new("link", "</script.js>; rel=preload; as=script"),
        ]
    );
    assert_eq!(decoded.status, 200);
    let names: Vec<&[u8]> = decoded.headers.iter().map(|f| &f.name[..]).collect();
    assert_eq!(
        names,
        [
            &b"date"[..],
            b"server",
            b"last-modified",
            b"etag",
            b"accept-ranges",
            b"content-length",
            b"vary",
            b"content-type"
        ]
    );
    assert_eq!(decoded.headers[3].value, b"\"34aa387-d-1568eb00\"");
    assert_eq!(
        decoded.content,
        b"Hello World! My content includes a trailing CRLF.\r\n"
    );
    assert!(decoded.trailers.is_empty());
    // The RFC's form (content as one chunk, every terminator present) is what we produce.
    assert_eq!(decoded.encode_indeterminate_length().unwrap(), wire);
    // As an `http` response the informational ones are dropped.
    let resp = bhttp::decode_response(&wire, &Limits::default()).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "51");
    assert_eq!(resp.headers()["vary"], "Accept-Encoding");
    assert_eq!(resp.body().len(), 51);
}

#[test]
fn rfc9292_known_length_response_with_trailer() {
    let wire = vector(RFC9292, "response_known_length_chunked");
    let decoded = BhttpResponse::decode(&wire, &Limits::default()).unwrap();
    assert_eq!(decoded.status, 200);
    assert!(decoded.informational.is_empty() && decoded.headers.is_empty());
    assert_eq!(decoded.content, b"This content contains CRLF.\r\n");
    assert_eq!(decoded.trailers, vec![Field::new("trailer", "text")]);
    assert_eq!(decoded.encode_known_length().unwrap(), wire);
    // Same message, indeterminate form, decodes to the same thing.
    let ind = decoded.encode_indeterminate_length().unwrap();
    assert_eq!(ind[0], 3);
    assert_eq!(
        BhttpResponse::decode(&ind, &Limits::default()).unwrap(),
        decoded
    );
}
