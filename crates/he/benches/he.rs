//! Micro-benchmarks of the BFV hot paths; prints median per-operation times.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sift_he::bfv::{self, encrypt};
use sift_he::ntt::NttTable;
use sift_he::{Context, EvalAccumulator, EvaluationKey, Format, Plaintext, SecretKey};

/// Median time per call over batches running ~`budget` in total.
fn time<F: FnMut()>(mut f: F, budget: Duration) -> Duration {
    f();
    let start = Instant::now();
    let mut iters = 0u32;
    while start.elapsed() < budget / 10 {
        f();
        iters += 1;
    }
    let per_batch = iters.max(1);
    let mut samples = Vec::new();
    for _ in 0..9 {
        let s = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        samples.push(s.elapsed() / per_batch);
    }
    samples.sort();
    samples[4]
}

fn report(name: &str, d: Duration) {
    println!("{name:48} {:>12.2} µs", d.as_secs_f64() * 1e6);
}

fn main() {
    let budget = Duration::from_millis(500);
    let t4096 = NttTable::new(268369921, 4096).unwrap();
    let mut a: Vec<u64> = (0..4096u64).map(|i| i * 7919 % 268369921).collect();
    let f4 = time(|| t4096.forward(black_box(&mut a)), budget);
    report("forward NTT n=4096, 1×28-bit", f4);
    let i4 = time(|| t4096.inverse(black_box(&mut a)), budget);
    report("inverse NTT n=4096, 1×28-bit", i4);
    let f4w = time(|| t4096.forward_u64(black_box(&mut a)), budget);
    report("forward NTT n=4096, 1×28-bit, 64-bit path", f4w);
    let i4w = time(|| t4096.inverse_u64(black_box(&mut a)), budget);
    report("inverse NTT n=4096, 1×28-bit, 64-bit path", i4w);

    let ctx8 = Context::predefined("n_8192_logq_3x55_logt_24").unwrap();
    let mut p = sift_he::Poly::zero(&ctx8, 3, Format::Coeff);
    for (i, x) in p.data.iter_mut().enumerate() {
        *x = i as u64 * 104729 % 36028797017456641;
    }
    let f8 = time(
        || {
            p.format = Format::Coeff;
            p.forward_ntt(&ctx8).unwrap();
        },
        budget,
    );
    report("forward NTT n=8192, 3×55-bit", f8);
    let i8 = time(
        || {
            p.format = Format::Eval;
            p.inverse_ntt(&ctx8).unwrap();
        },
        budget,
    );
    report("inverse NTT n=8192, 3×55-bit", i8);

    for name in ["n_4096_logq_27_28_28_logt_5", "n_8192_logq_3x55_logt_24"] {
        println!("-- {name}");
        let ctx = Context::predefined(name).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let sk = SecretKey::generate(&ctx, &mut rng);
        let vals: Vec<u64> = (0..ctx.n as u64).map(|i| i % ctx.t()).collect();
        let pt = Plaintext::new(&ctx, &vals).unwrap();
        let ct = encrypt(&ctx, &pt, &sk, &mut rng);
        let k = ctx.ciphertext_moduli_count();
        let mut ce = ct.clone();
        ce.convert_to(&ctx, Format::Eval);
        let pe = pt.to_eval(&ctx, k);
        let mut acc = EvalAccumulator::new(&ctx, k, 2);
        let mac = time(
            || {
                acc.add_product(&ctx, black_box(&ce), black_box(&pe))
                    .unwrap()
            },
            budget,
        );
        report("pt×ct multiply-add (accumulator)", mac);
        let evk = EvaluationKey::generate(&ctx, &sk, &[3], true, &mut rng).unwrap();
        let gal = time(
            || drop(black_box(bfv::apply_galois(&ctx, &ct, 3, &evk).unwrap())),
            budget,
        );
        report("Galois automorphism + key switch", gal);
        let mul = time(
            || {
                let m = bfv::multiply(&ctx, &ct, &ct).unwrap();
                drop(black_box(bfv::relinearize(&ctx, &m, &evk).unwrap()));
            },
            Duration::from_secs(2),
        );
        report("ct×ct + relinearize", mul);
    }
    println!(
        "ratio inverse/forward NTT n=4096: {:.2}",
        i4.as_secs_f64() / f4.as_secs_f64()
    );
    println!(
        "target NTT n=4096 ≤ 10 µs: {}",
        if f4 <= Duration::from_micros(10) {
            "met"
        } else {
            "not met"
        }
    );
}
