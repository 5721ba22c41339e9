//! HTTP routes of Apple's PIR service (pir-service-example `PIRServiceController`,
//! `ReportController`): raw protobuf bodies in and out, errors as JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use prost::Message;
use sift_proto::{api, service};
use tower_http::compression::CompressionLayer;

use crate::error::ApiError;
use crate::keystore::stored_timestamp;
use crate::metrics::{GatewayOutcome, IssuerOutcome, RequestRecord, Via};
use crate::state::{AppState, downgrade_for_old_clients};

/// The service's router: PIR routes, `/report`, `/metrics` (unless `[metrics] listen` moves it
/// to its own listener) and `/healthz`. Body size and request timeout follow the current
/// `[limits]`, so a reload changes them for the next request.
pub fn router(state: Arc<AppState>) -> Router {
    let config_route = Router::new()
        .route("/config", post(config))
        .layer(CompressionLayer::new().gzip(true));
    let issuer_routes = match &state.issuers {
        Some(i) => crate::issuer::routes(i.clone()),
        None => Router::new(),
    };
    let prefilter_routes = if state.config.prefilter.enabled {
        crate::prefilter::routes()
    } else {
        Router::new()
    };
    let mut routes = Router::new()
        .merge(config_route)
        .merge(prefilter_routes)
        .route("/key", post(key))
        .route("/queries", post(queries))
        .route("/report", post(report))
        .route("/healthz", get(|| async { "ok" }));
    if state.config.metrics.listen.is_none() {
        routes = routes.route("/metrics", get(metrics));
    }
    routes
        .with_state(state.clone())
        // The issuer's routes get the same body limit, timeout and metrics as the others.
        .merge(issuer_routes)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(middleware::from_fn_with_state(state, record_metrics))
}

/// The router of the separate metrics listener (`[metrics] listen`): `/metrics` and `/healthz`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Answers 413 at once when `Content-Length` declares more than `max` bytes, instead of
/// reading (or waiting for) a body that will be refused anyway.
pub async fn refuse_declared_oversize(max: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {max} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// `limits.max_body_bytes` as it is now: a declared larger body is refused at once, an
/// undeclared one stops being read at the limit (413).
async fn limit_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let max = state.limits().max_body_bytes;
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, max)));
    refuse_declared_oversize(max, req, next).await
}

/// `limits.request_timeout_secs` as it is now: 408 when the handler takes longer.
async fn request_timeout(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.limits().request_timeout_secs);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

/// Adds request metrics and the request timeout to `routes` (used for the gateway's routes,
/// which are built outside [`router`]).
/// `max_body` is the largest (encapsulated) body those routes accept.
pub fn with_metrics(routes: Router, state: Arc<AppState>, max_body: usize) -> Router {
    routes
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            refuse_declared_oversize(max_body, req, next)
        }))
        .layer(middleware::from_fn_with_state(state, record_metrics))
}

/// Marks a request the OHTTP gateway decapsulated and runs in process, so that it is counted
/// with `via="ohttp"` (its outer `POST /` is counted as well).
#[derive(Clone, Copy, Debug)]
pub struct ForwardedByGateway;

/// The use case a response was for, set by handlers that know it so that the metrics layer
/// counts each request once, with its use case.
#[derive(Clone)]
pub struct UseCaseLabel(pub String);

/// The route label for `path`: a fixed set, so a client cannot grow the metrics.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/config" => "/config",
        "/key" => "/key",
        "/queries" => "/queries",
        "/report" => "/report",
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        "/" => "/",
        "/ohttp-keys" => "/ohttp-keys",
        "/.well-known/ohttp-gateway" => "/.well-known/ohttp-gateway",
        "/.well-known/private-token-issuer-directory" => {
            "/.well-known/private-token-issuer-directory"
        }
        "/token-key-for-user-token" => "/token-key-for-user-token",
        "/issue" => "/issue",
        p if p.starts_with("/prefilter/") => {
            if p.trim_start_matches("/prefilter/").contains('/') {
                "/prefilter/data"
            } else {
                "/prefilter"
            }
        }
        _ => "other",
    }
}

