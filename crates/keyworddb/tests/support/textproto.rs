//! Text-format helpers for tests that write keyword-database input by hand. Shared by path
//! between the `keyworddb` crate's tests and the `sift` binary's integration tests.

/// Writes `b` as a text-format string with octal escapes for everything not printable.
pub fn quote(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        match c {
            b'"' | b'\\' => s.push_str(&format!("\\{}", c as char)),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\{c:03o}")),
        }
    }
    s.push('"');
    s
}
