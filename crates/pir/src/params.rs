//! MulPir parameters (Apple's `MulPir.generateParameter`, `evaluationKeyConfig`).

use sift_he::arith::ceil_log2;

use crate::PirError;

/// Evaluation-key compression (Apple's `PirKeyCompressionStrategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyCompression {
    /// Every Galois element the expansion needs (fastest server).
    #[default]
    NoCompression,
    /// Max compression plus one extra element.
    HybridCompression,
    /// Fewest Galois elements (smallest key, slowest expansion).
    MaxCompression,
}

/// Galois elements and relinearization flag the server needs (`EvaluationKeyConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EvaluationKeyConfig {
    /// Galois elements, sorted ascending.
    pub galois_elements: Vec<usize>,
    /// Whether a relinearization key is needed.
    pub has_relin: bool,
}

impl EvaluationKeyConfig {
    /// Union of configs (sorted, deduplicated elements; relin if any needs it), as Apple does for
    /// the shards of one use case.
    pub fn union<'a>(configs: impl IntoIterator<Item = &'a EvaluationKeyConfig>) -> Self {
        let mut out = EvaluationKeyConfig::default();
        for c in configs {
            out.galois_elements.extend_from_slice(&c.galois_elements);
            out.has_relin |= c.has_relin;
        }
        out.galois_elements.sort_unstable();
        out.galois_elements.dedup();
        out
    }
}

/// The evaluation-key config for expanding `expanded_query_count` ciphertexts at degree `n`.
pub fn evaluation_key_config(
    expanded_query_count: usize,
    n: usize,
    compression: KeyCompression,
) -> EvaluationKeyConfig {
    let log_n = n.trailing_zeros();
    let depth = ceil_log2(expanded_query_count.min(n).max(1) as u64);
    let smallest = log_n - depth + 1;
    let largest = match compression {
        KeyCompression::NoCompression => log_n,
        _ => smallest.max((log_n + 1).div_ceil(2)),
    };
    let mut elems: Vec<usize> = (smallest..=largest).map(|l| (1usize << l) + 1).collect();
    if compression == KeyCompression::HybridCompression {
        let extra = largest.max((log_n + largest).div_ceil(2));
        let e = (1usize << extra) + 1;
        if !elems.contains(&e) {
            elems.push(e);
        }
    }
    elems.sort_unstable();
    EvaluationKeyConfig {
        galois_elements: elems,
        has_relin: true,
    }
}

/// How [`IndexPirParameter::generate_with`] shapes the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DimensionChoice {
    /// Always PIRProcessDatabase's shape: near-square, then reshaped towards a longer first
    /// dimension while the expansion stays within the same power of two.
    Apple,
    /// Apple's shape for entries that fit a plaintext; for wider entries (several response
    /// ciphertexts per PIR call) the shape with the least [`estimated_cost`], which is
    /// `[entries, 1]` (no ciphertext × ciphertext products at all) unless the expansion would
    /// cost more than the products it saves, and never one whose query needs more ciphertexts
    /// than Apple's shape would. Any shape is valid for Apple's clients, which
    /// read the dimensions from the parameters; PIRProcessDatabase emits `[d0, 1]` itself
    /// for some small databases.
    #[default]
    Fastest,
}

/// Server work of one query per unit, relative to one expanded ciphertext, measured with the
/// identity benchmark (`crates/pir/benches/identity.rs`, n = 4096, two moduli, 7 December 2026:
/// 0.25 ms per expanded ciphertext, 4.4 ms per chunk to rescale a second dimension's tensor
/// sum, 0.5 ms to relinearize it; the products themselves are cheap).
pub mod cost {
    /// One ciphertext of the oblivious expansion (a key switch and two additions).
    pub const EXPANSION: f64 = 1.0;
    /// One ciphertext × ciphertext product of the second dimension, per chunk.
    pub const PRODUCT: f64 = 0.05;
    /// Rescaling and relinearizing a second dimension's sum, per chunk (none when d₁ = 1).
    pub const RESCALE_AND_RELINEARIZE: f64 = 20.0;
}

