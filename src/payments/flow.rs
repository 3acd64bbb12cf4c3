//! The payment flows: create (cash, card online, card offline, online then offline), replay,
//! and manager approval or rejection.
//!
//! Online attempt. The payment row is committed first, in status `authorizing`, with its
//! idempotency key; only then is Stripe called. So whatever happens next (a timeout, a crash,
//! a register retrying) the key is already fixed, and the online attempt and any later
//! forward are the same request to Stripe. A register that retries a payment still
//! `authorizing` (the daemon restarted mid-attempt) resumes the online attempt under that key:
//! if the first call landed, Stripe answers with its result instead of charging again.
//!
//! Manager approval. A payment that waited for a manager longer than `offline_window` is
//! refused (`outside_offline_window`), its age taken on whichever clock says it is older:
//! the wall clock, or the monotonic time since it began waiting. A wall clock stepped ahead
//! cannot sneak an approval past the window, nor one stepped back make a payment look younger.

use super::approval::{Approvals, Check};
use super::policy::{self, Policy};
use super::{Context, Payment, PaymentRequest, Update};
use crate::audit;
use crate::business_day;
use crate::config::Config;
use crate::ledger::validate::RuleError;
use crate::outbox::dispatcher::Dispatcher;
use crate::outbox::Upstream;
use crate::probe::{Link, Probe};
use crate::store::{Reads, StoreError, Writer};
use crate::upstream::stripe::{Answer, IntentParams, Stripe};
use chrono_tz::Tz;
use rusqlite::Transaction;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long Stripe's search index may lag before a void looks for a charge.
const VOID_DELAY_MS: i64 = 2 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{0}")]
    Rule(RuleError),
    #[error("client_payment_id {0:?} was already used for a different payment")]
    Conflict(String),
    #[error("payment {0} is being authorized right now; retry in a few seconds")]
    InProgress(String),
    #[error("payment not found")]
    NotFound,
    #[error("payment {0} is {1}, not pending_approval")]
    NotPending(String, String),
    #[error("wrong manager id or PIN")]
    BadCredentials,
    #[error("manager {0} is locked out for {1} more seconds after five wrong PINs")]
    LockedOut(String, u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for FlowError {
    fn from(e: rusqlite::Error) -> Self {
        FlowError::Store(e.into())
    }
}

pub struct Payments {
    writer: Writer,
    reads: Reads,
    probe: Arc<Probe>,
    stripe: Option<Stripe>,
    dispatcher: Arc<Dispatcher>,
    pub policy: Policy,
    location_id: String,
    timezone: Tz,
    day_close: chrono::NaiveTime,
    online_timeout: Duration,
    approvals: Arc<Approvals>,
    in_flight: Mutex<HashSet<String>>,
    /// `offline_window`: a payment waiting longer for a manager is refused, not approved.
    offline_window: chrono::Duration,
    /// When (monotonic) each payment of this run began waiting for a manager: its age on
    /// the monotonic clock, whatever the wall clock does meanwhile.
    waiting: Mutex<HashMap<String, Instant>>,
}

/// An online outcome's update.
fn u<'a>(
    status: &'a str,
    code: Option<&'a str>,
    message: Option<&'a str>,
    intent: Option<&'a str>,
) -> Update<'a> {
    Update {
        status,
        mode: Some("online"),
        decline_code: code,
        message,
        intent,
        approved_by: None,
    }
}

/// Removes a payment from the in-flight set when the online attempt ends, however it ends.
struct InFlight<'a>(&'a Mutex<HashSet<String>>, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// What the first write of `POST /v1/payments` ([`begin`]) leaves to do.
#[derive(Debug)]
pub enum First {
    /// A replay: the payment this register already created under that client id.
    Existing(Payment),
    /// Recorded (cash) or decided offline: the answer.
    Done(Payment),
    /// Committed as `authorizing`: the online attempt comes next.
    Online(Payment),
}

/// The SHA-256 of a payment request's canonical form: a replay must match it.
pub fn fingerprint(req: &PaymentRequest) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(req).unwrap_or_default()))
}

/// Everything [`begin`] needs besides the request, decided outside the transaction.
pub struct Begin<'a> {
    pub id: &'a str,
    pub fingerprint: &'a str,
    pub location_id: &'a str,
    pub business_date: &'a str,
    pub now: &'a str,
    /// `[stripe]` is configured.
    pub configured: bool,
    /// …and the probe says it is usable now.
    pub online: bool,
    pub policy: &'a Policy,
    pub ctx: &'a Context,
    /// Where the limits count from and the void is due (`Payments::at`).
    pub at: &'a super::At,
}

