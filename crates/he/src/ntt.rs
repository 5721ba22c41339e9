//! Apple's negacyclic NTT: ψ is the smallest primitive 2n-th root of unity, forward output is in
//! bit-reversed order (`eval[j] = a(ψ^(2·bitrev(j)+1))`). Harvey butterflies with Shoup twiddles.

use crate::HeError;
use crate::arith::{Modulus, bit_reverse, min_primitive_root};

/// Precomputed twiddle tables for one modulus and degree.
#[derive(Clone, Debug)]
pub struct NttTable {
    /// The modulus.
    pub modulus: Modulus,
    /// Degree n.
    pub n: usize,
    /// ψ, the smallest primitive 2n-th root of unity.
    pub psi: u64,
    roots: Vec<u64>,
    roots_shoup: Vec<u64>,
    inv_roots: Vec<u64>,
    inv_roots_shoup: Vec<u64>,
    inv_n: u64,
    inv_n_shoup: u64,
    small: Option<Ntt32>,
}

/// 32-bit Shoup tables for moduli below 2^30, where every butterfly value fits a u32
/// (values stay below 4q < 2^32), so the loops vectorize.
#[derive(Clone, Debug)]
struct Ntt32 {
    q: u32,
    roots: Vec<u32>,
    roots_shoup: Vec<u32>,
    inv_roots: Vec<u32>,
    inv_roots_shoup: Vec<u32>,
    inv_n: u32,
    inv_n_shoup: u32,
}

#[inline(always)]
fn shoup32(w: u32, q: u32) -> u32 {
    (((w as u64) << 32) / q as u64) as u32
}

/// y·w mod q in [0, 2q) for any u32 y, given ws = shoup32(w).
#[inline(always)]
fn mul_shoup32_lazy(y: u32, w: u32, ws: u32, q: u32) -> u32 {
    let qhat = ((y as u64 * ws as u64) >> 32) as u32;
    y.wrapping_mul(w).wrapping_sub(qhat.wrapping_mul(q))
}

