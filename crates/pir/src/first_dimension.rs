//! First dimension of MulPir: for each database column j and PIR call, Σ_i q_i ⊙ pt_ij over the
//! d₀ expanded selection ciphertexts q_i, on a database kept as 32-bit words.
//!
//! The products are 32×32→64-bit, summed lazily in u64 and reduced once per column. The loop is
//! tiled by blocks of coefficients: a block's accumulators (every call, both polynomials) stay
//! in L1 while the column's plaintext blocks stream past, and calls that select from the same
//! database read each of its plaintext blocks once between them. (Keyword PIR gives each cuckoo
//! table its own database, so there every call streams its own table once.)

use sift_he::{Ciphertext, Context, Format, bfv};

use crate::PirError;

/// Coefficients per tile: 2 polys × calls × 256 u64 accumulators (8 KB for two calls) stay in
/// L1 beside the block of each selection ciphertext.
const BLOCK: usize = 256;

/// Eval plaintexts stored as u32 words (half the memory traffic of u64) for moduli below 2^30,
/// so the first dimension runs as 32×32→64-bit vector products summed lazily in u64.
///
/// Layout: tile-major, `[tile][present plaintext][BLOCK words]` (a tile is BLOCK consecutive
/// words of the k·n rows), so the tiled first dimension reads the database front to back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactDatabase {
    /// Rows per plaintext (ciphertext moduli).
    k: usize,
    n: usize,
    /// Words per tile (divides n).
    block: usize,
    /// Number of present (non-zero) plaintexts.
    present: usize,
    /// The present plaintexts' words, tile-major.
    words: Vec<u32>,
    /// Per plaintext: its slot among the present ones, None for an all-zero plaintext.
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
        let block = BLOCK.min(n);
        let kn = k * n;
        let present = plaintexts.iter().flatten().count();
        let mut words = vec![0u32; present * kn];
        let mut offsets = Vec::with_capacity(plaintexts.len());
        let mut slot = 0;
        for pt in plaintexts {
            match pt {
                None => offsets.push(None),
                Some(pt) => {
                    if pt.poly.basis.iter().copied().ne(0..k)
                        || pt.poly.format != Format::Eval
                        || pt.poly.data.len() != kn
                    {
                        return None;
                    }
                    for (tile, src) in pt.poly.data.chunks_exact(block).enumerate() {
                        let at = (tile * present + slot) * block;
                        for (d, &x) in words[at..at + block].iter_mut().zip(src) {
                            *d = x as u32;
                        }
                    }
                    offsets.push(Some(slot));
                    slot += 1;
                }
            }
        }
        Some(CompactDatabase {
            k,
            n,
            block,
            present,
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

    /// Where tile `tile` of the plaintext in `slot` starts in `words`.
    fn at(&self, tile: usize, slot: usize) -> usize {
        (tile * self.present + slot) * self.block
    }

    /// Tile `tile` of the plaintext in `slot`.
    fn tile(&self, tile: usize, slot: usize) -> &[u32] {
        let at = self.at(tile, slot);
        &self.words[at..at + self.block]
    }
}

/// Selection ciphertexts of the first dimension as 32-bit words (moduli below 2^30), laid out
/// tile-major like [`CompactDatabase`]: `[tile][call][i][poly][block words]`.
#[derive(Debug, Default)]
pub struct Selection32 {
    words: Vec<u32>,
    calls: usize,
    d0: usize,
    kn: usize,
    block: usize,
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
            return Err(PirError::Corrupted("selection index".into()));
        }
        if c.polys.len() != 2
            || c.format() != Format::Eval
            || c.polys.iter().any(|p| p.data.len() != self.kn)
        {
            return Err(PirError::Corrupted("selection ciphertext shape".into()));
        }
        let (calls, d0, block) = (self.calls, self.d0, self.block);
        // Block `tile` of poly p goes to `stride`·tile + `offset`(p).
        let stride = calls * d0 * 2 * block;
        let offset = |poly: usize| ((call * d0 + i) * 2 + poly) * block;
        for (poly, p) in c.polys.iter().enumerate() {
            // Written once here and read only after the whole expansion: streamed past the
            // caches, which the expansion needs.
            sift_he::stream::scatter_narrow(
                &mut self.words[offset(poly)..],
                &p.data,
                block,
                stride,
            );
        }
        Ok(())
    }

    /// Where block `tile` of poly `poly` of selection i of `call` starts in `words`.
    fn at(&self, tile: usize, call: usize, i: usize, poly: usize) -> usize {
        (((tile * self.calls + call) * self.d0 + i) * 2 + poly) * self.block
    }

    fn tile(&self, tile: usize, call: usize, i: usize, poly: usize) -> &[u32] {
        let at = self.at(tile, call, i, poly);
        &self.words[at..at + self.block]
    }
}

