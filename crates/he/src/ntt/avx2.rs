//! AVX2 kernels of the 32-bit NTT (moduli below 2^30): eight Harvey butterflies per vector.
//!
//! Shoup's quotient estimate ⌊y·w'/2^32⌋ comes from two `vpmuludq` (even and odd lanes, the
//! high words blended back together), the remainder y·w − q̂·q from two `vpmulld` (low words
//! only: the true remainder is below 2q < 2^32, so arithmetic mod 2^32 is exact).
//!
//! The kernels work in place on the caller's `u64` words viewed as `2n` `u32`s: the first `n`
//! slots hold the packed 32-bit residues while the transform runs. Packing and unpacking are
//! fused into the passes where the read-before-write order allows it (see each function).
//!
//! Every function here carries `#[target_feature(enable = "avx2")]`; the only entry points,
//! [`forward`] and [`inverse`], are called by `ntt.rs` after `is_x86_feature_detected!("avx2")`.
//! All memory access goes through [`load`] / [`store`] on `&[u32; 8]` references, so bounds
//! are enforced by the borrow checker and slice indexing, not by pointer arithmetic.

use std::arch::x86_64::*;

use super::Ntt32;

/// Loads eight lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn load(a: &[u32; 8]) -> __m256i {
    // SAFETY: `a` is a live reference to 32 readable bytes; `loadu` has no alignment
    // requirement; AVX2 is enabled on this function (callers are AVX2 functions).
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// Stores eight lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn store(a: &mut [u32; 8], v: __m256i) {
    // SAFETY: `a` is an exclusive reference to 32 writable bytes; `storeu` has no alignment
    // requirement; AVX2 is enabled on this function.
    unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), v) }
}

/// The eight slots starting at `i` (panics if out of range, which the loop bounds exclude).
#[inline(always)]
fn at(s: &[u32], i: usize) -> &[u32; 8] {
    s[i..i + 8].try_into().expect("eight slots")
}

#[inline(always)]
fn at_mut(s: &mut [u32], i: usize) -> &mut [u32; 8] {
    (&mut s[i..i + 8]).try_into().expect("eight slots")
}

#[inline(always)]
fn lanes(s: &mut [u32]) -> &mut [u32; 8] {
    s.try_into().expect("chunk of eight")
}

#[inline]
#[target_feature(enable = "avx2")]
fn splat(x: u32) -> __m256i {
    _mm256_set1_epi32(x as i32)
}

/// y·w mod q in [0, 2q) for any 32-bit lanes y. `ws` holds ⌊w·2^32/q⌋ for the even lanes
/// (low word of each 64-bit lane), `ws_odd` the same for the odd lanes, in even position.
#[inline]
#[target_feature(enable = "avx2")]
fn mul_lazy(y: __m256i, w: __m256i, ws: __m256i, ws_odd: __m256i, q: __m256i) -> __m256i {
    let even = _mm256_mul_epu32(y, ws);
    let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(y), ws_odd);
    let qhat = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd);
    _mm256_sub_epi32(_mm256_mullo_epi32(y, w), _mm256_mullo_epi32(qhat, q))
}

/// min(x, x − c) lane-wise: subtracts c from lanes ≥ c (values below 2^32, c < 2^31).
#[inline]
#[target_feature(enable = "avx2")]
fn csub(x: __m256i, c: __m256i) -> __m256i {
    _mm256_min_epu32(x, _mm256_sub_epi32(x, c))
}

/// Cooley–Tukey butterfly on inputs in [0, 4q): (x + w·y, x − w·y), outputs in [0, 4q).
#[inline]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn fwd_bfly(
    x: __m256i,
    y: __m256i,
    w: __m256i,
    ws: __m256i,
    ws_odd: __m256i,
    q: __m256i,
    two_q: __m256i,
) -> (__m256i, __m256i) {
    let xv = csub(x, two_q);
    let wy = mul_lazy(y, w, ws, ws_odd, q);
    (
        _mm256_add_epi32(xv, wy),
        _mm256_sub_epi32(_mm256_add_epi32(xv, two_q), wy),
    )
}

