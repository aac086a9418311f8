//! JSON errors with stable codes.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use carechain_node::SubmitError;
use serde_json::json;

/// An API error: HTTP status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Explanation (never contains keys or health data).
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500 for storage failures (details go to the log, not the client).
    pub fn internal<E: std::fmt::Display>(e: E) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see node log",
        )
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        let status = match &e {
            SubmitError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SubmitError::Malformed(_) | SubmitError::WrongChain { .. } => StatusCode::BAD_REQUEST,
            SubmitError::BadSignature
            | SubmitError::UnknownSigner
            | SubmitError::SignerDeactivated => StatusCode::UNPROCESSABLE_ENTITY,
            SubmitError::NonceReplayed { .. }
            | SubmitError::NonceGap { .. }
            | SubmitError::Duplicate(_) => StatusCode::CONFLICT,
            SubmitError::Busy | SubmitError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            SubmitError::Storage => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "code": self.code, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The HTTP status of a service failure (the one mapping, [`ErrorKind::http_status`]).
pub fn fhir_status(kind: carechain_service::ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
