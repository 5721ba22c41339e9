//! BFV: plaintexts, secret keys, ciphertexts, encryption/decryption, key switching (Galois,
//! relinearization), modulus switching, plaintext×ciphertext and ciphertext×ciphertext products.

use std::collections::BTreeMap;

use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};
use rand_core::{CryptoRng, RngCore};

use crate::HeError;
use crate::arith::Modulus;
use crate::drbg::{NistAes128Ctr, SEED_LEN};
use crate::keyprod::{self, Mont32};
use crate::packing;
use crate::poly::{Context, Format, Poly, sample_cbd, sample_ternary};

/// A plaintext in coefficient encoding: n values below t (Apple's `Plaintext<_, Coeff>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plaintext {
    /// The n coefficients, each < t.
    pub coeffs: Vec<u64>,
}

impl Plaintext {
    /// Coefficient encoding of `values` (each < t, at most n), zero-padded to n.
    pub fn new(ctx: &Context, values: &[u64]) -> Result<Plaintext, HeError> {
        if values.len() > ctx.n {
            return Err(HeError::Mismatch("more values than coefficients"));
        }
        if let Some(&v) = values.iter().find(|&&v| v >= ctx.t()) {
            return Err(HeError::PlaintextOutOfRange(v));
        }
        let mut coeffs = values.to_vec();
        coeffs.resize(ctx.n, 0);
        Ok(Plaintext { coeffs })
    }

    /// Packs bytes MSB-first into ⌊log2 t⌋-bit coefficients (at most bytes_per_plaintext bytes).
    pub fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Plaintext, HeError> {
        let bits = ctx.params.bits_per_coeff();
        let coeffs = packing::bytes_to_coefficients(bytes, bits, false, 0)?;
        Plaintext::new(ctx, &coeffs)
    }

    /// The bytes carried by the coefficients (n·⌊log2 t⌋/8 bytes, MSB-first); the inverse of
    /// [`Plaintext::from_bytes`] up to zero padding.
    pub fn to_bytes(&self, ctx: &Context) -> Vec<u8> {
        let bits = ctx.params.bits_per_coeff();
        let mask = (1u64 << bits) - 1;
        let vals: Vec<u64> = self.coeffs.iter().map(|&c| c & mask).collect();
        let mut out = packing::coefficients_to_bytes(&vals, bits, 0).expect("valid width");
        out.truncate(ctx.params.bytes_per_plaintext());
        out
    }

    /// Eval-form plaintext over the first `k` moduli with Apple's centered lift (v ≥ ⌈t/2⌉ → v − t).
    pub fn to_eval(&self, ctx: &Context, k: usize) -> EvalPlaintext {
        let t = ctx.t();
        let threshold = t.div_ceil(2);
        let mut p = Poly::zero(ctx, k, Format::Coeff);
        for r in 0..k {
            let q = ctx.modulus(r).value;
            for (d, &v) in p.row_mut(r).iter_mut().zip(&self.coeffs) {
                *d = if v < threshold { v } else { v + (q - t) };
            }
        }
        p.forward_ntt(ctx).expect("Coeff form");
        EvalPlaintext { poly: p }
    }
}

/// A plaintext lifted to the ciphertext moduli and in Eval form, ready for pt×ct products
/// (the processed-database representation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalPlaintext {
    /// The lifted polynomial (Eval form).
    pub poly: Poly,
}

/// A ternary secret key, stored in Eval form over all L moduli.
#[derive(Clone, Debug)]
pub struct SecretKey {
    /// s in Eval form, basis 0..L.
    pub poly: Poly,
}

impl SecretKey {
    /// Samples a ternary key as Apple's `randomizeTernary` does.
    pub fn generate<R: RngCore + CryptoRng>(ctx: &Context, rng: &mut R) -> SecretKey {
        let l = ctx.moduli_count();
        let mut p = Poly::zero(ctx, l, Format::Coeff);
        sample_ternary(&ctx.params.moduli, ctx.n, &mut p.data, rng);
        p.forward_ntt(ctx).expect("Coeff form");
        SecretKey { poly: p }
    }

    /// The key restricted to the rows of `basis` (Eval).
    fn restricted(&self, basis: &[usize]) -> Poly {
        let n = self.poly.n;
        let mut data = Vec::with_capacity(basis.len() * n);
        for &b in basis {
            data.extend_from_slice(self.poly.row(b));
        }
        Poly {
            format: Format::Eval,
            basis: basis.to_vec(),
            n,
            data,
        }
    }
}

/// A BFV ciphertext: 2 (or 3 after a product) polynomials in one form over the same moduli.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    /// c_0, c_1 (, c_2).
    pub polys: Vec<Poly>,
    /// Apple's correction factor (1 for BFV in this crate).
    pub correction_factor: u64,
    /// Seed of c_1 while the ciphertext is fresh (enables seeded serialization); any
    /// operation that changes the ciphertext clears it.
    pub seed: Option<[u8; SEED_LEN]>,
}

impl Ciphertext {
    /// The form of the polynomials.
    pub fn format(&self) -> Format {
        self.polys[0].format
    }

    /// Number of RNS moduli.
    pub fn moduli_count(&self) -> usize {
        self.polys[0].basis.len()
    }

    /// A transparent zero ciphertext (2 polys) over the first k moduli.
    pub fn zero(ctx: &Context, k: usize, format: Format) -> Ciphertext {
        let p = Poly::zero(ctx, k, format);
        Ciphertext {
            polys: vec![p.clone(), p],
            correction_factor: 1,
            seed: None,
        }
    }

    /// Converts every polynomial to `format`.
    pub fn convert_to(&mut self, ctx: &Context, format: Format) {
        if self.format() != format {
            for p in &mut self.polys {
                p.convert_to(ctx, format);
            }
        }
    }

    fn check(&self, other: &Ciphertext) -> Result<(), HeError> {
        if self.polys[0].basis != other.polys[0].basis || self.format() != other.format() {
            return Err(HeError::Mismatch("ciphertext moduli or format differ"));
        }
        if self.correction_factor != other.correction_factor {
            return Err(HeError::Mismatch("correction factors differ"));
        }
        Ok(())
    }

    /// self += other (same form and moduli; poly counts may differ).
    pub fn add_assign(&mut self, ctx: &Context, other: &Ciphertext) -> Result<(), HeError> {
        self.check(other)?;
        while self.polys.len() < other.polys.len() {
            let z = Poly::zero_with_basis(ctx, self.polys[0].basis.clone(), self.format());
            self.polys.push(z);
        }
        for (a, b) in self.polys.iter_mut().zip(&other.polys) {
            a.add_assign(ctx, b)?;
        }
        self.seed = None;
        Ok(())
    }

    /// self −= other.
    pub fn sub_assign(&mut self, ctx: &Context, other: &Ciphertext) -> Result<(), HeError> {
        self.check(other)?;
        while self.polys.len() < other.polys.len() {
            let z = Poly::zero_with_basis(ctx, self.polys[0].basis.clone(), self.format());
            self.polys.push(z);
        }
        for (a, b) in self.polys.iter_mut().zip(&other.polys) {
            a.sub_assign(ctx, b)?;
        }
        self.seed = None;
        Ok(())
    }

    /// self = −self.
    pub fn neg_assign(&mut self, ctx: &Context) {
        for p in &mut self.polys {
            p.neg_assign(ctx);
        }
        self.seed = None;
    }

    /// Multiplies every polynomial by X^power (Coeff form).
    pub fn multiply_power_of_x(&mut self, ctx: &Context, power: i64) -> Result<(), HeError> {
        for p in &mut self.polys {
            p.multiply_power_of_x(ctx, power)?;
        }
        self.seed = None;
        Ok(())
    }

    /// Multiplies by an integer scalar.
    pub fn mul_scalar_assign(&mut self, ctx: &Context, c: u64) {
        for p in &mut self.polys {
            p.mul_scalar_assign(ctx, c);
        }
        self.seed = None;
    }

    /// ct ⊙ pt (Eval ciphertext and Eval plaintext over the same moduli).
    pub fn mul_plain(&self, ctx: &Context, pt: &EvalPlaintext) -> Result<Ciphertext, HeError> {
        let mut out = self.clone();
        for p in &mut out.polys {
            p.mul_assign(ctx, &pt.poly)?;
        }
        out.seed = None;
        Ok(out)
    }

    /// Divides by the last modulus with rounding (Apple's `modSwitchDown`); result in Coeff form.
    pub fn mod_switch_down(&mut self, ctx: &Context) -> Result<(), HeError> {
        if self.moduli_count() < 2 {
            return Err(HeError::Mismatch("cannot mod-switch below one modulus"));
        }
        self.convert_to(ctx, Format::Coeff);
        for p in &mut self.polys {
            p.divide_and_round_q_last(ctx)?;
        }
        self.seed = None;
        Ok(())
    }

    /// Mod-switches down to q_0 alone (Apple's `modSwitchDownToSingle`); result in Coeff form.
    pub fn mod_switch_down_to_single(&mut self, ctx: &Context) -> Result<(), HeError> {
        self.convert_to(ctx, Format::Coeff);
        while self.moduli_count() > 1 {
            self.mod_switch_down(ctx)?;
        }
        Ok(())
    }
}

fn rounding_term(ctx: &Context, k: usize, m: &[u64]) -> Poly {
    // ⌊q/t⌋·m + ⌊((q mod t)·m + ⌈t/2⌉)/t⌋ with q = q_0⋯q_{k−1} (Apple's `plaintextTranslate`).
    let t = ctx.t();
    let q: BigUint = (0..k)
        .map(|i| BigUint::from(ctx.modulus(i).value))
        .product();
    let q_mod_t = (&q % t).to_u64().expect("< t");
    let q_div_t = &q / t;
    let threshold = t.div_ceil(2);
    let adjust: Vec<u64> = m
        .iter()
        .map(|&v| ((q_mod_t as u128 * v as u128 + threshold as u128) / t as u128) as u64)
        .collect();
    let mut p = Poly::zero(ctx, k, Format::Coeff);
    for r in 0..k {
        let md = *ctx.modulus(r);
        let delta = (&q_div_t % md.value).to_u64().expect("< q");
        let ds = md.shoup(delta);
        for ((d, &v), &a) in p.row_mut(r).iter_mut().zip(m).zip(&adjust) {
            *d = md.add(md.mul_shoup(md.reduce(v), delta, ds), md.reduce(a));
        }
    }
    p
}

/// Encryption of zero over `basis` under `sk`, with `a` expanded from a fresh seed in Eval form
/// (Apple's `encryptZero`). Returns (c0, c1) in Eval form and the seed.
fn encrypt_zero_eval<R: RngCore + CryptoRng>(
    ctx: &Context,
    sk: &SecretKey,
    basis: &[usize],
    rng: &mut R,
) -> (Poly, Poly, [u8; SEED_LEN]) {
    let mut seed = [0u8; SEED_LEN];
    rng.fill_bytes(&mut seed);
    let mut arng = NistAes128Ctr::new(&seed);
    let a = Poly::random_uniform(ctx, basis.to_vec(), Format::Eval, &mut arng);
    let mut e = Poly::zero_with_basis(ctx, basis.to_vec(), Format::Coeff);
    let moduli: Vec<u64> = basis.iter().map(|&i| ctx.modulus(i).value).collect();
    sample_cbd(&moduli, ctx.n, &mut e.data, rng);
    e.forward_ntt(ctx).expect("Coeff");
    let mut c0 = a.clone();
    c0.mul_assign(ctx, &sk.restricted(basis))
        .expect("same basis");
    c0.add_assign(ctx, &e).expect("same basis");
    c0.neg_assign(ctx);
    (c0, a, seed)
}

