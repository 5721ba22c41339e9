//! The service's TOML configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Everything `sift serve` needs, read from one TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
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
}

/// TLS material paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// One PIR use case, e.g. `com.example.app.url.filtering`.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
    /// Deserialized evaluation keys kept in memory.
    pub key_cache_entries: usize,
    /// Largest `/report` body URL count.
    pub max_report_urls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_secs: 30,
            max_keys_per_user: 4,
            max_users: 100_000,
            key_cache_entries: 64,
            max_report_urls: 1000,
        }
    }
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
            fix(&mut t.cert);
            fix(&mut t.key);
        }
        for u in &mut cfg.usecases {
            fix(&mut u.dataset_dir);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects configurations that cannot work, with a reason.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.tls.is_none() && !self.dev_plain_http {
            anyhow::bail!(
                "no [tls] section: set tls.cert/tls.key, or dev_plain_http = true for local development"
            );
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
        }
        anyhow::ensure!(
            self.limits.max_body_bytes >= 1024,
            "limits.max_body_bytes is too small"
        );
        anyhow::ensure!(
            self.limits.max_keys_per_user >= 1,
            "limits.max_keys_per_user must be at least 1"
        );
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
    fn unknown_keys_are_rejected() {
        assert!(
            toml::from_str::<ServerConfig>("state_dir = \"/x\"\nlisten_adress = \"1\"").is_err()
        );
    }
}
