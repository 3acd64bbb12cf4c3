//! Payments: cash recorded locally; cards online through Stripe when it is reachable, else
//! decided offline within the owner's limits, with manager approval where the rules say so,
//! and forwarded later under the same idempotency key.
//!
//! Invariants:
//! - a payment's Stripe idempotency key is minted once, at insert, and every attempt (online,
//!   forward, re-send after a crash) uses it (invariant 3);
//! - an offline decision reads its counters and writes its result in the same writer
//!   transaction ([`decide_offline`]), so concurrent decisions cannot overspend (invariant 5);
//! - the daily limit counts every business date from the earlier of the payment's date and the
//!   earlier clock reading's date ([`At`]): a wall clock stepped back or ahead never re-opens
//!   or opens a day's limit (fail closed);
//! - every offline decision, approval, rejection, forward outcome and expiry writes an audit
//!   row in that same transaction (invariant 10);
//! - a refusal after an online attempt whose answer never came enqueues a void, so a charge
//!   that did land is refunded rather than kept.

pub mod approval;
pub mod flow;
pub mod forward;
pub mod policy;

use crate::audit;
use crate::ledger::validate::{check_amount, check_text, RuleError};
use crate::money::Currency;
use crate::outbox::{self, Upstream};
use policy::{Counters, Decision, Policy};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Outbox kinds of payments.
pub const FORWARD_KIND: &str = "stripe_forward";
pub const VOID_KIND: &str = "stripe_void";
/// Payment forwards go before sales documents (Conexxus defaults to 8).
pub const FORWARD_PRIORITY: i64 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub client_payment_id: String,
    pub register_id: String,
    pub cashier_id: String,
    pub method: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub payment_method: Option<String>,
    #[serde(default)]
    pub card: Option<CardInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CardInfo {
    pub brand: String,
    pub last4: String,
}

fn rule(code: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        code,
        message: message.into(),
    }
}

/// The rules a payment request must keep.
pub fn validate(req: &PaymentRequest, store_currency: Currency) -> Result<(), RuleError> {
    check_text("client_payment_id", &req.client_payment_id, 64)?;
    check_text("register_id", &req.register_id, 64)?;
    check_text("cashier_id", &req.cashier_id, 64)?;
    let currency = Currency::from_code(&req.currency).ok_or_else(|| {
        rule(
            "unknown_currency",
            format!("currency {:?} is not an ISO 4217 code", req.currency),
        )
    })?;
    if currency != store_currency {
        return Err(rule(
            "currency_mismatch",
            format!("this store takes {store_currency}; the payment is in {currency}"),
        ));
    }
    check_amount("amount", req.amount)?;
    if req.amount <= 0 {
        return Err(rule("invalid_amount", "amount must be more than zero"));
    }
    match req.method.as_str() {
        "cash" => {
            if req.payment_method.is_some() || req.card.is_some() {
                return Err(rule(
                    "invalid_field",
                    "a cash payment has no payment_method or card",
                ));
            }
        }
        "card" => {
            let pm = req.payment_method.as_deref().unwrap_or("");
            let token_ok = pm.len() > 3
                && pm.len() <= 255
                && pm.starts_with("pm_")
                && pm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !token_ok {
                return Err(rule(
                    "invalid_payment_method",
                    "a card payment needs payment_method: a Stripe payment-method token (pm_…)",
                ));
            }
            if let Some(card) = &req.card {
                if card.last4.len() != 4 || !card.last4.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(rule("invalid_field", "card.last4 must be exactly 4 digits"));
                }
                if card.brand.is_empty()
                    || card.brand.len() > 20
                    || !card
                        .brand
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(rule(
                        "invalid_field",
                        "card.brand must be 1-20 letters, digits or '_'",
                    ));
                }
            }
        }
        other => {
            return Err(rule(
                "unknown_method",
                format!("method {other:?} is not \"cash\" or \"card\""),
            ));
        }
    }
    Ok(())
}

