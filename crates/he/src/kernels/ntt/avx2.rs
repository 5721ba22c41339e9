//! AVX2 kernels of the 32-bit NTT (moduli below 2^30): eight Harvey butterflies per vector.
//!
//! Shoup's quotient estimate ⌊y·w'/2^32⌋ comes from two `vpmuludq` (even and odd lanes, the
//! high words blended back together), the remainder y·w − q̂·q from two `vpmulld` (low words
//! only: the true remainder is below 2q < 2^32, so arithmetic mod 2^32 is exact).
//!
//! # Layout
//! The kernels run in place on the caller's n `u64` words viewed as 2n `u32` slots, split into
//! two regions of n slots: the words of the lower half of the coefficients (indices < n/2)
//! and those of the upper half. While the transform runs, region r keeps its n/2 residues
//! packed in its first n/2 slots, and inside each aligned group of 8 residues the slots hold
//! offsets [0, 4, 1, 5, 2, 6, 3, 7] (that is what OR-ing a vector of four words with the next
//! four shifted up by 32 bits gives, and what masking / shifting undoes). Every stage except
//! the one pairing the two halves works within one region, and the layout permutes only
//! inside groups of 8 that those stages move as a whole, so the stages with half-block size
//! ≥ 8 do not see it; the three stages with half-block sizes 4, 2, 1 run fused per group of 16
//! residues and undo it with their shuffles.
//!
//! Packing words to slots happens in the forward's first stage (and the inverse's first
//! pass), widening back in the forward's last pass (and the inverse's last stage); each
//! reads a range before anything overwrites it (see the comments at each loop).
//!
//! Every function here carries `#[target_feature(enable = "avx2")]`; the entry points
//! [`forward`] and [`inverse`] are called by `ntt.rs` only after
//! `Level::isa` (run-time detection). All memory access goes through [`load`] / [`store`] on
//! `&[u32; 8]` references, so bounds are enforced by slicing, not by pointer arithmetic.

use std::arch::x86_64::*;

use super::Ntt32;

/// Per-group twiddle records for the three fused stages, `REC` lanes per group of 16
/// residues (see [`Tables::new`] for the layout).
const REC: usize = 48;

/// Groups the fused passes advance together, stage by stage: their three dependent stages
/// form long latency chains, so independent groups interleaved in program order keep the
/// vector units busy. Measured (AVX2 kernels on the AVX-512 Xeon, forward / inverse): one
/// group after another, two at a time, 8.6 / 8.1 µs; stage-interleaved two 8.7 / 8.7, four
/// 7.8 / 7.6, eight 8.8 / 8.7 (spills: AVX2 has sixteen vector registers).
const INFLIGHT: usize = 4;

/// Lane-ordered twiddles for the fused passes of both directions.
#[derive(Clone, Debug)]
pub(super) struct Tables {
    fwd: Vec<u32>,
    inv: Vec<u32>,
}

impl Tables {
    /// Builds the records from the bit-reversed root tables of `t` (n ≥ 32).
    ///
    /// The record of group g (residues 16g..16g+16) holds three blocks, one per fused stage in
    /// the order the pass runs them, each as 8 Shoup constants then the 8 twiddles, lane by
    /// lane as the stage's vectors need them. With k4 = n/8 + 2g, k2 = n/4 + 4g, k1 = n/2 + 8g
    /// (the stage's first block index), the lanes take roots
    /// forward: `k4 + [0,1,0,1,0,1,0,1]`, `k2 + [0,2,0,2,1,3,1,3]`, `k1 + [0,4,1,5,2,6,3,7]`;
    /// inverse: `k1 + [0,4,2,6,1,5,3,7]`, `k2 + [0,2,1,3,0,2,1,3]`, `k4 + [0,1,0,1,0,1,0,1]`.
    /// Reading a Shoup block at offset +1 gives the odd lanes' constants in the even lanes
    /// (its last lane, the block's first twiddle, is never used).
    pub(super) fn new(t: &Ntt32, n: usize) -> Self {
        const T4: [usize; 8] = [0, 1, 0, 1, 0, 1, 0, 1];
        let build = |roots: &[u32], stages: [(usize, [usize; 8]); 3]| {
            let mut v = Vec::with_capacity(REC * n / 16);
            for g in 0..n / 16 {
                for (div, lanes) in stages {
                    // First block index of the stage with n/div blocks, for this group.
                    let k = n / div + 16 * g / div;
                    v.extend(lanes.iter().map(|&i| super::shoup32(roots[k + i], t.q)));
                    v.extend(lanes.iter().map(|&i| roots[k + i]));
                }
            }
            v
        };
        Tables {
            fwd: build(
                &t.roots,
                [
                    (8, T4),
                    (4, [0, 2, 0, 2, 1, 3, 1, 3]),
                    (2, [0, 4, 1, 5, 2, 6, 3, 7]),
                ],
            ),
            inv: build(
                &t.inv_roots,
                [
                    (2, [0, 4, 2, 6, 1, 5, 3, 7]),
                    (4, [0, 2, 1, 3, 0, 2, 1, 3]),
                    (8, T4),
                ],
            ),
        }
    }
}

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

