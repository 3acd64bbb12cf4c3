//! Outbox kinds for Stripe: forwarding offline-approved payments, and voiding payments that
//! were refused after an online attempt whose answer never came.
//!
//! Forward. Re-sends the payment's create request with its own idempotency key and the very
//! same parameters: if the online attempt (or an earlier forward) landed, Stripe answers with
//! that PaymentIntent instead of charging again. Stripe prunes keys after 24 hours, and the
//! wall clock alone cannot tell a key's age (it may have been stepped back, or the box off
//! for a day), so the payment is looked up by its metadata before anything is re-sent
//! whenever something may already have reached Stripe (an online attempt, an earlier
//! forward) or the key may be older than [`KEY_MEMORY`] on either clock reading, or the wall
//! clock reads before the payment was taken. Without a search API, such a payment is parked
//! for a technician rather than re-created under a key Stripe may have forgotten. An unclear
//! answer (5xx) is followed by the same lookup.
//!
//! Void. Looks the payment up by metadata; refunds a charge, cancels an authorization, and
//! otherwise concludes nothing landed once the search index has had time to catch up.

use super::flow::intent_params;
use super::{Payment, Update};
use crate::audit;
use crate::outbox::kind::{Kind, Outcome, SendFuture, Slots};
use crate::outbox::queue::Row;
use crate::outbox::Upstream;
use crate::store::{Reads, StoreError};
use crate::upstream::stripe::{Answer, Stripe};
use rusqlite::Transaction;
use serde_json::{json, Value};
use std::time::Duration;

/// Before this age, Stripe still remembers the key.
const KEY_MEMORY: chrono::Duration = chrono::Duration::hours(23);
/// Timeout of one background call to Stripe.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Void lookups that find nothing before concluding nothing was charged.
const VOID_LOOKUPS: i64 = 3;

async fn load(reads: &Reads, row: &Row) -> Result<Payment, Outcome> {
    let payload: Value = serde_json::from_str(&row.payload).unwrap_or_default();
    let id = payload["payment_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match reads
        .read(move |c| super::get(c, &id).map_err(StoreError::from))
        .await
    {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Outcome::Permanent {
            error: "the payment is not in the ledger".into(),
        }),
        Err(e) => Err(Outcome::Retry {
            error: e.to_string(),
            retry_after: None,
            reachable: true,
            in_progress: false,
        }),
    }
}

/// Makes one Stripe call while holding a call slot.
async fn call<T>(slots: &Slots, request: impl std::future::Future<Output = T>) -> T {
    let _slot = slots.acquire().await;
    request.await
}

fn retry(error: String, retry_after: Option<Duration>, reachable: bool) -> Outcome {
    retry_answer(error, retry_after, reachable, false)
}

/// Stripe's retry answer as the outbox's: an earlier request still in progress under the
/// key does not use up an attempt (the payment is not failing; it is being charged).
fn retry_answer(
    error: String,
    retry_after: Option<Duration>,
    reachable: bool,
    in_progress: bool,
) -> Outcome {
    Outcome::Retry {
        error,
        retry_after,
        reachable,
        in_progress,
    }
}

/// A final Stripe answer → the detail `on_outcome` records.
fn final_detail(answer: &Answer) -> Option<Value> {
    match answer {
        Answer::Succeeded { intent } => Some(json!({"status": "captured", "intent": intent})),
        Answer::Authorized { intent } => Some(json!({"status": "authorized", "intent": intent})),
        Answer::Declined {
            intent,
            code,
            message,
        } => Some(
            json!({"status": "declined_upstream", "intent": intent, "code": code, "message": message}),
        ),
        _ => None,
    }
}

pub struct StripeForward {
    pub reads: Reads,
    pub stripe: Option<Stripe>,
    pub max_attempts: u32,
}

/// Whether Stripe may have forgotten `p`'s key: over [`KEY_MEMORY`] old on the later clock
/// reading, or a wall clock reading before the payment was taken (stepped back: its age is
/// unknown), or a stamp that cannot be read.
fn key_may_be_forgotten(p: &Payment, time: &crate::clock::Reading) -> bool {
    match chrono::DateTime::parse_from_rfc3339(&p.created_at) {
        Ok(t) => {
            let t = t.with_timezone(&chrono::Utc);
            time.later() - t > KEY_MEMORY || time.wall < t || time.stepped()
        }
        Err(_) => true,
    }
}

/// Whether an earlier request under `p`'s key may have reached Stripe: the online attempt,
/// or a forward that failed (or was cut short) after sending.
fn may_have_landed(p: &Payment, row: &Row) -> bool {
    p.online_attempted || row.attempts > 0 || p.status == "forwarding"
}

