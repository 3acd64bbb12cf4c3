//! The Conexxus back office: NAXML documents (golden files, well-formed by xmllint), refunds
//! in the ledger, the directory drop, batches, the end-of-day reports and their catch-up,
//! and the reconciliation of a whole day to the cent.

use crate::fake_upstream::FakeUpstream;
use crate::util::*;
use posedge::ledger::request::Quantity;
use posedge::ledger::{Sale, SaleLine, SaleTax, SaleTender};
use posedge::naxml::journal::{self, CardAuthorization, JournalContext, JournalSale};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---- helpers ----------------------------------------------------------------------------

/// `xmllint --noout` on `files`: panics with its complaint unless every one is well-formed.
fn xmllint(files: &[PathBuf]) {
    assert!(!files.is_empty(), "no documents to check");
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .args(files)
        .output()
        .expect("xmllint runs (Debian package libxml2-utils; .ci/run installs it)");
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every element's text, keyed by the path of element names from the root
/// (`NAXML-POSJournal/JournalReport/SaleEvent/...`).
fn texts(xml: &str) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => path.push(String::from_utf8_lossy(e.name().as_ref()).into_owned()),
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let text = t.decode().expect("UTF-8").trim().to_string();
                if !text.is_empty() {
                    out.push((path.join("/"), text));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Decimal text with two places → minor units.
fn cents(text: &str) -> i64 {
    let (int, frac) = text.split_once('.').unwrap_or((text, "0"));
    let sign = if int.starts_with('-') { -1 } else { 1 };
    let frac: i64 = format!("{frac:0<2}")[..2].parse().unwrap();
    sign * (int.trim_start_matches('-').parse::<i64>().unwrap() * 100 + frac)
}

/// Sum of the amounts at paths ending with `suffix`.
fn sum(texts: &[(String, String)], suffix: &str) -> i64 {
    texts
        .iter()
        .filter(|(p, _)| p.ends_with(suffix))
        .map(|(_, v)| cents(v))
        .sum()
}

fn directory_toml(dir: &Path, extra: &str) -> String {
    format!(
        r#"
[probe]
interval = "200ms"
offline_interval = "100ms"
internet_targets = []

[outbox]
backoff_base = "50ms"
backoff_max = "200ms"
process_interval = "1s"

[conexxus]
transport = "directory"
directory = "{}"
{extra}
"#,
        dir.display()
    )
}

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files
}

async fn conexxus_drained(d: &TestDaemon) {
    eventually(
        Duration::from_secs(20),
        "conexxus documents delivered",
        || async {
            let (_, body) = d.get("/conexxus/pending-syncs", ADMIN_TOKEN).await;
            (body["pending"] == 0).then_some(())
        },
    )
    .await;
}

fn refund(register: &str, txn: &str, original: Option<&str>) -> Value {
    let mut r = json!({
        "kind": "refund",
        "client_txn_id": txn,
        "register_id": register,
        "cashier_id": "E7",
        "currency": "USD",
        "lines": [{"sku": "049000050103", "description": "Cola 20oz", "quantity": 1,
                   "unit_price": 199, "amount": 199, "merchandise_code": "101", "tax_code": "1"}],
        "taxes": [{"tax_code": "1", "taxable_amount": 199, "amount": 16}],
        "tenders": [{"method": "cash", "amount": 215}],
        "total": 215
    });
    if let Some(o) = original {
        r["original_sale_id"] = json!(o);
    }
    r
}

// ---- golden files -----------------------------------------------------------------------

fn golden_sale(kind: &str, tenders: Vec<SaleTender>, total: i64) -> Sale {
    Sale {
        id: "sale_01JG0000000000000000000000".into(),
        client_txn_id: "R1-000123".into(),
        location_id: "loc-1001".into(),
        register_id: "R1".into(),
        cashier_id: "E7".into(),
        currency: "USD".into(),
        business_date: "2026-11-24".into(),
        created_at: "2026-11-24T19:31:38.000Z".into(),
        status: "recorded".into(),
        kind: kind.into(),
        original_sale_id: None,
        lines: vec![
            SaleLine {
                sku: "049000050103".into(),
                description: "Cola 20oz".into(),
                quantity: Quantity(2000),
                unit_price: 199,
                amount: 398,
                merchandise_code: Some("101".into()),
                tax_code: Some("1".into()),
            },
            SaleLine {
                sku: "4011".into(),
                description: "Bananas & co <loose>".into(),
                quantity: Quantity(1250),
                unit_price: 100,
                amount: 125,
                merchandise_code: None,
                tax_code: None,
            },
        ],
        taxes: vec![SaleTax {
            tax_code: "1".into(),
            taxable_amount: 398,
            amount: 32,
        }],
        tenders,
        total,
    }
}

fn check_golden(name: &str, rendered: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, rendered).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        String::from_utf8_lossy(rendered),
        want,
        "{name} changed; review and run with UPDATE_GOLDEN=1 if intended"
    );
    xmllint(&[path]);
}