/// Estimated server work per query (in [`cost`] units) for `dims` over `chunks` plaintexts per
/// entry and `calls` PIR calls. The first dimension is left out: it reads every plaintext once
/// whatever the shape, and so is the final mod switch, once per chunk either way.
pub fn estimated_cost(dims: &[usize; 2], chunks: usize, calls: usize) -> f64 {
    let expansion = (dims[0] + dims[1]) as f64 * cost::EXPANSION;
    let second = if dims[1] > 1 {
        dims[1] as f64 * cost::PRODUCT + cost::RESCALE_AND_RELINEARIZE
    } else {
        0.0
    };
    calls as f64 * (expansion + chunks as f64 * second)
}

/// Index-PIR parameters shared by client and server (Apple's `IndexPirParameter`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPirParameter {
    /// Entries (buckets) per database.
    pub entry_count: usize,
    /// Bytes per entry.
    pub entry_size: usize,
    /// Plaintexts per dimension (always 2 here, as Apple's tools use).
    pub dimensions: Vec<usize>,
    /// Indices per query (= cuckoo hash functions).
    pub batch_size: usize,
    /// Keys the server needs.
    pub evaluation_key_config: EvaluationKeyConfig,
    /// Compression used to derive the key config.
    pub key_compression: KeyCompression,
}

impl IndexPirParameter {
    /// MulPir parameters for 2 dimensions: ⌊√P⌋ grown until it covers P plaintexts per chunk,
    /// then (if `uneven`) Apple's BFV reshaping towards a longer first dimension.
    pub fn generate(
        entry_count: usize,
        entry_size: usize,
        batch_size: usize,
        bytes_per_plaintext: usize,
        n: usize,
        uneven: bool,
        key_compression: KeyCompression,
    ) -> Result<IndexPirParameter, PirError> {
        if entry_count == 0 || entry_size == 0 || batch_size == 0 {
            return Err(PirError::InvalidParameters(
                "entry count, entry size and batch size must be positive".into(),
            ));
        }
        let per_chunk = if entry_size <= bytes_per_plaintext {
            entry_count.div_ceil(bytes_per_plaintext / entry_size)
        } else {
            entry_count
        };
        let d = (per_chunk as f64).sqrt().floor() as usize;
        let mut dims = vec![d.max(1), d.max(1)];
        // Guard against floating-point error in the square root.
        while dims[0] > 1 && (dims[0] - 1) * (dims[0] - 1) >= per_chunk {
            dims = vec![dims[0] - 1, dims[0] - 1];
        }
        for i in 0..2 {
            if dims[0] * dims[1] < per_chunk {
                dims[i] += 1;
            }
        }
        while dims[0] * dims[1] < per_chunk {
            dims[1] += 1;
        }
        if uneven {
            let limit = ((dims[0] + dims[1]) * batch_size).next_power_of_two();
            let mut new = dims.clone();
            while ((new[0] + new[1]) * batch_size).next_power_of_two() <= limit {
                dims = new.clone();
                if new[1] == 1 {
                    break;
                }
                new[1] -= 1;
                new[0] = per_chunk.div_ceil(new[1]);
            }
        }
        let expanded = (dims[0] + dims[1]) * batch_size;
        Ok(IndexPirParameter {
            entry_count,
            entry_size,
            evaluation_key_config: evaluation_key_config(expanded, n, key_compression),
            dimensions: dims,
            batch_size,
            key_compression,
        })
    }

