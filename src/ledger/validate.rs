//! The rules a sale must keep before it may be written. Pure: no I/O, no clock.
//!
//! Rules: Σ line amounts + Σ taxes = total; Σ tenders = total (change is a negative cash
//! tender); amounts are integers within ±10¹³ minor units, so sums cannot overflow; the
//! currency is the store's; identifiers are short printable text. Every text may end up in
//! an XML document for the back office, so it holds only characters XML 1.0 allows: no
//! control characters and neither U+FFFE nor U+FFFF.

use super::request::{SaleKind, SaleRequest};
use crate::money::Currency;

/// A broken rule: a stable `code` for the register and a message saying how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RuleError {
    pub code: &'static str,
    pub message: String,
}

fn rule(code: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        code,
        message: message.into(),
    }
}

/// Largest magnitude of any single amount: 100 billion in major units.
pub const MAX_ABS_AMOUNT: i64 = 10_000_000_000_000;
pub const MAX_LINES: usize = 1000;
/// Tender methods a sale may carry.
pub const TENDER_METHODS: &[&str] = &["cash", "card"];

/// A character a register's text may hold: printable, and one XML 1.0 can carry (its `Char`
/// production has no U+FFFE or U+FFFF; surrogates are not `char`s at all).
pub fn printable(c: char) -> bool {
    !c.is_control() && c != '\u{FFFE}' && c != '\u{FFFF}'
}

pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), RuleError> {
    if value.trim().is_empty() {
        return Err(rule("invalid_field", format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(rule(
            "invalid_field",
            format!("{field} is longer than {max} characters"),
        ));
    }
    if !value.chars().all(printable) {
        return Err(rule(
            "invalid_field",
            format!("{field} must not contain control characters or U+FFFE/U+FFFF"),
        ));
    }
    Ok(())
}

pub fn check_amount(field: &str, amount: i64) -> Result<(), RuleError> {
    if !(-MAX_ABS_AMOUNT..=MAX_ABS_AMOUNT).contains(&amount) {
        return Err(rule(
            "amount_out_of_range",
            format!("{field} = {amount} is outside ±{MAX_ABS_AMOUNT} minor units"),
        ));
    }
    Ok(())
}

fn check_non_negative(field: &str, amount: i64) -> Result<(), RuleError> {
    check_amount(field, amount)?;
    if amount < 0 {
        return Err(rule(
            "negative_amount",
            format!("{field} = {amount} must not be negative"),
        ));
    }
    Ok(())
}

/// Checks every rule that needs only the request and the store currency.
pub fn validate(sale: &SaleRequest, store_currency: Currency) -> Result<(), RuleError> {
    check_text("client_txn_id", &sale.client_txn_id, 64)?;
    check_text("register_id", &sale.register_id, 64)?;
    check_text("cashier_id", &sale.cashier_id, 64)?;

    let currency = Currency::from_code(&sale.currency).ok_or_else(|| {
        rule(
            "unknown_currency",
            format!("currency {:?} is not an ISO 4217 code", sale.currency),
        )
    })?;
    if currency != store_currency {
        return Err(rule(
            "currency_mismatch",
            format!(
                "this store sells in {store_currency}; the sale is in {}",
                currency
            ),
        ));
    }

    match (&sale.kind, &sale.original_sale_id) {
        (SaleKind::Sale, Some(_)) => {
            return Err(rule(
                "original_sale_on_sale",
                "original_sale_id belongs on a refund (\"kind\": \"refund\"), not on a sale",
            ))
        }
        (SaleKind::Refund, Some(id)) => check_text("original_sale_id", id, 64)?,
        _ => {}
    }
    if sale.kind == SaleKind::Refund {
        if let Some(i) = sale.tenders.iter().position(|t| t.method != "cash") {
            return Err(rule(
                "refund_tender_not_cash",
                format!("tenders[{i}]: refunds are paid out in cash; a card refund goes through Stripe's dashboard"),
            ));
        }
    }

    if sale.lines.is_empty() {
        return Err(rule("no_lines", "a sale needs at least one line"));
    }
    if sale.lines.len() > MAX_LINES {
        return Err(rule(
            "too_many_lines",
            format!("a sale has at most {MAX_LINES} lines"),
        ));
    }
    check_amount("total", sale.total)?;

    // Sums are of at most 1000 values of at most 10^13: they fit i64 without overflow.
    let mut lines_sum: i64 = 0;
    for (i, line) in sale.lines.iter().enumerate() {
        check_text(&format!("lines[{i}].sku"), &line.sku, 64)?;
        if line.description.chars().count() > 200 || !line.description.chars().all(printable) {
            return Err(rule(
                "invalid_field",
                format!("lines[{i}].description must be at most 200 printable characters"),
            ));
        }
        for (name, code) in [
            ("merchandise_code", &line.merchandise_code),
            ("tax_code", &line.tax_code),
        ] {
            if let Some(c) = code {
                check_text(&format!("lines[{i}].{name}"), c, 32)?;
            }
        }
        if line.quantity.0 <= 0 {
            return Err(rule(
                "invalid_quantity",
                format!("lines[{i}].quantity must be more than zero"),
            ));
        }
        check_non_negative(&format!("lines[{i}].unit_price"), line.unit_price)?;
        check_non_negative(&format!("lines[{i}].amount"), line.amount)?;
        lines_sum += line.amount;
    }

    let mut taxes_sum: i64 = 0;
    for (i, tax) in sale.taxes.iter().enumerate() {
        check_text(&format!("taxes[{i}].tax_code"), &tax.tax_code, 32)?;
        if sale.taxes[..i].iter().any(|t| t.tax_code == tax.tax_code) {
            return Err(rule(
                "duplicate_tax_code",
                format!("taxes[{i}].tax_code {:?} appears twice", tax.tax_code),
            ));
        }
        check_non_negative(&format!("taxes[{i}].taxable_amount"), tax.taxable_amount)?;
        check_non_negative(&format!("taxes[{i}].amount"), tax.amount)?;
        taxes_sum += tax.amount;
    }

    if lines_sum + taxes_sum != sale.total {
        return Err(rule(
            "total_mismatch",
            format!(
                "line amounts ({lines_sum}) plus taxes ({taxes_sum}) make {}, but total is {}",
                lines_sum + taxes_sum,
                sale.total
            ),
        ));
    }

    if sale.tenders.is_empty() && sale.total != 0 {
        return Err(rule("no_tenders", "a sale with a total needs tenders"));
    }
    let mut tenders_sum: i64 = 0;
    for (i, tender) in sale.tenders.iter().enumerate() {
        if !TENDER_METHODS.contains(&tender.method.as_str()) {
            return Err(rule(
                "unknown_tender_method",
                format!(
                    "tenders[{i}].method {:?} is not one of {TENDER_METHODS:?}",
                    tender.method
                ),
            ));
        }
        check_amount(&format!("tenders[{i}].amount"), tender.amount)?;
        if tender.method != "cash" && tender.amount <= 0 {
            return Err(rule(
                "invalid_tender_amount",
                format!("tenders[{i}].amount must be positive; only cash may be negative (change)"),
            ));
        }
        if let Some(p) = &tender.payment_id {
            check_text(&format!("tenders[{i}].payment_id"), p, 64)?;
            if sale.tenders[..i]
                .iter()
                .any(|t| t.payment_id.as_ref() == Some(p))
            {
                return Err(rule(
                    "payment_already_used",
                    format!("tenders[{i}] names payment {p} a second time"),
                ));
            }
        } else if tender.method == "card" {
            return Err(rule(
                "card_tender_needs_payment",
                format!("tenders[{i}] is a card tender: name the payment_id that POST /v1/payments returned"),
            ));
        }
        tenders_sum += tender.amount;
    }
    if tenders_sum != sale.total {
        return Err(rule(
            "tender_mismatch",
            format!(
                "tenders add up to {tenders_sum} but total is {}",
                sale.total
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::request::{LineRequest, Quantity, TaxRequest, TenderRequest};

    fn usd() -> Currency {
        Currency::from_code("USD").unwrap()
    }

    fn sale() -> SaleRequest {
        SaleRequest {
            kind: SaleKind::Sale,
            original_sale_id: None,
            client_txn_id: "R1-1".into(),
            register_id: "R1".into(),
            cashier_id: "E7".into(),
            currency: "USD".into(),
            lines: vec![LineRequest {
                sku: "049000050103".into(),
                description: "Cola 20oz".into(),
                quantity: Quantity(2000),
                unit_price: 199,
                amount: 398,
                merchandise_code: Some("101".into()),
                tax_code: Some("1".into()),
            }],
            taxes: vec![TaxRequest {
                tax_code: "1".into(),
                taxable_amount: 398,
                amount: 32,
            }],
            tenders: vec![
                TenderRequest {
                    method: "cash".into(),
                    amount: 500,
                    payment_id: None,
                },
                TenderRequest {
                    method: "cash".into(),
                    amount: -70,
                    payment_id: None,
                },
            ],
            total: 430,
        }
    }

    fn code(s: SaleRequest) -> &'static str {
        validate(&s, usd()).unwrap_err().code
    }

    #[test]
    fn a_balanced_sale_with_change_is_valid() {
        assert_eq!(validate(&sale(), usd()), Ok(()));
    }

    #[test]
    fn each_broken_rule_has_its_own_code() {
        let mut s = sale();
        s.total = 431;
        assert_eq!(code(s), "total_mismatch");
        let mut s = sale();
        s.tenders[1].amount = -69;
        assert_eq!(code(s), "tender_mismatch");
        let mut s = sale();
        s.currency = "EUR".into();
        assert_eq!(code(s), "currency_mismatch");
        let mut s = sale();
        s.currency = "ZZZ".into();
        assert_eq!(code(s), "unknown_currency");
        let mut s = sale();
        s.lines.clear();
        assert_eq!(code(s), "no_lines");
        let mut s = sale();
        s.tenders.clear();
        assert_eq!(code(s), "no_tenders");
        let mut s = sale();
        s.tenders[0].method = "iou".into();
        assert_eq!(code(s), "unknown_tender_method");
        let mut s = sale();
        s.lines[0].amount = -398;
        assert_eq!(code(s), "negative_amount");
        let mut s = sale();
        s.lines[0].amount = i64::MAX;
        assert_eq!(code(s), "amount_out_of_range");
        let mut s = sale();
        s.taxes.push(s.taxes[0].clone());
        assert_eq!(code(s), "duplicate_tax_code");
        let mut s = sale();
        s.client_txn_id = " ".into();
        assert_eq!(code(s), "invalid_field");
        let mut s = sale();
        s.tenders = vec![TenderRequest {
            method: "card".into(),
            amount: -430,
            payment_id: None,
        }];
        assert_eq!(code(s), "invalid_tender_amount");
    }

    #[test]
    fn one_payment_cannot_pay_twice_within_a_sale() {
        let mut s = sale();
        let t = TenderRequest {
            method: "card".into(),
            amount: 215,
            payment_id: Some("pay_1".into()),
        };
        s.tenders = vec![t.clone(), t];
        assert_eq!(code(s), "payment_already_used");
    }

    #[test]
    fn texts_that_xml_cannot_carry_are_refused() {
        // Found by the fuzz targets naxml_journal and naxml_movement: U+FFFE in a
        // description was recorded and made every document holding it malformed XML.
        for bad in ["\u{FFFE}", "\u{FFFF}", "a\u{0}b", "tab\there", "\u{85}"] {
            let mut s = sale();
            s.lines[0].description = format!("Cola {bad}");
            assert_eq!(code(s), "invalid_field", "{bad:?}");
            let mut s = sale();
            s.cashier_id = format!("E{bad}7");
            assert_eq!(code(s), "invalid_field", "{bad:?}");
        }
        let mut s = sale();
        s.lines[0].description = "Café <b> & \u{FFFD} \u{10FFFF} \u{202E} 😀".into();
        assert_eq!(validate(&s, usd()), Ok(()));
    }

    #[test]
    fn sums_of_the_largest_allowed_amounts_do_not_overflow() {
        let mut s = sale();
        let line = LineRequest {
            amount: MAX_ABS_AMOUNT,
            unit_price: MAX_ABS_AMOUNT,
            ..s.lines[0].clone()
        };
        s.lines = vec![line; MAX_LINES];
        s.taxes.clear();
        s.total = MAX_ABS_AMOUNT;
        assert_eq!(code(s), "total_mismatch");
    }
}