/// Encrypts `pt` under `sk` over the ciphertext moduli; Coeff form with the seed retained (so it
/// serializes as Apple's seeded ciphertext, like the client's queries).
pub fn encrypt<R: RngCore + CryptoRng>(
    ctx: &Context,
    pt: &Plaintext,
    sk: &SecretKey,
    rng: &mut R,
) -> Ciphertext {
    let k = ctx.ciphertext_moduli_count();
    let basis: Vec<usize> = (0..k).collect();
    let (mut c0, mut c1, seed) = encrypt_zero_eval(ctx, sk, &basis, rng);
    c0.inverse_ntt(ctx).expect("Eval");
    c1.inverse_ntt(ctx).expect("Eval");
    c0.add_assign(ctx, &rounding_term(ctx, k, &pt.coeffs))
        .expect("same basis");
    Ciphertext {
        polys: vec![c0, c1],
        correction_factor: 1,
        seed: Some(seed),
    }
}

/// Basis helper: CRT composition of residues into [0, Q) with precomputed constants.
struct Crt {
    q: BigUint,
    /// (Q/q_i)·((Q/q_i)^{-1} mod q_i) for each i.
    coefs: Vec<BigUint>,
}

impl Crt {
    fn new(moduli: Vec<Modulus>) -> Crt {
        let q: BigUint = moduli.iter().map(|m| BigUint::from(m.value)).product();
        let coefs = moduli
            .iter()
            .map(|m| {
                let qi = &q / m.value;
                let r = (&qi % BigUint::from(m.value)).to_u64().expect("< q_i");
                qi * m.inv(r).expect("coprime")
            })
            .collect();
        Crt { q, coefs }
    }

    fn compose(&self, residues: impl Iterator<Item = u64>) -> BigUint {
        let mut x = BigUint::zero();
        for (r, c) in residues.zip(&self.coefs) {
            x += c * r;
        }
        x % &self.q
    }
}

/// log2 of a positive big integer, to f64 precision.
fn big_log2(x: &BigUint) -> f64 {
    let b = x.bits();
    let shift = b.saturating_sub(64);
    (x >> shift).to_f64().unwrap_or(1.0).log2() + shift as f64
}

/// c_0 + c_1·s (+ c_2·s²) in Coeff form over the ciphertext's moduli.
fn dot_product(ctx: &Context, ct: &Ciphertext, sk: &SecretKey) -> Result<Poly, HeError> {
    let mut ct = ct.clone();
    ct.convert_to(ctx, Format::Eval);
    let basis = ct.polys[0].basis.clone();
    let s = sk.restricted(&basis);
    let mut acc = ct.polys[0].clone();
    let mut spow = s.clone();
    for (i, c) in ct.polys.iter().enumerate().skip(1) {
        acc.mul_add_assign(ctx, c, &spow)?;
        if i + 1 < ct.polys.len() {
            spow.mul_assign(ctx, &s)?;
        }
    }
    acc.inverse_ntt(ctx)?;
    Ok(acc)
}

/// Decrypts: m = ⌊t/Q·(c_0 + c_1·s + …)⌉ · corr⁻¹ mod t.
pub fn decrypt(ctx: &Context, ct: &Ciphertext, sk: &SecretKey) -> Result<Plaintext, HeError> {
    let v = dot_product(ctx, ct, sk)?;
    let crt = Crt::new(v.basis.iter().map(|&i| *ctx.modulus(i)).collect());
    let t = ctx.t();
    let tm = Modulus::new(t);
    let corr_inv = tm
        .inv(ct.correction_factor)
        .ok_or(HeError::Mismatch("correction factor not invertible"))?;
    let n = ctx.n;
    let k = v.basis.len();
    let half_q = &crt.q >> 1;
    let mut coeffs = Vec::with_capacity(n);
    for i in 0..n {
        let x = crt.compose((0..k).map(|r| v.data[r * n + i]));
        let m: BigUint = ((x * t + &half_q) / &crt.q) % t;
        coeffs.push(tm.mul(m.to_u64().expect("< t"), corr_inv));
    }
    Ok(Plaintext { coeffs })
}

/// Remaining noise budget in bits (Apple's `noiseBudget`, SEAL definition): log2(Q / (2·‖[t·v]_Q‖∞)).
/// Never reveal it to another party.
pub fn noise_budget(ctx: &Context, ct: &Ciphertext, sk: &SecretKey) -> Result<f64, HeError> {
    let v = dot_product(ctx, ct, sk)?;
    let crt = Crt::new(v.basis.iter().map(|&i| *ctx.modulus(i)).collect());
    let n = ctx.n;
    let k = v.basis.len();
    let t = ctx.t();
    let mut max = BigUint::zero();
    for i in 0..n {
        let x = crt.compose((0..k).map(|r| v.data[r * n + i])) * t % &crt.q;
        let c = if &x + &x > crt.q { &crt.q - &x } else { x };
        if c > max {
            max = c;
        }
    }
    if max.is_zero() {
        return Ok(f64::INFINITY);
    }
    let lq = big_log2(&crt.q);
    let lm = big_log2(&max);
    Ok(lq - lm - 1.0)
}

/// A key-switching key: one ciphertext per ciphertext modulus, each 2 Eval polys over all L
/// moduli (`k_i = (−(a_i s + e_i) + (P mod q_i)·s′ in row i, a_i)`), with seeds kept for
/// seeded serialization.
#[derive(Clone, Debug, Default)]
pub struct KeySwitchKey {
    /// The L−1 ciphertexts.
    pub ciphertexts: Vec<Ciphertext>,
    /// 32-bit key rows, built on first Eval key switch (moduli < 2^30).
    rows32: std::sync::OnceLock<Option<KeyRows32>>,
}

impl PartialEq for KeySwitchKey {
    fn eq(&self, other: &Self) -> bool {
        self.ciphertexts == other.ciphertexts
    }
}

impl Eq for KeySwitchKey {}

/// The key's Eval rows as u32 in Montgomery form (w·2^32 mod q), laid out
/// `((j·2 + p)·L + modulus)·n`: half the bytes of u64 rows, and one Montgomery reduction per
/// coefficient for the whole digit sum (see [`crate::keyprod`]).
#[derive(Clone, Debug)]
struct KeyRows32 {
    rows: Vec<u32>,
    mont: Vec<Mont32>,
    l: usize,
}

/// ⌊w·2³²/q⌋ for w < q < 2³¹.
#[inline(always)]
fn shoup32(w: u32, q: u32) -> u32 {
    (((w as u64) << 32) / q as u64) as u32
}

/// y·w mod q in [0, 2q) for any u32 y, given ws = shoup32(w) (q < 2³¹).
#[inline(always)]
fn mul_shoup32_lazy(y: u32, w: u32, ws: u32, q: u32) -> u32 {
    let qhat = ((y as u64 * ws as u64) >> 32) as u32;
    y.wrapping_mul(w).wrapping_sub(qhat.wrapping_mul(q))
}

/// x mod q for any u32 x, given mu = ⌊2³²/q⌋ (q < 2³¹): Barrett leaves r < 2q.
#[inline(always)]
fn barrett32(x: u32, q: u32, mu: u32) -> u32 {
    let qhat = ((x as u64 * mu as u64) >> 32) as u32;
    let r = x.wrapping_sub(qhat.wrapping_mul(q));
    r.min(r.wrapping_sub(q))
}

/// ⌊2³²/q⌋.
#[inline(always)]
fn barrett32_mu(q: u32) -> u32 {
    ((1u64 << 32) / q as u64) as u32
}

impl KeySwitchKey {
    /// Wraps key-switching ciphertexts (each 2 Eval polys over all L moduli).
    pub fn new(ciphertexts: Vec<Ciphertext>) -> KeySwitchKey {
        KeySwitchKey {
            ciphertexts,
            rows32: std::sync::OnceLock::new(),
        }
    }

    /// The 32-bit rows, when every modulus is below 2^30 and there are fewer than 16 digits
    /// (so a sum of digit products fits a u64).
    fn rows32(&self, ctx: &Context) -> Option<&KeyRows32> {
        self.rows32
            .get_or_init(|| {
                let l = ctx.moduli_count();
                let n = ctx.n;
                if (0..l).any(|i| ctx.modulus(i).value >= (1 << 30)) || self.ciphertexts.len() >= 16
                {
                    return None;
                }
                let mont = (0..l)
                    .map(|i| Mont32::new(ctx.modulus(i).value as u32))
                    .collect::<Option<Vec<_>>>()?;
                let mut rows = Vec::with_capacity(self.ciphertexts.len() * 2 * l * n);
                for ct in &self.ciphertexts {
                    if ct.polys.len() != 2 || ct.polys.iter().any(|p| p.basis.len() != l) {
                        return None;
                    }
                    for p in &ct.polys {
                        for (mi, m) in mont.iter().enumerate() {
                            rows.extend(p.row(mi).iter().map(|&w| m.to_mont(w as u32)));
                        }
                    }
                }
                Some(KeyRows32 { rows, mont, l })
            })
            .as_ref()
    }
}

impl KeySwitchKey {
    /// Generates a key switching from `current` (Eval, basis 0..L) to `sk` (Apple's
    /// `_generateKeySwitchKey`).
    pub fn generate<R: RngCore + CryptoRng>(
        ctx: &Context,
        current: &Poly,
        sk: &SecretKey,
        rng: &mut R,
    ) -> Result<KeySwitchKey, HeError> {
        let l = ctx.moduli_count();
        if l < 2 {
            return Err(HeError::InvalidParameters(
                "key switching needs ≥ 2 moduli".into(),
            ));
        }
        if current.format != Format::Eval || current.basis.len() != l {
            return Err(HeError::Mismatch(
                "switched key must be Eval over all moduli",
            ));
        }
        let basis: Vec<usize> = (0..l).collect();
        let p = ctx.modulus(l - 1).value;
        let mut cts = Vec::with_capacity(l - 1);
        for i in 0..l - 1 {
            let (mut c0, c1, seed) = encrypt_zero_eval(ctx, sk, &basis, rng);
            let m = *ctx.modulus(i);
            let f = m.reduce(p);
            let fs = m.shoup(f);
            let n = ctx.n;
            let cur = current.row(i);
            for (d, &s) in c0.data[i * n..(i + 1) * n].iter_mut().zip(cur) {
                *d = m.add(*d, m.mul_shoup(s, f, fs));
            }
            cts.push(Ciphertext {
                polys: vec![c0, c1],
                correction_factor: 1,
                seed: Some(seed),
            });
        }
        Ok(KeySwitchKey::new(cts))
    }