/// Gentleman–Sande butterfly on inputs in [0, 2q): (x + y, w·(x − y)), outputs in [0, 2q).
#[inline]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn inv_bfly(
    x: __m256i,
    y: __m256i,
    w: __m256i,
    ws: __m256i,
    ws_odd: __m256i,
    q: __m256i,
    two_q: __m256i,
) -> (__m256i, __m256i) {
    let s = csub(_mm256_add_epi32(x, y), two_q);
    let d = _mm256_sub_epi32(_mm256_add_epi32(x, two_q), y);
    (s, mul_lazy(d, w, ws, ws_odd, q))
}

/// Packs the `n` words of `b` (2n slots, values < 2^32) into slots `0..n`, in order.
/// Group i reads slots [2i, 2i+16) before writing [i, i+8), and every slot below 2i was read
/// by an earlier group, so nothing is overwritten before it is read.
#[inline]
#[target_feature(enable = "avx2")]
fn pack(b: &mut [u32], n: usize) {
    let idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for i in (0..n).step_by(8) {
        let lo = _mm256_permutevar8x32_epi32(load(at(b, 2 * i)), idx);
        let hi = _mm256_permutevar8x32_epi32(load(at(b, 2 * i + 8)), idx);
        store(at_mut(b, i), _mm256_permute2x128_si256::<0x20>(lo, hi));
    }
}

/// Widens slots `0..n` of `b` back into `n` words (zero high halves), last group first.
/// Group i reads [i, i+8) before writing [2i, 2i+16); the unread slots are below i+8 ≤ 2i for
/// i ≥ 8, and group 0 reads before it writes.
#[inline]
#[target_feature(enable = "avx2")]
fn unpack(b: &mut [u32], n: usize) {
    for i in (0..n).step_by(8).rev() {
        let v = load(at(b, i));
        store(
            at_mut(b, 2 * i),
            _mm256_cvtepu32_epi64(_mm256_castsi256_si128(v)),
        );
        store(
            at_mut(b, 2 * i + 8),
            _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(v)),
        );
    }
}

