//! Known-answer tests from `tests/vectors/bloom/` (Apple's SwiftBloomFilter tests).

use base64::Engine as _;
use sift_bloom::*;

const HASHES: &str = include_str!("../../../tests/vectors/bloom/hashes.txt");
const SAMPLE: &str = include_str!("../../../tests/vectors/bloom/sample_filter.txt");

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        Vec::new()
    } else {
        hex::decode(s).unwrap()
    }
}

#[test]
fn hash_vectors() {
    let mut n = 0;
    for line in HASHES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "fnv1a" => {
                let want = u32::from_str_radix(f[2], 16).unwrap();
                assert_eq!(fnv1a32(&unhex(f[1])), want, "{line}");
            }
            "murmur3" => {
                let seed = u32::from_str_radix(f[2], 16).unwrap();
                let want = u32::from_str_radix(f[3], 16).unwrap();
                assert_eq!(murmur3_x86_32(&unhex(f[1]), seed), want, "{line}");
            }
            other => panic!("unknown vector kind {other}"),
        }
        n += 1;
    }
    assert_eq!(n, 17);
}

struct Sample {
    fp: f64,
    seed: u32,
    bit_count: u32,
    hash_count: u32,
    byte_count: usize,
    data: Vec<u8>,
    items: Vec<String>,
}

fn sample() -> Sample {
    let mut kv = std::collections::HashMap::new();
    let mut items = Vec::new();
    for l in SAMPLE.lines().filter(|l| !l.starts_with('#')) {
        if let Some(i) = l.strip_prefix("item ") {
            items.push(i.to_string());
        } else if let Some((k, v)) = l.split_once('=') {
            kv.insert(k.to_string(), v.to_string());
        }
    }
    Sample {
        fp: kv["falsePositiveTolerance"].parse().unwrap(),
        seed: kv["murmurSeed"].parse().unwrap(),
        bit_count: kv["bitCount"].parse().unwrap(),
        hash_count: kv["hashCount"].parse().unwrap(),
        byte_count: kv["byteCount"].parse().unwrap(),
        data: base64::engine::general_purpose::STANDARD
            .decode(&kv["data"])
            .unwrap(),
        items,
    }
}

#[test]
fn apple_sample_filter() {
    let s = sample();
    let z = sizing(s.items.len() as u64, s.fp).unwrap();
    assert_eq!(
        (z.bit_count, z.hash_count, z.byte_count),
        (s.bit_count, s.hash_count, s.byte_count)
    );
    let params = Params {
        bit_count: z.bit_count,
        hash_count: z.hash_count,
        murmur_seed: s.seed,
    };
    let mut f = BloomFilter::new(params).unwrap();
    for i in &s.items {
        f.insert(i.as_bytes());
    }
    assert_eq!(f.data(), &s.data[..]);
    // The parallel builder gives the same bytes.
    let mut b = Builder::new(params).unwrap();
    b.extend(s.items.iter().map(|i| i.as_bytes()));
    assert_eq!(b.finish().data(), &s.data[..]);
    for i in &s.items {
        assert!(f.contains(i.as_bytes()));
    }
    // The plist carries the same base64 on one line, as the sample's regex expects.
    let meta = Metadata::for_filter(&f, s.items.len() as u64, s.fp);
    let xml = plist_xml(&f, &meta);
    assert!(
        xml.contains("<key>data</key>\n\t<data>JGguOvZzlBEHYkUWJC5vw/eH</data>"),
        "{xml}"
    );
}

/// FNV-1 order (multiply before xor), which some forum posts and a third-party port use, does
/// not reproduce Apple's known answer: this pins that sift's FNV-1a is the right variant.
#[test]
fn fnv1_order_does_not_match_sample() {
    let s = sample();
    let mut data = vec![0u8; s.byte_count];
    for i in &s.items {
        let (f, m) = (fnv1_32(i.as_bytes()), murmur3_x86_32(i.as_bytes(), s.seed));
        for k in 0..s.hash_count {
            let b = bit_index(f, m, k, s.bit_count) as usize;
            data[b / 8] |= 1 << (b % 8);
        }
    }
    assert_ne!(data, s.data);
}
