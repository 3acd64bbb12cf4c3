//! Consistent copies of the database file: `VACUUM INTO` a temporary name, fsync, check,
//! rename, fsync the directory.
//!
//! Invariants:
//! - a file at its final name is complete, durable and has passed `PRAGMA integrity_check`:
//!   it is renamed into place only after all three (a crash leaves at most a `.tmp` file,
//!   which [`write`] removes on its next run and a listing ignores);
//! - the copy is one read transaction of the source: every transaction committed before the
//!   copy started is in it, none committed after it;
//! - the source connection may be a read-only one from the pool: `VACUUM INTO` only reads the
//!   source, so the writer keeps committing while a copy is made (WAL).

use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::{Duration, Instant};

/// What [`write`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub took: Duration,
}

/// Copies the database `conn` is open on to `target` (which must not exist yet).
pub fn write(conn: &Connection, target: &Path) -> Result<Written, StoreError> {
    let started = Instant::now();
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dir(dir)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    // A leftover of a crash mid-copy: VACUUM INTO refuses a non-empty target.
    let _ = std::fs::remove_file(&tmp);
    let result = copy_checked(conn, &tmp).and_then(|()| {
        std::fs::rename(&tmp, target).map_err(|e| io("cannot rename the copy to", target, e))?;
        sync_dir(dir)
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(Written {
        bytes,
        took: started.elapsed(),
    })
}

fn copy_checked(conn: &Connection, tmp: &Path) -> Result<(), StoreError> {
    let tmp_str = tmp
        .to_str()
        .ok_or_else(|| StoreError::Io(format!("{} is not UTF-8", tmp.display())))?;
    // Read connections carry `query_only`, which refuses VACUUM INTO although it only writes
    // the new file; the connection itself is opened read-only, so lifting it cannot write the
    // database.
    let query_only: bool = conn.query_row("PRAGMA query_only", [], |r| r.get(0))?;
    if query_only {
        conn.pragma_update(None, "query_only", false)?;
    }
    let copied = conn.execute("VACUUM INTO ?1", [tmp_str]);
    if query_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    copied?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("cannot fsync", tmp, e))?;
    integrity_check(tmp)
}

/// `PRAGMA integrity_check` on a database file, opened read-only. `Err(Corrupt)` names the
/// file and SQLite's first complaint.
pub fn integrity_check(path: &Path) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.display().to_string(),
        detail,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| corrupt(e.to_string()))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| corrupt(e.to_string()))?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(corrupt(format!(
            "integrity_check: {}",
            lines.into_iter().take(3).collect::<Vec<_>>().join("; ")
        )))
    }
}

/// fsync of a directory, so a rename in it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot fsync", dir, e))
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("cannot create", dir, e))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return StoreError::DiskFull;
    }
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_through_a_read_only_connection_is_complete_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let rw = crate::store::open_rw(&db).unwrap();
        rw.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        let ro = crate::store::open_ro(&db).unwrap();
        let target = dir.path().join("backups").join("copy.db");
        let w = write(&ro, &target).unwrap();
        assert!(w.bytes > 0);
        let copy = Connection::open(&target).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        // The read connection is query_only again.
        assert!(ro.execute("DELETE FROM t", []).is_err());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("copy.db")]);
    }

    #[test]
    fn integrity_check_refuses_a_file_that_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            integrity_check(&junk),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
