//! The app's URL parsing configuration (`NEURLFilterManager.urlParsingConfiguration`, iOS/macOS
//! 27) and what it changes: which sub-URLs the device enumerates, and so how list entries must be
//! normalised into keys the device can ask for.
//!
//! Property names and defaults are Apple's (`NEURLFilterManager.ParsingConfiguration` and its
//! `DomainOptions`, `PathOptions`, `QueryOptions` initialisers); the default value is the
//! iOS 26 behaviour. Rules, from the `urlParsingConfiguration` page:
//! - an excluded component (domain, path, query, fragment) that the URL has is replaced by the
//!   placeholder `%*`; a stripped `www.` is removed without a placeholder;
//! - Apple's example: `https://www.example.com/a/b/c?id=123#fragment` with `excludeScheme`,
//!   `domain.stripWWW` and `path.excluded` parses to `example.com/%*?id=123#fragment`; the
//!   sub-URLs are then enumerated from that parse with the usual walk (an excluded path is one
//!   `/%*` segment, an excluded domain one `%*` label).
//!
//! Where Apple's pages leave the output unspecified, sift refuses the option instead of guessing
//! (see [`ParsingConfiguration::validate`]): `urlParsingRegularExpression`,
//! `excludeIntermediates`, `query.parameters` and `path.enumerateHierarchy = false`.
//! Inferred (documented in `docs/parsing.md`): `excludeScheme = false` prefixes every sub-URL
//! with `scheme://` (https when the input has none); a path of only `/` counts as absent.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::KeyError;
use crate::url::{ParsedUrl, PartsOptions, parse_url_parts, split_tail};

/// The placeholder the device puts where an excluded component was.
pub const PLACEHOLDER: &str = "%*";

/// Mirror of Apple's `NEURLFilterManager.ParsingConfiguration`, with Apple's property names in
/// JSON and TOML (`excludeScheme`, `domain.stripWWW`, `caseSensitive`, ...). The default is the
/// iOS 26 parsing: scheme and `www` dropped, everything else kept, case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ParsingConfiguration {
    /// `excludeScheme` (default `true`): sub-URLs carry no `scheme://`.
    pub exclude_scheme: bool,
    /// `domain`: options for the host.
    pub domain: DomainOptions,
    /// `path`: options for the path.
    pub path: PathOptions,
    /// `query`: options for the query.
    pub query: QueryOptions,
    /// `excludeFragment` (default `false`): a fragment is replaced by `%*`.
    pub exclude_fragment: bool,
    /// `excludeIntermediates` (default `false`). Its output is not documented: `true` is refused.
    pub exclude_intermediates: bool,
    /// `caseSensitive` (default `false`): when `false` every sub-URL is lowercased.
    pub case_sensitive: bool,
    /// `urlParsingRegularExpression` (a manager property, accepted here so a file can state it):
    /// when set the configuration has no effect on the device, and what the expression produces
    /// is not documented, so any value is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_parsing_regular_expression: Option<String>,
}

/// Mirror of `NEURLFilterManager.ParsingConfiguration.DomainOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DomainOptions {
    /// `excluded` (default `false`): the host is replaced by `%*` (other domain options ignored).
    pub excluded: bool,
    /// `stripWWW` (default `true`): one leading `www.` label is removed.
    #[serde(rename = "stripWWW")]
    pub strip_www: bool,
    /// `levels` (default `0`, all): keep only the last `levels` labels
    /// (`2` keeps `example.com` of `www.sub.example.com`).
    pub levels: u32,
    /// `enumerateHierarchy` (default `true`): walk up the domain hierarchy; `false` keeps the
    /// host as it is.
    pub enumerate_hierarchy: bool,
}

/// Mirror of `NEURLFilterManager.ParsingConfiguration.PathOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PathOptions {
    /// `excluded` (default `false`): a path is replaced by `/%*` (other path options ignored).
    pub excluded: bool,
    /// `segments` (default `0`, all): keep only the first `segments` path segments
    /// (`2` keeps `/a/b` of `/a/b/c/d`).
    pub segments: u32,
    /// `enumerateHierarchy` (default `true`). The output without the walk is not documented:
    /// `false` is refused.
    pub enumerate_hierarchy: bool,
}

/// Mirror of `NEURLFilterManager.ParsingConfiguration.QueryOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct QueryOptions {
    /// `excluded` (default `false`): a query is replaced by `%*`.
    pub excluded: bool,
    /// `parameters` (default none: all parameters). Which parameters remain, and in which
    /// order, is not documented: a list is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<String>>,
}

