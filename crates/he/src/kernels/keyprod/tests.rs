use super::*;

/// The levels whose kernels this CPU runs, each reached through the operations' `_with`
/// door (the widest AVX-512 level only once: VBMI changes no kernel here).
fn levels() -> Vec<Level> {
    [Level::Portable, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| l <= crate::simd::detected())
        .collect()
}

/// The constants of the centered lift from (q₀, q₁) to the auxiliary moduli.
fn lift2(q0: u32, q1: u32, aux_moduli: &[u32]) -> Lift2 {
    let q = q0 as u128 * q1 as u128;
    let mu = |m: u32| ((1u64 << 32) / m as u64) as u32;
    let sh = |w: u32, m: u32| (w, (((w as u64) << 32) / m as u64) as u32);
    let inv = (1..q1 as u64)
        .find(|&i| i * q0 as u64 % q1 as u64 == 1)
        .unwrap() as u32;
    let half = q / 2;
    Lift2 {
        q0,
        q1,
        mu1: mu(q1),
        inv: sh(inv, q1),
        half: ((half % q0 as u128) as u32, (half / q0 as u128) as u32),
        aux: aux_moduli
            .iter()
            .map(|&m| (m, mu(m), sh(q0 % m, m), (q % m as u128) as u32))
            .collect(),
    }
}

/// Both paths equal Σ_j d_j·k_j mod q computed in u128, for 1, 2 and 3 digits, on random
/// values and the extremes (q − 1 everywhere), and odd lengths (the scalar tail).
#[test]
fn dot_redc_matches_u128_reference() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for q in [40961u32, 134176769, 268369921, 1073479681] {
        let m = Mont32::new(q).unwrap();
        for k in 1..=3usize {
            if !m.fits(k) {
                continue;
            }
            for n in [4usize, 37, 4096] {
                for extreme in [false, true] {
                    let val = |x: u64| if extreme { q as u64 - 1 } else { x % q as u64 };
                    let srcs: Vec<Vec<u64>> = (0..k)
                        .map(|_| (0..n).map(|_| val(next())).collect())
                        .collect();
                    let keys: Vec<Vec<u32>> = (0..2 * k)
                        .map(|_| (0..n).map(|_| val(next()) as u32).collect())
                        .collect();
                    let mont: Vec<Vec<u32>> = keys
                        .iter()
                        .map(|r| r.iter().map(|&w| m.to_mont(w)).collect())
                        .collect();
                    let s: Vec<&[u64]> = srcs.iter().map(|v| v.as_slice()).collect();
                    let k0: Vec<&[u32]> = mont[..k].iter().map(|v| v.as_slice()).collect();
                    let k1: Vec<&[u32]> = mont[k..].iter().map(|v| v.as_slice()).collect();
                    for level in levels() {
                        let (mut o0, mut o1) = (vec![0u64; n], vec![0u64; n]);
                        dot_redc_with(level, m, &s, &k0, &k1, &mut o0, &mut o1);
                        for c in 0..n {
                            let expect = |off: usize| {
                                (0..k)
                                    .map(|j| srcs[j][c] as u128 * keys[off + j][c] as u128)
                                    .sum::<u128>()
                                    % q as u128
                            };
                            let at = format!("{level:?} q {q} k {k} c {c}");
                            assert_eq!(o0[c] as u128, expect(0), "{at}");
                            assert_eq!(o1[c] as u128, expect(k), "{at}");
                        }
                    }
                }
            }
        }
    }
}

