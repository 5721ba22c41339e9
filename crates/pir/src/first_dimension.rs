//! First dimension of MulPir: for each database column j and PIR call, Σ_i q_i ⊙ pt_ij over the
//! d₀ expanded selection ciphertexts q_i, on a database kept as 32-bit (or 28-bit) words.
//!
//! The products are 32×32→64-bit, summed lazily in u64 and reduced once per column. The
//! database is laid out for the loop that reads it: per chunk and block of coefficients, the
//! columns in groups of `GROUP_COLUMNS` (five), and inside a group sixteen coefficients of every row
//! and column side by side. The loop then reads the database front to back, exactly once per
//! query, while the sums of a group (five columns, both polynomials, sixteen coefficients) stay
//! in registers over all d₀ rows and each selection value loaded serves five columns.

use sift_he::{Ciphertext, Context, Format, bfv, pack28};

use crate::PirError;
use crate::overlay::OverlayTable;

/// Coefficients per tile: a tile of every selection ciphertext (2 polys × d₀ rows × 1 KB) is
/// what the register-blocked loop reuses from L2 across the column groups.
pub(crate) const BLOCK: usize = 256;

/// Coefficients per piece: one AVX-512 register of 32-bit lanes.
pub(crate) const PIECE: usize = 16;

/// Columns per group: their sums (2 polys × 16 coefficients as u64, four registers a column)
/// take 20 of the 32 AVX-512 registers, leaving room for the selection values, the unpacked
/// database words and the unpacking constants.
const GROUP_COLUMNS: usize = 5;

/// Database words requested ahead of the multiply (16 KB): the hardware prefetcher alone
/// does not keep a stream from DRAM ahead of it.
const PREFETCH_WORDS: usize = 4096;

/// Eval plaintexts stored as u32 words (half the memory traffic of u64) for moduli below 2^30,
/// so the first dimension runs as 32×32→64-bit vector products summed lazily in u64; when
/// every modulus is below 2^28 and the CPU has AVX-512 VBMI, in 28 bits ([`sift_he::pack28`]),
/// unpacked in registers inside the multiply (12.5% fewer bytes streamed per query).
///
/// Layout: per chunk (`per_chunk` plaintexts, `per_chunk / d0` columns of d₀ consecutive
/// plaintexts), per tile (BLOCK consecutive words of the k·n rows), per group of up to
/// `GROUP_COLUMNS` (five) columns: `[piece][row i][column c][PIECE values]`, each piece of sixteen
/// values packed into 14 words or stored as 16. Absent (all-zero) plaintexts are stored as
/// zeros; a column with no plaintext at all gives no output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactDatabase {
    /// Rows per plaintext (ciphertext moduli).
    pub(crate) k: usize,
    /// Coefficients per polynomial.
    pub(crate) n: usize,
    /// Words per tile (divides n, a multiple of PIECE).
    pub(crate) block: usize,
    /// Whether pieces are stored in 28 bits.
    pub(crate) packed: bool,
    /// Stored words per piece: 14 packed, 16 plain.
    pub(crate) piece_len: usize,
    /// Plaintexts per column (the first dimension).
    pub(crate) d0: usize,
    /// Plaintexts per chunk (a multiple of d0).
    pub(crate) per_chunk: usize,
    /// Number of plaintexts.
    pub(crate) len: usize,
    /// The stored words, in the layout above (in memory, or mapped from a shard file:
    /// see [`crate::storage`]).
    pub(crate) words: crate::words::Words,
    /// Per column (chunk-major), whether any of its plaintexts is present.
    pub(crate) present: Vec<bool>,
    /// Which rows each column group stores (see [`Rows`]): every row until
    /// [`CompactDatabase::compact`] drops the all-zero ones.
    pub(crate) rows: Rows,
}

/// Whether every ciphertext modulus of `ctx` is below 2^`bits` (30: words fit the compact
/// form; 28: they can be packed).
pub(crate) fn moduli_below(ctx: &Context, bits: u32) -> bool {
    (0..ctx.ciphertext_moduli_count()).all(|i| ctx.modulus(i).value < (1 << bits))
}

/// Stored words per piece of [`PIECE`] values: 14 when packed into 28 bits, else 16.
pub(crate) const fn stored_piece_len(packed: bool) -> usize {
    if packed {
        PIECE / pack28::GROUP * pack28::GROUP_WORDS
    } else {
        PIECE
    }
}

/// The rows a compact database stores per chunk and column group (group j = chunk · groups +
/// column / `GROUP_COLUMNS`): `list[start[j]..start[j + 1]]`, ascending. A row whose plaintexts
/// in the group's columns are all zero adds nothing to any sum, so it is neither stored nor
/// multiplied; the kernels read the selection of each stored row by its index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    /// Where each group's rows start in `list` (groups + 1 entries).
    pub(crate) start: Vec<u32>,
    /// The stored rows of every group, each group's ascending.
    pub(crate) list: Vec<u32>,
    /// Word offset of each group in tile 0 (derived).
    base: Vec<usize>,
    /// Words per tile of each chunk (derived).
    tile_len: Vec<usize>,
}

impl CompactDatabase {
    /// The compact copy of `plaintexts` for a first dimension of `d0` rows over chunks of
    /// `per_chunk` plaintexts, or None when a ciphertext modulus is 2^30 or more, a plaintext
    /// is not over the ciphertext moduli, or the shape does not divide (`per_chunk` a multiple
    /// of `d0`, `plaintexts.len()` of `per_chunk`). Packed in 28 bits where the moduli allow
    /// and the CPU unpacks in registers (AVX-512 VBMI, [`pack28::vbmi`]); elsewhere unpacking
    /// would cost more than the smaller stream saves.
    pub fn new(
        ctx: &Context,
        plaintexts: &[Option<sift_he::EvalPlaintext>],
        d0: usize,
        per_chunk: usize,
    ) -> Option<CompactDatabase> {
        Self::with_packing(ctx, plaintexts, (d0, per_chunk), pack28::vbmi())
    }

