//! Money: `i64` minor units plus an ISO 4217 currency code. Never floating point.
//!
//! Invariants:
//! - amounts are integers in the currency's minor unit (`430` USD is 4.30);
//! - decimal strings from config (`"500.00"`) are parsed exactly, digit by digit; a string
//!   with more decimals than the currency has is an error, never rounded;
//! - arithmetic on amounts that could overflow uses checked operations at the call site.

use std::fmt;

/// An ISO 4217 currency with a known minor unit (USD: 2, JPY: 0, BHD: 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: iso_currency::Currency,
    exponent: u32,
}

impl Currency {
    /// Looks up an upper-case ISO 4217 code. Codes without a minor unit (gold, SDR) are refused.
    pub fn from_code(code: &str) -> Option<Currency> {
        let c = iso_currency::Currency::from_code(code)?;
        let exponent = u32::from(c.exponent()?);
        Some(Currency { code: c, exponent })
    }

    pub fn code(&self) -> &'static str {
        self.code.code()
    }

    /// Number of decimal places of the minor unit.
    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    /// Formats minor units as a plain decimal with exactly `exponent` places: `-321` → `"-3.21"`.
    pub fn format(&self, minor: i64) -> String {
        format_minor(minor, self.exponent)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Formats `minor` with `places` decimals, without going through floating point.
pub fn format_minor(minor: i64, places: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if places == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(places);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = places as usize
    )
}

/// A non-negative decimal as written in config, kept exact: `"500.5"` is 5005 × 10⁻¹.
/// Trailing zeros of the fraction carry no value: they are counted apart, for display only,
/// so `"5.000000000000000000000"` is 5 and not an overflow of the digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mantissa: u64,
    scale: u32,
    trailing_zeros: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("expected a decimal amount like \"500.00\", got {0:?}")]
    Syntax(String),
    #[error("amount {0:?} is too large")]
    TooLarge(String),
    #[error("amount {amount:?} has more decimal places than {currency} allows ({places})")]
    TooPrecise {
        amount: String,
        currency: String,
        places: u32,
    },
}

