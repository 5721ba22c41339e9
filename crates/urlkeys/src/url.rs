//! The one URL parser of the crate: a URL (with or without scheme) split into the parts that
//! sub-URLs and keys are made of. Two forms with one set of rules:
//! - [`parse_url`] / [`parse_url_parts`], the reference: any input, Punycode for non-ASCII
//!   hosts, the exact [`KeyError`] for a rejected URL;
//! - [`parse_ascii`], the fast form for trimmed, lowercased ASCII input: ranges of the input,
//!   no allocation; `None` whenever it is unsure (the caller then asks the reference, which
//!   decides, errors included).
//!
//! [`crate::SubUrlWalker`], [`crate::normalize_key`] and [`crate::ParsingConfiguration`] all
//! parse here.

use crate::punycode::host_to_ascii;
use crate::{KeyError, MAX_KEY};
use std::ops::Range;

/// A URL split into the parts sub-URL generation needs (all lowercased, host Punycoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Scheme, if one was given.
    pub scheme: Option<String>,
    /// Host without `www.` (IPv6 literals keep their brackets).
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Path as given (starts with `/` or is empty).
    pub path: String,
    /// Query without `?` (absent when missing or empty).
    pub query: Option<String>,
    /// Fragment without `#` (absent when missing or empty).
    pub fragment: Option<String>,
}

impl ParsedUrl {
    /// Port used for the `host:port` forms: explicit, else 443 (https, or no scheme) / 80 (http).
    pub fn effective_port(&self) -> Option<u16> {
        self.port.or(default_port(self.scheme.as_deref()))
    }
}

/// The port a scheme implies (lowercase; none given counts as https): 443 for https and wss,
/// 80 for http and ws, none for others.
fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme {
        None | Some("https") | Some("wss") => Some(443),
        Some("http") | Some("ws") => Some(80),
        _ => None,
    }
}

/// Parses a URL (with or without scheme) into lowercased parts; rejects whitespace, control
/// characters, wildcards in the host, bad ports and empty hosts. This is the parse of the
/// iOS 26 default configuration; [`crate::ParsingConfiguration::parse_url`] parses under others.
pub fn parse_url(input: &str) -> Result<ParsedUrl, KeyError> {
    parse_url_parts(input, PartsOptions::default())
}

/// How [`parse_url_parts`] treats case, `www.` and a placeholder host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartsOptions {
    /// Keep the case of path, query and fragment (hosts and schemes are always lowercased).
    pub keep_case: bool,
    /// Strip one leading `www.` label (when more labels follow).
    pub strip_www: bool,
    /// Accept the placeholder `%*` as a host (keys written under an excluded domain).
    pub placeholder_host: bool,
}

impl Default for PartsOptions {
    fn default() -> Self {
        Self {
            keep_case: false,
            strip_www: true,
            placeholder_host: false,
        }
    }
}

/// Appends `s` with every non-ASCII character percent-encoded as its UTF-8 bytes (upper-case
/// hex), as WebKit and `URL` serialise a URL before the device parses it.
fn push_percent_encoded(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

/// [`parse_url`] with the case, `www.` and placeholder rules chosen by `o`.
pub(crate) fn parse_url_parts(input: &str, o: PartsOptions) -> Result<ParsedUrl, KeyError> {
    let s = input.trim();
    if s.len() > MAX_KEY {
        return Err(KeyError::TooLong);
    }
    let bad = |c: char| c.is_whitespace() || c.is_control();
    if (s.is_ascii() && s.bytes().any(|b| b <= b' ' || b == 0x7f))
        || (!s.is_ascii() && s.chars().any(bad))
    {
        return Err(KeyError::Whitespace);
    }
    let (scheme, rest) = match s.find("://") {
        Some(i)
            if i > 0
                && s[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(s[..i].to_ascii_lowercase()), &s[i + 3..])
        }
        _ => (None, s),
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_port(hostport)?;
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(KeyError::NoHost);
    }
    let host = if o.placeholder_host && host == crate::parsing::PLACEHOLDER {
        host.to_string()
    } else {
        if host.contains('*') {
            return Err(KeyError::Wildcard);
        }
        let host = if host.starts_with('[') {
            host.to_ascii_lowercase()
        } else {
            host_to_ascii(host)?
        };
        if !host.starts_with('[')
            && (host.split('.').any(str::is_empty)
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(KeyError::BadHost(host));
        }
        match host.strip_prefix("www.") {
            Some(h) if o.strip_www && h.contains('.') => h.to_string(),
            _ => host,
        }
    };
    let (path, query, fragment) = split_tail(tail);
    let part = |x: &str| {
        let mut out = String::with_capacity(x.len());
        push_percent_encoded(&mut out, x);
        if !o.keep_case {
            out.make_ascii_lowercase();
        }
        out
    };
    let nonempty = |o: Option<&str>| o.filter(|x| !x.is_empty()).map(part);
    Ok(ParsedUrl {
        scheme,
        host,
        port,
        path: part(path),
        query: nonempty(query),
        fragment: nonempty(fragment),
    })
}

