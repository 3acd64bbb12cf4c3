//! The database we must not touch: newer than the binary, corrupt, or not ours.

use crate::util::*;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn digest(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn serve_once(dir: &Path) -> (Option<i32>, String) {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        config_toml(dir, &format!("127.0.0.1:{}", free_port()), "", ""),
    )
    .unwrap();
    let out = Command::new(posedge_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_database_newer_than_the_binary_stops_start_up_and_is_left_untouched() {
    let d = TestDaemon::start().await;
    assert_eq!(
        d.post("/v1/sales", R1_TOKEN, &sale("R1", "KEEP-1")).await.0,
        201
    );
    let dir = d.stop().await;
    let db = dir.path().join("posedge.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            [],
        )
        .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let before = digest(&db);
    let (code, stderr) = serve_once(dir.path());
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("schema version 999") && stderr.contains("newer"),
        "{stderr}"
    );
    assert_eq!(digest(&db), before, "the database file changed");
    assert_eq!(count(&db, "SELECT count(*) FROM sales"), 1);
}

#[test]
fn a_file_that_is_not_a_database_stops_start_up_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("posedge.db");
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let before = digest(&db);
    let (code, stderr) = serve_once(dir.path());
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("corrupt") && stderr.contains(db.to_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(digest(&db), before);
}

#[test]
fn a_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("posedge.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    let (code, stderr) = serve_once(dir.path());
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("no posedge migration history"), "{stderr}");
}

#[test]
fn the_schema_enforces_integer_money_and_known_states() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("posedge.db");
    let mut conn = posedge::store::open_rw(&db).unwrap();
    posedge::store::migrate::run(&mut conn, &db, dir.path()).unwrap();
    let bad_total = conn.execute(
        "INSERT INTO sales (id, location_id, register_id, client_txn_id, request_sha256, cashier_id,
                            currency, total, business_date, created_at)
         VALUES ('sale_x', 'l', 'R1', 't', ?1, 'c', 'USD', 4.3, '2026-11-24', 'now')",
        [&"0".repeat(64)],
    );
    assert!(bad_total.is_err(), "a fractional total was stored");
    let bad_state = conn.execute(
        "INSERT INTO outbox (kind, upstream, priority, idempotency_key, payload, state, created_at, updated_at)
         VALUES ('k', 'u', 1, 'key', '{}', 'lost', 'now', 'now')",
        [],
    );
    assert!(bad_state.is_err(), "an unknown outbox state was stored");
}

/// A database as the first schema left it: the V1 migration applied by hand, recorded in
/// refinery's history exactly as refinery records it, with a sale in it.
fn make_v1_database(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
    let v1 = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/V1__ledger_and_outbox.sql"
    ))
    .unwrap();
    conn.execute_batch(&v1).unwrap();
    // refinery's checksum of V1, as it would have stored it.
    let checksum = refinery_v1_checksum();
    conn.execute_batch(&format!(
        "CREATE TABLE refinery_schema_history (version INT4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255));
         INSERT INTO refinery_schema_history VALUES (1, 'ledger_and_outbox', '2026-11-01T00:00:00Z', '{checksum}');
         INSERT INTO sales (id, location_id, register_id, client_txn_id, request_sha256, cashier_id, currency, total, business_date, created_at)
         VALUES ('sale_OLD1', 'loc-test', 'R1', 'OLD-1', '{sha}', 'E1', 'USD', 430, '2026-11-01', '2026-11-01T12:00:00.000Z');
         INSERT INTO sale_lines VALUES ('sale_OLD1', 0, '049000050103', 'Cola', 2000, 199, 398, '101', '1');
         INSERT INTO sale_tenders VALUES ('sale_OLD1', 0, 'cash', 430, NULL);",
        sha = "a".repeat(64)
    ))
    .unwrap();
}

fn refinery_v1_checksum() -> String {
    // The daemon's own migrations embed the same file; ask a fresh database what refinery
    // writes for V1.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let mut conn = posedge::store::open_rw(&db).unwrap();
    posedge::store::migrate::run(&mut conn, &db, dir.path()).unwrap();
    conn.query_row(
        "SELECT checksum FROM refinery_schema_history WHERE version = 1",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_v1_database_is_snapshotted_then_upgraded_keeping_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("posedge.db");
    make_v1_database(&db);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_toml(dir.path(), "127.0.0.1:9", "", "")).unwrap();
    let out = Command::new(posedge_bin())
        .args(["migrate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("migrated v1 → v3"), "{text}");
    let snapshots: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let snap = &snapshots[0];
    assert!(snap
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .contains("pre-migration-v1-to-v3"));
    assert_eq!(
        count(snap, "SELECT count(*) FROM sales"),
        1,
        "the snapshot lacks the old sale"
    );
    assert_eq!(
        count(snap, "SELECT max(version) FROM refinery_schema_history"),
        1
    );
    assert_eq!(
        count(&db, "SELECT max(version) FROM refinery_schema_history"),
        3
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM sales WHERE kind = 'sale'"),
        count(&db, "SELECT count(*) FROM sales"),
        "every sale recorded before refunds existed is a sale"
    );
    assert_eq!(
        count(&db, "SELECT total FROM sales WHERE id = 'sale_OLD1'"),
        430
    );
    assert_eq!(
        count(
            &db,
            "SELECT quantity_milli FROM sale_lines WHERE sale_id = 'sale_OLD1'"
        ),
        2000
    );
    assert_eq!(count(&db, "SELECT count(*) FROM payments"), 0);
    // Running it again is a no-op.
    let again = Command::new(posedge_bin())
        .args(["migrate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("already at v3"));
}

#[tokio::test]
async fn the_schema_refuses_to_delete_or_rewrite_ledger_rows_and_payments() {
    let d = TestDaemon::start().await;
    assert_eq!(
        d.post("/v1/sales", R1_TOKEN, &sale("R1", "KEEP-2")).await.0,
        201
    );
    let cash = serde_json::json!({"client_payment_id": "P-1", "register_id": "R1", "cashier_id": "E7",
                                  "method": "cash", "amount": 500, "currency": "USD"});
    assert_eq!(d.post("/v1/payments", R1_TOKEN, &cash).await.0, 201);
    let db = d.db_path();
    let conn = rusqlite::Connection::open(&db).unwrap();
    for sql in [
        "DELETE FROM sales",
        "DELETE FROM sale_lines",
        "DELETE FROM sale_taxes",
        "DELETE FROM sale_tenders",
        "UPDATE sales SET total = 1",
        "DELETE FROM payments",
        "UPDATE payments SET amount = 1",
        "UPDATE payments SET idempotency_key = 'other'",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(
            err.contains("append-only") || err.contains("never") || err.contains("fixed"),
            "{sql}: {err}"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM sales"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM payments"), 1);
}
