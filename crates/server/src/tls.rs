//! HTTPS with HTTP/2 (rustls, ring provider) for the public listener.
//!
//! Apple's relay reaches the gateway over HTTP/2 only, so ALPN offers `h2` first and
//! `http/1.1` for tools. The accept loop, with its handshake deadline and connection caps, is
//! in [`crate::listener`]. With `[tls.acme]`, [`crate::acme`] obtains and renews the
//! certificate, writes it to the configured files and reloads this store; its TLS-ALPN-01
//! challenge handshakes are answered here too.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;

/// What the certificate files hold, read and checked: the rustls key pair and the end-entity
/// certificate's facts an operator needs.
pub struct LoadedCertificate {
    /// The chain and private key rustls serves.
    pub certified: Arc<CertifiedKey>,
    /// Expiry of the end-entity certificate, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// Whether the end-entity certificate says it is a CA (`basicConstraints CA:TRUE`, what
    /// `openssl req -x509` sets by default): webpki-based clients refuse it as a server
    /// certificate (`CaUsedAsEndEntity`).
    pub is_ca: bool,
    /// The DNS names it covers (subjectAltName).
    pub dns_names: Vec<String>,
}

/// Reads the PEM files of `tls` and checks that they form a usable pair.
pub fn load_certificate(tls: &TlsConfig) -> anyhow::Result<LoadedCertificate> {
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .with_context(|| format!("reading certificates from {}", tls.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", tls.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate found in {}",
        tls.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("reading the private key from {}", tls.key.display()))?;
    let info = certificate_facts(&certs[0])
        .with_context(|| format!("parsing the first certificate in {}", tls.cert.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider).with_context(|| {
        format!(
            "{} and {} do not form a usable pair",
            tls.cert.display(),
            tls.key.display()
        )
    })?;
    Ok(LoadedCertificate {
        certified: Arc::new(certified),
        not_after_unix: info.0,
        is_ca: info.1,
        dns_names: info.2,
    })
}

/// Expiry (Unix seconds), CA flag and DNS names of a DER certificate.
pub fn certificate_facts(der: &[u8]) -> anyhow::Result<(i64, bool, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((cert.validity().not_after.timestamp(), cert.is_ca(), names))
}

/// The ALPN protocol of ACME's TLS-ALPN-01 validation handshakes (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The serving certificate, replaceable while connections stay open: new handshakes get the
/// certificate loaded last; established connections keep theirs.
#[derive(Debug)]
pub struct CertificateStore {
    paths: TlsConfig,
    /// `None` only with ACME before the first certificate is obtained.
    current: ArcSwapOption<CertifiedKey>,
    not_after_unix: AtomicI64,
    /// Size and modification time of the two files when last loaded.
    files_seen: std::sync::Mutex<String>,
    /// Answers ACME's TLS-ALPN-01 validation handshakes (set by [`crate::acme`]).
    challenges: std::sync::OnceLock<Arc<dyn rustls::server::ResolvesServerCert>>,
}

fn files_signature(tls: &TlsConfig) -> String {
    [&tls.cert, &tls.key]
        .iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => format!("{}:{:?};", m.len(), m.modified().ok()),
            Err(_) => "missing;".to_owned(),
        })
        .collect()
}

impl CertificateStore {
    /// Loads the certificate of `tls`; fails when it is unusable. With `[tls.acme]`, missing
    /// files are not an error: the store starts empty (handshakes fail) until ACME delivers.
    pub fn load(tls: &TlsConfig) -> anyhow::Result<Arc<Self>> {
        let (current, not_after) = if tls.acme.is_some() && !tls.cert.exists() {
            tracing::info!(
                cert = %tls.cert.display(),
                "no certificate yet: requesting one from the ACME CA (TLS handshakes fail until it arrives)"
            );
            (None, 0)
        } else {
            let c = load_certificate(tls)?;
            warn_about(&c, tls);
            (Some(c.certified), c.not_after_unix)
        };
        Ok(Arc::new(Self {
            paths: tls.clone(),
            current: ArcSwapOption::new(current),
            not_after_unix: AtomicI64::new(not_after),
            files_seen: std::sync::Mutex::new(files_signature(tls)),
            challenges: std::sync::OnceLock::new(),
        }))
    }

