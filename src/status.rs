//! `posedge status`: one document about the whole box, and its verdict as an exit code so
//! monitoring can call it.
//!
//! The document is built from the database ([`from_database`], any read connection: the
//! daemon's pool, or a read-only one of the CLI beside a stopped daemon) plus, when the
//! daemon answers on its admin socket, what only it knows (the probe's view of each upstream,
//! active alerts, whether the writer accepts work), added by `GET /admin/status`.
//!
//! # Exit codes ([`verdict`])
//!
//! - **2 down**: the daemon is not running (its admin socket does not answer), or its
//!   database writer does not answer a round-trip within a second. Nothing answers.
//! - **1 degraded**: none of the above, but the daemon's storage is not `ok` (writes refused
//!   because the disk is full or read-only, or running on the released disk reserve), or the
//!   file system holding the database has less than 16 MiB free, or a configured upstream
//!   (internet, Stripe, Conexxus) is not `online` (forced offline included), or an alert is
//!   active, or the outbox holds dead rows, or backups are enabled and the last one failed or
//!   the last good one is older than twice `[backup] interval`. The daemon is up and serves
//!   reads; something needs a look (with storage refusing writes, registers cannot record).
//! - **0 healthy**: everything else.

use crate::backup::{self, Plan};
use crate::config::Config;
use crate::outbox::queue;
use crate::store::StoreError;
use rusqlite::Connection;
use serde_json::{json, Value};
use std::path::Path;

/// Below this much free space the box is degraded: the next commits may fail.
pub const DISK_LOW_BELOW: u64 = 16 * 1024 * 1024;

/// Everything the database says. `clock_ms` is the dispatcher clock ("now" for backup
/// staleness): the daemon's live clock, or the persisted one when it is stopped.
pub fn from_database(
    conn: &Connection,
    config: &Config,
    clock_ms: Option<i64>,
) -> Result<Value, StoreError> {
    let db = &config.resolved.database_path;
    let stats = queue::stats(conn)?;
    let delivered: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE state = 'delivered'",
        [],
        |r| r.get(0),
    )?;
    let tz = config.resolved.timezone;
    let today =
        crate::business_day::business_date(chrono::Utc::now(), tz, config.resolved.day_close)
            .to_string();
    let loc = &config.store.location_id;
    let counters = crate::payments::counters(conn, loc, &today)?;
    let approved_today: i64 = conn.query_row(
        "SELECT count(*) FROM payments
         WHERE location_id = ?1 AND mode = 'offline' AND method = 'card' AND business_date = ?2
           AND status IN ('approved_offline', 'forwarding', 'captured', 'authorized',
                          'declined_upstream', 'expired')",
        [loc, &today],
        |r| r.get(0),
    )?;
    let by_status = |status: &str| -> Result<i64, StoreError> {
        Ok(conn.query_row(
            "SELECT count(*) FROM payments WHERE status = ?1",
            [status],
            |r| r.get(0),
        )?)
    };
    let limits = &config.resolved.offline;
    let clock = match clock_ms {
        Some(c) => c,
        None => crate::settings::get(conn, crate::outbox::dispatcher::CLOCK_KEY)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    let plan = Plan::from_config(config);
    let state = backup::load(conn)?;
    let problem = backup::problem(&state, &plan, clock);
    let forced: Vec<&str> = crate::probe::load_forced(conn)?
        .iter()
        .map(|l| l.as_str())
        .collect();
    Ok(json!({
        "database": {
            "path": db.display().to_string(),
            "bytes": file_len(db) + file_len(&with_suffix(db, "-wal")),
            "schema_version": crate::store::migrate::database_version(conn)?,
            "disk_free_bytes": crate::store::space::disk_free(db),
        },
        "outbox": {
            "pending": stats.pending,
            "in_flight": stats.in_flight,
            "retrying": stats.retrying,
            "dead": stats.dead,
            "delivered_kept": delivered,
            "oldest_pending_age_s": stats.oldest_pending_age_s,
            "by_kind": stats.by_kind,
        },
        "offline_payments": {
            "enabled": config.offline_payments.enabled,
            "business_date": today,
            "approved_today": approved_today,
            "today_total": counters.today_total,
            "max_daily_total": limits.max_daily_total,
            "outstanding_total": counters.outstanding_total,
            "max_outstanding_total": limits.max_outstanding_total,
            "currency": config.store.currency,
        },
        "payments": {
            "declined_upstream": by_status("declined_upstream")?,
            "expired": by_status("expired")?,
            "pending_approval": by_status("pending_approval")?,
        },
        "backup": {
            "enabled": plan.enabled,
            "interval_s": plan.interval.as_secs(),
            "directory": plan.directory.display().to_string(),
            "last": state.last,
            "last_ok": state.last_ok,
            "problem": problem,
            "upload": plan.upload.is_some(),
        },
        "forced_offline": forced,
    }))
}

