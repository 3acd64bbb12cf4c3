//! Backups inside the running daemon: the schedule, and `posedge backup now` over the admin
//! socket. One backup at a time (a mutex); the copy runs on a read connection on the
//! blocking pool, its record goes through the writer. A backup that would write to the
//! disk holding the database waits while that disk is tight ([`Space::tight`]): its room is
//! kept for sales.

use super::{Attempt, Plan, State};
use crate::alerts::Alerts;
use crate::outbox::dispatcher::Dispatcher;
use crate::outbox::Upstream;
use crate::store::{Reads, Space, StoreError, Writer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often the schedule wakes to re-evaluate the `backup` alert while nothing is due.
const RECHECK: Duration = Duration::from_secs(60);

pub struct Backups {
    plan: Plan,
    reads: Reads,
    writer: Writer,
    dispatcher: Arc<Dispatcher>,
    alerts: Arc<Alerts>,
    space: Arc<Space>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Backups {
    pub fn new(
        plan: Plan,
        reads: Reads,
        writer: Writer,
        dispatcher: Arc<Dispatcher>,
        alerts: Arc<Alerts>,
        space: Arc<Space>,
    ) -> Arc<Backups> {
        Arc::new(Backups {
            plan,
            reads,
            writer,
            dispatcher,
            alerts,
            space,
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Takes one backup now and records it (success or failure). `Err` only when even the
    /// record could not be written.
    /// `Err(DiskFull | ReadOnly)` without trying while the database's disk is tight and the
    /// backup would land on it.
    pub async fn run_once(&self, trigger: &str) -> Result<Attempt, StoreError> {
        let _one = self.one_at_a_time.lock().await;
        let report = self.space.report();
        if let Some(reason) = report.reason {
            if same_file_system(Path::new(&report.directory), &self.plan.directory) {
                tracing::warn!(
                    reason,
                    trigger,
                    "backup skipped: the disk it would go to is tight; its room is kept for sales"
                );
                return Err(match self.space.failure() {
                    Some(f) => f.error(),
                    None => StoreError::DiskFull,
                });
            }
        }
        let started = chrono::Utc::now();
        let plan = self.plan.clone();
        let outcome = self
            .reads
            .read(move |conn| super::take(conn, &plan, started))
            .await;
        let now = self.dispatcher.now_ms();
        let attempt = super::attempt(started, trigger, &outcome, now);
        match &outcome {
            Ok(t) => tracing::info!(
                file = %t.file, bytes = t.bytes, took_ms = t.took.as_millis() as u64,
                pruned = t.pruned.len(), trigger, "backup taken and verified"
            ),
            Err(e) => tracing::error!(error = %e, trigger, "backup failed"),
        }
        let (plan, record) = (self.plan.clone(), attempt.clone());
        let state = self
            .writer
            .write(move |tx| super::record(tx, &plan, &record, now).map_err(StoreError::from))
            .await?;
        if attempt.ok && self.plan.upload.is_some() {
            self.dispatcher.wake(Upstream::Backup);
        }
        self.alerts
            .set_backup(super::problem(&state, &self.plan, self.dispatcher.now_ms()));
        Ok(attempt)
    }

    /// The schedule: a backup whenever one is due, the alert re-evaluated every minute.
    pub async fn schedule(self: Arc<Self>) {
        let plan = self.plan.clone();
        let now = self.dispatcher.now_ms();
        let mut state: State = match self
            .writer
            .write(move |tx| super::ensure_scheduled(tx, &plan, now).map_err(StoreError::from))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the backup schedule; no scheduled backups this run");
                return;
            }
        };
        loop {
            let now = self.dispatcher.now_ms();
            self.alerts
                .set_backup(super::problem(&state, &self.plan, now));
            let wait = super::wait_for(&state, now);
            if !wait.is_zero() {
                tokio::time::sleep(wait.min(RECHECK)).await;
                // A manual backup may have moved the schedule meanwhile.
                if let Ok(s) = self
                    .reads
                    .read(|c| super::load(c).map_err(StoreError::from))
                    .await
                {
                    state = s;
                }
                continue;
            }
            if let Err(e) = self.run_once("scheduled").await {
                tracing::error!(error = %e, "cannot record a backup attempt; retrying in a minute");
            }
            match self
                .reads
                .read(|c| super::load(c).map_err(StoreError::from))
                .await
            {
                Ok(s) if s.next_due_ms > Some(now) => state = s,
                // The attempt could not be recorded: never spin, try again in a minute.
                _ => {
                    state.next_due_ms = Some(self.dispatcher.now_ms() + RECHECK.as_millis() as i64)
                }
            }
        }
    }
}

/// Whether `a` and `b` (or, for a directory not yet created, its nearest existing parent)
/// are on one file system. Unknown counts as the same: caution keeps room for sales.
fn same_file_system(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| {
        p.ancestors()
            .find_map(|q| std::fs::metadata(q).ok())
            .map(|m| m.dev())
    };
    match (dev(a), dev(b)) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}