async fn record_metrics(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_label(req.uri().path());
    let via = if req.extensions().get::<ForwardedByGateway>().is_some() {
        Via::Ohttp
    } else {
        Via::Direct
    };
    let method = method_label(req.method());
    let bytes_in = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed = start.elapsed();
    let usecase = resp
        .extensions()
        .get::<UseCaseLabel>()
        .map(|l| l.0.as_str())
        .unwrap_or("-");
    // Only configured use-case names become labels.
    let usecase = if usecase != "-" && state.usecases().contains_key(usecase) {
        usecase
    } else {
        "-"
    };
    let status = resp.status().as_u16();
    state.metrics.record(&RequestRecord {
        route,
        via,
        usecase,
        status,
        elapsed,
    });
    match route {
        "/" if method == "POST" => {
            let problem = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|c| c.as_bytes().starts_with(b"application/problem+json"));
            state
                .metrics
                .count_gateway(GatewayOutcome::from_response(status, problem));
        }
        "/issue" | "/token-key-for-user-token" => state
            .metrics
            .count_issuer(route, IssuerOutcome::from_status(status)),
        _ => {}
    }
    if state.access_log() {
        use axum::body::HttpBody as _;
        let bytes_out = resp.body().size_hint().exact();
        // No user identifier, token, client address, path or query: route labels only.
        tracing::info!(
            target: "sift::access",
            method,
            route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            bytes_in,
            bytes_out,
            via = via.label(),
            usecase,
        );
    }
    resp
}

/// The method as a bounded label (extension methods become `OTHER`).
fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// The caller's identity headers, required on PIR routes as Apple's service does.
struct Caller {
    user: String,
    user_agent: String,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
}

/// Longest evaluation-key identifier accepted (Apple's are 32-byte SHA-256 digests).
pub const MAX_KEY_IDENTIFIER_BYTES: usize = 64;

fn check_key_identifier(id: &[u8]) -> Result<(), ApiError> {
    if id.len() > MAX_KEY_IDENTIFIER_BYTES {
        return Err(ApiError::bad_request(format!(
            "evaluation key identifier of {} bytes is too long (at most {MAX_KEY_IDENTIFIER_BYTES})",
            id.len()
        )));
    }
    Ok(())
}

fn pir_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let user = header_str(headers, "user-identifier")
        .ok_or_else(|| ApiError::bad_request("missing User-Identifier header"))?;
    let user_agent = header_str(headers, "user-agent")
        .ok_or_else(|| ApiError::bad_request("missing User-Agent header"))?;
    if user.len() > 256 {
        return Err(ApiError::bad_request("User-Identifier is too long"));
    }
    state.auth.authorize(header_str(headers, "authorization"))?;
    if let Some(limit) = state.query_limit() {
        limit.check(user.as_bytes())?;
    }
    Ok(Caller {
        user: user.to_owned(),
        user_agent: user_agent.to_owned(),
    })
}

fn decode<M: Message + Default>(body: &[u8], what: &str) -> Result<M, ApiError> {
    M::decode(body).map_err(|e| ApiError::bad_request(format!("invalid {what} protobuf: {e}")))
}

fn protobuf(msg: &impl Message) -> Response {
    (StatusCode::OK, msg.encode_to_vec()).into_response()
}

/// Whether the User-Agent is older than iOS 18.2 / macOS 15.2 (no repeated shard configs).
pub fn is_old_platform(user_agent: &str) -> bool {
    fn version_after(ua: &str, marker: &str) -> Option<(u32, u32)> {
        let rest = &ua[ua.find(marker)? + marker.len()..];
        let mut parts = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty());
        Some((
            parts.next()?.parse().ok()?,
            parts.next().and_then(|m| m.parse().ok()).unwrap_or(0),
        ))
    }
    if let Some(v) = version_after(user_agent, "iOS/") {
        return v < (18, 2);
    }
    if let Some(v) = version_after(user_agent, "OS X ") {
        return v < (15, 2);
    }
    false
}

