//! AVX-512 kernels of the 32-bit NTT (moduli below 2^30): sixteen Harvey butterflies per
//! vector, the same integers as the AVX2 and portable paths.
//!
//! Shoup's quotient estimate ⌊y·w'/2^32⌋ comes from two `vpmuludq` (even and odd lanes, the
//! high words blended back together), the remainder y·w − q̂·q from two `vpmulld` (low words
//! only: the true remainder is below 2q < 2^32, so arithmetic mod 2^32 is exact).
//!
//! # Layout
//! As in the AVX2 kernels, the transform runs in place on the caller's n `u64` words viewed
//! as 2n `u32` slots, split into two regions of n slots (the words of coefficients < n/2 and
//! the rest); while it runs, region r keeps its n/2 residues packed in its first n/2 slots,
//! here in natural order (`vpermt2d` packs sixteen words into one vector). Stages with
//! half-block size ≥ 16 work on whole vectors; the four with sizes 8, 4, 2, 1 run fused per
//! group of 32 residues held in two vectors (x, y) whose lanes pair up lane by lane, shuffled
//! between stages as the comments in [`forward_groups`] show ([`lane_residues`] lists which
//! residue each lane holds, and the twiddle records follow it).
//!
//! Every function here carries `#[target_feature(enable = "avx512f")]`; the entry points are
//! called by `ntt.rs` only after `Level::isa` (run-time detection). All memory access
//! goes through [`load`] / [`store`] on `&[u32; 16]` references, so bounds are enforced by
//! slicing, not by pointer arithmetic.

use std::arch::x86_64::*;

use super::Ntt32;

/// Lanes of one vector.
const L: usize = 16;

/// Residues in one group of the fused stages (two vectors).
const GROUP: usize = 32;

/// Twiddle record per group: of the four fused stages, the three whose lanes pair up on one
/// root (half-block sizes 8, 4, 2) keep one value per lane pair, 8 twiddles then their 8
/// Shoup constants, widened in registers; the stage of size 1 (sixteen roots) keeps the 16
/// Shoup constants then the 16 twiddles. 320 bytes a group rather than 512 for all four
/// stored lane by lane: the records stream from L3 whenever a key switch's working set has
/// pushed them out of L2, and then their size is the cost (a forward transform with cold
/// tables measured 9.5 µs that way, 7.2-8.5 µs this way; hot, both 6.0 µs).
const REC: usize = 3 * (L / 2) * 2 + 2 * L;

/// Groups the fused passes advance together, stage by stage (their four stages form long
/// dependency chains; see [`forward_groups`]). Measured on the AVX-512 Xeon, forward and
/// inverse per transform: the old one-group-after-another order with two groups 7.1 µs;
/// stage-interleaved two groups 6.6 / 6.7 µs, four 6.5 / 6.35 µs, eight 6.9 µs (spills).
const INFLIGHT: usize = 4;

/// Which residue of its group (0..32) lane l of the x vector holds before the fused stage
/// with half-block size `half` (8, 4, 2, 1); the y vector holds that residue + `half`.
/// Forward runs the stages 8, 4, 2, 1 and inverse 1, 2, 4, 8 with the same layouts.
pub(super) fn lane_residues(half: usize) -> [usize; L] {
    let mut r = [0; L];
    for (l, v) in r.iter_mut().enumerate() {
        // 128-bit chunk c = l / 4 holds four residues from base b.
        let (c, i) = (l / 4, l % 4);
        *v = match half {
            8 => [0, 4, 16, 20][c] + i,
            4 => [0, 16, 8, 24][c] + i,
            2 => [0, 16, 8, 24][c] + [0, 1, 4, 5][i],
            _ => [0, 16, 8, 24][c] + [0, 2, 4, 6][i],
        };
    }
    r
}

/// Lane-ordered twiddles of the fused stages (both directions) and the index vectors of
/// the packing shuffles.
#[derive(Clone, Debug)]
pub(super) struct Tables {
    fwd: Vec<u32>,
    inv: Vec<u32>,
    /// Per output vector k of a group: `vpermt2d` indices taking residue 8k + j from (x, y)
    /// of the last stage into 32-bit slot 2j (odd slots are zeroed by the mask).
    widen: [[u32; L]; 4],
    /// The even-slot mask (0x5555) of the widening permutes, kept as data: given as a
    /// constant, LLVM turns each zero-masked `vpermt2d` into a `vpermt2d` plus a `vpandd`
    /// (one vector µop more per output vector, on the ports the butterflies need).
    widen_mask: u16,
    /// `vpermt2d` indices taking the residues of the first inverse stage's x (then y) from
    /// the group's 32 residues in natural order.
    gather: [[u32; L]; 2],
}

