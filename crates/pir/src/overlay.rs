//! Shard overlays: an update that replaces a few plaintexts of a shard writes only the
//! differences, beside the shard's unchanged `.words` file, instead of rewriting that file.
//!
//! A `.words` file interleaves each plaintext's words over every tile of its table (see
//! [`CompactDatabase`]), so replacing a few plaintexts in place dirties every page. But the
//! first dimension is linear: for column c, Σ_i q_i ⊙ pt′_ic = Σ_i q_i ⊙ pt_ic + q_r ⊙ Δ_rc with
//! Δ_rc = pt′_rc − pt_rc (mod each q_m) for each replaced plaintext (row r of column c). The
//! server computes on the mapped base words as before and then adds, per replaced plaintext,
//! its selection ciphertext times Δ ([`correct`]). The responses are exactly those a rewritten
//! database gives. When an overlay grows too large, [`rewrite`] folds it (and any new changes)
//! into fresh tables.
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// One table's replaced plaintexts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
                        let v = new.map_or(0, |v| v[x]);
                        *d = ((v + qm - old[x]) % qm) as u32;
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
/// base had dropped its row. What an update writes when an overlay has grown too large.
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

/// Adds the overlay's corrections to the first dimension of one pass: for every replaced
/// plaintext r of the pass (`pass_len` plaintexts from `first`, d₀ rows a column) and every
/// call in `calls`, q_r ⊙ Δ_r into the column's ciphertext `columns[call − calls.start][col]`
/// (a zero ciphertext from `alloc` first where the base column was absent). `scratch` is
/// reused between calls.
#[allow(clippy::too_many_arguments)]
pub(crate) fn correct(
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
    scratch.resize(block, 0);
    let mut j = lo;
    while j < hi {
        // The entries j..end share a column.
        let col = (table.indices[j] - first) / d0;
        let end = j + table.indices[j..hi].partition_point(|&i| (i - first) / d0 == col);
        for (slot, call) in calls.clone().enumerate() {
            let ct = columns[slot]
                .get_mut(col)
                .ok_or_else(|| PirError::Malformed("overlay correction column".into()))?;
            let ct = match ct {
                Some(ct) => ct,
                None => {
                    let mut c = alloc();
                    for p in c.polys_mut() {
                        p.data_mut().fill(0);
                    }
                    ct.insert(c)
                }
            };
            if ct.polys().len() != 2 || ct.polys().iter().any(|p| p.data().len() != kn) {
                return Err(PirError::Malformed("first dimension output shape".into()));
            }
            for (poly, p) in ct.polys_mut().iter_mut().enumerate() {
                for (tile, dst) in p.data_mut().chunks_exact_mut(block).enumerate() {
                    let q = ctx.modulus(tile * block / n).value as u32;
                    for (s, &d) in scratch.iter_mut().zip(dst.iter()) {
                        *s = d;
                    }
                    for (e, r) in (j..end).enumerate() {
                        if e > 0 && e % LAZY == 0 {
                            for s in scratch.iter_mut() {
                                *s %= u64::from(q);
                            }
                        }
                        let row = (table.indices[r] - first) % d0;
                        let s = &sel.words[sel.at(tile, call, row, poly)..][..block];
                        let d = &table.delta(r)[tile * block..(tile + 1) * block];
                        for ((acc, &s), &d) in scratch.iter_mut().zip(s).zip(d) {
                            *acc += u64::from(s) * u64::from(d);
                        }
                    }
                    bfv::reduce_u64_rows32(q, dst, scratch);
                }
            }
        }
        j = end;
    }
    Ok(())
}