impl Decimal {
    /// Parses `"123"`, `"123.4"`, `"0.05"`. No sign, no exponent, no thousands separators.
    pub fn parse(s: &str) -> Result<Decimal, MoneyError> {
        let syntax = || MoneyError::Syntax(s.to_string());
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        if s.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
            return Err(syntax());
        }
        let too_large = || MoneyError::TooLarge(s.to_string());
        let significant = frac.trim_end_matches('0');
        let mut mantissa: u64 = 0;
        for b in int.bytes().chain(significant.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(b - b'0')))
                .ok_or_else(too_large)?;
        }
        let scale = u32::try_from(significant.len()).map_err(|_| too_large())?;
        let trailing_zeros =
            u32::try_from(frac.len() - significant.len()).map_err(|_| too_large())?;
        Ok(Decimal {
            mantissa,
            scale,
            trailing_zeros,
        })
    }

    /// Converts to minor units of `currency`, exactly: trailing zeros beyond the currency's
    /// places are fine (`"5.000"` USD), a non-zero digit there is an error.
    pub fn to_minor(&self, currency: Currency) -> Result<i64, MoneyError> {
        let places = currency.exponent();
        let text = self.to_string();
        let too_large = || MoneyError::TooLarge(text.clone());
        let minor: u64 = if self.scale <= places {
            let factor = 10u64
                .checked_pow(places - self.scale)
                .ok_or_else(too_large)?;
            self.mantissa.checked_mul(factor).ok_or_else(too_large)?
        } else {
            // The mantissa ends in a significant digit, so a divisor beyond u64 cannot
            // divide it: the amount is too precise (never too large).
            let divisor = 10u64.checked_pow(self.scale - places);
            if divisor.is_none_or(|d| self.mantissa % d != 0) {
                return Err(MoneyError::TooPrecise {
                    amount: text,
                    currency: currency.code().to_string(),
                    places,
                });
            }
            self.mantissa / divisor.unwrap_or(1)
        };
        i64::try_from(minor).map_err(|_| too_large())
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        let zeros = "0".repeat(self.trailing_zeros as usize);
        if scale == 0 {
            f.write_str(&digits)?;
            return if zeros.is_empty() {
                Ok(())
            } else {
                write!(f, ".{zeros}")
            };
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{int}.{frac}{zeros}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_code("USD").unwrap()
    }

    #[test]
    fn decimal_strings_convert_to_exact_minor_units() {
        assert_eq!(Decimal::parse("500.00").unwrap().to_minor(usd()), Ok(50000));
        assert_eq!(Decimal::parse("500").unwrap().to_minor(usd()), Ok(50000));
        assert_eq!(Decimal::parse("0.05").unwrap().to_minor(usd()), Ok(5));
        assert_eq!(Decimal::parse("5.000").unwrap().to_minor(usd()), Ok(500));
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Decimal::parse("500").unwrap().to_minor(jpy), Ok(500));
    }

    #[test]
    fn sub_cent_amounts_are_refused_rather_than_rounded() {
        let err = Decimal::parse("0.001")
            .unwrap()
            .to_minor(usd())
            .unwrap_err();
        assert!(matches!(err, MoneyError::TooPrecise { .. }), "{err}");
    }

    #[test]
    fn malformed_and_oversized_amounts_are_refused() {
        for bad in [
            "", ".5", "5.", "-1", "1e3", "1,000.00", " 5", "5 ", "abc", "1.2.3",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} parsed");
        }
        let huge = Decimal::parse("99999999999999999999").unwrap_err();
        assert!(matches!(huge, MoneyError::TooLarge(_)));
        let overflow = Decimal::parse("99999999999999999").unwrap().to_minor(usd());
        assert!(matches!(overflow, Err(MoneyError::TooLarge(_))));
    }

    #[test]
    fn trailing_zeros_are_exact_however_many_there_are() {
        // Found by the fuzz target money_decimal: the zeros used to count as digits and
        // overflowed u64, so an exact amount was refused as too large.
        let many = format!("5.{}", "0".repeat(40));
        assert_eq!(Decimal::parse(&many).unwrap().to_minor(usd()), Ok(500));
        let jpy = Currency::from_code("JPY").unwrap();
        let amount = Decimal::parse("04950000000049999.000000000000000").unwrap();
        assert_eq!(amount.to_minor(jpy), Ok(4_950_000_000_049_999));
        assert_eq!(Decimal::parse(&many).unwrap().to_string(), many);
        assert!(matches!(
            Decimal::parse("0.000000000000000000001")
                .unwrap()
                .to_minor(usd()),
            Err(MoneyError::TooPrecise { .. })
        ));
    }

    #[test]
    fn a_tiny_amount_with_many_decimals_is_too_precise_not_too_large() {
        // Found by the fuzz target money_decimal: "0.0000000000000000000000000000008" was
        // refused as "too large" because 10^27 does not fit u64.
        let clf = Currency::from_code("CLF").unwrap();
        let tiny = Decimal::parse("00.0000000000000000000000000000008").unwrap();
        assert!(
            matches!(tiny.to_minor(clf), Err(MoneyError::TooPrecise { .. })),
            "{:?}",
            tiny.to_minor(clf)
        );
    }

    #[test]
    fn minor_units_format_with_the_currency_places() {
        assert_eq!(usd().format(321), "3.21");
        assert_eq!(usd().format(-5), "-0.05");
        assert_eq!(usd().format(0), "0.00");
        assert_eq!(format_minor(500, 0), "500");
        assert_eq!(format_minor(i64::MIN, 2), "-92233720368547758.08");
    }

    #[test]
    fn unknown_currencies_are_not_found() {
        assert!(Currency::from_code("XYZ").is_none());
        assert!(Currency::from_code("usd").is_none());
        assert!(
            Currency::from_code("XAU").is_none(),
            "gold has no minor unit"
        );
    }

    #[test]
    fn decimals_display_as_written() {
        assert_eq!(Decimal::parse("0.05").unwrap().to_string(), "0.05");
        assert_eq!(Decimal::parse("500.00").unwrap().to_string(), "500.00");
    }
}