    /// [`CompactDatabase::new`], packing into 28 bits only when `pack` (and the moduli allow).
    pub fn with_packing(
        ctx: &Context,
        plaintexts: &[Option<sift_he::EvalPlaintext>],
        shape: (usize, usize),
        pack: bool,
    ) -> Option<CompactDatabase> {
        let mut db = Self::zeroed(ctx, plaintexts.len(), shape, pack)?;
        for (index, pt) in plaintexts.iter().enumerate() {
            if let Some(pt) = pt
                && !db.set(index, pt)
            {
                return None;
            }
        }
        db.compact();
        Some(db)
    }

    /// A database of `len` all-zero plaintexts in the layout for a first dimension of `d0` rows
    /// over passes of `per_chunk` plaintexts, filled in with [`CompactDatabase::set`] (so a
    /// server can fill it straight from the serialized plaintexts, one at a time, without
    /// holding them all in Eval form); None when the moduli or the shape do not suit (see
    /// [`CompactDatabase::new`]).
    pub fn zeroed(
        ctx: &Context,
        len: usize,
        (d0, per_chunk): (usize, usize),
        pack: bool,
    ) -> Option<CompactDatabase> {
        let k = ctx.ciphertext_moduli_count();
        let n = ctx.n;
        let block = BLOCK.min(n);
        if !moduli_below(ctx, 30)
            || d0 == 0
            || per_chunk == 0
            || !per_chunk.is_multiple_of(d0)
            || !len.is_multiple_of(per_chunk)
            || !block.is_multiple_of(PIECE)
            || !n.is_multiple_of(block)
        {
            return None;
        }
        let packed = pack && moduli_below(ctx, 28);
        let mut db = CompactDatabase {
            k,
            n,
            block,
            packed,
            piece_len: stored_piece_len(packed),
            d0,
            per_chunk,
            len,
            words: crate::words::Words::Owned(Vec::new()),
            present: vec![false; len / d0],
            rows: Rows::default(),
        };
        let groups = db.chunks() * db.groups();
        let start = (0..=groups).map(|j| (j * d0) as u32).collect();
        let list = (0..groups).flat_map(|_| 0..d0 as u32).collect();
        db.rows = db.layout(start, list)?;
        db.words = crate::words::Words::Owned(vec![0u32; db.word_count()]);
        Some(db)
    }

    /// The row lists `start`/`list` with the offsets they imply, or None when they are not
    /// one ascending list of rows below d₀ per group (the checks a mapped file needs).
    pub(crate) fn layout(&self, start: Vec<u32>, list: Vec<u32>) -> Option<Rows> {
        let (groups, cols) = (self.groups(), self.columns());
        if start.len() != self.chunks() * groups + 1
            || start.first() != Some(&0)
            || start.last().map(|&e| e as usize) != Some(list.len())
            || start.windows(2).any(|w| w[0] > w[1])
        {
            return None;
        }
        let tiles = self.k * self.n / self.block;
        let (mut base, mut tile_len) = (Vec::with_capacity(groups), Vec::new());
        let mut at = 0usize;
        for chunk in 0..self.chunks() {
            let mut in_tile = 0usize;
            for g in 0..groups {
                let j = chunk * groups + g;
                let rows = &list[start[j] as usize..start[j + 1] as usize];
                if rows.windows(2).any(|w| w[0] >= w[1])
                    || rows.last().is_some_and(|&r| r as usize >= self.d0)
                {
                    return None;
                }
                base.push(at + in_tile);
                let width = GROUP_COLUMNS.min(cols - g * GROUP_COLUMNS);
                in_tile = in_tile.checked_add(
                    (self.block / PIECE)
                        .checked_mul(rows.len())?
                        .checked_mul(width * self.piece_len)?,
                )?;
            }
            tile_len.push(in_tile);
            at = at.checked_add(in_tile.checked_mul(tiles)?)?;
        }
        Some(Rows {
            start,
            list,
            base,
            tile_len,
        })
    }

    /// Words the layout holds.
    pub(crate) fn word_count(&self) -> usize {
        let tiles = self.k * self.n / self.block;
        self.rows.tile_len.iter().map(|l| l * tiles).sum()
    }

    /// Drops, per chunk and column group, the rows whose plaintexts are all zero (empty
    /// cuckoo slots, the tails of short buckets): they are not stored and the first dimension
    /// neither reads nor multiplies them. The words move down in place. Plaintexts set after
    /// this must be in a stored row. Does nothing to mapped words.
    pub fn compact(&mut self) {
        let mut words = match std::mem::take(&mut self.words) {
            crate::words::Words::Owned(words) => words,
            mapped => {
                self.words = mapped;
                return;
            }
        };
        let (tiles, groups, cols) = (self.k * self.n / self.block, self.groups(), self.columns());
        let pieces = self.block / PIECE;
        // Which stored rows have a non-zero word in any tile, piece or column of their group.
        let mut start = vec![0u32];
        let mut list = Vec::new();
        for chunk in 0..self.chunks() {
            for g in 0..groups {
                let group = self.group(chunk, 0, g * GROUP_COLUMNS);
                let rows = &self.rows.list[group.rows.0..group.rows.1];
                let row_len = group.width * self.piece_len;
                for (r, &row) in rows.iter().enumerate() {
                    let nonzero = (0..tiles).any(|tile| {
                        let at = self.group(chunk, tile, g * GROUP_COLUMNS).at;
                        (0..pieces).any(|p| {
                            let from = at + (p * rows.len() + r) * row_len;
                            words[from..from + row_len].iter().any(|&w| w != 0)
                        })
                    });
                    if nonzero {
                        list.push(row);
                    }
                }
                start.push(list.len() as u32);
            }
        }
        let old = std::mem::take(&mut self.rows);
        self.rows = self
            .layout(start, list)
            .expect("a subset of a valid layout is valid");
        // Storage order is chunk, tile, group, piece, row: the kept rows keep that order, so
        // every word moves down (or stays).
        let mut to = 0;
        for chunk in 0..self.chunks() {
            for tile in 0..tiles {
                for g in 0..groups {
                    let j = chunk * groups + g;
                    let first = g * GROUP_COLUMNS;
                    let row_len = GROUP_COLUMNS.min(cols - first) * self.piece_len;
                    let old_rows = &old.list[old.start[j] as usize..old.start[j + 1] as usize];
                    let new_rows = &self.rows.list
                        [self.rows.start[j] as usize..self.rows.start[j + 1] as usize];
                    let from = old.base[j] + tile * old.tile_len[chunk];
                    debug_assert_eq!(to, self.rows.base[j] + tile * self.rows.tile_len[chunk]);
                    for p in 0..pieces {
                        for (r, row) in old_rows.iter().enumerate() {
                            if new_rows.binary_search(row).is_ok() {
                                let at = from + (p * old_rows.len() + r) * row_len;
                                words.copy_within(at..at + row_len, to);
                                to += row_len;
                            }
                        }
                    }
                }
            }
        }
        words.truncate(to);
        words.shrink_to_fit();
        debug_assert_eq!(to, self.word_count());
        self.words = crate::words::Words::Owned(words);
    }

