//! The store owns SQLite connections and the schema; the SQL of each domain lives with that
//! domain and takes a `&rusqlite::Transaction`.
//!
//! Invariants:
//! - every connection is opened the same way: WAL, `synchronous=FULL`, foreign keys on,
//!   a busy timeout ([`configure`]);
//! - exactly one connection writes, on the writer thread ([`writer`]); an answer to a write is
//!   sent only after the transaction holding it has committed (invariant 1);
//! - reads use separate read-only connections ([`read`]) and never block the writer (WAL);
//! - a corrupt database, or one whose schema is newer than this binary, stops start-up with a
//!   clear message; nothing is ever deleted or reset ([`migrate`]).

pub mod lock;
pub mod migrate;
pub mod read;
pub mod snapshot;
pub mod space;
pub mod writer;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use read::Reads;
pub use space::Space;
pub use writer::Writer;

/// Errors of the storage layer, cheap to clone so one commit failure can answer a whole batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the disk holding the database is full")]
    DiskFull,
    #[error("the database is read-only (file permissions or a read-only mount)")]
    ReadOnly,
    #[error("the database file {path} is corrupt or not a posedge database: {detail}. Nothing was changed; restore a backup (`posedge backup list`) or call support")]
    Corrupt { path: String, detail: String },
    #[error("the database {path} has schema version {db}, newer than this binary knows ({binary}); install the newer posedge or restore a backup. Nothing was changed")]
    NewerSchema { path: String, db: i64, binary: i64 },
    #[error("the writer is shutting down")]
    ShuttingDown,
    #[error("the database is busy")]
    Busy,
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("{0}")]
    Io(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            match f.code {
                ErrorCode::DiskFull => return StoreError::DiskFull,
                ErrorCode::ReadOnly => return StoreError::ReadOnly,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => return StoreError::Busy,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    return StoreError::Corrupt {
                        path: String::new(),
                        detail: e.to_string(),
                    }
                }
                _ => {}
            }
        }
        StoreError::Sqlite(e.to_string())
    }
}

impl StoreError {
    /// True for conditions an operator must fix on the box (disk, permissions, corruption),
    /// as opposed to a bug or a passing state.
    pub fn is_environmental(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull | StoreError::ReadOnly | StoreError::Corrupt { .. }
        )
    }

    /// Logs a background task's failed write. A full or read-only disk is logged once, by
    /// [`Space`], when it starts; a task retrying every second would otherwise repeat it
    /// every second, so those go to debug. Everything else is an error.
    pub fn log_background(&self, what: &str) {
        if matches!(self, StoreError::DiskFull | StoreError::ReadOnly) {
            tracing::debug!(error = %self, "{what}");
        } else {
            tracing::error!(error = %self, "{what}");
        }
    }
}

/// The database: one writer thread and a pool of readers on the same file.
pub struct Store {
    pub writer: Writer,
    pub reads: Reads,
    pub space: Arc<Space>,
    path: PathBuf,
}

/// What [`Store::open`] needs beyond the path.
pub struct OpenOptions<'a> {
    pub path: &'a Path,
    /// Where a snapshot goes before migrations touch an existing database.
    pub snapshot_dir: &'a Path,
    pub readers: usize,
    pub on_commit: writer::CommitObserver,
    /// Bytes of the reserve file kept beside the database ([`space`]); 0: none.
    pub reserve_bytes: u64,
}

impl Store {
    /// Opens (creating if needed) and migrates the database, then starts the writer thread.
    pub fn open(opts: OpenOptions<'_>) -> Result<Store, StoreError> {
        let mut conn = open_rw(opts.path)?;
        migrate::run(&mut conn, opts.path, opts.snapshot_dir)?;
        let reads = Reads::open(opts.path, opts.readers)?;
        let space = Arc::new(Space::new(opts.path, opts.reserve_bytes));
        space.take_reserve();
        space.watch();
        let writer = Writer::start(conn, opts.on_commit, space.clone())?;
        Ok(Store {
            writer,
            reads,
            space,
            path: opts.path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after everything queued before this call has committed, then
    /// checkpoints the WAL into the main file.
    pub async fn close(&self) {
        self.writer.stop().await;
    }
}

/// Opens the read-write connection, creating the directory (mode 0700) and file if needed.
pub fn open_rw(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| locate(e.into(), path))?;
    configure(&conn).map_err(|e| locate(e, path))?;
    Ok(conn)
}

/// Opens a read-only connection to an existing database.
pub fn open_ro(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| locate(e.into(), path))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    // Readers serve point lookups and short scans; 512 KiB each keeps four of them, plus
    // the writer's 2 MiB, inside the box's memory budget even with a huge backlog.
    conn.pragma_update(None, "cache_size", -512)?;
    Ok(conn)
}

/// The PRAGMAs every read-write connection gets. `synchronous=FULL` in WAL mode fsyncs the
/// WAL at every commit: that is what makes a 2xx durable across power loss.
pub fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // Reading the schema first turns "not a database" into a clear error before any PRAGMA.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Sqlite(format!(
            "could not switch to WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Bound memory: the box is small and the ledger is append-mostly.
    conn.pragma_update(None, "cache_size", -2000)?;
    // The writer wraps each job in a SAVEPOINT; its sub-journal would otherwise spill to a
    // temp file and cost page writes per sale on the writer thread (measured: 43% of its CPU).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))
}

/// Adds the path to corruption errors, which rusqlite reports without it.
fn locate(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Corrupt { detail, .. } => StoreError::Corrupt {
            path: path.display().to_string(),
            detail,
        },
        StoreError::Sqlite(m) if m.contains("unable to open") => {
            StoreError::Io(format!("cannot open {}: {m}", path.display()))
        }
        other => other,
    }
}
