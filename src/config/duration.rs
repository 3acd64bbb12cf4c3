//! Durations as written in config: `"30s"`, `"2m"`, `"72h"`, `"1h30m"`, `"500ms"`, `"7d"`.
//! A bare number is refused: the unit must be explicit so `"30"` cannot mean two things.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
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
        Ok(ConfigDuration(Duration::from_millis(total)))
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
}
