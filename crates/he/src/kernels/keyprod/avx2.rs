//! The AVX2 kernels of the key product, reductions, lifts and Galois gathers: four u64
//! lanes per vector, each holding a 32-bit value.

use std::arch::x86_64::*;

use super::Mont32;

/// Four u64 words.
#[inline]
#[target_feature(enable = "avx2")]
fn load64(a: &[u64; 4]) -> __m256i {
    // SAFETY: `a` is a live reference to 32 readable bytes; `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// Four u32 words widened to u64 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn load32(a: &[u32; 4]) -> __m256i {
    // SAFETY: `a` is a live reference to 16 readable bytes; `loadu` needs no alignment.
    _mm256_cvtepu32_epi64(unsafe { _mm_loadu_si128(a.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2")]
fn store64(a: &mut [u64; 4], v: __m256i) {
    // SAFETY: `a` is an exclusive reference to 32 writable bytes; no alignment needed.
    unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), v) }
}

/// x − c where x ≥ c, else x (32-bit lanes; values below 2^32).
#[inline]
#[target_feature(enable = "avx2")]
fn csub(x: __m256i, c: __m256i) -> __m256i {
    _mm256_min_epu32(x, _mm256_sub_epi32(x, c))
}

/// Runs `f` on each group of four words of `a` (and the same words of `b`), then `tail`
/// on the rest one by one.
#[inline(always)]
fn groups(
    a: &mut [u64],
    b: &[u64],
    mut f: impl FnMut(&mut [u64; 4], &[u64; 4]),
    mut tail: impl FnMut(&mut u64, u64),
) {
    let n = a.len().min(b.len());
    let body = n - n % 4;
    for (x, y) in a[..body].chunks_exact_mut(4).zip(b[..body].chunks_exact(4)) {
        f(
            x.try_into().expect("4 words"),
            y.try_into().expect("4 words"),
        );
    }
    for (x, &y) in a[body..n].iter_mut().zip(&b[body..n]) {
        tail(x, y);
    }
}

#[target_feature(enable = "avx2")]
pub(super) fn reduce_add(dst: &mut [u64], src: &[u64], q: u32, mu: u32, add: u32) {
    let (qv, muv, addv) = (
        _mm256_set1_epi64x(q as i64),
        _mm256_set1_epi64x(mu as i64),
        _mm256_set1_epi64x(add as i64),
    );
    groups(
        dst,
        src,
        |d, x| {
            let x = load64(x);
            let qhat = _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, muv));
            let r = csub(_mm256_sub_epi64(x, _mm256_mul_epu32(qhat, qv)), qv);
            store64(d, csub(_mm256_add_epi64(r, addv), qv));
        },
        |d, x| *d = super::reduce_add1(x, q, mu, add),
    );
}

#[target_feature(enable = "avx2")]
pub(super) fn sub_mul(out: &mut [u64], corr: &[u64], q: u32, inv: u32, inv_s: u32) {
    let (qv, iv, isv) = (
        _mm256_set1_epi64x(q as i64),
        _mm256_set1_epi64x(inv as i64),
        _mm256_set1_epi64x(inv_s as i64),
    );
    groups(
        out,
        corr,
        |x, c| {
            let d = _mm256_sub_epi64(_mm256_add_epi64(load64(x), qv), load64(c));
            let qhat = _mm256_srli_epi64::<32>(_mm256_mul_epu32(d, isv));
            let r = _mm256_sub_epi64(_mm256_mul_epu32(d, iv), _mm256_mul_epu32(qhat, qv));
            store64(x, csub(r, qv));
        },
        |x, c| *x = super::sub_mul1(*x, c, q, inv, inv_s),
    );
}

/// x·w mod q in [0, q) for x < 2q and w < q in u64 lanes holding 32-bit values, `ws` the
/// Shoup factor ⌊w·2^32/q⌋ (the true remainder is below 2q, so 64-bit lanes are exact).
#[inline]
#[target_feature(enable = "avx2")]
fn mul_shoup(x: __m256i, w: __m256i, ws: __m256i, q: __m256i) -> __m256i {
    let qhat = _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, ws));
    csub(
        _mm256_sub_epi64(_mm256_mul_epu32(x, w), _mm256_mul_epu32(qhat, q)),
        q,
    )
}

