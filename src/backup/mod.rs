//! Backups: consistent online snapshots of the ledger on `[backup] interval`, on demand
//! (`posedge backup now`) and before every migration, kept locally and optionally uploaded to
//! S3-compatible storage through the outbox.
//!
//! # Design
//!
//! A snapshot is `VACUUM INTO` on a connection of the read pool ([`crate::store::snapshot`]):
//! one read transaction, so the writer keeps committing (WAL) and every sale acknowledged
//! before the snapshot began is in it. The copy is written under a temporary name, fsynced,
//! checked with `PRAGMA integrity_check`, renamed to its final name and the directory fsynced:
//! a file with a final name is a verified backup.
//!
//! File names, in the backup directory (UTC, milliseconds, sortable):
//! - `posedge-20261124T101500.123Z.db`: scheduled or on-demand backups; the newest `keep` of
//!   these are kept and older ones removed;
//! - `posedge-pre-migration-v1-to-v2-20261124T101500.123Z.db`: taken before a migration
//!   ([`crate::store::migrate`]); never pruned (few, and the way back from an upgrade).
//!
//! Nothing else in the directory is ever touched.
//!
//! # Schedule
//!
//! Due times are on the dispatcher's clock (monotonic within a run, persisted across
//! restarts, paused while the daemon is stopped; invariant 9), not on the wall clock. The
//! next due moment is stored in the settings table with the last attempt, so a restart
//! neither snapshots at once nor forgets the schedule: the first backup of a new database is
//! one `interval` after the daemon first ran, later ones one `interval` after the last
//! success; a failure is retried after `min(interval, 10 min)`.
//!
//! # Invariants
//! - a backup counts (is recorded as the last good one, may be uploaded) only after it passed
//!   the integrity check at its final name;
//! - pruning removes only files whose names this module makes for scheduled backups;
//! - the last attempt (time, file, size, ok or error) is in the settings table under
//!   [`STATE_KEY`], written with the dispatcher clock in one transaction (and, with
//!   `[backup.s3]`, the upload's outbox row: invariant 2);
//! - a failed last attempt or no good backup for 2 × `interval` raises the `backup` alert.

pub mod restore;
pub mod upload;

use crate::config::Config;
use crate::outbox::{self, Upstream};
use crate::settings;
use crate::store::migrate::STAMP_FORMAT;
use crate::store::{snapshot, StoreError};
use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings key holding [`State`] as JSON.
pub const STATE_KEY: &str = "backup_state";
/// Outbox kind of an S3 upload.
pub const UPLOAD_KIND: &str = "backup_upload";
/// After a failed attempt, the next one comes this soon (or after `interval` if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(600);

/// What the settings table remembers about backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The last attempt, good or not.
    pub last: Option<Attempt>,
    /// The last good backup.
    pub last_ok: Option<Attempt>,
    /// Dispatcher-clock milliseconds at which the next scheduled backup is due.
    pub next_due_ms: Option<i64>,
    /// Dispatcher-clock milliseconds since which the backups are "fresh": the last success,
    /// or when scheduling began. Staleness is measured from here.
    pub fresh_since_ms: Option<i64>,
}

/// One backup attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// RFC 3339 UTC, when it started.
    pub at: String,
    pub ok: bool,
    pub file: Option<String>,
    pub bytes: Option<u64>,
    pub took_ms: Option<u64>,
    pub error: Option<String>,
    /// `scheduled`, `daemon` (asked over the admin API) or `cli` (daemon stopped).
    pub trigger: String,
    /// Dispatcher clock when it finished.
    pub clock_ms: i64,
}

/// What a backup needs from the configuration, resolved once.
#[derive(Debug, Clone)]
pub struct Plan {
    pub enabled: bool,
    pub directory: PathBuf,
    /// File-name prefix: the database file's stem (`posedge`).
    pub stem: String,
    pub keep: usize,
    pub interval: Duration,
    /// `(bucket, object key prefix)` when uploads are configured.
    pub upload: Option<(String, String)>,
}

impl Plan {
    pub fn from_config(config: &Config) -> Plan {
        let b = &config.backup;
        Plan {
            enabled: b.enabled,
            directory: config.resolved.backup_directory.clone(),
            stem: stem_of(&config.resolved.database_path),
            keep: b.keep.max(1) as usize,
            interval: b.interval.0,
            upload: b.s3.as_ref().map(|s| (s.bucket.clone(), s.prefix.clone())),
        }
    }
}

