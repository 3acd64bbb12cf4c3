//! Small durable settings (key → JSON text): forced network modes, the dispatcher clock.
//! Written only inside the writer's transactions, beside the audit row that explains them.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

pub fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

pub fn set(tx: &Transaction<'_>, key: &str, value: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

pub fn delete(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM settings WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}
