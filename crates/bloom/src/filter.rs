//! The filter itself: sizing, membership, and a parallel streaming builder.

use crate::hash::{PrefixHasher, bit_index, hash_pair};
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sizes derived from item count and false-positive tolerance, as Apple's tool computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Number of bits `m`.
    pub bit_count: u32,
    /// Number of hash functions `k`.
    pub hash_count: u32,
    /// `ceil(m / 8)`.
    pub byte_count: usize,
}

/// Apple's sizing: `m = ceil(-n ln p / (ln 2)^2)`, `k = ceil(m / n * ln 2)`, both rounded up.
///
/// Errors when `n == 0`, `p` is not in (0, 1) or `m` does not fit in a `u32`.
pub fn sizing(item_count: u64, fp_rate: f64) -> Result<Sizing> {
    if item_count == 0 {
        return Err(Error::Params("item count must be at least 1".into()));
    }
    if !(fp_rate > 0.0 && fp_rate < 1.0) {
        return Err(Error::Params(format!(
            "false-positive rate must be in (0, 1), got {fp_rate}"
        )));
    }
    let n = item_count as f64;
    let ln2 = std::f64::consts::LN_2;
    let m = (-(n * fp_rate.ln()) / (ln2 * ln2)).ceil();
    if m > f64::from(u32::MAX) {
        return Err(Error::Params(format!(
            "{item_count} items at p={fp_rate} need {m} bits, more than the 32-bit bitCount allows"
        )));
    }
    let bit_count = (m as u32).max(1);
    let k = ((f64::from(bit_count) / n) * ln2).ceil();
    let hash_count = (k as u32).max(1);
    Ok(Sizing {
        bit_count,
        hash_count,
        byte_count: bit_count.div_ceil(8) as usize,
    })
}

/// Theoretical false-positive rate `(1 - e^(-k n / m))^k` of a filter holding `n` items.
pub fn expected_fp_rate(bit_count: u32, hash_count: u32, item_count: u64) -> f64 {
    let k = f64::from(hash_count);
    let fill = 1.0 - (-(k * item_count as f64) / f64::from(bit_count)).exp();
    fill.powf(k)
}

/// Parameters of a filter: what the device needs besides the bit array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Number of bits (`bitCount`).
    pub bit_count: u32,
    /// Number of hashes (`hashCount`).
    pub hash_count: u32,
    /// Seed of MurmurHash3 (`murmurSeed`).
    pub murmur_seed: u32,
}

/// A Bloom filter in Apple's layout: bit `k` is bit `k % 8` (LSB first) of byte `k / 8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomFilter {
    params: Params,
    data: Vec<u8>,
    /// `% bit_count` without a division (derived from `params`).
    fm: FastMod,
}

impl BloomFilter {
    /// An empty filter with the given parameters (errors on zero bits or hashes).
    pub fn new(params: Params) -> Result<Self> {
        check_params(&params)?;
        Ok(Self {
            params,
            data: vec![0; params.bit_count.div_ceil(8) as usize],
            fm: FastMod::new(params.bit_count),
        })
    }

    /// Wraps an existing bit array; its length must be exactly `ceil(bit_count / 8)`.
    pub fn from_data(params: Params, data: Vec<u8>) -> Result<Self> {
        check_params(&params)?;
        let want = params.bit_count.div_ceil(8) as usize;
        if data.len() != want {
            return Err(Error::Params(format!(
                "bit array has {} bytes, bitCount {} needs {want}",
                data.len(),
                params.bit_count
            )));
        }
        Ok(Self {
            params,
            data,
            fm: FastMod::new(params.bit_count),
        })
    }

    /// The filter's parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// The raw bit array (what `NEURLFilterPrefilter` receives as data).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Consumes the filter and returns the bit array.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Adds the key (its exact bytes).
    pub fn insert(&mut self, key: &[u8]) {
        let (f, m) = hash_pair(key, self.params.murmur_seed);
        for i in 0..self.params.hash_count {
            let b = bit_index(f, m, i, self.params.bit_count) as usize;
            self.data[b / 8] |= 1 << (b % 8);
        }
    }

    /// True when the key may be in the set; false means certainly not.
    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        let (f, m) = hash_pair(key, self.params.murmur_seed);
        self.contains_hashes(f, m)
    }

    /// [`Self::contains`] for a key given by its hashes (`fnv1a32(key)`,
    /// `murmur3_x86_32(key, murmur_seed)`): each hash computed once, bits tested in place,
    /// stopping at the first clear bit.
    #[inline]
    pub fn contains_hashes(&self, fnv: u32, murmur: u32) -> bool {
        let mut x = fnv;
        for _ in 0..self.params.hash_count {
            let b = self.fm.rem(x) as usize;
            if self.data[b / 8] & (1 << (b % 8)) == 0 {
                return false;
            }
            x = x.wrapping_add(murmur);
        }
        true
    }

    /// Tests the keys `&s[..len]` for each `len` in `lens`, calling `f(len, hit)` in order;
    /// hashes `s` once when `lens` is increasing (as `SubUrlWalker::for_each_group` in
    /// `sift-urlkeys` hands out sub-URLs). A length past the end of `s` is reported as a miss.
    /// Returns whether any key hit.
    pub fn contains_prefixes(
        &self,
        s: &[u8],
        lens: &[usize],
        mut f: impl FnMut(usize, bool),
    ) -> bool {
        let mut h = PrefixHasher::new(s, self.params.murmur_seed);
        let mut any = false;
        for &len in lens {
            let hit = h.pair(len).is_some_and(|(a, b)| self.contains_hashes(a, b));
            any |= hit;
            f(len, hit);
        }
        any
    }

    /// Number of set bits (for fill statistics).
    pub fn count_ones(&self) -> u64 {
        self.data.iter().map(|b| u64::from(b.count_ones())).sum()
    }
}

