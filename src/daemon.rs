//! The composition root: config → store → API, plus signals and systemd.
//!
//! Start-up order (invariant 8, offline first): open and migrate the database, bind the
//! listener, send READY. Nothing here touches the network beyond binding the LAN socket.
//! Shutdown order: stop accepting, drain in-flight requests, commit the writer's queue,
//! checkpoint the WAL, exit 0.

use crate::api::{self, AppState};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::store::{OpenOptions, Store, StoreError};
use crate::systemd;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
}

impl Daemon {
    /// Opens the database (running migrations after a snapshot) and loads TLS material.
    /// Blocking: call before the runtime is busy, or from `spawn_blocking`.
    pub fn open(config: Config) -> Result<Daemon, StartError> {
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
        // A migration with a snapshot of a large ledger can take a while.
        systemd::extend_timeout(Duration::from_secs(300));
        let observer_metrics = metrics.clone();
        let store = Store::open(OpenOptions {
            path: &config.resolved.database_path,
            snapshot_dir: &config.resolved.backup_directory,
            readers: 4,
            on_commit: Arc::new(move |n, took| observer_metrics.observe_commit(n, took)),
        })?;
        let state = AppState {
            config: Arc::new(config),
            writer: store.writer.clone(),
            reads: store.reads.clone(),
            metrics,
            started_at: chrono::Utc::now(),
        };
        Ok(Daemon { state, store, tls })
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
        let watchdog = tokio::spawn(systemd::watchdog(self.state.writer.clone()));

        api::run(listener, self.tls, self.state.clone(), shutdown).await;

        systemd::stopping();
        tracing::info!("draining the writer and checkpointing the WAL");
        self.store.close().await;
        watchdog.abort();
        tracing::info!("posedge stopped");
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
