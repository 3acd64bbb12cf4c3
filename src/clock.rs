//! The daemon's sense of time: the wall clock, checked against the monotonic clock.
//!
//! The wall clock can step: NTP correcting a box that booted with a wrong RTC, a technician's
//! `date -s`, a virtual machine resumed. The monotonic clock cannot. A [`Reading`] holds both
//! the wall clock now and what it would read had it only advanced with the monotonic clock
//! since it was last trusted ([`Reading::monotonic`]). The two agree (within [`TOLERANCE`])
//! until the wall clock steps; then decisions that approve, expire or report take whichever
//! reading does less:
//! - the daily offline limit counts from the business date of the *earlier* reading, so a
//!   step forward opens no new day and a step back re-opens no used one;
//! - a payment's age for the offline window is measured on the *later* reading (an approval
//!   after the window is denied) and its expiry on the *earlier* one (a step forward does not
//!   give up a charge Stripe would take, nor free outstanding headroom);
//! - a business date is closed for its end-of-day report once the *earlier* reading says so.
//!
//! Invariants:
//! - the wall clock is trusted at start-up (nothing else is known then) and whenever an
//!   upstream's HTTP `Date` agrees with it within [`TOLERANCE`] ([`TimeSense::confirm`]);
//!   otherwise a step is never trusted on the wall clock's word alone;
//! - a difference within [`TOLERANCE`] is not a step: the anchor follows the wall clock, so
//!   slewing and drift never accumulate into a disagreement;
//! - timers, retries, leases and probes never read this: they run on `Instant` / the
//!   dispatcher clock (invariant 9). This is for what must be dated.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// A disagreement up to this is slewing, drift or an HTTP `Date`'s one-second resolution,
/// not a step.
pub const TOLERANCE: Duration = Duration::minutes(2);

/// The wall clock now, and what it would read had it not stepped since it was last trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub wall: DateTime<Utc>,
    pub monotonic: DateTime<Utc>,
}

impl Reading {
    /// Both readings the same: for callers with one known time (tests, replays).
    pub fn exact(at: DateTime<Utc>) -> Reading {
        Reading {
            wall: at,
            monotonic: at,
        }
    }

    pub fn earlier(&self) -> DateTime<Utc> {
        self.wall.min(self.monotonic)
    }

    pub fn later(&self) -> DateTime<Utc> {
        self.wall.max(self.monotonic)
    }

    /// How far the wall clock stepped (positive: ahead of the monotonic reading).
    pub fn skew(&self) -> Duration {
        self.wall - self.monotonic
    }

    /// The wall clock stepped since it was last trusted.
    pub fn stepped(&self) -> bool {
        self.skew().abs() > TOLERANCE
    }
}

#[derive(Debug)]
struct Anchor {
    /// A wall-clock reading trusted when it was taken…
    wall: DateTime<Utc>,
    /// …at this monotonic instant.
    at: Instant,
    /// A step is being reported (logged once per step, not per reading).
    stepped: bool,
}

/// The process's sense of time. [`now`] reads the process-wide one.
#[derive(Debug)]
pub struct TimeSense {
    anchor: Mutex<Anchor>,
}

impl Default for TimeSense {
    fn default() -> Self {
        TimeSense::new()
    }
}

impl TimeSense {
    /// Trusts the wall clock as it reads now.
    pub fn new() -> TimeSense {
        TimeSense::anchored(Utc::now(), Instant::now())
    }

    fn anchored(wall: DateTime<Utc>, at: Instant) -> TimeSense {
        TimeSense {
            anchor: Mutex::new(Anchor {
                wall,
                at,
                stepped: false,
            }),
        }
    }

    pub fn read(&self) -> Reading {
        self.read_at(Utc::now(), Instant::now())
    }

    /// The reading for a wall clock reading `wall` at monotonic instant `at`.
    fn read_at(&self, wall: DateTime<Utc>, at: Instant) -> Reading {
        let mut a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = Duration::from_std(at.saturating_duration_since(a.at)).unwrap_or_default();
        let reading = Reading {
            wall,
            monotonic: a.wall + elapsed,
        };
        if !reading.stepped() {
            // Agreeing: follow the wall clock so small differences never add up.
            a.wall = wall;
            a.at = at;
            if std::mem::replace(&mut a.stepped, false) {
                tracing::info!("the wall clock agrees with the monotonic clock again");
            }
        } else if !std::mem::replace(&mut a.stepped, true) {
            tracing::warn!(
                skew_s = reading.skew().num_seconds(),
                wall = %crate::business_day::rfc3339(reading.wall),
                monotonic = %crate::business_day::rfc3339(reading.monotonic),
                "the wall clock stepped; offline limits, expiry and end of day take the reading that does less until an upstream's Date confirms the wall clock or the daemon restarts"
            );
        }
        reading
    }

