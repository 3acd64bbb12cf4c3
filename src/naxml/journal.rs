//! `NAXML-POSJournal`: one `SaleEvent` per sale inside a `JournalReport`.

use super::{amount, NAMESPACE, VENDOR_NAME, VERSION};
use crate::ledger::Sale;
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use std::io::Cursor;

/// What a journal needs beyond the sales themselves.
#[derive(Debug, Clone)]
pub struct JournalContext<'a> {
    pub store_location_id: &'a str,
    pub timezone: Tz,
    /// `ReportSequenceNumber`: unique and increasing per document.
    pub sequence: i64,
}

/// A sale with what the journal adds: its event sequence number and whether it was taken
/// while offline.
#[derive(Debug, Clone)]
pub struct JournalSale<'a> {
    pub sale: &'a Sale,
    pub event_sequence: i64,
    pub offline: bool,
}

type W = Writer<Cursor<Vec<u8>>>;
type R = std::io::Result<()>;

fn text(w: &mut W, name: &str, value: &str) -> R {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn flag(w: &mut W, name: &str, yes: bool) -> R {
    w.create_element(name)
        .with_attribute(("value", if yes { "yes" } else { "no" }))
        .write_empty()?;
    Ok(())
}

fn local(at: &str, tz: Tz) -> NaiveDateTime {
    DateTime::parse_from_rfc3339(at)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
        .with_timezone(&tz)
        .naive_local()
}

fn date(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn time(t: NaiveDateTime) -> String {
    t.format("%H:%M:%S").to_string()
}

/// The POS code format NAXML names for a code of this shape.
fn code_format(sku: &str) -> &'static str {
    let digits = sku.bytes().all(|b| b.is_ascii_digit());
    match (digits, sku.len()) {
        (true, 12) => "upcA",
        (true, 8) => "upcE",
        (true, 13) => "ean13",
        _ => "plu",
    }
}

/// Renders a journal of `sales`.
pub fn render(ctx: &JournalContext<'_>, sales: &[JournalSale<'_>]) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
    // Writing into a Vec cannot fail; the Result is only quick-xml's signature.
    let _ = write(&mut w, ctx, sales);
    let mut out = w.into_inner().into_inner();
    out.push(b'\n');
    out
}