impl Tables {
    /// Builds the records from the bit-reversed root tables of `t` (n ≥ 64). Record g
    /// (residues 32g..32g+32, over all n) holds one block per fused stage in the order the
    /// pass runs them, where lane l of the stage with half-block size h takes root
    /// `n/(2h) + (32g + lane_residues(h)[l]) / (2h)` (forward roots or inverse roots): for
    /// h = 1 the Shoup constants of the 16 lanes, then their twiddles (a Shoup block read at
    /// offset +1 gives the odd lanes' constants in the even lanes; its last lane, a twiddle,
    /// is never used); for h = 2, 4, 8 the twiddles of the 8 lane pairs, then their Shoup
    /// constants ([`REC`]).
    pub(super) fn new(t: &Ntt32, n: usize) -> Self {
        // Stages in the order the pass runs them (forward 8, 4, 2, 1; inverse 1, 2, 4, 8).
        let build = |roots: &[u32], halves: [usize; 4]| {
            let mut v = Vec::with_capacity(REC * n / GROUP);
            for g in 0..n / GROUP {
                for h in halves {
                    let idx = lane_residues(h).map(|r| n / (2 * h) + (GROUP * g + r) / (2 * h));
                    if h == 1 {
                        v.extend(idx.iter().map(|&k| super::shoup32(roots[k], t.q)));
                        v.extend(idx.iter().map(|&k| roots[k]));
                    } else {
                        // Lanes 2j and 2j + 1 share a root (residues r and r + 1 with r even
                        // fall in the same block of 2h).
                        debug_assert!((0..L / 2).all(|j| idx[2 * j] == idx[2 * j + 1]));
                        v.extend((0..L / 2).map(|j| roots[idx[2 * j]]));
                        v.extend((0..L / 2).map(|j| super::shoup32(roots[idx[2 * j]], t.q)));
                    }
                }
            }
            v
        };
        let last = lane_residues(1);
        let pos = |r: usize| -> u32 {
            // Residue r of the group sits in x (index l) or y (index 16 + l) after the last
            // forward stage: x holds last[l], y holds last[l] + 1.
            let l = last
                .iter()
                .position(|&v| v == r & !1)
                .expect("every even residue");
            (l + (r & 1) * L) as u32
        };
        let mut widen = [[0u32; L]; 4];
        for (k, w) in widen.iter_mut().enumerate() {
            for j in 0..8 {
                w[2 * j] = pos(8 * k + j);
            }
        }
        let gather = [last.map(|r| r as u32), last.map(|r| r as u32 + 1)];
        Tables {
            fwd: build(&t.roots, [8, 4, 2, 1]),
            inv: build(&t.inv_roots, [1, 2, 4, 8]),
            widen,
            widen_mask: 0x5555,
            gather,
        }
    }
}

/// Loads sixteen lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn load(a: &[u32; L]) -> __m512i {
    // SAFETY: `a` is a live reference to 64 readable bytes; `loadu` has no alignment
    // requirement; AVX-512F is enabled on this function (callers are AVX-512F functions).
    unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
}

/// Stores sixteen lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn store(a: &mut [u32; L], v: __m512i) {
    // SAFETY: `a` is an exclusive reference to 64 writable bytes; `storeu` has no alignment
    // requirement; AVX-512F is enabled on this function.
    unsafe { _mm512_storeu_si512(a.as_mut_ptr().cast(), v) }
}

/// The sixteen slots starting at `i` (panics if out of range, which the loop bounds exclude).
#[inline(always)]
fn at(s: &[u32], i: usize) -> &[u32; L] {
    s[i..i + L].try_into().expect("sixteen slots")
}

#[inline(always)]
fn at_mut(s: &mut [u32], i: usize) -> &mut [u32; L] {
    (&mut s[i..i + L]).try_into().expect("sixteen slots")
}

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(x: u32) -> __m512i {
    _mm512_set1_epi32(x as i32)
}

/// y·w mod q in [0, 2q) for any 32-bit lanes y. `ws` holds ⌊w·2^32/q⌋ for the even lanes
/// (low word of each 64-bit lane), `ws_odd` the same for the odd lanes, in even position
/// (the same vector when every lane has the same w; the key product's lifts use it so).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn mul_lazy(
    y: __m512i,
    w: __m512i,
    ws: __m512i,
    ws_odd: __m512i,
    q: __m512i,
) -> __m512i {
    // The multiplies all issue on one port; the data movement around them uses shuffles
    // (another port) rather than 64-bit shifts (the multipliers' port), which measured faster.
    // Odd lanes' y in even position (the high word is ignored by vpmuludq).
    let y_odd = _mm512_shuffle_epi32::<0xF5>(y);
    let even = _mm512_mul_epu32(y, ws);
    let odd = _mm512_mul_epu32(y_odd, ws_odd);
    // q̂ lane 2i = high word of even product i, lane 2i+1 = high word of odd product i.
    let high = _mm512_set_epi32(31, 15, 29, 13, 27, 11, 25, 9, 23, 7, 21, 5, 19, 3, 17, 1);
    let qhat = _mm512_permutex2var_epi32(even, high, odd);
    _mm512_sub_epi32(_mm512_mullo_epi32(y, w), _mm512_mullo_epi32(qhat, q))
}

/// min(x, x − c) lane-wise: subtracts c from lanes ≥ c (values below 2^32, c < 2^31).
#[inline]
#[target_feature(enable = "avx512f")]
fn csub(x: __m512i, c: __m512i) -> __m512i {
    _mm512_min_epu32(x, _mm512_sub_epi32(x, c))
}

/// Twiddle w with its Shoup constants for even and odd lanes.
#[derive(Clone, Copy)]
struct Tw {
    w: __m512i,
    ws: __m512i,
    ws_odd: __m512i,
}

