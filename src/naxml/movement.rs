//! `NAXML-MovementReport`: the end-of-day summaries of one closed business date, one
//! document per report: MCM (by merchandise code), TLM (by tax code), MSM (counts, totals,
//! tenders, offline counts) and ISM (by item).
//!
//! Invariants:
//! - rendering is pure: the same [`DayTotals`] give the same bytes;
//! - they reconcile with the ledger to the cent: for every report, sales minus refunds of
//!   what it sums (lines for MCM and ISM, taxes for TLM, grand totals and tenders for MSM)
//!   equals the ledger's; a refund is never netted silently, it has its own fields;
//! - quantities are thousandths written exactly (`Quantity`), amounts in the store
//!   currency's places.

use super::{amount, date, item_code, text, time, transmission_header, NAMESPACE, R, VERSION, W};
use crate::ledger::request::Quantity;
use crate::money::Currency;
use chrono::NaiveDateTime;
use quick_xml::events::{BytesDecl, Event};
use quick_xml::Writer;
use std::io::Cursor;

/// The four reports, in the order they are queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Mcm,
    Tlm,
    Msm,
    Ism,
}

impl Report {
    pub const ALL: [Report; 4] = [Report::Mcm, Report::Tlm, Report::Msm, Report::Ism];

    pub fn code(self) -> &'static str {
        match self {
            Report::Mcm => "MCM",
            Report::Tlm => "TLM",
            Report::Msm => "MSM",
            Report::Ism => "ISM",
        }
    }

    fn element(self) -> &'static str {
        match self {
            Report::Mcm => "MerchandiseCodeMovement",
            Report::Tlm => "TaxLevelMovement",
            Report::Msm => "MiscellaneousSummaryMovement",
            Report::Ism => "ItemSalesMovement",
        }
    }
}

/// Sales and refunds of one merchandise code (MCM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerchandiseTotals {
    pub code: String,
    pub sales_quantity: i64,
    pub sales_amount: i64,
    pub refund_amount: i64,
    pub refund_count: i64,
    /// Sales with at least one line of this code.
    pub transactions: i64,
}

/// One tax code (TLM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaxTotals {
    pub code: String,
    pub taxable_amount: i64,
    pub collected: i64,
    pub taxable_refunded: i64,
    pub refunded: i64,
}

/// One item at one price (ISM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemTotals {
    pub sku: String,
    pub description: String,
    pub merchandise_code: Option<String>,
    pub unit_price: i64,
    pub sales_quantity: i64,
    pub sales_amount: i64,
    pub refund_quantity: i64,
    pub refund_amount: i64,
}

/// One tender (MSM): what came in for sales and went out for refunds, change included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenderTotals {
    pub method: String,
    pub sales_amount: i64,
    pub sales_count: i64,
    pub refund_amount: i64,
    pub refund_count: i64,
}

/// A count and an amount (MSM lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub amount: i64,
}

/// Everything the four reports of a business date say, summed from the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub business_date: String,
    pub merchandise: Vec<MerchandiseTotals>,
    pub taxes: Vec<TaxTotals>,
    pub items: Vec<ItemTotals>,
    pub tenders: Vec<TenderTotals>,
    /// Grand totals of sales.
    pub sales: Tally,
    /// Grand totals of refunds.
    pub refunds: Tally,
    /// Sales paid (in part) by a card approved offline.
    pub offline_sales: Tally,
    /// Card payments of the date approved offline, whether a sale used them or not.
    pub offline_approvals: Tally,
    /// Offline card payments of the date Stripe declined once forwarded.
    pub declined_upstream: Tally,
}

impl DayTotals {
    /// Sales minus refunds: what the day collected, tax included.
    pub fn net(&self) -> i64 {
        self.sales.amount - self.refunds.amount
    }
}

/// What a movement report needs beyond the totals.
#[derive(Debug, Clone)]
pub struct MovementContext<'a> {
    pub store_location_id: &'a str,
    pub sequence: i64,
    /// The business day's first and last moment, store local time.
    pub begin: NaiveDateTime,
    pub end: NaiveDateTime,
    /// The store currency: the totals are in its minor units.
    pub currency: Currency,
}

