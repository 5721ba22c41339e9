//! Key switching entirely in Eval form (hybrid, one digit per ciphertext modulus, special prime
//! P): the Galois step of the PIR expansion without NTT round trips of the whole ciphertext.

use super::*;

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
    /// σ(c₀) rows and the key switch's rows before the rounding division (fused expansion
    /// step only).
    sigma0: Vec<u64>,
    /// σ(c₁)'s Coeff rows as plain 32-bit values (fused expansion step only: the inverse
    /// transforms write them without widening, the digit transforms read them unpacked).
    coeff32: Vec<u32>,
    /// The special prime's two rows in Coeff form, lifted, as 32-bit values (fused step).
    p32: Vec<u32>,
    u0: Vec<u64>,
    u1: Vec<u64>,
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
    /// [`KeySwitchKey::switch_eval`] for moduli below 2^30: Montgomery dot products of the
    /// digits with the 32-bit key rows, Barrett digit reduction and the mod-down steps, each a
    /// [`crate::kernels::keyprod`] kernel that picks AVX2 itself (so this driver needs no SIMD build).
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
        self.switch_small(
            ctx,
            k,
            ks,
            (target_coeff, target_eval),
            (out0, out1),
            scratch,
            |_, i, row, corr| {
                let q = ctx.modulus(i).value as u32;
                let (inv, inv_s) = ks.p_inv[i];
                keyprod::sub_mul(row, corr, q, inv, inv_s);
            },
        );
        Ok(())
    }

    /// A key switch over moduli below 2^30: the digit products into `acc` (k rows each) and
    /// the special prime's rows, then the rounding division by P, whose last step is
    /// `finish(p, i, row, corr)` for row i of acc.p and its correction, to be turned into
    /// (row − corr)·P⁻¹ in whatever pass suits the caller.
    #[allow(clippy::too_many_arguments)]
    fn switch_small(
        &self,
        ctx: &Context,
        k: usize,
        ks: &KeyRows32,
        target: (&[u64], &[u64]),
        (acc0, acc1): (&mut [u64], &mut [u64]),
        s: &mut SwitchScratch,
        mut finish: impl FnMut(usize, usize, &mut [u64], &[u64]),
    ) {
        self.key_products_small(
            ctx,
            k,
            ks,
            target,
            (&mut *acc0, &mut *acc1),
            &mut s.digits,
            (&mut s.p0, &mut s.p1),
        );
        let n = ctx.n;
        mod_down_small(
            ctx,
            k,
            ks,
            (&mut s.p0, &mut s.p1),
            &mut s.buf,
            |p, i, corr| {
                let acc = if p == 0 { &mut *acc0 } else { &mut *acc1 };
                finish(p, i, &mut acc[i * n..(i + 1) * n], corr);
            },
        );
    }

    /// [`expand_step_eval`]'s key switch for two ciphertext moduli with each row's dot
    /// products and finish fused ([`keyprod::dot_finish_twist`]): the special prime's row
    /// first, its rounding-division corrections, then per modulus the digit, both corrections
    /// and one pass that writes the step's outputs, with the rounding division by P folded
    /// into the rows' Montgomery reduction (the key rows scaled by P⁻¹). Same integers as
    /// [`Self::switch_small`] followed by [`keyprod::finish_twist`]; the switched rows never go
    /// through memory. The digits transformed here and the corrections are left below 4q
    /// ([`crate::ntt::NttTable::forward_from_lazy`]): every use is a product reduced after.
    /// `corr` are two scratch rows of at least n words; needs the scaled key rows,
    /// 9·q_i < 2^32 and 8·P < 2^32.
    #[allow(clippy::too_many_arguments)]
    fn switch_fused_expand(
        &self,
        ctx: &Context,
        ks: &KeyRows32,
        (target_coeff, target_eval): (&[u32], &[u64]),
        (sigma0, twist): (&[u64], Twist),
        (plus, minus): (&mut [Poly], &mut [Poly]),
        s: &mut SwitchScratch,
        (corr0, corr1): (&mut [u64], &mut [u64]),
    ) {
        const K: usize = 2;
        let n = ctx.n;
        let l = ks.l;
        let special = l - 1;
        let key = |j: usize, p: usize, mi: usize| ks.key_row(j, p, mi, n);
        s.p0.resize(n, 0);
        s.p1.resize(n, 0);
        s.digits.resize(K * n, 0);
        // The special prime's rows: both digits transformed mod P, the dot products.
        let pv = ctx.modulus(special).value as u32;
        let mu_p = barrett32_mu(pv);
        for j in 0..K {
            let d = &mut s.digits[j * n..(j + 1) * n];
            digit_row32(
                ctx,
                j,
                special,
                (pv, mu_p),
                &target_coeff[j * n..(j + 1) * n],
                d,
            );
        }
        let (d0, d1) = s.digits.split_at(n);
        keyprod::dot_redc(
            ks.mont[special],
            &[d0, d1],
            &[key(0, 0, special), key(1, 0, special)],
            &[key(0, 1, special), key(1, 1, special)],
            &mut s.p0,
            &mut s.p1,
        );
        // Their Coeff form, lifted for the corrections, as plain 32-bit values.
        let half = pv >> 1;
        s.p32.resize(2 * n, 0);
        let (p32_0, p32_1) = s.p32.split_at_mut(n);
        for (p, out) in [(&s.p0, p32_0), (&s.p1, p32_1)] {
            ctx.ntt(special).inverse_from_narrow_add(p, half, out);
        }
        let (corr0, corr1) = (&mut corr0[..n], &mut corr1[..n]);
        for r in 0..K {
            let rows = r * n..(r + 1) * n;
            let q = ctx.modulus(r).value as u32;
            // The other digit in Eval form mod q_r (digit r is the target's own Eval row).
            let j = 1 - r;
            let d = &mut s.digits[j * n..(j + 1) * n];
            digit_row32(
                ctx,
                j,
                r,
                (q, barrett32_mu(q)),
                &target_coeff[j * n..(j + 1) * n],
                d,
            );
            let (p32_0, p32_1) = s.p32.split_at(n);
            correction_row32(ctx, r, (pv, half), p32_0, corr0);
            correction_row32(ctx, r, (pv, half), p32_1, corr1);
            let own = &target_eval[rows.clone()];
            let other = &s.digits[j * n..(j + 1) * n];
            let srcs = if r == 0 { [own, other] } else { [other, own] };
            let scaled = |j: usize, p: usize| {
                ks.scaled_row(j, p, r, n)
                    .expect("scaled key rows (checked by expand_step_eval)")
            };
            let args = keyprod::DotFinish {
                m: ks.mont[r],
                srcs,
                keys: [[scaled(0, 0), scaled(1, 0)], [scaled(0, 1), scaled(1, 1)]],
                corr: [corr0, corr1],
                cf: ks.p_inv_cf[r],
                add: &sigma0[rows.clone()],
                q,
                twist: match twist.blocks {
                    Some((b, words)) => (b, &words[r * (n / b)..(r + 1) * (n / b)]),
                    None => (1, &twist.packed[rows.clone()]),
                },
            };
            let (pa, pb) = plus.split_at_mut(1);
            let (ma, mb) = minus.split_at_mut(1);
            keyprod::dot_finish_twist(
                &args,
                [&mut pa[0].data[rows.clone()], &mut pb[0].data[rows.clone()]],
                [&mut ma[0].data[rows.clone()], &mut mb[0].data[rows]],
            );
        }
    }

    /// The digit products of a key switch over moduli below 2^30: per output modulus, the
    /// digits in Eval form (the target's own Eval row for its modulus, else the digit reduced
    /// and NTT'd), then the Montgomery dot product with the key rows. The k ciphertext moduli's
    /// rows go to `out`, the special prime's to `p0`/`p1`.
    #[allow(clippy::too_many_arguments)]
    fn key_products_small(
        &self,
        ctx: &Context,
        k: usize,
        ks: &KeyRows32,
        (target_coeff, target_eval): (&[u64], &[u64]),
        (out0, out1): (&mut [u64], &mut [u64]),
        digits: &mut Vec<u64>,
        (p0, p1): (&mut Vec<u64>, &mut Vec<u64>),
    ) {
        let n = ctx.n;
        let l = ks.l;
        let special = l - 1;
        p0.resize(n, 0);
        p1.resize(n, 0);
        digits.resize(k * n, 0);
        for r in 0..=k {
            let mi = if r < k { r } else { special };
            let q = ctx.modulus(mi).value as u32;
            let mu = barrett32_mu(q);
            for j in (0..k).filter(|&j| j != r) {
                let d = &mut digits[j * n..(j + 1) * n];
                digit_row(
                    ctx,
                    j,
                    mi,
                    (q, mu),
                    &target_coeff[j * n..(j + 1) * n],
                    d,
                    false,
                );
            }
            let srcs: Vec<&[u64]> = (0..k)
                .map(|j| {
                    if j == r {
                        &target_eval[j * n..(j + 1) * n]
                    } else {
                        &digits[j * n..(j + 1) * n]
                    }
                })
                .collect();
            let keys =
                |p: usize| -> Vec<&[u32]> { (0..k).map(|j| ks.key_row(j, p, mi, n)).collect() };
            let (d0, d1): (&mut [u64], &mut [u64]) = if r < k {
                (&mut out0[r * n..(r + 1) * n], &mut out1[r * n..(r + 1) * n])
            } else {
                (&mut p0[..], &mut p1[..])
            };
            crate::kernels::keyprod::dot_redc(ks.mont[mi], &srcs, &keys(0), &keys(1), d0, d1);
        }
    }
}

