//! Apple's byte formats (`PolyRq+Serialize.swift`, `Serialize.swift`, `SerializedCiphertext.swift`,
//! `SerializedKeys.swift`) as plain structs; the protobuf layer maps them to messages.

use std::collections::BTreeMap;

use crate::HeError;
use crate::bfv::{Ciphertext, EvalPlaintext, EvaluationKey, KeySwitchKey, Plaintext};
use crate::drbg::SEED_LEN;
use crate::packing;
use crate::poly::{Context, Format, Poly};

/// `SerializedCiphertext.seeded`: c_0 bytes (no count header) and the 32-byte seed of c_1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededCiphertextBytes {
    /// Serialized c_0.
    pub poly0: Vec<u8>,
    /// Seed expanding to c_1 in Eval form.
    pub seed: [u8; SEED_LEN],
}

/// `SerializedCiphertext.full`: u16 LE count ‖ polys, with per-poly skipped low bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullCiphertextBytes {
    /// Count header and packed polynomials.
    pub polys: Vec<u8>,
    /// Low bits dropped per polynomial (empty means none).
    pub skip_lsbs: Vec<u32>,
    /// Apple's correction factor (1 for BFV).
    pub correction_factor: u64,
}

/// Either serialized ciphertext form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerializedCiphertext {
    /// c_1 given by its seed.
    Seeded(SeededCiphertextBytes),
    /// Every polynomial in full.
    Full(FullCiphertextBytes),
}

/// Serialized evaluation key: Galois element → key-switching ciphertexts, plus relinearization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerializedEvaluationKey {
    /// Galois keys by element; each key is L−1 ciphertexts.
    pub galois: BTreeMap<u64, Vec<SerializedCiphertext>>,
    /// Relinearization key ciphertexts, if any.
    pub relin: Option<Vec<SerializedCiphertext>>,
}

/// Serialized byte length of one polynomial over `basis` with `skip` low bits dropped.
pub fn poly_byte_len(ctx: &Context, basis: &[usize], skip: u32) -> usize {
    basis
        .iter()
        .map(|&i| packing::coefficients_to_bytes_len(ctx.n, ctx.modulus(i).ceil_log2(), skip))
        .sum()
}

/// Packs row-major residues, row i with ⌈log2 `moduli[i]`⌉ bits minus `skip` (raw-moduli form
/// of [`Poly::serialize`], usable for moduli without NTT tables).
pub fn serialize_rows(
    data: &[u64],
    n: usize,
    moduli: &[u64],
    skip: u32,
    out: &mut Vec<u8>,
) -> Result<(), HeError> {
    for (r, &q) in moduli.iter().enumerate() {
        packing::coefficients_to_bytes_into(
            &data[r * n..(r + 1) * n],
            crate::arith::ceil_log2(q),
            skip,
            out,
        )?;
    }
    Ok(())
}

/// Unpacks row-major residues; returns the bytes consumed. Values ≥ q_i are rejected.
pub fn deserialize_rows(
    bytes: &[u8],
    n: usize,
    moduli: &[u64],
    skip: u32,
    data: &mut [u64],
) -> Result<usize, HeError> {
    let mut off = 0;
    for (r, &q) in moduli.iter().enumerate() {
        let bits = crate::arith::ceil_log2(q);
        if skip >= bits {
            return Err(HeError::Serialization(format!(
                "skip_lsbs {skip} ≥ {bits} bits"
            )));
        }
        let len = packing::coefficients_to_bytes_len(n, bits, skip);
        if off + len > bytes.len() {
            return Err(HeError::Serialization(format!(
                "buffer too short: need {} more bytes, have {}",
                len,
                bytes.len() - off
            )));
        }
        let row = &mut data[r * n..(r + 1) * n];
        packing::bytes_to_coefficients_into(&bytes[off..off + len], bits, skip, row)?;
        if row.iter().any(|&c| c >= q) {
            return Err(HeError::Serialization("coefficient not reduced".into()));
        }
        off += len;
    }
    Ok(off)
}

impl Poly {
    /// Apple's `PolyRq.serialize(skipLSBs:)`.
    pub fn serialize(&self, ctx: &Context, skip: u32) -> Vec<u8> {
        let moduli: Vec<u64> = self.basis.iter().map(|&i| ctx.modulus(i).value).collect();
        let mut out = Vec::with_capacity(poly_byte_len(ctx, &self.basis, skip));
        serialize_rows(&self.data, self.n, &moduli, skip, &mut out).expect("skip below widths");
        out
    }

