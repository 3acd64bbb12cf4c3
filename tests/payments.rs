//! Card and cash payments against a fake Stripe that keeps Stripe's idempotency rules:
//! online capture and decline, offline decisions within limits, approvals and lock-out,
//! forwarding under the same key, expiry, and the register's replay courtesy.

use crate::fake_stripe::{FakeStripe, StripeFault};
use crate::util::*;
use serde_json::{json, Value};
use std::time::Duration;

fn card_sale(txn: &str, payment_id: &str, amount: i64) -> Value {
    json!({
        "client_txn_id": txn, "register_id": "R1", "cashier_id": "E7", "currency": "USD",
        "lines": [{"sku": "049000050103", "description": "Cola 20oz", "quantity": 1, "unit_price": amount, "amount": amount}],
        "tenders": [{"method": "card", "amount": amount, "payment_id": payment_id}],
        "total": amount
    })
}

#[tokio::test]
async fn an_online_card_payment_is_captured_with_exactly_one_payment_intent_and_pays_for_a_sale() {
    let stripe = FakeStripe::start().await;
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    stripe_online(&d).await;
    let (status, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "R1-1-1", 430, "pm_card_visa"),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(
        (p["status"].as_str(), p["mode"].as_str()),
        (Some("captured"), Some("online"))
    );
    assert_eq!(p["offline"]["remaining_today"], 500_000);
    let id = p["id"].as_str().unwrap();
    assert_eq!(stripe.intents_for_payment(id), 1);
    assert_eq!(stripe.intents_for_key(&format!("posedge-{id}")), 1);
    let (status, sale) = d
        .post("/v1/sales", R1_TOKEN, &card_sale("T-1", id, 430))
        .await;
    assert_eq!(status, 201, "{sale}");
    // One payment pays for one sale.
    let (status, again) = d
        .post("/v1/sales", R1_TOKEN, &card_sale("T-2", id, 430))
        .await;
    assert_eq!((status, error_code(&again)), (422, "payment_already_used"));
    let (status, wrong) = d
        .post("/v1/sales", R1_TOKEN, &card_sale("T-3", "pay_nope", 430))
        .await;
    assert_eq!((status, error_code(&wrong)), (422, "payment_not_found"));
}

#[tokio::test]
async fn an_online_decline_is_told_to_the_register_at_once_and_cannot_pay_a_sale() {
    let stripe = FakeStripe::start().await;
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    stripe_online(&d).await;
    let (status, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "R1-2-1", 999, "pm_card_chargeDeclined"),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["status"], "declined");
    assert_eq!(p["decline_code"], "generic_decline");
    assert!(p["message"].as_str().unwrap().contains("declined"));
    let (status, sale) = d
        .post(
            "/v1/sales",
            R1_TOKEN,
            &card_sale("T-D", p["id"].as_str().unwrap(), 999),
        )
        .await;
    assert_eq!((status, error_code(&sale)), (422, "payment_not_paying"));
}

