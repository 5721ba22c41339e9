//! The OHTTP vector files (`name: hex` lines) and their parser, in one place for the unit tests
//! of `src/gateway.rs` (included there with `#[path]`) and the integration tests (`common`).
#![allow(dead_code)]

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
