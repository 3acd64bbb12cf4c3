//! The writer thread: the only place that writes to SQLite, with group commit.
//!
//! Design. Callers send a job (a closure over `&Transaction`) through a bounded channel and
//! await its answer. The thread takes the first waiting job, then every job already queued
//! (up to [`MAX_BATCH`]), and runs them all in ONE `BEGIN IMMEDIATE` transaction, each inside
//! its own SAVEPOINT so a job that fails (a 409, a rule broken inside the transaction) rolls
//! back alone. One COMMIT, hence one WAL fsync, then every job of the batch gets its answer.
//! Many registers therefore share one fsync instead of queueing for one each.
//!
//! Invariants:
//! - no answer leaves before COMMIT returned: a job's result is held until then, and if the
//!   commit fails every job of the batch gets the commit's error, never its own `Ok`;
//! - a job that panics rolls back its savepoint and its caller gets an error; the thread and
//!   the other jobs of the batch carry on;
//! - [`Writer::stop`] is ordered after everything queued before it: queued work commits, then
//!   the WAL is checkpointed and the connection closed;
//! - when SQLite drops the whole transaction under a job (out of space, an I/O error), the
//!   rest of the batch is failed, never run outside a transaction;
//! - a disk that is full or read-only answers every job of the batch with that condition
//!   (503 `disk_full`), and [`Space`] hears of every failure and every success.

use super::space::Space;
use super::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Upper bound on jobs per transaction, so one commit's latency stays bounded.
pub const MAX_BATCH: usize = 512;
const QUEUE_DEPTH: usize = 4096;

/// Called after each commit with the batch size and how long BEGIN..COMMIT took.
pub type CommitObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn WriteJob>;

/// One caller's unit of work. `run` returns whether it succeeded and the reply to send after
/// COMMIT; `fail` answers a job that could not run at all.
trait WriteJob: Send {
    fn run(self: Box<Self>, txn: &Transaction<'_>) -> (bool, Reply);
    fn fail(self: Box<Self>, err: StoreError);
}

struct Typed<F, T, E> {
    f: F,
    answer: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> WriteJob for Typed<F, T, E>
where
    F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, txn: &Transaction<'_>) -> (bool, Reply) {
        let Typed { f, answer } = *self;
        let result = f(txn);
        let ok = result.is_ok();
        let reply: Reply = Box::new(move |commit| {
            let answer_value = match (commit, result) {
                (Ok(()), r) => r,
                // Nothing of the batch was recorded because of the disk: say so, whatever
                // the job itself thought (a retry gives its own answer again).
                (Err(c), Err(_)) if c.is_environmental() => Err(E::from(c)),
                // Otherwise a rolled-back job's own error is the truer answer.
                (Err(_), Err(e)) => Err(e),
                (Err(c), Ok(_)) => Err(E::from(c)),
            };
            let _ = answer.send(answer_value);
        });
        (ok, reply)
    }

    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.answer.send(Err(E::from(err)));
    }
}

enum Msg {
    Job(Job),
    /// Answered once the thread reaches it: proves the writer loop is turning.
    Ping(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

impl Writer {
    pub fn start(
        conn: Connection,
        on_commit: CommitObserver,
        space: Arc<Space>,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("posedge-writer".into())
            .spawn(move || run(conn, rx, on_commit, space))
            .map_err(|e| StoreError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { tx })
    }

    /// Runs `f` in the next group-commit transaction and returns its result after COMMIT.
    /// If `f` returns `Err`, its changes are rolled back and the error returned as is.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answer_rx) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(Typed { f, answer });
        if self.tx.send(Msg::Job(job)).await.is_err() {
            return Err(E::from(StoreError::ShuttingDown));
        }
        // A dropped answer means the job panicked (the thread logged it and rolled it back).
        answer_rx.await.unwrap_or_else(|_| {
            Err(E::from(StoreError::Sqlite(
                "the write failed unexpectedly and was rolled back; see the log".into(),
            )))
        })
    }

    /// Round-trips the writer thread; `false` if it did not answer within `within`.
    pub async fn ping(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let sent = tokio::time::timeout(within, self.tx.send(Msg::Ping(tx))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    /// Commits everything queued so far, checkpoints the WAL and ends the thread.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    on_commit: CommitObserver,
    space: Arc<Space>,
) {
    let mut stop_reply = None;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = Vec::new();
        let mut pings = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(j) => jobs.push(j),
                Msg::Ping(p) => pings.push(p),
                Msg::Stop(s) => {
                    stop_reply = Some(s);
                    break;
                }
            }
            if jobs.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !jobs.is_empty() {
            commit_batch(&mut conn, jobs, &on_commit, &space);
        }
        for p in pings {
            let _ = p.send(());
        }
        if stop_reply.is_some() {
            break;
        }
    }
    // Refuse whatever arrives from now on: dropping the receiver fails their sends.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Job(job) = msg {
            job.fail(StoreError::ShuttingDown);
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed; SQLite will replay the WAL at next start");
    }
    drop(conn);
    if let Some(s) = stop_reply {
        let _ = s.send(());
    }
}

