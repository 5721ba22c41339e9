//! BFV homomorphic encryption, bit-exact with Apple's `swift-homomorphic-encryption`:
//! modular arithmetic, RNS polynomials, Apple's NTT, CTR_DRBG seed expansion, serialization,
//! key switching, Galois automorphisms, relinearization and modulus switching.
//!
//! Layout: [`params`] (predefined sets) → [`poly::Context`] (shared tables) → [`poly::Poly`]
//! (RNS polynomials) → [`bfv`] (plaintexts, keys, ciphertexts, evaluation) → [`serialize`]
//! (Apple's byte formats, as plain structs for the protobuf layer).
//!
//! Typical server flow (MulPIR):
//! ```
//! use sift_he::{bfv, Ciphertext, Context, EvalAccumulator, Format, Plaintext, SecretKey};
//! let ctx = Context::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
//! let mut rng = rand::thread_rng();
//! // Client side (Apple does this): key, seeded query.
//! let sk = SecretKey::generate(&ctx, &mut rng);
//! let query = bfv::encrypt(&ctx, &Plaintext::new(&ctx, &[1]).unwrap(), &sk, &mut rng);
//! let wire = query.serialize(&ctx, false); // SerializedCiphertext::Seeded
//! // Server side: read the query (Coeff form, ciphertext moduli), multiply by database plaintexts.
//! let mut ct = Ciphertext::deserialize(&ctx, &wire, None, Format::Coeff).unwrap();
//! ct.convert_to(&ctx, Format::Eval);
//! let k = ctx.ciphertext_moduli_count();
//! let db = Plaintext::from_bytes(&ctx, b"hello").unwrap().to_eval(&ctx, k);
//! let mut acc = EvalAccumulator::new(&ctx, k, 2);
//! acc.add_product(&ctx, &ct, &db).unwrap();
//! let mut resp = acc.finish(&ctx);
//! resp.mod_switch_down_to_single(&ctx).unwrap();
//! let out = resp.serialize(&ctx, true); // Full, with skipLSBs
//! // Client side again.
//! let back = Ciphertext::deserialize(&ctx, &out, Some(1), Format::Coeff).unwrap();
//! let pt = bfv::decrypt(&ctx, &back, &sk).unwrap();
//! assert_eq!(&pt.to_bytes(&ctx)[..5], b"hello");
//! ```
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod kernels;
pub mod scheme;

pub use kernels::{aligned_alloc, arith, ntt, pack28, packing, simd, stream};
pub use scheme::{bfv, drbg, params, poly, serialize};

pub use bfv::{
    Ciphertext, EvalAccumulator, EvalPlaintext, EvaluationKey, KeySwitchKey, Plaintext, SecretKey,
    TensorAccumulator,
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