#[tokio::test]
async fn a_timed_out_online_attempt_falls_back_offline_and_the_forward_reuses_its_key() {
    let stripe = FakeStripe::start().await;
    // The first create is executed by "Stripe" but answered only after the 1 s timeout.
    stripe.script([StripeFault::Stall(Duration::from_millis(1800))]);
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    stripe_online(&d).await;
    let started = std::time::Instant::now();
    let (status, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "R1-3-1", 2500, "pm_card_visa"),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(
        (p["status"].as_str(), p["mode"].as_str()),
        (Some("approved_offline"), Some("offline"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "the register waited {:?}",
        started.elapsed()
    );
    let id = p["id"].as_str().unwrap().to_string();
    let done = payment_settled(&d, &id, "captured").await;
    assert!(done["stripe_payment_intent"]
        .as_str()
        .unwrap()
        .starts_with("pi_"));
    assert_eq!(stripe.intents_for_payment(&id), 1, "charged twice");
    let key = format!("posedge-{id}");
    let creates: Vec<_> = stripe
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/payment_intents")
        .collect();
    // The forward looks the payment up first (its online attempt may have landed) and
    // re-sends under the same key when the lookup does not find it yet.
    let searched = stripe
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/search"));
    assert!(creates.len() >= 2 || searched, "the forward never went out");
    assert!(
        creates
            .iter()
            .all(|r| r.idempotency_key.as_deref() == Some(key.as_str())),
        "a new key was minted"
    );
    assert_eq!(
        count(
            &d.db_path(),
            "SELECT count(*) FROM audit WHERE kind = 'forward_outcome'"
        ),
        1
    );
}

/// Found by bench/soak.sh: Stripe still executing the online attempt (the same key "in
/// progress", 409) used up the forward's attempts until the payment went dead for a
/// technician, though nothing had failed. Waiting on our own request costs no attempt.
#[tokio::test]
async fn a_forward_waiting_on_stripe_still_executing_its_key_uses_no_attempts_and_never_goes_dead()
{
    let stripe = FakeStripe::start().await;
    // Stripe takes the online attempt and keeps working on it long after the 1 s timeout.
    stripe.script([StripeFault::Stall(Duration::from_secs(12))]);
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    stripe_online(&d).await;
    let (status, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "R1-409-1", 1500, "pm_card_visa"),
        )
        .await;
    assert_eq!(
        (status, p["status"].as_str()),
        (201, Some("approved_offline")),
        "{p}"
    );
    let id = p["id"].as_str().unwrap().to_string();
    let key = format!("posedge-{id}");
    let in_progress_answers = || {
        stripe
            .requests()
            .iter()
            .filter(|r| r.idempotency_key.as_deref() == Some(key.as_str()))
            .filter(|r| r.answered == Some(409))
            .count()
    };
    let row = |d: &TestDaemon| -> (String, i64) {
        let conn = rusqlite::Connection::open(d.db_path()).unwrap();
        conn.query_row(
            "SELECT state, attempts FROM outbox WHERE kind = 'stripe_forward'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    eventually(
        Duration::from_secs(10),
        "three 409s for the key",
        || async { (in_progress_answers() >= 3).then_some(()) },
    )
    .await;
    let (state, attempts) = row(&d);
    assert_ne!(state, "dead");
    assert!(
        attempts <= 1,
        "{attempts} attempts used up after {} in-progress answers",
        in_progress_answers()
    );
    // Stripe finishes; the next forward gets its saved answer: one charge.
    payment_settled(&d, &id, "captured").await;
    assert_eq!(stripe.intents_for_payment(&id), 1, "charged twice");
    assert_eq!(row(&d).0, "delivered");
}

#[tokio::test]
async fn with_stripe_down_cards_are_approved_offline_at_once_and_forwarded_once_when_it_returns() {
    let stripe = FakeStripe::start_refusing().await;
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    eventually(Duration::from_secs(5), "stripe offline", || async {
        (stripe_status(&d).await == "offline").then_some(())
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let started = std::time::Instant::now();
        let (status, p) = d
            .post(
                "/v1/payments",
                R1_TOKEN,
                &card_payment("R1", &format!("OFF-{i}"), 1000, "pm_card_visa"),
            )
            .await;
        assert_eq!(
            (status, p["status"].as_str()),
            (201, Some("approved_offline")),
            "{p}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    let (_, stats) = d
        .get(
            "/orders/offline-payments/stats?locationId=loc-test",
            R1_TOKEN,
        )
        .await;
    assert_eq!(stats["offline_count"], 5);
    assert_eq!(stats["offline_total"], 5000);
    assert_eq!(stats["outstanding_total"], 5000);
    assert_eq!(stats["remaining_today"], 500_000 - 5000);
    assert!(stripe.requests().is_empty());
    stripe.restore().await;
    for id in &ids {
        payment_settled(&d, id, "captured").await;
        assert_eq!(stripe.intents_for_payment(id), 1);
    }
    let (_, stats) = d.get("/orders/offline-payments/stats", R1_TOKEN).await;
    assert_eq!(stats["outstanding_total"], 0);
    assert_eq!(
        stats["offline_total"], 5000,
        "forwarded payments still count toward today's offline total"
    );
}

#[tokio::test]
async fn a_decline_after_forwarding_lands_in_declined_upstream_and_in_the_stats() {
    let stripe = FakeStripe::start_refusing().await;
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    let (_, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment(
                "R1",
                "DU-1",
                4200,
                "pm_card_chargeDeclinedInsufficientFunds",
            ),
        )
        .await;
    assert_eq!(p["status"], "approved_offline", "{p}");
    let id = p["id"].as_str().unwrap();
    stripe.restore().await;
    let p = payment_settled(&d, id, "declined_upstream").await;
    assert_eq!(p["decline_code"], "insufficient_funds");
    let (_, stats) = d.get("/orders/offline-payments/stats", R1_TOKEN).await;
    assert_eq!(stats["declined_upstream"]["count"], 1);
    assert_eq!(stats["declined_upstream"]["total"], 4200);
    assert_eq!(stats["declined_upstream"]["payments"][0]["id"], id);
}

#[tokio::test]
async fn a_hundred_concurrent_offline_authorizations_never_overspend_the_daily_limit() {
    let stripe = FakeStripe::start_refusing().await;
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (client, url) = (d.client.clone(), d.url("/v1/payments"));
        tasks.push(tokio::spawn(async move {
            let body = card_payment("R1", &format!("RACE-{i}"), 10_000, "pm_card_visa");
            let r = client
                .post(url)
                .bearer_auth(R1_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }));
    }
    let mut approved = 0i64;
    for t in tasks {
        let p = t.await.unwrap();
        match p["status"].as_str().unwrap() {
            "approved_offline" => approved += p["amount"].as_i64().unwrap(),
            "refused_offline" => assert!(
                ["over_daily_limit", "over_outstanding_limit"]
                    .contains(&p["decline_code"].as_str().unwrap()),
                "{p}"
            ),
            other => panic!("unexpected {other}: {p}"),
        }
    }
    assert!(
        approved <= 500_000,
        "approved {approved} against a 5,000.00 limit"
    );
    assert_eq!(
        approved, 500_000,
        "the limit should be used exactly, not left idle"
    );
    let stored = count(
        &d.db_path(),
        "SELECT coalesce(sum(amount), 0) FROM payments WHERE status = 'approved_offline'",
    );
    assert_eq!(stored, 500_000);
    // The counters the limit check reads agree with the payments themselves.
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(
        posedge::payments::counters(&conn, "loc-test", &today).unwrap(),
        posedge::payments::counters_by_scan(&conn, "loc-test", &today).unwrap()
    );
}

#[tokio::test]
async fn large_offline_payments_wait_for_a_manager_and_five_wrong_pins_lock_that_manager_out() {
    let stripe = FakeStripe::start_refusing().await;
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "")).await;
    let (_, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "BIG-1", 15_000, "pm_card_visa"),
        )
        .await;
    assert_eq!(p["status"], "pending_approval", "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let path = format!("/v1/payments/{id}/approve");
    for _ in 0..4 {
        let (status, body) = d
            .post(&path, R1_TOKEN, &json!({"manager_id": "M1", "pin": "0000"}))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (403, "bad_manager_credentials")
        );
    }
    let (status, body) = d
        .post(&path, R1_TOKEN, &json!({"manager_id": "M1", "pin": "0000"}))
        .await;
    assert_eq!((status, error_code(&body)), (403, "manager_locked_out"));
    let (status, body) = d
        .post(&path, R1_TOKEN, &json!({"manager_id": "M1", "pin": "2468"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "manager_locked_out"),
        "the right PIN got through a lock-out"
    );
    let (status, body) = d
        .post(&path, R1_TOKEN, &json!({"manager_id": "M2", "pin": "1357"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved_offline");
    assert_eq!(body["approved_by"], "M2");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Approved offline"),
        "{body}"
    );
    let (status, body) = d
        .post(&path, R1_TOKEN, &json!({"manager_id": "M2", "pin": "1357"}))
        .await;
    assert_eq!((status, error_code(&body)), (409, "not_pending_approval"));

    let (_, p2) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "BIG-2", 12_000, "pm_card_visa"),
        )
        .await;
    let (status, body) = d
        .post(
            &format!("/v1/payments/{}/reject", p2["id"].as_str().unwrap()),
            R1_TOKEN,
            &json!({"manager_id": "M2", "pin": "1357"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("rejected")),
        "{body}"
    );
    assert_eq!(body["approved_by"], "M2");
    let db = d.db_path();
    for kind in [
        "approval_bad_pin",
        "manager_locked_out",
        "approval_locked_out",
        "offline_decision",
        "approval_rejected",
    ] {
        assert!(
            count(
                &db,
                &format!("SELECT count(*) FROM audit WHERE kind = '{kind}'")
            ) >= 1,
            "{kind} not audited"
        );
    }
    let verify = posedge::audit::verify(&rusqlite::Connection::open(&db).unwrap()).unwrap();
    assert_eq!(verify.first_broken, None);
}

#[tokio::test]
async fn offline_approvals_not_forwarded_within_the_window_expire_and_raise_an_alert() {
    let stripe = FakeStripe::start_refusing().await;
    let d =
        TestDaemon::start_with(&stripe_toml(&stripe.base_url(), "offline_window = \"1s\"")).await;
    let (_, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "EXP-1", 700, "pm_card_visa"),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_string();
    let p = payment_settled(&d, &id, "expired").await;
    assert!(p["message"].as_str().unwrap().contains("offline window"));
    let (_, stats) = d.get("/orders/offline-payments/stats", R1_TOKEN).await;
    assert_eq!(stats["expired"]["count"], 1);
    assert_eq!(
        count(
            &d.db_path(),
            "SELECT count(*) FROM outbox WHERE kind = 'stripe_forward' AND state = 'discarded'"
        ),
        1
    );
    let alert = eventually(
        Duration::from_secs(12),
        "the expired_payments alert",
        || async {
            let (_, s) = d.get("/v1/status", R1_TOKEN).await;
            s["alerts"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["alert"] == "expired_payments").cloned())
        },
    )
    .await;
    assert!(alert["message"].as_str().unwrap().contains('1'));
    // Stripe coming back does not charge an expired payment.
    stripe.restore().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(stripe.intents_for_payment(&id), 0);
}

#[tokio::test]
async fn payments_replay_for_the_register_and_refuse_reuse_for_other_content() {
    let d = TestDaemon::start().await;
    let cash = json!({"client_payment_id": "C-1", "register_id": "R1", "cashier_id": "E7", "method": "cash", "amount": 500, "currency": "USD"});
    let (s1, p1) = d.post("/v1/payments", R1_TOKEN, &cash).await;
    let (s2, p2) = d.post("/v1/payments", R1_TOKEN, &cash).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(p1["id"], p2["id"]);
    assert_eq!(p1["status"], "recorded");
    let mut other = cash.clone();
    other["amount"] = json!(501);
    let (status, body) = d.post("/v1/payments", R1_TOKEN, &other).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "client_payment_id_reused")
    );
    // Without [stripe], cards are decided offline and held.
    let (_, card) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "K-1", 300, "pm_card_visa"),
        )
        .await;
    assert_eq!(card["status"], "approved_offline");
    let bad = [
        (
            card_payment("R1", "K-2", 300, "4242424242424242"),
            "card_number_refused",
        ),
        (
            card_payment("R1", "K-3", 300, "tok_visa"),
            "invalid_payment_method",
        ),
        (
            card_payment("R1", "K-4", 0, "pm_card_visa"),
            "invalid_amount",
        ),
        (
            json!({"client_payment_id": "K-5", "register_id": "R1", "cashier_id": "E7", "method": "iou", "amount": 1, "currency": "USD"}),
            "unknown_method",
        ),
    ];
    for (body, code) in bad {
        let (status, answer) = d.post("/v1/payments", R1_TOKEN, &body).await;
        assert_eq!((status, error_code(&answer)), (422, code), "{answer}");
    }
    let (status, cfg) = d.get("/orders/offline-payments/config", R1_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(cfg["max_daily_total"], 500_000);
    assert_eq!(cfg["approval_required_over"], 10_000);
}

