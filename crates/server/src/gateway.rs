//! The Oblivious HTTP gateway (RFC 9458) in front of the PIR service and the issuer.
//!
//! Apple's relay posts `message/ohttp-req` bodies to `POST /`; the gateway decrypts them into
//! binary HTTP requests, runs them through the service's own router (in process) or forwards
//! them to `ohttp.upstream`, and encrypts the answers. Keys live in a 0600 file under the state
//! directory, rotate on a schedule and stay accepted for a grace period after rotation.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use sift_ohttp::{Gateway, GatewayConfig, KeyStore};
use tower::ServiceExt as _;

use crate::config::ServerConfig;
use crate::spent::SpentStore;

/// Scope of the replay records of requests made to the gateway key `public_key`.
fn ohttp_scope(public_key: &[u8]) -> String {
    use sha2::Digest as _;
    format!(
        "ohttp-{}",
        &hex::encode(sha2::Sha256::digest(public_key))[..16]
    )
}

/// The gateway's requests recorded in the durable replay store, each kept as long as its key
/// can be accepted.
struct DurableReplay {
    store: Arc<dyn SpentStore>,
    /// Longest a key can still be accepted from now (rotation age + grace + one check
    /// period); `None` when keys do not rotate.
    keep_for: Option<Duration>,
}

impl sift_ohttp::SpentRequests for DurableReplay {
    fn spend(
        &self,
        public_key: &[u8; 32],
        enc: &[u8; 32],
        valid_until: Option<SystemTime>,
    ) -> Result<bool, String> {
        // A dated request is refused after its Date window anyway; an undated one lives as
        // long as its key.
        let key_end = self.keep_for.map(|d| SystemTime::now() + d);
        let keep_until = match (valid_until, key_end) {
            (Some(v), Some(k)) => Some(v.min(k)),
            (v, k) => v.or(k),
        };
        self.store
            .spend(&ohttp_scope(public_key), enc, keep_until)
            .map_err(|e| format!("{e:#}"))
    }
}

/// Room for the encapsulation around a request body: header, `enc`, AEAD tag and the binary
/// HTTP framing of method, path and headers.
const ENCAPSULATION_OVERHEAD: usize = 64 * 1024;

/// Margin for the hourly key-schedule check: a key can outlive its nominal end by that much.
const KEY_CHECK_SLACK: Duration = Duration::from_secs(2 * 3600);

/// The gateway with its key store and where decapsulated requests go.
pub struct OhttpGateway {
    gateway: Gateway,
    store: Mutex<KeyStore>,
    key_path: PathBuf,
    rotate_after: Option<Duration>,
    upstream: Option<Upstream>,
    max_body: usize,
    spent: Arc<dyn SpentStore>,
}

/// Forwarding over HTTP(S) to a separate service.
struct Upstream {
    base: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for OhttpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OhttpGateway")
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl OhttpGateway {
    /// Loads (or creates) the gateway keys and sets limits from the server config; accepted
    /// requests are recorded in `spent` (shared with other replicas) as well as in memory.
    /// `None` when the gateway is disabled.
    pub fn from_config(
        config: &ServerConfig,
        spent: Arc<dyn SpentStore>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let oc = &config.ohttp;
        if !oc.enabled {
            return Ok(None);
        }
        let key_path = oc.key_path(&config.state_dir);
        let grace = Duration::from_secs(oc.grace_days * 86_400);
        let mut store = KeyStore::load_or_generate(&key_path, grace)
            .with_context(|| format!("OHTTP gateway keys at {}", key_path.display()))?;
        store.prune(SystemTime::now());
        // Bodies inside can be as large as the service accepts, plus the encapsulation.
        let max_body = config.limits.max_body_bytes + ENCAPSULATION_OVERHEAD;
        let gw_config = GatewayConfig {
            max_request_body: max_body,
            replay_capacity: oc.replay_capacity,
            date_window: (oc.date_window_secs > 0)
                .then(|| Duration::from_secs(oc.date_window_secs)),
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(&store, gw_config).context("starting the OHTTP gateway")?;
        let rotate_after =
            (oc.rotate_after_days > 0).then(|| Duration::from_secs(oc.rotate_after_days * 86_400));
        gateway.set_spent_requests(Arc::new(DurableReplay {
            store: spent.clone(),
            keep_for: rotate_after.map(|r| r + grace + KEY_CHECK_SLACK),
        }));
        let upstream = match &oc.upstream {
            None => None,
            Some(base) => Some(Upstream {
                base: base.trim_end_matches('/').to_owned(),
                http: reqwest::Client::builder()
                    .no_gzip()
                    .timeout(Duration::from_secs(config.limits.request_timeout_secs))
                    .build()
                    .context("building the upstream HTTP client")?,
            }),
        };
        Ok(Some(Arc::new(Self {
            gateway,
            store: Mutex::new(store),
            key_path,
            rotate_after,
            upstream,
            max_body,
            spent,
        })))
    }

    /// Largest encapsulated request body accepted.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The published key configuration list (`application/ohttp-keys`).
    pub fn key_configs(&self) -> Bytes {
        self.gateway.key_configs()
    }

    /// Rotates the key when it is older than `rotate_after_days` (and drops keys past their
    /// grace period); saves the file before the gateway uses the new key. Returns whether the
    /// published key changed.
    pub fn rotate_if_due(&self, now: SystemTime) -> anyhow::Result<bool> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let due = self
            .rotate_after
            .is_some_and(|age| store.needs_rotation(now, age));
        let mut next = store.clone();
        if due {
            next.rotate(now)?;
        } else {
            next.prune(now);
        }
        next.save(&self.key_path)?;
        self.gateway.update_keys(&next)?;
        self.retire_replay_records(&next, now);
        *store = next;
        Ok(due)
    }

    /// Rotates now, whatever the key's age (operator request).
    pub fn rotate_now(&self) -> anyhow::Result<u8> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = store.clone();
        let id = next.rotate(SystemTime::now())?.key_id();
        next.save(&self.key_path)?;
        self.gateway.update_keys(&next)?;
        self.retire_replay_records(&next, SystemTime::now());
        *store = next;
        Ok(id)
    }

