//! The scheme layer: BFV on top of the [`crate::kernels`].
//!
//! - [`params`]: predefined parameter sets; [`poly`]: the shared [`poly::Context`] and RNS
//!   polynomials; [`drbg`]: Apple's CTR_DRBG seed expansion;
//! - [`bfv`]: plaintexts, keys, encryption; key switching and Galois automorphisms
//!   (`bfv/eval_switch.rs`); tensoring (`bfv/tensor.rs`);
//! - [`serialize`]: Apple's byte formats.

pub mod bfv;
pub mod drbg;
pub mod params;
pub mod poly;
pub mod serialize;
