//! The composition root: config → store → API, plus signals and systemd.
//!
//! Start-up order (invariant 8, offline first): open and migrate the database, bind the
//! listener, send READY. Nothing here touches the network beyond binding the LAN socket.
//! Shutdown order: stop accepting, drain in-flight requests, commit the writer's queue,
//! checkpoint the WAL, exit 0.

use crate::alerts::Alerts;
use crate::api::{self, AppState};
use crate::backup::daemon::Backups;
use crate::backup::upload::BackupUpload;
use crate::conexxus::{batch, eod};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::outbox::backoff::Backoff;
use crate::outbox::dispatcher::{self, Dispatcher, LaneLimits};
use crate::outbox::kind::Kind;
use crate::outbox::{queue, Upstream};
use crate::payments::flow::Payments;
use crate::payments::forward::{StripeForward, StripeVoid};
use crate::probe::{Link, Probe};
use crate::store::{OpenOptions, Store, StoreError};
use crate::upstream::conexxus::{Delivery, MovementReport, SaleJournal};
use crate::upstream::http::HttpClient;
use crate::upstream::stripe::{load_secret_key, Stripe};
use crate::{settings, systemd};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why the daemon could not start; each maps to its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

impl StartError {
    /// EX_CONFIG (78) for configuration, EX_DATAERR (65) for a database we must not touch,
    /// 1 otherwise. The unit file stops restarting on 78 and 65: retrying cannot fix them.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 78,
            StartError::Store(StoreError::NewerSchema { .. } | StoreError::Corrupt { .. }) => 65,
            _ => 1,
        }
    }
}

/// A daemon whose database is open and migrated, ready to serve.
pub struct Daemon {
    pub state: AppState,
    store: Store,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Held for the daemon's life: `posedge backup restore` refuses while it is.
    _lock: crate::store::lock::DbLock,
}