impl Default for ParsingConfiguration {
    fn default() -> Self {
        Self {
            exclude_scheme: true,
            domain: DomainOptions::default(),
            path: PathOptions::default(),
            query: QueryOptions::default(),
            exclude_fragment: false,
            exclude_intermediates: false,
            case_sensitive: false,
            url_parsing_regular_expression: None,
        }
    }
}

impl Default for DomainOptions {
    fn default() -> Self {
        Self {
            excluded: false,
            strip_www: true,
            levels: 0,
            enumerate_hierarchy: true,
        }
    }
}

impl Default for PathOptions {
    fn default() -> Self {
        Self {
            excluded: false,
            segments: 0,
            enumerate_hierarchy: true,
        }
    }
}

/// Why a parsing configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ParsingError {
    /// The file could not be read.
    #[error("cannot read parsing configuration {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON/TOML or has unknown property names.
    #[error(
        "parsing configuration {path} is not valid {format}: {message} (property names are \
         Apple's: excludeScheme, domain.{{excluded,stripWWW,levels,enumerateHierarchy}}, \
         path.{{excluded,segments,enumerateHierarchy}}, query.{{excluded,parameters}}, \
         excludeFragment, excludeIntermediates, caseSensitive)"
    )]
    Syntax {
        /// The file (or `<text>`).
        path: String,
        /// `JSON` or `TOML`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// An option whose device output Apple does not document.
    #[error(
        "unsupported parsing option {option}: {why} Remove it from the configuration, or ask \
         Apple for the documented output; sift will not guess keys the device might never ask for"
    )]
    Unsupported {
        /// The property, as Apple names it.
        option: &'static str,
        /// What is missing from Apple's documentation.
        why: &'static str,
    },
}

/// What makes a key unreachable under a configuration (see
/// [`ParsingConfiguration::key_mismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mismatch {
    /// Upper-case letters while matching is case-insensitive (the device lowercases).
    UpperCase,
    /// A scheme while `excludeScheme` is set, or none while it is not.
    Scheme,
    /// A `www.` host while `domain.stripWWW` is set.
    Www,
    /// A real host while `domain.excluded` is set (the device sends `%*`).
    Domain,
    /// A real path while `path.excluded` is set.
    Path,
    /// A real query while `query.excluded` is set.
    Query,
    /// A real fragment while `excludeFragment` is set.
    Fragment,
    /// More domain levels or path segments than `domain.levels` / `path.segments` keep.
    Truncated,
    /// Not among the sub-URLs the device enumerates for the key itself, for another reason.
    Other,
}

impl Mismatch {
    /// A short explanation for people.
    pub fn describe(self) -> &'static str {
        match self {
            Mismatch::UpperCase => "upper-case letters, but the app matches case-insensitively",
            Mismatch::Scheme => "scheme present/absent contrary to excludeScheme",
            Mismatch::Www => "`www.` host, but the app strips www (domain.stripWWW)",
            Mismatch::Domain => "a domain, but the app excludes it (domain.excluded: keys need %*)",
            Mismatch::Path => "a path, but the app excludes it (path.excluded: keys need /%*)",
            Mismatch::Query => "a query, but the app excludes it (query.excluded: keys need ?%*)",
            Mismatch::Fragment => "a fragment, but the app excludes it (excludeFragment: #%*)",
            Mismatch::Truncated => "more domain levels or path segments than the app keeps",
            Mismatch::Other => "not among the sub-URLs the device enumerates",
        }
    }
}

impl ParsingConfiguration {
    /// `true` for the iOS 26 default (the fast walker applies).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Refuses options whose output Apple's documentation leaves unspecified.
    pub fn validate(&self) -> Result<(), ParsingError> {
        let unsupported = |option, why| Err(ParsingError::Unsupported { option, why });
        if self.url_parsing_regular_expression.is_some() {
            return unsupported(
                "urlParsingRegularExpression",
                "Apple's documentation says the expression parses the URL before matching and \
                 overrides the parsing configuration, but not which sub-URLs (capture groups? \
                 the whole match? still walked?) the device then looks up.",
            );
        }
        if self.exclude_intermediates {
            return unsupported(
                "excludeIntermediates",
                "Apple's documentation names the option but does not say which sub-URLs remain.",
            );
        }
        if self.query.parameters.is_some() && !self.query.excluded {
            return unsupported(
                "query.parameters",
                "Apple's documentation does not say how kept parameters are ordered or joined.",
            );
        }
        if !self.path.excluded && !self.path.enumerate_hierarchy {
            return unsupported(
                "path.enumerateHierarchy = false",
                "Apple's documentation does not say which path forms (bare host? trailing `/`?) \
                 remain without the walk.",
            );
        }
        Ok(())
    }