/// The first dimension of every call over one chunk of a compact database: for each column
/// (plaintexts `first + col·d₀ ..`, `per_chunk` in all) and each call, Σ_i q_i ⊙ pt_i as an Eval
/// ciphertext over the k moduli, or None where the whole column is zero. Result `[call][col]`.
///
/// `alloc` supplies each output ciphertext already shaped as 2 Eval polys over the k moduli
/// (its words are all overwritten), so a server can hand in reused buffers.
pub fn first_dimension_compact(
    ctx: &Context,
    db: &CompactDatabase,
    sel: &Selection32,
    calls: std::ops::Range<usize>,
    (first, per_chunk): (usize, usize),
    alloc: &mut dyn FnMut() -> Ciphertext,
) -> Result<Vec<Vec<Option<Ciphertext>>>, PirError> {
    if calls.end > sel.calls {
        return Err(PirError::Corrupted("selection calls".into()));
    }
    let call_range = calls.clone();
    let (k, n, d0, calls) = (db.k, db.n, sel.d0, calls.len());
    let kn = k * n;
    if sel.kn != kn || sel.block != db.block || d0 == 0 || first + per_chunk > db.offsets.len() {
        return Err(PirError::Corrupted("first dimension shape".into()));
    }
    let cols = per_chunk.div_ceil(d0);
    let block = db.block;
    let qmax = (0..k).map(|i| ctx.modulus(i).value).max().unwrap_or(2);
    // Products are below (q−1)²; this many fit a u64 sum.
    let max_lazy = (u64::MAX / ((qmax - 1) * (qmax - 1)).max(1)).max(1) as usize;
    let column = |col: usize| {
        let count = d0.min(per_chunk - col * d0);
        (first + col * d0..first + col * d0 + count)
            .map(|idx| db.offsets[idx])
            .collect::<Vec<_>>()
    };
    let columns: Vec<Vec<Option<usize>>> = (0..cols).map(column).collect();
    // [call][col] → the column's ciphertext (only for columns with a plaintext).
    let mut out: Vec<Option<Ciphertext>> = Vec::with_capacity(calls * cols);
    for idx in 0..calls * cols {
        if !columns[idx % cols].iter().any(Option::is_some) {
            out.push(None);
            continue;
        }
        let c = alloc();
        if c.polys.len() != 2
            || c.polys.iter().any(|p| {
                p.data.len() != kn || p.format != Format::Eval || p.basis.iter().copied().ne(0..k)
            })
        {
            return Err(PirError::Corrupted("first dimension output shape".into()));
        }
        out.push(Some(c));
    }
    let moduli: Vec<u32> = (0..k).map(|r| ctx.modulus(r).value as u32).collect();
    kernel(
        &KernelArgs {
            db,
            sel,
            calls: call_range,
            columns: &columns,
            moduli: &moduli,
            n,
            block,
            max_lazy,
        },
        &mut out,
    );
    let mut result: Vec<Vec<Option<Ciphertext>>> =
        (0..calls).map(|_| Vec::with_capacity(cols)).collect();
    for (idx, c) in out.into_iter().enumerate() {
        result[idx / cols].push(c);
    }
    Ok(result)
}

struct KernelArgs<'a> {
    db: &'a CompactDatabase,
    sel: &'a Selection32,
    /// The calls answered, as indices into `sel`; `out` holds them from 0.
    calls: std::ops::Range<usize>,
    columns: &'a [Vec<Option<usize>>],
    moduli: &'a [u32],
    n: usize,
    block: usize,
    max_lazy: usize,
}

