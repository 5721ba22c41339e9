//! Encrypt → (Galois | pt×ct | ct×ct+relin | mod switch | serialization) → decrypt on every
//! predefined parameter set, printing the remaining noise budget.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sift_he::bfv::{self, decrypt, encrypt, noise_budget};
use sift_he::{
    Ciphertext, Context, EncryptionParameters, EvalAccumulator, EvaluationKey, Format, Plaintext,
    SecretKey,
};

fn random_pt(ctx: &Context, rng: &mut StdRng) -> Plaintext {
    let v: Vec<u64> = (0..ctx.n).map(|_| rng.gen_range(0..ctx.t())).collect();
    Plaintext::new(ctx, &v).unwrap()
}

/// Negacyclic product mod t, with `b` sparse.
fn pt_mul(ctx: &Context, a: &Plaintext, b: &Plaintext) -> Vec<u64> {
    let n = ctx.n;
    let t = ctx.t() as u128;
    let mut out = vec![0u128; n];
    for (j, &bj) in b.coeffs.iter().enumerate().filter(|(_, v)| **v != 0) {
        for (i, &ai) in a.coeffs.iter().enumerate() {
            let p = ai as u128 * bj as u128 % t;
            let k = i + j;
            if k < n {
                out[k] = (out[k] + p) % t;
            } else {
                out[k - n] = (out[k - n] + t - p) % t;
            }
        }
    }
    out.into_iter().map(|x| x as u64).collect()
}

fn pt_galois(ctx: &Context, a: &Plaintext, g: usize) -> Vec<u64> {
    let n = ctx.n;
    let t = ctx.t();
    let mut out = vec![0u64; n];
    for (i, &c) in a.coeffs.iter().enumerate() {
        let raw = i * g % (2 * n);
        if raw < n {
            out[raw] = c
        } else {
            out[raw - n] = (t - c) % t
        }
    }
    out
}

fn sparse_pt(ctx: &Context, rng: &mut StdRng) -> Plaintext {
    let mut v = vec![0u64; ctx.n];
    for _ in 0..3 {
        v[rng.gen_range(0..ctx.n)] = rng.gen_range(1..ctx.t());
    }
    Plaintext::new(ctx, &v).unwrap()
}

