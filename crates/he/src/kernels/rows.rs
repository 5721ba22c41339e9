//! The row loops of exact tensoring in 32-bit lanes (moduli below 2^30): Garner digits, the
//! sign test of a centered lift, Horner rows, the lazy product sums and their reduction.
//! Plain Rust bodies written for auto-vectorization; each public entry compiles them per
//! [`crate::simd::Level`] through [`crate::simd_dispatch`].

use crate::arith::{barrett32, barrett32_mu, mul_shoup32_lazy};

/// `out[i] = x[i] mod q` for any u64 x and q < 2^30, in 32-bit lanes: x = h·2^32 + l ↦
/// (h mod q)·(2^32 mod q) + l mod q (Barrett and Shoup on u32); AVX2 when present.
pub fn reduce_u64_rows32(q: u32, out: &mut [u64], x: &[u64]) {
    debug_assert!(q < 1 << 30);
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    if crate::kernels::keyprod::reduce_u64_rows_avx512(q, out, x).is_some() {
        return;
    }
    #[inline(always)]
    fn barrett(x: u32, q: u32, mu: u32) -> u32 {
        let qhat = ((x as u64 * mu as u64) >> 32) as u32;
        let r = x.wrapping_sub(qhat.wrapping_mul(q));
        r.min(r.wrapping_sub(q))
    }
    #[inline(always)]
    fn body(q: u32, out: &mut [u64], x: &[u64]) {
        let mu = ((1u64 << 32) / q as u64) as u32;
        let c = ((1u64 << 32) % q as u64) as u32;
        let cs = (((c as u64) << 32) / q as u64) as u32;
        for (o, &v) in out.iter_mut().zip(x) {
            let h = barrett((v >> 32) as u32, q, mu);
            let qhat = ((h as u64 * cs as u64) >> 32) as u32;
            let t = h.wrapping_mul(c).wrapping_sub(qhat.wrapping_mul(q));
            let t = t.min(t.wrapping_sub(q)) + barrett(v as u32, q, mu);
            *o = t.min(t.wrapping_sub(q)) as u64;
        }
    }
    crate::simd_dispatch!(body, (q: u32, out: &mut [u64], x: &[u64]))
}

/// Garner (mixed-radix) digits of n values given by their residue rows `coeff` (u64 words below
/// each modulus), in 32-bit lanes: digit row j of `digits` is v_j with
/// x = v_0 + p_0·(v_1 + p_1·(…)). `inv[j][i]` = (p_i⁻¹ mod p_j, Shoup factor).
#[inline(always)]
pub(crate) fn garner_digits32(
    moduli: &[u32],
    inv: &[Vec<(u32, u32)>],
    coeff: &[u64],
    n: usize,
    digits: &mut [u32],
) {
    for (j, &q) in moduli.iter().enumerate() {
        let mu = barrett32_mu(q);
        let (done, rest) = digits.split_at_mut(j * n);
        let dj = &mut rest[..n];
        for (d, &x) in dj.iter_mut().zip(&coeff[j * n..(j + 1) * n]) {
            *d = x as u32;
        }
        for (i, &(w, ws)) in inv[j].iter().enumerate() {
            let di = &done[i * n..(i + 1) * n];
            for (v, &x) in dj.iter_mut().zip(di) {
                let t = *v + q - barrett32(x, q, mu);
                let r = mul_shoup32_lazy(t, w, ws, q);
                *v = r.min(r.wrapping_sub(q));
            }
        }
    }
}