/// The mod-down steps equal their definitions at every level, including the scalar tails.
#[test]
fn mod_down_steps_match_definitions() {
    let (pv, q) = (268361729u32, 134176769u32);
    let mu = ((1u64 << 32) / q as u64) as u32;
    let half = pv / 2;
    let inv = 12345677u32 % q;
    let inv_s = (((inv as u64) << 32) / q as u64) as u32;
    let n = 4099;
    let p: Vec<u64> = (0..n as u64).map(|i| i * 2654435761 % pv as u64).collect();
    let lifted: Vec<u64> = p.iter().map(|&x| (x + half as u64) % pv as u64).collect();
    let add = q - 17;
    let corr: Vec<u64> = (0..n as u64).map(|i| i * 40503 % q as u64).collect();
    let before: Vec<u64> = (0..n as u64).map(|i| i * 97 % q as u64).collect();
    for level in levels() {
        let mut red = vec![0u64; n];
        reduce_add_with(level, &mut red, &lifted, q, mu, add);
        let mut out = before.clone();
        sub_mul_with(level, &mut out, &corr, q, inv, inv_s);
        for i in 0..n {
            assert_eq!(red[i], (lifted[i] % q as u64 + add as u64) % q as u64);
            let d = (before[i] + q as u64 - corr[i]) % q as u64;
            assert_eq!(out[i], d * inv as u64 % q as u64, "{level:?} {i}");
        }
    }
}

/// The fused row (dot products, then the finish of both polynomials) equals dot_redc
/// followed by finish_twist (both portable), at every level, with a tail.
#[test]
fn dot_finish_twist_matches_the_two_passes() {
    let q = 268369921u32;
    let m = Mont32::new(q).unwrap();
    let n: usize = 4099;
    let v = |mul: u64| -> Vec<u64> { (0..n as u64).map(|i| i * mul % q as u64).collect() };
    let v32 = |mul: u64| -> Vec<u32> { v(mul).iter().map(|&x| x as u32).collect() };
    let (s0, s1, sigma0, plus0, plus1) = (v(3), v(5), v(7), v(11), v(13));
    let (a0, a1, b0, b1) = (v32(17), v32(19), v32(23), v32(29));
    let (corr0, corr1) = (v(31), v(37));
    let inv = (12345677u32, ((12345677u64 << 32) / q as u64) as u32);
    // The twist as a full row (block 1) and constant on blocks of 16 coefficients, given
    // once per block (the last block partial: n has a tail).
    for block in [1usize, 16] {
        let words: Vec<u64> = v(41)[..n.div_ceil(block)]
            .iter()
            .map(|&x| x | ((x << 32) / q as u64) << 32)
            .collect();
        let tw: Vec<u64> = (0..n).map(|c| words[c / block]).collect();
        // The two passes.
        let (mut acc0, mut acc1) = (vec![0u64; n], vec![0u64; n]);
        dot_redc_with(
            Level::Portable,
            m,
            &[&s0, &s1],
            &[&a0, &a1],
            &[&b0, &b1],
            &mut acc0,
            &mut acc1,
        );
        let mut want = [
            (plus0.clone(), vec![0u64; n]),
            (plus1.clone(), vec![0u64; n]),
        ];
        let [(p0, m0), (p1, m1)] = &mut want;
        let portable = Level::Portable;
        finish_twist_with(portable, p0, m0, &acc0, &corr0, Some(&sigma0), q, inv, &tw);
        finish_twist_with(portable, p1, m1, &acc1, &corr1, None, q, inv, &tw);
        // The fused pass takes the key rows times P⁻¹ (here `inv`) and −P⁻¹ in Montgomery
        // form.
        let scale = |k: &[u32]| -> Vec<u32> {
            k.iter()
                .map(|&x| (x as u64 * inv.0 as u64 % q as u64) as u32)
                .collect()
        };
        let (sa0, sa1, sb0, sb1) = (scale(&a0), scale(&a1), scale(&b0), scale(&b1));
        let args = DotFinish {
            m,
            srcs: [&s0, &s1],
            keys: [[&sa0, &sa1], [&sb0, &sb1]],
            corr: [&corr0, &corr1],
            cf: m.to_mont(q - inv.0),
            add: &sigma0,
            q,
            twist: (block, &words),
        };
        for level in levels() {
            let (mut p0, mut p1) = (plus0.clone(), plus1.clone());
            let (mut m0, mut m1) = (vec![0u64; n], vec![0u64; n]);
            dot_finish_twist_with(level, &args, [&mut p0, &mut p1], [&mut m0, &mut m1]);
            assert_eq!([(p0, m0), (p1, m1)], want, "{level:?} block {block}");
        }
    }
}

