//! The allocation-free sub-URL walk: one caller-owned [`SubUrlWalker`] whose buffers are reused,
//! so the device's per-request check (every sub-URL against the prefilter) allocates nothing
//! once the buffers have grown to the size of the URLs seen.
//!
//! How it stays cheap:
//! - ASCII URLs (the common case) are copied once into a lowercased buffer and parsed into
//!   ranges of it; no Punycode, no per-part `String`, no UTF-8 re-validation. Anything the fast
//!   parser is unsure about (non-ASCII input, IPv6 literals, any error) goes through
//!   [`parse_url`], so results and error values are exactly the reference parser's;
//! - for one host and port every sub-URL is a prefix of one of at most two strings:
//!   `A = host[:port] + path + "/" [+ "?q"] [+ "#f"]` (all path forms, and the query/fragment
//!   forms with the trailing `/`) and `B = host[:port] + path [+ "?q"] [+ "#f"]`. Path forms
//!   are prefixes of `path + "/"` ending at a `/` or at its end, so equal path forms (as in
//!   `/a//b`) have equal lengths and de-duplicating them is skipping a repeated length.
//!   [`SubUrlWalker::for_each_group`] hands out each string with its prefix lengths, so a Bloom
//!   filter can hash every prefix in one pass over the string.

use crate::url::{Layout, ParsedUrl, is_ip_literal, parse_ascii, parse_url, push_port};
use crate::{KeyError, MAX_KEY, ParsingConfiguration};
use std::ops::Range;

/// Reusable state for walking the sub-URLs of many URLs without allocating: the lowercased URL,
/// the two tail strings, the current sub-URL and the prefix-length lists.
///
/// Yields exactly [`crate::suburls`] (same strings, same order). Create one per thread and keep
/// it: after a few URLs its buffers have grown enough and a walk of an ASCII URL allocates
/// nothing.
#[derive(Debug, Default, Clone)]
pub struct SubUrlWalker {
    /// Lowercased trimmed URL (ASCII path), or host + path + query + fragment of a URL parsed
    /// by [`parse_url`].
    low: String,
    /// `path + "/" [+ "?q"] [+ "#f"]`.
    tail_a: String,
    /// `path [+ "?q"] [+ "#f"]` (empty when there is neither query nor fragment).
    tail_b: String,
    /// `":port"` or empty.
    port: String,
    /// The current `host[:port]` + tail.
    key: String,
    /// Sub-URL lengths within `tail_a` / `tail_b`.
    rel_a: Vec<usize>,
    rel_b: Vec<usize>,
    /// Sub-URL lengths within `key`.
    lens: Vec<usize>,
    /// Starts of the host suffixes, in emission order (registrable domain first).
    hosts: Vec<usize>,
    /// A non-default parsing configuration (`None`: the iOS 26 default, on the fast parser).
    parsing: Option<Box<ParsingConfiguration>>,
    /// `scheme://` when the configuration keeps the scheme, else empty.
    prefix: String,
    /// Whether the current URL's host walks its domain hierarchy.
    walk_domain: bool,
}

impl SubUrlWalker {
    /// A walker with empty buffers (they grow on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// A walker that enumerates as the device does under `parsing` (the default configuration
    /// gives [`SubUrlWalker::new`]). Walks fail with [`KeyError::UnsupportedParsing`] when the
    /// configuration has an option sift refuses ([`ParsingConfiguration::validate`]).
    pub fn with_parsing(parsing: ParsingConfiguration) -> Self {
        Self {
            parsing: (!parsing.is_default()).then(|| Box::new(parsing)),
            ..Self::default()
        }
    }

    /// Calls `f` with each sub-URL of `url`, in the order of [`crate::suburls`]; returns how
    /// many there were. Errors as [`parse_url`] does.
    pub fn for_each(&mut self, url: &str, mut f: impl FnMut(&str)) -> Result<usize, KeyError> {
        self.for_each_group(url, |s, lens| {
            for &l in lens {
                f(&s[..l]);
            }
        })
    }

    /// Calls `f(s, lens)` for groups of sub-URLs that are prefixes of one string: the sub-URLs
    /// are `&s[..len]` for each `len` in `lens` (strictly increasing, each a char boundary).
    /// Concatenated, the groups list exactly [`crate::suburls`] in order. This lets a Bloom
    /// filter hash all prefixes of `s` in one pass (`sift_bloom::BloomFilter::contains_prefixes`).
    /// Returns the number of sub-URLs.
    pub fn for_each_group(
        &mut self,
        url: &str,
        mut f: impl FnMut(&str, &[usize]),
    ) -> Result<usize, KeyError> {
        let layout = self.parse(url)?;
        self.prepare(&layout);
        let Self {
            low,
            tail_a,
            tail_b,
            port,
            key,
            rel_a,
            rel_b,
            lens,
            hosts,
            prefix,
            ..
        } = self;
        let host = &low[layout.host.clone()];
        let mut count = 0;
        for &start in hosts.iter() {
            for p in [Some(""), layout.port.map(|_| port.as_str())]
                .into_iter()
                .flatten()
            {
                key.clear();
                key.push_str(prefix);
                key.push_str(&host[start..]);
                key.push_str(p);
                let base = key.len();
                key.push_str(tail_a);
                lens.clear();
                lens.extend(rel_a.iter().map(|l| base + l));
                f(key, lens);
                count += lens.len();
                if !rel_b.is_empty() {
                    key.truncate(base);
                    key.push_str(tail_b);
                    lens.clear();
                    lens.extend(rel_b.iter().map(|l| base + l));
                    f(key, lens);
                    count += lens.len();
                }
            }
        }
        Ok(count)
    }

