//! Sub-URL expansion exactly as the device does it, and key normalisation to match.
//!
//! Rules, from Apple's `NEURLFilterManager` overview (the 48-entry list for
//! `https://www.sub1.example.com/a/b/c?id=123#fragment`, stored in
//! `tests/vectors/urlkeys/`) and `NEURLFilterManager.ParsingConfiguration` defaults
//! (`excludeScheme = true`, `stripWWW`, `caseSensitive = false`, nothing else excluded):
//! - the scheme is dropped; one leading `www.` label is stripped;
//! - the host walks up the domain hierarchy down to two labels (`sub1.example.com`,
//!   `example.com`; never the bare TLD). Apple's example stops at `example.com`; no public
//!   suffix list is applied, so `a.co.uk` yields `a.co.uk` and `co.uk`. IP literals do not walk;
//! - each host appears without and with the port (explicit, else the scheme's default:
//!   443 for https, 80 for http), e.g. `example.com:443`;
//! - the path walks up its hierarchy (`/a`, `/a/b`, `/a/b/c`), each with and without a trailing
//!   `/`, plus the bare host and `host/`;
//! - query and fragment are only appended to the full path (with and without its trailing `/`):
//!   `?q` and `?q#f`. The documented list has no fragment-without-query form when a query is
//!   present; with a fragment but no query we append `#f` (same rule, query omitted);
//! - the whole sub-URL is lowercased (matching is case-insensitive by default, and the
//!   Bloom filter and PIR can only match exactly), so keys are lowercased too;
//! - non-ASCII hosts are Punycoded ("the manager Punycodes the requested URL before parsing").
//!
//! An older revision of the page listed `www.` forms and `?id=123/` entries for
//! `https://www.example.com/...`; it contradicts the `stripWWW` default and the current page,
//! and is kept only as reference data (see the README beside the vectors).

use crate::punycode::host_to_ascii;
use crate::walker::SubUrlWalker;
use crate::{KeyError, MAX_KEY};

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
        self.port.or(match self.scheme.as_deref() {
            None | Some("https") | Some("wss") => Some(443),
            Some("http") | Some("ws") => Some(80),
            _ => None,
        })
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
    let (before_frag, fragment) = match tail.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match before_frag.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_frag, None),
    };
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

/// The sub-URLs the device tests for `url`, in Apple's documented order (hosts from the
/// registrable domain up, each without then with port). Errors on URLs the device could not
/// request (no host, bad port, whitespace).
pub fn suburls(url: &str) -> Result<Vec<String>, KeyError> {
    let mut out = Vec::new();
    for_each_suburl(url, |k| out.push(k.to_owned()))?;
    Ok(out)
}

/// Calls `f` with each sub-URL of `url`, in the order of [`suburls`], reusing one buffer: the
/// device's per-request check (sub-URLs against the prefilter) without a string per sub-URL.
/// Callers checking many URLs should keep a [`SubUrlWalker`] instead, whose buffers survive
/// between URLs.
pub fn for_each_suburl(url: &str, f: impl FnMut(&str)) -> Result<(), KeyError> {
    SubUrlWalker::new().for_each(url, f).map(|_| ())
}

/// Normalises a blocklist entry into the key stored in the prefilter and PIR database:
/// scheme and user info dropped, lowercased, one leading `www.` stripped, host Punycoded,
/// trailing dot of the host removed; port, path, query and fragment kept (lowercased, because
/// the device lowercases every sub-URL it looks up).
pub fn normalize_key(input: &str) -> Result<String, KeyError> {
    if let Some(key) = crate::walker::normalize_ascii(input) {
        return Ok(key);
    }
    let u = parse_url(input)?;
    let key = join_key("", &u);
    if key.len() > MAX_KEY {
        return Err(KeyError::TooLong);
    }
    Ok(key)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_examples() {
        assert_eq!(
            normalize_key("HTTPS://WWW.Example.COM/Path?Q=1").unwrap(),
            "example.com/path?q=1"
        );
        assert_eq!(normalize_key("example.com.").unwrap(), "example.com");
        assert_eq!(
            normalize_key("http://user:pw@bücher.de:8080/x").unwrap(),
            "xn--bcher-kva.de:8080/x"
        );
        assert_eq!(
            normalize_key("www.apple.com/url-filter-test").unwrap(),
            "apple.com/url-filter-test"
        );
        assert_eq!(normalize_key("www").unwrap(), "www");
        assert_eq!(normalize_key("*.example.com"), Err(KeyError::Wildcard));
        assert_eq!(normalize_key("exa mple.com"), Err(KeyError::Whitespace));
        assert_eq!(
            normalize_key("example.com:99999"),
            Err(KeyError::BadPort("99999".into()))
        );
        assert_eq!(normalize_key("https:///path"), Err(KeyError::NoHost));
        assert!(matches!(
            normalize_key("ex!ample.com"),
            Err(KeyError::BadHost(_))
        ));
        assert!(matches!(normalize_key("a..b"), Err(KeyError::BadHost(_))));
    }

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

    #[test]
    fn suburl_rules() {
        let v = suburls("http://example.com").unwrap();
        assert_eq!(
            v,
            [
                "example.com",
                "example.com/",
                "example.com:80",
                "example.com:80/"
            ]
        );
        let v = suburls("https://a.b.c.com:8443/x/#frag").unwrap();
        assert!(v.contains(&"c.com:8443/x#frag".to_string()), "{v:?}");
        assert!(v.contains(&"a.b.c.com/x/".to_string()));
        assert!(!v.iter().any(|s| s == "com" || s.starts_with("com/")));
        let v = suburls("https://192.168.1.1/a").unwrap();
        assert!(v.iter().all(|s| s.starts_with("192.168.1.1")), "{v:?}");
        let v = suburls("https://[::1]:8443/").unwrap();
        assert_eq!(v, ["[::1]", "[::1]/", "[::1]:8443", "[::1]:8443/"]);
    }
}
