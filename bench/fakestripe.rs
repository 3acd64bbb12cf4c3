//! Fake Stripe for `bench/payments.sh`: the test fake (`tests/fake_stripe.rs`, a real HTTP/1.1
//! server that keeps Stripe's idempotency rules) as a process. Not a test: a tool.
//!
//! ```text
//! fakestripe serve [--mode answer|dark|refuse]
//!     Stripe on a fresh 127.0.0.1 port. Modes, switched at any time by a signal:
//!       answer  (SIGHUP)  every request answered as the test fake does (no added latency);
//!       dark    (SIGUSR1) the port accepts connections and reads requests but never answers
//!               (every request, the probe's GET included, waits one hour first): a link
//!               that has gone dark, not a refused port;
//!       refuse  (SIGUSR2) the port is closed: connections are refused at once.
//!     One JSON line on stdout per event, flushed: {"event":"listening","base_url":..},
//!     {"event":"mode","mode":..,"t_ms":..} after each switch has taken effect, and the
//!     counters on SIGTERM/SIGINT: {"event":"stats","requests":..,"posts":..,
//!     "answered":..,"intents":..}.
//! ```
//!
//! `t_ms` is milliseconds since the fake started (monotonic).

#[path = "../tests/fake_port.rs"]
mod fake_port;
#[path = "../tests/fake_stripe.rs"]
mod fake_stripe;

use fake_stripe::FakeStripe;
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// "Never" for a benchmark: far longer than any online_timeout or probe timeout.
const DARK: Duration = Duration::from_secs(3600);

fn usage() -> ExitCode {
    eprintln!("usage:\n  fakestripe serve [--mode answer|dark|refuse]");
    ExitCode::from(2)
}

fn emit(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Answer,
    Dark,
    Refuse,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "answer" => Some(Mode::Answer),
            "dark" => Some(Mode::Dark),
            "refuse" => Some(Mode::Refuse),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Answer => "answer",
            Mode::Dark => "dark",
            Mode::Refuse => "refuse",
        }
    }
}

/// Puts the fake in `to` (from `from`); returns the new mode.
async fn switch(fake: &FakeStripe, from: Mode, to: Mode) -> Mode {
    if from == Mode::Refuse && to != Mode::Refuse {
        fake.restore().await;
    }
    match to {
        Mode::Answer => fake.set_latency(Duration::ZERO),
        Mode::Dark => fake.set_latency(DARK),
        Mode::Refuse => {
            fake.set_latency(Duration::ZERO);
            if from != Mode::Refuse {
                fake.refuse();
            }
        }
    }
    to
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("serve") {
        return usage();
    }
    let mut flags = HashMap::new();
    let mut it = args[1..].iter();
    while let Some(k) = it.next() {
        let (Some(name), Some(v)) = (k.strip_prefix("--"), it.next()) else {
            return usage();
        };
        flags.insert(name.to_string(), v.clone());
    }
    let Some(initial) = Mode::parse(flags.get("mode").map_or("answer", String::as_str)) else {
        return usage();
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fakestripe: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(initial));
    // Requests left hanging in dark mode must not hold the exit.
    std::process::exit(0)
}

async fn serve(initial: Mode) {
    let started = Instant::now();
    let t_ms = || started.elapsed().as_secs_f64() * 1000.0;
    let (mut hup, mut usr1, mut usr2, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
        _ => {
            eprintln!("fakestripe: cannot install signal handlers");
            std::process::exit(1);
        }
    };
    let fake = FakeStripe::start().await;
    let mut mode = switch(&fake, Mode::Answer, initial).await;
    emit(
        serde_json::json!({"event": "listening", "base_url": fake.base_url(),
                            "mode": mode.as_str(), "t_ms": t_ms()}),
    );
    loop {
        let to = tokio::select! {
            _ = hup.recv() => Mode::Answer,
            _ = usr1.recv() => Mode::Dark,
            _ = usr2.recv() => Mode::Refuse,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        mode = switch(&fake, mode, to).await;
        emit(serde_json::json!({"event": "mode", "mode": mode.as_str(), "t_ms": t_ms()}));
    }
    let requests = fake.requests();
    emit(serde_json::json!({
        "event": "stats",
        "requests": requests.len(),
        "posts": requests.iter().filter(|r| r.method == "POST").count(),
        "answered": requests.iter().filter(|r| r.answered.is_some()).count(),
        "intents": fake.intents().len(),
        "t_ms": t_ms(),
    }));
}
