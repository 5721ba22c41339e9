//! Apple-compatible Bloom prefilter: 32-bit FNV-1a and MurmurHash3 (x86_32) with double hashing,
//! the bit layout `NEURLFilterPrefilter` reads, sizing from item count and false-positive rate.
//!
//! The format is fixed by Apple's `SimpleURLFilter` sample (`SwiftBloomFilter`); the known answers
//! in `tests/vectors/bloom/` pin every detail (hash variants, index rule, LSB-first bits, sizing).
#![forbid(unsafe_code)]

mod filter;
mod hash;
mod io;

pub use filter::{BloomFilter, Builder, Params, Sizing, expected_fp_rate, sizing};
pub use hash::{PrefixHasher, bit_index, fnv1_32, fnv1a32, hash_pair, murmur3_x86_32};
pub use io::{
    BIN_FILE, JSON_FILE, Metadata, OutputFormat, PLIST_FILE, Prefilter, plist_xml, read_dir,
    sha256_tag, write_atomic, write_dir,
};

/// Errors of building, writing and reading prefilters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Parameters out of range (e.g. fp rate not in (0,1), zero items, too many bits).
    #[error("invalid prefilter parameters: {0}")]
    Params(String),
    /// A prefilter directory or file is inconsistent or malformed.
    #[error("invalid prefilter {path}: {reason}")]
    Invalid {
        /// File concerned.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// I/O error with the path concerned.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
