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
    let mut acc: u128 = 0;
    let mut acc_bits = 0u32;
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    for &c in coeffs {
        acc = (acc << w) | ((c >> skip) & mask) as u128;
        acc_bits += w;
        while acc_bits >= 8 {
            acc_bits -= 8;
            out.push((acc >> acc_bits) as u8);
        }
        acc &= (1u128 << acc_bits) - 1;
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
    let mut it = bytes.iter();
    let mask = if w == 64 {
        u64::MAX as u128
    } else {
        (1u128 << w) - 1
    };
    for c in coeffs.iter_mut() {
        while acc_bits < w {
            let b = it.next().copied().unwrap_or(0);
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
