//! Shards stored in the form the server computes on, so that a server maps them instead of
//! reading and converting them.
//!
//! Apple's `.bin` holds Eval plaintexts as 64-bit coefficients that the server converts into
//! its [`CompactDatabase`] (32- or 28-bit words in the first dimension's loop order) at load:
//! the whole file is read, decoded and rewritten in memory before the first answer. A
//! `.words` file holds the converted words themselves, so a loader memory-maps it and serves
//! at once; the pages come in from the page cache on first use, a reload of an unchanged
//! (hard-linked) shard shares the old version's pages, and several processes serving one
//! dataset share one copy.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! magic "SIFTCDB\x02"        8 bytes
//! u64 table_count
//! per table: 12 × u64        k n block packed piece_len d0 per_chunk len present_at words_at
//!                            rows_at row_count
//! per table, at present_at:  len/d0 bytes, 0 or 1 (whether a column has a plaintext)
//! per table, at rows_at:     (groups + 1) u32 starts, then row_count u32 rows: the rows each
//!                            column group stores (all-zero rows are dropped)
//! per table, at words_at:    the stored rows' u32 words (words_at a multiple of 64)
//! ```
//!
//! Files of the first version (`SIFTCDB\x01`: 10 fields, no row lists, every row stored) are
//! still read.
//!
//! The words depend on the machine that wrote them only through `packed` (28-bit packing is
//! used where the CPU has AVX-512 VBMI). A server whose CPU packs maps an unpacked file as it
//! is (and computes on 32-bit words); one whose CPU does not pack unpacks a packed file into
//! memory at load ([`decode`]), so a `.words` file is all a server needs.

use std::path::Path;
use std::sync::Arc;

use sift_he::{Context, pack28};

use crate::PirError;
use crate::first_dimension::{BLOCK, CompactDatabase, moduli_below, stored_piece_len};
pub use crate::words::Words;

/// A read-only memory map of a shard file.
pub use memmap2::Mmap;

/// File magic of a `.words` file.
pub const MAGIC: &[u8; 8] = b"SIFTCDB\x02";

/// File magic of the first version (every row stored, no row lists).
const MAGIC_V1: &[u8; 8] = b"SIFTCDB\x01";

/// Header fields per table.
const FIELDS: usize = 12;

/// Header fields per table in the first version.
const FIELDS_V1: usize = 10;

/// Alignment of each table's words inside the file (a cache line).
const ALIGN: usize = 64;

/// Maps `path` read-only.
pub fn map_file(path: &Path) -> Result<Arc<Mmap>, PirError> {
    let f = std::fs::File::open(path)
        .map_err(|e| PirError::DamagedDataset(format!("{}: {e}", path.display())))?;
    // SAFETY: the map is only read. Its soundness needs the file not to be modified or
    // truncated while mapped: shard files of a dataset version are immutable (written once
    // into a staging folder, `fsync`ed, published by rename; later versions write new files
    // or hard-link unchanged ones, never rewrite them), and pruning removes a version's
    // directory entries, which leaves mapped inodes intact.
    let map = unsafe { Mmap::map(&f) }
        .map_err(|e| PirError::DamagedDataset(format!("mapping {}: {e}", path.display())))?;
    Ok(Arc::new(map))
}

/// Whether a server on this machine would store a database over `ctx` in 28 bits.
pub fn packs_here(ctx: &Context) -> bool {
    pack28::vbmi() && moduli_below(ctx, 28)
}

impl CompactDatabase {
    /// The table's shape as a `.words` header stores it, in file order: k, n, block, packed,
    /// words per piece, d₀, plaintexts per chunk, plaintexts.
    fn header_fields(&self) -> [usize; 8] {
        [
            self.k,
            self.n,
            self.block,
            usize::from(self.packed),
            self.piece_len,
            self.d0,
            self.per_chunk,
            self.len,
        ]
    }
}

