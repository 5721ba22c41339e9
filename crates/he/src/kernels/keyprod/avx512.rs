//! The AVX-512 forms of the AVX2 kernels (`avx2.rs`): the same integers, eight u64 lanes per
//! vector (each holding a 32-bit value, so `vpmuludq` gives the full products).

use std::arch::x86_64::*;

use crate::ntt::mul_lazy_avx512;

use super::Mont32;

/// Lanes per vector.
const W: usize = 8;

/// Eight u64 words from `s[c..c + 8]` (panics past the end, which loop bounds exclude).
#[inline]
#[target_feature(enable = "avx512f")]
fn load64(s: &[u64], c: usize) -> __m512i {
    let a: &[u64; W] = s[c..c + W].try_into().expect("8 words");
    // SAFETY: `a` is a live reference to 64 readable bytes; `loadu` needs no alignment.
    unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
}

/// Eight u32 words from `s[c..c + 8]`, widened to u64 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn load32(s: &[u32], c: usize) -> __m512i {
    let a: &[u32; W] = s[c..c + W].try_into().expect("8 words");
    // SAFETY: `a` is a live reference to 32 readable bytes; `loadu` needs no alignment.
    _mm512_cvtepu32_epi64(unsafe { _mm256_loadu_si256(a.as_ptr().cast()) })
}

