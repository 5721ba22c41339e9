//! The service's TOML configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Everything `sift serve` needs, read from one TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on: `IP:PORT`, `[IPv6]:PORT`, or `:PORT` for every IPv4 interface.
    #[serde(default = "default_listen", deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Serve plain HTTP (development only; production sits behind TLS).
    #[serde(default)]
    pub dev_plain_http: bool,
    /// TLS certificate and key (PEM) for HTTPS with HTTP/2.
    pub tls: Option<TlsConfig>,
    /// Directory for persistent state: issuer keys, stored evaluation keys.
    pub state_dir: PathBuf,
    /// Directory where `/report` submissions are appended (reports refused when unset).
    pub report_dir: Option<PathBuf>,
    /// Require a Privacy Pass token on PIR routes (default true).
    #[serde(default = "yes")]
    pub require_tokens: bool,
    /// PIR use cases served.
    #[serde(default)]
    pub usecases: Vec<UseCaseConfig>,
    /// Users allowed to fetch tokens (Bearer user tokens grouped by tier).
    #[serde(default)]
    pub users: Vec<UserTier>,
    /// Size and resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// The Oblivious HTTP gateway in front of the service and issuer.
    #[serde(default)]
    pub ohttp: OhttpConfig,
    /// Where evaluation keys are stored: files under `state_dir` (default) or a shared Redis.
    #[serde(default)]
    pub key_store: KeyStoreConfig,
    /// Prefilter delivery (`GET /prefilter/<use case>`).
    #[serde(default)]
    pub prefilter: crate::prefilter::PrefilterConfig,
    /// Where `/metrics` is served (`[metrics] listen`: a separate listener).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// What is logged besides events (`[log] access`: one line per request).
    #[serde(default)]
    pub log: LogConfig,
    /// Privacy Pass token keys: lifetime, rotation and the challenge check (`[issuer]`).
    #[serde(default)]
    pub issuer: IssuerConfig,
}

/// `[issuer]`: how long Privacy Pass token keys live and which challenges tokens must be for.
///
/// Each tier's key is accepted for `key_lifetime_days` from its start. The next key is
/// generated and published (`not-before` in the issuer directory) `key_overlap_days` before it
/// takes over signing, and the old key keeps verifying for `key_overlap_days` after that, so a
/// token lives at least that long (Apple's devices keep tokens for one week).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// Days a token key is accepted from its start (0: keys never expire nor rotate).
    pub key_lifetime_days: u64,
    /// Days the next key is published ahead, and the old one still accepted after the switch.
    pub key_overlap_days: u64,
    /// Issuer names (the issuer URL's host) a token's challenge may name; devices build the
    /// challenge from the issuer name alone. Empty: the challenge is not checked, as in
    /// Apple's example service.
    pub challenge_issuer_names: Vec<String>,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            key_lifetime_days: 30,
            key_overlap_days: 8,
            challenge_issuer_names: Vec::new(),
        }
    }
}

impl IssuerConfig {
    /// Rejects schedules that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.key_lifetime_days == 0
                || (self.key_overlap_days >= 1
                    && self.key_overlap_days.saturating_mul(2) <= self.key_lifetime_days),
            "[issuer]: key_overlap_days ({}) must be at least 1 and at most half of \
             key_lifetime_days ({}); set key_lifetime_days = 0 to keep keys for ever",
            self.key_overlap_days,
            self.key_lifetime_days
        );
        for n in &self.challenge_issuer_names {
            anyhow::ensure!(
                !n.is_empty() && !n.contains(['/', ':', ' ']),
                "[issuer] challenge_issuer_names: {n:?} must be a host name such as \
                 \"issuer.example.com\" (no scheme, port or path)"
            );
        }
        Ok(())
    }
}

/// `[metrics]`: where Prometheus scrapes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A separate plain-HTTP listener for `/metrics` (e.g. `127.0.0.1:9100`); when set, the
    /// public listener no longer answers `/metrics`. Unset: `/metrics` on the public listener.
    #[serde(default, deserialize_with = "optional_listen_address")]
    pub listen: Option<SocketAddr>,
}

