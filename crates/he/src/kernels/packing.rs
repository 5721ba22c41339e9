//! Apple's `CoefficientPacking`: coefficients as an MSB-first bit stream, `bits − skip_lsbs` bits
//! each (the low `skip_lsbs` bits dropped on write, zero on read), zero-padded to a whole byte.

use crate::HeError;

fn validate(bits: u32, skip: u32) -> Result<(), HeError> {
    if bits == 0 || bits > 64 || skip >= bits {
        return Err(HeError::Serialization(format!(
            "invalid packing: {bits} bits, skip {skip}"
        )));
    }
    Ok(())
}

/// Bytes needed for `count` coefficients of `bits` bits minus `skip` low bits.
pub fn coefficients_to_bytes_len(count: usize, bits: u32, skip: u32) -> usize {
    (count * (bits - skip) as usize).div_ceil(8)
}

/// Packs coefficients (each < 2^bits) MSB-first, appending to `out`.
pub fn coefficients_to_bytes_into(
    coeffs: &[u64],
    bits: u32,
    skip: u32,
    out: &mut Vec<u8>,
) -> Result<(), HeError> {
    validate(bits, skip)?;
    let w = bits - skip;
    out.reserve(coefficients_to_bytes_len(coeffs.len(), bits, skip));
    // Bits gather in a u128 (fewer than 64 pending before each coefficient, at most 64
    // added) and leave eight bytes at a time, rather than a byte per push.
    let mut acc: u128 = 0;
    let mut acc_bits = 0u32;
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    for &c in coeffs {
        acc = (acc << w) | ((c >> skip) & mask) as u128;
        acc_bits += w;
        if acc_bits >= 64 {
            acc_bits -= 64;
            out.extend_from_slice(&((acc >> acc_bits) as u64).to_be_bytes());
            acc &= (1u128 << acc_bits) - 1;
        }
    }
    while acc_bits >= 8 {
        acc_bits -= 8;
        out.push((acc >> acc_bits) as u8);
    }
    if acc_bits > 0 {
        out.push((acc << (8 - acc_bits)) as u8);
    }
    Ok(())
}

/// Packs coefficients into a new byte vector.
pub fn coefficients_to_bytes(coeffs: &[u64], bits: u32, skip: u32) -> Result<Vec<u8>, HeError> {
    let mut out = Vec::new();
    coefficients_to_bytes_into(coeffs, bits, skip, &mut out)?;
    Ok(out)
}

/// Unpacks exactly `coeffs.len()` coefficients from `bytes` (missing trailing bits read as zero),
/// shifting each left by `skip`.
pub fn bytes_to_coefficients_into(
    bytes: &[u8],
    bits: u32,
    skip: u32,
    coeffs: &mut [u64],
) -> Result<(), HeError> {
    validate(bits, skip)?;
    let w = bits - skip;
    let mut acc: u128 = 0;
    let mut acc_bits = 0u32;
    let mask = if w == 64 {
        u64::MAX as u128
    } else {
        (1u128 << w) - 1
    };
    // Eight bytes at a time while a whole word is left (acc holds fewer than w ≤ 64 bits
    // then, so the shift stays within the u128), then byte by byte, zeros past the end.
    let mut words = bytes.chunks_exact(8);
    let mut rest = words.remainder().iter();
    for c in coeffs.iter_mut() {
        if acc_bits < w
            && let Some(word) = words.next()
        {
            let v = u64::from_be_bytes(word.try_into().expect("eight bytes"));
            acc = (acc << 64) | v as u128;
            acc_bits += 64;
        }
        while acc_bits < w {
            let b = rest.next().copied().unwrap_or(0);
            acc = (acc << 8) | b as u128;
            acc_bits += 8;
        }
        acc_bits -= w;
        *c = (((acc >> acc_bits) & mask) as u64) << skip;
        acc &= (1u128 << acc_bits) - 1;
    }
    Ok(())
}

/// Apple's `bytesToCoefficients`: with `decode` the count is ⌊8·len / w⌋ (reading back a packing),
/// otherwise ⌈8·len / w⌉ (encoding bytes as plaintext coefficients, last one zero-padded).
pub fn bytes_to_coefficients(
    bytes: &[u8],
    bits: u32,
    decode: bool,
    skip: u32,
) -> Result<Vec<u64>, HeError> {
    validate(bits, skip)?;
    let w = (bits - skip) as usize;
    let count = if decode {
        8 * bytes.len() / w
    } else {
        (8 * bytes.len()).div_ceil(w)
    };
    let mut coeffs = vec![0u64; count];
    bytes_to_coefficients_into(bytes, bits, skip, &mut coeffs)?;
    Ok(coeffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packing equals a bit-at-a-time MSB-first writer for every width and skip and
    /// for counts that end mid-byte and mid-word, and unpacks back to the kept bits (a
    /// truncated input as if zero-padded).
    #[test]
    fn packing_matches_a_bitwise_writer() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for bits in 1..=64u32 {
            for skip in [0, 1, bits / 2, bits - 1] {
                if skip >= bits {
                    continue;
                }
                for count in [0usize, 1, 7, 8, 9, 63, 64, 65, 257] {
                    let mask = if bits == 64 {
                        u64::MAX
                    } else {
                        (1u64 << bits) - 1
                    };
                    let coeffs: Vec<u64> = (0..count).map(|_| next() & mask).collect();
                    let mut want = Vec::new();
                    let (mut byte, mut filled) = (0u8, 0);
                    for &c in &coeffs {
                        for b in (skip..bits).rev() {
                            byte = (byte << 1) | ((c >> b) & 1) as u8;
                            filled += 1;
                            if filled == 8 {
                                want.push(byte);
                                (byte, filled) = (0, 0);
                            }
                        }
                    }
                    if filled > 0 {
                        want.push(byte << (8 - filled));
                    }
                    let got = coefficients_to_bytes(&coeffs, bits, skip).unwrap();
                    assert_eq!(got, want, "bits {bits} skip {skip} count {count}");
                    assert_eq!(got.len(), coefficients_to_bytes_len(count, bits, skip));
                    let mut back = vec![0u64; count];
                    bytes_to_coefficients_into(&got, bits, skip, &mut back).unwrap();
                    let kept: Vec<u64> = coeffs.iter().map(|&c| c >> skip << skip).collect();
                    assert_eq!(back, kept, "bits {bits} skip {skip} count {count}");
                    // Missing trailing bytes read as zeros.
                    let cut = got.len() * 2 / 3;
                    let mut padded = got[..cut].to_vec();
                    padded.resize(got.len(), 0);
                    let (mut short, mut full) = (vec![0u64; count], vec![0u64; count]);
                    bytes_to_coefficients_into(&got[..cut], bits, skip, &mut short).unwrap();
                    bytes_to_coefficients_into(&padded, bits, skip, &mut full).unwrap();
                    assert_eq!(short, full, "bits {bits} skip {skip} count {count}");
                }
            }
        }
    }
}
