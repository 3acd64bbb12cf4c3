//! What an outbox kind is: which upstream it goes to, how many attempts it gets, how one row
//! is sent, and what its outcome changes locally (in the same transaction that records it).

use super::queue::Row;
use super::rate::Pacer;
use super::Upstream;
use rusqlite::Transaction;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How one attempt ended, as the retry policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream gave its final answer; never send again. `detail` carries what the kind's
    /// `on_outcome` records (e.g. a payment's capture or decline); `Null` when nothing.
    Delivered { detail: serde_json::Value },
    /// Worth another attempt later. `reachable = false` means no connection could be made,
    /// which marks the upstream offline at once. `in_progress`: the upstream is still
    /// executing an earlier send of this row under its key; waiting for it is not a failed
    /// attempt and never makes the row dead.
    Retry {
        error: String,
        retry_after: Option<Duration>,
        reachable: bool,
        in_progress: bool,
    },
    /// Will not succeed as it is (a 4xx other than 409/429): dead now, for a technician.
    Permanent { error: String },
}

impl Outcome {
    pub fn delivered() -> Outcome {
        Outcome::Delivered {
            detail: serde_json::Value::Null,
        }
    }
}

/// An upstream's call budget: at most `max_concurrent` calls at once, paced to its rate
/// limit, and started in the order the rows were claimed (priority, then age).
pub struct LaneSlots {
    calls: Arc<Semaphore>,
    pacer: tokio::sync::Mutex<Pacer>,
    turns: std::sync::Mutex<Turns>,
    turn_changed: Notify,
    issued: AtomicU64,
}

/// Whose turn it is to take a call slot; tickets given up without a call are skipped.
#[derive(Default)]
struct Turns {
    next: u64,
    skipped: BTreeSet<u64>,
}

impl LaneSlots {
    pub fn new(max_concurrent: usize, rate_per_sec: Option<u32>) -> Arc<LaneSlots> {
        Arc::new(LaneSlots {
            calls: Arc::new(Semaphore::new(max_concurrent.max(1))),
            pacer: tokio::sync::Mutex::new(Pacer::new(rate_per_sec)),
            turns: std::sync::Mutex::new(Turns::default()),
            turn_changed: Notify::new(),
            issued: AtomicU64::new(0),
        })
    }

    /// The next row's place in line. Issue tickets in claim order.
    pub fn ticket(self: &Arc<Self>) -> Slots {
        Slots {
            lane: self.clone(),
            ticket: self.issued.fetch_add(1, Ordering::SeqCst),
            taken: AtomicBool::new(false),
        }
    }

    fn is_turn(&self, ticket: u64) -> bool {
        self.turns.lock().unwrap_or_else(|p| p.into_inner()).next == ticket
    }

    /// Ends `ticket`'s turn (or records it as skipped if earlier tickets are still waiting).
    fn pass(&self, ticket: u64) {
        {
            let mut t = self.turns.lock().unwrap_or_else(|p| p.into_inner());
            if t.next == ticket {
                t.next += 1;
                loop {
                    let next = t.next;
                    if !t.skipped.remove(&next) {
                        break;
                    }
                    t.next += 1;
                }
            } else {
                t.skipped.insert(ticket);
            }
        }
        self.turn_changed.notify_waiters();
    }

    async fn call_permit(&self) -> OwnedSemaphorePermit {
        let permit = self
            .calls
            .clone()
            .acquire_owned()
            .await
            .expect("the call semaphore is never closed");
        self.pacer.lock().await.ready().await;
        permit
    }
}

/// One row's right to call its upstream. A kind takes a slot right before each network call
/// and holds it until the answer, so local work (reading the ledger, rendering a document)
/// never occupies one. The first call waits for the row's turn; a row that makes no call
/// gives its turn up when dropped.
pub struct Slots {
    lane: Arc<LaneSlots>,
    ticket: u64,
    taken: AtomicBool,
}

impl Slots {
    /// Waits for this row's turn (first call only), a free call slot, then the pacer.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        if self.taken.swap(true, Ordering::SeqCst) {
            return self.lane.call_permit().await;
        }
        loop {
            let notified = self.lane.turn_changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a pass between the two is not missed.
            notified.as_mut().enable();
            if self.lane.is_turn(self.ticket) {
                break;
            }
            notified.await;
        }
        let permit = self.lane.call_permit().await;
        self.lane.pass(self.ticket);
        permit
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        if !self.taken.load(Ordering::SeqCst) {
            self.lane.pass(self.ticket);
        }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

pub trait Kind: Send + Sync + 'static {
    /// The `outbox.kind` value this sender handles.
    fn name(&self) -> &'static str;
    fn upstream(&self) -> Upstream;
    /// Failed attempts after which a row is `dead`.
    fn max_attempts(&self) -> u32;
    /// One attempt. The row's idempotency key must go with it, unchanged. Every network call
    /// is made while holding a slot from `slots`.
    fn send<'a>(&'a self, row: &'a Row, slots: &'a Slots) -> SendFuture<'a>;
    /// Local consequences of the outcome, written in the transaction that records it.
    fn on_outcome(
        &self,
        _tx: &Transaction<'_>,
        _row: &Row,
        _outcome: &Outcome,
    ) -> rusqlite::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn calls_start_in_ticket_order_whatever_order_preparation_finishes_in() {
        let lane = LaneSlots::new(1, None);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..12u64 {
            let (slots, order) = (lane.ticket(), order.clone());
            tasks.push(tokio::spawn(async move {
                // Later tickets finish "preparing" first.
                tokio::time::sleep(Duration::from_millis(2 * (12 - n))).await;
                let _permit = slots.acquire().await;
                order.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..12).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_row_that_makes_no_call_does_not_hold_up_the_line() {
        let lane = LaneSlots::new(1, None);
        let skipped = lane.ticket();
        let next = lane.ticket();
        let waiting = tokio::spawn(async move {
            let _permit = next.acquire().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "ticket 1 went before ticket 0");
        drop(skipped);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("a dropped ticket blocked the line")
            .unwrap();
    }
}
