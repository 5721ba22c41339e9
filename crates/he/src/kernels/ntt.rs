//! Apple's negacyclic NTT: ψ is the smallest primitive 2n-th root of unity, forward output is in
//! bit-reversed order (`eval[j] = a(ψ^(2·bitrev(j)+1))`). Harvey butterflies with Shoup twiddles.
//!
//! Paths (all give identical results, pinned by the tests below):
//! - moduli below 2^30: residues packed in place into 32-bit slots of the caller's words;
//!   AVX2 kernels (`ntt/avx2.rs`, eight butterflies per instruction) when the CPU has AVX2,
//!   portable loops otherwise;
//! - larger moduli (up to 2^62): 64-bit words, one `mul` for Shoup's quotient, corrections
//!   only where the modulus leaves no headroom.
//!
//! No allocation happens per transform.

use crate::HeError;
use crate::arith::{
    Modulus, bit_reverse, min_primitive_root, mul_hi_u64, mul_shoup32_lazy, shoup32,
};
use crate::simd::{Isa, Level};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::mul_lazy as mul_lazy_avx512;

/// The kernel set one 32-bit transform runs with, resolved from a [`Level`], the CPU and the
/// tables built for n.
#[derive(Clone, Copy)]
enum Kernels<'a> {
    #[cfg(target_arch = "x86_64")]
    Avx512(&'a avx512::Tables),
    #[cfg(target_arch = "x86_64")]
    Avx2(&'a avx2::Tables),
    Portable(std::marker::PhantomData<&'a ()>),
}

/// Views `n` words as `2n` 32-bit slots (the same memory), so the 32-bit transform can run in
/// place without a scratch buffer.
fn words_as_slots(a: &mut [u64]) -> &mut [u32] {
    // SAFETY: the pointer comes from a live exclusive slice, so it is non-null and valid for
    // reads and writes of `8 * a.len()` initialized bytes for the returned lifetime (which the
    // signature ties to the borrow of `a`, so no other access can alias it). Its alignment (8)
    // satisfies u32's (4), the byte size equals the original slice's (≤ isize::MAX), and every
    // bit pattern is a valid u32 (and, when written back, a valid u64).
    unsafe { std::slice::from_raw_parts_mut(a.as_mut_ptr().cast::<u32>(), 2 * a.len()) }
}

/// [`words_as_slots`] for a shared slice.
fn words_as_slots_ref(a: &[u64]) -> &[u32] {
    // SAFETY: as in `words_as_slots`, for a live shared slice: non-null, valid for reads of
    // `8 * a.len()` initialized bytes for the returned lifetime (tied to the borrow of `a`,
    // during which nothing can write to it), u32 alignment satisfied, every bit pattern valid.
    unsafe { std::slice::from_raw_parts(a.as_ptr().cast::<u32>(), 2 * a.len()) }
}

/// Index of the slot holding a word's low half (values below 2^32 live there).
const LOW_SLOT: usize = if cfg!(target_endian = "little") { 0 } else { 1 };

/// Moves the low halves of the `n` words in `b` (2n slots) into slots `0..n`. Slot i is read
/// (as slot 2j + LOW_SLOT, j ≤ i) no later than it is overwritten.
fn pack_slots(b: &mut [u32], n: usize) {
    for i in 0..n {
        b[i] = b[2 * i + LOW_SLOT];
    }
}

/// Inverse of [`pack_slots`]: widens slots `0..n` back into words with zero high halves,
/// last first (slots 2i, 2i+1 > i were already read for i ≥ 1).
fn unpack_slots(b: &mut [u32], n: usize) {
    for i in (0..n).rev() {
        let v = b[i];
        b[2 * i + 1 - LOW_SLOT] = 0;
        b[2 * i + LOW_SLOT] = v;
    }
}

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
    /// `inv_roots[1] / n`: the last inverse stage's twiddle with the 1/n factor folded in.
    inv_n_w: u64,
    inv_n_w_shoup: u64,
    small: Option<Ntt32>,
}

/// 32-bit Shoup tables for moduli below 2^30, where every butterfly value fits a u32
/// (values stay below 4q < 2^32), so the loops vectorize.
#[derive(Clone, Debug)]
struct Ntt32 {
    q: u32,
    /// Roots in the bit-reversed order the stages walk (`roots[m + i]`: block i of the stage
    /// with m blocks), n entries.
    roots: Vec<u32>,
    /// Shoup constants of `roots`, plus one zero entry so SIMD code can load the odd lanes'
    /// constants with an offset of one.
    roots_shoup: Vec<u32>,
    /// Inverse roots, same layout as `roots`.
    inv_roots: Vec<u32>,
    /// Shoup constants of `inv_roots`, padded like `roots_shoup`.
    inv_roots_shoup: Vec<u32>,
    inv_n: u32,
    inv_n_shoup: u32,
    /// `inv_roots[1] / n`: the last inverse stage's twiddle with the 1/n factor folded in.
    inv_n_w: u32,
    inv_n_w_shoup: u32,
    /// Lane-ordered twiddles of the AVX2 kernels (n ≥ 32).
    #[cfg(target_arch = "x86_64")]
    avx2: Option<avx2::Tables>,
    /// Lane-ordered twiddles of the AVX-512 kernels (n ≥ 64).
    #[cfg(target_arch = "x86_64")]
    avx512: Option<avx512::Tables>,
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

    /// The kernels `level` allows on this CPU ([`Level::isa`]) for this table: the widest
    /// family at most that level whose tables exist for n.
    fn kernels(&self, level: Level) -> Kernels<'_> {
        let isa = level.isa();
        #[cfg(target_arch = "x86_64")]
        {
            if isa == Isa::Avx512
                && let Some(t) = self.avx512.as_ref()
            {
                return Kernels::Avx512(t);
            }
            if isa >= Isa::Avx2
                && let Some(t) = self.avx2.as_ref()
            {
                return Kernels::Avx2(t);
            }
        }
        let _ = isa;
        Kernels::Portable(std::marker::PhantomData)
    }

    /// Forward transform of the words `a` (values < q), in place, with the kernels `level`
    /// allows.
    fn forward_words(&self, a: &mut [u64], level: Level) {
        let n = a.len();
        let b = words_as_slots(a);
        // SAFETY (both arms): `kernels` returned the variant only after `Level::isa` confirmed its
        // instruction set at run time, the only requirement of the target-feature functions;
        // they access memory only through bounds-checked references, and their tables exist
        // only for the sizes they handle (n ≥ 32 for AVX2, n ≥ 64 for AVX-512).
        match self.kernels(level) {
            // SAFETY: see above; AVX-512 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512(t) => unsafe { avx512::forward(self, t, b) },
            // SAFETY: see above; AVX2 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => unsafe { avx2::forward(self, t, b) },
            Kernels::Portable(_) => {
                pack_slots(b, n);
                self.forward_body(&mut b[..n]);
                unpack_slots(b, n);
            }
        }
    }

    /// Forward transform of the words `src + add` (each below 4q) into `dst`.
    fn forward_words_from(&self, src: &[u64], add: u32, dst: &mut [u64], level: Level) {
        let n = dst.len();
        let (s, b) = (words_as_slots_ref(src), words_as_slots(dst));
        // SAFETY: as in `forward_words` (instruction set detected, bounds-checked access).
        match self.kernels(level) {
            // SAFETY: see above; AVX-512 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512(t) => unsafe { avx512::forward_from(self, t, s, add, b) },
            // SAFETY: see above; AVX2 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => unsafe { avx2::forward_from(self, t, s, add, b) },
            Kernels::Portable(_) => {
                // The portable first stage corrects inputs below 4q itself.
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = x + add as u64;
                }
                let b = words_as_slots(dst);
                pack_slots(b, n);
                self.forward_body(&mut b[..n]);
                unpack_slots(b, n);
            }
        }
    }

    /// [`Self::forward_words_from`] with outputs below 4q where a lazy kernel exists
    /// (AVX-512), reduced elsewhere.
    fn forward_words_from_lazy(&self, src: &[u64], add: u32, dst: &mut [u64]) {
        #[cfg(target_arch = "x86_64")]
        if let Kernels::Avx512(t) = self.kernels(crate::simd::level()) {
            let (s, b) = (words_as_slots_ref(src), words_as_slots(dst));
            // SAFETY: as in `forward_words` (instruction set detected, bounds-checked access).
            unsafe { avx512::forward_from_lazy(self, t, s, add, b) };
            return;
        }
        self.forward_words_from(src, add, dst, crate::simd::level());
    }

    /// Inverse transform of the words `src` (values < q) into `dst`.
    fn inverse_words_from(&self, src: &[u64], dst: &mut [u64], level: Level) {
        let (s, b) = (words_as_slots_ref(src), words_as_slots(dst));
        // SAFETY: as in `forward_words` (instruction set detected, bounds-checked access).
        match self.kernels(level) {
            // SAFETY: see above; AVX-512 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512(t) => unsafe { avx512::inverse_from(self, t, s, b) },
            // SAFETY: see above; AVX2 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => unsafe { avx2::inverse_from(self, t, s, b) },
            Kernels::Portable(_) => {
                dst.copy_from_slice(src);
                self.inverse_words(dst, Level::Portable);
            }
        }
    }

    /// [`Self::inverse_words`] then (x + add) mod q on every word (add < q): in the last pass
    /// with AVX-512, a separate one otherwise.
    fn inverse_words_add(&self, a: &mut [u64], add: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Kernels::Avx512(t) = self.kernels(crate::simd::level()) {
            // SAFETY: as in `forward_words` (instruction set detected, bounds-checked access).
            unsafe { avx512::inverse_add(self, t, add, words_as_slots(a)) };
            return;
        }
        self.inverse_words(a, crate::simd::level());
        let q = self.q;
        for x in a.iter_mut() {
            let v = *x as u32 + add;
            *x = v.min(v.wrapping_sub(q)) as u64;
        }
    }

    /// Inverse transform of the words `a` (values < q), in place; see [`Self::forward_words`].
    fn inverse_words(&self, a: &mut [u64], level: Level) {
        let n = a.len();
        let b = words_as_slots(a);
        // SAFETY: as in `forward_words`.
        match self.kernels(level) {
            // SAFETY: see above; AVX-512 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512(t) => unsafe { avx512::inverse(self, t, b) },
            // SAFETY: see above; AVX2 was detected before this variant was chosen.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => unsafe { avx2::inverse(self, t, b) },
            Kernels::Portable(_) => {
                pack_slots(b, n);
                self.inverse_body(&mut b[..n]);
                unpack_slots(b, n);
            }
        }
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
        let inv_n_w = if n > 1 {
            modulus.mul(inv_roots[1], inv_n)
        } else {
            inv_n
        };
        let small = (q < (1 << 30)).then(|| {
            let q32 = q as u32;
            let to32 = |v: &Vec<u64>| v.iter().map(|&x| x as u32).collect::<Vec<u32>>();
            let sh = |v: &Vec<u64>| {
                v.iter()
                    .map(|&x| shoup32(x as u32, q32))
                    .chain([0])
                    .collect::<Vec<u32>>()
            };
            let inv_n_w = inv_n_w as u32;
            let mut t = Ntt32 {
                q: q32,
                roots: to32(&roots),
                roots_shoup: sh(&roots),
                inv_roots: to32(&inv_roots),
                inv_roots_shoup: sh(&inv_roots),
                inv_n: inv_n as u32,
                inv_n_shoup: shoup32(inv_n as u32, q32),
                inv_n_w,
                inv_n_w_shoup: shoup32(inv_n_w, q32),
                #[cfg(target_arch = "x86_64")]
                avx2: None,
                #[cfg(target_arch = "x86_64")]
                avx512: None,
            };
            #[cfg(target_arch = "x86_64")]
            {
                if n >= 32 {
                    t.avx2 = Some(avx2::Tables::new(&t, n));
                }
                if n >= 64 {
                    t.avx512 = Some(avx512::Tables::new(&t, n));
                }
            }
            t
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
            inv_n_w,
            inv_n_w_shoup: modulus.shoup(inv_n_w),
            small,
        })
    }

    /// In-place forward NTT; input and output coefficients in [0, q). Moduli below 2^30 use
    /// the 32-bit path (AVX2 when the CPU has it), larger ones [`Self::forward_u64`].
    ///
    /// Panics if `a.len() != n` (a caller bug: `Poly` rows always have n coefficients).
    pub fn forward(&self, a: &mut [u64]) {
        self.forward_with(crate::simd::level(), a)
    }

    /// [`Self::forward`] with the kernels `level` allows ([`Level::isa`]: never wider than
    /// the CPU has), for cross-checks and benchmarks that compare levels; same results.
    pub fn forward_with(&self, level: Level, a: &mut [u64]) {
        assert_eq!(a.len(), self.n, "NTT length");
        match &self.small {
            Some(s) => s.forward_words(a, level),
            None => self.forward_u64(a),
        }
    }

    /// `dst` ← forward NTT of (src + add) mod q, without a separate reduction pass over the
    /// input: the transform's first stage reads `src` and adds. For moduli below 2^30 every
    /// `src[i] + add` must be below 4q (a larger value gives a wrong result, nothing worse);
    /// other moduli reduce first. Panics if a length is not n.
    pub fn forward_from(&self, src: &[u64], add: u32, dst: &mut [u64]) {
        self.forward_from_with(crate::simd::level(), src, add, dst)
    }

    /// [`Self::forward_from`] with the kernels `level` allows, as [`Self::forward_with`].
    pub fn forward_from_with(&self, level: Level, src: &[u64], add: u32, dst: &mut [u64]) {
        assert!(src.len() == self.n && dst.len() == self.n, "NTT length");
        match &self.small {
            Some(s) => s.forward_words_from(src, add, dst, level),
            None => {
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = self.modulus.reduce(x + add as u64);
                }
                self.forward_u64(dst);
            }
        }
    }

    /// [`Self::forward_from`] whose outputs are only congruent to the transform, each below
    /// 4q (fully reduced where no lazy kernel applies): for rows whose every use is a product
    /// reduced afterwards, with room for the larger factor (see the fused expansion step).
    pub fn forward_from_lazy(&self, src: &[u64], add: u32, dst: &mut [u64]) {
        assert!(src.len() == self.n && dst.len() == self.n, "NTT length");
        match &self.small {
            Some(s) => s.forward_words_from_lazy(src, add, dst),
            None => self.forward_from(src, add, dst),
        }
    }

    /// `dst` ← inverse NTT of `src` (values in [0, q)), without copying the input first: the
    /// transform's first pass reads `src`. Panics if a length is not n.
    pub fn inverse_from(&self, src: &[u64], dst: &mut [u64]) {
        self.inverse_from_with(crate::simd::level(), src, dst)
    }

    /// [`Self::inverse_from`] with the kernels `level` allows, as [`Self::forward_with`].
    pub fn inverse_from_with(&self, level: Level, src: &[u64], dst: &mut [u64]) {
        assert!(src.len() == self.n && dst.len() == self.n, "NTT length");
        match &self.small {
            Some(s) => s.inverse_words_from(src, dst, level),
            None => {
                dst.copy_from_slice(src);
                self.inverse_u64(dst);
            }
        }
    }

    /// In-place inverse NTT (including the 1/n factor); values in [0, q). Panics if
    /// `a.len() != n`.
    pub fn inverse(&self, a: &mut [u64]) {
        self.inverse_with(crate::simd::level(), a)
    }

    /// [`Self::inverse`] with the kernels `level` allows, as [`Self::forward_with`].
    pub fn inverse_with(&self, level: Level, a: &mut [u64]) {
        assert_eq!(a.len(), self.n, "NTT length");
        match &self.small {
            Some(s) => s.inverse_words(a, level),
            None => self.inverse_u64(a),
        }
    }

    /// `dst` ← inverse NTT of `src` (values in [0, q)) as plain 32-bit values (moduli below
    /// 2^30): with AVX-512 the transform's last pass stores the residues without widening
    /// them to words, and a consumer reading them ([`Self::forward_from_narrow_lazy`]) skips
    /// the packing; elsewhere the word transform, then a copy. Panics if a length is not n or
    /// the modulus is 2^30 or more.
    pub(crate) fn inverse_from_narrow(&self, src: &[u64], dst: &mut [u32]) {
        self.inverse_from_narrow_add(src, 0, dst)
    }

    /// [`Self::inverse_from_narrow`] followed by (x + add) mod q on every value (add < q),
    /// as [`Self::inverse_add`]. Panics as it does, or if add ≥ q.
    pub(crate) fn inverse_from_narrow_add(&self, src: &[u64], add: u32, dst: &mut [u32]) {
        assert!(src.len() == self.n && dst.len() == self.n, "NTT length");
        let s = self.small.as_ref().expect("a modulus below 2^30");
        assert!(add < s.q, "offset not below q");
        #[cfg(target_arch = "x86_64")]
        if let Kernels::Avx512(t) = s.kernels(crate::simd::level()) {
            let src = words_as_slots_ref(src);
            // SAFETY: as in `forward_words` (instruction set detected, bounds-checked access).
            unsafe {
                if add == 0 {
                    avx512::inverse_from_narrow(s, t, src, dst)
                } else {
                    avx512::inverse_from_narrow_add(s, t, src, add, dst)
                }
            };
            return;
        }
        let mut words = src.to_vec();
        s.inverse_words_add(&mut words, add);
        for (d, &w) in dst.iter_mut().zip(&words) {
            *d = w as u32;
        }
    }

    /// [`Self::forward_from`] of n residues given as plain 32-bit values (each plus `add`
    /// below 4q), outputs reduced. Panics if a length is not n or the modulus is 2^30 or more.
    pub(crate) fn forward_from_narrow(&self, src: &[u32], add: u32, dst: &mut [u64]) {
        self.forward_from_narrow_with(src, add, dst, false)
    }

    /// [`Self::forward_from_lazy`] of n residues given as plain 32-bit values (each plus
    /// `add` below 4q), as [`Self::inverse_from_narrow`] writes them. Panics if a length is
    /// not n or the modulus is 2^30 or more.
    pub(crate) fn forward_from_narrow_lazy(&self, src: &[u32], add: u32, dst: &mut [u64]) {
        self.forward_from_narrow_with(src, add, dst, true)
    }

    /// The two narrow forward forms: outputs below 4q when `lazy`, else reduced.
    fn forward_from_narrow_with(&self, src: &[u32], add: u32, dst: &mut [u64], lazy: bool) {
        assert!(src.len() == self.n && dst.len() == self.n, "NTT length");
        let s = self.small.as_ref().expect("a modulus below 2^30");
        #[cfg(target_arch = "x86_64")]
        if let Kernels::Avx512(t) = s.kernels(crate::simd::level()) {
            let b = words_as_slots(dst);
            // SAFETY: as in `forward_words` (instruction set detected, bounds-checked access).
            unsafe {
                if lazy {
                    avx512::forward_from_narrow_lazy(s, t, src, add, b)
                } else {
                    avx512::forward_from_narrow(s, t, src, add, b)
                }
            };
            return;
        }
        let words: Vec<u64> = src.iter().map(|&x| x as u64).collect();
        if lazy {
            s.forward_words_from_lazy(&words, add, dst);
        } else {
            s.forward_words_from(&words, add, dst, crate::simd::level());
        }
    }

    /// [`Self::inverse`] followed by a ← (a + add) mod q on every coefficient (add < q; the
    /// special prime's row of a key switch shifted by ⌊P/2⌋ for its centered lift), the
    /// addition in the transform's last pass where the kernels allow. Panics if `a.len() != n`
    /// or add ≥ q.
    pub fn inverse_add(&self, a: &mut [u64], add: u64) {
        assert_eq!(a.len(), self.n, "NTT length");
        assert!(add < self.modulus.value, "offset not below q");
        match &self.small {
            Some(s) => s.inverse_words_add(a, add as u32),
            None => {
                self.inverse_u64(a);
                for x in a.iter_mut() {
                    *x = self.modulus.add(*x, add);
                }
            }
        }
    }

    /// Forward NTT with 64-bit words (any modulus below 2^62). Harvey butterflies with Shoup
    /// twiddles; when (2·log2 n + 1)·q < 2^63 (moduli up to ~58 bits) the values may grow by
    /// 2q per stage without any correction and are reduced once at the end, otherwise they are
    /// kept in [0, 4q) by a branch-free correction per butterfly.
    pub fn forward_u64(&self, a: &mut [u64]) {
        let n = self.n;
        assert_eq!(a.len(), n, "NTT length");
        if n < 2 {
            return;
        }
        let md = self.modulus;
        let q = md.value;
        let stages = n.trailing_zeros() as u128;
        let lazy = (2 * stages + 1) * q as u128 <= 1 << 63;
        let mut t = n;
        let mut m = 1;
        while m < n / 2 {
            t >>= 1;
            let roots = &self.roots[m..2 * m];
            let roots_shoup = &self.roots_shoup[m..2 * m];
            if lazy {
                fwd_stage64::<false>(a, t, roots, roots_shoup, q);
            } else {
                fwd_stage64::<true>(a, t, roots, roots_shoup, q);
            }
            m <<= 1;
        }
        // Last stage (t = 1) fused with the final reduction to [0, q).
        let roots = &self.roots[m..2 * m];
        let roots_shoup = &self.roots_shoup[m..2 * m];
        let one_shoup = md.shoup(1);
        for ((pair, &w), &ws) in a.chunks_exact_mut(2).zip(roots).zip(roots_shoup) {
            let (x, y) = if lazy {
                let (x, y) = fwd_bfly64::<false>(q, pair[0], pair[1], w, ws);
                // Below (2·stages + 1)·q < 2^64: one Shoup product by 1 brings them below 2q.
                (
                    mul_shoup_lazy64(q, x, 1, one_shoup),
                    mul_shoup_lazy64(q, y, 1, one_shoup),
                )
            } else {
                let (x, y) = fwd_bfly64::<true>(q, pair[0], pair[1], w, ws);
                (csub64(x, 2 * q), csub64(y, 2 * q))
            };
            pair[0] = csub64(x, q);
            pair[1] = csub64(y, q);
        }
    }

    /// Inverse NTT with 64-bit words (any modulus below 2^62); the 1/n factor is folded into
    /// the last stage. Sums x + y double their bound per stage; they are reduced below 2q
    /// (one Shoup product by 1) only at stages after which the next sums could pass 2^63.
    pub fn inverse_u64(&self, a: &mut [u64]) {
        let n = self.n;
        assert_eq!(a.len(), n, "NTT length");
        let md = self.modulus;
        let q = md.value;
        if n == 1 {
            a[0] = md.mul_shoup(a[0], self.inv_n, self.inv_n_shoup);
            return;
        }
        let one_shoup = md.shoup(1);
        // All values are below b·q (inputs below q).
        let mut b: u64 = 1;
        let mut t = 1;
        let mut m = n >> 1;
        while m > 1 {
            let roots = &self.inv_roots[m..2 * m];
            let roots_shoup = &self.inv_roots_shoup[m..2 * m];
            let reduce = 4 * b as u128 * q as u128 > 1 << 63;
            let c = (q, b * q, one_shoup);
            if reduce {
                inv_stage64::<true>(a, t, roots, roots_shoup, c);
                b = 2;
            } else {
                inv_stage64::<false>(a, t, roots, roots_shoup, c);
                b *= 2;
            }
            t <<= 1;
            m >>= 1;
        }
        // Last stage: x ← (x + y)/n, y ← (x − y)·w/n, reduced to [0, q); x + y < 2bq < 2^64.
        let bq = b * q;
        let (ni, nis) = (self.inv_n, self.inv_n_shoup);
        let (wn, wns) = (self.inv_n_w, self.inv_n_w_shoup);
        let (lo, hi) = a.split_at_mut(n / 2);
        for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
            let (xv, yv) = (*x, *y);
            *x = csub64(mul_shoup_lazy64(q, xv + yv, ni, nis), q);
            *y = csub64(mul_shoup_lazy64(q, xv + bq - yv, wn, wns), q);
        }
    }
}

