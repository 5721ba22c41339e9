//! The key product of an Eval-form key switch over moduli below 2^30: for each coefficient,
//! Σ_j d_j·k_j mod q over the k digits d_j (u64 words holding values below q) and key rows k_j
//! (u32 words), for both key polynomials at once.
//!
//! The key rows are kept in Montgomery form (k·2^32 mod q), so the u64 sum of the k products
//! (below k·q² < q·2^32 when k·q < 2^32) needs a single Montgomery reduction per coefficient:
//! two 32×32→64-bit multiplies, an add and a shift. On x86-64 with AVX2 that is four
//! `vpmuludq` lanes working directly on the u64 words, with no packing or unpacking.

use crate::arith::{barrett32, mul_shoup32_lazy};

/// Montgomery constants of an odd modulus q < 2^31: q and q' = −q⁻¹ mod 2^32.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mont32 {
    q: u32,
    neg_inv: u32,
}

impl Mont32 {
    /// The constants for odd q < 2^31 (None for an even or larger q).
    pub(crate) fn new(q: u32) -> Option<Mont32> {
        if q.is_multiple_of(2) || q >= 1 << 31 {
            return None;
        }
        // Newton's iteration doubles the correct low bits of q⁻¹ mod 2^32 each round.
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(q.wrapping_mul(inv)));
        }
        Some(Mont32 {
            q,
            neg_inv: inv.wrapping_neg(),
        })
    }

    /// The modulus.
    pub(crate) fn q(self) -> u32 {
        self.q
    }

    /// w·2^32 mod q: the Montgomery form a key row is stored in.
    pub(crate) fn to_mont(self, w: u32) -> u32 {
        (((w as u64) << 32) % self.q as u64) as u32
    }

    /// x·2^−32 mod q in [0, q) for x < q·2^32.
    #[inline(always)]
    fn redc(self, x: u64) -> u64 {
        let m = (x as u32).wrapping_mul(self.neg_inv) as u64;
        // x + m·q < 2^33·q < 2^64, divisible by 2^32; the quotient is below 2q.
        let t = ((x + m * self.q as u64) >> 32) as u32;
        t.min(t.wrapping_sub(self.q)) as u64
    }

    /// Whether k products of values below q (one factor in Montgomery form) sum below q·2^32.
    pub(crate) fn fits(self, k: usize) -> bool {
        (k as u64) * (self.q as u64) < 1 << 32
    }
}

/// `out0[c]` = Σ_j `src_j[c]`·`k0_j[c]`·2^−32 mod q and out1 likewise with k1, for every c < n.
/// Needs each sum of products below q·2^32: key words below q, and src values below q with
/// `m.fits(srcs.len())` or below 4q (lazy transforms) with `m.fits(4·srcs.len())` (else the
/// result is wrong, never unsound); slices shorter than n are an error of the caller and panic.
pub(crate) fn dot_redc(
    m: Mont32,
    srcs: &[&[u64]],
    k0: &[&[u32]],
    k1: &[&[u32]],
    out0: &mut [u64],
    out1: &mut [u64],
) {
    #[cfg(target_arch = "x86_64")]
    if let ([s0, s1], [a0, a1], [b0, b1]) = (srcs, k0, k1) {
        let (srcs, k0, k1) = ([*s0, *s1], [*a0, *a1], [*b0, *b1]);
        if crate::simd::avx512() {
            // SAFETY: AVX-512 is present (checked just above); `avx512::dot2` is safe Rust
            // with AVX-512 enabled whose memory accesses are bounds-checked slices.
            unsafe { avx512::dot2(m, srcs, k0, k1, out0, out1) };
            return;
        }
        if crate::simd::avx2() {
            // SAFETY: AVX2 is present (checked just above); `avx2::dot2` is safe Rust with
            // AVX2 enabled whose memory accesses are bounds-checked slices.
            unsafe { avx2::dot2(m, srcs, k0, k1, out0, out1) };
            return;
        }
    }
    dot_redc_portable(m, srcs, k0, k1, out0, out1)
}

/// [`dot_redc`] in plain Rust (any k).
fn dot_redc_portable(
    m: Mont32,
    srcs: &[&[u64]],
    k0: &[&[u32]],
    k1: &[&[u32]],
    out0: &mut [u64],
    out1: &mut [u64],
) {
    let n = out0.len();
    for c in 0..n {
        let (mut a0, mut a1) = (0u64, 0u64);
        for ((s, x0), x1) in srcs.iter().zip(k0).zip(k1) {
            let d = s[c] as u32 as u64;
            a0 += d * x0[c] as u64;
            a1 += d * x1[c] as u64;
        }
        out0[c] = m.redc(a0);
        out1[c] = m.redc(a1);
    }
}

