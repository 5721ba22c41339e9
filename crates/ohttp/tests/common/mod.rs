//! Shared helpers of the integration tests: vector files and RFC 9458's key.
#![allow(dead_code)]

use sift_ohttp::config::SymmetricSuite;
use sift_ohttp::{Gateway, GatewayConfig, GatewayKey};

/// RFC 9458 Appendix A, `name: hex` lines.
pub const RFC9458: &str = include_str!("../../../../tests/vectors/ohttp/rfc9458_appendix_a.txt");
/// RFC 9292 §5 examples, `name: hex` lines.
pub const RFC9292: &str = include_str!("../../../../tests/vectors/ohttp/rfc9292_examples.txt");

/// The value of `name` in a vector file (`name: hex` lines, `#` comments).
pub fn vector(text: &str, name: &str) -> Vec<u8> {
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("vector {name} missing"));
    hex::decode(line.trim()).unwrap_or_else(|e| panic!("vector {name}: {e}"))
}

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
