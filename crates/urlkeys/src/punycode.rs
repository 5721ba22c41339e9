//! Host names to ASCII: lowercase, and Punycode (RFC 3492) for non-ASCII labels.
//!
//! Apple's `NEURLFilterManager` documentation says the system Punycodes the requested URL before
//! parsing, so keys must be Punycoded too. This is IDNA "lite": labels are lowercased
//! (`char::to_lowercase`) and encoded; full UTS #46 mapping/NFC normalisation is not done, so
//! exotic inputs (compatibility characters, unnormalised combining marks) may differ from the
//! device. Plain lowercase Unicode labels, the common case, encode exactly.

use crate::KeyError;

const BASE: u32 = 36;
const TMIN: u32 = 1;
const TMAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 128;

fn adapt(mut delta: u32, numpoints: u32, first: bool) -> u32 {
    delta /= if first { DAMP } else { 2 };
    delta += delta / numpoints;
    let mut k = 0;
    while delta > ((BASE - TMIN) * TMAX) / 2 {
        delta /= BASE - TMIN;
        k += BASE;
    }
    k + (((BASE - TMIN + 1) * delta) / (delta + SKEW))
}

fn digit(d: u32) -> char {
    // 0..25 → a..z, 26..35 → 0..9
    if d < 26 {
        (b'a' + d as u8) as char
    } else {
        (b'0' + (d - 26) as u8) as char
    }
}

/// Punycode-encodes one label (RFC 3492 section 6.3); `None` on arithmetic overflow.
fn encode_label(input: &[char]) -> Option<String> {
    let mut out: String = input.iter().filter(|c| c.is_ascii()).collect();
    let b = out.len() as u32;
    let mut h = b;
    if b > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias) = (INITIAL_N, 0u32, INITIAL_BIAS);
    let total = input.len() as u32;
    while h < total {
        let m = input.iter().map(|&c| c as u32).filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(h + 1)?)?;
        n = m;
        for &c in input {
            let c = c as u32;
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        TMIN
                    } else if k >= bias + TMAX {
                        TMAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, h + 1, h == b);
                delta = 0;
                h += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(out)
}

/// Lowercases a host and Punycodes its non-ASCII labels (`bücher.de` → `xn--bcher-kva.de`).
/// Ideographic full stops (U+3002, U+FF0E, U+FF61) separate labels as in IDNA.
pub fn host_to_ascii(host: &str) -> Result<String, KeyError> {
    if host.is_ascii() {
        return Ok(host.to_ascii_lowercase());
    }
    let mut labels = Vec::new();
    for label in host.split(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}']) {
        let chars: Vec<char> = label.chars().flat_map(char::to_lowercase).collect();
        if chars.iter().all(char::is_ascii) {
            labels.push(chars.into_iter().collect());
        } else {
            let enc = encode_label(&chars).ok_or_else(|| KeyError::BadHost(host.to_string()))?;
            labels.push(format!("xn--{enc}"));
        }
    }
    Ok(labels.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3492 section 7.1 sample strings and common IDNs.
    #[test]
    fn known_labels() {
        for (host, expected) in [
            ("bücher.de", "xn--bcher-kva.de"),
            ("MÜNCHEN.de", "xn--mnchen-3ya.de"),
            ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
            // RFC 3492 7.1 (B) Chinese (simplified): 他们为什么不说中文
            ("他们为什么不说中文", "xn--ihqwcrb4cv8a8dqg056pqjye"),
            ("Example.COM", "example.com"),
        ] {
            assert_eq!(host_to_ascii(host).unwrap(), expected, "{host}");
        }
    }
}