fn with_suffix(p: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    p.with_file_name(name)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The verdict on a status document: `(exit code, health word, reasons)`. See the module
/// header for the definition.
pub fn verdict(doc: &Value) -> (u8, &'static str, Vec<String>) {
    let mut down = Vec::new();
    if doc["daemon"]["running"] != true {
        down.push("the daemon is not running".to_string());
    } else if doc["daemon"]["writer"] != "ok" {
        down.push("the database writer is not accepting work".to_string());
    }
    if !down.is_empty() {
        return (2, "down", down);
    }
    let mut degraded = Vec::new();
    let storage = &doc["storage"];
    match storage["reason"].as_str() {
        Some("disk_full") => degraded.push(format!(
            "WRITES REFUSED since {}: the disk holding the database is full; free space there",
            storage["since"].as_str().unwrap_or("?")
        )),
        Some("read_only") => degraded.push(format!(
            "WRITES REFUSED since {}: the file system holding the database is read-only",
            storage["since"].as_str().unwrap_or("?")
        )),
        Some("reserve_in_use") => degraded.push(
            "the disk is nearly full: the disk reserve was released so sales go on".to_string(),
        ),
        _ => {}
    }
    if let Some(free) = doc["database"]["disk_free_bytes"].as_u64() {
        if free < DISK_LOW_BELOW {
            degraded.push(format!(
                "the disk holding the database is nearly full ({} KiB free)",
                free / 1024
            ));
        }
    }
    if let Some(ups) = doc["network"]["upstreams"].as_object() {
        for (name, link) in ups {
            let status = link["status"].as_str().unwrap_or("unknown");
            if status != "online" && status != "unconfigured" {
                let forced = if link["forced"] == true {
                    " (forced)"
                } else {
                    ""
                };
                degraded.push(format!("{name} is {status}{forced}"));
            }
        }
    }
    for alert in doc["alerts"].as_array().into_iter().flatten() {
        degraded.push(format!(
            "alert {}: {}",
            alert["alert"].as_str().unwrap_or("?"),
            alert["message"].as_str().unwrap_or("")
        ));
    }
    let dead = doc["outbox"]["dead"].as_i64().unwrap_or(0);
    if dead > 0 {
        degraded.push(format!("{dead} dead outbox row(s)"));
    }
    if let Some(p) = doc["backup"]["problem"].as_str() {
        degraded.push(format!("backup: {p}"));
    }
    if degraded.is_empty() {
        (0, "healthy", Vec::new())
    } else {
        (1, "degraded", degraded)
    }
}

/// The one screen a technician reads.
pub fn render(doc: &Value) -> String {
    let (code, health, reasons) = verdict(doc);
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("posedge: {} (exit {code})", health.to_uppercase()));
    for r in &reasons {
        line(format!("  - {r}"));
    }
    let d = &doc["daemon"];
    if d["running"] == true {
        line(format!(
            "daemon      running since {}, pid {}, writer {}",
            d["started_at"].as_str().unwrap_or("?"),
            d["pid"],
            d["writer"].as_str().unwrap_or("?")
        ));
    } else {
        line("daemon      NOT RUNNING (figures below read from the database)".into());
    }
    let c = &doc["clock"];
    if c["stepped"] == true {
        line(format!(
            "clock       the wall clock ({}) stepped {} s from the monotonic clock ({}): limits, expiry and end of day take the reading that does less",
            c["wall"].as_str().unwrap_or("?"),
            c["skew_s"],
            c["monotonic"].as_str().unwrap_or("?")
        ));
    }
    let net = &doc["network"];
    if net.is_object() {
        line(format!(
            "mode        {} since {}",
            net["status"].as_str().unwrap_or("?"),
            net["since"].as_str().unwrap_or("?")
        ));
        if let Some(ups) = net["upstreams"].as_object() {
            for (name, l) in ups {
                let mut s = format!(
                    "  {name:<10}{}{} since {}",
                    l["status"].as_str().unwrap_or("?"),
                    if l["forced"] == true { " (forced)" } else { "" },
                    l["since"].as_str().unwrap_or("?")
                );
                if let Some(e) = l["last_error"].as_str() {
                    s.push_str(&format!("; last error: {e}"));
                }
                line(s);
            }
        }
    } else {
        let forced = doc["forced_offline"].to_string();
        line(format!(
            "mode        unknown (daemon stopped); forced offline: {forced}"
        ));
    }
    let o = &doc["outbox"];
    line(format!(
        "outbox      {} pending ({} retrying), {} in flight, {} dead; oldest pending {}",
        o["pending"],
        o["retrying"],
        o["in_flight"],
        o["dead"],
        age(o["oldest_pending_age_s"].as_i64().unwrap_or(0))
    ));
    let p = &doc["offline_payments"];
    let cur = p["currency"].as_str().unwrap_or("");
    line(format!(
        "offline     {} card payment(s) approved offline on {}: {} of {} {cur} today; outstanding {} of {}",
        p["approved_today"],
        p["business_date"].as_str().unwrap_or("?"),
        minor(&p["today_total"]),
        minor(&p["max_daily_total"]),
        minor(&p["outstanding_total"]),
        minor(&p["max_outstanding_total"]),
    ));
    let pay = &doc["payments"];
    line(format!(
        "payments    {} declined upstream (merchant must recover), {} expired, {} awaiting a manager",
        pay["declined_upstream"], pay["expired"], pay["pending_approval"]
    ));
    let b = &doc["backup"];
    let last = &b["last"];
    let backup_line = if b["enabled"] != true {
        "disabled".to_string()
    } else if last.is_null() {
        "none taken yet".to_string()
    } else if last["ok"] == true {
        format!(
            "ok {} {} ({})",
            last["at"].as_str().unwrap_or("?"),
            last["file"].as_str().unwrap_or("?"),
            bytes(last["bytes"].as_u64().unwrap_or(0))
        )
    } else {
        format!(
            "FAILED {}: {}",
            last["at"].as_str().unwrap_or("?"),
            last["error"].as_str().unwrap_or("?")
        )
    };
    line(format!("backup      {backup_line}"));
    let st = &doc["storage"];
    if st.is_object() {
        line(format!(
            "storage     {}{}; reserve {} ({})",
            st["status"].as_str().unwrap_or("?"),
            st["reason"]
                .as_str()
                .map(|r| format!(" ({r} since {})", st["since"].as_str().unwrap_or("?")))
                .unwrap_or_default(),
            bytes(st["reserve_bytes"].as_u64().unwrap_or(0)),
            if st["reserve_held"] == true {
                "held"
            } else {
                "released"
            }
        ));
    }
    let db = &doc["database"];
    line(format!(
        "database    {} {} (schema v{}), {} free",
        db["path"].as_str().unwrap_or("?"),
        bytes(db["bytes"].as_u64().unwrap_or(0)),
        db["schema_version"],
        db["disk_free_bytes"]
            .as_u64()
            .map(bytes)
            .unwrap_or_else(|| "?".into())
    ));
    for a in doc["alerts"].as_array().into_iter().flatten() {
        line(format!(
            "alert       {} since {}: {}",
            a["alert"].as_str().unwrap_or("?"),
            a["since"].as_str().unwrap_or("?"),
            a["message"].as_str().unwrap_or("")
        ));
    }
    out.trim_end().to_string()
}

