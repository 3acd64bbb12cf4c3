//! The `POST /v1/sales` body as registers send it. Unknown fields are refused so a typo in a
//! register's integration cannot silently drop data.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    /// `sale` (default) or `refund`. Left out of the canonical form when `sale`, so that
    /// requests recorded before refunds existed keep their fingerprint (and their replays).
    #[serde(default, skip_serializing_if = "SaleKind::is_sale")]
    pub kind: SaleKind,
    /// The sale a refund gives money back for, when the register knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_sale_id: Option<String>,
    pub client_txn_id: String,
    pub register_id: String,
    pub cashier_id: String,
    pub currency: String,
    pub lines: Vec<LineRequest>,
    #[serde(default)]
    pub taxes: Vec<TaxRequest>,
    #[serde(default)]
    pub tenders: Vec<TenderRequest>,
    pub total: i64,
}

/// What a ledger row is: a sale, or a refund (money back to the customer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleKind {
    #[default]
    Sale,
    Refund,
}

impl SaleKind {
    pub fn is_sale(&self) -> bool {
        *self == SaleKind::Sale
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SaleKind::Sale => "sale",
            SaleKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> SaleKind {
        if s == "refund" {
            SaleKind::Refund
        } else {
            SaleKind::Sale
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub sku: String,
    pub description: String,
    pub quantity: Quantity,
    pub unit_price: i64,
    pub amount: i64,
    #[serde(default)]
    pub merchandise_code: Option<String>,
    #[serde(default)]
    pub tax_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRequest {
    pub tax_code: String,
    pub taxable_amount: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenderRequest {
    pub method: String,
    pub amount: i64,
    #[serde(default)]
    pub payment_id: Option<String>,
}

/// A quantity in thousandths: `2` is 2000, fuel's `10.532` gallons is 10532. Not money, but
/// kept exact all the same: parsed from the number's decimal text, at most three places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(pub i64);

impl Quantity {
    pub fn parse(text: &str) -> Option<Quantity> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let frac = frac.trim_end_matches('0');
        if int.is_empty()
            || frac.len() > 3
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = int.parse().ok()?;
        let frac_milli: i64 = format!("{frac:0<3}").parse().ok()?;
        whole
            .checked_mul(1000)?
            .checked_add(frac_milli)
            .map(Quantity)
    }

    /// The decimal text, without trailing zeros: 2000 → "2", 10532 → "10.532".
    pub fn to_text(self) -> String {
        let whole = self.0 / 1000;
        let frac = self.0 % 1000;
        if frac == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{}", format!("{frac:03}").trim_end_matches('0'))
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        Quantity::parse(&n.to_string()).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "quantity {n} must be a positive number with at most 3 decimal places"
            ))
        })
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole quantities stay JSON integers. A fractional one goes through serde_json's own
        // number parser: the nearest double's shortest form is the same text for every value
        // with at most three decimals, so the JSON written is exactly `to_text()`.
        let text = self.to_text();
        match text.parse::<u64>() {
            Ok(whole) => s.serialize_u64(whole),
            Err(_) => serde_json::from_str::<serde_json::Number>(&text)
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_exactly_in_thousandths() {
        assert_eq!(Quantity::parse("2"), Some(Quantity(2000)));
        assert_eq!(Quantity::parse("10.532"), Some(Quantity(10532)));
        assert_eq!(Quantity::parse("1.5"), Some(Quantity(1500)));
        assert_eq!(Quantity::parse("1000.0"), Some(Quantity(1_000_000)));
        assert_eq!(Quantity::parse("1.0005"), None);
        assert_eq!(Quantity::parse("-1"), None);
        assert_eq!(Quantity::parse("1e3"), None);
    }

    #[test]
    fn quantities_round_trip_through_json_text() {
        for text in ["2", "10.532", "0.001", "123456.789"] {
            let q: Quantity = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&q).unwrap(), text);
        }
    }
}