async fn config(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = pir_caller(&state, &headers)?;
    let req: api::ConfigRequest = decode(&body, "ConfigRequest")?;
    if !req.existing_config_ids.is_empty() && req.existing_config_ids.len() != req.usecases.len() {
        return Err(ApiError::bad_request(
            "existing_config_ids must be empty or match usecases in length",
        ));
    }
    let usecases = state.usecases();
    let names: Vec<String> = if req.usecases.is_empty() {
        usecases.keys().cloned().collect()
    } else {
        req.usecases.clone()
    };
    let old_platform = is_old_platform(&caller.user_agent);
    let mut resp = api::ConfigResponse::default();
    for (i, name) in names.iter().enumerate() {
        let uc = usecases.get(name).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("unknown use case {name}"))
        })?;
        let v = uc.current();
        let reuse = req
            .existing_config_ids
            .get(i)
            .is_some_and(|id| *id == v.config_id);
        let cfg = if reuse {
            api::Config {
                config: None,
                config_id: v.config_id.clone(),
                reuse_existing_config: true,
            }
        } else {
            let pir = if old_platform {
                downgrade_for_old_clients(&v.pir_config)
                    .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m))?
            } else {
                v.pir_config.clone()
            };
            api::Config {
                config: Some(api::config::Config::PirConfig(pir)),
                config_id: v.config_id.clone(),
                reuse_existing_config: false,
            }
        };
        resp.configs.insert(name.clone(), cfg);
        resp.key_info.push(api::KeyStatus {
            timestamp: stored_timestamp(state.keys.as_ref(), &caller.user, &v.key_config_id),
            key_config: Some(v.key_config.clone()),
        });
    }
    Ok(protobuf(&resp))
}

async fn key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = pir_caller(&state, &headers)?;
    let keys: api::EvaluationKeys = decode(&body, "EvaluationKeys")?;
    if keys
        .keys
        .iter()
        .any(|k| k.metadata.is_none() || k.evaluation_key.is_none())
    {
        return Err(ApiError::bad_request(
            "every key needs metadata and evaluation_key",
        ));
    }
    if keys.keys.len() > state.limits().max_keys_per_user {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} keys in one upload; at most {} are kept per user",
                keys.keys.len(),
                state.limits().max_keys_per_user
            ),
        ));
    }
    for k in &keys.keys {
        check_key_identifier(k.metadata.as_ref().map_or(&[][..], |m| &m.identifier[..]))?;
        let max = state.limits().max_key_bytes_per_user;
        if k.encoded_len() as u64 > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "an evaluation key of {} bytes; at most {max} are kept per user \
                     (limits.max_key_bytes_per_user)",
                    k.encoded_len()
                ),
            ));
        }
    }
    for k in &keys.keys {
        state.keys.put(&caller.user, k).map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("storing key: {e}"))
        })?;
    }
    let mut cache = state.key_cache.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|(user, _, _)| *user != caller.user);
    Ok(StatusCode::OK.into_response())
}

async fn queries(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = pir_caller(&state, &headers)?;
    let reqs: api::Requests = decode(&body, "Requests")?;
    check_query_cost(&state, &reqs)?;
    let st = state.clone();
    let label = reqs
        .requests
        .first()
        .map(|r| r.usecase.clone())
        .unwrap_or_default();
    let result = tokio::task::spawn_blocking(move || answer_all(&st, &caller, &reqs))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("evaluation failed: {e}"),
            )
        })?;
    let mut resp = match result {
        Ok(r) => protobuf(&r),
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(UseCaseLabel(label));
    Ok(resp)
}

/// Refuses, before any evaluation, a body asking for more work than a device ever does: more
/// `Request`s than `limits.max_requests_per_query` (413), or a PIR request whose PIR-call count
/// or ciphertext count does not match its configuration (400), or a key identifier that is
/// too long (400).
fn check_query_cost(state: &AppState, reqs: &api::Requests) -> Result<(), ApiError> {
    let max = state.limits().max_requests_per_query;
    if reqs.requests.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} requests in one body; at most {max} are accepted",
                reqs.requests.len()
            ),
        ));
    }
    let usecases = state.usecases();
    for r in &reqs.requests {
        let Some(api::request::Request::PirRequest(pir)) = &r.request else {
            continue;
        };
        if let Some(m) = &pir.evaluation_key_metadata {
            check_key_identifier(&m.identifier)?;
        }
        let Some(version) = usecases
            .get(&r.usecase)
            .and_then(|uc| uc.by_config_id(&pir.configuration_hash))
        else {
            continue; // answered with 400/410 by `answer_all`
        };
        let Some(shard) = version.server.shards().get(pir.shard_index as usize) else {
            continue;
        };
        let index = &shard.params.index;
        let query = pir.query.as_ref();
        let calls = query.map_or(0, |q| q.num_pir_calls as usize);
        if calls != index.batch_size {
            return Err(ApiError::bad_request(format!(
                "{calls} PIR calls in one request; this configuration takes {}",
                index.batch_size
            )));
        }
        let n = version.server.context().n;
        let want = (index.expanded_query_count() * calls).div_ceil(n);
        let got = query.map_or(0, |q| q.ciphertexts.len());
        if got != want {
            return Err(ApiError::bad_request(format!(
                "{got} query ciphertexts; this configuration takes {want}"
            )));
        }
    }
    Ok(())
}

