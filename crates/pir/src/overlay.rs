//! Shard overlays: an update that replaces a few plaintexts of a shard writes only the
//! differences, beside the shard's unchanged `.words` file, instead of rewriting that file.
//!
//! A `.words` file interleaves each plaintext's words over every tile of its table (see
//! [`CompactDatabase`]), so replacing a few plaintexts in place dirties every page. But the
//! first dimension is linear: for column c, Σ_i q_i ⊙ pt′_ic = Σ_i q_i ⊙ pt_ic + q_r ⊙ Δ_rc with
//! Δ_rc = pt′_rc − pt_rc (mod each q_m) for each replaced plaintext (row r of column c). The
//! server computes on the mapped base words as before and adds, per replaced plaintext, its
//! selection ciphertext times Δ to each tile of the column's output as the first dimension
//! writes it (a column the base marks absent gets its output from the corrections alone). The
//! responses are exactly those a rewritten database gives. When an overlay grows too large,
//! `sift update` rewrites the shard's `.words` from its cuckoo table instead; [`rewrite`]
//! folds an overlay into the stored words (the same tables, to check an overlay against).
//!
//! Cost (`cargo bench -p sift-pir --bench overlay`, one 100k-row URL-filter shard, 7 December
//! 2026, a loaded 2-core AMD EPYC with AVX-512): the first dimension takes 1.8 µs per stored
//! plaintext (1.3 ms of an 11.6 ms response); an overlay adds 10 µs per replaced plaintext
//! with 3% of them replaced, 7.1 µs with 10% and 7.3 µs with 30%, which makes the whole
//! response 2%, 4% and 14% slower.
//!
//! Overlay file format (all integers little-endian):
//!
//! ```text
//! magic "SIFTOVL1"                 8 bytes
//! u64 k, u64 n                     ciphertext moduli, coefficients per polynomial
//! u64 table_count
//! per table:
//!   u64 len                        plaintexts in the table
//!   u64 count                      replaced plaintexts
//!   count × { u64 index            strictly ascending, below len
//!             k·n × u32 Δ }        Eval residues, row m (n values) below q_m, not all zero
//! ```
//!
//! Nothing may follow the last table.

use std::collections::BTreeMap;
use std::ops::Range;

use sift_he::{Ciphertext, Context, EncryptionParameters, EvalPlaintext, Format, bfv, pack28};

use crate::PirError;
use crate::first_dimension::{CompactDatabase, PIECE, Selection32};
use crate::storage::Shape;

/// File magic of an overlay file.
pub const MAGIC: &[u8; 8] = b"SIFTOVL1";

/// Products of a selection word and a Δ word (each below 2^30) summed into a reduced value
/// before the sum could pass 2^64.
const LAZY: usize = 15;

/// The replaced plaintexts of a shard's tables, as differences from the base tables (the
/// shard's `.words`): per table, sorted by plaintext index, each with Δ = new − base as k·n
/// residues (each below its modulus, never all zero).
#[derive(Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The encryption parameters the residues are over.
    params: EncryptionParameters,
    /// Ciphertext moduli (rows per plaintext).
    k: usize,
    /// Coefficients per polynomial.
    n: usize,
    /// Per table, its replaced plaintexts.
    pub(crate) tables: Vec<OverlayTable>,
}

impl std::fmt::Debug for Overlay {
    /// The shape and the replaced indices, not the (large) differences.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("params", &self.params.name)
            .field("k", &self.k)
            .field("n", &self.n)
            .field(
                "tables",
                &self
                    .tables
                    .iter()
                    .map(|t| (t.len, &t.indices))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One table's replaced plaintexts.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct OverlayTable {
    /// Plaintexts in the table.
    len: usize,
    /// Words per Δ (k·n).
    kn: usize,
    /// The replaced plaintexts, strictly ascending.
    indices: Vec<usize>,
    /// Their Δ, `kn` residues each, in the order of `indices`.
    deltas: Vec<u32>,
}

impl OverlayTable {
    /// Δ of the j-th replaced plaintext.
    fn delta(&self, j: usize) -> &[u32] {
        &self.deltas[j * self.kn..(j + 1) * self.kn]
    }

    /// Δ of plaintext `index`, when it is replaced.
    fn find(&self, index: usize) -> Option<&[u32]> {
        self.indices
            .binary_search(&index)
            .ok()
            .map(|j| self.delta(j))
    }

    /// The table's entries as a map (for merging).
    fn to_map(&self) -> BTreeMap<usize, Vec<u32>> {
        (0..self.indices.len())
            .map(|j| (self.indices[j], self.delta(j).to_vec()))
            .collect()
    }

    /// The table holding `entries`.
    fn from_map(len: usize, kn: usize, entries: BTreeMap<usize, Vec<u32>>) -> OverlayTable {
        let mut t = OverlayTable {
            len,
            kn,
            indices: Vec::with_capacity(entries.len()),
            deltas: Vec::with_capacity(entries.len() * kn),
        };
        for (i, d) in entries {
            t.indices.push(i);
            t.deltas.extend_from_slice(&d);
        }
        t
    }
}

/// The k ciphertext moduli of `ctx` as u32, or an error when one is 2^30 or more (the
/// compact form, and so overlays, need them below).
fn moduli(ctx: &Context) -> Result<Vec<u32>, PirError> {
    (0..ctx.ciphertext_moduli_count())
        .map(|m| {
            let q = ctx.modulus(m).value;
            if q < 1 << 30 {
                Ok(q as u32)
            } else {
                Err(PirError::InvalidParameters(format!(
                    "overlays need ciphertext moduli below 2^30, modulus {m} is {q}"
                )))
            }
        })
        .collect()
}

/// The Eval residues of `pt` (k·n, row m below q_m), checked against `ctx`.
fn residues<'a>(ctx: &Context, q: &[u32], pt: &'a EvalPlaintext) -> Result<&'a [u64], PirError> {
    let (k, n) = (q.len(), ctx.n);
    let data = pt.poly.data();
    if pt.poly.basis().iter().copied().ne(0..k)
        || pt.poly.format() != Format::Eval
        || data.len() != k * n
    {
        return Err(PirError::InvalidParameters(
            "a changed plaintext is not in Eval form over the ciphertext moduli".into(),
        ));
    }
    if data
        .chunks_exact(n)
        .zip(q)
        .any(|(row, &q)| row.iter().any(|&x| x >= q as u64))
    {
        return Err(PirError::InvalidParameters(
            "a changed plaintext has a residue not below its modulus".into(),
        ));
    }
    Ok(data)
}

impl CompactDatabase {
    /// Plaintext `index` as k·n Eval residues (row m holds the n residues mod q_m), the
    /// inverse of [`CompactDatabase::set`]: zeros for a dropped row or an absent column
    /// (which the first dimension treats as zero); None when `index` is out of range.
    pub fn plaintext(&self, index: usize) -> Option<Vec<u64>> {
        let mut out = vec![0u64; self.k * self.n];
        self.read_plaintext(index, &mut out).then_some(out)
    }

