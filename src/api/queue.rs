//! The offline queue: `GET /health/offline-queue`, admin processing, retry and discard.

use super::auth::{Caller, HealthAccess};
use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::audit;
use crate::outbox::{queue, Upstream};
use crate::store::StoreError;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

pub async fn health(
    State(state): State<AppState>,
    _: HealthAccess,
) -> Result<Json<Value>, ApiError> {
    let stats = state
        .reads
        .read(|c| queue::stats(c).map_err(StoreError::from))
        .await?;
    let mut body = serde_json::to_value(&stats).unwrap_or_default();
    body["alerts"] = json!(state.alerts.active());
    Ok(Json(body))
}

pub async fn process(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    state.dispatcher.process_now();
    let stats = state
        .reads
        .read(|c| queue::stats(c).map_err(StoreError::from))
        .await?;
    Ok(Json(
        json!({"status": "processing", "pending": stats.pending, "dead": stats.dead}),
    ))
}

/// Revives dead rows (all, or one) with their original keys, audited.
async fn revive(state: &AppState, actor: &str, only: Option<i64>) -> Result<Vec<i64>, ApiError> {
    let network = state.probe.snapshot().summary();
    let actor = actor.to_string();
    let revived = state
        .writer
        .write(move |tx| {
            let ids = queue::revive_dead(tx, only)?;
            if !ids.is_empty() {
                audit::append(
                    tx,
                    &audit::Entry {
                        kind: "outbox_retry",
                        actor: &actor,
                        subject: only.map(|_| "row").or(Some("all dead rows")),
                        network,
                        details: json!({"revived": ids}),
                    },
                )?;
            }
            Ok::<_, StoreError>(ids)
        })
        .await?;
    for up in [Upstream::Stripe, Upstream::Conexxus, Upstream::Backup] {
        state.dispatcher.wake(up);
    }
    Ok(revived)
}

pub async fn retry_failed(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let admin = caller.require_admin()?.to_string();
    let ids = revive(&state, &admin, None).await?;
    Ok(Json(json!({"revived": ids.len(), "ids": ids})))
}

pub async fn retry_one(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let admin = caller.require_admin()?.to_string();
    let Path(id) = id.map_err(|_| ApiError::not_found("outbox row"))?;
    let ids = revive(&state, &admin, Some(id)).await?;
    if ids.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_dead",
            format!("outbox row {id} does not exist or is not dead"),
        ));
    }
    Ok(Json(json!({"revived": 1, "ids": ids})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardRequest {
    pub reason: String,
}

pub async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
    JsonBody(req): JsonBody<DiscardRequest>,
) -> Result<Json<Value>, ApiError> {
    let admin = caller.require_admin()?.to_string();
    let Path(id) = id.map_err(|_| ApiError::not_found("outbox row"))?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "a reason is required",
        ));
    }
    let network = state.probe.snapshot().summary();
    let subject = id.to_string();
    let done = state
        .writer
        .write(move |tx| {
            let done = queue::discard(tx, id, &req.reason)?;
            if done {
                audit::append(
                    tx,
                    &audit::Entry {
                        kind: "outbox_discard",
                        actor: &admin,
                        subject: Some(&subject),
                        network,
                        details: json!({"reason": req.reason}),
                    },
                )?;
            }
            Ok::<_, StoreError>(done)
        })
        .await?;
    if !done {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_discardable",
            format!("outbox row {id} does not exist or is not pending or dead"),
        ));
    }
    tracing::warn!(outbox_id = id, "outbox row discarded by a technician");
    Ok(Json(json!({"discarded": id})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let Query(q) = q.map_err(|e| ApiError::unprocessable("invalid_field", e.body_text()))?;
    if let Some(s) = &q.state {
        if !["pending", "in_flight", "delivered", "dead", "discarded"].contains(&s.as_str()) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("unknown state {s:?}"),
            ));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = state
        .reads
        .read(move |c| queue::list(c, q.state.as_deref(), limit).map_err(StoreError::from))
        .await?;
    Ok(Json(json!({"rows": rows})))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let Path(id) = id.map_err(|_| ApiError::not_found("outbox row"))?;
    let row = state
        .reads
        .read(move |c| queue::get(c, id).map_err(StoreError::from))
        .await?;
    row.map(Json)
        .ok_or_else(|| ApiError::not_found("outbox row"))
}
