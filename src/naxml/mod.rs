//! NAXML 3.4 documents for the Conexxus back office, namespace
//! `http://www.naxml.org/POSBO/Vocabulary/2003-10-16`.
//!
//! Invariants:
//! - element names and order follow the reference skeleton (`shared/naxml/`) and public
//!   vendor samples; the licensed XSDs are not public;
//! - amounts are written from integer minor units with exactly the places of the store
//!   currency (USD 2, JPY 0, BHD 3), never through floating point;
//! - dates and times are the store's local time, as back offices expect;
//! - the same sale always renders to the same bytes (documents are re-sent on retry);
//! - every document is well-formed: text is escaped, and a character XML 1.0 cannot carry
//!   (validation refuses them; a row recorded before it did may still hold one) is written
//!   as U+FFFD.

pub mod journal;
pub mod movement;

use crate::money::Currency;
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use quick_xml::events::BytesText;
use quick_xml::Writer;
use std::io::Cursor;

pub const NAMESPACE: &str = "http://www.naxml.org/POSBO/Vocabulary/2003-10-16";
pub const VERSION: &str = "3.4";
pub const VENDOR_NAME: &str = "posedge";

/// Minor units → NAXML decimal text in `currency` (`321` USD → `3.21`, `321` JPY → `321`).
pub fn amount(minor: i64, currency: Currency) -> String {
    currency.format(minor)
}

pub(crate) type W = Writer<Cursor<Vec<u8>>>;
pub(crate) type R = std::io::Result<()>;

pub(crate) fn text(w: &mut W, name: &str, value: &str) -> R {
    let value = xml_chars(value);
    w.create_element(name)
        .write_text_content(BytesText::new(&value))?;
    Ok(())
}

/// `value` with every character XML 1.0 cannot carry replaced by U+FFFD; borrowed when
/// there is none, which is always for rows that passed today's validation.
fn xml_chars(value: &str) -> std::borrow::Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    };
    if value.chars().all(allowed) {
        std::borrow::Cow::Borrowed(value)
    } else {
        value
            .chars()
            .map(|c| if allowed(c) { c } else { '\u{FFFD}' })
            .collect()
    }
}

pub(crate) fn flag(w: &mut W, name: &str, yes: bool) -> R {
    w.create_element(name)
        .with_attribute(("value", if yes { "yes" } else { "no" }))
        .write_empty()?;
    Ok(())
}

pub(crate) fn local(at: &str, tz: Tz) -> NaiveDateTime {
    DateTime::parse_from_rfc3339(at)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
        .with_timezone(&tz)
        .naive_local()
}

pub(crate) fn date(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d").to_string()
}

pub(crate) fn time(t: NaiveDateTime) -> String {
    t.format("%H:%M:%S").to_string()
}

/// The POS code format NAXML names for a code of this shape.
pub(crate) fn code_format(sku: &str) -> &'static str {
    let digits = sku.bytes().all(|b| b.is_ascii_digit());
    match (digits, sku.len()) {
        (true, 12) => "upcA",
        (true, 8) => "upcE",
        (true, 13) => "ean13",
        _ => "plu",
    }
}

/// `TransmissionHeader`, the first element of every document.
pub(crate) fn transmission_header(w: &mut W, store_location_id: &str) -> R {
    w.create_element("TransmissionHeader")
        .write_inner_content(|w| {
            text(w, "StoreLocationID", store_location_id)?;
            text(w, "VendorName", VENDOR_NAME)?;
            text(w, "VendorModelVersion", env!("CARGO_PKG_VERSION"))
        })?;
    Ok(())
}

/// `ItemCode`: the item's POS code and its format.
pub(crate) fn item_code(w: &mut W, sku: &str) -> R {
    w.create_element("ItemCode").write_inner_content(|w| {
        w.create_element("POSCodeFormat")
            .with_attribute(("format", code_format(sku)))
            .write_empty()?;
        text(w, "POSCode", sku)?;
        w.create_element("POSCodeModifier")
            .with_attribute(("name", "pc"))
            .write_text_content(BytesText::new("0"))?;
        Ok(())
    })?;
    Ok(())
}

/// NAXML `TenderCode` of a tender method.
pub(crate) fn tender_code(method: &str) -> &'static str {
    match method {
        "card" => "creditCards",
        _ => "cash",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_in_the_places_of_the_store_currency() {
        // Found by the fuzz targets naxml_journal and naxml_movement: every amount was
        // written with two decimals, so 500 yen went to the back office as 5.00 and
        // 1.234 dinars as 12.34.
        let c = |code| Currency::from_code(code).unwrap();
        assert_eq!(amount(500, c("JPY")), "500");
        assert_eq!(amount(1234, c("BHD")), "1.234");
        assert_eq!(amount(-70, c("USD")), "-0.70");
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let ctx = movement::MovementContext {
            store_location_id: "loc-1",
            sequence: 1,
            begin: day.and_hms_opt(0, 0, 0).unwrap(),
            end: day.and_hms_opt(23, 59, 59).unwrap(),
            currency: c("JPY"),
        };
        let totals = movement::DayTotals {
            sales: movement::Tally {
                count: 1,
                amount: 500,
            },
            ..Default::default()
        };
        let doc =
            String::from_utf8(movement::render(movement::Report::Msm, &ctx, &totals)).unwrap();
        assert!(
            doc.contains("<MiscellaneousSummaryAmount>500</MiscellaneousSummaryAmount>"),
            "{doc}"
        );
    }

    #[test]
    fn a_stored_text_xml_cannot_carry_is_written_as_the_replacement_character() {
        let mut w = Writer::new(Cursor::new(Vec::new()));
        text(&mut w, "Description", "a\u{FFFE}b\u{1}c & <d>").unwrap();
        let out = String::from_utf8(w.into_inner().into_inner()).unwrap();
        assert_eq!(
            out,
            "<Description>a\u{FFFD}b\u{FFFD}c &amp; &lt;d&gt;</Description>"
        );
    }
}
