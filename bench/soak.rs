//! The two halves of `bench/soak.sh`: register traffic and the resource sampler. Not a test:
//! a tool.
//!
//! ```text
//! soak drive --url URL --token TOKEN --registers N --pace-ms P --seconds S
//!     N registers, each acting once every P ms from a random phase for S seconds: three
//!     times out of four a cash sale, once a card payment (4.30, pm_card_visa) followed by
//!     the sale it pays when it was approved (captured online or approved offline); every
//!     tenth action also reads the banner (GET /v1/status) and the sale back.
//!     -> {"actions":..,"answers":{"POST /v1/sales 201":..,..},"errors":..,"samples":[..]}
//!     An error is any answer outside the contract for this traffic: a transport failure,
//!     a 5xx, or a 4xx.
//! soak sample --pid PID --db PATH --url URL --every-s E --seconds S --out CSV
//!     every E seconds: the daemon's RSS (VmRSS) and open descriptors (/proc/PID/fd), the
//!     WAL's size, and the outbox depth (pending + in flight + retrying + dead from
//!     GET /health/offline-queue); one CSV row each, then one JSON line with the per-minute
//!     maxima and the verdict: each must level off (see `verdict`).
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[path = "flags.rs"]
mod flags;
use flags::{command_line, get, get_f64};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  soak drive --url URL --token TOKEN --registers N --pace-ms P --seconds S\n  \
         soak sample --pid PID --db PATH --url URL --every-s E --seconds S --out CSV"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let Some((cmd, flags)) = command_line("soak") else {
        return usage();
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = match cmd.as_str() {
        "drive" => runtime.block_on(drive(&flags)),
        "sample" => runtime.block_on(sample(&flags)),
        _ => return usage(),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("soak {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// drive: mixed register traffic.

const LINES: &str = r#""lines":[{"sku":"049000050103","description":"Cola 20oz","quantity":2,"unit_price":199,"amount":398,"merchandise_code":"101","tax_code":"1"}],"taxes":[{"tax_code":"1","taxable_amount":398,"amount":32}],"total":430"#;

fn sale_body(txn: &str, register: &str, tender: &str) -> String {
    format!(
        r#"{{"client_txn_id":"{txn}","register_id":"{register}","cashier_id":"E7","currency":"USD",{LINES},"tenders":[{tender}]}}"#
    )
}

fn payment_body(id: &str, register: &str) -> String {
    format!(
        r#"{{"client_payment_id":"{id}","register_id":"{register}","cashier_id":"E7","method":"card","amount":430,"currency":"USD","payment_method":"pm_card_visa","card":{{"brand":"visa","last4":"4242"}}}}"#
    )
}

#[derive(Default)]
struct Tally {
    actions: u64,
    answers: HashMap<String, u64>,
    errors: u64,
    samples: Vec<String>,
}

impl Tally {
    /// Counts one answer; `Some(body)` when it was a 2xx.
    fn note(
        &mut self,
        what: &str,
        answer: Result<(u16, serde_json::Value), String>,
    ) -> Option<serde_json::Value> {
        match answer {
            Ok((status, body)) => {
                let detail = body["status"].as_str().unwrap_or("");
                *self
                    .answers
                    .entry(format!("{what} {status} {detail}").trim_end().to_string())
                    .or_default() += 1;
                if (200..300).contains(&status) {
                    return Some(body);
                }
                self.error(format!("{what}: {status} {body}"));
                None
            }
            Err(e) => {
                *self.answers.entry(format!("{what} transport")).or_default() += 1;
                self.error(format!("{what}: {e}"));
                None
            }
        }
    }

    fn error(&mut self, sample: String) {
        self.errors += 1;
        if self.samples.len() < 10 {
            self.samples.push(sample);
        }
    }
}

async fn call(
    client: &reqwest::Client,
    token: &str,
    url: String,
    body: Option<String>,
) -> Result<(u16, serde_json::Value), String> {
    let req = match body {
        Some(b) => client
            .post(url)
            .header("content-type", "application/json")
            .body(b),
        None => client.get(url),
    };
    let r = req
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

async fn drive(flags: &HashMap<String, String>) -> Result<String, String> {
    let url = get(flags, "url")?.trim_end_matches('/').to_string();
    let token = get(flags, "token")?.to_string();
    let registers = get_f64(flags, "registers", Some(8.0))? as usize;
    let pace = Duration::from_millis(get_f64(flags, "pace-ms", Some(1000.0))? as u64);
    let seconds = Duration::from_secs_f64(get_f64(flags, "seconds", None)?);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..registers {
        let (url, token) = (url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client");
            let register = "R1";
            let mut tally = Tally::default();
            let phase =
                Duration::from_millis(rand::random::<u64>() % pace.as_millis().max(1) as u64);
            let mut next = tokio::time::Instant::now() + phase;
            let mut n: u64 = 0;
            while started.elapsed() < seconds {
                tokio::time::sleep_until(next).await;
                next += pace;
                n += 1;
                tally.actions += 1;
                let txn = format!("soak-{r}-{n}");
                let tender = if n % 4 == 0 {
                    let paid = tally.note(
                        "POST /v1/payments",
                        call(
                            &client,
                            &token,
                            format!("{url}/v1/payments"),
                            Some(payment_body(&format!("{txn}-p"), register)),
                        )
                        .await,
                    );
                    match paid {
                        Some(p)
                            if matches!(
                                p["status"].as_str(),
                                Some("captured" | "authorized" | "approved_offline")
                            ) =>
                        {
                            format!(
                                r#"{{"method":"card","amount":430,"payment_id":"{}"}}"#,
                                p["id"].as_str().unwrap_or_default()
                            )
                        }
                        // Declined or refused: the customer pays cash.
                        _ => r#"{"method":"cash","amount":430}"#.to_string(),
                    }
                } else {
                    r#"{"method":"cash","amount":500},{"method":"cash","amount":-70}"#.to_string()
                };
                let sale = tally.note(
                    "POST /v1/sales",
                    call(
                        &client,
                        &token,
                        format!("{url}/v1/sales"),
                        Some(sale_body(&txn, register, &tender)),
                    )
                    .await,
                );
                if n % 10 == 0 {
                    tally.note(
                        "GET /v1/status",
                        call(&client, &token, format!("{url}/v1/status"), None).await,
                    );
                    if let Some(id) = sale.as_ref().and_then(|s| s["id"].as_str()) {
                        tally.note(
                            "GET /v1/sales/{id}",
                            call(&client, &token, format!("{url}/v1/sales/{id}"), None).await,
                        );
                    }
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.map_err(|e| e.to_string())?;
        total.actions += t.actions;
        total.errors += t.errors;
        for (k, v) in t.answers {
            *total.answers.entry(k).or_default() += v;
        }
        total.samples.extend(t.samples.into_iter().take(3));
    }
    Ok(serde_json::json!({
        "actions": total.actions,
        "seconds": started.elapsed().as_secs_f64(),
        "answers": total.answers,
        "errors": total.errors,
        "samples": total.samples,
    })
    .to_string())
}

// ---------------------------------------------------------------------------------------
// sample: resources over time.

#[derive(Clone, Copy, Debug)]
struct Row {
    t_s: f64,
    rss_kib: u64,
    fds: u64,
    wal_bytes: u64,
    depth: u64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

async fn sample(flags: &HashMap<String, String>) -> Result<String, String> {
    let pid = get_f64(flags, "pid", None)? as u32;
    let db = std::path::PathBuf::from(get(flags, "db")?);
    let url = get(flags, "url")?.trim_end_matches('/').to_string();
    let every = Duration::from_secs_f64(get_f64(flags, "every-s", Some(5.0))?);
    let seconds = get_f64(flags, "seconds", None)?;
    let out = std::path::PathBuf::from(get(flags, "out")?);
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut csv = std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    writeln!(csv, "t_s,rss_kib,fds,wal_bytes,outbox_depth").map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut tick = tokio::time::interval(every);
    while started.elapsed().as_secs_f64() <= seconds {
        tick.tick().await;
        let (Some(rss), Some(fds)) = (rss_kib(pid), open_fds(pid)) else {
            return Err(format!("process {pid} is gone"));
        };
        let depth = match client
            .get(format!("{url}/health/offline-queue"))
            .send()
            .await
        {
            Ok(r) => {
                let q: serde_json::Value = r.json().await.unwrap_or_default();
                ["pending", "in_flight", "retrying", "dead"]
                    .iter()
                    .map(|k| q[k].as_u64().unwrap_or(0))
                    .sum()
            }
            Err(e) => return Err(format!("the daemon did not answer: {e}")),
        };
        let row = Row {
            t_s: started.elapsed().as_secs_f64(),
            rss_kib: rss,
            fds,
            wal_bytes: std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
            depth,
        };
        writeln!(
            csv,
            "{:.1},{},{},{},{}",
            row.t_s, row.rss_kib, row.fds, row.wal_bytes, row.depth
        )
        .map_err(|e| e.to_string())?;
        eprintln!(
            "t={:>5.0}s rss={:>6} KiB fds={:>3} wal={:>8} B outbox={}",
            row.t_s, row.rss_kib, row.fds, row.wal_bytes, row.depth
        );
        rows.push(row);
    }
    Ok(verdict(&rows).to_string())
}

/// Per-minute maxima of each series, and whether each levelled off: the maximum over the
/// last third of the run is at most the maximum over the middle third plus a small slack
/// (10% and 4 MiB of RSS, 4 descriptors, the WAL's autocheckpoint size of 4 MiB, the depth
/// one outage leaves). Climbing series fail it; a steady sawtooth (outages) passes.
fn verdict(rows: &[Row]) -> serde_json::Value {
    let minutes = rows.last().map_or(0, |r| (r.t_s / 60.0).ceil() as usize);
    let per_minute = |f: &dyn Fn(&Row) -> u64| -> Vec<u64> {
        (0..minutes)
            .map(|m| {
                rows.iter()
                    .filter(|r| {
                        (r.t_s / 60.0) as usize == m
                            || (m + 1 == minutes && r.t_s / 60.0 >= m as f64)
                    })
                    .map(f)
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    };
    let third = rows.len() / 3;
    let max_of = |range: &[Row], f: &dyn Fn(&Row) -> u64| range.iter().map(f).max().unwrap_or(0);
    let (middle, last) = (&rows[third..2 * third], &rows[2 * third..]);
    let rss = (max_of(middle, &|r| r.rss_kib), max_of(last, &|r| r.rss_kib));
    let fds = (max_of(middle, &|r| r.fds), max_of(last, &|r| r.fds));
    let wal = (
        max_of(middle, &|r| r.wal_bytes),
        max_of(last, &|r| r.wal_bytes),
    );
    let depth = (max_of(middle, &|r| r.depth), max_of(last, &|r| r.depth));
    let rss_ok = rss.1 as f64 <= rss.0 as f64 * 1.10 + 4096.0;
    let fds_ok = fds.1 <= fds.0 + 4;
    let wal_ok = wal.1 <= wal.0.max(4 << 20) + (4 << 20);
    let depth_ok = depth.1 as f64 <= depth.0 as f64 * 1.25 + 50.0;
    let end_depth = rows.last().map_or(0, |r| r.depth);
    serde_json::json!({
        "samples": rows.len(),
        "per_minute_max": {
            "rss_kib": per_minute(&|r| r.rss_kib),
            "fds": per_minute(&|r| r.fds),
            "wal_bytes": per_minute(&|r| r.wal_bytes),
            "outbox_depth": per_minute(&|r| r.depth),
        },
        "middle_vs_last_third_max": {
            "rss_kib": [rss.0, rss.1], "fds": [fds.0, fds.1],
            "wal_bytes": [wal.0, wal.1], "outbox_depth": [depth.0, depth.1],
        },
        "levels_off": {"rss": rss_ok, "fds": fds_ok, "wal": wal_ok, "outbox_depth": depth_ok},
        "end_outbox_depth": end_depth,
        "pass": rss_ok && fds_ok && wal_ok && depth_ok,
    })
}