/// The rounding division by the special prime P of a key switch over moduli below 2^30, on
/// the NTT side: per polynomial p (0, 1) and ciphertext modulus i, the correction row
/// ([x_P + ⌊P/2⌋]_P − ⌊P/2⌋ taken to Eval form mod q_i) is handed to `finish(p, i, corr)`,
/// which computes (x − corr)·P⁻¹ in whatever pass suits its caller.
fn mod_down_small(
    ctx: &Context,
    k: usize,
    ks: &KeyRows32,
    (p0, p1): (&mut [u64], &mut [u64]),
    buf: &mut Vec<u64>,
    mut finish: impl FnMut(usize, usize, &[u64]),
) {
    let n = ctx.n;
    let special = ks.l - 1;
    buf.resize(n, 0);
    let pv = ctx.modulus(special).value as u32;
    let half = pv >> 1;
    for (poly, p) in [p0, p1].into_iter().enumerate() {
        lift_special_row(ctx, special, half, p);
        for i in 0..k {
            correction_row(ctx, i, (pv, half), p, buf, false);
            finish(poly, i, buf);
        }
    }
}

/// Digit j (the Coeff row `src` mod q_j) in Eval form mod modulus `mi` (q with its Barrett
/// factor) into `d`: reduced, or below 4q when `lazy` ([`crate::ntt::NttTable::forward_from_lazy`]).
fn digit_row(
    ctx: &Context,
    j: usize,
    mi: usize,
    (q, mu): (u32, u32),
    src: &[u64],
    d: &mut [u64],
    lazy: bool,
) {
    // A digit below q_j < 4q goes straight into the transform, which reduces it.
    if ctx.modulus(j).value < 4 * q as u64 {
        transform_from(ctx, mi, src, 0, d, lazy);
    } else {
        keyprod::reduce_add(d, src, q, mu, 0);
        ctx.ntt(mi).forward(d);
    }
}

