//! The two 32-bit hash functions of Apple's prefilter and the double-hashing index rule.

/// FNV-1a 32-bit offset basis.
const FNV_OFFSET: u32 = 0x811c_9dc5;
/// FNV 32-bit prime.
const FNV_PRIME: u32 = 0x0100_0193;

/// Textbook 32-bit FNV-1a (xor the byte, then multiply), the base hash of the prefilter.
///
/// Pinned by the vectors of Apple's `SwiftBloomFilter` tests (`"a"` → `0xe40c292c`).
#[inline]
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// 32-bit FNV-1 (multiply, then xor). Not used by sift's prefilter; kept to show in tests that
/// Apple's known-answer filter is NOT reproduced with this order (see the forum confusion).
#[inline]
pub fn fnv1_32(data: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    for &b in data {
        h = h.wrapping_mul(FNV_PRIME);
        h ^= u32::from(b);
    }
    h
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// MurmurHash3 x86_32 (Austin Appleby) with `seed`, the step hash of the prefilter.
#[inline]
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        h = murmur_block(h, c);
    }
    murmur_finish(h, chunks.remainder(), data.len())
}

/// Mixes one 4-byte block (little-endian) into the MurmurHash3 state.
#[inline(always)]
fn murmur_block(h: u32, c: &[u8]) -> u32 {
    let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// MurmurHash3 tail (0 to 3 bytes), length and final avalanche.
#[inline(always)]
fn murmur_finish(mut h: u32, tail: &[u8], len: usize) -> u32 {
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k |= u32::from(b) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    // The length is mixed in modulo 2^32, as in the reference implementation.
    h ^= len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hashes prefixes of one byte string with both prefilter hashes, resuming where the previous
/// prefix stopped: asking for lengths in increasing order costs one pass over the string
/// instead of one pass per prefix. FNV-1a state is kept per byte, MurmurHash3 state per 4-byte
/// block (its tail and length are mixed in per prefix).
#[derive(Debug, Clone)]
pub struct PrefixHasher<'a> {
    data: &'a [u8],
    seed: u32,
    fnv: u32,
    fnv_pos: usize,
    murmur: u32,
    murmur_pos: usize,
}

impl<'a> PrefixHasher<'a> {
    /// A hasher over `data` with MurmurHash3 seed `seed`.
    pub fn new(data: &'a [u8], seed: u32) -> Self {
        Self {
            data,
            seed,
            fnv: FNV_OFFSET,
            fnv_pos: 0,
            murmur: seed,
            murmur_pos: 0,
        }
    }

    /// `hash_pair(&data[..len], seed)`, or `None` when `len` exceeds the data. Cheapest when
    /// lengths come in increasing order; a shorter length than the last restarts from zero.
    #[inline]
    pub fn pair(&mut self, len: usize) -> Option<(u32, u32)> {
        let data = self.data.get(..len)?;
        if len < self.fnv_pos {
            self.fnv = FNV_OFFSET;
            self.fnv_pos = 0;
            self.murmur = self.seed;
            self.murmur_pos = 0;
        }
        let mut f = self.fnv;
        for &b in &data[self.fnv_pos..] {
            f = (f ^ u32::from(b)).wrapping_mul(FNV_PRIME);
        }
        self.fnv = f;
        self.fnv_pos = len;
        let mut h = self.murmur;
        let mut chunks = data[self.murmur_pos..].chunks_exact(4);
        for c in &mut chunks {
            h = murmur_block(h, c);
        }
        let tail = chunks.remainder();
        self.murmur = h;
        self.murmur_pos = len - tail.len();
        Some((f, murmur_finish(h, tail, len)))
    }
}

/// The (base, step) pair for one key: FNV-1a and seeded MurmurHash3.
#[inline]
pub fn hash_pair(key: &[u8], seed: u32) -> (u32, u32) {
    (fnv1a32(key), murmur3_x86_32(key, seed))
}

/// Bit index of hash number `i`: `((fnv + i * murmur) mod 2^32) mod bit_count`.
#[inline]
pub fn bit_index(fnv: u32, murmur: u32, i: u32, bit_count: u32) -> u32 {
    fnv.wrapping_add(i.wrapping_mul(murmur)) % bit_count
}