    /// An upstream answered with `Date: date`. If it agrees with the wall clock, the wall
    /// clock is right: trust it from now on (a step it confirms is accepted).
    pub fn confirm(&self, date: DateTime<Utc>) {
        self.confirm_at(date, Utc::now(), Instant::now());
    }

    fn confirm_at(&self, date: DateTime<Utc>, wall: DateTime<Utc>, at: Instant) {
        if (wall - date).abs() > TOLERANCE {
            return;
        }
        let mut a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::replace(&mut a.stepped, false) {
            tracing::info!(
                date = %crate::business_day::rfc3339(date),
                "an upstream's Date confirms the wall clock; its step is accepted"
            );
        }
        a.wall = wall;
        a.at = at;
    }

    /// [`TimeSense::confirm`] from an HTTP `Date` header value (RFC 7231 IMF-fixdate).
    pub fn confirm_header(&self, value: &[u8]) {
        let date = std::str::from_utf8(value)
            .ok()
            .and_then(|v| DateTime::parse_from_rfc2822(v.trim()).ok());
        if let Some(d) = date {
            self.confirm(d.with_timezone(&Utc));
        }
    }
}

/// The process-wide sense of time, trusting the wall clock as it read at first use (the
/// daemon's start-up reads it before serving).
pub fn sense() -> &'static TimeSense {
    static SENSE: OnceLock<TimeSense> = OnceLock::new();
    SENSE.get_or_init(TimeSense::new)
}

/// Reads the process-wide sense of time.
pub fn now() -> Reading {
    sense().read()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration as Std;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2031, 6, 10, 12, 0, 0).unwrap()
    }

    #[test]
    fn without_a_step_both_readings_are_the_wall_clock() {
        let start = Instant::now();
        let s = TimeSense::anchored(t0(), start);
        let later = start + Std::from_secs(90);
        let r = s.read_at(t0() + Duration::seconds(90), later);
        assert_eq!(r, Reading::exact(t0() + Duration::seconds(90)));
        assert!(!r.stepped());
    }

    #[test]
    fn a_step_forward_or_back_is_seen_against_the_monotonic_clock() {
        let start = Instant::now();
        let s = TimeSense::anchored(t0(), start);
        let ten = start + Std::from_secs(10);
        let r = s.read_at(t0() + Duration::hours(25), ten);
        assert_eq!(r.monotonic, t0() + Duration::seconds(10));
        assert_eq!(r.earlier(), r.monotonic);
        assert_eq!(r.later(), t0() + Duration::hours(25));
        assert!(r.stepped());
        let r = s.read_at(t0() - Duration::hours(1), ten);
        assert_eq!(
            (r.earlier(), r.later()),
            (t0() - Duration::hours(1), t0() + Duration::seconds(10))
        );
        assert!(r.skew() < Duration::zero());
    }

    #[test]
    fn differences_within_the_tolerance_are_absorbed_one_at_a_time() {
        let start = Instant::now();
        let s = TimeSense::anchored(t0(), start);
        // A wall clock that falls one minute behind per minute is followed, never "stepped".
        for i in 1..=5 {
            let r = s.read_at(t0(), start + Std::from_secs(i * 60));
            assert!(!r.stepped(), "after {i} minutes");
            assert_eq!(r.earlier(), t0());
        }
        // A jump of more than the tolerance at once is a step.
        assert!(s
            .read_at(t0(), start + Std::from_secs(5 * 60 + 121))
            .stepped());
    }

    #[test]
    fn a_step_stays_until_an_upstream_date_confirms_the_wall_clock() {
        let start = Instant::now();
        let s = TimeSense::anchored(t0(), start);
        let at = start + Std::from_secs(5);
        let wall = t0() + Duration::days(3);
        assert!(s.read_at(wall, at).stepped());
        // An upstream whose clock disagrees with the wall clock changes nothing.
        s.confirm_at(t0() + Duration::seconds(5), wall, at);
        assert!(s.read_at(wall, at).stepped());
        // One that agrees (within its one-second resolution and the trip) confirms the step.
        s.confirm_at(wall - Duration::seconds(1), wall, at);
        assert_eq!(s.read_at(wall, at), Reading::exact(wall));
    }

    #[test]
    fn a_date_header_is_parsed_as_http_sends_it() {
        let s = TimeSense::anchored(t0(), Instant::now());
        // Far from the real time: it must not confirm it, and must not panic either way.
        s.confirm_header(b"Tue, 10 Jun 2031 12:00:00 GMT");
        s.confirm_header(b"not a date");
        let parsed = DateTime::parse_from_rfc2822("Tue, 10 Jun 2031 12:00:00 GMT").unwrap();
        assert_eq!(parsed.with_timezone(&Utc), t0());
    }
}
