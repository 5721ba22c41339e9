//! The shared precomputation (`Context`) and RNS polynomials (`Poly`) in Coeff or Eval form.

use std::sync::Arc;

use crate::HeError;
use crate::arith::{Modulus, bit_reverse, is_prime};
use crate::drbg::{NistAes128Ctr, SEED_LEN};
use crate::ntt::NttTable;
use crate::params::EncryptionParameters;

/// Whether a polynomial holds coefficients or NTT evaluations (Apple's bit-reversed order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Coefficient representation.
    Coeff,
    /// Evaluation (NTT) representation.
    Eval,
}

/// Precomputed tables for one parameter set, shared behind an `Arc`.
///
/// Modulus indices `0..L` are the parameter moduli (index `L−1` is the special prime P);
/// indices `L..` are auxiliary primes below 2^29 used internally by ciphertext multiplication.
#[derive(Debug)]
pub struct Context {
    /// The parameters the context was built from.
    pub params: EncryptionParameters,
    /// Polynomial degree n.
    pub n: usize,
    pub(crate) tables: Vec<NttTable>,
}

impl Context {
    /// Builds NTT tables for every modulus plus the auxiliary multiplication primes.
    pub fn new(params: EncryptionParameters) -> Result<Arc<Context>, HeError> {
        params.validate()?;
        let n = params.n;
        let mut tables = Vec::new();
        for &q in &params.moduli {
            tables.push(NttTable::new(q, n)?);
        }
        // Auxiliary base for exact tensoring: B > 4·n·Q_ct (products of centered lifts), with margin.
        let ct_bits: u32 = params.moduli[..params.ciphertext_moduli_count()]
            .iter()
            .map(|&q| 64 - q.leading_zeros())
            .sum();
        let need_bits = ct_bits + n.trailing_zeros() + 8;
        // Primes just below 2^29 (each above 2^28, so 28 bits counted apiece): every auxiliary
        // NTT and lift runs in 32-bit lanes, a Montgomery product sum of up to 32 products of
        // two values below 2^29 fits a u64 (so the tensor's usual sums of a few dozen products
        // need no reduction part-way), and they lie above 28-bit ciphertext moduli, which lets
        // the centered lift skip reductions ([`crate::kernels::keyprod`]'s `Lift2::direct`).
        let aux_count = need_bits.div_ceil(28) as usize;
        let step = 2 * n as u64;
        let mut cand = ((1u64 << 29) / step) * step + 1;
        let mut aux = 0;
        while aux < aux_count {
            cand -= step;
            if is_prime(cand) && !params.moduli.contains(&cand) {
                tables.push(NttTable::new(cand, n)?);
                aux += 1;
            }
        }
        Ok(Arc::new(Context { params, n, tables }))
    }

    /// Builds the context for an Apple predefined parameter set.
    pub fn predefined(name: &str) -> Result<Arc<Context>, HeError> {
        Context::new(EncryptionParameters::predefined(name)?)
    }

    /// The modulus with index `i` (see the type docs for numbering).
    #[inline]
    pub fn modulus(&self, i: usize) -> &Modulus {
        &self.tables[i].modulus
    }

    /// The NTT table of modulus index `i`.
    #[inline]
    pub fn ntt(&self, i: usize) -> &NttTable {
        &self.tables[i]
    }

    /// Number of parameter moduli L (including the special prime).
    pub fn moduli_count(&self) -> usize {
        self.params.moduli.len()
    }

    /// Number of moduli of a fresh ciphertext.
    pub fn ciphertext_moduli_count(&self) -> usize {
        self.params.ciphertext_moduli_count()
    }

    /// Plaintext modulus t.
    pub fn t(&self) -> u64 {
        self.params.t
    }

    pub(crate) fn aux_indices(&self) -> std::ops::Range<usize> {
        self.params.moduli.len()..self.tables.len()
    }
}

