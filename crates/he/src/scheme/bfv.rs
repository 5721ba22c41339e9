//! BFV: plaintexts, secret keys, ciphertexts, encryption/decryption, key switching (Galois,
//! relinearization), modulus switching, plaintext×ciphertext and ciphertext×ciphertext products.

use std::collections::BTreeMap;

use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};
use rand_core::{CryptoRng, RngCore};

use crate::HeError;
use crate::arith::{Modulus, barrett32, barrett32_mu, shoup32};
use crate::drbg::{NistAes128Ctr, SEED_LEN};
use crate::kernels::keyprod::{self, Mont32};
use crate::packing;
use crate::poly::{Context, Format, Poly, sample_cbd, sample_ternary};

mod eval_switch;
mod tensor;

pub use crate::kernels::rows::reduce_u64_rows32;
pub use eval_switch::{
    SwitchScratch, Twist, apply_galois_eval, apply_galois_eval_into, expand_step_eval,
};
pub use tensor::{TensorAccumulator, multiply};

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
/// The fields are private to the crate: every polynomial shares the form and basis, and the
/// seed is only present while c_1 is the one it generates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    /// c_0, c_1 (, c_2).
    pub(crate) polys: Vec<Poly>,
    /// Apple's correction factor (1 for BFV in this crate).
    pub(crate) correction_factor: u64,
    /// Seed of c_1 while the ciphertext is fresh (enables seeded serialization); any
    /// operation that changes the ciphertext clears it.
    pub(crate) seed: Option<[u8; SEED_LEN]>,
}

impl Ciphertext {
    /// The ciphertext of polynomials c_0, c_1 (, c_2): two or three, all in one form over one
    /// basis (else an error), correction factor 1, no seed.
    pub fn from_polys(polys: Vec<Poly>) -> Result<Ciphertext, HeError> {
        let same =
            |p: &Poly| (p.format, &p.basis, p.n) == (polys[0].format, &polys[0].basis, polys[0].n);
        if !(2..=3).contains(&polys.len()) || !polys.iter().all(same) {
            return Err(HeError::Mismatch(
                "a ciphertext has 2 or 3 polynomials of one form and basis",
            ));
        }
        Ok(Ciphertext {
            polys,
            correction_factor: 1,
            seed: None,
        })
    }

    /// The polynomials c_0, c_1 (, c_2).
    #[inline]
    pub fn polys(&self) -> &[Poly] {
        &self.polys
    }

    /// The polynomials, to overwrite their words in place (their count, form and basis stay);
    /// forgets the seed, as c_1 may change.
    #[inline]
    pub fn polys_mut(&mut self) -> &mut [Poly] {
        self.seed = None;
        &mut self.polys
    }

    /// Apple's correction factor (1 for BFV in this crate).
    pub fn correction_factor(&self) -> u64 {
        self.correction_factor
    }

    /// The seed c_1 was generated from, while the ciphertext is fresh.
    pub fn seed(&self) -> Option<&[u8; SEED_LEN]> {
        self.seed.as_ref()
    }

