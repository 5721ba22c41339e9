//! RFC 9578 Appendix A.2 known-answer tests (see tests/vectors/privacypass/README.md).
use sha2::{Digest, Sha256};
use sift_privacypass::*;
use std::time::Duration;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn rfc9578_public_token_vectors() {
    let raw = include_str!("../../../tests/vectors/privacypass/rfc9578_public_tokens.json");
    let vs: Vec<std::collections::HashMap<String, String>> = serde_json::from_str(raw).unwrap();
    assert_eq!(vs.len(), 5);
    for v in &vs {
        let pem = String::from_utf8(unhex(&v["skS"])).unwrap();
        let issuer = Issuer::from_pkcs8_pem(&pem).unwrap();
        let pks = unhex(&v["pkS"]);
        // SPKI exactly as RFC 9578 §6.5 / Apple's PublicKey.swift encode it.
        assert_eq!(issuer.public_key().spki_der(), &pks[..]);
        let kid: [u8; 32] = Sha256::digest(&pks).into();
        assert_eq!(issuer.public_key().token_key_id(), kid);
        // token_request -> token_response exactly (RSA blind signing is deterministic).
        let treq = TokenRequest::parse(&unhex(&v["token_request"])).unwrap();
        assert_eq!(treq.truncated_key_id, kid[31]);
        let resp = issuer.issue(&treq).unwrap();
        assert_eq!(resp.to_bytes(), unhex(&v["token_response"]));
        // token: fields and verification.
        let tb = unhex(&v["token"]);
        let tok = Token::parse(&tb).unwrap();
        assert_eq!(tok.to_bytes(), tb);
        assert_eq!(tok.nonce.to_vec(), unhex(&v["nonce"]));
        assert_eq!(tok.token_key_id, kid);
        let cd: [u8; 32] = Sha256::digest(unhex(&v["token_challenge"])).into();
        assert_eq!(tok.challenge_digest, cd);
        let pk = IssuerPublicKey::from_spki(&pks).unwrap();
        let ver = Verifier::new(vec![pk], ReplayCache::new(10, Duration::from_secs(60))).unwrap();
        assert_eq!(ver.verify(&tok).unwrap(), kid[31]);
        assert_eq!(ver.verify(&tok), Err(Error::Replay));
    }
}
