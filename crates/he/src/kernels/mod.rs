//! The kernel layer: word arithmetic on rows of residues, with no notion of keys or
//! ciphertexts. Every operation that has SIMD forms keeps its scalar, AVX2 and AVX-512 kernels
//! side by side and picks one in a single place from a [`simd::Level`].
//!
//! - [`arith`]: one modulus (Barrett, Shoup, primes, roots);
//! - [`ntt`]: Apple's negacyclic NTT (`ntt/avx2.rs`, `ntt/avx512.rs` beside the scalar loops);
//! - `keyprod`: key products, reductions, centered lifts and Galois gathers of the key switch
//!   and the tensor (`keyprod/avx2.rs`, `keyprod/avx512.rs`);
//! - `rows`: the 32-bit-lane row loops of the tensor (Garner digits, Horner rows, products);
//! - [`packing`], [`pack28`]: coefficients to bytes, 28-bit row packing;
//! - [`stream`]: non-temporal stores; [`aligned_alloc`]: the cache-line allocator;
//! - [`simd`]: the level (detected once, capped) and the dispatch.

pub mod aligned_alloc;
pub mod arith;
pub(crate) mod keyprod;
pub mod ntt;
pub mod pack28;
pub mod packing;
pub(crate) mod rows;
pub mod simd;
pub mod stream;