    /// Forgets the replay records of keys no longer accepted (their requests fail anyway).
    fn retire_replay_records(&self, store: &KeyStore, now: SystemTime) {
        let keep: Vec<String> = store
            .accepted_keys(now)
            .iter()
            .map(|k| ohttp_scope(k.public_key()))
            .collect();
        if let Err(e) = self.spent.retire_scopes_except("ohttp-", &keep) {
            tracing::warn!(error = %e, "could not forget retired OHTTP replay records");
        }
    }

    /// Runs one decapsulated request: through `inner` in process, or to the upstream.
    async fn forward(&self, inner: Router, req: http::Request<Bytes>) -> http::Response<Bytes> {
        let result = match &self.upstream {
            None => forward_in_process(inner, req, self.max_body).await,
            Some(up) => forward_upstream(up, req, self.max_body).await,
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "OHTTP gateway could not forward a request");
            let mut resp = http::Response::new(Bytes::from_static(b"upstream unavailable"));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            resp
        })
    }
}

/// Headers that describe one hop and must not be copied between connections.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

async fn forward_in_process(
    inner: Router,
    req: http::Request<Bytes>,
    max_body: usize,
) -> anyhow::Result<http::Response<Bytes>> {
    let (mut parts, body) = req.into_parts();
    if let Some(authority) = parts.uri.authority()
        && !parts.headers.contains_key(header::HOST)
    {
        parts
            .headers
            .insert(header::HOST, authority.as_str().parse()?);
    }
    strip_hop_by_hop(&mut parts.headers);
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()?;
    parts.extensions.insert(crate::routes::ForwardedByGateway);
    let resp = inner
        .oneshot(Request::from_parts(parts, Body::from(body)))
        .await
        .unwrap_or_else(|never| match never {});
    let (mut parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, max_body)
        .await
        .context("reading the service's response")?;
    strip_hop_by_hop(&mut parts.headers);
    Ok(http::Response::from_parts(parts, body))
}

async fn forward_upstream(
    up: &Upstream,
    req: http::Request<Bytes>,
    max_body: usize,
) -> anyhow::Result<http::Response<Bytes>> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", up.base);
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::CONTENT_LENGTH);
    let resp = up
        .http
        .request(parts.method, &url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .with_context(|| format!("forwarding to {url}"))?;
    let status = resp.status();
    let mut headers = resp.headers().clone();
    if resp.content_length().is_some_and(|n| n as usize > max_body) {
        anyhow::bail!("upstream response too large");
    }
    let body = resp
        .bytes()
        .await
        .context("reading the upstream response")?;
    anyhow::ensure!(body.len() <= max_body, "upstream response too large");
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// State of the gateway routes: the gateway and the router requests are forwarded to.
#[derive(Clone)]
struct GatewayRoute {
    gw: Arc<OhttpGateway>,
    inner: Router,
}

/// The gateway's routes: `POST /` (encapsulated requests), `GET /ohttp-keys` and
/// `GET /.well-known/ohttp-gateway` (key configuration). `inner` is the service's router; it
/// does not contain these routes, so an encapsulated request cannot reach the gateway again.
pub fn routes(gw: Arc<OhttpGateway>, inner: Router) -> Router {
    Router::new()
        .route("/", post(encapsulated))
        .route("/ohttp-keys", get(key_config))
        .route("/.well-known/ohttp-gateway", get(key_config))
        .with_state(GatewayRoute { gw, inner })
}

async fn key_config(State(route): State<GatewayRoute>) -> Response {
    route.gw.gateway.key_config_response().map(Body::from)
}

async fn encapsulated(State(route): State<GatewayRoute>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, route.gw.max_body).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "encapsulated request too large",
        )
            .into_response();
    };
    let outer = http::Request::from_parts(parts, body);
    let gw = route.gw.clone();
    let inner = route.inner.clone();
    gw.gateway
        .serve(outer, |req| gw.forward(inner, req))
        .await
        .map(Body::from)
}

/// Checks the key schedule every `every` until the process ends (spawned by the server).
pub async fn rotation_task(gw: Arc<OhttpGateway>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let g = gw.clone();
        match tokio::task::spawn_blocking(move || g.rotate_if_due(SystemTime::now())).await {
            Ok(Ok(true)) => tracing::info!("rotated the OHTTP gateway key"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "OHTTP key rotation failed"),
            Err(e) => tracing::error!(error = %e, "OHTTP key rotation task failed"),
        }
    }
}
