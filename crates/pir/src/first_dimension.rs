//! First dimension of MulPir: for each database column j and PIR call, Σ_i q_i ⊙ pt_ij over the
//! d₀ expanded selection ciphertexts q_i, on a database kept as 32-bit words.
//!
//! The products are 32×32→64-bit, summed lazily in u64 and reduced once per column. The loop is
//! tiled by blocks of coefficients: a block's accumulators (every call, both polynomials) stay
//! in L1 while the column's plaintext blocks stream past, and calls that select from the same
//! database read each of its plaintext blocks once between them. (Keyword PIR gives each cuckoo
//! table its own database, so there every call streams its own table once.)

use sift_he::{Ciphertext, Context, Format, bfv, pack28};

use crate::PirError;

/// Coefficients per tile: 2 polys × calls × 256 u64 accumulators (8 KB for two calls) stay in
/// L1 beside the block of each selection ciphertext.
const BLOCK: usize = 256;

/// Eval plaintexts stored as u32 words (half the memory traffic of u64) for moduli below 2^30,
/// so the first dimension runs as 32×32→64-bit vector products summed lazily in u64; when
/// every modulus is below 2^28, in 28 bits ([`sift_he::pack28`]): the first dimension streams
/// the database from DRAM once per query, and with AVX-512 VBMI 12.5% fewer bytes cost less
/// than the unpacking (0.1–0.5 ms of a 4.2 ms pass in same-run comparisons).
///
/// Layout: tile-major, `[tile][present plaintext][stored tile]` (a tile is BLOCK consecutive
/// words of the k·n rows), so the tiled first dimension reads the database front to back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactDatabase {
    /// Rows per plaintext (ciphertext moduli).
    k: usize,
    n: usize,
    /// Words per tile (divides n).
    block: usize,
    /// Whether tiles are stored in 28 bits.
    packed: bool,
    /// u32 words per stored tile: `block`, or 7/8 of it packed.
    tile_len: usize,
    /// Number of present (non-zero) plaintexts.
    present: usize,
    /// The present plaintexts' words, tile-major.
    words: Vec<u32>,
    /// Per plaintext: its slot among the present ones, None for an all-zero plaintext.
    offsets: Vec<Option<usize>>,
}

impl CompactDatabase {
    /// The compact copy of `plaintexts`, or None when a ciphertext modulus is 2^30 or more or
    /// a plaintext is not over the ciphertext moduli. Packed in 28 bits where the moduli allow
    /// and the CPU unpacks in registers (AVX-512 VBMI, [`pack28::vbmi`]); elsewhere unpacking
    /// would cost more than the smaller stream saves.
    pub fn new(
        ctx: &Context,
        plaintexts: &[Option<sift_he::EvalPlaintext>],
    ) -> Option<CompactDatabase> {
        Self::with_packing(ctx, plaintexts, pack28::vbmi())
    }