    /// Apple's `computeKeySwitchingUpdate`: for `target` over k ciphertext moduli, returns
    /// (u_0, u_1) in Coeff form over the same moduli with u_0 + u_1·s ≈ target·s′.
    pub fn switch(&self, ctx: &Context, target: &Poly) -> Result<[Poly; 2], HeError> {
        let l = ctx.moduli_count();
        let k = target.basis.len();
        if k + 1 > l || self.ciphertexts.len() < k || target.basis != (0..k).collect::<Vec<_>>() {
            return Err(HeError::Mismatch("key-switching target moduli"));
        }
        let owned;
        let tc = if target.format == Format::Coeff {
            target
        } else {
            let mut c = target.clone();
            c.convert_to(ctx, Format::Coeff);
            owned = c;
            &owned
        };
        let n = ctx.n;
        // NTT of row j in its own modulus equals the Eval form of the target row j.
        let target_eval = if target.format == Format::Eval {
            target.clone()
        } else {
            let mut e = target.clone();
            e.forward_ntt(ctx)?;
            e
        };
        let mut ext_basis: Vec<usize> = (0..k).collect();
        ext_basis.push(l - 1);
        let mut out = [
            Poly::zero_with_basis(ctx, ext_basis.clone(), Format::Eval),
            Poly::zero_with_basis(ctx, ext_basis.clone(), Format::Eval),
        ];
        // With moduli below 2^30 the k products fit a u64 accumulator (k < 16).
        let small = k < 16 && ext_basis.iter().all(|&i| ctx.modulus(i).value < (1 << 30));
        let mut acc0 = vec![0u128; if small { 0 } else { n }];
        let mut acc1 = vec![0u128; if small { 0 } else { n }];
        let mut acc0s = vec![0u64; if small { n } else { 0 }];
        let mut acc1s = vec![0u64; if small { n } else { 0 }];
        let mut buf = vec![0u64; n];
        for (r, &mi) in ext_basis.iter().enumerate() {
            let m = *ctx.modulus(mi);
            acc0.fill(0);
            acc1.fill(0);
            acc0s.fill(0);
            acc1s.fill(0);
            for j in 0..k {
                if j == r {
                    buf.copy_from_slice(target_eval.row(j));
                } else {
                    for (b, &x) in buf.iter_mut().zip(tc.row(j)) {
                        *b = m.reduce(x);
                    }
                    ctx.ntt(mi).forward(&mut buf);
                }
                let key = &self.ciphertexts[j];
                let k0 = key.polys[0].row(mi);
                let k1 = key.polys[1].row(mi);
                if small {
                    for ((((a0, a1), &b), &x0), &x1) in acc0s
                        .iter_mut()
                        .zip(acc1s.iter_mut())
                        .zip(&buf)
                        .zip(k0)
                        .zip(k1)
                    {
                        *a0 += b * x0;
                        *a1 += b * x1;
                    }
                } else {
                    for ((((a0, a1), &b), &x0), &x1) in acc0
                        .iter_mut()
                        .zip(acc1.iter_mut())
                        .zip(&buf)
                        .zip(k0)
                        .zip(k1)
                    {
                        *a0 += b as u128 * x0 as u128;
                        *a1 += b as u128 * x1 as u128;
                    }
                }
            }
            if small {
                for (d, &a) in out[0].row_mut(r).iter_mut().zip(&acc0s) {
                    *d = m.reduce(a);
                }
                for (d, &a) in out[1].row_mut(r).iter_mut().zip(&acc1s) {
                    *d = m.reduce(a);
                }
            } else {
                for (d, &a) in out[0].row_mut(r).iter_mut().zip(&acc0) {
                    *d = m.reduce_u128(a);
                }
                for (d, &a) in out[1].row_mut(r).iter_mut().zip(&acc1) {
                    *d = m.reduce_u128(a);
                }
            }
        }
        for p in &mut out {
            p.inverse_ntt(ctx)?;
            p.divide_and_round_q_last(ctx)?;
        }
        Ok(out)
    }
}

/// Galois keys (by Galois element) and an optional relinearization key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvaluationKey {
    /// Galois element → key switching σ_g(s) to s.
    pub galois: BTreeMap<usize, KeySwitchKey>,
    /// Key switching s² to s.
    pub relin: Option<KeySwitchKey>,
}

impl EvaluationKey {
    /// Generates keys for `galois_elements` and, if asked, relinearization (Apple's
    /// `generateEvaluationKey`).
    pub fn generate<R: RngCore + CryptoRng>(
        ctx: &Context,
        sk: &SecretKey,
        galois_elements: &[usize],
        relin: bool,
        rng: &mut R,
    ) -> Result<EvaluationKey, HeError> {
        let mut galois = BTreeMap::new();
        for &g in galois_elements {
            if galois.contains_key(&g) {
                continue;
            }
            let switched = sk.poly.apply_galois(ctx, g)?;
            galois.insert(g, KeySwitchKey::generate(ctx, &switched, sk, rng)?);
        }
        let relin = if relin {
            let mut s2 = sk.poly.clone();
            s2.mul_assign(ctx, &sk.poly)?;
            Some(KeySwitchKey::generate(ctx, &s2, sk, rng)?)
        } else {
            None
        };
        Ok(EvaluationKey { galois, relin })
    }
}

/// Applies X → X^g to a 2-poly ciphertext and switches back to s; result in Coeff form.
pub fn apply_galois(
    ctx: &Context,
    ct: &Ciphertext,
    g: usize,
    key: &EvaluationKey,
) -> Result<Ciphertext, HeError> {
    let ksk = key
        .galois
        .get(&g)
        .ok_or_else(|| HeError::MissingKey(format!("Galois element {g}")))?;
    apply_galois_with(ctx, ct, g, ksk)
}

/// [`apply_galois`] with an explicit key-switching key for element g.
pub fn apply_galois_with(
    ctx: &Context,
    ct: &Ciphertext,
    g: usize,
    ksk: &KeySwitchKey,
) -> Result<Ciphertext, HeError> {
    if ct.polys.len() != 2 {
        return Err(HeError::Mismatch("Galois needs a 2-polynomial ciphertext"));
    }
    if ct.correction_factor != 1 {
        return Err(HeError::Mismatch("Galois needs correction factor 1"));
    }
    let mut c = ct.clone();
    c.convert_to(ctx, Format::Coeff);
    let mut c0 = c.polys[0].apply_galois(ctx, g)?;
    let c1 = c.polys[1].apply_galois(ctx, g)?;
    let [u0, u1] = ksk.switch(ctx, &c1)?;
    c0.add_assign(ctx, &u0)?;
    Ok(Ciphertext {
        polys: vec![c0, u1],
        correction_factor: 1,
        seed: None,
    })
}

/// Relinearizes a 3-poly ciphertext to 2 polys; result in Coeff form.
pub fn relinearize(
    ctx: &Context,
    ct: &Ciphertext,
    key: &EvaluationKey,
) -> Result<Ciphertext, HeError> {
    let ksk = key
        .relin
        .as_ref()
        .ok_or_else(|| HeError::MissingKey("relinearization".into()))?;
    if ct.polys.len() != 3 {
        return Err(HeError::Mismatch("relinearization needs 3 polynomials"));
    }
    let mut c = ct.clone();
    c.convert_to(ctx, Format::Coeff);
    let [u0, u1] = relin_products(ctx, ksk, &c.polys[2])?;
    let mut polys = c.polys;
    polys.truncate(2);
    polys[0].add_assign(ctx, &u0)?;
    polys[1].add_assign(ctx, &u1)?;
    Ok(Ciphertext {
        polys,
        correction_factor: ct.correction_factor,
        seed: None,
    })
}

/// The key switch of relinearization, (u₀, u₁) in Coeff form: through the Eval-form key switch
/// (same integers as [`KeySwitchKey::switch`], a third of its time at n = 4096) when the target
/// is over the first ciphertext moduli, else the generic switch.
fn relin_products(ctx: &Context, ksk: &KeySwitchKey, c2: &Poly) -> Result<[Poly; 2], HeError> {
    let k = c2.basis.len();
    if c2.basis.iter().copied().ne(0..k) || k + 1 > ctx.moduli_count() {
        return ksk.switch(ctx, c2);
    }
    let mut eval = c2.clone();
    eval.forward_ntt(ctx)?;
    let mut u0 = Poly::zero(ctx, k, Format::Eval);
    let mut u1 = Poly::zero(ctx, k, Format::Eval);
    ksk.switch_eval(
        ctx,
        k,
        &c2.data,
        &eval.data,
        &mut u0.data,
        &mut u1.data,
        &mut SwitchScratch::default(),
    )?;
    u0.inverse_ntt(ctx)?;
    u1.inverse_ntt(ctx)?;
    Ok([u0, u1])
}

/// Mixed-radix (Garner) conversion for one RNS basis: x = d_0 + p_0·(d_1 + p_1·(d_2 + …)),
/// using only word operations, plus the digits of ⌊P/2⌋ to detect the negative half.
struct Garner {
    moduli: Vec<Modulus>,
    /// inv[j][i] = p_i^{-1} mod p_j for i < j.
    inv: Vec<Vec<u64>>,
    /// Shoup factors of `inv`.
    inv_shoup: Vec<Vec<u64>>,
    half: Vec<u64>,
}

impl Garner {
    fn new(moduli: Vec<Modulus>) -> Garner {
        let inv: Vec<Vec<u64>> = (0..moduli.len())
            .map(|j| {
                (0..j)
                    .map(|i| moduli[j].inv(moduli[i].value).expect("coprime"))
                    .collect()
            })
            .collect();
        let p: BigUint = moduli.iter().map(|m| BigUint::from(m.value)).product();
        let half: BigUint = &p >> 1usize;
        let inv_shoup = inv
            .iter()
            .zip(&moduli)
            .map(|(row, m): (&Vec<u64>, &Modulus)| row.iter().map(|&w| m.shoup(w)).collect())
            .collect();
        let mut g = Garner {
            moduli,
            inv,
            inv_shoup,
            half: Vec::new(),
        };
        let residues: Vec<u64> = g
            .moduli
            .iter()
            .map(|m| (&half % BigUint::from(m.value)).to_u64().expect("< p"))
            .collect();
        let mut digits = vec![0u64; residues.len()];
        g.digits(&residues, &mut digits);
        g.half = digits;
        g
    }

    fn digits(&self, residues: &[u64], d: &mut [u64]) {
        for j in 0..self.moduli.len() {
            let m = &self.moduli[j];
            let mut v = residues[j];
            for ((&di, &inv), &inv_s) in d[..j].iter().zip(&self.inv[j]).zip(&self.inv_shoup[j]) {
                v = m.mul_shoup(m.sub(v, m.reduce(di)), inv, inv_s);
            }
            d[j] = v;
        }
    }

    /// Whether the digits encode a value above ⌊P/2⌋ (the negative half).
    fn is_negative(&self, d: &[u64]) -> bool {
        for j in (0..d.len()).rev() {
            if d[j] != self.half[j] {
                return d[j] > self.half[j];
            }
        }
        false
    }
}

/// Σ_{i in range} d_i·Π_{l<i, l in range} p_l mod m (Horner over `digits[range]`).
fn horner_mod(m: &Modulus, digits: &[u64], radices: &[u64]) -> u64 {
    let mut acc = 0u64;
    for i in (0..digits.len()).rev() {
        acc = m.add(m.mul(acc, radices[i]), m.reduce(digits[i]));
    }
    acc
}

