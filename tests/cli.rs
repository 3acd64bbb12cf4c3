//! The technician CLI against the real binary: through the running daemon's admin socket,
//! and straight on the database when the daemon is stopped.

use crate::fake_upstream::{FakeUpstream, Fault};
use crate::util::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn posedge(dir: &Path, args: &[&str]) -> (i32, String) {
    let config = dir.join("config.toml");
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--config", config.to_str().unwrap()]);
    let out = Command::new(posedge_bin()).args(&full).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn get_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        reqwest::get(format!("http://{addr}{path}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn network_and_outbox_commands_act_through_the_running_daemon() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bo = rt.block_on(FakeUpstream::start());
    bo.set_default(Some(Fault::Status(500)));
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(
        dir.path(),
        &conexxus_http(&bo.url("/naxml"), "max_retries = 1"),
    );
    rt.block_on(async {
        let c = reqwest::Client::new();
        for i in 0..2 {
            let url = format!("http://{}/v1/sales", daemon.addr);
            assert_eq!(
                c.post(url)
                    .bearer_auth(R1_TOKEN)
                    .json(&sale("R1", &format!("C-{i}")))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                201
            );
        }
    });
    let db = dir.path().join("posedge.db");
    rt.block_on(eventually(
        Duration::from_secs(10),
        "two dead rows",
        || async {
            (count(&db, "SELECT count(*) FROM outbox WHERE state = 'dead'") == 2).then_some(())
        },
    ));

    let (code, out) = posedge(dir.path(), &["outbox", "list", "--state", "dead"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("naxml_sale") && out.contains("HTTP 500") && out.contains("2 rows"),
        "{out}"
    );
    let (code, out) = posedge(dir.path(), &["outbox", "show", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\"idempotency_key\": \"naxml-sale:sale_"),
        "{out}"
    );

    let (code, out) = posedge(
        dir.path(),
        &["outbox", "discard", "2", "--reason", "duplicate test sale"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("through the daemon"), "{out}");
    bo.set_default(None);
    let (code, out) = posedge(dir.path(), &["outbox", "retry", "--all"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("revived 1 row(s) through the daemon"), "{out}");
    rt.block_on(eventually(
        Duration::from_secs(10),
        "the revived row delivered",
        || async {
            (count(&db, "SELECT count(*) FROM outbox WHERE state = 'delivered'") == 1).then_some(())
        },
    ));
    assert_eq!(
        count(&db, "SELECT count(*) FROM outbox WHERE state = 'discarded'"),
        1
    );

    let (code, out) = posedge(dir.path(), &["network", "offline", "conexxus"]);
    assert_eq!(code, 0, "{out}");
    let net = get_json(daemon.addr, "/health/network");
    assert_eq!(net["upstreams"]["conexxus"]["forced"], true);
    let (code, _) = posedge(dir.path(), &["network", "auto"]);
    assert_eq!(code, 0);
    assert_eq!(
        get_json(daemon.addr, "/health/network")["upstreams"]["conexxus"]["forced"],
        false
    );
    let (code, out) = posedge(dir.path(), &["network", "offline", "moon"]);
    assert_ne!(code, 0);
    assert!(out.contains("unknown upstream"), "{out}");

    assert_eq!(daemon.terminate(), Some(0));
    assert!(
        !dir.path().join("posedge.sock").exists(),
        "the admin socket outlived the daemon"
    );
    let kinds = ["outbox_discard", "outbox_retry", "network_mode"];
    for kind in kinds {
        assert!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM audit WHERE kind = '{kind}' AND actor = 'local-cli'"
                )
            ) >= 1,
            "{kind} not audited"
        );
    }
}

#[test]
fn with_the_daemon_stopped_changes_go_to_the_database_and_hold_at_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(dir.path(), "");
    assert_eq!(daemon.terminate(), Some(0));
    let (code, out) = posedge(dir.path(), &["network", "offline", "stripe"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("daemon stopped") && out.contains("stripe"),
        "{out}"
    );
    let (code, out) = posedge(dir.path(), &["network", "show"]);
    assert!(code == 0 && out.contains("stripe"), "{out}");
    let daemon = BinaryDaemon::start(dir.path(), "");
    let net = get_json(daemon.addr, "/health/network");
    assert_eq!(net["upstreams"]["stripe"]["forced"], true, "{net}");
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn audit_verify_passes_an_intact_chain_and_names_the_first_edited_row() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(dir.path(), "");
    assert_eq!(daemon.terminate(), Some(0));
    for u in ["stripe", "conexxus", "internet"] {
        assert_eq!(posedge(dir.path(), &["network", "offline", u]).0, 0);
    }
    let (code, out) = posedge(dir.path(), &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit trail intact"), "{out}");
    let today = chrono::Utc::now().date_naive();
    let from = today.to_string();
    let to = today.succ_opt().unwrap().to_string();
    let (code, csv) = posedge(
        dir.path(),
        &["audit", "export", "--from", &from, "--to", &to],
    );
    assert_eq!(code, 0, "{csv}");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,at,kind,actor,subject,network,details,hash")
    );
    assert_eq!(
        lines.filter(|l| l.contains(",network_mode,")).count(),
        3,
        "{csv}"
    );
    let (code, jsonl) = posedge(
        dir.path(),
        &["audit", "export", "--from", &from, "--format", "jsonl"],
    );
    assert_eq!(code, 0);
    let kinds: Vec<String> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "network_mode").count(), 3);
    let (_, none) = posedge(
        dir.path(),
        &[
            "audit",
            "export",
            "--from",
            "2000-01-01",
            "--to",
            "2000-01-02",
        ],
    );
    assert_eq!(none.trim(), "", "rows outside the range were exported");
    let db = dir.path().join("posedge.db");
    let target = count(
        &db,
        "SELECT min(id) FROM audit WHERE kind = 'network_mode' AND details LIKE '%conexxus%'",
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'someone else' WHERE id = {target};"
    ))
    .unwrap();
    drop(conn);
    let (code, out) = posedge(dir.path(), &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("BROKEN at row {target}")), "{out}");
}
