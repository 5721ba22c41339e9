//! HTTPS with HTTP/2 (rustls, ring provider) for the public listener.
//!
//! Apple's relay reaches the gateway over HTTP/2 only, so ALPN offers `h2` first and
//! `http/1.1` for tools. Handshakes have a deadline and open connections are capped, so slow
//! or numerous clients cannot exhaust the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{Limits, TlsConfig};

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

/// The serving certificate, replaceable while connections stay open: new handshakes get the
/// certificate loaded last; established connections keep theirs.
#[derive(Debug)]
pub struct CertificateStore {
    paths: TlsConfig,
    current: ArcSwap<CertifiedKey>,
    not_after_unix: AtomicI64,
    /// Size and modification time of the two files when last loaded.
    files_seen: std::sync::Mutex<String>,
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
    /// Loads the certificate of `tls`; fails when it is unusable.
    pub fn load(tls: &TlsConfig) -> anyhow::Result<Arc<Self>> {
        let c = load_certificate(tls)?;
        warn_about(&c, tls);
        Ok(Arc::new(Self {
            paths: tls.clone(),
            current: ArcSwap::new(c.certified),
            not_after_unix: AtomicI64::new(c.not_after_unix),
            files_seen: std::sync::Mutex::new(files_signature(tls)),
        }))
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
        let c = load_certificate(&self.paths)?;
        warn_about(&c, &self.paths);
        self.current.store(c.certified);
        *self.files_seen.lock().unwrap_or_else(|p| p.into_inner()) = sig;
        self.not_after_unix
            .store(c.not_after_unix, Ordering::Relaxed);
        Ok(())
    }

    /// Expiry of the serving certificate, seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix.load(Ordering::Relaxed)
    }

    /// Logs a warning when the serving certificate expires within [`EXPIRY_WARNING_DAYS`] (an
    /// error once expired); called at start, on reload and daily.
    pub fn check_expiry(&self) {
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
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Builds the rustls server config serving `certs`' current certificate, with ALPN `h2`,
/// `http/1.1`.
pub fn server_config_with(
    certs: Arc<CertificateStore>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Builds the rustls server config from the PEM files in `tls`, with ALPN `h2`, `http/1.1`.
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_config_with(CertificateStore::load(tls)?)
}

/// Accepts TLS connections on `listener` and serves `app` over HTTP/2 or HTTP/1.1 until
/// `shutdown` fires, then waits for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    limits: &Limits,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let handshake_timeout = Duration::from_secs(limits.tls_handshake_timeout_secs);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024);
    builder
        .http1()
        .header_read_timeout(Some(handshake_timeout))
        .timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 30 s after shutdown; closing them");
    }
}