/// `[log]`: optional log streams.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// One structured line per request (target `sift::access`: method, route, status,
    /// duration, bytes in and out); never user identifiers, tokens or client addresses.
    #[serde(default)]
    pub access: bool,
}

/// The evaluation-key store. `kind = "file"` (default) keeps keys under `state_dir/keys`;
/// `kind = "redis"` shares them between several replicas behind one load balancer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KeyStoreConfig {
    /// Files under `state_dir/keys` (one server).
    #[default]
    File,
    /// A Redis server shared by every replica.
    Redis(RedisKeyStoreConfig),
}

/// `[key_store] kind = "redis"`: connection and retention of the shared store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisKeyStoreConfig {
    /// `redis://[user:password@]host:port/db` or `redis+unix:///path`.
    pub url: String,
    /// Keys expire this many seconds after upload (0: never; devices re-upload on expiry).
    #[serde(default)]
    pub ttl_secs: u64,
    /// Keys kept per user, oldest evicted (default `limits.max_keys_per_user`).
    pub max_per_user: Option<usize>,
    /// Connect, read and write timeout in milliseconds.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Idle connections kept open.
    #[serde(default = "default_redis_pool")]
    pub pool_size: usize,
    /// Prefix of every Redis key (`<prefix>:key:<sha256(user)>:<hex id>`).
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
}

fn default_redis_timeout_ms() -> u64 {
    2000
}
fn default_redis_pool() -> usize {
    16
}
fn default_redis_prefix() -> String {
    "sift".to_owned()
}

/// Oblivious HTTP gateway (RFC 9458): Apple's relay forwards every device request through it.
///
/// The gateway answers `POST /` (`message/ohttp-req`) and publishes its key configuration at
/// `GET /ohttp-keys` and `GET /.well-known/ohttp-gateway`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OhttpConfig {
    /// Serve the gateway routes (default true).
    pub enabled: bool,
    /// Gateway key file (default `state_dir/ohttp/keys.json`); created with mode 0600.
    pub key_file: Option<PathBuf>,
    /// Rotate the gateway key after this many days (0: never rotate automatically).
    pub rotate_after_days: u64,
    /// Keep accepting the previous key this many days after a rotation (clients cache configs).
    pub grace_days: u64,
    /// Forward decapsulated requests to this base URL over HTTP(S) instead of in process,
    /// e.g. when the PIR service runs on other machines.
    pub upstream: Option<String>,
    /// Encapsulated requests remembered to reject replays.
    pub replay_capacity: usize,
    /// RFC 9458 §6.5 Date window in seconds: an inner request dated further from the server's
    /// clock gets an encapsulated 400 (`date` problem, with the server's `Date`); 0 turns the
    /// check off.
    pub date_window_secs: u64,
}

impl Default for OhttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_file: None,
            rotate_after_days: 30,
            grace_days: 7,
            upstream: None,
            replay_capacity: 1 << 20,
            date_window_secs: 60,
        }
    }
}

impl OhttpConfig {
    /// Where the gateway keys are kept for a server whose state lives in `state_dir`.
    pub fn key_path(&self, state_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| state_dir.join("ohttp").join("keys.json"))
    }
}

/// TLS material: certificate files the operator renews, or automatic certificates (`[tls.acme]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM. With `[tls.acme]`: where the obtained certificate is written
    /// (default `<cache_dir>/cert.pem`).
    #[serde(default)]
    pub cert: PathBuf,
    /// Private key, PEM. With `[tls.acme]`: where the obtained key is written (default
    /// `<cache_dir>/key.pem`).
    #[serde(default)]
    pub key: PathBuf,
    /// Automatic certificates from an ACME CA (RFC 8555), e.g. Let's Encrypt.
    #[serde(default)]
    pub acme: Option<AcmeConfig>,
}

