//! Store-and-forward against a fake back office: outages, recovery, retries, dead rows,
//! crashes during a flush, forced offline, flapping links.

use crate::fake_upstream::{FakeUpstream, Fault};
use crate::util::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

async fn queue(d: &TestDaemon) -> Value {
    d.client
        .get(d.url("/health/offline-queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn network(d: &TestDaemon) -> Value {
    d.client
        .get(d.url("/health/network"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn drained(d: &TestDaemon) {
    eventually(Duration::from_secs(20), "the outbox to drain", || async {
        let q = queue(d).await;
        (q["pending"] == 0 && q["in_flight"] == 0).then_some(())
    })
    .await;
}

fn keys_in_db(d: &TestDaemon) -> Vec<String> {
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT idempotency_key FROM outbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn counts(keys: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for k in keys {
        *m.entry(k.as_str()).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn an_outage_queues_sales_unseen_and_recovery_delivers_each_exactly_once() {
    let bo = FakeUpstream::start_refusing().await;
    let d = TestDaemon::start_with(&conexxus_http(&bo.url("/naxml"), "")).await;
    eventually(Duration::from_secs(5), "conexxus offline", || async {
        (network(&d).await["upstreams"]["conexxus"]["status"] == "offline").then_some(())
    })
    .await;
    for i in 0..30 {
        assert_eq!(
            d.post("/v1/sales", R1_TOKEN, &sale("R1", &format!("OUT-{i}")))
                .await
                .0,
            201
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        bo.ledger().is_empty(),
        "the back office was contacted during the outage"
    );
    let q = queue(&d).await;
    assert_eq!(q["pending"], 30, "{q}");
    assert_eq!(q["by_kind"]["naxml_sale"]["pending"], 30);
    let (_, status) = d.get("/v1/status", R1_TOKEN).await;
    assert_eq!(status["mode"], "offline");
    assert_eq!(status["outbox"]["pending"], 30);

    bo.restore().await;
    drained(&d).await;
    let accepted = bo.accepted_keys();
    let per_key = counts(&accepted);
    assert_eq!(per_key.len(), 30);
    assert!(
        per_key.values().all(|n| *n == 1),
        "a document was delivered twice: {per_key:?}"
    );
    let mut expected = keys_in_db(&d);
    expected.sort();
    let mut got: Vec<String> = per_key.keys().map(|k| k.to_string()).collect();
    got.sort();
    assert_eq!(got, expected);
    let posts = bo.posts();
    assert!(
        posts[0].body.contains("<NAXML-POSJournal"),
        "{}",
        posts[0].body
    );
    assert!(posts[0].document.as_deref().unwrap().starts_with("PJR"));
    assert_eq!(
        network(&d).await["upstreams"]["conexxus"]["status"],
        "online"
    );
}

#[tokio::test]
async fn recovery_sends_higher_priority_rows_first_then_oldest_first() {
    let bo = FakeUpstream::start_refusing().await;
    let one_lane = "max_concurrent = 1";
    let cfg = |prio: u32| {
        conexxus_http(&bo.url("/naxml"), &format!("sync_priority = {prio}"))
            .replace("max_concurrent = 5", one_lane)
    };
    let d = TestDaemon::start_with(&cfg(3)).await;
    for i in 0..5 {
        d.post("/v1/sales", R1_TOKEN, &sale("R1", &format!("LOW-{i}")))
            .await;
    }
    let dir = d.stop().await;
    let d = TestDaemon::start_in(dir, &cfg(9)).await;
    for i in 0..5 {
        d.post("/v1/sales", R1_TOKEN, &sale("R1", &format!("HIGH-{i}")))
            .await;
    }
    let keys = keys_in_db(&d);
    bo.restore().await;
    drained(&d).await;
    // The five later, higher-priority rows first, each group oldest first.
    let mut expected: Vec<String> = keys[5..].to_vec();
    expected.extend_from_slice(&keys[..5]);
    assert_eq!(bo.accepted_keys(), expected);
}

#[tokio::test]
async fn failures_of_every_kind_are_retried_with_the_same_key_until_delivered() {
    let bo = FakeUpstream::start().await;
    bo.script([
        Fault::Status(500),
        Fault::Status(503),
        Fault::Reset,
        Fault::Stall(Duration::from_millis(1500)),
        Fault::Status(409),
    ]);
    let cfg =
        conexxus_http(&bo.url("/naxml"), "").replace("max_concurrent = 5", "max_concurrent = 1");
    let d = TestDaemon::start_with(&cfg).await;
    assert_eq!(
        d.post("/v1/sales", R1_TOKEN, &sale("R1", "RETRY-1"))
            .await
            .0,
        201
    );
    drained(&d).await;
    let posts = bo.posts();
    let answered: Vec<Option<u16>> = posts.iter().map(|p| p.answered).collect();
    assert_eq!(
        answered,
        [Some(500), Some(503), None, Some(200), Some(409), Some(200)]
    );
    let key = posts[0].key.clone().unwrap();
    assert!(
        posts.iter().all(|p| p.key.as_ref() == Some(&key)),
        "the key changed between attempts"
    );
    assert_eq!(keys_in_db(&d), [key]);
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_next_attempt() {
    let bo = FakeUpstream::start().await;
    bo.script([Fault::RetryAfter(429, 2)]);
    let d = TestDaemon::start_with(&conexxus_http(&bo.url("/naxml"), "")).await;
    d.post("/v1/sales", R1_TOKEN, &sale("R1", "RA-1")).await;
    drained(&d).await;
    let posts = bo.posts();
    assert_eq!(posts.len(), 2);
    let gap = posts[1].at - posts[0].at;
    assert!(
        gap >= Duration::from_millis(1950),
        "retried after {gap:?}, Retry-After said 2 s"
    );
}

#[tokio::test]
async fn a_row_that_keeps_failing_goes_dead_and_retry_failed_revives_it_with_its_key() {
    let bo = FakeUpstream::start().await;
    bo.set_default(Some(Fault::Status(500)));
    let d = TestDaemon::start_with(&conexxus_http(&bo.url("/naxml"), "max_retries = 3")).await;
    d.post("/v1/sales", R1_TOKEN, &sale("R1", "DEAD-1")).await;
    eventually(Duration::from_secs(10), "the row to die", || async {
        (queue(&d).await["dead"] == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bo.posts().len(), 3, "a dead row was tried again");
    let (status, rows) = d.get("/admin/outbox?state=dead", ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    assert!(rows["rows"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    // Registers may not revive rows; technicians may.
    assert_eq!(
        d.post("/admin/offline-queue/retry-failed", R1_TOKEN, &json!({}))
            .await
            .0,
        403
    );
    bo.set_default(None);
    let (status, revived) = d
        .post("/admin/offline-queue/retry-failed", ADMIN_TOKEN, &json!({}))
        .await;
    assert_eq!((status, &revived["revived"]), (200, &json!(1)));
    drained(&d).await;
    let posts = bo.posts();
    assert_eq!(posts.len(), 4);
    assert_eq!(posts[3].key, posts[0].key);
    assert_eq!(posts[3].answered, Some(200));
    assert_eq!(
        count(
            &d.db_path(),
            "SELECT count(*) FROM audit WHERE kind = 'outbox_retry'"
        ),
        1
    );
}

#[tokio::test]
async fn process_now_ignores_backoff_timers() {
    let bo = FakeUpstream::start().await;
    bo.script([Fault::Status(500)]);
    let cfg = conexxus_http(&bo.url("/naxml"), "")
        .replace("backoff_base = \"50ms\"", "backoff_base = \"10m\"")
        .replace("backoff_max = \"200ms\"", "backoff_max = \"10m\"");
    let d = TestDaemon::start_with(&cfg).await;
    d.post("/v1/sales", R1_TOKEN, &sale("R1", "NOW-1")).await;
    eventually(Duration::from_secs(5), "the first attempt", || async {
        (!bo.posts().is_empty()).then_some(())
    })
    .await;
    // Full jitter can pick a short delay; only a long one proves the point, so retry the draw.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if bo.posts().len() == 1 {
        let (status, _) = d
            .post("/admin/offline-queue/process", ADMIN_TOKEN, &json!({}))
            .await;
        assert_eq!(status, 200);
        drained(&d).await;
    }
    assert_eq!(bo.accepted_keys().len(), 1);
}

#[tokio::test]
async fn forced_offline_holds_everything_survives_a_restart_and_auto_releases_it() {
    let bo = FakeUpstream::start().await;
    let cfg = conexxus_http(&bo.url("/naxml"), "");
    let d = TestDaemon::start_with(&cfg).await;
    let (status, net) = d
        .post(
            "/admin/network/mode",
            ADMIN_TOKEN,
            &json!({"mode": "offline", "upstream": "conexxus"}),
        )
        .await;
    assert_eq!(status, 200, "{net}");
    assert_eq!(net["upstreams"]["conexxus"]["status"], "offline");
    assert_eq!(net["upstreams"]["conexxus"]["forced"], true);
    assert_eq!(
        d.post("/admin/network/mode", R1_TOKEN, &json!({"mode": "offline"}))
            .await
            .0,
        403
    );
    let (status, body) = d
        .post(
            "/admin/network/mode",
            ADMIN_TOKEN,
            &json!({"mode": "sideways"}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_field"));
    d.post("/v1/sales", R1_TOKEN, &sale("R1", "F-1")).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(bo.posts().is_empty(), "sent while forced offline");

    let dir = d.stop().await;
    let d = TestDaemon::start_in(dir, &cfg).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        network(&d).await["upstreams"]["conexxus"]["forced"],
        true,
        "forgotten across a restart"
    );
    assert!(
        bo.posts().is_empty(),
        "sent after a restart while forced offline"
    );

    let (status, _) = d
        .post("/admin/network/mode", ADMIN_TOKEN, &json!({"mode": "auto"}))
        .await;
    assert_eq!(status, 200);
    drained(&d).await;
    assert_eq!(bo.accepted_keys().len(), 1);
    let audited = count(
        &d.db_path(),
        "SELECT count(*) FROM audit WHERE kind = 'network_mode'",
    );
    assert_eq!(audited, 2);
    let verify = posedge::audit::verify(&rusqlite::Connection::open(d.db_path()).unwrap()).unwrap();
    assert_eq!(verify.first_broken, None);
}

#[tokio::test]
async fn a_flapping_link_does_not_flap_the_status() {
    let bo = FakeUpstream::start().await;
    let d = TestDaemon::start_with(&conexxus_http(&bo.url("/naxml"), "")).await;
    eventually(Duration::from_secs(5), "conexxus online", || async {
        (network(&d).await["upstreams"]["conexxus"]["status"] == "online").then_some(())
    })
    .await;
    let since = network(&d).await["upstreams"]["conexxus"]["since"].clone();
    bo.set_probe_cycle(vec![Fault::Reset, Fault::Status(200)]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probes = bo.ledger().iter().filter(|r| r.method == "GET").count();
    assert!(probes >= 8, "only {probes} probes in 3 s");
    let net = network(&d).await;
    assert_eq!(net["upstreams"]["conexxus"]["status"], "online");
    assert_eq!(
        net["upstreams"]["conexxus"]["since"], since,
        "the status changed and changed back"
    );
    // A link that stays down does go offline.
    bo.refuse();
    eventually(Duration::from_secs(5), "conexxus offline", || async {
        (network(&d).await["upstreams"]["conexxus"]["status"] == "offline").then_some(())
    })
    .await;
    let transitions = count(
        &d.db_path(),
        "SELECT count(*) FROM audit WHERE kind = 'network_transition'",
    );
    assert!(transitions >= 2, "transitions are audited");
}

#[tokio::test]
async fn without_upstreams_the_status_says_unconfigured_never_online() {
    let d = TestDaemon::start().await;
    let net = network(&d).await;
    assert_eq!(net["status"], "unconfigured");
    assert_eq!(net["upstreams"]["stripe"]["status"], "unconfigured");
    assert_eq!(net["upstreams"]["conexxus"]["status"], "unconfigured");
}

#[tokio::test]
async fn a_deep_queue_raises_one_alert_and_clears_it_when_drained() {
    let bo = FakeUpstream::start_refusing().await;
    let cfg = format!(
        "{}\n[alerts]\nqueue_depth = 2\n",
        conexxus_http(&bo.url("/naxml"), "")
    );
    let d = TestDaemon::start_with(&cfg).await;
    for i in 0..3 {
        d.post("/v1/sales", R1_TOKEN, &sale("R1", &format!("AL-{i}")))
            .await;
    }
    let alert = eventually(Duration::from_secs(12), "the queue_depth alert", || async {
        let (_, s) = d.get("/v1/status", R1_TOKEN).await;
        s["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["alert"] == "queue_depth").cloned())
    })
    .await;
    assert!(alert["message"]
        .as_str()
        .unwrap()
        .contains("3 outbox rows pending"));
    let metrics = d
        .client
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("posedge_alert_active{alert=\"queue_depth\"} 1"),
        "{metrics}"
    );
    bo.restore().await;
    drained(&d).await;
    eventually(Duration::from_secs(12), "the alert to clear", || async {
        let q = queue(&d).await;
        q["alerts"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    })
    .await;
}

#[test]
fn kill_9_during_a_flush_resends_in_flight_rows_with_the_same_keys() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bo = rt.block_on(FakeUpstream::start());
    bo.set_latency(Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let cfg = conexxus_http(&bo.url("/naxml"), "");
    let daemon = BinaryDaemon::start(dir.path(), &cfg);
    let url = format!("http://{}/v1/sales", daemon.addr);
    rt.block_on(async {
        let c = reqwest::Client::new();
        for i in 0..10 {
            let r = c
                .post(&url)
                .bearer_auth(R1_TOKEN)
                .json(&sale("R1", &format!("KF-{i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
        eventually(Duration::from_secs(5), "a send in flight", || async {
            (!bo.posts().is_empty()).then_some(())
        })
        .await;
    });
    daemon.kill9();
    let before: Vec<String> = bo.posts().into_iter().filter_map(|p| p.key).collect();
    let db = dir.path().join("posedge.db");
    let leased = count(&db, "SELECT count(*) FROM outbox WHERE state = 'in_flight'");
    assert!(leased > 0, "nothing was in flight at the kill");

    bo.set_latency(Duration::ZERO);
    let daemon = BinaryDaemon::start(dir.path(), &cfg);
    rt.block_on(eventually(
        Duration::from_secs(20),
        "the drain after restart",
        || async {
            (count(
                &db,
                "SELECT count(*) FROM outbox WHERE state != 'delivered'",
            ) == 0)
                .then_some(())
        },
    ));
    let accepted = bo.accepted_keys();
    let all: Vec<String> = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut s = conn.prepare("SELECT idempotency_key FROM outbox").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    for key in &all {
        assert!(accepted.contains(key), "{key} never delivered");
    }
    for key in &before {
        assert!(
            all.contains(key),
            "a key sent before the crash is not an outbox key: {key}"
        );
    }
    // Keys are only ever the outbox's: re-sends reuse them, nothing new was minted.
    assert!(bo
        .posts()
        .iter()
        .all(|p| all.contains(p.key.as_ref().unwrap())));
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn sigterm_waits_for_sends_in_flight_and_leaves_the_rest_pending() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bo = rt.block_on(FakeUpstream::start());
    bo.set_latency(Duration::from_millis(700));
    let dir = tempfile::tempdir().unwrap();
    let url = bo.url("/naxml");
    let cfg = conexxus_http(&url, "")
        .replace(
            &format!("url = \"{url}\"\ntimeout = \"1s\""),
            &format!("url = \"{url}\"\ntimeout = \"5s\""),
        )
        .replace("max_concurrent = 5", "max_concurrent = 2");
    assert!(cfg.contains("timeout = \"5s\""));
    let daemon = BinaryDaemon::start(dir.path(), &cfg);
    let url = format!("http://{}/v1/sales", daemon.addr);
    rt.block_on(async {
        let c = reqwest::Client::new();
        for i in 0..20 {
            c.post(&url)
                .bearer_auth(R1_TOKEN)
                .json(&sale("R1", &format!("ST-{i}")))
                .send()
                .await
                .unwrap();
        }
        eventually(Duration::from_secs(5), "two sends in flight", || async {
            (bo.posts().len() >= 2).then_some(())
        })
        .await;
    });
    let code = daemon.terminate();
    assert_eq!(code, Some(0));
    let db = dir.path().join("posedge.db");
    let delivered = count(&db, "SELECT count(*) FROM outbox WHERE state = 'delivered'");
    let pending = count(&db, "SELECT count(*) FROM outbox WHERE state = 'pending'");
    assert_eq!(
        count(&db, "SELECT count(*) FROM outbox WHERE state = 'in_flight'"),
        0,
        "a lease outlived a graceful stop"
    );
    assert_eq!(delivered + pending, 20);
    // What the back office answered before we stopped is recorded as delivered; nothing more.
    assert_eq!(delivered as usize, bo.accepted_keys().len());
    assert!(
        pending > 0,
        "everything drained before the stop: the test proves nothing"
    );
}

#[tokio::test]
async fn delivered_rows_are_pruned_after_the_retention_period_and_nothing_else_is() {
    let bo = FakeUpstream::start().await;
    bo.script([Fault::Status(400)]);
    let cfg = conexxus_http(&bo.url("/naxml"), "").replace(
        "process_interval = \"1s\"",
        "process_interval = \"1s\"\nretention_days = 0",
    );
    assert!(cfg.contains("retention_days = 0"));
    let d = TestDaemon::start_with(&cfg).await;
    for i in 0..4 {
        d.post("/v1/sales", R1_TOKEN, &sale("R1", &format!("PR-{i}")))
            .await;
    }
    // One row is refused for good (a 400 is permanent) and stays, dead, for a technician.
    eventually(
        Duration::from_secs(10),
        "three delivered rows pruned",
        || async {
            let delivered = count(
                &d.db_path(),
                "SELECT count(*) FROM outbox WHERE state = 'delivered'",
            );
            let total = count(&d.db_path(), "SELECT count(*) FROM outbox");
            (bo.accepted_keys().len() == 3 && delivered == 0 && total == 1).then_some(())
        },
    )
    .await;
    assert_eq!(
        count(
            &d.db_path(),
            "SELECT count(*) FROM outbox WHERE state = 'dead'"
        ),
        1
    );
    assert_eq!(
        count(&d.db_path(), "SELECT count(*) FROM sales"),
        4,
        "the ledger lost sales"
    );
}
