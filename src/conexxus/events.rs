//! Loading ledger rows as journal events: the sale or refund, its sequence number (its
//! rowid, increasing in recording order) and the card payment behind each card tender.

use crate::ledger::{self, Sale};
use crate::naxml::journal::CardAuthorization;
use rusqlite::{Connection, OptionalExtension};

/// A sale ready for the journal.
pub struct Event {
    pub sale: Sale,
    pub sequence: i64,
    pub authorizations: Vec<Option<CardAuthorization>>,
}

/// Loads `sale_id`; `None` when it is not in the ledger.
pub fn load(conn: &Connection, sale_id: &str) -> rusqlite::Result<Option<Event>> {
    let Some(sale) = ledger::get(conn, sale_id)? else {
        return Ok(None);
    };
    let sequence: i64 = conn
        .prepare_cached("SELECT rowid FROM sales WHERE id = ?1")?
        .query_row([sale_id], |r| r.get(0))?;
    let mut authorizations = Vec::with_capacity(sale.tenders.len());
    for tender in &sale.tenders {
        let auth = match (&tender.payment_id, tender.method.as_str()) {
            (Some(pid), "card") => conn
                .prepare_cached(
                    "SELECT id, mode, created_at, amount, card_brand FROM payments WHERE id = ?1",
                )?
                .query_row([pid], |r| {
                    Ok(CardAuthorization {
                        payment_id: r.get(0)?,
                        offline: r.get::<_, String>(1)? == "offline",
                        at: r.get(2)?,
                        amount: r.get(3)?,
                        brand: r.get(4)?,
                    })
                })
                .optional()?,
            _ => None,
        };
        authorizations.push(auth);
    }
    Ok(Some(Event {
        sale,
        sequence,
        authorizations,
    }))
}