/// `out[i] = x[i] mod q` for any u64 words x and q < 2^30, on the words as they are: with
/// x = h·2^32 + l, (h mod q)·(2^32 mod q) + l mod q (two Barrett reductions and a Shoup
/// product in u64 lanes). None when the CPU has no AVX-512 (the caller's 32-bit-lane loop
/// runs then); the lazy sums of the first dimension and of the tensor end here.
pub(crate) fn reduce_u64_rows_avx512(q: u32, out: &mut [u64], x: &[u64]) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx512() {
        // SAFETY: AVX-512 is present (checked just above); safe Rust with AVX-512 enabled
        // whose memory accesses are bounds-checked slices.
        unsafe { avx512::reduce_u64_rows(q, out, x) };
        return Some(());
    }
    let _ = (q, out, x);
    None
}

/// dst ← (src mod q + add) mod q for src < 2^32 and add < q, with mu = ⌊2^32/q⌋.
pub(crate) fn reduce_add(dst: &mut [u64], src: &[u64], q: u32, mu: u32, add: u32) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: AVX2 is present (checked just above); safe Rust with AVX2 enabled.
        unsafe { avx2::reduce_add(dst, src, q, mu, add) };
        return;
    }
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = reduce_add1(x, q, mu, add);
    }
}

/// out ← (out − corr)·inv mod q for out, corr < q, with inv_s = ⌊inv·2^32/q⌋ (Shoup).
pub(crate) fn sub_mul(out: &mut [u64], corr: &[u64], q: u32, inv: u32, inv_s: u32) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: AVX2 is present (checked just above); safe Rust with AVX2 enabled.
        unsafe { avx2::sub_mul(out, corr, q, inv, inv_s) };
        return;
    }
    for (x, &c) in out.iter_mut().zip(corr) {
        *x = sub_mul1(*x, c, q, inv, inv_s);
    }
}

/// The last pass of a fused expansion step, per coefficient c of one row mod q (< 2^31):
/// t = (acc − corr)·P⁻¹ mod q (the key switch's rounding division, `inv` = (P⁻¹, Shoup)),
/// plus `add[c]` when given (σ(c₀) for the first polynomial); then
/// (plus, minus) ← (plus + t, (plus − t)·w) with each `twist` word packing w (low half) and
/// its Shoup factor ⌊w·2^32/q⌋ (high half), one load for both. One pass instead of three over
/// the rows (sub_mul, the σ(c₀) addition, then the sum/difference with the twist), the
/// integers unchanged.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_twist(
    plus: &mut [u64],
    minus: &mut [u64],
    acc: &[u64],
    corr: &[u64],
    add: Option<&[u64]>,
    q: u32,
    inv: (u32, u32),
    twist: &[u64],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx512() {
        // SAFETY: AVX-512 is present (checked just above); `avx512::finish_twist` is safe
        // Rust with AVX-512 enabled whose memory accesses are bounds-checked slices.
        unsafe {
            match add {
                Some(a) => avx512::finish_twist::<true>(plus, minus, acc, corr, a, q, inv, twist),
                None => avx512::finish_twist::<false>(plus, minus, acc, corr, &[], q, inv, twist),
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: AVX2 is present (checked just above); `avx2::finish_twist` is safe Rust
        // with AVX2 enabled whose memory accesses are bounds-checked slices.
        unsafe {
            match add {
                Some(a) => avx2::finish_twist::<true>(plus, minus, acc, corr, a, q, inv, twist),
                None => avx2::finish_twist::<false>(plus, minus, acc, corr, &[], q, inv, twist),
            }
        }
        return;
    }
    match add {
        Some(a) => finish_twist_body::<true>(plus, minus, acc, corr, a, q, inv, twist),
        None => finish_twist_body::<false>(plus, minus, acc, corr, &[], q, inv, twist),
    }
}

/// [`finish_twist`]'s loop, written on u64 lanes with every multiplied operand masked to 32
/// bits so that the products map to `vpmuludq` when built with AVX2.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn finish_twist_body<const ADD: bool>(
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
    for c in 0..n {
        let a = if ADD { add[c] } else { 0 };
        (plus[c], minus[c]) = finish_step(plus[c], acc[c], corr[c], a, q, (inv, inv_s), twist[c]);
    }
}