/// The first write of `POST /v1/payments`, inside the writer's transaction: a replay returns
/// the original; otherwise the row is inserted and, when Stripe is out of reach, decided
/// offline in the same transaction (invariant 5).
pub fn begin(
    tx: &Transaction<'_>,
    req: &PaymentRequest,
    b: &Begin<'_>,
) -> Result<First, FlowError> {
    if let Some(p) = super::find_by_client_id(tx, &req.register_id, &req.client_payment_id)? {
        if p.request_sha256 != b.fingerprint {
            return Err(FlowError::Conflict(req.client_payment_id.clone()));
        }
        return Ok(First::Existing(p));
    }
    // A wall clock set back must not date it into a day already reported.
    let business_date = crate::conexxus::eod::open_date(tx, b.business_date)?;
    let (status, mode) = match (req.method.as_str(), b.online) {
        ("cash", _) => ("recorded", "offline"),
        (_, true) => ("authorizing", "online"),
        (_, false) => ("authorizing", "offline"),
    };
    super::insert(
        tx,
        &super::NewPayment {
            id: b.id,
            req,
            fingerprint: b.fingerprint,
            location_id: b.location_id,
            business_date: &business_date,
            status,
            mode,
            online_attempted: b.online && req.method == "card",
            now: b.now,
        },
    )?;
    if req.method == "cash" {
        return Ok(First::Done(
            super::get(tx, b.id)?.ok_or(FlowError::NotFound)?,
        ));
    }
    if b.online {
        return Ok(First::Online(
            super::get(tx, b.id)?.ok_or(FlowError::NotFound)?,
        ));
    }
    let reason = if b.configured {
        "stripe unreachable (probe)"
    } else {
        "stripe not configured"
    };
    Ok(First::Done(super::decide_offline(
        tx, b.id, b.policy, b.ctx, reason, b.at,
    )?))
}

pub fn policy_from(config: &Config) -> Policy {
    let op = &config.offline_payments;
    let l = &config.resolved.offline;
    Policy {
        enabled: op.enabled,
        allowed_methods: op.allowed_methods.clone(),
        max_transaction_amount: l.max_transaction_amount,
        max_daily_total: l.max_daily_total,
        max_outstanding_total: l.max_outstanding_total,
        require_manager_approval: op.require_manager_approval,
        approval_required_over: l.approval_required_over,
    }
}

pub fn intent_params(p: &Payment) -> IntentParams {
    IntentParams {
        amount: p.amount,
        currency: p.currency.clone(),
        payment_method: p.payment_method.clone().unwrap_or_default(),
        payment_id: p.id.clone(),
        location_id: p.location_id.clone(),
    }
}

impl Payments {
    pub fn new(
        config: &Config,
        writer: Writer,
        reads: Reads,
        probe: Arc<Probe>,
        stripe: Option<Stripe>,
        dispatcher: Arc<Dispatcher>,
    ) -> Payments {
        Payments {
            writer,
            reads,
            probe,
            stripe,
            dispatcher,
            policy: policy_from(config),
            location_id: config.store.location_id.clone(),
            timezone: config.resolved.timezone,
            day_close: config.resolved.day_close,
            online_timeout: config
                .stripe
                .as_ref()
                .map(|s| s.online_timeout.0)
                .unwrap_or(Duration::from_secs(10)),
            approvals: Arc::new(Approvals::new(&config.managers)),
            in_flight: Mutex::new(HashSet::new()),
            offline_window: chrono::Duration::from_std(config.offline_payments.offline_window.0)
                .unwrap_or(chrono::Duration::MAX),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Notes when `p` began waiting for a manager, if it did.
    fn note_waiting(&self, p: &Payment) {
        if p.status == "pending_approval" {
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(p.id.clone())
                .or_insert_with(Instant::now);
        }
    }

    /// Whether `p` has waited longer than the offline window, on whichever reading says it
    /// is older (fail closed): the wall clock's, and the monotonic clock's (since it began
    /// waiting in this run; for one from before a restart, the later clock reading's).
    fn outside_window(&self, p: &Payment) -> bool {
        let Ok(created) = chrono::DateTime::parse_from_rfc3339(&p.created_at) else {
            return true;
        };
        let created = created.with_timezone(&chrono::Utc);
        let time = crate::clock::now();
        let since = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.id)
            .map(|i| i.elapsed());
        let age = match since {
            Some(d) => (time.wall - created)
                .max(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)),
            None => time.later() - created,
        };
        age > self.offline_window
    }

    fn context(&self, actor: String) -> Context {
        Context {
            network: self.probe.snapshot().summary(),
            actor,
        }
    }

