//! A small pool of read-only connections. WAL lets them read a consistent snapshot while the
//! writer commits, so status pages and replays never wait for a batch.
//!
//! Invariant: a read connection is opened read-only with `query_only`; it cannot write.

use super::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Reads {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Reads {
    pub fn open(path: &Path, size: usize) -> Result<Reads, StoreError> {
        let size = size.max(1);
        let conns = (0..size)
            .map(|_| super::open_ro(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Reads {
            path: Arc::new(path.to_path_buf()),
            idle: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| E::from(StoreError::ShuttingDown))?;
        let idle = self.idle.clone();
        let conn = idle
            .lock()
            .map_err(|_| E::from(StoreError::ShuttingDown))?
            .pop()
            .ok_or_else(|| E::from(StoreError::Busy))?;
        let joined = tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            (conn, result)
        })
        .await;
        match joined {
            Ok((conn, result)) => {
                if let Ok(mut pool) = idle.lock() {
                    pool.push(conn);
                }
                result
            }
            Err(_) => {
                // The connection went down with the panicking task: replace it so the pool
                // keeps one connection per permit.
                if let (Ok(conn), Ok(mut pool)) = (super::open_ro(&self.path), idle.lock()) {
                    pool.push(conn);
                }
                Err(E::from(StoreError::Sqlite(
                    "a read failed unexpectedly; see the log".into(),
                )))
            }
        }
    }
}
