//! MulPir index PIR: the client's query and decoding (`MulPirClient`, `PirUtil.compressInputs`)
//! and the server's oblivious expansion and response (`PirUtil.expand`, `MulPirServer`).

use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};
use sift_he::bfv::SwitchScratch;
use sift_he::{
    Ciphertext, Context, EvalAccumulator, EvaluationKey, Format, Plaintext, Poly, SecretKey,
    TensorAccumulator, bfv,
};

use crate::PirError;
use crate::database::ProcessedDatabase;
use crate::params::IndexPirParameter;

fn ceil_log2(x: usize) -> u32 {
    if x <= 1 {
        0
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

fn pow_mod(mut b: u64, mut e: u64, m: u64) -> u64 {
    let mut r = 1u128;
    let mut b128 = b as u128 % m as u128;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b128 % m as u128;
        }
        b128 = b128 * b128 % m as u128;
        e >>= 1;
    }
    b = r as u64;
    b
}

/// Hot positions of a query for `indices` (one per PIR call), as `MulPirClient.generateQuery`.
pub fn query_positions(
    param: &IndexPirParameter,
    bytes_per_plaintext: usize,
    indices: &[usize],
) -> Result<Vec<usize>, PirError> {
    let per_pt = param.entries_per_plaintext(bytes_per_plaintext);
    let mut acc = 0;
    let mut out = Vec::with_capacity(indices.len() * param.dimensions.len());
    for &idx in indices {
        if idx >= param.entry_count {
            return Err(PirError::InvalidParameters(format!(
                "index {idx} out of range {}",
                param.entry_count
            )));
        }
        let mut p = idx / per_pt;
        let mut product: usize = param.dimensions.iter().product();
        for &d in &param.dimensions {
            product /= d;
            let coord = p / product;
            p -= coord * product;
            out.push(acc + coord);
            acc += d;
        }
    }
    Ok(out)
}

/// Client query: for each PIR call the hot positions hold (2^⌈log₂ m⌉)⁻¹ mod t, packed n per
/// ciphertext (m = inputs in that ciphertext); encrypted as seeded ciphertexts.
pub fn generate_query<R: RngCore + CryptoRng>(
    ctx: &Context,
    param: &IndexPirParameter,
    indices: &[usize],
    sk: &SecretKey,
    rng: &mut R,
) -> Result<Vec<Ciphertext>, PirError> {
    let bpp = ctx.params.bytes_per_plaintext();
    let hot = query_positions(param, bpp, indices)?;
    let total = param.expanded_query_count() * indices.len();
    let t = ctx.t();
    let n = ctx.n;
    let mut out = Vec::new();
    let mut start = 0;
    while start < total {
        let m = (total - start).min(n);
        let inv = pow_mod(pow_mod(2, ceil_log2(m) as u64, t), t - 2, t);
        let mut values = vec![0u64; n];
        for &h in hot.iter().filter(|&&h| h >= start && h < start + m) {
            values[h - start] = inv;
        }
        let pt = Plaintext::new(ctx, &values)?;
        out.push(bfv::encrypt(ctx, &pt, sk, rng));
        start += m;
    }
    Ok(out)
}

/// Decrypts replies (one per index, each `chunk_count` ciphertexts) to the entries' bytes.
pub fn decrypt_response(
    ctx: &Context,
    param: &IndexPirParameter,
    replies: &[Vec<Ciphertext>],
    indices: &[usize],
    sk: &SecretKey,
) -> Result<Vec<Vec<u8>>, PirError> {
    let bpp = ctx.params.bytes_per_plaintext();
    if replies.len() != indices.len() {
        return Err(PirError::Corrupted(format!(
            "{} replies for {} indices",
            replies.len(),
            indices.len()
        )));
    }
    let chunks = param.chunk_count(bpp);
    let per_pt = param.entries_per_plaintext(bpp);
    replies
        .iter()
        .zip(indices)
        .map(|(reply, &idx)| {
            if reply.len() != chunks {
                return Err(PirError::Corrupted(format!(
                    "reply has {} ciphertexts, expected {chunks}",
                    reply.len()
                )));
            }
            let mut bytes = Vec::with_capacity(chunks * bpp);
            for ct in reply {
                bytes.extend_from_slice(&bfv::decrypt(ctx, ct, sk)?.to_bytes(ctx));
            }
            let pos = idx % per_pt;
            let range = pos * param.entry_size..(pos + 1) * param.entry_size;
            bytes
                .get(range)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| PirError::Corrupted("reply too short".into()))
        })
        .collect()
}

