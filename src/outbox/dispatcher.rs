//! The dispatcher: drains the outbox to each upstream while the probe says it is reachable.
//!
//! Design. One lane (task) per upstream that has a registered kind. A lane claims due rows in
//! small batches (priority, then age), leasing them, and starts at most `max_concurrent`
//! sends at a time, paced to the upstream's rate limit. Each outcome is written through the
//! writer (group commit) together with its local consequence. A lane waits, without polling,
//! for whichever comes first: a slot, a wake (a row was added, an admin asked), the upstream
//! becoming reachable, the next row's due time, or the `process_interval` sweep.
//!
//! Invariants:
//! - nothing is sent to an upstream the probe reports `offline` (or forced offline);
//! - a row's idempotency key goes with every attempt, unchanged (the sender reads it from
//!   the row; nothing here can change it);
//! - due times and leases use the dispatcher clock: monotonic within a run, persisted so it
//!   never goes back across restarts; a wall-clock jump neither fires nor starves a retry;
//! - after a crash, leased rows go back to `pending` at start-up ([`queue::reset_leases`]);
//! - on shutdown a lane stops claiming, gives back rows it claimed but did not send, and
//!   waits a bounded time for sends in flight; whatever is unfinished stays pending.

use super::backoff::Backoff;
use super::kind::{Kind, LaneSlots, Outcome, Slots};
use super::queue::{self, Row};
use super::Upstream;
use crate::metrics::Metrics;
use crate::probe::{Link, Probe};
use crate::settings;
use crate::store::{Reads, StoreError, Writer};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};

/// Settings key of the persisted dispatcher clock.
pub const CLOCK_KEY: &str = "outbox_clock_ms";
/// The backoff level of a retry that waits on the upstream still executing the row's
/// earlier send (`Outcome::Retry { in_progress }`): base × 2^5 (32 s with a 1 s base), capped
/// by `backoff_max`, with jitter.
const IN_PROGRESS_LEVEL: u32 = 6;

/// How long a claimed row stays leased; far longer than a batch takes to send.
const LEASE_MS: i64 = 10 * 60 * 1000;
/// Bound on delivery tasks alive at once per lane (sends plus outcomes being recorded).
const MAX_TASKS: u32 = 1024;

/// Milliseconds on a clock that only moves forward, across restarts too.
#[derive(Debug)]
pub struct Clock {
    base_ms: i64,
    started: Instant,
}

impl Clock {
    pub fn resume_from(base_ms: i64) -> Clock {
        Clock {
            base_ms,
            started: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.base_ms + self.started.elapsed().as_millis() as i64
    }
}

/// Per-upstream limits.
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    pub max_concurrent: usize,
    pub rate_per_sec: Option<u32>,
}

pub struct Dispatcher {
    kinds: HashMap<&'static str, Arc<dyn Kind>>,
    limits: HashMap<Upstream, LaneLimits>,
    writer: Writer,
    reads: Reads,
    probe: Arc<Probe>,
    metrics: Arc<Metrics>,
    clock: Clock,
    backoff: Backoff,
    process_interval: Duration,
    wake: HashMap<Upstream, Arc<Notify>>,
    force: HashMap<Upstream, AtomicBool>,
}

pub fn link_of(up: Upstream) -> Link {
    match up {
        Upstream::Stripe => Link::Stripe,
        Upstream::Conexxus => Link::Conexxus,
        Upstream::Backup => Link::Internet,
    }
}

/// Everything a [`Dispatcher`] is built from.
pub struct Parts {
    pub kinds: Vec<Arc<dyn Kind>>,
    pub limits: HashMap<Upstream, LaneLimits>,
    pub writer: Writer,
    pub reads: Reads,
    pub probe: Arc<Probe>,
    pub metrics: Arc<Metrics>,
    pub clock_ms: i64,
    pub backoff: Backoff,
    pub process_interval: Duration,
}

