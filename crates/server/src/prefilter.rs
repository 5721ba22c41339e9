//! Prefilter delivery: what the app's `NEURLFilterControlProvider.fetchPrefilter(existingPrefilterTag:)`
//! downloads before the system asks the PIR service anything.
//!
//! - `GET /prefilter/<use case>` answers a small JSON description (`bitCount`, `hashCount`,
//!   `murmurSeed`, `tag`, `itemCount`, `byteCount`, `dataPath`) of the prefilter that belongs to
//!   the use case's current dataset version.
//! - `GET /prefilter/<use case>/<tag>` answers the bit array itself, with the tag as `ETag`.
//!
//! The tag (SHA-256 of the bit array) is part of the data's path, so a client that read the
//! description of one version can never download the bit array of another: a reload between
//! the two requests leaves the old tag served while its version is kept, then 404. Both routes
//! answer `304 Not Modified` to `If-None-Match: "<tag>"`, are gzip-compressed when the client
//! accepts it, and can require a `Bearer` user token (`[prefilter] require_user_token`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use tower_http::compression::CompressionLayer;

use crate::config::UseCaseConfig;
use crate::error::ApiError;
use crate::state::{AppState, UseCase};

/// `[prefilter]`: how the prefilter is delivered to the app's control provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefilterConfig {
    /// Serve `GET /prefilter/<use case>` (default true).
    pub enabled: bool,
    /// Require `Authorization: Bearer <user token>` (one of `[[users]]`' tokens). Default false:
    /// the prefilter only says which URLs *may* be listed, and Apple's design hands it to every
    /// device of the app.
    pub require_user_token: bool,
    /// `Cache-Control: max-age` of the description, in seconds (the data itself never changes
    /// under its tag and is marked immutable).
    pub max_age_secs: u64,
}

impl Default for PrefilterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            require_user_token: false,
            max_age_secs: 300,
        }
    }
}

/// Where a use case's prefilter lives. The one place that knows the dataset layout for
/// prefilters: `sift build` writes it to `<dataset_dir>/prefilter/`.
pub fn prefilter_dir(uc: &UseCaseConfig) -> PathBuf {
    // A versioned dataset's prefilter lives in its current version.
    sift_dataset::prefilter_dir(&uc.dataset_dir)
        .unwrap_or_else(|_| uc.dataset_dir.join("prefilter"))
}

/// A prefilter loaded with its dataset version, ready to send.
#[derive(Debug)]
pub struct PrefilterAsset {
    /// Its metadata (tag verified against the data).
    pub meta: sift_bloom::Metadata,
    /// The raw bit array.
    pub data: Bytes,
}

impl PrefilterAsset {
    /// Reads the prefilter of `uc`: `Ok(None)` when the dataset has none (built by another
    /// tool), an error when one is there but unreadable or inconsistent.
    pub fn load(uc: &UseCaseConfig) -> anyhow::Result<Option<Self>> {
        let dir = prefilter_dir(uc);
        if !dir.exists() {
            return Ok(None);
        }
        let p = sift_bloom::read_dir(&dir)
            .map_err(|e| anyhow::anyhow!("prefilter in {}: {e}", dir.display()))?;
        Ok(Some(Self {
            meta: p.meta,
            data: Bytes::from(p.filter.into_data()),
        }))
    }

    /// The files whose change means a new prefilter (for the reload signature).
    pub fn files(uc: &UseCaseConfig) -> Vec<PathBuf> {
        let dir = prefilter_dir(uc);
        [
            sift_bloom::JSON_FILE,
            sift_bloom::BIN_FILE,
            sift_bloom::PLIST_FILE,
        ]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| Path::new(p).exists())
        .collect()
    }

    /// The quoted `ETag` of this prefilter.
    fn etag(&self) -> String {
        format!("\"{}\"", self.meta.tag)
    }
}

/// The JSON `GET /prefilter/<use case>` answers.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Description<'a> {
    use_case: &'a str,
    bit_count: u32,
    hash_count: u32,
    murmur_seed: u32,
    tag: &'a str,
    item_count: u64,
    byte_count: u64,
    /// Path of the bit array on this host (resolve against the description's URL).
    data_path: String,
}

/// The prefilter routes, with gzip for clients that accept it.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/prefilter/{usecase}", get(describe))
        .route("/prefilter/{usecase}/{tag}", get(data))
        .layer(CompressionLayer::new().gzip(true))
}

fn check_user(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if !state.config.prefilter.require_user_token {
        return Ok(());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (bearer, state.issuers.as_ref()) {
        (Some(b), Some(i)) if i.tier_for(b).is_some() => Ok(()),
        _ => Err(crate::auth::unauthorized(
            "the prefilter needs Authorization: Bearer <user token>",
        )),
    }
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// The use case `name` once the caller's token is accepted; 404 for a name the server lacks.
fn allowed_usecase(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
) -> Result<Arc<UseCase>, ApiError> {
    check_user(state, headers)?;
    state
        .usecases()
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown use case {name}")))
}

async fn describe(
    State(state): State<Arc<AppState>>,
    UrlPath(usecase): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uc = allowed_usecase(&state, &headers, &usecase)?;
    let version = uc.current();
    let p = version.prefilter.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("use case {usecase} has no prefilter (its dataset has no prefilter/ folder)"),
        )
    })?;
    let etag = p.etag();
    let cache = format!("max-age={}", state.config.prefilter.max_age_secs);
    if not_modified(&headers, &etag) {
        return Ok(cached(
            StatusCode::NOT_MODIFIED,
            &etag,
            &cache,
            "",
            Bytes::new(),
        ));
    }
    let body = serde_json::to_vec(&Description {
        use_case: &usecase,
        bit_count: p.meta.bit_count,
        hash_count: p.meta.hash_count,
        murmur_seed: p.meta.murmur_seed,
        tag: &p.meta.tag,
        item_count: p.meta.item_count,
        byte_count: p.meta.byte_count,
        data_path: format!("/prefilter/{usecase}/{}", p.meta.tag),
    })
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(cached(
        StatusCode::OK,
        &etag,
        &cache,
        "application/json",
        Bytes::from(body),
    ))
}

async fn data(
    State(state): State<Arc<AppState>>,
    UrlPath((usecase, tag)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uc = allowed_usecase(&state, &headers, &usecase)?;
    // Any kept version's prefilter: a client that read the description just before a reload
    // still gets the bit array that matches it, never the new one under the old tag.
    let p = uc
        .versions
        .iter()
        .rev()
        .filter_map(|v| v.prefilter.as_ref())
        .find(|p| p.meta.tag == tag)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no prefilter with tag {tag} for {usecase}: fetch /prefilter/{usecase} again"
                ),
            )
        })?;
    let etag = p.etag();
    let cache = "public, max-age=31536000, immutable";
    if not_modified(&headers, &etag) {
        return Ok(cached(
            StatusCode::NOT_MODIFIED,
            &etag,
            cache,
            "",
            Bytes::new(),
        ));
    }
    Ok(cached(
        StatusCode::OK,
        &etag,
        cache,
        "application/octet-stream",
        p.data.clone(),
    ))
}

fn cached(
    status: StatusCode,
    etag: &str,
    cache: &str,
    content_type: &str,
    body: Bytes,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if !content_type.is_empty() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"ab\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"ab\""),
        );
        assert!(not_modified(&h, "\"ab\""));
        assert!(!not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, "\"q\""));
    }
}