fn answer_all(
    state: &AppState,
    caller: &Caller,
    reqs: &api::Requests,
) -> Result<api::Responses, ApiError> {
    let usecases = state.usecases();
    let mut out = api::Responses::default();
    for r in &reqs.requests {
        let uc = usecases
            .get(&r.usecase)
            .ok_or_else(|| ApiError::bad_request(format!("unknown use case {}", r.usecase)))?;
        let pir = match &r.request {
            Some(api::request::Request::PirRequest(p)) => p,
            Some(api::request::Request::OprfRequest(o)) => {
                out.responses.push(api::Response {
                    response: Some(api::response::Response::OprfResponse(answer_oprf(
                        uc, &r.usecase, o,
                    )?)),
                });
                continue;
            }
            None => return Err(ApiError::bad_request("request without pir_request")),
        };
        if pir.shard_id.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "routing by shard_id is not supported",
            ));
        }
        let version = uc.by_config_id(&pir.configuration_hash).ok_or_else(|| {
            ApiError::new(
                StatusCode::GONE,
                "configuration version is retired: fetch /config again",
            )
        })?;
        let shards = version.server.shards().len();
        if pir.shard_index as usize >= shards {
            return Err(ApiError::bad_request(format!(
                "shard_index {} out of range ({shards} shards)",
                pir.shard_index
            )));
        }
        let key = evaluation_key(state, caller, pir, version)?;
        let resp = version.server.answer_with_key(pir, &key).map_err(|e| {
            let c = &uc.config;
            crate::error::pir_evaluation_error(
                &e,
                &r.usecase,
                &c.dataset_dir,
                &c.stem,
                pir.shard_index,
            )
        })?;
        out.responses.push(api::Response {
            response: Some(api::response::Response::PirResponse(resp)),
        });
    }
    Ok(out)
}

/// Symmetric PIR's first round trip (pir-service-example `PirUsecase.processOprf`): evaluates
/// the blinded keyword with the use case's OPRF key and proves it. The key is the one of the
/// version named by `config_id` when that version is still kept, else the current one (Apple's
/// client leaves `config_id` empty). 400 when the use case is not symmetric, as Apple's
/// service answers ("SymmetricPIR not configured."), and 400 for a blinded element that is not
/// a valid compressed P-384 point.
fn answer_oprf(
    uc: &crate::state::UseCase,
    name: &str,
    req: &api::OprfRequest,
) -> Result<api::OprfResponse, ApiError> {
    let version = if req.config_id.is_empty() {
        uc.current()
    } else {
        uc.by_config_id(&req.config_id)
            .unwrap_or_else(|| uc.current())
    };
    let key = version.oprf_key.as_ref().ok_or_else(|| {
        ApiError::bad_request(format!(
            "symmetric PIR is not configured for use case {name}"
        ))
    })?;
    let eval = key
        .blind_evaluate(&req.query_element)
        .map_err(|e| ApiError::bad_request(format!("invalid OPRF request: {e}")))?;
    Ok(api::OprfResponse {
        evaluated_element: eval.evaluated_element.to_vec(),
        proof: eval.proof.to_vec(),
    })
}

fn evaluation_key(
    state: &AppState,
    caller: &Caller,
    pir: &api::PirRequest,
    version: &crate::state::Version,
) -> Result<Arc<sift_he::EvaluationKey>, ApiError> {
    let parse = |k: &api::EvaluationKey| parse_evaluation_key(version, k);
    if let Some(inline) = &pir.evaluation_key {
        return Ok(Arc::new(parse(inline)?));
    }
    let id = pir
        .evaluation_key_metadata
        .as_ref()
        .map(|m| m.identifier.clone())
        .ok_or_else(|| ApiError::bad_request("Evaluation key not found"))?;
    // Keyed by the stored timestamp too: another replica may have replaced this key id.
    let stamp = match state.keys.timestamp(&caller.user, &id) {
        Ok(stamp) => stamp.ok_or_else(|| ApiError::bad_request("Evaluation key not found"))?,
        Err(e) => {
            // The store (Redis) is unreachable: serve a key this process already holds for
            // this user, id and configuration rather than fail the query.
            let mut cache = state.key_cache.lock().unwrap_or_else(|p| p.into_inner());
            let held = cache.find(|(u, i, c)| {
                *u == caller.user && *i == id && c.starts_with(&version.config_id)
            });
            if let Some(k) = held {
                tracing::warn!(error = %e, "key store unavailable; serving a cached key");
                return Ok(k.clone());
            }
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("key store: {e}"),
            ));
        }
    };
    let cache_key = (
        caller.user.clone(),
        id.clone(),
        [version.config_id.as_slice(), &stamp.to_be_bytes()].concat(),
    );
    if let Some(k) = state
        .key_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cache_key)
    {
        return Ok(k.clone());
    }
    let stored = state
        .keys
        .get(&caller.user, &id)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("key store: {e}")))?
        .ok_or_else(|| ApiError::bad_request("Evaluation key not found"))?;
    let key = Arc::new(parse(&stored)?);
    let weight = crate::keystore::resident_bytes(&key);
    state
        .key_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(cache_key, key.clone(), weight);
    Ok(key)
}