    /// [`CompactDatabase::plaintext`] into `out` (k·n values); false when `index` is out of
    /// range or `out` has another length.
    pub(crate) fn read_plaintext(&self, index: usize, out: &mut [u64]) -> bool {
        let kn = self.k * self.n;
        if index >= self.len || out.len() != kn {
            return false;
        }
        out.fill(0);
        if !self.present[index / self.d0] {
            return true;
        }
        let (chunk, col, row) = self.position(index);
        let group = self.group(chunk, 0, col);
        let Ok(r) = self.rows.list[group.rows.0..group.rows.1].binary_search(&(row as u32)) else {
            return true;
        };
        let mut values = [0u32; PIECE];
        for (tile, dst) in out.chunks_exact_mut(self.block).enumerate() {
            let group = self.group(chunk, tile, col);
            for (g, dst) in dst.chunks_exact_mut(PIECE).enumerate() {
                let at = group.at + self.piece_at(&group, g, r, col);
                let src = &self.words[at..at + self.piece_len];
                let values: &[u32] = if self.packed {
                    pack28::unpack(src, &mut values);
                    &values
                } else {
                    src
                };
                for (d, &v) in dst.iter_mut().zip(values) {
                    *d = u64::from(v);
                }
            }
        }
        true
    }
}

/// Reads an overlay file front to back.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// The next `len` bytes, or an error naming `what` was cut off.
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], PirError> {
        let at = self.at;
        let b = at
            .checked_add(len)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| {
                PirError::DamagedDataset(format!(
                    "shard overlay file: truncated in {what} (byte {at})"
                ))
            })?;
        self.at += len;
        Ok(b)
    }

    /// The next little-endian u64.
    fn u64(&mut self, what: &str) -> Result<u64, PirError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

/// Checks that `base` holds one table per change list, each over `ctx`'s shape.
fn check_base(
    ctx: &Context,
    base: &[CompactDatabase],
    changed: &[Vec<(usize, Option<EvalPlaintext>)>],
) -> Result<(), PirError> {
    if changed.len() != base.len() {
        return Err(PirError::InvalidParameters(format!(
            "{} change lists for {} tables",
            changed.len(),
            base.len()
        )));
    }
    if let Some(t) = base
        .iter()
        .position(|t| t.k != ctx.ciphertext_moduli_count() || t.n != ctx.n)
    {
        return Err(PirError::InvalidParameters(format!(
            "table {t} is not over the encryption parameters' moduli"
        )));
    }
    Ok(())
}

impl Overlay {
    /// The overlay that turns `base` (a shard's tables, e.g. from [`crate::storage::decode`])
    /// into base + `previous` + `changed`: `changed[t]` lists table t's new plaintexts by
    /// index (None: all zero). Every Δ is relative to `base`; entries of `previous` not
    /// changed again are kept, and an entry whose Δ becomes all zero (a plaintext changed
    /// back to its base value) is dropped.
    pub fn build(
        ctx: &Context,
        base: &[CompactDatabase],
        previous: Option<&Overlay>,
        changed: &[Vec<(usize, Option<EvalPlaintext>)>],
    ) -> Result<Overlay, PirError> {
        check_base(ctx, base, changed)?;
        let q = moduli(ctx)?;
        let (k, n) = (q.len(), ctx.n);
        let kn = k * n;
        if let Some(p) = previous {
            p.check_tables(ctx, base)?;
        }
        let mut tables = Vec::with_capacity(base.len());
        let mut old = vec![0u64; kn];
        for (t, (db, changes)) in base.iter().zip(changed).enumerate() {
            let mut entries = previous.map_or_else(BTreeMap::new, |p| p.tables[t].to_map());
            for (i, pt) in changes {
                if !db.read_plaintext(*i, &mut old) {
                    return Err(PirError::InvalidParameters(format!(
                        "plaintext {i} is beyond table {t}'s {} plaintexts",
                        db.len
                    )));
                }
                let new = pt.as_ref().map(|p| residues(ctx, &q, p)).transpose()?;
                let mut delta = vec![0u32; kn];
                for (m, &qm) in q.iter().enumerate() {
                    let rows = m * n..(m + 1) * n;
                    let qm = u64::from(qm);
                    for (x, d) in rows.zip(&mut delta[m * n..(m + 1) * n]) {
                        // (A damaged base word at or above q must not underflow.)
                        let v = new.map_or(0, |v| v[x]);
                        *d = ((v + qm - old[x] % qm) % qm) as u32;
                    }
                }
                if delta.iter().all(|&d| d == 0) {
                    entries.remove(i);
                } else {
                    entries.insert(*i, delta);
                }
            }
            tables.push(OverlayTable::from_map(db.len, kn, entries));
        }
        Ok(Overlay {
            params: ctx.params.clone(),
            k,
            n,
            tables,
        })
    }

    /// [`Overlay::build`] without reading the base: `before[t]` lists the same plaintexts as
    /// `changed[t]`, in the same order, with the values they have before the change (the
    /// base with `previous` applied, e.g. re-encoded from the shard's cuckoo table before the
    /// change). Δ = new − before + Δ_previous, so the base file is not touched (its pages
    /// may not even be in memory).
    pub fn build_from_before(
        ctx: &Context,
        shape: Shape,
        previous: Option<&Overlay>,
        changed: &[Vec<(usize, Option<EvalPlaintext>)>],
        before: &[Vec<(usize, Option<EvalPlaintext>)>],
    ) -> Result<Overlay, PirError> {
        let q = moduli(ctx)?;
        let (k, n) = (q.len(), ctx.n);
        let kn = k * n;
        if changed.len() != shape.tables || before.len() != shape.tables {
            return Err(PirError::InvalidParameters(format!(
                "{} change lists and {} previous values for {} tables",
                changed.len(),
                before.len(),
                shape.tables
            )));
        }
        if let Some(p) = previous
            && (p.params != ctx.params
                || p.k != k
                || p.n != n
                || p.tables.len() != shape.tables
                || p.tables.iter().any(|t| t.len != shape.len))
        {
            return Err(PirError::InvalidParameters(
                "the previous overlay does not fit the shard's tables".into(),
            ));
        }
        let zero = vec![0u64; kn];
        let mut tables = Vec::with_capacity(shape.tables);
        for (t, (changes, olds)) in changed.iter().zip(before).enumerate() {
            let mut entries = previous.map_or_else(BTreeMap::new, |p| p.tables[t].to_map());
            if changes.len() != olds.len() {
                return Err(PirError::InvalidParameters(format!(
                    "table {t}: {} changes, {} previous values",
                    changes.len(),
                    olds.len()
                )));
            }
            for ((i, new), (j, old)) in changes.iter().zip(olds) {
                if i != j || *i >= shape.len {
                    return Err(PirError::InvalidParameters(format!(
                        "table {t}: plaintext {i} (previous value of {j}) is not one of its {}",
                        shape.len
                    )));
                }
                let new = new.as_ref().map(|p| residues(ctx, &q, p)).transpose()?;
                let old = old.as_ref().map(|p| residues(ctx, &q, p)).transpose()?;
                let (new, old) = (new.unwrap_or(&zero), old.unwrap_or(&zero));
                let mut delta = entries.remove(i).unwrap_or_else(|| vec![0u32; kn]);
                for (m, &qm) in q.iter().enumerate() {
                    let qm = u64::from(qm);
                    let rows = m * n..(m + 1) * n;
                    for ((d, &v), &o) in delta[rows.clone()]
                        .iter_mut()
                        .zip(&new[rows.clone()])
                        .zip(&old[rows])
                    {
                        // Each term is below qm, so the sum is below 3·qm.
                        let x = u64::from(*d) + v + qm - o;
                        *d = (if x >= 2 * qm {
                            x - 2 * qm
                        } else if x >= qm {
                            x - qm
                        } else {
                            x
                        }) as u32;
                    }
                }
                if delta.iter().any(|&d| d != 0) {
                    entries.insert(*i, delta);
                }
            }
            tables.push(OverlayTable::from_map(shape.len, kn, entries));
        }
        Ok(Overlay {
            params: ctx.params.clone(),
            k,
            n,
            tables,
        })
    }