    /// Reads a polynomial over the first `k` moduli, labelled `format`; returns it and the bytes used.
    pub fn deserialize_prefix(
        ctx: &Context,
        bytes: &[u8],
        k: usize,
        format: Format,
        skip: u32,
    ) -> Result<(Poly, usize), HeError> {
        if k == 0 || k > ctx.moduli_count() {
            return Err(HeError::Serialization(format!("invalid moduli count {k}")));
        }
        let mut p = Poly::zero(ctx, k, format);
        let moduli: Vec<u64> = (0..k).map(|i| ctx.modulus(i).value).collect();
        let used = deserialize_rows(bytes, ctx.n, &moduli, skip, &mut p.data)?;
        Ok((p, used))
    }

    /// Reads a polynomial that must fill `bytes` exactly.
    pub fn deserialize(
        ctx: &Context,
        bytes: &[u8],
        k: usize,
        format: Format,
        skip: u32,
    ) -> Result<Poly, HeError> {
        let (p, used) = Poly::deserialize_prefix(ctx, bytes, k, format, skip)?;
        if used != bytes.len() {
            return Err(HeError::Serialization(format!(
                "{} trailing bytes",
                bytes.len() - used
            )));
        }
        Ok(p)
    }
}

impl Ciphertext {
    /// Apple's `Ciphertext.serialize(forDecryption:)`: seeded when the seed is known and there are
    /// 2 polys; otherwise full, with `skipLSBsForDecryption` when `for_decryption`, Coeff form and
    /// one modulus.
    pub fn serialize(&self, ctx: &Context, for_decryption: bool) -> SerializedCiphertext {
        if let (Some(seed), 2) = (self.seed, self.polys.len()) {
            return SerializedCiphertext::Seeded(SeededCiphertextBytes {
                poly0: self.polys[0].serialize(ctx, 0),
                seed,
            });
        }
        let skip: Vec<u32> = if for_decryption
            && self.format() == Format::Coeff
            && self.moduli_count() == 1
            && self.polys.len() == 2
        {
            ctx.params.skip_lsbs_for_decryption().to_vec()
        } else {
            vec![0; self.polys.len()]
        };
        let mut polys = Vec::new();
        polys.extend_from_slice(&(self.polys.len() as u16).to_le_bytes());
        for (p, &s) in self.polys.iter().zip(&skip) {
            polys.extend_from_slice(&p.serialize(ctx, s));
        }
        SerializedCiphertext::Full(FullCiphertextBytes {
            polys,
            skip_lsbs: skip,
            correction_factor: self.correction_factor,
        })
    }

    /// Apple's `Ciphertext(deserialize:context:moduliCount:)` in `format`; `moduli_count` defaults
    /// to the ciphertext moduli. A seeded c_1 is regenerated in Eval form and converted.
    pub fn deserialize(
        ctx: &Context,
        s: &SerializedCiphertext,
        moduli_count: Option<usize>,
        format: Format,
    ) -> Result<Ciphertext, HeError> {
        let k = moduli_count.unwrap_or(ctx.ciphertext_moduli_count());
        match s {
            SerializedCiphertext::Seeded(sd) => {
                let p0 = Poly::deserialize(ctx, &sd.poly0, k, format, 0)?;
                let mut p1 = Poly::from_seed(ctx, k, &sd.seed);
                p1.convert_to(ctx, format);
                Ok(Ciphertext {
                    polys: vec![p0, p1],
                    correction_factor: 1,
                    seed: Some(sd.seed),
                })
            }
            SerializedCiphertext::Full(f) => {
                if f.polys.len() < 2 {
                    return Err(HeError::Serialization("missing poly count".into()));
                }
                let count = u16::from_le_bytes([f.polys[0], f.polys[1]]) as usize;
                if count == 0 || count > 3 {
                    return Err(HeError::Serialization(format!(
                        "unsupported poly count {count}"
                    )));
                }
                let skip = if f.skip_lsbs.is_empty() {
                    vec![0; count]
                } else {
                    f.skip_lsbs.clone()
                };
                if skip.len() != count {
                    return Err(HeError::Serialization(
                        "skip_lsbs length differs from poly count".into(),
                    ));
                }
                let mut off = 2;
                let mut polys = Vec::with_capacity(count);
                for &sk in &skip {
                    let (p, used) = Poly::deserialize_prefix(ctx, &f.polys[off..], k, format, sk)?;
                    off += used;
                    polys.push(p);
                }
                if off != f.polys.len() {
                    return Err(HeError::Serialization(
                        "trailing bytes after polynomials".into(),
                    ));
                }
                Ok(Ciphertext {
                    polys,
                    correction_factor: f.correction_factor,
                    seed: None,
                })
            }
        }
    }
}

impl KeySwitchKey {
    /// Seeded (or full) ciphertexts in Eval form over all L moduli.
    pub fn serialize(&self, ctx: &Context) -> Vec<SerializedCiphertext> {
        self.ciphertexts
            .iter()
            .map(|c| c.serialize(ctx, false))
            .collect()
    }

