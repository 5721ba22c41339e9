//! BFV homomorphic encryption, bit-exact with Apple's `swift-homomorphic-encryption`:
//! modular arithmetic, RNS polynomials, Apple's NTT, CTR_DRBG seed expansion, serialization,
//! key switching, Galois automorphisms, relinearization and modulus switching.
