//! The outbox table's SQL: claim, release, complete, revive, discard, prune, statistics.
//! Every function takes the writer's `&Transaction` (or a read connection for statistics).
//!
//! Invariants:
//! - the idempotency key of a row is never written after its insert;
//! - a claim moves due `pending` rows to `in_flight` with a lease, highest priority first,
//!   then oldest; rows backing off (`due_ms` in the future) are skipped;
//! - nothing here deletes a row that has not been delivered or discarded.

use rusqlite::{params, Connection, Transaction};
use serde::Serialize;
use std::collections::BTreeMap;

/// A row handed to a sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub id: i64,
    pub kind: String,
    pub upstream: String,
    pub priority: i64,
    pub idempotency_key: String,
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: i64,
    pub created_at: String,
}

fn ts() -> String {
    crate::business_day::rfc3339(chrono::Utc::now())
}

/// At start-up: every `in_flight` row belongs to a process that is gone. Due again now, same
/// idempotency key.
pub fn reset_leases(tx: &Transaction<'_>) -> rusqlite::Result<usize> {
    tx.execute(
        "UPDATE outbox SET state = 'pending', lease_until_ms = NULL, due_ms = 0, updated_at = ?1
         WHERE state = 'in_flight'",
        [ts()],
    )
}

/// Leases up to `limit` rows of `upstream` due at or before `due_before_ms`.
pub fn claim(
    tx: &Transaction<'_>,
    upstream: &str,
    due_before_ms: i64,
    lease_until_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Row>> {
    let mut rows: Vec<Row> = tx
        .prepare_cached(
            "UPDATE outbox SET state = 'in_flight', lease_until_ms = ?3, updated_at = ?5
             WHERE id IN (SELECT id FROM outbox
                          WHERE upstream = ?1 AND state = 'pending' AND due_ms <= ?2
                          ORDER BY priority DESC, id LIMIT ?4)
             RETURNING id, kind, upstream, priority, idempotency_key, payload, attempts, created_at",
        )?
        .query_map(params![upstream, due_before_ms, lease_until_ms, limit as i64, ts()], |r| {
            Ok(Row {
                id: r.get(0)?,
                kind: r.get(1)?,
                upstream: r.get(2)?,
                priority: r.get(3)?,
                idempotency_key: r.get(4)?,
                payload: r.get(5)?,
                attempts: r.get(6)?,
                created_at: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    rows.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    Ok(rows)
}

/// Gives leased rows that were never sent back to `pending`, due at once, no attempt counted.
pub fn release(tx: &Transaction<'_>, ids: &[i64]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE outbox SET state = 'pending', lease_until_ms = NULL, updated_at = ?2
         WHERE id = ?1 AND state = 'in_flight'",
    )?;
    let now = ts();
    for id in ids {
        stmt.execute(params![id, now])?;
    }
    Ok(())
}

pub fn mark_delivered(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, lease_until_ms = NULL,
                last_error = NULL, updated_at = ?2
         WHERE id = ?1",
    )?
    .execute(params![id, ts()])?;
    Ok(())
}

/// Records a failed attempt: back to `pending` at `due_ms`, or `dead` when `dead` is set.
pub fn mark_failed(
    tx: &Transaction<'_>,
    id: i64,
    error: &str,
    due_ms: i64,
    dead: bool,
) -> rusqlite::Result<()> {
    mark_retry(tx, id, error, due_ms, dead, true)
}

/// Back to pending (or dead) after an attempt; `counted = false` leaves `attempts` as it was
/// (the upstream was still executing our earlier send: nothing failed).
pub fn mark_retry(
    tx: &Transaction<'_>,
    id: i64,
    error: &str,
    due_ms: i64,
    dead: bool,
    counted: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE outbox SET state = CASE WHEN ?4 THEN 'dead' ELSE 'pending' END,
                attempts = attempts + ?6, due_ms = ?3, lease_until_ms = NULL,
                last_error = ?2, updated_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        truncate(error),
        due_ms,
        dead,
        ts(),
        i64::from(counted)
    ])?;
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(500).collect()
}

/// Sends every dead row back to `pending` with its attempts reset and its key unchanged.
pub fn revive_dead(tx: &Transaction<'_>, only: Option<i64>) -> rusqlite::Result<Vec<i64>> {
    tx.prepare_cached(
        "UPDATE outbox SET state = 'pending', attempts = 0, due_ms = 0, updated_at = ?2
         WHERE state = 'dead' AND (?1 IS NULL OR id = ?1) RETURNING id",
    )?
    .query_map(params![only, ts()], |r| r.get(0))?
    .collect()
}

/// A technician gives up on a row. It stays in the table, marked `discarded`.
pub fn discard(tx: &Transaction<'_>, id: i64, reason: &str) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE outbox SET state = 'discarded', lease_until_ms = NULL, last_error = ?2, updated_at = ?3
             WHERE id = ?1 AND state IN ('pending', 'dead')",
        )?
        .execute(params![id, format!("discarded: {}", truncate(reason)), ts()])?;
    Ok(n == 1)
}