/// Twiddle w with its Shoup constants for even and odd lanes.
#[derive(Clone, Copy)]
struct Tw {
    w: __m256i,
    ws: __m256i,
    ws_odd: __m256i,
}

/// Block `J` of a twiddle record (see [`Tables::new`]).
#[inline]
#[target_feature(enable = "avx2")]
fn tw_rec<const J: usize>(r: &[u32; REC]) -> Tw {
    let eight = |i: usize| -> &[u32; 8] { r[i..i + 8].try_into().expect("in record") };
    Tw {
        ws: load(eight(16 * J)),
        ws_odd: load(eight(16 * J + 1)),
        w: load(eight(16 * J + 8)),
    }
}

/// The same twiddle in every lane.
#[inline]
#[target_feature(enable = "avx2")]
fn tw_splat(w: u32, ws: u32) -> Tw {
    let ws = splat(ws);
    Tw {
        w: splat(w),
        ws,
        ws_odd: ws,
    }
}

/// Cooley–Tukey butterfly without the input correction, for x < 2q: (x + w·y, x − w·y).
#[inline]
#[target_feature(enable = "avx2")]
fn fwd_bfly_raw(x: __m256i, y: __m256i, tw: Tw, q: __m256i, two_q: __m256i) -> (__m256i, __m256i) {
    let wy = mul_lazy(y, tw.w, tw.ws, tw.ws_odd, q);
    (
        _mm256_add_epi32(x, wy),
        _mm256_sub_epi32(_mm256_add_epi32(x, two_q), wy),
    )
}

/// Cooley–Tukey butterfly on inputs in [0, 4q), outputs in [0, 4q).
#[inline]
#[target_feature(enable = "avx2")]
fn fwd_bfly(x: __m256i, y: __m256i, tw: Tw, q: __m256i, two_q: __m256i) -> (__m256i, __m256i) {
    fwd_bfly_raw(csub(x, two_q), y, tw, q, two_q)
}

/// Gentleman–Sande butterfly on inputs in [0, 2q): (x + y, w·(x − y)), outputs in [0, 2q).
#[inline]
#[target_feature(enable = "avx2")]
fn inv_bfly(x: __m256i, y: __m256i, tw: Tw, q: __m256i, two_q: __m256i) -> (__m256i, __m256i) {
    let s = csub(_mm256_add_epi32(x, y), two_q);
    let d = _mm256_sub_epi32(_mm256_add_epi32(x, two_q), y);
    (s, mul_lazy(d, tw.w, tw.ws, tw.ws_odd, q))
}

/// Packs eight words (two vectors of four, values < 2^32) into one vector in group layout.
#[inline]
#[target_feature(enable = "avx2")]
fn pack8(lo: __m256i, hi: __m256i) -> __m256i {
    _mm256_or_si256(lo, _mm256_slli_epi64::<32>(hi))
}

/// Stores a group-layout vector as eight words at `out[0..16]` (inverse of [`pack8`]).
#[inline]
#[target_feature(enable = "avx2")]
fn unpack8(out: &mut [u32], v: __m256i) {
    let mask = _mm256_set1_epi64x(0xffff_ffff);
    store(at_mut(out, 0), _mm256_and_si256(v, mask));
    store(at_mut(out, 8), _mm256_srli_epi64::<32>(v));
}