impl TlsConfig {
    /// Fills in what `[tls.acme]` leaves implicit: the cache folder (`<state_dir>/acme`) and
    /// the certificate and key paths inside it. Idempotent; nothing to do without ACME.
    pub fn resolve_acme_paths(&mut self, state_dir: &Path) {
        let Some(acme) = self.acme.as_mut() else {
            return;
        };
        let dir = acme
            .cache_dir
            .get_or_insert_with(|| state_dir.join("acme"))
            .clone();
        if self.cert.as_os_str().is_empty() {
            self.cert = dir.join("cert.pem");
        }
        if self.key.as_os_str().is_empty() {
            self.key = dir.join("key.pem");
        }
    }
}

/// Let's Encrypt's production directory, the default ACME CA.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[tls.acme]`: certificates obtained and renewed automatically with the TLS-ALPN-01
/// challenge on the TLS listener itself (the CA connects to port 443 of each domain; no port
/// 80 needed).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's directory URL (default: Let's Encrypt production; its staging directory is
    /// `https://acme-staging-v02.api.letsencrypt.org/directory`).
    #[serde(default = "default_acme_directory")]
    pub directory: String,
    /// Contacts for the CA's expiry and policy mail: `mailto:ops@example.com` or a bare address.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The names the certificate covers (the service, issuer and gateway hosts); each must
    /// resolve to this server, which must be reachable on port 443 from the CA.
    pub domains: Vec<String>,
    /// Where the account key, certificate and key are kept across restarts (default
    /// `<state_dir>/acme`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// An extra root certificate (PEM) to trust for the directory's HTTPS besides the public
    /// roots: for a private or test CA such as pebble.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_acme_directory() -> String {
    LETS_ENCRYPT_DIRECTORY.to_owned()
}

impl AcmeConfig {
    /// The contacts as the CA expects them (`mailto:` added to bare addresses).
    pub fn contact_uris(&self) -> Vec<String> {
        self.contact
            .iter()
            .map(|c| {
                if c.contains(':') {
                    c.clone()
                } else {
                    format!("mailto:{c}")
                }
            })
            .collect()
    }

    /// Rejects settings the CA would refuse or TLS-ALPN-01 cannot validate.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.directory.starts_with("https://"),
            "[tls.acme] directory must be an https:// URL (got {:?})",
            self.directory
        );
        anyhow::ensure!(
            !self.domains.is_empty(),
            "[tls.acme] domains is empty: list the names the certificate must cover \
             (e.g. [\"pir.example.com\", \"issuer.example.com\", \"gateway.example.com\"])"
        );
        for d in &self.domains {
            anyhow::ensure!(
                !d.starts_with("*."),
                "[tls.acme] domains: {d} is a wildcard, which TLS-ALPN-01 cannot validate; list each name"
            );
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            anyhow::ensure!(
                ok,
                "[tls.acme] domains: {d:?} is not a DNS name (use Punycode for non-ASCII names)"
            );
        }
        for c in &self.contact {
            anyhow::ensure!(
                c.contains('@') || c.contains(':'),
                "[tls.acme] contact: {c:?} is neither an e-mail address nor a URI"
            );
        }
        Ok(())
    }
}

/// One PIR use case, e.g. `com.example.app.url.filtering`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseCaseConfig {
    /// Use-case name as the device sends it.
    pub name: String,
    /// Directory holding `<stem>-<i>.bin` and `<stem>-<i>.params.txtpb` per shard.
    pub dataset_dir: PathBuf,
    /// File stem of the shards (Apple's `fileStem`).
    #[serde(default = "default_stem")]
    pub stem: String,
    /// How many dataset versions keep answering (older config ids get 410 once retired).
    #[serde(default = "default_versions")]
    pub versions_kept: usize,
    /// Symmetric PIR (Apple's `symmetricPirArguments`): the OPRF key the dataset was processed
    /// with. Required when the shards' parameters carry a `symmetric_pir_client_config`.
    #[serde(default)]
    pub symmetric_pir: Option<SymmetricPirConfig>,
    /// Read and verify every mapped shard before the dataset is served (startup and each
    /// reload take as long as reading the dataset once; a corrupt version is refused as a
    /// whole). Off: serving starts at once and shards are verified in the background, each
    /// at the latest before its first answer (that query waits for it).
    #[serde(default)]
    pub warm_up: bool,
}

