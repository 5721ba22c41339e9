//! Apple's known-answer tests (data in tests/vectors/pir/kat.json, sources noted there).

use serde_json::Value;
use sift_pir::keyword::hash_indices;
use sift_pir::params::{IndexPirParameter, KeyCompression, evaluation_key_config};

fn kat() -> Value {
    serde_json::from_str(include_str!("../../../tests/vectors/pir/kat.json")).unwrap()
}

fn nums(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn compression(s: &str) -> KeyCompression {
    match s {
        "noCompression" => KeyCompression::NoCompression,
        "hybridCompression" => KeyCompression::HybridCompression,
        "maxCompression" => KeyCompression::MaxCompression,
        _ => panic!("unknown {s}"),
    }
}

#[test]
fn hash_indices_kat() {
    for c in kat()["hash_indices"].as_array().unwrap() {
        let kw: Vec<u8> = (0..c["keyword_hex"].as_str().unwrap().len() / 2)
            .map(|i| u8::from_str_radix(&c["keyword_hex"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let got = hash_indices(
            &kw,
            c["bucket_count"].as_u64().unwrap() as usize,
            c["hash_function_count"].as_u64().unwrap() as usize,
        );
        assert_eq!(got, nums(&c["expected"]));
    }
}

#[test]
fn dimensions_kat() {
    // Apple's test context: n = 16, entries of bytesPerPlaintext bytes (one per plaintext).
    let bpp = 30;
    for c in kat()["dimensions"].as_array().unwrap() {
        let p = IndexPirParameter::generate(
            c["entry_count"].as_u64().unwrap() as usize,
            bpp,
            c["batch_size"].as_u64().unwrap() as usize,
            bpp,
            16,
            c["uneven"].as_bool().unwrap(),
            KeyCompression::NoCompression,
        )
        .unwrap();
        assert_eq!(p.dimensions, nums(&c["expected"]), "{c}");
    }
}

#[test]
fn galois_kat() {
    let k = kat();
    for (name, expected) in k["galois_n16_entries100_batch2"].as_object().unwrap() {
        let p = IndexPirParameter::generate(100, 30, 2, 30, 16, true, compression(name)).unwrap();
        assert_eq!(p.evaluation_key_config.galois_elements, nums(expected), "{name}");
        assert!(p.evaluation_key_config.has_relin);
    }
    for c in k["galois_n4096"].as_array().unwrap() {
        let cfg = evaluation_key_config(
            c["expanded_query_count"].as_u64().unwrap() as usize,
            4096,
            compression(c["compression"].as_str().unwrap()),
        );
        assert_eq!(cfg.galois_elements, nums(&c["expected"]));
    }
}
