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
    /// `Retry-After` in seconds (429 answers).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// A failure with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
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
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        resp
    }
}

/// The answer to a failed PIR evaluation, by whose fault it failed: the client's malformed
/// query or key is a 400 that says what was wrong; the server's own damaged dataset (a use
/// case's processed shard files) is a 500 that tells the client nothing about the files, and
/// a log line naming them so the operator can rebuild the dataset.
pub fn pir_evaluation_error(
    err: &sift_pir::PirError,
    usecase: &str,
    dataset_dir: &std::path::Path,
    stem: &str,
    shard: u32,
) -> ApiError {
    match err {
        sift_pir::PirError::DamagedDataset(reason) => {
            tracing::error!(
                usecase,
                dataset = %dataset_dir.display(),
                files = %format!("{stem}-{shard}.*"),
                reason = %reason,
                "damaged dataset: shard {shard} of use case {usecase} cannot answer queries; \
                 rebuild it with `sift build` and reload"
            );
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the server's dataset for use case {usecase} is damaged (shard {shard}); \
                     the operator must rebuild it, retry later"
                ),
            )
        }
        e => ApiError::bad_request(format!("cannot evaluate query: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sift_pir::PirError;

    #[test]
    fn pir_errors_are_answered_by_fault() {
        let dir = std::path::Path::new("/data/url");
        let damaged =
            PirError::DamagedDataset("database has 3 plaintexts, parameters need 4".into());
        let e = pir_evaluation_error(&damaged, "com.example.url", dir, "url", 2);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.message.contains("damaged") && e.message.contains("shard 2"));
        // The client learns nothing about the server's files.
        assert!(!e.message.contains("/data/url") && !e.message.contains("plaintexts"));
        let malformed = PirError::Malformed("3 PIR calls, shard expects 1".into());
        let e = pir_evaluation_error(&malformed, "com.example.url", dir, "url", 0);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message.contains("3 PIR calls, shard expects 1"),
            "{}",
            e.message
        );
    }
}
