//! Automatic certificates (`[tls.acme]`, RFC 8555) with the TLS-ALPN-01 challenge (RFC 8737)
//! answered on the TLS listener itself, so no port 80 is needed.
//!
//! The protocol (account, order, challenge, finalize, renewal a third of the lifetime ahead of
//! expiry, back-off after failures) is the `rustls-acme` crate's. What sift adds is where the
//! results go: the certificate and key are written to `tls.cert`/`tls.key` (default
//! `<state_dir>/acme/cert.pem` and `key.pem`, the key readable by the owner only) and the
//! [`CertificateStore`] is reloaded, so a restart serves the cached certificate at once and the
//! expiry metric, expiry warnings, `sift serve --check-config` and `sift doctor` see the ACME
//! certificate like any other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};

use crate::config::{AcmeConfig, TlsConfig};
use crate::tls::CertificateStore;

/// Starts obtaining and renewing the certificate of `tls` in the background (a tokio task)
/// and routes the CA's validation handshakes of `store` to it. Returns the task's handle.
pub fn start(
    tls: &TlsConfig,
    store: Arc<CertificateStore>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let acme = tls
        .acme
        .as_ref()
        .context("ACME started without a [tls.acme] section")?;
    let cache_dir = acme
        .cache_dir
        .clone()
        .context("[tls.acme] cache_dir was not resolved (TlsConfig::resolve_acme_paths)")?;
    create_private_dir(&cache_dir)?;
    let client = client_config(acme)?;
    let cache = FileCache {
        dir: cache_dir,
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        store: store.clone(),
    };
    let mut state = rustls_acme::AcmeConfig::new_with_client_config(&acme.domains, client)
        .directory(&acme.directory)
        .contact(acme.contact_uris())
        .cache(cache)
        .state();
    store.set_challenge_resolver(state.resolver());
    let directory = acme.directory.clone();
    let domains = acme.domains.join(", ");
    Ok(tokio::spawn(async move {
        while let Some(event) = state.next().await {
            match event {
                Ok(rustls_acme::EventOk::DeployedNewCert) => {
                    tracing::info!(%directory, %domains, "obtained a new certificate from the ACME CA")
                }
                Ok(rustls_acme::EventOk::DeployedCachedCert) => {
                    tracing::info!(%domains, "serving the cached ACME certificate; it is renewed a third of its lifetime ahead of expiry")
                }
                Ok(other) => tracing::debug!(event = ?other, "ACME"),
                Err(e) => tracing::error!(
                    %directory,
                    %domains,
                    error = %e,
                    "ACME failed (retried with back-off): check that each domain resolves to this \
                     server and that the CA reaches it on port 443"
                ),
            }
        }
    }))
}