    /// Parses `url` into [`Self::low`]: the fast ASCII parser, else [`parse_url`].
    fn parse(&mut self, url: &str) -> Result<Layout, KeyError> {
        self.prefix.clear();
        self.walk_domain = true;
        if let Some(cfg) = &self.parsing {
            let u = cfg.parse_url(url)?;
            self.prefix.push_str(&cfg.scheme_prefix(&u));
            self.walk_domain = cfg.walks_domain();
            return Ok(self.layout_of(&u));
        }
        let s = url.trim();
        if s.is_ascii() && s.len() <= MAX_KEY {
            self.low.clear();
            self.low.push_str(s);
            self.low.make_ascii_lowercase();
            if let Some(l) = parse_ascii(&self.low) {
                return Ok(l);
            }
        }
        // Non-ASCII input, IPv6 literals and every error: the reference parser decides.
        let u = parse_url(url)?;
        Ok(self.layout_of(&u))
    }

    /// Copies the parts of `u` into [`Self::low`] and says where they lie.
    fn layout_of(&mut self, u: &ParsedUrl) -> Layout {
        self.low.clear();
        self.low.push_str(&u.host);
        let host = 0..self.low.len();
        let full = u.path.trim_end_matches('/').len();
        let raw = self.push(&u.path);
        let path = raw.start..raw.start + full;
        let query = u.query.as_deref().map(|q| self.push(q));
        let fragment = u.fragment.as_deref().map(|f| self.push(f));
        Layout {
            host,
            path,
            query,
            fragment,
            port: u.effective_port(),
            explicit_port: u.port,
            path_end: raw.end,
        }
    }

    fn push(&mut self, s: &str) -> Range<usize> {
        let start = self.low.len();
        self.low.push_str(s);
        start..self.low.len()
    }

    /// Fills the host suffixes, the port string, the tails and their prefix lengths.
    fn prepare(&mut self, l: &Layout) {
        let low = &self.low;
        let host = &low[l.host.clone()];
        self.hosts.clear();
        self.hosts.push(0);
        if self.walk_domain && !is_ip_literal(host) {
            let b = host.as_bytes();
            // Label starts after each dot, except the last label (never the bare TLD).
            self.hosts
                .extend((0..b.len()).filter(|&i| b[i] == b'.').map(|i| i + 1));
            let keep = self.hosts.len().saturating_sub(1).max(1);
            self.hosts.truncate(keep);
            self.hosts.reverse();
        }
        self.port.clear();
        if let Some(p) = l.port {
            push_port(&mut self.port, p);
        }
        let full = &low[l.path.clone()];
        let query = l.query.clone().map(|r| &low[r]);
        let fragment = l.fragment.clone().map(|r| &low[r]);
        // Path forms: prefixes of `full + "/"` of length 0, 1, then i and i + 1 for each '/'
        // at i > 0, then n and n + 1. Non-decreasing, so duplicates are adjacent.
        let rel = &mut self.rel_a;
        rel.clear();
        let add = |rel: &mut Vec<usize>, n: usize| {
            if rel.last() != Some(&n) {
                rel.push(n);
            }
        };
        add(rel, 0);
        add(rel, 1);
        for (i, &c) in full.as_bytes().iter().enumerate() {
            if c == b'/' && i > 0 {
                add(rel, i);
                add(rel, i + 1);
            }
        }
        if !full.is_empty() {
            add(rel, full.len());
            add(rel, full.len() + 1);
        }
        self.tail_a.clear();
        self.tail_a.push_str(full);
        self.tail_a.push('/');
        self.tail_b.clear();
        self.rel_b.clear();
        if query.is_some() || fragment.is_some() {
            self.tail_b.push_str(full);
            // `?q` then `#f` on both tails, each ending a sub-URL.
            for (sep, part) in [('?', query), ('#', fragment)] {
                let Some(part) = part else { continue };
                for (t, r) in [
                    (&mut self.tail_a, &mut self.rel_a),
                    (&mut self.tail_b, &mut self.rel_b),
                ] {
                    t.push(sep);
                    t.push_str(part);
                    r.push(t.len());
                }
            }
        }
    }
}
