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
        Metrics {
            registry,
            requests,
            commit_batch_size,
            commit_seconds,
            sales_recorded,
            card_numbers_refused,
            up_since_seconds,
        }
    }

    pub fn observe_commit(&self, batch: usize, took: Duration) {
        self.commit_batch_size.observe(batch as f64);
        self.commit_seconds.observe(took.as_secs_f64());
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
