//! Database processing (Apple's `MulPirServer.process`) and the processed `.bin` format
//! (`ProcessedDatabase`: `u8 version=1 ‖ u32 LE count ‖ per plaintext: 0 | 1 ‖ Eval poly`).

use rayon::prelude::*;
use sift_he::{Context, EvalPlaintext, Plaintext, packing, serialize::poly_byte_len};

use crate::PirError;
use crate::params::IndexPirParameter;

/// Serialization version of the `.bin` format.
pub const SERIALIZATION_VERSION: u8 = 1;

/// Plaintexts in Eval form over the ciphertext moduli; `None` is an all-zero plaintext.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessedDatabase {
    /// Plaintexts in server order (column-major per chunk, tables concatenated).
    pub plaintexts: Vec<Option<EvalPlaintext>>,
}

fn encode(ctx: &Context, bytes: &[u8]) -> Result<Option<EvalPlaintext>, PirError> {
    let bits = ctx.params.bits_per_coeff();
    let coeffs = packing::bytes_to_coefficients(bytes, bits, false, 0)?;
    if coeffs.iter().all(|&c| c == 0) {
        return Ok(None);
    }
    let pt = Plaintext::new(ctx, &coeffs)?;
    Ok(Some(pt.to_eval(ctx, ctx.ciphertext_moduli_count())))
}

/// Processes one index-PIR database (`entries.len() == entry_count`, each at most
/// `entry_size` bytes) into its plaintexts: packed (or split into chunks), padded to d₀·d₁ per
/// chunk, and reordered column-major.
pub fn process(
    ctx: &Context,
    entries: &[Vec<u8>],
    param: &IndexPirParameter,
) -> Result<ProcessedDatabase, PirError> {
    if entries.len() != param.entry_count {
        return Err(PirError::InvalidParameters(format!(
            "{} entries, parameters say {}",
            entries.len(),
            param.entry_count
        )));
    }
    if entries.iter().any(|e| e.len() > param.entry_size) {
        return Err(PirError::InvalidParameters(
            "entry larger than entry size".into(),
        ));
    }
    let bpp = ctx.params.bytes_per_plaintext();
    let chunk_count = param.chunk_count(bpp);
    let per_chunk = param.per_chunk_plaintext_count();
    let d0 = param.dimensions[0];
    let columns = per_chunk / d0;
    // rows[p][c]: plaintext p (row-major order) of chunk c.
    let rows: Vec<Vec<Option<EvalPlaintext>>> = if chunk_count > 1 {
        entries
            .par_iter()
            .map(|e| {
                (0..chunk_count)
                    .map(|c| {
                        let start = c * bpp;
                        let end = (start + bpp).min(e.len());
                        if start >= end {
                            Ok(None)
                        } else {
                            encode(ctx, &e[start..end])
                        }
                    })
                    .collect::<Result<Vec<_>, PirError>>()
            })
            .collect::<Result<_, _>>()?
    } else {
        let per_pt = bpp / param.entry_size;
        entries
            .par_chunks(per_pt)
            .map(|group| {
                let mut buf = Vec::with_capacity(per_pt * param.entry_size);
                for e in group {
                    buf.extend_from_slice(e);
                    buf.resize(buf.len() + param.entry_size - e.len(), 0);
                }
                Ok(vec![encode(ctx, &buf)?])
            })
            .collect::<Result<_, PirError>>()?
    };
    if rows.len() > per_chunk {
        return Err(PirError::InvalidParameters(
            "dimensions too small for the database".into(),
        ));
    }
    let mut out = Vec::with_capacity(chunk_count * per_chunk);
    for c in 0..chunk_count {
        for j in 0..columns {
            for i in 0..d0 {
                let p = i * columns + j;
                out.push(rows.get(p).and_then(|r| r[c].clone()));
            }
        }
    }
    Ok(ProcessedDatabase { plaintexts: out })
}

impl ProcessedDatabase {
    /// Serializes to Apple's `.bin` format.
    pub fn serialize(&self, ctx: &Context) -> Vec<u8> {
        let k = ctx.ciphertext_moduli_count();
        let basis: Vec<usize> = (0..k).collect();
        let len = poly_byte_len(ctx, &basis, 0);
        let present = self.plaintexts.iter().flatten().count();
        let mut out = Vec::with_capacity(5 + self.plaintexts.len() + present * len);
        out.push(SERIALIZATION_VERSION);
        out.extend_from_slice(&(self.plaintexts.len() as u32).to_le_bytes());
        for p in &self.plaintexts {
            match p {
                None => out.push(0),
                Some(p) => {
                    out.push(1);
                    out.extend_from_slice(&p.serialize(ctx));
                }
            }
        }
        out
    }

    /// Reads Apple's `.bin` format.
    pub fn deserialize(ctx: &Context, bytes: &[u8]) -> Result<ProcessedDatabase, PirError> {
        let spans = plaintext_spans(ctx, bytes)?;
        let plaintexts = decode_spans(ctx, bytes, &spans)?;
        Ok(ProcessedDatabase { plaintexts })
    }
}

/// Decodes the plaintexts of a `.bin` file at `spans` (from [`plaintext_spans`]) in
/// parallel; an absent (all-zero) one stays None.
pub fn decode_spans(
    ctx: &Context,
    bytes: &[u8],
    spans: &[Option<usize>],
) -> Result<Vec<Option<EvalPlaintext>>, PirError> {
    let k = ctx.ciphertext_moduli_count();
    let len = plaintext_len(ctx);
    Ok(spans
        .par_iter()
        .map(|s| {
            s.map(|o| EvalPlaintext::deserialize(ctx, &bytes[o..o + len], k))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?)
}

/// Bytes of one serialized plaintext (an Eval polynomial over the ciphertext moduli).
pub fn plaintext_len(ctx: &Context) -> usize {
    let basis: Vec<usize> = (0..ctx.ciphertext_moduli_count()).collect();
    poly_byte_len(ctx, &basis, 0)
}

/// Where each plaintext of a `.bin` file starts ([`plaintext_len`] bytes each), None for an
/// all-zero one, after checking the version, tags and total length; the plaintexts themselves
/// are decoded by the caller ([`EvalPlaintext::deserialize`] checks each word).
pub fn plaintext_spans(ctx: &Context, bytes: &[u8]) -> Result<Vec<Option<usize>>, PirError> {
    let bad = |m: &str| PirError::DamagedDataset(m.to_string());
    if bytes.len() < 5 {
        return Err(bad("database file too short"));
    }
    if bytes[0] != SERIALIZATION_VERSION {
        return Err(PirError::DamagedDataset(format!(
            "database serialization version {} (expected 1)",
            bytes[0]
        )));
    }
    let count = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
    let len = plaintext_len(ctx);
    if count > bytes.len() {
        return Err(bad("plaintext count exceeds file size"));
    }
    let mut spans = Vec::with_capacity(count);
    let mut off = 5;
    for _ in 0..count {
        let tag = *bytes.get(off).ok_or_else(|| bad("truncated database"))?;
        off += 1;
        match tag {
            0 => spans.push(None),
            1 => {
                if off + len > bytes.len() {
                    return Err(bad("truncated plaintext"));
                }
                spans.push(Some(off));
                off += len;
            }
            t => {
                return Err(PirError::DamagedDataset(format!(
                    "invalid plaintext tag {t}"
                )));
            }
        }
    }
    if off != bytes.len() {
        return Err(bad("trailing bytes after database"));
    }
    Ok(spans)
}
