//! Room to write: the reserve file beside the database, and the storage condition that
//! every health surface reports (`/healthz`, `/v1/status`, `posedge status`, the `storage`
//! alert, metrics).
//!
//! Why a reserve. Something else on the box (a runaway log, a technician's copy) can fill
//! the disk the ledger lives on. We hold `reserve` bytes really allocated (fallocate, not a
//! sparse file) in `posedge.reserve`; when a commit fails for lack of space, or free space
//! falls under the low-water mark, the reserve is deleted and the space it held goes to the
//! ledger: sales keep committing while a technician is called.
//!
//! Invariants:
//! - the only files this module ever deletes are the reserve file and its own one-block
//!   write test (`.posedge-write-check`);
//! - no system call is made while the state's mutex is held: `report()` (every health
//!   request) never waits on a sick disk;
//! - the reserve is re-created only once free space is back above twice its size, so it
//!   never takes the last room the ledger needs;
//! - the condition leaves `disk_full` / `read_only` only after a commit succeeded again
//!   ([`Space::commit_ok`]): "writable" is proven, never assumed from free space alone; and
//!   `disk_full` also needs free space back above the low-water mark, because on a full
//!   disk a small commit can still fit in the WAL's last block while the next sale fails;
//! - every state change is logged once (a transition), not once per failed write.

use super::StoreError;
use serde::Serialize;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Name of the reserve file, beside the database.
pub const RESERVE_FILE: &str = "posedge.reserve";
/// Wait after a failed allocation of the reserve before trying again.
const RETAKE_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Why writes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    DiskFull,
    ReadOnly,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::DiskFull => "disk_full",
            Failure::ReadOnly => "read_only",
        }
    }

    pub fn error(self) -> StoreError {
        match self {
            Failure::DiskFull => StoreError::DiskFull,
            Failure::ReadOnly => StoreError::ReadOnly,
        }
    }
}

/// What the health surfaces show. `status` is `ok` or `degraded`; `reason` says why:
/// `disk_full` or `read_only` (writes refused), `reserve_in_use` (writes work on the
/// released reserve; the disk is nearly full).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub status: &'static str,
    pub writable: bool,
    pub reason: Option<&'static str>,
    pub since: Option<String>,
    pub free_bytes: Option<u64>,
    pub reserve_bytes: u64,
    pub reserve_held: bool,
    pub directory: String,
}

#[derive(Debug)]
struct Inner {
    failure: Option<(Failure, String)>,
    reserve_held: bool,
    /// When the reserve was released (for `since` while writes still work).
    released_at: Option<String>,
    free: Option<u64>,
    /// After a failed allocation, when to try again.
    next_take: Option<Instant>,
}

pub struct Space {
    dir: PathBuf,
    reserve_path: PathBuf,
    reserve_bytes: u64,
    inner: Mutex<Inner>,
}

impl Space {
    /// `db_path`: the database file; the reserve goes beside it. `reserve_bytes` 0 keeps none.
    /// Nothing is allocated until [`Space::watch`] runs.
    pub fn new(db_path: &Path, reserve_bytes: u64) -> Space {
        let dir = db_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let reserve_path = dir.join(RESERVE_FILE);
        let held = reserve_bytes > 0 && file_len(&reserve_path) >= reserve_bytes;
        Space {
            dir,
            reserve_path,
            reserve_bytes,
            inner: Mutex::new(Inner {
                failure: None,
                reserve_held: held,
                released_at: None,
                free: None,
                next_take: None,
            }),
        }
    }

    pub fn reserve_path(&self) -> &Path {
        &self.reserve_path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Free space under this many bytes releases the reserve before a commit has to fail.
    fn low_water(&self) -> u64 {
        (self.reserve_bytes / 4).max(1024 * 1024)
    }

    /// Turns an unexplained I/O failure of a write into `DiskFull` or `ReadOnly` when the
    /// directory says so (SQLite reports EROFS and some ENOSPC cases as a generic I/O error).
    pub fn classify(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::Sqlite(_) | StoreError::Io(_) => match self.diagnose() {
                Some(f) => f.error(),
                None => err,
            },
            other => other,
        }
    }

