//! End-to-end issuance/redemption, replay, wrong key, malformed input.
use sift_privacypass::*;
use std::time::Duration;

fn obtain(issuer: &Issuer) -> Token {
    let (req, pending) =
        client_request(issuer.public_key(), &TokenChallenge::new("issuer.example")).unwrap();
    let req = TokenRequest::parse(&req.to_bytes()).unwrap();
    let resp = issuer.issue(&req).unwrap();
    pending
        .finalize(&TokenResponse::parse(&resp.to_bytes()).unwrap())
        .unwrap()
}

#[test]
fn flow_replay_wrong_key_and_garbage() {
    let a = Issuer::generate().unwrap();
    let b = Issuer::from_pkcs8_pem(&Issuer::generate().unwrap().to_pkcs8_pem().unwrap()).unwrap();
    // SPKI is the RSASSA-PSS form: starts with SEQUENCE and contains the id-RSASSA-PSS OID 1.2.840.113549.1.1.10.
    let oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
    ];
    assert!(
        a.public_key()
            .spki_der()
            .windows(oid.len())
            .any(|w| w == oid)
    );
    let v = Verifier::new(
        vec![a.public_key().clone()],
        ReplayCache::new(100, Duration::from_secs(60)),
    )
    .unwrap();
    let t = obtain(&a);
    let hdr = t.to_header();
    assert_eq!(Token::from_header(&hdr).unwrap(), t);
    assert_eq!(
        v.verify_header(&format!("{hdr}==, foo=bar")).unwrap(),
        a.public_key().truncated_key_id()
    );
    assert_eq!(v.verify(&t), Err(Error::Replay));
    // token from another key
    let tb = obtain(&b);
    if b.public_key().truncated_key_id() != a.public_key().truncated_key_id() {
        assert_eq!(v.verify(&tb), Err(Error::UnknownKey));
    }
    // forged signature
    let mut t2 = obtain(&a);
    t2.authenticator[10] ^= 1;
    assert_eq!(v.verify(&t2), Err(Error::InvalidSignature));
    // truncated token, garbage base64
    let bytes = t.to_bytes();
    assert!(Token::parse(&bytes[..bytes.len() - 1]).is_err());
    assert!(Token::from_header("PrivateToken token=@@@!!").is_err());
    assert!(Token::from_header("Bearer abc").is_err());
    // Two tokens in one header are refused, in either spelling (issue 19).
    let second = obtain(&a).to_header();
    let second_value = second.strip_prefix("PrivateToken ").unwrap();
    assert!(Token::from_header(&format!("{hdr}, {second}")).is_err());
    assert!(Token::from_header(&format!("{hdr}, {second_value}")).is_err());
    // issuer rejects wrong truncated key id
    let (mut req, _) = client_request(a.public_key(), &TokenChallenge::new("x")).unwrap();
    req.truncated_key_id ^= 1;
    assert_eq!(a.issue(&req), Err(Error::UnknownKey));
    // SPKI round trip keeps key id
    let again = IssuerPublicKey::from_spki(a.public_key().spki_der()).unwrap();
    assert_eq!(again.token_key_id(), a.public_key().token_key_id());
    assert!(
        issuer_directory_json(&[a.public_key()])
            .starts_with("{\"issuer-request-uri\":\"/issue\",\"token-keys\":[{\"token-type\":2,")
    );
}

#[test]
fn replay_cache_bounded_rotation() {
    let c = ReplayCache::new(2, Duration::from_secs(3600));
    for i in 0..3u8 {
        c.check_and_insert(&[i; 32]).unwrap();
    }
    assert_eq!(c.check_and_insert(&[2; 32]), Err(Error::Replay));
    assert_eq!(c.check_and_insert(&[0; 32]), Err(Error::Replay));
    for i in 3..7u8 {
        c.check_and_insert(&[i; 32]).unwrap();
    }
    // oldest generation evicted: bounded memory
    assert!(c.check_and_insert(&[0; 32]).is_ok());
}

#[test]
fn challenge_encoding() {
    let c = TokenChallenge::new("ab");
    assert_eq!(c.to_bytes().unwrap(), vec![0, 2, 0, 2, b'a', b'b', 0, 0, 0]);
}