    /// The business date the daily limit counts from: the earlier clock reading's, so a wall
    /// clock stepped ahead shows no fresh limit.
    pub fn today(&self) -> String {
        let earlier = crate::clock::now().earlier();
        business_day::business_date(earlier, self.timezone, self.day_close).to_string()
    }

    /// When an offline decision is made now.
    fn at(&self) -> super::At {
        super::At::now(
            self.dispatcher.now_ms() + VOID_DELAY_MS,
            self.timezone,
            self.day_close,
        )
    }

    /// `(remaining_today, remaining_transaction)` for the register's banner.
    pub async fn remaining(&self) -> Result<(i64, i64), StoreError> {
        let (loc, today, policy) = (self.location_id.clone(), self.today(), self.policy.clone());
        self.reads
            .read(move |c| {
                let counters = super::counters(c, &loc, &today)?;
                Ok::<_, StoreError>(policy::remaining(&policy, counters))
            })
            .await
    }

    pub async fn get(&self, id: String) -> Result<Payment, FlowError> {
        self.reads
            .read(move |c| super::get(c, &id).map_err(StoreError::from))
            .await?
            .ok_or(FlowError::NotFound)
    }

    /// `POST /v1/payments`. Returns the payment and whether this was a replay.
    pub async fn create(&self, req: PaymentRequest) -> Result<(Payment, bool), FlowError> {
        let fingerprint = fingerprint(&req);
        let now = chrono::Utc::now();
        let business_date =
            business_day::business_date(now, self.timezone, self.day_close).to_string();
        let configured = self.stripe.is_some();
        let online = configured && self.probe.snapshot().link(Link::Stripe).usable();
        let id = format!("pay_{}", ulid::Ulid::new());
        let ctx = self.context(req.cashier_id.clone());
        let (policy, location) = (self.policy.clone(), self.location_id.clone());
        let at = self.at();
        let first = self
            .writer
            .write(move |tx| {
                let now = business_day::rfc3339(now);
                begin(
                    tx,
                    &req,
                    &Begin {
                        id: &id,
                        fingerprint: &fingerprint,
                        location_id: &location,
                        business_date: &business_date,
                        now: &now,
                        configured,
                        online,
                        policy: &policy,
                        ctx: &ctx,
                        at: &at,
                    },
                )
            })
            .await?;
        match first {
            First::Done(p) => {
                self.note_waiting(&p);
                if p.status == "approved_offline" {
                    self.dispatcher.wake(Upstream::Stripe);
                }
                Ok((p, false))
            }
            First::Online(p) => Ok((self.online(p).await?, false)),
            First::Existing(p) if p.status == "authorizing" => {
                if self
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&p.id)
                {
                    return Err(FlowError::InProgress(p.id));
                }
                // Interrupted by a restart: finish it under the same key.
                Ok((self.online(p).await?, true))
            }
            First::Existing(p) => Ok((p, true)),
        }
    }

    /// The online attempt and the recording of its outcome.
    async fn online(&self, p: Payment) -> Result<Payment, FlowError> {
        let _guard = {
            let mut set = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if !set.insert(p.id.clone()) {
                return Err(FlowError::InProgress(p.id));
            }
            InFlight(&self.in_flight, p.id.clone())
        };
        let answer = match &self.stripe {
            Some(stripe) => {
                stripe
                    .create_intent(&intent_params(&p), &p.idempotency_key, self.online_timeout)
                    .await
            }
            None => Answer::Retry {
                error: "stripe is not configured".into(),
                retry_after: None,
                reachable: false,
                in_progress: false,
            },
        };
        match &answer {
            Answer::Retry { error, .. } => {
                // No definitive answer: Stripe is unusable for now. Later payments go offline
                // at once instead of each waiting out the timeout.
                tracing::warn!(payment_id = %p.id, error = %error, "online authorization got no answer; deciding offline");
                self.probe.passive(Link::Stripe, false, Some(error.clone()));
            }
            _ => self.probe.passive(Link::Stripe, true, None),
        }
        let ctx = self.context(p.cashier_id.clone());
        let policy = self.policy.clone();
        let at = self.at();
        let id = p.id.clone();
        let recorded = self
            .writer
            .write(move |tx| {
                match &answer {
                    Answer::Succeeded { intent } => {
                        super::update(tx, &id, &u("captured", None, None, Some(intent)))?
                    }
                    Answer::Authorized { intent } => {
                        super::update(tx, &id, &u("authorized", None, None, Some(intent)))?
                    }
                    Answer::Processing { intent } => {
                        // The bank is still deciding: treat as approved pending confirmation,
                        // and let the forward (same key) read the final state.
                        super::update(tx, &id, &u("forwarding", None, None, Some(intent)))?;
                        super::enqueue_forward(
                            tx,
                            &super::get(tx, &id)?.ok_or(FlowError::NotFound)?,
                        )?;
                    }
                    Answer::Declined {
                        intent,
                        code,
                        message,
                    } => super::update(
                        tx,
                        &id,
                        &u("declined", Some(code), Some(message), intent.as_deref()),
                    )?,
                    Answer::Retry { error, .. } | Answer::Permanent { error } => {
                        let reason = format!("online attempt failed: {error}");
                        return Ok(super::decide_offline(tx, &id, &policy, &ctx, &reason, &at)?);
                    }
                }
                super::get(tx, &id)?.ok_or(FlowError::NotFound)
            })
            .await?;
        self.note_waiting(&recorded);
        if matches!(
            recorded.status.as_str(),
            "approved_offline" | "forwarding" | "refused_offline"
        ) {
            self.dispatcher.wake(Upstream::Stripe);
        }
        Ok(recorded)
    }

    /// `POST /v1/payments/{id}/approve` (`approve = true`) and `/reject`.
    pub async fn decide_by_manager(
        &self,
        id: String,
        manager_id: String,
        pin: String,
        approve: bool,
    ) -> Result<Payment, FlowError> {
        let p = self.get(id.clone()).await?;
        if p.status != "pending_approval" {
            return Err(FlowError::NotPending(p.id, p.status));
        }
        let check = {
            let (approvals, m) = (self.approvals.clone(), manager_id.clone());
            // argon2 is deliberately slow; keep it off the async workers.
            tokio::task::spawn_blocking(move || approvals.check(&m, &pin))
                .await
                .unwrap_or(Check::Bad { locked_now: false })
        };
        let network = self.probe.snapshot().summary();
        if check != Check::Ok {
            let (kind, details) = match check {
                Check::LockedOut { remaining } => (
                    "approval_locked_out",
                    json!({"remaining_s": remaining.as_secs()}),
                ),
                Check::Bad { locked_now: true } => (
                    "manager_locked_out",
                    json!({"after_failures": super::approval::MAX_FAILURES}),
                ),
                _ => ("approval_bad_pin", json!({})),
            };
            let (actor, subject) = (format!("manager:{manager_id}"), id.clone());
            self.writer
                .write(move |tx| {
                    audit::append(
                        tx,
                        &audit::Entry {
                            kind,
                            actor: &actor,
                            subject: Some(&subject),
                            network,
                            details,
                        },
                    )
                    .map_err(StoreError::from)
                })
                .await?;
            return Err(match check {
                Check::LockedOut { remaining } => {
                    FlowError::LockedOut(manager_id, remaining.as_secs().max(1))
                }
                Check::Bad { locked_now: true } => {
                    FlowError::LockedOut(manager_id, super::approval::LOCKOUT.as_secs())
                }
                _ => FlowError::BadCredentials,
            });
        }
        let relaxed = Policy {
            require_manager_approval: false,
            approval_required_over: i64::MAX,
            ..self.policy.clone()
        };
        let ctx = Context {
            network,
            actor: format!("manager:{manager_id}"),
        };
        let at = super::At {
            outside_window: approve && self.outside_window(&p),
            ..self.at()
        };
        let decided = self
            .writer
            .write(move |tx| {
                let p = super::get(tx, &id)?.ok_or(FlowError::NotFound)?;
                if p.status != "pending_approval" {
                    return Err(FlowError::NotPending(p.id, p.status));
                }
                if approve {
                    return Ok(super::decide_offline(tx, &id, &relaxed, &ctx, "manager approval", &at)?);
                }
                super::update(
                    tx,
                    &id,
                    &Update { approved_by: Some(&manager_id), message: Some("Rejected by the manager."), ..Update::status("rejected") },
                )?;
                let p = super::get(tx, &id)?.ok_or(FlowError::NotFound)?;
                if p.online_attempted {
                    super::enqueue_void(tx, &p, at.void_due_ms)?;
                }
                audit::append(
                    tx,
                    &audit::Entry {
                        kind: "approval_rejected",
                        actor: &ctx.actor,
                        subject: Some(&id),
                        network: ctx.network.clone(),
                        details: json!({"amount": p.amount, "cashier_id": p.cashier_id, "register_id": p.register_id}),
                    },
                )?;
                Ok(p)
            })
            .await?;
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&decided.id);
        self.dispatcher.wake(Upstream::Stripe);
        Ok(decided)
    }
}
