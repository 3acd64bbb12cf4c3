//! The LAN API: routes, auth, limits and error mapping.
//!
//! Invariants:
//! - every error is `{"error": {"code", "message"}}` ([`error`]);
//! - a write is answered 2xx only after the writer committed it (handlers await the writer);
//! - every request is bounded in size (`max_body_bytes`) and time (`request_timeout`);
//! - [`run`] serves until `shutdown` resolves, then stops accepting and drains in-flight
//!   requests for at most `shutdown_grace`.

pub mod auth;
pub mod body;
mod conexxus;
pub mod error;
mod health;
mod network;
mod ops;
mod payments;
mod queue;
mod sales;
pub mod serve;

use crate::alerts::Alerts;
use crate::config::Config;
use crate::metrics::{Metrics, RequestLabels};
use crate::outbox::dispatcher::Dispatcher;
use crate::probe::Probe;
use crate::store::{Reads, Writer};
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use error::ApiError;
use std::future::Future;
use std::sync::Arc;

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub writer: Writer,
    pub reads: Reads,
    pub metrics: Arc<Metrics>,
    pub started_at: DateTime<Utc>,
    pub probe: Arc<Probe>,
    pub dispatcher: Arc<Dispatcher>,
    pub alerts: Arc<Alerts>,
    pub payments: Arc<crate::payments::flow::Payments>,
    pub backups: Arc<crate::backup::daemon::Backups>,
    pub end_of_day: Arc<crate::conexxus::eod::EndOfDay>,
    /// Room to write: the disk reserve and the storage condition.
    pub space: Arc<crate::store::Space>,
}

/// The route table.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/sales", post(sales::create))
        .route("/v1/sales/{id}", get(sales::show))
        .route("/v1/payments", post(payments::create))
        .route("/v1/payments/{id}", get(payments::show))
        .route("/v1/payments/{id}/approve", post(payments::approve))
        .route("/v1/payments/{id}/reject", post(payments::reject))
        .route("/orders/offline-payments/config", get(payments::config))
        .route("/orders/offline-payments/stats", get(payments::stats))
        .route("/v1/status", get(health::status))
        .route("/healthz", get(health::healthz))
        .route("/health/network", get(network::show))
        .route("/admin/network/mode", post(network::set_mode))
        .route("/health/offline-queue", get(queue::health))
        .route("/admin/offline-queue/process", post(queue::process))
        .route(
            "/admin/offline-queue/retry-failed",
            post(queue::retry_failed),
        )
        .route("/admin/outbox", get(queue::list))
        .route("/admin/outbox/{id}", get(queue::show))
        .route("/admin/outbox/{id}/retry", post(queue::retry_one))
        .route("/admin/outbox/{id}/discard", post(queue::discard))
        .route("/admin/status", get(ops::status))
        .route("/admin/backup", post(ops::backup))
        .route("/conexxus/pending-syncs", get(conexxus::pending))
        .route("/conexxus/health", get(conexxus::health))
        .route("/conexxus/sync", post(conexxus::sync))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), bound_time))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn run(
    listeners: serve::Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) {
    let grace = state.config.server.shutdown_grace.0;
    let header_timeout = state.config.server.request_timeout.0;
    serve::serve(listeners, router(state), shutdown, grace, header_timeout).await;
}

/// Counts every answer by route template and status.
async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Bounds a request's whole handling. A write that times out here may still commit: the
/// register retries with the same client id and gets the original answer (invariant 3).
async fn bound_time(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.server.request_timeout.0;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request did not complete within {}s; retry with the same client id",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}
