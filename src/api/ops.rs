//! Technician operations over the admin API: `GET /admin/status` (what `posedge status`
//! prints) and `POST /admin/backup` (`posedge backup now`).

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// The status document: the database's figures plus what only the running daemon knows.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let writer_ok = state.writer.ping(Duration::from_secs(1)).await;
    let config = state.config.clone();
    let clock = state.dispatcher.now_ms();
    let mut doc = state
        .reads
        .read(move |c| crate::status::from_database(c, &config, Some(clock)))
        .await?;
    doc["daemon"] = json!({
        "running": true,
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": crate::business_day::rfc3339(state.started_at),
        "writer": if writer_ok { "ok" } else { "not accepting work" },
    });
    let time = crate::clock::now();
    doc["clock"] = json!({
        "wall": crate::business_day::rfc3339(time.wall),
        "monotonic": crate::business_day::rfc3339(time.monotonic),
        "skew_s": time.skew().num_seconds(),
        "stepped": time.stepped(),
    });
    doc["network"] = state.probe.snapshot().to_json();
    doc["alerts"] = json!(state.alerts.active());
    doc["storage"] = json!(state.space.report());
    Ok(Json(doc))
}

/// Takes a backup now (waits for one already running). 200 with the attempt when it was
/// good, 500 with its error when not; either way it is recorded for `posedge status`.
pub async fn backup(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let attempt = state.backups.run_once("daemon").await?;
    if attempt.ok {
        Ok(Json(json!(attempt)))
    } else {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "backup_failed",
            attempt.error.unwrap_or_default(),
        ))
    }
}
