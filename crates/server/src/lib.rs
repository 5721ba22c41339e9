//! The sift HTTP service: Apple's PIR API (`/config`, `/key`, `/queries`, `/report`), token checks
//! on every PIR route, evaluation-key storage, dataset versions with reload, and metrics.

pub mod auth;
pub mod config;
pub mod error;
pub mod issuer;
pub mod keystore;
pub mod metrics;
pub mod routes;
pub mod state;

pub use config::ServerConfig;
pub use state::AppState;

use std::net::SocketAddr;
use std::sync::Arc;

/// A server started in-process (tests, `sift demo`): its address and a way to stop it.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Shared state, e.g. to trigger a reload.
    pub state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Starts the service on `config.listen` (plain HTTP, for loopback development and tests) inside
/// the current tokio runtime. `auth` overrides the token check the config implies.
pub async fn spawn(
    config: ServerConfig,
    auth: Option<Arc<dyn auth::TokenAuthority>>,
) -> anyhow::Result<RunningServer> {
    let state = Arc::new(AppState::load(config, auth)?);
    let app = routes::router(state.clone());
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("server stopped: {e}");
        }
    });
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}
