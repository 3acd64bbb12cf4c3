//! Alerts: conditions a technician must hear about, raised and cleared once each.
//!
//! Invariants:
//! - an alert logs exactly one journald warning when raised and one notice when cleared, with
//!   a stable MESSAGE_ID per alert and transition (`journalctl MESSAGE_ID=…` finds them),
//!   never one per evaluation;
//! - while raised it shows in `/v1/status`, `/health/offline-queue` and as
//!   `posedge_alert_active{alert="…"} 1`.

use crate::config::AlertsConfig;
use crate::metrics::{AlertLabels, DepthLabels, Metrics};
use crate::outbox::queue::Stats;
use crate::probe::{Link, NetworkView};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Alert names and their journald MESSAGE_IDs (raised, cleared). Never change these.
const ALERTS: &[(&str, &str, &str)] = &[
    (
        "queue_depth",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d01",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d02",
    ),
    (
        "offline_for",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d03",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d04",
    ),
    (
        "dead_rows",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d05",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d06",
    ),
    (
        "oldest_pending",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d07",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d08",
    ),
    (
        "expired_payments",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d09",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d0a",
    ),
    (
        "backup",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d0b",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d0c",
    ),
    (
        "storage",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d0d",
        "4f0b3c1d2e8a4b6c9d7e5f3a1b2c4d0e",
    ),
];

/// What the alerts look at besides the outbox: payments that need the merchant.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentFacts {
    /// Offline approvals that expired in the last 24 hours.
    pub expired_recently: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Active {
    pub alert: &'static str,
    pub since: String,
    pub message: String,
}

pub struct Alerts {
    config: AlertsConfig,
    active: Mutex<BTreeMap<&'static str, Active>>,
    metrics: Arc<Metrics>,
}