    /// Whether certificates come from ACME (`[tls.acme]`).
    pub fn is_acme(&self) -> bool {
        self.paths.acme.is_some()
    }

    /// Whether a certificate is serving (false only with ACME before the first one arrives).
    pub fn has_certificate(&self) -> bool {
        self.current.load().is_some()
    }

    /// Routes ACME's TLS-ALPN-01 validation handshakes to `resolver` (set once).
    pub fn set_challenge_resolver(&self, resolver: Arc<dyn rustls::server::ResolvesServerCert>) {
        let _ = self.challenges.set(resolver);
    }

    /// Reloads when the certificate or key file changed since the last load (polling, for
    /// renewals by certbot and similar that do not signal the server). `Ok(true)` when a new
    /// certificate now serves.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let sig = files_signature(&self.paths);
        if *self.files_seen.lock().unwrap_or_else(|p| p.into_inner()) == sig {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    /// Re-reads the files (after a renewal). A file that is missing, unreadable or does not
    /// pair with its key leaves the current certificate serving and is returned as an error.
    pub fn reload(&self) -> anyhow::Result<()> {
        let sig = files_signature(&self.paths);
        if self.is_acme() && !self.paths.cert.exists() {
            // Nothing obtained yet: ACME reloads the store itself once it has a certificate.
            return Ok(());
        }
        let c = load_certificate(&self.paths)?;
        warn_about(&c, &self.paths);
        self.current.store(Some(c.certified));
        *self.files_seen.lock().unwrap_or_else(|p| p.into_inner()) = sig;
        self.not_after_unix
            .store(c.not_after_unix, Ordering::Relaxed);
        Ok(())
    }

    /// Expiry of the serving certificate, seconds since the Unix epoch (0 while ACME has not
    /// delivered the first one).
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix.load(Ordering::Relaxed)
    }

    /// Logs a warning when the serving certificate expires within [`EXPIRY_WARNING_DAYS`] (an
    /// error once expired); called at start, on reload and daily.
    pub fn check_expiry(&self) {
        if !self.has_certificate() {
            return;
        }
        log_expiry(self.not_after_unix(), &self.paths);
    }
}

/// How long before expiry the server and `sift doctor` start warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn log_expiry(not_after: i64, tls: &TlsConfig) {
    let left = not_after - now_unix();
    let days = left.div_euclid(86_400);
    let acme = tls.acme.is_some();
    if acme && left > 0 {
        // Renewed automatically a third of its lifetime ahead; failures are logged as they
        // happen.
        if days < EXPIRY_WARNING_DAYS {
            tracing::warn!(
                cert = %tls.cert.display(),
                days_left = days,
                "the ACME certificate expires soon and has not been renewed yet: check the ACME errors in the log"
            );
        }
        return;
    }
    if left <= 0 {
        tracing::error!(
            cert = %tls.cert.display(),
            "the TLS certificate has EXPIRED: devices and Apple's relay refuse it; renew it and send SIGHUP"
        );
    } else if days < EXPIRY_WARNING_DAYS {
        tracing::warn!(
            cert = %tls.cert.display(),
            days_left = days,
            "the TLS certificate expires soon; renew it and send SIGHUP (no restart needed)"
        );
    }
}

fn warn_about(c: &LoadedCertificate, tls: &TlsConfig) {
    log_expiry(c.not_after_unix, tls);
    if c.is_ca {
        tracing::warn!(
            cert = %tls.cert.display(),
            "the TLS certificate is marked as a CA (basicConstraints CA:TRUE, the default of \
             `openssl req -x509`); Apple's devices and rustls clients refuse it as a server \
             certificate. Use a certificate from a public CA, or see docs/deploy.md for a test one"
        );
    }
}

impl rustls::server::ResolvesServerCert for CertificateStore {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            return self.challenges.get()?.resolve(hello);
        }
        self.current.load_full()
    }
}

/// Builds the rustls server config serving `certs`' current certificate, with ALPN `h2`,
/// `http/1.1`.
pub fn server_config_with(
    certs: Arc<CertificateStore>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let acme = certs.is_acme();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        // Offered only to the CA's validation handshakes (which ask for nothing else).
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// Builds the rustls server config from the PEM files in `tls`, with ALPN `h2`, `http/1.1`.
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_config_with(CertificateStore::load(tls)?)
}