    /// Stores plaintext `index` (Eval form over the k ciphertext moduli, each word below its
    /// modulus); false, storing nothing, when the index is out of range or the plaintext has
    /// another shape, or the words are mapped from a file (read-only).
    pub fn set(&mut self, index: usize, pt: &sift_he::EvalPlaintext) -> bool {
        let (k, kn) = (self.k, self.k * self.n);
        if index >= self.len
            || pt.poly.basis().iter().copied().ne(0..k)
            || pt.poly.format() != Format::Eval
            || pt.poly.data().len() != kn
        {
            return false;
        }
        let mut words = match std::mem::take(&mut self.words) {
            crate::words::Words::Owned(words) => words,
            mapped => {
                self.words = mapped;
                return false;
            }
        };
        let (chunk, col, row) = self.position(index);
        let group = self.group(chunk, 0, col);
        let Ok(r) = self.rows.list[group.rows.0..group.rows.1].binary_search(&(row as u32)) else {
            // A row dropped by `compact`: only a zero plaintext may go there.
            self.words = crate::words::Words::Owned(words);
            return pt.poly.data().iter().all(|&x| x == 0);
        };
        self.present[index / self.d0] = true;
        let (block, piece_len, packed) = (self.block, self.piece_len, self.packed);
        for (tile, src) in pt.poly.data().chunks_exact(block).enumerate() {
            let group = self.group(chunk, tile, col);
            for (g, values) in src.chunks_exact(PIECE).enumerate() {
                let at = group.at + self.piece_at(&group, g, r, col);
                let dst = &mut words[at..at + piece_len];
                if packed {
                    pack28::pack(values, dst);
                } else {
                    for (d, &x) in dst.iter_mut().zip(values) {
                        *d = x as u32;
                    }
                }
            }
        }
        self.words = crate::words::Words::Owned(words);
        true
    }

    /// Memory held by the stored words and flags, in bytes (mapped words are the page
    /// cache's, not counted).
    pub fn heap_bytes(&self) -> usize {
        let words = if self.words.is_mapped() {
            0
        } else {
            self.words.len() * 4
        };
        words + self.present.len() + 4 * (self.rows.start.len() + self.rows.list.len())
    }

    /// Plaintexts per pass of the first dimension (a chunk, or with d₁ = 1 every chunk).
    pub fn pass_len(&self) -> usize {
        self.per_chunk
    }

    /// Whether the words are stored in 28 bits.
    pub fn is_packed(&self) -> bool {
        self.packed
    }

    /// Number of plaintexts (including zero ones).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no plaintexts.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Columns per chunk.
    pub(crate) fn columns(&self) -> usize {
        self.per_chunk / self.d0
    }

    /// Chunk, column within the chunk and row of plaintext `index`.
    pub(crate) fn position(&self, index: usize) -> (usize, usize, usize) {
        let (chunk, within) = (index / self.per_chunk, index % self.per_chunk);
        (chunk, within / self.d0, within % self.d0)
    }

    /// Chunks (passes) of the database.
    fn chunks(&self) -> usize {
        self.len / self.per_chunk
    }

    /// Column groups of the whole database (every chunk's).
    pub(crate) fn group_count(&self) -> usize {
        self.chunks() * self.groups()
    }

    /// Column groups per chunk.
    fn groups(&self) -> usize {
        self.columns().div_ceil(GROUP_COLUMNS)
    }

    /// The group holding column `col` of `chunk` in tile `tile`.
    pub(crate) fn group(&self, chunk: usize, tile: usize, col: usize) -> Group {
        let cols = self.columns();
        let first = col / GROUP_COLUMNS * GROUP_COLUMNS;
        let j = chunk * self.groups() + col / GROUP_COLUMNS;
        Group {
            first,
            width: GROUP_COLUMNS.min(cols - first),
            at: self.rows.base[j] + tile * self.rows.tile_len[chunk],
            rows: (self.rows.start[j] as usize, self.rows.start[j + 1] as usize),
        }
    }

    /// Offset inside `group` of piece `g` of stored row `r` (the r-th of the group's rows) of
    /// column `col`.
    pub(crate) fn piece_at(&self, group: &Group, g: usize, r: usize, col: usize) -> usize {
        let stored = group.rows.1 - group.rows.0;
        ((g * stored + r) * group.width + col - group.first) * self.piece_len
    }
}

/// A run of columns stored together (see [`CompactDatabase`]): columns `first..first + width`
/// of one chunk and tile, starting at word `at`, storing the rows `rows.list[rows.0..rows.1]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Group {
    first: usize,
    width: usize,
    pub(crate) at: usize,
    pub(crate) rows: (usize, usize),
}

/// Selection ciphertexts of the first dimension as 32-bit words (moduli below 2^30), laid out
/// tile-major like [`CompactDatabase`]: `[tile][call][i][poly][block words]`.
#[derive(Debug, Default)]
pub struct Selection32 {
    pub(crate) words: Vec<u32>,
    pub(crate) calls: usize,
    pub(crate) d0: usize,
    pub(crate) kn: usize,
    pub(crate) block: usize,
}

impl Selection32 {
    /// Sizes the buffer for `calls` calls of `d0` selection ciphertexts over k moduli
    /// (contents unspecified until [`Selection32::put`]), reusing its memory.
    pub fn reset(&mut self, calls: usize, d0: usize, k: usize, n: usize) {
        let (kn, block) = (k * n, BLOCK.min(n));
        self.words.resize(calls * d0 * 2 * kn, 0);
        self.calls = calls;
        self.d0 = d0;
        self.kn = kn;
        self.block = block;
    }

