//! Apple's known-answer tests (data in tests/vectors/pir/kat.json, sources noted there).

use serde_json::Value;
use sift_pir::keyword::hash_indices;
use sift_pir::params::{IndexPirParameter, KeyCompression, evaluation_key_config};

fn kat() -> Value {
    serde_json::from_str(include_str!("../../../tests/vectors/pir/kat.json")).unwrap()
}

fn nums(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
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
            .map(|i| {
                u8::from_str_radix(&c["keyword_hex"].as_str().unwrap()[2 * i..2 * i + 2], 16)
                    .unwrap()
            })
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
        assert_eq!(
            p.evaluation_key_config.galois_elements,
            nums(expected),
            "{name}"
        );
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

#[test]
fn bucket_roundtrip_and_malformed() {
    use sift_pir::bucket::{HashBucket, Slot};
    let b = HashBucket {
        slots: vec![
            Slot {
                keyword_hash: 0x0102030405060708,
                value: b"ab".to_vec(),
            },
            Slot {
                keyword_hash: 9,
                value: vec![],
            },
        ],
    };
    let s = b.serialize().unwrap();
    assert_eq!(s[..13], [2, 8, 7, 6, 5, 4, 3, 2, 1, 2, 0, b'a', b'b']);
    assert_eq!(s.len(), b.serialized_size());
    let mut padded = s.clone();
    padded.extend_from_slice(&[0; 5]);
    assert_eq!(HashBucket::deserialize(&padded).unwrap(), b);
    assert!(HashBucket::deserialize(&s[..12]).is_err());
    assert_eq!(b.find(9), Some(&[][..]));
    assert_eq!(b.find(10), None);
}

#[test]
fn sharding_functions() {
    use sift_pir::keyword::{ShardingFunction, keyword_hash};
    let kw = b"www.example.com";
    let h = keyword_hash(kw);
    assert_eq!(
        ShardingFunction::Sha256.shard_index(kw, 5).unwrap() as u64,
        h % 5
    );
    let dm = ShardingFunction::DoubleMod {
        other_shard_count: 7,
    };
    assert_eq!(dm.shard_index(kw, 3).unwrap() as u64, (h % 7) % 3);
    assert!(ShardingFunction::Sha256.shard_index(kw, 0).is_err());
}

#[test]
fn cuckoo_places_every_row_within_limits() {
    use sift_pir::cuckoo::{BucketCount, CuckooConfig, CuckooTable};
    use sift_pir::keyword::{hash_indices, keyword_hash};
    let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..2000)
        .map(|i| (format!("k{i}").into_bytes(), vec![1; i % 7]))
        .collect();
    let cfg = CuckooConfig::default_keyword_pir(1024);
    let t = CuckooTable::build(&rows, &cfg, 3).unwrap();
    assert_eq!(t.len(), rows.len());
    assert!(t.max_serialized_bucket_size() <= 1024);
    for (k, v) in &rows {
        let idx = hash_indices(k, t.buckets_per_table, 2);
        let found = (0..2).any(|b| t.tables[b][idx[b]].find(keyword_hash(k)) == Some(v.as_slice()));
        assert!(found);
    }
    // Reproducible with the same seed.
    assert_eq!(t, CuckooTable::build(&rows, &cfg, 3).unwrap());
    // Too small a fixed size fails cleanly.
    let fixed = CuckooConfig {
        bucket_count: BucketCount::FixedSize { bucket_count: 10 },
        ..cfg
    };
    assert!(CuckooTable::build(&rows, &fixed, 3).is_err());
}

/// The data lines of a vector file under tests/vectors/pir/ (comments and blanks skipped).
fn vector_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
}

fn decimal_list<T: std::str::FromStr>(s: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    s.split(',').map(|x| x.parse().unwrap()).collect()
}

#[test]
fn apple_sharding_known_answers() {
    use sift_pir::keyword::ShardingFunction;
    let mut cases = 0;
    for f in vector_lines(include_str!("../../../tests/vectors/pir/sharding.txt")) {
        let function = match f[0].split_once(':') {
            None if f[0] == "sha256" => ShardingFunction::Sha256,
            Some(("doubleMod", other)) => ShardingFunction::DoubleMod {
                other_shard_count: other.parse().unwrap(),
            },
            _ => panic!("unknown sharding function {}", f[0]),
        };
        let keyword: Vec<u8> = decimal_list(f[1]);
        let shard_count: usize = f[2].parse().unwrap();
        let expected: usize = f[3].parse().unwrap();
        assert_eq!(
            function.shard_index(&keyword, shard_count).unwrap(),
            expected,
            "{f:?}"
        );
        cases += 1;
    }
    assert_eq!(cases, 8, "Apple's shardingKnownAnswerTest has 8 cases");
}

