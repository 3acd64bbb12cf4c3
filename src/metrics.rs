//! Prometheus metrics, exposed at `GET /metrics` in the text format.
//!
//! Invariant: label values come from a closed set (route templates, not raw paths; status
//! codes), so a client cannot grow the registry without bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub upstream: String,
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    pub kind: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub alert: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub commit_batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub sales_recorded: Counter,
    pub card_numbers_refused: Counter,
    pub up_since_seconds: Gauge<f64, AtomicU64>,
    pub upstream_up: Family<UpstreamLabels, Gauge<f64, AtomicU64>>,
    pub upstream_transitions: Family<TransitionLabels, Counter>,
    pub upstream_offline_seconds: Family<UpstreamLabels, Counter<f64, AtomicU64>>,
    pub outbox_attempts: Family<AttemptLabels, Counter>,
    pub outbox_depth: Family<DepthLabels, Gauge>,
    pub outbox_oldest_pending_seconds: Gauge,
    pub alert_active: Family<AlertLabels, Gauge>,
    pub storage_writable: Gauge,
    pub disk_free_bytes: Gauge,
    pub disk_reserve_held: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("posedge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "commit_batch_size",
            "Write jobs committed together in one transaction (group commit)",
            commit_batch_size.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.000_125, 2.0, 14));
        registry.register(
            "commit_seconds",
            "Time from BEGIN to COMMIT of one group-commit transaction, fsync included",
            commit_seconds.clone(),
        );
        let sales_recorded = Counter::default();
        registry.register(
            "sales_recorded",
            "Sales durably recorded (replays excluded)",
            sales_recorded.clone(),
        );
        let card_numbers_refused = Counter::default();
        registry.register(
            "card_numbers_refused",
            "Requests refused because a field held a card number",
            card_numbers_refused.clone(),
        );
        let up_since_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "start_time_seconds",
            "Unix time the daemon started",
            up_since_seconds.clone(),
        );
        let upstream_up = Family::<UpstreamLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "upstream_up",
            "Upstream reachability: 1 online, 0.5 degraded, 0 offline (forced offline included)",
            upstream_up.clone(),
        );
        let upstream_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "upstream_transitions",
            "Changes of an upstream's status, by the status it changed to",
            upstream_transitions.clone(),
        );
        let upstream_offline_seconds = Family::<UpstreamLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "upstream_offline_seconds",
            "Time upstreams spent offline, counted when each offline period ends",
            upstream_offline_seconds.clone(),
        );
        let outbox_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "outbox_attempts",
            "Outbox send attempts by kind and outcome (delivered, retry, permanent, dead)",
            outbox_attempts.clone(),
        );
        let outbox_depth = Family::<DepthLabels, Gauge>::default();
        registry.register(
            "outbox_depth",
            "Outbox rows by kind and state (pending, in_flight, retrying, dead)",
            outbox_depth.clone(),
        );
        let outbox_oldest_pending_seconds = Gauge::default();
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest row not yet delivered",
            outbox_oldest_pending_seconds.clone(),
        );
        let alert_active = Family::<AlertLabels, Gauge>::default();
        registry.register(
            "alert_active",
            "1 while an alert is raised",
            alert_active.clone(),
        );
        let storage_writable = Gauge::default();
        registry.register(
            "storage_writable",
            "1 while the database takes writes, 0 while they are refused (disk full, read-only)",
            storage_writable.clone(),
        );
        let disk_free_bytes = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Bytes free on the file system holding the database",
            disk_free_bytes.clone(),
        );
        let disk_reserve_held = Gauge::default();
        registry.register(
            "disk_reserve_held",
            "1 while the disk reserve file is held, 0 once it was released to the ledger",
            disk_reserve_held.clone(),
        );
        Metrics {
            registry,
            storage_writable,
            disk_free_bytes,
            disk_reserve_held,
            outbox_attempts,
            outbox_depth,
            outbox_oldest_pending_seconds,
            alert_active,
            upstream_up,
            upstream_transitions,
            upstream_offline_seconds,
            requests,
            commit_batch_size,
            commit_seconds,
            sales_recorded,
            card_numbers_refused,
            up_since_seconds,
        }
    }

    pub fn observe_storage(&self, report: &crate::store::space::Report) {
        self.storage_writable.set(i64::from(report.writable));
        self.disk_free_bytes.set(
            report
                .free_bytes
                .map_or(-1, |f| i64::try_from(f).unwrap_or(i64::MAX)),
        );
        self.disk_reserve_held.set(i64::from(report.reserve_held));
    }

    pub fn observe_commit(&self, batch: usize, took: Duration) {
        self.commit_batch_size.observe(batch as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub fn link_status(&self, upstream: &str, status: &str) {
        let value = match status {
            "online" => 1.0,
            "degraded" => 0.5,
            _ => 0.0,
        };
        self.upstream_up
            .get_or_create(&UpstreamLabels {
                upstream: upstream.into(),
            })
            .set(value);
    }

    pub fn link_transition(&self, upstream: &str, to: &str) {
        self.upstream_transitions
            .get_or_create(&TransitionLabels {
                upstream: upstream.into(),
                to: to.into(),
            })
            .inc();
    }

    pub fn offline_seconds(&self, upstream: &str, secs: f64) {
        self.upstream_offline_seconds
            .get_or_create(&UpstreamLabels {
                upstream: upstream.into(),
            })
            .inc_by(secs);
    }

    pub fn outbox_attempt(&self, kind: &str, outcome: &str) {
        self.outbox_attempts
            .get_or_create(&AttemptLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Mutable access for components that register their own metrics at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
