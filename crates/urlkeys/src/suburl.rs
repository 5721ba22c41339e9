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

use crate::url::{join_key, parse_url};
use crate::walker::SubUrlWalker;
use crate::{KeyError, MAX_KEY};

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
    if let Some(key) = crate::url::normalize_ascii(input) {
        return Ok(key);
    }
    let u = parse_url(input)?;
    let key = join_key("", &u);
    if key.len() > MAX_KEY {
        return Err(KeyError::TooLong);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_examples() {
        for (input, expected) in [
            ("HTTPS://WWW.Example.COM/Path?Q=1", "example.com/path?q=1"),
            ("example.com.", "example.com"),
            ("http://user:pw@bücher.de:8080/x", "xn--bcher-kva.de:8080/x"),
            ("www.apple.com/url-filter-test", "apple.com/url-filter-test"),
            ("www", "www"),
        ] {
            assert_eq!(normalize_key(input).unwrap(), expected, "{input}");
        }
        for (input, error) in [
            ("*.example.com", KeyError::Wildcard),
            ("exa mple.com", KeyError::Whitespace),
            ("example.com:99999", KeyError::BadPort("99999".into())),
            ("https:///path", KeyError::NoHost),
        ] {
            assert_eq!(normalize_key(input), Err(error), "{input}");
        }
        assert!(matches!(
            normalize_key("ex!ample.com"),
            Err(KeyError::BadHost(_))
        ));
        assert!(matches!(normalize_key("a..b"), Err(KeyError::BadHost(_))));
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