/// [`digit_row`] of a digit row held as plain 32-bit values, outputs left below 4q.
fn digit_row32(
    ctx: &Context,
    j: usize,
    mi: usize,
    (q, mu): (u32, u32),
    src: &[u32],
    d: &mut [u64],
) {
    // A digit below q_j < 4q goes straight into the transform (lazy outputs either way).
    if ctx.modulus(j).value < 4 * q as u64 {
        ctx.ntt(mi).forward_from_narrow_lazy(src, 0, d);
    } else {
        for (x, &v) in d.iter_mut().zip(src) {
            *x = barrett32(v, q, mu) as u64;
        }
        ctx.ntt(mi).forward(d);
    }
}

/// The forward transform mod modulus `mi` of `src + add` into `dst`: reduced, or only below 4q
/// when `lazy` ([`crate::ntt::NttTable::forward_from_lazy`]).
fn transform_from(ctx: &Context, mi: usize, src: &[u64], add: u32, dst: &mut [u64], lazy: bool) {
    if lazy {
        ctx.ntt(mi).forward_from_lazy(src, add, dst);
    } else {
        ctx.ntt(mi).forward_from(src, add, dst);
    }
}

/// The special prime's row `p` of a key switch (Eval) to Coeff form, lifted to
/// [x + ⌊P/2⌋]_P, the input of [`correction_row`]. `half` = ⌊P/2⌋.
fn lift_special_row(ctx: &Context, special: usize, half: u32, p: &mut [u64]) {
    ctx.ntt(special).inverse_add(p, half as u64);
}