/// One forward stage with half-block size `t` (blocks' twiddles `roots`); `CORRECT` keeps
/// values in [0, 4q), otherwise they grow by less than 2q.
#[inline(always)]
fn fwd_stage64<const CORRECT: bool>(
    a: &mut [u64],
    t: usize,
    roots: &[u64],
    roots_shoup: &[u64],
    q: u64,
) {
    for ((block, &w), &ws) in a.chunks_exact_mut(2 * t).zip(roots).zip(roots_shoup) {
        let (lo, hi) = block.split_at_mut(t);
        for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
            let (u, v) = fwd_bfly64::<CORRECT>(q, *x, *y, w, ws);
            *x = u;
            *y = v;
        }
    }
}

/// One inverse stage with half-block size `t`; `c` = (q, b·q, shoup(1)) where b·q bounds
/// the inputs. `REDUCE` brings the sums below 2q; the differences always end below 2q.
#[inline(always)]
fn inv_stage64<const REDUCE: bool>(
    a: &mut [u64],
    t: usize,
    roots: &[u64],
    roots_shoup: &[u64],
    (q, bq, one_shoup): (u64, u64, u64),
) {
    for ((block, &w), &ws) in a.chunks_exact_mut(2 * t).zip(roots).zip(roots_shoup) {
        let (lo, hi) = block.split_at_mut(t);
        for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
            let (xv, yv) = (*x, *y);
            let s = xv + yv;
            *x = if REDUCE {
                mul_shoup_lazy64(q, s, 1, one_shoup)
            } else {
                s
            };
            *y = mul_shoup_lazy64(q, xv + bq - yv, w, ws);
        }
    }
}

