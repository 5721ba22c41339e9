//! Ciphertext × ciphertext by exact tensoring: the centered lift of each operand to an
//! extended RNS basis (Garner digits), products summed lazily in that basis, and the scale-down
//! ⌊t·x/Q⌉ back to the ciphertext moduli; 32-bit-lane paths for moduli below 2^30.

use super::*;
use crate::kernels::rows::{
    above_half32, barrett64, garner_digits32, horner_row, horner_step64, tensor_rows,
};

/// Mixed-radix (Garner) conversion for one RNS basis: x = d_0 + p_0·(d_1 + p_1·(d_2 + …)),
/// using only word operations, plus the digits of ⌊P/2⌋ to detect the negative half.
struct Garner {
    moduli: Vec<Modulus>,
    /// `inv[j][i]` = p_i^{-1} mod p_j for i < j.
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
    /// `inv[j][i]` = (q_i^{-1} mod q_j, shoup) for i < j < k.
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
    /// `aux` holds the auxiliary rows only (row a is extended modulus k + a).
    #[inline(always)]
    fn lift_small_body(&self, sl: &SmallLift, n: usize, coeff: &[u64], aux: &mut [u64]) {
        let k = self.k;
        if k == 2 {
            self.lift2_small_body(sl, n, coeff, aux);
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
            let row = &mut aux[a * n..(a + 1) * n];
            let (q64, mu64) = (q as u64, mu as u64);
            row.fill(0);
            for i in (0..k).rev() {
                horner_row(row, &digits[i * n..(i + 1) * n], rad[i], q64, mu64);
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

    /// [`TensorPlan::lift_small_body`] for two moduli: the upper Garner digit
    /// d₁ = (x₁ − x₀)·q₀⁻¹ mod q₁ and the sign, then per auxiliary modulus m
    /// x₀ + (q₀ mod m)·d₁ (minus Q mod m for the negative half); see [`keyprod::lift2_aux`].
    /// Same integers as the general path.
    #[inline(always)]
    fn lift2_small_body(&self, sl: &SmallLift, n: usize, coeff: &[u64], aux: &mut [u64]) {
        let consts = self.lift2_consts(sl);
        keyprod::lift2_aux(&consts, &coeff[..n], &coeff[n..2 * n], aux);
    }

    /// The constants of the two-modulus centered lift to the auxiliary primes.
    fn lift2_consts(&self, sl: &SmallLift) -> keyprod::Lift2 {
        let q1 = self.ext_moduli[1].value as u32;
        keyprod::Lift2 {
            q0: self.ext_moduli[0].value as u32,
            q1,
            mu1: barrett32_mu(q1),
            inv: sl.inv[1][0],
            half: (sl.half[0], sl.half[1]),
            aux: sl
                .aux
                .iter()
                .enumerate()
                .map(|(a, (rad, qm))| {
                    let m = self.ext_moduli[2 + a].value as u32;
                    (m, barrett32_mu(m), rad[0], *qm)
                })
                .collect(),
        }
    }

    /// The auxiliary rows (Coeff form) of the centered lift of the k rows `coeff` into `aux`.
    fn lift_small(&self, sl: &SmallLift, n: usize, coeff: &[u64], aux: &mut [u64]) {
        crate::simd_dispatch!(
            (p: &TensorPlan, sl: &SmallLift, n: usize, coeff: &[u64], aux: &mut [u64]) => {
                p.lift_small_body(sl, n, coeff, aux)
            } (self, sl, n, coeff, aux)
        )
    }

    /// The auxiliary rows, in Eval form, of the centered lift of an Eval poly over the k
    /// ciphertext moduli (its own rows are the lift's first k rows, unchanged): inverse NTT
    /// into `scratch`, the 32-bit lift, forward NTT of each auxiliary row in `aux`.
    fn lift_aux_eval_small(
        &self,
        ctx: &Context,
        sl: &SmallLift,
        p: &Poly,
        aux: &mut [u64],
        (scratch, scratch32): (&mut Vec<u64>, &mut Vec<u32>),
    ) {
        let n = ctx.n;
        if self.k == 2 {
            let consts = self.lift2_consts(sl);
            if keyprod::lift2_narrow_applies(&consts, n) {
                // The Coeff rows, the lifted rows and the transforms' inputs stay 32-bit
                // values (no widening or packing between the passes).
                let na = self.ext.len() - 2;
                scratch32.resize((2 + na) * n, 0);
                let (coeff, lifted) = scratch32.split_at_mut(2 * n);
                for r in 0..2 {
                    ctx.ntt(r)
                        .inverse_from_narrow(p.row(r), &mut coeff[r * n..(r + 1) * n]);
                }
                keyprod::lift2_aux_narrow(&consts, &coeff[..n], &coeff[n..], lifted);
                for (a, &mi) in self.ext[2..].iter().enumerate() {
                    let rows = a * n..(a + 1) * n;
                    ctx.ntt(mi)
                        .forward_from_narrow(&lifted[rows.clone()], 0, &mut aux[rows]);
                }
                return;
            }
        }
        coeff_rows_into(ctx, p, scratch);
        self.lift_small(sl, n, scratch, aux);
        for (a, &mi) in self.ext[self.k..].iter().enumerate() {
            ctx.ntt(mi).forward(&mut aux[a * n..(a + 1) * n]);
        }
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
            coeff_rows_into(ctx, p, scratch);
            scratch
        };
        if let Some(sl) = &self.small {
            self.lift_small(sl, n, coeff, &mut out.data[k * n..]);
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
    fn scale_round(&self, ctx: &Context, dp: &mut Poly) -> Result<Poly, HeError> {
        let (k, n) = (self.k, ctx.n);
        let e = self.ext.len();
        let tf = ctx.t() as f64;
        dp.inverse_ntt(ctx)?;
        if let Some(sl) = &self.small {
            return Ok(self.scale_round_small(ctx, sl, dp));
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
        crate::simd_dispatch!(
            (p: &TensorPlan, ctx: &Context, sl: &SmallLift, dp: &Poly) -> Poly => {
                p.scale_round_small_body(ctx, sl, dp)
            } (self, ctx, sl, dp)
        )
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
                horner_row(row, &digits[i * n..(i + 1) * n], rad[i - k], q, mu);
            }
            // t·z + rounded (rounded ≤ t < 2^32), minus t·B for the negative half.
            let (tm, tms, tb) = (*tm as u64, *tms as u64, *tb as u64);
            for c in 0..n {
                let b = barrett64(rounded[c] & 0xffff_ffff, q, mu);
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
        .map(|mut dp| plan.scale_round(ctx, &mut dp))
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
    /// The same as 32-bit values (the two-modulus lift with AVX-512).
    scratch32: Vec<u32>,
    /// Auxiliary rows (Eval form) of the four operand polys when they come in Eval form (their
    /// own rows are read in place).
    aux: Vec<u64>,
    /// The extended-basis poly each finish scales down, kept for the next one.
    finish_buf: Option<Poly>,
}

/// The Coeff rows of an Eval poly into `scratch` (inverse NTTs reading the poly's rows).
fn coeff_rows_into(ctx: &Context, p: &Poly, scratch: &mut Vec<u64>) {
    let n = ctx.n;
    scratch.resize(p.data.len(), 0);
    for (r, &mi) in p.basis.iter().enumerate() {
        ctx.ntt(mi)
            .inverse_from(p.row(r), &mut scratch[r * n..(r + 1) * n]);
    }
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
            scratch32: Vec::new(),
            aux: Vec::new(),
            finish_buf: None,
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

    /// Drops any partial sum (after an error part-way through a sum), so the accumulator can
    /// be reused; [`TensorAccumulator::finish`] leaves it cleared already.
    pub fn clear(&mut self) {
        if self.count > 0 || self.lazy > 0 {
            self.acc.fill(0);
            self.acc64.fill(0);
            self.lazy = 0;
            self.count = 0;
            self.correction_factor = None;
        }
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
                self.scratch.clear();
                self.scratch.extend_from_slice(chunk);
                reduce_u64_rows32(q, chunk, &self.scratch);
            }
            self.lazy = 1;
        }
        let k = self.plan.k;
        let polys = [&a.polys[0], &a.polys[1], &b.polys[0], &b.polys[1]];
        let an = (e - k) * n;
        // Eval operands: their k rows are the lift's first rows as they are, so only the
        // auxiliary rows are computed; other operands are lifted whole.
        let eval_small = match &self.plan.small {
            Some(sl) if polys.iter().all(|p| p.format == Format::Eval) => {
                self.aux.resize(4 * an, 0);
                for (aux, p) in self.aux.chunks_exact_mut(an).zip(polys) {
                    self.plan.lift_aux_eval_small(
                        ctx,
                        sl,
                        p,
                        aux,
                        (&mut self.scratch, &mut self.scratch32),
                    );
                }
                true
            }
            _ => {
                if self.lifted.len() < 4 {
                    self.lifted = (0..4)
                        .map(|_| Poly::zero_with_basis(ctx, self.plan.ext.clone(), Format::Coeff))
                        .collect();
                }
                for (out, p) in self.lifted.iter_mut().zip(polys) {
                    self.plan.lift_into(ctx, p, None, out, &mut self.scratch);
                }
                false
            }
        };
        let en = e * n;
        let (acc0, rest) = self.acc64.split_at_mut(en);
        let (acc1, acc2) = rest.split_at_mut(en);
        for r in 0..e {
            let rows = r * n..(r + 1) * n;
            let row = |i: usize| -> &[u64] {
                match (eval_small, r < k) {
                    (true, true) => polys[i].row(r),
                    (true, false) => &self.aux[i * an + (r - k) * n..i * an + (r - k + 1) * n],
                    (false, _) => &self.lifted[i].data[rows.clone()],
                }
            };
            tensor_rows(
                (
                    &mut acc0[rows.clone()],
                    &mut acc1[rows.clone()],
                    &mut acc2[rows.clone()],
                ),
                [row(0), row(1), row(2), row(3)],
            );
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
        // One extended-basis buffer, reused (every row is overwritten before the scale-down).
        let mut dp = self
            .finish_buf
            .take()
            .unwrap_or_else(|| Poly::zero_with_basis(ctx, self.plan.ext.clone(), Format::Eval));
        for p in 0..3 {
            dp.format = Format::Eval;
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
            polys.push(self.plan.scale_round(ctx, &mut dp)?);
        }
        self.finish_buf = Some(dp);
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
        // The auxiliary rows of the same poly in Eval form, as the accumulator lifts its
        // operands (32-bit rows between the passes with AVX-512), equal the lift's (Eval form).
        let mut eval = p.clone();
        eval.forward_ntt(&ctx).unwrap();
        let sl = plan.small.as_ref().unwrap();
        let na = plan.ext.len() - k;
        let mut aux = vec![0u64; na * n];
        plan.lift_aux_eval_small(
            &ctx,
            sl,
            &eval,
            &mut aux,
            (&mut Vec::new(), &mut Vec::new()),
        );
        assert_eq!(fast.format, Format::Eval);
        for a in 0..na {
            assert_eq!(
                &aux[a * n..(a + 1) * n],
                fast.row(k + a),
                "auxiliary row {a}"
            );
        }
        plan.small = None;
        let slow = plan.lift(&ctx, &p, None);
        assert_eq!(fast, slow);
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
            let fast = plan.scale_round(&ctx, &mut p.clone()).unwrap();
            plan.small = None;
            let slow = plan.scale_round(&ctx, &mut p).unwrap();
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
        // Both operands in Eval form take the path that lifts only the auxiliary rows.
        let mut acc_eval = TensorAccumulator::new(&ctx, k);
        assert!(acc.capacity() >= 1000);
        let mut sum: Option<Ciphertext> = None;
        let mut expect = vec![0u64; ctx.n];
        // 40 products: more than the lazy u64 sums hold (32 with auxiliary primes below 2^29),
        // so a mid-way reduction is exercised.
        for j in 0..40u64 {
            // a = (j mod 15) + 1 (constant), b = (2, 0, …, 0, 3 at index j + 1).
            let av = j % 15 + 1;
            let a = Plaintext::new(&ctx, &[av]).unwrap();
            let mut bv = vec![0u64; ctx.n];
            bv[0] = 2;
            bv[j as usize + 1] = 3;
            let b = Plaintext::new(&ctx, &bv).unwrap();
            expect[0] = (expect[0] + 2 * av) % t;
            expect[j as usize + 1] = (expect[j as usize + 1] + 3 * av) % t;
            let ca = encrypt(&ctx, &a, &sk, &mut rng);
            let cb = encrypt(&ctx, &b, &sk, &mut rng);
            let mut cb_eval = cb.clone();
            cb_eval.convert_to(&ctx, Format::Eval);
            acc.add_product(&ctx, &ca, &cb_eval).unwrap();
            let mut ca_eval = ca.clone();
            ca_eval.convert_to(&ctx, Format::Eval);
            acc_eval.add_product(&ctx, &ca_eval, &cb_eval).unwrap();
            let p = multiply(&ctx, &ca, &cb).unwrap();
            match &mut sum {
                None => sum = Some(p),
                Some(s) => s.add_assign(&ctx, &p).unwrap(),
            }
        }
        assert_eq!(acc.len(), 40);
        let lazy = acc.finish(&ctx).unwrap().unwrap();
        assert!(acc.is_empty());
        assert_eq!(acc_eval.finish(&ctx).unwrap().unwrap(), lazy);
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