/// The fused pass equals sub_mul, the optional addition and the twisted sum/difference
/// done one after the other, with and without the addition, at every level.
#[test]
fn finish_twist_matches_separate_steps() {
    let q = 134176769u32;
    let inv = 12345677u32 % q;
    let inv_s = (((inv as u64) << 32) / q as u64) as u32;
    let n = 4099;
    let v = |mul: u64| -> Vec<u64> { (0..n as u64).map(|i| i * mul % q as u64).collect() };
    let (acc, corr, add, plus0) = (v(97), v(40503), v(2654435761), v(7919));
    let w = v(104729);
    // Packed twist words: w | ⌊w·2^32/q⌋ << 32.
    let tw: Vec<u64> = w
        .iter()
        .map(|&x| x | ((x << 32) / q as u64) << 32)
        .collect();
    for (with_add, level) in [false, true]
        .into_iter()
        .flat_map(|a| levels().into_iter().map(move |l| (a, l)))
    {
        let (mut plus, mut minus) = (plus0.clone(), vec![0u64; n]);
        let a = with_add.then_some(add.as_slice());
        finish_twist_with(
            level,
            &mut plus,
            &mut minus,
            &acc,
            &corr,
            a,
            q,
            (inv, inv_s),
            &tw,
        );
        let qq = q as u64;
        for c in 0..n {
            let mut t = (acc[c] + qq - corr[c]) % qq * inv as u64 % qq;
            if with_add {
                t = (t + add[c]) % qq;
            }
            let at = format!("{level:?} add {with_add} c {c}");
            assert_eq!(plus[c], (plus0[c] + t) % qq, "{at}");
            assert_eq!(minus[c], (plus0[c] + qq - t) % qq * w[c] % qq, "{at}");
        }
    }
}

/// The lift equals the definition computed in u128 for every auxiliary modulus, at every
/// level, for moduli where the direct kernels run (q₀ < q₁ < every m, Apple's case) and
/// where the reducing ones do, on an odd length (the tail too) with the values around ⌊Q/2⌋.
#[test]
fn lift2_aux_matches_definition() {
    let direct = lift2(134176769, 268361729, &[268369921, 268582913, 268664833]);
    let reducing = lift2(268361729, 134176769, &[268369921, 40961, 268664833]);
    assert!(direct.direct() && !reducing.direct());
    for l in [direct, reducing] {
        let (q0, q1) = (l.q0, l.q1);
        let q = q0 as u128 * q1 as u128;
        let half = q / 2;
        let n = 4099;
        let xs: Vec<u128> = (0..n as u128)
            .map(|i| match i {
                0 => half,
                1 => half + 1,
                2 => q - 1,
                _ => i * 0x9E37_79B9_7F4A_7C15 % q,
            })
            .collect();
        let x0: Vec<u64> = xs.iter().map(|&x| (x % q0 as u128) as u64).collect();
        let x1: Vec<u64> = xs.iter().map(|&x| (x % q1 as u128) as u64).collect();
        for level in levels() {
            let mut got = vec![0u64; l.aux.len() * n];
            lift2_aux_with(level, &l, &x0, &x1, &mut got);
            for (c, &x) in xs.iter().enumerate() {
                for (a, &(m, ..)) in l.aux.iter().enumerate() {
                    let centered = if x > half {
                        x as i128 - q as i128
                    } else {
                        x as i128
                    };
                    let want = centered.rem_euclid(m as i128) as u64;
                    let at = format!("{level:?} direct {} c {c} m {m}", l.direct());
                    assert_eq!(got[a * n + c], want, "{at}");
                }
            }
        }
    }
}

