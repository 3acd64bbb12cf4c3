//! `posedge backup now | list | restore FILE` and `posedge status`.

use super::local;
use crate::backup::{self, restore, Plan};
use crate::config::Config;
use crate::daemon::StartError;
use crate::store::{self, StoreError};
use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum BackupAction {
    /// Take a verified backup now: through the running daemon, or (daemon stopped) by
    /// reading the database directly.
    Now,
    /// The backups in the backup directory, newest first: file, time taken (UTC), size, and
    /// whether it was verified.
    List {
        /// Run `PRAGMA integrity_check` on each file now (slow on a large ledger).
        #[arg(long)]
        check: bool,
        #[arg(long)]
        json: bool,
    },
    /// Replace the database by FILE (a path, or a name in the backup directory). Refused while
    /// the daemon runs, for a file that fails `PRAGMA integrity_check`, and for a schema newer
    /// than this binary. The replaced database is kept as `posedge.db.before-restore-<time>`.
    Restore { file: PathBuf },
}

fn failed(message: String) -> StartError {
    StartError::Other(message)
}

pub fn backup(config: Option<PathBuf>, action: BackupAction) -> Result<String, StartError> {
    let config = Config::load(config.as_deref())?;
    let db = &config.resolved.database_path;
    let plan = Plan::from_config(&config);
    match action {
        BackupAction::Now => {
            let socket = &config.resolved.admin_socket;
            match local::request(socket, Method::POST, "/admin/backup", Some(json!({})))
                .map_err(failed)?
            {
                Some((200, v)) => return Ok(describe("through the daemon", &v)),
                Some((status, v)) => {
                    return Err(failed(format!(
                        "the daemon answered {status}: {}",
                        v["error"]["message"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    )))
                }
                None => {}
            }
            if !db.exists() {
                return Err(failed(format!("no database at {}", db.display())));
            }
            let conn = store::open_ro(db)?;
            let clock: i64 = crate::settings::get(&conn, crate::outbox::dispatcher::CLOCK_KEY)
                .map_err(StoreError::from)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let started = chrono::Utc::now();
            let outcome = backup::take(&conn, &plan, started);
            drop(conn);
            let attempt = backup::attempt(started, "cli", &outcome, clock);
            let mut rw = store::open_rw(db)?;
            let tx = rw.transaction().map_err(StoreError::from)?;
            backup::record(&tx, &plan, &attempt, clock).map_err(StoreError::from)?;
            tx.commit().map_err(StoreError::from)?;
            match outcome {
                Ok(_) => Ok(describe(
                    "from the database (daemon stopped)",
                    &json!(attempt),
                )),
                Err(e) => Err(StartError::Store(e)),
            }
        }
        BackupAction::List { check, json } => {
            let files = backup::list(&plan.directory, &plan.stem)?;
            let mut rows = Vec::new();
            for f in &files {
                let mut v = json!(f);
                v["verified"] = if check {
                    match store::snapshot::integrity_check(&f.path) {
                        Ok(()) => json!("ok (checked now)"),
                        Err(e) => json!(format!("FAILED: {e}")),
                    }
                } else {
                    // Only a file that passed integrity_check gets one of our names.
                    json!("yes (at creation)")
                };
                rows.push(v);
            }
            if json {
                return Ok(rows
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
            let mut out = format!(
                "{:<58} {:<25} {:>10}  {:<22} {}\n",
                "FILE", "TAKEN (UTC)", "SIZE", "ORIGIN", "VERIFIED"
            );
            for r in &rows {
                let origin = match &r["origin"] {
                    Value::String(s) => s.clone(),
                    o => format!(
                        "pre-migration v{}→v{}",
                        o["pre_migration"]["from"], o["pre_migration"]["to"]
                    ),
                };
                out.push_str(&format!(
                    "{:<58} {:<25} {:>10}  {:<22} {}\n",
                    r["file"].as_str().unwrap_or(""),
                    r["taken_at"].as_str().unwrap_or(""),
                    crate::status::bytes(r["bytes"].as_u64().unwrap_or(0)),
                    origin,
                    r["verified"].as_str().unwrap_or("")
                ));
            }
            out.push_str(&format!(
                "{} backup(s) in {}",
                rows.len(),
                plan.directory.display()
            ));
            if let Ok(state) =
                store::open_ro(db).and_then(|c| backup::load(&c).map_err(StoreError::from))
            {
                if let Some(last) = state.last.filter(|l| !l.ok) {
                    out.push_str(&format!(
                        "\nthe last attempt FAILED at {}: {}",
                        last.at,
                        last.error.unwrap_or_default()
                    ));
                }
            }
            Ok(out)
        }
        BackupAction::Restore { file } => {
            let file = resolve(&file, &plan.directory);
            if local::request(&config.resolved.admin_socket, Method::GET, "/healthz", None)
                .map_err(failed)?
                .is_some()
            {
                return Err(failed(
                    restore::RestoreError::DaemonRunning(db.display().to_string()).to_string(),
                ));
            }
            match restore::restore(db, &file) {
                Ok(r) => Ok(format!(
                    "restored {} ({}, schema v{}) into {}{}\nstart the daemon again (systemctl start posedge); it migrates an older schema after a snapshot",
                    file.display(),
                    crate::status::bytes(r.bytes),
                    r.schema_version,
                    db.display(),
                    r.kept
                        .map(|k| format!("; the replaced database is kept as {}", k.display()))
                        .unwrap_or_default()
                )),
                Err(restore::RestoreError::Refused(e)) => Err(StartError::Store(match e {
                    StoreError::Io(m) => StoreError::Io(format!("refused: {m}")),
                    other => other,
                })),
                Err(restore::RestoreError::Failed(e)) => Err(StartError::Store(e)),
                Err(e) => Err(failed(e.to_string())),
            }
        }
    }
}

/// A bare name that is not a file here is looked up in the backup directory.
fn resolve(file: &Path, dir: &Path) -> PathBuf {
    if !file.exists() && file.components().count() == 1 && dir.join(file).exists() {
        return dir.join(file);
    }
    file.to_path_buf()
}

fn describe(how: &str, v: &Value) -> String {
    format!(
        "backup {} taken {how}: {} in {} ms, verified",
        v["file"].as_str().unwrap_or("?"),
        crate::status::bytes(v["bytes"].as_u64().unwrap_or(0)),
        v["took_ms"]
    )
}

/// `posedge status`: the document, the screen (or JSON) and the exit code.
pub fn status(config: Option<PathBuf>, as_json: bool) -> Result<(String, u8), StartError> {
    let config = Config::load(config.as_deref())?;
    let db = &config.resolved.database_path;
    let answer = local::request(
        &config.resolved.admin_socket,
        Method::GET,
        "/admin/status",
        None,
    )
    .unwrap_or_else(|e| Some((0, json!({"error": {"message": e}}))));
    let mut doc = match answer {
        Some((200, v)) => v,
        other => {
            let mut doc = if db.exists() {
                store::open_ro(db)
                    .and_then(|c| crate::status::from_database(&c, &config, None))
                    .unwrap_or_else(|e| json!({"database": {"path": db.display().to_string(), "error": e.to_string()}}))
            } else {
                json!({"database": {"path": db.display().to_string(), "error": "no database file"}})
            };
            doc["daemon"] = match other {
                None => json!({"running": false}),
                Some((code, v)) => json!({
                    "running": true,
                    "writer": format!("unknown: the daemon answered {code}: {}", v["error"]["message"].as_str().unwrap_or("?")),
                }),
            };
            doc
        }
    };
    let (code, health, reasons) = crate::status::verdict(&doc);
    doc["health"] = json!({"status": health, "exit_code": code, "reasons": reasons});
    let text = if as_json {
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    } else {
        crate::status::render(&doc)
    };
    Ok((text, code))
}