/// A payment as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub id: String,
    pub client_payment_id: String,
    pub register_id: String,
    pub cashier_id: String,
    pub method: String,
    pub status: String,
    pub mode: String,
    pub amount: i64,
    pub currency: String,
    pub decline_code: Option<String>,
    pub message: Option<String>,
    pub card: Option<CardInfo>,
    pub business_date: String,
    pub created_at: String,
    pub updated_at: String,
    pub approved_by: Option<String>,
    pub stripe_payment_intent: Option<String>,
    #[serde(skip)]
    pub location_id: String,
    #[serde(skip)]
    pub payment_method: Option<String>,
    #[serde(skip)]
    pub idempotency_key: String,
    #[serde(skip)]
    pub online_attempted: bool,
    #[serde(skip)]
    pub request_sha256: String,
}

const COLUMNS: &str = "id, client_payment_id, register_id, cashier_id, method, status, mode, amount, currency,
    decline_code, message, card_brand, card_last4, business_date, created_at, updated_at, approved_by,
    stripe_payment_intent, location_id, payment_method, idempotency_key, online_attempted, request_sha256";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Payment> {
    let brand: Option<String> = r.get(11)?;
    let last4: Option<String> = r.get(12)?;
    Ok(Payment {
        id: r.get(0)?,
        client_payment_id: r.get(1)?,
        register_id: r.get(2)?,
        cashier_id: r.get(3)?,
        method: r.get(4)?,
        status: r.get(5)?,
        mode: r.get(6)?,
        amount: r.get(7)?,
        currency: r.get(8)?,
        decline_code: r.get(9)?,
        message: r.get(10)?,
        card: brand
            .zip(last4)
            .map(|(brand, last4)| CardInfo { brand, last4 }),
        business_date: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
        approved_by: r.get(16)?,
        stripe_payment_intent: r.get(17)?,
        location_id: r.get(18)?,
        payment_method: r.get(19)?,
        idempotency_key: r.get(20)?,
        online_attempted: r.get(21)?,
        request_sha256: r.get(22)?,
    })
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Payment>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM payments WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

pub fn find_by_client_id(
    conn: &Connection,
    register_id: &str,
    client_payment_id: &str,
) -> rusqlite::Result<Option<Payment>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM payments WHERE register_id = ?1 AND client_payment_id = ?2"
    ))?
    .query_row(params![register_id, client_payment_id], from_row)
    .optional()
}

/// A new payment row.
pub struct NewPayment<'a> {
    pub id: &'a str,
    pub req: &'a PaymentRequest,
    pub fingerprint: &'a str,
    pub location_id: &'a str,
    pub business_date: &'a str,
    pub status: &'a str,
    pub mode: &'a str,
    pub online_attempted: bool,
    pub now: &'a str,
}

pub fn insert(tx: &Transaction<'_>, p: &NewPayment<'_>) -> rusqlite::Result<()> {
    let card = p.req.card.as_ref();
    tx.prepare_cached(
        "INSERT INTO payments (id, location_id, register_id, client_payment_id, request_sha256, cashier_id,
            method, amount, currency, payment_method, card_brand, card_last4, status, mode, business_date,
            idempotency_key, online_attempted, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18)",
    )?
    .execute(params![
        p.id, p.location_id, p.req.register_id, p.req.client_payment_id, p.fingerprint, p.req.cashier_id,
        p.req.method, p.req.amount, p.req.currency, p.req.payment_method,
        card.map(|c| c.brand.as_str()), card.map(|c| c.last4.as_str()),
        p.status, p.mode, p.business_date,
        // Minted once, here; every Stripe call for this payment sends it.
        format!("posedge-{}", p.id), p.online_attempted, p.now,
    ])?;
    Ok(())
}

/// Changes a payment's outcome fields.
pub struct Update<'a> {
    pub status: &'a str,
    pub mode: Option<&'a str>,
    pub decline_code: Option<&'a str>,
    pub message: Option<&'a str>,
    pub intent: Option<&'a str>,
    pub approved_by: Option<&'a str>,
}

impl<'a> Update<'a> {
    pub fn status(status: &'a str) -> Update<'a> {
        Update {
            status,
            mode: None,
            decline_code: None,
            message: None,
            intent: None,
            approved_by: None,
        }
    }
}

pub fn update(tx: &Transaction<'_>, id: &str, u: &Update<'_>) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE payments SET status = ?2, mode = coalesce(?3, mode), decline_code = coalesce(?4, decline_code),
                message = coalesce(?5, message), stripe_payment_intent = coalesce(?6, stripe_payment_intent),
                approved_by = coalesce(?7, approved_by), updated_at = ?8
         WHERE id = ?1",
    )?
    .execute(params![id, u.status, u.mode, u.decline_code, u.message, u.intent, u.approved_by, now()])?;
    Ok(())
}