/// out[i] = x[i] mod q for any u64 x and q < 2^30, in 32-bit lanes: x = h·2^32 + l ↦
/// (h mod q)·(2^32 mod q) + l mod q (Barrett and Shoup on u32); AVX2 when present.
pub fn reduce_u64_rows32(q: u32, out: &mut [u64], x: &[u64]) {
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
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2(q: u32, out: &mut [u64], x: &[u64]) {
            body(q, out, x)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked above); `avx2` is safe Rust built with AVX2.
            unsafe { avx2(q, out, x) };
            return;
        }
    }
    body(q, out, x)
}

/// Precomputation for exact tensoring over the first k ciphertext moduli: the extended basis
/// (q_0..q_{k−1} plus the auxiliary primes), mixed-radix converters and the constants of the
/// final ⌊t·x/Q⌉ step.
struct TensorPlan {
    k: usize,
    ext: Vec<usize>,
    ext_moduli: Vec<Modulus>,
    gq: Garner,
    gext: Garner,
    /// Per extended modulus: radices p_i mod m (i < k) and Q mod m.
    q_mod: Vec<(Vec<u64>, u64)>,
    /// Per output modulus q_r: radices of the auxiliary digits, t mod q_r, t·B mod q_r.
    out_consts: Vec<(Vec<u64>, u64, u64)>,
    qf: Vec<f64>,
    /// How many products can be summed before the centered sum may leave the extended range.
    capacity: usize,
    /// 32-bit lift constants when every extended modulus is below 2^30.
    small: Option<SmallLift>,
}

/// Constants of the 32-bit centered lift: Garner inverses and radices with Shoup factors.
struct SmallLift {
    /// inv[j][i] = (q_i^{-1} mod q_j, shoup) for i < j < k.
    inv: Vec<Vec<(u32, u32)>>,
    /// Mixed-radix digits of ⌊Q/2⌋.
    half: Vec<u32>,
    /// Per auxiliary row: (q_i mod m, shoup) for i < k, and Q mod m.
    aux: Vec<(Vec<(u32, u32)>, u32)>,
    /// Garner inverses over the whole extended basis (as `inv`), for the scale-down.
    ext_inv: Vec<Vec<(u32, u32)>>,
    /// Mixed-radix digits of ⌊Q·B/2⌋ over the extended basis.
    ext_half: Vec<u32>,
    /// Per output modulus q_r (r < k): radices of the auxiliary digits with Shoup factors,
    /// (t mod q_r, shoup), and t·B mod q_r.
    out: Vec<ScaleOut>,
}

/// Constants of one output modulus of the scale-down: auxiliary radices with Shoup factors,
/// (t mod q_r, Shoup factor), t·B mod q_r.
type ScaleOut = (Vec<(u32, u32)>, (u32, u32), u32);

/// Garner (mixed-radix) digits of n values given by their residue rows `coeff` (u64 words below
/// each modulus), in 32-bit lanes: digit row j of `digits` is v_j with
/// x = v_0 + p_0·(v_1 + p_1·(…)). `inv[j][i]` = (p_i⁻¹ mod p_j, Shoup factor).
#[inline(always)]
fn garner_digits32(
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
fn above_half32(digits: &[u32], half: &[u32], n: usize) -> Vec<u32> {
    let mut gt = vec![0u32; n];
    let mut eq = vec![1u32; n];
    for j in (0..half.len()).rev() {
        let h = half[j];
        for ((g, e), &d) in gt
            .iter_mut()
            .zip(eq.iter_mut())
            .zip(&digits[j * n..(j + 1) * n])
        {
            *g |= *e & (d > h) as u32;
            *e &= (d == h) as u32;
        }
    }
    gt
}

/// (a·w + b) mod q for a < 2^32 in a u64 word (low half used), b < q, Shoup factor ws of w:
/// the Horner step of the lifts, written on u64 lanes so that the products map to `vpmuludq`.
#[inline(always)]
fn horner_step64(a: u64, w: u64, ws: u64, b: u64, q: u64) -> u64 {
    const LO: u64 = 0xffff_ffff;
    let v = a & LO;
    let qhat = (v * ws) >> 32;
    let r = ((v * w).wrapping_sub(qhat * q)) & LO;
    let r = if r >= q { r - q } else { r };
    let s = r + b;
    if s >= q { s - q } else { s }
}

impl TensorPlan {
    fn new(ctx: &Context, k: usize) -> TensorPlan {
        let mut ext: Vec<usize> = (0..k).collect();
        ext.extend(ctx.aux_indices());
        let ext_moduli: Vec<Modulus> = ext.iter().map(|&i| *ctx.modulus(i)).collect();
        let gq = Garner::new(ext_moduli[..k].to_vec());
        let gext = Garner::new(ext_moduli.clone());
        let radix = |m: &Modulus, ps: &[Modulus]| {
            ps.iter().map(|p| m.reduce(p.value)).collect::<Vec<u64>>()
        };
        let q_mod: Vec<(Vec<u64>, u64)> = ext_moduli
            .iter()
            .map(|m| {
                let r = radix(m, &ext_moduli[..k]);
                let q = r.iter().fold(1u64, |acc, &x| m.mul(acc, x));
                (r, q)
            })
            .collect();
        let t = ctx.t();
        let out_consts: Vec<(Vec<u64>, u64, u64)> = (0..k)
            .map(|r| {
                let m = &ext_moduli[r];
                let rad = radix(m, &ext_moduli[k..]);
                let b = rad.iter().fold(1u64, |acc, &x| m.mul(acc, x));
                let tm = m.reduce(t);
                (rad, tm, m.mul(tm, b))
            })
            .collect();
        let qf = ext_moduli[..k].iter().map(|m| m.value as f64).collect();
        // |Σ of c products| ≤ c·n·Q²/2 must stay below Q·B/2: c < B/(n·Q).
        let bits = |ms: &[Modulus]| -> f64 { ms.iter().map(|m| (m.value as f64).log2()).sum() };
        let spare = bits(&ext_moduli[k..]) - bits(&ext_moduli[..k]) - (ctx.n as f64).log2() - 1.0;
        let capacity = if spare >= 40.0 {
            1usize << 40
        } else if spare >= 0.0 {
            (spare.exp2() as usize).max(1)
        } else {
            1
        };
        let small = if ext_moduli.iter().all(|m| m.value < (1 << 30)) {
            let sh = |m: &Modulus, w: u64| (w as u32, shoup32(w as u32, m.value as u32));
            Some(SmallLift {
                inv: (0..k)
                    .map(|j| {
                        let m = &ext_moduli[j];
                        gq.inv[j].iter().map(|&w| sh(m, w)).collect()
                    })
                    .collect(),
                half: gq.half.iter().map(|&h| h as u32).collect(),
                aux: (k..ext_moduli.len())
                    .map(|j| {
                        let m = &ext_moduli[j];
                        let (rad, qm) = &q_mod[j];
                        (rad.iter().map(|&w| sh(m, w)).collect(), *qm as u32)
                    })
                    .collect(),
                ext_inv: (0..ext_moduli.len())
                    .map(|j| {
                        let m = &ext_moduli[j];
                        gext.inv[j].iter().map(|&w| sh(m, w)).collect()
                    })
                    .collect(),
                ext_half: gext.half.iter().map(|&h| h as u32).collect(),
                out: out_consts
                    .iter()
                    .zip(&ext_moduli)
                    .map(|((rad, tm, tb), m): (&(Vec<u64>, u64, u64), &Modulus)| {
                        (
                            rad.iter().map(|&w| sh(m, w)).collect(),
                            sh(m, *tm),
                            *tb as u32,
                        )
                    })
                    .collect(),
            })
        } else {
            None
        };
        TensorPlan {
            k,
            ext,
            ext_moduli,
            gq,
            gext,
            q_mod,
            out_consts,
            qf,
            capacity,
            small,
        }
    }

    /// The auxiliary rows of the centered lift in 32-bit lanes (coefficient passes that
    /// vectorize): Garner digits, sign from the digits of ⌊Q/2⌋, Horner per auxiliary modulus.
    #[inline(always)]
    fn lift_small_body(&self, sl: &SmallLift, n: usize, coeff: &[u64], out: &mut [u64]) {
        let k = self.k;
        if k == 2 {
            self.lift2_small_body(sl, n, coeff, out);
            return;
        }
        let moduli: Vec<u32> = self.ext_moduli[..k]
            .iter()
            .map(|m| m.value as u32)
            .collect();
        let mut digits = vec![0u32; k * n];
        garner_digits32(&moduli, &sl.inv, coeff, n, &mut digits);
        let gt = above_half32(&digits, &sl.half, n);
        for (a, (rad, qm)) in sl.aux.iter().enumerate() {
            let j = k + a;
            let q = self.ext_moduli[j].value as u32;
            let mu = barrett32_mu(q);
            let row = &mut out[j * n..(j + 1) * n];
            let (q64, mu64) = (q as u64, mu as u64);
            row.fill(0);
            for i in (0..k).rev() {
                let (w, ws) = (rad[i].0 as u64, rad[i].1 as u64);
                let d = &digits[i * n..(i + 1) * n];
                for c in 0..n {
                    // The digit (< q_i, maybe ≥ q) reduced by Barrett in u64 lanes.
                    let x = d[c] as u64;
                    let bq = (x * mu64) >> 32;
                    let b = (x - bq * q64) & 0xffff_ffff;
                    let b = if b >= q64 { b - q64 } else { b };
                    row[c] = horner_step64(row[c], w, ws, b, q64);
                }
            }
            let qm = *qm as u64;
            for c in 0..n {
                let v = row[c];
                let neg = v + q64 - qm;
                let neg = if neg >= q64 { neg - q64 } else { neg };
                row[c] = if gt[c] != 0 { neg } else { v };
            }
        }
    }

    /// [`TensorPlan::lift_small_body`] for two moduli, in u64 lanes (masked 32-bit operands
    /// map to `vpmuludq`): one pass for the upper Garner digit d₁ = (x₁ − x₀)·q₀⁻¹ mod q₁ and
    /// the sign, then per auxiliary modulus m one pass for x₀ + (q₀ mod m)·d₁ (minus Q mod m for
    /// the negative half). Same integers as the general path.
    #[inline(always)]
    fn lift2_small_body(&self, sl: &SmallLift, n: usize, coeff: &[u64], out: &mut [u64]) {
        const LO: u64 = 0xffff_ffff;
        #[inline(always)]
        fn barrett(x: u64, q: u64, mu: u64) -> u64 {
            let r = x - ((x * mu) >> 32) * q;
            if r >= q { r - q } else { r }
        }
        #[inline(always)]
        fn shoup(x: u64, w: u64, ws: u64, q: u64) -> u64 {
            let r = (x * w).wrapping_sub(((x * ws) >> 32) * q) & LO;
            if r >= q { r - q } else { r }
        }
        let q1 = self.ext_moduli[1].value;
        let mu1 = barrett32_mu(q1 as u32) as u64;
        let (w, ws) = (sl.inv[1][0].0 as u64, sl.inv[1][0].1 as u64);
        let (h0, h1) = (sl.half[0] as u64, sl.half[1] as u64);
        let (x0s, x1s) = (&coeff[..n], &coeff[n..2 * n]);
        let mut d1s = vec![0u64; n];
        let mut neg = vec![0u64; n];
        for c in 0..n {
            let (x0, x1) = (x0s[c] & LO, x1s[c] & LO);
            let d1 = shoup(x1 + q1 - barrett(x0, q1, mu1), w, ws, q1);
            d1s[c] = d1;
            neg[c] = ((d1 > h1) | ((d1 == h1) & (x0 > h0))) as u64;
        }
        for (a, (rad, qm)) in sl.aux.iter().enumerate() {
            let m = self.ext_moduli[2 + a].value;
            let mu = barrett32_mu(m as u32) as u64;
            let (r0, r0s) = (rad[0].0 as u64, rad[0].1 as u64);
            let qm = *qm as u64;
            let row = &mut out[(2 + a) * n..(3 + a) * n];
            for c in 0..n {
                let b0 = barrett(x0s[c] & LO, m, mu);
                let b1 = barrett(d1s[c], m, mu);
                let v = shoup(b1, r0, r0s, m) + b0;
                let v = if v >= m { v - m } else { v };
                let nv = v + m - qm;
                let nv = if nv >= m { nv - m } else { nv };
                row[c] = if neg[c] != 0 { nv } else { v };
            }
        }
    }

    fn lift_small(&self, sl: &SmallLift, n: usize, coeff: &[u64], out: &mut [u64]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2(p: &TensorPlan, sl: &SmallLift, n: usize, coeff: &[u64], out: &mut [u64]) {
                p.lift_small_body(sl, n, coeff, out)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked above); `avx2` is safe Rust built with AVX2.
                unsafe { avx2(self, sl, n, coeff, out) };
                return;
            }
        }
        self.lift_small_body(sl, n, coeff, out)
    }

    /// Centered lift of a poly over q_0..q_{k−1} to the extended basis, in Eval form. `eval`,
    /// when given, is the same poly in Eval form (its rows are reused instead of an NTT).
    fn lift(&self, ctx: &Context, p: &Poly, eval: Option<&Poly>) -> Poly {
        let mut out = Poly::zero_with_basis(ctx, self.ext.clone(), Format::Coeff);
        self.lift_into(ctx, p, eval, &mut out, &mut Vec::new());
        out
    }

    /// [`TensorPlan::lift`] into a reused extended-basis poly (`scratch` holds the Coeff
    /// rows of an Eval input).
    fn lift_into(
        &self,
        ctx: &Context,
        p: &Poly,
        eval: Option<&Poly>,
        out: &mut Poly,
        scratch: &mut Vec<u64>,
    ) {
        let (k, n) = (self.k, ctx.n);
        let e = self.ext.len();
        out.basis.clone_from(&self.ext);
        out.data.resize(e * n, 0);
        out.format = Format::Coeff;
        let coeff: &[u64] = if p.format == Format::Coeff {
            &p.data
        } else {
            scratch.clear();
            scratch.extend_from_slice(&p.data);
            for (r, &mi) in p.basis.iter().enumerate() {
                ctx.ntt(mi).inverse(&mut scratch[r * n..(r + 1) * n]);
            }
            scratch
        };
        if let Some(sl) = &self.small {
            self.lift_small(sl, n, coeff, &mut out.data);
        } else {
            let mut res = vec![0u64; k];
            let mut d = vec![0u64; k];
            for i in 0..n {
                for (r, x) in res.iter_mut().enumerate() {
                    *x = coeff[r * n + i];
                }
                self.gq.digits(&res, &mut d);
                let neg = self.gq.is_negative(&d);
                for j in k..e {
                    let m = &self.ext_moduli[j];
                    let (rad, qm) = &self.q_mod[j];
                    let v = horner_mod(m, &d, rad);
                    out.data[j * n + i] = if neg { m.sub(v, *qm) } else { v };
                }
            }
        }
        for (j, &mi) in self.ext.iter().enumerate() {
            let row = &mut out.data[j * n..(j + 1) * n];
            if j < k {
                match (eval, p.format) {
                    (Some(ev), _) => row.copy_from_slice(ev.row(j)),
                    (None, Format::Eval) => row.copy_from_slice(p.row(j)),
                    (None, Format::Coeff) => {
                        row.copy_from_slice(&coeff[j * n..(j + 1) * n]);
                        ctx.ntt(mi).forward(row);
                    }
                }
            } else {
                ctx.ntt(mi).forward(row);
            }
        }
        out.format = Format::Eval;
    }

    /// ⌊t·x/Q⌉ of an extended-basis Eval poly, as a Coeff poly over q_0..q_{k−1}.
    fn scale_round(&self, ctx: &Context, mut dp: Poly) -> Result<Poly, HeError> {
        let (k, n) = (self.k, ctx.n);
        let e = self.ext.len();
        let tf = ctx.t() as f64;
        dp.inverse_ntt(ctx)?;
        if let Some(sl) = &self.small {
            return Ok(self.scale_round_small(ctx, sl, &dp));
        }
        let mut out = Poly::zero(ctx, k, Format::Coeff);
        let mut res = vec![0u64; e];
        let mut d = vec![0u64; e];
        for i in 0..n {
            for (r, x) in res.iter_mut().enumerate() {
                *x = dp.data[r * n + i];
            }
            self.gext.digits(&res, &mut d);
            let neg = self.gext.is_negative(&d);
            let mut f = 0.0f64;
            for (&dr, &qr) in d[..k].iter().zip(&self.qf) {
                f = (f + dr as f64) / qr;
            }
            let rounded = (tf * f).round() as u64;
            for r in 0..k {
                let m = &self.ext_moduli[r];
                let (rad, tm, tb) = &self.out_consts[r];
                let z = horner_mod(m, &d[k..], rad);
                let mut v = m.add(m.mul(*tm, z), m.reduce(rounded));
                if neg {
                    v = m.sub(v, *tb);
                }
                out.data[r * n + i] = v;
            }
        }
        Ok(out)
    }
}

