//! The key product of an Eval-form key switch over moduli below 2^30: for each coefficient,
//! Σ_j d_j·k_j mod q over the k digits d_j (u64 words holding values below q) and key rows k_j
//! (u32 words), for both key polynomials at once.
//!
//! The key rows are kept in Montgomery form (k·2^32 mod q), so the u64 sum of the k products
//! (below k·q² < q·2^32 when k·q < 2^32) needs a single Montgomery reduction per coefficient:
//! two 32×32→64-bit multiplies, an add and a shift. On x86-64 with AVX2 that is four
//! `vpmuludq` lanes working directly on the u64 words, with no packing or unpacking.

use crate::arith::{barrett32, mul_shoup32_lazy};
use crate::simd::{Isa, Level, level};

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
    dot_redc_with(level(), m, srcs, k0, k1, out0, out1)
}

/// [`dot_redc`] with the kernels `level` allows ([`Level::isa`]).
pub(crate) fn dot_redc_with(
    level: Level,
    m: Mont32,
    srcs: &[&[u64]],
    k0: &[&[u32]],
    k1: &[&[u32]],
    out0: &mut [u64],
    out1: &mut [u64],
) {
    if let ([s0, s1], [a0, a1], [b0, b1]) = (srcs, k0, k1) {
        let (two, k0, k1) = ([*s0, *s1], [*a0, *a1], [*b0, *b1]);
        match level.isa() {
            // SAFETY: `isa()` yields `Avx512` only when the CPU has AVX-512; `avx512::dot2` is
            // safe Rust with AVX-512 enabled whose memory accesses are bounds-checked slices.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => return unsafe { avx512::dot2(m, two, k0, k1, out0, out1) },
            // SAFETY: as above, for AVX2 and `avx2::dot2`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => return unsafe { avx2::dot2(m, two, k0, k1, out0, out1) },
            _ => {}
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
    reduce_u64_rows_avx512_with(level(), q, out, x)
}

/// [`reduce_u64_rows_avx512`] with the kernels `level` allows ([`Level::isa`]).
pub(crate) fn reduce_u64_rows_avx512_with(
    level: Level,
    q: u32,
    out: &mut [u64],
    x: &[u64],
) -> Option<()> {
    match level.isa() {
        // SAFETY: `isa()` yields `Avx512` only when the CPU has AVX-512; the kernel is safe
        // Rust with AVX-512 enabled whose memory accesses are bounds-checked slices.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // SAFETY: see above; AVX-512 was detected before this variant was chosen.
            unsafe { avx512::reduce_u64_rows(q, out, x) };
            Some(())
        }
        _ => {
            let _ = (q, out, x);
            None
        }
    }
}

/// dst ← (src mod q + add) mod q for src < 2^32 and add < q, with mu = ⌊2^32/q⌋.
pub(crate) fn reduce_add(dst: &mut [u64], src: &[u64], q: u32, mu: u32, add: u32) {
    reduce_add_with(level(), dst, src, q, mu, add)
}

/// [`reduce_add`] with the kernels `level` allows ([`Level::isa`]).
pub(crate) fn reduce_add_with(
    level: Level,
    dst: &mut [u64],
    src: &[u64],
    q: u32,
    mu: u32,
    add: u32,
) {
    match level.isa() {
        // SAFETY: `isa()` yields `Avx2` or wider only when the CPU has AVX2; the kernel is
        // safe Rust with AVX2 enabled whose memory accesses are bounds-checked slices.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => unsafe { avx2::reduce_add(dst, src, q, mu, add) },
        _ => {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = reduce_add1(x, q, mu, add);
            }
        }
    }
}

/// out ← (out − corr)·inv mod q for out, corr < q, with inv_s = ⌊inv·2^32/q⌋ (Shoup).
pub(crate) fn sub_mul(out: &mut [u64], corr: &[u64], q: u32, inv: u32, inv_s: u32) {
    sub_mul_with(level(), out, corr, q, inv, inv_s)
}