fn check_params(p: &Params) -> Result<()> {
    if p.bit_count == 0 || p.hash_count == 0 {
        return Err(Error::Params(format!(
            "bitCount and hashCount must be positive (got {} and {})",
            p.bit_count, p.hash_count
        )));
    }
    Ok(())
}

/// Keys buffered per batch by [`Builder::extend`].
const CHUNK: usize = 1 << 18;
/// Keys per parallel task inside a batch.
const SUB_CHUNK: usize = 1 << 15;

/// Exact `a % d` for 32-bit `a` and `d` without a division (Lemire, Kaser, Kurz 2019,
/// "Faster remainder by direct computation"): `M = floor(2^64 / d) + 1`,
/// `a % d = ((M * a mod 2^64) * d) >> 64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FastMod {
    m: u64,
    d: u32,
}

impl FastMod {
    fn new(d: u32) -> Self {
        Self {
            m: (u64::MAX / u64::from(d)).wrapping_add(1),
            d,
        }
    }

    #[inline]
    fn rem(self, a: u32) -> u32 {
        let low = self.m.wrapping_mul(u64::from(a));
        ((u128::from(low) * u128::from(self.d)) >> 64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::FastMod;

    #[test]
    fn fastmod_matches_remainder() {
        let ds = [
            1u32,
            2,
            3,
            7,
            144,
            1000,
            14_377_588,
            143_775_876,
            u32::MAX - 1,
            u32::MAX,
        ];
        let mut a = 0x1234_5678u32;
        for &d in &ds {
            let f = FastMod::new(d);
            for x in [
                0,
                1,
                d.wrapping_sub(1),
                d,
                d.wrapping_add(1),
                u32::MAX,
                u32::MAX - 1,
            ] {
                assert_eq!(f.rem(x), x % d, "{x} % {d}");
            }
            for _ in 0..100_000 {
                a ^= a << 13;
                a ^= a >> 17;
                a ^= a << 5;
                assert_eq!(f.rem(a), a % d, "{a} % {d}");
            }
        }
    }
}

/// Parallel builder: keys arrive in batches (from any iterator), are hashed on all threads and
/// their bits set in a shared atomic array, so no key list is ever held by the builder.
#[derive(Debug)]
pub struct Builder {
    params: Params,
    words: Vec<AtomicU64>,
    inserted: u64,
}

impl Builder {
    /// An empty builder with the given parameters.
    pub fn new(params: Params) -> Result<Self> {
        check_params(&params)?;
        let words = (0..params.bit_count.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Self {
            params,
            words,
            inserted: 0,
        })
    }

    /// Inserts a batch of keys in parallel. Each thread turns a slice of keys into bit
    /// indices, counting-sorts them by their top bits (at most 4096 buckets) and sets them in
    /// that order, so the bit array is walked almost sequentially instead of at random: on
    /// filters larger than the caches this is what makes building fast.
    pub fn insert_batch<K: AsRef<[u8]> + Sync>(&mut self, keys: &[K]) {
        let p = self.params;
        let words = &self.words;
        let fm = FastMod::new(p.bit_count);
        let bits_needed = 32 - (p.bit_count - 1).leading_zeros();
        let shift = bits_needed.saturating_sub(12);
        let buckets = ((p.bit_count - 1) >> shift) as usize + 1;
        keys.par_chunks(SUB_CHUNK).for_each(|chunk| {
            let mut idx = Vec::with_capacity(chunk.len() * p.hash_count as usize);
            for k in chunk {
                let (f, m) = hash_pair(k.as_ref(), p.murmur_seed);
                for i in 0..p.hash_count {
                    idx.push(fm.rem(f.wrapping_add(i.wrapping_mul(m))));
                }
            }
            let mut start = vec![0usize; buckets + 1];
            for &x in &idx {
                start[(x >> shift) as usize + 1] += 1;
            }
            for b in 1..=buckets {
                start[b] += start[b - 1];
            }
            let mut sorted = vec![0u32; idx.len()];
            for &x in &idx {
                let b = (x >> shift) as usize;
                sorted[start[b]] = x;
                start[b] += 1;
            }
            for &x in &sorted {
                words[(x / 64) as usize].fetch_or(1 << (x % 64), Ordering::Relaxed);
            }
        });
        self.inserted += keys.len() as u64;
    }

    /// Inserts every key of the iterator, batching them so hashing runs in parallel; only one
    /// batch of keys is buffered at a time.
    pub fn extend<K, I>(&mut self, keys: I)
    where
        K: AsRef<[u8]> + Send + Sync,
        I: IntoIterator<Item = K>,
    {
        let mut batch = Vec::with_capacity(CHUNK);
        for k in keys {
            batch.push(k);
            if batch.len() == CHUNK {
                self.insert_batch(&batch);
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.insert_batch(&batch);
        }
    }

    /// Number of keys inserted so far (duplicates counted).
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Finishes the filter: 64-bit words serialised little-endian give exactly the LSB-first
    /// byte layout (bit `k` of word `w` is bit `k % 8` of byte `8w + k / 8`).
    pub fn finish(self) -> BloomFilter {
        let byte_count = self.params.bit_count.div_ceil(8) as usize;
        let mut data = Vec::with_capacity(self.words.len() * 8);
        for w in self.words {
            data.extend_from_slice(&w.into_inner().to_le_bytes());
        }
        data.truncate(byte_count);
        BloomFilter {
            params: self.params,
            data,
            fm: FastMod::new(self.params.bit_count),
        }
    }
}