/// `key` deserialized for `version`'s context, with exactly what its published key config asks
/// for: a key missing an element would either fail mid-answer or (under key compression) make
/// the server emulate it with thousands of repeated key switches, at the client's choosing.
fn parse_evaluation_key(
    version: &crate::state::Version,
    key: &api::EvaluationKey,
) -> Result<sift_he::EvaluationKey, ApiError> {
    let unfit = |why: String| {
        ApiError::bad_request(format!(
            "evaluation key does not fit this configuration: {why}"
        ))
    };
    let ser = key
        .evaluation_key
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("evaluation key is empty"))?;
    let ser = sift_pir::wire::evaluation_key_from_proto(ser)
        .map_err(|e| ApiError::bad_request(format!("invalid evaluation key: {e}")))?;
    let key = sift_he::EvaluationKey::deserialize(version.server.context(), &ser)
        .map_err(|e| unfit(e.to_string()))?;
    let wanted = &version.key_config;
    let missing: Vec<String> = wanted
        .galois_elements
        .iter()
        .filter(|&&g| !key.galois.contains_key(&(g as usize)))
        .map(u32::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(unfit(format!(
            "Galois elements {} missing; fetch /config and upload a key for its evaluation \
             key config",
            missing.join(", ")
        )));
    }
    if wanted.has_relin_key && key.relin.is_none() {
        return Err(unfit(
            "no relinearization key; fetch /config and upload a key for its evaluation key \
             config"
                .into(),
        ));
    }
    Ok(key)
}

async fn report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state
        .auth
        .authorize(header_str(&headers, "authorization"))?;
    let dir = state.config.report_dir.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "reports are not enabled on this server",
        )
    })?;
    let is_json = header_str(&headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|c| c.starts_with("application/json"));
    let urls: Vec<String> = if is_json {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON report: {e}")))?
    } else {
        decode::<service::UrlFilterReport>(&body, "URLFilterReport")?.urls
    };
    if urls.len() > state.limits().max_report_urls || urls.iter().any(|u| u.len() > 8192) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "report has too many or too long URLs",
        ));
    }
    let line = serde_json::json!({
        "received_at": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "user_agent": header_str(&headers, "user-agent").unwrap_or(""),
        "urls": urls,
    });
    tokio::task::spawn_blocking(move || append_line(&dir, &line.to_string()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing report: {e}"),
            )
        })?;
    Ok(StatusCode::OK.into_response())
}

fn append_line(dir: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("reports.jsonl"))?;
    // One write call per line keeps concurrent appends from interleaving.
    f.write_all(format!("{line}\n").as_bytes())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&state),
    )
        .into_response()
}

/// Everything `/metrics` shows: requests, key store, reloads, certificate, datasets, process.
pub fn render_metrics(state: &AppState) -> String {
    let mut out = state.metrics.render(
        (state.keys.len(), state.keys.stored_bytes()),
        state.config.ohttp.enabled,
        state.issuers.is_some(),
    );
    state.ops.render(state, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::is_old_platform;

    #[test]
    fn platform_gate_follows_apples_versions() {
        assert!(is_old_platform("com.apple.ciphermld/1.0 iOS/18.0 (22A1)"));
        assert!(is_old_platform("x iOS/17.5.1"));
        assert!(!is_old_platform("com.apple.ciphermld/1.0 iOS/18.2"));
        assert!(!is_old_platform("x iOS/26.0"));
        assert!(is_old_platform("Mozilla (Macintosh; OS X 15.1)"));
        assert!(!is_old_platform("Mozilla (Macintosh; OS X 15.2)"));
        assert!(!is_old_platform("curl/8"));
    }
}