/// Forward stages with half-block sizes n/4 .. 8 on one region's packed residues `a`
/// (n/2 slots); `region` 0 or 1 selects the blocks' twiddles.
#[inline]
#[target_feature(enable = "avx2")]
fn forward_middle(t: &Ntt32, a: &mut [u32], region: usize, q: __m256i, two_q: __m256i) {
    let n = 2 * a.len();
    let mut half = n / 4;
    let mut m = 2;
    while half >= 8 {
        let first = m + region * (m / 2);
        let roots = &t.roots[first..first + m / 2];
        let shoup = &t.roots_shoup[first..first + m / 2];
        for ((block, &w), &ws) in a.chunks_exact_mut(2 * half).zip(roots).zip(shoup) {
            let tw = tw_splat(w, ws);
            let (lo, hi) = block.split_at_mut(half);
            for (x, y) in lo.chunks_exact_mut(8).zip(hi.chunks_exact_mut(8)) {
                let (x, y) = (lanes(x), lanes(y));
                let (u, v) = fwd_bfly(load(x), load(y), tw, q, two_q);
                store(x, u);
                store(y, v);
            }
        }
        half >>= 1;
        m <<= 1;
    }
}

/// Stage J of the fused passes on every group: Cooley–Tukey (FORWARD) or Gentleman–Sande
/// butterflies of `x[k]`, `y[k]` with block J of record k.
#[inline]
#[target_feature(enable = "avx2")]
fn fused_stage<const G: usize, const J: usize, const FORWARD: bool>(
    (x, y): (&mut [__m256i; G], &mut [__m256i; G]),
    recs: &[&[u32; REC]; G],
    q: __m256i,
    two_q: __m256i,
) {
    for k in 0..G {
        let tw = tw_rec::<J>(recs[k]);
        (x[k], y[k]) = if FORWARD {
            fwd_bfly(x[k], y[k], tw, q, two_q)
        } else {
            inv_bfly(x[k], y[k], tw, q, two_q)
        };
    }
}

/// Per group, x ← the low 128-bit halves of x and y, y ← the high ones.
#[inline]
#[target_feature(enable = "avx2")]
fn split_halves<const G: usize>(x: &mut [__m256i; G], y: &mut [__m256i; G]) {
    for k in 0..G {
        (x[k], y[k]) = (
            _mm256_permute2x128_si256::<0x20>(x[k], y[k]),
            _mm256_permute2x128_si256::<0x31>(x[k], y[k]),
        );
    }
}

/// Per group, x ← the even 64-bit lanes of x and y interleaved, y ← the odd ones.
#[inline]
#[target_feature(enable = "avx2")]
fn unpack_qwords<const G: usize>(x: &mut [__m256i; G], y: &mut [__m256i; G]) {
    for k in 0..G {
        (x[k], y[k]) = (
            _mm256_unpacklo_epi64(x[k], y[k]),
            _mm256_unpackhi_epi64(x[k], y[k]),
        );
    }
}

