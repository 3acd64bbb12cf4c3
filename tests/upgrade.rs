//! Upgrading a database of an earlier release: the frozen fixture `fixtures/v1.sql` (schema V1
//! as released, with rows) opened by the current binary keeps every row, and the snapshot
//! taken before the migration is in the backup directory where `posedge backup list` shows it.

use crate::backup::posedge;
use crate::util::*;
use rusqlite::types::Value;
use std::collections::BTreeMap;
use std::path::Path;

const FIXTURE: &str = include_str!("fixtures/v1.sql");

/// The tables of schema V1 and how to order their rows.
const V1_TABLES: [(&str, &str); 7] = [
    ("sales", "id"),
    ("sale_lines", "sale_id, line_no"),
    ("sale_taxes", "sale_id, tax_code"),
    ("sale_tenders", "sale_id, tender_no"),
    ("outbox", "id"),
    ("settings", "key"),
    ("audit", "id"),
];

/// Every row of every V1 table, as (column name → value) maps, with only V1's columns.
fn dump(db: &Path, columns_of: &BTreeMap<&str, Vec<String>>) -> BTreeMap<String, Vec<Vec<Value>>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut all = BTreeMap::new();
    for (table, order) in V1_TABLES {
        let cols = columns_of[table].join(", ");
        let mut stmt = conn
            .prepare(&format!("SELECT {cols} FROM {table} ORDER BY {order}"))
            .unwrap();
        let n = columns_of[table].len();
        let rows: Vec<Vec<Value>> = stmt
            .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        all.insert(table.to_string(), rows);
    }
    all
}

fn columns(db: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    V1_TABLES
        .iter()
        .map(|(t, _)| {
            let mut stmt = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .unwrap();
            let cols = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (*t, cols)
        })
        .collect()
}

#[test]
fn a_frozen_v1_database_opened_by_this_binary_keeps_every_row_and_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("posedge.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(FIXTURE)
        .unwrap();
    let v1_columns = columns(&db);
    let before = dump(&db, &v1_columns);
    assert_eq!(before["sales"].len(), 3);
    assert_eq!(before["outbox"].len(), 3);
    assert_eq!(before["audit"].len(), 2);

    // The daemon opens it: snapshot, migrate, serve. The forced-offline setting of the
    // fixture holds (conexxus is not configured here; the row is read back all the same).
    let daemon = BinaryDaemon::start(dir.path(), "\n[probe]\ninternet_targets = []\n");
    assert_eq!(daemon.terminate(), Some(0));

    let binary = posedge::store::migrate::binary_version();
    assert_eq!(
        count(&db, "SELECT max(version) FROM refinery_schema_history"),
        binary
    );
    let after = dump(&db, &v1_columns);
    // Every fixture row is still there, unchanged. The running daemon may add rows of its
    // own (end-of-day catch-up documents for the closed dates, backup state), never drop one.
    for (table, rows) in &before {
        if table == "settings" {
            continue;
        }
        for row in rows {
            assert!(
                after[table].contains(row),
                "a row of {table} was changed or lost in the upgrade: {row:?}"
            );
        }
    }
    // Settings: every fixture key is kept; the dispatcher clock only moves forward.
    let settings_after: BTreeMap<String, String> = after["settings"]
        .iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Text(k), Value::Text(v)) => (k.clone(), v.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(settings_after["forced_offline"], "[\"conexxus\"]");
    assert!(settings_after["outbox_clock_ms"].parse::<i64>().unwrap() >= 95_000);

    // The pre-migration snapshot: in the backup directory, the fixture exactly, listed.
    let snapshots: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let snap = &snapshots[0];
    let name = snap.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with(&format!("posedge-pre-migration-v1-to-v{binary}-")),
        "{name}"
    );
    assert_eq!(dump(snap, &v1_columns), before);
    assert_eq!(
        count(snap, "SELECT max(version) FROM refinery_schema_history"),
        1
    );
    let (code, list) = posedge(dir.path(), &["backup", "list"]);
    assert_eq!(code, 0, "{list}");
    assert!(
        list.contains(&name) && list.contains(&format!("pre-migration v1→v{binary}")),
        "{list}"
    );
    // And the snapshot can be put back: the way back from an upgrade.
    let (code, out) = posedge(dir.path(), &["backup", "restore", &name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        count(&db, "SELECT max(version) FROM refinery_schema_history"),
        1
    );
    assert_eq!(dump(&db, &v1_columns), before);
}
