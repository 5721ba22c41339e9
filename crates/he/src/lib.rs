//! BFV homomorphic encryption, bit-exact with Apple's `swift-homomorphic-encryption`:
//! modular arithmetic, RNS polynomials, Apple's NTT, CTR_DRBG seed expansion, serialization,
//! key switching, Galois automorphisms, relinearization and modulus switching.
//!
//! Layout: [`params`] (predefined sets) → [`poly::Context`] (shared tables) → [`poly::Poly`]
//! (RNS polynomials) → [`bfv`] (plaintexts, keys, ciphertexts, evaluation) → [`serialize`]
//! (Apple's byte formats, as plain structs for the protobuf layer).

pub mod arith;
pub mod bfv;
pub mod drbg;
pub mod ntt;
pub mod packing;
pub mod params;
pub mod poly;
pub mod serialize;

pub use bfv::{
    Ciphertext, EvalAccumulator, EvalPlaintext, EvaluationKey, KeySwitchKey, Plaintext, SecretKey,
};
pub use drbg::{NistAes128Ctr, SEED_LEN};
pub use params::EncryptionParameters;
pub use poly::{Context, Format, Poly};
pub use serialize::{
    FullCiphertextBytes, SeededCiphertextBytes, SerializedCiphertext, SerializedEvaluationKey,
};

/// Errors from parameter checks, mismatched operands and malformed serialized data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeError {
    /// Unknown or unusable encryption parameters.
    #[error("invalid encryption parameters: {0}")]
    InvalidParameters(String),
    /// Operands with different moduli, formats or sizes.
    #[error("operand mismatch: {0}")]
    Mismatch(&'static str),
    /// Not an odd element in (1, 2n).
    #[error("invalid Galois element {0}")]
    InvalidGaloisElement(usize),
    /// The evaluation key lacks a needed Galois or relinearization key.
    #[error("missing key: {0}")]
    MissingKey(String),
    /// Malformed serialized data.
    #[error("serialization: {0}")]
    Serialization(String),
    /// Plaintext value out of range.
    #[error("plaintext value {0} not below t")]
    PlaintextOutOfRange(u64),
}