/// [`super::gather_rows`], four outputs per step: when perm[i..i + 4] all point into one
/// aligned block of four source words, one `vpermd` per row (word p of the block is the
/// 32-bit lanes 2p, 2p + 1), else the four words one by one.
#[target_feature(enable = "avx2")]
pub(super) fn gather_rows<const K: usize>(
    perm: &[u32],
    src: [&[u64]; K],
    mut dst: [&mut [u64]; K],
) {
    let n = perm.len();
    let body = n - n % 4;
    let (three, one) = (_mm256_set1_epi64x(3), _mm256_set1_epi64x(1));
    for i in (0..body).step_by(4) {
        let p: &[u32; 4] = perm[i..i + 4].try_into().expect("4 entries");
        let base = (p[0] & !3) as usize;
        if p.iter().all(|&x| (x & !3) as usize == base) {
            // SAFETY: `p` is a live reference to 16 readable bytes; no alignment needed.
            let w = _mm256_and_si256(
                _mm256_cvtepu32_epi64(unsafe { _mm_loadu_si128(p.as_ptr().cast()) }),
                three,
            );
            let lo = _mm256_slli_epi64::<1>(w);
            let idx = _mm256_or_si256(lo, _mm256_slli_epi64::<32>(_mm256_add_epi64(lo, one)));
            for (s, d) in src.iter().zip(dst.iter_mut()) {
                let v = load64(s[base..base + 4].try_into().expect("4 words"));
                store64(
                    (&mut d[i..i + 4]).try_into().expect("4 words"),
                    _mm256_permutevar8x32_epi32(v, idx),
                );
            }
        } else {
            super::gather_rows_scalar(perm, i..i + 4, src, dst.each_mut().map(|d| &mut **d));
        }
    }
    super::gather_rows_scalar(perm, body..n, src, dst);
}

/// [`super::finish_twist`], four coefficients per step.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_twist<const ADD: bool>(
    plus: &mut [u64],
    minus: &mut [u64],
    acc: &[u64],
    corr: &[u64],
    add: &[u64],
    q: u32,
    (inv, inv_s): (u32, u32),
    twist: &[u64],
) {
    let n = plus.len();
    let (minus, acc, corr, twist) = (&mut minus[..n], &acc[..n], &corr[..n], &twist[..n]);
    let add = if ADD { &add[..n] } else { add };
    let (qv, iv, isv) = (
        _mm256_set1_epi64x(q as i64),
        _mm256_set1_epi64x(inv as i64),
        _mm256_set1_epi64x(inv_s as i64),
    );
    let four = |s: &[u64], c: usize| -> __m256i { load64(s[c..c + 4].try_into().expect("4")) };
    let body = n - n % 4;
    for c in (0..body).step_by(4) {
        let d = _mm256_sub_epi64(_mm256_add_epi64(four(acc, c), qv), four(corr, c));
        let mut t = mul_shoup(d, iv, isv, qv);
        if ADD {
            t = csub(_mm256_add_epi64(t, four(add, c)), qv);
        }
        let a = four(plus, c);
        store64(
            (&mut plus[c..c + 4]).try_into().expect("4"),
            csub(_mm256_add_epi64(a, t), qv),
        );
        let e = _mm256_sub_epi64(_mm256_add_epi64(a, qv), t);
        store64((&mut minus[c..c + 4]).try_into().expect("4"), {
            let tw = four(twist, c);
            mul_shoup(e, tw, _mm256_srli_epi64::<32>(tw), qv)
        });
    }
    let add_tail: &[u64] = if ADD { &add[body..] } else { add };
    super::finish_twist_body::<ADD>(
        &mut plus[body..],
        &mut minus[body..],
        &acc[body..],
        &corr[body..],
        add_tail,
        q,
        (inv, inv_s),
        &twist[body..],
    );
}

/// x mod q for x < 2^32 in u64 lanes, `mu` = ⌊2^32/q⌋.
#[inline]
#[target_feature(enable = "avx2")]
fn barrett(x: __m256i, q: __m256i, mu: __m256i) -> __m256i {
    let qhat = _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, mu));
    csub(_mm256_sub_epi64(x, _mm256_mul_epu32(qhat, q)), q)
}