/// The correction row of the rounding division by P for ciphertext modulus i: the special
/// prime's row `p` (Coeff, lifted to [x + ⌊P/2⌋]_P by [`lift_special_row`]) minus ⌊P/2⌋,
/// in Eval form mod q_i, into `buf` (below 4q_i rather than reduced when `lazy`).
/// `(pv, half)` = (P, ⌊P/2⌋).
fn correction_row(
    ctx: &Context,
    i: usize,
    (pv, half): (u32, u32),
    p: &[u64],
    buf: &mut [u64],
    lazy: bool,
) {
    let (q, mu, add, direct) = correction_offset(ctx, i, (pv, half));
    if direct {
        transform_from(ctx, i, p, add, buf, lazy);
    } else {
        keyprod::reduce_add(buf, p, q, mu, add);
        ctx.ntt(i).forward(buf);
    }
}

/// What both correction rows need for ciphertext modulus i: q_i, its Barrett factor, the
/// offset −⌊P/2⌋ mod q_i, and whether the lifted row plus that offset can go straight into
/// the transform (p + add < P + q is below its 4q input bound when P < 3q).
fn correction_offset(ctx: &Context, i: usize, (pv, half): (u32, u32)) -> (u32, u32, u32, bool) {
    let q = ctx.modulus(i).value as u32;
    let mu = barrett32_mu(q);
    let add = (q - barrett32(half, q, mu)) % q;
    (q, mu, add, (pv as u64) < 3 * q as u64)
}

/// [`correction_row`] (outputs below 4q) of a lifted special-prime row held as plain 32-bit
/// values.
fn correction_row32(ctx: &Context, i: usize, (pv, half): (u32, u32), p: &[u32], buf: &mut [u64]) {
    let (q, mu, add, direct) = correction_offset(ctx, i, (pv, half));
    if direct {
        ctx.ntt(i).forward_from_narrow_lazy(p, add, buf);
    } else {
        for (x, &v) in buf.iter_mut().zip(p) {
            let r = barrett32(v, q, mu) + add;
            *x = r.min(r.wrapping_sub(q)) as u64;
        }
        ctx.ntt(i).forward(buf);
    }
}

