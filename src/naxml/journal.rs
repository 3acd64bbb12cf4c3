//! `NAXML-POSJournal`: one event per ledger row inside a `JournalReport`: `SaleEvent` for
//! a sale, `RefundEvent` for a refund (same content; amounts are what went back).
//!
//! A card tender carries its `Authorization`: host-authorized when Stripe answered online,
//! not when the payment was approved offline, and then the event's `OfflineFlag` is set.
//! Everything written is fixed when the payment was decided (never its later forwarding
//! outcome), so a document re-sent after a retry has the same bytes.

use super::{
    amount, date, flag, item_code, local, tender_code, text, time, transmission_header, NAMESPACE,
    R, VERSION, W,
};
use crate::ledger::Sale;
use crate::money::Currency;
use chrono::NaiveDateTime;
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

/// A sale with what the journal adds: its event sequence number and, per tender, the card
/// payment behind it.
#[derive(Debug, Clone)]
pub struct JournalSale<'a> {
    pub sale: &'a Sale,
    pub event_sequence: i64,
    /// One entry per tender, in order; `Some` for a card tender with its payment.
    pub authorizations: Vec<Option<CardAuthorization>>,
}

impl JournalSale<'_> {
    /// Taken while the card host was out of reach: a card approved offline.
    pub fn offline(&self) -> bool {
        self.authorizations.iter().flatten().any(|a| a.offline)
    }
}

/// How a card tender was authorized, as fixed when the payment was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAuthorization {
    pub payment_id: String,
    /// Approved by posedge's offline policy, not by the card host.
    pub offline: bool,
    /// RFC 3339 UTC: when the payment was created.
    pub at: String,
    pub amount: i64,
    pub brand: Option<String>,
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
            transmission_header(w, ctx.store_location_id)?;
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
    let refund = sale.kind == "refund";
    let event = if refund { "RefundEvent" } else { "SaleEvent" };
    // Validated as ISO 4217 when the sale was recorded, so always found.
    let cur = Currency::from_code(&sale.currency)
        .or_else(|| Currency::from_code("USD"))
        .expect("USD is ISO 4217");
    w.create_element(event).write_inner_content(|w| {
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
        flag(w, "OfflineFlag", js.offline())?;
        flag(w, "SuspendFlag", false)?;
        w.create_element("TransactionDetailGroup")
            .write_inner_content(|w| {
                for line in &sale.lines {
                    w.create_element("TransactionLine")
                        .with_attribute(("status", "normal"))
                        .write_inner_content(|w| {
                            w.create_element("ItemLine").write_inner_content(|w| {
                                item_code(w, &line.sku)?;
                                text(w, "Description", &line.description)?;
                                text(w, "ActualSalesPrice", &amount(line.unit_price, cur))?;
                                if let Some(m) = &line.merchandise_code {
                                    text(w, "MerchandiseCode", m)?;
                                }
                                text(w, "SellingUnits", "1")?;
                                text(w, "RegularSellPrice", &amount(line.unit_price, cur))?;
                                text(w, "SalesQuantity", &line.quantity.to_text())?;
                                text(w, "SalesAmount", &amount(line.amount, cur))?;
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
                                    text(
                                        w,
                                        "TaxableSalesAmount",
                                        &amount(tax.taxable_amount, cur),
                                    )?;
                                    text(w, "TaxCollectedAmount", &amount(tax.amount, cur))
                                })?;
                            Ok(())
                        })?;
                }
                for (i, tender) in sale.tenders.iter().enumerate() {
                    let change = tender.amount < 0;
                    let auth = js.authorizations.get(i).and_then(Option::as_ref);
                    w.create_element("TransactionLine")
                        .with_attribute(("status", "normal"))
                        .write_inner_content(|w| {
                            w.create_element("TenderInfo").write_inner_content(|w| {
                                w.create_element("Tender").write_inner_content(|w| {
                                    let (code, sub) = match tender.method.as_str() {
                                        "card" => (
                                            "creditCards",
                                            auth.and_then(|a| a.brand.as_deref())
                                                .unwrap_or("generic"),
                                        ),
                                        other => (tender_code(other), "generic"),
                                    };
                                    text(w, "TenderCode", code)?;
                                    text(w, "TenderSubCode", sub)
                                })?;
                                text(w, "TenderAmount", &amount(tender.amount.abs(), cur))?;
                                flag(w, "ChangeFlag", change)?;
                                if let Some(a) = auth {
                                    authorization(w, ctx, a, cur)?;
                                }
                                Ok(())
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
                text(w, "TransactionTotalGrossAmount", &amount(gross, cur))?;
                text(w, "TransactionTotalNetAmount", &amount(gross, cur))?;
                text(w, "TransactionTotalTaxSalesAmount", &amount(tax, cur))?;
                text(w, "TransactionTotalTaxExemptAmount", &amount(0, cur))?;
                text(w, "TransactionTotalTaxNetAmount", &amount(tax, cur))?;
                w.create_element("TransactionTotalGrandAmount")
                    .with_attribute(("direction", if refund { "Refunded" } else { "Collected" }))
                    .write_text_content(BytesText::new(&amount(sale.total, cur)))?;
                Ok(())
            })?;
        Ok(())
    })?;
    Ok(())
}

/// `Authorization` of a card tender. The reference is posedge's payment id: Stripe's own id
/// may only exist after an offline payment is forwarded, and the document must not change.
fn authorization(w: &mut W, ctx: &JournalContext<'_>, a: &CardAuthorization, cur: Currency) -> R {
    let at = local(&a.at, ctx.timezone);
    w.create_element("Authorization").write_inner_content(|w| {
        text(
            w,
            "AuthorizationResponseCode",
            if a.offline { "offline" } else { "00" },
        )?;
        text(w, "ApprovalReferenceCode", &a.payment_id)?;
        text(w, "AuthorizationDate", &date(at))?;
        text(w, "AuthorizationTime", &time(at))?;
        flag(w, "HostAuthorizedFlag", !a.offline)?;
        text(w, "AuthorizedChargeAmount", &amount(a.amount, cur))
    })?;
    Ok(())
}