fn run(name: &str) {
    let ctx = Context::predefined(name).unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let sk = SecretKey::generate(&ctx, &mut rng);
    let pt = random_pt(&ctx, &mut rng);
    let ct = encrypt(&ctx, &pt, &sk, &mut rng);
    assert_eq!(decrypt(&ctx, &ct, &sk).unwrap(), pt, "{name} fresh");
    let fresh = noise_budget(&ctx, &ct, &sk).unwrap();

    // Seeded serialization round trip (the client's query format).
    let s = ct.serialize(&ctx, false);
    let sift_he::SerializedCiphertext::Seeded(sd) = &s else {
        panic!("{name}: fresh ciphertext must serialize seeded")
    };
    if name.starts_with("n_4096_logq_27_28_28") {
        assert_eq!(sd.poly0.len(), 28160, "query poly0 size (spec §3.6)");
    }
    let back = Ciphertext::deserialize(&ctx, &s, None, Format::Coeff).unwrap();
    assert_eq!(back, ct, "{name} seeded round trip");

    let mut line = format!("{name:34} fresh {fresh:5.1}");
    if ctx.params.supports_evaluation_key() {
        let g = 2 * ctx.n - 1;
        let evk = EvaluationKey::generate(&ctx, &sk, &[3, g], true, &mut rng).unwrap();
        let evk_back = EvaluationKey::deserialize(&ctx, &evk.serialize(&ctx)).unwrap();
        assert_eq!(evk_back, evk, "{name} evaluation key round trip");
        for g in [3, g] {
            let r = bfv::apply_galois(&ctx, &ct, g, &evk_back).unwrap();
            assert_eq!(
                decrypt(&ctx, &r, &sk).unwrap().coeffs,
                pt_galois(&ctx, &pt, g),
                "{name} galois {g}"
            );
            line += &format!(" galois{g} {:5.1}", noise_budget(&ctx, &r, &sk).unwrap());
        }

        // pt×ct via the accumulator (two terms).
        let k = ctx.ciphertext_moduli_count();
        let p2 = sparse_pt(&ctx, &mut rng);
        let p3 = sparse_pt(&ctx, &mut rng);
        let mut ce = ct.clone();
        ce.convert_to(&ctx, Format::Eval);
        let mut acc = EvalAccumulator::new(&ctx, k, 2);
        acc.add_product(&ctx, &ce, &p2.to_eval(&ctx, k)).unwrap();
        acc.add_product(&ctx, &ce, &p3.to_eval(&ctx, k)).unwrap();
        let prod = acc.finish(&ctx);
        let expect: Vec<u64> = pt_mul(&ctx, &pt, &p2)
            .iter()
            .zip(pt_mul(&ctx, &pt, &p3))
            .map(|(a, b)| (a + b) % ctx.t())
            .collect();
        assert_eq!(
            decrypt(&ctx, &prod, &sk).unwrap().coeffs,
            expect,
            "{name} pt×ct"
        );
        line += &format!(" ptct {:5.1}", noise_budget(&ctx, &prod, &sk).unwrap());

        // ct×ct + relinearization.
        let ct2 = encrypt(&ctx, &p2, &sk, &mut rng);
        let m = bfv::multiply(&ctx, &ct, &ct2).unwrap();
        let r = bfv::relinearize(&ctx, &m, &evk).unwrap();
        let nb = noise_budget(&ctx, &r, &sk).unwrap();
        line += &format!(" ctct+relin {nb:5.1}");
        if nb > 0.0 {
            assert_eq!(
                decrypt(&ctx, &r, &sk).unwrap().coeffs,
                pt_mul(&ctx, &pt, &p2),
                "{name} ct×ct"
            );
        }
    }

    // Mod switch to q_0 and the response format (full, skipLSBs).
    let mut ms = ct.clone();
    ms.mod_switch_down_to_single(&ctx).unwrap();
    assert_eq!(decrypt(&ctx, &ms, &sk).unwrap(), pt, "{name} mod switch");
    line += &format!(" modswitch {:5.1}", noise_budget(&ctx, &ms, &sk).unwrap());
    let s = ms.serialize(&ctx, true);
    let back = Ciphertext::deserialize(&ctx, &s, Some(1), Format::Coeff).unwrap();
    assert_eq!(
        decrypt(&ctx, &back, &sk).unwrap(),
        pt,
        "{name} skipLSBs response"
    );
    if name == "n_4096_logq_27_28_28_logt_5" {
        let sift_he::SerializedCiphertext::Full(f) = &s else {
            panic!("full")
        };
        assert_eq!(f.polys.len(), 12290);
        assert_eq!(f.skip_lsbs, vec![19, 11]);
    }
    println!("{line}");
}

#[test]
fn roundtrip_all_predefined() {
    for name in EncryptionParameters::predefined_names() {
        run(name);
    }
}

/// Apple's key layout (`Bfv+Keys.swift _generateKeySwitchKey`): key ciphertext i decrypts (as
/// c0 + c1·s in Eval form over all L moduli) to (P mod q_i)·s′ in row i and 0 in other rows,
/// up to the small encryption error.
#[test]
fn key_switch_key_layout_matches_apple() {
    let ctx = Context::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let sk = SecretKey::generate(&ctx, &mut rng);
    let evk = EvaluationKey::generate(&ctx, &sk, &[3], false, &mut rng).unwrap();
    let s_prime = sk.poly.apply_galois(&ctx, 3).unwrap();
    let l = ctx.moduli_count();
    let p = ctx.params.moduli[l - 1];
    let key = &evk.galois[&3];
    assert_eq!(key.ciphertexts.len(), l - 1);
    for (i, ct) in key.ciphertexts.iter().enumerate() {
        assert_eq!(ct.polys()[0].basis(), (0..l).collect::<Vec<_>>());
        assert_eq!(ct.format(), Format::Eval);
        let mut v = ct.polys()[1].clone();
        v.mul_assign(&ctx, &sk.poly).unwrap();
        v.add_assign(&ctx, &ct.polys()[0]).unwrap();
        let mut expect = sift_he::Poly::zero(&ctx, l, Format::Eval);
        let m = ctx.modulus(i);
        for (d, &x) in expect.row_mut(i).iter_mut().zip(s_prime.row(i)) {
            *d = m.mul(m.reduce(p), x);
        }
        v.sub_assign(&ctx, &expect).unwrap();
        v.inverse_ntt(&ctx).unwrap();
        // What remains is the error polynomial: small in every row.
        for r in 0..l {
            let q = ctx.modulus(r).value;
            assert!(
                v.row(r).iter().all(|&x| x.min(q - x) <= 21),
                "key {i} row {r} not small"
            );
        }
        // The seeded form regenerates c1.
        let sift_he::SerializedCiphertext::Seeded(sd) = ct.serialize(&ctx, false) else {
            panic!("seeded")
        };
        assert_eq!(sd.poly0.len(), 42496);
        assert_eq!(sift_he::Poly::from_seed(&ctx, l, &sd.seed), ct.polys()[1]);
    }
}