impl Dispatcher {
    pub fn new(p: Parts) -> Arc<Dispatcher> {
        let all = [Upstream::Stripe, Upstream::Conexxus, Upstream::Backup];
        Arc::new(Dispatcher {
            kinds: p.kinds.into_iter().map(|k| (k.name(), k)).collect(),
            limits: p.limits,
            writer: p.writer,
            reads: p.reads,
            probe: p.probe,
            metrics: p.metrics,
            clock: Clock::resume_from(p.clock_ms),
            backoff: p.backoff,
            process_interval: p.process_interval,
            wake: all.iter().map(|u| (*u, Arc::new(Notify::new()))).collect(),
            force: all.iter().map(|u| (*u, AtomicBool::new(false))).collect(),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A row for `up` was added: look now instead of at the next sweep.
    pub fn wake(&self, up: Upstream) {
        if let Some(n) = self.wake.get(&up) {
            n.notify_one();
        }
    }

    /// `POST /admin/offline-queue/process`: claim every pending row now, ignoring backoff.
    pub fn process_now(&self) {
        for (up, flag) in &self.force {
            flag.store(true, Ordering::SeqCst);
            self.wake(*up);
        }
    }

    /// Starts one lane per upstream with a registered kind.
    pub fn spawn(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut ups: Vec<Upstream> = self.kinds.values().map(|k| k.upstream()).collect();
        ups.sort_by_key(|u| u.as_str());
        ups.dedup();
        ups.into_iter()
            .map(|up| {
                let me = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move { me.lane(up, stop, grace).await })
            })
            .collect()
    }

    fn limits(&self, up: Upstream) -> LaneLimits {
        self.limits.get(&up).copied().unwrap_or(LaneLimits {
            max_concurrent: 1,
            rate_per_sec: None,
        })
    }

    async fn lane(self: Arc<Self>, up: Upstream, mut stop: watch::Receiver<bool>, grace: Duration) {
        let limits = self.limits(up);
        let slots = LaneSlots::new(limits.max_concurrent, limits.rate_per_sec);
        // Deliveries alive at once: those calling the upstream plus as many again preparing
        // their request, so the next call is ready when a slot frees. Each holds its permit
        // until its outcome is recorded, so shutdown can wait for outcomes too.
        let lookahead = u32::try_from(limits.max_concurrent * 2)
            .unwrap_or(MAX_TASKS)
            .clamp(2, MAX_TASKS);
        let tasks = Arc::new(Semaphore::new(lookahead as usize));
        let mut net = self.probe.subscribe();
        let link = link_of(up);
        let wake = self.wake[&up].clone();
        // Enough rows per claim to keep every slot busy for a while, few enough that a
        // higher-priority row arriving mid-drain waits at most one batch.
        let paced_batch = limits
            .rate_per_sec
            .map(|r| r as usize * 2)
            .unwrap_or(usize::MAX);
        let batch = 256.min(paced_batch.max(4));
        let mut local: VecDeque<Row> = VecDeque::new();
        tracing::info!(upstream = up.as_str(), max_concurrent = limits.max_concurrent, rate = ?limits.rate_per_sec, "outbox lane started");
        loop {
            if *stop.borrow() {
                break;
            }
            if !net.borrow().link(link).usable() {
                self.give_back(&mut local).await;
                tokio::select! {
                    r = net.changed() => if r.is_err() { break },
                    _ = stop.changed() => {}
                }
                continue;
            }
            if local.is_empty() {
                let now = self.now_ms();
                // An admin's "process now" claims rows still backing off too.
                let due_before = if self.force[&up].swap(false, Ordering::SeqCst) {
                    i64::MAX
                } else {
                    now
                };
                let claimed = self
                    .writer
                    .write(move |tx| {
                        queue::claim(tx, up.as_str(), due_before, now + LEASE_MS, batch)
                            .map_err(StoreError::from)
                    })
                    .await;
                match claimed {
                    Ok(rows) if !rows.is_empty() => local.extend(rows),
                    Ok(_) => {
                        let wait = self.idle_wait(up).await;
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = wake.notified() => {}
                            r = net.changed() => if r.is_err() { break },
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                    Err(e) => {
                        e.log_background("cannot claim outbox rows; retrying in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let task = tokio::select! {
                t = tasks.clone().acquire_owned() => match t { Ok(t) => t, Err(_) => break },
                _ = stop.changed() => continue,
            };
            if !net.borrow().link(link).usable() {
                continue;
            }
            let Some(row) = local.pop_front() else {
                continue;
            };
            // Tickets in claim order keep calls in priority-then-age order.
            let (me, turn) = (self.clone(), slots.ticket());
            tokio::spawn(async move {
                me.deliver(row, &turn).await;
                drop(turn);
                drop(task);
            });
        }
        self.give_back(&mut local).await;
        if tokio::time::timeout(grace, tasks.acquire_many(lookahead))
            .await
            .is_err()
        {
            tracing::warn!(upstream = up.as_str(), "sends still in flight at shutdown; their rows stay leased and are retried with the same key at next start");
        }
        tracing::info!(upstream = up.as_str(), "outbox lane stopped");
    }

    /// How long an idle lane sleeps: until the next row is due, at most `process_interval`.
    async fn idle_wait(&self, up: Upstream) -> Duration {
        let next = self
            .reads
            .read(move |c| queue::next_due(c, up.as_str()).map_err(StoreError::from))
            .await
            .ok()
            .flatten();
        match next {
            Some(due) => Duration::from_millis((due - self.now_ms()).max(0) as u64 + 1)
                .min(self.process_interval),
            None => self.process_interval,
        }
    }

    async fn give_back(&self, local: &mut VecDeque<Row>) {
        if local.is_empty() {
            return;
        }
        let ids: Vec<i64> = local.drain(..).map(|r| r.id).collect();
        if let Err(e) = self
            .writer
            .write(move |tx| queue::release(tx, &ids).map_err(StoreError::from))
            .await
        {
            tracing::error!(error = %e, "cannot release claimed outbox rows; they return at next start");
        }
    }

    /// Prepares and sends one row, then records its outcome. The kind holds a call slot only
    /// around its network call: local work before and after never holds one back.
    async fn deliver(&self, row: Row, slots: &Slots) {
        let Some(kind) = self.kinds.get(row.kind.as_str()).cloned() else {
            let error = format!("no sender for kind {:?}", row.kind);
            let due = self.now_ms();
            let _ = self
                .writer
                .write(move |tx| {
                    queue::mark_failed(tx, row.id, &error, due, true).map_err(StoreError::from)
                })
                .await;
            return;
        };
        let link = link_of(kind.upstream());
        let outcome = kind.send(&row, slots).await;
        match &outcome {
            Outcome::Delivered { .. } => self.probe.passive(link, true, None),
            Outcome::Retry {
                reachable: false,
                error,
                ..
            } => self.probe.passive(link, false, Some(error.clone())),
            _ => {}
        }
        let attempt = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
        let now = self.now_ms();
        let (label, due, dead) = match &outcome {
            Outcome::Delivered { .. } => ("delivered", now, false),
            Outcome::Retry {
                retry_after,
                in_progress,
                ..
            } => {
                // Waiting on our own request in progress uses no attempt, so the attempt
                // count cannot grow the backoff: wait as after a few failures instead, never
                // in a tight loop however long the upstream takes.
                let level = if *in_progress {
                    attempt.max(IN_PROGRESS_LEVEL)
                } else {
                    attempt
                };
                let delay = self.backoff.delay(level, *retry_after, &mut rand::rng());
                (
                    "retry",
                    now + delay.as_millis() as i64,
                    !in_progress && attempt >= kind.max_attempts(),
                )
            }
            Outcome::Permanent { .. } => ("permanent", now, true),
        };
        self.metrics
            .outbox_attempt(&row.kind, if dead { "dead" } else { label });
        match &outcome {
            Outcome::Delivered { .. } => {
                tracing::info!(outbox_id = row.id, kind = %row.kind, upstream = %row.upstream, "delivered")
            }
            Outcome::Retry { error, .. } | Outcome::Permanent { error } if dead => tracing::warn!(
                outbox_id = row.id, kind = %row.kind, upstream = %row.upstream, attempts = attempt, error = %error,
                "outbox row is dead; `posedge outbox retry` sends it again with the same key"
            ),
            Outcome::Retry { error, .. } => tracing::info!(
                outbox_id = row.id, kind = %row.kind, upstream = %row.upstream, attempt, retry_in_ms = due - now, error = %error,
                "attempt failed; will retry"
            ),
            Outcome::Permanent { .. } => {}
        }
        let id = row.id;
        let result = self
            .writer
            .write(move |tx| {
                match &outcome {
                    Outcome::Delivered { .. } => queue::mark_delivered(tx, id)?,
                    Outcome::Retry {
                        error, in_progress, ..
                    } => queue::mark_retry(tx, id, error, due, dead, !in_progress)?,
                    Outcome::Permanent { error } => queue::mark_failed(tx, id, error, due, dead)?,
                }
                kind.on_outcome(tx, &row, &outcome)?;
                settings::set(tx, CLOCK_KEY, &now.to_string())?;
                Ok::<_, StoreError>(())
            })
            .await;
        if let Err(e) = result {
            tracing::error!(outbox_id = id, error = %e, "cannot record an outbox outcome; the row is retried with the same key after its lease");
        }
    }

    /// Periodic housekeeping: expired leases back to pending, old delivered rows pruned, the
    /// clock persisted, lanes woken.
    pub async fn sweep(&self, retention_days: u32) {
        let now = self.now_ms();
        let cutoff = crate::business_day::rfc3339(
            chrono::Utc::now() - chrono::Duration::days(i64::from(retention_days)),
        );
        let r = self
            .writer
            .write(move |tx| {
                let expired = tx.execute(
                    "UPDATE outbox SET state = 'pending', lease_until_ms = NULL WHERE state = 'in_flight' AND lease_until_ms < ?1",
                    [now],
                )?;
                let pruned = queue::prune(tx, &cutoff, 10_000)?;
                settings::set(tx, CLOCK_KEY, &now.to_string())?;
                Ok::<_, StoreError>((expired, pruned))
            })
            .await;
        match r {
            Ok((expired, pruned)) if expired + pruned > 0 => {
                tracing::info!(expired_leases = expired, pruned, "outbox sweep")
            }
            Ok(_) => {}
            Err(e) => e.log_background("outbox sweep failed"),
        }
        for up in self.wake.keys() {
            self.wake(*up);
        }
    }
}
