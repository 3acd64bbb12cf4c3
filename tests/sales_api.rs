//! POST /v1/sales and GET /v1/sales/{id}: recording, replay, conflicts and every rule.

use crate::util::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_recorded_sale_reads_back_with_every_line_tax_and_tender() {
    let d = TestDaemon::start().await;
    let (status, receipt) = d
        .post("/v1/sales", R1_TOKEN, &sale("R1", "R1-000123"))
        .await;
    assert_eq!(status, 201, "{receipt}");
    let id = receipt["id"].as_str().unwrap();
    assert!(id.starts_with("sale_"));
    assert_eq!(receipt["client_txn_id"], "R1-000123");
    assert_eq!(receipt["status"], "recorded");
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(receipt["business_date"], today.as_str());

    let (status, got) = d.get(&format!("/v1/sales/{id}"), R1_TOKEN).await;
    assert_eq!(status, 200, "{got}");
    let sent = sale("R1", "R1-000123");
    for key in [
        "client_txn_id",
        "register_id",
        "cashier_id",
        "currency",
        "lines",
        "taxes",
        "total",
    ] {
        assert_eq!(got[key], sent[key], "{key} differs");
    }
    assert_eq!(got["tenders"][1]["amount"], -70);
    assert_eq!(got["location_id"], "loc-test");
}

#[tokio::test]
async fn replaying_a_sale_returns_the_original_answer_and_records_nothing_more() {
    let d = TestDaemon::start().await;
    let (s1, first) = d.post("/v1/sales", R1_TOKEN, &sale("R1", "T-1")).await;
    // Same content, different key order and whitespace: still the same request.
    let reordered = serde_json::to_string_pretty(&sale("R1", "T-1")).unwrap();
    let (s2, second) = d.post_raw("/v1/sales", R1_TOKEN, reordered).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first, second);
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 1);
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM outbox"), 1);
}

#[tokio::test]
async fn reusing_a_client_txn_id_for_other_content_is_a_conflict_that_changes_nothing() {
    let d = TestDaemon::start().await;
    assert_eq!(
        d.post("/v1/sales", R1_TOKEN, &sale("R1", "T-1")).await.0,
        201
    );
    let mut other = sale("R1", "T-1");
    other["cashier_id"] = json!("E8");
    let (status, body) = d.post("/v1/sales", R1_TOKEN, &other).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "client_txn_id_reused");
    assert_eq!(
        count(
            &d.db_path(),
            "SELECT count(*) FROM sales WHERE cashier_id = 'E8'"
        ),
        0
    );
}

#[tokio::test]
async fn the_same_client_txn_id_on_two_registers_is_two_sales() {
    let d = TestDaemon::start().await;
    let (a, ra) = d.post("/v1/sales", R1_TOKEN, &sale("R1", "000001")).await;
    let (b, rb) = d.post("/v1/sales", R2_TOKEN, &sale("R2", "000001")).await;
    assert_eq!((a, b), (201, 201));
    assert_ne!(ra["id"], rb["id"]);
}

#[tokio::test]
async fn concurrent_replays_of_one_sale_record_it_exactly_once() {
    let d = TestDaemon::start().await;
    let body = sale("R1", "RACE-1");
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (client, url, body) = (d.client.clone(), d.url("/v1/sales"), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(R1_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap()["id"].clone())
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert!(status == 201 || status == 200, "status {status}");
        created += usize::from(status == 201);
        ids.insert(id.to_string());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 1);
}

#[tokio::test]
async fn a_sale_and_its_conexxus_outbox_row_are_written_together() {
    let d = TestDaemon::start().await;
    let (_, receipt) = d.post("/v1/sales", R1_TOKEN, &sale("R1", "T-OB")).await;
    let id = receipt["id"].as_str().unwrap();
    let sql = format!(
        "SELECT count(*) FROM outbox WHERE kind = 'naxml_sale' AND upstream = 'conexxus'
         AND state = 'pending' AND idempotency_key = 'naxml-sale:{id}'
         AND json_extract(payload, '$.sale_id') = '{id}'"
    );
    assert_eq!(count(&d.db_path(), &sql), 1);
    let (_, status) = d.get("/v1/status", R1_TOKEN).await;
    assert_eq!(status["outbox"]["pending"], 1);
    assert_eq!(status["mode"], "unconfigured");
}

