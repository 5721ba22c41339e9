//! Errors as Apple's service reports them: an HTTP status and a JSON body
//! `{"error":{"message":"…"}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// A request failure with the status the client should see.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable reason (never secrets).
    pub message: String,
    /// Extra response headers (e.g. `Retry-After` on a 429).
    pub headers: http::HeaderMap,
}

impl ApiError {
    /// A failure with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: http::HeaderMap::new(),
        }
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "message": self.message } });
        (self.status, self.headers, Json(body)).into_response()
    }
}