    /// Reads L−1 key ciphertexts (Eval, all L moduli).
    pub fn deserialize(
        ctx: &Context,
        cts: &[SerializedCiphertext],
    ) -> Result<KeySwitchKey, HeError> {
        if cts.len() != ctx.moduli_count().saturating_sub(1) || cts.is_empty() {
            return Err(HeError::Serialization(format!(
                "key-switch key has {} ciphertexts",
                cts.len()
            )));
        }
        let l = ctx.moduli_count();
        let ciphertexts = cts
            .iter()
            .map(|c| Ciphertext::deserialize(ctx, c, Some(l), Format::Eval))
            .collect::<Result<Vec<_>, _>>()?;
        if ciphertexts.iter().any(|c| c.polys.len() != 2) {
            return Err(HeError::Serialization(
                "key ciphertexts must have 2 polys".into(),
            ));
        }
        Ok(KeySwitchKey::new(ciphertexts))
    }
}

impl EvaluationKey {
    /// Serializes every key (seeded).
    pub fn serialize(&self, ctx: &Context) -> SerializedEvaluationKey {
        SerializedEvaluationKey {
            galois: self
                .galois
                .iter()
                .map(|(&g, k)| (g as u64, k.serialize(ctx)))
                .collect(),
            relin: self.relin.as_ref().map(|k| k.serialize(ctx)),
        }
    }

    /// Reads an evaluation key, checking Galois elements are valid.
    pub fn deserialize(
        ctx: &Context,
        s: &SerializedEvaluationKey,
    ) -> Result<EvaluationKey, HeError> {
        let mut galois = BTreeMap::new();
        for (&g, cts) in &s.galois {
            let g = usize::try_from(g).map_err(|_| HeError::InvalidGaloisElement(usize::MAX))?;
            if g % 2 == 0 || g <= 1 || g >= 2 * ctx.n {
                return Err(HeError::InvalidGaloisElement(g));
            }
            galois.insert(g, KeySwitchKey::deserialize(ctx, cts)?);
        }
        let relin = s
            .relin
            .as_ref()
            .map(|c| KeySwitchKey::deserialize(ctx, c))
            .transpose()?;
        Ok(EvaluationKey { galois, relin })
    }
}

impl Plaintext {
    /// Apple's serialized Coeff plaintext: coefficients packed with ⌈log2 t⌉ bits.
    pub fn serialize(&self, ctx: &Context) -> Vec<u8> {
        let mut out = Vec::new();
        serialize_rows(&self.coeffs, ctx.n, &[ctx.t()], 0, &mut out).expect("valid width");
        out
    }

    /// Reads a Coeff plaintext written by [`Plaintext::serialize`].
    pub fn deserialize(ctx: &Context, bytes: &[u8]) -> Result<Plaintext, HeError> {
        let mut coeffs = vec![0u64; ctx.n];
        let used = deserialize_rows(bytes, ctx.n, &[ctx.t()], 0, &mut coeffs)?;
        if used != bytes.len() {
            return Err(HeError::Serialization("trailing bytes".into()));
        }
        Ok(Plaintext { coeffs })
    }
}

impl EvalPlaintext {
    /// Apple's serialized Eval plaintext: the polynomial over its moduli.
    pub fn serialize(&self, ctx: &Context) -> Vec<u8> {
        self.poly.serialize(ctx, 0)
    }

    /// Reads an Eval plaintext over the first `k` moduli.
    pub fn deserialize(ctx: &Context, bytes: &[u8], k: usize) -> Result<EvalPlaintext, HeError> {
        Ok(EvalPlaintext {
            poly: Poly::deserialize(ctx, bytes, k, Format::Eval, 0)?,
        })
    }
}

impl crate::bfv::SecretKey {
    /// Apple's `SerializedSecretKey.polys`: u16 LE count (1) ‖ s in Eval form over all L moduli.
    pub fn serialize(&self, ctx: &Context) -> Vec<u8> {
        let mut out = vec![1, 0];
        out.extend_from_slice(&self.poly.serialize(ctx, 0));
        out
    }

    /// Reads a secret key written by [`crate::bfv::SecretKey::serialize`].
    pub fn deserialize(ctx: &Context, bytes: &[u8]) -> Result<crate::bfv::SecretKey, HeError> {
        if bytes.len() < 2 || bytes[0] != 1 || bytes[1] != 0 {
            return Err(HeError::Serialization(
                "secret key must hold one polynomial".into(),
            ));
        }
        let poly = Poly::deserialize(ctx, &bytes[2..], ctx.moduli_count(), Format::Eval, 0)?;
        Ok(crate::bfv::SecretKey { poly })
    }
}
