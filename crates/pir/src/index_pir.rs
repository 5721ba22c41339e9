//! MulPir index PIR: the client's query and decoding (`MulPirClient`, `PirUtil.compressInputs`)
//! and the server's oblivious expansion and response (`PirUtil.expand`, `MulPirServer`).

use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};
use sift_he::arith::ceil_log2;
use sift_he::{
    Ciphertext, Context, EvalAccumulator, EvaluationKey, Format, Plaintext, SecretKey,
    TensorAccumulator, bfv,
};

use crate::PirError;
use crate::database::ProcessedDatabase;
use crate::expansion::{self, ExpansionPool};
pub use crate::expansion::{expand, expand_eval};
pub use crate::first_dimension::CompactDatabase;
use crate::first_dimension::{Selection32, first_dimension_overlaid};
use crate::overlay::OverlayTable;
use crate::params::IndexPirParameter;

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
        let inv = pow_mod(pow_mod(2, ceil_log2(m as u64) as u64, t), t - 2, t);
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
        return Err(PirError::Malformed(format!(
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
                return Err(PirError::Malformed(format!(
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
                .ok_or_else(|| PirError::Malformed("reply too short".into()))
        })
        .collect()
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
    let dbs: Vec<DatabaseRef> = databases.iter().map(|d| DatabaseRef::Eval(d)).collect();
    compute_response_with(ctx, param, &dbs, query, indices_count, key, &mut ())
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
            DatabaseRef::Compact(d) => d.len(),
        }
    }
}

/// A phase of computing a response, as reported to a [`PhaseObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Oblivious query expansion.
    Expansion,
    /// First-dimension plaintext × ciphertext inner products.
    FirstDimension,
    /// Second-dimension ciphertext × ciphertext inner products.
    SecondDimension,
    /// Relinearization and modulus switching.
    RelinModSwitch,
}

/// Told the wall time of each phase as a response is computed (benchmarks); `()` ignores it.
pub trait PhaseObserver {
    /// `phase` just took `took` (a phase may be reported several times per response).
    fn phase_done(&mut self, phase: Phase, took: Duration);
}

impl PhaseObserver for () {
    fn phase_done(&mut self, _phase: Phase, _took: Duration) {}
}

impl PhaseObserver for PhaseTimes {
    fn phase_done(&mut self, phase: Phase, took: Duration) {
        let slot = match phase {
            Phase::Expansion => &mut self.expansion,
            Phase::FirstDimension => &mut self.first_dimension,
            Phase::SecondDimension => &mut self.second_dimension,
            Phase::RelinModSwitch => &mut self.relin_mod_switch,
        };
        *slot += took;
    }
}

/// Wall time spent in each phase of a response, accumulated over calls (a [`PhaseObserver`]).
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

/// Buffers one response reuses from the previous one: the expansion's ciphertexts, key-switch
/// scratch and cached levels, and the 32-bit selection words of the first dimension.
#[derive(Debug, Default)]
pub struct ResponseWorkspace {
    expansion: ExpansionPool,
    selection: Selection32,
    /// The second dimension's accumulator (about half a megabyte of sums) with the parameters
    /// and moduli count it was built for.
    tensor: Option<(sift_he::EncryptionParameters, usize, TensorAccumulator)>,
    /// Sums of the overlay corrections (one tile).
    overlay: Vec<u64>,
}

/// A workspace's cleared tensor accumulator for `ctx` and k moduli, built anew when the
/// parameters differ from the last response's.
fn reused_tensor<'a>(
    slot: &'a mut Option<(sift_he::EncryptionParameters, usize, TensorAccumulator)>,
    ctx: &Context,
    k: usize,
) -> &'a mut TensorAccumulator {
    let reuse = matches!(&*slot, Some((p, kk, _)) if *p == ctx.params && *kk == k);
    if !reuse {
        *slot = Some((ctx.params.clone(), k, TensorAccumulator::new(ctx, k)));
    }
    let (_, _, acc) = slot.as_mut().expect("set just above");
    acc.clear();
    acc
}

