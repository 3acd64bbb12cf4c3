//! `GET /health/network` and `POST /admin/network/mode` (forced offline for drills and
//! provider incidents; persisted and audited, survives restarts).

use super::auth::{Caller, HealthAccess};
use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::probe::{self, Link};
use crate::store::StoreError;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

pub async fn show(State(state): State<AppState>, _: HealthAccess) -> Json<Value> {
    Json(state.probe.snapshot().to_json())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeRequest {
    pub mode: String,
    #[serde(default)]
    pub upstream: Option<String>,
}

pub async fn set_mode(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<ModeRequest>,
) -> Result<Json<Value>, ApiError> {
    let admin = caller.require_admin()?.to_string();
    let offline = match req.mode.as_str() {
        "offline" => true,
        "auto" => false,
        other => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("mode {other:?} must be \"offline\" or \"auto\""),
            ))
        }
    };
    let which: Vec<Link> = match req.upstream.as_deref() {
        None => Link::ALL.to_vec(),
        Some(name) => vec![Link::parse(name).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_field",
                format!("upstream {name:?} must be one of \"internet\", \"stripe\", \"conexxus\""),
            )
        })?],
    };
    let forced = apply_mode(&state, &admin, &which, offline).await?;
    state.probe.set_forced(&forced);
    Ok(Json(state.probe.snapshot().to_json()))
}

/// Stores the new forced set with its audit row; returns the new set.
async fn apply_mode(
    state: &AppState,
    actor: &str,
    which: &[Link],
    offline: bool,
) -> Result<Vec<Link>, StoreError> {
    let which = which.to_vec();
    let network = state.probe.snapshot().summary();
    let actor = actor.to_string();
    state
        .writer
        .write(move |tx| {
            probe::store_forced(tx, &actor, &which, offline, network).map_err(StoreError::from)
        })
        .await
}
