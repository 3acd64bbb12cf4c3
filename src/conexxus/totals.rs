//! A business date's totals, summed from the ledger for the end-of-day reports.
//!
//! Invariant: everything is summed in SQL over integer minor units and thousandths, from one
//! read of one transaction, so the four reports of a sync agree with each other and with the
//! ledger to the cent. Lines without a merchandise code are reported under code `0`.

use crate::naxml::movement::{
    DayTotals, ItemTotals, MerchandiseTotals, Tally, TaxTotals, TenderTotals,
};
use rusqlite::Connection;

/// Payment states that mean "approved offline", whatever happened after.
const APPROVED_OFFLINE: &str =
    "'approved_offline', 'forwarding', 'captured', 'authorized', 'declined_upstream', 'expired'";

fn tally(conn: &Connection, sql: &str, date: &str) -> rusqlite::Result<Tally> {
    conn.prepare_cached(sql)?.query_row([date], |r| {
        Ok(Tally {
            count: r.get(0)?,
            amount: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
        })
    })
}

/// Sums `business_date` (`YYYY-MM-DD`).
pub fn day(conn: &Connection, date: &str) -> rusqlite::Result<DayTotals> {
    let mut t = DayTotals {
        business_date: date.to_string(),
        ..DayTotals::default()
    };
    let by_kind = "SELECT count(*), sum(total) FROM sales WHERE business_date = ?1 AND kind = ";
    t.sales = tally(conn, &format!("{by_kind}'sale'"), date)?;
    t.refunds = tally(conn, &format!("{by_kind}'refund'"), date)?;
    t.offline_sales = tally(
        conn,
        "SELECT count(*), sum(s.total) FROM sales s
         WHERE s.business_date = ?1 AND s.kind = 'sale' AND EXISTS (
             SELECT 1 FROM sale_tenders t JOIN payments p ON p.id = t.payment_id
             WHERE t.sale_id = s.id AND p.mode = 'offline')",
        date,
    )?;
    t.offline_approvals = tally(
        conn,
        &format!(
            "SELECT count(*), sum(amount) FROM payments
             WHERE business_date = ?1 AND mode = 'offline' AND status IN ({APPROVED_OFFLINE})"
        ),
        date,
    )?;
    t.declined_upstream = tally(
        conn,
        "SELECT count(*), sum(amount) FROM payments
         WHERE business_date = ?1 AND status = 'declined_upstream'",
        date,
    )?;

    let mut stmt = conn.prepare_cached(
        "SELECT coalesce(l.merchandise_code, '0'), s.kind, sum(l.quantity_milli), sum(l.amount),
                count(DISTINCT s.id)
         FROM sales s JOIN sale_lines l ON l.sale_id = s.id
         WHERE s.business_date = ?1 GROUP BY 1, 2 ORDER BY 1, 2",
    )?;
    let mut rows = stmt.query([date])?;
    while let Some(r) = rows.next()? {
        let code: String = r.get(0)?;
        if t.merchandise.last().is_none_or(|m| m.code != code) {
            t.merchandise.push(MerchandiseTotals {
                code,
                ..MerchandiseTotals::default()
            });
        }
        let m = t.merchandise.last_mut().expect("pushed above");
        if r.get::<_, String>(1)? == "refund" {
            (m.refund_amount, m.refund_count) = (r.get(3)?, r.get(4)?);
        } else {
            (m.sales_quantity, m.sales_amount, m.transactions) = (r.get(2)?, r.get(3)?, r.get(4)?);
        }
    }

    let mut stmt = conn.prepare_cached(
        "SELECT x.tax_code, s.kind, sum(x.taxable_amount), sum(x.amount)
         FROM sales s JOIN sale_taxes x ON x.sale_id = s.id
         WHERE s.business_date = ?1 GROUP BY 1, 2 ORDER BY 1, 2",
    )?;
    let mut rows = stmt.query([date])?;
    while let Some(r) = rows.next()? {
        let code: String = r.get(0)?;
        if t.taxes.last().is_none_or(|x| x.code != code) {
            t.taxes.push(TaxTotals {
                code,
                ..TaxTotals::default()
            });
        }
        let x = t.taxes.last_mut().expect("pushed above");
        if r.get::<_, String>(1)? == "refund" {
            (x.taxable_refunded, x.refunded) = (r.get(2)?, r.get(3)?);
        } else {
            (x.taxable_amount, x.collected) = (r.get(2)?, r.get(3)?);
        }
    }

    let mut stmt = conn.prepare_cached(
        "SELECT l.sku, l.unit_price, s.kind, min(l.description), min(l.merchandise_code),
                sum(l.quantity_milli), sum(l.amount)
         FROM sales s JOIN sale_lines l ON l.sale_id = s.id
         WHERE s.business_date = ?1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )?;
    let mut rows = stmt.query([date])?;
    while let Some(r) = rows.next()? {
        let (sku, price): (String, i64) = (r.get(0)?, r.get(1)?);
        if t.items
            .last()
            .is_none_or(|i| i.sku != sku || i.unit_price != price)
        {
            t.items.push(ItemTotals {
                sku,
                unit_price: price,
                description: r.get(3)?,
                merchandise_code: r.get(4)?,
                ..ItemTotals::default()
            });
        }
        let i = t.items.last_mut().expect("pushed above");
        if r.get::<_, String>(2)? == "refund" {
            (i.refund_quantity, i.refund_amount) = (r.get(5)?, r.get(6)?);
        } else {
            (i.sales_quantity, i.sales_amount) = (r.get(5)?, r.get(6)?);
        }
    }

    let mut stmt = conn.prepare_cached(
        "SELECT t.method, s.kind, sum(t.amount), count(*)
         FROM sales s JOIN sale_tenders t ON t.sale_id = s.id
         WHERE s.business_date = ?1 GROUP BY 1, 2 ORDER BY 1, 2",
    )?;
    let mut rows = stmt.query([date])?;
    while let Some(r) = rows.next()? {
        let method: String = r.get(0)?;
        if t.tenders.last().is_none_or(|x| x.method != method) {
            t.tenders.push(TenderTotals {
                method,
                ..TenderTotals::default()
            });
        }
        let x = t.tenders.last_mut().expect("pushed above");
        if r.get::<_, String>(1)? == "refund" {
            (x.refund_amount, x.refund_count) = (r.get(2)?, r.get(3)?);
        } else {
            (x.sales_amount, x.sales_count) = (r.get(2)?, r.get(3)?);
        }
    }
    Ok(t)
}