/// Stage `J` (in the pass's order) of a twiddle record (see [`REC`] and [`Tables::new`]): the
/// forward pass reads its size-1 stage last, the inverse first.
#[inline]
#[target_feature(enable = "avx512f")]
fn tw_rec<const J: usize, const FORWARD: bool>(r: &[u32; REC]) -> Tw {
    let full = if FORWARD { J == 3 } else { J == 0 };
    if full {
        let at_block = if FORWARD { 3 * L } else { 0 };
        return Tw {
            ws: load(at(r, at_block)),
            ws_odd: load(at(r, at_block + 1)),
            w: load(at(r, at_block + L)),
        };
    }
    // Eight twiddles and their Shoup constants, one per lane pair: the twiddles doubled into
    // both lanes of each pair (vpermd), the constants zero-extended into the even lanes, the
    // only ones vpmuludq reads (for the odd lanes too, whose constants are the same).
    let at_block = if FORWARD { L * J } else { 2 * L + L * (J - 1) };
    let half = |i: usize| -> __m256i {
        let a: &[u32; L / 2] = r[i..i + L / 2].try_into().expect("eight words");
        // SAFETY: `a` is a live reference to 32 readable bytes; no alignment needed.
        unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
    };
    let pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let ws = _mm512_cvtepu32_epi64(half(at_block + L / 2));
    Tw {
        w: _mm512_permutexvar_epi32(pairs, _mm512_castsi256_si512(half(at_block))),
        ws,
        ws_odd: ws,
    }
}

/// The same twiddle in every lane.
#[inline]
#[target_feature(enable = "avx512f")]
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
#[target_feature(enable = "avx512f")]
fn fwd_bfly_raw(x: __m512i, y: __m512i, tw: Tw, q: __m512i, two_q: __m512i) -> (__m512i, __m512i) {
    let wy = mul_lazy(y, tw.w, tw.ws, tw.ws_odd, q);
    (
        _mm512_add_epi32(x, wy),
        _mm512_sub_epi32(_mm512_add_epi32(x, two_q), wy),
    )
}

/// Cooley–Tukey butterfly on inputs in [0, 4q), outputs in [0, 4q).
#[inline]
#[target_feature(enable = "avx512f")]
fn fwd_bfly(x: __m512i, y: __m512i, tw: Tw, q: __m512i, two_q: __m512i) -> (__m512i, __m512i) {
    fwd_bfly_raw(csub(x, two_q), y, tw, q, two_q)
}

/// Gentleman–Sande butterfly on inputs in [0, 2q): (x + y, w·(x − y)), outputs in [0, 2q).
#[inline]
#[target_feature(enable = "avx512f")]
fn inv_bfly(x: __m512i, y: __m512i, tw: Tw, q: __m512i, two_q: __m512i) -> (__m512i, __m512i) {
    let s = csub(_mm512_add_epi32(x, y), two_q);
    let d = _mm512_sub_epi32(_mm512_add_epi32(x, two_q), y);
    (s, mul_lazy(d, tw.w, tw.ws, tw.ws_odd, q))
}

/// Sixteen words (values < 2^32) at `s[i..i + 32]` packed into one vector in order.
#[inline]
#[target_feature(enable = "avx512f")]
fn pack16(s: &[u32], i: usize) -> __m512i {
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    _mm512_permutex2var_epi32(load(at(s, i)), even, load(at(s, i + L)))
}

/// Stores sixteen residues as words at `out[0..32]` (inverse of [`pack16`]).
#[inline]
#[target_feature(enable = "avx512f")]
fn unpack16(out: &mut [u32], v: __m512i) {
    store(
        at_mut(out, 0),
        _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v)),
    );
    store(
        at_mut(out, L),
        _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(v)),
    );
}

/// One stage with half-block size `half` ≥ 16 over `a` (blocks of 2·half, one twiddle and
/// its Shoup constant each, from `roots`): Cooley–Tukey butterflies when FORWARD, whose x
/// input first goes through `csub` with each constant of `corr` in turn (none when the
/// stage's inputs leave room for the outputs' growth by 2q; see [`forward_middle`]), else
/// Gentleman–Sande butterflies (`corr` unused).
#[inline]
#[target_feature(enable = "avx512f")]
fn middle_stage<const FORWARD: bool, const C: usize>(
    a: &mut [u32],
    half: usize,
    (roots, shoup): (&[u32], &[u32]),
    corr: [__m512i; C],
    q: __m512i,
    two_q: __m512i,
) {
    for ((block, &w), &ws) in a.chunks_exact_mut(2 * half).zip(roots).zip(shoup) {
        let tw = tw_splat(w, ws);
        let (lo, hi) = block.split_at_mut(half);
        for (x, y) in lo.chunks_exact_mut(L).zip(hi.chunks_exact_mut(L)) {
            let (x, y): (&mut [u32; L], &mut [u32; L]) =
                (x.try_into().expect("lanes"), y.try_into().expect("lanes"));
            let (u, v) = if FORWARD {
                let mut xv = load(x);
                for c in corr {
                    xv = csub(xv, c);
                }
                fwd_bfly_raw(xv, load(y), tw, q, two_q)
            } else {
                inv_bfly(load(x), load(y), tw, q, two_q)
            };
            store(x, u);
            store(y, v);
        }
    }
}

