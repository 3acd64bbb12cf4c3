//! The journal batcher: with `[conexxus] events_per_document` above 1, recorded sales are
//! gathered into POSJournal documents of up to that many events.
//!
//! Invariants:
//! - every ledger row reaches exactly one journal document: the settings key
//!   [`CURSOR_KEY`] holds the rowid of the last sale placed in a document, and it moves in
//!   the same transaction as the outbox row of the document that holds the sales;
//! - a document's content is fixed when it is queued (its payload lists its sale ids), so a
//!   re-send after a retry has the same events;
//! - switching between one document per sale and batches loses and repeats nothing:
//!   [`init`] runs at start-up, before any sale is recorded under the new setting.

use crate::ledger::NAXML_SALE_KIND;
use crate::outbox::{self, Upstream};
use crate::settings;
use rusqlite::Transaction;

/// Rowid of the last sale in a queued batch document.
pub const CURSOR_KEY: &str = "journal_batch_cursor";

/// How documents are gathered.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub events_per_document: u32,
    /// A partial document goes once its oldest sale is older than this (milliseconds).
    pub max_wait_ms: i64,
    pub priority: i64,
}

impl Batching {
    pub fn per_sale(&self) -> bool {
        self.events_per_document <= 1
    }
}

fn cursor(tx: &Transaction<'_>) -> rusqlite::Result<Option<i64>> {
    Ok(settings::get(tx, CURSOR_KEY)?.and_then(|v| v.parse().ok()))
}

/// At start-up. Batching: the first time, start after the sales already recorded (they
/// had their own documents). One per sale: gather what the batcher left, then stop it.
pub fn init(tx: &Transaction<'_>, b: Batching, now: &str) -> rusqlite::Result<usize> {
    match (b.per_sale(), cursor(tx)?) {
        (false, None) => {
            let last: i64 = tx.query_row("SELECT coalesce(max(rowid), 0) FROM sales", [], |r| {
                r.get(0)
            })?;
            settings::set(tx, CURSOR_KEY, &last.to_string())?;
            Ok(0)
        }
        (true, Some(_)) => {
            let queued = gather(tx, b, now, true)?;
            settings::delete(tx, CURSOR_KEY)?;
            Ok(queued)
        }
        _ => Ok(0),
    }
}

/// Queues full documents, and with `force` (or once the oldest waiting sale is older than
/// `max_wait_ms`) the partial one too. Returns the number of documents queued.
pub fn gather(
    tx: &Transaction<'_>,
    b: Batching,
    now: &str,
    force: bool,
) -> rusqlite::Result<usize> {
    let Some(mut after) = cursor(tx)? else {
        return Ok(0);
    };
    let size = i64::from(b.events_per_document.max(1));
    let now_ms = chrono::DateTime::parse_from_rfc3339(now)
        .map(|t| t.timestamp_millis())
        .unwrap_or(i64::MAX);
    let mut queued = 0;
    loop {
        let rows: Vec<(i64, String, String)> = tx
            .prepare_cached(
                "SELECT rowid, id, created_at FROM sales WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            )?
            .query_map([after, size], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let Some(first) = rows.first() else {
            break;
        };
        let oldest_ms = chrono::DateTime::parse_from_rfc3339(&first.2)
            .map(|t| t.timestamp_millis())
            .unwrap_or(0);
        let full = rows.len() as i64 == size;
        if !(full || force || now_ms.saturating_sub(oldest_ms) >= b.max_wait_ms) {
            break;
        }
        let last = rows.last().map(|r| r.0).unwrap_or(after);
        let ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        outbox::enqueue(
            tx,
            &outbox::NewRow {
                kind: NAXML_SALE_KIND,
                upstream: Upstream::Conexxus,
                priority: b.priority,
                idempotency_key: format!("naxml-journal:{}-{last}", first.0),
                payload: serde_json::json!({ "sale_ids": ids }),
                created_at: now,
            },
        )?;
        settings::set(tx, CURSOR_KEY, &last.to_string())?;
        after = last;
        queued += 1;
    }
    Ok(queued)
}