/// Stores eight u64 words at `s[c..c + 8]`.
#[inline]
#[target_feature(enable = "avx512f")]
fn store64(s: &mut [u64], c: usize, v: __m512i) {
    let a: &mut [u64; W] = (&mut s[c..c + W]).try_into().expect("8 words");
    // SAFETY: `a` is an exclusive reference to 64 writable bytes; no alignment needed.
    unsafe { _mm512_storeu_si512(a.as_mut_ptr().cast(), v) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn set(v: u32) -> __m512i {
    _mm512_set1_epi64(v as i64)
}

/// The high 32 bits of each u64 lane, as a u64 (a shift by 32, done as a zero-masked
/// shuffle: shifts share the multipliers' port, shuffles do not).
#[inline]
#[target_feature(enable = "avx512f")]
fn hi32(v: __m512i) -> __m512i {
    _mm512_maskz_shuffle_epi32::<0xF5>(0x5555, v)
}

/// x − c where x ≥ c, else x (values below 2^32 in u64 lanes, c < 2^31).
#[inline]
#[target_feature(enable = "avx512f")]
fn csub(x: __m512i, c: __m512i) -> __m512i {
    _mm512_min_epu32(x, _mm512_sub_epi32(x, c))
}

/// x·w mod q in [0, q) for x < 2q, w < q, `ws` = ⌊w·2^32/q⌋.
#[inline]
#[target_feature(enable = "avx512f")]
fn mul_shoup(x: __m512i, w: __m512i, ws: __m512i, q: __m512i) -> __m512i {
    let qhat = hi32(_mm512_mul_epu32(x, ws));
    csub(
        _mm512_sub_epi64(_mm512_mul_epu32(x, w), _mm512_mul_epu32(qhat, q)),
        q,
    )
}

/// x mod q for x < 2^32, `mu` = ⌊2^32/q⌋.
#[inline]
#[target_feature(enable = "avx512f")]
fn barrett(x: __m512i, q: __m512i, mu: __m512i) -> __m512i {
    let qhat = hi32(_mm512_mul_epu32(x, mu));
    csub(_mm512_sub_epi64(x, _mm512_mul_epu32(qhat, q)), q)
}

/// REDC (see [`Mont32::redc`]).
#[inline]
#[target_feature(enable = "avx512f")]
fn redc(x: __m512i, q: __m512i, neg_inv: __m512i) -> __m512i {
    let m = _mm512_mul_epu32(x, neg_inv);
    let t = hi32(_mm512_add_epi64(x, _mm512_mul_epu32(m, q)));
    _mm512_min_epu32(t, _mm512_sub_epi32(t, q))
}

/// [`super::reduce_u64_rows_avx512`], eight words per step (the tail one by one).
#[target_feature(enable = "avx512f")]
pub(super) fn reduce_u64_rows(q: u32, out: &mut [u64], x: &[u64]) {
    let n = out.len();
    let x = &x[..n];
    let mu = ((1u64 << 32) / q as u64) as u32;
    let c = ((1u64 << 32) % q as u64) as u32;
    let cs = ((c as u64) << 32) / q as u64;
    let (qv, muv) = (set(q), set(mu));
    // c with its Shoup factor in the high half, as the twist words pack them: a constant
    // with a zero high half lets LLVM rewrite the vpmuludq by c as a 64-bit multiply
    // (three multiplies and a shift).
    let cv = _mm512_set1_epi64((c as u64 | cs << 32) as i64);
    let csv = _mm512_srli_epi64::<32>(cv);
    let body = n - n % W;
    for i in (0..body).step_by(W) {
        let v = load64(x, i);
        // h mod q, then ·2^32 mod q; l mod q (the low words, high halves cleared).
        let h = barrett(hi32(v), qv, muv);
        let t = mul_shoup(h, cv, csv, qv);
        let l = barrett(_mm512_maskz_mov_epi32(0x5555, v), qv, muv);
        store64(out, i, csub(_mm512_add_epi64(t, l), qv));
    }
    for (o, &v) in out[body..].iter_mut().zip(&x[body..]) {
        *o = v % q as u64;
    }
}

/// [`super::finish_twist`], eight coefficients per step.
#[target_feature(enable = "avx512f")]
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
    let (qv, iv, isv) = (set(q), set(inv), set(inv_s));
    let body = n - n % W;
    for c in (0..body).step_by(W) {
        let add = if ADD { Some(load64(add, c)) } else { None };
        let acc = load64(acc, c);
        finish_vec(
            plus,
            minus,
            c,
            acc,
            load64(corr, c),
            add,
            (qv, iv, isv),
            twist,
        );
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

/// Eight coefficients of [`super::finish_step`] at `c`: t = (acc − corr)·P⁻¹ (+ add),
/// plus ← plus + t, minus ← (plus − t)·w.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn finish_vec(
    plus: &mut [u64],
    minus: &mut [u64],
    c: usize,
    acc: __m512i,
    corr: __m512i,
    add: Option<__m512i>,
    (qv, iv, isv): (__m512i, __m512i, __m512i),
    twist: &[u64],
) {
    let d = _mm512_sub_epi64(_mm512_add_epi64(acc, qv), corr);
    let mut t = mul_shoup(d, iv, isv, qv);
    if let Some(add) = add {
        t = csub(_mm512_add_epi64(t, add), qv);
    }
    let a = load64(plus, c);
    store64(plus, c, csub(_mm512_add_epi64(a, t), qv));
    let e = _mm512_sub_epi64(_mm512_add_epi64(a, qv), t);
    let tw = load64(twist, c);
    store64(minus, c, mul_shoup(e, tw, _mm512_srli_epi64::<32>(tw), qv));
}

/// Eight coefficients of the two-digit Montgomery dot products at `c`: REDC(s₀·a₀ + s₁·a₁)
/// and REDC(s₀·b₀ + s₁·b₁), `(q, neg_inv)` the Montgomery constants (a macro for the
/// reason given at `dot3_vec`).
macro_rules! dot2_vec {
    ([$s0:expr, $s1:expr], [$a0:expr, $a1:expr], [$b0:expr, $b1:expr], $c:expr, ($q:expr, $neg_inv:expr)) => {{
        let (d0, d1) = (load64($s0, $c), load64($s1, $c));
        let p0 = _mm512_add_epi64(
            _mm512_mul_epu32(d0, load32($a0, $c)),
            _mm512_mul_epu32(d1, load32($a1, $c)),
        );
        let p1 = _mm512_add_epi64(
            _mm512_mul_epu32(d0, load32($b0, $c)),
            _mm512_mul_epu32(d1, load32($b1, $c)),
        );
        (redc(p0, $q, $neg_inv), redc(p1, $q, $neg_inv))
    }};
}

/// Eight coefficients of the fused rows' Montgomery reductions at `c`:
/// REDC(s₀·a₀ + s₁·a₁ + e₀·cf) and REDC(s₀·b₀ + s₁·b₁ + e₁·cf) (see [`super::DotFinish`]),
/// `(q, neg_inv)` the Montgomery constants. A macro rather than a function: a
/// `#[target_feature]` function cannot be `#[inline(always)]`, and a call per eight
/// coefficients (two vectors returned through memory) cost as much as the arithmetic.
macro_rules! dot3_vec {
    ([$s0:expr, $s1:expr], [$a0:expr, $a1:expr], [$b0:expr, $b1:expr], [$e0:expr, $e1:expr], $cf:expr, $c:expr, ($q:expr, $neg_inv:expr)) => {{
        let (d0, d1) = (load64($s0, $c), load64($s1, $c));
        let p0 = _mm512_add_epi64(
            _mm512_add_epi64(
                _mm512_mul_epu32(d0, load32($a0, $c)),
                _mm512_mul_epu32(d1, load32($a1, $c)),
            ),
            _mm512_mul_epu32(load64($e0, $c), $cf),
        );
        let p1 = _mm512_add_epi64(
            _mm512_add_epi64(
                _mm512_mul_epu32(d0, load32($b0, $c)),
                _mm512_mul_epu32(d1, load32($b1, $c)),
            ),
            _mm512_mul_epu32(load64($e1, $c), $cf),
        );
        (redc(p0, $q, $neg_inv), redc(p1, $q, $neg_inv))
    }};
}

/// Eight coefficients of [`super::twist_step`] at `c`: t ← t (+ add) mod q, then
/// plus ← plus + t, minus ← (plus − t)·w.
#[inline]
#[target_feature(enable = "avx512f")]
fn twist_vec(
    plus: &mut [u64],
    minus: &mut [u64],
    c: usize,
    t: __m512i,
    add: Option<__m512i>,
    qv: __m512i,
    tw: __m512i,
) {
    let t = match add {
        Some(add) => csub(_mm512_add_epi64(t, add), qv),
        None => t,
    };
    let a = load64(plus, c);
    store64(plus, c, csub(_mm512_add_epi64(a, t), qv));
    let e = _mm512_sub_epi64(_mm512_add_epi64(a, qv), t);
    store64(minus, c, mul_shoup(e, tw, _mm512_srli_epi64::<32>(tw), qv));
}

/// [`super::dot_finish_twist`], eight coefficients per step.
#[target_feature(enable = "avx512f")]
pub(super) fn dot_finish_twist(
    a: &super::DotFinish,
    rows: [&mut [u64]; 2],
    minus: [&mut [u64]; 2],
) {
    if a.twist.0 >= W {
        dot_finish_twist_impl::<true>(a, rows, minus)
    } else {
        dot_finish_twist_impl::<false>(a, rows, minus)
    }
}

/// [`dot_finish_twist`] with the twist broadcast from one word per block of at least
/// eight coefficients (BLOCKS) or loaded from a full row.
#[inline]
#[target_feature(enable = "avx512f")]
fn dot_finish_twist_impl<const BLOCKS: bool>(
    a: &super::DotFinish,
    [plus0, plus1]: [&mut [u64]; 2],
    [minus0, minus1]: [&mut [u64]; 2],
) {
    let n = a.add.len();
    let (block, twist) = a.twist;
    assert!(
        twist.len() * block >= n && (!BLOCKS || block.is_multiple_of(W)),
        "twist words for the row"
    );
    let (plus0, plus1, minus0, minus1) = (
        &mut plus0[..n],
        &mut plus1[..n],
        &mut minus0[..n],
        &mut minus1[..n],
    );
    let (s0, s1) = (&a.srcs[0][..n], &a.srcs[1][..n]);
    let [[a0, a1], [b0, b1]] = a.keys;
    let (a0, a1, b0, b1) = (&a0[..n], &a1[..n], &b0[..n], &b1[..n]);
    let (corr0, corr1, add) = (&a.corr[0][..n], &a.corr[1][..n], &a.add[..n]);
    let (mq, neg_inv, cf) = (set(a.m.q), set(a.m.neg_inv), set(a.cf));
    let qv = set(a.q);
    let body = n - n % W;
    for c in (0..body).step_by(W) {
        let (t0, t1) = dot3_vec!(
            [s0, s1],
            [a0, a1],
            [b0, b1],
            [corr0, corr1],
            cf,
            c,
            (mq, neg_inv)
        );
        let tw = if BLOCKS {
            _mm512_set1_epi64(twist[c / block] as i64)
        } else {
            load64(twist, c)
        };
        twist_vec(plus0, minus0, c, t0, Some(load64(add, c)), qv, tw);
        twist_vec(plus1, minus1, c, t1, None, qv, tw);
    }
    super::dot_finish_range(a, [plus0, plus1], [minus0, minus1], body..n);
}

/// Sixteen words at `s[c..c + 16]` (values below 2^32) as sixteen 32-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn load_narrow(s: &[u64], c: usize) -> __m512i {
    let low_halves = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    _mm512_permutex2var_epi32(load64(s, c), low_halves, load64(s, c + W))
}

/// Stores sixteen 32-bit lanes as words at `s[c..c + 16]`.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_wide(s: &mut [u64], c: usize, v: __m512i) {
    store64(s, c, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v)));
    store64(
        s,
        c + W,
        _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(v)),
    );
}

