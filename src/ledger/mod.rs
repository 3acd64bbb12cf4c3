//! The sales ledger: sales, their lines, taxes and tenders. Append-only.
//!
//! Invariants:
//! - [`record`] runs inside the writer's transaction and writes the sale, its lines, taxes,
//!   tenders AND the outbox row for its Conexxus document together (invariant 2);
//! - a sale is identified for replay by `(register_id, client_txn_id)`; the same request
//!   again returns the original receipt, other content is a conflict, never a second sale;
//! - nothing here updates or deletes a sale; corrections are new rows.

pub mod request;
pub mod validate;

use crate::outbox::{self, Upstream};
use request::{Quantity, SaleRequest};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Outbox kind of the per-sale NAXML POSJournal document.
pub const NAXML_SALE_KIND: &str = "naxml_sale";
/// Default priority of Conexxus documents when `[conexxus]` does not set one.
pub const DEFAULT_SYNC_PRIORITY: i64 = 8;

/// What the register gets back for a recorded sale, first time or replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub id: String,
    pub client_txn_id: String,
    pub business_date: String,
    pub status: String,
}

#[derive(Debug)]
pub enum Recorded {
    New(Receipt),
    Replay(Receipt),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("client_txn_id {client_txn_id:?} of register {register_id} was already used for a different sale ({existing})")]
    Conflict {
        register_id: String,
        client_txn_id: String,
        existing: String,
    },
    /// A rule that needs the database to check (card tenders and their payments).
    #[error("{0}")]
    Rule(validate::RuleError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Payment states a card tender may name: the money is, or is approved to be, collected.
pub const PAYING_STATES: &[&str] = &["captured", "authorized", "approved_offline", "forwarding"];

/// Each card tender must name an existing payment of the same amount, in a paying state,
/// not already used by another sale. Runs inside the sale's transaction.
fn check_card_tenders(tx: &Transaction<'_>, sale: &SaleRequest) -> Result<(), LedgerError> {
    let rule = |code: &'static str, message: String| {
        LedgerError::Rule(validate::RuleError { code, message })
    };
    for (i, t) in sale.tenders.iter().enumerate() {
        let (Some(pid), "card") = (&t.payment_id, t.method.as_str()) else {
            continue;
        };
        let found: Option<(i64, String, String)> = tx
            .prepare_cached("SELECT amount, status, currency FROM payments WHERE id = ?1")?
            .query_row([pid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((amount, status, currency)) = found else {
            return Err(rule(
                "payment_not_found",
                format!("tenders[{i}].payment_id {pid:?} is not a payment of this store"),
            ));
        };
        if amount != t.amount || currency != sale.currency {
            return Err(rule(
                "payment_amount_mismatch",
                format!(
                    "tenders[{i}] is {} but payment {pid} is {amount} {currency}",
                    t.amount
                ),
            ));
        }
        if !PAYING_STATES.contains(&status.as_str()) {
            return Err(rule(
                "payment_not_paying",
                format!("payment {pid} is {status}; it cannot pay for a sale"),
            ));
        }
        let used: Option<String> = tx
            .prepare_cached("SELECT sale_id FROM sale_tenders WHERE payment_id = ?1 AND method = 'card' LIMIT 1")?
            .query_row([pid], |r| r.get(0))
            .optional()?;
        if let Some(other) = used {
            return Err(rule(
                "payment_already_used",
                format!("payment {pid} already pays for sale {other}"),
            ));
        }
    }
    Ok(())
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Store(e.into())
    }
}

/// Everything [`record`] needs besides the request, decided outside the transaction.
#[derive(Debug, Clone)]
pub struct SaleContext {
    /// [`request_fingerprint`] of the request, computed before it reaches the writer.
    pub fingerprint: String,
    pub location_id: String,
    pub business_date: String,
    pub created_at: String,
    pub sync_priority: i64,
    /// One journal document per sale, queued with the sale. When false the journal batcher
    /// (`conexxus::batch`) gathers recorded sales into documents of several events.
    pub journal_per_sale: bool,
}

/// SHA-256 of the canonical (re-serialized, typed) request: field order and whitespace of
/// the register's JSON do not matter, content does.
pub fn request_fingerprint(sale: &SaleRequest) -> String {
    let canonical = serde_json::to_vec(sale).expect("a typed request always serializes");
    hex::encode(Sha256::digest(&canonical))
}

/// Records a validated sale, or returns the original receipt for a replay.
pub fn record(
    tx: &Transaction<'_>,
    sale: &SaleRequest,
    ctx: &SaleContext,
) -> Result<Recorded, LedgerError> {
    let fingerprint = request_fingerprint(sale);
    let existing = tx
        .prepare_cached(
            "SELECT id, request_sha256, business_date, status FROM sales
             WHERE register_id = ?1 AND client_txn_id = ?2",
        )?
        .query_row(params![sale.register_id, sale.client_txn_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    if let Some((id, sha, business_date, status)) = existing {
        if sha != *fingerprint {
            return Err(LedgerError::Conflict {
                register_id: sale.register_id.clone(),
                client_txn_id: sale.client_txn_id.clone(),
                existing: id,
            });
        }
        return Ok(Recorded::Replay(Receipt {
            id,
            client_txn_id: sale.client_txn_id.clone(),
            business_date,
            status,
        }));
    }

    check_card_tenders(tx, sale)?;
    if let Some(original) = &sale.original_sale_id {
        let kind: Option<String> = tx
            .prepare_cached("SELECT kind FROM sales WHERE id = ?1")?
            .query_row([original], |r| r.get(0))
            .optional()?;
        if kind.as_deref() != Some("sale") {
            return Err(LedgerError::Rule(validate::RuleError {
                code: "original_sale_not_found",
                message: format!("original_sale_id {original:?} is not a sale of this store"),
            }));
        }
    }
    let id = format!("sale_{}", ulid::Ulid::new());
    // A wall clock set back must not date the sale into a day already reported.
    let business_date = crate::conexxus::eod::open_date(tx, &ctx.business_date)?;
    tx.prepare_cached(
        "INSERT INTO sales (id, location_id, register_id, client_txn_id, request_sha256,
                            cashier_id, currency, total, business_date, created_at, status,
                            kind, original_sale_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'recorded', ?11, ?12)",
    )?
    .execute(params![
        id,
        ctx.location_id,
        sale.register_id,
        sale.client_txn_id,
        fingerprint,
        sale.cashier_id,
        sale.currency,
        sale.total,
        business_date,
        ctx.created_at,
        sale.kind.as_str(),
        sale.original_sale_id,
    ])?;
    {
        let mut line_stmt = tx.prepare_cached(
            "INSERT INTO sale_lines (sale_id, line_no, sku, description, quantity_milli,
                                     unit_price, amount, merchandise_code, tax_code)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for (no, l) in sale.lines.iter().enumerate() {
            line_stmt.execute(params![
                id,
                no as i64,
                l.sku,
                l.description,
                l.quantity.0,
                l.unit_price,
                l.amount,
                l.merchandise_code,
                l.tax_code
            ])?;
        }
        let mut tax_stmt = tx.prepare_cached(
            "INSERT INTO sale_taxes (sale_id, tax_code, taxable_amount, amount) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for t in &sale.taxes {
            tax_stmt.execute(params![id, t.tax_code, t.taxable_amount, t.amount])?;
        }
        let mut tender_stmt = tx.prepare_cached(
            "INSERT INTO sale_tenders (sale_id, tender_no, method, amount, payment_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (no, t) in sale.tenders.iter().enumerate() {
            tender_stmt.execute(params![id, no as i64, t.method, t.amount, t.payment_id])?;
        }
    }
    if ctx.journal_per_sale {
        outbox::enqueue(
            tx,
            &outbox::NewRow {
                kind: NAXML_SALE_KIND,
                upstream: Upstream::Conexxus,
                priority: ctx.sync_priority,
                idempotency_key: format!("naxml-sale:{id}"),
                payload: serde_json::json!({ "sale_id": id }),
                created_at: &ctx.created_at,
            },
        )?;
    }
    Ok(Recorded::New(Receipt {
        id,
        client_txn_id: sale.client_txn_id.clone(),
        business_date,
        status: "recorded".into(),
    }))
}

/// A sale as stored, for `GET /v1/sales/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sale {
    pub id: String,
    pub client_txn_id: String,
    pub location_id: String,
    pub register_id: String,
    pub cashier_id: String,
    pub currency: String,
    pub business_date: String,
    pub created_at: String,
    pub status: String,
    /// `sale` or `refund`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_sale_id: Option<String>,
    pub lines: Vec<SaleLine>,
    pub taxes: Vec<SaleTax>,
    pub tenders: Vec<SaleTender>,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaleLine {
    pub sku: String,
    pub description: String,
    pub quantity: Quantity,
    pub unit_price: i64,
    pub amount: i64,
    pub merchandise_code: Option<String>,
    pub tax_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaleTax {
    pub tax_code: String,
    pub taxable_amount: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaleTender {
    pub method: String,
    pub amount: i64,
    pub payment_id: Option<String>,
}

/// Loads one sale with its lines, taxes and tenders.
pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Sale>> {
    let head = conn
        .prepare_cached(
            "SELECT id, client_txn_id, location_id, register_id, cashier_id, currency,
                    business_date, created_at, status, total, kind, original_sale_id
             FROM sales WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Sale {
                id: r.get(0)?,
                client_txn_id: r.get(1)?,
                location_id: r.get(2)?,
                register_id: r.get(3)?,
                cashier_id: r.get(4)?,
                currency: r.get(5)?,
                business_date: r.get(6)?,
                created_at: r.get(7)?,
                status: r.get(8)?,
                total: r.get(9)?,
                kind: r.get(10)?,
                original_sale_id: r.get(11)?,
                lines: Vec::new(),
                taxes: Vec::new(),
                tenders: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut sale) = head else {
        return Ok(None);
    };
    sale.lines = conn
        .prepare_cached(
            "SELECT sku, description, quantity_milli, unit_price, amount, merchandise_code, tax_code
             FROM sale_lines WHERE sale_id = ?1 ORDER BY line_no",
        )?
        .query_map([id], |r| {
            Ok(SaleLine {
                sku: r.get(0)?,
                description: r.get(1)?,
                quantity: Quantity(r.get(2)?),
                unit_price: r.get(3)?,
                amount: r.get(4)?,
                merchandise_code: r.get(5)?,
                tax_code: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    sale.taxes = conn
        .prepare_cached(
            "SELECT tax_code, taxable_amount, amount FROM sale_taxes WHERE sale_id = ?1 ORDER BY rowid",
        )?
        .query_map([id], |r| {
            Ok(SaleTax {
                tax_code: r.get(0)?,
                taxable_amount: r.get(1)?,
                amount: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    sale.tenders = conn
        .prepare_cached(
            "SELECT method, amount, payment_id FROM sale_tenders WHERE sale_id = ?1 ORDER BY tender_no",
        )?
        .query_map([id], |r| {
            Ok(SaleTender {
                method: r.get(0)?,
                amount: r.get(1)?,
                payment_id: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(sale))
}
