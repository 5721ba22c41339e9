//! Connection hygiene on loopback with short configured limits: idle HTTP/2 connections (even
//! ones that keep pinging), TLS connections that never send a request and silent TCP
//! connections are closed on time, and a real client is served while an attacker holds every
//! connection one address may open.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A config without use cases: the routes that matter here are `/healthz` and the listener.
fn config(state: &Path, tls: Option<&Path>, limits: &str) -> sift_server::ServerConfig {
    let tls = tls
        .map(|d| {
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                d.join("cert.pem").display(),
                d.join("key.pem").display()
            )
        })
        .unwrap_or_default();
    common::parse_config(&format!(
        "{}{tls}[limits]\n{limits}\n",
        common::config_head(state, false)
    ))
}

/// A server started on [`config`].
async fn spawn(state: &Path, tls: Option<&Path>, limits: &str) -> sift_server::RunningServer {
    sift_server::spawn(config(state, tls, limits), None)
        .await
        .unwrap()
}

/// A self-signed certificate for 127.0.0.1 in `dir`; returns it as DER for the client.
fn write_cert(dir: &Path) -> rustls::pki_types::CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    cert.der().clone()
}

/// Reads (and discards) until the server closes; returns how long that took, or `None` when
/// the connection is still open after `limit`. `ping` sends an HTTP/2 PING every 200 ms.
async fn time_until_closed<S>(mut s: S, limit: Duration, ping: bool) -> Option<Duration>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut n_ping = 0u64;
    while start.elapsed() < limit {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => {
                if ping {
                    n_ping += 1;
                    let mut frame = vec![0, 0, 8, 6, 0, 0, 0, 0, 0];
                    frame.extend_from_slice(&n_ping.to_be_bytes());
                    if s.write_all(&frame).await.is_err() {
                        return Some(start.elapsed());
                    }
                }
            }
        }
    }
    None
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn idle_http2_connection_that_keeps_pinging_is_closed_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(dir.path(), None, "idle_timeout_secs = 1").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    s.write_all(EMPTY_SETTINGS).await.unwrap();
    let closed = time_until_closed(s, Duration::from_secs(8), true).await;
    let t = closed.expect("an idle HTTP/2 connection was still open after 8 s");
    assert!(t >= Duration::from_millis(900), "closed too early: {t:?}");
    assert!(t < Duration::from_secs(4), "closed late: {t:?}");
    server.stop().await;
}

#[tokio::test]
async fn idle_http1_keep_alive_connection_is_closed_after_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(dir.path(), None, "idle_timeout_secs = 1").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let closed = time_until_closed(s, Duration::from_secs(8), false).await;
    let t = closed.expect("an idle keep-alive connection was still open after 8 s");
    assert!(t < Duration::from_secs(4), "closed late: {t:?}");
    server.stop().await;
}

#[tokio::test]
async fn tls_connection_that_never_sends_a_request_is_closed_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let der = write_cert(dir.path());
    let server = spawn(
        dir.path(),
        Some(dir.path()),
        "idle_timeout_secs = 1\ntls_handshake_timeout_secs = 1",
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let closed = time_until_closed(tls, Duration::from_secs(8), false).await;
    let t = closed.expect("a TLS connection without a request was still open after 8 s");
    assert!(t < Duration::from_secs(4), "closed late: {t:?}");

    // A TCP connection that never starts the handshake is dropped at the handshake deadline.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    let closed = time_until_closed(silent, Duration::from_secs(8), false).await;
    let t = closed.expect("a silent TCP connection was still open after 8 s");
    assert!(t < Duration::from_secs(4), "closed late: {t:?}");
    server.stop().await;
}

/// Connects to `server` from the loopback address `from` (any of 127.0.0.0/8 works on Linux).
async fn connect_from(from: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((from, 0)))?;
    sock.connect(server).await
}

#[tokio::test]
async fn a_client_is_served_while_an_attacker_holds_the_per_address_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(
        dir.path(),
        None,
        "max_connections = 8\nmax_connections_per_address = 3\nidle_timeout_secs = 60",
    )
    .await;
    // The attacker opens far more connections than the global cap, and sends nothing.
    let mut held = Vec::new();
    for _ in 0..20 {
        if let Ok(s) = connect_from([127, 0, 0, 1], server.addr).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Connections over the per-address cap are closed at once.
    let mut open = 0;
    for s in &mut held {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(50), s.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert_eq!(open, 3, "the server kept {open} connections of one address");

    // Another client still gets an answer, promptly.
    let start = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(3), async {
        let mut s = connect_from([127, 0, 0, 2], server.addr).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .expect("the real client got no answer within 3 s")
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(held);
    server.stop().await;
}
