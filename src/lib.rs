//! posedge: the daemon on the store's back-office box. Registers record sales and take
//! payments through its LAN API; it keeps a local SQLite ledger and forwards what the
//! outside world must know through an outbox once the upstream is reachable.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | TOML → validated [`config::Config`]; errors name the file and the key |
//! | [`money`] | integer minor units, ISO 4217 currencies, exact decimal parsing |
//! | [`pan`] | card-number detection: a Luhn-valid 13–19 digit run is never accepted |
//! | [`credentials`] | token SHA-256 and manager PIN argon2id hashing and checking |
//! | [`business_day`] | business date in the store's time zone; UTC timestamps |
//! | [`clock`] | the wall clock checked against the monotonic clock: which reading to take after a step |
//! | [`store`] | connections, PRAGMAs, migrations, the group-commit writer, read pool |
//! | [`ledger`] | sales, lines, taxes, tenders: validation and append-only SQL |
//! | [`outbox`] | upstream effects enqueued with their cause; the dispatcher that drains them |
//! | [`probe`] | per-upstream reachability with hysteresis; forced offline |
//! | [`payments`] | cash and card payments, the offline policy, approvals, forwards, voids |
//! | [`upstream`] | the HTTP client; Stripe and Conexxus requests and answer classification |
//! | [`naxml`] | NAXML POSJournal and MovementReport documents (pure rendering) |
//! | [`conexxus`] | journal events and batches, end-of-day reports, back-office status |
//! | [`audit`] | the hash-chained audit trail: append, verify, export |
//! | [`backup`] | scheduled and on-demand snapshots, pruning, restore, S3 upload kind |
//! | [`alerts`] | conditions raised and cleared once each |
//! | [`status`] | the technician's one-screen status and its exit code |
//! | [`settings`] | small durable settings (forced modes, the dispatcher clock) |
//! | [`api`] | HTTP routes, auth, body limits, error mapping, the connection loop |
//! | [`metrics`] | Prometheus registry |
//! | [`daemon`] | composition root: start-up order, signals, shutdown order |
//! | [`systemd`] | sd_notify READY/STATUS/WATCHDOG/STOPPING |
//! | [`logging`] | journald or stderr |
//! | [`cli`] | the `posedge` subcommands and exit codes |
//!
//! The invariants the whole crate keeps are in `../shared/DESIGN.md`; each module's header
//! states the ones it is responsible for.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod backup;
pub mod business_day;
pub mod cli;
pub mod clock;
pub mod conexxus;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod naxml;
pub mod outbox;
pub mod pan;
pub mod payments;
pub mod probe;
pub mod settings;
pub mod status;
pub mod store;
pub mod systemd;
pub mod upstream;