/// Forward stages with half-block sizes n/4 .. 16 on one region's packed residues `a`
/// (n/2 slots, values below 4q on entry; below 4q on exit, as the fused stages require);
/// `region` 0 or 1 selects the blocks' twiddles.
///
/// Harvey's butterfly needs its x input below 2q only to keep its outputs below 4q: any x
/// below B·q gives outputs below (B + 2)·q, and Shoup's product takes any 32-bit y. So a
/// stage corrects x only when the next growth could pass 2^32 (for q < 2^28, one stage in
/// seven) and on the last stage, by as many halvings (`csub` with 2^j·q) as bring x below
/// 2q: two vector operations fewer per butterfly on the stages that skip it.
#[inline]
#[target_feature(enable = "avx512f")]
fn forward_middle(t: &Ntt32, a: &mut [u32], region: usize, q: __m512i, two_q: __m512i) {
    let n = 2 * a.len();
    let qv = u64::from(t.q);
    let mut half = n / 4;
    let mut m = 2;
    // Every value below bound·q.
    let mut bound = 4u64;
    while half >= L {
        let first = m + region * (m / 2);
        let tw = (
            &t.roots[first..first + m / 2],
            &t.roots_shoup[first..first + m / 2],
        );
        // The bound stays at most 16 so the halvings' constants (≤ 8q < 2^32) fit a lane.
        if half > L && bound + 2 <= 16 && (bound + 2) * qv < 1 << 32 {
            middle_stage::<true, 0>(a, half, tw, [], q, two_q);
            bound += 2;
        } else {
            // Halvings from 2^j·q with 2^(j+1) the power of two at or above the bound, down
            // to 2q (one when the bound is 4, as every stage did before).
            let c = |j: u32| splat(t.q << j);
            match bound.next_power_of_two().trailing_zeros() {
                0..=2 => middle_stage::<true, 1>(a, half, tw, [c(1)], q, two_q),
                3 => middle_stage::<true, 2>(a, half, tw, [c(2), c(1)], q, two_q),
                _ => middle_stage::<true, 3>(a, half, tw, [c(3), c(2), c(1)], q, two_q),
            }
            bound = 4;
        }
        half >>= 1;
        m <<= 1;
    }
}

/// Stage J of the fused passes on every group: Cooley–Tukey (FORWARD) or Gentleman–Sande
/// butterflies of `x[k]`, `y[k]` with block J of record k.
#[inline]
#[target_feature(enable = "avx512f")]
fn fused_stage<const G: usize, const J: usize, const FORWARD: bool>(
    (x, y): (&mut [__m512i; G], &mut [__m512i; G]),
    recs: &[&[u32; REC]; G],
    q: __m512i,
    two_q: __m512i,
) {
    for k in 0..G {
        let tw = tw_rec::<J, FORWARD>(recs[k]);
        (x[k], y[k]) = if FORWARD {
            fwd_bfly(x[k], y[k], tw, q, two_q)
        } else {
            inv_bfly(x[k], y[k], tw, q, two_q)
        };
    }
    stage_barrier(x, y);
}

