//! Durations as written in config: `"30s"`, `"2m"`, `"72h"`, `"1h30m"`, `"500ms"`, `"7d"`.
//! A bare number is refused: the unit must be explicit so `"30"` cannot mean two things.
//!
//! Invariant: a duration is at most [`ConfigDuration::MAX`] (ten years), so every consumer
//! can add it to a clock, in `i64` milliseconds or as a `chrono` date, without overflow.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Ten years: far beyond any sensible interval, window or timeout, and far inside what
    /// `i64` milliseconds and `chrono` dates can hold.
    pub const MAX: ConfigDuration = ConfigDuration(Duration::from_secs(3650 * 86_400));

    pub fn parse(s: &str) -> Result<ConfigDuration, String> {
        let bad =
            || format!("expected a duration like \"30s\", \"2m\", \"72h\" or \"1h30m\", got {s:?}");
        if s.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0; // milliseconds
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let factor = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total = n
                .checked_mul(factor)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(bad)?;
        }
        let d = ConfigDuration(Duration::from_millis(total));
        if d > ConfigDuration::MAX {
            return Err(format!(
                "the duration {s:?} is longer than ten years (\"3650d\"), the most a duration may be"
            ));
        }
        Ok(d)
    }
}

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConfigDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_parse_to_exact_milliseconds() {
        let ms = |s: &str| ConfigDuration::parse(s).unwrap().0.as_millis();
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("72h"), 259_200_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("7d"), 604_800_000);
    }

    #[test]
    fn durations_without_a_known_unit_are_refused() {
        for bad in [
            "",
            "30",
            "s",
            "30x",
            "1.5h",
            "-1s",
            " 30s",
            "30s ",
            "99999999999999999999d",
        ] {
            assert!(ConfigDuration::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn durations_longer_than_ten_years_are_refused() {
        // Found by the fuzz target config_duration: "2m3050000m000110000050000010m…" (some
        // 200 million years of minutes) parsed, and an offline window that long overflows
        // chrono when the daemon subtracts it from now (a panic in the expiry loop).
        assert_eq!(
            ConfigDuration::parse("3650d"),
            Ok(ConfigDuration::MAX),
            "ten years is the most"
        );
        for too_long in ["3650d1ms", "87601h", "2m3050000m000110000050000010m1m1h30m"] {
            let e = ConfigDuration::parse(too_long).unwrap_err();
            assert!(e.contains("ten years"), "{too_long:?}: {e}");
        }
    }
}
