//! Cuckoo table with one sub-table per hash function (Apple's `CuckooTable`, `multipleTables`):
//! table b is its own index-PIR database, so a query makes one PIR call per table.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::PirError;
use crate::bucket::{HashBucket, SLOT_OVERHEAD, Slot};
use crate::keyword::{hash_indices_for_hash, keyword_hash};

/// How many buckets the table has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BucketCount {
    /// Start at the count giving `target_load_factor` and grow by `expansion_factor` on failure.
    AllowExpansion {
        /// Growth factor (Apple default 1.1).
        expansion_factor: f64,
        /// Initial load factor (Apple default 0.9).
        target_load_factor: f64,
    },
    /// Exactly this many buckets in total (split evenly over the tables); fail if too small.
    FixedSize {
        /// Total bucket count.
        bucket_count: usize,
    },
}

/// Cuckoo table configuration (Apple's `CuckooTableConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct CuckooConfig {
    /// Number of hash functions = tables = PIR calls per query.
    pub hash_function_count: usize,
    /// Evictions tried before expanding (or failing).
    pub max_eviction_count: usize,
    /// Largest serialized bucket allowed.
    pub max_serialized_bucket_size: usize,
    /// Bucket count strategy.
    pub bucket_count: BucketCount,
    /// Slots per bucket (at most 255).
    pub slot_count: usize,
}

impl CuckooConfig {
    /// Apple's keyword-PIR default: 2 functions, 100 evictions, expansion (1.1, 0.9), 3 slots.
    pub fn default_keyword_pir(max_serialized_bucket_size: usize) -> CuckooConfig {
        CuckooConfig {
            hash_function_count: 2,
            max_eviction_count: 100,
            max_serialized_bucket_size,
            bucket_count: BucketCount::AllowExpansion {
                expansion_factor: 1.1,
                target_load_factor: 0.9,
            },
            slot_count: 3,
        }
    }

    fn validate(&self) -> Result<(), PirError> {
        let bad = |m: &str| Err(PirError::InvalidParameters(m.into()));
        if self.hash_function_count == 0 {
            return bad("hash function count 0");
        }
        if self.slot_count == 0 || self.slot_count > 255 {
            return bad("slot count must be in 1..=255");
        }
        if let BucketCount::AllowExpansion {
            expansion_factor,
            target_load_factor,
        } = self.bucket_count
            && !(expansion_factor > 1.0
                && expansion_factor.is_finite()
                && target_load_factor > 0.0
                && target_load_factor <= 1.0)
        {
            return bad("expansion factor must be > 1 and load factor in (0, 1]");
        }
        Ok(())
    }
}

/// A built cuckoo table: `tables[b][i]` is bucket i of table b.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CuckooTable {
    /// Buckets per table (the index-PIR entry count).
    pub buckets_per_table: usize,
    /// One bucket vector per hash function.
    pub tables: Vec<Vec<HashBucket>>,
}

struct Item {
    hash: u64,
    value: Vec<u8>,
}