/// [`super::lift2_aux`], four coefficients per step; DIRECT when [`super::Lift2::direct`]
/// (the reductions of x₀ and d₁ are then the identity and skipped).
#[target_feature(enable = "avx2")]
pub(super) fn lift2_aux<const DIRECT: bool>(
    l: &super::Lift2,
    x0s: &[u64],
    x1s: &[u64],
    aux: &mut [u64],
) {
    let n = x0s.len();
    let x1s = &x1s[..n];
    let set = |v: u32| _mm256_set1_epi64x(v as i64);
    let (q1, mu1, w, ws) = (set(l.q1), set(l.mu1), set(l.inv.0), set(l.inv.1));
    let (h0, h1) = (set(l.half.0), set(l.half.1));
    let consts: Vec<[__m256i; 5]> = l
        .aux
        .iter()
        .map(|&(m, mu, (r0, r0s), qm)| [set(m), set(mu), set(r0), set(r0s), set(qm)])
        .collect();
    let body = n - n % 4;
    for c in (0..body).step_by(4) {
        let x0 = load64(x0s[c..c + 4].try_into().expect("4"));
        let x1 = load64(x1s[c..c + 4].try_into().expect("4"));
        let x0q1 = if DIRECT { x0 } else { barrett(x0, q1, mu1) };
        let t = _mm256_sub_epi64(_mm256_add_epi64(x1, q1), x0q1);
        let d1 = mul_shoup(t, w, ws, q1);
        // Values are below 2^32, so the signed 64-bit compares order them correctly.
        let neg = _mm256_or_si256(
            _mm256_cmpgt_epi64(d1, h1),
            _mm256_and_si256(_mm256_cmpeq_epi64(d1, h1), _mm256_cmpgt_epi64(x0, h0)),
        );
        for (a, &[m, mu, r0, r0s, qm]) in consts.iter().enumerate() {
            let (d1m, x0m) = if DIRECT {
                (d1, x0)
            } else {
                (barrett(d1, m, mu), barrett(x0, m, mu))
            };
            let v = _mm256_add_epi64(mul_shoup(d1m, r0, r0s, m), x0m);
            let v = csub(v, m);
            let nv = csub(_mm256_sub_epi64(_mm256_add_epi64(v, m), qm), m);
            let at = a * n + c;
            store64(
                (&mut aux[at..at + 4]).try_into().expect("4"),
                _mm256_blendv_epi8(v, nv, neg),
            );
        }
    }
    super::lift2_aux_range(l, x0s, x1s, aux, body..n);
}

/// REDC in four u64 lanes (see [`Mont32::redc`]).
#[inline]
#[target_feature(enable = "avx2")]
fn redc(x: __m256i, q: __m256i, neg_inv: __m256i) -> __m256i {
    let m = _mm256_mul_epu32(x, neg_inv);
    let t = _mm256_srli_epi64::<32>(_mm256_add_epi64(x, _mm256_mul_epu32(m, q)));
    _mm256_min_epu32(t, _mm256_sub_epi32(t, q))
}

/// [`super::dot_redc`] for two digits, four coefficients per step.
#[target_feature(enable = "avx2")]
pub(super) fn dot2(
    m: Mont32,
    srcs: [&[u64]; 2],
    k0: [&[u32]; 2],
    k1: [&[u32]; 2],
    out0: &mut [u64],
    out1: &mut [u64],
) {
    let n = out0.len();
    let (q, neg_inv) = (
        _mm256_set1_epi64x(m.q as i64),
        _mm256_set1_epi64x(m.neg_inv as i64),
    );
    let (s0, s1) = (&srcs[0][..n], &srcs[1][..n]);
    let (a0, a1, b0, b1) = (&k0[0][..n], &k0[1][..n], &k1[0][..n], &k1[1][..n]);
    let out1 = &mut out1[..n];
    let body = n - n % 4;
    for c in (0..body).step_by(4) {
        let r = c..c + 4;
        let d0 = load64(s0[r.clone()].try_into().expect("4 words"));
        let d1 = load64(s1[r.clone()].try_into().expect("4 words"));
        let p0 = _mm256_add_epi64(
            _mm256_mul_epu32(d0, load32(a0[r.clone()].try_into().expect("4 words"))),
            _mm256_mul_epu32(d1, load32(a1[r.clone()].try_into().expect("4 words"))),
        );
        let p1 = _mm256_add_epi64(
            _mm256_mul_epu32(d0, load32(b0[r.clone()].try_into().expect("4 words"))),
            _mm256_mul_epu32(d1, load32(b1[r.clone()].try_into().expect("4 words"))),
        );
        store64(
            (&mut out0[r.clone()]).try_into().expect("4 words"),
            redc(p0, q, neg_inv),
        );
        store64(
            (&mut out1[r]).try_into().expect("4 words"),
            redc(p1, q, neg_inv),
        );
    }
    for c in body..n {
        let (d0, d1) = (s0[c] as u32 as u64, s1[c] as u32 as u64);
        out0[c] = m.redc(d0 * a0[c] as u64 + d1 * a1[c] as u64);
        out1[c] = m.redc(d0 * b0[c] as u64 + d1 * b1[c] as u64);
    }
}
