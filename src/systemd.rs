//! systemd integration: sd_notify READY / STATUS / WATCHDOG / STOPPING / EXTEND_TIMEOUT.
//!
//! Invariants:
//! - READY=1 is sent only after migrations ran and the listener is bound;
//! - a WATCHDOG=1 ping is sent only after the writer thread answered a round-trip, so a wedged
//!   writer stops the pings and systemd restarts us;
//! - outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use crate::store::Writer;
use sd_notify::NotifyState;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(&one_line(status))]);
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining requests"),
    ]);
}

/// Asks systemd for more start-up time, e.g. before a long migration.
pub fn extend_timeout(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Pings the watchdog every WATCHDOG_USEC/2 while the writer answers. Returns at once when
/// the watchdog is not enabled.
pub async fn watchdog(writer: Writer) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let half = period / 2;
    let mut tick = tokio::time::interval(half);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if writer.ping(half).await {
            send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(
                "the writer did not answer within {half:?}; withholding the watchdog ping"
            );
        }
    }
}
