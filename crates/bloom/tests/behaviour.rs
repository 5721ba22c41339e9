//! Filter behaviour: measured false-positive rate, file round trips and validation errors.

use rand::{Rng, SeedableRng};
use sift_bloom::*;

fn params(n: u64, p: f64, seed: u32) -> Params {
    let z = sizing(n, p).unwrap();
    Params {
        bit_count: z.bit_count,
        hash_count: z.hash_count,
        murmur_seed: seed,
    }
}

/// 1M random non-member URLs against a filter of 100k members: the measured rate must be within
/// 10% of the configured 0.001 (ceil rounding makes the theoretical rate slightly lower).
#[test]
fn measured_false_positive_rate() {
    let n = 100_000u64;
    let p = 0.001;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut b = Builder::new(params(n, p, rng.r#gen())).unwrap();
    b.extend((0..n).map(|i| format!("member{i}.example.com/path/{}", i % 97)));
    let f = b.finish();
    for i in (0..n).step_by(1000) {
        assert!(f.contains(format!("member{i}.example.com/path/{}", i % 97).as_bytes()));
    }
    let trials = 1_000_000u32;
    let mut hits = 0u32;
    for _ in 0..trials {
        let url = format!(
            "nonmember{:016x}.example.org/{:08x}",
            rng.r#gen::<u64>(),
            rng.r#gen::<u32>()
        );
        hits += u32::from(f.contains(url.as_bytes()));
    }
    let measured = f64::from(hits) / f64::from(trials);
    eprintln!("measured FP rate {measured} over {trials} non-members (configured {p})");
    assert!(
        (measured - p).abs() <= 0.1 * p,
        "measured FP rate {measured}, configured {p}"
    );
}

#[test]
fn sizing_rules_and_errors() {
    assert_eq!(
        sizing(10, 0.001).unwrap(),
        Sizing {
            bit_count: 144,
            hash_count: 10,
            byte_count: 18
        }
    );
    // ceil, not round: n=1, p=0.5 → m = 1.44.. → 2 bits, k = ceil(2 ln 2) = 2.
    assert_eq!(
        sizing(1, 0.5).unwrap(),
        Sizing {
            bit_count: 2,
            hash_count: 2,
            byte_count: 1
        }
    );
    assert!(sizing(0, 0.001).is_err());
    assert!(sizing(10, 0.0).is_err());
    assert!(sizing(10, 1.0).is_err());
    assert!(sizing(10, f64::NAN).is_err());
    assert!(sizing(10_000_000_000, 1e-9).is_err());
    assert!(
        BloomFilter::new(Params {
            bit_count: 0,
            hash_count: 1,
            murmur_seed: 0
        })
        .is_err()
    );
}

#[test]
fn lsb_first_layout() {
    // One hash, step irrelevant: bit index = fnv % bitCount; check it lands LSB-first.
    let p = Params {
        bit_count: 64,
        hash_count: 1,
        murmur_seed: 0,
    };
    let mut f = BloomFilter::new(p).unwrap();
    f.insert(b"a");
    let k = (fnv1a32(b"a") % 64) as usize;
    let mut want = [0u8; 8];
    want[k / 8] = 1 << (k % 8);
    assert_eq!(f.data(), &want[..]);
    // Builder agrees for a bit count that is not a multiple of 64 (trailing word truncated).
    let p = Params {
        bit_count: 100,
        hash_count: 3,
        murmur_seed: 9,
    };
    let mut f = BloomFilter::new(p).unwrap();
    let mut b = Builder::new(p).unwrap();
    for i in 0..40 {
        f.insert(format!("k{i}").as_bytes());
    }
    b.extend((0..40).map(|i| format!("k{i}")));
    assert_eq!(b.finish(), f);
    assert_eq!(f.data().len(), 13);
}

#[test]
fn directory_round_trip_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(3, 0.01, 42);
    let mut f = BloomFilter::new(p).unwrap();
    for k in ["a.example", "b.example", "c.example"] {
        f.insert(k.as_bytes());
    }
    let meta = Metadata::for_filter(&f, 3, 0.01);
    assert_eq!(meta.tag, sha256_tag(f.data()));
    write_dir(dir.path(), &f, &meta, OutputFormat::Both).unwrap();
    let back = read_dir(dir.path()).unwrap();
    assert_eq!(back.filter, f);
    assert_eq!(back.meta, meta);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(JSON_FILE)).unwrap()).unwrap();
    for k in [
        "bitCount",
        "hashCount",
        "murmurSeed",
        "tag",
        "itemCount",
        "falsePositiveTolerance",
        "byteCount",
    ] {
        assert!(json.get(k).is_some(), "{k} missing from {json}");
    }

    // Plist only: read back from the plist.
    let d2 = tempfile::tempdir().unwrap();
    write_dir(d2.path(), &f, &meta, OutputFormat::Plist).unwrap();
    assert!(!d2.path().join(BIN_FILE).exists());
    let back = read_dir(d2.path()).unwrap();
    assert_eq!(back.filter, f);

    // Truncated bit array.
    std::fs::write(dir.path().join(BIN_FILE), &f.data()[1..]).unwrap();
    let e = read_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("bytes"), "{e}");
    // Same size, different data: tag mismatch.
    let mut other = f.data().to_vec();
    other[0] ^= 1;
    std::fs::write(dir.path().join(BIN_FILE), &other).unwrap();
    let e = read_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("tag"), "{e}");
    // Garbage JSON, missing directory.
    std::fs::write(dir.path().join(JSON_FILE), b"\xff\x00junk").unwrap();
    assert!(
        read_dir(dir.path())
            .unwrap_err()
            .to_string()
            .contains("JSON")
    );
    let e = read_dir(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither"), "{e}");
    // Broken plist.
    std::fs::write(
        d2.path().join(PLIST_FILE),
        "<plist><dict><key>data</key><data>!!</data></dict></plist>",
    )
    .unwrap();
    assert!(
        read_dir(d2.path())
            .unwrap_err()
            .to_string()
            .contains("base64")
    );
}

#[test]
fn atomic_write_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.bin");
    write_atomic(&p, b"one").unwrap();
    write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert!(write_atomic(&dir.path().join("no/such/dir/x"), b"").is_err());
}
