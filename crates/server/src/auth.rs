//! Authorization of PIR routes. Apple's devices send `Authorization: PrivateToken token=…`
//! (Privacy Pass); the check sits behind a trait so the service can be tested without an issuer.

use http::StatusCode;

use crate::error::ApiError;

/// Decides whether a PIR request's `Authorization` header is acceptable.
pub trait TokenAuthority: Send + Sync {
    /// `Ok` to serve the request; an error (401 for a bad or replayed token) otherwise.
    fn authorize(&self, authorization: Option<&str>) -> Result<(), ApiError>;
}

/// Accepts every request: development and tests only (`sift serve` never uses it unless the
/// config says `require_tokens = false`).
pub struct AllowAll;

impl TokenAuthority for AllowAll {
    fn authorize(&self, _authorization: Option<&str>) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The 401 every authority returns for a missing or unusable token.
pub fn unauthorized(reason: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, reason)
}
