//! Writes of large buffers that are read again only much later: with AVX-512 the stores are
//! non-temporal (straight to memory, without first reading each line into the caches), which
//! halves the memory traffic of a write-once scatter and leaves the caches to the work that
//! runs in between.

/// Narrows `src` (words below 2^32) to u32, block by block: block t of `block` words goes to
/// `dst[t·stride ..]`. Non-temporal stores when AVX-512 is allowed, `dst` is 64-byte aligned
/// and `block` and `stride` are multiples of 16 words (every block then covers whole cache
/// lines); otherwise ordinary vectorized stores. Either way the words are the same, and they
/// are visible to every thread once this returns (a store fence ends the streaming path).
pub fn scatter_narrow(dst: &mut [u32], src: &[u64], block: usize, stride: usize) {
    let blocks = src.len() / block.max(1);
    assert!(
        block > 0 && src.len().is_multiple_of(block),
        "source is not whole blocks"
    );
    if blocks > 0 {
        assert!(
            (blocks - 1) * stride + block <= dst.len(),
            "destination too short for the blocks"
        );
    }
    let aligned = (dst.as_ptr() as usize).is_multiple_of(64)
        && block.is_multiple_of(16)
        && stride.is_multiple_of(16);
    match crate::simd::level().isa() {
        // SAFETY: `isa()` yields `Avx512` only when the CPU has AVX-512 F (run-time
        // detection); the bounds were asserted above and the function checks every slice it
        // forms.
        #[cfg(target_arch = "x86_64")]
        crate::simd::Isa::Avx512 if aligned => unsafe {
            avx512::scatter_narrow_streaming(dst, src, block, stride)
        },
        _ => scatter_narrow_cached(dst, src, block, stride),
    }
}

/// [`scatter_narrow`] with ordinary stores, vectorized for the widest instruction set allowed.
fn scatter_narrow_cached(dst: &mut [u32], src: &[u64], block: usize, stride: usize) {
    #[inline(always)]
    fn body(dst: &mut [u32], src: &[u64], block: usize, stride: usize) {
        for (t, s) in src.chunks_exact(block).enumerate() {
            for (d, &x) in dst[t * stride..t * stride + block].iter_mut().zip(s) {
                *d = x as u32;
            }
        }
    }
    crate::simd_dispatch!(body, (dst: &mut [u32], src: &[u64], block: usize, stride: usize))
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::*;

    /// The streaming path of [`super::scatter_narrow`]: 16 words narrowed per 64-byte
    /// non-temporal store, then a store fence.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F. `dst` must be 64-byte aligned and `block`, `stride`
    /// multiples of 16 (so every store is to an aligned whole line).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scatter_narrow_streaming(
        dst: &mut [u32],
        src: &[u64],
        block: usize,
        stride: usize,
    ) {
        // The low halves of both vectors' words, in order: one vpermt2d per 16 words (two
        // vpmovqd and an insert were five shuffle µops).
        let low_halves =
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (t, s) in src.chunks_exact(block).enumerate() {
            let d = &mut dst[t * stride..t * stride + block];
            for (d, s) in d.chunks_exact_mut(16).zip(s.chunks_exact(16)) {
                // SAFETY: `s` holds 16 u64 (two unaligned 512-bit loads) and `d` 16 u32 at an
                // address that is 64-byte aligned: dst is, and the offset t·stride + 16·j
                // words is a multiple of 16 words (64 bytes), as the caller guarantees.
                unsafe {
                    let lo = _mm512_loadu_si512(s.as_ptr().cast());
                    let hi = _mm512_loadu_si512(s[8..].as_ptr().cast());
                    let v = _mm512_permutex2var_epi32(lo, low_halves, hi);
                    _mm512_stream_si512(d.as_mut_ptr().cast(), v);
                }
            }
        }
        // Non-temporal stores are weakly ordered: fence them before anything reads the buffer
        // from another thread (the caller's own later loads see them in any case).
        _mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: block t narrowed to dst[t·stride ..], the rest untouched.
    fn reference(dst: &mut [u32], src: &[u64], block: usize, stride: usize) {
        for (t, s) in src.chunks_exact(block).enumerate() {
            for (j, &x) in s.iter().enumerate() {
                dst[t * stride + j] = x as u32;
            }
        }
    }

    #[test]
    fn both_paths_write_the_narrowed_blocks_and_nothing_else() {
        let src: Vec<u64> = (0..1024u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9) & 0xFFFF_FFFF)
            .collect();
        // A 64-byte aligned region inside a larger buffer (u32 alignment is only 4).
        let mut buf = vec![0xA5A5_A5A5u32; 4096 + 16];
        let lead = buf.as_ptr().align_offset(64);
        // (block, stride, offset in words): aligned and streamable, aligned but odd sizes,
        // and misaligned starts, which must take the ordinary path.
        for (block, stride, off) in [(256, 768, 0), (64, 80, 0), (16, 16, 0), (8, 24, 0)]
            .into_iter()
            .chain([(256, 768, 1), (64, 64, 3)])
        {
            let mut got = buf.clone();
            let mut want = buf.clone();
            let at = lead + off;
            scatter_narrow(&mut got[at..], &src, block, stride);
            reference(&mut want[at..], &src, block, stride);
            assert_eq!(got, want, "block {block} stride {stride} offset {off}");
        }
        buf.clear();
    }

    #[test]
    #[should_panic(expected = "destination too short")]
    fn a_short_destination_is_refused() {
        let mut dst = vec![0u32; 100];
        scatter_narrow(&mut dst, &[1u64; 64], 32, 80);
    }
}