impl Ntt32 {
    #[inline(always)]
    fn forward_body(&self, a: &mut [u32]) {
        let n = a.len();
        let q = self.q;
        let two_q = 2 * q;
        let mut t = n;
        let mut m = 1;
        while m < n / 2 {
            t >>= 1;
            let roots = &self.roots[m..2 * m];
            let roots_shoup = &self.roots_shoup[m..2 * m];
            for ((block, &w), &ws) in a.chunks_exact_mut(2 * t).zip(roots).zip(roots_shoup) {
                let (lo, hi) = block.split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let xv = (*x).min((*x).wrapping_sub(two_q));
                    let wy = mul_shoup32_lazy(*y, w, ws, q);
                    *x = xv + wy;
                    *y = xv + two_q - wy;
                }
            }
            m <<= 1;
        }
        // Last stage (t = 1) fused with the final reduction to [0, q).
        let roots = &self.roots[m..2 * m];
        let roots_shoup = &self.roots_shoup[m..2 * m];
        for ((pair, &w), &ws) in a.chunks_exact_mut(2).zip(roots).zip(roots_shoup) {
            let xv = pair[0].min(pair[0].wrapping_sub(two_q));
            let wy = mul_shoup32_lazy(pair[1], w, ws, q);
            let x = xv + wy;
            let y = xv + two_q - wy;
            let x = x.min(x.wrapping_sub(two_q));
            let y = y.min(y.wrapping_sub(two_q));
            pair[0] = x.min(x.wrapping_sub(q));
            pair[1] = y.min(y.wrapping_sub(q));
        }
    }

    #[inline(always)]
    fn inverse_body(&self, a: &mut [u32]) {
        let n = a.len();
        let q = self.q;
        let two_q = 2 * q;
        // First stage (t = 1) on adjacent pairs.
        let mut m = n >> 1;
        let roots = &self.inv_roots[m..2 * m];
        let roots_shoup = &self.inv_roots_shoup[m..2 * m];
        for ((pair, &w), &ws) in a.chunks_exact_mut(2).zip(roots).zip(roots_shoup) {
            let (xv, yv) = (pair[0], pair[1]);
            let s = xv + yv;
            pair[0] = s.min(s.wrapping_sub(two_q));
            pair[1] = mul_shoup32_lazy(xv + two_q - yv, w, ws, q);
        }
        let mut t = 2;
        m >>= 1;
        while m >= 1 {
            for i in 0..m {
                let w = self.inv_roots[m + i];
                let ws = self.inv_roots_shoup[m + i];
                let j1 = 2 * i * t;
                let (lo, hi) = a[j1..j1 + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (xv, yv) = (*x, *y);
                    let s = xv + yv;
                    *x = s.min(s.wrapping_sub(two_q));
                    *y = mul_shoup32_lazy(xv + two_q - yv, w, ws, q);
                }
            }
            t <<= 1;
            m >>= 1;
        }
        for x in a.iter_mut() {
            let v = mul_shoup32_lazy(*x, self.inv_n, self.inv_n_shoup, q);
            *x = v.min(v.wrapping_sub(q));
        }
    }

    /// # Safety
    /// The caller must have checked that the CPU supports AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_avx2(&self, a: &mut [u32]) {
        self.forward_body(a)
    }

    /// # Safety
    /// The caller must have checked that the CPU supports AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn inverse_avx2(&self, a: &mut [u32]) {
        self.inverse_body(a)
    }

    fn forward(&self, a: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 support was detected at run time just above; the function is plain
            // safe Rust compiled with AVX2 enabled.
            unsafe { self.forward_avx2(a) };
            return;
        }
        self.forward_body(a)
    }

    fn inverse(&self, a: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 support was detected at run time just above; the function is plain
            // safe Rust compiled with AVX2 enabled.
            unsafe { self.inverse_avx2(a) };
            return;
        }
        self.inverse_body(a)
    }
}

impl NttTable {
    /// Builds tables for modulus q (prime, q ≡ 1 mod 2n, q < 2^62) and degree n.
    pub fn new(q: u64, n: usize) -> Result<Self, HeError> {
        let modulus = Modulus::new(q);
        let psi = min_primitive_root(q, 2 * n as u64).ok_or_else(|| {
            HeError::InvalidParameters(format!("{q} is not NTT-friendly for n={n}"))
        })?;
        let psi_inv = modulus.inv(psi).expect("psi nonzero");
        let bits = n.trailing_zeros();
        let mut roots = vec![0u64; n];
        let mut inv_roots = vec![0u64; n];
        let (mut p, mut pi) = (1u64, 1u64);
        for i in 0..n {
            let r = bit_reverse(i, bits);
            roots[r] = p;
            inv_roots[r] = pi;
            p = modulus.mul(p, psi);
            pi = modulus.mul(pi, psi_inv);
        }
        let roots_shoup = roots.iter().map(|&w| modulus.shoup(w)).collect();
        let inv_roots_shoup = inv_roots.iter().map(|&w| modulus.shoup(w)).collect();
        let inv_n = modulus.inv(n as u64).expect("n invertible");
        let small = (q < (1 << 30)).then(|| {
            let q32 = q as u32;
            let to32 = |v: &Vec<u64>| v.iter().map(|&x| x as u32).collect::<Vec<u32>>();
            let sh = |v: &Vec<u64>| {
                v.iter()
                    .map(|&x| shoup32(x as u32, q32))
                    .collect::<Vec<u32>>()
            };
            Ntt32 {
                q: q32,
                roots: to32(&roots),
                roots_shoup: sh(&roots),
                inv_roots: to32(&inv_roots),
                inv_roots_shoup: sh(&inv_roots),
                inv_n: inv_n as u32,
                inv_n_shoup: shoup32(inv_n as u32, q32),
            }
        });
        Ok(NttTable {
            modulus,
            n,
            psi,
            roots,
            roots_shoup,
            inv_roots,
            inv_roots_shoup,
            inv_n,
            inv_n_shoup: modulus.shoup(inv_n),
            small,
        })
    }