/// [`super::lift2_aux`] for the direct case (q₀ < q₁ < every m), sixteen coefficients
/// per step in 32-bit lanes: the two Shoup products per auxiliary modulus, the
/// corrections and the sign blend on sixteen lanes instead of eight (about a quarter
/// fewer vector µops, the narrowing and widening included).
#[target_feature(enable = "avx512f")]
pub(super) fn lift2_aux_direct16(l: &super::Lift2, x0s: &[u64], x1s: &[u64], aux: &mut [u64]) {
    let n = x0s.len();
    let body = n - n % (2 * W);
    lift2_direct16_impl::<false>(l, body, (x0s, x1s, aux), (&[], &[], &mut []));
    super::lift2_aux_range(l, x0s, x1s, aux, body..n);
}

/// [`lift2_aux_direct16`] on rows of plain 32-bit values, in and out (n a multiple of 16).
#[target_feature(enable = "avx512f")]
pub(super) fn lift2_aux_direct16_narrow(
    l: &super::Lift2,
    x0s: &[u32],
    x1s: &[u32],
    aux: &mut [u32],
) {
    let n = x0s.len();
    assert!(n.is_multiple_of(2 * W), "whole vectors");
    lift2_direct16_impl::<true>(l, n, (&[], &[], &mut []), (x0s, x1s, aux));
}