fn minor(v: &Value) -> String {
    let n = v.as_i64().unwrap_or(0);
    format!("{}.{:02}", n / 100, (n % 100).abs())
}

fn age(s: i64) -> String {
    match s {
        0 => "-".into(),
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// `1.2 MB`-style sizes.
pub fn bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n if n < 1024 * 1024 * 1024 => format!("{:.1} MiB", n as f64 / 1048576.0),
        n => format!("{:.2} GiB", n as f64 / 1073741824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Value {
        json!({
            "daemon": {"running": true, "writer": "ok"},
            "database": {"disk_free_bytes": 1u64 << 30},
            "network": {"upstreams": {
                "internet": {"status": "unconfigured"},
                "stripe": {"status": "online"}}},
            "alerts": [],
            "outbox": {"dead": 0},
            "backup": {"problem": null},
        })
    }

    #[test]
    fn the_verdict_follows_the_documented_definition() {
        assert_eq!(verdict(&healthy()).0, 0);
        let mut d = healthy();
        d["network"]["upstreams"]["stripe"]["status"] = json!("degraded");
        assert_eq!(verdict(&d).0, 1);
        let mut d = healthy();
        d["outbox"]["dead"] = json!(1);
        assert_eq!(verdict(&d).0, 1);
        let mut d = healthy();
        d["backup"]["problem"] = json!("the last backup failed");
        assert_eq!(verdict(&d).0, 1);
        let mut d = healthy();
        d["alerts"] = json!([{"alert": "queue_depth", "message": "x"}]);
        assert_eq!(verdict(&d).0, 1);
        let mut d = healthy();
        d["daemon"]["writer"] = json!("not accepting work");
        assert_eq!(verdict(&d).0, 2);
        let mut d = healthy();
        d["database"]["disk_free_bytes"] = json!(1024);
        assert_eq!(
            verdict(&d).0,
            1,
            "a full disk with the daemon up is degraded"
        );
        let mut d = healthy();
        d["storage"] = json!({"status": "degraded", "reason": "read_only", "since": "x"});
        assert_eq!(verdict(&d).0, 1);
        let mut d = healthy();
        d["daemon"] = json!({"running": false});
        d["outbox"]["dead"] = json!(3);
        assert_eq!(verdict(&d).0, 2, "down wins over degraded");
    }
}