/// Forward negacyclic NTT of the `n = b.len() / 2` words held in `b` (values < q on input,
/// < q on output, bit-reversed order). Requires n ≥ 16, a power of two.
#[target_feature(enable = "avx2")]
pub(super) fn forward(t: &Ntt32, b: &mut [u32]) {
    let n = b.len() / 2;
    debug_assert!(n >= 16 && n.is_power_of_two());
    let q = splat(t.q);
    let two_q = splat(2 * t.q);
    pack(b, n);
    {
        let a = &mut b[..n];
        // Stages with half-block size ≥ 8: one twiddle per block, broadcast to all lanes.
        let mut half = n;
        let mut m = 1;
        while m < n / 8 {
            half >>= 1;
            let roots = &t.roots[m..2 * m];
            let shoup = &t.roots_shoup[m..2 * m];
            for ((block, &w), &ws) in a.chunks_exact_mut(2 * half).zip(roots).zip(shoup) {
                let (w, ws) = (splat(w), splat(ws));
                let (lo, hi) = block.split_at_mut(half);
                for (x, y) in lo.chunks_exact_mut(8).zip(hi.chunks_exact_mut(8)) {
                    let (x, y) = (lanes(x), lanes(y));
                    let (u, v) = fwd_bfly(load(x), load(y), w, ws, ws, q, two_q);
                    store(x, u);
                    store(y, v);
                }
            }
            m <<= 1;
        }
    }
    // Last three stages (half-block sizes 4, 2, 1) on groups of 16 slots, fused with the final
    // reduction to [0, q) and the widening to words. Groups run last to first: group g reads
    // slots [16g, 16g+16) and writes [32g, 32g+32); unread slots are below 16g+16 ≤ 32g for
    // g ≥ 1, and group 0 reads before it writes.
    let (m4, m2, m1) = (n / 8, n / 4, n / 2);
    let dup4 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let dup2 = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    for g in (0..n / 16).rev() {
        let a0 = load(at(b, 16 * g));
        let a1 = load(at(b, 16 * g + 8));
        // Half 4: x = [a0 lo, a1 lo], y = [a0 hi, a1 hi]; twiddles of blocks 2g, 2g+1.
        let x = _mm256_permute2x128_si256::<0x20>(a0, a1);
        let y = _mm256_permute2x128_si256::<0x31>(a0, a1);
        let w = _mm256_permutevar8x32_epi32(load(at(&t.roots, m4 + 2 * g)), dup4);
        let ws = _mm256_permutevar8x32_epi32(load(at(&t.roots_shoup, m4 + 2 * g)), dup4);
        let (x, y) = fwd_bfly(x, y, w, ws, ws, q, two_q);
        // Half 2: pairs of 64-bit lanes; twiddles of blocks 4g..4g+4, each twice.
        let (x, y) = (_mm256_unpacklo_epi64(x, y), _mm256_unpackhi_epi64(x, y));
        let w = _mm256_permutevar8x32_epi32(load(at(&t.roots, m2 + 4 * g)), dup2);
        let ws = _mm256_permutevar8x32_epi32(load(at(&t.roots_shoup, m2 + 4 * g)), dup2);
        let (x, y) = fwd_bfly(x, y, w, ws, ws, q, two_q);
        // Half 1: even / odd slots; twiddles of blocks 8g..8g+8 in natural order.
        let (x, y) = (
            _mm256_blend_epi32::<0b1010_1010>(x, _mm256_slli_epi64::<32>(y)),
            _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(x), y),
        );
        let w = load(at(&t.roots, m1 + 8 * g));
        let ws = load(at(&t.roots_shoup, m1 + 8 * g));
        let ws_odd = load(at(&t.roots_shoup, m1 + 8 * g + 1));
        let (x, y) = fwd_bfly(x, y, w, ws, ws_odd, q, two_q);
        let x = csub(csub(x, two_q), q);
        let y = csub(csub(y, two_q), q);
        // Back to natural order: lo = [a0 0..4, a1 0..4], hi = [a0 4..8, a1 4..8].
        let lo = _mm256_unpacklo_epi32(x, y);
        let hi = _mm256_unpackhi_epi32(x, y);
        let a0 = _mm256_permute2x128_si256::<0x20>(lo, hi);
        let a1 = _mm256_permute2x128_si256::<0x31>(lo, hi);
        let o = 32 * g;
        store(
            at_mut(b, o),
            _mm256_cvtepu32_epi64(_mm256_castsi256_si128(a0)),
        );
        store(
            at_mut(b, o + 8),
            _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(a0)),
        );
        store(
            at_mut(b, o + 16),
            _mm256_cvtepu32_epi64(_mm256_castsi256_si128(a1)),
        );
        store(
            at_mut(b, o + 24),
            _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(a1)),
        );
    }
}

