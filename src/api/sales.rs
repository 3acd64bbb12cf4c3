//! `POST /v1/sales` and `GET /v1/sales/{id}`.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::business_day;
use crate::ledger::{self, request::SaleRequest, validate, Recorded, SaleContext};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(sale): JsonBody<SaleRequest>,
) -> Result<Response, ApiError> {
    let register = caller.require_register()?;
    if sale.register_id != register {
        return Err(ApiError::forbidden(
            "register_mismatch",
            format!(
                "this token belongs to register {register}, not {:?}",
                sale.register_id
            ),
        ));
    }
    validate::validate(&sale, state.config.resolved.currency)?;

    let now = chrono::Utc::now();
    let cfg = &state.config;
    let ctx = SaleContext {
        // Hashing here keeps CPU work off the single writer thread.
        fingerprint: ledger::request_fingerprint(&sale),
        location_id: cfg.store.location_id.clone(),
        business_date: business_day::business_date(
            now,
            cfg.resolved.timezone,
            cfg.resolved.day_close,
        )
        .to_string(),
        created_at: business_day::rfc3339(now),
        sync_priority: cfg
            .conexxus
            .as_ref()
            .map(|c| i64::from(c.sync_priority))
            .unwrap_or(ledger::DEFAULT_SYNC_PRIORITY),
        journal_per_sale: cfg
            .conexxus
            .as_ref()
            .is_none_or(|c| c.events_per_document == 1),
    };
    let recorded = state
        .writer
        .write(move |tx| ledger::record(tx, &sale, &ctx))
        .await?;
    Ok(match recorded {
        Recorded::New(receipt) => {
            state.metrics.sales_recorded.inc();
            state.dispatcher.wake(crate::outbox::Upstream::Conexxus);
            tracing::info!(sale_id = %receipt.id, register_id = %register, "sale recorded");
            (StatusCode::CREATED, Json(receipt)).into_response()
        }
        Recorded::Replay(receipt) => (StatusCode::OK, Json(receipt)).into_response(),
    })
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ledger::Sale>, ApiError> {
    // axum's own rejection is plain text; every error of ours is the JSON shape.
    let Path(id) = id.map_err(|_| ApiError::not_found("sale"))?;
    let sale = state
        .reads
        .read(move |conn| ledger::get(conn, &id).map_err(crate::store::StoreError::from))
        .await?;
    sale.map(Json).ok_or_else(|| ApiError::not_found("sale"))
}