    /// Checks that the overlay was made for `ctx` and tables shaped like `base`.
    fn check_tables(&self, ctx: &Context, base: &[CompactDatabase]) -> Result<(), PirError> {
        if self.params != ctx.params
            || self.tables.len() != base.len()
            || self.tables.iter().zip(base).any(|(o, b)| {
                o.len != b.len || b.k != self.k || b.n != self.n || o.kn != self.k * self.n
            })
        {
            return Err(PirError::InvalidParameters(format!(
                "the overlay ({} tables of {} plaintexts) does not fit the shard's {} tables of \
                 {} plaintexts",
                self.tables.len(),
                self.tables.first().map_or(0, |t| t.len),
                base.len(),
                base.first().map_or(0, |t| t.len),
            )));
        }
        Ok(())
    }

    /// Replaced plaintexts over all tables.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.indices.len()).sum()
    }

    /// Whether no plaintext is replaced.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The overlay's file bytes (format in the [module docs](self)).
    pub fn encode(&self) -> Vec<u8> {
        let words: usize = self.tables.iter().map(|t| t.deltas.len()).sum();
        let mut out = Vec::with_capacity(32 + 16 * self.tables.len() + 8 * self.len() + 4 * words);
        out.extend_from_slice(MAGIC);
        for v in [self.k, self.n, self.tables.len()] {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        for t in &self.tables {
            out.extend_from_slice(&(t.len as u64).to_le_bytes());
            out.extend_from_slice(&(t.indices.len() as u64).to_le_bytes());
            for (j, &i) in t.indices.iter().enumerate() {
                out.extend_from_slice(&(i as u64).to_le_bytes());
                for d in t.delta(j) {
                    out.extend_from_slice(&d.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads an overlay file written by [`Overlay::encode`] for a shard of `shape` over
    /// `ctx`. Nothing is trusted: a wrong magic, shape or table count, an index out of range,
    /// repeated or out of order, a residue not below its modulus, an all-zero Δ, a truncated
    /// file or bytes after the last table are errors.
    pub fn decode(ctx: &Context, shape: Shape, bytes: &[u8]) -> Result<Overlay, PirError> {
        let bad = |m: String| PirError::DamagedDataset(format!("shard overlay file: {m}"));
        let q = moduli(ctx)?;
        let (k, n) = (q.len(), ctx.n);
        let kn = k * n;
        let mut r = Reader { bytes, at: 0 };
        if r.take(8, "the magic")? != MAGIC {
            return Err(bad("bad magic (not a sift overlay file)".into()));
        }
        let (fk, fn_, count) = (r.u64("k")?, r.u64("n")?, r.u64("the table count")?);
        if fk != k as u64 || fn_ != n as u64 {
            return Err(bad(format!(
                "written for k {fk}, n {fn_}; the parameters have k {k}, n {n}"
            )));
        }
        if count != shape.tables as u64 {
            return Err(bad(format!(
                "{count} tables, the parameters say {}",
                shape.tables
            )));
        }
        let entry_bytes = 8 + 4 * kn;
        let mut tables = Vec::with_capacity(shape.tables);
        for t in 0..shape.tables {
            let len = r.u64("a table header")?;
            if len != shape.len as u64 {
                return Err(bad(format!(
                    "table {t} has {len} plaintexts, the parameters say {}",
                    shape.len
                )));
            }
            let entries = r.u64("a table header")?;
            // Checked against the bytes left before anything is allocated for them.
            let left = bytes.len() - r.at;
            if entries > (left / entry_bytes) as u64 {
                return Err(bad(format!(
                    "table {t} claims {entries} replaced plaintexts, more than the file holds"
                )));
            }
            let entries = entries as usize;
            let mut table = OverlayTable {
                len: shape.len,
                kn,
                indices: Vec::with_capacity(entries),
                deltas: Vec::with_capacity(entries * kn),
            };
            for _ in 0..entries {
                let i = r.u64("an index")?;
                if i >= shape.len as u64 {
                    return Err(bad(format!(
                        "table {t}: plaintext {i} is beyond its {} plaintexts",
                        shape.len
                    )));
                }
                let i = i as usize;
                if table.indices.last().is_some_and(|&p| p >= i) {
                    return Err(bad(format!(
                        "table {t}: plaintext {i} repeated or out of order"
                    )));
                }
                let words = r.take(4 * kn, "a difference")?;
                let from = table.deltas.len();
                table.deltas.extend(
                    words
                        .chunks_exact(4)
                        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes"))),
                );
                let delta = &table.deltas[from..];
                if delta
                    .chunks_exact(n)
                    .zip(&q)
                    .any(|(row, &q)| row.iter().any(|&d| d >= q))
                {
                    return Err(bad(format!(
                        "table {t}: plaintext {i} has a residue not below its modulus"
                    )));
                }
                if delta.iter().all(|&d| d == 0) {
                    return Err(bad(format!(
                        "table {t}: plaintext {i} has a zero difference"
                    )));
                }
                table.indices.push(i);
            }
            tables.push(table);
        }
        if r.at != bytes.len() {
            return Err(bad(format!(
                "{} bytes after the last table",
                bytes.len() - r.at
            )));
        }
        Ok(Overlay {
            params: ctx.params.clone(),
            k,
            n,
            tables,
        })
    }

    /// Checks that the overlay fits a shard over `params` whose compact tables are `tables`
    /// (for [`crate::server::ServerShard::with_overlay`]).
    pub(crate) fn check_fits(
        &self,
        params: &EncryptionParameters,
        tables: &[CompactDatabase],
    ) -> Result<(), PirError> {
        if *params != self.params
            || self.tables.len() != tables.len()
            || self
                .tables
                .iter()
                .zip(tables)
                .any(|(o, b)| o.len != b.len || b.k != self.k || b.n != self.n)
        {
            return Err(PirError::InvalidParameters(format!(
                "the overlay ({} tables of {} plaintexts) does not fit the shard ({} tables of \
                 {} plaintexts)",
                self.tables.len(),
                self.tables.first().map_or(0, |t| t.len),
                tables.len(),
                tables.first().map_or(0, |t| t.len),
            )));
        }
        Ok(())
    }
}

/// The full new tables of a shard: every plaintext of `base` read back, `overlay` applied,
/// then `changed` (as for [`Overlay::build`]), laid out afresh for a first dimension of `d0`
/// over passes of `per_pass` plaintexts, with the base's packing. Identical to
/// [`CompactDatabase::with_packing`] over the final plaintexts (all-zero ones absent): the
/// column flags and dropped rows are recomputed, and a non-zero plaintext may go where the
/// base had dropped its row. `sift update` writes the same tables by processing the shard's
/// cuckoo table afresh; this folds them from the stored words, to check an overlay.
pub fn rewrite(
    ctx: &Context,
    base: &[CompactDatabase],
    overlay: Option<&Overlay>,
    changed: &[Vec<(usize, Option<EvalPlaintext>)>],
    (d0, per_pass): (usize, usize),
) -> Result<Vec<CompactDatabase>, PirError> {
    check_base(ctx, base, changed)?;
    let q = moduli(ctx)?;
    let (k, n) = (q.len(), ctx.n);
    if let Some(o) = overlay {
        o.check_tables(ctx, base)?;
    }
    let mut out = Vec::with_capacity(base.len());
    let mut pt = EvalPlaintext {
        poly: sift_he::Poly::zero(ctx, k, Format::Eval),
    };
    for (t, (db, changes)) in base.iter().zip(changed).enumerate() {
        let mut new: BTreeMap<usize, Option<&[u64]>> = BTreeMap::new();
        for (i, p) in changes {
            if *i >= db.len {
                return Err(PirError::InvalidParameters(format!(
                    "plaintext {i} is beyond table {t}'s {} plaintexts",
                    db.len
                )));
            }
            new.insert(*i, p.as_ref().map(|p| residues(ctx, &q, p)).transpose()?);
        }
        let shape_err = || {
            PirError::InvalidParameters(format!(
                "table {t}'s {} plaintexts do not lay out in passes of {per_pass} with d0 {d0}",
                db.len
            ))
        };
        let mut table = CompactDatabase::zeroed(ctx, db.len, (d0, per_pass), db.packed)
            .ok_or_else(shape_err)?;
        for i in 0..db.len {
            let data = pt.poly.data_mut();
            match new.get(&i) {
                Some(Some(v)) => data.copy_from_slice(v),
                Some(None) => continue,
                None => {
                    db.read_plaintext(i, data);
                    if let Some(d) = overlay.and_then(|o| o.tables[t].find(i)) {
                        for (m, &qm) in q.iter().enumerate() {
                            let qm = u64::from(qm);
                            let rows = m * n..(m + 1) * n;
                            for (x, &d) in data[rows.clone()].iter_mut().zip(&d[rows]) {
                                *x = (*x + u64::from(d)) % qm;
                            }
                        }
                    }
                }
            }
            if pt.poly.data().iter().any(|&x| x != 0) && !table.set(i, &pt) {
                return Err(shape_err());
            }
        }
        table.compact();
        out.push(table);
    }
    Ok(out)
}

impl OverlayTable {
    /// Whether the overlay fits a table of `len` plaintexts with `kn` words each.
    pub(crate) fn fits(&self, len: usize, kn: usize) -> bool {
        self.len == len && self.kn == kn
    }

    /// Adds q_r ⊙ Δ_r, for the replaced plaintexts r of the column whose rows are the
    /// plaintexts `column_first..column_first + d₀`, to tile `tile` of poly `poly` of that
    /// column's first-dimension output for `call` (`dst`: the tile's reduced words, modulus
    /// `q`). `scratch` is reused between calls.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn correct_tile(
        &self,
        sel: &Selection32,
        (call, poly): (usize, usize),
        (column_first, d0): (usize, usize),
        tile: usize,
        q: u32,
        dst: &mut [u64],
        scratch: &mut Vec<u64>,
    ) {
        let lo = self.indices.partition_point(|&i| i < column_first);
        let hi = lo + self.indices[lo..].partition_point(|&i| i < column_first + d0);
        if lo == hi {
            return;
        }
        let block = dst.len();
        scratch.clear();
        scratch.extend_from_slice(dst);
        for (e, r) in (lo..hi).enumerate() {
            if e > 0 && e % LAZY == 0 {
                for x in scratch.iter_mut() {
                    *x %= u64::from(q);
                }
            }
            let row = self.indices[r] - column_first;
            let s = &sel.words[sel.at(tile, call, row, poly)..][..block];
            let d = &self.delta(r)[tile * block..(tile + 1) * block];
            mul_add(scratch, s, d);
        }
        bfv::reduce_u64_rows32(q, dst, scratch);
    }
}

/// The overlay's corrections for the columns of one pass that the base marks absent (the
/// first dimension corrects present ones as it writes them, see
/// [`crate::first_dimension`]): for every replaced plaintext r of such a column (the pass
/// holds `pass_len` plaintexts from `first`, d₀ rows a column) and every call in `calls`,
/// q_r ⊙ Δ_r into a zero ciphertext from `alloc`, stored at
/// `columns[call − calls.start][col]`. `scratch` is reused between calls.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill_absent_columns(
    ctx: &Context,
    table: &OverlayTable,
    sel: &Selection32,
    calls: Range<usize>,
    (first, pass_len): (usize, usize),
    columns: &mut [Vec<Option<Ciphertext>>],
    alloc: &mut dyn FnMut() -> Ciphertext,
    scratch: &mut Vec<u64>,
) -> Result<(), PirError> {
    let lo = table.indices.partition_point(|&i| i < first);
    let hi = table.indices.partition_point(|&i| i < first + pass_len);
    if lo == hi {
        return Ok(());
    }
    let (d0, kn, block) = (sel.d0, sel.kn, sel.block);
    let n = ctx.n;
    if kn != table.kn
        || calls.end > sel.calls
        || columns.len() != calls.len()
        || block == 0
        || !kn.is_multiple_of(block)
        || !n.is_multiple_of(block)
    {
        return Err(PirError::Malformed("overlay correction shape".into()));
    }
    let mut j = lo;
    while j < hi {
        // The entries j..end share a column.
        let col = (table.indices[j] - first) / d0;
        let end = j + table.indices[j..hi].partition_point(|&i| (i - first) / d0 == col);
        j = end;
        for (slot, call) in calls.clone().enumerate() {
            let ct = columns[slot]
                .get_mut(col)
                .ok_or_else(|| PirError::Malformed("overlay correction column".into()))?;
            if ct.is_some() {
                // Present in the base: corrected by the first dimension.
                continue;
            }
            let mut c = alloc();
            if c.polys().len() != 2 || c.polys().iter().any(|p| p.data().len() != kn) {
                return Err(PirError::Malformed("first dimension output shape".into()));
            }
            for (poly, p) in c.polys_mut().iter_mut().enumerate() {
                let data = p.data_mut();
                data.fill(0);
                for (tile, dst) in data.chunks_exact_mut(block).enumerate() {
                    let q = ctx.modulus(tile * block / n).value as u32;
                    let column_first = first + col * d0;
                    table.correct_tile(
                        sel,
                        (call, poly),
                        (column_first, d0),
                        tile,
                        q,
                        dst,
                        scratch,
                    );
                }
            }
            *ct = Some(c);
        }
    }
    Ok(())
}

/// `acc[x] += s[x]·d[x]` (32×32→64-bit products), vectorised for the widest instruction set
/// the CPU allows.
fn mul_add(acc: &mut [u64], s: &[u32], d: &[u32]) {
    sift_he::simd_dispatch!(mul_add_lanes, (acc: &mut [u64], s: &[u32], d: &[u32]))
}

/// The body of [`mul_add`], compiled once per instruction set.
#[inline(always)]
fn mul_add_lanes(acc: &mut [u64], s: &[u32], d: &[u32]) {
    for ((a, &s), &d) in acc.iter_mut().zip(s).zip(d) {
        *a += u64::from(s) * u64::from(d);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::client::KeywordPirClient;
    use crate::cuckoo::CuckooTable;
    use crate::database::{self, ProcessedDatabase};
    use crate::keyword::keyword_hash;
    use crate::params::DimensionChoice;
    use crate::server::{
        KeywordPirConfig, KeywordPirServer, ServerShard, process_shard_with_table, words_shape,
    };
    use crate::storage::{self, Mmap};
    use crate::wire::{self, ShardParameters};

    /// Per table, new plaintexts by index.
    type Changes = Vec<Vec<(usize, Option<EvalPlaintext>)>>;

    /// A processed shard: its rows, cuckoo table, plaintexts per table and mapped `.words`
    /// tables.
    struct Fixture {
        ctx: Arc<Context>,
        params: ShardParameters,
        shape: Shape,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        table: CuckooTable,
        plaintexts: Vec<Vec<Option<EvalPlaintext>>>,
        base: Vec<CompactDatabase>,
    }

    /// `bytes` written to a temporary file and mapped (the directory goes at once; the map
    /// stays valid).
    fn map_bytes(bytes: &[u8]) -> Arc<Mmap> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.words");
        std::fs::write(&p, bytes).unwrap();
        storage::map_file(&p).unwrap()
    }

    fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
        (0..len).map(|_| rng.r#gen()).collect()
    }

    /// A shard of `rows` keywords with `value_len`-byte values over the parameter set
    /// `name`, its base tables mapped from a `.words` file.
    fn fixture(
        name: &str,
        rows: usize,
        value_len: usize,
        choice: DimensionChoice,
        rng: &mut StdRng,
    ) -> Fixture {
        let ctx = Context::predefined(name).unwrap();
        let rows: Vec<_> = (0..rows)
            .map(|i| (format!("kw{i}").into_bytes(), random_bytes(rng, value_len)))
            .collect();
        let mut config = KeywordPirConfig::default_for(&ctx.params, value_len);
        config.dimension_choice = choice;
        let (shard, table) = process_shard_with_table(&ctx, &rows, &config, 7).unwrap();
        let h = shard.params.hash_function_count;
        let plaintexts: Vec<Vec<_>> = shard
            .database
            .tables(h)
            .unwrap()
            .iter()
            .map(|t| t.to_vec())
            .collect();
        let shape = words_shape(&ctx, &shard.params);
        let owned: Vec<_> = plaintexts
            .iter()
            .map(|t| CompactDatabase::new(&ctx, t, shape.d0, shape.per_chunk).unwrap())
            .collect();
        let base = storage::decode(&map_bytes(&storage::encode(&owned)), &ctx, shape).unwrap();
        assert!(base.iter().all(|t| t.words.is_mapped()));
        Fixture {
            ctx,
            params: shard.params,
            shape,
            rows,
            table,
            plaintexts,
            base,
        }
    }

    impl Fixture {
        /// New values for `count` random keywords and `removed` keywords dropped, in the
        /// cuckoo table and the rows: the plaintexts an update re-encodes, per table.
        fn change_rows(&mut self, count: usize, removed: usize, rng: &mut StdRng) -> Changes {
            let mut buckets = Vec::new();
            for _ in 0..count {
                let j = rng.gen_range(0..self.rows.len());
                let hash = keyword_hash(&self.rows[j].0);
                let value = random_bytes(rng, self.rows[j].1.len());
                let (t, b, s) = self.slot_of(hash);
                self.table.tables[t][b].slots[s].value = value.clone();
                self.rows[j].1 = value;
                buckets.push((t, b));
            }
            for _ in 0..removed {
                let (kw, _) = self.rows.remove(rng.gen_range(0..self.rows.len()));
                buckets.push(self.table.remove(keyword_hash(&kw)).unwrap());
            }
            let bpp = self.ctx.params.bytes_per_plaintext();
            let index = &self.params.index;
            (0..self.base.len())
                .map(|t| {
                    let mut which: Vec<usize> = buckets
                        .iter()
                        .filter(|c| c.0 == t)
                        .flat_map(|&(_, b)| database::plaintexts_of_entry(index, bpp, b))
                        .collect();
                    which.sort_unstable();
                    which.dedup();
                    let entry = |e: usize| self.table.tables[t][e].serialize();
                    database::reencode(&self.ctx, index, &entry, &which).unwrap()
                })
                .collect()
        }

        /// (table, bucket, slot) of the keyword hash `hash`.
        fn slot_of(&self, hash: u64) -> (usize, usize, usize) {
            for (t, buckets) in self.table.tables.iter().enumerate() {
                for (b, bucket) in buckets.iter().enumerate() {
                    if let Some(s) = bucket.slots.iter().position(|s| s.keyword_hash == hash) {
                        return (t, b, s);
                    }
                }
            }
            panic!("keyword hash {hash} is not stored")
        }

        /// The plaintexts after `changes` (applied in order).
        fn apply(&self, changes: &[&Changes]) -> Vec<Vec<Option<EvalPlaintext>>> {
            let mut out = self.plaintexts.clone();
            for c in changes {
                for (t, list) in c.iter().enumerate() {
                    for (i, pt) in list {
                        out[t][*i] = pt.clone();
                    }
                }
            }
            out
        }

        /// A server answering from `tables` (through a mapped `.words` file) with `overlay`.
        fn serve(&self, tables: &[CompactDatabase], overlay: Option<Overlay>) -> KeywordPirServer {
            let proto = wire::pir_parameters_to_proto(&self.params);
            let map = map_bytes(&storage::encode(tables));
            let mut shard = ServerShard::from_words(&self.ctx, proto, &map, None).unwrap();
            if let Some(o) = overlay {
                shard = shard.with_overlay(o).unwrap();
            }
            KeywordPirServer::from_shards(vec![shard]).unwrap()
        }

        /// A server loaded from the `.bin` of `plaintexts` (a fresh build of them).
        fn serve_bin(&self, plaintexts: &[Vec<Option<EvalPlaintext>>]) -> KeywordPirServer {
            let proto = wire::pir_parameters_to_proto(&self.params);
            let db = ProcessedDatabase {
                plaintexts: plaintexts.concat(),
            };
            let shard = ServerShard::from_bin(&self.ctx, proto, &db.serialize(&self.ctx)).unwrap();
            KeywordPirServer::from_shards(vec![shard]).unwrap()
        }

        /// The compact tables a fresh build of `plaintexts` gives, packed as the base.
        fn fresh(&self, plaintexts: &[Vec<Option<EvalPlaintext>>]) -> Vec<CompactDatabase> {
            plaintexts
                .iter()
                .map(|t| {
                    let shape = (self.shape.d0, self.shape.per_chunk);
                    CompactDatabase::with_packing(&self.ctx, t, shape, self.base[0].packed).unwrap()
                })
                .collect()
        }

        /// The fixture with `edit` applied to its plaintexts (the base tables rebuilt and
        /// mapped again; the cuckoo table no longer matches them).
        fn edited(mut self, edit: impl FnOnce(&mut [Vec<Option<EvalPlaintext>>])) -> Fixture {
            edit(&mut self.plaintexts);
            let owned = self.fresh(&self.plaintexts);
            let map = map_bytes(&storage::encode(&owned));
            self.base = storage::decode(&map, &self.ctx, self.shape).unwrap();
            self
        }

        /// (d₀, plaintexts per pass) of the tables.
        fn layout(&self) -> (usize, usize) {
            (self.shape.d0, self.shape.per_chunk)
        }
    }

    /// A client with its evaluation key for the fixture's shard.
    fn client(
        f: &Fixture,
        rng: &mut StdRng,
    ) -> (KeywordPirClient, sift_proto::he::SerializedEvaluationKey) {
        let client =
            KeywordPirClient::new(&[wire::pir_parameters_to_proto(&f.params)], rng).unwrap();
        let key = client.evaluation_key(rng).unwrap();
        (client, key)
    }

    /// The answer of every server to one query for `kw`, asserted byte for byte equal.
    fn same_answers(
        servers: &[&KeywordPirServer],
        (client, key): &(KeywordPirClient, sift_proto::he::SerializedEvaluationKey),
        kw: &[u8],
        rng: &mut StdRng,
    ) -> sift_proto::api::PirResponse {
        let req = client.query(kw, rng).unwrap();
        let answers: Vec<Vec<u8>> = servers
            .iter()
            .map(|s| s.answer(&req, key).unwrap().encode_to_vec())
            .collect();
        for (i, a) in answers.iter().enumerate().skip(1) {
            assert!(
                *a == answers[0],
                "server {i} answers differently from server 0"
            );
        }
        sift_proto::api::PirResponse::decode(answers[0].as_slice()).unwrap()
    }

    /// [`same_answers`], and the value the client decodes from the answer.
    fn ask(
        servers: &[&KeywordPirServer],
        c: &(KeywordPirClient, sift_proto::he::SerializedEvaluationKey),
        kw: &[u8],
        rng: &mut StdRng,
    ) -> Option<Vec<u8>> {
        let resp = same_answers(servers, c, kw, rng);
        c.0.decode(kw, &resp).unwrap()
    }

    /// Changed values and removed keywords served through an overlay answer byte for byte
    /// as the rewritten tables and as a fresh load of the final plaintexts, and decrypt to
    /// the new values; the rewrite equals a fresh layout of the final plaintexts. Returns
    /// the fixture's dimensions and chunk count.
    fn overlay_answers_as_a_rewrite(
        name: &str,
        rows: usize,
        value_len: usize,
        choice: DimensionChoice,
        seed: u64,
    ) -> (Vec<usize>, usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut f = fixture(name, rows, value_len, choice, &mut rng);
        let old_rows = f.rows.clone();
        let changes = f.change_rows(4, 2, &mut rng);
        let overlay = Overlay::build(&f.ctx, &f.base, None, &changes).unwrap();
        let fin = f.apply(&[&changes]);
        // One entry per plaintext that differs (re-encoded ones that did not are dropped).
        let differ = |a: &[Vec<Option<EvalPlaintext>>], b: &[Vec<Option<EvalPlaintext>>]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
                .sum::<usize>()
        };
        assert!(!overlay.is_empty());
        assert_eq!(overlay.len(), differ(&fin, &f.plaintexts));
        let rewritten = rewrite(
            &f.ctx,
            &f.base,
            Some(&overlay),
            &[vec![], vec![]],
            f.layout(),
        );
        let rewritten = rewritten.unwrap();
        assert_eq!(rewritten, f.fresh(&fin), "rewrite of base + overlay");
        let direct = rewrite(&f.ctx, &f.base, None, &changes, f.layout()).unwrap();
        assert_eq!(direct, rewritten, "rewrite of base + changes");
        let overlaid = f.serve(&f.base, Some(overlay));
        assert_eq!(
            overlaid.shards()[0].overlay_len(),
            differ(&fin, &f.plaintexts)
        );
        let servers = [&overlaid, &f.serve(&rewritten, None), &f.serve_bin(&fin)];
        let old = f.serve(&f.base, None);
        let c = client(&f, &mut rng);
        let current: std::collections::HashMap<_, _> = f.rows.iter().cloned().collect();
        for (kw, _) in old_rows.iter().take(3) {
            assert_eq!(ask(&servers, &c, kw, &mut rng).as_ref(), current.get(kw));
        }
        let mut changed_seen = 0;
        // Every changed or removed keyword answers its new value (or nothing), the old
        // tables its old one.
        for (kw, v) in &old_rows {
            if current.get(kw) != Some(v) {
                assert_eq!(ask(&servers, &c, kw, &mut rng).as_ref(), current.get(kw));
                assert_eq!(ask(&[&old], &c, kw, &mut rng).as_ref(), Some(v));
                changed_seen += 1;
            }
        }
        assert!(changed_seen >= 4, "{changed_seen} changed keywords asked");
        let bpp = f.ctx.params.bytes_per_plaintext();
        (
            f.params.index.dimensions.clone(),
            f.params.index.chunk_count(bpp),
        )
    }

    /// Overlays made from the plaintexts' values before each change (as `sift update` makes
    /// them, from the cuckoo table, without reading the base) equal those made by reading
    /// the base, also on top of a previous overlay, with several chunks.
    #[test]
    fn an_overlay_from_the_values_before_equals_one_read_from_the_base() {
        let mut rng = StdRng::seed_from_u64(31);
        for (name, rows, value_len) in [
            ("n_4096_logq_27_28_28_logt_5", 300, 8),
            ("n_4096_logq_27_28_28_logt_5", 40, 3000),
        ] {
            let mut f = fixture(name, rows, value_len, DimensionChoice::Fastest, &mut rng);
            let before_of = |plaintexts: &[Vec<Option<EvalPlaintext>>], c: &Changes| -> Changes {
                c.iter()
                    .enumerate()
                    .map(|(t, l)| {
                        l.iter()
                            .map(|(i, _)| (*i, plaintexts[t][*i].clone()))
                            .collect()
                    })
                    .collect()
            };
            let c1 = f.change_rows(6, 2, &mut rng);
            let read = Overlay::build(&f.ctx, &f.base, None, &c1).unwrap();
            let given = Overlay::build_from_before(
                &f.ctx,
                f.shape,
                None,
                &c1,
                &before_of(&f.plaintexts, &c1),
            )
            .unwrap();
            assert!(!read.is_empty());
            assert_eq!(read, given, "{name}: first overlay");
            let after1 = f.apply(&[&c1]);
            let c2 = f.change_rows(6, 2, &mut rng);
            let read2 = Overlay::build(&f.ctx, &f.base, Some(&read), &c2).unwrap();
            let given2 = Overlay::build_from_before(
                &f.ctx,
                f.shape,
                Some(&given),
                &c2,
                &before_of(&after1, &c2),
            )
            .unwrap();
            assert_eq!(read2, given2, "{name}: overlay on an overlay");
            // Mismatched lists are refused.
            let short: Changes = vec![Vec::new(); c2.len()];
            if c2.iter().any(|l| !l.is_empty()) {
                assert!(Overlay::build_from_before(&f.ctx, f.shape, None, &c2, &short).is_err());
            }
        }
    }

    #[test]
    fn overlay_answers_as_a_rewrite_one_chunk() {
        let (dims, chunks) = overlay_answers_as_a_rewrite(
            "n_4096_logq_27_28_28_logt_5",
            300,
            8,
            DimensionChoice::Fastest,
            1,
        );
        assert_eq!(chunks, 1);
        eprintln!("dims {dims:?}");
    }

    #[test]
    fn overlay_answers_as_a_rewrite_second_dimension() {
        let (dims, _) = overlay_answers_as_a_rewrite(
            "n_4096_logq_27_28_28_logt_5",
            300,
            300,
            DimensionChoice::Apple,
            2,
        );
        assert!(dims[1] > 1, "{dims:?}");
    }

    #[test]
    fn overlay_answers_as_a_rewrite_several_chunks_and_second_dimension() {
        let (dims, chunks) = overlay_answers_as_a_rewrite(
            "n_4096_logq_27_28_28_logt_5",
            40,
            1500,
            DimensionChoice::Apple,
            4,
        );
        assert!(chunks > 1 && dims[1] > 1, "{chunks} chunks {dims:?}");
    }

    #[test]
    fn overlay_answers_as_a_rewrite_several_chunks() {
        let (dims, chunks) = overlay_answers_as_a_rewrite(
            "n_4096_logq_27_28_28_logt_5",
            40,
            1500,
            DimensionChoice::Fastest,
            3,
        );
        assert!(chunks > 1, "{chunks} chunks {dims:?}");
        eprintln!("dims {dims:?}");
    }

    /// A plaintext of uniformly random Eval residues over `ctx`'s ciphertext moduli.
    fn random_plaintext(ctx: &Context, rng: &mut StdRng) -> EvalPlaintext {
        let k = ctx.ciphertext_moduli_count();
        let mut poly = sift_he::Poly::zero(ctx, k, Format::Eval);
        for r in 0..k {
            let q = ctx.modulus(r).value;
            for x in poly.row_mut(r) {
                *x = rng.gen_range(0..q);
            }
        }
        EvalPlaintext { poly }
    }

    /// The fixture most tests share: Apple's dimensions (d₁ > 1, here 14 × 2: one chunk of
    /// two columns, one column group), edited so that table 0 has an absent column (1) and
    /// a dropped row (3: zero in both columns).
    fn small(rng: &mut StdRng) -> Fixture {
        let f = fixture(
            "n_4096_logq_27_28_28_logt_5",
            300,
            300,
            DimensionChoice::Apple,
            rng,
        );
        assert_eq!(f.params.index.dimensions, [14, 2]);
        f.edited(|pts| {
            for pt in &mut pts[0][14..] {
                *pt = None;
            }
            pts[0][3] = None;
        })
    }

    /// A plaintext of table 0 in a row its column group does not store (a present column)
    /// and one in an absent column.
    fn dropped_and_absent(db: &CompactDatabase) -> (usize, usize) {
        let dropped = (0..db.len).find(|&i| {
            let (chunk, col, row) = db.position(i);
            let g = db.group(chunk, 0, col);
            db.present[i / db.d0]
                && db.rows.list[g.rows.0..g.rows.1]
                    .binary_search(&(row as u32))
                    .is_err()
        });
        let absent = (0..db.len).find(|&i| !db.present[i / db.d0]);
        (
            dropped.expect("the fixture has a dropped row in a present column"),
            absent.expect("the fixture has an absent column"),
        )
    }

    /// Non-zero plaintexts into a row the base dropped and into a column it marks absent
    /// (where `set` cannot write) are served (over a packed and an unpacked base), and
    /// rewritten, as a fresh build of them.
    #[test]
    fn changes_into_dropped_rows_and_absent_columns() {
        let mut rng = StdRng::seed_from_u64(11);
        let f = small(&mut rng);
        let (dropped, absent) = dropped_and_absent(&f.base[0]);
        let (a, b) = (
            random_plaintext(&f.ctx, &mut rng),
            random_plaintext(&f.ctx, &mut rng),
        );
        let changes: Changes = vec![vec![(dropped, Some(a.clone())), (absent, Some(b))], vec![]];
        let mut fresh = f.fresh(&f.plaintexts);
        assert!(!fresh[0].set(dropped, &a), "the row is dropped");
        let overlay = Overlay::build(&f.ctx, &f.base, None, &changes).unwrap();
        assert_eq!(overlay.len(), 2);
        let fin = f.apply(&[&changes]);
        let rewritten = rewrite(
            &f.ctx,
            &f.base,
            Some(&overlay),
            &[vec![], vec![]],
            f.layout(),
        );
        let rewritten = rewritten.unwrap();
        assert_eq!(rewritten, f.fresh(&fin));
        assert!(rewritten[0].present[absent / f.shape.d0]);
        assert_eq!(
            rewritten[0].plaintext(dropped).unwrap(),
            a.poly.data().to_vec()
        );
        // The same overlay over the base stored in 32-bit words (the other kernels).
        let layout = (f.shape.d0, f.shape.per_chunk);
        let unpacked: Vec<_> = (f.plaintexts.iter())
            .map(|t| CompactDatabase::with_packing(&f.ctx, t, layout, false).unwrap())
            .collect();
        let servers = [
            &f.serve(&f.base, Some(overlay.clone())),
            &f.serve(&unpacked, Some(overlay)),
            &f.serve(&rewritten, None),
            &f.serve_bin(&fin),
        ];
        let c = client(&f, &mut rng);
        let kw = &f.rows[0].0;
        same_answers(&servers, &c, kw, &mut rng);
        // Without the overlay the answer differs (the test can tell).
        let req = c.0.query(kw, &mut rng).unwrap();
        assert_ne!(
            f.serve(&f.base, None).answer(&req, &c.1).unwrap(),
            servers[0].answer(&req, &c.1).unwrap()
        );
    }

    /// The getter reads back exactly what was stored, packed in 28 bits or not: every
    /// plaintext of a mapped table, zeros for absent ones and dropped rows, None past the
    /// end; and a rewrite with either packing keeps it and equals a fresh layout.
    #[test]
    fn plaintexts_read_back_as_stored() {
        let mut rng = StdRng::seed_from_u64(12);
        let f = small(&mut rng);
        let (dropped, _) = dropped_and_absent(&f.base[0]);
        let changes: Changes = vec![
            vec![(dropped, Some(random_plaintext(&f.ctx, &mut rng)))],
            vec![(0, None)],
        ];
        let fin = f.apply(&[&changes]);
        for pack in [false, true] {
            let layout = (f.shape.d0, f.shape.per_chunk);
            let tables: Vec<_> = f
                .plaintexts
                .iter()
                .map(|t| CompactDatabase::with_packing(&f.ctx, t, layout, pack).unwrap())
                .collect();
            assert_eq!(tables[0].packed, pack && f.base[0].packed);
            for (db, pts) in f
                .base
                .iter()
                .chain(&tables)
                .zip(f.plaintexts.iter().cycle())
            {
                for (i, pt) in pts.iter().enumerate() {
                    let want = pt
                        .as_ref()
                        .map_or_else(|| vec![0; db.k * db.n], |p| p.poly.data().to_vec());
                    assert_eq!(db.plaintext(i).unwrap(), want, "plaintext {i}");
                }
                assert_eq!(db.plaintext(db.len), None);
            }
            let rewritten = rewrite(&f.ctx, &tables, None, &changes, layout).unwrap();
            let want: Vec<_> = fin
                .iter()
                .map(|t| CompactDatabase::with_packing(&f.ctx, t, layout, pack).unwrap())
                .collect();
            assert_eq!(rewritten, want, "packed {pack}");
        }
    }

    /// Changing a plaintext back to its base value drops its entry; an overlay built on a
    /// previous one equals one overlay of the combined changes.
    #[test]
    fn overlays_merge_and_drop_entries_changed_back() {
        let mut rng = StdRng::seed_from_u64(13);
        let f = small(&mut rng);
        let (dropped, absent) = dropped_and_absent(&f.base[0]);
        let i = (0..f.base[1].len)
            .find(|&i| f.plaintexts[1][i].is_some())
            .unwrap();
        let mut pt = || Some(random_plaintext(&f.ctx, &mut rng));
        let first: Changes = vec![
            vec![(dropped, pt()), (absent, pt()), (3, pt())],
            vec![(i, pt())],
        ];
        let second: Changes = vec![vec![(absent, pt()), (5, pt())], vec![(i + 1, None)]];
        let one = Overlay::build(&f.ctx, &f.base, None, &first).unwrap();
        let two = Overlay::build(&f.ctx, &f.base, Some(&one), &second).unwrap();
        let mut combined = first.clone();
        for (t, list) in second.iter().enumerate() {
            combined[t].retain(|(j, _)| list.iter().all(|(k, _)| k != j));
            combined[t].extend(list.iter().cloned());
        }
        let at_once = Overlay::build(&f.ctx, &f.base, None, &combined).unwrap();
        assert_eq!(two, at_once);
        let fin = f.apply(&[&first, &second]);
        let want = fin
            .iter()
            .zip(&f.plaintexts)
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
            .sum::<usize>();
        assert_eq!(two.len(), want);
        let rewritten = rewrite(&f.ctx, &f.base, Some(&two), &[vec![], vec![]], f.layout());
        assert_eq!(rewritten.unwrap(), f.fresh(&fin));
        // Everything changed back (or to the same zero): an empty overlay.
        let back: Changes = vec![
            combined[0]
                .iter()
                .map(|(j, _)| (*j, f.plaintexts[0][*j].clone()))
                .collect(),
            vec![
                (i, f.plaintexts[1][i].clone()),
                (i + 1, f.plaintexts[1][i + 1].clone()),
            ],
        ];
        let empty = Overlay::build(&f.ctx, &f.base, Some(&two), &back).unwrap();
        assert_eq!(empty.len(), 0);
        assert!(empty.is_empty());
        // A plaintext out of range, or of another shape, is refused.
        let beyond: Changes = vec![vec![(f.base[0].len, None)], vec![]];
        assert!(Overlay::build(&f.ctx, &f.base, None, &beyond).is_err());
        assert!(rewrite(&f.ctx, &f.base, None, &beyond, f.layout()).is_err());
        let mut wide = random_plaintext(&f.ctx, &mut rng);
        wide.poly.data_mut()[0] = f.ctx.modulus(0).value;
        let bad: Changes = vec![vec![(0, Some(wide))], vec![]];
        assert!(Overlay::build(&f.ctx, &f.base, None, &bad).is_err());
        assert!(Overlay::build(&f.ctx, &f.base, None, &[vec![]]).is_err());
    }

    /// An overlay for other tables than the shard's is refused.
    #[test]
    fn a_shard_refuses_an_overlay_of_another_shape() {
        let mut rng = StdRng::seed_from_u64(14);
        let f = small(&mut rng);
        let other = fixture(
            "n_4096_logq_27_28_28_logt_5",
            20,
            8,
            DimensionChoice::Fastest,
            &mut rng,
        );
        let changes: Changes = vec![vec![(0, Some(random_plaintext(&f.ctx, &mut rng)))], vec![]];
        let overlay = Overlay::build(&other.ctx, &other.base, None, &changes).unwrap();
        let proto = wire::pir_parameters_to_proto(&f.params);
        let map = map_bytes(&storage::encode(&f.base));
        let shard = ServerShard::from_words(&f.ctx, proto, &map, None).unwrap();
        assert!(shard.with_overlay(overlay).is_err());
    }

    /// Encoding round-trips; decoding refuses every malformed file.
    #[test]
    fn encode_decode_round_trip_and_rejects_bad_files() {
        let mut rng = StdRng::seed_from_u64(15);
        let f = small(&mut rng);
        let mut pt = || Some(random_plaintext(&f.ctx, &mut rng));
        let changes: Changes = vec![vec![(1, pt()), (4, pt())], vec![(2, pt())]];
        let overlay = Overlay::build(&f.ctx, &f.base, None, &changes).unwrap();
        let bytes = overlay.encode();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(Overlay::decode(&f.ctx, f.shape, &bytes).unwrap(), overlay);
        let empty = Overlay::build(&f.ctx, &f.base, None, &[vec![], vec![]]).unwrap();
        let decoded = Overlay::decode(&f.ctx, f.shape, &empty.encode()).unwrap();
        assert_eq!(decoded, empty);

        let kn = f.base[0].k * f.base[0].n;
        // Table 0: len at 32, count at 40, entry 0 at 48 (index) and 56 (Δ), entry 1 after.
        let entry = 8 + 4 * kn;
        let second = 48 + entry;
        let put =
            |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        let rejects = |what: &str, b: &[u8], shape: Shape| match Overlay::decode(&f.ctx, shape, b) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => assert!(e.to_string().contains("overlay file"), "{what}: {e}"),
        };
        let s = f.shape;
        let mut b = bytes.clone();
        b[0] ^= 1;
        rejects("magic", &b, s);
        let mut b = bytes.clone();
        put(&mut b, 8, f.base[0].k as u64 + 1);
        rejects("k", &b, s);
        let mut b = bytes.clone();
        put(&mut b, 16, 8192);
        rejects("n", &b, s);
        rejects("table count", &bytes, Shape { tables: 3, ..s });
        rejects(
            "table length",
            &bytes,
            Shape {
                len: s.len + 1,
                ..s
            },
        );
        let mut b = bytes.clone();
        put(&mut b, 40, u64::MAX);
        rejects("huge count", &b, s);
        let mut b = bytes.clone();
        put(&mut b, 48, s.len as u64);
        rejects("index out of range", &b, s);
        let mut b = bytes.clone();
        put(&mut b, second, 1);
        rejects("repeated index", &b, s);
        let mut b = bytes.clone();
        put(&mut b, second, 0);
        rejects("unsorted indices", &b, s);
        let mut b = bytes.clone();
        b[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
        rejects("residue above its modulus", &b, s);
        let mut b = bytes.clone();
        let q = f.ctx.modulus(f.base[0].k - 1).value as u32;
        b[56 + 4 * (kn - 1)..56 + 4 * kn].copy_from_slice(&q.to_le_bytes());
        rejects("residue equal to the last modulus", &b, s);
        let mut b = bytes.clone();
        b[56..56 + 4 * kn].fill(0);
        rejects("zero difference", &b, s);
        for cut in [
            0,
            7,
            20,
            44,
            52,
            56 + 4 * kn - 1,
            second + 4,
            bytes.len() - 1,
        ] {
            rejects("truncated", &bytes[..cut], s);
        }
        let mut b = bytes.clone();
        b.push(0);
        rejects("trailing byte", &b, s);
    }
}
