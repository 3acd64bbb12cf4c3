//! `POST /v1/payments`, `GET /v1/payments/{id}`, approve and reject, and the offline-payment
//! config and statistics under `/orders/offline-payments/`.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::payments::flow::FlowError;
use crate::payments::{self, PaymentRequest};
use crate::store::StoreError;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Rule(r) => r.into(),
            FlowError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "client_payment_id_reused",
                e.to_string(),
            ),
            FlowError::InProgress(_) => {
                ApiError::new(StatusCode::CONFLICT, "payment_in_progress", e.to_string())
            }
            FlowError::NotFound => ApiError::not_found("payment"),
            FlowError::NotPending(..) => {
                ApiError::new(StatusCode::CONFLICT, "not_pending_approval", e.to_string())
            }
            FlowError::BadCredentials => {
                ApiError::forbidden("bad_manager_credentials", e.to_string())
            }
            FlowError::LockedOut(..) => ApiError::forbidden("manager_locked_out", e.to_string()),
            FlowError::Store(s) => s.into(),
        }
    }
}

async fn answer(
    state: &AppState,
    p: payments::Payment,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let (remaining_today, remaining_transaction) = state.payments.remaining().await?;
    let mut body = serde_json::to_value(&p).unwrap_or_default();
    body["offline"] =
        json!({"remaining_today": remaining_today, "remaining_transaction": remaining_transaction});
    Ok((status, Json(body)).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<PaymentRequest>,
) -> Result<Response, ApiError> {
    let register = caller.require_register()?.to_string();
    if req.register_id != register {
        return Err(ApiError::forbidden(
            "register_mismatch",
            format!(
                "this token belongs to register {register}, not {:?}",
                req.register_id
            ),
        ));
    }
    payments::validate(&req, state.config.resolved.currency)?;
    let (p, replay) = state.payments.create(req).await?;
    tracing::info!(payment_id = %p.id, register_id = %register, status = %p.status, mode = %p.mode, amount = p.amount, "payment");
    answer(
        &state,
        p,
        if replay {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
    )
    .await
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::not_found("payment"))?;
    let p = state.payments.get(id).await?;
    answer(&state, p, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerRequest {
    pub manager_id: String,
    pub pin: String,
}

async fn by_manager(
    state: AppState,
    id: Result<Path<String>, PathRejection>,
    req: ManagerRequest,
    approve: bool,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::not_found("payment"))?;
    let p = state
        .payments
        .decide_by_manager(id, req.manager_id, req.pin, approve)
        .await?;
    tracing::info!(payment_id = %p.id, status = %p.status, approved_by = p.approved_by.as_deref().unwrap_or(""), "manager decision");
    answer(&state, p, StatusCode::OK).await
}

pub async fn approve(
    State(state): State<AppState>,
    // Any valid token (register or admin): the manager's PIN is the authority here.
    _caller: Caller,
    id: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<ManagerRequest>,
) -> Result<Response, ApiError> {
    by_manager(state, id, req, true).await
}

pub async fn reject(
    State(state): State<AppState>,
    _caller: Caller,
    id: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<ManagerRequest>,
) -> Result<Response, ApiError> {
    by_manager(state, id, req, false).await
}

pub async fn config(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    let p = &state.payments.policy;
    let c = &state.config;
    Json(json!({
        "enabled": p.enabled,
        "currency": c.resolved.currency.code(),
        "allowed_methods": p.allowed_methods,
        "max_transaction_amount": p.max_transaction_amount,
        "max_daily_total": p.max_daily_total,
        "max_outstanding_total": p.max_outstanding_total,
        "require_manager_approval": p.require_manager_approval,
        "approval_required_over": p.approval_required_over,
        "offline_window_s": c.offline_payments.offline_window.0.as_secs(),
        "timezone": c.store.timezone,
        "day_close": c.store.day_close,
        "location_id": c.store.location_id,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    #[serde(rename = "locationId", default)]
    pub location_id: Option<String>,
}

pub async fn stats(
    State(state): State<AppState>,
    _caller: Caller,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::unprocessable("invalid_field", e.body_text()))?;
    let location = q
        .location_id
        .unwrap_or_else(|| state.config.store.location_id.clone());
    let today = state.payments.today();
    let policy = state.payments.policy.clone();
    let body = state
        .reads
        .read(move |c| {
            let counters = payments::counters(c, &location, &today)?;
            let (remaining_today, remaining_transaction) = payments::policy::remaining(&policy, counters);
            let (count_today, _): (i64, i64) = c.query_row(
                "SELECT count(*), 0 FROM payments WHERE location_id = ?1 AND mode = 'offline' AND method = 'card'
                 AND business_date = ?2 AND status IN ('approved_offline','forwarding','captured','authorized','declined_upstream','expired')",
                rusqlite::params![location, today],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let list = |status: &str| -> rusqlite::Result<Value> {
                let mut stmt = c.prepare(
                    "SELECT id, amount, register_id, cashier_id, business_date, decline_code, message, created_at
                     FROM payments WHERE location_id = ?1 AND status = ?2 ORDER BY created_at",
                )?;
                let rows: Vec<Value> = stmt
                    .query_map(rusqlite::params![location, status], |r| {
                        Ok(json!({"id": r.get::<_, String>(0)?, "amount": r.get::<_, i64>(1)?, "register_id": r.get::<_, String>(2)?,
                                  "cashier_id": r.get::<_, String>(3)?, "business_date": r.get::<_, String>(4)?,
                                  "decline_code": r.get::<_, Option<String>>(5)?, "message": r.get::<_, Option<String>>(6)?,
                                  "created_at": r.get::<_, String>(7)?}))
                    })?
                    .collect::<Result<_, _>>()?;
                let total: i64 = rows.iter().map(|r| r["amount"].as_i64().unwrap_or(0)).sum();
                Ok(json!({"count": rows.len(), "total": total, "payments": rows}))
            };
            Ok::<_, StoreError>(json!({
                "location_id": location,
                "business_date": today,
                "offline_count": count_today,
                "offline_total": counters.today_total,
                "remaining_today": remaining_today,
                "remaining_transaction": remaining_transaction,
                "outstanding_total": counters.outstanding_total,
                "declined_upstream": list("declined_upstream")?,
                "expired": list("expired")?,
                "pending_approval": list("pending_approval")?,
            }))
        })
        .await?;
    Ok(Json(body))
}
