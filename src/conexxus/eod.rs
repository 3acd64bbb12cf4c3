//! End of day: the four movement reports of each closed business date, queued in the outbox.
//!
//! When: a business date closes at `[store] day_close`; its reports are queued at the first
//! `[conexxus] eod_sync_time` after that (store local time). A date whose moment passed
//! while the box was off is caught up at start-up. `POST /conexxus/sync` queues one on
//! demand (any date up to today's; today's is partial and says so).
//!
//! Invariants:
//! - the automatic sync of a date happens once: checked and recorded (`eod_syncs`, unique
//!   per date) in the same writer transaction that queues its documents;
//! - the totals are summed inside that transaction, so the reports agree with the ledger as
//!   committed, and the documents are rendered then and stored in their outbox rows: a retry
//!   re-sends the same bytes;
//! - journal documents waiting in a batch are queued first, so the back office has a day's
//!   sales before its summaries;
//! - catch-up looks back at most [`MAX_CATCH_UP_DAYS`] dates, from the first sale's date;
//! - a date closes on the earlier clock reading ([`crate::clock`]): a wall clock stepped ahead
//!   reports nothing until an upstream's `Date` confirms it (or a restart trusts it), and one
//!   stepped back re-reports nothing (`eod_syncs`), nor dates a new sale or payment into a
//!   reported day ([`open_date`]).

use super::batch::{self, Batching};
use super::totals;
use crate::business_day;
use crate::naxml::movement::{self, MovementContext, Report};
use crate::outbox::dispatcher::Dispatcher;
use crate::outbox::{self, Upstream};
use crate::store::{StoreError, Writer};
use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use rusqlite::{OptionalExtension, Transaction};
use serde::Serialize;
use std::sync::Arc;

/// Outbox kind of a movement report document.
pub const MOVEMENT_KIND: &str = "naxml_movement";
pub const MAX_CATCH_UP_DAYS: i64 = 31;

/// When business dates close and when their reports go.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub timezone: Tz,
    pub day_close: NaiveTime,
    pub eod_sync_time: NaiveTime,
}

impl Schedule {
    /// The local moment `date` closes (see `business_day`: an evening close ends the date
    /// the same evening, a small-hours close the next morning).
    pub fn close(&self, date: NaiveDate) -> NaiveDateTime {
        let day = if self.day_close.hour() < 12 {
            date + Duration::days(1)
        } else {
            date
        };
        day.and_time(self.day_close)
    }

    /// The local moment `date` opens.
    pub fn open(&self, date: NaiveDate) -> NaiveDateTime {
        self.close(date - Duration::days(1))
    }

    /// The first `eod_sync_time` at or after `date` closes.
    pub fn sync_at(&self, date: NaiveDate) -> NaiveDateTime {
        let close = self.close(date);
        let same_day = close.date().and_time(self.eod_sync_time);
        if same_day >= close {
            same_day
        } else {
            same_day + Duration::days(1)
        }
    }

    /// Now, local: the earlier clock reading, so a wall clock stepped ahead closes no
    /// business date early (a report sent cannot be taken back; one sent late still goes).
    pub fn now_local(&self) -> NaiveDateTime {
        crate::clock::now()
            .earlier()
            .with_timezone(&self.timezone)
            .naive_local()
    }

    /// Today's business date at `now` (local).
    pub fn today(&self, now: NaiveDateTime) -> NaiveDate {
        let utc = now
            .and_local_timezone(self.timezone)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| now.and_utc());
        business_day::business_date(utc, self.timezone, self.day_close)
    }

    /// The latest date whose sync moment is at or before `now`.
    pub fn latest_due(&self, now: NaiveDateTime) -> NaiveDate {
        let mut d = self.today(now);
        while self.sync_at(d) > now {
            d -= Duration::days(1);
        }
        d
    }

    /// The latest date closed at `now`.
    pub fn latest_closed(&self, now: NaiveDateTime) -> NaiveDate {
        let mut d = self.today(now);
        while self.close(d) > now {
            d -= Duration::days(1);
        }
        d
    }
}

