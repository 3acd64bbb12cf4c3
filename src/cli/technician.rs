//! `posedge outbox …`, `posedge network …`, `posedge audit verify`.

use super::local;
use crate::audit;
use crate::config::Config;
use crate::daemon::StartError;
use crate::outbox::queue;
use crate::probe::{self, Link};
use crate::store::{self, StoreError};
use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum OutboxAction {
    /// Rows, oldest first.
    List {
        /// pending, in_flight, delivered, dead or discarded
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One row in full.
    Show { id: i64 },
    /// Send dead rows again with their original idempotency keys: one row, or all.
    Retry {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Give up on a pending or dead row (it stays in the table, marked discarded; audited).
    Discard {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NetworkAction {
    /// Run as if UPSTREAM (internet, stripe, conexxus; default all) were down.
    Offline { upstream: Option<String> },
    /// Back to what the probe sees.
    Auto { upstream: Option<String> },
    /// The current view (from the daemon) or the forced set (daemon stopped).
    Show,
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Recompute the hash chain; exit 1 and name the first broken row if it does not hold.
    Verify,
    /// Write the rows of a date range (UTC; `--to` is exclusive) as CSV or JSON lines.
    Export {
        /// First day or moment, e.g. 2026-11-01 or 2026-11-01T06:00:00Z.
        #[arg(long)]
        from: String,
        /// Day or moment after the last one; default: now.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_parser = ["csv", "jsonl"], default_value = "csv")]
        format: String,
        /// File to write; default standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// `2026-11-01` → `2026-11-01T00:00:00.000Z`; RFC 3339 moments are normalised to UTC.
fn moment(s: &str) -> Result<String, StartError> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(crate::business_day::rfc3339(
            d.and_time(chrono::NaiveTime::MIN).and_utc(),
        ));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| crate::business_day::rfc3339(d.with_timezone(&chrono::Utc)))
        .map_err(|_| {
            failed(format!(
                "{s:?} is not a date (2026-11-01) or an RFC 3339 moment"
            ))
        })
}

fn failed(message: String) -> StartError {
    StartError::Other(message)
}

fn store_err(e: impl Into<StoreError>) -> StartError {
    StartError::Store(e.into())
}

/// Who ran the command, for audit rows written without the daemon.
fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

/// The network summary recorded when the daemon is not running to know better.
fn stopped_network() -> Value {
    json!({"mode": "daemon stopped"})
}

/// Calls the daemon; `Ok(None)` when it is not running. A non-2xx answer is an error.
fn daemon(
    config: &Config,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Option<Value>, StartError> {
    match local::request(&config.resolved.admin_socket, method, path, body).map_err(failed)? {
        None => Ok(None),
        Some((status, v)) if (200..300).contains(&status) => Ok(Some(v)),
        Some((status, v)) => Err(failed(format!(
            "the daemon answered {status}: {}",
            v["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        ))),
    }
}

pub fn outbox(config: Option<PathBuf>, action: OutboxAction) -> Result<String, StartError> {
    let config = Config::load(config.as_deref())?;
    let db = &config.resolved.database_path;
    match action {
        OutboxAction::List { state, limit, json } => {
            let conn = store::open_ro(db)?;
            let rows = queue::list(&conn, state.as_deref(), limit).map_err(store_err)?;
            if json {
                return Ok(rows
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
            let mut out = format!(
                "{:>8}  {:<12} {:<10} {:<10} {:>8}  {:<24} {}\n",
                "ID", "KIND", "UPSTREAM", "STATE", "ATTEMPTS", "CREATED", "LAST ERROR"
            );
            for r in &rows {
                out.push_str(&format!(
                    "{:>8}  {:<12} {:<10} {:<10} {:>8}  {:<24} {}\n",
                    r["id"],
                    r["kind"].as_str().unwrap_or(""),
                    r["upstream"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["attempts"],
                    r["created_at"].as_str().unwrap_or(""),
                    r["last_error"].as_str().unwrap_or(""),
                ));
            }
            out.push_str(&format!("{} rows", rows.len()));
            Ok(out)
        }
        OutboxAction::Show { id } => {
            let conn = store::open_ro(db)?;
            let row = queue::get(&conn, id)
                .map_err(store_err)?
                .ok_or_else(|| failed(format!("no outbox row {id}")))?;
            Ok(serde_json::to_string_pretty(&row).unwrap_or_default())
        }
        OutboxAction::Retry { id, all } => {
            if id.is_none() && !all {
                return Err(failed("name a row id, or --all for every dead row".into()));
            }
            let path = match id {
                Some(id) => format!("/admin/outbox/{id}/retry"),
                None => "/admin/offline-queue/retry-failed".into(),
            };
            if let Some(v) = daemon(&config, Method::POST, &path, Some(json!({})))? {
                return Ok(format!(
                    "revived {} row(s) through the daemon: {}",
                    v["revived"], v["ids"]
                ));
            }
            let mut conn = store::open_rw(db)?;
            let tx = conn.transaction().map_err(store_err)?;
            let ids = queue::revive_dead(&tx, id).map_err(store_err)?;
            if !ids.is_empty() {
                audit::append(
                    &tx,
                    &audit::Entry {
                        kind: "outbox_retry",
                        actor: &actor(),
                        subject: None,
                        network: stopped_network(),
                        details: json!({"revived": ids}),
                    },
                )
                .map_err(store_err)?;
            }
            tx.commit().map_err(store_err)?;
            Ok(format!(
                "revived {} row(s) in the database (daemon stopped); they go out at next start",
                ids.len()
            ))
        }
        OutboxAction::Discard { id, reason } => {
            let body = json!({"reason": reason});
            if daemon(
                &config,
                Method::POST,
                &format!("/admin/outbox/{id}/discard"),
                Some(body),
            )?
            .is_some()
            {
                return Ok(format!("discarded row {id} through the daemon"));
            }
            let mut conn = store::open_rw(db)?;
            let tx = conn.transaction().map_err(store_err)?;
            if !queue::discard(&tx, id, &reason).map_err(store_err)? {
                return Err(failed(format!(
                    "outbox row {id} does not exist or is not pending or dead"
                )));
            }
            let subject = id.to_string();
            audit::append(
                &tx,
                &audit::Entry {
                    kind: "outbox_discard",
                    actor: &actor(),
                    subject: Some(&subject),
                    network: stopped_network(),
                    details: json!({"reason": reason}),
                },
            )
            .map_err(store_err)?;
            tx.commit().map_err(store_err)?;
            Ok(format!(
                "discarded row {id} in the database (daemon stopped)"
            ))
        }
    }
}

fn links(upstream: Option<&str>) -> Result<Vec<Link>, StartError> {
    match upstream {
        None => Ok(Link::ALL.to_vec()),
        Some(u) => Link::parse(u).map(|l| vec![l]).ok_or_else(|| {
            failed(format!(
                "unknown upstream {u:?}: internet, stripe or conexxus"
            ))
        }),
    }
}

pub fn network(config: Option<PathBuf>, action: NetworkAction) -> Result<String, StartError> {
    let config = Config::load(config.as_deref())?;
    let (offline, upstream) = match &action {
        NetworkAction::Show => {
            if let Some(v) = daemon(&config, Method::GET, "/health/network", None)? {
                return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            let conn = store::open_ro(&config.resolved.database_path)?;
            let forced = probe::load_forced(&conn).map_err(store_err)?;
            let names: Vec<&str> = forced.iter().map(|l| l.as_str()).collect();
            return Ok(format!("daemon stopped; forced offline: {names:?}"));
        }
        NetworkAction::Offline { upstream } => (true, upstream.clone()),
        NetworkAction::Auto { upstream } => (false, upstream.clone()),
    };
    let which = links(upstream.as_deref())?;
    let mode = if offline { "offline" } else { "auto" };
    let mut body = json!({"mode": mode});
    if let Some(u) = &upstream {
        body["upstream"] = json!(u);
    }
    if let Some(v) = daemon(&config, Method::POST, "/admin/network/mode", Some(body))? {
        return Ok(format!(
            "{mode} through the daemon; network now: {}",
            v["status"]
        ));
    }
    let mut conn = store::open_rw(&config.resolved.database_path)?;
    let tx = conn.transaction().map_err(store_err)?;
    let forced = probe::store_forced(&tx, &actor(), &which, offline, stopped_network())
        .map_err(store_err)?;
    tx.commit().map_err(store_err)?;
    let names: Vec<&str> = forced.iter().map(|l| l.as_str()).collect();
    Ok(format!(
        "stored in the database (daemon stopped); forced offline at next start: {names:?}"
    ))
}

pub fn audit(config: Option<PathBuf>, action: AuditAction) -> Result<String, StartError> {
    let config = Config::load(config.as_deref())?;
    match action {
        AuditAction::Export {
            from,
            to,
            format,
            output,
        } => {
            let from = moment(&from)?;
            let to = match to {
                Some(t) => moment(&t)?,
                None => crate::business_day::rfc3339(chrono::Utc::now()),
            };
            let conn = store::open_ro(&config.resolved.database_path)?;
            let rows = audit::export(&conn, &from, &to).map_err(store_err)?;
            let mut buf = Vec::new();
            if format == "jsonl" {
                for r in &rows {
                    buf.extend(serde_json::to_vec(r).unwrap_or_default());
                    buf.push(b'\n');
                }
            } else {
                let mut w = csv::Writer::from_writer(&mut buf);
                for r in &rows {
                    w.serialize(r).map_err(|e| failed(e.to_string()))?;
                }
                w.flush().map_err(|e| failed(e.to_string()))?;
                drop(w);
            }
            match output {
                Some(path) => {
                    std::fs::write(&path, &buf)
                        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
                    Ok(format!(
                        "{} audit rows from {from} to {to} written to {}",
                        rows.len(),
                        path.display()
                    ))
                }
                None => Ok(String::from_utf8_lossy(&buf).trim_end().to_string()),
            }
        }
        AuditAction::Verify => {
            let conn = store::open_ro(&config.resolved.database_path)?;
            let v = audit::verify(&conn).map_err(store_err)?;
            match v.first_broken {
                None => Ok(format!("audit trail intact: {} rows", v.rows)),
                Some(id) => Err(failed(format!("audit trail BROKEN at row {id} ({} rows read): that row or one before it was edited or removed", v.rows))),
            }
        }
    }
}