/// A scheduling barrier between two fused stages of four groups: an empty `asm!` that takes
/// and gives back all eight vectors, so every group's stage is computed before any group's
/// next one. Left to itself LLVM emits each group's four dependent stages in a row; the
/// core then holds one long chain in its scheduler where it could hold four short ones.
/// No instruction is emitted. Other group counts pass through.
#[inline]
#[target_feature(enable = "avx512f")]
fn stage_barrier<const G: usize>(x: &mut [__m512i; G], y: &mut [__m512i; G]) {
    if let ([x0, x1, x2, x3], [y0, y1, y2, y3]) = (x.as_mut_slice(), y.as_mut_slice()) {
        // SAFETY: the template is empty (a comment): it reads no memory, writes no memory and
        // leaves every register as it found it, so it only orders the code around it.
        unsafe {
            std::arch::asm!(
                "/* {0} {1} {2} {3} {4} {5} {6} {7} */",
                inout(zmm_reg) * x0,
                inout(zmm_reg) * x1,
                inout(zmm_reg) * x2,
                inout(zmm_reg) * x3,
                inout(zmm_reg) * y0,
                inout(zmm_reg) * y1,
                inout(zmm_reg) * y2,
                inout(zmm_reg) * y3,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
    }
}

/// Per group, x ← the even 64-bit lanes of x and y interleaved, y ← the odd ones.
#[inline]
#[target_feature(enable = "avx512f")]
fn unpack_qwords<const G: usize>(x: &mut [__m512i; G], y: &mut [__m512i; G]) {
    for k in 0..G {
        (x[k], y[k]) = (
            _mm512_unpacklo_epi64(x[k], y[k]),
            _mm512_unpackhi_epi64(x[k], y[k]),
        );
    }
}

/// Per group, the odd 32-bit lanes of x trade places with the even lanes of y.
#[inline]
#[target_feature(enable = "avx512f")]
fn swap_odd_dwords<const G: usize>(x: &mut [__m512i; G], y: &mut [__m512i; G]) {
    for k in 0..G {
        (x[k], y[k]) = (
            _mm512_mask_blend_epi32(0xAAAA, x[k], _mm512_shuffle_epi32::<0xA0>(y[k])),
            _mm512_mask_blend_epi32(0xAAAA, _mm512_shuffle_epi32::<0xF5>(x[k]), y[k]),
        );
    }
}

/// Forward half-block sizes 8, 4, 2, 1 on G groups of 32 residues each, group k given as
/// `inp[k]` = (residues 0..16, 16..32) in order with its twiddle record `recs[k]`, reduced to
/// [0, q) (below 4q when LAZY) and returned as four vectors of eight words per group.
///
/// The groups are written stage by stage together: one group's four stages form a chain of
/// dependent multiplies and shuffles (about 25 cycles a stage). The compiler still schedules
/// most of each group's chain in sequence, but all G groups' loads come first and the batch
/// measured faster than one group after another (see [`INFLIGHT`]).
#[inline]
#[target_feature(enable = "avx512f")]
fn forward_groups<const G: usize, const LAZY: bool>(
    inp: [(__m512i, __m512i); G],
    recs: [&[u32; REC]; G],
    tables: &Tables,
    q: __m512i,
    two_q: __m512i,
) -> [[__m512i; 4]; G] {
    let zero = _mm512_setzero_si512();
    let (mut x, mut y) = ([zero; G], [zero; G]);
    // 128-bit chunks: x = [a0-3, a4-7, b0-3, b4-7] (residues 0-7, 16-23), y = +8.
    for k in 0..G {
        let (a, b) = inp[k];
        x[k] = _mm512_shuffle_i64x2::<0x44>(a, b);
        y[k] = _mm512_shuffle_i64x2::<0xEE>(a, b);
    }
    fused_stage::<G, 0, true>((&mut x, &mut y), &recs, q, two_q);
    // x = [x.c0, x.c2, y.c0, y.c2] (residues 0-3, 16-19, 8-11, 24-27), y = +4.
    for k in 0..G {
        (x[k], y[k]) = (
            _mm512_shuffle_i64x2::<0x88>(x[k], y[k]),
            _mm512_shuffle_i64x2::<0xDD>(x[k], y[k]),
        );
    }
    fused_stage::<G, 1, true>((&mut x, &mut y), &recs, q, two_q);
    // Per chunk from base b: x = [b, b+1, b+4, b+5], y = +2.
    unpack_qwords(&mut x, &mut y);
    fused_stage::<G, 2, true>((&mut x, &mut y), &recs, q, two_q);
    // Per chunk: x = [b, b+2, b+4, b+6], y = +1.
    swap_odd_dwords(&mut x, &mut y);
    fused_stage::<G, 3, true>((&mut x, &mut y), &recs, q, two_q);
    let mut out = [[zero; 4]; G];
    for k in 0..G {
        // Outputs below 4q; LAZY leaves them there, else they are reduced to [0, q).
        let (xk, yk) = if LAZY {
            (x[k], y[k])
        } else {
            (csub(csub(x[k], two_q), q), csub(csub(y[k], two_q), q))
        };
        for (o, idx) in out[k].iter_mut().zip(&tables.widen) {
            *o = _mm512_maskz_permutex2var_epi32(tables.widen_mask, xk, load(idx), yk);
        }
    }
    out
}

/// Twiddle record k of `chunk`.
#[inline(always)]
fn rec_at(chunk: &[u32], k: usize) -> &[u32; REC] {
    chunk[k * REC..(k + 1) * REC].try_into().expect("record")
}

/// Stores the four word vectors of group g at slots [64g, 64g+64).
#[inline]
#[target_feature(enable = "avx512f")]
fn store_words(r: &mut [u32], g: usize, out: [__m512i; 4]) {
    for (k, v) in out.into_iter().enumerate() {
        store(at_mut(r, 2 * GROUP * g + L * k), v);
    }
}

/// Forward half-block sizes 8, 4, 2, 1 on one region (`r`: n slots, packed residues in the
/// first n/2), fused with the final reduction to [0, q) and the widening back to words.
/// `recs` are the region's twiddle records. Groups run last to first, [`INFLIGHT`] (G) at a
/// time: groups g..g+G read slots [32g, 32g+32G) and then write [64g, 64g+64G); the slots
/// not yet read are below 32g ≤ 64g, and each batch reads before it writes.
#[inline]
#[target_feature(enable = "avx512f")]
fn forward_last<const LAZY: bool>(
    r: &mut [u32],
    recs: &[u32],
    tables: &Tables,
    q: __m512i,
    two_q: __m512i,
) {
    let group = |r: &[u32], g: usize| (load(at(r, GROUP * g)), load(at(r, GROUP * g + L)));
    if !recs.len().is_multiple_of(INFLIGHT * REC) {
        // Few groups (small n): one at a time.
        for (g, chunk) in recs.chunks_exact(REC).enumerate().rev() {
            let [out] =
                forward_groups::<1, LAZY>([group(r, g)], [rec_at(chunk, 0)], tables, q, two_q);
            store_words(r, g, out);
        }
        return;
    }
    for (p, chunk) in recs.chunks_exact(INFLIGHT * REC).enumerate().rev() {
        let g0 = INFLIGHT * p;
        // Loops rather than `array::from_fn`: a closure that calls SIMD helpers may be left
        // out of line, returning its vectors through memory.
        let zero = _mm512_setzero_si512();
        let mut inp = [(zero, zero); INFLIGHT];
        for (k, v) in inp.iter_mut().enumerate() {
            *v = group(r, g0 + k);
        }
        let recs: [&[u32; REC]; INFLIGHT] = std::array::from_fn(|k| rec_at(chunk, k));
        let out = forward_groups::<INFLIGHT, LAZY>(inp, recs, tables, q, two_q);
        for (k, o) in out.into_iter().enumerate().rev() {
            store_words(r, g0 + k, o);
        }
    }
}

/// Forward negacyclic NTT of the `n = b.len() / 2` words held in `b` (values < q on input,
/// < q on output, bit-reversed order). Requires n ≥ 64, a power of two, and `tables` built
/// for `t` and n.
#[target_feature(enable = "avx512f")]
pub(super) fn forward(t: &Ntt32, tables: &Tables, b: &mut [u32]) {
    forward_impl::<false>(t, tables, Source::InPlace, b)
}

/// Where a forward transform's first stage reads: the words already in the buffer, the
/// words of another buffer (2n slots) plus an offset, or another buffer's n residues held
/// as plain 32-bit values in natural order (narrow) plus an offset.
#[derive(Clone, Copy)]
enum Source<'a> {
    InPlace,
    Words(&'a [u32], u32),
    Narrow(&'a [u32], u32),
}

/// [`forward_from`] reading n residues stored as 32-bit values (`src`, n slots) instead of
/// words: no packing in the first stage; outputs reduced.
#[target_feature(enable = "avx512f")]
pub(super) fn forward_from_narrow(
    t: &Ntt32,
    tables: &Tables,
    src: &[u32],
    add: u32,
    b: &mut [u32],
) {
    forward_impl::<false>(t, tables, Source::Narrow(src, add), b)
}

/// [`forward_from_lazy`] reading n residues stored as 32-bit values (`src`, n slots) instead
/// of words: no packing in the first stage.
#[target_feature(enable = "avx512f")]
pub(super) fn forward_from_narrow_lazy(
    t: &Ntt32,
    tables: &Tables,
    src: &[u32],
    add: u32,
    b: &mut [u32],
) {
    forward_impl::<true>(t, tables, Source::Narrow(src, add), b)
}

/// [`forward`] of the words `src + add` (each below 4q, in `src`'s 2n slots) into `b`: the
/// first stage reads `src` and adds, so no separate reduction pass runs over the input.
#[target_feature(enable = "avx512f")]
pub(super) fn forward_from(t: &Ntt32, tables: &Tables, src: &[u32], add: u32, b: &mut [u32]) {
    forward_impl::<false>(t, tables, Source::Words(src, add), b)
}

/// [`forward_from`] with outputs left below 4q (congruent, not reduced): for rows that only
/// feed products reduced afterwards, the last reduction (four vector operations per sixteen
/// words) is skipped.
#[target_feature(enable = "avx512f")]
pub(super) fn forward_from_lazy(t: &Ntt32, tables: &Tables, src: &[u32], add: u32, b: &mut [u32]) {
    forward_impl::<true>(t, tables, Source::Words(src, add), b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn forward_impl<const LAZY: bool>(t: &Ntt32, tables: &Tables, src: Source, b: &mut [u32]) {
    let n = b.len() / 2;
    debug_assert!(n >= 2 * GROUP && n.is_power_of_two());
    debug_assert_eq!(tables.fwd.len(), REC * n / GROUP);
    let q = splat(t.q);
    let two_q = splat(2 * t.q);
    let (lo, hi) = b.split_at_mut(n);
    let tw = tw_splat(t.roots[1], t.roots_shoup[1]);
    match src {
        // First stage (pairs i, i + n/2), reading words and packing: step i reads slots
        // [2i, 2i+32) of each region and writes [i, i+16); the slots below 2i were read
        // earlier and the write follows the step's own reads.
        Source::InPlace => {
            for i in (0..n / 2).step_by(L) {
                let (x, y) = (pack16(lo, 2 * i), pack16(hi, 2 * i));
                // Inputs are below q, so x needs no correction.
                let (u, v) = fwd_bfly_raw(x, y, tw, q, two_q);
                store(at_mut(lo, i), u);
                store(at_mut(hi, i), v);
            }
        }
        // The same from a separate source, each value plus `add` (below 4q: x is corrected
        // by the butterfly, y may be any 32-bit value).
        Source::Words(src, add) => {
            let (slo, shi) = src.split_at(n);
            let add = splat(add);
            for i in (0..n / 2).step_by(L) {
                let x = _mm512_add_epi32(pack16(slo, 2 * i), add);
                let y = _mm512_add_epi32(pack16(shi, 2 * i), add);
                let (u, v) = fwd_bfly(x, y, tw, q, two_q);
                store(at_mut(lo, i), u);
                store(at_mut(hi, i), v);
            }
        }
        // The same from n plain residues: coefficient i at slot i.
        Source::Narrow(src, add) => {
            let (slo, shi) = src[..n].split_at(n / 2);
            let add = splat(add);
            for i in (0..n / 2).step_by(L) {
                let x = _mm512_add_epi32(load(at(slo, i)), add);
                let y = _mm512_add_epi32(load(at(shi, i)), add);
                let (u, v) = fwd_bfly(x, y, tw, q, two_q);
                store(at_mut(lo, i), u);
                store(at_mut(hi, i), v);
            }
        }
    }
    let recs = tables.fwd.split_at(REC * n / (2 * GROUP));
    for (region, (r, recs)) in [(lo, recs.0), (hi, recs.1)].into_iter().enumerate() {
        forward_middle(t, &mut r[..n / 2], region, q, two_q);
        forward_last::<LAZY>(r, recs, tables, q, two_q);
    }
}

/// Inverse half-block sizes 1, 2, 4, 8 on G groups of 32 residues, group k given by its
/// words `w[k]` (four vectors of eight) with its twiddle record `recs[k]`, returning per group
/// residues 0..16 and 16..32 in order. The groups advance stage by stage together, as in
/// [`forward_groups`].
#[inline]
#[target_feature(enable = "avx512f")]
fn inverse_groups<const G: usize>(
    w: [[__m512i; 4]; G],
    recs: [&[u32; REC]; G],
    tables: &Tables,
    q: __m512i,
    two_q: __m512i,
) -> [(__m512i, __m512i); G] {
    let zero = _mm512_setzero_si512();
    let (mut x, mut y) = ([zero; G], [zero; G]);
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let (g0, g1) = (load(&tables.gather[0]), load(&tables.gather[1]));
    for k in 0..G {
        let a = _mm512_permutex2var_epi32(w[k][0], even, w[k][1]);
        let b = _mm512_permutex2var_epi32(w[k][2], even, w[k][3]);
        // Per chunk from base b: x = [b, b+2, b+4, b+6], y = +1 (the forward's last layout).
        x[k] = _mm512_permutex2var_epi32(a, g0, b);
        y[k] = _mm512_permutex2var_epi32(a, g1, b);
    }
    fused_stage::<G, 0, false>((&mut x, &mut y), &recs, q, two_q);
    // x = [b, b+1, b+4, b+5], y = +2.
    swap_odd_dwords(&mut x, &mut y);
    fused_stage::<G, 1, false>((&mut x, &mut y), &recs, q, two_q);
    // x = [b, b+1, b+2, b+3] with bases 0, 16, 8, 24; y = +4.
    unpack_qwords(&mut x, &mut y);
    fused_stage::<G, 2, false>((&mut x, &mut y), &recs, q, two_q);
    // x = [x.c0, y.c0, x.c1, y.c1] (residues 0-7, 16-23), y = [x.c2, y.c2, x.c3, y.c3].
    let lo = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    let hi = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    for k in 0..G {
        (x[k], y[k]) = (
            _mm512_permutex2var_epi64(x[k], lo, y[k]),
            _mm512_permutex2var_epi64(x[k], hi, y[k]),
        );
    }
    fused_stage::<G, 3, false>((&mut x, &mut y), &recs, q, two_q);
    // a = [x.c0, x.c1, y.c0, y.c1] (residues 0-15), b = the rest.
    std::array::from_fn(|k| {
        (
            _mm512_shuffle_i64x2::<0x44>(x[k], y[k]),
            _mm512_shuffle_i64x2::<0xEE>(x[k], y[k]),
        )
    })
}

/// The four word vectors of group g (slots [64g, 64g+64)).
#[inline]
#[target_feature(enable = "avx512f")]
fn load_words(r: &[u32], g: usize) -> [__m512i; 4] {
    let i = 2 * GROUP * g;
    [
        load(at(r, i)),
        load(at(r, i + L)),
        load(at(r, i + 2 * L)),
        load(at(r, i + 3 * L)),
    ]
}

/// Inverse half-block sizes 1, 2, 4, 8 on one region (`r`: n slots holding n/2 words),
/// fused with the packing of words into slots, [`INFLIGHT`] (G) groups at a time. Groups
/// g..g+G read slots [64g, 64g+64G) and then write [32g, 32g+32G); every slot below 64g was
/// read by an earlier batch, and each batch reads before it writes.
#[inline]
#[target_feature(enable = "avx512f")]
fn inverse_first(
    r: &mut [u32],
    src: Option<&[u32]>,
    recs: &[u32],
    tables: &Tables,
    q: __m512i,
    two_q: __m512i,
) {
    // Words come from `src` when given (the same region of another buffer), else from `r`.
    let words = |r: &[u32], g: usize| match src {
        Some(s) => load_words(s, g),
        None => load_words(r, g),
    };
    let put = |r: &mut [u32], g: usize, (a, b): (__m512i, __m512i)| {
        store(at_mut(r, GROUP * g), a);
        store(at_mut(r, GROUP * g + L), b);
    };
    if !recs.len().is_multiple_of(INFLIGHT * REC) {
        for (g, chunk) in recs.chunks_exact(REC).enumerate() {
            let [out] = inverse_groups([words(r, g)], [rec_at(chunk, 0)], tables, q, two_q);
            put(r, g, out);
        }
        return;
    }
    for (p, chunk) in recs.chunks_exact(INFLIGHT * REC).enumerate() {
        let g0 = INFLIGHT * p;
        // Loops rather than `array::from_fn` (see [`forward_last`]).
        let zero = _mm512_setzero_si512();
        let mut inp = [[zero; 4]; INFLIGHT];
        for (k, w) in inp.iter_mut().enumerate() {
            *w = words(r, g0 + k);
        }
        let recs: [&[u32; REC]; INFLIGHT] = std::array::from_fn(|k| rec_at(chunk, k));
        let out = inverse_groups(inp, recs, tables, q, two_q);
        for (k, o) in out.into_iter().enumerate() {
            put(r, g0 + k, o);
        }
    }
}

/// Inverse stages with half-block sizes 16 .. n/4 on one region's packed residues `a`.
#[inline]
#[target_feature(enable = "avx512f")]
fn inverse_middle(t: &Ntt32, a: &mut [u32], region: usize, q: __m512i, two_q: __m512i) {
    let n = 2 * a.len();
    let mut half = L;
    let mut m = n / (2 * L);
    while m > 1 {
        let first = m + region * (m / 2);
        let tw = (
            &t.inv_roots[first..first + m / 2],
            &t.inv_roots_shoup[first..first + m / 2],
        );
        middle_stage::<false, 0>(a, half, tw, [], q, two_q);
        half <<= 1;
        m >>= 1;
    }
}

/// Inverse negacyclic NTT (with the 1/n factor) of the `n = b.len() / 2` words held in `b`
/// (values < q in bit-reversed order on input, < q in natural order on output). Requires
/// n ≥ 64, a power of two, and `tables` built for `t` and n.
#[target_feature(enable = "avx512f")]
pub(super) fn inverse(t: &Ntt32, tables: &Tables, b: &mut [u32]) {
    inverse_impl::<false>(t, tables, None, 0, b)
}

/// [`inverse_from`] writing the n outputs as plain 32-bit values in natural order into `out`
/// (n slots) instead of words: the transform runs in `out` (regions of n/2 slots) and its
/// last pass stores the residues as they are, without widening them.
#[target_feature(enable = "avx512f")]
pub(super) fn inverse_from_narrow(t: &Ntt32, tables: &Tables, src: &[u32], out: &mut [u32]) {
    inverse_from_narrow_impl::<false>(t, tables, src, 0, out)
}

/// [`inverse_from_narrow`] followed by (x + `add`) mod q on every output (`add` < q).
#[target_feature(enable = "avx512f")]
pub(super) fn inverse_from_narrow_add(
    t: &Ntt32,
    tables: &Tables,
    src: &[u32],
    add: u32,
    out: &mut [u32],
) {
    inverse_from_narrow_impl::<true>(t, tables, src, add, out)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn inverse_from_narrow_impl<const ADD: bool>(
    t: &Ntt32,
    tables: &Tables,
    src: &[u32],
    add: u32,
    out: &mut [u32],
) {
    let n = src.len() / 2;
    let q = splat(t.q);
    let two_q = splat(2 * t.q);
    let (lo, hi) = out[..n].split_at_mut(n / 2);
    let recs = tables.inv.split_at(REC * n / (2 * GROUP));
    let (slo, shi) = src.split_at(n);
    for (region, ((r, recs), s)) in [(&mut *lo, recs.0), (&mut *hi, recs.1)]
        .into_iter()
        .zip([slo, shi])
        .enumerate()
    {
        inverse_first(r, Some(s), recs, tables, q, two_q);
        inverse_middle(t, r, region, q, two_q);
    }
    let addv = splat(add);
    let ni = tw_splat(t.inv_n, t.inv_n_shoup);
    let wn = tw_splat(t.inv_n_w, t.inv_n_w_shoup);
    for i in (0..n / 2).step_by(L) {
        let (s, d) = last_pair::<ADD>((load(at(lo, i)), load(at(hi, i))), (ni, wn), addv, q);
        store(at_mut(lo, i), s);
        store(at_mut(hi, i), d);
    }
}

/// The inverse transform's last butterflies on (x, y) (pairs i, i + n/2) with the 1/n factor
/// folded into the twiddles `(ni, wn)` = (1/n, w/n): ((x + y)/n, (x − y)·w/n) reduced to
/// [0, q), each plus `addv` mod q when ADD.
#[inline]
#[target_feature(enable = "avx512f")]
fn last_pair<const ADD: bool>(
    (x, y): (__m512i, __m512i),
    (ni, wn): (Tw, Tw),
    addv: __m512i,
    q: __m512i,
) -> (__m512i, __m512i) {
    let two_q = _mm512_add_epi32(q, q);
    let s = _mm512_add_epi32(x, y);
    let d = _mm512_sub_epi32(_mm512_add_epi32(x, two_q), y);
    let mut s = csub(mul_lazy(s, ni.w, ni.ws, ni.ws_odd, q), q);
    let mut d = csub(mul_lazy(d, wn.w, wn.ws, wn.ws_odd, q), q);
    if ADD {
        s = csub(_mm512_add_epi32(s, addv), q);
        d = csub(_mm512_add_epi32(d, addv), q);
    }
    (s, d)
}

/// [`inverse`] followed by (x + `add`) mod q on every output (`add` < q), in its last pass.
#[target_feature(enable = "avx512f")]
pub(super) fn inverse_add(t: &Ntt32, tables: &Tables, add: u32, b: &mut [u32]) {
    inverse_impl::<true>(t, tables, None, add, b)
}

/// [`inverse`] of the words in `src` (values < q, its 2n slots) into `b`: the first pass
/// reads `src`, so no copy of the input is made first.
#[target_feature(enable = "avx512f")]
pub(super) fn inverse_from(t: &Ntt32, tables: &Tables, src: &[u32], b: &mut [u32]) {
    inverse_impl::<false>(t, tables, Some(src), 0, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn inverse_impl<const ADD: bool>(
    t: &Ntt32,
    tables: &Tables,
    src: Option<&[u32]>,
    add: u32,
    b: &mut [u32],
) {
    let n = b.len() / 2;
    debug_assert!(n >= 2 * GROUP && n.is_power_of_two());
    debug_assert_eq!(tables.inv.len(), REC * n / GROUP);
    let q = splat(t.q);
    let two_q = splat(2 * t.q);
    let (lo, hi) = b.split_at_mut(n);
    let recs = tables.inv.split_at(REC * n / (2 * GROUP));
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
        inverse_first(r, src, recs, tables, q, two_q);
        inverse_middle(t, &mut r[..n / 2], region, q, two_q);
    }
    // Last stage (pairs i, i + n/2) fused with the 1/n factor, the reduction to [0, q) and
    // the widening to words: x ← (x + y)/n, y ← (x − y)·w/n. Steps run last to first: step i
    // reads slots [i, i+16) of each region and writes [2i, 2i+32); the slots not yet read
    // are below i ≤ 2i, and step 0 reads before it writes.
    let addv = splat(add);
    let ni = tw_splat(t.inv_n, t.inv_n_shoup);
    let wn = tw_splat(t.inv_n_w, t.inv_n_w_shoup);
    for i in (0..n / 2).step_by(L).rev() {
        let (s, d) = last_pair::<ADD>((load(at(lo, i)), load(at(hi, i))), (ni, wn), addv, q);
        unpack16(&mut lo[2 * i..2 * i + 2 * L], s);
        unpack16(&mut hi[2 * i..2 * i + 2 * L], d);
    }
}

#[cfg(test)]
mod tests {
    use super::lane_residues;

    /// The lane layouts pair each residue exactly once per stage: x and y together hold all
    /// 32 residues of the group, y = x + half, and x only residues whose bit `half` is clear.
    #[test]
    fn lane_layouts_cover_the_group() {
        for half in [8usize, 4, 2, 1] {
            let x = lane_residues(half);
            let mut seen = [false; 32];
            for &r in &x {
                assert_eq!(r & half, 0, "half {half}");
                for v in [r, r + half] {
                    assert!(!seen[v], "half {half} residue {v} twice");
                    seen[v] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "half {half}");
        }
    }
}