/// min(x, x − c): subtracts c when x ≥ c (x < 2^63 + c), without a branch.
#[inline(always)]
fn csub64(x: u64, c: u64) -> u64 {
    x.min(x.wrapping_sub(c))
}

/// y·w mod q in [0, 2q) given ws = shoup(w), with an unvectorizable high multiply (see
/// [`mul_hi_u64`]).
#[inline(always)]
fn mul_shoup_lazy64(q: u64, y: u64, w: u64, ws: u64) -> u64 {
    let qhat = mul_hi_u64(y, ws);
    y.wrapping_mul(w).wrapping_sub(qhat.wrapping_mul(q))
}

/// Cooley–Tukey butterfly (x + w·y, x − w·y): with `CORRECT`, inputs and outputs in
/// [0, 4q); without, outputs exceed the bound of x by less than 2q.
#[inline(always)]
fn fwd_bfly64<const CORRECT: bool>(q: u64, x: u64, y: u64, w: u64, ws: u64) -> (u64, u64) {
    let two_q = 2 * q;
    let xv = if CORRECT { csub64(x, two_q) } else { x };
    let wy = mul_shoup_lazy64(q, y, w, ws);
    (xv + wy, xv + two_q - wy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::is_prime;

    /// The largest prime q < 2^bits with q ≡ 1 (mod 2n).
    fn ntt_prime(bits: u32, n: usize) -> u64 {
        let step = 2 * n as u64;
        let mut q = ((1u64 << bits) - 1) / step * step + 1;
        while !is_prime(q) {
            q -= step;
        }
        q
    }

    fn random_residues(q: u64, n: usize, seed: u64) -> Vec<u64> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s % q
            })
            .collect()
    }

    /// Pins the SIMD kernels (where the CPU has them) to the portable 32-bit loops and the
    /// 64-bit path, both directions, for several moduli and sizes, including inputs at q − 1.
    #[test]
    fn simd_matches_scalar_paths() {
        for n in [16usize, 32, 64, 128, 1024, 4096, 8192] {
            for bits in [14u32, 20, 27, 28, 29, 30] {
                if (2 * n as u64) >= (1 << (bits - 1)) {
                    continue;
                }
                let q = ntt_prime(bits, n);
                let t = NttTable::new(q, n).unwrap();
                assert!(t.small.is_some());
                let mut inputs = vec![vec![q - 1; n], vec![0; n]];
                for seed in 1..4 {
                    inputs.push(random_residues(q, n, seed * 0x9E37_79B9 + n as u64));
                }
                for x in inputs {
                    let (mut s, mut p, mut w) = (x.clone(), x.clone(), x.clone());
                    let mut v = x.clone();
                    t.forward(&mut s);
                    t.forward_with(Level::Portable, &mut p);
                    t.forward_u64(&mut w);
                    t.forward_with(Level::Avx2, &mut v);
                    assert_eq!(s, p, "forward q={q} n={n}");
                    assert_eq!(s, w, "forward q={q} n={n}");
                    assert_eq!(s, v, "forward AVX2 q={q} n={n}");
                    // Inverse on the same (arbitrary) evaluation vector through every path.
                    let (mut s2, mut p2, mut w2) = (x.clone(), x.clone(), x.clone());
                    let mut v2 = x.clone();
                    t.inverse(&mut s2);
                    t.inverse_with(Level::Portable, &mut p2);
                    t.inverse_u64(&mut w2);
                    t.inverse_with(Level::Avx2, &mut v2);
                    assert_eq!(s2, p2, "inverse q={q} n={n}");
                    assert_eq!(s2, w2, "inverse q={q} n={n}");
                    assert_eq!(s2, v2, "inverse AVX2 q={q} n={n}");
                    t.inverse(&mut s);
                    assert_eq!(s, x, "round trip q={q} n={n}");
                }
            }
        }
    }

    /// `forward_from` (first stage reading a separate source plus a constant, inputs up to
    /// 4q − 1) equals reducing first and transforming in place, AVX2 or not.
    #[test]
    fn forward_from_matches_reduce_then_forward() {
        for n in [32usize, 64, 128, 1024, 4096] {
            for bits in [27u32, 28, 30] {
                let q = ntt_prime(bits, n);
                let t = NttTable::new(q, n).unwrap();
                for (seed, add) in [(1u64, 0u32), (2, 17), (3, (q - 1) as u32)] {
                    // Values spread over [0, 4q − add), with the extremes first.
                    let span = 4 * q - add as u64;
                    let mut src: Vec<u64> = random_residues(q, n, seed)
                        .iter()
                        .map(|&r| r * 4 % span)
                        .collect();
                    src[0] = span - 1;
                    src[1] = 0;
                    let mut want: Vec<u64> = src.iter().map(|&x| (x + add as u64) % q).collect();
                    t.forward(&mut want);
                    let mut got = vec![0u64; n];
                    t.forward_from(&src, add, &mut got);
                    assert_eq!(got, want, "q={q} n={n} add={add}");
                    let mut got2 = vec![0u64; n];
                    t.forward_from_with(Level::Avx2, &src, add, &mut got2);
                    assert_eq!(got2, want, "AVX2 q={q} n={n} add={add}");
                    // The lazy form: congruent, each word below 4q.
                    let mut lazy = vec![0u64; n];
                    t.forward_from_lazy(&src, add, &mut lazy);
                    assert!(lazy.iter().all(|&x| x < 4 * q), "lazy bound q={q} n={n}");
                    let lazy_reduced: Vec<u64> = lazy.iter().map(|&x| x % q).collect();
                    assert_eq!(lazy_reduced, want, "lazy q={q} n={n} add={add}");
                    // And back, out of place.
                    let mut back = vec![0u64; n];
                    t.inverse_from(&got, &mut back);
                    let reduced: Vec<u64> = src.iter().map(|&x| (x + add as u64) % q).collect();
                    assert_eq!(back, reduced, "inverse_from q={q} n={n}");
                    t.inverse_from_with(Level::Avx2, &got, &mut back);
                    assert_eq!(back, reduced, "inverse_from AVX2 q={q} n={n}");
                    let s = t.small.as_ref().unwrap();
                    let mut portable = vec![0u64; n];
                    let b = &mut portable;
                    for (d, &x) in b.iter_mut().zip(&src) {
                        *d = x + add as u64;
                    }
                    let slots = words_as_slots(b);
                    pack_slots(slots, n);
                    s.forward_body(&mut slots[..n]);
                    unpack_slots(slots, n);
                    assert_eq!(portable, want, "portable q={q} n={n}");
                }
            }
        }
    }

    /// The narrow forms equal the word forms: `inverse_from_narrow` the inverse's values (with
    /// an offset, the values plus it mod q); `forward_from_narrow` the forward transform of
    /// the offset values, and its lazy form the same congruent and below 4q; for n below and
    /// at the AVX-512 sizes and 27-30-bit moduli.
    #[test]
    fn narrow_forms_match_the_word_forms() {
        for (n, bits) in [
            (32usize, 28u32),
            (64, 27),
            (4096, 27),
            (4096, 28),
            (4096, 30),
        ] {
            let q = ntt_prime(bits, n);
            let t = NttTable::new(q, n).unwrap();
            let eval = random_residues(q, n, 21);
            let mut words = vec![0u64; n];
            t.inverse_from(&eval, &mut words);
            let mut narrow = vec![0u32; n];
            t.inverse_from_narrow(&eval, &mut narrow);
            assert!(
                narrow.iter().zip(&words).all(|(&a, &b)| a as u64 == b),
                "q={q} n={n}"
            );
            for add in [1u32, (q - 1) as u32] {
                t.inverse_from_narrow_add(&eval, add, &mut narrow);
                let ok = narrow
                    .iter()
                    .zip(&words)
                    .all(|(&a, &b)| a as u64 == (b + add as u64) % q);
                assert!(ok, "offset {add} q={q} n={n}");
            }
            for add in [0u32, (q - 1) as u32] {
                // Values below 4q − add, the extremes first.
                let span = 4 * q - add as u64;
                let mut src: Vec<u32> = random_residues(q, n, 22)
                    .iter()
                    .map(|&r| (r * 4 % span) as u32)
                    .collect();
                src[0] = (span - 1) as u32;
                src[1] = 0;
                let wide: Vec<u64> = src.iter().map(|&x| x as u64).collect();
                let mut want = vec![0u64; n];
                t.forward_from(&wide, add, &mut want);
                let mut exact = vec![0u64; n];
                t.forward_from_narrow(&src, add, &mut exact);
                assert_eq!(exact, want, "reduced q={q} n={n} add={add}");
                let mut got = vec![0u64; n];
                t.forward_from_narrow_lazy(&src, add, &mut got);
                assert!(got.iter().all(|&x| x < 4 * q), "bound q={q} n={n}");
                let got: Vec<u64> = got.iter().map(|&x| x % q).collect();
                assert_eq!(got, want, "q={q} n={n} add={add}");
            }
        }
    }

    /// `inverse_add` equals the inverse transform followed by the offset mod q, for the
    /// 32-bit kernels (n below and above the AVX-512 size) and the 64-bit path, offsets 0,
    /// 1 and q − 1.
    #[test]
    fn inverse_add_is_inverse_then_offset() {
        for (n, bits) in [(32usize, 28u32), (4096, 27), (4096, 30), (1024, 50)] {
            let q = ntt_prime(bits, n);
            let t = NttTable::new(q, n).unwrap();
            let eval = random_residues(q, n, 9);
            for add in [0, 1, q - 1] {
                let mut want = eval.clone();
                t.inverse(&mut want);
                for x in &mut want {
                    *x = (*x + add) % q;
                }
                let mut got = eval.clone();
                t.inverse_add(&mut got, add);
                assert_eq!(got, want, "q={q} n={n} add={add}");
            }
        }
    }

    /// Both paths against direct evaluation at the odd powers of ψ in bit-reversed order,
    /// for moduli from 20 to 62 bits (so the 64-bit path's lazy and corrected variants, and
    /// the inverse's intermediate reductions, all run), inputs at q − 1 and random.
    #[test]
    fn matches_direct_evaluation() {
        for (bits, n) in [
            (20u32, 64usize),
            (28, 256),
            (55, 256),
            (58, 512),
            (59, 256),
            (60, 128),
            (62, 64),
        ] {
            let q = ntt_prime(bits, n);
            let t = NttTable::new(q, n).unwrap();
            let m = t.modulus;
            let log_n = n.trailing_zeros();
            for x in [vec![q - 1; n], random_residues(q, n, 11 + bits as u64)] {
                let expect: Vec<u64> = (0..n)
                    .map(|j| {
                        let point = m.pow(t.psi, 2 * bit_reverse(j, log_n) as u64 + 1);
                        x.iter()
                            .rev()
                            .fold(0, |acc, &c| m.add(m.mul(acc, point), c))
                    })
                    .collect();
                let (mut a, mut w) = (x.clone(), x.clone());
                t.forward(&mut a);
                t.forward_u64(&mut w);
                assert_eq!(a, expect, "q={q} n={n}");
                assert_eq!(w, expect, "q={q} n={n}");
                t.inverse(&mut a);
                t.inverse_u64(&mut w);
                assert_eq!(a, x, "q={q} n={n}");
                assert_eq!(w, x, "q={q} n={n}");
            }
        }
    }

    /// The 64-bit path against the 32-bit one is covered above; here the 64-bit path's own
    /// round trip on large moduli, including the 2^62 bound.
    #[test]
    fn wide_moduli_round_trip() {
        for (bits, n) in [
            (55u32, 8192usize),
            (60, 4096),
            (62, 1024),
            (31, 2048),
            (40, 256),
        ] {
            let q = ntt_prime(bits, n);
            let t = NttTable::new(q, n).unwrap();
            for x in [vec![q - 1; n], random_residues(q, n, 7)] {
                let mut a = x.clone();
                t.forward(&mut a);
                assert!(a.iter().all(|&v| v < q));
                t.inverse(&mut a);
                assert_eq!(a, x, "q={q} n={n}");
            }
        }
    }
}
