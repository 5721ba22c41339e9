//! URL keys as the device looks them up: sub-URL expansion of a request URL and import of
//! blocklists (plain, hosts, AdBlock domain rules, Apple `KeywordDatabase` in text or binary
//! format, read by `sift-keyworddb`) into normalized scheme-less keys.
#![forbid(unsafe_code)]

mod import;
mod parsing;
mod punycode;
mod suburl;
mod url;
mod walker;

pub use import::{ImportReport, Importer, Issue, MAX_LINE};
pub use parsing::{
    DomainOptions, Mismatch, PLACEHOLDER, ParsingConfiguration, ParsingError, PathOptions,
    QueryOptions,
};
pub use punycode::host_to_ascii;
pub use suburl::{for_each_suburl, normalize_key, suburls};
pub use url::{ParsedUrl, parse_url};
pub use walker::SubUrlWalker;

/// Why a URL or key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The input has no host.
    #[error("no host")]
    NoHost,
    /// The host contains characters that cannot appear in a DNS name.
    #[error("invalid host {0:?}")]
    BadHost(String),
    /// The port is not a number in 0..=65535.
    #[error("invalid port {0:?}")]
    BadPort(String),
    /// Whitespace or control characters inside the URL.
    #[error("whitespace or control character inside the URL")]
    Whitespace,
    /// Wildcards are not supported by the Bloom filter or PIR (Apple's documentation).
    #[error("wildcards are not supported (exact keys only)")]
    Wildcard,
    /// The parsing configuration has an option whose output Apple does not document
    /// ([`ParsingConfiguration::validate`] says why).
    #[error("unsupported parsing option {0}")]
    UnsupportedParsing(&'static str),
    /// Longer than [`MAX_KEY`] bytes.
    #[error("key longer than {MAX_KEY} bytes")]
    TooLong,
}

/// Longest key accepted (bytes).
pub const MAX_KEY: usize = 8 * 1024;