/// Malformed serialized input yields errors, never panics.
#[test]
fn malformed_input_is_rejected() {
    use sift_he::{
        FullCiphertextBytes, SeededCiphertextBytes, SerializedCiphertext, SerializedEvaluationKey,
    };
    let ctx = Context::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let sk = SecretKey::generate(&ctx, &mut rng);
    let pt = random_pt(&ctx, &mut rng);
    let ct = encrypt(&ctx, &pt, &sk, &mut rng);
    let SerializedCiphertext::Seeded(sd) = ct.serialize(&ctx, false) else {
        panic!("seeded")
    };
    // Truncated, extended, and wrong moduli counts.
    let short = SerializedCiphertext::Seeded(SeededCiphertextBytes {
        poly0: sd.poly0[..100].to_vec(),
        seed: sd.seed,
    });
    assert!(Ciphertext::deserialize(&ctx, &short, None, Format::Coeff).is_err());
    let mut long = sd.clone();
    long.poly0.push(0);
    assert!(
        Ciphertext::deserialize(
            &ctx,
            &SerializedCiphertext::Seeded(long),
            None,
            Format::Coeff
        )
        .is_err()
    );
    for k in [0, 4] {
        assert!(
            Ciphertext::deserialize(
                &ctx,
                &SerializedCiphertext::Seeded(sd.clone()),
                Some(k),
                Format::Coeff
            )
            .is_err()
        );
    }
    // Full form: empty, bad count, bad skip lists, unreduced coefficients.
    let full = |polys: Vec<u8>, skip: Vec<u32>| {
        SerializedCiphertext::Full(FullCiphertextBytes {
            polys,
            skip_lsbs: skip,
            correction_factor: 1,
        })
    };
    assert!(Ciphertext::deserialize(&ctx, &full(vec![], vec![]), Some(1), Format::Coeff).is_err());
    assert!(
        Ciphertext::deserialize(&ctx, &full(vec![9, 0], vec![]), Some(1), Format::Coeff).is_err()
    );
    assert!(
        Ciphertext::deserialize(
            &ctx,
            &full(vec![2, 0, 1, 2, 3], vec![40, 0]),
            Some(1),
            Format::Coeff
        )
        .is_err()
    );
    assert!(
        Ciphertext::deserialize(
            &ctx,
            &full(vec![2, 0, 1, 2, 3], vec![0]),
            Some(1),
            Format::Coeff
        )
        .is_err()
    );
    let mut ones = vec![1u8, 0];
    ones.extend(std::iter::repeat_n(0xffu8, 4096 * 27 / 8));
    assert!(Ciphertext::deserialize(&ctx, &full(ones, vec![]), Some(1), Format::Coeff).is_err());
    // Evaluation keys: bad Galois element, wrong ciphertext count.
    let mut bad = SerializedEvaluationKey::default();
    bad.galois.insert(4, vec![]);
    assert!(EvaluationKey::deserialize(&ctx, &bad).is_err());
    let mut bad = SerializedEvaluationKey::default();
    bad.galois
        .insert(3, vec![SerializedCiphertext::Seeded(sd.clone())]);
    assert!(EvaluationKey::deserialize(&ctx, &bad).is_err());
    // Operations on mismatched operands.
    let evk = EvaluationKey::default();
    assert!(bfv::apply_galois(&ctx, &ct, 3, &evk).is_err());
    assert!(bfv::relinearize(&ctx, &ct, &evk).is_err());
    let mut single = ct.clone();
    single.mod_switch_down_to_single(&ctx).unwrap();
    assert!(single.clone().add_assign(&ctx, &ct).is_err());
    assert!(bfv::multiply(&ctx, &single, &ct).is_err());
    assert!(Plaintext::new(&ctx, &[ctx.t()]).is_err());
    assert!(Plaintext::from_bytes(&ctx, &vec![0u8; ctx.params.bytes_per_plaintext() + 1]).is_err());
    assert!(sk.poly.apply_galois(&ctx, 2).is_err());
}