#[test]
fn constants() {
    assert!(Mont32::new(40960).is_none());
    let m = Mont32::new(268369921).unwrap();
    assert_eq!(268369921u32.wrapping_mul(m.neg_inv), u32::MAX);
    assert!(m.fits(15) && !m.fits(17));
}

/// The u64 reduction equals the remainder for every word (the extremes, words with either
/// half zero, and a length with a scalar tail), for moduli of 16 to 30 bits, where it runs
/// (AVX-512); below AVX-512 it declines, leaving the caller's loop to run.
#[test]
fn u64_reduction_is_the_remainder() {
    let mut x: Vec<u64> = (0..4099u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 45))
        .collect();
    x[..8].copy_from_slice(&[
        0,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 32) - 1,
        1 << 32,
        7,
        7 << 32,
    ]);
    for level in levels() {
        for q in [40961u32, 134176769, 268369921, (1 << 30) - 35] {
            let mut out = vec![1u64; x.len()];
            let ran = reduce_u64_rows_avx512_with(level, q, &mut out, &x).is_some();
            assert_eq!(ran, level.isa() == Isa::Avx512, "{level:?}");
            if !ran {
                continue;
            }
            for (o, v) in out.iter().zip(&x) {
                assert_eq!(*o, v % q as u64, "{level:?}: {v} mod {q}");
            }
        }
    }
}

/// Every level gives the portable loops' words on rows whose first values are q − 1 (the
/// extremes of the lanes' sums), with a scalar tail: the two-digit dot products, the fused
/// finish with the addition, and both lifts.
#[test]
fn every_level_agrees_at_the_extremes() {
    let q = 268369921u32;
    let m = Mont32::new(q).unwrap();
    let n = 4099;
    let v = |mul: u64| -> Vec<u64> {
        (0..n as u64)
            .map(|i| {
                if i < 3 {
                    q as u64 - 1
                } else {
                    i * mul % q as u64
                }
            })
            .collect()
    };
    let k32 = |mul: u64| -> Vec<u32> { v(mul).iter().map(|&x| m.to_mont(x as u32)).collect() };
    let (s0, s1) = (v(97), v(40503));
    let (a0, a1, b0, b1) = (k32(7919), k32(104729), k32(1299709), k32(15485863));
    let dot = |level: Level| {
        let (mut o0, mut o1) = (vec![0u64; n], vec![0u64; n]);
        dot_redc_with(
            level,
            m,
            &[&s0, &s1],
            &[&a0, &a1],
            &[&b0, &b1],
            &mut o0,
            &mut o1,
        );
        (o0, o1)
    };
    let (inv, inv_s) = (12345677u32, ((12345677u64 << 32) / q as u64) as u32);
    let (acc, corr, add, plus0, w) = (v(97), v(40503), v(2654435761), v(7919), v(104729));
    let packed: Vec<u64> = w
        .iter()
        .map(|&x| x | ((x << 32) / q as u64) << 32)
        .collect();
    let finish = |level: Level| {
        let (mut plus, mut minus) = (plus0.clone(), vec![0u64; n]);
        let (a, i) = (Some(&add[..]), (inv, inv_s));
        finish_twist_with(level, &mut plus, &mut minus, &acc, &corr, a, q, i, &packed);
        (plus, minus)
    };
    let direct = lift2(134176769, 268361729, &[268369921, 268582913]);
    let reducing = lift2(268361729, 134176769, &[268369921, 268582913]);
    let (q0, q1) = (direct.q0, direct.q1);
    let qq = q0 as u128 * q1 as u128;
    let half = qq / 2;
    let xs: Vec<u128> = (0..n as u128)
        .map(|i| match i {
            0 => half,
            1 => half + 1,
            2 => qq - 1,
            _ => i * 0x9E37_79B9_7F4A_7C15 % qq,
        })
        .collect();
    let x0: Vec<u64> = xs.iter().map(|&x| (x % q0 as u128) as u64).collect();
    let x1: Vec<u64> = xs.iter().map(|&x| (x % q1 as u128) as u64).collect();
    let lift = |level: Level, l: &Lift2, x0: &[u64], x1: &[u64]| {
        let mut out = vec![0u64; 2 * n];
        lift2_aux_with(level, l, x0, x1, &mut out);
        out
    };
    let want = (
        dot(Level::Portable),
        finish(Level::Portable),
        lift(Level::Portable, &direct, &x0, &x1),
        lift(Level::Portable, &reducing, &x1, &x0),
    );
    for level in levels() {
        assert_eq!(dot(level), want.0, "{level:?} dot2");
        assert_eq!(finish(level), want.1, "{level:?} finish_twist");
        assert_eq!(
            lift(level, &direct, &x0, &x1),
            want.2,
            "{level:?} direct lift"
        );
        assert_eq!(
            lift(level, &reducing, &x1, &x0),
            want.3,
            "{level:?} reducing lift"
        );
    }
}

