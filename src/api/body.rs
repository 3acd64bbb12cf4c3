//! The JSON body extractor every write endpoint uses.
//!
//! Order matters, and is the point of this module:
//! 1. the body is read up to `server.max_body_bytes` (413 beyond);
//! 2. the raw bytes are scanned for card numbers (422) BEFORE any parser can quote them
//!    back in an error message;
//! 3. syntax is checked (400 `malformed_json`);
//! 4. decoded strings are scanned again (escapes cannot hide digits);
//! 5. the value becomes the typed request (422 `unknown_field` / `invalid_field`, naming
//!    the field path).

use super::error::ApiError;
use super::AppState;
use crate::metrics::Metrics;
use crate::pan;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read(req, state).await?;
        parse(&bytes, &state.metrics).map(JsonBody)
    }
}

/// [`JsonBody`] for a body that may be left out: an empty body is `T::default()`; anything
/// else goes through every step above (whitespace alone is not JSON: 400).
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse(&bytes, &state.metrics).map(OptionalJsonBody)
    }
}

/// Step 1: the body, at most `server.max_body_bytes` (413 `body_too_large` beyond, whether the
/// length is declared or the body is chunked).
async fn read(req: Request<Body>, state: &AppState) -> Result<bytes::Bytes, ApiError> {
    let limit = state.config.server.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            // to_bytes reports the limit as a length-limit error somewhere in its source chain.
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = source {
                if s.to_string().contains("length limit") {
                    return too_large();
                }
                source = s.source();
            }
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "the request body could not be read",
            )
        })?;
    Ok(bytes)
}

fn card_refused(metrics: &Metrics, field: Option<&str>) -> ApiError {
    metrics.card_numbers_refused.inc();
    let where_ = field
        .map(|f| format!("field `{f}`"))
        .unwrap_or_else(|| "the request".into());
    tracing::warn!(
        field = field.unwrap_or("(raw body)"),
        "refused a request holding a card number"
    );
    ApiError::unprocessable(
        "card_number_refused",
        format!("{where_} holds what looks like a card number; registers must send a payment-method token (pm_…) and last4 only. Nothing was recorded"),
    )
}

/// Steps 2–5 above, on a body already read. Public so the fuzz targets (`tests/fuzz/`) feed
/// bytes through exactly what a request body goes through.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], metrics: &Metrics) -> Result<T, ApiError> {
    if pan::contains_card_number(bytes) {
        // Name the field when the body is valid JSON; never quote the content.
        let field = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| pan::find_in_json(&v));
        return Err(card_refused(metrics, field.as_deref()));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "the body is not valid JSON: {} at line {} column {}",
                kind(&e),
                e.line(),
                e.column()
            ),
        )
    })?;
    if let Some(field) = pan::find_in_json(&value) {
        return Err(card_refused(metrics, Some(&field)));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or("");
            // serde_json's path already ends at the unknown field; other deserializers stop
            // at its parent.
            let full = if path == "." {
                field.to_string()
            } else if path == field || path.ends_with(&format!(".{field}")) {
                path.clone()
            } else {
                format!("{path}.{field}")
            };
            ApiError::unprocessable(
                "unknown_field",
                format!("unknown field `{full}`; remove it"),
            )
        } else if path == "." {
            ApiError::unprocessable("invalid_field", inner)
        } else {
            ApiError::unprocessable("invalid_field", format!("field `{path}`: {inner}"))
        }
    })
}

fn kind(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data | Category::Io => "invalid data",
    }
}
