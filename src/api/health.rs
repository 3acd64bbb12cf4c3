//! Health, status, metrics and the OpenAPI document.

use super::auth::{Caller, HealthAccess};
use super::error::ApiError;
use super::AppState;
use crate::outbox;
use crate::store::StoreError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::time::Duration;

/// 200 when the writer answers a round-trip within a second, 503 otherwise.
pub async fn healthz(State(state): State<AppState>, _: HealthAccess) -> Response {
    if state.writer.ping(Duration::from_secs(1)).await {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writer_unavailable",
            "the database writer is not accepting work",
        )
        .into_response()
    }
}

/// The register banner.
pub async fn status(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pending = state
        .reads
        .read(|conn| outbox::pending_count(conn).map_err(StoreError::from))
        .await?;
    let cfg = &state.config;
    let offline = &cfg.resolved.offline;
    let net = state.probe.snapshot();
    Ok(Json(json!({
        "mode": net.mode,
        "since": net.since,
        "offline_payments": {
            "enabled": cfg.offline_payments.enabled,
            // No offline approvals can exist before the payments capability; the whole
            // daily limit remains.
            "remaining_today": offline.max_daily_total,
            "approval_required_over": offline.approval_required_over,
        },
        "outbox": {"pending": pending},
        "alerts": state.alerts.active(),
    })))
}

pub async fn metrics(State(state): State<AppState>, _: HealthAccess) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_valid_json_and_documents_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is valid JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["info"]["version"], "0.1.0");
        let paths = doc["paths"].as_object().expect("the document has paths");
        for (path, method) in [
            ("/v1/sales", "post"),
            ("/v1/sales/{id}", "get"),
            ("/v1/status", "get"),
            ("/healthz", "get"),
            ("/metrics", "get"),
            ("/openapi.json", "get"),
        ] {
            let operation = paths
                .get(path)
                .and_then(|p| p.get(method))
                .unwrap_or_else(|| {
                    panic!(
                        "openapi.json does not document {} {path}",
                        method.to_uppercase()
                    )
                });
            assert!(
                operation["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
            assert!(
                operation["responses"].is_object(),
                "{method} {path} has no responses"
            );
        }
        assert_eq!(
            paths.len(),
            6,
            "openapi.json documents a path the router does not serve"
        );
    }
}
