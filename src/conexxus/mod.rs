//! The Conexxus back office: what posedge owes it and how that is going.
//!
//! - [`events`]: ledger rows as journal events (sale or refund, card authorizations);
//! - [`batch`]: several events per POSJournal document, when configured;
//! - [`totals`] and [`eod`]: the end-of-day movement reports of each closed business date;
//! - here: the queries behind `GET /conexxus/pending-syncs` and `GET /conexxus/health`.
//!
//! Delivery (HTTP or directory drop) is `upstream::conexxus`, through the outbox.

pub mod batch;
pub mod eod;
pub mod events;
pub mod totals;

use crate::outbox::Upstream;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

/// A document not yet accepted by the back office.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub outbox_id: i64,
    pub kind: String,
    /// File name (directory drop) or `X-NAXML-Document` (HTTP).
    pub name: String,
    /// Sales in a journal document; the business date of a movement report.
    pub sale_ids: Vec<String>,
    pub business_date: Option<String>,
    pub report: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
}

/// Name a document of outbox row `id` goes under.
pub fn document_name(id: i64, payload: &Value) -> String {
    match payload["name"].as_str() {
        Some(name) => name.to_string(),
        None => crate::upstream::conexxus::journal_name(id),
    }
}

/// Conexxus documents pending, in flight or dead, oldest first (at most `limit`), and how
/// many there are in all.
pub fn pending(conn: &Connection, limit: i64) -> rusqlite::Result<(i64, Vec<Pending>)> {
    let total: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE upstream = ?1 AND state IN ('pending', 'in_flight', 'dead')",
        [Upstream::Conexxus.as_str()],
        |r| r.get(0),
    )?;
    let rows = conn
        .prepare_cached(
            "SELECT id, kind, payload, state, attempts, last_error, created_at FROM outbox
             WHERE upstream = ?1 AND state IN ('pending', 'in_flight', 'dead')
             ORDER BY priority DESC, id LIMIT ?2",
        )?
        .query_map(rusqlite::params![Upstream::Conexxus.as_str(), limit], |r| {
            let id: i64 = r.get(0)?;
            let payload: Value =
                serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or(Value::Null);
            let sale_ids = match (&payload["sale_id"], &payload["sale_ids"]) {
                (Value::String(s), _) => vec![s.clone()],
                (_, Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Pending {
                outbox_id: id,
                kind: r.get(1)?,
                name: document_name(id, &payload),
                sale_ids,
                business_date: payload["business_date"].as_str().map(str::to_string),
                report: payload["report"].as_str().map(str::to_string),
                state: r.get(3)?,
                attempts: r.get(4)?,
                last_error: r.get(5)?,
                created_at: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((total, rows))
}

/// The last document the back office accepted, and the last failed attempt still on record.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub last_success: Option<Value>,
    pub last_error: Option<Value>,
    pub last_eod_sync: Option<Value>,
    /// Documents not yet accepted: pending, in flight or dead.
    pub pending: i64,
    pub dead: i64,
}

pub fn history(conn: &Connection) -> rusqlite::Result<History> {
    let up = Upstream::Conexxus.as_str();
    let last_success = conn
        .query_row(
            "SELECT id, payload, updated_at FROM outbox WHERE upstream = ?1 AND state = 'delivered'
             ORDER BY updated_at DESC, id DESC LIMIT 1",
            [up],
            |r| {
                let id: i64 = r.get(0)?;
                let payload: Value =
                    serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or(Value::Null);
                Ok(serde_json::json!({
                    "at": r.get::<_, String>(2)?, "outbox_id": id,
                    "document": document_name(id, &payload),
                }))
            },
        )
        .optional()?;
    let last_error = conn
        .query_row(
            "SELECT id, last_error, updated_at FROM outbox
             WHERE upstream = ?1 AND last_error IS NOT NULL
             ORDER BY updated_at DESC, id DESC LIMIT 1",
            [up],
            |r| {
                Ok(serde_json::json!({
                    "at": r.get::<_, String>(2)?, "outbox_id": r.get::<_, i64>(0)?,
                    "error": r.get::<_, String>(1)?,
                }))
            },
        )
        .optional()?;
    let last_eod_sync = conn
        .query_row(
            "SELECT id, business_date, trigger, created_at FROM eod_syncs ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok(serde_json::json!({
                    "sync_id": r.get::<_, i64>(0)?, "business_date": r.get::<_, String>(1)?,
                    "trigger": r.get::<_, String>(2)?, "at": r.get::<_, String>(3)?,
                }))
            },
        )
        .optional()?;
    let (pending, dead) = conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE state = 'dead') FROM outbox
         WHERE upstream = ?1 AND state IN ('pending', 'in_flight', 'dead')",
        [up],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(History {
        last_success,
        last_error,
        last_eod_sync,
        pending,
        dead,
    })
}
