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
pub mod overlay;
pub mod params;
pub mod server;
pub mod storage;
pub mod wire;
pub mod words;

/// Errors from PIR parameter checks, database processing and malformed queries or responses,
/// split by whose fault they are ([`PirError::Malformed`]: the sender's;
/// [`PirError::DamagedDataset`]: the server's own data).
#[derive(Debug, thiserror::Error)]
pub enum PirError {
    /// Invalid configuration or parameters.
    #[error("invalid PIR parameters: {0}")]
    InvalidParameters(String),
    /// Cuckoo hashing failed for the given configuration.
    #[error("cuckoo table: {0}")]
    Cuckoo(String),
    /// A query, evaluation key, reply or hash bucket that is malformed or does not fit the
    /// parameters: the sender's fault (a server answers 4xx; the sender should fetch the
    /// configuration again and rebuild its request).
    #[error("malformed input: {0}")]
    Malformed(String),
    /// The dataset loaded from disk (a processed database or parameters file) is damaged or
    /// does not match its parameters: the operator's fault, never the client's (a server
    /// answers 5xx and logs the file; rebuild the dataset with `sift build`).
    #[error("damaged dataset: {0}")]
    DamagedDataset(String),
    /// Error from the HE layer.
    #[error(transparent)]
    He(#[from] sift_he::HeError),
}