/// An index past the source rows is refused (a panic from the bounds-checked path), not
/// read, on every SIMD path.
#[test]
fn gather_rows_refuses_an_index_past_the_rows() {
    let n = 64;
    let src: Vec<u64> = (0..n as u64).collect();
    let mut perm: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % n as u32).collect();
    perm[9] = n as u32;
    for level in levels() {
        let refused = std::panic::catch_unwind(|| {
            let mut d = vec![0u64; n];
            gather_rows_with(level, &perm, [&src[..]], [&mut d]);
        });
        assert!(refused.is_err(), "{level:?} read past the rows");
    }
}

/// The gather equals the word-by-word definition for the expansion's Galois elements
/// (blocks of eight stay together, the `vpermq` path) and for elements whose blocks
/// split (the per-word path), with one and two rows, on n = 4096 and a length with a tail.
#[test]
fn gather_rows_matches_definition() {
    for n in [64usize, 4096] {
        let src0: Vec<u64> = (0..n as u64).map(|i| i * 0x9E37_79B9 % 1_000_003).collect();
        let src1: Vec<u64> = (0..n as u64).map(|i| i ^ 0x5555).collect();
        let mut gs: Vec<usize> = (1..n.trailing_zeros() as usize + 1)
            .map(|k| 2 * n / (1 << k) + 1)
            .collect();
        gs.extend([3, 2 * n - 1, 5 * 7 + 2]);
        for g in gs {
            let perm = crate::Poly::galois_eval_permutation(n, g).unwrap();
            let want0: Vec<u64> = perm.iter().map(|&p| src0[p as usize]).collect();
            let want1: Vec<u64> = perm.iter().map(|&p| src1[p as usize]).collect();
            for level in levels() {
                let (mut d0, mut d1) = (vec![0u64; n], vec![0u64; n]);
                gather_rows_with(level, &perm, [&src0[..], &src1[..]], [&mut d0, &mut d1]);
                assert_eq!((&d0, &d1), (&want0, &want1), "{level:?} n {n} g {g}");
                let mut one = vec![0u64; n];
                gather_rows_with(level, &perm, [&src1[..]], [&mut one]);
                assert_eq!(one, want1, "{level:?} n {n} g {g}");
            }
        }
        // A permutation that is not a Galois map, over a length with a scalar tail.
        let m = n - 3;
        let perm: Vec<u32> = (0..m as u32).map(|i| (i * 7 + 3) % m as u32).collect();
        let want: Vec<u64> = perm.iter().map(|&p| src0[p as usize]).collect();
        for level in levels() {
            let mut d = vec![0u64; m];
            gather_rows_with(level, &perm, [&src0[..m]], [&mut d]);
            assert_eq!(d, want, "{level:?} tail n {m}");
        }
    }
}