/// Forward half-block sizes 4, 2, 1 on G groups of 16 residues, group k given as
/// `inp[k]` = (residues 0..8, 8..16) in group layout with its twiddle record `recs[k]`,
/// reduced to [0, q) and returned as four vectors of four words per group. The groups
/// advance stage by stage together (independent dependency chains interleaved in program
/// order; see the AVX-512 `forward_groups`).
#[inline]
#[target_feature(enable = "avx2")]
fn forward_groups<const G: usize>(
    inp: [(__m256i, __m256i); G],
    recs: [&[u32; REC]; G],
    q: __m256i,
    two_q: __m256i,
) -> [[__m256i; 4]; G] {
    let zero = _mm256_setzero_si256();
    let (mut x, mut y) = ([zero; G], [zero; G]);
    // Half 4: x = [a0,b0,a1,b1,a2,b2,a3,b3], y = [a4,b4,...,a7,b7].
    for k in 0..G {
        let (a, b) = inp[k];
        x[k] = _mm256_blend_epi32::<0b1010_1010>(a, _mm256_slli_epi64::<32>(b));
        y[k] = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(a), b);
    }
    fused_stage::<G, 0, true>((&mut x, &mut y), &recs, q, two_q);
    // Half 2: x = [a0,b0,a1,b1 | a4,b4,a5,b5], y = [a2,b2,a3,b3 | a6,b6,a7,b7].
    split_halves(&mut x, &mut y);
    fused_stage::<G, 1, true>((&mut x, &mut y), &recs, q, two_q);
    // Half 1: x = [a0,b0,a2,b2 | a4,b4,a6,b6], y = [a1,b1,a3,b3 | a5,b5,a7,b7].
    unpack_qwords(&mut x, &mut y);
    fused_stage::<G, 2, true>((&mut x, &mut y), &recs, q, two_q);
    let mask = _mm256_set1_epi64x(0xffff_ffff);
    std::array::from_fn(|k| {
        let x = csub(csub(x[k], two_q), q);
        let y = csub(csub(y[k], two_q), q);
        // Widen: 64-bit lanes of x hold (a0,b0) (a2,b2) | (a4,b4) (a6,b6), of y the odd ones.
        let (xa, xb) = (_mm256_and_si256(x, mask), _mm256_srli_epi64::<32>(x));
        let (ya, yb) = (_mm256_and_si256(y, mask), _mm256_srli_epi64::<32>(y));
        // (a0,a1 | a4,a5) and (a2,a3 | a6,a7), then whole 128-bit halves.
        let (la, ha) = (_mm256_unpacklo_epi64(xa, ya), _mm256_unpackhi_epi64(xa, ya));
        let (lb, hb) = (_mm256_unpacklo_epi64(xb, yb), _mm256_unpackhi_epi64(xb, yb));
        [
            _mm256_permute2x128_si256::<0x20>(la, ha),
            _mm256_permute2x128_si256::<0x31>(la, ha),
            _mm256_permute2x128_si256::<0x20>(lb, hb),
            _mm256_permute2x128_si256::<0x31>(lb, hb),
        ]
    })
}

/// Twiddle record k of `chunk`.
#[inline(always)]
fn rec_at(chunk: &[u32], k: usize) -> &[u32; REC] {
    chunk[k * REC..(k + 1) * REC].try_into().expect("record")
}

/// Stores the four word vectors of group g at slots [32g, 32g+32).
#[inline]
#[target_feature(enable = "avx2")]
fn store_words(r: &mut [u32], g: usize, out: [__m256i; 4]) {
    for (k, v) in out.into_iter().enumerate() {
        store(at_mut(r, 32 * g + 8 * k), v);
    }
}

/// Forward half-block sizes 4, 2, 1 on one region (`r`: n slots, packed residues in the
/// first n/2), fused with the final reduction to [0, q) and the widening back to words.
/// `recs` are the region's twiddle records. Groups run last to first, [`INFLIGHT`] (G) at a
/// time: groups g..g+G read slots [16g, 16g+16G) and then write [32g, 32g+32G); the slots
/// not yet read are below 16g ≤ 32g, and each batch reads before it writes.
#[inline]
#[target_feature(enable = "avx2")]
fn forward_last(r: &mut [u32], recs: &[u32], q: __m256i, two_q: __m256i) {
    let group = |r: &[u32], g: usize| (load(at(r, 16 * g)), load(at(r, 16 * g + 8)));
    if !recs.len().is_multiple_of(INFLIGHT * REC) {
        // Few groups (small n): one at a time.
        for (g, chunk) in recs.chunks_exact(REC).enumerate().rev() {
            let [out] = forward_groups([group(r, g)], [rec_at(chunk, 0)], q, two_q);
            store_words(r, g, out);
        }
        return;
    }
    for (p, chunk) in recs.chunks_exact(INFLIGHT * REC).enumerate().rev() {
        let g0 = INFLIGHT * p;
        // Loops rather than `array::from_fn`: a closure that calls SIMD helpers may be left
        // out of line, returning its vectors through memory.
        let zero = _mm256_setzero_si256();
        let mut inp = [(zero, zero); INFLIGHT];
        for (k, v) in inp.iter_mut().enumerate() {
            *v = group(r, g0 + k);
        }
        let recs: [&[u32; REC]; INFLIGHT] = std::array::from_fn(|k| rec_at(chunk, k));
        let out = forward_groups(inp, recs, q, two_q);
        for (k, o) in out.into_iter().enumerate().rev() {
            store_words(r, g0 + k, o);
        }
    }
}