/// `posedge` for `/var/lib/posedge/posedge.db`.
pub fn stem_of(db: &Path) -> String {
    db.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "posedge".into())
}

/// The name of a scheduled or on-demand backup taken at `at`.
pub fn file_name(stem: &str, at: DateTime<Utc>) -> String {
    format!("{stem}-{}.db", at.format(STAMP_FORMAT))
}

/// Which of our names a file has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Scheduled or on demand; pruned to `keep`.
    Backup,
    /// Before a migration from `from` to `to`; kept.
    PreMigration { from: i64, to: i64 },
}

/// A backup file found in the directory.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub file: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub origin: Origin,
    /// From the name: when it was taken (UTC).
    pub taken_at: String,
    pub bytes: u64,
    #[serde(skip)]
    at: NaiveDateTime,
}

fn parse_stamp(s: &str) -> Option<NaiveDateTime> {
    // Pre-migration snapshots of earlier releases had whole seconds.
    NaiveDateTime::parse_from_str(s, STAMP_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ"))
        .ok()
}

/// Recognises our file names; `None` for anything else (never listed, never pruned).
pub fn parse_name(stem: &str, name: &str) -> Option<(Origin, NaiveDateTime)> {
    let rest = name.strip_prefix(stem)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".db")?;
    if let Some(m) = rest.strip_prefix("pre-migration-v") {
        let (from, m) = m.split_once("-to-v")?;
        let (to, stamp) = m.split_once('-')?;
        return Some((
            Origin::PreMigration {
                from: from.parse().ok()?,
                to: to.parse().ok()?,
            },
            parse_stamp(stamp)?,
        ));
    }
    Some((Origin::Backup, parse_stamp(rest)?))
}

/// Our backup files in `dir`, newest first. A missing directory is an empty list.
pub fn list(dir: &Path, stem: &str) -> Result<Vec<Listed>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(StoreError::Io(format!(
                "cannot read the backup directory {}: {e}",
                dir.display()
            )))
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((origin, at)) = parse_name(stem, &name) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        found.push(Listed {
            file: name,
            path: entry.path(),
            origin,
            taken_at: crate::business_day::rfc3339(at.and_utc()),
            bytes: meta.len(),
            at,
        });
    }
    found.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.file.cmp(&a.file)));
    Ok(found)
}

/// Removes scheduled backups beyond the newest `keep`; returns the removed names. `just_taken`
/// is one of the `keep` whatever its name says: names carry the wall clock, and a backup
/// taken after the clock was set back is named older than the ones before it although it
/// holds the newest data.
pub fn prune(
    dir: &Path,
    stem: &str,
    keep: usize,
    just_taken: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut removed = Vec::new();
    let keep_others = keep.saturating_sub(usize::from(just_taken.is_some()));
    for old in list(dir, stem)?
        .into_iter()
        .filter(|l| l.origin == Origin::Backup && Some(l.file.as_str()) != just_taken)
        .skip(keep_others)
    {
        match std::fs::remove_file(&old.path) {
            Ok(()) => removed.push(old.file),
            Err(e) => {
                tracing::warn!(file = %old.path.display(), error = %e, "cannot remove an old backup")
            }
        }
    }
    if !removed.is_empty() {
        snapshot::sync_dir(dir)?;
    }
    Ok(removed)
}

/// Takes one verified backup through `conn` (a read connection is enough). Blocking.
pub fn take(conn: &Connection, plan: &Plan, at: DateTime<Utc>) -> Result<Taken, StoreError> {
    let file = file_name(&plan.stem, at);
    let written = snapshot::write(conn, &plan.directory.join(&file))?;
    let pruned = prune(&plan.directory, &plan.stem, plan.keep, Some(&file))?;
    Ok(Taken {
        file,
        bytes: written.bytes,
        took: written.took,
        pruned,
    })
}

/// A backup that was written and verified.
#[derive(Debug, Clone)]
pub struct Taken {
    pub file: String,
    pub bytes: u64,
    pub took: Duration,
    pub pruned: Vec<String>,
}

