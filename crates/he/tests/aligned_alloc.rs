//! The cache-aligning allocator installed as this test binary's global allocator: large
//! blocks come 64-byte aligned, through growth across the threshold and back, contents kept.

use sift_he::aligned_alloc::{ALIGN, CacheAligned, THRESHOLD};

#[global_allocator]
static GLOBAL: CacheAligned = CacheAligned;

#[test]
fn large_vectors_are_cache_aligned_and_keep_contents() {
    for words in [THRESHOLD / 8, 4096, 12_345, 1 << 20] {
        let v = vec![7u64; words];
        assert_eq!(v.as_ptr() as usize % ALIGN, 0, "{words} words");
        let z = vec![0u64; words];
        assert_eq!(z.as_ptr() as usize % ALIGN, 0, "{words} zeroed words");
        assert!(z.iter().all(|&x| x == 0));
    }
    // Grow one element at a time across the threshold: every reallocation keeps the data.
    let mut v: Vec<u64> = Vec::new();
    for i in 0..20_000u64 {
        v.push(i);
        if v.capacity() * 8 >= THRESHOLD {
            assert_eq!(v.as_ptr() as usize % ALIGN, 0, "capacity {}", v.capacity());
        }
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    // Shrink below the threshold and back.
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10).collect::<Vec<u64>>());
    v.resize(100_000, 3);
    assert_eq!(v.as_ptr() as usize % ALIGN, 0);
    assert_eq!(&v[..10], &(0..10).collect::<Vec<u64>>()[..]);
    assert!(v[10..].iter().all(|&x| x == 3));
}