    /// In-place forward NTT; input and output coefficients in [0, q).
    pub fn forward(&self, a: &mut [u64]) {
        if let Some(s) = &self.small {
            let mut b: Vec<u32> = a.iter().map(|&x| x as u32).collect();
            s.forward(&mut b);
            for (x, &y) in a.iter_mut().zip(&b) {
                *x = y as u64;
            }
            return;
        }
        self.forward_u64(a)
    }

    /// In-place inverse NTT (including the 1/n factor); values in [0, q).
    pub fn inverse(&self, a: &mut [u64]) {
        if let Some(s) = &self.small {
            let mut b: Vec<u32> = a.iter().map(|&x| x as u32).collect();
            s.inverse(&mut b);
            for (x, &y) in a.iter_mut().zip(&b) {
                *x = y as u64;
            }
            return;
        }
        self.inverse_u64(a)
    }

    /// Forward NTT with 64-bit words (any modulus below 2^62).
    pub fn forward_u64(&self, a: &mut [u64]) {
        let n = self.n;
        debug_assert_eq!(a.len(), n);
        let q = self.modulus.value;
        let two_q = 2 * q;
        let mut t = n;
        let mut m = 1;
        while m < n / 2 {
            t >>= 1;
            let roots = &self.roots[m..2 * m];
            let roots_shoup = &self.roots_shoup[m..2 * m];
            for ((block, &w), &ws) in a.chunks_exact_mut(2 * t).zip(roots).zip(roots_shoup) {
                let (lo, hi) = block.split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let mut xv = *x;
                    if xv >= two_q {
                        xv -= two_q;
                    }
                    let wy = self.modulus.mul_shoup_lazy(*y, w, ws);
                    *x = xv + wy;
                    *y = xv + two_q - wy;
                }
            }
            m <<= 1;
        }
        // Last stage (t = 1) fused with the final reduction to [0, q).
        let roots = &self.roots[m..2 * m];
        let roots_shoup = &self.roots_shoup[m..2 * m];
        for ((pair, &w), &ws) in a.chunks_exact_mut(2).zip(roots).zip(roots_shoup) {
            let mut xv = pair[0];
            if xv >= two_q {
                xv -= two_q;
            }
            let wy = self.modulus.mul_shoup_lazy(pair[1], w, ws);
            let mut x = xv + wy;
            let mut y = xv + two_q - wy;
            if x >= two_q {
                x -= two_q;
            }
            if x >= q {
                x -= q;
            }
            if y >= two_q {
                y -= two_q;
            }
            if y >= q {
                y -= q;
            }
            pair[0] = x;
            pair[1] = y;
        }
    }

    /// Inverse NTT with 64-bit words (any modulus below 2^62).
    pub fn inverse_u64(&self, a: &mut [u64]) {
        let n = self.n;
        debug_assert_eq!(a.len(), n);
        let q = self.modulus.value;
        let two_q = 2 * q;
        let mut t = 1;
        let mut m = n >> 1;
        while m >= 1 {
            let roots = &self.inv_roots[m..2 * m];
            let roots_shoup = &self.inv_roots_shoup[m..2 * m];
            for ((block, &w), &ws) in a.chunks_exact_mut(2 * t).zip(roots).zip(roots_shoup) {
                let (lo, hi) = block.split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let xv = *x;
                    let yv = *y;
                    let mut s = xv + yv;
                    if s >= two_q {
                        s -= two_q;
                    }
                    *x = s;
                    *y = self.modulus.mul_shoup_lazy(xv + two_q - yv, w, ws);
                }
            }
            t <<= 1;
            m >>= 1;
        }
        for x in a.iter_mut() {
            *x = self.modulus.mul_shoup(*x, self.inv_n, self.inv_n_shoup);
        }
    }
}
