//! Shard overlay benchmark: what serving replaced plaintexts through an overlay costs
//! (`sift_pir::overlay`). One URL-filter shard (100,000 rows of 2-byte values,
//! `n_4096_logq_27_28_28_logt_5`) mapped from its `.words` file, answered with no overlay and
//! with overlays replacing 3%, 10% and 30% of its plaintexts (random residues), queries
//! alternating between them. Prints the first dimension's time per stored plaintext and the
//! correction's time per replaced plaintext (the first-dimension difference divided by the
//! overlay's size), and the whole response's time, from the best (least disturbed) query of
//! each.
//!
//! `cargo bench -p sift-pir --bench overlay` (SIFT_BENCH_QUERIES sets the queries per case).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sift_he::{Context, EvalPlaintext, Format, Poly};
use sift_pir::client::KeywordPirClient;
use sift_pir::index_pir::PhaseTimes;
use sift_pir::overlay::Overlay;
use sift_pir::server::{
    KeywordPirConfig, ServerShard, process_keyword_database, words_file, words_shape,
};
use sift_pir::{storage, wire};

/// Large blocks (polynomial rows) on cache-line boundaries for the AVX-512 kernels.
#[global_allocator]
static GLOBAL: sift_he::aligned_alloc::CacheAligned = sift_he::aligned_alloc::CacheAligned;

const ROWS: usize = 100_000;
const PARAMETERS: &str = "n_4096_logq_27_28_28_logt_5";

/// A plaintext of uniformly random Eval residues.
fn random_plaintext(ctx: &Context, rng: &mut StdRng) -> EvalPlaintext {
    let k = ctx.ciphertext_moduli_count();
    let mut poly = Poly::zero(ctx, k, Format::Eval);
    for r in 0..k {
        let q = ctx.modulus(r).value;
        for x in poly.row_mut(r) {
            *x = rng.gen_range(0..q);
        }
    }
    EvalPlaintext { poly }
}

fn main() {
    let ctx = Context::predefined(PARAMETERS).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..ROWS)
        .map(|i| {
            let v: [u8; 2] = rng.r#gen();
            (format!("host{i}.example.com").into_bytes(), v.to_vec())
        })
        .collect();
    let config = KeywordPirConfig::default_for(&ctx.params, 2);
    let shard = process_keyword_database(&ctx, rows.clone(), &config, 1)
        .unwrap()
        .remove(0);
    let proto = wire::pir_parameters_to_proto(&shard.params);
    let shape = words_shape(&ctx, &shard.params);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard.words");
    std::fs::write(&path, words_file(&ctx, &shard).unwrap().unwrap()).unwrap();
    let map = storage::map_file(&path).unwrap();
    let base = storage::decode(&map, &ctx, shape).unwrap();
    let stored = shape.tables * shape.len;
    println!(
        "{PARAMETERS}, {ROWS} rows: dims {:?}, {} tables of {} plaintexts, packed {}",
        shard.params.index.dimensions,
        shape.tables,
        shape.len,
        base[0].is_packed()
    );
    let load = || ServerShard::from_words(&ctx, proto.clone(), &map, None).unwrap();
    let mut cases: Vec<(String, ServerShard)> = vec![("no overlay".into(), load())];
    for percent in [3usize, 10, 30] {
        let per_table = (shape.len * percent).div_ceil(100);
        let changes: Vec<Vec<(usize, Option<EvalPlaintext>)>> = (0..shape.tables)
            .map(|_| {
                let mut which: Vec<usize> = (0..shape.len).collect();
                for i in 0..per_table {
                    let j = rng.gen_range(i..shape.len);
                    which.swap(i, j);
                }
                which[..per_table]
                    .iter()
                    .map(|&i| (i, Some(random_plaintext(&ctx, &mut rng))))
                    .collect()
            })
            .collect();
        let t = Instant::now();
        let overlay = Overlay::build(&ctx, &base, None, &changes).unwrap();
        let built = t.elapsed();
        let bytes = overlay.encode().len();
        let shard = load().with_overlay(overlay).unwrap();
        println!(
            "overlay of {percent}%: {} plaintexts, {:.1} MB file, built in {:.0} ms",
            shard.overlay_len(),
            bytes as f64 / 1e6,
            built.as_secs_f64() * 1e3
        );
        cases.push((format!("{percent}% overlay"), shard));
    }
    let client = KeywordPirClient::new(std::slice::from_ref(&proto), &mut rng).unwrap();
    let key = client.evaluation_key(&mut rng).unwrap();
    let key =
        sift_he::EvaluationKey::deserialize(&ctx, &wire::evaluation_key_from_proto(&key).unwrap())
            .unwrap();
    let queries: usize = std::env::var("SIFT_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Best first dimension and whole response per case over the queries, the cases
    // alternating.
    let mut best = vec![Duration::MAX; cases.len()];
    let mut best_whole = vec![Duration::MAX; cases.len()];
    for i in 0..queries {
        let kw = &rows[i * 9973 % ROWS].0;
        let req = client.query(kw, &mut rng).unwrap();
        let cts = &req.query.as_ref().unwrap().ciphertexts;
        for (((_, shard), best), whole) in cases.iter().zip(&mut best).zip(&mut best_whole) {
            let mut times = PhaseTimes::default();
            let t = Instant::now();
            let _ = shard.respond_with(&ctx, cts, &key, &mut times).unwrap();
            *whole = (*whole).min(t.elapsed());
            *best = (*best).min(times.first_dimension);
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let plain = us(best[0]);
    println!(
        "first dimension, best of {queries} (one query, {} PIR calls): {plain:.0} µs, {:.2} µs per stored plaintext; whole response {:.0} µs",
        shard.params.index.batch_size,
        plain / stored as f64,
        us(best_whole[0])
    );
    for (((name, shard), best), whole) in cases.iter().zip(&best).zip(&best_whole).skip(1) {
        let extra = us(*best) - plain;
        println!(
            "{name}: first dimension {:.0} µs (+{:.0} µs), {:.2} µs per replaced plaintext; whole response {:.0} µs (+{:.0}%)",
            us(*best),
            extra,
            extra / shard.overlay_len() as f64,
            us(*whole),
            (us(*whole) / us(best_whole[0]) - 1.0) * 100.0
        );
    }
}
