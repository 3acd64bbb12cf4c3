//! Schema migrations, embedded from `migrations/` by refinery.
//!
//! Invariants (DESIGN.md invariant 7):
//! - a database whose applied version is newer than the newest embedded one is refused before
//!   anything is written;
//! - a file with tables but no migration history is not ours and is refused;
//! - before migrating a database that already has a schema, a consistent snapshot is written
//!   with `VACUUM INTO` and kept;
//! - all pending migrations run in ONE `BEGIN IMMEDIATE` transaction: either the whole upgrade
//!   lands or none of it, and two processes cannot migrate at once.

use super::StoreError;
use refinery_core::traits::sync::{Migrate, Query, Transaction};
use refinery_core::Migration;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};

refinery::embed_migrations!("migrations");

const HISTORY_TABLE: &str = "refinery_schema_history";

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub from: i64,
    pub to: i64,
    pub snapshot: Option<PathBuf>,
}

/// The newest schema version this binary knows.
pub fn binary_version() -> i64 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// The schema version recorded in the database (0 for a new file).
pub fn database_version(conn: &Connection) -> Result<i64, StoreError> {
    let has_history: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [HISTORY_TABLE],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !has_history {
        return Ok(0);
    }
    let v: Option<i64> = conn.query_row(
        &format!("SELECT max(version) FROM {HISTORY_TABLE}"),
        [],
        |r| r.get(0),
    )?;
    Ok(v.unwrap_or(0))
}

/// Brings the schema up to [`binary_version`], or refuses with a clear error.
pub fn run(
    conn: &mut Connection,
    db_path: &Path,
    snapshot_dir: &Path,
) -> Result<Outcome, StoreError> {
    let path = db_path.display().to_string();
    let binary = binary_version();
    let from = database_version(conn)?;
    if from > binary {
        return Err(StoreError::NewerSchema {
            path,
            db: from,
            binary,
        });
    }
    if from == 0 {
        let foreign: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )?;
        if foreign > 0 {
            return Err(StoreError::Corrupt {
                path,
                detail: "it has tables but no posedge migration history".into(),
            });
        }
    }
    if from == binary {
        return Ok(Outcome {
            from,
            to: binary,
            snapshot: None,
        });
    }
    let snapshot = if from > 0 {
        Some(snapshot(conn, db_path, snapshot_dir, from, binary)?)
    } else {
        None
    };
    migrations::runner()
        .set_grouped(true)
        .run(&mut Immediate(conn))
        .map_err(|e| {
            StoreError::Sqlite(format!(
                "migration to v{binary} failed, nothing applied: {e}"
            ))
        })?;
    tracing::info!(from, to = binary, snapshot = ?snapshot, "database schema migrated");
    Ok(Outcome {
        from,
        to: binary,
        snapshot,
    })
}

/// A consistent copy of the database taken before a migration, kept in `dir` (the backup
/// directory) under a name `posedge backup list` shows and `posedge backup restore` takes.
/// Written like every backup: temporary name, fsync, integrity check, rename.
fn snapshot(
    conn: &Connection,
    db_path: &Path,
    dir: &Path,
    from: i64,
    to: i64,
) -> Result<PathBuf, StoreError> {
    let stem = db_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "posedge".into());
    let target = dir.join(pre_migration_name(&stem, from, to, chrono::Utc::now()));
    super::snapshot::write(conn, &target)?;
    tracing::info!(snapshot = %target.display(), "snapshot taken before migration");
    Ok(target)
}

/// `posedge-pre-migration-v1-to-v2-20261124T101500.123Z.db`.
pub fn pre_migration_name(
    stem: &str,
    from: i64,
    to: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    format!(
        "{stem}-pre-migration-v{from}-to-v{to}-{}.db",
        at.format(STAMP_FORMAT)
    )
}

/// UTC, sortable, safe in file names; milliseconds so two copies in one second differ.
pub const STAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// Adapts a connection so refinery's batch runs in `BEGIN IMMEDIATE` rather than the
/// deferred transaction its own rusqlite driver uses.
struct Immediate<'a>(&'a mut Connection);

impl Transaction for Immediate<'_> {
    type Error = rusqlite::Error;

    fn execute<'a, T: Iterator<Item = &'a str>>(
        &mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut count = 0;
        for query in queries {
            tx.execute_batch(query)?;
            count += 1;
        }
        tx.commit()?;
        Ok(count)
    }
}

impl Query<Vec<Migration>> for Immediate<'_> {
    fn query(&mut self, query: &str) -> Result<Vec<Migration>, Self::Error> {
        <Connection as Query<Vec<Migration>>>::query(self.0, query)
    }
}

impl Migrate for Immediate<'_> {}