impl TensorPlan {
    /// [`TensorPlan::scale_round`] for moduli below 2^30 on a Coeff extended-basis poly: the
    /// same integers (Garner digits, the same f64 rounding of the low digits, Horner over the
    /// auxiliary digits), computed a row at a time so the passes vectorize.
    fn scale_round_small(&self, ctx: &Context, sl: &SmallLift, dp: &Poly) -> Poly {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2(p: &TensorPlan, ctx: &Context, sl: &SmallLift, dp: &Poly) -> Poly {
                p.scale_round_small_body(ctx, sl, dp)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked above); `avx2` is safe Rust built with AVX2.
                return unsafe { avx2(self, ctx, sl, dp) };
            }
        }
        self.scale_round_small_body(ctx, sl, dp)
    }

    #[inline(always)]
    fn scale_round_small_body(&self, ctx: &Context, sl: &SmallLift, dp: &Poly) -> Poly {
        let (k, n) = (self.k, ctx.n);
        let e = self.ext.len();
        let moduli: Vec<u32> = self.ext_moduli.iter().map(|m| m.value as u32).collect();
        let mut digits = vec![0u32; e * n];
        garner_digits32(&moduli, &sl.ext_inv, &dp.data, n, &mut digits);
        let gt = above_half32(&digits, &sl.ext_half, n);
        // ⌊t·(low digits)/Q⌉, as the generic path computes it.
        let tf = ctx.t() as f64;
        let rounded: Vec<u64> = (0..n)
            .map(|c| {
                let mut f = 0.0f64;
                for (j, &qr) in self.qf.iter().enumerate() {
                    f = (f + digits[j * n + c] as f64) / qr;
                }
                (tf * f).round() as u64
            })
            .collect();
        let mut out = Poly::zero(ctx, k, Format::Coeff);
        for (r, (rad, (tm, tms), tb)) in sl.out.iter().enumerate() {
            let q = moduli[r] as u64;
            let mu = barrett32_mu(moduli[r]) as u64;
            let row = &mut out.data[r * n..(r + 1) * n];
            // z = Horner over the auxiliary digits (each reduced mod q_r).
            for i in (k..e).rev() {
                let (w, ws) = (rad[i - k].0 as u64, rad[i - k].1 as u64);
                let d = &digits[i * n..(i + 1) * n];
                for c in 0..n {
                    let x = d[c] as u64;
                    let bq = (x * mu) >> 32;
                    let b = (x - bq * q) & 0xffff_ffff;
                    let b = if b >= q { b - q } else { b };
                    row[c] = horner_step64(row[c], w, ws, b, q);
                }
            }
            // t·z + rounded (rounded ≤ t < 2^32), minus t·B for the negative half.
            let (tm, tms, tb) = (*tm as u64, *tms as u64, *tb as u64);
            for c in 0..n {
                let x = rounded[c] & 0xffff_ffff;
                let bq = (x * mu) >> 32;
                let b = (x - bq * q) & 0xffff_ffff;
                let b = if b >= q { b - q } else { b };
                let v = horner_step64(row[c], tm, tms, b, q);
                let neg = v + q - tb;
                let neg = if neg >= q { neg - q } else { neg };
                row[c] = if gt[c] != 0 { neg } else { v };
            }
        }
        out
    }
}

fn check_tensor_operands(a: &Ciphertext, b: &Ciphertext) -> Result<usize, HeError> {
    if a.polys[0].basis != b.polys[0].basis || a.correction_factor != b.correction_factor {
        return Err(HeError::Mismatch("ciphertext moduli or correction differ"));
    }
    if a.polys.len() != 2 || b.polys.len() != 2 {
        return Err(HeError::Mismatch("multiply needs 2-polynomial ciphertexts"));
    }
    let k = a.moduli_count();
    if a.polys[0].basis != (0..k).collect::<Vec<_>>() {
        return Err(HeError::Mismatch("multiply needs ciphertext moduli"));
    }
    Ok(k)
}

/// Ciphertext × ciphertext (2 polys each) by exact tensoring: centered lift to an auxiliary base,
/// NTT products, then ⌊t·x/Q⌉ per coefficient (word-size mixed-radix arithmetic; the final
/// rounding may be off by one, which only adds unit noise). Returns 3 polys in Coeff form.
pub fn multiply(ctx: &Context, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, HeError> {
    a.check(b)?;
    let k = check_tensor_operands(a, b)?;
    let plan = TensorPlan::new(ctx, k);
    let (a0, a1, b0, b1) = (
        plan.lift(ctx, &a.polys[0], None),
        plan.lift(ctx, &a.polys[1], None),
        plan.lift(ctx, &b.polys[0], None),
        plan.lift(ctx, &b.polys[1], None),
    );
    let mut d0 = a0.clone();
    d0.mul_assign(ctx, &b0)?;
    let mut d1 = a0;
    d1.mul_assign(ctx, &b1)?;
    d1.mul_add_assign(ctx, &a1, &b0)?;
    let mut d2 = a1;
    d2.mul_assign(ctx, &b1)?;
    let polys = [d0, d1, d2]
        .into_iter()
        .map(|dp| plan.scale_round(ctx, dp))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ciphertext {
        polys,
        correction_factor: a.correction_factor,
        seed: None,
    })
}

