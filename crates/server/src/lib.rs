//! The sift HTTP service: Apple's PIR API (`/config`, `/key`, `/queries`, `/report`), token checks
//! on every PIR route, evaluation-key storage, dataset versions with reload, metrics, the
//! Privacy Pass issuer and the Oblivious HTTP gateway, over HTTPS with HTTP/2.

pub mod acme;
pub mod auth;
pub mod config;
pub mod error;
pub mod gateway;
pub mod issuer;
pub mod keystore;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod prefilter;
pub mod ratelimit;
pub mod routes;
pub mod spent;
pub mod state;
pub mod systemd;
pub mod tls;

pub use config::ServerConfig;
pub use state::AppState;

use std::net::SocketAddr;
use std::sync::Arc;

/// A server started in-process (tests, `sift demo`): its address and a way to stop it.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The separate metrics listener's address (`[metrics] listen`), when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// `https` when the listener terminates TLS, `http` otherwise.
    pub scheme: &'static str,
    /// The OHTTP gateway, when enabled.
    pub gateway: Option<Arc<gateway::OhttpGateway>>,
    /// Shared state, e.g. to trigger a reload.
    pub state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
        if let Some(m) = self.metrics_task.take() {
            m.abort();
        }
    }
}

impl RunningServer {
    /// The base URL clients use, e.g. `https://127.0.0.1:8443`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

/// Says which address could not be bound and what to do about it.
fn bind_error(addr: SocketAddr, e: std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process listens there: stop it, or set another `listen` in the config)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; the systemd unit grants it)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no interface has this address; use 0.0.0.0 or [::] to listen on all)"
        }
        _ => "",
    };
    anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
}

/// How often the OHTTP key schedule is checked.
const KEY_ROTATION_CHECK: std::time::Duration = std::time::Duration::from_secs(3600);

/// Starts the service on `config.listen` inside the current tokio runtime: HTTPS with HTTP/2
/// when `[tls]` is configured, plain HTTP (HTTP/1.1 and h2c) for development otherwise. `auth`
/// overrides the token check the config implies.
pub async fn spawn(
    config: ServerConfig,
    auth: Option<Arc<dyn auth::TokenAuthority>>,
) -> anyhow::Result<RunningServer> {
    let mut config = config;
    if let Some(t) = config.tls.as_mut() {
        t.resolve_acme_paths(&config.state_dir);
    }
    let certificates = config
        .tls
        .as_ref()
        .map(tls::CertificateStore::load)
        .transpose()?;
    let tls = certificates
        .clone()
        .map(tls::server_config_with)
        .transpose()?;
    let state = Arc::new(AppState::load(config, auth)?);
    let gateway = gateway::OhttpGateway::from_config(&state.config, state.spent.clone())?;
    if let Some(c) = &certificates {
        state.ops.set_certificates(c.clone());
    }
    let service = routes::router(state.clone());
    let app = match &gateway {
        Some(gw) => service.clone().merge(routes::with_metrics(
            gateway::routes(gw.clone(), service),
            state.clone(),
            gw.max_body(),
        )),
        None => service,
    };
    let listener = tokio::net::TcpListener::bind(state.config.listen)
        .await
        .map_err(|e| bind_error(state.config.listen, e))?;
    let addr = listener.local_addr()?;
    // ACME starts once the listener is up: the CA's validation connects to it.
    let acme_task = match (&certificates, &state.config.tls) {
        (Some(c), Some(t)) if t.acme.is_some() => Some(acme::start(t, c.clone())?),
        _ => None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let metrics_listener = match state.config.metrics.listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| bind_error(at, e))
                .map_err(|e| e.context("[metrics] listen"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    let metrics_task = metrics_listener.map(|l| {
        let app = routes::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        })
    });
    let limits: listener::LimitsSource = {
        let state = state.clone();
        Arc::new(move || listener::ConnectionLimits::from(&*state.limits()))
    };
    let rotation = gateway
        .clone()
        .map(|gw| tokio::spawn(gateway::rotation_task(gw, KEY_ROTATION_CHECK)));
    let task = tokio::spawn(async move {
        listener::serve(listener, app, tls, limits, rx).await;
        if let Some(r) = rotation {
            r.abort();
        }
        if let Some(a) = acme_task {
            a.abort();
        }
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        scheme,
        gateway,
        state,
        shutdown: Some(tx),
        task,
        metrics_task,
    })
}
