//! Live Caller ID identity benchmark: 1,000 rows × 60 KB values (icon-sized `CallIdentity`
//! entries), `n_4096_logq_27_28_28_logt_5`, one shard, one core. Builds the database with the
//! layout sift chose before (3-slot buckets, Apple's dimensions) and with today's default
//! ([`KeywordPirConfig::default_for`]), loads each from its serialized `.bin` as a server does,
//! and times queries alternating between them. Prints the server time per query beside Apple's
//! published 610 ms for this case, the phases, the response size, and the loaded database's
//! memory per stored value byte (resident growth and serialized size).
//!
//! `cargo bench -p sift-pir --bench identity` (SIFT_BENCH_QUERIES sets the query count per
//! layout; SIFT_BENCH_LAYOUTS=all adds the other candidate layouts).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sift_he::Context;
use sift_pir::client::KeywordPirClient;
use sift_pir::cuckoo::CuckooConfig;
use sift_pir::index_pir::PhaseTimes;
use sift_pir::params::DimensionChoice;
use sift_pir::server::{
    KeywordPirConfig, KeywordPirServer, default_max_serialized_bucket_size,
    process_keyword_database,
};
use sift_pir::wire;

/// Large blocks (polynomial rows) on cache-line boundaries for the AVX-512 kernels.
#[global_allocator]
static GLOBAL: sift_he::aligned_alloc::CacheAligned = sift_he::aligned_alloc::CacheAligned;

const ROWS: usize = 1_000;
const VALUE_LEN: usize = 60_000;
const PARAMETERS: &str = "n_4096_logq_27_28_28_logt_5";
/// Apple's published server time per query for this configuration (ms), from
/// swift-homomorphic-encryption's ParameterTuning guide ("Wide Database").
const APPLE_MS: f64 = 610.0;
/// Apple's published response size for the same case (KB).
const APPLE_RESPONSE_KB: f64 = 738.3;

/// Resident memory of this process (bytes), from /proc; None elsewhere.
fn rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time of every thread of this process (Linux schedstat): on a loaded machine this counts
/// only the time the query actually ran, on the main thread or rayon's.
fn cpu_time() -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let s = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// One database layout under test.
struct Layout {
    name: &'static str,
    config: KeywordPirConfig,
}

/// A loaded layout and what was measured on it.
struct Loaded {
    name: &'static str,
    server: KeywordPirServer,
    client: KeywordPirClient,
    key: sift_he::EvaluationKey,
    summary: String,
    resident: Option<u64>,
    held: usize,
    serialized: usize,
    wall: Vec<f64>,
    cpu: Vec<f64>,
    times: PhaseTimes,
    response_bytes: usize,
}