fn golden_ctx() -> JournalContext<'static> {
    JournalContext {
        store_location_id: "loc-1001",
        timezone: "America/Chicago".parse().unwrap(),
        sequence: 42,
    }
}

#[test]
fn a_cash_sale_renders_exactly_as_its_golden_file() {
    let sale = golden_sale(
        "sale",
        vec![
            SaleTender {
                method: "cash".into(),
                amount: 600,
                payment_id: None,
            },
            SaleTender {
                method: "cash".into(),
                amount: -45,
                payment_id: None,
            },
        ],
        555,
    );
    let doc = journal::render(
        &golden_ctx(),
        &[JournalSale {
            sale: &sale,
            event_sequence: 7,
            authorizations: vec![None, None],
        }],
    );
    check_golden("journal_cash_sale.xml", &doc);
}

#[test]
fn a_card_sale_approved_offline_renders_exactly_as_its_golden_file() {
    let sale = golden_sale(
        "sale",
        vec![SaleTender {
            method: "card".into(),
            amount: 555,
            payment_id: Some("pay_01JG0000000000000000000001".into()),
        }],
        555,
    );
    let auth = CardAuthorization {
        payment_id: "pay_01JG0000000000000000000001".into(),
        offline: true,
        at: "2026-11-24T19:31:30.000Z".into(),
        amount: 555,
        brand: Some("visa".into()),
    };
    let js = JournalSale {
        sale: &sale,
        event_sequence: 8,
        authorizations: vec![Some(auth)],
    };
    assert!(js.offline());
    let doc = journal::render(&golden_ctx(), &[js]);
    let text = String::from_utf8_lossy(&doc);
    assert!(text.contains("<OfflineFlag value=\"yes\"/>"));
    assert!(text.contains("<HostAuthorizedFlag value=\"no\"/>"));
    check_golden("journal_offline_card_sale.xml", &doc);
}

#[test]
fn a_refund_renders_as_a_refund_event_exactly_as_its_golden_file() {
    let mut sale = golden_sale(
        "refund",
        vec![SaleTender {
            method: "cash".into(),
            amount: 555,
            payment_id: None,
        }],
        555,
    );
    sale.original_sale_id = Some("sale_01JG0000000000000000000000".into());
    let doc = journal::render(
        &golden_ctx(),
        &[JournalSale {
            sale: &sale,
            event_sequence: 9,
            authorizations: vec![None],
        }],
    );
    let text = String::from_utf8_lossy(&doc);
    assert!(text.contains("<RefundEvent>") && !text.contains("<SaleEvent>"));
    check_golden("journal_refund.xml", &doc);
}

// ---- refunds in the ledger --------------------------------------------------------------

#[tokio::test]
async fn a_refund_is_recorded_as_its_own_row_and_a_card_refund_or_a_stray_original_is_refused() {
    let d = TestDaemon::start().await;
    let (code, receipt) = d.post("/v1/sales", R1_TOKEN, &sale("R1", "S-1")).await;
    assert_eq!(code, 201);
    let original = receipt["id"].as_str().unwrap();

    let (code, r) = d
        .post("/v1/sales", R1_TOKEN, &refund("R1", "RF-1", Some(original)))
        .await;
    assert_eq!(code, 201, "{r}");
    let (_, shown) = d
        .get(
            &format!("/v1/sales/{}", r["id"].as_str().unwrap()),
            R1_TOKEN,
        )
        .await;
    assert_eq!(shown["kind"], "refund");
    assert_eq!(shown["original_sale_id"], original);
    let (_, first) = d.get(&format!("/v1/sales/{original}"), R1_TOKEN).await;
    assert_eq!(first["kind"], "sale", "the original is untouched");

    let mut card = refund("R1", "RF-2", None);
    card["tenders"] = json!([{"method": "card", "amount": 215, "payment_id": "pay_x"}]);
    let (code, body) = d.post("/v1/sales", R1_TOKEN, &card).await;
    assert_eq!((code, error_code(&body)), (422, "refund_tender_not_cash"));

    let (code, body) = d
        .post(
            "/v1/sales",
            R1_TOKEN,
            &refund("R1", "RF-3", Some("sale_nope")),
        )
        .await;
    assert_eq!((code, error_code(&body)), (422, "original_sale_not_found"));

    let mut stray = sale("R1", "S-2");
    stray["original_sale_id"] = json!(original);
    let (code, body) = d.post("/v1/sales", R1_TOKEN, &stray).await;
    assert_eq!((code, error_code(&body)), (422, "original_sale_on_sale"));
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 2);
}