/// Idle workspaces kept for the next queries, at most one per core (bounded memory).
static WORKSPACES: std::sync::Mutex<Vec<ResponseWorkspace>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` with a workspace from the shared pool (a fresh one when none is idle) and puts it
/// back afterwards unless as many as there are cores are idle already.
fn with_workspace<R>(f: impl FnOnce(&mut ResponseWorkspace) -> R) -> R {
    let taken = WORKSPACES.lock().ok().and_then(|mut v| v.pop());
    let mut ws = taken.unwrap_or_default();
    let result = f(&mut ws);
    if let Ok(mut v) = WORKSPACES.lock() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        if v.len() < cores {
            v.push(ws);
        }
    }
    result
}

/// [`compute_response`] over Eval or compact databases, telling `observer` each phase's wall
/// time (pass `&mut ()` to ignore them).
#[allow(clippy::too_many_arguments)]
pub fn compute_response_with(
    ctx: &Context,
    param: &IndexPirParameter,
    databases: &[DatabaseRef],
    query: &[Ciphertext],
    indices_count: usize,
    key: &EvaluationKey,
    observer: &mut impl PhaseObserver,
) -> Result<Vec<Vec<Ciphertext>>, PirError> {
    compute_response_overlaid(
        ctx,
        param,
        (databases, &[]),
        query,
        indices_count,
        key,
        observer,
    )
}

/// [`compute_response_with`] where each compact database may carry an overlay of replaced
/// plaintexts (`overlays` empty, or one per database), added after the first dimension.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compute_response_overlaid(
    ctx: &Context,
    param: &IndexPirParameter,
    (databases, overlays): (&[DatabaseRef], &[&OverlayTable]),
    query: &[Ciphertext],
    indices_count: usize,
    key: &EvaluationKey,
    observer: &mut impl PhaseObserver,
) -> Result<Vec<Vec<Ciphertext>>, PirError> {
    with_workspace(|ws| {
        compute_response_in(
            ctx,
            param,
            (databases, overlays),
            query,
            indices_count,
            key,
            observer,
            ws,
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn compute_response_in(
    ctx: &Context,
    param: &IndexPirParameter,
    (databases, overlays): (&[DatabaseRef], &[&OverlayTable]),
    query: &[Ciphertext],
    indices_count: usize,
    key: &EvaluationKey,
    observer: &mut dyn PhaseObserver,
    ws: &mut ResponseWorkspace,
) -> Result<Vec<Vec<Ciphertext>>, PirError> {
    if param.dimensions.len() != 2 {
        return Err(PirError::InvalidParameters(
            "only 2 dimensions supported".into(),
        ));
    }
    if indices_count == 0 || !(databases.len() == 1 || databases.len() >= indices_count) {
        return Err(PirError::Malformed(format!(
            "{indices_count} PIR calls for {} databases",
            databases.len()
        )));
    }
    let per_call = param.expanded_query_count();
    let bpp = ctx.params.bytes_per_plaintext();
    let chunks = param.chunk_count(bpp);
    let per_chunk = param.per_chunk_plaintext_count();
    let (d0, d1) = (param.dimensions[0], param.dimensions[1]);
    for db in databases {
        if db.len() != chunks * per_chunk {
            return Err(PirError::DamagedDataset(format!(
                "database has {} plaintexts, expected {}",
                db.len(),
                chunks * per_chunk
            )));
        }
    }
    let k = ctx.ciphertext_moduli_count();
    if !overlays.is_empty() && overlays.len() != databases.len() {
        return Err(PirError::InvalidParameters(format!(
            "{} overlays for {} databases",
            overlays.len(),
            databases.len()
        )));
    }
    // With compact databases the first-dimension selections are stored as 32-bit words the
    // moment the expansion produces them (still in cache), and their buffers reused at once.
    let compact = databases
        .iter()
        .all(|d| matches!(d, DatabaseRef::Compact(_)));
    // The selections are stored for compact databases only when every database is compact.
    if !compact
        && databases
            .iter()
            .any(|d| matches!(d, DatabaseRef::Compact(_)))
    {
        return Err(PirError::InvalidParameters(
            "compact and Eval databases mixed in one response".into(),
        ));
    }
    let ResponseWorkspace {
        expansion: pool,
        selection,
        tensor,
        overlay: scratch,
    } = ws;
    if !overlays.is_empty() && !compact {
        return Err(PirError::InvalidParameters(
            "overlays need compact databases".into(),
        ));
    }
    let tensor = reused_tensor(tensor, ctx, k);
    if compact {
        selection.reset(indices_count, d0, k, ctx.n);
    }
    let clock = Instant::now();
    let expanded = expansion::expand_eval_into(
        ctx,
        query,
        per_call * indices_count,
        key,
        pool,
        &mut |p, c| {
            let (call, i) = (p / per_call, p % per_call);
            if compact && i < d0 {
                selection.put(call, i, c)?;
                Ok(true)
            } else {
                Ok(false)
            }
        },
    )?;
    observer.phase_done(Phase::Expansion, clock.elapsed());
    let calls: Vec<&[Option<Ciphertext>]> = expanded.chunks(per_call).collect();
    // Groups of calls answered by one pass over a database (with its overlay): all calls
    // when they share it.
    let groups: Vec<(DatabaseRef, Option<&OverlayTable>, std::ops::Range<usize>)> =
        if databases.len() == 1 {
            vec![(databases[0], overlays.first().copied(), 0..indices_count)]
        } else {
            (0..indices_count)
                .map(|c| (databases[c], overlays.get(c).copied(), c..c + 1))
                .collect()
        };
    let mut replies: Vec<Vec<Ciphertext>> = (0..indices_count)
        .map(|_| Vec::with_capacity(chunks))
        .collect();
    for (db, overlay, range) in groups {
        if d1 == 1 {
            // A second dimension of one: its selection encrypts 1, so each chunk's column is
            // the answer as it is (no ct×ct product, no relinearization).
            let clock = Instant::now();
            let mut columns: Vec<Vec<Option<Ciphertext>>> = vec![Vec::new(); range.len()];
            match db {
                // Laid out with the chunks as the columns of one pass.
                DatabaseRef::Compact(cdb) if cdb.pass_len() == chunks * per_chunk => {
                    columns = first_dimension_compact(
                        ctx,
                        (cdb, overlay),
                        (selection, scratch),
                        pool,
                        range.clone(),
                        (0, chunks * per_chunk),
                    )?;
                }
                _ => {
                    for chunk_index in 0..chunks {
                        let first = chunk_index * per_chunk;
                        let part = first_dimension_chunk(
                            ctx,
                            (db, overlay),
                            &calls,
                            (selection, scratch),
                            pool,
                            &range,
                            (first, per_chunk, d0),
                        )?;
                        for (all, mut part) in columns.iter_mut().zip(part) {
                            all.push(part.pop().flatten());
                        }
                    }
                }
            }
            observer.phase_done(Phase::FirstDimension, clock.elapsed());
            let clock = Instant::now();
            for (call, cols) in range.clone().zip(columns) {
                for col in cols {
                    let mut ct = col.unwrap_or_else(|| Ciphertext::zero(ctx, k, Format::Eval));
                    ct.mod_switch_down_to_single(ctx)?;
                    ct.convert_to(ctx, Format::Coeff);
                    replies[call].push(ct);
                }
            }
            observer.phase_done(Phase::RelinModSwitch, clock.elapsed());
            continue;
        }
        for chunk_index in 0..chunks {
            let clock = Instant::now();
            let first = chunk_index * per_chunk;
            // columns[call in range][col]
            let columns = first_dimension_chunk(
                ctx,
                (db, overlay),
                &calls,
                (selection, scratch),
                pool,
                &range,
                (first, per_chunk, d0),
            )?;
            observer.phase_done(Phase::FirstDimension, clock.elapsed());
            for (call, cols) in range.clone().zip(columns) {
                let dim1 = &calls[call][d0..d0 + d1];
                let dim1 = dim1
                    .iter()
                    .map(|c| {
                        c.as_ref()
                            .ok_or_else(|| PirError::Malformed("missing selection".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let clock = Instant::now();
                let mut total: Option<Ciphertext> = None;
                for (j, col) in cols.iter().enumerate() {
                    let Some(col) = col else { continue };
                    if tensor.len() >= tensor.capacity() {
                        add_partial(ctx, &mut total, tensor.finish(ctx)?)?;
                    }
                    tensor.add_product(ctx, dim1[j], col)?;
                }
                add_partial(ctx, &mut total, tensor.finish(ctx)?)?;
                pool.recycle(cols.into_iter().flatten());
                observer.phase_done(Phase::SecondDimension, clock.elapsed());
                let clock = Instant::now();
                let mut ct = match total {
                    Some(t) => bfv::relinearize(ctx, &t, key)?,
                    None => Ciphertext::zero(ctx, k, Format::Coeff),
                };
                ct.mod_switch_down_to_single(ctx)?;
                ct.convert_to(ctx, Format::Coeff);
                replies[call].push(ct);
                observer.phase_done(Phase::RelinModSwitch, clock.elapsed());
            }
        }
    }
    pool.recycle(expanded.into_iter().flatten());
    Ok(replies)
}

/// The first dimension of the calls in `range` over a compact database's `per_chunk`
/// plaintexts at `first`, with its overlay's replaced plaintexts added (also to columns the
/// database has none in).
fn first_dimension_compact(
    ctx: &Context,
    (cdb, overlay): (&CompactDatabase, Option<&OverlayTable>),
    (selection, scratch): (&Selection32, &mut Vec<u64>),
    pool: &mut ExpansionPool,
    range: std::ops::Range<usize>,
    (first, per_chunk): (usize, usize),
) -> Result<Vec<Vec<Option<Ciphertext>>>, PirError> {
    let k = ctx.ciphertext_moduli_count();
    let mut columns = first_dimension_overlaid(
        ctx,
        (cdb, overlay),
        selection,
        range.clone(),
        (first, per_chunk),
        &mut || pool.take_eval(k, ctx.n),
    )?;
    if let Some(o) = overlay {
        crate::overlay::fill_absent_columns(
            ctx,
            o,
            selection,
            range,
            (first, per_chunk),
            &mut columns,
            &mut || pool.take_eval(k, ctx.n),
            scratch,
        )?;
    }
    Ok(columns)
}

/// The first dimension of the calls in `range` over the chunk of `per_chunk` plaintexts at
/// `first` (d₀ rows a column): `[call][column]`, None for an all-zero column. A compact
/// database's overlay (replaced plaintexts) is added to its columns.
fn first_dimension_chunk(
    ctx: &Context,
    (db, overlay): (DatabaseRef, Option<&OverlayTable>),
    calls: &[&[Option<Ciphertext>]],
    (selection, scratch): (&Selection32, &mut Vec<u64>),
    pool: &mut ExpansionPool,
    range: &std::ops::Range<usize>,
    (first, per_chunk, d0): (usize, usize, usize),
) -> Result<Vec<Vec<Option<Ciphertext>>>, PirError> {
    let k = ctx.ciphertext_moduli_count();
    match db {
        DatabaseRef::Compact(cdb) => first_dimension_compact(
            ctx,
            (cdb, overlay),
            (selection, scratch),
            pool,
            range.clone(),
            (first, per_chunk),
        ),
        DatabaseRef::Eval(pts) => range
            .clone()
            .map(|call| first_dimension_eval(ctx, pts, &calls[call][..d0], first, per_chunk, k))
            .collect(),
    }
}

/// First dimension of one call over Eval plaintexts (any moduli): per column Σ q_i ⊙ pt_i.
fn first_dimension_eval(
    ctx: &Context,
    pts: &[Option<sift_he::EvalPlaintext>],
    dim0: &[Option<Ciphertext>],
    first: usize,
    per_chunk: usize,
    k: usize,
) -> Result<Vec<Option<Ciphertext>>, PirError> {
    let d0 = dim0.len();
    let mut columns = Vec::with_capacity(per_chunk.div_ceil(d0));
    for col in 0..per_chunk.div_ceil(d0) {
        let start = first + col * d0;
        let count = d0.min(per_chunk - col * d0);
        let mut acc = EvalAccumulator::new(ctx, k, 2);
        let mut any = false;
        for (q, pt) in dim0.iter().zip(&pts[start..start + count]) {
            if let Some(pt) = pt {
                let q = q
                    .as_ref()
                    .ok_or_else(|| PirError::Malformed("missing selection".into()))?;
                acc.add_product(ctx, q, pt)?;
                any = true;
            }
        }
        columns.push(if any { Some(acc.finish(ctx)) } else { None });
    }
    Ok(columns)
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
            return Err(PirError::DamagedDataset(format!(
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
        let inv = pow_mod(pow_mod(2, ceil_log2(outputs as u64) as u64, t), t - 2, t);
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