/// Runs [`kernel_body`] built for the widest instruction set available.
fn kernel(a: &KernelArgs, out: &mut [Option<Ciphertext>]) {
    sift_he::simd_dispatch!(kernel_body, (a: &KernelArgs, out: &mut [Option<Ciphertext>]))
}

/// dst[j] += sel[j]·pt[j] (32×32→64-bit) over a block; a full [`BLOCK`] runs as a loop of
/// constant length, which the compiler unrolls without bounds checks.
#[inline(always)]
fn mac_block(dst: &mut [u64], sel: &[u32], pt: &[u32]) {
    #[inline(always)]
    fn mac<'a>(
        dst: impl Iterator<Item = &'a mut u64>,
        sel: impl Iterator<Item = &'a u32>,
        pt: impl Iterator<Item = &'a u32>,
    ) {
        for ((d, &x), &y) in dst.zip(sel).zip(pt) {
            *d += x as u64 * y as u64;
        }
    }
    if dst.len() == BLOCK && sel.len() == BLOCK && pt.len() == BLOCK {
        let d: &mut [u64; BLOCK] = dst.try_into().expect("length checked");
        let s: &[u32; BLOCK] = sel.try_into().expect("length checked");
        let p: &[u32; BLOCK] = pt.try_into().expect("length checked");
        mac(d.iter_mut(), s.iter(), p.iter());
    } else {
        mac(dst.iter_mut(), sel.iter(), pt.iter());
    }
}

/// Words of the database stream requested ahead of the block being multiplied (64 KB).
const PREFETCH_AHEAD: usize = BLOCK * 64;

/// Asks for `words[from..from + count]` (clipped to the slice) to be brought into L2, where it
/// waits for the multiply instead of the multiply waiting for it: the database and the
/// selections are read from DRAM, which the hardware prefetcher alone does not keep ahead of.
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

/// The tiled loop: per block of coefficients (inside one row), per column, the lazy u64 sums of
/// every call and both polynomials, then one reduction into `out[call·cols + col]`.
#[inline(always)]
fn kernel_body(a: &KernelArgs, out: &mut [Option<Ciphertext>]) {
    let (calls, cols, b) = (a.calls.len(), a.columns.len(), a.block);
    let kn = a.sel.kn;
    let mut acc = vec![0u64; calls * 2 * b];
    for tile in 0..kn / b {
        let start = tile * b;
        let q = a.moduli[start / a.n];
        for (col, offsets) in a.columns.iter().enumerate() {
            if out[col].is_none() {
                continue;
            }
            acc.fill(0);
            let mut lazy = 0;
            for (i, off) in offsets.iter().enumerate() {
                let Some(off) = *off else { continue };
                if lazy == a.max_lazy {
                    for x in acc.iter_mut() {
                        *x %= q as u64;
                    }
                    lazy = 1;
                }
                let pt = a.db.tile(tile, off);
                prefetch_l2(&a.db.words, a.db.at(tile, off) + PREFETCH_AHEAD, b);
                // The next tile's selections (both polys of row i, 2·b words per call), a
                // column's share at a time, so they arrive spread over this tile's work.
                let share = (2 * b).div_ceil(cols);
                for call in a.calls.clone() {
                    let next = a.sel.at(tile + 1, call, i, 0) + col * share;
                    prefetch_l2(&a.sel.words, next, share);
                }
                for call in 0..calls {
                    for poly in 0..2 {
                        let sel = a.sel.tile(tile, a.calls.start + call, i, poly);
                        let dst = &mut acc[(call * 2 + poly) * b..(call * 2 + poly + 1) * b];
                        mac_block(dst, sel, pt);
                    }
                }
                lazy += 1;
            }
            for call in 0..calls {
                let Some(ct) = out[call * cols + col].as_mut() else {
                    continue;
                };
                for (poly, p) in ct.polys.iter_mut().enumerate() {
                    let src = &acc[(call * 2 + poly) * b..(call * 2 + poly + 1) * b];
                    bfv::reduce_u64_rows32(q, &mut p.data[start..start + b], src);
                }
            }
        }
    }
}
