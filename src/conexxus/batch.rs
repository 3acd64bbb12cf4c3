//! The journal batcher: with `[conexxus] events_per_document` above 1, recorded sales are
//! gathered into POSJournal documents of up to that many events.
//!
//! Invariants:
//! - every ledger row reaches exactly one journal document: the settings key
//!   [`CURSOR_KEY`] holds the rowid of the last sale placed in a document, and it moves in
//!   the same transaction as the outbox row of the document that holds the sales;
//! - a document's content is fixed when it is queued (its payload lists its sale ids), so a
//!   re-send after a retry has the same events;
//! - a partial document goes once its oldest sale waited `max_wait` on the later clock
//!   reading, or at once if the wall clock reads before that sale: a clock set back never
//!   holds sales back (invariant 9);
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
        // A sale stamped after `now` means the wall clock went back since: how long it has
        // waited is unknown, so it waited long enough (never held back by a clock).
        let waited = now_ms.saturating_sub(oldest_ms);
        if !(full || force || waited >= b.max_wait_ms || waited < 0) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{self, request::SaleRequest, SaleContext};

    #[test]
    fn a_sale_stamped_after_now_is_sent_at_once_not_held_until_the_clock_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let mut conn = crate::store::open_rw(&path).unwrap();
        crate::store::migrate::run(&mut conn, &path, dir.path()).unwrap();
        let b = Batching {
            events_per_document: 5,
            max_wait_ms: 60_000,
            priority: 8,
        };
        let tx = conn.transaction().unwrap();
        init(&tx, b, "2031-06-10T12:00:00.000Z").unwrap();
        let sale: SaleRequest = serde_json::from_value(serde_json::json!({
            "client_txn_id": "T-1", "register_id": "R1", "cashier_id": "E7", "currency": "USD",
            "lines": [{"sku": "1", "description": "Cola", "quantity": 1, "unit_price": 199, "amount": 199}],
            "tenders": [{"method": "cash", "amount": 199}], "total": 199
        }))
        .unwrap();
        let ctx = SaleContext {
            fingerprint: ledger::request_fingerprint(&sale),
            location_id: "loc".into(),
            business_date: "2031-06-10".into(),
            created_at: "2031-06-10T12:00:00.000Z".into(),
            sync_priority: 8,
            journal_per_sale: false,
        };
        ledger::record(&tx, &sale, &ctx).unwrap();
        // 30 s later: one of five, waited less than a minute: held.
        assert_eq!(
            gather(&tx, b, "2031-06-10T12:00:30.000Z", false).unwrap(),
            0
        );
        // The wall clock set back an hour: the sale's wait is unknown; it goes.
        assert_eq!(
            gather(&tx, b, "2031-06-10T11:00:30.000Z", false).unwrap(),
            1
        );
    }
}
