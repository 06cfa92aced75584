//! API errors: a status and a plain-text message, as Consul answers them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shoal_catalog::Error as CatalogError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Plain-text body.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 403 Forbidden with Consul's words: what the token lacks, on what.
    pub fn permission_denied(accessor: &str, permission: &str, on: &str) -> Self {
        let who = if accessor.is_empty() {
            "anonymous token".to_string()
        } else {
            format!("token with AccessorID '{accessor}'")
        };
        let on = if on.is_empty() {
            String::new()
        } else {
            format!(" on {on:?}")
        };
        Self::new(
            StatusCode::FORBIDDEN,
            format!("Permission denied: {who} lacks permission '{permission}'{on}"),
        )
    }
    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let status = match &e {
            CatalogError::Invalid(_) => StatusCode::BAD_REQUEST,
            CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
            CatalogError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            CatalogError::Forbidden(_) => StatusCode::FORBIDDEN,
            CatalogError::Storage(_) | CatalogError::Remote(_) | CatalogError::Rejected(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.message;
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let reason = crate::access::Refusal(body.as_str().into());
        let mut resp = (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            body,
        )
            .into_response();
        resp.extensions_mut().insert(reason);
        resp
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