fn split_port(hostport: &str) -> Result<(&str, Option<u16>), KeyError> {
    if hostport.starts_with('[') {
        return match hostport.find(']') {
            Some(i) => {
                let (h, rest) = hostport.split_at(i + 1);
                match rest.strip_prefix(':') {
                    Some(p) => Ok((h, parse_port(p)?)),
                    None if rest.is_empty() => Ok((h, None)),
                    None => Err(KeyError::BadHost(hostport.to_string())),
                }
            }
            None => Err(KeyError::BadHost(hostport.to_string())),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((h, parse_port(p)?)),
        None => Ok((hostport, None)),
    }
}

fn parse_port(p: &str) -> Result<Option<u16>, KeyError> {
    if p.is_empty() {
        return Ok(None);
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyError::BadPort(p.to_string()));
    }
    p.parse()
        .map(Some)
        .map_err(|_| KeyError::BadPort(p.to_string()))
}

pub(crate) fn is_ip_literal(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    // Four dot-separated decimal labels of value at most 255 (leading zeros allowed, as
    // `u8::from_str` accepts them); stops at the first label that is not one.
    let mut labels = 0;
    for label in host.split('.') {
        labels += 1;
        let mut v = 0u32;
        for c in label.bytes() {
            if !c.is_ascii_digit() {
                return false;
            }
            v = (v * 10 + u32::from(c - b'0')).min(256);
        }
        if labels > 4 || label.is_empty() || v > 255 {
            return false;
        }
    }
    labels == 4
}

/// Splits what follows the authority into path, query (after the first `?` before any `#`)
/// and fragment (after the first `#`), as given (`None` when the separator is absent).
pub(crate) fn split_tail(tail: &str) -> (&str, Option<&str>, Option<&str>) {
    let (before_frag, fragment) = match tail.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match before_frag.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_frag, None),
    };
    (path, query, fragment)
}

/// `prefix + host [+ ":" + explicit port] + path [+ "?" + query] [+ "#" + fragment]`: the key
/// form of a parsed URL.
pub(crate) fn join_key(prefix: &str, u: &ParsedUrl) -> String {
    let mut key = String::with_capacity(prefix.len() + u.host.len() + u.path.len() + 16);
    key.push_str(prefix);
    key.push_str(&u.host);
    if let Some(p) = u.port {
        key.push(':');
        key.push_str(&p.to_string());
    }
    key.push_str(&u.path);
    if let Some(q) = &u.query {
        key.push('?');
        key.push_str(q);
    }
    if let Some(f) = &u.fragment {
        key.push('#');
        key.push_str(f);
    }
    key
}

/// Where the parts of a parsed URL lie in the string it was parsed from ([`parse_ascii`]) or
/// copied into ([`crate::SubUrlWalker`]).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Host without `www.` and without the trailing dot.
    pub(crate) host: Range<usize>,
    /// Path without trailing slashes.
    pub(crate) path: Range<usize>,
    /// Query without `?` (None when absent or empty).
    pub(crate) query: Option<Range<usize>>,
    /// Fragment without `#` (None when absent or empty).
    pub(crate) fragment: Option<Range<usize>>,
    /// Port of the `host:port` forms (explicit, else the scheme's default).
    pub(crate) port: Option<u16>,
    /// Port given in the URL.
    pub(crate) explicit_port: Option<u16>,
    /// End of the path as given (with its trailing slashes; `path` ends before them).
    pub(crate) path_end: usize,
}

