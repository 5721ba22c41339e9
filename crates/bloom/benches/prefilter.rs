//! Prefilter benchmark: build throughput (1M and 10M generated URLs, one thread and all
//! threads; key generation is excluded from the timing) and the cost of a full device-style
//! check (expand sub-URLs + test each against the filter). Prints figures; bounded in time.

use sift_bloom::{BloomFilter, Builder, Params, sizing};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn url(i: u64) -> String {
    format!(
        "host{}.example{}.com/path/{}/item?id={}",
        i % 100_003,
        i % 97,
        i % 1013,
        i
    )
}

/// Builds a filter of `n` generated URLs; returns it and the time spent inside the builder.
fn build(n: u64, threads: usize) -> (BloomFilter, Duration) {
    let z = sizing(n, 0.001).unwrap();
    let p = Params {
        bit_count: z.bit_count,
        hash_count: z.hash_count,
        murmur_seed: 0x9747_b28c,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut b = Builder::new(p).unwrap();
    let mut spent = Duration::ZERO;
    let batch = 1u64 << 18;
    let mut keys: Vec<String> = Vec::with_capacity(batch as usize);
    let mut i = 0;
    while i < n {
        keys.clear();
        keys.extend((i..(i + batch).min(n)).map(url));
        let t = Instant::now();
        pool.install(|| b.insert_batch(&keys));
        spent += t.elapsed();
        i += batch;
    }
    let t = Instant::now();
    let f = b.finish();
    (f, spent + t.elapsed())
}

fn check_cost(f: &BloomFilter, url: &str) -> (usize, f64, f64) {
    let subs = sift_urlkeys::suburls(url).unwrap();
    let iters = 100_000u32;
    let mut hits = 0usize;
    let t = Instant::now();
    for _ in 0..iters {
        // The device path: expand and test each sub-URL without a string per sub-URL.
        sift_urlkeys::for_each_suburl(black_box(url), |k| {
            hits += usize::from(f.contains(k.as_bytes()))
        })
        .unwrap();
    }
    let full = t.elapsed().as_secs_f64() / f64::from(iters);
    let t = Instant::now();
    for _ in 0..iters {
        for k in &subs {
            hits += usize::from(f.contains(black_box(k.as_bytes())));
        }
    }
    black_box(hits);
    let lookups = t.elapsed().as_secs_f64() / f64::from(iters);
    (subs.len(), full, lookups)
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("prefilter benchmark ({cores} threads available), p = 0.001");
    let mut threads = vec![1, cores];
    threads.dedup();
    let urls = [
        ("short", "https://www.example.com/"),
        ("typical", "https://www.example.com/news/article?id=42"),
        (
            "apple-doc",
            "https://www.sub1.example.com/a/b/c?id=123#fragment",
        ),
    ];
    for &n in &[1_000_000u64, 10_000_000] {
        let mut filter = None;
        for &t in &threads {
            let (f, d) = build(n, t);
            let s = d.as_secs_f64();
            println!(
                "build {n:>9} keys, {t:>2} thread(s): {s:6.3} s = {:6.2} M keys/s ({} bits, {} hashes)",
                n as f64 / s / 1e6,
                f.params().bit_count,
                f.params().hash_count
            );
            filter = Some(f);
        }
        let f = filter.expect("built");
        for (name, u) in urls {
            let (count, full, lookups) = check_cost(&f, u);
            println!(
                "  check {name:<9} ({count:>2} sub-URLs) on the {n}-key filter: {:6.2} µs per URL \
                 ({:.0} URLs/s); expansion {:.2} µs, lookups {:.2} µs ({:.0} ns each)",
                full * 1e6,
                1.0 / full,
                (full - lookups) * 1e6,
                lookups * 1e6,
                lookups * 1e9 / count as f64
            );
        }
    }
}