/// `[usecases.symmetric_pir]`: the database-encryption (OPRF) key of a symmetric-PIR use case.
///
/// The key file is Apple's format: the 48-byte P-384 private key as hex (96 characters, no
/// newline needed), as `sift build` writes it for `outputDatabaseEncryptionKeyFilePath` and
/// Apple's `PIRProcessDatabase` does. It is read with the dataset and checked against the
/// public key in the shards' parameters, so a reload never pairs a key with the wrong data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymmetricPirConfig {
    /// The key file (relative paths are resolved against the config file's folder).
    pub database_encryption_key_file: PathBuf,
    /// Apple's `configType`; `OPRF_P384_AES_GCM_192_NONCE_96_TAG_128` is the default and the only
    /// value.
    #[serde(default = "default_symmetric_config_type")]
    pub config_type: String,
}

fn default_symmetric_config_type() -> String {
    sift_spir::ConfigType::default().name().to_owned()
}

/// A tier of users and their Bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserTier {
    /// Tier name (each tier gets its own issuer key).
    pub tier: String,
    /// User tokens as they appear after `Bearer `.
    pub tokens: Vec<String>,
}

/// Resource limits; the defaults suit one server with thousands of users.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body (evaluation keys exceed 2 MiB; Apple allows 10 MiB).
    pub max_body_bytes: usize,
    /// Per-request timeout in seconds.
    pub request_timeout_secs: u64,
    /// Evaluation keys stored per user (oldest dropped first).
    pub max_keys_per_user: usize,
    /// Users with stored keys (least recently used dropped first).
    pub max_users: usize,
    /// Bytes of serialized evaluation keys stored per user (least recently used dropped
    /// first; a single larger key is refused with 413).
    pub max_key_bytes_per_user: u64,
    /// Bytes of serialized evaluation keys stored in total (least recently used dropped first).
    pub max_key_bytes_total: u64,
    /// Bytes of deserialized evaluation keys kept in memory (least recently used dropped first).
    pub key_cache_bytes: u64,
    /// Deserialized evaluation keys kept in memory, besides `key_cache_bytes` (about 6 MB each for Apple's
    /// n = 4096, three-modulus parameters once queried: the key polynomials and their 32-bit
    /// and P⁻¹-scaled rows).
    pub key_cache_entries: usize,
    /// Largest `/report` body URL count.
    pub max_report_urls: usize,
    /// Open connections accepted at once on the listener, plain or TLS (more wait in the
    /// backlog).
    pub max_connections: usize,
    /// Open connections accepted at once from one IP address (nginx `limit_conn`; Apple's relay
    /// multiplexes over HTTP/2, so it needs few).
    pub max_connections_per_address: usize,
    /// Seconds a client may take to finish the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds an HTTP/1.1 client may take to send a request's headers (nginx
    /// `client_header_timeout`).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress, HTTP/1.1 keep-alive and
    /// HTTP/2 alike (pings and other frames do not count); then it is closed (nginx
    /// `keepalive_timeout`).
    pub idle_timeout_secs: u64,
    /// PIR requests (`Request` messages) accepted in one `/queries` body; a device sends one per
    /// shard it looks up, a few at a time.
    pub max_requests_per_query: usize,
    /// Tokens one user token may obtain from `/issue` per minute, sustained (0: unlimited).
    pub issue_per_minute: u32,
    /// Tokens one user token may obtain in a burst.
    pub issue_burst: u32,
    /// `/queries` and `/key` calls per minute per `User-Identifier`, sustained (0: unlimited).
    pub queries_per_minute: u32,
    /// `/queries` and `/key` calls per `User-Identifier` in a burst.
    pub queries_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_secs: 30,
            max_keys_per_user: 4,
            max_users: 100_000,
            max_key_bytes_per_user: 8 * 1024 * 1024,
            max_key_bytes_total: 16 * 1024 * 1024 * 1024,
            key_cache_bytes: 512 * 1024 * 1024,
            key_cache_entries: 256,
            max_report_urls: 1000,
            max_connections: 10_000,
            max_connections_per_address: 256,
            tls_handshake_timeout_secs: 10,
            header_read_timeout_secs: 20,
            idle_timeout_secs: 75,
            max_requests_per_query: 64,
            issue_per_minute: 120,
            issue_burst: 200,
            queries_per_minute: 600,
            queries_burst: 300,
        }
    }
}