// ---- the directory drop -----------------------------------------------------------------

#[tokio::test]
async fn kill_9_while_dropping_files_leaves_no_half_file_and_no_duplicate() {
    let client = reqwest::Client::new();
    let state = tempfile::tempdir().unwrap();
    let drop_dir = tempfile::tempdir().unwrap();
    let toml = directory_toml(drop_dir.path(), "");
    let mut acknowledged = 0;
    for round in 0..3 {
        let d = BinaryDaemon::start(state.path(), &toml);
        for i in 0..40 {
            let body = sale("R1", &format!("K{round}-{i}"));
            let sent = client
                .post(format!("http://{}/v1/sales", d.addr))
                .bearer_auth(R1_TOKEN)
                .json(&body)
                .send()
                .await;
            if sent.is_ok_and(|r| r.status() == 201) {
                acknowledged += 1;
            }
        }
        // Killed while the lane is writing and renaming files.
        d.kill9();
    }
    let d = BinaryDaemon::start(state.path(), &toml);
    let files = wait_for_files(drop_dir.path(), acknowledged);
    d.terminate();
    assert_eq!(files.len(), acknowledged, "one file per sale, no duplicate");
    let leftovers: Vec<_> = std::fs::read_dir(drop_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".xml"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    xmllint(&files);
    let mut txns = HashMap::new();
    for f in &files {
        let xml = std::fs::read_to_string(f).unwrap();
        for (p, v) in texts(&xml) {
            if p.ends_with("SaleEvent/TransactionID") {
                *txns.entry(v).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(txns.len(), acknowledged);
    assert!(txns.values().all(|n| *n == 1), "a sale twice: {txns:?}");
}

fn wait_for_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let files = xml_files(dir);
        if files.len() >= n || std::time::Instant::now() > deadline {
            // A little longer, to catch a duplicate arriving late.
            std::thread::sleep(Duration::from_millis(500));
            return xml_files(dir);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn batches_gather_sales_into_documents_of_n_events_each_sale_exactly_once() {
    let drop_dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_with(&directory_toml(
        drop_dir.path(),
        "events_per_document = 5\nbatch_max_wait = \"2s\"",
    ))
    .await;
    for i in 0..12 {
        assert_eq!(
            d.post("/v1/sales", R1_TOKEN, &sale("R1", &format!("B-{i}")))
                .await
                .0,
            201
        );
    }
    // Two full documents at once; the last two sales after batch_max_wait.
    let files = eventually(Duration::from_secs(15), "three journal files", || async {
        let f = xml_files(drop_dir.path());
        (f.len() == 3).then_some(f)
    })
    .await;
    xmllint(&files);
    let mut per_doc = Vec::new();
    let mut txns = Vec::new();
    for f in &files {
        let t = texts(&std::fs::read_to_string(f).unwrap());
        let ids: Vec<String> = t
            .iter()
            .filter(|(p, _)| p.ends_with("SaleEvent/TransactionID"))
            .map(|(_, v)| v.clone())
            .collect();
        per_doc.push(ids.len());
        txns.extend(ids);
    }
    assert_eq!(per_doc, vec![5, 5, 2]);
    let want: Vec<String> = (0..12).map(|i| format!("B-{i}")).collect();
    assert_eq!(txns, want, "every sale once, in recording order");
    conexxus_drained(&d).await;
}

// ---- end of day -------------------------------------------------------------------------

/// Writes a recorded cash sale straight into the ledger with an old business date (what a
/// box switched off for days has); the daemon is stopped.
fn insert_old_sale(db: &Path, id: &str, business_date: &str, total_lines: i64, tax: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let total = total_lines + tax;
    conn.execute(
        "INSERT INTO sales (id, location_id, register_id, client_txn_id, request_sha256, cashier_id,
                            currency, total, business_date, created_at, status)
         VALUES (?1, 'loc-test', 'R1', ?1, ?2, 'E7', 'USD', ?3, ?4, ?5, 'recorded')",
        rusqlite::params![id, "0".repeat(64), total, business_date, format!("{business_date}T12:00:00.000Z")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO sale_lines (sale_id, line_no, sku, description, quantity_milli, unit_price, amount, merchandise_code, tax_code)
         VALUES (?1, 0, '049000050103', 'Cola', 1000, ?2, ?2, '101', '1')",
        rusqlite::params![id, total_lines],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO sale_taxes (sale_id, tax_code, taxable_amount, amount) VALUES (?1, '1', ?2, ?3)",
        rusqlite::params![id, total_lines, tax],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO sale_tenders (sale_id, tender_no, method, amount) VALUES (?1, 0, 'cash', ?2)",
        rusqlite::params![id, total],
    )
    .unwrap();
}

#[tokio::test]
async fn the_end_of_day_catch_up_reports_each_date_that_closed_while_stopped_exactly_once() {
    let drop_dir = tempfile::tempdir().unwrap();
    // Dates close at midnight UTC and their sync is due at once: every past date is due.
    let toml = directory_toml(drop_dir.path(), "eod_sync_time = \"00:00\"");
    let d = TestDaemon::start_with(&toml).await;
    let dir = d.stop().await;
    let today = chrono::Utc::now().date_naive();
    let d3 = (today - chrono::Duration::days(3)).to_string();
    let d2 = (today - chrono::Duration::days(2)).to_string();
    insert_old_sale(&dir.path().join("posedge.db"), "sale_OLD1", &d3, 1000, 80);
    insert_old_sale(&dir.path().join("posedge.db"), "sale_OLD2", &d3, 500, 40);
    insert_old_sale(&dir.path().join("posedge.db"), "sale_OLD3", &d2, 300, 24);

    let d = TestDaemon::start_in(dir, &toml).await;
    let syncs = |d: &TestDaemon| {
        count(
            &d.db_path(),
            "SELECT count(*) FROM eod_syncs WHERE trigger = 'catch_up'",
        )
    };
    eventually(Duration::from_secs(10), "the catch-up syncs", || async {
        (syncs(&d) >= 3).then_some(())
    })
    .await;
    conexxus_drained(&d).await;
    let dates = |d: &TestDaemon| {
        count(
            &d.db_path(),
            "SELECT count(DISTINCT business_date) FROM eod_syncs",
        )
    };
    // d-3, d-2 and d-1 (no sales that day: a report of zeros); not today, still open.
    assert_eq!(syncs(&d), 3);
    assert_eq!(dates(&d), 3);
    let msm = drop_dir
        .path()
        .join(format!("MSM{}_0001.xml", d3.replace('-', "")));
    let t = texts(&std::fs::read_to_string(&msm).unwrap());
    let net = t
        .windows(2)
        .find(|w| w[0].1 == "totalizer" && w[1].1 == "netSales")
        .map(|_| ())
        .is_some();
    assert!(net, "MSM has a netSales line");
    let mcm = drop_dir
        .path()
        .join(format!("MCM{}_0001.xml", d3.replace('-', "")));
    let t = texts(&std::fs::read_to_string(&mcm).unwrap());
    assert_eq!(sum(&t, "MCMSalesTotals/SalesAmount"), 1500);
    xmllint(&xml_files(drop_dir.path()));

    // A restart (and a later tick) queues nothing again.
    let dir = d.stop().await;
    let d = TestDaemon::start_in(dir, &toml).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(syncs(&d), 3, "a date was reported twice");
    assert_eq!(xml_files(drop_dir.path()).len(), 12);
    let (_, health) = d.get("/conexxus/health", ADMIN_TOKEN).await;
    assert_eq!(health["transport"], "directory");
    assert_eq!(health["end_of_day"]["last_sync"]["trigger"], "catch_up");
    assert!(health["last_success"]["document"].is_string(), "{health}");
}

#[tokio::test]
async fn a_day_of_mixed_sales_reconciles_to_the_cent_across_journals_reports_and_ledger() {
    let stripe = crate::fake_stripe::FakeStripe::start_refusing().await;
    let drop_dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[conexxus]\ntransport = \"directory\"\ndirectory = \"{}\"\n",
        stripe_toml(&stripe.base_url(), ""),
        drop_dir.path().display()
    );
    let d = TestDaemon::start_with(&toml).await;
    let mut sale_ids = Vec::new();
    for i in 0..6 {
        let (code, r) = d
            .post("/v1/sales", R1_TOKEN, &sale("R1", &format!("C-{i}")))
            .await;
        assert_eq!(code, 201);
        sale_ids.push(r["id"].as_str().unwrap().to_string());
    }
    // Card sales approved offline (Stripe is refusing connections).
    for i in 0..4 {
        let (code, p) = d
            .post(
                "/v1/payments",
                R1_TOKEN,
                &card_payment("R1", &format!("P-{i}"), 430, "pm_card_visa"),
            )
            .await;
        assert_eq!(
            (code, p["status"].as_str()),
            (201, Some("approved_offline")),
            "{p}"
        );
        let mut s = sale("R1", &format!("CARD-{i}"));
        s["tenders"] = json!([{"method": "card", "amount": 430, "payment_id": p["id"]}]);
        assert_eq!(d.post("/v1/sales", R1_TOKEN, &s).await.0, 201);
    }
    for (i, original) in sale_ids.iter().take(2).enumerate() {
        let (code, _) = d
            .post(
                "/v1/sales",
                R1_TOKEN,
                &refund("R1", &format!("RF-{i}"), Some(original)),
            )
            .await;
        assert_eq!(code, 201);
    }
    let (code, queued) = d
        .post(
            "/conexxus/sync",
            ADMIN_TOKEN,
            &json!({"business_date": chrono::Utc::now().date_naive().to_string()}),
        )
        .await;
    assert_eq!(code, 202, "{queued}");
    assert_eq!(queued["partial"], true);
    assert_eq!(queued["documents"].as_array().unwrap().len(), 4);
    conexxus_drained(&d).await;

    let files = xml_files(drop_dir.path());
    xmllint(&files);
    let read = |prefix: &str| -> Vec<(String, String)> {
        files
            .iter()
            .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .flat_map(|f| texts(&std::fs::read_to_string(f).unwrap()))
            .collect()
    };
    let journals = read("PJR");
    let journal_net = sum(
        &journals,
        "SaleEvent/TransactionSummary/TransactionTotalGrandAmount",
    ) - sum(
        &journals,
        "RefundEvent/TransactionSummary/TransactionTotalGrandAmount",
    );
    let offline_flags = journals
        .iter()
        .filter(|(p, _)| p.ends_with("Authorization/AuthorizationResponseCode"))
        .count();
    assert_eq!(
        offline_flags, 4,
        "each card tender carries its authorization"
    );

    let mcm = read("MCM");
    let tlm = read("TLM");
    let mcm_net =
        sum(&mcm, "MCMSalesTotals/SalesAmount") - sum(&mcm, "MCMSalesTotals/RefundAmount");
    let tlm_net =
        sum(&tlm, "TLMDetail/TaxCollectedAmount") - sum(&tlm, "TLMDetail/TaxRefundedAmount");
    let msm = read("MSM");
    let msm_line = |code: &str, sub: &str| -> i64 {
        let i = msm
            .windows(3)
            .position(|w| w[0].1 == code && w[1].1 == sub)
            .unwrap_or_else(|| panic!("MSM {code}/{sub} missing"));
        cents(&msm[i + 2].1)
    };
    let ledger_net = count(
        &d.db_path(),
        "SELECT sum(CASE kind WHEN 'refund' THEN -total ELSE total END) FROM sales",
    );
    // 10 sales of 4.30, 2 refunds of 2.15.
    assert_eq!(ledger_net, 10 * 430 - 2 * 215);
    assert_eq!(journal_net, ledger_net, "journals");
    assert_eq!(msm_line("totalizer", "netSales"), ledger_net, "MSM net");
    assert_eq!(mcm_net + tlm_net, ledger_net, "MCM + TLM");
    assert_eq!(msm_line("totalizer", "sales"), 10 * 430);
    assert_eq!(msm_line("totalizer", "refunds"), 2 * 215);
    assert_eq!(msm_line("statistics", "offlineTransactions"), 4 * 430);
    assert_eq!(msm_line("statistics", "offlineCardApprovals"), 4 * 430);
    let ism = read("ISM");
    assert_eq!(
        sum(&ism, "ISMSalesTotals/SalesAmount") - sum(&ism, "ISMSalesTotals/RefundAmount"),
        mcm_net
    );
}

#[tokio::test]
async fn conexxus_endpoints_list_pending_documents_and_refuse_a_future_sync() {
    let bo = FakeUpstream::start_refusing().await;
    let d = TestDaemon::start_with(&conexxus_http(&bo.url("/naxml"), "")).await;
    for i in 0..3 {
        d.post("/v1/sales", R1_TOKEN, &sale("R1", &format!("E-{i}")))
            .await;
    }
    let (code, pending) = d.get("/conexxus/pending-syncs", R1_TOKEN).await;
    assert_eq!(code, 200);
    assert_eq!(pending["pending"], 3, "{pending}");
    assert_eq!(pending["documents"][0]["kind"], "naxml_sale");
    assert!(pending["documents"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("PJR"));

    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Duration::days(2)).to_string();
    let (code, body) = d
        .post(
            "/conexxus/sync",
            ADMIN_TOKEN,
            &json!({"business_date": tomorrow}),
        )
        .await;
    assert_eq!((code, error_code(&body)), (422, "business_date_in_future"));
    let (code, _) = d.post("/conexxus/sync", R1_TOKEN, &json!({})).await;
    assert_eq!(code, 403);
    let (code, queued) = d.post("/conexxus/sync", ADMIN_TOKEN, &json!({})).await;
    assert_eq!(code, 202, "{queued}");
    assert_eq!(queued["trigger"], "manual");
    let (_, pending) = d.get("/conexxus/pending-syncs", R1_TOKEN).await;
    assert_eq!(pending["pending"], 7);

    bo.restore().await;
    conexxus_drained(&d).await;
    let names: Vec<String> = bo
        .posts()
        .iter()
        .filter(|p| p.answered == Some(200))
        .map(|p| p.document.clone().unwrap_or_default())
        .collect();
    // In order: the three journals, then MCM, TLM, MSM, ISM.
    let kinds: Vec<&str> = names.iter().map(|n| &n[..3]).collect();
    assert_eq!(kinds, ["PJR", "PJR", "PJR", "MCM", "TLM", "MSM", "ISM"]);
    let (_, health) = d.get("/conexxus/health", R1_TOKEN).await;
    assert_eq!(health["transport"], "http");
    assert_eq!(health["pending"], 0);
    assert_eq!(health["link"]["status"], "online");
}

#[tokio::test]
async fn a_sales_kind_and_business_date_cannot_be_rewritten_and_a_requested_sync_is_audited() {
    let d = TestDaemon::start().await;
    assert_eq!(
        d.post("/v1/sales", R1_TOKEN, &sale("R1", "FIX-1")).await.0,
        201
    );
    let db = d.db_path();
    let conn = rusqlite::Connection::open(&db).unwrap();
    for sql in [
        "UPDATE sales SET kind = 'refund'",
        "UPDATE sales SET business_date = '2001-01-01'",
        "UPDATE sales SET created_at = '2001-01-01T00:00:00.000Z'",
        "UPDATE eod_syncs SET trigger = 'manual'",
    ] {
        match conn.execute(sql, []) {
            Err(e) => assert!(e.to_string().contains("never"), "{sql}: {e}"),
            // eod_syncs is still empty: nothing to refuse yet.
            Ok(n) => assert_eq!(n, 0, "{sql} rewrote {n} rows"),
        }
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sales WHERE kind = 'sale' AND business_date != '2001-01-01'"
        ),
        1
    );

    let (code, _) = d.post("/conexxus/sync", ADMIN_TOKEN, &json!({})).await;
    assert_eq!(code, 202);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit WHERE kind = 'eod_sync_requested' AND actor = 'tech'"
        ),
        1
    );
    let err = conn
        .execute("UPDATE eod_syncs SET trigger = 'schedule'", [])
        .unwrap_err();
    assert!(err.to_string().contains("never"), "{err}");
    let chain = posedge::audit::verify(&conn).unwrap();
    assert!(chain.rows >= 1);
    assert_eq!(
        chain.first_broken, None,
        "the sync's audit row breaks the chain"
    );
}