/// Σ_j a_j ⊗ b_j for ciphertext pairs (Apple's ciphertext inner product), tensored exactly in
/// the extended basis and scaled by t/Q once for the whole sum: every operand is lifted and
/// transformed once, and the result carries one rounding error instead of one per product.
#[derive(Debug)]
pub struct TensorAccumulator {
    plan: TensorPlan,
    /// 3 polys × extended rows × n lazy sums.
    acc: Vec<u128>,
    /// Small moduli (below 2^30): 3 polys × extended rows × n lazy u64 sums instead of `acc`.
    acc64: Vec<u64>,
    /// Products added since the last reduction of `acc`.
    lazy: usize,
    /// Products added since the last [`TensorAccumulator::finish`].
    count: usize,
    correction_factor: Option<u64>,
    /// Reused lifted operands and Coeff scratch.
    lifted: Vec<Poly>,
    scratch: Vec<u64>,
}

impl std::fmt::Debug for TensorPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorPlan")
            .field("ext", &self.ext)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl TensorAccumulator {
    /// An empty accumulator for ciphertexts over the first k moduli.
    pub fn new(ctx: &Context, k: usize) -> TensorAccumulator {
        let plan = TensorPlan::new(ctx, k);
        let len = 3 * plan.ext.len() * ctx.n;
        let small = plan.small.is_some();
        TensorAccumulator {
            plan,
            acc: vec![0; if small { 0 } else { len }],
            acc64: vec![0; if small { len } else { 0 }],
            lazy: 0,
            count: 0,
            correction_factor: None,
            lifted: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// How many products one sum may hold (the extended basis bounds the exact sum).
    pub fn capacity(&self) -> usize {
        self.plan.capacity
    }

    /// Products added since the last finish.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no product was added since the last finish.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn reduce_in_place(&mut self, ctx: &Context) {
        let n = ctx.n;
        let e = self.plan.ext.len();
        for (idx, chunk) in self.acc.chunks_exact_mut(n).enumerate() {
            let m = self.plan.ext_moduli[idx % e];
            for a in chunk {
                *a = m.reduce_u128(*a) as u128;
            }
        }
        self.lazy = 1;
    }

    /// acc += a ⊗ b for 2-poly ciphertexts over the first k moduli (either form).
    pub fn add_product(
        &mut self,
        ctx: &Context,
        a: &Ciphertext,
        b: &Ciphertext,
    ) -> Result<(), HeError> {
        let k = check_tensor_operands(a, b)?;
        if k != self.plan.k {
            return Err(HeError::Mismatch("accumulator moduli"));
        }
        if self.count >= self.plan.capacity {
            return Err(HeError::Mismatch("tensor accumulator is full"));
        }
        match self.correction_factor {
            None => self.correction_factor = Some(a.correction_factor),
            Some(c) if c != a.correction_factor => {
                return Err(HeError::Mismatch("correction factors differ"));
            }
            Some(_) => {}
        }
        if self.plan.small.is_some() {
            return self.add_product_small(ctx, a, b);
        }
        // Each term is < 2^124 for moduli below 2^62; u128 holds 15 such sums safely.
        let qmax = self
            .plan
            .ext_moduli
            .iter()
            .map(|m| m.value)
            .max()
            .unwrap_or(2) as u128;
        let per_step = 2 * (qmax - 1) * (qmax - 1);
        let max_lazy = ((u128::MAX - qmax) / per_step).min(1 << 20) as usize;
        if self.lazy + 1 > max_lazy {
            self.reduce_in_place(ctx);
        }
        if self.lifted.len() < 4 {
            self.lifted = (0..4)
                .map(|_| Poly::zero_with_basis(ctx, self.plan.ext.clone(), Format::Coeff))
                .collect();
        }
        for (out, p) in self.lifted.iter_mut().zip(a.polys.iter().chain(&b.polys)) {
            self.plan.lift_into(ctx, p, None, out, &mut self.scratch);
        }
        let [a0, a1, b0, b1] = [
            &self.lifted[0],
            &self.lifted[1],
            &self.lifted[2],
            &self.lifted[3],
        ];
        let n = ctx.n;
        let e = self.plan.ext.len();
        let (acc0, rest) = self.acc.split_at_mut(e * n);
        let (acc1, acc2) = rest.split_at_mut(e * n);
        for i in 0..e * n {
            let (x0, x1, y0, y1) = (
                a0.data[i] as u128,
                a1.data[i] as u128,
                b0.data[i] as u128,
                b1.data[i] as u128,
            );
            acc0[i] += x0 * y0;
            acc1[i] += x0 * y1 + x1 * y0;
            acc2[i] += x1 * y1;
        }
        self.lazy += 1;
        self.count += 1;
        Ok(())
    }

    /// [`TensorAccumulator::add_product`] for moduli below 2^30: 32×32→64-bit products
    /// summed lazily in u64 (reduced every few products), AVX2 when present.
    fn add_product_small(
        &mut self,
        ctx: &Context,
        a: &Ciphertext,
        b: &Ciphertext,
    ) -> Result<(), HeError> {
        let n = ctx.n;
        let e = self.plan.ext.len();
        let qmax = self
            .plan
            .ext_moduli
            .iter()
            .map(|m| m.value)
            .max()
            .unwrap_or(2);
        // acc1 takes two products per step: (2^64 − 1 − q)/(2(q−1)²) steps fit.
        let max_lazy = ((u64::MAX - qmax) / (2 * (qmax - 1) * (qmax - 1))).max(2) as usize;
        if self.lazy + 1 > max_lazy {
            for (idx, chunk) in self.acc64.chunks_exact_mut(n).enumerate() {
                let q = self.plan.ext_moduli[idx % e].value as u32;
                let src = chunk.to_vec();
                reduce_u64_rows32(q, chunk, &src);
            }
            self.lazy = 1;
        }
        if self.lifted.len() < 4 {
            self.lifted = (0..4)
                .map(|_| Poly::zero_with_basis(ctx, self.plan.ext.clone(), Format::Coeff))
                .collect();
        }
        for (out, p) in self.lifted.iter_mut().zip(a.polys.iter().chain(&b.polys)) {
            self.plan.lift_into(ctx, p, None, out, &mut self.scratch);
        }
        #[inline(always)]
        fn body(acc: &mut [u64], l: &[Poly], len: usize) {
            let (acc0, rest) = acc.split_at_mut(len);
            let (acc1, acc2) = rest.split_at_mut(len);
            let (a0, a1, b0, b1) = (
                &l[0].data[..len],
                &l[1].data[..len],
                &l[2].data[..len],
                &l[3].data[..len],
            );
            let acc2 = &mut acc2[..len];
            for i in 0..len {
                let (x0, x1, y0, y1) = (
                    a0[i] as u32 as u64,
                    a1[i] as u32 as u64,
                    b0[i] as u32 as u64,
                    b1[i] as u32 as u64,
                );
                acc0[i] += x0 * y0;
                acc1[i] += x0 * y1 + x1 * y0;
                acc2[i] += x1 * y1;
            }
        }
        let len = e * n;
        let mut done = false;
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2(acc: &mut [u64], l: &[Poly], len: usize) {
                body(acc, l, len)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked above); `avx2` is safe Rust built with AVX2.
                unsafe { avx2(&mut self.acc64, &self.lifted, len) };
                done = true;
            }
        }
        if !done {
            body(&mut self.acc64, &self.lifted, len);
        }
        self.lazy += 1;
        self.count += 1;
        Ok(())
    }

    /// The scaled sum as a 3-poly Coeff ciphertext over the first k moduli (None when empty);
    /// resets the accumulator.
    pub fn finish(&mut self, ctx: &Context) -> Result<Option<Ciphertext>, HeError> {
        if self.count == 0 {
            return Ok(None);
        }
        let n = ctx.n;
        let e = self.plan.ext.len();
        let mut polys = Vec::with_capacity(3);
        for p in 0..3 {
            let mut dp = Poly::zero_with_basis(ctx, self.plan.ext.clone(), Format::Eval);
            for (r, m) in self.plan.ext_moduli.iter().enumerate() {
                let range = (p * e + r) * n..(p * e + r + 1) * n;
                if self.plan.small.is_some() {
                    reduce_u64_rows32(m.value as u32, dp.row_mut(r), &self.acc64[range]);
                } else {
                    for (d, &a) in dp.row_mut(r).iter_mut().zip(&self.acc[range]) {
                        *d = m.reduce_u128(a);
                    }
                }
            }
            polys.push(self.plan.scale_round(ctx, dp)?);
        }
        self.acc.fill(0);
        self.acc64.fill(0);
        self.lazy = 0;
        self.count = 0;
        let correction_factor = self.correction_factor.take().unwrap_or(1);
        Ok(Some(Ciphertext {
            polys,
            correction_factor,
            seed: None,
        }))
    }
}

/// Lazy u128 accumulator for Σ ct_i ⊙ pt_i in Eval form: one multiply-add per coefficient and a
/// single reduction at the end (or when the u128 headroom is used up).
#[derive(Clone, Debug)]
pub struct EvalAccumulator {
    basis: Vec<usize>,
    n: usize,
    poly_count: usize,
    acc: Vec<u128>,
    count: usize,
    max_count: usize,
}

impl EvalAccumulator {
    /// An empty accumulator for `poly_count` polys over the first k moduli.
    pub fn new(ctx: &Context, k: usize, poly_count: usize) -> EvalAccumulator {
        let qmax = (0..k).map(|i| ctx.modulus(i).value).max().unwrap_or(2);
        let prod = (qmax as u128 - 1) * (qmax as u128 - 1);
        let max_count = ((u128::MAX - qmax as u128) / prod).min(usize::MAX as u128) as usize;
        EvalAccumulator {
            basis: (0..k).collect(),
            n: ctx.n,
            poly_count,
            acc: vec![0; poly_count * k * ctx.n],
            count: 0,
            max_count: max_count.max(1),
        }
    }

    fn reduce_in_place(&mut self, ctx: &Context) {
        let n = self.n;
        let k = self.basis.len();
        for p in 0..self.poly_count {
            for r in 0..k {
                let m = ctx.modulus(self.basis[r]);
                for a in &mut self.acc[(p * k + r) * n..(p * k + r + 1) * n] {
                    *a = m.reduce_u128(*a) as u128;
                }
            }
        }
        self.count = 1;
    }

    /// acc += ct ⊙ pt (ct Eval over the same moduli, at most `poly_count` polys).
    pub fn add_product(
        &mut self,
        ctx: &Context,
        ct: &Ciphertext,
        pt: &EvalPlaintext,
    ) -> Result<(), HeError> {
        if ct.format() != Format::Eval || pt.poly.format != Format::Eval {
            return Err(HeError::Mismatch("accumulator needs Eval operands"));
        }
        if ct.polys[0].basis != self.basis
            || pt.poly.basis != self.basis
            || ct.polys.len() > self.poly_count
        {
            return Err(HeError::Mismatch("accumulator moduli"));
        }
        if self.count >= self.max_count {
            self.reduce_in_place(ctx);
        }
        let n = self.n;
        let k = self.basis.len();
        for (p, poly) in ct.polys.iter().enumerate() {
            for r in 0..k {
                let acc = &mut self.acc[(p * k + r) * n..(p * k + r + 1) * n];
                for ((a, &x), &y) in acc.iter_mut().zip(poly.row(r)).zip(pt.poly.row(r)) {
                    *a += x as u128 * y as u128;
                }
            }
        }
        self.count += 1;
        Ok(())
    }

