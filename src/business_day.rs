//! Business date: which store day a moment belongs to (invariant 9).
//!
//! Stored timestamps are UTC; the business date is computed in the store's IANA time zone
//! with its configured `day_close`. A close in the small hours (`"04:00"`) keeps sales made
//! after midnight on the previous business date; a close in the evening (`"23:00"`) moves
//! sales made after it to the next business date. `"00:00"` is the calendar date.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

/// The business date of `at` for a store in `tz` whose day rolls over at `day_close`.
pub fn business_date(at: DateTime<Utc>, tz: Tz, day_close: NaiveTime) -> NaiveDate {
    let local = at.with_timezone(&tz).naive_local();
    let close = Duration::seconds(i64::from(day_close.num_seconds_from_midnight()));
    if day_close.hour() < 12 {
        (local - close).date()
    } else {
        (local + (Duration::days(1) - close)).date()
    }
}

/// RFC 3339 UTC with milliseconds, the one format timestamps are stored in.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }
    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn the_business_date_follows_the_store_time_zone_not_utc() {
        let chicago: Tz = "America/Chicago".parse().unwrap();
        // 03:30 UTC on the 25th is 21:30 on the 24th in Chicago (CST, UTC-6).
        assert_eq!(
            business_date(utc(2026, 11, 25, 3, 30), chicago, t("00:00")),
            date("2026-11-24")
        );
        assert_eq!(
            business_date(utc(2026, 11, 25, 6, 0), chicago, t("00:00")),
            date("2026-11-25")
        );
    }

    #[test]
    fn an_early_morning_close_keeps_late_sales_on_the_previous_day() {
        let tz = Tz::UTC;
        assert_eq!(
            business_date(utc(2026, 11, 25, 2, 0), tz, t("04:00")),
            date("2026-11-24")
        );
        assert_eq!(
            business_date(utc(2026, 11, 25, 4, 0), tz, t("04:00")),
            date("2026-11-25")
        );
    }

    #[test]
    fn an_evening_close_moves_later_sales_to_the_next_day() {
        let tz = Tz::UTC;
        assert_eq!(
            business_date(utc(2026, 11, 24, 22, 59), tz, t("23:00")),
            date("2026-11-24")
        );
        assert_eq!(
            business_date(utc(2026, 11, 24, 23, 0), tz, t("23:00")),
            date("2026-11-25")
        );
    }

    #[test]
    fn daylight_saving_changes_do_not_shift_the_date() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08: clocks jump from 02:00 to 03:00 local. 07:30 UTC is 03:30 EDT.
        assert_eq!(
            business_date(utc(2026, 3, 8, 7, 30), ny, t("00:00")),
            date("2026-03-08")
        );
        // 2026-11-01: 05:30 UTC is 01:30 EDT/EST, still the 1st.
        assert_eq!(
            business_date(utc(2026, 11, 1, 5, 30), ny, t("00:00")),
            date("2026-11-01")
        );
    }
}