/// An RNS polynomial: one row of n residues per modulus. `basis` lists the context modulus
/// indices of the rows (normally `0..k`; key-switching uses `0..k` plus the special prime).
/// The fields are private to the crate: the words are always `basis.len() × n`, and the
/// form only changes with the transform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poly {
    /// Coeff or Eval.
    pub(crate) format: Format,
    /// Context modulus indices, one per row.
    pub(crate) basis: Vec<usize>,
    /// Degree n.
    pub(crate) n: usize,
    /// Row-major residues, `basis.len() × n`.
    pub(crate) data: Vec<u64>,
}

impl Poly {
    /// Coeff or Eval.
    #[inline]
    pub fn format(&self) -> Format {
        self.format
    }

    /// The context modulus indices of the rows, one per row.
    #[inline]
    pub fn basis(&self) -> &[usize] {
        &self.basis
    }

    /// The degree n (words per row).
    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }

    /// All residues, row after row (`basis().len() × n()` words).
    #[inline]
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// All residues, to overwrite in place (each below its row's modulus).
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// The residues, row after row, taken out of the polynomial.
    pub fn into_data(self) -> Vec<u64> {
        self.data
    }

    /// The zero polynomial over the first `k` moduli.
    pub fn zero(ctx: &Context, k: usize, format: Format) -> Poly {
        Poly::zero_with_basis(ctx, (0..k).collect(), format)
    }

    /// The zero polynomial over an explicit list of context modulus indices.
    pub fn zero_with_basis(ctx: &Context, basis: Vec<usize>, format: Format) -> Poly {
        Poly {
            format,
            n: ctx.n,
            data: vec![0; basis.len() * ctx.n],
            basis,
        }
    }

    /// Number of RNS rows.
    pub fn moduli_count(&self) -> usize {
        self.basis.len()
    }

    /// Row `i` (residues mod the i-th basis modulus).
    #[inline]
    pub fn row(&self, i: usize) -> &[u64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// Mutable row `i`.
    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [u64] {
        &mut self.data[i * self.n..(i + 1) * self.n]
    }

    fn check_compatible(&self, other: &Poly) -> Result<(), HeError> {
        if self.basis != other.basis || self.format != other.format || self.n != other.n {
            return Err(HeError::Mismatch("polynomial basis or format differs"));
        }
        Ok(())
    }

    /// self += other.
    pub fn add_assign(&mut self, ctx: &Context, other: &Poly) -> Result<(), HeError> {
        self.zip_rows(ctx, other, Modulus::add)
    }

    /// self −= other.
    pub fn sub_assign(&mut self, ctx: &Context, other: &Poly) -> Result<(), HeError> {
        self.zip_rows(ctx, other, Modulus::sub)
    }

    /// x ← f(m, x, y) for each residue x of self and y of other, m the row's modulus.
    fn zip_rows(
        &mut self,
        ctx: &Context,
        other: &Poly,
        f: impl Fn(&Modulus, u64, u64) -> u64,
    ) -> Result<(), HeError> {
        self.check_compatible(other)?;
        let n = self.n;
        for (r, &mi) in self.basis.iter().enumerate() {
            let m = ctx.modulus(mi);
            let (a, b) = (
                &mut self.data[r * n..(r + 1) * n],
                &other.data[r * n..(r + 1) * n],
            );
            for (x, &y) in a.iter_mut().zip(b) {
                *x = f(m, *x, y);
            }
        }
        Ok(())
    }

    /// self = −self.
    pub fn neg_assign(&mut self, ctx: &Context) {
        let n = self.n;
        for (r, &mi) in self.basis.iter().enumerate() {
            let m = ctx.modulus(mi);
            for x in &mut self.data[r * n..(r + 1) * n] {
                *x = m.neg(*x);
            }
        }
    }

    /// self ⊙= other (both Eval): pointwise product.
    pub fn mul_assign(&mut self, ctx: &Context, other: &Poly) -> Result<(), HeError> {
        self.check_compatible(other)?;
        if self.format != Format::Eval {
            return Err(HeError::Mismatch("pointwise product needs Eval form"));
        }
        self.zip_rows(ctx, other, Modulus::mul)
    }

    /// self += a ⊙ b (all Eval, same basis).
    pub fn mul_add_assign(&mut self, ctx: &Context, a: &Poly, b: &Poly) -> Result<(), HeError> {
        self.check_compatible(a)?;
        self.check_compatible(b)?;
        if self.format != Format::Eval {
            return Err(HeError::Mismatch("pointwise product needs Eval form"));
        }
        let n = self.n;
        for (r, &mi) in self.basis.iter().enumerate() {
            let m = ctx.modulus(mi);
            let out = &mut self.data[r * n..(r + 1) * n];
            for ((x, &y), &z) in out
                .iter_mut()
                .zip(&a.data[r * n..(r + 1) * n])
                .zip(&b.data[r * n..(r + 1) * n])
            {
                *x = m.reduce_u128(y as u128 * z as u128 + *x as u128);
            }
        }
        Ok(())
    }

    /// self *= c for an integer scalar c (reduced per modulus); works in either form.
    pub fn mul_scalar_assign(&mut self, ctx: &Context, c: u64) {
        let n = self.n;
        for (r, &mi) in self.basis.iter().enumerate() {
            let m = ctx.modulus(mi);
            let w = m.reduce(c);
            let row = &mut self.data[r * n..(r + 1) * n];
            if w == 2 {
                // Doubling (the PIR expansion's leaves that end a level early): an addition,
                // which vectorizes, instead of a 64-bit Shoup product per word.
                double_row(row, m.value);
                continue;
            }
            let ws = m.shoup(w);
            for x in row {
                *x = m.mul_shoup(*x, w, ws);
            }
        }
    }

    /// Forward NTT (Coeff → Eval); error if already Eval.
    pub fn forward_ntt(&mut self, ctx: &Context) -> Result<(), HeError> {
        self.transform(ctx, Format::Eval, NttTable::forward)
    }

    /// Inverse NTT (Eval → Coeff); error if already Coeff.
    pub fn inverse_ntt(&mut self, ctx: &Context) -> Result<(), HeError> {
        self.transform(ctx, Format::Coeff, NttTable::inverse)
    }

    /// Runs `ntt` on every row with its modulus's table, the polynomial then in form `to`;
    /// an error if it already is.
    fn transform(
        &mut self,
        ctx: &Context,
        to: Format,
        ntt: impl Fn(&NttTable, &mut [u64]),
    ) -> Result<(), HeError> {
        if self.format == to {
            return Err(HeError::Mismatch(match to {
                Format::Eval => "forward NTT needs Coeff form",
                Format::Coeff => "inverse NTT needs Eval form",
            }));
        }
        let n = self.n;
        for (r, &mi) in self.basis.iter().enumerate() {
            ntt(ctx.ntt(mi), &mut self.data[r * n..(r + 1) * n]);
        }
        self.format = to;
        Ok(())
    }

    /// Converts to `format` (no-op when already there).
    pub fn convert_to(&mut self, ctx: &Context, format: Format) {
        match (self.format, format) {
            (Format::Coeff, Format::Eval) => self.forward_ntt(ctx).expect("checked form"),
            (Format::Eval, Format::Coeff) => self.inverse_ntt(ctx).expect("checked form"),
            _ => {}
        }
    }

    /// Multiplies by X^power in Z\[X\]/(X^n+1) (Coeff form; power may be negative).
    pub fn multiply_power_of_x(&mut self, ctx: &Context, power: i64) -> Result<(), HeError> {
        if self.format != Format::Coeff {
            return Err(HeError::Mismatch("monomial product needs Coeff form"));
        }
        let n = self.n;
        let two_n = 2 * n as i64;
        let shift = power.rem_euclid(two_n) as usize;
        if shift == 0 {
            return Ok(());
        }
        let mut tmp = vec![0u64; n];
        for (r, &mi) in self.basis.iter().enumerate() {
            let m = ctx.modulus(mi);
            let row = &mut self.data[r * n..(r + 1) * n];
            for (i, &c) in row.iter().enumerate() {
                let j = i + shift;
                let j = if j >= 2 * n { j - 2 * n } else { j };
                if j < n {
                    tmp[j] = c;
                } else {
                    tmp[j - n] = m.neg(c);
                }
            }
            row.copy_from_slice(&tmp);
        }
        Ok(())
    }

    /// Applies the automorphism X → X^g (g odd, 1 < g < 2n) in either form, as Apple's
    /// `applyGalois` (`PolyRq/Galois.swift`).
    pub fn apply_galois(&self, ctx: &Context, g: usize) -> Result<Poly, HeError> {
        let n = self.n;
        if g.is_multiple_of(2) || g <= 1 || g >= 2 * n {
            return Err(HeError::InvalidGaloisElement(g));
        }
        let mut out = self.clone();
        let log_n = n.trailing_zeros();
        match self.format {
            Format::Coeff => {
                for (r, &mi) in self.basis.iter().enumerate() {
                    let m = ctx.modulus(mi);
                    let src = self.row(r);
                    let dst = &mut out.data[r * n..(r + 1) * n];
                    let mut raw = 0usize;
                    for &c in src {
                        let idx = raw & (n - 1);
                        dst[idx] = if (raw >> log_n) & 1 == 1 { m.neg(c) } else { c };
                        raw = (raw + g) & (2 * n - 1);
                    }
                }
            }
            Format::Eval => {
                let perm: Vec<usize> = (0..n)
                    .map(|i| {
                        let rev = bit_reverse(i + n, log_n + 1);
                        let raw = ((g * rev) >> 1) & (n - 1);
                        bit_reverse(raw, log_n)
                    })
                    .collect();
                for r in 0..self.basis.len() {
                    let src = self.row(r);
                    let dst = &mut out.data[r * n..(r + 1) * n];
                    for (d, &p) in dst.iter_mut().zip(&perm) {
                        *d = src[p];
                    }
                }
            }
        }
        Ok(out)
    }

    /// The index map of X → X^g in Eval form: `out[i] = in[perm[i]]` (what
    /// [`Poly::apply_galois`] uses; precompute it once per element for repeated use).
    pub fn galois_eval_permutation(n: usize, g: usize) -> Result<Vec<u32>, HeError> {
        if !n.is_power_of_two() || n > 1 << 31 || g.is_multiple_of(2) || g <= 1 || g >= 2 * n {
            return Err(HeError::InvalidGaloisElement(g));
        }
        let log_n = n.trailing_zeros();
        Ok((0..n)
            .map(|i| {
                let rev = bit_reverse(i + n, log_n + 1);
                let raw = ((g * rev) >> 1) & (n - 1);
                bit_reverse(raw, log_n) as u32
            })
            .collect())
    }

    /// Drops the last row by dividing by its modulus with rounding (Coeff form), as Apple's
    /// `divideAndRoundQLast`: x ← (x + ⌊q_last/2⌋ − [x + ⌊q_last/2⌋]_{q_last}) · q_last⁻¹.
    pub fn divide_and_round_q_last(&mut self, ctx: &Context) -> Result<(), HeError> {
        if self.format != Format::Coeff || self.basis.len() < 2 {
            return Err(HeError::Mismatch(
                "divide-and-round needs Coeff form and ≥ 2 moduli",
            ));
        }
        let n = self.n;
        let k = self.basis.len();
        let ml = *ctx.modulus(self.basis[k - 1]);
        let half = ml.value >> 1;
        let last: Vec<u64> = self.row(k - 1).iter().map(|&x| ml.add(x, half)).collect();
        for r in 0..k - 1 {
            let m = *ctx.modulus(self.basis[r]);
            let inv = m
                .inv(ml.value)
                .ok_or(HeError::Mismatch("moduli not coprime"))?;
            let inv_s = m.shoup(inv);
            let half_i = m.reduce(half);
            for (x, &l) in self.data[r * n..(r + 1) * n].iter_mut().zip(&last) {
                let v = m.sub(m.add(*x, half_i), m.reduce(l));
                *x = m.mul_shoup(v, inv, inv_s);
            }
        }
        self.data.truncate((k - 1) * n);
        self.basis.pop();
        Ok(())
    }

    /// Uniform polynomial from `rng` as Apple's `randomizeUniform`: per row, chunks of
    /// min(n, 1024) coefficients, 16 bytes (LE u128) each, reduced mod q. The form is just a label.
    pub fn random_uniform(
        ctx: &Context,
        basis: Vec<usize>,
        format: Format,
        rng: &mut NistAes128Ctr,
    ) -> Poly {
        let mut p = Poly::zero_with_basis(ctx, basis, format);
        let moduli: Vec<Modulus> = p.basis.iter().map(|&i| *ctx.modulus(i)).collect();
        sample_uniform(&moduli, p.n, &mut p.data, rng);
        p
    }

    /// The `a` polynomial of a seeded ciphertext: uniform in Eval form over the first k moduli.
    pub fn from_seed(ctx: &Context, k: usize, seed: &[u8; SEED_LEN]) -> Poly {
        let mut rng = NistAes128Ctr::new(seed);
        Poly::random_uniform(ctx, (0..k).collect(), Format::Eval, &mut rng)
    }
}