    /// Asks the file system whether the directory takes a write right now.
    fn diagnose(&self) -> Option<Failure> {
        if statvfs(&self.dir).is_some_and(|s| s.read_only) {
            return Some(Failure::ReadOnly);
        }
        let probe = self.dir.join(".posedge-write-check");
        let result = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&probe)
            .and_then(|mut f| {
                f.write_all(&[0u8; 4096])?;
                f.sync_data()
            });
        let _ = std::fs::remove_file(&probe);
        match result.map_err(|e| e.raw_os_error()) {
            Err(Some(libc::EROFS)) => Some(Failure::ReadOnly),
            Err(Some(libc::ENOSPC | libc::EDQUOT)) => Some(Failure::DiskFull),
            _ => None,
        }
    }

    /// A commit (or the transaction holding it) failed with `err`, already classified.
    /// Out of space: the reserve goes at once, so the next commit has room.
    pub fn commit_failed(&self, err: &StoreError) {
        let failure = match err {
            StoreError::DiskFull => Failure::DiskFull,
            StoreError::ReadOnly => Failure::ReadOnly,
            _ => return,
        };
        if failure == Failure::DiskFull {
            self.release_reserve("a commit failed for lack of space");
        }
        let mut inner = self.lock();
        if inner.failure.as_ref().map(|(f, _)| *f) != Some(failure) {
            tracing::error!(
                reason = failure.as_str(),
                directory = %self.dir.display(),
                "writes are refused (503 disk_full): {}",
                match failure {
                    Failure::DiskFull => "the disk holding the database is full; free space there",
                    Failure::ReadOnly => "the file system holding the database is read-only; check the disk and remount it",
                }
            );
            inner.failure = Some((failure, crate::business_day::rfc3339(chrono::Utc::now())));
        }
    }

    /// A commit succeeded: whatever refused writes before is over (for a full disk, once
    /// there is room again).
    pub fn commit_ok(&self) {
        let Some(f) = self.failure() else {
            return;
        };
        if f == Failure::DiskFull && statvfs(&self.dir).is_some_and(|s| s.free < self.low_water()) {
            return;
        }
        if let Some((f, _)) = self.lock().failure.take() {
            tracing::warn!(
                was = f.as_str(),
                "writes are accepted again; the database is writable"
            );
        }
    }

    /// Whether writes are being refused; the watch then proves recovery with a test commit.
    pub fn failure(&self) -> Option<Failure> {
        self.lock().failure.as_ref().map(|(f, _)| *f)
    }

    /// One look at the disk (every second from the daemon): releases the reserve when free
    /// space runs low, re-creates it once there is room again.
    pub fn watch(&self) {
        let stat = statvfs(&self.dir);
        let free = stat.map(|s| s.free);
        self.lock().free = free;
        if self.reserve_bytes == 0 {
            return;
        }
        let held = self.lock().reserve_held;
        match free {
            Some(f) if held && f < self.low_water() => {
                self.release_reserve("free space fell under the low-water mark")
            }
            Some(f)
                if !held
                    && f >= self.reserve_bytes.saturating_mul(2)
                    && !stat.is_some_and(|s| s.read_only)
                    && self.lock().next_take.is_none_or(|t| Instant::now() >= t) =>
            {
                self.take_reserve()
            }
            _ => {}
        }
    }

    /// Releases the reserve if free space is under the low-water mark (one statvfs; called
    /// by the writer before each commit and when a job failed).
    pub fn release_if_low(&self) {
        let held = self.lock().reserve_held;
        if held && statvfs(&self.dir).is_some_and(|s| s.free < self.low_water()) {
            self.release_reserve("a write failed with free space under the low-water mark");
        }
    }

    /// Allocates the reserve file (at start-up, and when room came back).
    pub fn take_reserve(&self) {
        if self.reserve_bytes == 0 {
            return;
        }
        match allocate(&self.reserve_path, self.reserve_bytes) {
            Ok(()) => {
                let mut inner = self.lock();
                if !inner.reserve_held {
                    tracing::info!(
                        path = %self.reserve_path.display(),
                        bytes = self.reserve_bytes,
                        "disk reserve in place"
                    );
                }
                inner.reserve_held = true;
                inner.released_at = None;
                inner.next_take = None;
            }
            Err(e) => {
                // A reserve we cannot hold is not held: never keep a half-allocated file.
                let _ = std::fs::remove_file(&self.reserve_path);
                let mut inner = self.lock();
                // Not again every second (a quota or a file system without fallocate would
                // be filled and emptied each time): once a minute.
                inner.next_take = Some(Instant::now() + RETAKE_AFTER_FAILURE);
                if inner.reserve_held || inner.released_at.is_none() {
                    tracing::warn!(
                        path = %self.reserve_path.display(),
                        bytes = self.reserve_bytes,
                        error = %e,
                        "cannot allocate the disk reserve; running without one"
                    );
                    inner.released_at = Some(crate::business_day::rfc3339(chrono::Utc::now()));
                }
                inner.reserve_held = false;
            }
        }
    }

    fn release_reserve(&self, why: &str) {
        {
            let mut inner = self.lock();
            if !inner.reserve_held {
                return;
            }
            inner.reserve_held = false;
            inner.released_at = Some(crate::business_day::rfc3339(chrono::Utc::now()));
        }
        match std::fs::remove_file(&self.reserve_path) {
            Ok(()) => tracing::warn!(
                path = %self.reserve_path.display(),
                bytes = self.reserve_bytes,
                why,
                "disk nearly full: the reserve was released so sales keep committing; free space on this disk"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(
                path = %self.reserve_path.display(),
                error = %e,
                "cannot release the disk reserve"
            ),
        }
    }

    /// The condition for health surfaces.
    pub fn report(&self) -> Report {
        let inner = self.lock();
        let (reason, since) = match (
            &inner.failure,
            self.reserve_bytes > 0 && !inner.reserve_held,
        ) {
            (Some((f, since)), _) => (Some(f.as_str()), Some(since.clone())),
            (None, true) => (Some("reserve_in_use"), inner.released_at.clone()),
            (None, false) => (None, None),
        };
        Report {
            status: if reason.is_some() { "degraded" } else { "ok" },
            writable: inner.failure.is_none(),
            reason,
            since,
            free_bytes: inner.free,
            reserve_bytes: self.reserve_bytes,
            reserve_held: inner.reserve_held,
            directory: self.dir.display().to_string(),
        }
    }

    /// Whether optional writes (backups) must wait: anything but `ok` keeps the space for
    /// sales.
    pub fn tight(&self) -> bool {
        self.report().reason.is_some()
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Really allocates `bytes` for the file at `path` (blocks, not a hole), then fsyncs it.
fn allocate(path: &Path, bytes: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let len = libc::off_t::try_from(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "reserve too large"))?;
    // SAFETY: a valid open descriptor; fallocate only reads its integer arguments.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    file.sync_all()
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    free: u64,
    read_only: bool,
}

fn statvfs(dir: &Path) -> Option<Stat> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(Stat {
        free: s.f_bavail as u64 * s.f_frsize as u64,
        read_only: s.f_flag & libc::ST_RDONLY != 0,
    })
}