#[test]
fn kill_9_during_forwarding_still_charges_each_payment_exactly_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stripe = rt.block_on(FakeStripe::start_refusing());
    let dir = tempfile::tempdir().unwrap();
    let cfg = stripe_toml(&stripe.base_url(), "");
    let daemon = BinaryDaemon::start(dir.path(), &cfg);
    let url = format!("http://{}/v1/payments", daemon.addr);
    let ids: Vec<String> = rt.block_on(async {
        let c = reqwest::Client::new();
        let mut ids = Vec::new();
        for i in 0..8 {
            let p: Value = c
                .post(&url)
                .bearer_auth(R1_TOKEN)
                .json(&card_payment("R1", &format!("KF-{i}"), 900, "pm_card_visa"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(p["status"], "approved_offline", "{p}");
            ids.push(p["id"].as_str().unwrap().to_string());
        }
        stripe.set_latency(Duration::from_millis(700));
        stripe.restore().await;
        eventually(Duration::from_secs(10), "a forward in flight", || async {
            stripe
                .requests()
                .iter()
                .any(|r| r.method == "POST")
                .then_some(())
        })
        .await;
        ids
    });
    daemon.kill9();
    stripe.set_latency(Duration::ZERO);
    let daemon = BinaryDaemon::start(dir.path(), &cfg);
    let db = dir.path().join("posedge.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(
        &db,
        "SELECT count(*) FROM payments WHERE status = 'captured'",
    ) != 8
    {
        if std::time::Instant::now() > deadline {
            let conn = rusqlite::Connection::open(&db).unwrap();
            let mut stmt = conn
                .prepare("SELECT kind, state, attempts, last_error FROM outbox")
                .unwrap();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok(format!(
                        "{} {} {} {:?}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            panic!("not every payment captured after restart; outbox: {rows:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in &ids {
        assert_eq!(
            stripe.intents_for_payment(id),
            1,
            "{id} charged more than once"
        );
    }
    assert_eq!(daemon.terminate(), Some(0));
}

/// Ages a payment's first attempt past Stripe's 24 h key memory, with the daemon stopped.
fn age_payment(db: &std::path::Path, id: &str, hours: i64) {
    let old = posedge::business_day::rfc3339(chrono::Utc::now() - chrono::Duration::hours(hours));
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE payments SET created_at = ?2 WHERE id = ?1",
        rusqlite::params![id, old],
    )
    .unwrap();
}

#[tokio::test]
async fn a_forward_over_23_hours_old_looks_the_payment_up_and_reuses_a_charge_that_landed() {
    let stripe = FakeStripe::start_refusing().await;
    let offline_window = "offline_window = \"72h\"";
    let d = TestDaemon::start_with(&stripe_toml(&stripe.base_url(), offline_window)).await;
    let (_, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "OLD-1", 1200, "pm_card_visa"),
        )
        .await;
    let (_, q) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "OLD-2", 1300, "pm_card_visa"),
        )
        .await;
    let (landed, missing) = (
        p["id"].as_str().unwrap().to_string(),
        q["id"].as_str().unwrap().to_string(),
    );
    let dir = d.stop().await;
    let db = dir.path().join("posedge.db");
    age_payment(&db, &landed, 25);
    age_payment(&db, &missing, 25);
    // Yesterday's attempt for `landed` did reach Stripe, under a key Stripe has since forgotten.
    stripe.restore().await;
    let client = reqwest::Client::new();
    let form = [
        ("amount", "1200"),
        ("currency", "usd"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("metadata[posedge_payment_id]", landed.as_str()),
    ];
    let r = client
        .post(format!("{}/v1/payment_intents", stripe.base_url()))
        .bearer_auth("sk_test_posedge")
        .header("Idempotency-Key", "pruned-long-ago")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = TestDaemon::start_in(dir, &stripe_toml(&stripe.base_url(), offline_window)).await;
    payment_settled(&d, &landed, "captured").await;
    payment_settled(&d, &missing, "captured").await;
    assert_eq!(
        stripe.intents_for_payment(&landed),
        1,
        "re-sent a payment that had landed a day ago"
    );
    assert_eq!(stripe.intents_for_payment(&missing), 1);
    let searches = stripe
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/search"))
        .count();
    assert!(searches >= 2, "no lookup before re-sending old payments");
    // The one that never landed was created under its own, unchanged key.
    assert_eq!(stripe.intents_for_key(&format!("posedge-{missing}")), 1);
}
