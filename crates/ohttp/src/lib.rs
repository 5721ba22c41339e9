//! Oblivious HTTP gateway (RFC 9458) with binary HTTP (RFC 9292): key configs, decapsulation
//! and encapsulated responses.
