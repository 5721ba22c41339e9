//! The accept loop shared by the plain and the TLS listener, with connection hygiene:
//!
//! - a global cap on open connections (more wait in the kernel's backlog) and a cap per IP
//!   address (connections over it are closed at once), so one client cannot hold every slot;
//! - a TLS handshake deadline;
//! - an HTTP/1.1 header read timeout;
//! - an idle timeout measured in *requests*, not bytes: a connection with no request in
//!   progress for `idle_timeout_secs` is shut down gracefully (HTTP/2 GOAWAY), whatever frames
//!   (pings, settings) it keeps sending, and dropped if it has not closed shortly after.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::config::Limits;

/// How long a connection told to shut down (idle, or server stopping) with no request in
/// progress may take to close by itself (HTTP/2 GOAWAY exchange) before it is dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The timeouts and caps of [`serve`], taken from `[limits]`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open connections at once.
    pub max_connections: usize,
    /// Open connections at once from one IP address.
    pub max_per_address: usize,
    /// Deadline of the TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for an HTTP/1.1 request's headers.
    pub header_read_timeout: Duration,
    /// Time without a request in progress after which a connection is closed.
    pub idle_timeout: Duration,
    /// Longest a request may run (bounds the shutdown of a busy connection, plus a grace).
    pub request_timeout: Duration,
}

impl From<&Limits> for ConnectionLimits {
    fn from(l: &Limits) -> Self {
        Self {
            max_connections: l.max_connections,
            max_per_address: l.max_connections_per_address,
            handshake_timeout: Duration::from_secs(l.tls_handshake_timeout_secs),
            header_read_timeout: Duration::from_secs(l.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            request_timeout: Duration::from_secs(l.request_timeout_secs),
        }
    }
}

/// Where [`serve`] reads its limits: called for every accepted connection and while a
/// connection idles, so a reload of `[limits]` applies without restarting the listener (open
/// connections keep running; a lower `max_connections` waits for connections to close).
pub type LimitsSource = Arc<dyn Fn() -> ConnectionLimits + Send + Sync>;

/// A source that always answers `limits`.
pub fn fixed_limits(limits: ConnectionLimits) -> LimitsSource {
    Arc::new(move || limits.clone())
}

fn http_builder(header_read_timeout: Duration) -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(header_read_timeout));
    Arc::new(builder)
}

/// Open connections per IP address, with a cap.
#[derive(Debug, Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounts itself when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn try_take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Requests in progress on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last_end: Mutex<Instant>,
}

/// Marks one request in progress until dropped.
struct RequestMark(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
        })
    }

    fn begin(self: &Arc<Self>) -> RequestMark {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestMark(self.clone())
    }

    /// Whether a request is in progress.
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// How long the connection has had no request in progress (zero while one runs).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.last_end
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

impl Drop for RequestMark {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections on `listener` and serves `app` over HTTP/1.1 or HTTP/2 (TLS with ALPN
/// when `tls` is given, h2c prior knowledge otherwise) until `shutdown` fires; then asks open
/// connections to finish and waits for them (30 s at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: LimitsSource,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let first = limits();
    let mut max_connections = first.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let per_address = Arc::new(PerAddress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut header_read_timeout = first.header_read_timeout;
    let mut builder = http_builder(header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let now = limits();
        if now.max_connections > max_connections {
            slots.add_permits(now.max_connections - max_connections);
        } else if now.max_connections < max_connections {
            // Takes the surplus slots out of service as connections close.
            let surplus = u32::try_from(max_connections - now.max_connections).unwrap_or(u32::MAX);
            let slots = slots.clone();
            tokio::spawn(async move {
                if let Ok(p) = slots.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        max_connections = now.max_connections;
        if now.header_read_timeout != header_read_timeout {
            header_read_timeout = now.header_read_timeout;
            builder = http_builder(header_read_timeout);
        }
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
        let Some(address_slot) = per_address.try_take(peer.ip(), limits().max_per_address) else {
            tracing::debug!(%peer, "connection refused: too many open from this address");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = address_slot;
            serve_one(tcp, peer, acceptor, app, &builder, &limits, stop).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open 30 s after shutdown; closing them");
    }
}

/// Runs one connection: the TLS handshake (with its deadline) when `acceptor` is set, then
/// HTTP until the client closes, the connection idles out or the server stops.
async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: &LimitsSource,
    stop: watch::Receiver<bool>,
) {
    match acceptor {
        None => drive(tcp, peer, app, builder, limits, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits().handshake_timeout, acceptor.accept(tcp)).await {
                // An ACME validation handshake (TLS-ALPN-01) carries no requests: close it.
                Ok(Ok(tls))
                    if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) => {}
                Ok(Ok(tls)) => drive(tls, peer, app, builder, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn drive<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: &LimitsSource,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let tracked = activity.clone();
    let service = tower::service_fn(move |req: http::Request<Incoming>| {
        let mark = tracked.begin();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(Body::new)).await;
            drop(mark);
            resp
        }
    });
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let mut closing_since: Option<Instant> = None;
    loop {
        let limits = limits();
        let tick =
            (limits.idle_timeout / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let hard_limit = limits.request_timeout + SHUTDOWN_GRACE;
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if closing_since.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            _ = tokio::time::sleep(tick) => {
                match closing_since {
                    None if activity.idle_for() >= limits.idle_timeout => {
                        tracing::debug!(%peer, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing_since = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() >= hard_limit
                        || (t.elapsed() >= SHUTDOWN_GRACE && !activity.busy()) => {
                        tracing::debug!(%peer, "dropping a connection that did not close");
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}