/// Where [`gather_galois`] writes σ(c₁)'s Coeff rows: words, or plain 32-bit values for the
/// fused expansion step ([`crate::ntt::NttTable::inverse_from_narrow`]).
enum CoeffRows<'a> {
    Words(&'a mut [u64]),
    Narrow(&'a mut [u32]),
}

/// σ(c₁) of a 2-poly Eval ciphertext over the first k moduli in both forms, one gather per
/// row (`c1_eval`) and an inverse NTT reading the gathered rows (`coeff`), and σ(c₀) into
/// `sigma0` when given (the same gather). `perm` is the Eval permutation of σ.
fn gather_galois(
    ctx: &Context,
    ct: &Ciphertext,
    perm: &[u32],
    c1_eval: &mut [u64],
    mut coeff: CoeffRows,
    mut sigma0: Option<&mut [u64]>,
) {
    let n = ctx.n;
    for r in 0..ct.polys[0].basis.len() {
        let rows = r * n..(r + 1) * n;
        let (src0, src1) = (ct.polys[0].row(r), ct.polys[1].row(r));
        match sigma0.as_deref_mut() {
            Some(sigma0) => keyprod::gather_rows(
                perm,
                [src1, src0],
                [&mut c1_eval[rows.clone()], &mut sigma0[rows.clone()]],
            ),
            None => keyprod::gather_rows(perm, [src1], [&mut c1_eval[rows.clone()]]),
        }
        let gathered = &c1_eval[rows.clone()];
        match &mut coeff {
            CoeffRows::Words(c) => ctx.ntt(r).inverse_from(gathered, &mut c[rows]),
            CoeffRows::Narrow(c) => ctx.ntt(r).inverse_from_narrow(gathered, &mut c[rows]),
        }
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
    let n = ctx.n;
    let k = check_eval_galois(ctx, ct, g, perm)?;
    out.reshape_eval(k, n);
    let mut c1_eval = std::mem::take(&mut scratch.eval);
    let mut coeff = std::mem::take(&mut scratch.coeff);
    c1_eval.resize(k * n, 0);
    coeff.resize(k * n, 0);
    gather_galois(
        ctx,
        ct,
        perm,
        &mut c1_eval,
        CoeffRows::Words(&mut coeff),
        None,
    );
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

/// Checks an Eval Galois step's operands: a 2-poly Eval ciphertext over the first k moduli
/// (returns k) and a valid element g with its n-entry permutation.
fn check_eval_galois(
    ctx: &Context,
    ct: &Ciphertext,
    g: usize,
    perm: &[u32],
) -> Result<usize, HeError> {
    if ct.polys.len() != 2 || ct.format() != Format::Eval || ct.correction_factor != 1 {
        return Err(HeError::Mismatch(
            "Eval Galois needs a 2-polynomial Eval ciphertext",
        ));
    }
    let n = ctx.n;
    if perm.len() != n || g.is_multiple_of(2) || g <= 1 || g >= 2 * n {
        return Err(HeError::InvalidGaloisElement(g));
    }
    let k = ct.polys[0].basis.len();
    if ct.polys.iter().any(|p| p.basis.iter().copied().ne(0..k)) {
        return Err(HeError::Mismatch("Eval Galois needs ciphertext moduli"));
    }
    Ok(k)
}

impl Ciphertext {
    /// A ciphertext of 2 Eval polys over the first k moduli of degree n, every word zero (with
    /// k = n = 0, an empty buffer for [`Ciphertext::reshape_eval`] to grow).
    pub fn eval_shaped(k: usize, n: usize) -> Ciphertext {
        let mut c = Ciphertext {
            polys: Vec::with_capacity(2),
            correction_factor: 1,
            seed: None,
        };
        c.reshape_eval(k, n);
        c
    }

    /// Shapes this ciphertext as 2 Eval polys over the first k moduli of degree n, reusing its
    /// buffers (resized, not zeroed: the caller overwrites every word), so pools of
    /// ciphertexts can serve any step without allocating.
    pub fn reshape_eval(&mut self, k: usize, n: usize) {
        self.polys.truncate(2);
        while self.polys.len() < 2 {
            self.polys.push(Poly {
                format: Format::Eval,
                basis: Vec::new(),
                n,
                data: Vec::new(),
            });
        }
        for p in &mut self.polys {
            p.format = Format::Eval;
            p.n = n;
            p.basis.clear();
            p.basis.extend(0..k);
            p.data.resize(k * n, 0);
        }
        self.correction_factor = 1;
        self.seed = None;
    }
}

/// A twist row set for [`expand_step_eval`].
#[derive(Clone, Copy, Debug)]
pub struct Twist<'a> {
    /// w in Eval form (k rows of n words).
    pub w: &'a [u64],
    /// Its Shoup factors (k rows of n words): for moduli below 2^30 each word packs w (low
    /// half) with ⌊w·2^32/q⌋ (high half), so the fused pass loads one word for both;
    /// ⌊w·2^64/q⌋ otherwise.
    pub packed: &'a [u64],
    /// `(b, rows)` when every row of w is constant on aligned blocks of b ≥ 8 coefficients
    /// (X^(−s) for s ≥ 8 is): the packed words once per block, k rows of n/b words. The fused
    /// AVX-512 pass then broadcasts one word per eight coefficients instead of streaming a
    /// row; the expansion's deeper levels, where most key switches are, all qualify.
    pub blocks: Option<(usize, &'a [u64])>,
}

/// One step of the PIR query expansion on an Eval-form 2-poly ciphertext c over the first k
/// moduli: with c′ = σ(c) switched back to the secret key, where σ is the automorphism g
/// applied `count` times (`perm` its Eval permutation), c ← c + c′ and `minus` ←
/// (c − c′)·w for the twist w. The same integers as [`apply_galois_eval_into`] followed by
/// the sum and the twisted difference; for moduli below 2^30 and one application the key
/// switch's rounding division, σ(c₀) and both outputs come out of a single pass per row.
#[allow(clippy::too_many_arguments)]
pub fn expand_step_eval(
    ctx: &Context,
    ct: &mut Ciphertext,
    g: usize,
    count: usize,
    perm: &[u32],
    ksk: &KeySwitchKey,
    twist: Twist,
    scratch: &mut SwitchScratch,
    minus: &mut Ciphertext,
) -> Result<(), HeError> {
    let n = ctx.n;
    let k = check_eval_galois(ctx, ct, g, perm)?;
    let blocks_ok = match twist.blocks {
        None => true,
        Some((b, rows)) => b >= 8 && n.is_multiple_of(b) && rows.len() == k * (n / b),
    };
    if twist.w.len() != k * n || twist.packed.len() != k * n || !blocks_ok || count == 0 {
        return Err(HeError::Mismatch("expansion twist rows"));
    }
    let rows = (count == 1)
        .then(|| ksk.rows32(ctx))
        .flatten()
        .filter(|ks| ks.mont.iter().all(|m| m.fits(k)));
    let Some(ks) = rows else {
        return expand_step_generic(ctx, ct, g, count, perm, ksk, twist, scratch, minus);
    };
    minus.reshape_eval(k, n);
    ct.seed = None;
    let s = scratch;
    let mut c1_eval = std::mem::take(&mut s.eval);
    let mut coeff = std::mem::take(&mut s.coeff);
    let mut sigma0 = std::mem::take(&mut s.sigma0);
    let (mut u0, mut u1) = (std::mem::take(&mut s.u0), std::mem::take(&mut s.u1));
    for v in [&mut c1_eval, &mut coeff, &mut sigma0, &mut u0, &mut u1] {
        v.resize(k * n, 0);
    }
    // The fused rows reduce three products at once (two digits and the correction), the
    // other digit and the correction left below 4q by their transforms: 9q² < q·2^32. The
    // special prime's two lazy digits: 8P² < P·2^32.
    let fused = k == 2
        && crate::simd::level().isa() == crate::simd::Isa::Avx512
        && !ks.scaled.is_empty()
        && ks.mont[..k].iter().all(|m| m.fits(9))
        && ks.mont[ks.l - 1].fits(8);
    // The fused path takes the Coeff rows of σ(c₁) as 32-bit values, the other as words.
    let mut coeff32 = std::mem::take(&mut s.coeff32);
    let rows = if fused {
        coeff32.resize(k * n, 0);
        CoeffRows::Narrow(&mut coeff32)
    } else {
        CoeffRows::Words(&mut coeff)
    };
    gather_galois(ctx, ct, perm, &mut c1_eval, rows, Some(&mut sigma0));
    let (plus, minus) = (&mut ct.polys, &mut minus.polys);
    if fused {
        ksk.switch_fused_expand(
            ctx,
            ks,
            (&coeff32, &c1_eval),
            (&sigma0, twist),
            (plus, minus),
            s,
            (&mut u0, &mut u1),
        );
    } else {
        ksk.switch_small(
            ctx,
            k,
            ks,
            (&coeff, &c1_eval),
            (&mut u0, &mut u1),
            s,
            |p, i, acc, corr| {
                let rows = i * n..(i + 1) * n;
                keyprod::finish_twist(
                    &mut plus[p].data[rows.clone()],
                    &mut minus[p].data[rows.clone()],
                    acc,
                    corr,
                    (p == 0).then(|| &sigma0[rows.clone()]),
                    ctx.modulus(i).value as u32,
                    ks.p_inv[i],
                    &twist.packed[rows],
                );
            },
        );
    }
    s.eval = c1_eval;
    s.coeff = coeff;
    s.coeff32 = coeff32;
    s.sigma0 = sigma0;
    s.u0 = u0;
    s.u1 = u1;
    Ok(())
}

/// [`expand_step_eval`] for any moduli and repeated applications: the Galois steps one by
/// one, then the sum and the twisted difference in a second pass.
#[allow(clippy::too_many_arguments)]
fn expand_step_generic(
    ctx: &Context,
    ct: &mut Ciphertext,
    g: usize,
    count: usize,
    perm: &[u32],
    ksk: &KeySwitchKey,
    Twist { w, .. }: Twist,
    scratch: &mut SwitchScratch,
    minus: &mut Ciphertext,
) -> Result<(), HeError> {
    apply_galois_eval_into(ctx, ct, g, perm, ksk, scratch, minus)?;
    let mut tmp = Ciphertext {
        polys: Vec::new(),
        correction_factor: 1,
        seed: None,
    };
    for _ in 1..count {
        apply_galois_eval_into(ctx, minus, g, perm, ksk, scratch, &mut tmp)?;
        std::mem::swap(minus, &mut tmp);
    }
    let n = ctx.n;
    for (s, d) in ct.polys.iter_mut().zip(&mut minus.polys) {
        for r in 0..s.basis.len() {
            let m = *ctx.modulus(s.basis[r]);
            let rows = r * n..(r + 1) * n;
            for ((a, b), &w) in s.data[rows.clone()]
                .iter_mut()
                .zip(&mut d.data[rows.clone()])
                .zip(&w[rows])
            {
                let (x, c) = (*a, *b);
                *a = m.add(x, c);
                *b = m.mul(m.sub(x, c), w);
            }
        }
    }
    ct.seed = None;
    Ok(())
}