impl StripeForward {
    async fn attempt(&self, stripe: &Stripe, p: &Payment, row: &Row, slots: &Slots) -> Outcome {
        let forgotten = key_may_be_forgotten(p, &crate::clock::now());
        if forgotten || may_have_landed(p, row) {
            match call(slots, stripe.find_by_payment(&p.id, CALL_TIMEOUT)).await {
                Ok(Some((_, found))) => {
                    if let Some(d) = final_detail(&found) {
                        return Outcome::Delivered { detail: d };
                    }
                }
                Ok(None) => {}
                Err(Answer::Retry {
                    error,
                    retry_after,
                    reachable,
                    in_progress,
                }) => return retry_answer(error, retry_after, reachable, in_progress),
                // No search API here (some regions, test fakes): re-send under the same key
                // while Stripe surely remembers it; otherwise a technician must look first.
                Err(other) if forgotten => {
                    return Outcome::Permanent {
                        error: format!(
                            "cannot look payment {} up at Stripe ({other:?}) and its key may be forgotten: find metadata posedge_payment_id={} in the Stripe dashboard before sending it again",
                            p.id, p.id
                        ),
                    };
                }
                Err(other) => {
                    tracing::warn!(payment_id = %p.id, answer = ?other, "cannot look the payment up before re-sending; re-sending under its key, which Stripe still remembers");
                }
            }
        }
        let answer = call(
            slots,
            stripe.create_intent(&intent_params(p), &p.idempotency_key, CALL_TIMEOUT),
        )
        .await;
        if let Some(d) = final_detail(&answer) {
            return Outcome::Delivered { detail: d };
        }
        match answer {
            Answer::Processing { .. } => retry(
                "the bank is still processing".into(),
                Some(Duration::from_secs(60)),
                true,
            ),
            Answer::Retry {
                error,
                retry_after,
                reachable,
                in_progress,
            } => {
                // Unclear (e.g. a saved 500): read what Stripe actually has.
                if reachable {
                    if let Ok(Some((_, found))) =
                        call(slots, stripe.find_by_payment(&p.id, CALL_TIMEOUT)).await
                    {
                        if let Some(d) = final_detail(&found) {
                            return Outcome::Delivered { detail: d };
                        }
                    }
                }
                retry_answer(error, retry_after, reachable, in_progress)
            }
            Answer::Permanent { error } => Outcome::Permanent { error },
            _ => retry("unexpected answer".into(), None, true),
        }
    }
}

impl Kind for StripeForward {
    fn name(&self) -> &'static str {
        super::FORWARD_KIND
    }

    fn upstream(&self) -> Upstream {
        Upstream::Stripe
    }

    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    fn send<'a>(&'a self, row: &'a Row, slots: &'a Slots) -> SendFuture<'a> {
        Box::pin(async move {
            let Some(stripe) = &self.stripe else {
                return retry("stripe is not configured".into(), None, false);
            };
            match load(&self.reads, row).await {
                Ok(p)
                    if matches!(
                        p.status.as_str(),
                        "captured" | "authorized" | "declined_upstream" | "declined"
                    ) =>
                {
                    Outcome::delivered()
                }
                Ok(p) => self.attempt(stripe, &p, row, slots).await,
                Err(outcome) => outcome,
            }
        })
    }

    fn on_outcome(
        &self,
        tx: &Transaction<'_>,
        row: &Row,
        outcome: &Outcome,
    ) -> rusqlite::Result<()> {
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or_default();
        let id = payload["payment_id"].as_str().unwrap_or_default();
        let Some(p) = super::get(tx, id)? else {
            return Ok(());
        };
        let (kind, details) = match outcome {
            Outcome::Delivered { detail } if detail.is_object() => {
                let status = detail["status"].as_str().unwrap_or("captured");
                super::update(
                    tx,
                    id,
                    &Update {
                        status,
                        mode: None,
                        decline_code: detail["code"].as_str(),
                        message: detail["message"].as_str(),
                        intent: detail["intent"].as_str(),
                        approved_by: None,
                    },
                )?;
                if status == "declined_upstream" {
                    tracing::warn!(payment_id = id, amount = p.amount, code = detail["code"].as_str().unwrap_or(""), "an offline-approved payment was declined by Stripe; the merchant must recover it");
                }
                ("forward_outcome", detail.clone())
            }
            Outcome::Delivered { .. } => return Ok(()),
            Outcome::Retry { error, .. } => {
                if p.status == "approved_offline" {
                    super::update(tx, id, &Update::status("forwarding"))?;
                    ("forward_started", json!({"first_error": error}))
                } else {
                    return Ok(());
                }
            }
            Outcome::Permanent { error } => (
                "forward_failed",
                json!({"error": error, "attempts": row.attempts + 1}),
            ),
        };
        audit::append(
            tx,
            &audit::Entry {
                kind,
                actor: "posedge",
                subject: Some(id),
                network: json!({"stripe": "answering"}),
                details,
            },
        )?;
        Ok(())
    }
}

pub struct StripeVoid {
    pub reads: Reads,
    pub stripe: Option<Stripe>,
}