impl Alerts {
    pub fn new(config: AlertsConfig, metrics: Arc<Metrics>) -> Alerts {
        for (name, _, _) in ALERTS {
            metrics
                .alert_active
                .get_or_create(&AlertLabels {
                    alert: (*name).into(),
                })
                .set(0);
        }
        Alerts {
            config,
            active: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    pub fn active(&self) -> Vec<Active> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// What each alert's condition says now: `Some(message)` when it holds.
    pub fn conditions(
        &self,
        stats: &Stats,
        payments: PaymentFacts,
        net: &NetworkView,
        offline_for: &dyn Fn(Link) -> Option<Duration>,
    ) -> [(&'static str, Option<String>); 5] {
        let c = &self.config;
        let offline = Link::ALL.into_iter().find_map(|l| {
            let d = offline_for(l)?;
            (net.link(l).configured && d >= c.offline_for.0)
                .then(|| format!("{} offline for {} min", l.as_str(), d.as_secs() / 60))
        });
        [
            (
                "queue_depth",
                (stats.pending as u64 > c.queue_depth).then(|| {
                    format!(
                        "{} outbox rows pending (alert above {})",
                        stats.pending, c.queue_depth
                    )
                }),
            ),
            ("offline_for", offline),
            (
                "dead_rows",
                (c.dead_rows > 0 && stats.dead as u64 >= c.dead_rows).then(|| {
                    format!(
                        "{} dead outbox rows; `posedge outbox list --state dead`",
                        stats.dead
                    )
                }),
            ),
            (
                "oldest_pending",
                (stats.oldest_pending_age_s as u64 >= c.oldest_pending.0.as_secs()
                    && stats.pending + stats.in_flight > 0)
                    .then(|| {
                        format!(
                            "oldest pending outbox row is {} min old",
                            stats.oldest_pending_age_s / 60
                        )
                    }),
            ),
            (
                "expired_payments",
                (payments.expired_recently > 0).then(|| {
                    format!(
                        "{} offline card payment(s) expired before Stripe accepted them; see /orders/offline-payments/stats",
                        payments.expired_recently
                    )
                }),
            ),
        ]
    }

    /// Applies one evaluation: raises and clears, logging only transitions.
    pub fn evaluate(
        &self,
        stats: &Stats,
        payments: PaymentFacts,
        net: &NetworkView,
        offline_for: &dyn Fn(Link) -> Option<Duration>,
    ) {
        self.record_depth(stats);
        let conditions = self.conditions(stats, payments, net, offline_for);
        for (name, holds) in conditions {
            self.apply(name, holds);
        }
    }

    /// The `backup` alert: the last backup failed, or none succeeded for twice the interval
    /// (see [`crate::backup::problem`]). Evaluated by the backup schedule, not with the queue.
    pub fn set_backup(&self, problem: Option<String>) {
        self.apply("backup", problem);
    }

    /// The `storage` alert: writes are refused (disk full, read-only) or run on the
    /// released disk reserve. Evaluated by the daemon's storage watch every second.
    pub fn set_storage(&self, problem: Option<String>) {
        self.apply("storage", problem);
    }

    /// Raises or clears one alert, logging only the transition.
    fn apply(&self, name: &'static str, holds: Option<String>) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let (_, raised_id, cleared_id) = ALERTS
            .iter()
            .find(|(n, _, _)| *n == name)
            .copied()
            .unwrap_or((name, "", ""));
        let gauge = self
            .metrics
            .alert_active
            .get_or_create(&AlertLabels { alert: name.into() });
        match (holds, active.contains_key(name)) {
            (Some(message), false) => {
                tracing::warn!(
                    message_id = raised_id,
                    alert = name,
                    "alert raised: {message}"
                );
                gauge.set(1);
                active.insert(
                    name,
                    Active {
                        alert: name,
                        since: crate::business_day::rfc3339(chrono::Utc::now()),
                        message,
                    },
                );
            }
            (Some(message), true) => {
                if let Some(a) = active.get_mut(name) {
                    a.message = message;
                }
            }
            (None, true) => {
                tracing::info!(message_id = cleared_id, alert = name, "alert cleared");
                gauge.set(0);
                active.remove(name);
            }
            (None, false) => {}
        }
    }

    fn record_depth(&self, stats: &Stats) {
        self.metrics
            .outbox_oldest_pending_seconds
            .set(stats.oldest_pending_age_s);
        for (kind, k) in &stats.by_kind {
            for (state, n) in [
                ("pending", k.pending),
                ("in_flight", k.in_flight),
                ("retrying", k.retrying),
                ("dead", k.dead),
            ] {
                self.metrics
                    .outbox_depth
                    .get_or_create(&DepthLabels {
                        kind: kind.clone(),
                        state: state.into(),
                    })
                    .set(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::queue::Stats;

    fn view() -> NetworkView {
        let status = crate::probe::LinkStatus {
            status: "online",
            forced: false,
            since: String::new(),
            last_ok: None,
            last_check: None,
            latency_ms: None,
            last_error: None,
            configured: true,
        };
        NetworkView {
            links: [status.clone(), status.clone(), status],
            mode: "online",
            since: String::new(),
        }
    }

    #[test]
    fn an_alert_is_raised_once_and_cleared_once() {
        let alerts = Alerts::new(AlertsConfig::default(), Arc::new(Metrics::new()));
        let never = |_: Link| None;
        let deep = Stats {
            pending: 101,
            ..Stats::default()
        };
        alerts.evaluate(&deep, PaymentFacts::default(), &view(), &never);
        alerts.evaluate(&deep, PaymentFacts::default(), &view(), &never);
        assert_eq!(alerts.active().len(), 1);
        assert_eq!(alerts.active()[0].alert, "queue_depth");
        alerts.evaluate(&Stats::default(), PaymentFacts::default(), &view(), &never);
        assert!(alerts.active().is_empty());
    }

    #[test]
    fn each_default_threshold_matches_the_system_it_replaces() {
        let alerts = Alerts::new(AlertsConfig::default(), Arc::new(Metrics::new()));
        let stats = Stats {
            pending: 100,
            dead: 1,
            oldest_pending_age_s: 3600,
            ..Stats::default()
        };
        let offline = |l: Link| (l == Link::Stripe).then_some(Duration::from_secs(30 * 60));
        let raised: Vec<_> = alerts
            .conditions(
                &stats,
                PaymentFacts {
                    expired_recently: 1,
                },
                &view(),
                &offline,
            )
            .into_iter()
            .filter_map(|(n, m)| m.map(|_| n))
            .collect();
        // 100 pending is not over 100; the others are at their thresholds.
        assert_eq!(
            raised,
            [
                "offline_for",
                "dead_rows",
                "oldest_pending",
                "expired_payments"
            ]
        );
    }
}
