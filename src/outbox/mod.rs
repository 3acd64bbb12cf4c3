//! The outbox: every upstream effect as a row, inserted in the same transaction as the local
//! fact that causes it (invariant 2), with its idempotency key fixed at insert (invariant 3).
//!
//! Row life: `pending` → `in_flight` (leased) → `delivered`, or back to `pending` with a
//! later due time, or `dead` after its kind's maximum attempts. `discarded` only by a
//! technician, audited. Rows are never deleted before `retention_days` after delivery.

pub mod backoff;
pub mod dispatcher;
pub mod kind;
pub mod queue;
pub mod rate;

use rusqlite::{params, Transaction};

/// The upstreams an outbox row can be bound for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Upstream {
    Stripe,
    Conexxus,
    Backup,
}

impl Upstream {
    pub fn as_str(self) -> &'static str {
        match self {
            Upstream::Stripe => "stripe",
            Upstream::Conexxus => "conexxus",
            Upstream::Backup => "backup",
        }
    }
}

/// A new effect to enqueue.
#[derive(Debug, Clone)]
pub struct NewRow<'a> {
    pub kind: &'a str,
    pub upstream: Upstream,
    pub priority: i64,
    /// Fixed now, sent on every attempt, never re-minted.
    pub idempotency_key: String,
    pub payload: serde_json::Value,
    pub created_at: &'a str,
}

/// Inserts a pending row, due at once. Returns its id.
pub fn enqueue(tx: &Transaction<'_>, row: &NewRow<'_>) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO outbox (kind, upstream, priority, idempotency_key, payload, state,
                             attempts, due_ms, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, 0, ?6, ?6)",
    )?
    .execute(params![
        row.kind,
        row.upstream.as_str(),
        row.priority,
        row.idempotency_key,
        row.payload.to_string(),
        row.created_at,
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Rows not yet delivered (pending, in flight) — what the register banner counts.
pub fn pending_count(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')")?
        .query_row([], |r| r.get(0))
}