    /// Forgets the seed (the ciphertext is then serialized in full).
    pub fn clear_seed(&mut self) {
        self.seed = None;
    }

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
        self.zip_polys(ctx, other, Poly::add_assign)
    }

    /// self −= other.
    pub fn sub_assign(&mut self, ctx: &Context, other: &Ciphertext) -> Result<(), HeError> {
        self.zip_polys(ctx, other, Poly::sub_assign)
    }

    /// Applies `f` to each poly pair, padding self with zero polys to other's count.
    fn zip_polys(
        &mut self,
        ctx: &Context,
        other: &Ciphertext,
        f: impl Fn(&mut Poly, &Context, &Poly) -> Result<(), HeError>,
    ) -> Result<(), HeError> {
        self.check(other)?;
        while self.polys.len() < other.polys.len() {
            let z = Poly::zero_with_basis(ctx, self.polys[0].basis.clone(), self.format());
            self.polys.push(z);
        }
        for (a, b) in self.polys.iter_mut().zip(&other.polys) {
            f(a, ctx, b)?;
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
/// coefficient for the whole digit sum (see [`crate::kernels::keyprod`]).
#[derive(Clone, Debug)]
struct KeyRows32 {
    rows: Vec<u32>,
    /// The ciphertext moduli's rows times P⁻¹ mod q_i, laid out as `rows` over the first
    /// L − 1 moduli: the fused expansion step folds the rounding division into its
    /// Montgomery reduction ([`crate::kernels::keyprod::DotFinish`]). Empty unless L = 3 (two
    /// ciphertext moduli, the only case that step handles).
    scaled: Vec<u32>,
    mont: Vec<Mont32>,
    /// Per ciphertext modulus q_i: (P⁻¹ mod q_i, its Shoup factor), P the special prime.
    p_inv: Vec<(u32, u32)>,
    /// Per ciphertext modulus q_i: −P⁻¹ mod q_i in Montgomery form (the factor of the
    /// correction rows next to the scaled key rows).
    p_inv_cf: Vec<u32>,
    l: usize,
}

impl KeyRows32 {
    /// The row of digit j, output polynomial p, modulus mi (n words).
    fn key_row(&self, j: usize, p: usize, mi: usize, n: usize) -> &[u32] {
        let at = ((j * 2 + p) * self.l + mi) * n;
        &self.rows[at..at + n]
    }

    /// [`Self::key_row`] times P⁻¹ mod q_mi, for a ciphertext modulus mi (None when the
    /// scaled rows were not built).
    fn scaled_row(&self, j: usize, p: usize, mi: usize, n: usize) -> Option<&[u32]> {
        let at = ((j * 2 + p) * (self.l - 1) + mi) * n;
        self.scaled.get(at..at + n)
    }
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
                // P⁻¹ mod q_i with its Shoup factor, for the mod-down (None if not coprime).
                let pv = ctx.modulus(l - 1).value;
                let p_inv = (0..l - 1)
                    .map(|i| {
                        let q = ctx.modulus(i).value as u32;
                        let inv = ctx.modulus(i).inv(pv)? as u32;
                        Some((inv, shoup32(inv, q)))
                    })
                    .collect::<Option<Vec<_>>>()?;
                let mut rows = Vec::with_capacity(self.ciphertexts.len() * 2 * l * n);
                let mut scaled = Vec::new();
                for ct in &self.ciphertexts {
                    if ct.polys.len() != 2 || ct.polys.iter().any(|p| p.basis.len() != l) {
                        return None;
                    }
                    for p in &ct.polys {
                        for (mi, m) in mont.iter().enumerate() {
                            rows.extend(p.row(mi).iter().map(|&w| m.to_mont(w as u32)));
                        }
                        if l == 3 {
                            for (mi, &(inv, _)) in p_inv.iter().enumerate() {
                                let md = ctx.modulus(mi);
                                scaled.extend(
                                    p.row(mi)
                                        .iter()
                                        .map(|&w| mont[mi].to_mont(md.mul(w, inv as u64) as u32)),
                                );
                            }
                        }
                    }
                }
                let p_inv_cf = p_inv
                    .iter()
                    .zip(&mont)
                    .map(|(&(inv, _), m)| m.to_mont((m.q() - inv) % m.q()))
                    .collect();
                Some(KeyRows32 {
                    rows,
                    scaled,
                    mont,
                    p_inv,
                    p_inv_cf,
                    l,
                })
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

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

    /// An expansion step (fused with AVX-512) gives exactly c + σ(c) and (c − σ(c))·w from
    /// the generic Eval Galois step, on Apple's moduli and on moduli where a digit mod q₁ is
    /// not below 4·q₀ (the digit is then reduced before its transform), with a twist given
    /// per row and per block.
    #[test]
    fn expansion_step_matches_galois_then_sum_and_difference() {
        let n = 64usize;
        let prime_near = |bits: u32, skip: usize| -> u64 {
            (1u64..)
                .map(|i| (1u64 << bits) - i * 2 * n as u64 + 1)
                .filter(|&q| crate::arith::is_prime(q))
                .nth(skip)
                .unwrap()
        };
        let custom = crate::EncryptionParameters::new(
            n,
            17,
            vec![prime_near(25, 0), prime_near(28, 0), prime_near(28, 1)],
        )
        .unwrap();
        for ctx in [
            Context::predefined("n_4096_logq_27_28_28_logt_5").unwrap(),
            Context::new(custom).unwrap(),
        ] {
            let n = ctx.n;
            let mut rng = StdRng::seed_from_u64(17);
            let sk = SecretKey::generate(&ctx, &mut rng);
            let g = n / 8 + 1;
            let key = EvaluationKey::generate(&ctx, &sk, &[g], true, &mut rng).unwrap();
            let ksk = key.galois.get(&g).unwrap();
            let perm = Poly::galois_eval_permutation(n, g).unwrap();
            let vals: Vec<u64> = (0..n as u64).map(|i| i % ctx.t()).collect();
            let mut ct = encrypt(&ctx, &Plaintext::new(&ctx, &vals).unwrap(), &sk, &mut rng);
            ct.convert_to(&ctx, Format::Eval);
            let k = ctx.ciphertext_moduli_count();
            // A twist constant on blocks of 8 coefficients, given both ways.
            let words: Vec<u64> = (0..k * n / 8)
                .map(|i| {
                    let q = ctx.modulus(i / (n / 8)).value;
                    let w = (i as u64 * 7919 + 3) % q;
                    w | ((w << 32) / q) << 32
                })
                .collect();
            let packed: Vec<u64> = (0..k * n).map(|c| words[c / 8]).collect();
            let w: Vec<u64> = packed.iter().map(|&x| x & 0xffff_ffff).collect();
            let mut scratch = SwitchScratch::default();
            let sigma = apply_galois_eval(&ctx, &ct, g, &perm, ksk, &mut scratch).unwrap();
            for blocks in [None, Some((8, words.as_slice()))] {
                let mut plus = ct.clone();
                let mut minus = ct.clone();
                let twist = Twist {
                    w: &w,
                    packed: &packed,
                    blocks,
                };
                expand_step_eval(
                    &ctx,
                    &mut plus,
                    g,
                    1,
                    &perm,
                    ksk,
                    twist,
                    &mut scratch,
                    &mut minus,
                )
                .unwrap();
                for (p, (pp, mp)) in plus.polys.iter().zip(&minus.polys).enumerate() {
                    for r in 0..k {
                        let m = ctx.modulus(r);
                        for c in 0..n {
                            let (a, b) = (ct.polys[p].row(r)[c], sigma.polys[p].row(r)[c]);
                            let wc = w[r * n + c];
                            assert_eq!(pp.row(r)[c], m.add(a, b), "plus p{p} r{r} c{c}");
                            assert_eq!(
                                mp.row(r)[c],
                                m.mul(m.sub(a, b), wc),
                                "minus p{p} r{r} c{c}"
                            );
                        }
                    }
                }
            }
        }
    }
}