fn commit_batch(conn: &mut Connection, jobs: Vec<Job>, on_commit: &CommitObserver, space: &Space) {
    let started = Instant::now();
    let size = jobs.len();
    let txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(t) => t,
        Err(e) => {
            let err = space.classify(StoreError::from(e));
            space.commit_failed(&err);
            tracing::error!(error = %err, jobs = size, "cannot begin a write transaction");
            for job in jobs {
                job.fail(err.clone());
            }
            return;
        }
    };
    let mut replies: Vec<Reply> = Vec::with_capacity(size);
    let mut jobs = jobs.into_iter();
    let mut lost = false;
    for job in jobs.by_ref() {
        if let Err(e) = txn.execute_batch("SAVEPOINT job") {
            job.fail(StoreError::from(e));
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| job.run(&txn))) {
            Ok((true, reply)) => {
                let _ = txn.execute_batch("RELEASE job");
                replies.push(reply);
            }
            Ok((false, reply)) => {
                let _ = txn.execute_batch("ROLLBACK TO job; RELEASE job");
                replies.push(reply);
                // It may have failed for lack of space while the batch goes on.
                space.release_if_low();
            }
            Err(_) => {
                // The job's answer channel was dropped during unwinding: its caller sees an
                // error. Undo whatever it wrote.
                let _ = txn.execute_batch("ROLLBACK TO job; RELEASE job");
                tracing::error!("a write job panicked; its changes were rolled back");
            }
        }
        // SQLite rolls back the whole transaction on some errors (SQLITE_FULL, I/O errors).
        // A next SAVEPOINT would then open a transaction of its own and RELEASE would commit
        // it behind the batch's back: stop here instead.
        if txn.is_autocommit() {
            lost = true;
            break;
        }
    }
    // One statvfs per batch: a disk filled by something else since the last look gives up
    // the reserve before this commit needs the room, not after it failed.
    space.release_if_low();
    let outcome = if lost {
        Err(space.classify(StoreError::Sqlite(
            "SQLite rolled back the transaction after an error".into(),
        )))
    } else {
        txn.commit()
            .map_err(|e| space.classify(StoreError::from(e)))
    };
    match &outcome {
        Ok(()) => space.commit_ok(),
        Err(e) => {
            space.commit_failed(e);
            // A full or read-only disk is logged once, by `Space`, when it starts.
            if e.is_environmental() {
                tracing::debug!(error = %e, jobs = size, "commit failed; the whole batch is answered with the error");
            } else {
                tracing::error!(error = %e, jobs = size, "commit failed; the whole batch is answered with the error");
            }
            for job in jobs {
                job.fail(e.clone());
            }
        }
    }
    on_commit(size, started.elapsed());
    for reply in replies {
        reply(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_rw(&dir.path().join("w.db")).unwrap();
        // A deferred foreign key: the INSERT succeeds, the COMMIT fails.
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY,
                 parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let space = Arc::new(Space::new(&dir.path().join("w.db"), 0));
        let w = Writer::start(conn, Arc::new(|_, _| {}), space).unwrap();
        (dir, w)
    }

    #[tokio::test]
    async fn a_job_is_answered_ok_only_once_its_commit_succeeded() {
        let (_dir, w) = writer();
        let ok: Result<i64, StoreError> = w
            .write(|tx| Ok(tx.execute("INSERT INTO parent (id) VALUES (1)", [])? as i64))
            .await;
        assert_eq!(ok.unwrap(), 1);
        // The job itself succeeds; the transaction holding it cannot commit.
        let orphan: Result<(), StoreError> = w
            .write(|tx| {
                tx.execute("INSERT INTO child (id, parent) VALUES (1, 99)", [])?;
                Ok(())
            })
            .await;
        assert!(
            orphan.is_err(),
            "answered Ok for a write that never committed"
        );
        let count: Result<i64, StoreError> = w
            .write(|tx| Ok(tx.query_row("SELECT count(*) FROM child", [], |r| r.get(0))?))
            .await;
        assert_eq!(count.unwrap(), 0);
    }

    /// SQLite drops the whole transaction on some errors (SQLITE_FULL, I/O errors); here a
    /// job does it itself with ROLLBACK. Every other job of the batch is then answered Ok
    /// exactly when its row was committed: never run outside the batch's transaction and
    /// answered with an error, never answered Ok and lost.
    #[tokio::test]
    async fn after_sqlite_drops_the_transaction_every_answer_matches_what_was_committed() {
        let (_dir, w) = writer();
        let dropped = |tx: &Transaction<'_>| -> Result<(), StoreError> {
            tx.execute_batch("ROLLBACK")?;
            Err(StoreError::DiskFull)
        };
        let small = |id: i64| {
            move |tx: &Transaction<'_>| -> Result<(), StoreError> {
                tx.execute("INSERT INTO parent (id) VALUES (?1)", [id])?;
                Ok(())
            }
        };
        let (a, b, c, d) = tokio::join!(
            w.write(small(1)),
            w.write(dropped),
            w.write(small(2)),
            w.write(small(3))
        );
        assert!(b.is_err());
        let ids: Result<Vec<i64>, StoreError> = w
            .write(|tx| {
                let mut s = tx.prepare("SELECT id FROM parent ORDER BY id")?;
                let ids = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(ids)
            })
            .await;
        let ids = ids.unwrap();
        for (id, answer) in [(1, a), (2, c), (3, d)] {
            assert_eq!(
                answer.is_ok(),
                ids.contains(&id),
                "job {id} answered {answer:?} with {ids:?} committed"
            );
        }
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_alone_and_its_batch_still_commits() {
        let (_dir, w) = writer();
        let (a, b) = tokio::join!(
            w.write(|tx| {
                tx.execute("INSERT INTO parent (id) VALUES (7)", [])?;
                Err::<(), StoreError>(StoreError::Sqlite("refused by the job".into()))
            }),
            w.write(|tx| Ok::<_, StoreError>(
                tx.execute("INSERT INTO parent (id) VALUES (8)", [])?
            ))
        );
        assert!(a.is_err());
        assert_eq!(b.unwrap(), 1);
        let ids: Result<Vec<i64>, StoreError> = w
            .write(|tx| {
                let mut s = tx.prepare("SELECT id FROM parent ORDER BY id")?;
                let ids = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(ids)
            })
            .await;
        assert_eq!(ids.unwrap(), vec![8]);
    }
}
