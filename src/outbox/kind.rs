//! What an outbox kind is: which upstream it goes to, how many attempts it gets, how one row
//! is sent, and what its outcome changes locally (in the same transaction that records it).

use super::queue::Row;
use super::rate::Pacer;
use super::Upstream;
use rusqlite::Transaction;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How one attempt ended, as the retry policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream gave its final answer; never send again. `detail` carries what the kind's
    /// `on_outcome` records (e.g. a payment's capture or decline); `Null` when nothing.
    Delivered { detail: serde_json::Value },
    /// Worth another attempt later. `reachable = false` means no connection could be made,
    /// which marks the upstream offline at once.
    Retry {
        error: String,
        retry_after: Option<Duration>,
        reachable: bool,
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

/// The right to call an upstream: at most `max_concurrent` at once, paced to its rate limit.
/// A kind takes a slot right before its network call and holds it until the answer, so local
/// work (reading the ledger, rendering a document) never occupies one.
pub struct Slots {
    calls: Arc<Semaphore>,
    pacer: tokio::sync::Mutex<Pacer>,
}

impl Slots {
    pub fn new(max_concurrent: usize, rate_per_sec: Option<u32>) -> Slots {
        Slots {
            calls: Arc::new(Semaphore::new(max_concurrent.max(1))),
            pacer: tokio::sync::Mutex::new(Pacer::new(rate_per_sec)),
        }
    }

    /// Waits for a free call slot, then for the pacer.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
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
