//! Wire-format checks: field numbers and encodings are pinned by hand-encoded bytes, so a wrong
//! field number or type in our `.proto` files fails here.

use prost::Message;
use sift_proto::{api, he, pir};

#[test]
fn pir_request_field_numbers() {
    let req = api::PirRequest {
        shard_index: 3,
        query: Some(pir::EncryptedIndices {
            ciphertexts: vec![],
            num_pir_calls: 2,
        }),
        evaluation_key_metadata: Some(api::EvaluationKeyMetadata {
            timestamp: 5,
            identifier: vec![0xAA],
        }),
        configuration_hash: vec![0xBB],
        shard_id: Some(String::new()),
        evaluation_key: None,
    };
    // field 1 varint 3; field 2 (len 2: field 2 varint 2); field 3 (len 5: f1=5, f2 bytes [AA]);
    // field 4 bytes [BB]; field 5 empty string (explicit presence: still written).
    let expected = [
        0x08, 0x03, 0x12, 0x02, 0x10, 0x02, 0x1A, 0x05, 0x08, 0x05, 0x12, 0x01, 0xAA, 0x22, 0x01,
        0xBB, 0x2A, 0x00,
    ];
    assert_eq!(req.encode_to_vec(), expected);
    assert_eq!(api::PirRequest::decode(&expected[..]).unwrap(), req);
}

#[test]
fn seeded_and_full_ciphertext_oneof_numbers() {
    let seeded = he::SerializedCiphertext {
        serialized_ciphertext_type: Some(
            he::serialized_ciphertext::SerializedCiphertextType::Seeded(
                he::SerializedSeededCiphertext {
                    poly0: vec![1],
                    seed: vec![2],
                },
            ),
        ),
    };
    assert_eq!(
        seeded.encode_to_vec(),
        [0x0A, 0x06, 0x0A, 0x01, 0x01, 0x12, 0x01, 0x02]
    );
    let full = he::SerializedCiphertext {
        serialized_ciphertext_type: Some(
            he::serialized_ciphertext::SerializedCiphertextType::Full(
                he::SerializedFullCiphertext {
                    polys: vec![7],
                    skip_lsbs: vec![19, 11],
                    correction_factor: 1,
                },
            ),
        ),
    };
    // skip_lsbs is packed (proto3 default): field 2, length 2, values 19, 11.
    assert_eq!(
        full.encode_to_vec(),
        [
            0x12, 0x09, 0x0A, 0x01, 0x07, 0x12, 0x02, 0x13, 0x0B, 0x18, 0x01
        ]
    );
}

#[test]
fn config_oneof_and_reuse_flag() {
    let cfg = api::Config {
        config: None,
        config_id: vec![1, 2],
        reuse_existing_config: true,
    };
    assert_eq!(cfg.encode_to_vec(), [0x1A, 0x02, 0x01, 0x02, 0x20, 0x01]);
    let req = api::Request {
        usecase: "a".into(),
        request: None,
    };
    assert_eq!(req.encode_to_vec(), [0x0A, 0x01, b'a']);
}

#[test]
fn evaluation_key_config_is_deterministic() {
    let params = he::EncryptionParameters {
        polynomial_degree: 4096,
        plaintext_modulus: 17,
        coefficient_moduli: vec![134176769, 268369921, 268361729],
        error_std_dev: he::ErrorStdDev::Stddev32 as i32,
        security_level: he::SecurityLevel::Quantum128 as i32,
        he_scheme: he::HeScheme::Bfv as i32,
    };
    let cfg = he::EvaluationKeyConfig {
        encryption_parameters: Some(params),
        galois_elements: vec![65, 129],
        has_relin_key: true,
    };
    let bytes = cfg.encode_to_vec();
    // Field 1 first, then packed galois elements (field 2), then has_relin_key (field 3).
    assert_eq!(bytes[0], 0x0A);
    assert_eq!(
        &bytes[bytes.len() - 7..],
        [0x12, 0x03, 0x41, 0x81, 0x01, 0x18, 0x01]
    );
}

#[test]
fn keyword_database_text_format_as_apple_writes_it() {
    let text = r#"
rows {
  keyword: "www.example.com"
  value: "1"
}
rows { keyword: "example10.com/resource?query=bugs" value: "1" }
"#;
    let db: pir::KeywordDatabase = sift_proto::from_text(text).unwrap();
    assert_eq!(db.rows.len(), 2);
    assert_eq!(db.rows[0].keyword, b"www.example.com");
    assert_eq!(db.rows[1].value, b"1");
}

#[test]
fn pir_parameters_text_round_trip_uses_apple_enum_names() {
    let params = pir::PirParameters {
        encryption_parameters: Some(he::EncryptionParameters {
            polynomial_degree: 4096,
            plaintext_modulus: 17,
            coefficient_moduli: vec![134176769, 268369921, 268361729],
            error_std_dev: 0,
            security_level: 1,
            he_scheme: 1,
        }),
        num_entries: 100,
        entry_size: 20,
        dimensions: vec![9, 2],
        keyword_pir_params: Some(pir::KeywordPirParameters {
            num_hash_functions: 2,
            symmetric_pir_client_config: None,
            sharding_function: Some(pir::PirShardingFunction {
                function: Some(pir::pir_sharding_function::Function::Sha256(
                    pir::PirShardingFunctionSha256 {},
                )),
            }),
        }),
        algorithm: pir::PirAlgorithm::MulPir as i32,
        batch_size: 2,
        evaluation_key_config: None,
        key_compression_strategy: pir::KeyCompressionStrategy::HybridCompression as i32,
        encoding_entry_size: false,
    };
    let text = sift_proto::to_text(&params).unwrap();
    // Enums by their names, as Apple's text files have them.
    for name in [
        "algorithm: PIR_ALGORITHM_MUL_PIR",
        "KEY_COMPRESSION_STRATEGY_HYBRID_COMPRESSION",
        "security_level: SECURITY_LEVEL_QUANTUM128",
    ] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    let back: pir::PirParameters = sift_proto::from_text(&text).unwrap();
    assert_eq!(back, params);
}

#[test]
fn bad_text_is_an_error_not_a_panic() {
    assert!(sift_proto::from_text::<pir::KeywordDatabase>("rows { keyword: ").is_err());
    assert!(sift_proto::from_text::<pir::KeywordDatabase>("nonsense: 1").is_err());
    assert!(sift_proto::from_text::<pir::KeywordDatabase>("\u{0}\u{ff}").is_err());
}
