//! The payment flows against `localstripe` (a third-party stateful fake of the Stripe API,
//! from PyPI) instead of our own `fake_stripe`: online capture, an online decline, and
//! offline approvals forwarded once Stripe is reachable, each checked by counting the
//! PaymentIntents localstripe holds for the payment through its list endpoint.
//!
//! localstripe binds every interface, so these tests run only inside a network namespace
//! that `.ci/localstripe.sh` makes (`unshare -n`, loopback only); it starts localstripe there
//! and runs this module with `POSEDGE_LOCALSTRIPE_URL` set and `--include-ignored`.
//! Elsewhere they are reported as ignored.
//!
//! What localstripe does differently from Stripe, and what follows here:
//! - it ignores `Idempotency-Key`: every create makes a new PaymentIntent, so "exactly one
//!   PaymentIntent per payment" proves posedge sent the create once;
//! - it has no `/v1/payment_intents/search` (404) and its list takes only `limit` and
//!   `starting_after` (any other parameter, `metadata[...]` included, is a 400), oldest
//!   first: the count pages through everything and filters on the client;
//! - the state is shared by every test of the run, so each test counts only its payments.

use crate::util::*;
use serde_json::{json, Value};
use std::time::Duration;

const IGNORED: &str = "needs localstripe: run by .ci/localstripe.sh inside unshare -n";
/// The key `stripe_toml` configures; localstripe accepts any `sk_…` key.
const SECRET_KEY: &str = "sk_test_posedge";

/// localstripe's base URL, from `POSEDGE_LOCALSTRIPE_URL`.
fn localstripe_url() -> String {
    match std::env::var("POSEDGE_LOCALSTRIPE_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_string(),
        _ => panic!(
            "POSEDGE_LOCALSTRIPE_URL is not set: these tests ({IGNORED}) need a running \
             localstripe; run `bash .ci/localstripe.sh`"
        ),
    }
}

/// A daemon whose `[stripe]` is localstripe. The online timeout is raised from
/// `stripe_toml`'s 1 s (made for the fake's timeout tests) to 10 s: localstripe is a Python
/// server that pickles its whole state on every write, and an online attempt that outlives
/// the timeout would be decided offline, which is not what these tests are about.
async fn daemon(base: &str) -> TestDaemon {
    let toml = stripe_toml(base, "");
    let relaxed = toml.replace("online_timeout = \"1s\"", "online_timeout = \"10s\"");
    assert_ne!(
        toml, relaxed,
        "stripe_toml no longer sets online_timeout = \"1s\""
    );
    TestDaemon::start_with(&relaxed).await
}

/// Every PaymentIntent localstripe holds, through `GET /v1/payment_intents`, page by page
/// (`limit` + `starting_after` while `has_more`).
async fn all_intents(base: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut all: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let mut query = vec![("limit", "100".to_string())];
        if let Some(a) = &after {
            query.push(("starting_after", a.clone()));
        }
        let r = client
            .get(format!("{base}/v1/payment_intents"))
            .bearer_auth(SECRET_KEY)
            .query(&query)
            .send()
            .await
            .expect("localstripe answers its list endpoint");
        let (status, page) = split(r).await;
        assert_eq!(status, 200, "GET /v1/payment_intents: {page}");
        let data = page["data"].as_array().cloned().unwrap_or_default();
        let last = data
            .last()
            .and_then(|pi| pi["id"].as_str())
            .map(String::from);
        all.extend(data);
        match (page["has_more"].as_bool(), last) {
            (Some(true), Some(last)) if after.as_deref() != Some(last.as_str()) => {
                after = Some(last)
            }
            _ => return all,
        }
    }
    panic!("GET /v1/payment_intents kept answering has_more after 1000 pages");
}

/// The PaymentIntents whose `metadata.posedge_payment_id` is `payment_id`.
async fn intents_for_payment(base: &str, payment_id: &str) -> Vec<Value> {
    all_intents(base)
        .await
        .into_iter()
        .filter(|pi| pi["metadata"]["posedge_payment_id"] == payment_id)
        .collect()
}