    /// [`CompactDatabase::new`], packing into 28 bits only when `pack` (and the moduli allow).
    pub fn with_packing(
        ctx: &Context,
        plaintexts: &[Option<sift_he::EvalPlaintext>],
        pack: bool,
    ) -> Option<CompactDatabase> {
        let k = ctx.ciphertext_moduli_count();
        let n = ctx.n;
        if (0..k).any(|i| ctx.modulus(i).value >= (1 << 30)) {
            return None;
        }
        let block = BLOCK.min(n);
        let packed = pack
            && block.is_multiple_of(pack28::GROUP)
            && (0..k).all(|i| ctx.modulus(i).value < (1 << 28));
        let tile_len = if packed {
            block / pack28::GROUP * pack28::GROUP_WORDS
        } else {
            block
        };
        let kn = k * n;
        let present = plaintexts.iter().flatten().count();
        let mut words = vec![0u32; present * (kn / block) * tile_len];
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
                        let at = (tile * present + slot) * tile_len;
                        let dst = &mut words[at..at + tile_len];
                        if packed {
                            pack28::pack(src, dst);
                        } else {
                            for (d, &x) in dst.iter_mut().zip(src) {
                                *d = x as u32;
                            }
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
            packed,
            tile_len,
            present,
            words,
            offsets,
        })
    }

    /// Whether the words are stored in 28 bits.
    pub fn is_packed(&self) -> bool {
        self.packed
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
        (tile * self.present + slot) * self.tile_len
    }

    /// Tile `tile` of the plaintext in `slot` as stored (packed or not).
    fn tile(&self, tile: usize, slot: usize) -> &[u32] {
        let at = self.at(tile, slot);
        &self.words[at..at + self.tile_len]
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

/// `dst[j] += sel[j]·pt[j]` (32×32→64-bit) over a block; a full [`BLOCK`] runs as a loop of
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

/// `acc[j·BLOCK + c] += sels[j][c]·pt[c]` for every selection row j, with `packed` one tile of
/// the database in 28 bits: sixteen words at a time are unpacked in a register
/// ([`pack28::x86::unpack16`]) and widened once for every row.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn mac_packed_vbmi(
    c: pack28::x86::Unpack16,
    acc: &mut [u64],
    sels: &[&[u32]],
    packed: &[u32],
) {
    use core::arch::x86_64::*;
    assert!(
        packed.len() == BLOCK / pack28::GROUP * pack28::GROUP_WORDS
            && acc.len() >= sels.len() * BLOCK
            && sels.iter().all(|s| s.len() == BLOCK),
        "packed multiply shapes"
    );
    for g in 0..BLOCK / 16 {
        let src: &[u32; 14] = packed[14 * g..14 * g + 14].try_into().expect("14 words");
        // SAFETY: the caller guarantees the features.
        let v = unsafe { pack28::x86::unpack16(c, src) };
        let lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v));
        let hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(v));
        for (j, s) in sels.iter().enumerate() {
            let s = &s[16 * g..16 * g + 16];
            let d = &mut acc[j * BLOCK + 16 * g..j * BLOCK + 16 * g + 16];
            // SAFETY: `s` holds 16 u32 (two 256-bit loads), `d` 16 u64 (two 512-bit loads
            // and stores), all unaligned accesses inside the slices.
            unsafe {
                let s_lo = _mm512_cvtepu32_epi64(_mm256_loadu_si256(s.as_ptr().cast()));
                let s_hi = _mm512_cvtepu32_epi64(_mm256_loadu_si256(s[8..].as_ptr().cast()));
                let d_lo = _mm512_loadu_si512(d.as_ptr().cast());
                let d_hi = _mm512_loadu_si512(d[8..].as_ptr().cast());
                let d_lo = _mm512_add_epi64(d_lo, _mm512_mul_epu32(s_lo, lo));
                let d_hi = _mm512_add_epi64(d_hi, _mm512_mul_epu32(s_hi, hi));
                _mm512_storeu_si512(d.as_mut_ptr().cast(), d_lo);
                _mm512_storeu_si512(d[8..].as_mut_ptr().cast(), d_hi);
            }
        }
    }
}