impl Daemon {
    /// Opens the database (running migrations after a snapshot) and loads TLS material.
    /// Blocking: call before the runtime is busy, or from `spawn_blocking`.
    pub fn open(config: Config) -> Result<Daemon, StartError> {
        // The wall clock is trusted as it reads at start-up; steps after this are judged
        // against the monotonic clock.
        crate::clock::sense();
        let metrics = Arc::new(Metrics::new());
        metrics
            .up_since_seconds
            .set(chrono::Utc::now().timestamp() as f64);
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(api::serve::tls_acceptor(cert, key).map_err(|m| {
                StartError::Config(ConfigError {
                    file: config.source_label(),
                    key: "server.tls_cert".into(),
                    message: m,
                })
            })?),
            _ => None,
        };
        let lock =
            crate::store::lock::try_lock(&config.resolved.database_path)?.ok_or_else(|| {
                StartError::Other(format!(
                    "another posedge process has {} open (it holds {}); stop it first",
                    config.resolved.database_path.display(),
                    crate::store::lock::lock_path(&config.resolved.database_path).display()
                ))
            })?;
        // A migration with a snapshot of a large ledger can take a while.
        systemd::extend_timeout(Duration::from_secs(300));
        let observer_metrics = metrics.clone();
        let store = Store::open(OpenOptions {
            path: &config.resolved.database_path,
            snapshot_dir: &config.resolved.backup_directory,
            readers: 4,
            on_commit: Arc::new(move |n, took| observer_metrics.observe_commit(n, took)),
            reserve_bytes: config.database.reserve_mib.saturating_mul(1024 * 1024),
        })?;
        let recovered = recover(&config)?;
        let http = HttpClient::new();
        let probe = Probe::new(
            &config,
            &recovered.forced,
            http.clone(),
            store.writer.clone(),
            metrics.clone(),
        );
        let stripe = match &config.stripe {
            Some(sc) => {
                let config_error = |key: &str, message: String| ConfigError {
                    file: config.source_label(),
                    key: key.into(),
                    message,
                };
                let key = load_secret_key(sc).map_err(|(k, m)| config_error(k, m))?;
                Some(
                    Stripe::new(sc, &key, http.clone())
                        .map_err(|m| config_error("stripe.secret_key", m))?,
                )
            }
            None => None,
        };
        let backup_upload =
            BackupUpload::new(&config, http.clone()).map_err(|(key, message)| {
                StartError::Config(ConfigError {
                    file: config.source_label(),
                    key: key.into(),
                    message,
                })
            })?;
        let kinds: Vec<Arc<dyn Kind>> = vec![
            Arc::new(backup_upload),
            Arc::new(SaleJournal::new(
                &config,
                store.reads.clone(),
                Delivery::new(&config, http.clone()),
            )),
            Arc::new(MovementReport::new(Delivery::new(&config, http.clone()))),
            Arc::new(StripeForward {
                reads: store.reads.clone(),
                stripe: stripe.clone(),
                // A payment is money owed: keep trying for long (attempts only count when
                // Stripe was reached; an outage costs none).
                max_attempts: config.outbox.max_retries.max(20),
            }),
            Arc::new(StripeVoid {
                reads: store.reads.clone(),
                stripe: stripe.clone(),
            }),
        ];
        let max_concurrent = config.outbox.max_concurrent as usize;
        let mut limits = HashMap::new();
        limits.insert(
            Upstream::Stripe,
            LaneLimits {
                max_concurrent,
                rate_per_sec: config.stripe.as_ref().map(|s| s.rate_limit_per_sec),
            },
        );
        limits.insert(
            Upstream::Conexxus,
            LaneLimits {
                max_concurrent,
                rate_per_sec: config
                    .conexxus
                    .as_ref()
                    .map(|c| c.rate_limit_per_sec)
                    .filter(|r| *r > 0),
            },
        );
        limits.insert(
            Upstream::Backup,
            LaneLimits {
                max_concurrent: 1,
                rate_per_sec: None,
            },
        );
        let dispatcher = Dispatcher::new(dispatcher::Parts {
            kinds,
            limits,
            writer: store.writer.clone(),
            reads: store.reads.clone(),
            probe: probe.clone(),
            metrics: metrics.clone(),
            clock_ms: recovered.clock_ms,
            backoff: Backoff {
                base: config.outbox.backoff_base.0,
                max: config.outbox.backoff_max.0,
            },
            process_interval: config.outbox.process_interval.0,
        });
        let alerts = Arc::new(Alerts::new(config.alerts.clone(), metrics.clone()));
        let payments = Arc::new(Payments::new(
            &config,
            store.writer.clone(),
            store.reads.clone(),
            probe.clone(),
            stripe,
            dispatcher.clone(),
        ));
        let backups = Backups::new(
            crate::backup::Plan::from_config(&config),
            store.reads.clone(),
            store.writer.clone(),
            dispatcher.clone(),
            alerts.clone(),
            store.space.clone(),
        );
        let end_of_day = Arc::new(eod::EndOfDay::new(
            store.writer.clone(),
            dispatcher.clone(),
            eod::Settings::from_config(&config),
        ));
        let state = AppState {
            space: store.space.clone(),
            end_of_day,
            config: Arc::new(config),
            writer: store.writer.clone(),
            reads: store.reads.clone(),
            metrics,
            started_at: chrono::Utc::now(),
            probe,
            dispatcher,
            alerts,
            payments,
            backups,
        };
        Ok(Daemon {
            state,
            store,
            tls,
            _lock: lock,
        })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains and closes the database.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let cfg = &self.state.config;
        tracing::info!(
            listen = %addr,
            tls = self.tls.is_some(),
            database = %cfg.resolved.database_path.display(),
            config = %cfg.source_label(),
            registers = cfg.registers.len(),
            admins = cfg.admins.len(),
            "posedge ready"
        );
        if cfg.registers.is_empty() {
            tracing::warn!("no [[registers]] configured: every register call will be answered 401");
        }
        systemd::ready(&format!("ready: listening on {addr}"));
        let state = self.state.clone();
        let mut background = vec![tokio::spawn(systemd::watchdog(state.writer.clone()))];
        background.extend(state.probe.spawn());
        background.push(tokio::spawn(housekeeping(state.clone())));
        background.push(tokio::spawn(watch_storage(state.clone())));
        background.push(tokio::spawn(evaluate_alerts(state.clone())));
        if cfg.backup.enabled {
            background.push(tokio::spawn(state.backups.clone().schedule()));
        }
        background.push(tokio::spawn(end_of_day(state.clone())));
        let (stop_tx, stop_rx) = watch::channel(false);
        let lanes = state
            .dispatcher
            .spawn(stop_rx.clone(), cfg.server.shutdown_grace.0);

        let socket_path = cfg.resolved.admin_socket.clone();
        let admin = match api::serve::bind_admin_socket(&socket_path) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(path = %socket_path.display(), error = %e, "no local admin socket; the CLI falls back to the database");
                None
            }
        };
        let listeners = api::serve::Listeners {
            tcp: listener,
            tls: self.tls,
            admin,
        };
        let mut stopped = stop_rx.clone();
        let serve = api::run(listeners, state.clone(), async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        let trigger = async move {
            shutdown.await;
            systemd::stopping();
            let _ = stop_tx.send(true);
        };
        tokio::join!(serve, trigger);

        for lane in lanes {
            let _ = lane.await;
        }
        for task in background {
            task.abort();
        }
        let _ = std::fs::remove_file(&socket_path);
        tracing::info!("draining the writer and checkpointing the WAL");
        self.store.close().await;
        tracing::info!("posedge stopped");
    }
}

/// What a previous run left that this one must pick up before serving.
struct Recovered {
    forced: Vec<Link>,
    clock_ms: i64,
}

