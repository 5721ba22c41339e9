//! One-pass prefix hashing ([`PrefixHasher`], [`BloomFilter::contains_prefixes`]) gives exactly
//! the per-key hashes and answers, in any length order, for every prefix of random strings and
//! of real sub-URL groups.

use rand::{Rng, SeedableRng};
use sift_bloom::*;

#[test]
fn prefix_hashes_equal_per_key_hashes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let n = rng.gen_range(0..70);
        let data: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
        let seed: u32 = rng.r#gen();
        // Increasing lengths, every one.
        let mut h = PrefixHasher::new(&data, seed);
        for len in 0..=n {
            assert_eq!(h.pair(len), Some(hash_pair(&data[..len], seed)), "{len}");
        }
        assert_eq!(h.pair(n + 1), None);
        // Random order (restarts on shorter lengths), repeats included.
        let mut h = PrefixHasher::new(&data, seed);
        for _ in 0..20 {
            let len = rng.gen_range(0..=n);
            assert_eq!(h.pair(len), Some(hash_pair(&data[..len], seed)), "{len}");
        }
    }
    // Pinned values through the prefix path too (Apple's sample vectors).
    let s = b"The quick brown fox jumps over the lazy dog";
    let mut h = PrefixHasher::new(s, 0x9747_b28c);
    assert_eq!(h.pair(4), Some(hash_pair(b"The ", 0x9747_b28c)));
    assert_eq!(h.pair(s.len()), Some((0x048f_ff90, 0x2FA8_26CD)));
}

#[test]
fn contains_prefixes_matches_contains() {
    let z = sizing(2_000, 0.01).unwrap();
    let p = Params {
        bit_count: z.bit_count,
        hash_count: z.hash_count,
        murmur_seed: 1_267_652_889,
    };
    let mut f = BloomFilter::new(p).unwrap();
    let mut w = sift_urlkeys::SubUrlWalker::new();
    let urls = [
        "https://www.sub1.example.com/a/b/c?id=123#fragment",
        "https://www.example.com/news/article?id=42",
        "http://x.y.example.org:8080/p//q/?r#s",
    ];
    // Members: every other sub-URL of the first two URLs, plus noise keys.
    let mut k = 0;
    for u in &urls[..2] {
        w.for_each(u, |s| {
            if k % 2 == 0 {
                f.insert(s.as_bytes());
            }
            k += 1;
        })
        .unwrap();
    }
    for i in 0..1_500 {
        f.insert(format!("noise{i}.example.net/x").as_bytes());
    }
    let mut hits = 0;
    for u in urls {
        let mut want = Vec::new();
        w.for_each(u, |s| want.push((s.to_owned(), f.contains(s.as_bytes()))))
            .unwrap();
        let mut got = Vec::new();
        w.for_each_group(u, |s, lens| {
            let any = f.contains_prefixes(s.as_bytes(), lens, |len, hit| {
                got.push((s[..len].to_owned(), hit))
            });
            assert_eq!(any, lens.iter().any(|&l| f.contains(&s.as_bytes()[..l])));
        })
        .unwrap();
        assert_eq!(got, want, "{u}");
        hits += got.iter().filter(|g| g.1).count();
    }
    assert!(hits >= k / 2, "members must hit ({hits} of {k})");
    // Past-the-end and decreasing lengths.
    let s = b"example.com/a/b";
    let mut got = Vec::new();
    f.contains_prefixes(s, &[15, 11, 99, 0], |l, h| got.push((l, h)));
    let c = |l: usize| f.contains(&s[..l]);
    assert_eq!(got, [(15, c(15)), (11, c(11)), (99, false), (0, c(0))]);
}
