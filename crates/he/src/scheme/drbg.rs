//! NIST SP 800-90A CTR_DRBG (AES-128, no derivation function) with Apple's 4096-byte buffering
//! (`NistAes128Ctr = BufferedRng<NistCtrDrbg>`): expands the 32-byte seeds of `a` polynomials.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

/// Seed length in bytes (key 16 + block 16).
pub const SEED_LEN: usize = 32;
const BUFFER_LEN: usize = 4096;

/// Unbuffered CTR_DRBG state, as Apple's `NistCtrDrbg`.
#[derive(Clone)]
pub struct NistCtrDrbg {
    cipher: Aes128,
    v: u128,
}

impl NistCtrDrbg {
    /// Instantiates with `entropy` as seed material: K = 0, V = 0, then Update(entropy).
    pub fn new(entropy: &[u8; SEED_LEN]) -> Self {
        let mut d = NistCtrDrbg {
            cipher: Aes128::new(&GenericArray::from([0u8; 16])),
            v: 0,
        };
        d.update(entropy);
        d
    }

    /// AES(V + 1), AES(V + 2), … into `out` (the last block truncated), advancing V. Counter
    /// blocks go to the cipher a batch at a time, so AES-NI works on several blocks in
    /// parallel instead of waiting out each block's rounds (a 128 KB query seed: ~10× faster).
    fn keystream(&self, v: &mut u128, out: &mut [u8]) {
        const BATCH: usize = 64;
        let mut blocks = [GenericArray::from([0u8; 16]); BATCH];
        for chunk in out.chunks_mut(16 * BATCH) {
            let count = chunk.len().div_ceil(16);
            for b in &mut blocks[..count] {
                *v = v.wrapping_add(1);
                *b = GenericArray::from(v.to_be_bytes());
            }
            self.cipher.encrypt_blocks(&mut blocks[..count]);
            for (dst, b) in chunk.chunks_mut(16).zip(&blocks) {
                dst.copy_from_slice(&b[..dst.len()]);
            }
        }
    }

    fn update(&mut self, provided: &[u8; SEED_LEN]) {
        let mut temp = [0u8; SEED_LEN];
        let mut v = self.v;
        self.keystream(&mut v, &mut temp);
        for (t, p) in temp.iter_mut().zip(provided) {
            *t ^= p;
        }
        self.cipher = Aes128::new(GenericArray::from_slice(&temp[..16]));
        self.v = u128::from_be_bytes(temp[16..].try_into().expect("16 bytes"));
    }

    /// Generate(len(out)) without additional input, followed by Update(0^32).
    pub fn generate(&mut self, out: &mut [u8]) {
        let mut v = self.v;
        self.keystream(&mut v, out);
        self.v = self.v.wrapping_add(out.len().div_ceil(16) as u128);
        self.update(&[0u8; SEED_LEN]);
    }
}

/// Apple's `NistAes128Ctr`: a CTR_DRBG read through a 4096-byte buffer, so every 4096 bytes of
/// output is one Generate call.
#[derive(Clone)]
pub struct NistAes128Ctr {
    drbg: NistCtrDrbg,
    buffer: Box<[u8; BUFFER_LEN]>,
    offset: usize,
}

impl NistAes128Ctr {
    /// Seeds the generator with a 32-byte seed.
    pub fn new(seed: &[u8; SEED_LEN]) -> Self {
        NistAes128Ctr {
            drbg: NistCtrDrbg::new(seed),
            buffer: Box::new([0u8; BUFFER_LEN]),
            offset: BUFFER_LEN,
        }
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            if self.offset == BUFFER_LEN {
                self.drbg.generate(&mut self.buffer[..]);
                self.offset = 0;
            }
            let take = (out.len() - filled).min(BUFFER_LEN - self.offset);
            out[filled..filled + take]
                .copy_from_slice(&self.buffer[self.offset..self.offset + take]);
            self.offset += take;
            filled += take;
        }
    }

    /// Next little-endian u64 (Swift's `rng.next()` reads native-endian bytes; all Apple targets are LE).
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// Next little-endian u32.
    pub fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }
}

impl rand_core::RngCore for NistAes128Ctr {
    fn next_u32(&mut self) -> u32 {
        NistAes128Ctr::next_u32(self)
    }
    fn next_u64(&mut self) -> u64 {
        NistAes128Ctr::next_u64(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.fill(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for NistAes128Ctr {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batched keystream equals AES of each counter block in turn, for lengths that end
    /// mid-block and cross batch boundaries, and leaves V where the block count says.
    #[test]
    fn batched_keystream_matches_block_by_block() {
        let d = NistCtrDrbg::new(&[0x5a; SEED_LEN]);
        for len in [0usize, 1, 15, 16, 17, 1023, 1024, 1025, 5000] {
            let mut v = d.v;
            let mut out = vec![0u8; len];
            d.keystream(&mut v, &mut out);
            let mut expected = Vec::new();
            let mut w = d.v;
            while expected.len() < len {
                w = w.wrapping_add(1);
                let mut block = GenericArray::from(w.to_be_bytes());
                d.cipher.encrypt_block(&mut block);
                expected.extend_from_slice(&block);
            }
            expected.truncate(len);
            assert_eq!(out, expected, "length {len}");
            assert_eq!(
                v,
                d.v.wrapping_add(len.div_ceil(16) as u128),
                "length {len}"
            );
        }
    }
}
