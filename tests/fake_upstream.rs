//! A fake upstream that is a real HTTP server on 127.0.0.1: scripted faults (refuse
//! connections, stall, reset mid-response, any status, 429 with Retry-After) and a ledger of
//! every request it received and what it answered.

#![allow(dead_code)]

use super::fake_port::{FakePort, Handler};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to answer one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status (200 is success).
    Status(u16),
    /// 429 (or any status) with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// Wait this long, then answer 200 (the client has usually given up by then).
    Stall(Duration),
    /// Read the request, then drop the connection without an answer.
    Reset,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub key: Option<String>,
    pub document: Option<String>,
    pub body: String,
    pub at: Instant,
    /// The status answered, `None` for a reset.
    pub answered: Option<u16>,
}

#[derive(Default)]
struct State {
    /// One-shot faults, applied to POSTs in order before `default`.
    script: VecDeque<Fault>,
    default: Option<Fault>,
    /// Faults applied to probe GETs, in a cycle, when set.
    probe_cycle: Vec<Fault>,
    probe_count: usize,
    ledger: Vec<Received>,
    latency: Duration,
    /// Seconds added to the real time in the `Date` header of every answer, when set (a
    /// back office whose clock agrees with a daemon under libfaketime).
    date_offset_s: Option<i64>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    port: FakePort,
}

impl FakeUpstream {
    /// Starts answering 200 on a fresh port.
    pub async fn start() -> FakeUpstream {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(shared.clone(), req)));
        let port = FakePort::start(handler).await;
        FakeUpstream {
            addr: port.addr,
            state,
            port,
        }
    }

    /// Reserves a port but refuses connections until [`FakeUpstream::restore`].
    pub async fn start_refusing() -> FakeUpstream {
        let f = FakeUpstream::start().await;
        f.refuse();
        f
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Closes the port: new connections are refused, open ones are cut.
    pub fn refuse(&self) {
        self.port.refuse();
    }

    /// Opens the same port again.
    pub async fn restore(&self) {
        self.port.restore().await;
    }

    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// What POSTs get once the script is used up (`None`: 200).
    pub fn set_default(&self, fault: Option<Fault>) {
        self.state.lock().unwrap().default = fault;
    }

    pub fn set_probe_cycle(&self, cycle: Vec<Fault>) {
        self.state.lock().unwrap().probe_cycle = cycle;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    /// Answers carry `Date: <real time + offset_s>` (`None`: hyper's own, the real time).
    pub fn set_date_offset(&self, offset_s: Option<i64>) {
        self.state.lock().unwrap().date_offset_s = offset_s;
    }

    pub fn ledger(&self) -> Vec<Received> {
        self.state.lock().unwrap().ledger.clone()
    }

    /// POSTs received (probe GETs excluded).
    pub fn posts(&self) -> Vec<Received> {
        self.ledger()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// Keys answered with a 2xx, in order of arrival.
    pub fn accepted_keys(&self) -> Vec<String> {
        self.posts()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .filter_map(|r| r.key)
            .collect()
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let key = header("idempotency-key");
    let document = header("x-naxml-document");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (fault, latency, date_offset_s) = {
        let mut s = state.lock().unwrap();
        let fault = if method == "POST" {
            s.script.pop_front().or_else(|| s.default.clone())
        } else if s.probe_cycle.is_empty() {
            None
        } else {
            let f = s.probe_cycle[s.probe_count % s.probe_cycle.len()].clone();
            s.probe_count += 1;
            Some(f)
        };
        (
            fault.unwrap_or(Fault::Status(200)),
            s.latency,
            s.date_offset_s,
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let answered = match &fault {
        Fault::Status(s) | Fault::RetryAfter(s, _) => Some(*s),
        Fault::Stall(_) => Some(200),
        Fault::Reset => None,
    };
    state.lock().unwrap().ledger.push(Received {
        method,
        path,
        key,
        document,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
        answered,
    });
    let answer = match fault {
        Fault::Reset => return Err(std::io::Error::other("scripted reset")),
        Fault::Stall(d) => {
            tokio::time::sleep(d).await;
            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
        Fault::Status(s) => Ok(Response::builder()
            .status(StatusCode::from_u16(s).unwrap())
            .body(Full::new(Bytes::from(format!("scripted {s}"))))
            .unwrap()),
        Fault::RetryAfter(s, secs) => Ok(Response::builder()
            .status(StatusCode::from_u16(s).unwrap())
            .header("retry-after", secs.to_string())
            .body(Full::new(Bytes::from_static(b"slow down")))
            .unwrap()),
    };
    answer.map(|mut r| {
        if let Some(offset) = date_offset_s {
            // hyper only adds its own `Date` when the answer has none.
            let at = chrono::Utc::now() + chrono::Duration::seconds(offset);
            let value = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            r.headers_mut()
                .insert(hyper::header::DATE, value.parse().unwrap());
        }
        r
    })
}