/// The HTTPS client settings for the CA: the public roots, plus `ca_file` when set.
fn client_config(acme: &AcmeConfig) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &acme.ca_file {
        let certs = CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("[tls.acme] ca_file: reading {}", ca.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("[tls.acme] ca_file: parsing {}", ca.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "[tls.acme] ca_file: no certificate in {}",
            ca.display()
        );
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("[tls.acme] ca_file: {}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "creating the ACME folder {} (it must be writable by the server)",
            dir.display()
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to its owner", dir.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`sift_fsutil`]), readable by the owner only when
/// `private`.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    if private {
        sift_fsutil::write_private(path, bytes)
    } else {
        sift_fsutil::write_atomic(path, bytes)
    }
}

/// What the certificate in the files was obtained for: a new directory or other domains
/// mean a new order rather than the cached certificate.
fn stamp(domains: &[String], directory: &str) -> String {
    let mut s = format!("directory {directory}\n");
    for d in domains {
        s += &format!("domain {d}\n");
    }
    s
}

/// The cache `rustls-acme` reads and writes: the certificate and key as the PEM files the
/// server serves, and the account key, all in files.
struct FileCache {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    store: Arc<CertificateStore>,
}

impl FileCache {
    fn stamp_path(&self) -> PathBuf {
        self.dir.join("cert.for")
    }

    fn account_path(&self, contact: &[String], directory: &str) -> PathBuf {
        let mut h = Sha256::new();
        h.update(directory.as_bytes());
        for c in contact {
            h.update([0]);
            h.update(c.as_bytes());
        }
        let digest = hex::encode(&h.finalize()[..8]);
        self.dir.join(format!("account-{digest}.key"))
    }
}

fn read_if_exists(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Splits `rustls-acme`'s PEM (the PKCS#8 private key, then the chain) into key and chain.
fn split_pem(pem: &[u8]) -> std::io::Result<(&[u8], &[u8])> {
    const END_KEY: &[u8] = b"-----END PRIVATE KEY-----";
    let end = pem
        .windows(END_KEY.len())
        .position(|w| w == END_KEY)
        .map(|i| i + END_KEY.len())
        .ok_or_else(|| std::io::Error::other("the ACME certificate has no private key"))?;
    let (key, chain) = pem.split_at(end);
    let chain = chain.trim_ascii_start();
    if chain.is_empty() {
        return Err(std::io::Error::other(
            "the ACME certificate has no certificate chain",
        ));
    }
    Ok((key, chain))
}

#[async_trait::async_trait]
impl rustls_acme::CertCache for FileCache {
    type EC = std::io::Error;

    async fn load_cert(
        &self,
        domains: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, Self::EC> {
        let for_now = stamp(domains, directory_url);
        if read_if_exists(&self.stamp_path())?.as_deref() != Some(for_now.as_bytes()) {
            return Ok(None);
        }
        let (Some(key), Some(cert)) = (read_if_exists(&self.key)?, read_if_exists(&self.cert)?)
        else {
            return Ok(None);
        };
        let mut pem = key;
        pem.push(b'\n');
        pem.extend_from_slice(&cert);
        Ok(Some(pem))
    }

    async fn store_cert(
        &self,
        domains: &[String],
        directory_url: &str,
        cert: &[u8],
    ) -> Result<(), Self::EC> {
        let (key, chain) = split_pem(cert)?;
        let mut key = key.to_vec();
        key.push(b'\n');
        write_atomically(&self.key, &key, true)?;
        write_atomically(&self.cert, chain, false)?;
        write_atomically(
            &self.stamp_path(),
            stamp(domains, directory_url).as_bytes(),
            false,
        )?;
        self.store.reload().map_err(|e| {
            std::io::Error::other(format!("the new ACME certificate does not load: {e:#}"))
        })
    }
}

#[async_trait::async_trait]
impl rustls_acme::AccountCache for FileCache {
    type EA = std::io::Error;

    async fn load_account(
        &self,
        contact: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, Self::EA> {
        read_if_exists(&self.account_path(contact, directory_url))
    }

    async fn store_account(
        &self,
        contact: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> Result<(), Self::EA> {
        write_atomically(&self.account_path(contact, directory_url), account, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_pem_separates_key_and_chain() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let (key, chain) = split_pem(pem).unwrap();
        assert!(key.ends_with(b"-----END PRIVATE KEY-----"));
        assert!(chain.starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert!(split_pem(b"-----BEGIN CERTIFICATE-----\n").is_err());
        assert!(split_pem(b"-----BEGIN PRIVATE KEY-----\nA\n-----END PRIVATE KEY-----\n").is_err());
    }

    #[test]
    fn a_changed_domain_list_or_directory_changes_the_stamp() {
        let a = stamp(&["a.example".into()], "https://ca/dir");
        assert_ne!(a, stamp(&["b.example".into()], "https://ca/dir"));
        assert_ne!(a, stamp(&["a.example".into()], "https://other/dir"));
        assert_eq!(a, stamp(&["a.example".into()], "https://ca/dir"));
    }
}
