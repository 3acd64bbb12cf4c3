//! Logging: to journald when systemd connected our stderr to the journal (`JOURNAL_STREAM`),
//! otherwise to stderr. Structured fields become journald fields in upper case, so
//! `journalctl -u posedge SALE_ID=sale_…` finds a sale's lines.
//!
//! Invariant: nothing logs request bodies, tokens, PINs or secret keys.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once. `RUST_LOG` overrides the default `info` level.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = tracing_subscriber::registry()
                .with(filter)
                // No `F_` prefix: SALE_ID, PAYMENT_ID, OUTBOX_ID, UPSTREAM and the alerts'
                // MESSAGE_ID must be the journal fields themselves, for `journalctl FIELD=`.
                .with(
                    journald
                        .with_syslog_identifier("posedge".into())
                        .with_field_prefix(None),
                )
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
}
