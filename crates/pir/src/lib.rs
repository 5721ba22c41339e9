//! Keyword PIR as Apple's MulPir does it (swift-homomorphic-encryption `PrivateInformationRetrieval`):
//! keyword hashing and sharding, hash buckets, cuckoo tables, MulPir parameters, database
//! processing into Eval-form plaintexts, oblivious query expansion and server evaluation, and a
//! reference client. [`wire`] maps everything to Apple's protobuf messages.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bucket;
pub mod client;
pub mod cuckoo;
pub mod database;
pub mod expansion;
pub mod first_dimension;
pub mod index_pir;
pub mod keyword;
pub mod params;
pub mod server;
pub mod storage;
pub mod wire;

/// Errors from PIR parameter checks, database processing and malformed queries or responses.
#[derive(Debug, thiserror::Error)]
pub enum PirError {
    /// Invalid configuration or parameters.
    #[error("invalid PIR parameters: {0}")]
    InvalidParameters(String),
    /// Cuckoo hashing failed for the given configuration.
    #[error("cuckoo table: {0}")]
    Cuckoo(String),
    /// Malformed or inconsistent data (database file, bucket, query, response).
    #[error("corrupted data: {0}")]
    Corrupted(String),
    /// Error from the HE layer.
    #[error(transparent)]
    He(#[from] sift_he::HeError),
}
