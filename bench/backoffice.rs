//! Fake Conexxus back office and backlog generator for `bench/drain.sh`. Not a test: tools.
//!
//! ```text
//! backoffice serve --listen 127.0.0.1:PORT [--latency-ms 5] [--limit-per-sec N]
//!                  [--down 1] [--open-after-ms MS] [--log FILE]
//!     HTTP/1.1 on PORT. Every POST is answered 200 after --latency-ms (a precise thread
//!     sleep, not the 1 ms tokio timer wheel); every other GET at once with 200 (the probe);
//!     GET /stats returns the counters as JSON. With --limit-per-sec N a POST that would be
//!     the (N+1)-th accepted POST started within the trailing second is answered 429 at once
//!     (Retry-After: 1) and counted; 429s do not use up the window. With --down 1 the port
//!     stays closed until SIGUSR1 (or --open-after-ms). One JSON line on stdout per event
//!     ("waiting", "open"), and the final stats on SIGTERM/SIGINT. --log FILE: one line per
//!     POST, "arrival_ms status idempotency_key", flushed at SIGTERM/SIGINT.
//! backoffice backlog --db PATH --rows N [--register R1]
//!     inserts N sales (one line, one tax, one cash tender) with `posedge::ledger::record`
//!     in ONE transaction on a migrated database, so each gets exactly the `naxml_sale`
//!     outbox row the daemon writes -> {"rows":N,"seconds":..,"pending":..}
//! ```
//!
//! Every time in /stats is in milliseconds since the back office started (monotonic), so
//! "opened" and "first POST" can be subtracted directly.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "flags.rs"]
mod flags;
use flags::{command_line, get, get_f64};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  backoffice serve --listen ADDR [--latency-ms MS] [--limit-per-sec N] \
         [--down 1] [--open-after-ms MS] [--log FILE]\n  \
         backoffice backlog --db PATH --rows N [--register ID]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let Some((cmd, flags)) = command_line("backoffice") else {
        return usage();
    };
    let result = match cmd.as_str() {
        "serve" => serve(&flags),
        "backlog" => backlog(&flags),
        _ => return usage(),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backoffice {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One JSON line on stdout, flushed at once (the script waits for these).
fn event(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

// ---------------------------------------------------------------------------------------
// serve: the fake back office.

struct Shared {
    t0: Instant,
    latency: Duration,
    limit: Option<usize>,
    /// `--log FILE`: one line per POST, "arrival_ms status key", written as soon as the
    /// answer (200 or 429) is decided.
    log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    /// Calibration: how much shorter than the target to sleep (see `handle`).
    overshoot_ns: AtomicU64,
    state: Mutex<Counters>,
}

#[derive(Default)]
struct PerKey {
    /// POSTs answered 2xx.
    accepted: u32,
    /// Every POST with this key, 429s included.
    seen: u32,
}

#[derive(Default)]
struct Counters {
    posts: u64,
    accepted: u64,
    status_429: u64,
    no_key: u64,
    duplicates: u64,
    keys: HashMap<String, PerKey>,
    first_post: Option<Duration>,
    last_post: Option<Duration>,
    last_answer: Option<Duration>,
    prev_post: Option<Instant>,
    min_gap: Option<Duration>,
    /// Starts of every POST in the trailing second (for the max-per-window figure).
    window_all: VecDeque<Instant>,
    max_in_window: usize,
    /// Starts of accepted POSTs in the trailing second (the rate limit).
    window_ok: VecDeque<Instant>,
    inflight: u64,
    max_inflight: u64,
    /// Time spent with 0, 1, … 5, 6+ accepted POSTs in flight, from the first POST on.
    occupancy: [Duration; 7],
    occupancy_since: Option<Instant>,
    /// Sum over accepted POSTs of arrival → answer: mean concurrency = busy / span.
    busy: Duration,
    gets: u64,
    first_gets: Vec<Duration>,
    connections: u64,
    opened: Option<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn opt_ms(d: Option<Duration>) -> serde_json::Value {
    d.map(|d| json!((ms(d) * 1000.0).round() / 1000.0))
        .unwrap_or(serde_json::Value::Null)
}

impl Counters {
    /// Call before every change of `inflight`.
    fn account(&mut self, now: Instant) {
        if let Some(since) = self.occupancy_since {
            let level = (self.inflight as usize).min(6);
            self.occupancy[level] += now.saturating_duration_since(since);
        }
        self.occupancy_since = Some(now);
    }
}

impl Shared {
    fn stats(&self) -> serde_json::Value {
        let c = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let distinct_keys = c.keys.values().filter(|k| k.accepted > 0).count();
        let keys_seen = c.keys.len();
        let max_posts_per_key = c.keys.values().map(|k| k.seen).max().unwrap_or(0);
        let span = match (c.first_post, c.last_post) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let mean_service_ms = if c.accepted > 0 {
            ms(c.busy) / c.accepted as f64
        } else {
            f64::NAN
        };
        let mean_concurrency = match span {
            Some(s) if !s.is_zero() => c.busy.as_secs_f64() / s.as_secs_f64(),
            _ => f64::NAN,
        };
        let num = |x: f64| {
            if x.is_finite() {
                json!((x * 1000.0).round() / 1000.0)
            } else {
                serde_json::Value::Null
            }
        };
        json!({
            "posts": c.posts,
            "accepted": c.accepted,
            "status_429": c.status_429,
            "no_key": c.no_key,
            "distinct_keys": distinct_keys,
            "keys_seen": keys_seen,
            "duplicates": c.duplicates,
            "max_posts_per_key": max_posts_per_key,
            "first_post_ms": opt_ms(c.first_post),
            "last_post_ms": opt_ms(c.last_post),
            "last_answer_ms": opt_ms(c.last_answer),
            "span_ms": opt_ms(span),
            "min_gap_ms": opt_ms(c.min_gap),
            "max_posts_in_any_1s": c.max_in_window,
            "inflight": c.inflight,
            "max_inflight": c.max_inflight,
            "occupancy_ms": c.occupancy.iter().map(|d| num(ms(*d))).collect::<Vec<_>>(),
            "mean_service_ms": num(mean_service_ms),
            "mean_concurrency": num(mean_concurrency),
            "gets": c.gets,
            "first_gets_ms": c.first_gets.iter().map(|d| num(ms(*d))).collect::<Vec<_>>(),
            "connections": c.connections,
            "opened_ms": opt_ms(c.opened),
            "now_ms": num(ms(self.t0.elapsed())),
            "latency_ms": num(ms(self.latency)),
            "sleep_correction_ms": num(self.overshoot_ns.load(Ordering::Relaxed) as f64 / 1e6),
            "limit_per_sec": self.limit,
        })
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = Instant::now();
    if req.method() != Method::POST {
        if req.uri().path() == "/stats" {
            return Ok(respond(StatusCode::OK, shared.stats().to_string()));
        }
        let mut c = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        c.gets += 1;
        if c.first_gets.len() < 8 {
            c.first_gets.push(arrived - shared.t0);
        }
        return Ok(respond(StatusCode::OK, r#"{"status":"ok"}"#));
    }
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limited = {
        let mut c = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let at = arrived - shared.t0;
        c.posts += 1;
        c.first_post.get_or_insert(at);
        c.last_post = Some(at);
        if let Some(prev) = c.prev_post {
            let gap = arrived.saturating_duration_since(prev);
            c.min_gap = Some(c.min_gap.map_or(gap, |g| g.min(gap)));
        }
        c.prev_post = Some(arrived);
        let second = Duration::from_secs(1);
        while c
            .window_all
            .front()
            .is_some_and(|f| arrived.saturating_duration_since(*f) >= second)
        {
            c.window_all.pop_front();
        }
        c.window_all.push_back(arrived);
        c.max_in_window = c.max_in_window.max(c.window_all.len());
        while c
            .window_ok
            .front()
            .is_some_and(|f| arrived.saturating_duration_since(*f) >= second)
        {
            c.window_ok.pop_front();
        }
        let limited = shared.limit.is_some_and(|n| c.window_ok.len() >= n);
        match &key {
            Some(k) => {
                c.keys.entry(k.clone()).or_default().seen += 1;
            }
            None => c.no_key += 1,
        }
        if limited {
            c.status_429 += 1;
        } else {
            c.window_ok.push_back(arrived);
            c.account(arrived);
            c.inflight += 1;
            c.max_inflight = c.max_inflight.max(c.inflight);
        }
        limited
    };
    if let Some(log) = &shared.log {
        let mut w = log.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            w,
            "{:.3} {} {}",
            ms(arrived - shared.t0),
            if limited { 429 } else { 200 },
            key.as_deref().unwrap_or("-")
        );
    }
    // Read the whole document, as a real back office would.
    let _ = req.into_body().collect().await;
    if limited {
        let mut r = respond(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"rate limited"}"#);
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        return Ok(r);
    }
    // A thread sleep (nanosleep) is far more precise than tokio's 1 ms wheel, which would
    // round every 5 ms answer up to 5-6 ms and lower the ideal rate by itself. What is left
    // (timer slack, waking the sleeper and then this runtime, ~0.2 ms) is measured and
    // subtracted from later sleeps, so the mean answer time is --latency-ms itself.
    let overshoot = Duration::from_nanos(shared.overshoot_ns.load(Ordering::Relaxed));
    let remaining = shared
        .latency
        .saturating_sub(arrived.elapsed())
        .saturating_sub(overshoot);
    if !remaining.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(remaining)).await;
    }
    {
        let done = Instant::now();
        // EWMA (1/16) of how far past the target this answer came; negative errors pull the
        // correction back down.
        let error = (done - arrived).as_nanos() as i64 - shared.latency.as_nanos() as i64;
        let old = shared.overshoot_ns.load(Ordering::Relaxed) as i64;
        let new = (old + error / 16).clamp(0, shared.latency.as_nanos() as i64 / 2);
        shared.overshoot_ns.store(new as u64, Ordering::Relaxed);
        let mut c = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        c.account(done);
        c.inflight -= 1;
        c.accepted += 1;
        c.busy += done - arrived;
        c.last_answer = Some(done - shared.t0);
        if let Some(k) = &key {
            let e = c.keys.entry(k.clone()).or_default();
            e.accepted += 1;
            if e.accepted > 1 {
                c.duplicates += 1;
            }
        }
    }
    Ok(respond(StatusCode::OK, r#"{"status":"accepted"}"#))
}

fn serve(flags: &HashMap<String, String>) -> Result<String, String> {
    let listen: SocketAddr = get(flags, "listen")?
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let latency = Duration::from_secs_f64(get_f64(flags, "latency-ms", Some(5.0))? / 1000.0);
    let limit = match get_f64(flags, "limit-per-sec", Some(0.0))? as usize {
        0 => None,
        n => Some(n),
    };
    let down = get_f64(flags, "down", Some(0.0))? != 0.0;
    let open_after = flags
        .get("open-after-ms")
        .map(|v| {
            v.parse::<f64>()
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                .map_err(|e| format!("--open-after-ms {v:?}: {e}"))
        })
        .transpose()?;
    let log = match flags.get("log") {
        Some(path) => Some(Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("--log {path}: {e}"))?,
        ))),
        None => None,
    };
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        latency,
        limit,
        log,
        overshoot_ns: AtomicU64::new(0),
        state: Mutex::new(Counters::default()),
    });
    // One thread for the server: the daemon under test shares a small machine with it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(serve_async(listen, shared, down, open_after))
}

async fn serve_async(
    listen: SocketAddr,
    shared: Arc<Shared>,
    down: bool,
    open_after: Option<Duration>,
) -> Result<String, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(|e| format!("SIGUSR1: {e}"))?;
    if down {
        event(json!({"event": "waiting", "listen": listen.to_string(), "pid": std::process::id()}));
        let timer = async {
            match open_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = usr1.recv() => {}
            _ = timer => {}
            _ = term.recv() => return Ok(shared.stats().to_string()),
            _ = int.recv() => return Ok(shared.stats().to_string()),
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let opened = shared.t0.elapsed();
    shared
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .opened = Some(opened);
    event(
        json!({"event": "open", "listen": listen.to_string(), "opened_ms": ms(opened), "pid": std::process::id()}),
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                shared.state.lock().unwrap_or_else(|p| p.into_inner()).connections += 1;
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, shared.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            // Already open: a second SIGUSR1 is harmless.
            _ = usr1.recv() => {}
        }
    }
    if let Some(log) = &shared.log {
        let _ = log.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
    Ok(shared.stats().to_string())
}

// ---------------------------------------------------------------------------------------
// backlog: N recorded sales and their outbox rows, exactly as the daemon writes them.

fn backlog(flags: &HashMap<String, String>) -> Result<String, String> {
    use posedge::ledger::{self, request::SaleRequest, Recorded, SaleContext};
    let db = std::path::PathBuf::from(get(flags, "db")?);
    let rows = get_f64(flags, "rows", None)? as u64;
    let register = flags.get("register").map_or("R1", String::as_str);
    if !db.exists() {
        return Err(format!(
            "{} does not exist: create it with `posedge migrate --config …` first",
            db.display()
        ));
    }
    let mut conn = posedge::store::open_rw(&db).map_err(|e| e.to_string())?;
    // This connection only: a bigger page cache makes the one big transaction faster. It
    // changes nothing in what is written.
    conn.pragma_update(None, "cache_size", -262_144)
        .map_err(|e| e.to_string())?;
    let template: SaleRequest = serde_json::from_value(json!({
        "client_txn_id": "x",
        "register_id": register,
        "cashier_id": "E7",
        "currency": "USD",
        "lines": [{"sku": "049000050103", "description": "Cola 20oz", "quantity": 2,
                   "unit_price": 199, "amount": 398, "merchandise_code": "101", "tax_code": "1"}],
        "taxes": [{"tax_code": "1", "taxable_amount": 398, "amount": 32}],
        "tenders": [{"method": "cash", "amount": 430}],
        "total": 430
    }))
    .map_err(|e| format!("sale template: {e}"))?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let started = Instant::now();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let now = chrono::Utc::now();
    let created_at = posedge::business_day::rfc3339(now);
    let business_date = now.date_naive().to_string();
    for i in 0..rows {
        let mut sale = template.clone();
        sale.client_txn_id = format!("bl-{run_id}-{i}");
        let ctx = SaleContext {
            fingerprint: ledger::request_fingerprint(&sale),
            location_id: "loc-1".into(),
            business_date: business_date.clone(),
            created_at: created_at.clone(),
            sync_priority: ledger::DEFAULT_SYNC_PRIORITY,
            journal_per_sale: true,
        };
        match ledger::record(&tx, &sale, &ctx).map_err(|e| e.to_string())? {
            Recorded::New(_) => {}
            Recorded::Replay(r) => return Err(format!("unexpected replay of {}", r.id)),
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM outbox WHERE state = 'pending' AND kind = ?1",
            [ledger::NAXML_SALE_KIND],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    drop(conn);
    Ok(format!(
        "{{\"rows\":{rows},\"seconds\":{seconds:.3},\"pending\":{pending}}}"
    ))
}
