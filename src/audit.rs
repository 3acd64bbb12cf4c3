//! The audit trail: append-only and hash-chained (invariant 10).
//!
//! Every offline decision, approval, limit change, forward, network transition and manual
//! intervention is a row carrying the network status at that moment. Each row's hash covers
//! its id, its content and the previous row's hash, so editing, deleting or reordering any
//! row breaks the chain from that row on; [`verify`] names the first broken row. Triggers in
//! the schema refuse UPDATE and DELETE outright; the chain catches what bypasses them.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry to append.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub kind: &'a str,
    pub actor: &'a str,
    pub subject: Option<&'a str>,
    /// The network status at that moment (from the probe).
    pub network: Value,
    pub details: Value,
}

fn row_hash(id: i64, at: &str, e: &Entry<'_>, network: &str, details: &str, prev: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &id.to_string(),
        at,
        e.kind,
        e.actor,
        e.subject.unwrap_or(""),
        network,
        details,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends `entry` inside the caller's transaction; returns its id.
pub fn append(tx: &Transaction<'_>, entry: &Entry<'_>) -> rusqlite::Result<i64> {
    let last: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let at = crate::business_day::rfc3339(chrono::Utc::now());
    let network = entry.network.to_string();
    let details = entry.details.to_string();
    let hash = row_hash(id, &at, entry, &network, &details, &prev);
    tx.prepare_cached(
        "INSERT INTO audit (id, at, kind, actor, subject, network, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        at,
        entry.kind,
        entry.actor,
        entry.subject,
        network,
        details,
        prev,
        hash
    ])?;
    Ok(id)
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub rows: i64,
    /// The id of the first row whose hash or link does not hold.
    pub first_broken: Option<i64>,
}

/// Recomputes every hash in id order.
pub fn verify(conn: &Connection) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare(
        "SELECT id, at, kind, actor, subject, network, details, prev_hash, hash FROM audit ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS.to_string();
    let mut expected_id = 1;
    let mut count = 0;
    while let Some(r) = rows.next()? {
        count += 1;
        let id: i64 = r.get(0)?;
        let at: String = r.get(1)?;
        let kind: String = r.get(2)?;
        let actor: String = r.get(3)?;
        let subject: Option<String> = r.get(4)?;
        let network: String = r.get(5)?;
        let details: String = r.get(6)?;
        let prev: String = r.get(7)?;
        let hash: String = r.get(8)?;
        let entry = Entry {
            kind: &kind,
            actor: &actor,
            subject: subject.as_deref(),
            network: Value::Null,
            details: Value::Null,
        };
        let recomputed = row_hash(id, &at, &entry, &network, &details, &prev);
        if id != expected_id || prev != expected_prev || recomputed != hash {
            return Ok(Verification {
                rows: count,
                first_broken: Some(id),
            });
        }
        expected_prev = hash;
        expected_id = id + 1;
    }
    Ok(Verification {
        rows: count,
        first_broken: None,
    })
}

/// One exported row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub subject: Option<String>,
    pub network: String,
    pub details: String,
    pub hash: String,
}

/// Rows with `from <= at < to` (RFC 3339 UTC strings compare in time order), in id order.
pub fn export(conn: &Connection, from: &str, to: &str) -> rusqlite::Result<Vec<Exported>> {
    conn.prepare(
        "SELECT id, at, kind, actor, subject, network, details, hash FROM audit
         WHERE at >= ?1 AND at < ?2 ORDER BY id",
    )?
    .query_map(params![from, to], |r| {
        Ok(Exported {
            id: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            actor: r.get(3)?,
            subject: r.get(4)?,
            network: r.get(5)?,
            details: r.get(6)?,
            hash: r.get(7)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut conn = crate::store::open_rw(&path).unwrap();
        crate::store::migrate::run(&mut conn, &path, dir.path()).unwrap();
        (dir, conn)
    }

    fn add(conn: &mut Connection, n: usize) {
        for i in 0..n {
            let tx = conn.transaction().unwrap();
            append(
                &tx,
                &Entry {
                    kind: "test",
                    actor: "tech",
                    subject: Some("x"),
                    network: json!({"mode": "offline"}),
                    details: json!({"i": i}),
                },
            )
            .unwrap();
            tx.commit().unwrap();
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_d, mut conn) = db();
        add(&mut conn, 5);
        assert_eq!(
            verify(&conn).unwrap(),
            Verification {
                rows: 5,
                first_broken: None
            }
        );
    }

    #[test]
    fn the_schema_refuses_updates_and_deletes() {
        let (_d, mut conn) = db();
        add(&mut conn, 2);
        assert!(conn
            .execute("UPDATE audit SET actor = 'x' WHERE id = 1", [])
            .is_err());
        assert!(conn.execute("DELETE FROM audit WHERE id = 2", []).is_err());
    }

    #[test]
    fn an_edit_that_bypasses_the_triggers_is_found_at_its_row() {
        let (_d, mut conn) = db();
        add(&mut conn, 5);
        conn.execute_batch(
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET details = '{\"i\":99}' WHERE id = 3;",
        )
        .unwrap();
        assert_eq!(verify(&conn).unwrap().first_broken, Some(3));
    }

    #[test]
    fn a_deleted_row_breaks_the_chain_at_the_gap() {
        let (_d, mut conn) = db();
        add(&mut conn, 5);
        conn.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 2;")
            .unwrap();
        assert_eq!(verify(&conn).unwrap().first_broken, Some(3));
    }
}