/// Reads [`State`]; a missing or unreadable value is the empty state.
pub fn load(conn: &Connection) -> rusqlite::Result<State> {
    Ok(settings::get(conn, STATE_KEY)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

fn store(tx: &Transaction<'_>, state: &State) -> rusqlite::Result<()> {
    settings::set(
        tx,
        STATE_KEY,
        &serde_json::to_string(state).unwrap_or_default(),
    )
}

/// Records an attempt, schedules the next one and, for a good backup with uploads
/// configured, enqueues its upload, all in `tx`. Returns the new state.
pub fn record(
    tx: &Transaction<'_>,
    plan: &Plan,
    attempt: &Attempt,
    now_ms: i64,
) -> rusqlite::Result<State> {
    let mut state = load(tx)?;
    let interval = plan.interval.as_millis() as i64;
    state.last = Some(attempt.clone());
    if attempt.ok {
        state.last_ok = Some(attempt.clone());
        state.fresh_since_ms = Some(now_ms);
        state.next_due_ms = Some(now_ms + interval);
        if let (Some((bucket, prefix)), Some(file)) = (&plan.upload, &attempt.file) {
            let key = format!("{prefix}{file}");
            outbox::enqueue(
                tx,
                &outbox::NewRow {
                    kind: UPLOAD_KIND,
                    upstream: Upstream::Backup,
                    priority: 1,
                    idempotency_key: format!("backup-upload:{bucket}/{key}"),
                    payload: json!({"file": file, "key": key, "bytes": attempt.bytes}),
                    created_at: &attempt.at,
                },
            )?;
        }
    } else {
        let retry = interval.min(RETRY_AFTER_FAILURE.as_millis() as i64);
        state.next_due_ms = Some(now_ms + retry);
        state.fresh_since_ms.get_or_insert(now_ms);
    }
    store(tx, &state)?;
    // The clock only moves forward; persisting it here keeps a restart right after a backup
    // from resuming the schedule from an older value.
    let persisted: i64 = settings::get(tx, crate::outbox::dispatcher::CLOCK_KEY)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if now_ms > persisted {
        settings::set(
            tx,
            crate::outbox::dispatcher::CLOCK_KEY,
            &now_ms.to_string(),
        )?;
    }
    Ok(state)
}

/// Starts the schedule of a database that has none: first backup one interval from now.
pub fn ensure_scheduled(tx: &Transaction<'_>, plan: &Plan, now_ms: i64) -> rusqlite::Result<State> {
    let mut state = load(tx)?;
    if state.next_due_ms.is_none() {
        state.next_due_ms = Some(now_ms + plan.interval.as_millis() as i64);
        state.fresh_since_ms.get_or_insert(now_ms);
        store(tx, &state)?;
    }
    Ok(state)
}

/// What is wrong with the backups, if anything: the last attempt failed, or no good backup
/// for more than twice the interval (measured on the dispatcher clock).
pub fn problem(state: &State, plan: &Plan, now_ms: i64) -> Option<String> {
    if !plan.enabled {
        return None;
    }
    if let Some(last) = state.last.as_ref().filter(|l| !l.ok) {
        return Some(format!(
            "the last backup failed at {}: {}",
            last.at,
            last.error.as_deref().unwrap_or("unknown error")
        ));
    }
    let since = state.fresh_since_ms?;
    let age = Duration::from_millis((now_ms - since).max(0) as u64);
    (age > plan.interval * 2).then(|| match &state.last_ok {
        Some(ok) => format!(
            "the last good backup ({}) is older than twice the interval ({} min)",
            ok.at,
            plan.interval.as_secs() / 60
        ),
        None => format!(
            "no backup taken for {} min (interval {} min)",
            age.as_secs() / 60,
            plan.interval.as_secs() / 60
        ),
    })
}

/// How long to sleep before the next scheduled backup is due.
pub fn wait_for(state: &State, now_ms: i64) -> Duration {
    match state.next_due_ms {
        Some(due) => Duration::from_millis((due - now_ms).max(0) as u64),
        None => Duration::ZERO,
    }
}

/// An attempt's record from its outcome.
pub fn attempt(
    at: DateTime<Utc>,
    trigger: &str,
    outcome: &Result<Taken, StoreError>,
    clock_ms: i64,
) -> Attempt {
    let at = crate::business_day::rfc3339(at);
    match outcome {
        Ok(t) => Attempt {
            at,
            ok: true,
            file: Some(t.file.clone()),
            bytes: Some(t.bytes),
            took_ms: Some(t.took.as_millis() as u64),
            error: None,
            trigger: trigger.into(),
            clock_ms,
        },
        Err(e) => Attempt {
            at,
            ok: false,
            file: None,
            bytes: None,
            took_ms: None,
            error: Some(e.to_string()),
            trigger: trigger.into(),
            clock_ms,
        },
    }
}

pub mod daemon;

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> Plan {
        Plan {
            enabled: true,
            directory: dir.to_path_buf(),
            stem: "posedge".into(),
            keep: 2,
            interval: Duration::from_secs(3600),
            upload: None,
        }
    }

    #[test]
    fn our_names_are_recognised_and_nothing_else_is() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:15:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = file_name("posedge", at);
        assert_eq!(name, "posedge-20261124T101500.123Z.db");
        assert_eq!(parse_name("posedge", &name).unwrap().0, Origin::Backup);
        let pre = crate::store::migrate::pre_migration_name("posedge", 1, 2, at);
        assert_eq!(
            parse_name("posedge", &pre).unwrap().0,
            Origin::PreMigration { from: 1, to: 2 }
        );
        assert!(parse_name(
            "posedge",
            "posedge-pre-migration-v1-to-v2-20261124T101500Z.db"
        )
        .is_some());
        for other in [
            "posedge.db",
            "notes.txt",
            ".posedge-20261124T101500.123Z.db.tmp",
            "posedge-20261124T101500.123Z.db-wal",
            "other-20261124T101500.123Z.db",
            "posedge-yesterday.db",
        ] {
            assert!(parse_name("posedge", other).is_none(), "{other}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_and_touches_no_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utc::now();
        for i in 0..4 {
            let at = base + chrono::Duration::seconds(i);
            std::fs::write(dir.path().join(file_name("posedge", at)), b"x").unwrap();
        }
        let pre = crate::store::migrate::pre_migration_name("posedge", 1, 2, base);
        for other in [pre.as_str(), "notes.txt", "posedge.db"] {
            std::fs::write(dir.path().join(other), b"x").unwrap();
        }
        let removed = prune(dir.path(), "posedge", 2, None).unwrap();
        assert_eq!(removed.len(), 2);
        let left = list(dir.path(), "posedge").unwrap();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(dir.path().join("notes.txt").exists() && dir.path().join(&pre).exists());
        assert!(removed.iter().all(|r| !left.iter().any(|l| &l.file == r)));
        assert!(left[0].at > left[1].at);
    }

    #[test]
    fn the_backup_just_taken_is_kept_even_when_its_name_says_it_is_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utc::now();
        for i in 0..3 {
            let at = base + chrono::Duration::seconds(i);
            std::fs::write(dir.path().join(file_name("posedge", at)), b"x").unwrap();
        }
        // Taken after the wall clock was set back a day.
        let new = file_name("posedge", base - chrono::Duration::days(1));
        std::fs::write(dir.path().join(&new), b"x").unwrap();
        let removed = prune(dir.path(), "posedge", 2, Some(&new)).unwrap();
        let left: Vec<String> = list(dir.path(), "posedge")
            .unwrap()
            .into_iter()
            .map(|l| l.file)
            .collect();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert_eq!(
            left,
            [
                file_name("posedge", base + chrono::Duration::seconds(2)),
                new
            ]
        );
    }

    #[test]
    fn the_schedule_survives_restarts_and_staleness_uses_the_dispatcher_clock() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path());
        let mut state = State {
            next_due_ms: Some(5_000),
            fresh_since_ms: Some(5_000 - 3_600_000),
            ..State::default()
        };
        // Restarted at clock 1000: not due yet, and not due "at once".
        assert_eq!(wait_for(&state, 1_000), Duration::from_millis(4_000));
        assert!(problem(&state, &p, 1_000).is_none());
        // Two intervals without a good backup: stale.
        let later = 5_000 - 3_600_000 + 2 * 3_600_000 + 1;
        assert!(problem(&state, &p, later).unwrap().contains("no backup"));
        state.last = Some(Attempt {
            at: "2026-11-24T10:00:00.000Z".into(),
            ok: false,
            file: None,
            bytes: None,
            took_ms: None,
            error: Some("the disk holding the database is full".into()),
            trigger: "scheduled".into(),
            clock_ms: 0,
        });
        assert!(problem(&state, &p, 0).unwrap().contains("disk"));
        let off = Plan {
            enabled: false,
            ..p.clone()
        };
        assert!(problem(&state, &off, 0).is_none());
    }
}
