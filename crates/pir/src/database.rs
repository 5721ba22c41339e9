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

/// The plaintexts (indices into one table's [`process`] output) that hold entry `entry`.
pub fn plaintexts_of_entry(param: &IndexPirParameter, bpp: usize, entry: usize) -> Vec<usize> {
    let chunk_count = param.chunk_count(bpp);
    let per_chunk = param.per_chunk_plaintext_count();
    let d0 = param.dimensions[0];
    let columns = per_chunk / d0;
    // Row-major plaintext p sits at column p % columns, row p / columns.
    let (p, chunks) = if chunk_count > 1 {
        (entry, chunk_count)
    } else {
        (entry / (bpp / param.entry_size).max(1), 1)
    };
    (0..chunks)
        .map(|c| c * per_chunk + (p % columns) * d0 + p / columns)
        .collect()
}

/// Re-encodes the listed plaintexts of one table (indices into [`process`]'s output) from
/// its entries, exactly as [`process`] encodes them; `entry(e)` is entry e's bytes. None
/// stands for an all-zero plaintext.
pub fn reencode(
    ctx: &Context,
    param: &IndexPirParameter,
    entry: &(dyn Fn(usize) -> Result<Vec<u8>, PirError> + Sync),
    plaintexts: &[usize],
) -> Result<Vec<(usize, Option<EvalPlaintext>)>, PirError> {
    let bpp = ctx.params.bytes_per_plaintext();
    let chunk_count = param.chunk_count(bpp);
    let per_chunk = param.per_chunk_plaintext_count();
    let d0 = param.dimensions[0];
    let columns = per_chunk / d0;
    plaintexts
        .par_iter()
        .map(|&o| {
            let (c, w) = (o / per_chunk, o % per_chunk);
            if c >= chunk_count {
                return Err(PirError::InvalidParameters(format!(
                    "plaintext {o} is beyond the table"
                )));
            }
            let p = (w % d0) * columns + w / d0;
            let pt = if chunk_count > 1 {
                if p >= param.entry_count {
                    None
                } else {
                    let e = entry(p)?;
                    let start = c * bpp;
                    let end = (start + bpp).min(e.len());
                    if start >= end {
                        None
                    } else {
                        encode(ctx, &e[start..end])?
                    }
                }
            } else {
                let per_pt = bpp / param.entry_size;
                let first = p * per_pt;
                if first >= param.entry_count {
                    None
                } else {
                    let mut buf = Vec::with_capacity(per_pt * param.entry_size);
                    for e in first..(first + per_pt).min(param.entry_count) {
                        let e = entry(e)?;
                        if e.len() > param.entry_size {
                            return Err(PirError::InvalidParameters(
                                "entry larger than entry size".into(),
                            ));
                        }
                        buf.extend_from_slice(&e);
                        buf.resize(buf.len() + param.entry_size - e.len(), 0);
                    }
                    encode(ctx, &buf)?
                }
            };
            Ok((o, pt))
        })
        .collect()
}

/// A `.bin` file with some plaintexts replaced: `changed` maps a plaintext's index (over all
/// tables) to its new value; every other plaintext's bytes are copied from `old`.
pub fn patch_bin(
    ctx: &Context,
    old: &[u8],
    changed: &std::collections::HashMap<usize, Option<EvalPlaintext>>,
) -> Result<Vec<u8>, PirError> {
    let spans = plaintext_spans(ctx, old)?;
    if let Some(&i) = changed.keys().find(|&&i| i >= spans.len()) {
        return Err(PirError::InvalidParameters(format!(
            "plaintext {i} is beyond the database's {}",
            spans.len()
        )));
    }
    let len = plaintext_len(ctx);
    let mut out = Vec::with_capacity(old.len() + changed.len() * len);
    out.extend_from_slice(&old[..5]);
    for (i, span) in spans.iter().enumerate() {
        match changed.get(&i) {
            Some(None) => out.push(0),
            Some(Some(p)) => {
                out.push(1);
                out.extend_from_slice(&p.serialize(ctx));
            }
            None => match span {
                None => out.push(0),
                Some(o) => {
                    out.push(1);
                    out.extend_from_slice(&old[*o..*o + len]);
                }
            },
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{DimensionChoice, KeyCompression};

    /// Re-encoding every plaintext gives exactly what processing does, for entries packed
    /// several to a plaintext and for entries split over several chunks; `plaintexts_of_entry`
    /// names the plaintexts that change when one entry does; a patched `.bin` equals the
    /// processed one.
    #[test]
    fn reencoding_matches_processing() {
        let ctx = Context::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
        let bpp = ctx.params.bytes_per_plaintext();
        for (count, size) in [(1000usize, 34usize), (7, bpp * 2 + 5)] {
            let param = IndexPirParameter::generate_with(
                DimensionChoice::default(),
                count,
                size,
                2,
                bpp,
                ctx.n,
                KeyCompression::NoCompression,
            )
            .unwrap();
            let entry = |e: usize| -> Vec<u8> {
                (0..size - (e % 3))
                    .map(|j| (e * 31 + j * 7) as u8 | 1)
                    .collect()
            };
            let entries: Vec<Vec<u8>> = (0..count).map(entry).collect();
            let full = process(&ctx, &entries, &param).unwrap();
            assert!(full.plaintexts.len() > 2);
            let all: Vec<usize> = (0..full.plaintexts.len()).collect();
            let again = reencode(&ctx, &param, &|e| Ok(entry(e)), &all).unwrap();
            for (i, p) in again {
                assert_eq!(p, full.plaintexts[i], "{count}×{size}: plaintext {i}");
            }
            // Change one entry: exactly the named plaintexts differ.
            let target = count / 2 + 1;
            let mut changed_entries = entries.clone();
            changed_entries[target] = vec![0xAB; size / 2];
            let changed = process(&ctx, &changed_entries, &param).unwrap();
            let named = plaintexts_of_entry(&param, bpp, target);
            for i in 0..full.plaintexts.len() {
                assert_eq!(
                    full.plaintexts[i] != changed.plaintexts[i],
                    named.contains(&i),
                    "{count}×{size}: plaintext {i}"
                );
            }
            let patch: std::collections::HashMap<_, _> =
                reencode(&ctx, &param, &|e| Ok(changed_entries[e].clone()), &named)
                    .unwrap()
                    .into_iter()
                    .collect();
            assert_eq!(
                patch_bin(&ctx, &full.serialize(&ctx), &patch).unwrap(),
                changed.serialize(&ctx)
            );
        }
    }
}