/// Deletes delivered and discarded rows last touched before `cutoff` (RFC 3339), at most
/// `limit` per call so the transaction stays short.
pub fn prune(tx: &Transaction<'_>, cutoff: &str, limit: i64) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE state IN ('delivered', 'discarded') AND updated_at < ?1
             LIMIT ?2)",
    )?
    .execute(params![cutoff, limit])
}

/// The earliest `due_ms` among pending rows of `upstream`.
pub fn next_due(conn: &Connection, upstream: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT min(due_ms) FROM outbox WHERE upstream = ?1 AND state = 'pending'")?
        .query_row([upstream], |r| r.get(0))
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<serde_json::Value>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(
        "SELECT id, kind, upstream, priority, idempotency_key, payload, state, attempts,
                created_at, updated_at, last_error FROM outbox WHERE id = ?1",
    )?
    .query_row([id], row_json)
    .optional()
}

fn row_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<serde_json::Value> {
    let payload: String = r.get(5)?;
    Ok(serde_json::json!({
        "id": r.get::<_, i64>(0)?,
        "kind": r.get::<_, String>(1)?,
        "upstream": r.get::<_, String>(2)?,
        "priority": r.get::<_, i64>(3)?,
        "idempotency_key": r.get::<_, String>(4)?,
        "payload": serde_json::from_str::<serde_json::Value>(&payload).unwrap_or(serde_json::Value::String(payload)),
        "state": r.get::<_, String>(6)?,
        "attempts": r.get::<_, i64>(7)?,
        "created_at": r.get::<_, String>(8)?,
        "updated_at": r.get::<_, String>(9)?,
        "last_error": r.get::<_, Option<String>>(10)?,
    }))
}

/// Rows in `state` (any state when `None`), oldest first, at most `limit`.
pub fn list(
    conn: &Connection,
    state: Option<&str>,
    limit: i64,
) -> rusqlite::Result<Vec<serde_json::Value>> {
    conn.prepare_cached(
        "SELECT id, kind, upstream, priority, idempotency_key, payload, state, attempts,
                created_at, updated_at, last_error FROM outbox
         WHERE (?1 IS NULL OR state = ?1) ORDER BY id LIMIT ?2",
    )?
    .query_map(params![state, limit], row_json)?
    .collect()
}

/// Counts for `/health/offline-queue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Waiting to be sent (never tried or retrying).
    pub pending: i64,
    pub in_flight: i64,
    /// Pending rows that have failed at least once.
    pub retrying: i64,
    pub dead: i64,
    pub oldest_pending_age_s: i64,
    pub by_kind: BTreeMap<String, KindStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindStats {
    pub pending: i64,
    pub in_flight: i64,
    pub retrying: i64,
    pub dead: i64,
}

pub fn stats(conn: &Connection) -> rusqlite::Result<Stats> {
    let mut s = Stats::default();
    let mut stmt = conn.prepare_cached(
        "SELECT kind, state, attempts > 0, count(*) FROM outbox
         WHERE state IN ('pending', 'in_flight', 'dead') GROUP BY kind, state, attempts > 0",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let kind: String = r.get(0)?;
        let state: String = r.get(1)?;
        let retried: bool = r.get(2)?;
        let n: i64 = r.get(3)?;
        let k = s.by_kind.entry(kind).or_default();
        match state.as_str() {
            "pending" => {
                s.pending += n;
                k.pending += n;
                if retried {
                    s.retrying += n;
                    k.retrying += n;
                }
            }
            "in_flight" => {
                s.in_flight += n;
                k.in_flight += n;
            }
            _ => {
                s.dead += n;
                k.dead += n;
            }
        }
    }
    // Ids grow with time; each min(id) is one index probe even with a million rows waiting.
    let oldest: Option<String> = conn
        .prepare_cached(
            "SELECT created_at FROM outbox WHERE id = (SELECT min(m) FROM (
                 SELECT min(id) AS m FROM outbox WHERE state = 'pending'
                 UNION ALL SELECT min(id) FROM outbox WHERE state = 'in_flight'))",
        )?
        .query_row([], |r| r.get(0))
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    if let Some(created) = oldest.and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok()) {
        s.oldest_pending_age_s = (chrono::Utc::now() - created.with_timezone(&chrono::Utc))
            .num_seconds()
            .max(0);
    }
    Ok(s)
}