/// Leased outbox rows of a previous process go back to pending (same keys); the forced
/// network modes and the dispatcher clock are read back.
fn recover(config: &Config) -> Result<Recovered, StoreError> {
    let mut conn = crate::store::open_rw(&config.resolved.database_path)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let reset = queue::reset_leases(&tx)?;
    let forced = crate::probe::load_forced(&tx)?;
    let clock_ms = settings::get(&tx, dispatcher::CLOCK_KEY)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Before any sale is recorded under this run's `events_per_document`.
    let now = crate::business_day::rfc3339(chrono::Utc::now());
    let gathered = batch::init(&tx, eod::Settings::from_config(config).batching, &now)?;
    tx.commit()?;
    if gathered > 0 {
        tracing::info!(
            documents = gathered,
            "sales left in a journal batch queued before going back to one document per sale"
        );
    }
    if reset > 0 {
        tracing::warn!(
            rows = reset,
            "outbox rows in flight at the last stop go out again with their original keys"
        );
    }
    if !forced.is_empty() {
        tracing::warn!(links = ?forced, "forced offline since before the restart; `posedge network auto` undoes it");
    }
    Ok(Recovered { forced, clock_ms })
}

/// Every `process_interval`: expired leases back, old delivered rows pruned, lanes woken.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(state.config.outbox.process_interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        state
            .dispatcher
            .sweep(state.config.outbox.retention_days)
            .await;
        expire_payments(&state).await;
    }
}

/// Every second: the disk reserve released or re-taken as free space moves, the `storage`
/// alert and metrics updated, and while writes are refused a small test commit, so the
/// daemon notices by itself when space was freed or the file system is writable again.
async fn watch_storage(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let space = state.space.clone();
        // statvfs and fallocate can block on a sick disk: keep them off the runtime threads.
        let _ = tokio::task::spawn_blocking(move || space.watch()).await;
        if state.space.failure().is_some() {
            let now = crate::business_day::rfc3339(chrono::Utc::now());
            // The outcome reaches `Space` through the writer; nothing to do with it here.
            let _ = state
                .writer
                .write(move |tx| {
                    settings::set(tx, "storage_checked_at", &now).map_err(StoreError::from)
                })
                .await;
        }
        let report = state.space.report();
        state.metrics.observe_storage(&report);
        state.alerts.set_storage(report.reason.map(|reason| match reason {
            "disk_full" => format!(
                "the disk holding {} is full: sales may be refused (503) until space is freed",
                report.directory
            ),
            "read_only" => format!(
                "{} is read-only: sales may be refused (503) until the file system is repaired",
                report.directory
            ),
            _ => format!(
                "the disk holding {} is nearly full: the reserve was released so sales go on; free space there",
                report.directory
            ),
        }));
    }
}

/// End of day: at start-up the catch-up for dates that closed while the box was off, then
/// every 5 s the scheduled syncs that came due; every second the journal batches that
/// filled up or waited long enough (a no-op with one document per sale).
async fn end_of_day(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for n in 0u64.. {
        tick.tick().await;
        if let Err(e) = state.end_of_day.batch_tick().await {
            e.log_background("cannot queue journal batches");
        }
        if n % 5 == 0 {
            if let Err(e) = state.end_of_day.run_due().await {
                e.log_background("cannot queue the end-of-day movement reports");
            }
        }
    }
}

/// Offline approvals not accepted by Stripe within `offline_window` become `expired`. The
/// window is measured on the earlier clock reading: a wall clock stepped ahead neither gives
/// up charges Stripe would take nor frees their outstanding headroom for more approvals.
async fn expire_payments(state: &AppState) {
    let window = chrono::Duration::from_std(state.config.offline_payments.offline_window.0)
        .unwrap_or(chrono::Duration::days(3));
    let cutoff = crate::business_day::rfc3339(crate::clock::now().earlier() - window);
    let network = state.probe.snapshot().summary();
    let expired = state
        .writer
        .write(move |tx| crate::payments::expire(tx, &cutoff, &network).map_err(StoreError::from))
        .await;
    match expired {
        Ok(ids) => {
            for id in &ids {
                tracing::warn!(payment_id = %id, "offline payment expired before Stripe accepted it; recover it with the customer");
            }
        }
        Err(e) => e.log_background("cannot expire old offline payments"),
    }
}

/// Every few seconds: queue statistics into metrics and alerts.
async fn evaluate_alerts(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let since = crate::business_day::rfc3339(chrono::Utc::now() - chrono::Duration::hours(24));
        let facts = state
            .reads
            .read(move |c| {
                let stats = queue::stats(c)?;
                let expired_recently: i64 = c.query_row(
                    "SELECT count(*) FROM payments WHERE status = 'expired' AND updated_at >= ?1",
                    [&since],
                    |r| r.get(0),
                )?;
                Ok::<_, StoreError>((stats, crate::alerts::PaymentFacts { expired_recently }))
            })
            .await;
        match facts {
            Ok((stats, payments)) => {
                let probe = state.probe.clone();
                state
                    .alerts
                    .evaluate(&stats, payments, &state.probe.snapshot(), &move |l| {
                        probe.offline_for(l)
                    });
            }
            Err(e) => tracing::error!(error = %e, "cannot read outbox statistics"),
        }
    }
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// `posedge serve`: the whole daemon life.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let listen = config.server.listen;
    let daemon = tokio::task::spawn_blocking(move || Daemon::open(config))
        .await
        .map_err(|e| StartError::Other(format!("start-up task failed: {e}")))??;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        StartError::Other(format!("cannot listen on {listen} (server.listen): {e}"))
    })?;
    daemon.run(listener, shutdown_signal()).await;
    Ok(())
}