/// The business date a new sale or payment is recorded under: `date` (the wall clock's), or
/// the day after the last date automatically reported, whichever is later. A wall clock set
/// back never dates a record into a day whose movement reports already went (they would never
/// count it). Reads one index entry; call inside the writer transaction that records.
pub fn open_date(conn: &rusqlite::Connection, date: &str) -> rusqlite::Result<String> {
    let reported: Option<String> = conn
        .prepare_cached("SELECT max(business_date) FROM eod_syncs WHERE trigger != 'manual'")?
        .query_row([], |r| r.get(0))?;
    Ok(match reported.and_then(|d| d.parse::<NaiveDate>().ok()) {
        Some(last) if last.to_string().as_str() >= date => (last + Duration::days(1)).to_string(),
        _ => date.to_string(),
    })
}

/// One queued document.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub outbox_id: i64,
    pub name: String,
    pub report: &'static str,
}

/// One queued sync.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    pub sync_id: i64,
    pub business_date: String,
    pub trigger: String,
    /// Made before the date closed: later sales of that date are not in it.
    pub partial: bool,
    pub documents: Vec<Document>,
}

/// What queuing needs besides the date.
#[derive(Debug, Clone)]
pub struct Settings {
    pub location_id: String,
    pub currency: crate::money::Currency,
    pub priority: i64,
    pub schedule: Schedule,
    pub batching: Batching,
    pub auto: bool,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        let c = config.conexxus_settings();
        let priority = i64::from(c.sync_priority);
        Settings {
            location_id: config.store.location_id.clone(),
            currency: config.resolved.currency,
            priority,
            schedule: Schedule {
                timezone: config.resolved.timezone,
                day_close: config.resolved.day_close,
                eod_sync_time: config.resolved.eod_sync_time,
            },
            batching: Batching {
                events_per_document: c.events_per_document,
                max_wait_ms: i64::try_from(c.batch_max_wait.0.as_millis()).unwrap_or(i64::MAX),
                priority,
            },
            auto: c.auto_eod_sync,
        }
    }
}

/// Queues the four reports of `date`. For an automatic trigger, `None` if already done.
fn queue(
    tx: &Transaction<'_>,
    s: &Settings,
    date: NaiveDate,
    trigger: &str,
    partial: bool,
) -> rusqlite::Result<Option<Queued>> {
    let day = date.to_string();
    if trigger != "manual" {
        let done: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM eod_syncs WHERE business_date = ?1 AND trigger != 'manual'",
            )?
            .query_row([&day], |r| r.get(0))
            .optional()?;
        if done.is_some() {
            return Ok(None);
        }
    }
    let now = business_day::rfc3339(Utc::now());
    batch::gather(tx, s.batching, &now, true)?;
    let sync_id: i64 = tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM eod_syncs", [], |r| {
        r.get(0)
    })?;
    let totals = totals::day(tx, &day)?;
    let ctx = MovementContext {
        store_location_id: &s.location_id,
        sequence: sync_id,
        begin: s.schedule.open(date),
        end: s.schedule.close(date),
        currency: s.currency,
    };
    let mut documents = Vec::with_capacity(Report::ALL.len());
    for report in Report::ALL {
        let name = movement::file_name(report, &day, sync_id);
        let document = String::from_utf8(movement::render(report, &ctx, &totals))
            .expect("quick-xml writes UTF-8");
        let outbox_id = outbox::enqueue(
            tx,
            &outbox::NewRow {
                kind: MOVEMENT_KIND,
                upstream: Upstream::Conexxus,
                priority: s.priority,
                idempotency_key: format!("naxml-movement:{sync_id}:{}", report.code()),
                payload: serde_json::json!({
                    "name": name, "business_date": day, "report": report.code(),
                    "sync_id": sync_id, "document": document,
                }),
                created_at: &now,
            },
        )?;
        documents.push(Document {
            outbox_id,
            name,
            report: report.code(),
        });
    }
    let ids: Vec<i64> = documents.iter().map(|d| d.outbox_id).collect();
    tx.prepare_cached(
        "INSERT INTO eod_syncs (id, business_date, trigger, created_at, outbox_ids)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        sync_id,
        day,
        trigger,
        now,
        serde_json::to_string(&ids).unwrap_or_default()
    ])?;
    Ok(Some(Queued {
        sync_id,
        business_date: day,
        trigger: trigger.to_string(),
        partial,
        documents,
    }))
}