impl CuckooTable {
    /// Inserts every (keyword, value) row; `seed` makes the random evictions reproducible.
    /// Duplicate keywords are rejected.
    pub fn build(
        rows: &[(Vec<u8>, Vec<u8>)],
        config: &CuckooConfig,
        seed: u64,
    ) -> Result<CuckooTable, PirError> {
        config.validate()?;
        let h = config.hash_function_count;
        let mut items: Vec<Item> = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            if 1 + SLOT_OVERHEAD + v.len() > config.max_serialized_bucket_size {
                return Err(PirError::Cuckoo(format!(
                    "value of {} bytes does not fit a bucket of at most {} bytes",
                    v.len(),
                    config.max_serialized_bucket_size
                )));
            }
            if v.len() > u16::MAX as usize {
                return Err(PirError::Cuckoo("value longer than 65535 bytes".into()));
            }
            items.push(Item {
                hash: keyword_hash(k),
                value: v.clone(),
            });
        }
        let mut hashes: Vec<u64> = items.iter().map(|i| i.hash).collect();
        hashes.sort_unstable();
        if hashes.windows(2).any(|w| w[0] == w[1]) {
            return Err(PirError::Cuckoo("duplicate keyword (hash)".into()));
        }
        // Buckets needed at full load: by slot count, or by bytes when the byte limit holds
        // fewer values than the slots (icon-sized values; as Apple sizes its first table), so
        // the first size tried is near the one that works instead of many expansions below it.
        let value_bytes: usize = items.iter().map(|i| SLOT_OVERHEAD + i.value.len()).sum();
        let by_bytes =
            value_bytes as f64 / config.max_serialized_bucket_size.saturating_sub(1).max(1) as f64;
        let full = (items.len() as f64 / config.slot_count as f64).max(by_bytes);
        let mut per_table = match config.bucket_count {
            BucketCount::FixedSize { bucket_count } => bucket_count.div_ceil(h).max(1),
            BucketCount::AllowExpansion {
                target_load_factor, ..
            } => ((full / (target_load_factor * h as f64)).ceil() as usize).max(1),
        };
        let mut rng = StdRng::seed_from_u64(seed);
        for _attempt in 0..200 {
            match Self::try_build(&items, config, per_table, &mut rng) {
                Some(t) => return Ok(t),
                None => match config.bucket_count {
                    BucketCount::FixedSize { .. } => {
                        return Err(PirError::Cuckoo(format!(
                            "{} rows do not fit in {} buckets per table",
                            items.len(),
                            per_table
                        )));
                    }
                    BucketCount::AllowExpansion {
                        expansion_factor, ..
                    } => {
                        per_table = ((per_table as f64 * expansion_factor).ceil() as usize)
                            .max(per_table + 1);
                    }
                },
            }
        }
        Err(PirError::Cuckoo("too many expansions".into()))
    }

    fn try_build(
        items: &[Item],
        config: &CuckooConfig,
        per_table: usize,
        rng: &mut StdRng,
    ) -> Option<CuckooTable> {
        let h = config.hash_function_count;
        let mut tables: Vec<Vec<HashBucket>> = vec![vec![HashBucket::default(); per_table]; h];
        // Serialized sizes kept alongside to avoid recomputation.
        let mut sizes: Vec<Vec<usize>> = vec![vec![1; per_table]; h];
        let fits = |size: usize, count: usize, vlen: usize| {
            count < config.slot_count
                && size + SLOT_OVERHEAD + vlen <= config.max_serialized_bucket_size
        };
        for item in items {
            let mut cur = Slot {
                keyword_hash: item.hash,
                value: item.value.clone(),
            };
            let mut placed = false;
            for _ in 0..=config.max_eviction_count {
                let idx = hash_indices_for_hash(cur.keyword_hash, per_table, h);
                if let Some(b) = (0..h).find(|&b| {
                    fits(
                        sizes[b][idx[b]],
                        tables[b][idx[b]].slots.len(),
                        cur.value.len(),
                    )
                }) {
                    sizes[b][idx[b]] += SLOT_OVERHEAD + cur.value.len();
                    tables[b][idx[b]].slots.push(cur);
                    placed = true;
                    break;
                }
                // Evict a random slot from a random candidate bucket where the newcomer then fits.
                let b = rng.gen_range(0..h);
                let bucket = &mut tables[b][idx[b]];
                if bucket.slots.is_empty() {
                    continue;
                }
                let s = rng.gen_range(0..bucket.slots.len());
                let freed = sizes[b][idx[b]] - SLOT_OVERHEAD - bucket.slots[s].value.len();
                if freed + SLOT_OVERHEAD + cur.value.len() > config.max_serialized_bucket_size {
                    continue;
                }
                let evicted = std::mem::replace(&mut bucket.slots[s], cur);
                sizes[b][idx[b]] = freed + SLOT_OVERHEAD + bucket.slots[s].value.len();
                cur = evicted;
            }
            if !placed {
                return None;
            }
        }
        Some(CuckooTable {
            buckets_per_table: per_table,
            tables,
        })
    }

    /// Largest serialized bucket over all tables.
    pub fn max_serialized_bucket_size(&self) -> usize {
        self.tables
            .iter()
            .flatten()
            .map(HashBucket::serialized_size)
            .max()
            .unwrap_or(1)
    }

    /// Number of stored rows.
    pub fn len(&self) -> usize {
        self.tables.iter().flatten().map(|b| b.slots.len()).sum()
    }

    /// Whether the table holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte limit of one icon-sized value per bucket sizes the first table by bytes: the
    /// table holds every row at most one per bucket, with no more buckets than expansion from
    /// that size needs, while small values keep the slot-count sizing.
    #[test]
    fn wide_values_are_sized_by_bytes_and_small_ones_by_slots() {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..60u32)
            .map(|i| (i.to_le_bytes().to_vec(), vec![7u8; 3000]))
            .collect();
        let mut config = CuckooConfig::default_keyword_pir(1 + SLOT_OVERHEAD + 3000);
        config.hash_function_count = 3;
        let t = CuckooTable::build(&rows, &config, 1).unwrap();
        assert_eq!(t.len(), 60);
        assert!(t.tables.iter().flatten().all(|b| b.slots.len() <= 1));
        // 60 rows / (0.9 load × 3 tables) = 23 buckets a table before any expansion.
        assert!(t.buckets_per_table >= 23, "{}", t.buckets_per_table);
        let small: Vec<(Vec<u8>, Vec<u8>)> = (0..600u32)
            .map(|i| (i.to_le_bytes().to_vec(), vec![1u8]))
            .collect();
        let t = CuckooTable::build(&small, &CuckooConfig::default_keyword_pir(1024), 1).unwrap();
        // 600 / (0.9 × 3 slots × 2 tables) = 112 buckets a table, as before.
        assert!(t.buckets_per_table >= 112 && t.buckets_per_table < 140);
    }
}