pub fn now() -> String {
    crate::business_day::rfc3339(chrono::Utc::now())
}

/// What has been approved offline: today's total counts every business date from `today` on,
/// so a clock set back cannot hide today's approvals (fail closed). Read from the counter
/// tables the schema's triggers keep (two index probes, whatever the day's volume).
pub fn counters(conn: &Connection, location_id: &str, today: &str) -> rusqlite::Result<Counters> {
    let today_total: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(approved), 0) FROM offline_daily
             WHERE location_id = ?1 AND business_date >= ?2",
        )?
        .query_row(params![location_id, today], |r| r.get(0))?;
    let outstanding_total: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(amount), 0) FROM offline_outstanding WHERE location_id = ?1",
        )?
        .query_row([location_id], |r| r.get(0))?;
    Ok(Counters {
        today_total,
        outstanding_total,
    })
}

/// The same counters computed from the payments themselves: the definition the triggers
/// must keep. Used by tests and by `posedge` checks, never on the hot path.
pub fn counters_by_scan(
    conn: &Connection,
    location_id: &str,
    today: &str,
) -> rusqlite::Result<Counters> {
    let today_total: i64 = conn.query_row(
        "SELECT coalesce(sum(amount), 0) FROM payments
         WHERE location_id = ?1 AND mode = 'offline' AND method = 'card' AND business_date >= ?2
           AND status IN ('approved_offline', 'forwarding', 'captured', 'authorized', 'declined_upstream', 'expired')",
        params![location_id, today],
        |r| r.get(0),
    )?;
    let outstanding_total: i64 = conn.query_row(
        "SELECT coalesce(sum(amount), 0) FROM payments
         WHERE location_id = ?1 AND mode = 'offline' AND method = 'card'
           AND status IN ('approved_offline', 'forwarding')",
        [location_id],
        |r| r.get(0),
    )?;
    Ok(Counters {
        today_total,
        outstanding_total,
    })
}

/// The network status and who decided, for audit rows.
#[derive(Debug, Clone)]
pub struct Context {
    pub network: Value,
    pub actor: String,
}

fn enqueue(
    tx: &Transaction<'_>,
    kind: &str,
    p: &Payment,
    key: String,
    due_ms: i64,
) -> rusqlite::Result<i64> {
    let created = now();
    outbox::enqueue(
        tx,
        &outbox::NewRow {
            kind,
            upstream: Upstream::Stripe,
            priority: FORWARD_PRIORITY,
            idempotency_key: key,
            payload: json!({"payment_id": p.id}),
            created_at: &created,
        },
    )
    .and_then(|id| {
        if due_ms > 0 {
            tx.execute(
                "UPDATE outbox SET due_ms = ?2 WHERE id = ?1",
                params![id, due_ms],
            )?;
        }
        Ok(id)
    })
}

/// Queues the forward of an offline-approved payment, under the payment's own key.
pub fn enqueue_forward(tx: &Transaction<'_>, p: &Payment) -> rusqlite::Result<i64> {
    enqueue(tx, FORWARD_KIND, p, p.idempotency_key.clone(), 0)
}

/// Queues a void for a payment refused after an online attempt that got no answer.
/// `due_ms`: Stripe's search index lags, so the first look waits a little.
pub fn enqueue_void(tx: &Transaction<'_>, p: &Payment, due_ms: i64) -> rusqlite::Result<i64> {
    enqueue(
        tx,
        VOID_KIND,
        p,
        format!("{}:void", p.idempotency_key),
        due_ms,
    )
}

/// When an offline decision is made, as the decision needs it.
#[derive(Debug, Clone)]
pub struct At {
    /// Dispatcher-clock time a void (after a refusal) is first due.
    pub void_due_ms: i64,
    /// The business date of the earlier clock reading ([`crate::clock::Reading::earlier`]):
    /// the daily limit counts from it (or from the payment's own date, if earlier), so a wall
    /// clock stepped forward opens no new day.
    pub count_from: String,
    /// The payment waited longer than the offline window (a manager's late approval): refuse.
    pub outside_window: bool,
}

