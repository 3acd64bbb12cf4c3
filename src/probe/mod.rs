//! The connectivity probe: per upstream (`internet`, `stripe`, `conexxus`), is it reachable?
//!
//! Invariants:
//! - start-up never waits for it (invariant 8): links start `offline` (unobserved) and the
//!   first check runs in the background;
//! - an upstream that is not configured is `unconfigured`, never `online`;
//! - a forced-offline link reads `offline` (with `forced: true`) whatever the checks say, and
//!   the forcing survives restarts (it lives in `settings`, written with an audit row);
//! - every change of a link's effective status is logged, audited (with the network status
//!   at that moment) and counted, and published on a `watch` channel for the dispatcher;
//! - checks run on monotonic timers: every `interval` while online, every
//!   `offline_interval` while degraded or offline.

mod tracker;

pub use tracker::{Evidence, Health, Tracker};

use crate::audit;
use crate::config::{ConexxusTransport, Config};
use crate::metrics::Metrics;
use crate::store::Writer;
use crate::upstream::http::HttpClient;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// A link the probe watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    Internet,
    Stripe,
    Conexxus,
}

impl Link {
    pub const ALL: [Link; 3] = [Link::Internet, Link::Stripe, Link::Conexxus];

    pub fn as_str(self) -> &'static str {
        match self {
            Link::Internet => "internet",
            Link::Stripe => "stripe",
            Link::Conexxus => "conexxus",
        }
    }

    pub fn parse(s: &str) -> Option<Link> {
        Link::ALL.into_iter().find(|l| l.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Settings key holding the JSON list of links forced offline.
pub const FORCED_KEY: &str = "forced_offline";

/// Reads, changes and stores the forced-offline set in the caller's transaction, with the
/// audit row that explains it; returns the new set. Used by the API and by the CLI when the
/// daemon is stopped.
pub fn store_forced(
    tx: &rusqlite::Transaction<'_>,
    actor: &str,
    which: &[Link],
    offline: bool,
    network: Value,
) -> rusqlite::Result<Vec<Link>> {
    let mut forced = load_forced(tx)?;
    forced.retain(|l| !which.contains(l));
    if offline {
        forced.extend(which.iter().copied());
    }
    let stored: Vec<&str> = forced.iter().map(|l| l.as_str()).collect();
    crate::settings::set(
        tx,
        FORCED_KEY,
        &serde_json::to_string(&stored).unwrap_or_default(),
    )?;
    let names: Vec<&str> = which.iter().map(|l| l.as_str()).collect();
    audit::append(
        tx,
        &audit::Entry {
            kind: "network_mode",
            actor,
            subject: None,
            network,
            details: json!({"mode": if offline { "offline" } else { "auto" }, "upstreams": names}),
        },
    )?;
    Ok(forced)
}

/// The persisted forced-offline set.
pub fn load_forced(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Link>> {
    Ok(crate::settings::get(conn, FORCED_KEY)?
        .and_then(|v| serde_json::from_str::<Vec<String>>(&v).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Link::parse(s))
        .collect())
}

/// One link as reported by `/health/network`.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    /// `online`, `degraded`, `offline` or `unconfigured`.
    pub status: &'static str,
    pub forced: bool,
    pub since: String,
    pub last_ok: Option<String>,
    pub last_check: Option<String>,
    pub latency_ms: Option<u64>,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub configured: bool,
}

impl LinkStatus {
    /// True when calls to this link may be attempted (configured, not offline, not forced).
    pub fn usable(&self) -> bool {
        self.configured && self.status != "offline"
    }
}

/// Everything the probe knows, as published to subscribers.
#[derive(Debug, Clone)]
pub struct NetworkView {
    pub links: [LinkStatus; 3],
    /// Worst of the configured upstreams (stripe, conexxus); `unconfigured` if none.
    pub mode: &'static str,
    pub since: String,
}

impl NetworkView {
    pub fn link(&self, l: Link) -> &LinkStatus {
        &self.links[l.index()]
    }

    /// The compact form stored in audit rows.
    pub fn summary(&self) -> Value {
        json!({
            "mode": self.mode,
            "internet": self.link(Link::Internet).status,
            "stripe": self.link(Link::Stripe).status,
            "conexxus": self.link(Link::Conexxus).status,
            "forced": Link::ALL.iter().filter(|l| self.link(**l).forced).map(|l| l.as_str()).collect::<Vec<_>>(),
        })
    }

    /// The `/health/network` body.
    pub fn to_json(&self) -> Value {
        json!({
            "status": self.mode,
            "since": self.since,
            "upstreams": {
                "internet": self.link(Link::Internet),
                "stripe": self.link(Link::Stripe),
                "conexxus": self.link(Link::Conexxus),
            }
        })
    }
}

/// What a link is checked against.
#[derive(Debug, Clone)]
enum Check {
    Tcp(Vec<String>),
    Http(String),
    Directory(std::path::PathBuf),
    None,
}

struct LinkState {
    check: Check,
    tracker: Tracker,
    forced: bool,
    status: LinkStatus,
    /// Monotonic moment the link last became unusable, for the offline-time metric.
    down_since: Option<Instant>,
}

pub struct Probe {
    links: Mutex<Vec<LinkState>>,
    view: watch::Sender<NetworkView>,
    wake: [Notify; 3],
    interval: Duration,
    offline_interval: Duration,
    timeout: Duration,
    http: HttpClient,
    writer: Writer,
    metrics: Arc<Metrics>,
}

fn now() -> String {
    crate::business_day::rfc3339(Utc::now())
}

impl Probe {
    /// Builds the probe from config; `forced` is the persisted forced-offline set.
    pub fn new(
        config: &Config,
        forced: &[Link],
        http: HttpClient,
        writer: Writer,
        metrics: Arc<Metrics>,
    ) -> Arc<Probe> {
        let started = now();
        let check_for =
            |l: Link| match l {
                Link::Internet if !config.probe.internet_targets.is_empty() => {
                    Check::Tcp(config.probe.internet_targets.clone())
                }
                Link::Stripe => match &config.stripe {
                    Some(s) => Check::Http(format!("{}/v1/", s.api_base.trim_end_matches('/'))),
                    None => Check::None,
                },
                Link::Conexxus => match &config.conexxus {
                    Some(c) if c.transport == ConexxusTransport::Http => {
                        Check::Http(c.url.clone().unwrap_or_default())
                    }
                    Some(c) => Check::Directory(c.directory.clone().unwrap_or_else(|| {
                        config.resolved.database_path.with_file_name("BOOutbox")
                    })),
                    None => Check::None,
                },
                Link::Internet => Check::None,
            };
        let links: Vec<LinkState> = Link::ALL
            .iter()
            .map(|l| {
                let check = check_for(*l);
                let configured = !matches!(check, Check::None);
                let is_forced = forced.contains(l);
                LinkState {
                    check,
                    tracker: Tracker::new(),
                    forced: is_forced,
                    status: LinkStatus {
                        status: if configured {
                            "offline"
                        } else {
                            "unconfigured"
                        },
                        forced: is_forced,
                        since: started.clone(),
                        last_ok: None,
                        last_check: None,
                        latency_ms: None,
                        last_error: configured.then(|| "not checked yet".to_string()),
                        configured,
                    },
                    down_since: configured.then(Instant::now),
                }
            })
            .collect();
        let view = build_view(&links, &started, None);
        let (tx, _) = watch::channel(view);
        Arc::new(Probe {
            links: Mutex::new(links),
            view: tx,
            wake: [Notify::new(), Notify::new(), Notify::new()],
            interval: config.probe.interval.0,
            offline_interval: config.probe.offline_interval.0,
            timeout: config.probe.timeout.0,
            http,
            writer,
            metrics,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<NetworkView> {
        self.view.subscribe()
    }

    pub fn snapshot(&self) -> NetworkView {
        self.view.borrow().clone()
    }

    /// Starts one checking loop per configured link. Returns their handles (abort on shutdown).
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let configured: Vec<Link> = {
            let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            Link::ALL
                .into_iter()
                .filter(|l| links[l.index()].status.configured)
                .collect()
        };
        configured
            .into_iter()
            .map(|l| {
                let me = self.clone();
                tokio::spawn(async move { me.run_link(l).await })
            })
            .collect()
    }

    async fn run_link(self: Arc<Self>, link: Link) {
        loop {
            let check = {
                let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
                links[link.index()].check.clone()
            };
            let (evidence, latency, error) = self.check(&check).await;
            self.apply(link, |t| t.observe(evidence), latency, error, "probe");
            let usable = self.view.borrow().link(link).status == "online";
            let period = if usable {
                self.interval
            } else {
                self.offline_interval
            };
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.wake[link.index()].notified() => {}
            }
        }
    }

    /// Runs one check; `(evidence, latency, error)`.
    async fn check(&self, check: &Check) -> (Evidence, Option<Duration>, Option<String>) {
        let slow = self.timeout / 2;
        let grade = |latency: Duration| {
            if latency > slow {
                Evidence::Slow
            } else {
                Evidence::Good
            }
        };
        match check {
            Check::None => (Evidence::Bad, None, Some("not configured".into())),
            Check::Tcp(targets) => {
                let attempts = targets.iter().map(|t| {
                    let t = t.clone();
                    let timeout = self.timeout;
                    async move {
                        let started = Instant::now();
                        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&t))
                            .await
                        {
                            Ok(Ok(_)) => Ok(started.elapsed()),
                            Ok(Err(e)) => Err(format!("{t}: {e}")),
                            Err(_) => Err(format!("{t}: no answer within {timeout:?}")),
                        }
                    }
                });
                let results = futures_util::future::join_all(attempts).await;
                let ok: Vec<Duration> = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok().copied())
                    .collect();
                let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                let latency = ok.iter().max().copied();
                match (ok.is_empty(), errors.is_empty()) {
                    (true, _) => (Evidence::Bad, None, Some(errors.join("; "))),
                    (false, true) => (grade(latency.unwrap_or_default()), latency, None),
                    (false, false) => (Evidence::Slow, latency, Some(errors.join("; "))),
                }
            }
            Check::Http(url) => {
                match self
                    .http
                    .send(
                        hyper::Method::GET,
                        url,
                        &[],
                        bytes::Bytes::new(),
                        self.timeout,
                    )
                    .await
                {
                    // Any HTTP answer means reachable; its status is not our business here.
                    Ok(r) => (grade(r.latency), Some(r.latency), None),
                    Err(e) => (Evidence::Bad, None, Some(e.to_string())),
                }
            }
            Check::Directory(dir) => {
                let dir = dir.clone();
                let started = Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let probe = dir.join(".posedge-probe");
                    std::fs::write(&probe, b"probe")
                        .and_then(|_| std::fs::remove_file(&probe))
                        .map_err(|e| format!("{}: {e}", dir.display()))
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match result {
                    Ok(()) => (grade(started.elapsed()), Some(started.elapsed()), None),
                    Err(e) => (Evidence::Bad, None, Some(e)),
                }
            }
        }
    }

    /// How long `link` has been unusable, if it is (monotonic).
    pub fn offline_for(&self, link: Link) -> Option<Duration> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links[link.index()].down_since.map(|d| d.elapsed())
    }

    /// A real call's outcome: could not connect → offline at once; answered → online at once.
    pub fn passive(&self, link: Link, reachable: bool, error: Option<String>) {
        self.apply(link, |t| t.passive(reachable), None, error, "real call");
    }

    /// Makes exactly the links in `forced` forced-offline, the others automatic. The caller
    /// persists and audits the choice.
    pub fn set_forced(&self, forced: &[Link]) {
        for l in Link::ALL {
            let want = forced.contains(&l);
            let changed = {
                let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::replace(&mut links[l.index()].forced, want) != want
            };
            if changed {
                self.apply(
                    l,
                    |_| None,
                    None,
                    None,
                    if want {
                        "forced offline"
                    } else {
                        "back to auto"
                    },
                );
                self.wake[l.index()].notify_one();
            }
        }
    }

    /// Updates one link and publishes, logs, counts and audits a change of its status.
    fn apply(
        &self,
        link: Link,
        feed: impl FnOnce(&mut Tracker) -> Option<Health>,
        latency: Option<Duration>,
        error: Option<String>,
        reason: &str,
    ) {
        let stamp = now();
        let (changed, view) = {
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            let state = &mut links[link.index()];
            if !state.status.configured {
                return;
            }
            feed(&mut state.tracker);
            let before = state.status.status;
            let after = if state.forced {
                "offline"
            } else {
                state.tracker.health().as_str()
            };
            let s = &mut state.status;
            if latency.is_some() || error.is_some() {
                s.last_check = Some(stamp.clone());
            }
            if let Some(l) = latency {
                s.latency_ms = Some(l.as_millis() as u64);
            }
            if error.is_none() && latency.is_some() {
                s.last_ok = Some(stamp.clone());
                s.last_error = None;
            } else if let Some(e) = &error {
                s.last_error = Some(e.clone());
            }
            s.forced = state.forced;
            // Offline time is counted when it ends, and on each change.
            if let Some(down) = state.down_since {
                let secs = down.elapsed().as_secs_f64();
                if after != "offline" {
                    self.metrics.offline_seconds(link.as_str(), secs);
                    state.down_since = None;
                }
            } else if after == "offline" {
                state.down_since = Some(Instant::now());
            }
            let changed = before != after;
            if changed {
                state.status.status = after;
                state.status.since = stamp.clone();
            }
            let prev_view = self.view.borrow().clone();
            let view = build_view(&links, &stamp, Some(&prev_view));
            (changed.then_some((before, after)), view)
        };
        self.metrics
            .link_status(link.as_str(), view.link(link).status);
        self.view.send_replace(view.clone());
        if let Some((from, to)) = changed {
            self.metrics.link_transition(link.as_str(), to);
            let error = view.link(link).last_error.clone();
            if to == "online" {
                tracing::info!(
                    upstream = link.as_str(),
                    from,
                    to,
                    reason,
                    "upstream status changed"
                );
            } else {
                tracing::warn!(
                    upstream = link.as_str(),
                    from,
                    to,
                    reason,
                    error = error.as_deref().unwrap_or(""),
                    "upstream status changed"
                );
            }
            let writer = self.writer.clone();
            let reason = reason.to_string();
            let network = view.summary();
            tokio::spawn(async move {
                let details = json!({"from": from, "to": to, "reason": reason, "error": error});
                let r = writer
                    .write(move |tx| {
                        audit::append(
                            tx,
                            &audit::Entry {
                                kind: "network_transition",
                                actor: "posedge",
                                subject: Some(link.as_str()),
                                network,
                                details,
                            },
                        )
                        .map_err(crate::store::StoreError::from)
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "could not audit a network transition");
                }
            });
        }
    }
}

fn build_view(links: &[LinkState], stamp: &str, previous: Option<&NetworkView>) -> NetworkView {
    let statuses: [LinkStatus; 3] = [
        links[0].status.clone(),
        links[1].status.clone(),
        links[2].status.clone(),
    ];
    let upstreams = [&statuses[1], &statuses[2]];
    let configured: Vec<&&LinkStatus> = upstreams.iter().filter(|s| s.configured).collect();
    let mode = if configured.is_empty() {
        "unconfigured"
    } else if configured.iter().any(|s| s.status == "offline") {
        "offline"
    } else if configured.iter().any(|s| s.status == "degraded") {
        "degraded"
    } else {
        "online"
    };
    let since = match previous {
        Some(p) if p.mode == mode => p.since.clone(),
        _ => stamp.to_string(),
    };
    NetworkView {
        links: statuses,
        mode,
        since,
    }
}
