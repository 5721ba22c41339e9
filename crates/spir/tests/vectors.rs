//! Known-answer tests: RFC 9497 A.4.2 (VOPRF P384-SHA384), Apple's PirConversionTests OPRF bytes,
//! and the derived symmetric-PIR rows (tests/vectors/oprf/README.md).

use rand_core::{CryptoRng, RngCore};
use serde_json::Value;
use sift_spir::{
    BlindEvaluation, ConfigType, OprfClient, OprfError, OprfPrivateKey, ParsedOprfOutput,
    encrypt_entry,
};

const RFC: &str = include_str!("../../../tests/vectors/oprf/rfc9497_p384_sha384_voprf.json");
const APPLE: &str = include_str!("../../../tests/vectors/oprf/apple_pir_conversion.json");
const ROWS: &str = include_str!("../../../tests/vectors/oprf/spir_rows_derived.json");

fn h(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("missing {k}"))).unwrap()
}

/// An "RNG" replaying fixed bytes: P-384 scalars are sampled by filling 48 bytes and accepting
/// them when they are in range, so replaying a scalar's bytes yields that scalar.
struct Replay(Vec<u8>, usize);

impl RngCore for Replay {
    fn next_u32(&mut self) -> u32 {
        unimplemented!()
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let end = self.1 + dest.len();
        assert!(end <= self.0.len(), "replay RNG exhausted");
        dest.copy_from_slice(&self.0[self.1..end]);
        self.1 = end;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for Replay {}

fn rfc() -> (Value, OprfPrivateKey, OprfClient) {
    let v: Value = serde_json::from_str(RFC).unwrap();
    let key = OprfPrivateKey::from_bytes(&h(&v, "skSm")).unwrap();
    let client = OprfClient::new(&h(&v, "pkSm"), ConfigType::default()).unwrap();
    (v, key, client)
}

#[test]
fn rfc9497_public_key_is_compressed_sec1() {
    let (v, key, _) = rfc();
    assert_eq!(key.public_key().to_vec(), h(&v, "pkSm"));
    assert_eq!(key.to_bytes().to_vec(), h(&v, "skSm"));
    assert_eq!(
        OprfPrivateKey::from_hex(&format!("{}\n", key.to_hex()))
            .unwrap()
            .public_key(),
        key.public_key()
    );
}

#[test]
fn rfc9497_blind_evaluate_finalize() {
    let (v, key, client) = rfc();
    let vectors = v["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for t in vectors {
        let input = h(t, "input");
        let query = client.blind(&input, &mut Replay(h(t, "blind"), 0)).unwrap();
        assert_eq!(query.element().to_vec(), h(t, "blindedElement"));
        let eval = key
            .blind_evaluate_with_rng(query.element(), &mut Replay(h(t, "proofRandomScalar"), 0))
            .unwrap();
        assert_eq!(eval.evaluated_element.to_vec(), h(t, "evaluationElement"));
        assert_eq!(eval.proof.to_vec(), h(t, "proof"));
        let out = client.finalize(&query, &eval).unwrap();
        assert_eq!(out.output.to_vec(), h(t, "output"));
        // The unblinded evaluation the database is processed with gives the same output.
        assert_eq!(key.evaluate(&input).unwrap().to_vec(), h(t, "output"));
    }
}

#[test]
fn apple_pir_conversion_bytes() {
    let (v, key, client) = rfc();
    let a: Value = serde_json::from_str(APPLE).unwrap();
    // The query element is a valid compressed point the server can evaluate.
    let q = h(&a, "queryElement");
    assert!(key.blind_evaluate(&q).is_ok());
    let mut bad = q.clone();
    bad[0] = 0x04;
    assert!(matches!(
        key.blind_evaluate(&bad),
        Err(OprfError::InvalidElement(_))
    ));
    // The response parses from Apple's rawRepresentation layout (element ‖ proof) ...
    let raw = [h(&a, "evaluatedElement"), h(&a, "proof")].concat();
    let resp = BlindEvaluation::from_bytes(&raw).unwrap();
    assert_eq!(resp.to_bytes(), raw);
    assert_eq!(
        resp,
        BlindEvaluation::from_parts(&h(&a, "evaluatedElement"), &h(&a, "proof")).unwrap()
    );
    // ... and verifies and finalizes as RFC 9497 A.4.2.1's answer.
    let t = &v["vectors"][0];
    let query = client
        .blind(&h(t, "input"), &mut Replay(h(t, "blind"), 0))
        .unwrap();
    assert_eq!(
        client.finalize(&query, &resp).unwrap().output.to_vec(),
        h(t, "output")
    );
}

#[test]
fn tampered_or_foreign_answers_are_rejected() {
    let (v, key, client) = rfc();
    let t = &v["vectors"][0];
    let query = client
        .blind(&h(t, "input"), &mut rand::thread_rng())
        .unwrap();
    let good = key.blind_evaluate(query.element()).unwrap();
    assert!(client.finalize(&query, &good).is_ok());
    let mut bad = good.clone();
    bad.proof[95] ^= 1;
    assert!(client.finalize(&query, &bad).is_err());
    // An answer computed with another key fails the proof against the published key.
    let other = OprfPrivateKey::generate(&mut rand::thread_rng());
    let foreign = other.blind_evaluate(query.element()).unwrap();
    assert!(matches!(
        client.finalize(&query, &foreign),
        Err(OprfError::ProofVerification)
    ));
    // Another input's answer does not verify for this query either.
    let q2 = client.blind(b"other", &mut rand::thread_rng()).unwrap();
    let ans2 = key.blind_evaluate(q2.element()).unwrap();
    assert!(client.finalize(&query, &ans2).is_err());
}

#[test]
fn derived_spir_rows() {
    let d: Value = serde_json::from_str(ROWS).unwrap();
    let key = OprfPrivateKey::from_bytes(&h(&d, "skSm")).unwrap();
    let rows = d["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let (kw, enc) = encrypt_entry(&key, &h(r, "keyword"), &h(r, "value")).unwrap();
        assert_eq!(kw, h(r, "obliviousKeyword"));
        assert_eq!(enc, h(r, "encryptedValue"));
        let parsed = ParsedOprfOutput::new(
            key.evaluate(&h(r, "keyword")).unwrap(),
            ConfigType::default(),
        );
        assert_eq!(parsed.decrypt(&enc).unwrap(), h(r, "value"));
        let mut bad = enc.clone();
        bad[0] ^= 1;
        assert!(matches!(parsed.decrypt(&bad), Err(OprfError::Decryption)));
    }
}

#[test]
fn key_and_point_validation() {
    assert!(OprfPrivateKey::from_bytes(&[0u8; 48]).is_err());
    assert!(OprfPrivateKey::from_bytes(&[0xff; 48]).is_err());
    assert!(OprfPrivateKey::from_bytes(&[1u8; 47]).is_err());
    assert!(OprfPrivateKey::from_hex("zz").is_err());
    let (v, _, _) = rfc();
    let pk = h(&v, "pkSm");
    assert!(OprfClient::new(&pk[..48], ConfigType::default()).is_err());
    let mut bad = pk.clone();
    bad[0] = 0x05;
    assert!(OprfClient::new(&bad, ConfigType::default()).is_err());
    assert!(BlindEvaluation::from_bytes(&[0u8; 144]).is_err());
    assert_eq!(
        ConfigType::from_name("OPRF_P384_AES_GCM_192_NONCE_96_TAG_128"),
        Some(ConfigType::OprfP384AesGcm192Nonce96Tag128)
    );
    assert_eq!(ConfigType::from_proto_value(0), None);
    assert_eq!(ConfigType::from_proto_value(1), Some(ConfigType::default()));
}