impl At {
    /// Now, for a store in `tz` closing its day at `day_close`.
    pub fn now(void_due_ms: i64, tz: chrono_tz::Tz, day_close: chrono::NaiveTime) -> At {
        let earlier = crate::clock::now().earlier();
        At {
            void_due_ms,
            count_from: crate::business_day::business_date(earlier, tz, day_close).to_string(),
            outside_window: false,
        }
    }
}

/// Decides a payment offline and records the result, all inside `tx`. `policy` may be relaxed
/// by the caller (a manager's approval skips the approval rule, never a limit).
pub fn decide_offline(
    tx: &Transaction<'_>,
    payment_id: &str,
    policy: &Policy,
    ctx: &Context,
    reason: &str,
    at: &At,
) -> rusqlite::Result<Payment> {
    let p = get(tx, payment_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let from = p.business_date.as_str().min(at.count_from.as_str());
    let counters = counters(tx, &p.location_id, from)?;
    let decision = if at.outside_window {
        Decision::Refuse(policy::Refusal::OutsideOfflineWindow)
    } else {
        policy::decide(&p.method, p.amount, policy, counters)
    };
    let (status, code, message) = match decision {
        // Overwrites any earlier "a manager must approve" message.
        Decision::Approve => (
            "approved_offline",
            None,
            Some("Approved offline; it goes to Stripe when Stripe is reachable."),
        ),
        Decision::NeedsApproval => (
            "pending_approval",
            None,
            Some("A manager must approve this card payment."),
        ),
        Decision::Refuse(r) => ("refused_offline", Some(r.code()), Some(r.message())),
    };
    // The manager's own id, as the reject path stores it.
    let approved_by = match decision {
        Decision::Approve => ctx.actor.strip_prefix("manager:"),
        _ => None,
    };
    update(
        tx,
        &p.id,
        &Update {
            status,
            mode: Some("offline"),
            decline_code: code,
            message,
            intent: None,
            approved_by,
        },
    )?;
    let p = get(tx, payment_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    match decision {
        Decision::Approve => {
            enqueue_forward(tx, &p)?;
        }
        Decision::Refuse(_) if p.online_attempted => {
            enqueue_void(tx, &p, at.void_due_ms)?;
        }
        _ => {}
    }
    audit::append(
        tx,
        &audit::Entry {
            kind: "offline_decision",
            actor: &ctx.actor,
            subject: Some(&p.id),
            network: ctx.network.clone(),
            details: json!({
                "decision": status, "code": code, "reason": reason, "amount": p.amount,
                "currency": p.currency, "register_id": p.register_id, "cashier_id": p.cashier_id,
                "today_total_before": counters.today_total, "outstanding_before": counters.outstanding_total,
            }),
        },
    )?;
    Ok(p)
}

/// Payments approved offline but not accepted by Stripe within the window become `expired`;
/// their forwards are discarded (a days-old authorization is no longer valid). Returns ids.
pub fn expire(
    tx: &Transaction<'_>,
    cutoff: &str,
    network: &Value,
) -> rusqlite::Result<Vec<String>> {
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM payments WHERE status IN ('approved_offline', 'forwarding') AND created_at < ?1",
        )?
        .query_map([cutoff], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        update(tx, id, &Update { message: Some("Not accepted by Stripe within the offline window; recover it with the customer."), ..Update::status("expired") })?;
        tx.execute(
            "UPDATE outbox SET state = 'discarded', last_error = 'payment expired', updated_at = ?2
             WHERE kind = ?3 AND state IN ('pending', 'dead') AND json_extract(payload, '$.payment_id') = ?1",
            params![id, now(), FORWARD_KIND],
        )?;
        audit::append(
            tx,
            &audit::Entry {
                kind: "payment_expired",
                actor: "posedge",
                subject: Some(id),
                network: network.clone(),
                details: json!({"cutoff": cutoff}),
            },
        )?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::business_day::business_date;
    use chrono::TimeZone;
    use policy::{decide, Refusal};

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let mut conn = crate::store::open_rw(&path).unwrap();
        crate::store::migrate::run(&mut conn, &path, dir.path()).unwrap();
        (dir, conn)
    }

    fn approve_offline(conn: &mut Connection, id: &str, amount: i64, business_date: &str) {
        let req = PaymentRequest {
            client_payment_id: id.into(),
            register_id: "R1".into(),
            cashier_id: "E1".into(),
            method: "card".into(),
            amount,
            currency: "USD".into(),
            payment_method: Some("pm_card_visa".into()),
            card: None,
        };
        let tx = conn.transaction().unwrap();
        insert(
            &tx,
            &NewPayment {
                id,
                req: &req,
                fingerprint: &"0".repeat(64),
                location_id: "loc-1",
                business_date,
                status: "authorizing",
                mode: "offline",
                online_attempted: false,
                now: "2026-11-25T05:00:00.000Z",
            },
        )
        .unwrap();
        // Payments are inserted `authorizing` and decided by an update, as the flows do.
        update(&tx, id, &Update::status("approved_offline")).unwrap();
        tx.commit().unwrap();
    }

    fn policy() -> Policy {
        Policy {
            enabled: true,
            allowed_methods: vec!["card".into()],
            max_transaction_amount: 50_000,
            max_daily_total: 100_000,
            max_outstanding_total: 1_000_000,
            require_manager_approval: false,
            approval_required_over: 1_000_000,
        }
    }

    #[test]
    fn the_daily_limit_resets_at_midnight_in_the_store_time_zone_not_utc() {
        let chicago: chrono_tz::Tz = "America/Chicago".parse().unwrap();
        let midnight = chrono::NaiveTime::MIN;
        // 05:59 UTC on the 25th is 23:59 on the 24th in Chicago; 06:00 UTC is its midnight.
        let before = business_date(
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 5, 59, 0)
                .unwrap(),
            chicago,
            midnight,
        )
        .to_string();
        let after = business_date(
            chrono::Utc.with_ymd_and_hms(2026, 11, 25, 6, 0, 0).unwrap(),
            chicago,
            midnight,
        )
        .to_string();
        assert_eq!(
            (before.as_str(), after.as_str()),
            ("2026-11-24", "2026-11-25")
        );

        let (_d, mut conn) = db();
        approve_offline(&mut conn, "pay_a", 50_000, &before);
        approve_offline(&mut conn, "pay_b", 50_000, &before);
        let spent = counters(&conn, "loc-1", &before).unwrap();
        assert_eq!(spent.today_total, 100_000);
        assert_eq!(
            decide("card", 1, &policy(), spent),
            Decision::Refuse(Refusal::OverDailyLimit)
        );

        let next_day = counters(&conn, "loc-1", &after).unwrap();
        assert_eq!(
            next_day.today_total, 0,
            "yesterday's approvals counted against today"
        );
        assert_eq!(
            next_day.outstanding_total, 100_000,
            "not yet forwarded still counts as outstanding"
        );
        assert_eq!(decide("card", 1, &policy(), next_day), Decision::Approve);
    }

    /// Property: after any sequence of status changes the flows can make, the trigger-kept
    /// counters equal the full scan of the payments.
    #[test]
    fn the_trigger_kept_counters_always_equal_a_full_scan() {
        use rand::Rng;
        let (_d, mut conn) = db();
        let mut rng = rand::rng();
        let dates = ["2026-11-23", "2026-11-24", "2026-11-25"];
        let next: &[(&str, &[&str])] = &[
            // An online attempt's outcomes; offline decisions are listed below them.
            (
                "authorizing",
                &[
                    "approved_offline",
                    "pending_approval",
                    "refused_offline",
                    "captured",
                    "declined",
                    "forwarding",
                ],
            ),
            (
                "pending_approval",
                &["approved_offline", "rejected", "refused_offline"],
            ),
            (
                "approved_offline",
                &[
                    "forwarding",
                    "captured",
                    "declined_upstream",
                    "expired",
                    "authorized",
                ],
            ),
            (
                "forwarding",
                &["captured", "declined_upstream", "expired", "authorized"],
            ),
        ];
        let mut ids = Vec::new();
        for i in 0..300 {
            let id = format!("pay_{i}");
            let date = dates[rng.random_range(0..dates.len())];
            let mode = if rng.random_bool(0.8) {
                "offline"
            } else {
                "online"
            };
            let req = PaymentRequest {
                client_payment_id: id.clone(),
                register_id: "R1".into(),
                cashier_id: "E1".into(),
                method: if rng.random_bool(0.9) {
                    "card".into()
                } else {
                    "cash".into()
                },
                amount: rng.random_range(1..10_000),
                currency: "USD".into(),
                payment_method: Some("pm_card_visa".into()),
                card: None,
            };
            let tx = conn.transaction().unwrap();
            let p = NewPayment {
                id: &id,
                req: &req,
                fingerprint: &"0".repeat(64),
                location_id: "loc-1",
                business_date: date,
                status: "authorizing",
                mode,
                online_attempted: false,
                now: "2026-11-24T12:00:00.000Z",
            };
            insert(&tx, &p).unwrap();
            tx.commit().unwrap();
            ids.push(id);
            // Walk a few random rows one step along the state machine.
            for _ in 0..3 {
                let id = &ids[rng.random_range(0..ids.len())];
                let current = get(&conn, id).unwrap().unwrap().status;
                let p = get(&conn, id).unwrap().unwrap();
                if let Some((_, options)) = next.iter().find(|(s, _)| *s == current) {
                    let to = options[rng.random_range(0..options.len())];
                    let decision =
                        ["approved_offline", "pending_approval", "refused_offline"].contains(&to);
                    // As the flows do: only an online attempt ends captured/declined/forwarding
                    // from `authorizing`; an offline decision sets mode offline with its status.
                    if current == "authorizing" && !decision && p.mode == "offline" {
                        continue;
                    }
                    let u = Update {
                        mode: decision.then_some("offline"),
                        ..Update::status(to)
                    };
                    let tx = conn.transaction().unwrap();
                    update(&tx, id, &u).unwrap();
                    tx.commit().unwrap();
                }
            }
            for today in dates {
                assert_eq!(
                    counters(&conn, "loc-1", today).unwrap(),
                    counters_by_scan(&conn, "loc-1", today).unwrap(),
                    "after {i} payments, today = {today}"
                );
            }
        }
    }

    #[test]
    fn a_wall_clock_stepped_into_the_next_day_counts_from_the_earlier_reading() {
        let (_d, mut conn) = db();
        approve_offline(&mut conn, "pay_a", 100_000, "2026-11-25");
        // A payment dated the 26th by a wall clock that stepped ahead; the monotonic reading
        // is still on the 25th, whose limit is used up.
        let req = PaymentRequest {
            client_payment_id: "b".into(),
            register_id: "R1".into(),
            cashier_id: "E1".into(),
            method: "card".into(),
            amount: 1_000,
            currency: "USD".into(),
            payment_method: Some("pm_card_visa".into()),
            card: None,
        };
        let tx = conn.transaction().unwrap();
        insert(
            &tx,
            &NewPayment {
                id: "pay_b",
                req: &req,
                fingerprint: &"0".repeat(64),
                location_id: "loc-1",
                business_date: "2026-11-26",
                status: "authorizing",
                mode: "offline",
                online_attempted: false,
                now: "2026-11-26T05:00:00.000Z",
            },
        )
        .unwrap();
        let ctx = Context {
            network: json!({}),
            actor: "R1".into(),
        };
        let decide = |count_from: &str| {
            let at = At {
                void_due_ms: 0,
                count_from: count_from.into(),
                outside_window: false,
            };
            decide_offline(&tx, "pay_b", &policy(), &ctx, "test", &at)
                .unwrap()
                .status
        };
        assert_eq!(decide("2026-11-25"), "refused_offline");
        // Counting from the payment's own date alone would have approved it.
        assert_eq!(counters(&tx, "loc-1", "2026-11-26").unwrap().today_total, 0);
    }

    #[test]
    fn a_clock_set_back_a_day_still_counts_todays_approvals() {
        let (_d, mut conn) = db();
        approve_offline(&mut conn, "pay_a", 100_000, "2026-11-25");
        // The wall clock now says the 24th: the 25th's approvals must still count (fail closed).
        let c = counters(&conn, "loc-1", "2026-11-24").unwrap();
        assert_eq!(c.today_total, 100_000);
    }
}
