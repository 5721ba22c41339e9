//! Symmetric PIR as Apple's `OPRF_P384_AES_GCM_192_NONCE_96_TAG_128` (swift-homomorphic-encryption
//! `SymmetricPir/SymmetricPirDatabase.swift` and `SymmetricPirProtocol.swift`).
//!
//! The server holds an OPRF key. Each database row `(keyword, value)` is replaced by
//! `(keyword′, AES-GCM-192(value))`, where the OPRF output `F(key, keyword)` (48 bytes) gives
//! keyword′ = bytes `[0, 16)`, the AES key = bytes `[24, 48)` and the nonce = bytes `[0, 12)`.
//! A device learns `F(key, keyword)` for its own keyword through one oblivious round trip
//! ([`OprfClient::blind`] → [`OprfPrivateKey::blind_evaluate`] → [`OprfClient::finalize`]), then
//! runs ordinary keyword PIR with keyword′ and decrypts the value it gets back. Without the OPRF
//! key nobody can map keywords to rows or decrypt values, so the PIR answer reveals nothing about
//! other rows.
//!
//! The OPRF is RFC 9497 in VOPRF mode (mode 1) with suite `P384-SHA384`, as swift-crypto's
//! `P384._VOPRF` implements it: the server proves with a DLEQ proof that it used the key whose
//! public key it published, and the client verifies that proof.
#![forbid(unsafe_code)]

mod keyfile;
mod oprf;
mod spir;

pub use keyfile::{read_key_file, write_key_file};
pub use oprf::{BlindEvaluation, OprfClient, OprfPrivateKey, OprfQuery};
pub use spir::{ParsedOprfOutput, Rows, encrypt_entry, process_database};

/// Bytes of the OPRF private key (a big-endian P-384 scalar, Apple's `rawRepresentation`).
pub const PRIVATE_KEY_LEN: usize = 48;
/// Bytes of a compressed SEC1 P-384 point: the public key, a blinded or an evaluated element.
pub const ELEMENT_LEN: usize = 49;
/// Bytes of the DLEQ proof: challenge `c` ‖ response `s`, two 48-byte scalars.
pub const PROOF_LEN: usize = 96;
/// Bytes of the OPRF output (SHA-384).
pub const OUTPUT_LEN: usize = 48;
/// Bytes of the oblivious keyword keyword′ (prefix of the OPRF output).
pub const OBLIVIOUS_KEYWORD_LEN: usize = 16;
/// Bytes of the AES-GCM-192 key (suffix of the OPRF output).
pub const ENTRY_KEY_LEN: usize = 24;
/// Bytes of the AES-GCM nonce (prefix of the OPRF output).
pub const NONCE_LEN: usize = 12;
/// Bytes of the AES-GCM tag appended to every encrypted value.
pub const TAG_LEN: usize = 16;

/// The symmetric-PIR configurations Apple defines (`SymmetricPirConfigType`); there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConfigType {
    /// VOPRF(P-384, SHA-384) for keywords, AES-GCM-192 with a 96-bit nonce and 128-bit tag for values.
    #[default]
    OprfP384AesGcm192Nonce96Tag128,
}

impl ConfigType {
    /// The name used in Apple's JSON configs (`configType`).
    pub const fn name(self) -> &'static str {
        match self {
            ConfigType::OprfP384AesGcm192Nonce96Tag128 => "OPRF_P384_AES_GCM_192_NONCE_96_TAG_128",
        }
    }

    /// Parses the JSON name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        (name == Self::OprfP384AesGcm192Nonce96Tag128.name())
            .then_some(Self::OprfP384AesGcm192Nonce96Tag128)
    }

    /// The protobuf enum value (`pir.v1.SymmetricPirConfigType`).
    pub const fn proto_value(self) -> i32 {
        match self {
            ConfigType::OprfP384AesGcm192Nonce96Tag128 => 1,
        }
    }

    /// The configuration for a protobuf enum value; `None` for UNSPECIFIED (0) or unknown values.
    pub fn from_proto_value(v: i32) -> Option<Self> {
        (v == 1).then_some(Self::OprfP384AesGcm192Nonce96Tag128)
    }
}

/// Errors of key handling, the OPRF exchange and entry decryption.
#[derive(Debug, thiserror::Error)]
pub enum OprfError {
    /// The private key is not a 48-byte scalar in [1, n).
    #[error("invalid OPRF private key: {0}")]
    InvalidKey(String),
    /// A point (public key, blinded or evaluated element) is not a valid compressed P-384 point.
    #[error("invalid {0}: not a compressed P-384 point")]
    InvalidElement(&'static str),
    /// The proof has the wrong length or holds scalars out of range.
    #[error("invalid OPRF proof encoding")]
    InvalidProof,
    /// The server's proof does not verify against its public key.
    #[error("OPRF proof verification failed")]
    ProofVerification,
    /// The OPRF input is unusable (longer than 65535 bytes, or it hashes to the identity).
    #[error("invalid OPRF input")]
    InvalidInput,
    /// An encrypted entry is too short or its tag does not verify.
    #[error("cannot decrypt symmetric-PIR entry")]
    Decryption,
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}
