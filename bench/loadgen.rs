//! Load generator for `bench/sales.sh` and `bench/payments.sh`. Not a test: a tool that prints
//! one JSON line.
//!
//! ```text
//! loadgen fsync --dir DIR --seconds S
//!     append 256-byte records to a fresh file in DIR, File::sync_data() after each,
//!     for S seconds -> {"fsync_per_s": ...}
//! loadgen sales --url http://127.0.0.1:PORT --token TOKEN --register R1 --concurrency N
//!               --seconds S [--warmup W]
//!     N tasks, each with its own keep-alive HTTP client, POST /v1/sales in a loop with a
//!     unique client_txn_id; only 201 counts as a durable sale
//!     -> {"concurrency":N,"sales_per_s":..,"p50_ms":..,"p99_ms":..,"errors":..}
//! loadgen payments --url URL --token TOKEN --register R1 --concurrency N
//!                  (--seconds S [--warmup W] | --count K) [--amount MINOR]
//!                  [--burst-gap-ms G: all registers send together every G ms]
//!                  [--pace-ms P: each register sends once every P ms from a random phase]
//!                  [--expect approved_offline] [--slow-ms 1000]
//!     N tasks, each with its own keep-alive HTTP client, POST /v1/payments card payments
//!     (pm_card_visa, --amount minor units, default 125, a unique client_payment_id) in a loop
//!     for S seconds (after W s of warm-up, default 0.5) or K times each (no warm-up: the
//!     first request of each task is counted); only 201 with "status" == --expect counts as
//!     ok, anything else is an error (its status and payment status are tallied)
//!     -> {"concurrency":N,"per_s":..,"p50_ms":..,"p99_ms":..,"max_ms":..,"ok":..,
//!         "errors":..,"slow":..,"first_second":{"ok":..,"p50_ms":..,"p99_ms":..},
//!         "last_second":{..},"answers":{"201 approved_offline":..}}
//!     "slow" counts answers (ok or not) that took --slow-ms or more; first_second and
//!     last_second (timed runs of 2 s or more, else null) cover the ok requests sent in the
//!     first and the last second of the measured window.
//! ```
//!
//! Latency is measured per request (send to full response body), over successful (201, and for
//! payments the expected status) requests only. `--warmup` seconds (default 0.5) of load run
//! first and are not counted.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[path = "flags.rs"]
mod flags;
use flags::{command_line, get, get_f64};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  loadgen fsync --dir DIR --seconds S\n  \
         loadgen sales --url URL --token TOKEN --register ID --concurrency N --seconds S [--warmup W]\n  \
         loadgen payments --url URL --token TOKEN --register ID --concurrency N \
         (--seconds S [--warmup W] | --count K) [--amount MINOR] [--expect STATUS] [--slow-ms MS]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let Some((cmd, flags)) = command_line("loadgen") else {
        return usage();
    };
    let result = match cmd.as_str() {
        "fsync" => fsync(&flags),
        "sales" => sales(&flags),
        "payments" => payments(&flags),
        _ => return usage(),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// fsync: the disk's raw durable-append rate.

fn fsync(flags: &HashMap<String, String>) -> Result<String, String> {
    let dir = std::path::PathBuf::from(get(flags, "dir")?);
    let seconds = get_f64(flags, "seconds", None)?;
    let path = dir.join(format!("fsync-probe-{}.dat", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let record = [b'x'; 256];
    let deadline = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut n: u64 = 0;
    let outcome = loop {
        if let Err(e) = file.write_all(&record) {
            break Err(format!("write: {e}"));
        }
        if let Err(e) = file.sync_data() {
            break Err(format!("fdatasync: {e}"));
        }
        n += 1;
        if started.elapsed() >= deadline {
            break Ok(());
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    outcome?;
    Ok(format!(
        "{{\"fsync_per_s\":{:.1},\"syncs\":{},\"seconds\":{:.3}}}",
        n as f64 / elapsed,
        n,
        elapsed
    ))
}

// ---------------------------------------------------------------------------------------
// sales: durable sales per second and latency through the real API.

struct TaskResult {
    ok_latencies_us: Vec<u64>,
    errors: u64,
    /// A few error descriptions, for stderr.
    samples: Vec<String>,
}

fn sale_body(txn_id: &str, register: &str) -> String {
    format!(
        concat!(
            r#"{{"client_txn_id":"{}","register_id":"{}","cashier_id":"E7","currency":"USD","#,
            r#""lines":[{{"sku":"049000050103","description":"Cola 20oz","quantity":2,"unit_price":199,"amount":398,"merchandise_code":"101","tax_code":"1"}}],"#,
            r#""taxes":[{{"tax_code":"1","taxable_amount":398,"amount":32}}],"#,
            r#""tenders":[{{"method":"cash","amount":430}}],"total":430}}"#
        ),
        txn_id, register
    )
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest-rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn sales(flags: &HashMap<String, String>) -> Result<String, String> {
    let url = get(flags, "url")?.trim_end_matches('/').to_string();
    let token = get(flags, "token")?.to_string();
    let register = get(flags, "register")?.to_string();
    let concurrency = get_f64(flags, "concurrency", None)? as usize;
    let seconds = get_f64(flags, "seconds", None)?;
    let warmup = get_f64(flags, "warmup", Some(0.5))?;
    if concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(sales_async(
        url,
        token,
        register,
        concurrency,
        seconds,
        warmup,
    ))
}

async fn sales_async(
    url: String,
    token: String,
    register: String,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
) -> Result<String, String> {
    // Unique per invocation so repeated runs against one database never replay.
    let run_id = format!(
        "{:x}{:04x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0),
        rand::random::<u16>()
    );
    let endpoint = format!("{url}/v1/sales");
    let auth = format!("Bearer {token}");

    // Group-commit evidence from the daemon's own metrics (public by default): commits and
    // jobs per commit over the whole load, warm-up included.
    let metrics_client = reqwest::Client::new();
    let metrics_url = format!("{url}/metrics");
    let before = scrape_commits(&metrics_client, &metrics_url).await;
    let scraped_at = Instant::now();

    let start_at = Instant::now() + Duration::from_millis(200);
    let measure_from = start_at + Duration::from_secs_f64(warmup);
    let stop_at = measure_from + Duration::from_secs_f64(seconds);

    let mut handles = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let endpoint = endpoint.clone();
        let auth = auth.clone();
        let register = register.clone();
        let run_id = run_id.clone();
        handles.push(tokio::spawn(async move {
            let mut res = TaskResult {
                ok_latencies_us: Vec::new(),
                errors: 0,
                samples: Vec::new(),
            };
            tokio::time::sleep_until(start_at.into()).await;
            let mut i: u64 = 0;
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    break;
                }
                let body = sale_body(&format!("bench-{run_id}-{task}-{i}"), &register);
                i += 1;
                let outcome = client
                    .post(&endpoint)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let (status, text) = match outcome {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        match resp.bytes().await {
                            Ok(b) => (Some(status), b.to_vec()),
                            Err(e) => (
                                None,
                                format!("reading body after {status}: {e}").into_bytes(),
                            ),
                        }
                    }
                    Err(e) => (None, format!("{e}").into_bytes()),
                };
                let done = Instant::now();
                // Count only requests sent inside the measured window.
                if sent < measure_from {
                    continue;
                }
                if status == Some(201) {
                    res.ok_latencies_us.push((done - sent).as_micros() as u64);
                } else {
                    res.errors += 1;
                    if res.samples.len() < 3 {
                        res.samples.push(format!(
                            "{}: {}",
                            status.map_or("transport".to_string(), |s| s.to_string()),
                            String::from_utf8_lossy(&text)
                                .chars()
                                .take(200)
                                .collect::<String>()
                        ));
                    }
                    if status.is_none() {
                        // Do not spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            res
        }));
    }

    let mut lat = Vec::new();
    let mut errors = 0u64;
    let mut samples = Vec::new();
    for h in handles {
        let r = h.await.map_err(|e| format!("task failed: {e}"))?;
        lat.extend(r.ok_latencies_us);
        errors += r.errors;
        samples.extend(r.samples);
    }
    // The window is [measure_from, stop_at) by send time; the last requests finish a little
    // later, so divide by the time until the last one returned.
    let window = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let after = scrape_commits(&metrics_client, &metrics_url).await;
    let scrape_span = scraped_at.elapsed().as_secs_f64();
    let (commits_per_s, mean_batch, mean_commit_ms) = match (before, after) {
        (Some(b), Some(a)) if a.count > b.count => {
            let commits = a.count - b.count;
            (
                commits / scrape_span,
                (a.jobs - b.jobs) / commits,
                (a.seconds - b.seconds) / commits * 1000.0,
            )
        }
        _ => (f64::NAN, f64::NAN, f64::NAN),
    };
    for s in samples.iter().take(5) {
        eprintln!("loadgen sales: error sample: {s}");
    }
    lat.sort_unstable();
    let ok = lat.len();
    let mean_ms = if ok > 0 {
        lat.iter().sum::<u64>() as f64 / ok as f64 / 1000.0
    } else {
        f64::NAN
    };
    Ok(format!(
        "{{\"concurrency\":{},\"sales_per_s\":{:.1},\"p50_ms\":{},\"p99_ms\":{},\"errors\":{},\"ok\":{},\"mean_ms\":{},\"max_ms\":{},\"seconds\":{:.3},\"commits_per_s\":{},\"mean_batch\":{},\"mean_commit_ms\":{}}}",
        concurrency,
        ok as f64 / window,
        json_num(percentile(&lat, 50.0)),
        json_num(percentile(&lat, 99.0)),
        errors,
        ok,
        json_num(mean_ms),
        json_num(percentile(&lat, 100.0)),
        window,
        json_num(commits_per_s),
        json_num(mean_batch),
        json_num(mean_commit_ms)
    ))
}

#[derive(Clone, Copy)]
struct CommitCounters {
    /// Transactions committed by the writer thread.
    count: f64,
    /// Write jobs in them.
    jobs: f64,
    /// Seconds spent BEGIN..COMMIT.
    seconds: f64,
}

async fn scrape_commits(client: &reqwest::Client, url: &str) -> Option<CommitCounters> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
    };
    Some(CommitCounters {
        count: value("posedge_commit_batch_size_count")?,
        jobs: value("posedge_commit_batch_size_sum")?,
        seconds: value("posedge_commit_seconds_sum")?,
    })
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

// ---------------------------------------------------------------------------------------
// payments: card payment decisions per second and latency through the real API.

fn payment_body(client_id: &str, register: &str, amount: i64) -> String {
    format!(
        concat!(
            r#"{{"client_payment_id":"{}","register_id":"{}","cashier_id":"E7","method":"card","#,
            r#""amount":{},"currency":"USD","payment_method":"pm_card_visa","#,
            r#""card":{{"brand":"visa","last4":"4242"}}}}"#
        ),
        client_id, register, amount
    )
}

struct PaymentTaskResult {
    ok_latencies_us: Vec<u64>,
    /// Send time of each ok request, microseconds after the measured window opened.
    ok_sent_us: Vec<u64>,
    errors: u64,
    slow: u64,
    /// "HTTP status + payment status" (or "transport") -> count, every answer.
    answers: HashMap<String, u64>,
    samples: Vec<String>,
    last_done: Option<Instant>,
}

fn payments(flags: &HashMap<String, String>) -> Result<String, String> {
    let url = get(flags, "url")?.trim_end_matches('/').to_string();
    let token = get(flags, "token")?.to_string();
    let register = get(flags, "register")?.to_string();
    let concurrency = get_f64(flags, "concurrency", None)? as usize;
    let (seconds, count) = match (flags.get("seconds"), flags.get("count")) {
        (Some(_), None) => (Some(get_f64(flags, "seconds", None)?), None),
        (None, Some(_)) => (None, Some(get_f64(flags, "count", None)? as u64)),
        _ => return Err("give exactly one of --seconds and --count".into()),
    };
    let warmup = if count.is_some() {
        0.0
    } else {
        get_f64(flags, "warmup", Some(0.5))?
    };
    let amount = get_f64(flags, "amount", Some(125.0))? as i64;
    let expect = flags
        .get("expect")
        .cloned()
        .unwrap_or_else(|| "approved_offline".into());
    let slow_us = (get_f64(flags, "slow-ms", Some(1000.0))? * 1000.0) as u64;
    // Bursts: every register sends its i-th payment at the same tick, start + i × gap, so
    // the daemon sees `concurrency` payments at once, then quiet (registers at a rush hour,
    // rather than registers that never stop).
    let burst_gap = flags
        .get("burst-gap-ms")
        .map(|_| {
            get_f64(flags, "burst-gap-ms", None).map(|ms| Duration::from_secs_f64(ms / 1000.0))
        })
        .transpose()?;
    // Paced: every register pays once per P ms, each from its own random phase, so payments
    // arrive as from registers serving customers (not synchronised, never back to back).
    let pace = flags
        .get("pace-ms")
        .map(|_| get_f64(flags, "pace-ms", None).map(|ms| Duration::from_secs_f64(ms / 1000.0)))
        .transpose()?;
    if burst_gap.is_some() && pace.is_some() {
        return Err("--burst-gap-ms and --pace-ms exclude each other".into());
    }
    let schedule = burst_gap.map(|g| (g, false)).or(pace.map(|p| (p, true)));
    if concurrency == 0 || count == Some(0) {
        return Err("--concurrency and --count must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async move {
        let run_id = format!(
            "{:x}{:04x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0),
            rand::random::<u16>()
        );
        let endpoint = format!("{url}/v1/payments");
        let auth = format!("Bearer {token}");
        let start_at = Instant::now() + Duration::from_millis(200);
        let measure_from = start_at + Duration::from_secs_f64(warmup);
        let stop_at = seconds.map(|s| measure_from + Duration::from_secs_f64(s));

        let mut handles = Vec::with_capacity(concurrency);
        for task in 0..concurrency {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                .build()
                .map_err(|e| format!("http client: {e}"))?;
            let (endpoint, auth, register, run_id, expect) = (
                endpoint.clone(),
                auth.clone(),
                register.clone(),
                run_id.clone(),
                expect.clone(),
            );
            handles.push(tokio::spawn(async move {
                let mut res = PaymentTaskResult {
                    ok_latencies_us: Vec::new(),
                    ok_sent_us: Vec::new(),
                    errors: 0,
                    slow: 0,
                    answers: HashMap::new(),
                    samples: Vec::new(),
                    last_done: None,
                };
                let phase = match schedule {
                    Some((gap, true)) => gap.mul_f64(rand::random::<f64>()),
                    _ => Duration::ZERO,
                };
                tokio::time::sleep_until((start_at + phase).into()).await;
                let mut i: u64 = 0;
                loop {
                    if let Some((gap, _)) = schedule {
                        let tick = start_at + phase + gap * u32::try_from(i).unwrap_or(u32::MAX);
                        tokio::time::sleep_until(tick.into()).await;
                    }
                    let sent = Instant::now();
                    match (stop_at, count) {
                        (Some(stop), _) if sent >= stop => break,
                        (_, Some(k)) if i >= k => break,
                        _ => {}
                    }
                    let body = payment_body(&format!("pb-{run_id}-{task}-{i}"), &register, amount);
                    i += 1;
                    let outcome = client
                        .post(&endpoint)
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let (http, text) = match outcome {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            match resp.bytes().await {
                                Ok(b) => (Some(status), b.to_vec()),
                                Err(e) => (
                                    None,
                                    format!("reading body after {status}: {e}").into_bytes(),
                                ),
                            }
                        }
                        Err(e) => (None, format!("{e}").into_bytes()),
                    };
                    let done = Instant::now();
                    if sent < measure_from {
                        continue;
                    }
                    res.last_done = Some(done);
                    let took = (done - sent).as_micros() as u64;
                    if took >= slow_us {
                        res.slow += 1;
                    }
                    let pay_status = serde_json::from_slice::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_string));
                    let label = match (http, &pay_status) {
                        (None, _) => "transport".to_string(),
                        (Some(h), Some(p)) => format!("{h} {p}"),
                        (Some(h), None) => format!("{h}"),
                    };
                    *res.answers.entry(label).or_default() += 1;
                    if http == Some(201) && pay_status.as_deref() == Some(expect.as_str()) {
                        res.ok_latencies_us.push(took);
                        res.ok_sent_us.push((sent - measure_from).as_micros() as u64);
                    } else {
                        res.errors += 1;
                        if res.samples.len() < 3 {
                            res.samples.push(format!(
                                "{} after {:.1} ms: {}",
                                http.map_or("transport".to_string(), |s| s.to_string()),
                                took as f64 / 1000.0,
                                String::from_utf8_lossy(&text)
                                    .chars()
                                    .take(300)
                                    .collect::<String>()
                            ));
                        }
                        if http.is_none() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                res
            }));
        }

        let mut lat = Vec::new();
        let mut sent_lat: Vec<(u64, u64)> = Vec::new();
        let (mut errors, mut slow) = (0u64, 0u64);
        let mut answers: HashMap<String, u64> = HashMap::new();
        let mut samples = Vec::new();
        let mut last_done: Option<Instant> = None;
        for h in handles {
            let r = h.await.map_err(|e| format!("task failed: {e}"))?;
            sent_lat.extend(r.ok_sent_us.iter().copied().zip(r.ok_latencies_us.iter().copied()));
            lat.extend(r.ok_latencies_us);
            errors += r.errors;
            slow += r.slow;
            for (k, v) in r.answers {
                *answers.entry(k).or_default() += v;
            }
            samples.extend(r.samples);
            last_done = last_done.max(r.last_done);
        }
        // Sends in [measure_from, ...); divide by the time until the last answer arrived.
        let window = last_done
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(measure_from)
            .as_secs_f64();
        for s in samples.iter().take(5) {
            eprintln!("loadgen payments: error sample: {s}");
        }
        lat.sort_unstable();
        let ok = lat.len();
        let mean_ms = if ok > 0 {
            lat.iter().sum::<u64>() as f64 / ok as f64 / 1000.0
        } else {
            f64::NAN
        };
        let per_s = if window > 0.0 {
            ok as f64 / window
        } else {
            f64::NAN
        };
        // Timed runs: the first and the last second of the window by send time, to show a
        // rate or latency that drifts as the database grows.
        let second = |from_us: u64| -> String {
            let mut l: Vec<u64> = sent_lat
                .iter()
                .filter(|(s, _)| *s >= from_us && *s < from_us + 1_000_000)
                .map(|(_, l)| *l)
                .collect();
            l.sort_unstable();
            format!(
                "{{\"ok\":{},\"p50_ms\":{},\"p99_ms\":{}}}",
                l.len(),
                json_num(percentile(&l, 50.0)),
                json_num(percentile(&l, 99.0))
            )
        };
        let (first_second, last_second) = match seconds {
            Some(s) if s >= 2.0 => (
                second(0),
                second(((s - 1.0) * 1_000_000.0) as u64),
            ),
            _ => ("null".to_string(), "null".to_string()),
        };
        Ok(format!(
            "{{\"concurrency\":{},\"per_s\":{},\"p50_ms\":{},\"p99_ms\":{},\"mean_ms\":{},\"max_ms\":{},\"min_ms\":{},\"ok\":{},\"errors\":{},\"slow\":{},\"seconds\":{:.3},\"first_second\":{},\"last_second\":{},\"expect\":{},\"answers\":{}}}",
            concurrency,
            json_num(per_s),
            json_num(percentile(&lat, 50.0)),
            json_num(percentile(&lat, 99.0)),
            json_num(mean_ms),
            json_num(percentile(&lat, 100.0)),
            json_num(lat.first().map_or(f64::NAN, |v| *v as f64 / 1000.0)),
            ok,
            errors,
            slow,
            window,
            first_second,
            last_second,
            serde_json::Value::String(expect),
            serde_json::to_string(&answers).unwrap_or_else(|_| "{}".into())
        ))
    })
}
