//! The words a [`crate::first_dimension::CompactDatabase`] computes on: in memory, or a
//! checked range of a read-only mapped `.words` file (see [`crate::storage`]).

use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

/// A compact database's words: owned, or a range of a mapped file.
#[derive(Clone)]
pub enum Words {
    /// Words in memory.
    Owned(Vec<u32>),
    /// `len` words at byte offset `at` of a mapped file (checked when made: in range and
    /// aligned, see [`Words::mapped`]).
    Mapped {
        /// The map (shared by the shard's tables).
        map: Arc<Mmap>,
        /// Byte offset of the first word.
        at: usize,
        /// Number of words.
        len: usize,
    },
}

impl Words {
    /// `len` words at byte offset `at` of `map`, or None when the range leaves the map, is
    /// not 4-byte aligned in memory, or the machine is not little-endian (the file's order).
    pub fn mapped(map: Arc<Mmap>, at: usize, len: usize) -> Option<Words> {
        let end = len.checked_mul(4)?.checked_add(at)?;
        if end > map.len()
            || !cfg!(target_endian = "little")
            || !(map.as_ptr() as usize + at).is_multiple_of(std::mem::align_of::<u32>())
        {
            return None;
        }
        Some(Words::Mapped { map, at, len })
    }

    /// Whether the words come from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Words::Mapped { .. })
    }
}

impl Default for Words {
    fn default() -> Self {
        Words::Owned(Vec::new())
    }
}

impl Deref for Words {
    type Target = [u32];

    fn deref(&self) -> &[u32] {
        match self {
            Words::Owned(v) => v,
            Words::Mapped { map, at, len } => {
                // SAFETY: `Words::mapped` is the only constructor of this variant; it checked
                // that bytes `at .. at + 4·len` lie inside the map and that their start is
                // aligned for u32, and that the machine is little-endian (the file's order).
                // Every bit pattern is a valid u32. The map is read-only and lives as long as
                // `self` (the Arc), which bounds the returned borrow. The mapped file is never
                // written: dataset versions are immutable (new files are written under a new
                // name and renamed into place, which gives them a new inode), so the bytes
                // cannot change under the borrow.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(*at).cast::<u32>(), *len) }
            }
        }
    }
}

impl PartialEq for Words {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Words {}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "owned" };
        write!(f, "{} {kind} words", self.len())
    }
}