/// A compact view of PaymentIntents for assertion messages.
fn brief(intents: &[Value]) -> Vec<Value> {
    intents
        .iter()
        .map(|pi| {
            json!({"id": pi["id"], "status": pi["status"], "amount": pi["amount"],
                   "metadata": pi["metadata"], "last_payment_error": pi["last_payment_error"]})
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs localstripe: run by .ci/localstripe.sh inside unshare -n"]
async fn localstripe_online_card_payment_is_captured_with_exactly_one_payment_intent() {
    let base = localstripe_url();
    let d = daemon(&base).await;
    stripe_online(&d).await;
    let (status, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "LS-ON-1", 430, "pm_card_visa"),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(
        (p["status"].as_str(), p["mode"].as_str()),
        (Some("captured"), Some("online")),
        "{p}"
    );
    let id = p["id"].as_str().unwrap();
    let intents = intents_for_payment(&base, id).await;
    assert_eq!(intents.len(), 1, "{:#?}", brief(&intents));
    let pi = &intents[0];
    assert_eq!(pi["status"], "succeeded", "{pi}");
    assert_eq!(pi["amount"], 430);
    assert_eq!(pi["currency"], "usd");
    assert_eq!(pi["metadata"]["location_id"], "loc-test");
    assert_eq!(p["stripe_payment_intent"], pi["id"], "{p}");
}

#[tokio::test]
#[ignore = "needs localstripe: run by .ci/localstripe.sh inside unshare -n"]
async fn localstripe_decline_with_charge_customer_fail_is_told_to_the_register() {
    let base = localstripe_url();
    let d = daemon(&base).await;
    stripe_online(&d).await;
    // localstripe answers the confirming create with 402
    // {"error": {"type": "invalid_request_error", "code": "card_declined",
    //  "message": "Your card was declined.", "charge": "ch_…"}}: no decline_code and no
    // payment_intent in the error, though it keeps the PaymentIntent it made
    // (requires_payment_method), as Stripe does.
    let (status, p) = d
        .post(
            "/v1/payments",
            R1_TOKEN,
            &card_payment("R1", "LS-DECL-1", 999, "pm_card_chargeCustomerFail"),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(
        (p["status"].as_str(), p["mode"].as_str()),
        (Some("declined"), Some("online")),
        "{p}"
    );
    assert_eq!(p["decline_code"], "card_declined", "{p}");
    assert!(
        p["message"]
            .as_str()
            .unwrap_or_default()
            .contains("declined"),
        "{p}"
    );
    let id = p["id"].as_str().unwrap();
    let intents = intents_for_payment(&base, id).await;
    assert_eq!(intents.len(), 1, "{:#?}", brief(&intents));
    assert_eq!(
        intents[0]["status"],
        "requires_payment_method",
        "{:#?}",
        brief(&intents)
    );
    // A declined payment pays for nothing.
    let sale = json!({
        "client_txn_id": "LS-T-D", "register_id": "R1", "cashier_id": "E7", "currency": "USD",
        "lines": [{"sku": "049000050103", "description": "Cola 20oz", "quantity": 1, "unit_price": 999, "amount": 999}],
        "tenders": [{"method": "card", "amount": 999, "payment_id": id}],
        "total": 999
    });
    let (status, body) = d.post("/v1/sales", R1_TOKEN, &sale).await;
    assert_eq!((status, error_code(&body)), (422, "payment_not_paying"));
}

#[tokio::test]
#[ignore = "needs localstripe: run by .ci/localstripe.sh inside unshare -n"]
async fn localstripe_offline_approvals_are_forwarded_once_when_stripe_is_reachable() {
    let base = localstripe_url();
    let d = daemon(&base).await;
    stripe_online(&d).await;
    let (status, net) = d
        .post(
            "/admin/network/mode",
            ADMIN_TOKEN,
            &json!({"mode": "offline", "upstream": "stripe"}),
        )
        .await;
    assert_eq!(status, 200, "{net}");
    assert_eq!(net["upstreams"]["stripe"]["status"], "offline", "{net}");
    assert_eq!(net["upstreams"]["stripe"]["forced"], true, "{net}");

    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, p) = d
            .post(
                "/v1/payments",
                R1_TOKEN,
                &card_payment("R1", &format!("LS-OFF-{i}"), 1000 + i, "pm_card_visa"),
            )
            .await;
        assert_eq!(status, 201, "{p}");
        assert_eq!(
            (p["status"].as_str(), p["mode"].as_str()),
            (Some("approved_offline"), Some("offline")),
            "{p}"
        );
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    // Nothing reaches Stripe while it is forced offline.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for id in &ids {
        let intents = intents_for_payment(&base, id).await;
        assert!(
            intents.is_empty(),
            "{id} sent while forced offline: {:#?}",
            brief(&intents)
        );
        assert_eq!(
            d.get(&format!("/v1/payments/{id}"), R1_TOKEN).await.1["status"],
            "approved_offline"
        );
    }

    let (status, net) = d
        .post(
            "/admin/network/mode",
            ADMIN_TOKEN,
            &json!({"mode": "auto", "upstream": "stripe"}),
        )
        .await;
    assert_eq!(status, 200, "{net}");
    for (i, id) in ids.iter().enumerate() {
        let p = payment_settled(&d, id, "captured").await;
        let intents = intents_for_payment(&base, id).await;
        assert_eq!(intents.len(), 1, "{id}: {:#?}", brief(&intents));
        assert_eq!(intents[0]["status"], "succeeded");
        assert_eq!(intents[0]["amount"], 1000 + i as i64);
        assert_eq!(p["stripe_payment_intent"], intents[0]["id"], "{p}");
    }
    assert_eq!(
        count(
            &d.db_path(),
            "SELECT count(*) FROM audit WHERE kind = 'forward_outcome'"
        ),
        3
    );
    // And nothing is sent again afterwards.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids {
        assert_eq!(intents_for_payment(&base, id).await.len(), 1, "{id}");
    }
}
