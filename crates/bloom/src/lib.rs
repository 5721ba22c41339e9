//! Apple-compatible Bloom prefilter: 32-bit FNV-1a and MurmurHash3 (x86_32) with double hashing,
//! the bit layout `NEURLFilterPrefilter` reads, sizing from item count and false-positive rate.