/// Forward negacyclic NTT of the `n = b.len() / 2` words held in `b` (values < q on input,
/// < q on output, bit-reversed order). Requires n ≥ 32, a power of two, and
/// `tables` built for `t` and n.
#[target_feature(enable = "avx2")]
pub(super) fn forward(t: &Ntt32, tables: &Tables, b: &mut [u32]) {
    forward_impl(t, tables, None, b)
}

/// [`forward`] of the words `src + add` (each below 4q, in `src`'s 2n slots) into `b`: the
/// first stage reads `src` and adds, so no separate reduction pass runs over the input.
#[target_feature(enable = "avx2")]
pub(super) fn forward_from(t: &Ntt32, tables: &Tables, src: &[u32], add: u32, b: &mut [u32]) {
    forward_impl(t, tables, Some((src, add)), b)
}

#[inline]
#[target_feature(enable = "avx2")]
fn forward_impl(t: &Ntt32, tables: &Tables, src: Option<(&[u32], u32)>, b: &mut [u32]) {
    let n = b.len() / 2;
    debug_assert!(n >= 32 && n.is_power_of_two());
    debug_assert_eq!(tables.fwd.len(), REC * n / 16);
    let q = splat(t.q);
    let two_q = splat(2 * t.q);
    let (lo, hi) = b.split_at_mut(n);
    let tw = tw_splat(t.roots[1], t.roots_shoup[1]);
    match src {
        // First stage (pairs i, i + n/2), reading words and packing: step i reads slots
        // [2i, 2i+16) of each region and writes [i, i+8); the slots below 2i were read
        // earlier and the write follows the step's own reads.
        None => {
            for i in (0..n / 2).step_by(8) {
                let x = pack8(load(at(lo, 2 * i)), load(at(lo, 2 * i + 8)));
                let y = pack8(load(at(hi, 2 * i)), load(at(hi, 2 * i + 8)));
                // Inputs are below q, so x needs no correction.
                let (u, v) = fwd_bfly_raw(x, y, tw, q, two_q);
                store(at_mut(lo, i), u);
                store(at_mut(hi, i), v);
            }
        }
        // The same from a separate source, each value plus `add` (below 4q: x is corrected
        // by the butterfly, y may be any 32-bit value).
        Some((src, add)) => {
            let (slo, shi) = src.split_at(n);
            let add = splat(add);
            for i in (0..n / 2).step_by(8) {
                let x = pack8(load(at(slo, 2 * i)), load(at(slo, 2 * i + 8)));
                let y = pack8(load(at(shi, 2 * i)), load(at(shi, 2 * i + 8)));
                let (x, y) = (_mm256_add_epi32(x, add), _mm256_add_epi32(y, add));
                let (u, v) = fwd_bfly(x, y, tw, q, two_q);
                store(at_mut(lo, i), u);
                store(at_mut(hi, i), v);
            }
        }
    }
    let recs = tables.fwd.split_at(REC * n / 32);
    for (region, (r, recs)) in [(lo, recs.0), (hi, recs.1)].into_iter().enumerate() {
        forward_middle(t, &mut r[..n / 2], region, q, two_q);
        forward_last(r, recs, q, two_q);
    }
}

