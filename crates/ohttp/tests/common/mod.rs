//! Shared helpers of the integration tests: vector files and RFC 9458's key.
#![allow(dead_code)]

use sift_ohttp::config::SymmetricSuite;
use sift_ohttp::{Gateway, GatewayConfig, GatewayKey};

mod vectors;

pub use vectors::*;

/// A 32-byte array from a vector.
pub fn vector32(text: &str, name: &str) -> [u8; 32] {
    vector(text, name).try_into().expect("32 bytes")
}

/// RFC 9458 Appendix A's gateway key (identifier 1, both suites).
pub fn rfc_key() -> GatewayKey {
    GatewayKey::from_secret(
        1,
        &vector(RFC9458, "server_secret_key"),
        SymmetricSuite::DEFAULT.to_vec(),
    )
    .unwrap()
}

/// A gateway holding only RFC 9458's key.
pub fn rfc_gateway(config: GatewayConfig) -> Gateway {
    Gateway::with_keys(vec![rfc_key()], config).unwrap()
}