/// 1 where the value whose digit rows are `digits` exceeds the one with digits `half` (compared
/// from the top digit), else 0: the negative half of a centered representation.
#[inline(always)]
pub(crate) fn above_half32(digits: &[u32], half: &[u32], n: usize) -> Vec<u32> {
    // Sixteen coefficients at a time with both flags in locals, so the compares stay in
    // vector registers (flags kept in two arrays updated row by row compiled to scalar
    // read-modify-write loops: two fifths of the whole scale-down).
    const B: usize = 16;
    let mut gt = vec![0u32; n];
    let body = n - n % B;
    let flags = |c: usize, width: usize, gt: &mut [u32]| {
        let mut g = [0u32; B];
        let mut e = [u32::MAX; B];
        for j in (0..half.len()).rev() {
            let h = half[j];
            let row = &digits[j * n + c..j * n + c + width];
            for ((g, e), &d) in g.iter_mut().zip(e.iter_mut()).zip(row) {
                *g |= *e & 0u32.wrapping_sub((d > h) as u32);
                *e &= 0u32.wrapping_sub((d == h) as u32);
            }
        }
        for (o, &g) in gt[c..c + width].iter_mut().zip(&g) {
            *o = g & 1;
        }
    };
    for c in (0..body).step_by(B) {
        flags(c, B, &mut gt);
    }
    if body < n {
        flags(body, n - body, &mut gt);
    }
    gt
}

/// x mod q for x < 2^32 held in a u64 word, with mu = ⌊2^32/q⌋ (q < 2^31): Barrett in u64
/// lanes (the product maps to `vpmuludq`).
#[inline(always)]
pub(crate) fn barrett64(x: u64, q: u64, mu: u64) -> u64 {
    let r = x - ((x * mu) >> 32) * q;
    if r >= q { r - q } else { r }
}

/// `row[c]` ← (`row[c]`·w + `digits[c]` mod q) mod q for every c: one Horner step over a row of
/// mixed-radix digits (each below 2^32), with w's Shoup factor.
#[inline(always)]
pub(crate) fn horner_row(row: &mut [u64], digits: &[u32], (w, ws): (u32, u32), q: u64, mu: u64) {
    let (w, ws) = (w as u64, ws as u64);
    for (r, &d) in row.iter_mut().zip(digits) {
        *r = horner_step64(*r, w, ws, barrett64(d as u64, q, mu), q);
    }
}

/// (a·w + b) mod q for a < 2^32 in a u64 word (low half used), b < q, Shoup factor ws of w:
/// the Horner step of the lifts, written on u64 lanes so that the products map to `vpmuludq`.
#[inline(always)]
pub(crate) fn horner_step64(a: u64, w: u64, ws: u64, b: u64, q: u64) -> u64 {
    const LO: u64 = 0xffff_ffff;
    let v = a & LO;
    let qhat = (v * ws) >> 32;
    let r = ((v * w).wrapping_sub(qhat * q)) & LO;
    let r = if r >= q { r - q } else { r };
    let s = r + b;
    if s >= q { s - q } else { s }
}

/// acc0 += x0·y0, acc1 += x0·y1 + x1·y0, acc2 += x1·y1 over one row of 32-bit values held
/// in u64 words (lazy u64 sums; the caller bounds how many are added before a reduction),
/// AVX2 when present.
pub(crate) fn tensor_rows(
    (acc0, acc1, acc2): (&mut [u64], &mut [u64], &mut [u64]),
    [x0, x1, y0, y1]: [&[u64]; 4],
) {
    #[inline(always)]
    fn body(acc0: &mut [u64], acc1: &mut [u64], acc2: &mut [u64], v: [&[u64]; 4]) {
        let len = acc0.len();
        let (acc1, acc2) = (&mut acc1[..len], &mut acc2[..len]);
        let (x0, x1, y0, y1) = (&v[0][..len], &v[1][..len], &v[2][..len], &v[3][..len]);
        for i in 0..len {
            let (a, b, c, d) = (
                x0[i] as u32 as u64,
                x1[i] as u32 as u64,
                y0[i] as u32 as u64,
                y1[i] as u32 as u64,
            );
            acc0[i] += a * c;
            acc1[i] += a * d + b * c;
            acc2[i] += b * d;
        }
    }
    crate::simd_dispatch!(
        (acc0: &mut [u64], acc1: &mut [u64], acc2: &mut [u64], v: [&[u64]; 4]) => {
            body(acc0, acc1, acc2, v)
        } (acc0, acc1, acc2, [x0, x1, y0, y1])
    )
}