/// Inverse half-block sizes 1, 2, 4 on G groups of 16 residues, group k given by its words
/// `w[k]` (four vectors of four) with its twiddle record `recs[k]`, returning per group
/// residues 0..8 and 8..16 in group layout; the groups advance stage by stage together.
#[inline]
#[target_feature(enable = "avx2")]
fn inverse_groups<const G: usize>(
    w: [[__m256i; 4]; G],
    recs: [&[u32; REC]; G],
    q: __m256i,
    two_q: __m256i,
) -> [(__m256i, __m256i); G] {
    let zero = _mm256_setzero_si256();
    let (mut x, mut y) = ([zero; G], [zero; G]);
    for k in 0..G {
        // p = [a0,b0,a1,b1 | a2,b2,a3,b3], s = [a4,b4,a5,b5 | a6,b6,a7,b7] (a: residues 0..8
        // of the group, b: 8..16).
        let p = pack8(w[k][0], w[k][2]);
        let s = pack8(w[k][1], w[k][3]);
        // Half 1: x = [a0,b0,a4,b4 | a2,b2,a6,b6], y = [a1,b1,a5,b5 | a3,b3,a7,b7].
        (x[k], y[k]) = (_mm256_unpacklo_epi64(p, s), _mm256_unpackhi_epi64(p, s));
    }
    fused_stage::<G, 0, false>((&mut x, &mut y), &recs, q, two_q);
    // Half 2: x = [a0,b0,a4,b4 | a1,b1,a5,b5], y = [a2,b2,a6,b6 | a3,b3,a7,b7].
    split_halves(&mut x, &mut y);
    fused_stage::<G, 1, false>((&mut x, &mut y), &recs, q, two_q);
    // Half 4: x = [a0,b0,a2,b2 | a1,b1,a3,b3], y = [a4,b4,a6,b6 | a5,b5,a7,b7].
    unpack_qwords(&mut x, &mut y);
    fused_stage::<G, 2, false>((&mut x, &mut y), &recs, q, two_q);
    // Back to group layout: l = [a0,a4,b0,b4 | a1,a5,b1,b5], h = [a2,a6,b2,b6 | a3,a7,b3,b7];
    // a = 64-bit lanes l0, l2, h0, h2 and b = l1, l3, h1, h3.
    std::array::from_fn(|k| {
        let l = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_unpacklo_epi32(x[k], y[k]));
        let h = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_unpackhi_epi32(x[k], y[k]));
        (
            _mm256_permute2x128_si256::<0x20>(l, h),
            _mm256_permute2x128_si256::<0x31>(l, h),
        )
    })
}

/// The four word vectors of group g (slots [32g, 32g+32)).
#[inline]
#[target_feature(enable = "avx2")]
fn load_words(r: &[u32], g: usize) -> [__m256i; 4] {
    let i = 32 * g;
    [
        load(at(r, i)),
        load(at(r, i + 8)),
        load(at(r, i + 16)),
        load(at(r, i + 24)),
    ]
}

/// Inverse half-block sizes 1, 2, 4 on one region (`r`: n slots holding n/2 words), fused
/// with the packing of words into slots, [`INFLIGHT`] (G) groups at a time (see
/// [`forward_last`]). Groups g..g+G read slots [32g, 32g+32G) and then write [16g, 16g+16G);
/// every slot below 32g was read by an earlier batch, and each batch reads before it writes.
#[inline]
#[target_feature(enable = "avx2")]
fn inverse_first(r: &mut [u32], src: Option<&[u32]>, recs: &[u32], q: __m256i, two_q: __m256i) {
    // Words come from `src` when given (the same region of another buffer), else from `r`.
    let words = |r: &[u32], g: usize| match src {
        Some(s) => load_words(s, g),
        None => load_words(r, g),
    };
    let put = |r: &mut [u32], g: usize, (a, b): (__m256i, __m256i)| {
        store(at_mut(r, 16 * g), a);
        store(at_mut(r, 16 * g + 8), b);
    };
    if !recs.len().is_multiple_of(INFLIGHT * REC) {
        for (g, chunk) in recs.chunks_exact(REC).enumerate() {
            let [out] = inverse_groups([words(r, g)], [rec_at(chunk, 0)], q, two_q);
            put(r, g, out);
        }
        return;
    }
    for (p, chunk) in recs.chunks_exact(INFLIGHT * REC).enumerate() {
        let g0 = INFLIGHT * p;
        // Loops rather than `array::from_fn` (see [`forward_last`]).
        let zero = _mm256_setzero_si256();
        let mut inp = [[zero; 4]; INFLIGHT];
        for (k, w) in inp.iter_mut().enumerate() {
            *w = words(r, g0 + k);
        }
        let recs: [&[u32; REC]; INFLIGHT] = std::array::from_fn(|k| rec_at(chunk, k));
        let out = inverse_groups(inp, recs, q, two_q);
        for (k, o) in out.into_iter().enumerate() {
            put(r, g0 + k, o);
        }
    }
}