    /// The reduced sum as an Eval ciphertext.
    pub fn finish(&self, ctx: &Context) -> Ciphertext {
        let n = self.n;
        let k = self.basis.len();
        let mut polys = Vec::with_capacity(self.poly_count);
        for p in 0..self.poly_count {
            let mut poly = Poly::zero_with_basis(ctx, self.basis.clone(), Format::Eval);
            for r in 0..k {
                let m = ctx.modulus(self.basis[r]);
                for (d, &a) in poly
                    .row_mut(r)
                    .iter_mut()
                    .zip(&self.acc[(p * k + r) * n..(p * k + r + 1) * n])
                {
                    *d = m.reduce_u128(a);
                }
            }
            polys.push(poly);
        }
        Ciphertext {
            polys,
            correction_factor: 1,
            seed: None,
        }
    }
}

/// Reusable buffers for [`KeySwitchKey::switch_eval`] and [`apply_galois_eval`] (one per
/// thread), so the expansion's hundreds of key switches allocate nothing in their hot loops.
#[derive(Clone, Debug, Default)]
pub struct SwitchScratch {
    buf: Vec<u64>,
    eval: Vec<u64>,
    coeff: Vec<u64>,
    p0: Vec<u64>,
    p1: Vec<u64>,
    acc0: Vec<u64>,
    acc1: Vec<u64>,
    wide0: Vec<u128>,
    wide1: Vec<u128>,
    digits: Vec<u64>,
}

impl KeySwitchKey {
    /// Key switching entirely in Eval form: for a target over the first k ciphertext moduli,
    /// given both its Coeff rows (`target_coeff`, k·n words) and its Eval rows (`target_eval`),
    /// writes (u₀, u₁) in Eval form over the same k moduli into `out0`/`out1`. The integers are
    /// those of [`KeySwitchKey::switch`] (same decomposition and the same rounding division by
    /// the special prime, done here on the NTT side), only the form differs.
    #[allow(clippy::too_many_arguments)]
    pub fn switch_eval(
        &self,
        ctx: &Context,
        k: usize,
        target_coeff: &[u64],
        target_eval: &[u64],
        out0: &mut [u64],
        out1: &mut [u64],
        scratch: &mut SwitchScratch,
    ) -> Result<(), HeError> {
        let l = ctx.moduli_count();
        let n = ctx.n;
        if k + 1 > l
            || self.ciphertexts.len() < k
            || target_coeff.len() != k * n
            || target_eval.len() != k * n
            || out0.len() != k * n
            || out1.len() != k * n
        {
            return Err(HeError::Mismatch("key-switching target moduli"));
        }
        let special = l - 1;
        if let Some(ks) = self
            .rows32(ctx)
            .filter(|ks| ks.mont.iter().all(|m| m.fits(k)))
        {
            return self.switch_eval_small(
                ctx,
                k,
                ks,
                target_coeff,
                target_eval,
                out0,
                out1,
                scratch,
            );
        }
        let small = k < 16
            && (0..k)
                .chain([special])
                .all(|i| ctx.modulus(i).value < (1 << 30));
        let s = scratch;
        s.buf.resize(n, 0);
        s.p0.resize(n, 0);
        s.p1.resize(n, 0);
        if small {
            s.acc0.resize(n, 0);
            s.acc1.resize(n, 0);
        } else {
            s.wide0.resize(n, 0);
            s.wide1.resize(n, 0);
        }
        for r in 0..=k {
            let mi = if r < k { r } else { special };
            let m = *ctx.modulus(mi);
            if small {
                s.acc0.fill(0);
                s.acc1.fill(0);
            } else {
                s.wide0.fill(0);
                s.wide1.fill(0);
            }
            for j in 0..k {
                let src: &[u64] = if j == r {
                    &target_eval[j * n..(j + 1) * n]
                } else {
                    for (b, &x) in s.buf.iter_mut().zip(&target_coeff[j * n..(j + 1) * n]) {
                        *b = m.reduce(x);
                    }
                    ctx.ntt(mi).forward(&mut s.buf);
                    &s.buf
                };
                let key = &self.ciphertexts[j];
                let k0 = key.polys[0].row(mi);
                let k1 = key.polys[1].row(mi);
                if small {
                    for ((((a0, a1), &b), &x0), &x1) in s
                        .acc0
                        .iter_mut()
                        .zip(s.acc1.iter_mut())
                        .zip(src)
                        .zip(k0)
                        .zip(k1)
                    {
                        *a0 += b * x0;
                        *a1 += b * x1;
                    }
                } else {
                    for ((((a0, a1), &b), &x0), &x1) in s
                        .wide0
                        .iter_mut()
                        .zip(s.wide1.iter_mut())
                        .zip(src)
                        .zip(k0)
                        .zip(k1)
                    {
                        *a0 += b as u128 * x0 as u128;
                        *a1 += b as u128 * x1 as u128;
                    }
                }
            }
            let (d0, d1): (&mut [u64], &mut [u64]) = if r < k {
                (&mut out0[r * n..(r + 1) * n], &mut out1[r * n..(r + 1) * n])
            } else {
                (&mut s.p0, &mut s.p1)
            };
            if small {
                for (d, &a) in d0.iter_mut().zip(&s.acc0) {
                    *d = m.reduce(a);
                }
                for (d, &a) in d1.iter_mut().zip(&s.acc1) {
                    *d = m.reduce(a);
                }
            } else {
                for (d, &a) in d0.iter_mut().zip(&s.wide0) {
                    *d = m.reduce_u128(a);
                }
                for (d, &a) in d1.iter_mut().zip(&s.wide1) {
                    *d = m.reduce_u128(a);
                }
            }
        }
        // Rounding division by P: x ← (x − ([x_P + ⌊P/2⌋]_P − ⌊P/2⌋))·P⁻¹, the correction
        // term taken to Eval form per modulus.
        let mp = *ctx.modulus(special);
        let half = mp.value >> 1;
        for (out, p) in [(&mut *out0, &mut s.p0), (&mut *out1, &mut s.p1)] {
            ctx.ntt(special).inverse(p);
            for x in p.iter_mut() {
                *x = mp.add(*x, half);
            }
            for i in 0..k {
                let m = *ctx.modulus(i);
                let inv = m
                    .inv(mp.value)
                    .ok_or(HeError::Mismatch("moduli not coprime"))?;
                let inv_s = m.shoup(inv);
                let half_i = m.reduce(half);
                for (b, &w) in s.buf.iter_mut().zip(p.iter()) {
                    *b = m.sub(m.reduce(w), half_i);
                }
                ctx.ntt(i).forward(&mut s.buf);
                for (x, &c) in out[i * n..(i + 1) * n].iter_mut().zip(&s.buf) {
                    *x = m.mul_shoup(m.sub(*x, c), inv, inv_s);
                }
            }
        }
        Ok(())
    }
}

impl KeySwitchKey {
    /// Dispatches [`KeySwitchKey::switch_eval_small_body`] to an AVX2 build when available.
    #[allow(clippy::too_many_arguments)]
    fn switch_eval_small(
        &self,
        ctx: &Context,
        k: usize,
        ks: &KeyRows32,
        target_coeff: &[u64],
        target_eval: &[u64],
        out0: &mut [u64],
        out1: &mut [u64],
        scratch: &mut SwitchScratch,
    ) -> Result<(), HeError> {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            fn avx2(
                this: &KeySwitchKey,
                ctx: &Context,
                k: usize,
                ks: &KeyRows32,
                target_coeff: &[u64],
                target_eval: &[u64],
                out0: &mut [u64],
                out1: &mut [u64],
                scratch: &mut SwitchScratch,
            ) -> Result<(), HeError> {
                this.switch_eval_small_body(
                    ctx,
                    k,
                    ks,
                    target_coeff,
                    target_eval,
                    out0,
                    out1,
                    scratch,
                )
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above); the function is
                // ordinary safe Rust compiled with AVX2 enabled.
                return unsafe {
                    avx2(
                        self,
                        ctx,
                        k,
                        ks,
                        target_coeff,
                        target_eval,
                        out0,
                        out1,
                        scratch,
                    )
                };
            }
        }
        self.switch_eval_small_body(ctx, k, ks, target_coeff, target_eval, out0, out1, scratch)
    }

    /// [`KeySwitchKey::switch_eval`] for moduli below 2^30: Montgomery dot products of the
    /// digits with the 32-bit key rows ([`crate::keyprod`]), Barrett digit reduction.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn switch_eval_small_body(
        &self,
        ctx: &Context,
        k: usize,
        ks: &KeyRows32,
        target_coeff: &[u64],
        target_eval: &[u64],
        out0: &mut [u64],
        out1: &mut [u64],
        scratch: &mut SwitchScratch,
    ) -> Result<(), HeError> {
        let n = ctx.n;
        let l = ks.l;
        let special = l - 1;
        let s = scratch;
        s.buf.resize(n, 0);
        s.p0.resize(n, 0);
        s.p1.resize(n, 0);
        let row = |j: usize, p: usize, mi: usize| ((j * 2 + p) * l + mi) * n;
        // Per output modulus: the digits in Eval form (the target's own Eval row for j = r,
        // else the digit reduced and NTT'd), then the Montgomery dot product with the key.
        s.digits.resize(k * n, 0);
        for r in 0..=k {
            let mi = if r < k { r } else { special };
            let q = ctx.modulus(mi).value as u32;
            let mu = barrett32_mu(q);
            for j in (0..k).filter(|&j| j != r) {
                let d = &mut s.digits[j * n..(j + 1) * n];
                keyprod::reduce_add(d, &target_coeff[j * n..(j + 1) * n], q, mu, 0);
                ctx.ntt(mi).forward(d);
            }
            let srcs: Vec<&[u64]> = (0..k)
                .map(|j| {
                    if j == r {
                        &target_eval[j * n..(j + 1) * n]
                    } else {
                        &s.digits[j * n..(j + 1) * n]
                    }
                })
                .collect();
            let keys = |p: usize| -> Vec<&[u32]> {
                (0..k)
                    .map(|j| &ks.rows[row(j, p, mi)..row(j, p, mi) + n])
                    .collect()
            };
            let (d0, d1): (&mut [u64], &mut [u64]) = if r < k {
                (&mut out0[r * n..(r + 1) * n], &mut out1[r * n..(r + 1) * n])
            } else {
                (&mut s.p0, &mut s.p1)
            };
            crate::keyprod::dot_redc(ks.mont[mi], &srcs, &keys(0), &keys(1), d0, d1);
        }
        // Rounding division by P as in `switch_eval`, in 32-bit lanes.
        let pv = ctx.modulus(special).value as u32;
        let half = pv >> 1;
        for (out, p) in [(&mut *out0, &mut s.p0), (&mut *out1, &mut s.p1)] {
            ctx.ntt(special).inverse(p);
            keyprod::lift_half(p, half, pv);
            for i in 0..k {
                let m = *ctx.modulus(i);
                let q = m.value as u32;
                let mu = barrett32_mu(q);
                let inv =
                    m.inv(pv as u64)
                        .ok_or(HeError::Mismatch("moduli not coprime"))? as u32;
                let inv_s = shoup32(inv, q);
                let half_i = barrett32(half, q, mu);
                keyprod::reduce_add(&mut s.buf, p, q, mu, (q - half_i) % q);
                ctx.ntt(i).forward(&mut s.buf);
                keyprod::sub_mul(&mut out[i * n..(i + 1) * n], &s.buf, q, inv, inv_s);
            }
        }
        Ok(())
    }
}