/// [`sub_mul`] with the kernels `level` allows ([`Level::isa`]).
pub(crate) fn sub_mul_with(
    level: Level,
    out: &mut [u64],
    corr: &[u64],
    q: u32,
    inv: u32,
    inv_s: u32,
) {
    match level.isa() {
        // SAFETY: `isa()` yields `Avx2` or wider only when the CPU has AVX2; the kernel is
        // safe Rust with AVX2 enabled whose memory accesses are bounds-checked slices.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => unsafe { avx2::sub_mul(out, corr, q, inv, inv_s) },
        _ => {
            for (x, &c) in out.iter_mut().zip(corr) {
                *x = sub_mul1(*x, c, q, inv, inv_s);
            }
        }
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
    finish_twist_with(level(), plus, minus, acc, corr, add, q, inv, twist)
}

/// [`finish_twist`] with the kernels `level` allows ([`Level::isa`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_twist_with(
    level: Level,
    plus: &mut [u64],
    minus: &mut [u64],
    acc: &[u64],
    corr: &[u64],
    add: Option<&[u64]>,
    q: u32,
    inv: (u32, u32),
    twist: &[u64],
) {
    let (a, with_add) = (add.unwrap_or(&[]), add.is_some());
    match (level.isa(), with_add) {
        // SAFETY: `isa()` yields `Avx512` only when the CPU has AVX-512; the kernel is safe
        // Rust with AVX-512 enabled whose memory accesses are bounds-checked slices.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, true) => unsafe {
            avx512::finish_twist::<true>(plus, minus, acc, corr, a, q, inv, twist)
        },
        // SAFETY: as above; `isa()` checked that the CPU has AVX-512.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, false) => unsafe {
            avx512::finish_twist::<false>(plus, minus, acc, corr, a, q, inv, twist)
        },
        // SAFETY: as above; `isa()` checked that the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, true) => unsafe {
            avx2::finish_twist::<true>(plus, minus, acc, corr, a, q, inv, twist)
        },
        // SAFETY: as above; `isa()` checked that the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, false) => unsafe {
            avx2::finish_twist::<false>(plus, minus, acc, corr, a, q, inv, twist)
        },
        (_, true) => finish_twist_body::<true>(plus, minus, acc, corr, a, q, inv, twist),
        (_, false) => finish_twist_body::<false>(plus, minus, acc, corr, a, q, inv, twist),
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
    dot_finish_twist_with(level(), a, [plus0, plus1], [minus0, minus1])
}

/// [`dot_finish_twist`] with the kernels `level` allows ([`Level::isa`]).
pub(crate) fn dot_finish_twist_with(
    level: Level,
    a: &DotFinish,
    [plus0, plus1]: [&mut [u64]; 2],
    [minus0, minus1]: [&mut [u64]; 2],
) {
    match level.isa() {
        // SAFETY: `isa()` yields `Avx512` only when the CPU has AVX-512; the kernel is safe
        // Rust with AVX-512 enabled whose memory accesses are bounds-checked slices.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::dot_finish_twist(a, [plus0, plus1], [minus0, minus1]) },
        _ => dot_finish_range(a, [plus0, plus1], [minus0, minus1], 0..a.add.len()),
    }
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
    lift2_aux_with(level(), l, x0s, x1s, aux)
}

/// [`lift2_aux`] with the kernels `level` allows ([`Level::isa`]).
pub(crate) fn lift2_aux_with(level: Level, l: &Lift2, x0s: &[u64], x1s: &[u64], aux: &mut [u64]) {
    match (level.isa(), l.direct()) {
        // SAFETY: `isa()` yields `Avx512` only when the CPU has AVX-512; the kernel is safe
        // Rust with AVX-512 enabled whose memory accesses are bounds-checked slices.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, true) => unsafe { avx512::lift2_aux_direct16(l, x0s, x1s, aux) },
        // SAFETY: as above; `isa()` checked that the CPU has AVX-512.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, false) => unsafe { avx512::lift2_aux(l, x0s, x1s, aux) },
        // SAFETY: as above; `isa()` checked that the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, true) => unsafe { avx2::lift2_aux::<true>(l, x0s, x1s, aux) },
        // SAFETY: as above; `isa()` checked that the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, false) => unsafe { avx2::lift2_aux::<false>(l, x0s, x1s, aux) },
        _ => lift2_aux_range(l, x0s, x1s, aux, 0..x0s.len()),
    }
}

/// Whether [`lift2_aux_narrow`] runs for rows of n values: the CPU has AVX-512 (x86-64),
/// the lift is [`Lift2::direct`] and n is a multiple of 16.
pub(crate) fn lift2_narrow_applies(l: &Lift2, n: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && level().isa() == Isa::Avx512
        && l.direct()
        && n.is_multiple_of(16)
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
    gather_rows_with(level(), perm, src, dst)
}

/// [`gather_rows`] with the kernels `level` allows ([`Level::isa`]).
pub(crate) fn gather_rows_with<const K: usize>(
    level: Level,
    perm: &[u32],
    src: [&[u64]; K],
    dst: [&mut [u64]; K],
) {
    match level.isa() {
        // SAFETY: `isa()` yields `Avx512` only when the CPU has AVX-512; the kernel is safe
        // Rust with AVX-512 enabled whose memory accesses are bounds-checked slices.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::gather_rows(perm, src, dst) },
        // SAFETY: as above, for AVX2.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::gather_rows(perm, src, dst) },
        _ => gather_rows_scalar(perm, 0..perm.len(), src, dst),
    }
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
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;