/// Each entry: a change to a valid sale, and the 422 code it must produce.
fn broken_sales() -> Vec<(&'static str, Value)> {
    let base = sale("R1", "BAD-1");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut s = base.clone();
        f(&mut s);
        s
    };
    vec![
        ("total_mismatch", with(&|s| s["total"] = json!(431))),
        (
            "tender_mismatch",
            with(&|s| s["tenders"][1]["amount"] = json!(-69)),
        ),
        ("currency_mismatch", with(&|s| s["currency"] = json!("EUR"))),
        ("unknown_currency", with(&|s| s["currency"] = json!("ZZZ"))),
        ("no_lines", with(&|s| s["lines"] = json!([]))),
        ("no_tenders", with(&|s| s["tenders"] = json!([]))),
        (
            "unknown_tender_method",
            with(&|s| s["tenders"][0]["method"] = json!("iou")),
        ),
        (
            "negative_amount",
            with(&|s| s["lines"][0]["amount"] = json!(-1)),
        ),
        (
            "amount_out_of_range",
            with(&|s| s["total"] = json!(i64::MAX)),
        ),
        (
            "duplicate_tax_code",
            with(&|s| s["taxes"] = json!([s["taxes"][0], s["taxes"][0]])),
        ),
        (
            "invalid_tender_amount",
            with(&|s| s["tenders"] = json!([{"method": "card", "amount": -430}])),
        ),
        ("invalid_field", with(&|s| s["client_txn_id"] = json!(""))),
        ("invalid_field", with(&|s| s["total"] = json!("430"))),
        (
            "invalid_field",
            with(&|s| s["lines"][0]["quantity"] = json!(0.0001)),
        ),
        (
            "invalid_field",
            with(&|s| {
                s.as_object_mut()
                    .unwrap()
                    .remove("total")
                    .map(|_| ())
                    .unwrap()
            }),
        ),
        (
            "unknown_field",
            with(&|s| s["lines"][0]["colour"] = json!("red")),
        ),
        (
            "invalid_quantity",
            with(&|s| s["lines"][0]["quantity"] = json!(0)),
        ),
    ]
}

#[tokio::test]
async fn every_broken_rule_is_a_422_with_its_own_code_and_writes_nothing() {
    let d = TestDaemon::start().await;
    for (code, body) in broken_sales() {
        let (status, answer) = d.post("/v1/sales", R1_TOKEN, &body).await;
        assert_eq!(status, 422, "{code}: {answer}");
        assert_eq!(error_code(&answer), code, "{answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 0);
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM outbox"), 0);
}

#[tokio::test]
async fn an_unknown_field_is_named_with_its_path() {
    let d = TestDaemon::start().await;
    let mut body = sale("R1", "UF-1");
    body["lines"][0]["colour"] = json!("red");
    let (_, answer) = d.post("/v1/sales", R1_TOKEN, &body).await;
    assert_eq!(
        answer["error"]["message"],
        "unknown field `lines[0].colour`; remove it"
    );
    let mut top = sale("R1", "UF-2");
    top["colour"] = json!("red");
    let (_, answer) = d.post("/v1/sales", R1_TOKEN, &top).await;
    assert_eq!(
        answer["error"]["message"],
        "unknown field `colour`; remove it"
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_and_writes_nothing() {
    let d = TestDaemon::start().await;
    for raw in ["{", "not json", "", "{\"total\": 430,}", "[1, 2"] {
        let (status, answer) = d.post_raw("/v1/sales", R1_TOKEN, raw).await;
        assert_eq!(status, 400, "{raw:?}: {answer}");
        assert_eq!(error_code(&answer), "malformed_json");
    }
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 0);
}

#[tokio::test]
async fn an_unknown_sale_id_is_a_404_and_an_unknown_path_too() {
    let d = TestDaemon::start().await;
    let (status, body) = d.get("/v1/sales/sale_nope", R1_TOKEN).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = d.get("/v1/nothing-here", R1_TOKEN).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[tokio::test]
async fn fuel_quantities_keep_their_three_decimals() {
    let d = TestDaemon::start().await;
    let mut body = sale("R1", "FUEL-1");
    body["lines"][0]["quantity"] = json!(10.532);
    let (_, receipt) = d.post("/v1/sales", R1_TOKEN, &body).await;
    let (_, got) = d
        .get(
            &format!("/v1/sales/{}", receipt["id"].as_str().unwrap()),
            R1_TOKEN,
        )
        .await;
    assert_eq!(got["lines"][0]["quantity"].to_string(), "10.532");
    assert_eq!(
        count(&d.db_path(), "SELECT quantity_milli FROM sale_lines"),
        10532
    );
}

#[tokio::test]
async fn concurrent_registers_share_commits() {
    let d = TestDaemon::start().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (client, url) = (d.client.clone(), d.url("/v1/sales"));
        tasks.push(tokio::spawn(async move {
            let body = sale("R1", &format!("GC-{i}"));
            client
                .post(url)
                .bearer_auth(R1_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let metrics = d
        .client
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let commits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("posedge_commit_batch_size_count "))
        .expect("commit batch metric")
        .parse()
        .unwrap();
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 64);
    assert!(
        commits < 64.0,
        "64 concurrent sales took {commits} commits: no group commit"
    );
}

#[tokio::test]
async fn a_sale_id_that_is_not_utf8_is_a_json_404() {
    let d = TestDaemon::start().await;
    let (status, body) = d.get("/v1/sales/%FF%FE", R1_TOKEN).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
}
