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