/// Stored tiles of the database stream requested ahead of the one being multiplied (64 KB
/// unpacked).
const PREFETCH_TILES: usize = 64;

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
    let mut unpacked = vec![0u32; b];
    // Packed tiles are unpacked in registers inside the multiply where the CPU has AVX-512
    // VBMI, else into `unpacked` first.
    #[cfg(target_arch = "x86_64")]
    let fused = (a.db.packed && b == BLOCK && pack28::vbmi()).then(|| {
        // SAFETY: `vbmi()` is true only when AVX-512 F/BW and VBMI are present.
        unsafe { pack28::x86::Unpack16::new() }
    });
    let mut sels: Vec<&[u32]> = Vec::with_capacity(calls * 2);
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
                let stored = a.db.tile(tile, off);
                let ahead = PREFETCH_TILES * a.db.tile_len;
                prefetch_l2(&a.db.words, a.db.at(tile, off) + ahead, a.db.tile_len);
                // The next tile's selections (both polys of row i, 2·b words per call), a
                // column's share at a time, so they arrive spread over this tile's work.
                let share = (2 * b).div_ceil(cols);
                for call in a.calls.clone() {
                    let next = a.sel.at(tile + 1, call, i, 0) + col * share;
                    prefetch_l2(&a.sel.words, next, share);
                }
                sels.clear();
                for call in a.calls.clone() {
                    sels.extend((0..2).map(|poly| a.sel.tile(tile, call, i, poly)));
                }
                #[cfg(target_arch = "x86_64")]
                if let Some(c) = fused {
                    // SAFETY: `fused` is Some only when AVX-512 F/BW and VBMI are present;
                    // the function checks every length it relies on.
                    unsafe { mac_packed_vbmi(c, &mut acc, &sels, stored) };
                    lazy += 1;
                    continue;
                }
                let pt = if a.db.packed {
                    pack28::unpack(stored, &mut unpacked[..b]);
                    &unpacked[..b]
                } else {
                    stored
                };
                for (dst, sel) in acc.chunks_exact_mut(b).zip(&sels) {
                    mac_block(dst, sel, pt);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use sift_he::{EvalPlaintext, Poly};

    /// The packed and the plain database give the same first dimension, equal to Σ q_i ⊙ pt_i
    /// computed directly, over two calls, several columns, a partial last column and an
    /// absent plaintext.
    #[test]
    fn packed_and_plain_databases_agree_with_the_definition() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
        let (k, n) = (ctx.ciphertext_moduli_count(), ctx.n);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let random_poly = |rng: &mut rand::rngs::StdRng| {
            let mut p = Poly::zero(&ctx, k, Format::Eval);
            for r in 0..k {
                let q = ctx.modulus(r).value;
                for x in p.row_mut(r) {
                    *x = rng.gen_range(0..q);
                }
            }
            p
        };
        let (d0, per_chunk, calls) = (5usize, 13usize, 2usize);
        let pts: Vec<Option<EvalPlaintext>> = (0..per_chunk)
            .map(|j| {
                (j != 7).then(|| EvalPlaintext {
                    poly: random_poly(&mut rng),
                })
            })
            .collect();
        let sels: Vec<Vec<Ciphertext>> = (0..calls)
            .map(|_| {
                (0..d0)
                    .map(|_| Ciphertext {
                        polys: vec![random_poly(&mut rng), random_poly(&mut rng)],
                        correction_factor: 1,
                        seed: None,
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
        let run = |db: &CompactDatabase| {
            first_dimension_compact(&ctx, db, &sel, 0..calls, (0, per_chunk), &mut || {
                Ciphertext {
                    polys: vec![Poly::zero(&ctx, k, Format::Eval); 2],
                    correction_factor: 1,
                    seed: None,
                }
            })
            .unwrap()
        };
        let packed = CompactDatabase::with_packing(&ctx, &pts, true).unwrap();
        let plain = CompactDatabase::with_packing(&ctx, &pts, false).unwrap();
        assert!(packed.is_packed() && !plain.is_packed());
        let got = run(&packed);
        assert_eq!(got, run(&plain));
        for (call, cols) in got.iter().enumerate() {
            assert_eq!(cols.len(), per_chunk.div_ceil(d0));
            for (col, c) in cols.iter().enumerate() {
                let c = c.as_ref().expect("every column has a plaintext");
                for poly in 0..2 {
                    for r in 0..k {
                        let q = ctx.modulus(r).value as u128;
                        for x in (0..n).step_by(97) {
                            let mut want = 0u128;
                            for (i, sel) in sels[call].iter().enumerate() {
                                if let Some(Some(pt)) = pts.get(col * d0 + i) {
                                    let s = sel.polys[poly].row(r)[x] as u128;
                                    want += s * pt.poly.row(r)[x] as u128;
                                }
                            }
                            assert_eq!(c.polys[poly].row(r)[x] as u128, want % q);
                        }
                    }
                }
            }
        }
    }
}