/// Dates due for their automatic sync at `now`: after the last one done (or from the first
/// sale's date), up to the latest due, at most [`MAX_CATCH_UP_DAYS`].
fn due_dates(
    tx: &Transaction<'_>,
    s: &Schedule,
    now: NaiveDateTime,
) -> rusqlite::Result<Vec<NaiveDate>> {
    let latest = s.latest_due(now);
    let last_done: Option<String> = tx.query_row(
        "SELECT max(business_date) FROM eod_syncs WHERE trigger != 'manual'",
        [],
        |r| r.get(0),
    )?;
    let first = match last_done {
        Some(d) => d.parse::<NaiveDate>().ok().map(|d| d + Duration::days(1)),
        None => tx
            .query_row("SELECT min(business_date) FROM sales", [], |r| {
                r.get::<_, Option<String>>(0)
            })?
            .and_then(|d| d.parse().ok()),
    };
    let Some(first) = first else {
        return Ok(Vec::new());
    };
    let first = first.max(latest - Duration::days(MAX_CATCH_UP_DAYS - 1));
    Ok(first.iter_days().take_while(|d| *d <= latest).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("business_date {0} has not begun yet; today's business date is {1}")]
    Future(NaiveDate, NaiveDate),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for SyncError {
    fn from(e: rusqlite::Error) -> Self {
        SyncError::Store(e.into())
    }
}

/// The end-of-day service the daemon and the API share.
pub struct EndOfDay {
    writer: Writer,
    dispatcher: Arc<Dispatcher>,
    pub settings: Settings,
    /// Local time the daemon started: dates due before it are catch-ups.
    started: NaiveDateTime,
}

impl EndOfDay {
    pub fn new(writer: Writer, dispatcher: Arc<Dispatcher>, settings: Settings) -> EndOfDay {
        let started = settings.schedule.now_local();
        EndOfDay {
            writer,
            dispatcher,
            settings,
            started,
        }
    }

    /// Queues every automatic sync due now (none when `auto_eod_sync` is off).
    pub async fn run_due(&self) -> Result<Vec<Queued>, StoreError> {
        if !self.settings.auto {
            return Ok(Vec::new());
        }
        let (s, started) = (self.settings.clone(), self.started);
        let queued = self
            .writer
            .write(move |tx| {
                let now = s.schedule.now_local();
                let mut queued = Vec::new();
                for date in due_dates(tx, &s.schedule, now)? {
                    let trigger = if s.schedule.sync_at(date) < started {
                        "catch_up"
                    } else {
                        "schedule"
                    };
                    queued.extend(queue(tx, &s, date, trigger, false)?);
                }
                Ok::<_, StoreError>(queued)
            })
            .await?;
        self.announce(&queued);
        Ok(queued)
    }

    /// `POST /conexxus/sync`: `date`, or the latest closed date; audited as `actor` asking,
    /// in the same transaction.
    pub async fn sync_now(
        &self,
        date: Option<NaiveDate>,
        actor: String,
        network: serde_json::Value,
    ) -> Result<Queued, SyncError> {
        let s = self.settings.clone();
        let now = s.schedule.now_local();
        let today = s.schedule.today(now);
        let date = date.unwrap_or_else(|| s.schedule.latest_closed(now));
        if date > today {
            return Err(SyncError::Future(date, today));
        }
        let partial = s.schedule.close(date) > now;
        let queued = self
            .writer
            .write(move |tx| {
                let q = queue(tx, &s, date, "manual", partial)?.expect("manual syncs always queue");
                crate::audit::append(
                    tx,
                    &crate::audit::Entry {
                        kind: "eod_sync_requested",
                        actor: &actor,
                        subject: None,
                        network,
                        details: serde_json::json!({
                            "sync_id": q.sync_id, "business_date": q.business_date,
                            "partial": q.partial,
                        }),
                    },
                )?;
                Ok::<_, StoreError>(q)
            })
            .await?;
        self.announce(std::slice::from_ref(&queued));
        Ok(queued)
    }

    /// Queues batch documents that are full or have waited long enough.
    pub async fn batch_tick(&self) -> Result<usize, StoreError> {
        let b = self.settings.batching;
        if b.per_sale() {
            return Ok(0);
        }
        let n = self
            .writer
            .write(move |tx| {
                // The later reading: a wall clock set back must not hold a batch back.
                let now = business_day::rfc3339(crate::clock::now().later());
                Ok::<_, StoreError>(batch::gather(tx, b, &now, false)?)
            })
            .await?;
        if n > 0 {
            self.dispatcher.wake(Upstream::Conexxus);
        }
        Ok(n)
    }

    fn announce(&self, queued: &[Queued]) {
        for q in queued {
            tracing::info!(
                business_date = %q.business_date, trigger = %q.trigger, sync_id = q.sync_id,
                partial = q.partial, "end-of-day movement reports queued"
            );
        }
        if !queued.is_empty() {
            self.dispatcher.wake(Upstream::Conexxus);
        }
    }

    /// The next automatic sync moment (local), for `/conexxus/health`.
    pub fn next_sync_at(&self) -> Option<NaiveDateTime> {
        if !self.settings.auto {
            return None;
        }
        let s = &self.settings.schedule;
        let now = s.now_local();
        let mut d = s.latest_due(now) + Duration::days(1);
        while s.sync_at(d) <= now {
            d += Duration::days(1);
        }
        Some(s.sync_at(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }
    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }
    fn schedule(close: &str, sync: &str) -> Schedule {
        Schedule {
            timezone: Tz::UTC,
            day_close: t(close),
            eod_sync_time: t(sync),
        }
    }

    #[test]
    fn nothing_is_dated_into_a_day_already_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let mut conn = crate::store::open_rw(&path).unwrap();
        crate::store::migrate::run(&mut conn, &path, dir.path()).unwrap();
        assert_eq!(open_date(&conn, "2031-06-10").unwrap(), "2031-06-10");
        for (date, trigger) in [("2031-06-10", "schedule"), ("2031-06-12", "manual")] {
            conn.execute(
                "INSERT INTO eod_syncs (business_date, trigger, created_at, outbox_ids)
                 VALUES (?1, ?2, '2031-06-11T00:00:00.000Z', '[]')",
                [date, trigger],
            )
            .unwrap();
        }
        // The wall clock set back into the reported 10th (or before): the 11th.
        assert_eq!(open_date(&conn, "2031-06-10").unwrap(), "2031-06-11");
        assert_eq!(open_date(&conn, "2031-06-01").unwrap(), "2031-06-11");
        // A manual (partial) report does not close a date; later dates are untouched.
        assert_eq!(open_date(&conn, "2031-06-12").unwrap(), "2031-06-12");
    }

    #[test]
    fn a_midnight_close_with_a_late_evening_sync_reports_a_date_the_next_evening() {
        let s = schedule("00:00", "23:30");
        assert_eq!(s.close(d("2026-11-24")), at("2026-11-25 00:00"));
        assert_eq!(s.sync_at(d("2026-11-24")), at("2026-11-25 23:30"));
        assert_eq!(s.latest_due(at("2026-11-25 23:29")), d("2026-11-23"));
        assert_eq!(s.latest_due(at("2026-11-25 23:30")), d("2026-11-24"));
    }

    #[test]
    fn a_small_hours_close_is_reported_at_the_first_sync_time_after_it() {
        let s = schedule("04:00", "04:30");
        assert_eq!(s.close(d("2026-11-24")), at("2026-11-25 04:00"));
        assert_eq!(s.open(d("2026-11-24")), at("2026-11-24 04:00"));
        assert_eq!(s.sync_at(d("2026-11-24")), at("2026-11-25 04:30"));
        assert_eq!(s.latest_closed(at("2026-11-25 04:10")), d("2026-11-24"));
        assert_eq!(s.latest_due(at("2026-11-25 04:10")), d("2026-11-23"));
    }

    #[test]
    fn an_evening_close_ends_the_date_the_same_evening() {
        let s = schedule("23:00", "23:30");
        assert_eq!(s.close(d("2026-11-24")), at("2026-11-24 23:00"));
        assert_eq!(s.sync_at(d("2026-11-24")), at("2026-11-24 23:30"));
        assert_eq!(s.today(at("2026-11-24 23:10")), d("2026-11-25"));
        assert_eq!(s.latest_due(at("2026-11-24 23:45")), d("2026-11-24"));
    }
}
