//! The one error shape of the API: `{"error": {"code": "…", "message": "…"}}` with a fitting
//! status. Messages say what is wrong and how to fix it; they never echo a card number
//! (bodies holding one are refused before anything quotes them).

use crate::ledger::validate::RuleError;
use crate::ledger::LedgerError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        match e {
            StoreError::DiskFull => ApiError::new(
                unavailable,
                "disk_full",
                "the store box's disk is full; nothing was recorded. Retry with the same id once space is freed",
            ),
            StoreError::ReadOnly => ApiError::new(
                unavailable,
                "read_only",
                "the database is read-only; nothing was recorded. Retry with the same id once it is writable",
            ),
            StoreError::ShuttingDown => ApiError::new(
                unavailable,
                "shutting_down",
                "the daemon is shutting down; retry with the same id in a few seconds",
            ),
            StoreError::Busy => ApiError::new(unavailable, "busy", "the database is busy; retry"),
            other => {
                tracing::error!(error = %other, "storage error answering a request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal storage error; see the daemon log",
                )
            }
        }
    }
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        ApiError::unprocessable(e.code, e.message)
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "client_txn_id_reused", e.to_string())
            }
            LedgerError::Rule(r) => r.into(),
            LedgerError::Store(s) => s.into(),
        }
    }
}