/// Per-level data of the expansion: the Galois element used, how many times it is applied, its
/// Eval-form permutation, and X^(−2^(ℓ−1)) in Eval form with Shoup factors.
struct ExpandLevel {
    g: usize,
    count: usize,
    perm: Vec<usize>,
    mono: Vec<u64>,
    mono_shoup: Vec<u64>,
}

fn expand_level(
    ctx: &Context,
    k: usize,
    log_step: u32,
    key: &EvaluationKey,
) -> Result<ExpandLevel, PirError> {
    let n = ctx.n;
    let log_n = n.trailing_zeros();
    if log_step > log_n {
        return Err(PirError::Corrupted("expansion deeper than log n".into()));
    }
    let shift = 1usize << (log_step - 1);
    let target = (1usize << (log_n - log_step + 1)) + 1;
    let g = key
        .galois
        .keys()
        .copied()
        .filter(|&g| g <= target)
        .max()
        .ok_or_else(|| sift_he::HeError::MissingKey(format!("Galois element ≤ {target}")))?;
    let (tl, gl) = (
        (target - 1).trailing_zeros(),
        usize::BITS - 1 - (g - 1).leading_zeros(),
    );
    if !(g - 1).is_power_of_two() || gl > tl {
        return Err(
            sift_he::HeError::MissingKey(format!("Galois element 2^k+1 ≤ {target}")).into(),
        );
    }
    // X^(−shift) = −X^(n−shift).
    let mut mono = Poly::zero(ctx, k, Format::Coeff);
    for r in 0..k {
        let q = ctx.modulus(r).value;
        mono.row_mut(r)[n - shift] = q - 1;
    }
    mono.forward_ntt(ctx)?;
    // Shoup factors ⌊w·2^32/q⌋ for moduli below 2^30 (32-bit lanes), ⌊w·2^64/q⌋ otherwise.
    let mono_shoup = (0..k)
        .flat_map(|r| {
            let m = *ctx.modulus(r);
            mono.row(r)
                .iter()
                .map(move |&w| {
                    if m.value < (1 << 30) {
                        ((w << 32) / m.value) as u32 as u64
                    } else {
                        m.shoup(w)
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(ExpandLevel {
        g,
        count: 1usize << (tl - gl),
        perm: Poly::galois_eval_permutation(n, g)?,
        mono: mono.data,
        mono_shoup,
    })
}

/// (a, b) ← (a + b, (a − b)·w) (mod q < 2^30) with 32-bit Shoup factors `ws`; AVX2 when
/// present.
fn add_sub_twist32(q: u32, a: &mut [u64], b: &mut [u64], w: &[u64], ws: &[u64]) {
    #[inline(always)]
    fn body(q: u32, a: &mut [u64], b: &mut [u64], w: &[u64], ws: &[u64]) {
        let n = a.len().min(b.len()).min(w.len()).min(ws.len());
        let (a, b, w, ws) = (&mut a[..n], &mut b[..n], &w[..n], &ws[..n]);
        for i in 0..n {
            let x = a[i] as u32;
            let y = b[i] as u32;
            let s = x + y;
            a[i] = s.min(s.wrapping_sub(q)) as u64;
            let d = x + q - y;
            let (wv, wsv) = (w[i] as u32, ws[i] as u32);
            let qhat = ((d as u64 * wsv as u64) >> 32) as u32;
            let r = d.wrapping_mul(wv).wrapping_sub(qhat.wrapping_mul(q));
            b[i] = r.min(r.wrapping_sub(q)) as u64;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2(q: u32, a: &mut [u64], b: &mut [u64], w: &[u64], ws: &[u64]) {
            body(q, a, b, w, ws)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked above); `avx2` is safe Rust built with AVX2.
            unsafe { avx2(q, a, b, w, ws) };
            return;
        }
    }
    body(q, a, b, w, ws)
}

/// One expansion step in Eval form: (c + σ(c), (c − σ(c))·X^(−2^(ℓ−1))).
fn expand_one_step_eval(
    ctx: &Context,
    ct: Ciphertext,
    level: &ExpandLevel,
    key: &EvaluationKey,
    scratch: &mut SwitchScratch,
) -> Result<(Ciphertext, Ciphertext), PirError> {
    let ksk = key
        .galois
        .get(&level.g)
        .ok_or_else(|| sift_he::HeError::MissingKey(format!("Galois element {}", level.g)))?;
    let mut sigma = bfv::apply_galois_eval(ctx, &ct, level.g, &level.perm, ksk, scratch)?;
    for _ in 1..level.count {
        sigma = bfv::apply_galois_eval(ctx, &sigma, level.g, &level.perm, ksk, scratch)?;
    }
    let n = ctx.n;
    let mut sum = ct;
    // diff is computed in place over σ(c).
    let mut diff = sigma;
    for (s, d) in sum.polys.iter_mut().zip(&mut diff.polys) {
        for r in 0..s.basis.len() {
            let m = *ctx.modulus(s.basis[r]);
            let w = &level.mono[r * n..(r + 1) * n];
            let ws = &level.mono_shoup[r * n..(r + 1) * n];
            let (srow, drow) = (
                &mut s.data[r * n..(r + 1) * n],
                &mut d.data[r * n..(r + 1) * n],
            );
            if m.value < (1 << 30) {
                add_sub_twist32(m.value as u32, srow, drow, w, ws);
            } else {
                for (((a, b), &w), &ws) in srow.iter_mut().zip(drow.iter_mut()).zip(w).zip(ws) {
                    let (x, c) = (*a, *b);
                    *a = m.add(x, c);
                    *b = m.mul_shoup(m.sub(x, c), w, ws);
                }
            }
        }
    }
    sum.seed = None;
    diff.seed = None;
    Ok((sum, diff))
}

#[allow(clippy::too_many_arguments)]
fn expand_ciphertext_eval(
    ctx: &Context,
    ct: Ciphertext,
    output_count: usize,
    log_step: u32,
    expected_height: u32,
    levels: &[ExpandLevel],
    key: &EvaluationKey,
    scratch: &mut SwitchScratch,
) -> Result<Vec<Ciphertext>, PirError> {
    if output_count == 1 {
        if log_step > expected_height {
            return Ok(vec![ct]);
        }
        let mut out = ct.clone();
        out.add_assign(ctx, &ct)?;
        return Ok(vec![out]);
    }
    let second = output_count >> 1;
    let first = output_count - second;
    let level = levels
        .get(log_step as usize - 1)
        .ok_or_else(|| PirError::Corrupted("expansion level".into()))?;
    let (p0, p1) = expand_one_step_eval(ctx, ct, level, key, scratch)?;
    let a = expand_ciphertext_eval(
        ctx,
        p0,
        first,
        log_step + 1,
        expected_height,
        levels,
        key,
        scratch,
    )?;
    let b = expand_ciphertext_eval(
        ctx,
        p1,
        second,
        log_step + 1,
        expected_height,
        levels,
        key,
        scratch,
    )?;
    let mut out = Vec::with_capacity(output_count);
    let mut a = a.into_iter();
    for y in b {
        out.push(a.next().expect("first half is not shorter"));
        out.push(y);
    }
    out.extend(a);
    Ok(out)
}

/// Oblivious expansion of query ciphertexts into `output_count` encrypted 0/1 constants
/// (`PirUtil.expand`), computed in Eval form (no NTT round trip per step); outputs in Eval form.
pub fn expand_eval(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    let n = ctx.n;
    if cts.is_empty() || (cts.len() - 1) * n >= output_count || cts.len() * n < output_count {
        return Err(PirError::Corrupted(format!(
            "{} query ciphertexts cannot expand to {output_count}",
            cts.len()
        )));
    }
    let k = cts[0].moduli_count();
    let height = ceil_log2(output_count.min(n));
    let levels = (1..=height)
        .map(|l| expand_level(ctx, k, l, key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut scratch = SwitchScratch::default();
    let mut remaining = output_count;
    let mut out = Vec::with_capacity(output_count);
    for ct in cts {
        let m = remaining.min(n);
        remaining -= m;
        let mut c = ct.clone();
        c.convert_to(ctx, Format::Eval);
        c.seed = None;
        out.extend(expand_ciphertext_eval(
            ctx,
            c,
            m,
            1,
            ceil_log2(m),
            &levels,
            key,
            &mut scratch,
        )?);
    }
    Ok(out)
}

/// Oblivious expansion of query ciphertexts into `output_count` encrypted 0/1 constants
/// (`PirUtil.expand`); outputs in Coeff form.
pub fn expand(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    let mut out = expand_eval(ctx, cts, output_count, key)?;
    for c in &mut out {
        c.convert_to(ctx, Format::Coeff);
    }
    Ok(out)
}

/// One expansion step (`expandCiphertextForOneStep`): returns (c + σ(c), (c − σ(c))·X^(−2^(ℓ−1))).
#[cfg(test)]
fn expand_one_step_reference(
    ctx: &Context,
    ct: &Ciphertext,
    log_step: u32,
    key: &EvaluationKey,
) -> Result<(Ciphertext, Ciphertext), PirError> {
    let log_n = ctx.n.trailing_zeros();
    let shift = 1i64 << (log_step - 1);
    let target = (1usize << (log_n - log_step + 1)) + 1;
    let g = key
        .galois
        .keys()
        .copied()
        .filter(|&g| g <= target)
        .max()
        .ok_or_else(|| sift_he::HeError::MissingKey(format!("Galois element ≤ {target}")))?;
    let (tl, gl) = (
        (target - 1).trailing_zeros(),
        usize::BITS - 1 - (g - 1).leading_zeros(),
    );
    if !(g - 1).is_power_of_two() || gl > tl {
        return Err(
            sift_he::HeError::MissingKey(format!("Galois element 2^k+1 ≤ {target}")).into(),
        );
    }
    let count = 1usize << (tl - gl);
    let mut c1 = ct.clone();
    for _ in 0..count {
        c1 = bfv::apply_galois(ctx, &c1, g, key)?;
    }
    let mut diff = ct.clone();
    diff.sub_assign(ctx, &c1)?;
    diff.multiply_power_of_x(ctx, -shift)?;
    c1.add_assign(ctx, ct)?;
    Ok((c1, diff))
}

#[cfg(test)]
fn expand_ciphertext_reference(
    ctx: &Context,
    ct: Ciphertext,
    output_count: usize,
    log_step: u32,
    expected_height: u32,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    if output_count == 1 {
        if log_step > expected_height {
            return Ok(vec![ct]);
        }
        let mut out = ct.clone();
        out.add_assign(ctx, &ct)?;
        return Ok(vec![out]);
    }
    let second = output_count >> 1;
    let first = output_count - second;
    let (p0, p1) = expand_one_step_reference(ctx, &ct, log_step, key)?;
    drop(ct);
    let a = expand_ciphertext_reference(ctx, p0, first, log_step + 1, expected_height, key)?;
    let b = expand_ciphertext_reference(ctx, p1, second, log_step + 1, expected_height, key)?;
    let mut out = Vec::with_capacity(output_count);
    let mut a = a.into_iter();
    for y in b {
        out.push(a.next().expect("first half is not shorter"));
        out.push(y);
    }
    out.extend(a);
    Ok(out)
}

/// The straightforward Coeff-form expansion, kept to check [`expand_eval`] against.
#[cfg(test)]
pub(crate) fn expand_reference(
    ctx: &Context,
    cts: &[Ciphertext],
    output_count: usize,
    key: &EvaluationKey,
) -> Result<Vec<Ciphertext>, PirError> {
    let n = ctx.n;
    if cts.is_empty() || (cts.len() - 1) * n >= output_count || cts.len() * n < output_count {
        return Err(PirError::Corrupted(format!(
            "{} query ciphertexts cannot expand to {output_count}",
            cts.len()
        )));
    }
    let mut remaining = output_count;
    let mut out = Vec::with_capacity(output_count);
    for ct in cts {
        let m = remaining.min(n);
        remaining -= m;
        let mut c = ct.clone();
        c.convert_to(ctx, Format::Coeff);
        c.seed = None;
        out.extend(expand_ciphertext_reference(
            ctx,
            c,
            m,
            1,
            ceil_log2(m),
            key,
        )?);
    }
    Ok(out)
}

/// Server response for `databases` (one per PIR call, or one shared): expansion, first
/// dimension pt×ct inner products in Eval form, second dimension ct×ct with relinearization,
/// mod switch to q₀. Returns per PIR call `chunk_count` ciphertexts (Coeff, one modulus).
pub fn compute_response(
    ctx: &Context,
    param: &IndexPirParameter,
    databases: &[&[Option<sift_he::EvalPlaintext>]],
    query: &[Ciphertext],
    indices_count: usize,
    key: &EvaluationKey,
) -> Result<Vec<Vec<Ciphertext>>, PirError> {
    let mut times = PhaseTimes::default();
    let dbs: Vec<DatabaseRef> = databases.iter().map(|d| DatabaseRef::Eval(d)).collect();
    compute_response_timed(ctx, param, &dbs, query, indices_count, key, &mut times)
}

/// A processed database as the server reads it: Eval plaintexts, or their 32-bit copy.
#[derive(Clone, Copy, Debug)]
pub enum DatabaseRef<'a> {
    /// Plaintexts in Eval form (any moduli).
    Eval(&'a [Option<sift_he::EvalPlaintext>]),
    /// The same plaintexts as 32-bit words (moduli below 2^30).
    Compact(&'a CompactDatabase),
}

impl DatabaseRef<'_> {
    fn len(&self) -> usize {
        match self {
            DatabaseRef::Eval(d) => d.len(),
            DatabaseRef::Compact(d) => d.offsets.len(),
        }
    }
}

/// Eval plaintexts stored as u32 words (half the memory traffic of u64) for moduli below 2^30,
/// so the first dimension runs as 32×32→64-bit vector products summed lazily in u64.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactDatabase {
    /// Rows per plaintext (ciphertext moduli).
    k: usize,
    n: usize,
    /// The present plaintexts, k·n words each.
    words: Vec<u32>,
    /// Per plaintext: its start in `words`, None for an all-zero plaintext.
    offsets: Vec<Option<usize>>,
}

impl CompactDatabase {
    /// The compact copy of `plaintexts`, or None when a ciphertext modulus is 2^30 or more or
    /// a plaintext is not over the ciphertext moduli.
    pub fn new(
        ctx: &Context,
        plaintexts: &[Option<sift_he::EvalPlaintext>],
    ) -> Option<CompactDatabase> {
        let k = ctx.ciphertext_moduli_count();
        let n = ctx.n;
        if (0..k).any(|i| ctx.modulus(i).value >= (1 << 30)) {
            return None;
        }
        let present = plaintexts.iter().flatten().count();
        let mut words = Vec::with_capacity(present * k * n);
        let mut offsets = Vec::with_capacity(plaintexts.len());
        for pt in plaintexts {
            match pt {
                None => offsets.push(None),
                Some(pt) => {
                    if pt.poly.basis != (0..k).collect::<Vec<_>>() || pt.poly.format != Format::Eval
                    {
                        return None;
                    }
                    offsets.push(Some(words.len()));
                    words.extend(pt.poly.data.iter().map(|&x| x as u32));
                }
            }
        }
        Some(CompactDatabase {
            k,
            n,
            words,
            offsets,
        })
    }

    /// Number of plaintexts (including zero ones).
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether there are no plaintexts.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// acc[p·len + x] += q[p·len + x]·pt[x] for p in 0..2 (32×32→64-bit products); AVX2 when present.
fn mul_acc32(acc: &mut [u64], q: &[u32], pt: &[u32]) {
    #[inline(always)]
    fn body(acc: &mut [u64], q: &[u32], pt: &[u32]) {
        let len = pt.len();
        for (a, qs) in acc.chunks_exact_mut(len).zip(q.chunks_exact(len)) {
            for ((a, &x), &y) in a.iter_mut().zip(qs).zip(pt) {
                *a += x as u64 * y as u64;
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2(acc: &mut [u64], q: &[u32], pt: &[u32]) {
            body(acc, q, pt)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked above); `avx2` is safe Rust built with AVX2.
            unsafe { avx2(acc, q, pt) };
            return;
        }
    }
    body(acc, q, pt)
}

/// First-dimension inner product of one column over a compact database: Σ q_i ⊙ pt_i with the
/// products summed in u64 and reduced once (or when the headroom runs out). None if every
/// plaintext of the column is zero.
fn column_compact(
    ctx: &Context,
    dim0: &[u32],
    db: &CompactDatabase,
    first: usize,
    count: usize,
    acc: &mut Vec<u64>,
) -> Option<Ciphertext> {
    let (k, n) = (db.k, db.n);
    let kn = k * n;
    let qmax = (0..k).map(|i| ctx.modulus(i).value).max().unwrap_or(2);
    let max_lazy = (u64::MAX / ((qmax - 1) * (qmax - 1))).max(2) as usize - 1;
    acc.clear();
    acc.resize(2 * kn, 0);
    let mut lazy = 0;
    let mut any = false;
    for i in 0..count {
        let Some(off) = db.offsets[first + i] else {
            continue;
        };
        if lazy == max_lazy {
            for (idx, a) in acc.iter_mut().enumerate() {
                *a %= ctx.modulus((idx / n) % k).value;
            }
            lazy = 1;
        }
        mul_acc32(
            acc,
            &dim0[i * 2 * kn..(i + 1) * 2 * kn],
            &db.words[off..off + kn],
        );
        lazy += 1;
        any = true;
    }
    if !any {
        return None;
    }
    let mut polys = Vec::with_capacity(2);
    for p in 0..2 {
        let mut poly = Poly::zero(ctx, k, Format::Eval);
        for r in 0..k {
            let q = ctx.modulus(r).value as u32;
            bfv::reduce_u64_rows32(
                q,
                poly.row_mut(r),
                &acc[p * kn + r * n..p * kn + (r + 1) * n],
            );
        }
        polys.push(poly);
    }
    Some(Ciphertext {
        polys,
        correction_factor: 1,
        seed: None,
    })
}

/// Wall time spent in each phase of [`compute_response_timed`] (accumulated over calls).
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseTimes {
    /// Oblivious query expansion.
    pub expansion: Duration,
    /// First-dimension plaintext × ciphertext inner products.
    pub first_dimension: Duration,
    /// Second-dimension ciphertext × ciphertext inner products.
    pub second_dimension: Duration,
    /// Relinearization and modulus switching.
    pub relin_mod_switch: Duration,
}

/// [`compute_response`], adding each phase's wall time to `times` (for benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn compute_response_timed(
    ctx: &Context,
    param: &IndexPirParameter,
    databases: &[DatabaseRef],
    query: &[Ciphertext],
    indices_count: usize,
    key: &EvaluationKey,
    times: &mut PhaseTimes,
) -> Result<Vec<Vec<Ciphertext>>, PirError> {
    if param.dimensions.len() != 2 {
        return Err(PirError::InvalidParameters(
            "only 2 dimensions supported".into(),
        ));
    }
    if indices_count == 0 || !(databases.len() == 1 || databases.len() >= indices_count) {
        return Err(PirError::Corrupted(format!(
            "{indices_count} PIR calls for {} databases",
            databases.len()
        )));
    }
    let per_call = param.expanded_query_count();
    let clock = Instant::now();
    let expanded = expand_eval(ctx, query, per_call * indices_count, key)?;
    times.expansion += clock.elapsed();
    let bpp = ctx.params.bytes_per_plaintext();
    let chunks = param.chunk_count(bpp);
    let per_chunk = param.per_chunk_plaintext_count();
    let (d0, d1) = (param.dimensions[0], param.dimensions[1]);
    let k = ctx.ciphertext_moduli_count();
    let mut responses = Vec::with_capacity(indices_count);
    let mut tensor = TensorAccumulator::new(ctx, k);
    for (call, exp) in expanded.chunks(per_call).enumerate() {
        let db = databases[if databases.len() == 1 { 0 } else { call }];
        if db.len() != chunks * per_chunk {
            return Err(PirError::Corrupted(format!(
                "database has {} plaintexts, expected {}",
                db.len(),
                chunks * per_chunk
            )));
        }
        // Expansion outputs are in Eval form already.
        let dim0 = &exp[..d0];
        let dim1 = &exp[d0..d0 + d1];
        let mut reply = Vec::with_capacity(chunks);
        let dim0_32: Vec<u32> = match db {
            DatabaseRef::Compact(_) => {
                let mut v = Vec::with_capacity(dim0.len() * 2 * k * ctx.n);
                for p in dim0.iter().flat_map(|c| &c.polys) {
                    v.extend(p.data.iter().map(|&x| x as u32));
                }
                v
            }
            DatabaseRef::Eval(_) => Vec::new(),
        };
        let mut scratch = Vec::new();
        for chunk_index in 0..chunks {
            let clock = Instant::now();
            let mut columns = Vec::with_capacity(d1);
            for col in 0..per_chunk.div_ceil(d0) {
                let first = chunk_index * per_chunk + col * d0;
                let count = d0.min(per_chunk - col * d0);
                match db {
                    DatabaseRef::Compact(cdb) => {
                        columns.push(column_compact(
                            ctx,
                            &dim0_32,
                            cdb,
                            first,
                            count,
                            &mut scratch,
                        ));
                    }
                    DatabaseRef::Eval(pts) => {
                        let mut acc = EvalAccumulator::new(ctx, k, 2);
                        let mut any = false;
                        for (q, pt) in dim0.iter().zip(&pts[first..first + count]) {
                            if let Some(pt) = pt {
                                acc.add_product(ctx, q, pt)?;
                                any = true;
                            }
                        }
                        columns.push(if any { Some(acc.finish(ctx)) } else { None });
                    }
                }
            }
            times.first_dimension += clock.elapsed();
            let clock = Instant::now();
            let mut total: Option<Ciphertext> = None;
            for (j, col) in columns.iter().enumerate() {
                let Some(col) = col else { continue };
                if tensor.len() >= tensor.capacity() {
                    add_partial(ctx, &mut total, tensor.finish(ctx)?)?;
                }
                tensor.add_product(ctx, &dim1[j], col)?;
            }
            add_partial(ctx, &mut total, tensor.finish(ctx)?)?;
            times.second_dimension += clock.elapsed();
            let clock = Instant::now();
            let mut ct = match total {
                Some(t) => bfv::relinearize(ctx, &t, key)?,
                None => Ciphertext::zero(ctx, k, Format::Coeff),
            };
            ct.mod_switch_down_to_single(ctx)?;
            ct.convert_to(ctx, Format::Coeff);
            reply.push(ct);
            times.relin_mod_switch += clock.elapsed();
        }
        responses.push(reply);
    }
    Ok(responses)
}

fn add_partial(
    ctx: &Context,
    total: &mut Option<Ciphertext>,
    part: Option<Ciphertext>,
) -> Result<(), PirError> {
    match (total.as_mut(), part) {
        (_, None) => {}
        (None, Some(p)) => *total = Some(p),
        (Some(t), Some(p)) => t.add_assign(ctx, &p)?,
    }
    Ok(())
}

impl ProcessedDatabase {
    /// Splits a keyword-PIR shard database into its `tables` equal sub-databases.
    pub fn tables(
        &self,
        tables: usize,
    ) -> Result<Vec<&[Option<sift_he::EvalPlaintext>]>, PirError> {
        if tables == 0 || !self.plaintexts.len().is_multiple_of(tables) {
            return Err(PirError::Corrupted(format!(
                "{} plaintexts do not split into {tables} tables",
                self.plaintexts.len()
            )));
        }
        Ok(self
            .plaintexts
            .chunks(self.plaintexts.len() / tables)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{KeyCompression, evaluation_key_config};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn reduce_u64_rows32_matches_remainder() {
        let mut x: Vec<u64> = (0..5000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 40))
            .collect();
        x.extend([0, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 32) - 1, 1 << 32]);
        for q in [40961u32, 134176769, 268369921, (1 << 30) - 35] {
            let mut out = vec![0u64; x.len()];
            bfv::reduce_u64_rows32(q, &mut out, &x);
            for (o, v) in out.iter().zip(&x) {
                assert_eq!(*o, v % q as u64, "{v} mod {q}");
            }
        }
    }

    /// The Eval-form expansion must produce exactly the reference expansion's ciphertexts,
    /// with and without key compression (repeated Galois applications).
    #[test]
    fn eval_expansion_matches_reference() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let sk = SecretKey::generate(&ctx, &mut rng);
        for (outputs, compression) in [
            (120, KeyCompression::NoCompression),
            (37, KeyCompression::MaxCompression),
        ] {
            let cfg = evaluation_key_config(outputs, ctx.n, compression);
            let key =
                EvaluationKey::generate(&ctx, &sk, &cfg.galois_elements, true, &mut rng).unwrap();
            let mut values = vec![0u64; outputs];
            values[3] = 1;
            values[outputs - 1] = 7;
            let pt = Plaintext::new(&ctx, &values).unwrap();
            let q = vec![bfv::encrypt(&ctx, &pt, &sk, &mut rng)];
            let fast = expand(&ctx, &q, outputs, &key).unwrap();
            let slow = expand_reference(&ctx, &q, outputs, &key).unwrap();
            assert_eq!(fast.len(), outputs);
            assert_eq!(fast, slow);
        }
    }
}

#[cfg(test)]
mod noise {
    use super::*;
    use crate::params::{KeyCompression, evaluation_key_config};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Noise budget (bits) after each response step for a 50×10 MulPir over dense random
    /// plaintexts: fresh query, expanded (hot), first dimension, tensor sum, relinearized,
    /// mod-switched.
    fn trajectory(name: &str) -> [f64; 6] {
        let ctx = Context::predefined(name).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let sk = SecretKey::generate(&ctx, &mut rng);
        let (d0, d1) = (50usize, 10usize);
        let outputs = d0 + d1;
        let cfg = evaluation_key_config(outputs, ctx.n, KeyCompression::NoCompression);
        let key = EvaluationKey::generate(&ctx, &sk, &cfg.galois_elements, true, &mut rng).unwrap();
        let t = ctx.t();
        let inv = pow_mod(pow_mod(2, ceil_log2(outputs) as u64, t), t - 2, t);
        let mut values = vec![0u64; outputs];
        values[3] = inv;
        values[d0 + 2] = inv;
        let pt = Plaintext::new(&ctx, &values).unwrap();
        let q = vec![bfv::encrypt(&ctx, &pt, &sk, &mut rng)];
        let nb = |c: &Ciphertext| bfv::noise_budget(&ctx, c, &sk).unwrap();
        let fresh = nb(&q[0]);
        let exp = expand_eval(&ctx, &q, outputs, &key).unwrap();
        let expanded = nb(&exp[3]);
        let k = ctx.ciphertext_moduli_count();
        let mut acc = EvalAccumulator::new(&ctx, k, 2);
        for (i, c) in exp[..d0].iter().enumerate() {
            let vals: Vec<u64> = (0..ctx.n)
                .map(|j| ((i * 7919 + j * 104729) as u64) % t)
                .collect();
            let pt = Plaintext::new(&ctx, &vals).unwrap().to_eval(&ctx, k);
            acc.add_product(&ctx, c, &pt).unwrap();
        }
        let col = acc.finish(&ctx);
        let first = nb(&col);
        let mut tensor = TensorAccumulator::new(&ctx, k);
        for c in &exp[d0..] {
            tensor.add_product(&ctx, c, &col).unwrap();
        }
        let prod = tensor.finish(&ctx).unwrap().unwrap();
        let second = nb(&prod);
        let mut r = bfv::relinearize(&ctx, &prod, &key).unwrap();
        let relin = nb(&r);
        r.mod_switch_down_to_single(&ctx).unwrap();
        [fresh, expanded, first, second, relin, nb(&r)]
    }

    /// Where the budget goes. With t = 17 every step leaves room and the answer decrypts; with
    /// t ≈ 2^12 (logt_13) the first dimension alone leaves less than the log2(t·n) bits one
    /// ciphertext product costs, so the budget is exhausted by the scheme itself (Apple's
    /// ParameterTuning guide: "if n_4096_logq_27_28_28_logt_16 exhausts the noise budget,
    /// consider trying n_4096_logq_27_28_28_logt_4"), not by a rounding or scaling error.
    #[test]
    fn budget_per_step() {
        let ok = trajectory("n_4096_logq_27_28_28_logt_5");
        assert!(ok.windows(2).all(|w| w[1] <= w[0] + 0.5), "{ok:?}");
        // Expansion costs about one bit per level (7) plus key switching.
        assert!(ok[0] - ok[1] < 14.0, "{ok:?}");
        assert!(ok[5] > 5.0, "{ok:?}");
        let noisy = trajectory("n_4096_logq_27_28_28_logt_13");
        let product_cost = (4099f64 * 4096.0).log2();
        assert!(noisy[1] > 20.0, "expansion keeps a budget: {noisy:?}");
        assert!(noisy[2] < product_cost, "{noisy:?}");
        assert!(noisy[5] < 1.0, "exhausted: {noisy:?}");
    }
}
