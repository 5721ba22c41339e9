//! Word-size modular arithmetic: Barrett reduction, Shoup multiplication, primality and
//! primitive roots. Moduli are odd primes below 2^62 (Apple uses at most 60 bits).

/// A modulus with precomputed Barrett constants, so reductions avoid hardware division.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    /// The modulus value q (q < 2^62).
    pub value: u64,
    /// floor(2^128 / q), low word.
    barrett_lo: u64,
    /// floor(2^128 / q), high word.
    barrett_hi: u64,
}

impl Modulus {
    /// Precomputes Barrett constants for `value` (must be in 2..2^62).
    pub fn new(value: u64) -> Self {
        assert!(value > 1 && value < (1 << 62), "modulus out of range");
        // floor((2^128 - 1) / q) equals floor(2^128 / q) unless q divides 2^128 (q odd here).
        let r = u128::MAX / value as u128;
        Modulus {
            value,
            barrett_lo: r as u64,
            barrett_hi: (r >> 64) as u64,
        }
    }

    /// Reduces a 128-bit value modulo q.
    #[inline(always)]
    pub fn reduce_u128(&self, x: u128) -> u64 {
        let x0 = x as u64;
        let x1 = (x >> 64) as u64;
        let a = ((x0 as u128 * self.barrett_lo as u128) >> 64) as u64 as u128;
        let b = x0 as u128 * self.barrett_hi as u128;
        let c = x1 as u128 * self.barrett_lo as u128;
        let mid = a + (b as u64 as u128) + (c as u64 as u128);
        let qhat = x1
            .wrapping_mul(self.barrett_hi)
            .wrapping_add((b >> 64) as u64)
            .wrapping_add((c >> 64) as u64)
            .wrapping_add((mid >> 64) as u64);
        let mut r = x0.wrapping_sub(qhat.wrapping_mul(self.value));
        while r >= self.value {
            r -= self.value;
        }
        r
    }

    /// Reduces a 64-bit value modulo q.
    #[inline(always)]
    pub fn reduce(&self, x: u64) -> u64 {
        // floor(x * floor(2^128/q) / 2^128) with x < 2^64 only needs the high word plus a carry.
        let qhat = ((x as u128 * self.barrett_hi as u128)
            + ((x as u128 * self.barrett_lo as u128) >> 64))
            >> 64;
        let mut r = x.wrapping_sub((qhat as u64).wrapping_mul(self.value));
        while r >= self.value {
            r -= self.value;
        }
        r
    }

    /// (a · b) mod q for a, b < 2^64.
    #[inline(always)]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_u128(a as u128 * b as u128)
    }

    /// (a + b) mod q for a, b < q.
    #[inline(always)]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.value { s - self.value } else { s }
    }

    /// (a − b) mod q for a, b < q.
    #[inline(always)]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b { a - b } else { a + self.value - b }
    }

    /// (−a) mod q for a < q.
    #[inline(always)]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 { 0 } else { self.value - a }
    }

    /// a^e mod q.
    pub fn pow(&self, mut a: u64, mut e: u64) -> u64 {
        let mut r = 1 % self.value;
        a = self.reduce(a);
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        r
    }

    /// a^{-1} mod q (q prime), or None for a ≡ 0.
    pub fn inv(&self, a: u64) -> Option<u64> {
        let a = self.reduce(a);
        if a == 0 {
            None
        } else {
            Some(self.pow(a, self.value - 2))
        }
    }

    /// Shoup precomputation floor(w · 2^64 / q) for a constant w < q.
    #[inline(always)]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.value as u128) as u64
    }

    /// x · w mod q in [0, 2q) given w' = shoup(w); x may be any u64.
    #[inline(always)]
    pub fn mul_shoup_lazy(&self, x: u64, w: u64, w_shoup: u64) -> u64 {
        let qhat = ((x as u128 * w_shoup as u128) >> 64) as u64;
        x.wrapping_mul(w)
            .wrapping_sub(qhat.wrapping_mul(self.value))
    }

    /// x · w mod q in [0, q) given w' = shoup(w).
    #[inline(always)]
    pub fn mul_shoup(&self, x: u64, w: u64, w_shoup: u64) -> u64 {
        let r = self.mul_shoup_lazy(x, w, w_shoup);
        if r >= self.value { r - self.value } else { r }
    }

    /// ⌈log2 q⌉: bits per serialized coefficient.
    pub fn ceil_log2(&self) -> u32 {
        ceil_log2(self.value)
    }
}

/// ⌊w·2³²/q⌋ for w < q < 2³¹: the Shoup factor of w for 32-bit words.
#[inline(always)]
pub(crate) fn shoup32(w: u32, q: u32) -> u32 {
    (((w as u64) << 32) / q as u64) as u32
}

/// y·w mod q in [0, 2q) for any u32 y, given ws = shoup32(w) (q < 2³¹).
#[inline(always)]
pub(crate) fn mul_shoup32_lazy(y: u32, w: u32, ws: u32, q: u32) -> u32 {
    let qhat = ((y as u64 * ws as u64) >> 32) as u32;
    y.wrapping_mul(w).wrapping_sub(qhat.wrapping_mul(q))
}