/// Bytes available to this user on the file system holding `path`'s directory.
pub fn disk_free(path: &Path) -> Option<u64> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    statvfs(dir).map(|s| s.free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_really_allocated_and_released_on_a_failed_commit() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(&dir.path().join("posedge.db"), 2 * 1024 * 1024);
        space.take_reserve();
        let meta = std::fs::metadata(space.reserve_path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.len(), 2 * 1024 * 1024);
        assert!(
            meta.blocks() * 512 >= 2 * 1024 * 1024,
            "the reserve is a sparse file"
        );
        assert_eq!(space.report().status, "ok");

        space.commit_failed(&StoreError::DiskFull);
        assert!(!space.reserve_path().exists());
        let r = space.report();
        assert_eq!(
            (r.status, r.writable, r.reason),
            ("degraded", false, Some("disk_full"))
        );

        space.commit_ok();
        let r = space.report();
        assert_eq!(
            (r.writable, r.reason),
            (true, Some("reserve_in_use")),
            "writes work again but the disk is still tight until the reserve is back"
        );
        space.watch();
        assert!(
            space.reserve_path().exists(),
            "room came back: reserve re-taken"
        );
        assert_eq!(space.report().status, "ok");
    }

    #[test]
    fn an_unexplained_io_error_stays_unexplained_on_a_healthy_disk() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(&dir.path().join("posedge.db"), 0);
        let e = space.classify(StoreError::Sqlite("disk I/O error".into()));
        assert!(matches!(e, StoreError::Sqlite(_)));
        assert!(!dir.path().join(".posedge-write-check").exists());
        assert_eq!(
            space.report().status,
            "ok",
            "no reserve configured is not degraded"
        );
    }
}