/// Monomial products (both signs), addition and subtraction decrypt to the plaintext results.
#[test]
fn monomial_add_sub() {
    let ctx = Context::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let sk = SecretKey::generate(&ctx, &mut rng);
    let (a, b) = (random_pt(&ctx, &mut rng), random_pt(&ctx, &mut rng));
    let (ca, cb) = (
        encrypt(&ctx, &a, &sk, &mut rng),
        encrypt(&ctx, &b, &sk, &mut rng),
    );
    let n = ctx.n;
    let t = ctx.t();
    for power in [1i64, 5, -5, n as i64 + 3, -(2 * n as i64) - 1] {
        let mut c = ca.clone();
        c.multiply_power_of_x(&ctx, power).unwrap();
        assert!(c.seed().is_none());
        let mut mono = vec![0u64; n];
        let e = power.rem_euclid(2 * n as i64) as usize;
        if e < n {
            mono[e] = 1
        } else {
            mono[e - n] = t - 1
        }
        let expect = pt_mul(&ctx, &a, &Plaintext::new(&ctx, &mono).unwrap());
        assert_eq!(decrypt(&ctx, &c, &sk).unwrap().coeffs, expect, "X^{power}");
    }
    // Slot-wise a ∘ b (mod t) of the two plaintexts.
    let slotwise = |f: fn(u64, u64, u64) -> u64| -> Vec<u64> {
        a.coeffs
            .iter()
            .zip(&b.coeffs)
            .map(|(&x, &y)| f(x, y, t))
            .collect()
    };
    let mut s = ca.clone();
    s.add_assign(&ctx, &cb).unwrap();
    let sum = slotwise(|x, y, t| (x + y) % t);
    assert_eq!(decrypt(&ctx, &s, &sk).unwrap().coeffs, sum);
    let mut d = ca.clone();
    d.sub_assign(&ctx, &cb).unwrap();
    let diff = slotwise(|x, y, t| (x + t - y) % t);
    assert_eq!(decrypt(&ctx, &d, &sk).unwrap().coeffs, diff);
    let mut sc = ca.clone();
    sc.mul_scalar_assign(&ctx, 3);
    let tri: Vec<u64> = a.coeffs.iter().map(|x| x * 3 % t).collect();
    assert_eq!(decrypt(&ctx, &sc, &sk).unwrap().coeffs, tri);
    // Bytes ↔ plaintext.
    let bytes: Vec<u8> = (0..ctx.params.bytes_per_plaintext())
        .map(|i| (i * 37 + 1) as u8)
        .collect();
    let p = Plaintext::from_bytes(&ctx, &bytes).unwrap();
    assert_eq!(p.to_bytes(&ctx), bytes);
    let ser = p.serialize(&ctx);
    assert_eq!(Plaintext::deserialize(&ctx, &ser).unwrap(), p);
    let ep = p.to_eval(&ctx, 2);
    assert_eq!(
        sift_he::EvalPlaintext::deserialize(&ctx, &ep.serialize(&ctx), 2).unwrap(),
        ep
    );
    let sk_back = SecretKey::deserialize(&ctx, &sk.serialize(&ctx)).unwrap();
    assert_eq!(sk_back.poly, sk.poly);
}
