//! One process at a time owns a database file for writing outside SQLite's own locking: the
//! daemon for its whole life, `posedge backup restore` while it swaps the file.
//!
//! Why a lock file and not the database: SQLite uses POSIX record locks on the database, and
//! closing *any* descriptor of that file in the process drops them all. A `flock` on a
//! separate file (`posedge.db.lock` beside the database) cannot interfere. The kernel drops
//! it when the process dies (kill -9 included), so a stale lock cannot exist; the file itself
//! is left in place (removing a lock file races with the next locker).

use super::StoreError;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Held while alive.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
    pub path: PathBuf,
}

/// `posedge.db.lock` beside `posedge.db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

/// Takes the lock without waiting; `Ok(None)` when another process holds it.
pub fn try_lock(db: &Path) -> Result<Option<DbLock>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = lock_path(db);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        super::create_private_dir(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(DbLock { _file: file, path }));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(StoreError::Io(format!(
            "cannot lock {}: {err}",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_locker_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("posedge.db");
        let first = try_lock(&db).unwrap().expect("free at first");
        assert_eq!(first.path, dir.path().join("posedge.db.lock"));
        assert!(try_lock(&db).unwrap().is_none());
        drop(first);
        assert!(try_lock(&db).unwrap().is_some());
    }
}