/// `row[i]` ← 2·`row[i]` mod q for words below q (q < 2^63), vectorized for the widest
/// instruction set allowed (the baseline build has no unsigned 64-bit vector compare).
fn double_row(row: &mut [u64], q: u64) {
    #[inline(always)]
    fn body(row: &mut [u64], q: u64) {
        for x in row {
            let v = *x << 1;
            *x = if v >= q { v - q } else { v };
        }
    }
    crate::simd_dispatch!(body, (row: &mut [u64], q: u64))
}

/// Apple's `randomizeUniform` on raw row-major data (`moduli.len() × n`).
pub fn sample_uniform(moduli: &[Modulus], n: usize, data: &mut [u64], rng: &mut NistAes128Ctr) {
    let chunk = n.min(1024);
    let mut bytes = vec![0u8; chunk * 16];
    for (r, m) in moduli.iter().enumerate() {
        for start in (0..n).step_by(chunk) {
            rng.fill(&mut bytes);
            for (i, b) in bytes.chunks_exact(16).enumerate() {
                let v = u128::from_le_bytes(b.try_into().expect("16 bytes"));
                data[r * n + start + i] = m.reduce_u128(v);
            }
        }
    }
}

/// Apple's `randomizeTernary` on raw row-major data: per coefficient u64 then u32 from the rng,
/// v = ((u64 << 32) | u32) mod 3, coefficient v − 1.
pub fn sample_ternary<R: rand_core::RngCore>(
    moduli: &[u64],
    n: usize,
    data: &mut [u64],
    rng: &mut R,
) {
    for i in 0..n {
        let hi = rng.next_u64();
        let lo = rng.next_u32();
        let v = ((((hi as u128) << 32) | lo as u128) % 3) as u64;
        for (r, &q) in moduli.iter().enumerate() {
            data[r * n + i] = (v + q - 1) % q;
        }
    }
}

