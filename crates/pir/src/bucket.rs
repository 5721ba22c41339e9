//! Hash buckets: the cuckoo-table entries (Apple's `HashBucket`). Serialized as
//! `u8 slotCount ‖ per slot (u64 LE keywordHash ‖ u16 LE valueLen ‖ value)`.

use crate::PirError;

/// Bytes per slot besides the value: keyword hash (8) and value length (2).
pub const SLOT_OVERHEAD: usize = 10;

/// One (keyword hash, value) slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// [`crate::keyword::keyword_hash`] of the keyword.
    pub keyword_hash: u64,
    /// The value (at most u16::MAX bytes).
    pub value: Vec<u8>,
}

/// A bucket of at most 255 slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashBucket {
    /// The slots in insertion order.
    pub slots: Vec<Slot>,
}

/// Serialized size of a bucket holding values of the given lengths.
pub fn serialized_size(value_lens: impl IntoIterator<Item = usize>) -> usize {
    1 + value_lens
        .into_iter()
        .map(|l| SLOT_OVERHEAD + l)
        .sum::<usize>()
}

impl HashBucket {
    /// Serialized size in bytes.
    pub fn serialized_size(&self) -> usize {
        serialized_size(self.slots.iter().map(|s| s.value.len()))
    }

    /// Serializes (errors on more than 255 slots or a value over 65535 bytes).
    pub fn serialize(&self) -> Result<Vec<u8>, PirError> {
        let count = u8::try_from(self.slots.len())
            .map_err(|_| PirError::InvalidParameters("more than 255 slots".into()))?;
        let mut out = Vec::with_capacity(self.serialized_size());
        out.push(count);
        for s in &self.slots {
            let len = u16::try_from(s.value.len())
                .map_err(|_| PirError::InvalidParameters("value longer than 65535 bytes".into()))?;
            out.extend_from_slice(&s.keyword_hash.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&s.value);
        }
        Ok(out)
    }

    /// Parses a serialized bucket; trailing (zero padding) bytes are ignored, as Apple does.
    /// An empty input is an empty bucket.
    pub fn deserialize(bytes: &[u8]) -> Result<HashBucket, PirError> {
        let Some((&count, mut rest)) = bytes.split_first() else {
            return Ok(HashBucket::default());
        };
        let mut slots = Vec::with_capacity(count as usize);
        for _ in 0..count {
            if rest.len() < SLOT_OVERHEAD {
                return Err(PirError::Malformed("truncated hash bucket slot".into()));
            }
            let keyword_hash = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
            let len = u16::from_le_bytes([rest[8], rest[9]]) as usize;
            rest = &rest[SLOT_OVERHEAD..];
            if rest.len() < len {
                return Err(PirError::Malformed("truncated hash bucket value".into()));
            }
            slots.push(Slot {
                keyword_hash,
                value: rest[..len].to_vec(),
            });
            rest = &rest[len..];
        }
        Ok(HashBucket { slots })
    }

    /// The value of the first slot whose hash matches.
    pub fn find(&self, keyword_hash: u64) -> Option<&[u8]> {
        self.slots
            .iter()
            .find(|s| s.keyword_hash == keyword_hash)
            .map(|s| s.value.as_slice())
    }
}