fn write(w: &mut W, ctx: &JournalContext<'_>, sales: &[JournalSale<'_>]) -> R {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("NAXML-POSJournal")
        .with_attributes([("xmlns", NAMESPACE), ("version", VERSION)])
        .write_inner_content(|w| {
            w.create_element("TransmissionHeader")
                .write_inner_content(|w| {
                    text(w, "StoreLocationID", ctx.store_location_id)?;
                    text(w, "VendorName", VENDOR_NAME)?;
                    text(w, "VendorModelVersion", env!("CARGO_PKG_VERSION"))
                })?;
            w.create_element("JournalReport").write_inner_content(|w| {
                let times: Vec<NaiveDateTime> = sales
                    .iter()
                    .map(|s| local(&s.sale.created_at, ctx.timezone))
                    .collect();
                let begin = times.iter().min().copied().unwrap_or_default();
                let end = times.iter().max().copied().unwrap_or_default();
                w.create_element("JournalHeader").write_inner_content(|w| {
                    text(w, "ReportSequenceNumber", &ctx.sequence.to_string())?;
                    text(w, "PrimaryReportPeriod", "2")?;
                    text(w, "SecondaryReportPeriod", "0")?;
                    text(w, "BeginDate", &date(begin))?;
                    text(w, "BeginTime", &time(begin))?;
                    text(w, "EndDate", &date(end))?;
                    text(w, "EndTime", &time(end))
                })?;
                for s in sales {
                    sale_event(w, ctx, s)?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
    Ok(())
}

fn sale_event(w: &mut W, ctx: &JournalContext<'_>, js: &JournalSale<'_>) -> R {
    let sale = js.sale;
    let at = local(&sale.created_at, ctx.timezone);
    w.create_element("SaleEvent").write_inner_content(|w| {
        text(w, "EventSequenceID", &js.event_sequence.to_string())?;
        flag(w, "TrainingModeFlag", false)?;
        text(w, "CashierID", &sale.cashier_id)?;
        text(w, "RegisterID", &sale.register_id)?;
        text(w, "TillID", &sale.register_id)?;
        flag(w, "OutsideSalesFlag", false)?;
        text(w, "TransactionID", &sale.client_txn_id)?;
        text(w, "EventStartDate", &date(at))?;
        text(w, "EventStartTime", &time(at))?;
        text(w, "EventEndDate", &date(at))?;
        text(w, "EventEndTime", &time(at))?;
        text(w, "BusinessDate", &sale.business_date)?;
        text(w, "ReceiptDate", &date(at))?;
        text(w, "ReceiptTime", &time(at))?;
        flag(w, "OfflineFlag", js.offline)?;
        flag(w, "SuspendFlag", false)?;
        w.create_element("TransactionDetailGroup")
            .write_inner_content(|w| {
                for line in &sale.lines {
                    w.create_element("TransactionLine")
                        .with_attribute(("status", "normal"))
                        .write_inner_content(|w| {
                            w.create_element("ItemLine").write_inner_content(|w| {
                                w.create_element("ItemCode").write_inner_content(|w| {
                                    w.create_element("POSCodeFormat")
                                        .with_attribute(("format", code_format(&line.sku)))
                                        .write_empty()?;
                                    text(w, "POSCode", &line.sku)?;
                                    w.create_element("POSCodeModifier")
                                        .with_attribute(("name", "pc"))
                                        .write_text_content(BytesText::new("0"))?;
                                    Ok(())
                                })?;
                                text(w, "Description", &line.description)?;
                                text(w, "ActualSalesPrice", &amount(line.unit_price))?;
                                if let Some(m) = &line.merchandise_code {
                                    text(w, "MerchandiseCode", m)?;
                                }
                                text(w, "SellingUnits", "1")?;
                                text(w, "RegularSellPrice", &amount(line.unit_price))?;
                                text(w, "SalesQuantity", &line.quantity.to_text())?;
                                text(w, "SalesAmount", &amount(line.amount))?;
                                if let Some(t) = &line.tax_code {
                                    w.create_element("ItemTax")
                                        .write_inner_content(|w| text(w, "TaxLevelID", t))?;
                                }
                                Ok(())
                            })?;
                            Ok(())
                        })?;
                }
                for tax in &sale.taxes {
                    w.create_element("TransactionLine")
                        .with_attribute(("status", "normal"))
                        .write_inner_content(|w| {
                            w.create_element("TransactionTax")
                                .write_inner_content(|w| {
                                    text(w, "TaxLevelID", &tax.tax_code)?;
                                    text(w, "TaxableSalesAmount", &amount(tax.taxable_amount))?;
                                    text(w, "TaxCollectedAmount", &amount(tax.amount))
                                })?;
                            Ok(())
                        })?;
                }
                for tender in &sale.tenders {
                    let change = tender.amount < 0;
                    w.create_element("TransactionLine")
                        .with_attribute(("status", "normal"))
                        .write_inner_content(|w| {
                            w.create_element("TenderInfo").write_inner_content(|w| {
                                w.create_element("Tender").write_inner_content(|w| {
                                    let (code, sub) = match tender.method.as_str() {
                                        "card" => ("creditCards", "generic"),
                                        _ => ("cash", "generic"),
                                    };
                                    text(w, "TenderCode", code)?;
                                    text(w, "TenderSubCode", sub)
                                })?;
                                text(w, "TenderAmount", &amount(tender.amount.abs()))?;
                                flag(w, "ChangeFlag", change)
                            })?;
                            Ok(())
                        })?;
                }
                Ok(())
            })?;
        let gross: i64 = sale.lines.iter().map(|l| l.amount).sum();
        let tax: i64 = sale.taxes.iter().map(|t| t.amount).sum();
        w.create_element("TransactionSummary")
            .write_inner_content(|w| {
                text(w, "TransactionTotalGrossAmount", &amount(gross))?;
                text(w, "TransactionTotalNetAmount", &amount(gross))?;
                text(w, "TransactionTotalTaxSalesAmount", &amount(tax))?;
                text(w, "TransactionTotalTaxExemptAmount", &amount(0))?;
                text(w, "TransactionTotalTaxNetAmount", &amount(tax))?;
                w.create_element("TransactionTotalGrandAmount")
                    .with_attribute(("direction", "Collected"))
                    .write_text_content(BytesText::new(&amount(sale.total)))?;
                Ok(())
            })?;
        Ok(())
    })?;
    Ok(())
}