/// [`apply_galois_with`] for an Eval-form 2-poly ciphertext over the first k moduli, result in
/// Eval form (equal to the NTT of [`apply_galois_with`]'s result). `perm` is
/// [`Poly::galois_eval_permutation`] of g.
pub fn apply_galois_eval(
    ctx: &Context,
    ct: &Ciphertext,
    g: usize,
    perm: &[u32],
    ksk: &KeySwitchKey,
    scratch: &mut SwitchScratch,
) -> Result<Ciphertext, HeError> {
    let mut out = Ciphertext {
        polys: Vec::new(),
        correction_factor: 1,
        seed: None,
    };
    apply_galois_eval_into(ctx, ct, g, perm, ksk, scratch, &mut out)?;
    Ok(out)
}

/// [`apply_galois_eval`] writing σ(ct) into `out`, whose polynomial buffers are reused (resized,
/// never zeroed: every word is overwritten), so a long run of key switches such as the
/// expansion allocates nothing once its buffers exist.
pub fn apply_galois_eval_into(
    ctx: &Context,
    ct: &Ciphertext,
    g: usize,
    perm: &[u32],
    ksk: &KeySwitchKey,
    scratch: &mut SwitchScratch,
    out: &mut Ciphertext,
) -> Result<(), HeError> {
    if ct.polys.len() != 2 || ct.format() != Format::Eval || ct.correction_factor != 1 {
        return Err(HeError::Mismatch(
            "Eval Galois needs a 2-polynomial Eval ciphertext",
        ));
    }
    let n = ctx.n;
    if perm.len() != n || g % 2 == 0 || g <= 1 || g >= 2 * n {
        return Err(HeError::InvalidGaloisElement(g));
    }
    let k = ct.polys[0].basis.len();
    if ct.polys.iter().any(|p| p.basis.iter().copied().ne(0..k)) {
        return Err(HeError::Mismatch("Eval Galois needs ciphertext moduli"));
    }
    out.polys.truncate(2);
    while out.polys.len() < 2 {
        out.polys.push(Poly {
            format: Format::Eval,
            basis: Vec::new(),
            n,
            data: Vec::new(),
        });
    }
    for p in &mut out.polys {
        p.format = Format::Eval;
        p.n = n;
        p.basis.clear();
        p.basis.extend(0..k);
        p.data.resize(k * n, 0);
    }
    out.correction_factor = 1;
    out.seed = None;
    // σ(c₁) in both forms: the Eval rows by permutation, the Coeff rows by inverse NTT of those.
    // One gather writes both copies (no second pass over the rows).
    let mut c1_eval = std::mem::take(&mut scratch.eval);
    let mut coeff = std::mem::take(&mut scratch.coeff);
    c1_eval.resize(k * n, 0);
    coeff.resize(k * n, 0);
    for r in 0..k {
        let s = ct.polys[1].row(r);
        let (e, c) = (
            &mut c1_eval[r * n..(r + 1) * n],
            &mut coeff[r * n..(r + 1) * n],
        );
        for ((e, c), &p) in e.iter_mut().zip(c.iter_mut()).zip(perm) {
            let v = s[p as usize];
            *e = v;
            *c = v;
        }
        ctx.ntt(r).inverse(c);
    }
    let (u0, u1) = out.polys.split_at_mut(1);
    let (u0, u1) = (&mut u0[0], &mut u1[0]);
    let res = ksk.switch_eval(
        ctx,
        k,
        &coeff,
        &c1_eval,
        &mut u0.data,
        &mut u1.data,
        scratch,
    );
    scratch.coeff = coeff;
    scratch.eval = c1_eval;
    res?;
    // σ(c₀) + u₀, the permutation fused into the addition.
    for r in 0..k {
        let m = ctx.modulus(r);
        let s = ct.polys[0].row(r);
        for (d, &p) in u0.row_mut(r).iter_mut().zip(perm) {
            *d = m.add(*d, s[p as usize]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The 32-bit centered lift equals the generic mixed-radix lift on random residues and on
    /// the values around ⌊Q/2⌋ where the sign flips.
    #[test]
    fn small_lift_matches_generic() {
        use rand::Rng;
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let k = ctx.ciphertext_moduli_count();
        let mut plan = TensorPlan::new(&ctx, k);
        assert!(plan.small.is_some());
        let n = ctx.n;
        let mut rng = StdRng::seed_from_u64(5);
        let mut p = Poly::zero(&ctx, k, Format::Coeff);
        for r in 0..k {
            let q = ctx.modulus(r).value;
            for x in p.row_mut(r) {
                *x = rng.gen_range(0..q);
            }
        }
        // ⌊Q/2⌋ − 1, ⌊Q/2⌋, ⌊Q/2⌋ + 1 in the first three coefficients.
        let q: BigUint = (0..k)
            .map(|i| BigUint::from(ctx.modulus(i).value))
            .product();
        let half: BigUint = &q >> 1usize;
        for (c, v) in [&half - 1u32, half.clone(), &half + 1u32]
            .iter()
            .enumerate()
        {
            for r in 0..k {
                let m = ctx.modulus(r).value;
                p.data[r * n + c] = (v % m).to_u64().unwrap();
            }
        }
        let fast = plan.lift(&ctx, &p, None);
        plan.small = None;
        let slow = plan.lift(&ctx, &p, None);
        assert_eq!(fast, slow);
    }

    /// Relinearization through the Eval-form key switch gives exactly the generic switch's
    /// polynomials.
    #[test]
    fn relin_products_match_generic_switch() {
        use rand::Rng;
        for name in ["n_4096_logq_27_28_28_logt_5", "n_8192_logq_3x55_logt_24"] {
            let ctx = Context::predefined(name).unwrap();
            let mut rng = StdRng::seed_from_u64(13);
            let sk = SecretKey::generate(&ctx, &mut rng);
            let key = EvaluationKey::generate(&ctx, &sk, &[], true, &mut rng).unwrap();
            let ksk = key.relin.as_ref().unwrap();
            let k = ctx.ciphertext_moduli_count();
            let mut c2 = Poly::zero(&ctx, k, Format::Coeff);
            for r in 0..k {
                let q = ctx.modulus(r).value;
                for x in c2.row_mut(r) {
                    *x = rng.gen_range(0..q);
                }
            }
            let fast = relin_products(&ctx, ksk, &c2).unwrap();
            let slow = ksk.switch(&ctx, &c2).unwrap();
            assert_eq!(fast, slow, "{name}");
        }
    }

    /// The vectorizable scale-down equals the generic one on random extended-basis values and
    /// on values around ⌊Q·B/2⌋ (where the sign flips).
    #[test]
    fn small_scale_round_matches_generic() {
        use rand::Rng;
        for name in [
            "n_4096_logq_27_28_28_logt_4",
            "n_4096_logq_27_28_28_logt_13",
        ] {
            let ctx = Context::predefined(name).unwrap();
            let k = ctx.ciphertext_moduli_count();
            let mut plan = TensorPlan::new(&ctx, k);
            assert!(plan.small.is_some());
            let n = ctx.n;
            let e = plan.ext.len();
            let mut rng = StdRng::seed_from_u64(11);
            let mut p = Poly::zero_with_basis(&ctx, plan.ext.clone(), Format::Coeff);
            for (r, m) in plan.ext_moduli.iter().enumerate() {
                for x in &mut p.data[r * n..(r + 1) * n] {
                    *x = rng.gen_range(0..m.value);
                }
            }
            let q: BigUint = plan
                .ext_moduli
                .iter()
                .map(|m| BigUint::from(m.value))
                .product();
            let half: BigUint = &q >> 1usize;
            for (c, v) in [
                &half - 1u32,
                half.clone(),
                &half + 1u32,
                BigUint::from(0u32),
            ]
            .iter()
            .enumerate()
            {
                for (r, m) in plan.ext_moduli.iter().enumerate() {
                    p.data[r * n + c] = (v % m.value).to_u64().unwrap();
                }
            }
            p.forward_ntt(&ctx).unwrap();
            assert_eq!(p.data.len(), e * n);
            let fast = plan.scale_round(&ctx, p.clone()).unwrap();
            plan.small = None;
            let slow = plan.scale_round(&ctx, p).unwrap();
            assert_eq!(fast, slow, "{name}");
        }
    }

    /// Σ a_j ⊗ b_j through the accumulator decrypts to Σ m_j·m′_j (negacyclic), agrees with
    /// summing [`multiply`] results, and has at least their noise budget.
    #[test]
    fn tensor_accumulator_matches_sum_of_products() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        let sk = SecretKey::generate(&ctx, &mut rng);
        let t = ctx.t();
        let k = ctx.ciphertext_moduli_count();
        let mut acc = TensorAccumulator::new(&ctx, k);
        assert!(acc.capacity() >= 1000);
        let mut sum: Option<Ciphertext> = None;
        let mut expect = vec![0u64; ctx.n];
        // 12 products: more than the lazy u64 sums hold, so a mid-way reduction is exercised.
        for j in 0..12u64 {
            // a = j+1 (constant), b = (2, 0, …, 0, 3 at index j).
            let a = Plaintext::new(&ctx, &[j + 1]).unwrap();
            let mut bv = vec![0u64; ctx.n];
            bv[0] = 2;
            bv[j as usize + 1] = 3;
            let b = Plaintext::new(&ctx, &bv).unwrap();
            expect[0] = (expect[0] + 2 * (j + 1)) % t;
            expect[j as usize + 1] = (expect[j as usize + 1] + 3 * (j + 1)) % t;
            let ca = encrypt(&ctx, &a, &sk, &mut rng);
            let cb = encrypt(&ctx, &b, &sk, &mut rng);
            let mut cb_eval = cb.clone();
            cb_eval.convert_to(&ctx, Format::Eval);
            acc.add_product(&ctx, &ca, &cb_eval).unwrap();
            let p = multiply(&ctx, &ca, &cb).unwrap();
            match &mut sum {
                None => sum = Some(p),
                Some(s) => s.add_assign(&ctx, &p).unwrap(),
            }
        }
        assert_eq!(acc.len(), 12);
        let lazy = acc.finish(&ctx).unwrap().unwrap();
        assert!(acc.is_empty());
        let sum = sum.unwrap();
        assert_eq!(decrypt(&ctx, &lazy, &sk).unwrap().coeffs, expect);
        assert_eq!(decrypt(&ctx, &sum, &sk).unwrap().coeffs, expect);
        let (nl, ns) = (
            noise_budget(&ctx, &lazy, &sk).unwrap(),
            noise_budget(&ctx, &sum, &sk).unwrap(),
        );
        assert!(nl >= ns - 0.5, "lazy {nl} vs summed {ns}");
        assert!(acc.finish(&ctx).unwrap().is_none());
    }
}