/// The `.words` file of a shard's tables (each from [`CompactDatabase::new`]).
pub fn encode(tables: &[CompactDatabase]) -> Vec<u8> {
    let header = 16 + tables.len() * FIELDS * 8;
    let mut at = header;
    let mut places = Vec::with_capacity(tables.len());
    for t in tables {
        let present_at = at;
        at += t.present.len();
        let rows_at = at.div_ceil(4) * 4;
        at = rows_at + 4 * (t.rows.start.len() + t.rows.list.len());
        at = at.div_ceil(ALIGN) * ALIGN;
        places.push((present_at, at, rows_at));
        at += t.words.len() * 4;
    }
    let mut out = Vec::with_capacity(at);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(tables.len() as u64).to_le_bytes());
    for (t, &(p, w, r)) in tables.iter().zip(&places) {
        for v in t
            .header_fields()
            .into_iter()
            .chain([p, w, r, t.rows.list.len()])
        {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
    }
    for (t, &(p, w, r)) in tables.iter().zip(&places) {
        debug_assert_eq!(out.len(), p);
        out.extend(t.present.iter().map(|&b| u8::from(b)));
        out.resize(r, 0);
        for x in t.rows.start.iter().chain(&t.rows.list) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.resize(w, 0);
        for x in t.words.iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

/// The shape every table of a shard must have: `tables` tables of `len` plaintexts over
/// `ctx`, first dimension `d0`, `per_chunk` plaintexts per chunk.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Tables (hash functions).
    pub tables: usize,
    /// First dimension.
    pub d0: usize,
    /// Plaintexts per pass of the first dimension (a chunk, or every chunk when d₁ = 1).
    pub per_chunk: usize,
    /// Plaintexts per table.
    pub len: usize,
}

/// The tables of a mapped `.words` file, checked against `shape` and `ctx`, an error when it
/// is not a well-formed file of this shape. The words stay mapped, except where the file is
/// packed in 28 bits and this machine does not pack ([`packs_here`]): those are unpacked into
/// memory.
pub fn decode(
    map: &Arc<Mmap>,
    ctx: &Context,
    shape: Shape,
) -> Result<Vec<CompactDatabase>, PirError> {
    decode_for(map, ctx, shape, packs_here(ctx))
}

/// [`decode`] on a machine that packs (`pack`) or not.
fn decode_for(
    map: &Arc<Mmap>,
    ctx: &Context,
    shape: Shape,
    pack: bool,
) -> Result<Vec<CompactDatabase>, PirError> {
    let bad = |m: String| PirError::DamagedDataset(format!("shard words file: {m}"));
    let bytes: &[u8] = map;
    let u64_at = |o: usize| -> Result<usize, PirError> {
        let b = bytes
            .get(o..o + 8)
            .ok_or_else(|| bad("truncated header".into()))?;
        usize::try_from(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .map_err(|_| bad("header value too large".into()))
    };
    let fields = match bytes.get(..8) {
        Some(m) if m == &MAGIC[..] => FIELDS,
        Some(m) if m == &MAGIC_V1[..] => FIELDS_V1,
        _ => return Err(bad("bad magic (not a sift .words file)".into())),
    };
    let count = u64_at(8)?;
    if count != shape.tables {
        return Err(bad(format!(
            "{count} tables, the parameters say {}",
            shape.tables
        )));
    }
    let k = ctx.ciphertext_moduli_count();
    let n = ctx.n;
    let fits28 = moduli_below(ctx, 28);
    let mut out = Vec::with_capacity(count);
    for t in 0..count {
        let mut h: Vec<usize> = (0..fields)
            .map(|f| u64_at(16 + (t * fields + f) * 8))
            .collect::<Result<_, _>>()?;
        // A first-version table stores every row: no row list.
        h.resize(FIELDS, usize::MAX);
        // The shape (as `header_fields` writes it), then where the table's parts lie.
        let [fk, fn_, block, packed, piece_len, d0, per_chunk, len] = h[..8] else {
            unreachable!("FIELDS values")
        };
        let [present_at, words_at, rows_at, row_count] = h[8..] else {
            unreachable!("FIELDS values")
        };
        let packed = match packed {
            0 => false,
            1 => true,
            v => return Err(bad(format!("table {t}: packing flag {v}"))),
        };
        if fk != k
            || fn_ != n
            || block != BLOCK.min(n)
            || piece_len != stored_piece_len(packed)
            || d0 != shape.d0
            || per_chunk != shape.per_chunk
            || len != shape.len
            || d0 == 0
            || !len.is_multiple_of(d0)
            || per_chunk == 0
            || !len.is_multiple_of(per_chunk)
        {
            return Err(bad(format!(
                "table {t}'s shape (k {fk}, n {fn_}, block {block}, d0 {d0}, {len} plaintexts) \
                 does not match the parameters (k {k}, n {n}, d0 {}, {} plaintexts)",
                shape.d0, shape.len
            )));
        }
        if packed && !fits28 {
            return Err(bad(format!(
                "table {t} is packed in 28 bits, but a modulus is 2^28 or more"
            )));
        }
        let present_len = len / d0;
        let present = bytes
            .get(present_at..present_at.saturating_add(present_len))
            .ok_or_else(|| bad(format!("table {t}: column flags out of range")))?
            .iter()
            .map(|&b| match b {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(bad(format!("table {t}: column flag {v}"))),
            })
            .collect::<Result<Vec<bool>, _>>()?;
        // The layout: every row (first version), or the stored row lists.
        let mut table = CompactDatabase::zeroed(ctx, 0, (d0, per_chunk), packed)
            .ok_or_else(|| bad(format!("table {t}: shape")))?;
        table.len = len;
        table.present = present;
        let groups = table.group_count();
        let (start, list) = if rows_at == usize::MAX {
            let start = (0..=groups).map(|j| j * d0).collect::<Vec<_>>();
            let start = start
                .into_iter()
                .map(u32::try_from)
                .collect::<Result<_, _>>();
            let start = start.map_err(|_| bad(format!("table {t}: too many rows")))?;
            let list = (0..groups).flat_map(|_| 0..d0 as u32).collect();
            (start, list)
        } else {
            let u32s = |at: usize, count: usize| -> Option<Vec<u32>> {
                let end = count.checked_mul(4)?.checked_add(at)?;
                let b = bytes.get(at..end)?;
                Some(
                    b.chunks_exact(4)
                        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
                        .collect(),
                )
            };
            let start = u32s(rows_at, groups.saturating_add(1));
            let list = u32s(rows_at.saturating_add(4 * (groups + 1)), row_count);
            start
                .zip(list)
                .ok_or_else(|| bad(format!("table {t}: row lists out of range")))?
        };
        table.rows = table
            .layout(start, list)
            .ok_or_else(|| bad(format!("table {t}: malformed row lists")))?;
        let word_count = table.word_count();
        if !words_at.is_multiple_of(ALIGN) {
            return Err(bad(format!("table {t}: words not aligned")));
        }
        let words = Words::mapped(map.clone(), words_at, word_count).ok_or_else(|| {
            bad(format!(
                "table {t}: {word_count} words at byte {words_at} do not fit the {}-byte file",
                bytes.len()
            ))
        })?;
        table.words = words;
        out.push(if packed && !pack {
            unpacked(ctx, &table).ok_or_else(|| bad(format!("table {t}: unpacking")))?
        } else {
            table
        });
    }
    Ok(out)
}

/// `table` (packed in 28 bits) with its words unpacked into 32-bit words in memory: the same
/// layout with sixteen words a piece instead of fourteen, for a CPU without the packed kernel.
fn unpacked(ctx: &Context, table: &CompactDatabase) -> Option<CompactDatabase> {
    let mut out = CompactDatabase::zeroed(ctx, 0, (table.d0, table.per_chunk), false)?;
    out.len = table.len;
    out.present = table.present.clone();
    out.rows = out.layout(table.rows.start.clone(), table.rows.list.clone())?;
    let from = stored_piece_len(true);
    let to = stored_piece_len(false);
    if table.words.len() / from * to != out.word_count() || !table.words.len().is_multiple_of(from)
    {
        return None;
    }
    let mut words = vec![0u32; out.word_count()];
    for (src, dst) in table
        .words
        .chunks_exact(from)
        .zip(words.chunks_exact_mut(to))
    {
        pack28::unpack(src, dst);
    }
    out.words = Words::Owned(words);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` written to a file in a fresh temporary directory and mapped. The directory is
    /// removed at once; the map stays valid, as a mapped shard file does when a version is pruned.
    fn map_bytes(bytes: &[u8]) -> Arc<Mmap> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.words");
        std::fs::write(&p, bytes).unwrap();
        map_file(&p).unwrap()
    }

    #[test]
    fn words_mapped_rejects_out_of_range_and_misaligned() {
        let map = map_bytes(&[1u8, 0, 0, 0, 2, 0, 0, 0, 9]);
        let w = Words::mapped(map.clone(), 0, 2).unwrap();
        assert_eq!(&*w, &[1, 2]);
        assert!(w.is_mapped());
        assert_eq!(w, Words::Owned(vec![1, 2]));
        assert!(Words::mapped(map.clone(), 4, 2).is_none(), "past the end");
        assert!(Words::mapped(map.clone(), 1, 1).is_none(), "misaligned");
        assert!(Words::mapped(map, usize::MAX - 2, 1).is_none(), "overflow");
    }

    /// The encryption parameters of the test shard.
    const PARAMS: &str = "n_4096_logq_27_28_28_logt_5";

    /// [`tables`] packed as this machine packs.
    fn tables_here() -> (Arc<Context>, Shape, Vec<CompactDatabase>) {
        let p = sift_he::EncryptionParameters::predefined(PARAMS).unwrap();
        tables(packs_here(&Context::new(p).unwrap()))
    }

    /// A small processed shard's tables packed (`pack`) or not.
    fn tables(pack: bool) -> (Arc<Context>, Shape, Vec<CompactDatabase>) {
        use crate::server::{KeywordPirConfig, process_shard};
        let p = sift_he::EncryptionParameters::predefined(PARAMS).unwrap();
        let ctx = Context::new(p.clone()).unwrap();
        let rows: Vec<_> = (0..20u32)
            .map(|i| (i.to_le_bytes().to_vec(), vec![1u8]))
            .collect();
        let shard = process_shard(&ctx, &rows, &KeywordPirConfig::default_for(&p, 1), 0).unwrap();
        let per_chunk = shard.params.index.per_chunk_plaintext_count();
        let d0 = shard.params.index.dimensions[0];
        let tables: Vec<_> = shard
            .database
            .tables(shard.params.hash_function_count)
            .unwrap()
            .iter()
            .map(|t| CompactDatabase::with_packing(&ctx, t, (d0, per_chunk), pack).unwrap())
            .collect();
        let shape = Shape {
            tables: tables.len(),
            d0,
            per_chunk,
            len: tables[0].len(),
        };
        (ctx, shape, tables)
    }

    /// A first-version file (every row stored, no row lists) written by an older sift still
    /// maps, to the table with every row.
    #[test]
    fn a_first_version_words_file_still_maps() {
        let (ctx, shape, compacted) = tables_here();
        let t = &compacted[0];
        // The same table with every row, as the first version stored it.
        let mut full = CompactDatabase::zeroed(&ctx, t.len, (t.d0, t.per_chunk), t.packed).unwrap();
        full.present = t.present.clone();
        assert!(full.words.len() >= t.words.len());
        let mut out = MAGIC_V1.to_vec();
        out.extend_from_slice(&1u64.to_le_bytes());
        let present_at = 16 + FIELDS_V1 * 8;
        let words_at = (present_at + full.present.len()).div_ceil(ALIGN) * ALIGN;
        for v in full
            .header_fields()
            .into_iter()
            .chain([present_at, words_at])
        {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        out.extend(full.present.iter().map(|&b| u8::from(b)));
        out.resize(words_at, 0);
        for x in full.words.iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
        let one = Shape { tables: 1, ..shape };
        let mapped = decode(&map_bytes(&out), &ctx, one).unwrap();
        assert_eq!(mapped, [full]);
    }

    #[test]
    fn a_words_file_maps_back_to_the_same_tables_on_either_packing() {
        let (ctx, shape, here) = tables_here();
        let mapped = decode(&map_bytes(&encode(&here)), &ctx, shape).unwrap();
        assert_eq!(mapped, here);
        assert!(mapped.iter().all(|t| t.words.is_mapped()));

        // Packed in 28 bits, read where the CPU does not pack: unpacked into memory, equal to
        // the tables written unpacked.
        let (_, _, packed) = tables(true);
        let (_, _, plain) = tables(false);
        assert!(packed[0].packed && !plain[0].packed);
        let unpacked = decode_for(&map_bytes(&encode(&packed)), &ctx, shape, false).unwrap();
        assert_eq!(unpacked, plain);
        assert!(unpacked.iter().all(|t| !t.words.is_mapped()));
        // Unpacked, read where the CPU packs: mapped as it is.
        let mapped = decode_for(&map_bytes(&encode(&plain)), &ctx, shape, true).unwrap();
        assert_eq!(mapped, plain);
        assert!(mapped.iter().all(|t| t.words.is_mapped()));

        // A wrong shape, a bad magic or a truncated file is an error, never a short read.
        let wrong = Shape {
            d0: shape.d0 + 1,
            ..shape
        };
        assert!(decode(&map_bytes(&encode(&here)), &ctx, wrong).is_err());
        let bytes = encode(&here);
        assert!(decode(&map_bytes(&bytes[..bytes.len() - 4]), &ctx, shape).is_err());
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(decode(&map_bytes(&bad), &ctx, shape).is_err());
    }
}