/// x mod q for any u32 x, given mu = ⌊2³²/q⌋ (q < 2³¹): Barrett leaves r < 2q, one
/// conditional subtraction finishes it.
#[inline(always)]
pub(crate) fn barrett32(x: u32, q: u32, mu: u32) -> u32 {
    let qhat = ((x as u64 * mu as u64) >> 32) as u32;
    let r = x.wrapping_sub(qhat.wrapping_mul(q));
    r.min(r.wrapping_sub(q))
}

/// ⌊2³²/q⌋, the Barrett constant of [`barrett32`].
#[inline(always)]
pub(crate) fn barrett32_mu(q: u32) -> u32 {
    ((1u64 << 32) / q as u64) as u32
}

/// High word of the 128-bit product a·b, as one `mul` that the compiler cannot vectorize.
///
/// LLVM's loop vectorizer turns `((a as u128 * b as u128) >> 64)` in a loop into a
/// multi-instruction emulation on 32-bit vector lanes (SSE2/AVX2 have no 64×64-bit multiply),
/// which made the 64-bit NTT several times slower than scalar code. On x86-64 this is an
/// opaque `mul`; elsewhere the plain u128 expression.
#[inline(always)]
pub fn mul_hi_u64(a: u64, b: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let hi: u64;
        // SAFETY: `mul` (baseline x86-64) reads rax and one register and writes rdx:rax and
        // the flags, all declared; it touches no memory and no stack.
        unsafe {
            std::arch::asm!(
                "mul {b}",
                b = in(reg) b,
                inout("rax") a => _,
                out("rdx") hi,
                options(pure, nomem, nostack),
            );
        }
        hi
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        ((a as u128 * b as u128) >> 64) as u64
    }
}

/// ⌈log2 x⌉ for x ≥ 1.
pub fn ceil_log2(x: u64) -> u32 {
    if x <= 1 {
        0
    } else {
        64 - (x - 1).leading_zeros()
    }
}

/// ⌊log2 x⌋ for x ≥ 1.
pub fn floor_log2(x: u64) -> u32 {
    63 - x.leading_zeros()
}

/// Deterministic Miller–Rabin for 64-bit integers.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mut d = n - 1;
    let mut s = 0;
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    let mulm = |a: u64, b: u64| ((a as u128 * b as u128) % n as u128) as u64;
    let powm = |mut a: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mulm(r, a);
            }
            a = mulm(a, a);
            e >>= 1;
        }
        r
    };
    'outer: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = powm(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulm(x, x);
            if x == n - 1 {
                continue 'outer;
            }
        }
        return false;
    }
    true
}

/// The smallest primitive `degree`-th root of unity mod prime q (degree a power of two),
/// as Apple's `minPrimitiveRootOfUnity` returns; None when degree ∤ q − 1.
pub fn min_primitive_root(q: u64, degree: u64) -> Option<u64> {
    if degree < 2 || !degree.is_power_of_two() || !(q - 1).is_multiple_of(degree) {
        return None;
    }
    let m = Modulus::new(q);
    // Find any primitive root: g = x^((q-1)/degree) with g^(degree/2) = −1.
    let mut g = None;
    for x in 2..q {
        let c = m.pow(x, (q - 1) / degree);
        if m.pow(c, degree / 2) == q - 1 {
            g = Some(c);
            break;
        }
    }
    let g = g?;
    // All primitive roots are g^k for odd k.
    let g2 = m.mul(g, g);
    let mut cur = g;
    let mut best = g;
    for _ in 0..degree / 2 {
        if cur < best {
            best = cur;
        }
        cur = m.mul(cur, g2);
    }
    Some(best)
}

/// Reverses the low `bits` bits of `x`.
#[inline]
pub fn bit_reverse(x: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        x.reverse_bits() >> (usize::BITS - bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrett_matches_division() {
        for q in [
            17u64,
            134176769,
            268369921,
            1152921504606830593,
            (1 << 62) - 57,
        ] {
            let m = Modulus::new(q);
            let mut x: u128 = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321;
            for _ in 0..2000 {
                x = x
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                    .wrapping_add(1);
                assert_eq!(m.reduce_u128(x) as u128, x % q as u128);
                let y = x as u64;
                assert_eq!(m.reduce(y), y % q);
                let w = (x >> 70) as u64 % q;
                let ws = m.shoup(w);
                assert_eq!(
                    m.mul_shoup(y, w, ws) as u128,
                    (y as u128 * w as u128) % q as u128
                );
            }
            assert_eq!(m.reduce_u128(u128::MAX) as u128, u128::MAX % q as u128);
        }
    }

    #[test]
    fn mul_hi_matches_u128() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let y = x.rotate_left(29) ^ 0x5555;
            assert_eq!(mul_hi_u64(x, y), ((x as u128 * y as u128) >> 64) as u64);
        }
        assert_eq!(mul_hi_u64(u64::MAX, u64::MAX), u64::MAX - 1);
        assert_eq!(mul_hi_u64(0, u64::MAX), 0);
    }

    #[test]
    fn primes() {
        assert!(is_prime(1152921504606830593));
        assert!(!is_prime(1152921504606830591));
        assert!(is_prime(40961));
    }
}