/// Appends `":" + port` in decimal (no formatting machinery: this runs once per URL).
pub(crate) fn push_port(out: &mut String, port: u16) {
    let mut digits = [0u8; 5];
    let mut n = port;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(':');
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Parses a trimmed, lowercased, ASCII URL of at most [`MAX_KEY`] bytes into ranges, with the
/// rules of [`parse_url`]. `None` when the URL is invalid or outside the fast path (IPv6
/// literals); the caller then asks [`parse_url`], which also produces the exact error.
pub(crate) fn parse_ascii(s: &str) -> Option<Layout> {
    let b = s.as_bytes();
    // A fold without early exit: vectorised, and URLs are short.
    if b.iter()
        .fold(false, |bad, &c| bad | (c <= b' ') | (c == 0x7f))
    {
        return None;
    }
    // Scheme: text before the first "://", if non-empty and made of scheme characters. Scanning
    // scheme characters from the start finds that "://" if it qualifies (':' ends the scan).
    let is_scheme = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.');
    let mut scheme: Option<&str> = None;
    let mut rest = 0;
    let i = b.iter().position(|c| !is_scheme(c)).unwrap_or(b.len());
    if i > 0 && b[i..].starts_with(b"://") {
        scheme = Some(&s[..i]);
        rest = i + 3;
    }
    let auth_end = b[rest..]
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .map_or(b.len(), |i| rest + i);
    let hp_start = b[rest..auth_end]
        .iter()
        .rposition(|&c| c == b'@')
        .map_or(rest, |i| rest + i + 1);
    if b.get(hp_start) == Some(&b'[') {
        return None;
    }
    let (host_end, port) = match b[hp_start..auth_end].iter().rposition(|&c| c == b':') {
        Some(i) => {
            let digits = &b[hp_start + i + 1..auth_end];
            let port = if digits.is_empty() {
                None
            } else {
                if !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                Some(s[hp_start + i + 1..auth_end].parse::<u16>().ok()?)
            };
            (hp_start + i, port)
        }
        None => (auth_end, None),
    };
    let mut host_start = hp_start;
    let mut host_end = host_end;
    if host_end > host_start && b[host_end - 1] == b'.' {
        host_end -= 1;
    }
    let host = &b[host_start..host_end];
    // Non-empty labels of DNS characters (this also rejects '*', '@', ':' and empty hosts).
    if host.is_empty()
        || host[0] == b'.'
        || host[host.len() - 1] == b'.'
        || host.windows(2).any(|w| w == b"..")
        || !host
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return None;
    }
    if host.starts_with(b"www.") && host[4..].contains(&b'.') {
        host_start += 4;
    }
    let tail_end = b.len();
    let frag_at = b[auth_end..]
        .iter()
        .position(|&c| c == b'#')
        .map(|i| auth_end + i);
    let before_frag = frag_at.unwrap_or(tail_end);
    let query_at = b[auth_end..before_frag]
        .iter()
        .position(|&c| c == b'?')
        .map(|i| auth_end + i);
    let path_end = query_at.unwrap_or(before_frag);
    let mut full_end = path_end;
    while full_end > auth_end && b[full_end - 1] == b'/' {
        full_end -= 1;
    }
    let nonempty = |r: Range<usize>| (!r.is_empty()).then_some(r);
    let explicit_port = port;
    let port = port.or(default_port(scheme));
    Some(Layout {
        host: host_start..host_end,
        path: auth_end..full_end,
        query: query_at.and_then(|q| nonempty(q + 1..before_frag)),
        fragment: frag_at.and_then(|f| nonempty(f + 1..tail_end)),
        port,
        explicit_port,
        path_end,
    })
}

/// [`crate::normalize_key`] for ASCII input on the fast parser: `None` when the input is not
/// ASCII, is invalid or needs the reference parser (which then decides, errors included).
pub(crate) fn normalize_ascii(input: &str) -> Option<String> {
    let s = input.trim();
    if !s.is_ascii() || s.len() > MAX_KEY {
        return None;
    }
    let low = s.to_ascii_lowercase();
    let l = parse_ascii(&low)?;
    let mut key = String::with_capacity(low.len());
    key.push_str(&low[l.host]);
    if let Some(p) = l.explicit_port {
        push_port(&mut key, p);
    }
    key.push_str(&low[l.path.start..l.path_end]);
    if let Some(q) = l.query {
        key.push('?');
        key.push_str(&low[q]);
    }
    if let Some(f) = l.fragment {
        key.push('#');
        key.push_str(&low[f]);
    }
    (key.len() <= MAX_KEY).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_like_u8_parsing() {
        let slow = |h: &str| {
            h.starts_with('[')
                || (h.split('.').count() == 4 && h.split('.').all(|l| l.parse::<u8>().is_ok()))
        };
        for h in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.1.1.256",
            "01.02.03.004",
            "0000000001.1.1.1",
            "99999999999.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "a.1.1.1",
            "1.1.1.1a",
            "[::1]",
            "example.com",
            "",
        ] {
            assert_eq!(is_ip_literal(h), slow(h), "{h:?}");
        }
        assert!(is_ip_literal("10.0.0.1") && !is_ip_literal("10.0.0.1.2"));
    }
}
