//! `posedge backup restore FILE`: put a backup in place of the database, with the daemon
//! stopped.
//!
//! Invariants:
//! - never while a daemon has the database: the caller checks that the admin socket does
//!   not answer, and [`restore`] holds the database lock ([`crate::store::lock`]) from the
//!   first check to the last rename, so a daemon cannot start in between;
//! - the candidate passes `PRAGMA integrity_check`, is a posedge database, and its schema is
//!   not newer than this binary's, before anything is touched (an older schema is fine: the
//!   daemon migrates it at start, after its own snapshot);
//! - the replaced database is kept, complete (WAL checkpointed into it, or its WAL kept
//!   beside it), as `posedge.db.before-restore-<stamp>`; nothing is deleted;
//! - the swap is one `rename` over the database name, after the new file was fsynced and
//!   after the old `-wal`/`-shm` were moved away (a stale WAL must never be replayed into
//!   the restored file); then the directory is fsynced.

use crate::store::migrate::{binary_version, database_version, STAMP_FORMAT};
use crate::store::{self, lock, snapshot, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("a posedge daemon is running on {0}; stop it first (systemctl stop posedge)")]
    DaemonRunning(String),
    #[error("{0}")]
    Refused(StoreError),
    #[error("{0}")]
    Failed(StoreError),
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub schema_version: i64,
    pub bytes: u64,
    /// Where the replaced database went (`None` when there was none).
    pub kept: Option<PathBuf>,
}

/// Checks that `candidate` may be restored; returns its schema version.
pub fn check(candidate: &Path) -> Result<i64, StoreError> {
    if !candidate.is_file() {
        return Err(StoreError::Io(format!(
            "{} is not a file",
            candidate.display()
        )));
    }
    snapshot::integrity_check(candidate)?;
    let conn = open_candidate(candidate)?;
    let version = database_version(&conn)?;
    let path = candidate.display().to_string();
    if version == 0 {
        return Err(StoreError::Corrupt {
            path,
            detail: "it is not a posedge database (no migration history)".into(),
        });
    }
    let binary = binary_version();
    if version > binary {
        return Err(StoreError::NewerSchema {
            path,
            db: version,
            binary,
        });
    }
    Ok(version)
}

fn open_candidate(candidate: &Path) -> Result<Connection, StoreError> {
    Connection::open_with_flags(
        candidate,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Corrupt {
        path: candidate.display().to_string(),
        detail: e.to_string(),
    })
}

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

/// Replaces `db` by a copy of `candidate`. The daemon must be stopped.
pub fn restore(db: &Path, candidate: &Path) -> Result<Restored, RestoreError> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(db, candidate) {
        return Err(RestoreError::Refused(StoreError::Io(
            "that file is the database itself".into(),
        )));
    }
    let _lock = lock::try_lock(db)
        .map_err(RestoreError::Failed)?
        .ok_or_else(|| RestoreError::DaemonRunning(db.display().to_string()))?;
    let schema_version = check(candidate).map_err(RestoreError::Refused)?;

    // 1. The new file, complete and verified, beside the database (same file system, so the
    //    final rename is atomic). VACUUM INTO also folds in a WAL the candidate may have.
    let staged = sibling(db, ".restoring");
    let _ = std::fs::remove_file(&staged);
    let written = open_candidate(candidate)
        .and_then(|c| snapshot::write(&c, &staged))
        .map_err(RestoreError::Failed)?;
    let cleanup = |e: StoreError| {
        let _ = std::fs::remove_file(&staged);
        RestoreError::Failed(e)
    };

    // 2. Keep the old database, whole.
    let mut kept = None;
    if db.exists() {
        let stamp = chrono::Utc::now().format(STAMP_FORMAT).to_string();
        let keep = sibling(db, &format!(".before-restore-{stamp}"));
        let wal = sibling(db, "-wal");
        let checkpointed = store::open_rw(db)
            .and_then(|c| {
                c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
                Ok(c)
            })
            .is_ok();
        if std::fs::hard_link(db, &keep).is_err() {
            std::fs::copy(db, &keep).map_err(|e| {
                cleanup(StoreError::Io(format!(
                    "cannot keep the old database as {}: {e}",
                    keep.display()
                )))
            })?;
        }
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if !checkpointed && wal_len > 0 {
            // The old WAL holds commits not in the main file: it goes with the kept copy.
            std::fs::rename(&wal, sibling(&keep, "-wal")).map_err(|e| {
                cleanup(StoreError::Io(format!(
                    "cannot move {}: {e}",
                    wal.display()
                )))
            })?;
        }
        for stale in [wal, sibling(db, "-shm")] {
            match std::fs::remove_file(&stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(cleanup(StoreError::Io(format!(
                        "cannot remove {}: {e}",
                        stale.display()
                    ))))
                }
            }
        }
        copy_owner(db, &staged);
        kept = Some(keep);
    }

    // 3. The swap.
    std::fs::rename(&staged, db).map_err(|e| {
        cleanup(StoreError::Io(format!(
            "cannot rename {} to {}: {e}",
            staged.display(),
            db.display()
        )))
    })?;
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    snapshot::sync_dir(dir).map_err(RestoreError::Failed)?;
    Ok(Restored {
        schema_version,
        bytes: written.bytes,
        kept,
    })
}

/// The restored file gets the old one's owner and mode, so a restore run as root leaves a
/// database the daemon's user can still open.
fn copy_owner(from: &Path, to: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(from) {
        let _ = std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()));
        let _ = std::fs::set_permissions(to, meta.permissions());
    }
}