/// Passport-style file name: `MCM20261124_0007.xml` (the sync's id keeps a re-sync of the
/// same date from overwriting the first in a drop directory).
pub fn file_name(report: Report, business_date: &str, sync_id: i64) -> String {
    format!(
        "{}{}_{sync_id:04}.xml",
        report.code(),
        business_date.replace('-', "")
    )
}

/// Renders one report of a day.
pub fn render(report: Report, ctx: &MovementContext<'_>, totals: &DayTotals) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
    // Writing into a Vec cannot fail; the Result is only quick-xml's signature.
    let _ = write(&mut w, report, ctx, totals);
    let mut out = w.into_inner().into_inner();
    out.push(b'\n');
    out
}

fn write(w: &mut W, report: Report, ctx: &MovementContext<'_>, t: &DayTotals) -> R {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("NAXML-MovementReport")
        .with_attributes([("xmlns", NAMESPACE), ("version", VERSION)])
        .write_inner_content(|w| {
            transmission_header(w, ctx.store_location_id)?;
            w.create_element(report.element())
                .write_inner_content(|w| {
                    header(w, ctx, &t.business_date)?;
                    let cur = ctx.currency;
                    match report {
                        Report::Mcm => mcm(w, t, cur),
                        Report::Tlm => tlm(w, t, cur),
                        Report::Msm => msm(w, t, cur),
                        Report::Ism => ism(w, t, cur),
                    }
                })?;
            Ok(())
        })?;
    Ok(())
}

fn header(w: &mut W, ctx: &MovementContext<'_>, business_date: &str) -> R {
    w.create_element("MovementHeader")
        .write_inner_content(|w| {
            text(w, "ReportSequenceNumber", &ctx.sequence.to_string())?;
            text(w, "PrimaryReportPeriod", "2")?;
            text(w, "SecondaryReportPeriod", "0")?;
            text(w, "BusinessDate", business_date)?;
            text(w, "BeginDate", &date(ctx.begin))?;
            text(w, "BeginTime", &time(ctx.begin))?;
            text(w, "EndDate", &date(ctx.end))?;
            text(w, "EndTime", &time(ctx.end))
        })?;
    Ok(())
}

fn count(w: &mut W, name: &str, n: i64) -> R {
    text(w, name, &n.to_string())
}

fn mcm(w: &mut W, t: &DayTotals, cur: Currency) -> R {
    for m in &t.merchandise {
        w.create_element("MCMDetail").write_inner_content(|w| {
            text(w, "MerchandiseCode", &m.code)?;
            text(w, "MerchandiseCodeDescription", &m.code)?;
            w.create_element("MCMSalesTotals")
                .write_inner_content(|w| {
                    text(w, "DiscountAmount", &amount(0, cur))?;
                    count(w, "DiscountCount", 0)?;
                    text(w, "PromotionAmount", &amount(0, cur))?;
                    count(w, "PromotionCount", 0)?;
                    text(w, "RefundAmount", &amount(m.refund_amount, cur))?;
                    count(w, "RefundCount", m.refund_count)?;
                    text(w, "SalesQuantity", &Quantity(m.sales_quantity).to_text())?;
                    text(w, "SalesAmount", &amount(m.sales_amount, cur))?;
                    count(w, "TransactionCount", m.transactions)?;
                    text(w, "OpenDepartmentSalesAmount", &amount(0, cur))?;
                    count(w, "OpenDepartmentTransactionCount", 0)
                })?;
            Ok(())
        })?;
    }
    Ok(())
}

fn tlm(w: &mut W, t: &DayTotals, cur: Currency) -> R {
    for x in &t.taxes {
        w.create_element("TLMDetail").write_inner_content(|w| {
            text(w, "TaxLevelID", &x.code)?;
            text(w, "TaxableSalesAmount", &amount(x.taxable_amount, cur))?;
            text(
                w,
                "TaxableSalesRefundedAmount",
                &amount(x.taxable_refunded, cur),
            )?;
            text(w, "TaxCollectedAmount", &amount(x.collected, cur))?;
            text(w, "TaxExemptSalesAmount", &amount(0, cur))?;
            text(w, "TaxExemptSalesRefundedAmount", &amount(0, cur))?;
            text(w, "TaxForgivenSalesAmount", &amount(0, cur))?;
            text(w, "TaxForgivenSalesRefundedAmount", &amount(0, cur))?;
            text(w, "TaxRefundedAmount", &amount(x.refunded, cur))
        })?;
    }
    Ok(())
}