fn layouts(ctx: &Context, all: bool) -> Vec<Layout> {
    let bpp = ctx.params.bytes_per_plaintext();
    let default = KeywordPirConfig::default_for(&ctx.params, VALUE_LEN);
    // What sift did before: room for three values in each bucket, Apple's dimensions.
    let mut before = default.clone();
    before.cuckoo =
        CuckooConfig::default_keyword_pir(default_max_serialized_bucket_size(bpp, 3, VALUE_LEN));
    before.cuckoo.slot_count = 3;
    before.dimension_choice = DimensionChoice::Apple;
    let mut out = vec![
        Layout {
            name: "before (3 slots, Apple dims)",
            config: before,
        },
        Layout {
            name: "default",
            config: default.clone(),
        },
    ];
    if all {
        for (name, slots, functions) in [
            ("2 slots, 2 functions", 2, 2),
            ("3 slots, 2 functions", 3, 2),
            ("1 slot, 3 functions", 1, 3),
            ("1 slot, 2 functions (Apple's buckets)", 1, 2),
        ] {
            let mut c = default.clone();
            c.cuckoo = CuckooConfig::default_keyword_pir(default_max_serialized_bucket_size(
                bpp, slots, VALUE_LEN,
            ));
            c.cuckoo.slot_count = slots;
            c.cuckoo.hash_function_count = functions;
            c.dimension_choice = DimensionChoice::Fastest;
            out.push(Layout { name, config: c });
        }
    }
    out
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
    let queries: usize = std::env::var("SIFT_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let all = std::env::var("SIFT_BENCH_LAYOUTS").is_ok_and(|v| v == "all");
    println!(
        "identity: {ROWS} rows x {VALUE_LEN} B, {PARAMETERS}, 1 shard, 1 core, {queries} queries \
         per layout (alternating)"
    );
    let mut loaded: Vec<Loaded> = Vec::new();
    for layout in layouts(&ctx, all) {
        let t = Instant::now();
        let shards = process_keyword_database(&ctx, rows.clone(), &layout.config, 1).unwrap();
        let processing = t.elapsed();
        let p = &shards[0].params;
        let summary = format!(
            "{} functions, dims {:?}, entry {} B ({} plaintexts), processed in {:.1} s",
            p.hash_function_count,
            p.index.dimensions,
            p.index.entry_size,
            p.index.chunk_count(ctx.params.bytes_per_plaintext()),
            processing.as_secs_f64()
        );
        let protos: Vec<_> = shards
            .iter()
            .map(|s| wire::pir_parameters_to_proto(&s.params))
            .collect();
        let files: Vec<_> = shards
            .iter()
            .zip(&protos)
            .map(|(s, p)| (p.clone(), s.database.serialize(&ctx)))
            .collect();
        drop(shards);
        let serialized = files.iter().map(|f| f.1.len()).sum();
        // Loaded as a server loads a dataset: from the parameters and the `.bin` bytes.
        let before = rss();
        let server = KeywordPirServer::from_serialized(files).unwrap();
        let resident = rss()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(b) + serialized as u64);
        let held = server.shards().iter().map(|s| s.database_bytes()).sum();
        let client = KeywordPirClient::new(&protos, &mut rng).unwrap();
        let key = client.evaluation_key(&mut rng).unwrap();
        let key = sift_he::EvaluationKey::deserialize(
            &ctx,
            &wire::evaluation_key_from_proto(&key).unwrap(),
        )
        .unwrap();
        loaded.push(Loaded {
            name: layout.name,
            server,
            client,
            key,
            summary,
            resident,
            held,
            serialized,
            wall: Vec::new(),
            cpu: Vec::new(),
            times: PhaseTimes::default(),
            response_bytes: 0,
        });
    }
    for i in 0..queries {
        for l in &mut loaded {
            let (kw, value) = &rows[(i * 397 + 11) % ROWS];
            let req = l.client.query(kw, &mut rng).unwrap();
            let t = Instant::now();
            let c = cpu_time();
            let resp = l.server.answer_with_key(&req, &l.key).unwrap();
            l.wall.push(t.elapsed().as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (c, cpu_time()) {
                l.cpu.push((b - a).as_secs_f64() * 1e3);
            }
            l.response_bytes = prost::Message::encoded_len(&resp);
            // A wrong answer would make every figure meaningless.
            assert_eq!(
                l.client.decode(kw, &resp).unwrap().as_deref(),
                Some(&value[..])
            );
            // The same query again, phase by phase.
            let q = req.query.as_ref().unwrap();
            l.server.shards()[0]
                .respond_with(l.server.context(), &q.ciphertexts, &l.key, &mut l.times)
                .unwrap();
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    let base_cpu = loaded.first().map(|l| mean(&l.cpu)).unwrap_or(0.0);
    for l in &loaded {
        let n = queries.max(1) as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
        let cpu = if l.cpu.is_empty() {
            mean(&l.wall)
        } else {
            mean(&l.cpu)
        };
        println!("\n{}: {}", l.name, l.summary);
        println!(
            "  per query: {:.1} ms CPU (best {:.1}), {:.1} ms wall; Apple publishes {APPLE_MS:.0} ms \
             (sift/Apple x{:.2}; this/before x{:.2})",
            cpu,
            best(&l.cpu),
            mean(&l.wall),
            cpu / APPLE_MS,
            cpu / base_cpu
        );
        println!(
            "  phases (wall): expansion {:.1} ms, first dimension {:.1} ms, second dimension \
             {:.1} ms, relinearization + mod switch {:.1} ms",
            ms(l.times.expansion),
            ms(l.times.first_dimension),
            ms(l.times.second_dimension),
            ms(l.times.relin_mod_switch)
        );
        println!(
            "  response {:.1} KB (Apple {APPLE_RESPONSE_KB} KB)",
            l.response_bytes as f64 / 1e3
        );
        println!(
            "  database held for answering: {:.1} MB ({:.2} B per stored byte)",
            l.held as f64 / 1e6,
            l.held as f64 / stored
        );
        match l.resident {
            Some(r) => println!(
                "  memory: {:.1} MB resident for {:.1} MB of values ({:.2} B per stored byte); \
                 serialized {:.1} MB ({:.2} B per stored byte)",
                r as f64 / 1e6,
                stored / 1e6,
                r as f64 / stored,
                l.serialized as f64 / 1e6,
                l.serialized as f64 / stored
            ),
            None => println!(
                "  memory: serialized {:.1} MB ({:.2} B per stored byte)",
                l.serialized as f64 / 1e6,
                l.serialized as f64 / stored
            ),
        }
    }
}