#[test]
fn apple_hash_indices_known_answers() {
    let mut cases = 0;
    for f in vector_lines(include_str!("../../../tests/vectors/pir/hash_indices.txt")) {
        let keyword: Vec<u8> = decimal_list(f[0]);
        let got = hash_indices(&keyword, f[1].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!(got, decimal_list::<usize>(f[3]), "{f:?}");
        cases += 1;
    }
    assert_eq!(cases, 2);
}

#[test]
fn apple_serialized_hash_bucket() {
    use sift_pir::bucket::HashBucket;
    use sift_pir::keyword::keyword_hash;
    let text = include_str!("../../../tests/vectors/pir/hash_bucket.txt");
    let mut bucket = None;
    let mut finds = 0;
    for f in vector_lines(text) {
        match f[0] {
            "bucket" => {
                let raw: Vec<u8> = decimal_list(f[1]);
                let b = HashBucket::deserialize(&raw).unwrap();
                // Serializing again gives Apple's bytes back.
                assert_eq!(b.serialize().unwrap(), raw);
                bucket = Some(b);
            }
            "slots" => assert_eq!(
                bucket.as_ref().unwrap().slots.len(),
                f[1].parse::<usize>().unwrap()
            ),
            "find" => {
                let b = bucket.as_ref().unwrap();
                assert_eq!(
                    b.find(keyword_hash(f[1].as_bytes())),
                    Some(f[2].as_bytes()),
                    "{f:?}"
                );
                finds += 1;
            }
            other => panic!("unknown line kind {other}"),
        }
    }
    assert_eq!(finds, 2);
}

#[test]
fn cuckoo_failure_paths_are_clean_errors() {
    use sift_pir::PirError;
    use sift_pir::cuckoo::{BucketCount, CuckooConfig, CuckooTable};
    let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..20)
        .map(|i| (format!("k{i}").into_bytes(), vec![1; 3]))
        .collect();
    let ok = CuckooConfig::default_keyword_pir(1024);
    let invalid = |cfg: CuckooConfig| {
        let e = CuckooTable::build(&rows, &cfg, 1).unwrap_err();
        assert!(matches!(e, PirError::InvalidParameters(_)), "{cfg:?}: {e}");
    };
    invalid(CuckooConfig {
        hash_function_count: 0,
        ..ok.clone()
    });
    for slot_count in [0, 256] {
        invalid(CuckooConfig {
            slot_count,
            ..ok.clone()
        });
    }
    for (expansion_factor, target_load_factor) in [
        (1.0, 0.9),
        (f64::NAN, 0.9),
        (f64::INFINITY, 0.9),
        (1.1, 0.0),
        (1.1, 1.5),
    ] {
        invalid(CuckooConfig {
            bucket_count: BucketCount::AllowExpansion {
                expansion_factor,
                target_load_factor,
            },
            ..ok.clone()
        });
    }
    let cuckoo = |rows: &[(Vec<u8>, Vec<u8>)], cfg: &CuckooConfig, what: &str| {
        let e = CuckooTable::build(rows, cfg, 1).unwrap_err();
        assert!(matches!(e, PirError::Cuckoo(_)), "{e}");
        assert!(e.to_string().contains(what), "{e}");
    };
    // A value larger than a bucket may be, and one longer than the u16 length field.
    let mut big = rows.clone();
    big[7].1 = vec![0; 1024];
    cuckoo(&big, &ok, "does not fit a bucket of at most 1024 bytes");
    big[7].1 = vec![0; 65536];
    let roomy = CuckooConfig {
        max_serialized_bucket_size: 1 << 20,
        ..ok.clone()
    };
    cuckoo(&big, &roomy, "longer than 65535 bytes");
    // The same keyword twice.
    let mut dup = rows.clone();
    dup.push(rows[3].clone());
    cuckoo(&dup, &ok, "duplicate keyword");
    // A fixed size too small says how many rows did not fit.
    let fixed = CuckooConfig {
        bucket_count: BucketCount::FixedSize { bucket_count: 2 },
        ..ok.clone()
    };
    cuckoo(&rows, &fixed, "20 rows do not fit in 1 buckets per table");
    // No rows: an empty table, not an error.
    assert!(CuckooTable::build(&[], &ok, 1).unwrap().is_empty());
}