    /// Stores selection ciphertext i of `call` (Eval, 2 polys over the k moduli) as 32-bit
    /// words; done as the expansion produces each one, while it is still in cache.
    pub fn put(&mut self, call: usize, i: usize, c: &Ciphertext) -> Result<(), PirError> {
        if call >= self.calls || i >= self.d0 {
            return Err(PirError::Malformed("selection index".into()));
        }
        if c.polys().len() != 2
            || c.format() != Format::Eval
            || c.polys().iter().any(|p| p.data().len() != self.kn)
        {
            return Err(PirError::Malformed("selection ciphertext shape".into()));
        }
        let (calls, d0, block) = (self.calls, self.d0, self.block);
        // Block `tile` of poly p goes to `stride`·tile + `offset`(p).
        let stride = calls * d0 * 2 * block;
        let offset = |poly: usize| ((call * d0 + i) * 2 + poly) * block;
        for (poly, p) in c.polys().iter().enumerate() {
            // Written once here and read only after the whole expansion: streamed past the
            // caches, which the expansion needs.
            sift_he::stream::scatter_narrow(
                &mut self.words[offset(poly)..],
                p.data(),
                block,
                stride,
            );
        }
        Ok(())
    }

    /// Where block `tile` of poly `poly` of selection i of `call` starts in `words`.
    pub(crate) fn at(&self, tile: usize, call: usize, i: usize, poly: usize) -> usize {
        (((tile * self.calls + call) * self.d0 + i) * 2 + poly) * self.block
    }
}

/// The first dimension of every call over one chunk of a compact database: for each column
/// (plaintexts `first + col·d₀ ..`, `per_chunk / d₀` columns) and each call, Σ_i q_i ⊙ pt_i as
/// an Eval ciphertext over the k moduli, or None where the whole column is zero. Result
/// `[call][col]`. The chunk must be one the database was laid out for (`first` a multiple of
/// its `per_chunk`, the same d₀ as the selections).
///
/// `alloc` supplies each output ciphertext already shaped as 2 Eval polys over the k moduli
/// (its words are all overwritten), so a server can hand in reused buffers.
pub fn first_dimension_compact(
    ctx: &Context,
    db: &CompactDatabase,
    sel: &Selection32,
    calls: std::ops::Range<usize>,
    chunk: (usize, usize),
    alloc: &mut dyn FnMut() -> Ciphertext,
) -> Result<Vec<Vec<Option<Ciphertext>>>, PirError> {
    first_dimension_overlaid(ctx, (db, None), sel, calls, chunk, alloc)
}

/// [`first_dimension_compact`] over the database with `overlay`'s replaced plaintexts: the
/// corrections of present columns are added to each tile as it is written (still in cache);
/// those of absent columns are left to [`crate::overlay::fill_absent_columns`].
pub(crate) fn first_dimension_overlaid(
    ctx: &Context,
    (db, overlay): (&CompactDatabase, Option<&OverlayTable>),
    sel: &Selection32,
    calls: std::ops::Range<usize>,
    chunk: (usize, usize),
    alloc: &mut dyn FnMut() -> Ciphertext,
) -> Result<Vec<Vec<Option<Ciphertext>>>, PirError> {
    let qmax = (0..db.k).map(|i| ctx.modulus(i).value).max().unwrap_or(2);
    // Products are below (q−1)²; a sum of this many rows plus a reduced carry fits a u64.
    let max_lazy = (u64::MAX / ((qmax - 1) * (qmax - 1)).max(1)).max(2) as usize;
    first_dimension_runs_overlaid(ctx, (db, overlay), sel, calls, chunk, alloc, max_lazy - 1)
}

/// [`first_dimension_compact`] reducing the lazy sums every `run` rows (tests shorten it to
/// exercise the carries).
#[cfg(test)]
fn first_dimension_runs(
    ctx: &Context,
    db: &CompactDatabase,
    sel: &Selection32,
    calls: std::ops::Range<usize>,
    chunk: (usize, usize),
    alloc: &mut dyn FnMut() -> Ciphertext,
    run: usize,
) -> Result<Vec<Vec<Option<Ciphertext>>>, PirError> {
    first_dimension_runs_overlaid(ctx, (db, None), sel, calls, chunk, alloc, run)
}