/// Apple's `randomizeCenteredBinomialDistribution` with σ = 3.2 (k = 21) on raw row-major data.
pub fn sample_cbd<R: rand_core::RngCore>(moduli: &[u64], n: usize, data: &mut [u64], rng: &mut R) {
    const K: u32 = 21;
    let mask = (1u64 << K) - 1;
    for i in 0..n {
        let pos = (rng.next_u64() & mask).count_ones() as u64;
        let neg = (rng.next_u64() & mask).count_ones() as u64;
        for (r, &q) in moduli.iter().enumerate() {
            data[r * n + i] = (pos + q - neg) % q;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubling (the addition path) and another scalar (the Shoup path) both equal x·c mod q,
    /// at the ends of the range too.
    #[test]
    fn scalar_products_match_the_definition() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let k = ctx.ciphertext_moduli_count();
        let mut p = Poly::zero(&ctx, k, Format::Eval);
        for r in 0..k {
            let q = ctx.modulus(r).value;
            for (i, x) in p.row_mut(r).iter_mut().enumerate() {
                *x = match i {
                    0 => q - 1,
                    1 => q / 2,
                    2 => q / 2 + 1,
                    _ => (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % q,
                };
            }
        }
        for c in [2u64, 3, 1 << 40] {
            let mut got = p.clone();
            got.mul_scalar_assign(&ctx, c);
            for r in 0..k {
                let q = ctx.modulus(r).value as u128;
                for (g, &x) in got.row(r).iter().zip(p.row(r)) {
                    assert_eq!(*g as u128, x as u128 * c as u128 % q, "c = {c}");
                }
            }
        }
    }
}