/// One coefficient of [`finish_twist`]: t = (acc − corr)·P⁻¹ (+ add), then
/// (plus + t, (plus − t)·w), with `tw` packing w and its Shoup factor. Written on u64 lanes
/// with every multiplied operand masked to 32 bits, so that a loop of it maps to `vpmuludq`.
#[inline(always)]
fn finish_step(
    plus: u64,
    acc: u64,
    corr: u64,
    add: u64,
    q: u32,
    (inv, inv_s): (u32, u32),
    tw: u64,
) -> (u64, u64) {
    const LO: u64 = 0xffff_ffff;
    let (q, inv, inv_s) = (q as u64, inv as u64, inv_s as u64);
    let csub = |x: u64| if x >= q { x - q } else { x };
    // Every value below is < 2q < 2^32; the masks only tell the compiler so.
    let d = ((acc & LO) + q - (corr & LO)) & LO;
    let t = csub(((d * inv).wrapping_sub(((d * inv_s) >> 32) * q)) & LO);
    twist_step(plus, t, add, q as u32, tw)
}

/// The inputs of [`dot_finish_twist`] for one row mod q (two digits).
///
/// The rounding division by P is folded into the Montgomery reduction: the key rows are
/// stored already multiplied by P⁻¹ mod q, and the correction row enters the same reduction
/// with `cf` = −P⁻¹·2^32 mod q, so REDC(s₀·a₀' + s₁·a₁' + corr·cf) is (Σ s·a − corr)·P⁻¹
/// with no separate product by P⁻¹.
pub(crate) struct DotFinish<'a> {
    /// Montgomery constants of q (the key rows are in Montgomery form).
    pub(crate) m: Mont32,
    /// The two digits' Eval rows (each word below 4q; the reduction needs the sum of the three
    /// products below q·2^32).
    pub(crate) srcs: [&'a [u64]; 2],
    /// Key rows of each digit for the first and the second output polynomial, times P⁻¹.
    pub(crate) keys: [[&'a [u32]; 2]; 2],
    /// Correction rows of the rounding division, per output polynomial (below 4q).
    pub(crate) corr: [&'a [u64]; 2],
    /// −P⁻¹ mod q in Montgomery form (the correction rows' factor).
    pub(crate) cf: u32,
    /// σ(c₀), added to the first polynomial.
    pub(crate) add: &'a [u64],
    /// The modulus.
    pub(crate) q: u32,
    /// Packed twist words (see [`finish_twist`]), each for a block of that many consecutive
    /// coefficients: (1, a whole row), or (b ≥ 8, n/b words) for a twist constant on blocks.
    pub(crate) twist: (usize, &'a [u64]),
}

/// One row of a fused expansion step: the key-switch dot products of [`dot_redc`] (two
/// digits) with the rounding division by P folded in (see [`DotFinish`]), then the twisted
/// sum and difference of [`finish_twist`] for both polynomials (σ(c₀) added to the first), in
/// one pass, so the switched rows never go through memory. The same integers as the two
/// passes with unscaled keys. Needs the three products' sum below q·2^32 (`a.m.fits(9)` with
/// lazy rows below 4q, `fits(3)` with reduced ones).
pub(crate) fn dot_finish_twist(
    a: &DotFinish,
    [plus0, plus1]: [&mut [u64]; 2],
    [minus0, minus1]: [&mut [u64]; 2],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx512() {
        // SAFETY: AVX-512 is present (checked just above); the kernel is safe Rust with
        // AVX-512 enabled whose memory accesses are bounds-checked slices.
        unsafe { avx512::dot_finish_twist(a, [plus0, plus1], [minus0, minus1]) };
        return;
    }
    dot_finish_range(a, [plus0, plus1], [minus0, minus1], 0..a.add.len());
}

/// [`dot_finish_twist`] one coefficient at a time over `range`.
fn dot_finish_range(
    a: &DotFinish,
    [plus0, plus1]: [&mut [u64]; 2],
    [minus0, minus1]: [&mut [u64]; 2],
    range: std::ops::Range<usize>,
) {
    let [[a0, a1], [b0, b1]] = a.keys;
    let [s0, s1] = a.srcs;
    let cf = a.cf as u64;
    for c in range {
        let (d0, d1) = (s0[c] as u32 as u64, s1[c] as u32 as u64);
        let (e0, e1) = (a.corr[0][c] as u32 as u64, a.corr[1][c] as u32 as u64);
        let t0 = a.m.redc(d0 * a0[c] as u64 + d1 * a1[c] as u64 + e0 * cf);
        let t1 = a.m.redc(d0 * b0[c] as u64 + d1 * b1[c] as u64 + e1 * cf);
        let tw = a.twist.1[c / a.twist.0];
        (plus0[c], minus0[c]) = twist_step(plus0[c], t0, a.add[c], a.q, tw);
        (plus1[c], minus1[c]) = twist_step(plus1[c], t1, 0, a.q, tw);
    }
}

/// t ← t + add mod q, then (plus + t, (plus − t)·w) for values below q, with `tw` packing w
/// and its Shoup factor: the end of [`finish_step`] once t = (acc − corr)·P⁻¹ is known.
#[inline(always)]
fn twist_step(plus: u64, t: u64, add: u64, q: u32, tw: u64) -> (u64, u64) {
    const LO: u64 = 0xffff_ffff;
    let q = q as u64;
    let csub = |x: u64| if x >= q { x - q } else { x };
    let t = csub(t + (add & LO));
    let a = plus & LO;
    let e = (a + q - t) & LO;
    let (wc, wsc) = (tw & LO, tw >> 32);
    (
        csub(a + t),
        csub(((e * wc).wrapping_sub(((e * wsc) >> 32) * q)) & LO),
    )
}

/// Constants of the centered lift of values x = x₀ + q₀·d₁ given by residues (x₀, x₁) mod
/// (q₀, q₁) to auxiliary moduli m (all below 2^30): q₀, q₁ with its Barrett factor,
/// (q₀⁻¹ mod q₁, Shoup), the Garner digits of ⌊Q/2⌋ (low, high), and per m: (m, Barrett
/// factor, (q₀ mod m, Shoup), Q mod m).
pub(crate) struct Lift2 {
    pub(crate) q0: u32,
    pub(crate) q1: u32,
    pub(crate) mu1: u32,
    pub(crate) inv: (u32, u32),
    pub(crate) half: (u32, u32),
    pub(crate) aux: Vec<(u32, u32, (u32, u32), u32)>,
}

impl Lift2 {
    /// Whether q₀ < q₁ < every auxiliary m, so x₀ and d₁ need no reduction mod q₁ or m (the
    /// case of Apple's parameters, whose auxiliary primes are just below 2^30).
    pub(crate) fn direct(&self) -> bool {
        self.q0 < self.q1 && self.aux.iter().all(|a| a.0 > self.q1)
    }
}

/// The auxiliary rows of the centered lift: for every coefficient c, with
/// d₁ = (x₁ − x₀)·q₀⁻¹ mod q₁ and x negative when (d₁, x₀) > the digits of ⌊Q/2⌋, row a of
/// `aux` gets (x₀ + (q₀ mod m)·d₁ − [x negative]·Q) mod m for the a-th auxiliary m.
pub(crate) fn lift2_aux(l: &Lift2, x0s: &[u64], x1s: &[u64], aux: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx512() {
        // SAFETY: AVX-512 is present (checked just above); safe Rust with AVX-512 enabled.
        unsafe {
            if l.direct() {
                avx512::lift2_aux_direct16(l, x0s, x1s, aux)
            } else {
                avx512::lift2_aux::<false>(l, x0s, x1s, aux)
            }
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: AVX2 is present (checked just above); safe Rust with AVX2 enabled.
        unsafe {
            if l.direct() {
                avx2::lift2_aux::<true>(l, x0s, x1s, aux)
            } else {
                avx2::lift2_aux::<false>(l, x0s, x1s, aux)
            }
        };
        return;
    }
    lift2_aux_range(l, x0s, x1s, aux, 0..x0s.len());
}

/// Whether [`lift2_aux_narrow`] runs for rows of n values: the CPU has AVX-512 (x86-64),
/// the lift is [`Lift2::direct`] and n is a multiple of 16.
pub(crate) fn lift2_narrow_applies(l: &Lift2, n: usize) -> bool {
    cfg!(target_arch = "x86_64") && crate::simd::avx512() && l.direct() && n.is_multiple_of(16)
}

/// [`lift2_aux`] on rows of plain 32-bit values, in and out, with the AVX-512 direct kernel.
/// Panics unless [`lift2_narrow_applies`] (the caller lifts words then).
pub(crate) fn lift2_aux_narrow(l: &Lift2, x0s: &[u32], x1s: &[u32], aux: &mut [u32]) {
    let n = x0s.len();
    assert!(
        lift2_narrow_applies(l, n),
        "narrow lift on this CPU and moduli"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512 is present (asserted just above); safe Rust with AVX-512 enabled whose
    // accesses are bounds-checked slices.
    unsafe {
        avx512::lift2_aux_direct16_narrow(l, x0s, &x1s[..n], &mut aux[..l.aux.len() * n])
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x1s, aux);
}

/// [`lift2_aux`] for the coefficients in `range` (rows of `aux` are x0s.len() long).
fn lift2_aux_range(
    l: &Lift2,
    x0s: &[u64],
    x1s: &[u64],
    aux: &mut [u64],
    range: std::ops::Range<usize>,
) {
    let n = x0s.len();
    for c in range {
        let (x0, x1) = (x0s[c] as u32, x1s[c] as u32);
        let d1 = x1 + l.q1 - barrett32(x0, l.q1, l.mu1);
        let d1 = mul_shoup32_lazy(d1, l.inv.0, l.inv.1, l.q1);
        let d1 = d1.min(d1.wrapping_sub(l.q1));
        let neg = d1 > l.half.1 || (d1 == l.half.1 && x0 > l.half.0);
        for (a, &(m, mu, (r0, r0s), qm)) in l.aux.iter().enumerate() {
            let v = mul_shoup32_lazy(barrett32(d1, m, mu), r0, r0s, m);
            let v = v.min(v.wrapping_sub(m)) + barrett32(x0, m, mu);
            let v = v.min(v.wrapping_sub(m));
            let nv = v + m - qm;
            let nv = nv.min(nv.wrapping_sub(m));
            aux[a * n + c] = if neg { nv } else { v } as u64;
        }
    }
}

/// `dst_j[i] = src_j[perm[i]]` for each of the K (source, destination) rows, every perm entry
/// below the source length. With AVX-512, eight outputs whose sources share one aligned
/// block of eight words (what the Eval permutations of the expansion's Galois elements give)
/// take one `vpermq` per row, with AVX2 four outputs from one block of four one `vpermd`;
/// other groups are copied one by one.
pub(crate) fn gather_rows<const K: usize>(perm: &[u32], src: [&[u64]; K], dst: [&mut [u64]; K]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx512() {
        // SAFETY: AVX-512 is present (checked just above); `avx512::gather_rows` is safe Rust
        // with AVX-512 enabled whose memory accesses are bounds-checked slices.
        unsafe { avx512::gather_rows(perm, src, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: AVX2 is present (checked just above); `avx2::gather_rows` is safe Rust with
        // AVX2 enabled whose memory accesses are bounds-checked slices.
        unsafe { avx2::gather_rows(perm, src, dst) };
        return;
    }
    gather_rows_scalar(perm, 0..perm.len(), src, dst);
}

/// [`gather_rows`] one word at a time, for the outputs in `range`.
fn gather_rows_scalar<const K: usize>(
    perm: &[u32],
    range: std::ops::Range<usize>,
    src: [&[u64]; K],
    dst: [&mut [u64]; K],
) {
    for (s, d) in src.into_iter().zip(dst) {
        for (o, &p) in d[range.clone()].iter_mut().zip(&perm[range.clone()]) {
            *o = s[p as usize];
        }
    }
}

/// One word of [`reduce_add`].
#[inline(always)]
fn reduce_add1(x: u64, q: u32, mu: u32, add: u32) -> u64 {
    let v = barrett32(x as u32, q, mu) + add;
    v.min(v.wrapping_sub(q)) as u64
}

/// One word of [`sub_mul`].
#[inline(always)]
fn sub_mul1(x: u64, c: u64, q: u32, inv: u32, inv_s: u32) -> u64 {
    let r = mul_shoup32_lazy(x as u32 + q - c as u32, inv, inv_s, q);
    r.min(r.wrapping_sub(q)) as u64
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
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
}

/// The AVX-512 forms of the `avx2` kernels above: the same integers, eight u64 lanes per
/// vector (each holding a 32-bit value, so `vpmuludq` gives the full products).
#[cfg(target_arch = "x86_64")]
mod avx512 {
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
        let low_halves =
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
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

    /// [`super::lift2_aux`], eight coefficients per step; DIRECT as in the AVX2 form.
    #[target_feature(enable = "avx512f")]
    pub(super) fn lift2_aux<const DIRECT: bool>(
        l: &super::Lift2,
        x0s: &[u64],
        x1s: &[u64],
        aux: &mut [u64],
    ) {
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
            let x0q1 = if DIRECT { x0 } else { barrett(x0, q1, mu1) };
            let t = _mm512_sub_epi64(_mm512_add_epi64(x1, q1), x0q1);
            let d1 = mul_shoup(t, w, ws, q1);
            let neg = _mm512_cmpgt_epu64_mask(d1, h1)
                | (_mm512_cmpeq_epu64_mask(d1, h1) & _mm512_cmpgt_epu64_mask(x0, h0));
            for (a, &[m, mu, r0, r0s, qm]) in consts.iter().enumerate() {
                let (d1m, x0m) = if DIRECT {
                    (d1, x0)
                } else {
                    (barrett(d1, m, mu), barrett(x0, m, mu))
                };
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
                        let (mut o0, mut o1) = (vec![0u64; n], vec![0u64; n]);
                        dot_redc(m, &s, &k0, &k1, &mut o0, &mut o1);
                        let (mut p0, mut p1) = (vec![0u64; n], vec![0u64; n]);
                        dot_redc_portable(m, &s, &k0, &k1, &mut p0, &mut p1);
                        for c in 0..n {
                            let expect = |off: usize| {
                                (0..k)
                                    .map(|j| srcs[j][c] as u128 * keys[off + j][c] as u128)
                                    .sum::<u128>()
                                    % q as u128
                            };
                            assert_eq!(o0[c] as u128, expect(0), "q {q} k {k} c {c}");
                            assert_eq!(o1[c] as u128, expect(k), "q {q} k {k} c {c}");
                            assert_eq!((p0[c], p1[c]), (o0[c], o1[c]));
                        }
                    }
                }
            }
        }
    }

    /// The mod-down steps equal their definitions, AVX2 or not, including the scalar tails.
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
        let mut red = vec![0u64; n];
        let add = q - 17;
        reduce_add(&mut red, &lifted, q, mu, add);
        let corr: Vec<u64> = (0..n as u64).map(|i| i * 40503 % q as u64).collect();
        let mut out: Vec<u64> = (0..n as u64).map(|i| i * 97 % q as u64).collect();
        let before = out.clone();
        sub_mul(&mut out, &corr, q, inv, inv_s);
        for i in 0..n {
            assert_eq!(red[i], (lifted[i] % q as u64 + add as u64) % q as u64);
            let d = (before[i] + q as u64 - corr[i]) % q as u64;
            assert_eq!(out[i], d * inv as u64 % q as u64, "{i}");
        }
    }

    /// The fused row (dot products, then the finish of both polynomials) equals dot_redc
    /// followed by finish_twist, on the dispatched path and the scalar one, with a tail.
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
            dot_redc(
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
            finish_twist(p0, m0, &acc0, &corr0, Some(&sigma0), q, inv, &tw);
            finish_twist(p1, m1, &acc1, &corr1, None, q, inv, &tw);
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
            for scalar in [false, true] {
                let (mut p0, mut p1) = (plus0.clone(), plus1.clone());
                let (mut m0, mut m1) = (vec![0u64; n], vec![0u64; n]);
                if scalar {
                    dot_finish_range(&args, [&mut p0, &mut p1], [&mut m0, &mut m1], 0..n);
                } else {
                    dot_finish_twist(&args, [&mut p0, &mut p1], [&mut m0, &mut m1]);
                }
                assert_eq!([(p0, m0), (p1, m1)], want, "scalar {scalar} block {block}");
            }
        }
    }

    /// The fused pass equals sub_mul, the optional addition and the twisted sum/difference
    /// done one after the other, with and without the addition, AVX2 or not.
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
        for with_add in [false, true] {
            let (mut plus, mut minus) = (plus0.clone(), vec![0u64; n]);
            let a = with_add.then_some(add.as_slice());
            finish_twist(&mut plus, &mut minus, &acc, &corr, a, q, (inv, inv_s), &tw);
            let mut portable = (plus0.clone(), vec![0u64; n]);
            finish_twist_body::<false>(
                &mut portable.0,
                &mut portable.1,
                &acc,
                &corr,
                &[],
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
                assert_eq!(plus[c], (plus0[c] + t) % qq, "{c}");
                assert_eq!(minus[c], (plus0[c] + qq - t) % qq * w[c] % qq, "{c}");
                if !with_add {
                    assert_eq!((portable.0[c], portable.1[c]), (plus[c], minus[c]));
                }
            }
        }
    }

    /// The lift's dispatched SIMD steps (sixteen 32-bit lanes with AVX-512, these moduli
    /// being direct; AVX2 otherwise) equal the portable loop (odd length: the tail too), and
    /// both equal the definition computed in u128 for every auxiliary modulus.
    #[test]
    fn lift2_aux_matches_definition() {
        let (q0, q1) = (134176769u32, 268361729u32);
        let aux_moduli = [268369921u32, 268582913, 268664833];
        let q = q0 as u128 * q1 as u128;
        let mu = |m: u32| ((1u64 << 32) / m as u64) as u32;
        let sh = |w: u32, m: u32| (w, (((w as u64) << 32) / m as u64) as u32);
        let inv = (1..q1 as u64)
            .find(|&i| i * q0 as u64 % q1 as u64 == 1)
            .unwrap() as u32;
        let half = q / 2;
        let l = Lift2 {
            q0,
            q1,
            mu1: mu(q1),
            inv: sh(inv, q1),
            half: ((half % q0 as u128) as u32, (half / q0 as u128) as u32),
            aux: aux_moduli
                .iter()
                .map(|&m| (m, mu(m), sh(q0 % m, m), (q % m as u128) as u32))
                .collect(),
        };
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
        let mut fast = vec![0u64; 3 * n];
        lift2_aux(&l, &x0, &x1, &mut fast);
        let mut portable = vec![0u64; 3 * n];
        lift2_aux_range(&l, &x0, &x1, &mut portable, 0..n);
        assert_eq!(fast, portable);
        for (c, &x) in xs.iter().enumerate() {
            for (a, &m) in aux_moduli.iter().enumerate() {
                let centered = if x > half {
                    x as i128 - q as i128
                } else {
                    x as i128
                };
                let want = centered.rem_euclid(m as i128) as u64;
                assert_eq!(fast[a * n + c], want, "c {c} m {m}");
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

    /// Where the CPU has both, the AVX2 kernels give the AVX-512 kernels' words (the
    /// dispatched path, pinned to the definitions above, is the widest one), on lengths with
    /// The AVX-512 reduction of u64 words equals the remainder for every word (the extremes,
    /// words with either half zero, and a length with a scalar tail), for moduli of 16 to 30
    /// bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_u64_reduction_is_the_remainder() {
        use crate::simd::{Level, detected};
        if detected() < Level::Avx512 {
            return;
        }
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
        for q in [40961u32, 134176769, 268369921, (1 << 30) - 35] {
            let mut out = vec![1u64; x.len()];
            // SAFETY: AVX-512 is present (checked above).
            unsafe { avx512::reduce_u64_rows(q, &mut out, &x) };
            for (o, v) in out.iter().zip(&x) {
                assert_eq!(*o, v % q as u64, "{v} mod {q}");
            }
        }
    }

    /// a scalar tail and values at the extremes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_match_avx512() {
        use crate::simd::{Level, detected};
        if detected() < Level::Avx512 {
            return;
        }
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
        let mut outs = Vec::new();
        for wide in [false, true] {
            let (mut o0, mut o1) = (vec![0u64; n], vec![0u64; n]);
            let args = ([&s0[..], &s1[..]], [&a0[..], &a1[..]], [&b0[..], &b1[..]]);
            // SAFETY: both instruction sets were detected above.
            unsafe {
                if wide {
                    avx512::dot2(m, args.0, args.1, args.2, &mut o0, &mut o1);
                } else {
                    avx2::dot2(m, args.0, args.1, args.2, &mut o0, &mut o1);
                }
            }
            outs.push((o0, o1));
        }
        assert_eq!(outs[0], outs[1], "dot2");

        let (inv, inv_s) = (12345677u32, ((12345677u64 << 32) / q as u64) as u32);
        let (acc, corr, add, plus0, w) = (v(97), v(40503), v(2654435761), v(7919), v(104729));
        let packed: Vec<u64> = w
            .iter()
            .map(|&x| x | ((x << 32) / q as u64) << 32)
            .collect();
        let mut outs = Vec::new();
        for wide in [false, true] {
            let (mut plus, mut minus) = (plus0.clone(), vec![0u64; n]);
            let tw = &packed[..];
            // SAFETY: both instruction sets were detected above.
            unsafe {
                if wide {
                    avx512::finish_twist::<true>(
                        &mut plus,
                        &mut minus,
                        &acc,
                        &corr,
                        &add,
                        q,
                        (inv, inv_s),
                        tw,
                    );
                } else {
                    avx2::finish_twist::<true>(
                        &mut plus,
                        &mut minus,
                        &acc,
                        &corr,
                        &add,
                        q,
                        (inv, inv_s),
                        tw,
                    );
                }
            }
            outs.push((plus, minus));
        }
        assert_eq!(outs[0], outs[1], "finish_twist");

        let (q0, q1) = (134176769u32, 268361729u32);
        let mu = |m: u32| ((1u64 << 32) / m as u64) as u32;
        let sh = |w: u32, m: u32| (w, (((w as u64) << 32) / m as u64) as u32);
        let qq = q0 as u128 * q1 as u128;
        let inv = (1..q1 as u64)
            .find(|&i| i * q0 as u64 % q1 as u64 == 1)
            .unwrap() as u32;
        let half = qq / 2;
        let l = Lift2 {
            q0,
            q1,
            mu1: mu(q1),
            inv: sh(inv, q1),
            half: ((half % q0 as u128) as u32, (half / q0 as u128) as u32),
            aux: [268369921u32, 268582913]
                .iter()
                .map(|&m| (m, mu(m), sh(q0 % m, m), (qq % m as u128) as u32))
                .collect(),
        };
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
        // The reducing forms, and the direct ones (these moduli allow them), all agree.
        assert!(l.direct());
        let mut outs = Vec::new();
        for direct in [false, true] {
            let (mut narrow, mut wide) = (vec![0u64; 2 * n], vec![0u64; 2 * n]);
            // SAFETY: both instruction sets were detected above.
            unsafe {
                if direct {
                    avx2::lift2_aux::<true>(&l, &x0, &x1, &mut narrow);
                    avx512::lift2_aux::<true>(&l, &x0, &x1, &mut wide);
                } else {
                    avx2::lift2_aux::<false>(&l, &x0, &x1, &mut narrow);
                    avx512::lift2_aux::<false>(&l, &x0, &x1, &mut wide);
                }
            }
            assert_eq!(narrow, wide, "lift2_aux, direct {direct}");
            outs.push(wide);
        }
        assert_eq!(outs[0], outs[1], "direct and reducing lifts");
    }

    /// An index past the source rows is refused (a panic from the bounds-checked path), not
    /// read, on every SIMD path.
    #[test]
    #[should_panic]
    fn gather_rows_refuses_an_index_past_the_rows() {
        let n = 64;
        let src: Vec<u64> = (0..n as u64).collect();
        let mut perm: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % n as u32).collect();
        perm[9] = n as u32;
        let mut d = vec![0u64; n];
        gather_rows(&perm, [&src[..]], [&mut d]);
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
                let (mut d0, mut d1) = (vec![0u64; n], vec![0u64; n]);
                gather_rows(&perm, [&src0[..], &src1[..]], [&mut d0, &mut d1]);
                assert_eq!((&d0, &d1), (&want0, &want1), "n {n} g {g}");
                let mut one = vec![0u64; n];
                gather_rows(&perm, [&src1[..]], [&mut one]);
                assert_eq!(one, want1, "n {n} g {g}");
                #[cfg(target_arch = "x86_64")]
                if crate::simd::detected() >= crate::simd::Level::Avx2 {
                    let (mut e0, mut e1) = (vec![0u64; n], vec![0u64; n]);
                    // SAFETY: AVX2 was detected just above.
                    unsafe { avx2::gather_rows(&perm, [&src0[..], &src1[..]], [&mut e0, &mut e1]) };
                    assert_eq!((&e0, &e1), (&want0, &want1), "AVX2 n {n} g {g}");
                }
            }
            // A permutation that is not a Galois map, over a length with a scalar tail.
            let m = n - 3;
            let perm: Vec<u32> = (0..m as u32).map(|i| (i * 7 + 3) % m as u32).collect();
            let mut d = vec![0u64; m];
            gather_rows(&perm, [&src0[..m]], [&mut d]);
            let want: Vec<u64> = perm.iter().map(|&p| src0[p as usize]).collect();
            assert_eq!(d, want, "tail n {m}");
            #[cfg(target_arch = "x86_64")]
            if crate::simd::detected() >= crate::simd::Level::Avx2 {
                let mut e = vec![0u64; m];
                // SAFETY: AVX2 was detected just above.
                unsafe { avx2::gather_rows(&perm, [&src0[..m]], [&mut e]) };
                assert_eq!(e, want, "AVX2 tail n {m}");
            }
        }
    }
}