/// The sixteen-lane loop of the direct lift over the first `body` coefficients (a multiple
/// of 16) of rows n = x0s.len() long, given as words (NARROW false) or 32-bit values.
#[inline]
#[target_feature(enable = "avx512f")]
fn lift2_direct16_impl<const NARROW: bool>(
    l: &super::Lift2,
    body: usize,
    (x0w, x1w, auxw): (&[u64], &[u64], &mut [u64]),
    (x0n, x1n, auxn): (&[u32], &[u32], &mut [u32]),
) {
    let n = if NARROW { x0n.len() } else { x0w.len() };
    let set32 = |v: u32| _mm512_set1_epi32(v as i32);
    let (q1, w, ws) = (set32(l.q1), set32(l.inv.0), set32(l.inv.1));
    let (h0, h1) = (set32(l.half.0), set32(l.half.1));
    let consts: Vec<[__m512i; 4]> = l
        .aux
        .iter()
        .map(|&(m, _, (r0, r0s), qm)| [set32(m), set32(r0), set32(r0s), set32(qm)])
        .collect();
    let csub32 = |x: __m512i, c: __m512i| _mm512_min_epu32(x, _mm512_sub_epi32(x, c));
    let load16 = |s: &[u32], c: usize| -> __m512i {
        let a: &[u32; 2 * W] = s[c..c + 2 * W].try_into().expect("16 values");
        // SAFETY: `a` is a live reference to 64 readable bytes; no alignment needed.
        unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
    };
    for c in (0..body).step_by(2 * W) {
        let (x0, x1) = if NARROW {
            (load16(x0n, c), load16(x1n, c))
        } else {
            (load_narrow(x0w, c), load_narrow(x1w, c))
        };
        let t = _mm512_sub_epi32(_mm512_add_epi32(x1, q1), x0);
        let d1 = csub32(mul_lazy_avx512(t, w, ws, ws, q1), q1);
        let neg = _mm512_cmpgt_epu32_mask(d1, h1)
            | (_mm512_cmpeq_epu32_mask(d1, h1) & _mm512_cmpgt_epu32_mask(x0, h0));
        for (a, &[m, r0, r0s, qm]) in consts.iter().enumerate() {
            let v = csub32(
                _mm512_add_epi32(csub32(mul_lazy_avx512(d1, r0, r0s, r0s, m), m), x0),
                m,
            );
            let nv = csub32(_mm512_sub_epi32(_mm512_add_epi32(v, m), qm), m);
            let out = _mm512_mask_blend_epi32(neg, v, nv);
            if NARROW {
                let o: &mut [u32; 2 * W] = (&mut auxn[a * n + c..a * n + c + 2 * W])
                    .try_into()
                    .expect("16 values");
                // SAFETY: `o` is an exclusive reference to 64 writable bytes; no
                // alignment needed.
                unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), out) };
            } else {
                store_wide(auxw, a * n + c, out);
            }
        }
    }
}

