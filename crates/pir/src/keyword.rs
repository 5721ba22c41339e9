//! Keyword hashing, cuckoo hash indices and sharding (Apple's `HashKeyword`, `ShardingFunction`).

use sha2::{Digest, Sha256};

use crate::PirError;

/// Retries per hash function when an index repeats an earlier one (Apple's `maxRetries`).
pub const MAX_RETRIES: u8 = 10;

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The keyword hash stored in hash buckets: first 8 bytes of SHA-256(keyword), little-endian.
pub fn keyword_hash(keyword: &[u8]) -> u64 {
    le_u64(&Sha256::digest(keyword))
}

fn index_from_hash(hash: u64, bucket_count: usize, counter: u8) -> usize {
    let mut h = Sha256::new();
    h.update(hash.to_be_bytes());
    h.update([counter]);
    (le_u64(&h.finalize()) % bucket_count as u64) as usize
}

/// The `hash_function_count` candidate buckets of a keyword among `bucket_count` buckets
/// (repeats avoided with up to [`MAX_RETRIES`] counter increments, as Apple's `hashIndices`).
pub fn hash_indices(keyword: &[u8], bucket_count: usize, hash_function_count: usize) -> Vec<usize> {
    hash_indices_for_hash(keyword_hash(keyword), bucket_count, hash_function_count)
}

/// [`hash_indices`] from a precomputed [`keyword_hash`].
pub fn hash_indices_for_hash(
    hash: u64,
    bucket_count: usize,
    hash_function_count: usize,
) -> Vec<usize> {
    let bucket_count = bucket_count.max(1);
    let mut out: Vec<usize> = Vec::with_capacity(hash_function_count);
    for _ in 0..hash_function_count {
        let mut counter = 0u8;
        let mut idx = index_from_hash(hash, bucket_count, counter);
        while out.contains(&idx) && counter < MAX_RETRIES {
            counter += 1;
            idx = index_from_hash(hash, bucket_count, counter);
        }
        out.push(idx);
    }
    out
}

/// How keywords are assigned to shards (`PIRShardingFunction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ShardingFunction {
    /// LE_u64(SHA-256(keyword)[0..8]) mod shardCount.
    #[default]
    Sha256,
    /// (LE_u64(SHA-256(keyword)[0..8]) mod other) mod shardCount; lets two use cases with
    /// `other` and `shardCount` shards share the shard of a keyword.
    DoubleMod {
        /// The other use case's shard count.
        other_shard_count: u32,
    },
}

impl ShardingFunction {
    /// The shard of `keyword` among `shard_count` shards.
    pub fn shard_index(&self, keyword: &[u8], shard_count: usize) -> Result<usize, PirError> {
        if shard_count == 0 {
            return Err(PirError::InvalidParameters("shard count 0".into()));
        }
        if let ShardingFunction::DoubleMod {
            other_shard_count: 0,
        } = self
        {
            return Err(PirError::InvalidParameters(
                "doubleMod other shard count 0".into(),
            ));
        }
        Ok(self.shard_of_hash(keyword_hash(keyword), shard_count))
    }

    /// The shard of a keyword whose [`keyword_hash`] is `h`, among `shard_count` shards (at
    /// least 1; a doubleMod other shard count of 0 counts as 1): the one mapping that builds,
    /// updates and [`ShardingFunction::shard_index`] share.
    pub fn shard_of_hash(&self, h: u64, shard_count: usize) -> usize {
        let v = match *self {
            ShardingFunction::Sha256 => h,
            ShardingFunction::DoubleMod { other_shard_count } => {
                h % u64::from(other_shard_count.max(1))
            }
        };
        (v % shard_count as u64) as usize
    }
}
