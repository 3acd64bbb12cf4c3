//! The back office: `GET /conexxus/pending-syncs`, `GET /conexxus/health` and
//! `POST /conexxus/sync` (admin: queue an end-of-day sync now).

use super::auth::{Caller, HealthAccess};
use super::body;
use super::error::ApiError;
use super::AppState;
use crate::conexxus::{self, eod::SyncError};
use crate::config::ConexxusTransport;
use crate::probe::Link;
use crate::store::StoreError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingQuery {
    pub limit: Option<i64>,
}

pub async fn pending(
    State(state): State<AppState>,
    _: HealthAccess,
    query: Result<Query<PendingQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let (total, documents) = state
        .reads
        .read(move |c| conexxus::pending(c, limit).map_err(StoreError::from))
        .await?;
    Ok(Json(json!({"pending": total, "documents": documents})))
}

pub async fn health(
    State(state): State<AppState>,
    _: HealthAccess,
) -> Result<Json<Value>, ApiError> {
    let history = state
        .reads
        .read(|c| conexxus::history(c).map_err(StoreError::from))
        .await?;
    let c = state.config.conexxus.as_ref();
    let (transport, target) = match c {
        None => ("unconfigured", Value::Null),
        Some(c) if c.transport == ConexxusTransport::Http => {
            ("http", json!(c.url.as_deref().map(without_credentials)))
        }
        Some(c) => (
            "directory",
            json!(c.directory.clone().unwrap_or_else(|| state
                .config
                .resolved
                .database_path
                .with_file_name("BOOutbox"))),
        ),
    };
    let eod = &state.end_of_day.settings;
    Ok(Json(json!({
        "transport": transport,
        "target": target,
        "link": state.probe.snapshot().link(Link::Conexxus),
        "last_success": history.last_success,
        "last_error": history.last_error,
        "pending": history.pending,
        "dead": history.dead,
        "events_per_document": eod.batching.events_per_document,
        "end_of_day": {
            "auto": eod.auto,
            "eod_sync_time": eod.schedule.eod_sync_time.format("%H:%M").to_string(),
            "next_sync_at": state.end_of_day.next_sync_at().map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string()),
            "last_sync": history.last_eod_sync,
        },
    })))
}

/// The URL without any `user:password@`.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    pub business_date: Option<String>,
}

pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require_admin()?.to_string();
    let req: SyncRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        SyncRequest::default()
    } else {
        body::parse(&raw, &state.metrics)?
    };
    let date = match &req.business_date {
        None => None,
        Some(d) => Some(d.parse::<chrono::NaiveDate>().map_err(|_| {
            ApiError::unprocessable(
                "invalid_business_date",
                format!("business_date {d:?} is not a date like 2026-11-24"),
            )
        })?),
    };
    let network = state.probe.snapshot().summary();
    let queued = state
        .end_of_day
        .sync_now(date, actor, network)
        .await
        .map_err(|e| match e {
            SyncError::Future(..) => {
                ApiError::unprocessable("business_date_in_future", e.to_string())
            }
            SyncError::Store(s) => ApiError::from(s),
        })?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}