/// Parses a `listen` value; `:443` (Go and Caddy style) means `0.0.0.0:443`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    let full = match t.strip_prefix(':') {
        Some(port) if !port.contains(':') => format!("0.0.0.0:{port}"),
        _ => t.to_owned(),
    };
    full.parse().map_err(|_| {
        format!(
            "listen = {text:?} is not an address: write \"0.0.0.0:443\", \"[::]:443\", \
             \"127.0.0.1:8080\" or \":443\" (host names are not resolved)"
        )
    })
}

fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map_err(serde::de::Error::custom)
}

fn optional_listen_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map(Some).map_err(serde::de::Error::custom)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn yes() -> bool {
    true
}
fn default_stem() -> String {
    "url".to_owned()
}
fn default_versions() -> usize {
    2
}

impl ServerConfig {
    /// Reads and validates a TOML config file; relative paths are resolved against its folder.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut cfg: ServerConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut cfg.state_dir);
        if let Some(r) = cfg.report_dir.as_mut() {
            fix(r);
        }
        if let Some(t) = cfg.tls.as_mut() {
            if let Some(a) = t.acme.as_mut() {
                if let Some(d) = a.cache_dir.as_mut() {
                    fix(d);
                }
                if let Some(c) = a.ca_file.as_mut() {
                    fix(c);
                }
            }
            if !t.cert.as_os_str().is_empty() {
                fix(&mut t.cert);
            }
            if !t.key.as_os_str().is_empty() {
                fix(&mut t.key);
            }
            t.resolve_acme_paths(&cfg.state_dir);
        }
        for u in &mut cfg.usecases {
            fix(&mut u.dataset_dir);
            if let Some(sp) = u.symmetric_pir.as_mut() {
                fix(&mut sp.database_encryption_key_file);
            }
        }
        if let Some(k) = cfg.ohttp.key_file.as_mut() {
            fix(k);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects configurations that cannot work, with a reason.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.tls.is_none() && !self.dev_plain_http {
            anyhow::bail!(
                "no [tls] section: set tls.cert/tls.key (or [tls.acme] for automatic \
                 certificates), or dev_plain_http = true for local development"
            );
        }
        if let Some(t) = &self.tls {
            match &t.acme {
                Some(a) => a.validate()?,
                None => anyhow::ensure!(
                    !t.cert.as_os_str().is_empty() && !t.key.as_os_str().is_empty(),
                    "[tls] needs both cert and key (PEM files), or a [tls.acme] section for \
                     automatic certificates"
                ),
            }
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.usecases {
            anyhow::ensure!(!u.name.is_empty(), "a use case has an empty name");
            anyhow::ensure!(names.insert(&u.name), "use case {} is listed twice", u.name);
            anyhow::ensure!(
                u.versions_kept >= 1,
                "use case {}: versions_kept must be at least 1",
                u.name
            );
            if let Some(sp) = &u.symmetric_pir {
                anyhow::ensure!(
                    sift_spir::ConfigType::from_name(&sp.config_type).is_some(),
                    "use case {}: unsupported symmetric PIR config_type {}",
                    u.name,
                    sp.config_type
                );
            }
        }
        anyhow::ensure!(
            self.limits.max_body_bytes >= 1024,
            "limits.max_body_bytes is too small"
        );
        for (name, value) in [
            ("max_keys_per_user", self.limits.max_keys_per_user),
            ("max_connections", self.limits.max_connections),
            (
                "max_connections_per_address",
                self.limits.max_connections_per_address,
            ),
        ] {
            anyhow::ensure!(value >= 1, "limits.{name} must be at least 1");
        }
        anyhow::ensure!(
            self.limits.max_users >= 1
                && self.limits.max_key_bytes_per_user >= 1024
                && self.limits.max_key_bytes_total >= self.limits.max_key_bytes_per_user,
            "limits: max_users must be at least 1, max_key_bytes_per_user at least 1024 and \
             max_key_bytes_total at least max_key_bytes_per_user"
        );
        anyhow::ensure!(
            self.limits.idle_timeout_secs >= 1
                && self.limits.header_read_timeout_secs >= 1
                && self.limits.tls_handshake_timeout_secs >= 1
                && self.limits.request_timeout_secs >= 1,
            "limits: timeouts must be at least 1 second"
        );
        anyhow::ensure!(
            self.limits.max_requests_per_query >= 1,
            "limits.max_requests_per_query must be at least 1"
        );
        self.issuer.validate()?;
        if let Some(up) = &self.ohttp.upstream {
            anyhow::ensure!(
                up.starts_with("http://") || up.starts_with("https://"),
                "ohttp.upstream must be an http:// or https:// URL, got {up:?}"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg: ServerConfig = toml::from_str(
            r#"
            dev_plain_http = true
            state_dir = "/tmp/x"
            [[usecases]]
            name = "com.example.app.url.filtering"
            dataset_dir = "/data"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.usecases[0].stem, "url");
        assert_eq!(cfg.usecases[0].versions_kept, 2);
        assert_eq!(cfg.limits.max_body_bytes, 10 * 1024 * 1024);
        assert!(cfg.require_tokens);
    }

    #[test]
    fn plain_http_must_be_asked_for() {
        let cfg: ServerConfig = toml::from_str(r#"state_dir = "/tmp/x""#).unwrap();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("dev_plain_http")
        );
    }

    #[test]
    fn symmetric_pir_section_parses_and_validates() {
        let text = |t: &str| {
            format!(
                r#"
                dev_plain_http = true
                state_dir = "/tmp/x"
                [[usecases]]
                name = "u"
                dataset_dir = "/data"
                [usecases.symmetric_pir]
                database_encryption_key_file = "/k.hex"
                {t}
                "#
            )
        };
        let cfg: ServerConfig = toml::from_str(&text("")).unwrap();
        cfg.validate().unwrap();
        let sp = cfg.usecases[0].symmetric_pir.as_ref().unwrap();
        assert_eq!(sp.database_encryption_key_file, PathBuf::from("/k.hex"));
        assert_eq!(sp.config_type, "OPRF_P384_AES_GCM_192_NONCE_96_TAG_128");
        let cfg: ServerConfig = toml::from_str(&text(r#"config_type = "AES""#)).unwrap();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn listen_accepts_port_only_and_explains_mistakes() {
        assert_eq!(
            parse_listen(":443").unwrap(),
            "0.0.0.0:443".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::]:8443").unwrap(),
            "[::]:8443".parse().unwrap()
        );
        let cfg: ServerConfig = toml::from_str("state_dir = \"/x\"\nlisten = \":443\"").unwrap();
        assert_eq!(cfg.listen.port(), 443);
        let e = toml::from_str::<ServerConfig>("state_dir = \"/x\"\nlisten = \"example.com:443\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0.0.0.0:443"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(
            toml::from_str::<ServerConfig>("state_dir = \"/x\"\nlisten_adress = \"1\"").is_err()
        );
    }
}
