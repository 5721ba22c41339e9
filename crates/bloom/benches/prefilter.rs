//! Prefilter benchmark: build throughput (1M and 10M generated URLs, all threads and one
//! thread) and the cost of a full device-style check (expand sub-URLs + test each).
//! Prints figures; bounded to a few tens of seconds.

use sift_bloom::{BloomFilter, Builder, Params, sizing};
use std::hint::black_box;
use std::time::Instant;

fn url(i: u64) -> String {
    format!(
        "host{}.example{}.com/path/{}/item?id={}",
        i % 100_003,
        i % 97,
        i % 1013,
        i
    )
}

fn build(n: u64, threads: usize) -> (BloomFilter, f64) {
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
    let t = Instant::now();
    let f = pool.install(|| {
        let mut b = Builder::new(p).unwrap();
        b.extend((0..n).map(url));
        b.finish()
    });
    (f, t.elapsed().as_secs_f64())
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("prefilter benchmark ({cores} threads available), p = 0.001");
    let mut last = None;
    let mut thread_counts = vec![1, cores];
    thread_counts.dedup();
    for &n in &[1_000_000u64, 10_000_000] {
        for &threads in &thread_counts {
            let (f, s) = build(n, threads);
            println!(
                "build {n:>10} keys, {threads:>2} thread(s): {s:7.3} s = {:>6.2} M keys/s (incl. URL generation), {} bits, {} hashes",
                n as f64 / s / 1e6,
                f.params().bit_count,
                f.params().hash_count
            );
            last = Some(f);
        }
    }
    let f = last.expect("built");

    // Generation cost alone, to separate it from hashing.
    let t = Instant::now();
    let mut acc = 0usize;
    for i in 0..1_000_000 {
        acc += black_box(url(i)).len();
    }
    black_box(acc);
    println!(
        "URL generation alone: {:.1} ns/key",
        t.elapsed().as_secs_f64() * 1e9 / 1e6
    );

    let typical =
        "https://www.news.example.com/world/europe/article-12345?utm_source=feed#comments";
    let subs = sift_urlkeys::suburls(typical).unwrap();
    let iters = 200_000u32;
    let t = Instant::now();
    let mut hits = 0usize;
    for _ in 0..iters {
        let s = sift_urlkeys::suburls(black_box(typical)).unwrap();
        hits += s.iter().filter(|k| f.contains(k.as_bytes())).count();
    }
    black_box(hits);
    let per = t.elapsed().as_secs_f64() / f64::from(iters);
    let t = Instant::now();
    for _ in 0..iters {
        for k in &subs {
            hits += usize::from(f.contains(black_box(k.as_bytes())));
        }
    }
    black_box(hits);
    let lookups = t.elapsed().as_secs_f64() / f64::from(iters);
    println!(
        "full check of a typical URL ({} sub-URLs, 10M-key filter): {:.2} µs = {:.0} URL checks/s; \
         of which Bloom lookups {:.2} µs ({:.0} ns/lookup), expansion {:.2} µs",
        subs.len(),
        per * 1e6,
        1.0 / per,
        lookups * 1e6,
        lookups * 1e9 / subs.len() as f64,
        (per - lookups) * 1e6
    );
}