impl Kind for StripeVoid {
    fn name(&self) -> &'static str {
        super::VOID_KIND
    }

    fn upstream(&self) -> Upstream {
        Upstream::Stripe
    }

    fn max_attempts(&self) -> u32 {
        10
    }

    fn send<'a>(&'a self, row: &'a Row, slots: &'a Slots) -> SendFuture<'a> {
        Box::pin(async move {
            let Some(stripe) = &self.stripe else {
                return retry("stripe is not configured".into(), None, false);
            };
            let p = match load(&self.reads, row).await {
                Ok(p) => p,
                Err(o) => return o,
            };
            match call(slots, stripe.find_by_payment(&p.id, CALL_TIMEOUT)).await {
                Ok(Some((intent, Answer::Succeeded { .. }))) => {
                    match call(
                        slots,
                        stripe.refund(&intent, &row.idempotency_key, CALL_TIMEOUT),
                    )
                    .await
                    {
                        Answer::Succeeded { .. } => Outcome::Delivered {
                            detail: json!({"voided": "refunded", "intent": intent}),
                        },
                        Answer::Retry {
                            error,
                            retry_after,
                            reachable,
                            in_progress,
                        } => retry_answer(error, retry_after, reachable, in_progress),
                        other => Outcome::Permanent {
                            error: format!("refund failed: {other:?}"),
                        },
                    }
                }
                Ok(Some((intent, Answer::Authorized { .. }))) => {
                    match call(
                        slots,
                        stripe.cancel(&intent, &row.idempotency_key, CALL_TIMEOUT),
                    )
                    .await
                    {
                        Answer::Retry {
                            error,
                            retry_after,
                            reachable,
                            in_progress,
                        } => retry_answer(error, retry_after, reachable, in_progress),
                        Answer::Permanent { error } => Outcome::Permanent { error },
                        _ => Outcome::Delivered {
                            detail: json!({"voided": "canceled", "intent": intent}),
                        },
                    }
                }
                Ok(Some((intent, _))) => Outcome::Delivered {
                    detail: json!({"voided": "nothing charged", "intent": intent}),
                },
                Ok(None) if row.attempts + 1 < VOID_LOOKUPS => retry(
                    "not found yet; Stripe's search may lag".into(),
                    Some(Duration::from_secs(60)),
                    true,
                ),
                Ok(None) => Outcome::Delivered {
                    detail: json!({"voided": "nothing found"}),
                },
                Err(Answer::Retry {
                    error,
                    retry_after,
                    reachable,
                    in_progress,
                }) => retry_answer(error, retry_after, reachable, in_progress),
                Err(other) => Outcome::Permanent {
                    error: format!("lookup failed: {other:?}"),
                },
            }
        })
    }

    fn on_outcome(
        &self,
        tx: &Transaction<'_>,
        row: &Row,
        outcome: &Outcome,
    ) -> rusqlite::Result<()> {
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or_default();
        let id = payload["payment_id"].as_str().unwrap_or_default();
        match outcome {
            Outcome::Delivered { detail } => audit::append(
                tx,
                &audit::Entry {
                    kind: "void_outcome",
                    actor: "posedge",
                    subject: Some(id),
                    network: json!({"stripe": "answering"}),
                    details: detail.clone(),
                },
            )
            .map(|_| ()),
            Outcome::Permanent { error } => audit::append(
                tx,
                &audit::Entry {
                    kind: "void_failed",
                    actor: "posedge",
                    subject: Some(id),
                    network: json!({"stripe": "answering"}),
                    details: json!({"error": error}),
                },
            )
            .map(|_| ()),
            Outcome::Retry { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Reading;
    use chrono::{Duration, TimeZone, Utc};

    fn payment(created_at: &str) -> Payment {
        Payment {
            id: "pay_1".into(),
            client_payment_id: "c".into(),
            register_id: "R1".into(),
            cashier_id: "E1".into(),
            method: "card".into(),
            status: "approved_offline".into(),
            mode: "offline".into(),
            amount: 100,
            currency: "USD".into(),
            decline_code: None,
            message: None,
            card: None,
            business_date: "2031-06-10".into(),
            created_at: created_at.into(),
            updated_at: created_at.into(),
            approved_by: None,
            stripe_payment_intent: None,
            location_id: "loc".into(),
            payment_method: Some("pm_card_visa".into()),
            idempotency_key: "posedge-pay_1".into(),
            online_attempted: false,
            request_sha256: "0".repeat(64),
        }
    }

    #[test]
    fn a_key_may_be_forgotten_when_either_clock_says_old_or_the_wall_clock_went_back() {
        let t = Utc.with_ymd_and_hms(2031, 6, 10, 12, 0, 0).unwrap();
        let p = payment("2031-06-10T12:00:00.000Z");
        let at = |wall: Duration, monotonic: Duration| Reading {
            wall: t + wall,
            monotonic: t + monotonic,
        };
        assert!(!key_may_be_forgotten(
            &p,
            &Reading::exact(t + Duration::hours(1))
        ));
        assert!(key_may_be_forgotten(
            &p,
            &Reading::exact(t + Duration::hours(24))
        ));
        // The wall clock stepped back an hour: the monotonic reading says 24 h.
        assert!(key_may_be_forgotten(
            &p,
            &at(Duration::hours(23), Duration::hours(24))
        ));
        // The wall clock reads before the payment was taken: its age is unknown.
        assert!(key_may_be_forgotten(
            &p,
            &Reading::exact(t - Duration::minutes(10))
        ));
        assert!(key_may_be_forgotten(
            &payment("yesterday"),
            &Reading::exact(t)
        ));
    }
}