/// One `MSMDetail`; `tender` adds the tender it is about.
fn msm_line(
    w: &mut W,
    cur: Currency,
    code: &str,
    sub: &str,
    tender: Option<&str>,
    tally: Tally,
) -> R {
    w.create_element("MSMDetail").write_inner_content(|w| {
        w.create_element("MiscellaneousSummaryCodes")
            .write_inner_content(|w| {
                text(w, "MiscellaneousSummaryCode", code)?;
                text(w, "MiscellaneousSummarySubCode", sub)
            })?;
        w.create_element("MSMSalesTotals")
            .write_inner_content(|w| {
                if let Some(method) = tender {
                    w.create_element("Tender").write_inner_content(|w| {
                        text(w, "TenderCode", super::tender_code(method))?;
                        text(w, "TenderSubCode", "generic")
                    })?;
                }
                text(w, "MiscellaneousSummaryAmount", &amount(tally.amount, cur))?;
                count(w, "MiscellaneousSummaryCount", tally.count)
            })?;
        Ok(())
    })?;
    Ok(())
}

fn msm(w: &mut W, t: &DayTotals, cur: Currency) -> R {
    let net = Tally {
        count: t.sales.count + t.refunds.count,
        amount: t.net(),
    };
    let tax: i64 = t.taxes.iter().map(|x| x.collected - x.refunded).sum();
    msm_line(w, cur, "totalizer", "sales", None, t.sales)?;
    msm_line(w, cur, "totalizer", "refunds", None, t.refunds)?;
    msm_line(w, cur, "totalizer", "netSales", None, net)?;
    msm_line(
        w,
        cur,
        "totalizer",
        "tax",
        None,
        Tally {
            count: t.taxes.len() as i64,
            amount: tax,
        },
    )?;
    for x in &t.tenders {
        let sales = Tally {
            count: x.sales_count,
            amount: x.sales_amount,
        };
        let refunds = Tally {
            count: x.refund_count,
            amount: x.refund_amount,
        };
        msm_line(w, cur, "tender", "sales", Some(&x.method), sales)?;
        msm_line(w, cur, "tender", "refunds", Some(&x.method), refunds)?;
    }
    msm_line(
        w,
        cur,
        "statistics",
        "offlineTransactions",
        None,
        t.offline_sales,
    )?;
    msm_line(
        w,
        cur,
        "statistics",
        "offlineCardApprovals",
        None,
        t.offline_approvals,
    )?;
    msm_line(
        w,
        cur,
        "statistics",
        "offlineCardDeclinedUpstream",
        None,
        t.declined_upstream,
    )
}

fn ism(w: &mut W, t: &DayTotals, cur: Currency) -> R {
    for x in &t.items {
        w.create_element("ISMDetail").write_inner_content(|w| {
            item_code(w, &x.sku)?;
            text(w, "Description", &x.description)?;
            if let Some(m) = &x.merchandise_code {
                text(w, "MerchandiseCode", m)?;
            }
            text(w, "SellingUnits", "1")?;
            w.create_element("ISMSellPriceSummary")
                .write_inner_content(|w| {
                    text(w, "ActualSalesPrice", &amount(x.unit_price, cur))?;
                    w.create_element("ISMSalesTotals")
                        .write_inner_content(|w| {
                            text(w, "SalesQuantity", &Quantity(x.sales_quantity).to_text())?;
                            text(w, "SalesAmount", &amount(x.sales_amount, cur))?;
                            text(w, "DiscountAmount", &amount(0, cur))?;
                            count(w, "DiscountCount", 0)?;
                            text(w, "PromotionAmount", &amount(0, cur))?;
                            count(w, "PromotionCount", 0)?;
                            text(w, "RefundQuantity", &Quantity(x.refund_quantity).to_text())?;
                            text(w, "RefundAmount", &amount(x.refund_amount, cur))
                        })?;
                    Ok(())
                })?;
            Ok(())
        })?;
    }
    Ok(())
}
