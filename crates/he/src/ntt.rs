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
        })
    }

    /// In-place forward NTT; input and output coefficients in [0, q).
    pub fn forward(&self, a: &mut [u64]) {
        let n = self.n;
        debug_assert_eq!(a.len(), n);
        let q = self.modulus.value;
        let two_q = 2 * q;
        let mut t = n;
        let mut m = 1;
        while m < n {
            t >>= 1;
            for i in 0..m {
                let w = self.roots[m + i];
                let ws = self.roots_shoup[m + i];
                let j1 = 2 * i * t;
                let (lo, hi) = a[j1..j1 + 2 * t].split_at_mut(t);
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
        for x in a.iter_mut() {
            let mut v = *x;
            if v >= two_q {
                v -= two_q;
            }
            if v >= q {
                v -= q;
            }
            *x = v;
        }
    }

    /// In-place inverse NTT (including the 1/n factor); values in [0, q).
    pub fn inverse(&self, a: &mut [u64]) {
        let n = self.n;
        debug_assert_eq!(a.len(), n);
        let q = self.modulus.value;
        let two_q = 2 * q;
        let mut t = 1;
        let mut m = n >> 1;
        while m >= 1 {
            for i in 0..m {
                let w = self.inv_roots[m + i];
                let ws = self.inv_roots_shoup[m + i];
                let j1 = 2 * i * t;
                let (lo, hi) = a[j1..j1 + 2 * t].split_at_mut(t);
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