/// Inverse stages with half-block sizes 8 .. n/4 on one region's packed residues `a`.
#[inline]
#[target_feature(enable = "avx2")]
fn inverse_middle(t: &Ntt32, a: &mut [u32], region: usize, q: __m256i, two_q: __m256i) {
    let n = 2 * a.len();
    let mut half = 8;
    let mut m = n / 16;
    while m > 1 {
        let first = m + region * (m / 2);
        let roots = &t.inv_roots[first..first + m / 2];
        let shoup = &t.inv_roots_shoup[first..first + m / 2];
        for ((block, &w), &ws) in a.chunks_exact_mut(2 * half).zip(roots).zip(shoup) {
            let tw = tw_splat(w, ws);
            let (lo, hi) = block.split_at_mut(half);
            for (x, y) in lo.chunks_exact_mut(8).zip(hi.chunks_exact_mut(8)) {
                let (x, y) = (lanes(x), lanes(y));
                let (u, v) = inv_bfly(load(x), load(y), tw, q, two_q);
                store(x, u);
                store(y, v);
            }
        }
        half <<= 1;
        m >>= 1;
    }
}

/// Inverse negacyclic NTT (with the 1/n factor) of the `n = b.len() / 2` words held in `b`
/// (values < q in bit-reversed order on input, < q in natural order on output). Requires
/// n ≥ 32, a power of two, and `tables` built for `t` and n.
#[target_feature(enable = "avx2")]
pub(super) fn inverse(t: &Ntt32, tables: &Tables, b: &mut [u32]) {
    inverse_impl(t, tables, None, b)
}

/// [`inverse`] of the words in `src` (values < q, its 2n slots) into `b`: the first pass
/// reads `src`, so no copy of the input is made first.
#[target_feature(enable = "avx2")]
pub(super) fn inverse_from(t: &Ntt32, tables: &Tables, src: &[u32], b: &mut [u32]) {
    inverse_impl(t, tables, Some(src), b)
}

#[inline]
#[target_feature(enable = "avx2")]
fn inverse_impl(t: &Ntt32, tables: &Tables, src: Option<&[u32]>, b: &mut [u32]) {
    let n = b.len() / 2;
    debug_assert!(n >= 32 && n.is_power_of_two());
    debug_assert_eq!(tables.inv.len(), REC * n / 16);
    let q = splat(t.q);
    let two_q = splat(2 * t.q);
    let (lo, hi) = b.split_at_mut(n);
    let recs = tables.inv.split_at(REC * n / 32);
    let srcs = match src {
        Some(s) => {
            let (a, b) = s.split_at(n);
            [Some(a), Some(b)]
        }
        None => [None, None],
    };
    for (region, ((r, recs), src)) in [(&mut *lo, recs.0), (&mut *hi, recs.1)]
        .into_iter()
        .zip(srcs)
        .enumerate()
    {
        inverse_first(r, src, recs, q, two_q);
        inverse_middle(t, &mut r[..n / 2], region, q, two_q);
    }
    // Last stage (pairs i, i + n/2) fused with the 1/n factor, the reduction to [0, q) and
    // the widening to words: x ← (x + y)/n, y ← (x − y)·w/n. Steps run last to first: step i
    // reads slots [i, i+8) of each region and writes [2i, 2i+16); the slots not yet read are
    // below i ≤ 2i, and step 0 reads before it writes.
    let ni = tw_splat(t.inv_n, t.inv_n_shoup);
    let wn = tw_splat(t.inv_n_w, t.inv_n_w_shoup);
    for i in (0..n / 2).step_by(8).rev() {
        let (x, y) = (load(at(lo, i)), load(at(hi, i)));
        let s = _mm256_add_epi32(x, y);
        let d = _mm256_sub_epi32(_mm256_add_epi32(x, two_q), y);
        let s = csub(mul_lazy(s, ni.w, ni.ws, ni.ws_odd, q), q);
        let d = csub(mul_lazy(d, wn.w, wn.ws, wn.ws_odd, q), q);
        unpack8(&mut lo[2 * i..2 * i + 16], s);
        unpack8(&mut hi[2 * i..2 * i + 16], d);
    }
}