/// [`first_dimension_overlaid`] reducing the lazy sums every `run` rows.
fn first_dimension_runs_overlaid(
    ctx: &Context,
    (db, overlay): (&CompactDatabase, Option<&OverlayTable>),
    sel: &Selection32,
    calls: std::ops::Range<usize>,
    (first, per_chunk): (usize, usize),
    alloc: &mut dyn FnMut() -> Ciphertext,
    run: usize,
) -> Result<Vec<Vec<Option<Ciphertext>>>, PirError> {
    if calls.end > sel.calls {
        return Err(PirError::Malformed("selection calls".into()));
    }
    if run == 0 {
        return Err(PirError::Malformed("first dimension lazy run".into()));
    }
    let (k, n, d0) = (db.k, db.n, db.d0);
    let kn = k * n;
    if sel.kn != kn
        || sel.block != db.block
        || sel.d0 != d0
        || per_chunk != db.per_chunk
        || !first.is_multiple_of(per_chunk)
        || first + per_chunk > db.len
        || overlay.is_some_and(|o| !o.fits(db.len, kn))
    {
        return Err(PirError::Malformed("first dimension shape".into()));
    }
    let chunk = first / per_chunk;
    let cols = db.columns();
    let present = &db.present[chunk * cols..(chunk + 1) * cols];
    // [call][col] → the column's ciphertext (only for columns with a plaintext).
    let mut out: Vec<Vec<Option<Ciphertext>>> = Vec::with_capacity(calls.len());
    for _ in calls.clone() {
        let mut row = Vec::with_capacity(cols);
        for &present in present {
            if !present {
                row.push(None);
                continue;
            }
            let c = alloc();
            if c.polys().len() != 2
                || c.polys().iter().any(|p| {
                    p.data().len() != kn
                        || p.format() != Format::Eval
                        || p.basis().iter().copied().ne(0..k)
                })
            {
                return Err(PirError::Malformed("first dimension output shape".into()));
            }
            row.push(Some(c));
        }
        out.push(row);
    }
    let block = db.block;
    let tiles = kn / block;
    // Each group prefetches its share of the next tile's selections of a call.
    let share = (d0 * 2 * block).div_ceil(cols.div_ceil(GROUP_COLUMNS));
    let mut sums = vec![0u64; GROUP_COLUMNS * 2 * block];
    let mut scratch = Vec::new();
    let mut corrections = Vec::new();
    for tile in 0..tiles {
        let start = tile * block;
        let q = ctx.modulus(start / n).value as u32;
        let next_tile = (tile + 1) % tiles;
        for first_col in (0..cols).step_by(GROUP_COLUMNS) {
            let group = db.group(chunk, tile, first_col);
            let cs = group.first..group.first + group.width;
            if !present[cs.clone()].iter().any(|&p| p) {
                continue;
            }
            for (slot, call) in calls.clone().enumerate() {
                // This group's share of the next tile's selections, fetched while it works.
                let next = sel.at(next_tile, call, 0, 0);
                let from = (next + first_col / GROUP_COLUMNS * share).min(sel.words.len());
                let to = (from + share).min(sel.words.len());
                let at = sel.at(tile, call, 0, 0);
                let pass = Pass {
                    db,
                    group,
                    rows: &db.rows.list[group.rows.0..group.rows.1],
                    sels: &sel.words[at..at + d0 * 2 * block],
                    prefetch: &sel.words[from..to],
                    q,
                    run,
                };
                let sums = &mut sums[..group.width * 2 * block];
                group_sums(&pass, sums, &mut scratch);
                for col in cs.clone() {
                    let Some(ct) = out[slot][col].as_mut() else {
                        continue;
                    };
                    let c = col - group.first;
                    for (poly, p) in ct.polys_mut().iter_mut().enumerate() {
                        let src = &sums[(c * 2 + poly) * block..(c * 2 + poly + 1) * block];
                        let dst = &mut p.data_mut()[start..start + block];
                        bfv::reduce_u64_rows32(q, dst, src);
                        if let Some(o) = overlay {
                            let column = (first + col * d0, d0);
                            o.correct_tile(
                                sel,
                                (call, poly),
                                column,
                                tile,
                                q,
                                dst,
                                &mut corrections,
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One group of columns in one tile for one call: what [`group_sums`] multiplies.
struct Pass<'a> {
    db: &'a CompactDatabase,
    group: Group,
    /// The rows the group stores, in storage order (each indexes `sels`).
    rows: &'a [u32],
    /// The call's selections in this tile: `[row i][poly][block]`.
    sels: &'a [u32],
    /// Words to bring into L2 while the pass runs (the next tile's selections).
    prefetch: &'a [u32],
    /// The tile's modulus.
    q: u32,
    /// Rows summed lazily before the sums are reduced (they then carry on from below q).
    run: usize,
}

/// `sums[(c·2 + poly)·block + x] = Σ_i sel_{i,poly}[x]·pt_{c,i}[x]`, lazily (each below 2^64,
/// congruent mod q), for the columns c of the pass's group.
fn group_sums(p: &Pass, sums: &mut [u64], scratch: &mut Vec<u32>) {
    if p.rows.is_empty() {
        // Every plaintext of the group is zero.
        sums.fill(0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if p.db.packed && pack28::vbmi() {
        macro_rules! blocked {
            ($($w:literal)*) => {
                match p.group.width {
                    // SAFETY: `vbmi()` is true only when AVX-512 F/BW and VBMI are present;
                    // the function checks every length it relies on.
                    $($w => return unsafe { group_sums_vbmi::<$w>(p, sums) },)*
                    _ => {}
                }
            };
        }
        blocked!(1 2 3 4 5);
    }
    #[cfg(target_arch = "x86_64")]
    if sift_he::simd::avx2() {
        // SAFETY: `avx2()` is true only when the CPU has AVX2.
        return unsafe { group_sums_avx2(p, sums, scratch) };
    }
    group_sums_portable(p, sums, scratch)
}

/// Reduces every sum mod q (the carry of a lazy run into the next).
fn reduce_sums(sums: &mut [u64], q: u32) {
    for x in sums.iter_mut() {
        *x %= q as u64;
    }
}

/// The group's pieces `g` as 32-bit values, `[stored row][column][PIECE]`: the stored words, or
/// unpacked into `scratch`.
fn slab<'a>(p: &'a Pass, g: usize, scratch: &'a mut Vec<u32>) -> &'a [u32] {
    let db = p.db;
    let len = p.rows.len() * p.group.width * db.piece_len;
    let stored = &db.words[p.group.at + g * len..][..len];
    if db.packed {
        scratch.resize(p.rows.len() * p.group.width * PIECE, 0);
        pack28::unpack(stored, scratch);
        scratch
    } else {
        stored
    }
}

/// Selection values of row i, poly `poly`, piece g.
#[inline(always)]
fn sel_piece<'a>(p: &'a Pass, i: usize, poly: usize, g: usize) -> &'a [u32; PIECE] {
    let block = p.db.block;
    p.sels[(2 * i + poly) * block + g * PIECE..][..PIECE]
        .try_into()
        .expect("piece")
}

/// [`group_sums`] on any CPU and storage, per column and piece with both polys' sums in a
/// local array over all rows.
fn group_sums_portable(p: &Pass, sums: &mut [u64], scratch: &mut Vec<u32>) {
    let (block, w) = (p.db.block, p.group.width);
    for g in 0..block / PIECE {
        let values = slab(p, g, scratch);
        for c in 0..w {
            let mut acc = [[0u64; PIECE]; 2];
            let mut lazy = 0;
            for (r, &i) in p.rows.iter().enumerate() {
                let i = i as usize;
                if lazy == p.run {
                    reduce_sums(acc.as_flattened_mut(), p.q);
                    lazy = 0;
                }
                lazy += 1;
                let v = &values[(r * w + c) * PIECE..][..PIECE];
                for (poly, acc) in acc.iter_mut().enumerate() {
                    for ((a, &x), &y) in acc.iter_mut().zip(sel_piece(p, i, poly, g)).zip(v) {
                        *a += x as u64 * y as u64;
                    }
                }
            }
            for (poly, acc) in acc.iter().enumerate() {
                let at = (c * 2 + poly) * block + g * PIECE;
                sums[at..at + PIECE].copy_from_slice(acc);
            }
        }
    }
}

/// [`group_sums_portable`] with AVX2: per column and piece, both polys' sums in eight
/// registers over all rows. The 32-bit values are not widened: `vpmuludq` multiplies the even
/// lanes, and the odd lanes after a 32-bit shift, into separate sums that are interleaved back
/// at the end (shifts run on two ports, the widening loads on one).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn group_sums_avx2(p: &Pass, sums: &mut [u64], scratch: &mut Vec<u32>) {
    use core::arch::x86_64::*;
    let (block, d0, w) = (p.db.block, p.db.d0, p.group.width);
    let stored = p.rows.len();
    assert!(
        sums.len() == w * 2 * block
            && p.sels.len() == d0 * 2 * block
            && p.rows.iter().all(|&i| (i as usize) < d0)
            && p.run > 0,
        "first dimension group shapes"
    );
    /// Sixteen u32 as two vectors.
    #[inline(always)]
    fn load(x: &[u32]) -> [__m256i; 2] {
        let x: &[u32; PIECE] = x.try_into().expect("piece");
        // SAFETY: AVX2 is enabled in the caller; each load reads 8 of the 16 u32.
        unsafe {
            [
                _mm256_loadu_si256(x.as_ptr().cast()),
                _mm256_loadu_si256(x[8..].as_ptr().cast()),
            ]
        }
    }
    let slab_len = stored * w * p.db.piece_len;
    let per_piece = p.prefetch.len().div_ceil(block / PIECE);
    for g in 0..block / PIECE {
        let at = p.group.at + g * slab_len;
        prefetch_l2(&p.db.words, at + PREFETCH_WORDS, slab_len);
        prefetch_l2(p.prefetch, g * per_piece, per_piece);
        let values = slab(p, g, scratch);
        for c in 0..w {
            let mut total = [[0u64; PIECE]; 2];
            let mut i = 0;
            while i < stored {
                let end = (i + p.run).min(stored);
                // [poly][half][even, odd]
                let mut acc = [[[_mm256_setzero_si256(); 2]; 2]; 2];
                for (r, &row) in p.rows.iter().enumerate().take(end).skip(i) {
                    let v = load(&values[(r * w + c) * PIECE..][..PIECE]);
                    let v_odd = v.map(|v| _mm256_srli_epi64::<32>(v));
                    for (poly, acc) in acc.iter_mut().enumerate() {
                        let s = load(sel_piece(p, row as usize, poly, g));
                        for h in 0..2 {
                            let odd = _mm256_srli_epi64::<32>(s[h]);
                            let [even_sum, odd_sum] = &mut acc[h];
                            *even_sum = _mm256_add_epi64(*even_sum, _mm256_mul_epu32(s[h], v[h]));
                            *odd_sum = _mm256_add_epi64(*odd_sum, _mm256_mul_epu32(odd, v_odd[h]));
                        }
                    }
                }
                for (poly, acc) in acc.iter().enumerate() {
                    let mut lanes = [[0u64; 4]; 4];
                    for (h, pair) in acc.iter().enumerate() {
                        for (e, &v) in pair.iter().enumerate() {
                            // SAFETY: each array holds 4 u64.
                            unsafe { _mm256_storeu_si256(lanes[2 * h + e].as_mut_ptr().cast(), v) };
                        }
                    }
                    // Lane j of half h's even sums is coefficient 8h + 2j, of its odd ones 8h + 2j + 1.
                    for (x, t) in total[poly].iter_mut().enumerate() {
                        let (h, j, e) = (x / 8, x % 8 / 2, x % 2);
                        *t += lanes[2 * h + e][j];
                    }
                    if end < stored {
                        reduce_sums(&mut total[poly], p.q);
                    }
                }
                i = end;
            }
            for (poly, total) in total.iter().enumerate() {
                let at = (c * 2 + poly) * block + g * PIECE;
                sums[at..at + PIECE].copy_from_slice(total);
            }
        }
    }
}

/// [`group_sums`] for a packed database on AVX-512 VBMI with the W columns' sums in registers:
/// per piece of sixteen coefficients, 4·W accumulators (even and odd coefficients of both
/// polys) run over all d₀ rows; each row's selection values (both polys, loaded once, odd
/// lanes shifted down once) serve all W columns, and each database piece is unpacked in
/// registers ([`pack28::x86::unpack16`]) and used for both polys. `vpmuludq` reads each
/// qword's low dword, so nothing is widened; the even and odd sums are interleaved back once
/// per piece. The database
/// is read front to back (prefetched [`PREFETCH_WORDS`] ahead into L2), the next tile's
/// selections are prefetched spread over the pass.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn group_sums_vbmi<const W: usize>(p: &Pass, sums: &mut [u64]) {
    use core::arch::x86_64::*;
    let (db, group) = (p.db, p.group);
    let (block, d0, stored) = (db.block, db.d0, p.rows.len());
    let piece_len = PIECE / pack28::GROUP * pack28::GROUP_WORDS;
    let row_len = W * piece_len;
    let len = block / PIECE * stored * row_len;
    assert!(
        db.packed
            && db.piece_len == piece_len
            && group.width == W
            && group.at + len <= db.words.len()
            && p.sels.len() == d0 * 2 * block
            && p.rows.iter().all(|&i| (i as usize) < d0)
            && sums.len() == W * 2 * block
            && p.run > 0,
        "blocked first dimension shapes"
    );
    let words = &db.words[group.at..group.at + len];
    // SAFETY: the caller guarantees the features.
    let unpack = unsafe { pack28::x86::Unpack16::new() };
    // Lanes of the even sums (coefficient 2j in lane j) and the odd ones (2j + 1), interleaved.
    let interleave_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    let interleave_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    // The next tile's selections: this many words per step, over block/16·(stored rows) steps.
    let steps = (block / PIECE * stored).max(1);
    let per_step = p.prefetch.len().div_ceil(steps).next_multiple_of(PIECE);
    let mut step = 0;
    for g in 0..block / PIECE {
        let mut carry = false;
        let mut i = 0;
        while i < stored {
            let end = (i + p.run).min(stored);
            let mut acc = [[_mm512_setzero_si512(); 4]; W];
            for r in i..end {
                let at = group.at + (g * stored + r) * row_len;
                prefetch_l2(&db.words, at + PREFETCH_WORDS, row_len);
                prefetch_l2(p.prefetch, step * per_step, per_step);
                step += 1;
                let i = p.rows[r] as usize;
                let (s0, s1) = (sel_piece(p, i, 0, g), sel_piece(p, i, 1, g));
                // SAFETY: each array holds 16 u32 (one 512-bit load).
                let (s0, s1) = unsafe {
                    (
                        _mm512_loadu_si512(s0.as_ptr().cast()),
                        _mm512_loadu_si512(s1.as_ptr().cast()),
                    )
                };
                let (s0_odd, s1_odd) = (_mm512_srli_epi64::<32>(s0), _mm512_srli_epi64::<32>(s1));
                let row = &words[(g * stored + r) * row_len..(g * stored + r + 1) * row_len];
                for (c, acc) in acc.iter_mut().enumerate() {
                    let src: &[u32; 14] = row[c * piece_len..(c + 1) * piece_len]
                        .try_into()
                        .expect("14 words");
                    // SAFETY: the caller guarantees the features.
                    let v = unsafe { pack28::x86::unpack16(unpack, src) };
                    let v_odd = _mm512_srli_epi64::<32>(v);
                    acc[0] = _mm512_add_epi64(acc[0], _mm512_mul_epu32(s0, v));
                    acc[1] = _mm512_add_epi64(acc[1], _mm512_mul_epu32(s0_odd, v_odd));
                    acc[2] = _mm512_add_epi64(acc[2], _mm512_mul_epu32(s1, v));
                    acc[3] = _mm512_add_epi64(acc[3], _mm512_mul_epu32(s1_odd, v_odd));
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                for poly in 0..2 {
                    let at = (c * 2 + poly) * block + g * PIECE;
                    let d = &mut sums[at..at + PIECE];
                    // SAFETY: `d` holds 16 u64: two unaligned 512-bit loads and stores.
                    unsafe {
                        // Even and odd coefficients back in order.
                        let (even, odd) = (acc[2 * poly], acc[2 * poly + 1]);
                        let lo = _mm512_permutex2var_epi64(even, interleave_lo, odd);
                        let hi = _mm512_permutex2var_epi64(even, interleave_hi, odd);
                        let (lo, hi) = if carry {
                            (
                                _mm512_add_epi64(lo, _mm512_loadu_si512(d.as_ptr().cast())),
                                _mm512_add_epi64(hi, _mm512_loadu_si512(d[8..].as_ptr().cast())),
                            )
                        } else {
                            (lo, hi)
                        };
                        _mm512_storeu_si512(d.as_mut_ptr().cast(), lo);
                        _mm512_storeu_si512(d[8..].as_mut_ptr().cast(), hi);
                    }
                    if end < stored {
                        reduce_sums(d, p.q);
                    }
                }
            }
            carry = true;
            i = end;
        }
    }
}

/// Asks for `words[from..from + count]` (clipped to the slice) to be brought into L2, where it
/// waits for the multiply instead of the multiply waiting for it.
#[inline(always)]
fn prefetch_l2(words: &[u32], from: usize, count: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let end = from.saturating_add(count).min(words.len());
        let mut at = from;
        while at < end {
            // SAFETY: a prefetch never faults and writes nothing; the address is inside
            // `words` (at < end ≤ len).
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(
                    words.as_ptr().add(at).cast(),
                )
            };
            at += 64 / std::mem::size_of::<u32>();
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (words, from, count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use sift_he::{EvalPlaintext, Poly};

    /// A polynomial over all of `ctx`'s ciphertext moduli with uniformly random Eval-form
    /// coefficients.
    fn random_poly(ctx: &Context, rng: &mut impl Rng) -> Poly {
        let k = ctx.ciphertext_moduli_count();
        let mut p = Poly::zero(ctx, k, Format::Eval);
        for r in 0..k {
            let q = ctx.modulus(r).value;
            for x in p.row_mut(r) {
                *x = rng.gen_range(0..q);
            }
        }
        p
    }

    /// The packed database (with AVX-512 VBMI: unpacked in registers; else unpacked a slab at
    /// a time) and the plain one, at the widest level this CPU has, give the same first dimension, equal to Σ q_i ⊙ pt_i computed
    /// directly, over two calls, two chunks, a partial column group, an absent plaintext and
    /// an all-absent column (no output), with the lazy sums carried every 2 rows or not at all.
    #[test]
    fn packed_and_plain_databases_agree_with_the_definition() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let (k, n) = (ctx.ciphertext_moduli_count(), ctx.n);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        // 7 columns of 3 rows per chunk: groups of 5 and 2 columns.
        let (d0, per_chunk, chunks, calls) = (3usize, 21usize, 2usize, 2usize);
        let absent = |j: usize| j == 7 || (per_chunk + 9..per_chunk + 12).contains(&j);
        let pts: Vec<Option<EvalPlaintext>> = (0..per_chunk * chunks)
            .map(|j| {
                (!absent(j)).then(|| EvalPlaintext {
                    poly: random_poly(&ctx, &mut rng),
                })
            })
            .collect();
        let sels: Vec<Vec<Ciphertext>> = (0..calls)
            .map(|_| {
                (0..d0)
                    .map(|_| {
                        let polys = vec![random_poly(&ctx, &mut rng), random_poly(&ctx, &mut rng)];
                        Ciphertext::from_polys(polys).unwrap()
                    })
                    .collect()
            })
            .collect();
        let mut sel = Selection32::default();
        sel.reset(calls, d0, k, n);
        for (call, cts) in sels.iter().enumerate() {
            for (i, c) in cts.iter().enumerate() {
                sel.put(call, i, c).unwrap();
            }
        }
        let run = |db: &CompactDatabase, chunk: usize, rows: usize| {
            let mut alloc = || Ciphertext::eval_shaped(k, n);
            let chunk = (chunk * per_chunk, per_chunk);
            first_dimension_runs(&ctx, db, &sel, 0..calls, chunk, &mut alloc, rows).unwrap()
        };
        let packed = CompactDatabase::with_packing(&ctx, &pts, (d0, per_chunk), true).unwrap();
        let plain = CompactDatabase::with_packing(&ctx, &pts, (d0, per_chunk), false).unwrap();
        assert!(packed.is_packed() && !plain.is_packed());
        for chunk in 0..chunks {
            let got = run(&packed, chunk, usize::MAX);
            assert_eq!(got, run(&plain, chunk, usize::MAX));
            assert_eq!(got, run(&packed, chunk, 2));
            assert_eq!(got, run(&plain, chunk, 1));
            // The narrower levels run in crates/pir/tests/simd_levels.rs, a process of its own:
            // capping the process-wide level here would race with the tests beside this one.
            for (call, cols) in got.iter().enumerate() {
                assert_eq!(cols.len(), per_chunk / d0);
                for (col, c) in cols.iter().enumerate() {
                    let base = chunk * per_chunk + col * d0;
                    let Some(c) = c else {
                        assert!((base..base + d0).all(absent), "column {col} has plaintexts");
                        continue;
                    };
                    for poly in 0..2 {
                        for r in 0..k {
                            let q = ctx.modulus(r).value as u128;
                            for x in (0..n).step_by(97) {
                                let mut want = 0u128;
                                for (i, sel) in sels[call].iter().enumerate() {
                                    if let Some(pt) = &pts[base + i] {
                                        let s = sel.polys()[poly].row(r)[x] as u128;
                                        want += s * pt.poly.row(r)[x] as u128;
                                    }
                                }
                                assert_eq!(c.polys()[poly].row(r)[x] as u128, want % q);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rows whose plaintexts are all zero in a column group (absent, or present but zero) are
    /// dropped by `compact` and the first dimension is unchanged: over both packings, against
    /// the same database filled without compaction, with a group left with no row at all and
    /// a present all-zero column (a zero ciphertext, not None).
    #[test]
    fn compaction_drops_zero_rows_and_keeps_the_sums() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let (k, n) = (ctx.ciphertext_moduli_count(), ctx.n);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        // One chunk of 12 columns of 4 rows: groups of columns 0..5, 5..10, 10..12.
        let (d0, per_chunk, calls) = (4usize, 48usize, 1usize);
        let at = |col: usize, row: usize| col * d0 + row;
        let pts: Vec<Option<EvalPlaintext>> = (0..per_chunk)
            .map(|j| {
                let (col, row) = (j / d0, j % d0);
                // Group 0: row 1 absent everywhere, row 3 present but zero in column 2 and
                // absent elsewhere. Group 1: only row 2 of column 7. Group 2: column 10
                // present but all zero, column 11 absent.
                let zero = EvalPlaintext {
                    poly: Poly::zero(&ctx, k, Format::Eval),
                };
                match (col, row) {
                    (0..5, 1) | (0..5, 3) if (col, row) != (2, 3) => None,
                    (2, 3) | (10, _) => Some(zero),
                    (5..10, _) if (col, row) != (7, 2) => None,
                    (11, _) => None,
                    _ => Some(EvalPlaintext {
                        poly: random_poly(&ctx, &mut rng),
                    }),
                }
            })
            .collect();
        let mut sel = Selection32::default();
        sel.reset(calls, d0, k, n);
        for i in 0..d0 {
            let c = Ciphertext::from_polys(vec![
                random_poly(&ctx, &mut rng),
                random_poly(&ctx, &mut rng),
            ])
            .unwrap();
            sel.put(0, i, &c).unwrap();
        }
        let run = |db: &CompactDatabase| {
            let mut alloc = || Ciphertext::eval_shaped(k, n);
            first_dimension_compact(&ctx, db, &sel, 0..calls, (0, per_chunk), &mut alloc).unwrap()
        };
        for pack in [false, true] {
            let mut full = CompactDatabase::zeroed(&ctx, per_chunk, (d0, per_chunk), pack).unwrap();
            for (j, pt) in pts.iter().enumerate() {
                if let Some(pt) = pt {
                    assert!(full.set(j, pt));
                }
            }
            let compact = CompactDatabase::with_packing(&ctx, &pts, (d0, per_chunk), pack).unwrap();
            assert_eq!(compact.rows.list, [0, 2, 2], "rows kept per group");
            assert_eq!(compact.rows.start, [0, 2, 3, 3]);
            // 15 of the 48 (row, column) pieces per tile are stored.
            assert_eq!(compact.words.len() * 48, full.words.len() * 15);
            let (got, want) = (run(&compact), run(&full));
            assert_eq!(got, want);
            let cols = &got[0];
            assert!(cols[6].is_none() && cols[11].is_none() && cols[7].is_some());
            let ten = cols[10]
                .as_ref()
                .expect("a present zero column has an output");
            assert!(ten.polys().iter().all(|p| p.data().iter().all(|&x| x == 0)));
            let c0 = cols[0].as_ref().unwrap();
            // A non-zero plaintext for a dropped row is refused; a zero one is accepted.
            let mut compact = compact;
            assert!(!compact.set(at(0, 1), pts[at(0, 0)].as_ref().unwrap()));
            assert!(compact.set(at(0, 1), pts[at(2, 3)].as_ref().unwrap()));
            assert_eq!(run(&compact)[0][0].as_ref(), Some(c0));
        }
    }

    /// Shapes the layout cannot hold are refused: a chunk that is not whole columns, a
    /// database that is not whole chunks.
    #[test]
    fn uneven_shapes_are_refused() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let pts: Vec<Option<EvalPlaintext>> = vec![None; 12];
        assert!(CompactDatabase::new(&ctx, &pts, 5, 12).is_none());
        assert!(CompactDatabase::new(&ctx, &pts, 4, 8).is_none());
        assert!(CompactDatabase::new(&ctx, &pts, 0, 12).is_none());
        let db = CompactDatabase::new(&ctx, &pts, 4, 12).unwrap();
        assert_eq!(db.len(), 12);
    }
}