/// [`super::lift2_aux`] for any moduli (below 2^30), eight coefficients per step; the direct
/// case runs [`lift2_aux_direct16`].
#[target_feature(enable = "avx512f")]
pub(super) fn lift2_aux(l: &super::Lift2, x0s: &[u64], x1s: &[u64], aux: &mut [u64]) {
    let n = x0s.len();
    let x1s = &x1s[..n];
    let (q1, mu1, w, ws) = (set(l.q1), set(l.mu1), set(l.inv.0), set(l.inv.1));
    let (h0, h1) = (set(l.half.0), set(l.half.1));
    let consts: Vec<[__m512i; 5]> = l
        .aux
        .iter()
        .map(|&(m, mu, (r0, r0s), qm)| [set(m), set(mu), set(r0), set(r0s), set(qm)])
        .collect();
    let body = n - n % W;
    for c in (0..body).step_by(W) {
        let (x0, x1) = (load64(x0s, c), load64(x1s, c));
        let x0q1 = barrett(x0, q1, mu1);
        let t = _mm512_sub_epi64(_mm512_add_epi64(x1, q1), x0q1);
        let d1 = mul_shoup(t, w, ws, q1);
        let neg = _mm512_cmpgt_epu64_mask(d1, h1)
            | (_mm512_cmpeq_epu64_mask(d1, h1) & _mm512_cmpgt_epu64_mask(x0, h0));
        for (a, &[m, mu, r0, r0s, qm]) in consts.iter().enumerate() {
            let (d1m, x0m) = (barrett(d1, m, mu), barrett(x0, m, mu));
            let v = _mm512_add_epi64(mul_shoup(d1m, r0, r0s, m), x0m);
            let v = csub(v, m);
            let nv = csub(_mm512_sub_epi64(_mm512_add_epi64(v, m), qm), m);
            store64(aux, a * n + c, _mm512_mask_blend_epi64(neg, v, nv));
        }
    }
    super::lift2_aux_range(l, x0s, x1s, aux, body..n);
}

/// [`super::gather_rows`], eight outputs per step: when perm[i..i + 8] all point into
/// one aligned block of eight source words, one `vpermq` per row (its lanes use the low
/// three bits of each index), else the eight words one by one.
#[target_feature(enable = "avx512f,avx512vl")]
pub(super) fn gather_rows<const K: usize>(
    perm: &[u32],
    src: [&[u64]; K],
    mut dst: [&mut [u64]; K],
) {
    let n = perm.len();
    let body = n - n % W;
    let high = _mm256_set1_epi32(!7);
    for i in (0..body).step_by(W) {
        let p: &[u32; W] = perm[i..i + W].try_into().expect("8 entries");
        // SAFETY: `p` is a live reference to 32 readable bytes; no alignment needed.
        let pv = unsafe { _mm256_loadu_si256(p.as_ptr().cast()) };
        let base = (p[0] & !7) as usize;
        let same =
            _mm256_cmpeq_epi32_mask(_mm256_and_si256(pv, high), _mm256_set1_epi32(base as i32));
        if same == 0xff {
            let idx = _mm512_cvtepu32_epi64(pv);
            for (s, d) in src.iter().zip(dst.iter_mut()) {
                store64(d, i, _mm512_permutexvar_epi64(idx, load64(s, base)));
            }
        } else {
            super::gather_rows_scalar(perm, i..i + W, src, dst.each_mut().map(|d| &mut **d));
        }
    }
    super::gather_rows_scalar(perm, body..n, src, dst);
}

/// [`super::dot_redc`] for two digits, eight coefficients per step.
#[target_feature(enable = "avx512f")]
pub(super) fn dot2(
    m: Mont32,
    srcs: [&[u64]; 2],
    k0: [&[u32]; 2],
    k1: [&[u32]; 2],
    out0: &mut [u64],
    out1: &mut [u64],
) {
    let n = out0.len();
    let (q, neg_inv) = (set(m.q), set(m.neg_inv));
    let (s0, s1) = (&srcs[0][..n], &srcs[1][..n]);
    let (a0, a1, b0, b1) = (&k0[0][..n], &k0[1][..n], &k1[0][..n], &k1[1][..n]);
    let out1 = &mut out1[..n];
    let body = n - n % W;
    for c in (0..body).step_by(W) {
        let (x0, x1) = dot2_vec!([s0, s1], [a0, a1], [b0, b1], c, (q, neg_inv));
        store64(out0, c, x0);
        store64(out1, c, x1);
    }
    for c in body..n {
        let (d0, d1) = (s0[c] as u32 as u64, s1[c] as u32 as u64);
        out0[c] = m.redc(d0 * a0[c] as u64 + d1 * a1[c] as u64);
        out1[c] = m.redc(d0 * b0[c] as u64 + d1 * b1[c] as u64);
    }
}