    /// Reads a configuration from JSON (any extension but `.toml`) or TOML, then validates it.
    pub fn load(path: &Path) -> Result<Self, ParsingError> {
        let text = std::fs::read_to_string(path).map_err(|source| ParsingError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.display().to_string();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            Self::from_toml(&text, &name)
        } else {
            Self::from_json(&text, &name)
        }
    }

    /// Parses and validates JSON with Apple's property names; `name` labels errors.
    pub fn from_json(text: &str, name: &str) -> Result<Self, ParsingError> {
        let c: Self = serde_json::from_str(text).map_err(|e| ParsingError::Syntax {
            path: name.to_owned(),
            format: "JSON",
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Parses and validates TOML with Apple's property names; `name` labels errors.
    pub fn from_toml(text: &str, name: &str) -> Result<Self, ParsingError> {
        let c: Self = toml::from_str(text).map_err(|e| ParsingError::Syntax {
            path: name.to_owned(),
            format: "TOML",
            message: e.message().to_owned(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The configuration as pretty JSON with Apple's property names (what `parsing.json` holds).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serialises")
    }

    /// The options that differ from the iOS 26 default, as `name=value` (empty for the default).
    pub fn differences(&self) -> Vec<String> {
        // Each option's name and how to show its value; shown the same way for `self` and the
        // default, so the two compare as text.
        type Show = fn(&ParsingConfiguration) -> String;
        let options: [(&str, Show); 13] = [
            ("excludeScheme", |c| c.exclude_scheme.to_string()),
            ("domain.excluded", |c| c.domain.excluded.to_string()),
            ("domain.stripWWW", |c| c.domain.strip_www.to_string()),
            ("domain.levels", |c| c.domain.levels.to_string()),
            ("domain.enumerateHierarchy", |c| {
                c.domain.enumerate_hierarchy.to_string()
            }),
            ("path.excluded", |c| c.path.excluded.to_string()),
            ("path.segments", |c| c.path.segments.to_string()),
            ("path.enumerateHierarchy", |c| {
                c.path.enumerate_hierarchy.to_string()
            }),
            ("query.excluded", |c| c.query.excluded.to_string()),
            ("query.parameters", |c| format!("{:?}", c.query.parameters)),
            ("excludeFragment", |c| c.exclude_fragment.to_string()),
            ("excludeIntermediates", |c| {
                c.exclude_intermediates.to_string()
            }),
            ("caseSensitive", |c| c.case_sensitive.to_string()),
        ];
        let d = Self::default();
        let mut out = Vec::new();
        for (name, show) in options {
            let value = show(self);
            if value != show(&d) {
                out.push(format!("{name}={value}"));
            }
        }
        if self.url_parsing_regular_expression.is_some() {
            out.push("urlParsingRegularExpression=set".into());
        }
        out
    }

    /// One line for logs and reports: `iOS 26 default` or the differing options.
    pub fn summary(&self) -> String {
        let d = self.differences();
        if d.is_empty() {
            "iOS 26 default (excludeScheme, stripWWW, case-insensitive)".into()
        } else {
            format!("custom: {}", d.join(", "))
        }
    }

    /// Parses `url` the way the device does under this configuration: case, `www.`, levels,
    /// segments applied and excluded components replaced by `%*`. The scheme stays in
    /// [`ParsedUrl::scheme`]; [`Self::scheme_prefix`] says whether sub-URLs carry it.
    pub fn parse_url(&self, url: &str) -> Result<ParsedUrl, KeyError> {
        if let Err(ParsingError::Unsupported { option, .. }) = self.validate() {
            return Err(KeyError::UnsupportedParsing(option));
        }
        let mut u = parse_url_parts(
            url,
            PartsOptions {
                keep_case: self.case_sensitive,
                strip_www: self.domain.strip_www && !self.domain.excluded,
                placeholder_host: self.domain.excluded,
            },
        )?;
        if self.domain.excluded {
            u.host = PLACEHOLDER.to_owned();
        } else if self.domain.levels > 0 && !crate::url::is_ip_literal(&u.host) {
            let keep = self.domain.levels as usize;
            let dots: Vec<usize> = u.host.match_indices('.').map(|(i, _)| i).collect();
            if dots.len() >= keep {
                u.host = u.host[dots[dots.len() - keep] + 1..].to_owned();
            }
        }
        if self.path.excluded {
            if u.path.bytes().any(|b| b != b'/') {
                u.path = format!("/{PLACEHOLDER}");
            }
        } else if self.path.segments > 0 {
            let keep = self.path.segments as usize;
            // The `keep + 1`-th '/' ends the kept segments (the first '/' starts the path).
            if let Some((i, _)) = u.path.match_indices('/').nth(keep) {
                u.path.truncate(i);
            }
        }
        if self.query.excluded && u.query.is_some() {
            u.query = Some(PLACEHOLDER.to_owned());
        }
        if self.exclude_fragment && u.fragment.is_some() {
            u.fragment = Some(PLACEHOLDER.to_owned());
        }
        Ok(u)
    }

    /// `scheme://` when sub-URLs carry the scheme (`excludeScheme = false`; https when the
    /// input had none), else empty.
    pub fn scheme_prefix(&self, u: &ParsedUrl) -> String {
        if self.exclude_scheme {
            String::new()
        } else {
            format!("{}://", u.scheme.as_deref().unwrap_or("https"))
        }
    }

    /// `true` when the device walks the domain hierarchy of a host under this configuration.
    pub(crate) fn walks_domain(&self) -> bool {
        !self.domain.excluded && self.domain.enumerate_hierarchy
    }

    /// The sub-URLs the device tests for `url` under this configuration, in the order of
    /// [`crate::suburls`] (which this equals for the default).
    pub fn suburls(&self, url: &str) -> Result<Vec<String>, KeyError> {
        let mut w = crate::SubUrlWalker::with_parsing(self.clone());
        let mut out = Vec::new();
        w.for_each(url, |k| out.push(k.to_owned()))?;
        Ok(out)
    }

    /// Normalises a blocklist entry into the key the device asks for under this configuration:
    /// case kept when case-sensitive, `www.` kept when not stripped, excluded components
    /// replaced by `%*`, the scheme kept when not excluded. Equals [`crate::normalize_key`] for
    /// the default.
    pub fn normalize_key(&self, input: &str) -> Result<String, KeyError> {
        if self.is_default() {
            return crate::normalize_key(input);
        }
        let u = self.parse_url(input)?;
        let key = crate::url::join_key(&self.scheme_prefix(&u), &u);
        if key.len() > crate::MAX_KEY {
            return Err(KeyError::TooLong);
        }
        Ok(key)
    }

    /// Why the device can never ask for `key` under this configuration, or `None` when it can
    /// (the key is among the sub-URLs of the key itself taken as a URL). Keys that do not even
    /// parse are reported as [`Mismatch::Other`].
    pub fn key_mismatch(&self, key: &str) -> Option<Mismatch> {
        match self.suburls(key) {
            Ok(subs) if subs.iter().any(|s| s == key) => return None,
            _ => {}
        }
        let has_scheme = key.contains("://");
        if has_scheme == self.exclude_scheme {
            return Some(Mismatch::Scheme);
        }
        if !self.case_sensitive && key.chars().any(char::is_uppercase) {
            return Some(Mismatch::UpperCase);
        }
        let rest = key.split_once("://").map_or(key, |(_, r)| r);
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, tail) = rest.split_at(host_end);
        if self.domain.excluded {
            if !host.starts_with(PLACEHOLDER) {
                return Some(Mismatch::Domain);
            }
        } else if self.domain.strip_www && host.starts_with("www.") {
            return Some(Mismatch::Www);
        }
        let (path, query, fragment) = split_tail(tail);
        if self.path.excluded && path.bytes().any(|b| b != b'/') && path != "/%*" {
            return Some(Mismatch::Path);
        }
        if self.query.excluded && query.is_some_and(|q| q != PLACEHOLDER) {
            return Some(Mismatch::Query);
        }
        if self.exclude_fragment && fragment.is_some_and(|f| f != PLACEHOLDER) {
            return Some(Mismatch::Fragment);
        }
        let levels = host.split(':').next().unwrap_or("").split('.').count();
        let segments = path.split('/').filter(|s| !s.is_empty()).count();
        if (self.domain.levels > 0 && levels > self.domain.levels as usize)
            || (self.path.segments > 0 && segments > self.path.segments as usize)
        {
            return Some(Mismatch::Truncated);
        }
        Some(Mismatch::Other)
    }
}
