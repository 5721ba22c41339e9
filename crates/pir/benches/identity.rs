//! Live Caller ID identity benchmark: 1,000 rows × 60 KB values (icon-sized `CallIdentity`
//! entries), `n_4096_logq_27_28_28_logt_5`, one shard, one core. Prints the server time per
//! query beside Apple's published 610 ms for this case, the response size, and the processed
//! database's memory per stored value byte (resident memory growth and serialized size).
//!
//! `cargo bench -p sift-pir --bench identity` (SIFT_BENCH_QUERIES sets the query count).

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sift_he::Context;
use sift_pir::client::KeywordPirClient;
use sift_pir::server::{KeywordPirConfig, KeywordPirServer, process_keyword_database};
use sift_pir::wire;

/// Large blocks (polynomial rows) on cache-line boundaries for the AVX-512 kernels.
#[global_allocator]
static GLOBAL: sift_he::aligned_alloc::CacheAligned = sift_he::aligned_alloc::CacheAligned;

const ROWS: usize = 1_000;
const VALUE_LEN: usize = 60_000;
const PARAMETERS: &str = "n_4096_logq_27_28_28_logt_5";
/// Apple's published server time per query for this configuration (ms).
const APPLE_MS: f64 = 610.0;

/// Resident memory of this process (bytes), from /proc; None elsewhere.
fn rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// This thread's CPU time (Linux schedstat), so a loaded machine counts only running time.
fn cpu_time() -> Option<std::time::Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

fn main() {
    // One core, as Apple's figure.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("first rayon pool");
    let ctx = Context::predefined(PARAMETERS).unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..ROWS)
        .map(|i| {
            let mut v = vec![0u8; VALUE_LEN];
            rng.fill_bytes(&mut v);
            (format!("+1415555{i:04}").into_bytes(), v)
        })
        .collect();
    let stored = (ROWS * VALUE_LEN) as f64;
    let cfg = KeywordPirConfig::default_for(&ctx.params, VALUE_LEN);
    let before = rss();
    let t = Instant::now();
    let shards = process_keyword_database(&ctx, rows.clone(), &cfg, 1).unwrap();
    let processing = t.elapsed();
    let serialized = shards[0].database.serialize(&ctx).len();
    let protos: Vec<_> = shards
        .iter()
        .map(|s| wire::pir_parameters_to_proto(&s.params))
        .collect();
    println!(
        "identity: {ROWS} rows x {VALUE_LEN} B, {PARAMETERS}, 1 shard, 1 core; dims {:?}, entry {} B; processed in {:.1} s",
        shards[0].params.index.dimensions,
        shards[0].params.index.entry_size,
        processing.as_secs_f64()
    );
    let server = KeywordPirServer::from_processed(shards).unwrap();
    let after = rss();
    let client = KeywordPirClient::new(&protos, &mut rng).unwrap();
    let key = client.evaluation_key(&mut rng).unwrap();
    let he_key =
        sift_he::EvaluationKey::deserialize(&ctx, &wire::evaluation_key_from_proto(&key).unwrap())
            .unwrap();
    let queries: usize = std::env::var("SIFT_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (mut wall, mut cpu, mut best) = (0.0f64, 0.0f64, f64::MAX);
    let mut response_bytes = 0;
    for i in 0..queries {
        let (kw, value) = &rows[i * 397 % ROWS];
        let req = client.query(kw, &mut rng).unwrap();
        let t = Instant::now();
        let c = cpu_time();
        let resp = server.answer_with_key(&req, &he_key).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        wall += ms;
        best = best.min(ms);
        if let (Some(a), Some(b)) = (c, cpu_time()) {
            cpu += (b - a).as_secs_f64() * 1e3;
        }
        response_bytes = prost::Message::encoded_len(&resp);
        // A wrong answer would make every figure meaningless.
        assert_eq!(
            client.decode(kw, &resp).unwrap().as_deref(),
            Some(&value[..])
        );
    }
    let n = queries as f64;
    println!(
        "per query: {:.1} ms wall (best {best:.1}), {:.1} ms CPU; Apple publishes {APPLE_MS:.0} ms \
         (sift/Apple x{:.2}); response {response_bytes} B",
        wall / n,
        cpu / n,
        (if cpu > 0.0 { cpu } else { wall }) / n / APPLE_MS
    );
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "memory: {:.1} MB resident for {:.1} MB of values ({:.2} B per stored byte); \
             serialized {:.1} MB ({:.2} B per stored byte)",
            a.saturating_sub(b) as f64 / 1e6,
            stored / 1e6,
            a.saturating_sub(b) as f64 / stored,
            serialized as f64 / 1e6,
            serialized as f64 / stored
        ),
        _ => println!(
            "memory: serialized {:.1} MB ({:.2} B per stored byte)",
            serialized as f64 / 1e6,
            serialized as f64 / stored
        ),
    }
}