    /// Parameters with dimensions picked by `choice`: Apple's uneven shape
    /// ([`IndexPirParameter::generate`]) or, for entries wider than a plaintext under
    /// [`DimensionChoice::Fastest`], the shape with the least [`estimated_cost`].
    #[allow(clippy::too_many_arguments)]
    pub fn generate_with(
        choice: DimensionChoice,
        entry_count: usize,
        entry_size: usize,
        batch_size: usize,
        bytes_per_plaintext: usize,
        n: usize,
        key_compression: KeyCompression,
    ) -> Result<IndexPirParameter, PirError> {
        let mut p = IndexPirParameter::generate(
            entry_count,
            entry_size,
            batch_size,
            bytes_per_plaintext,
            n,
            true,
            key_compression,
        )?;
        let chunks = p.chunk_count(bytes_per_plaintext);
        if choice == DimensionChoice::Fastest && chunks > 1 {
            // Entries span plaintexts: every plaintext of a column is one chunk, so P = the
            // entry count, and each d₁ > 1 costs a ct×ct product per chunk.
            // No shape whose query needs more ciphertexts than Apple's (n selections each).
            let max_expanded = n.max(p.expanded_query_count() * batch_size);
            let best = (1..=entry_count)
                .take_while(|&d1| d1 * d1 <= 4 * entry_count)
                .map(|d1| [entry_count.div_ceil(d1), d1])
                .filter(|d| (d[0] + d[1]) * batch_size <= max_expanded)
                .min_by(|a, b| {
                    let cost = |d: &[usize; 2]| estimated_cost(d, chunks, batch_size);
                    cost(a).total_cmp(&cost(b))
                })
                .map_or_else(|| p.dimensions.clone(), |d| d.to_vec());
            p.dimensions = best;
            p.evaluation_key_config =
                evaluation_key_config(p.expanded_query_count() * batch_size, n, key_compression);
        }
        Ok(p)
    }

    /// Entries per plaintext (1 when an entry spans several plaintexts).
    pub fn entries_per_plaintext(&self, bytes_per_plaintext: usize) -> usize {
        if self.entry_size <= bytes_per_plaintext {
            bytes_per_plaintext / self.entry_size
        } else {
            1
        }
    }

    /// Plaintexts per entry (response ciphertexts per PIR call).
    pub fn chunk_count(&self, bytes_per_plaintext: usize) -> usize {
        self.entry_size.div_ceil(bytes_per_plaintext)
    }

    /// d₀·d₁.
    pub fn per_chunk_plaintext_count(&self) -> usize {
        self.dimensions.iter().product()
    }

    /// Σd: expanded ciphertexts per PIR call.
    pub fn expanded_query_count(&self) -> usize {
        self.dimensions.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity benchmark's shape (1,000 icon-sized values in 3-slot buckets: 186 buckets
    /// per table, 180,031-byte entries of 88 plaintexts, 2 PIR calls) gets a second dimension
    /// of one: with Apple's [24, 8] every chunk paid a tensor rescale and a relinearization,
    /// which made the query 2× slower. Entries within a plaintext keep Apple's shape.
    #[test]
    fn wide_entries_get_a_single_column_and_narrow_ones_apples_shape() {
        let wide = |choice| {
            IndexPirParameter::generate_with(
                choice,
                186,
                180_031,
                2,
                2048,
                4096,
                KeyCompression::NoCompression,
            )
            .unwrap()
        };
        let fastest = wide(DimensionChoice::Fastest);
        let apple = wide(DimensionChoice::Apple);
        assert_eq!(fastest.dimensions, vec![186, 1]);
        assert_eq!(apple.dimensions, vec![24, 8]);
        assert!(estimated_cost(&[186, 1], 88, 2) * 5.0 < estimated_cost(&[24, 8], 88, 2));
        // The key covers the longer expansion (2 × 187 outputs: 9 levels).
        assert_eq!(
            fastest.evaluation_key_config,
            evaluation_key_config(374, 4096, KeyCompression::NoCompression)
        );
        // Many entries of two plaintexts: a second dimension pays for itself again.
        let many = IndexPirParameter::generate_with(
            DimensionChoice::Fastest,
            20_000,
            3000,
            2,
            2048,
            4096,
            KeyCompression::NoCompression,
        )
        .unwrap();
        assert!(many.dimensions[1] > 1, "{:?}", many.dimensions);
        assert!(many.dimensions[0] * many.dimensions[1] >= 20_000);
        for (entries, size) in [(1000, 30), (50_000, 11), (7, 2048)] {
            let narrow = |choice| {
                IndexPirParameter::generate_with(
                    choice,
                    entries,
                    size,
                    2,
                    2048,
                    4096,
                    KeyCompression::NoCompression,
                )
                .unwrap()
            };
            assert_eq!(
                narrow(DimensionChoice::Fastest),
                narrow(DimensionChoice::Apple)
            );
        }
    }
}