/// Inverse negacyclic NTT (with the 1/n factor) of the `n = b.len() / 2` words held in `b`
/// (values < q in bit-reversed order on input, < q in natural order on output). Requires
/// n ≥ 16, a power of two.
#[target_feature(enable = "avx2")]
pub(super) fn inverse(t: &Ntt32, b: &mut [u32]) {
    let n = b.len() / 2;
    debug_assert!(n >= 16 && n.is_power_of_two());
    let q = splat(t.q);
    let two_q = splat(2 * t.q);
    // First three stages (half-block sizes 1, 2, 4) on groups of 16 slots, fused with the
    // packing of words into slots: group g reads slots [32g, 32g+32) and writes [16g, 16g+16);
    // every slot below 32g was read by an earlier group, and group 0 reads before it writes.
    let (m4, m2, m1) = (n / 8, n / 4, n / 2);
    let dup4 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let dup2 = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    let even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for g in 0..n / 16 {
        let i = 32 * g;
        // p_k's low half holds values 4k..4k+4 of the group (the words' low halves).
        let p0 = _mm256_permutevar8x32_epi32(load(at(b, i)), even);
        let p1 = _mm256_permutevar8x32_epi32(load(at(b, i + 8)), even);
        let p2 = _mm256_permutevar8x32_epi32(load(at(b, i + 16)), even);
        let p3 = _mm256_permutevar8x32_epi32(load(at(b, i + 24)), even);
        // lo = values [0..4, 8..12], hi = [4..8, 12..16]; then split into even / odd slots.
        let lo = _mm256_permute2x128_si256::<0x20>(p0, p2);
        let hi = _mm256_permute2x128_si256::<0x20>(p1, p3);
        let lo = _mm256_shuffle_epi32::<0b11_01_10_00>(lo);
        let hi = _mm256_shuffle_epi32::<0b11_01_10_00>(hi);
        let x = _mm256_unpacklo_epi64(lo, hi);
        let y = _mm256_unpackhi_epi64(lo, hi);
        // Half 1: twiddles of blocks 8g..8g+8 in natural order.
        let w = load(at(&t.inv_roots, m1 + 8 * g));
        let ws = load(at(&t.inv_roots_shoup, m1 + 8 * g));
        let ws_odd = load(at(&t.inv_roots_shoup, m1 + 8 * g + 1));
        let (x, y) = inv_bfly(x, y, w, ws, ws_odd, q, two_q);
        // Half 2: x = [a0 0,1,4,5, a1 0,1,4,5], y = [a0 2,3,6,7, a1 2,3,6,7].
        let (x, y) = (
            _mm256_blend_epi32::<0b1010_1010>(x, _mm256_slli_epi64::<32>(y)),
            _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(x), y),
        );
        let w = _mm256_permutevar8x32_epi32(load(at(&t.inv_roots, m2 + 4 * g)), dup2);
        let ws = _mm256_permutevar8x32_epi32(load(at(&t.inv_roots_shoup, m2 + 4 * g)), dup2);
        let (x, y) = inv_bfly(x, y, w, ws, ws, q, two_q);
        // Half 4: x = [a0 0..4, a1 0..4], y = [a0 4..8, a1 4..8].
        let (x, y) = (_mm256_unpacklo_epi64(x, y), _mm256_unpackhi_epi64(x, y));
        let w = _mm256_permutevar8x32_epi32(load(at(&t.inv_roots, m4 + 2 * g)), dup4);
        let ws = _mm256_permutevar8x32_epi32(load(at(&t.inv_roots_shoup, m4 + 2 * g)), dup4);
        let (x, y) = inv_bfly(x, y, w, ws, ws, q, two_q);
        store(at_mut(b, 16 * g), _mm256_permute2x128_si256::<0x20>(x, y));
        store(
            at_mut(b, 16 * g + 8),
            _mm256_permute2x128_si256::<0x31>(x, y),
        );
    }
    {
        let a = &mut b[..n];
        // Middle stages, half-block sizes 8 .. n/4: one broadcast twiddle per block.
        let mut half = 8;
        let mut m = n / 16;
        while m > 1 {
            let roots = &t.inv_roots[m..2 * m];
            let shoup = &t.inv_roots_shoup[m..2 * m];
            for ((block, &w), &ws) in a.chunks_exact_mut(2 * half).zip(roots).zip(shoup) {
                let (w, ws) = (splat(w), splat(ws));
                let (lo, hi) = block.split_at_mut(half);
                for (x, y) in lo.chunks_exact_mut(8).zip(hi.chunks_exact_mut(8)) {
                    let (x, y) = (lanes(x), lanes(y));
                    let (u, v) = inv_bfly(load(x), load(y), w, ws, ws, q, two_q);
                    store(x, u);
                    store(y, v);
                }
            }
            half <<= 1;
            m >>= 1;
        }
        // Last stage fused with the 1/n factor and the reduction to [0, q):
        // x ← (x + y)/n, y ← (x − y)·w/n.
        let (ni, nis) = (splat(t.inv_n), splat(t.inv_n_shoup));
        let (wn, wns) = (splat(t.inv_n_w), splat(t.inv_n_w_shoup));
        let (lo, hi) = a.split_at_mut(n / 2);
        for (x, y) in lo.chunks_exact_mut(8).zip(hi.chunks_exact_mut(8)) {
            let (x, y) = (lanes(x), lanes(y));
            let (xv, yv) = (load(x), load(y));
            let s = _mm256_add_epi32(xv, yv);
            let d = _mm256_sub_epi32(_mm256_add_epi32(xv, two_q), yv);
            store(x, csub(mul_lazy(s, ni, nis, nis, q), q));
            store(y, csub(mul_lazy(d, wn, wns, wns, q), q));
        }
    }
    unpack(b, n);
}
