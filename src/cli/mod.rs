//! The command line: `posedge serve | check-config | migrate | hash-token | hash-pin |
//! outbox | network | audit | backup | status`.
//!
//! Technician commands that change something go through the running daemon (its local admin
//! socket) so its in-memory state follows; when the daemon is stopped they change the
//! database directly, in one transaction with their audit row. Read-only commands read the
//! database read-only, which WAL allows beside a running daemon.
//!
//! Exit codes: 0 success, 1 failure, 65 database refused (corrupt or newer), 78 bad config.

mod backup;
mod local;
mod technician;

use crate::config::Config;
use crate::credentials;
use crate::daemon::{self, StartError};
use crate::store;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "posedge",
    version,
    about = "Store-and-forward POS daemon for the store back office"
)]
pub struct Cli {
    /// Config file; default /etc/posedge/config.toml if it exists, else built-in defaults.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (what systemd starts).
    Serve,
    /// Validate the configuration and exit: 0 valid, 78 invalid (the key is named).
    CheckConfig,
    /// Apply pending database migrations (after a snapshot) and exit.
    Migrate,
    /// Print the token_sha256 value of a register or admin token.
    HashToken { token: String },
    /// Print an argon2id pin_hash for a manager PIN.
    HashPin { pin: String },
    /// Inspect and repair the outbox.
    Outbox {
        #[command(subcommand)]
        action: technician::OutboxAction,
    },
    /// Force upstreams offline (drills, provider incidents) or back to automatic.
    Network {
        #[command(subcommand)]
        action: technician::NetworkAction,
    },
    /// Check the audit trail's hash chain.
    Audit {
        #[command(subcommand)]
        action: technician::AuditAction,
    },
    /// Take, list or restore backups of the database.
    Backup {
        #[command(subcommand)]
        action: backup::BackupAction,
    },
    /// One screen: mode and upstreams, outbox, offline payments against the limits, last
    /// backup, database size. From the running daemon, else from the database.
    ///
    /// Exit codes, for monitoring: 2 DOWN = the daemon is not running (its admin socket does
    /// not answer), or its database writer does not answer within 1 s, or the disk holding
    /// the database has less than 16 MiB free. 1 DEGRADED = a configured upstream is not
    /// online (forced offline included), an alert is active, the outbox has dead rows, or the
    /// last backup failed or the last good one is older than twice [backup] interval.
    /// 0 HEALTHY = none of these.
    Status {
        /// Print the whole document as JSON (with `health.exit_code` and `health.reasons`).
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command {
        Command::HashToken { token } => {
            println!("{}", credentials::hash_token(&token));
            ExitCode::SUCCESS
        }
        Command::HashPin { pin } => match credentials::hash_pin(&pin) {
            Ok(h) => {
                println!("{h}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&StartError::Other(e)),
        },
        Command::CheckConfig => match check_config(config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Migrate => {
            crate::logging::init();
            match migrate(config) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Outbox { action } => report(technician::outbox(config, action)),
        Command::Network { action } => report(technician::network(config, action)),
        Command::Audit { action } => report(technician::audit(config, action)),
        Command::Backup { action } => report(backup::backup(config, action)),
        Command::Status { json } => match backup::status(config, json) {
            Ok((text, code)) => {
                println!("{text}");
                ExitCode::from(code)
            }
            Err(e) => fail(&e),
        },
        Command::Serve => {
            crate::logging::init();
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(&e.into()),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(16)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    return fail(&StartError::Other(format!("cannot start the runtime: {e}")))
                }
            };
            match runtime.block_on(daemon::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
/// memory freed in one arena is not reused by another: with a blocking pool serving reads the
/// daemon's RSS creeps up for nothing. Two arenas are plenty for a 2-core box.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Prints a technician command's output; its error goes to stderr with exit code 1 (or the
/// start-up error's own code).
fn report(result: Result<String, StartError>) -> ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &StartError) -> ExitCode {
    tracing::error!("{e}");
    eprintln!("posedge: {e}");
    ExitCode::from(e.exit_code())
}

fn check_config(path: Option<PathBuf>) -> Result<String, StartError> {
    let config = Config::load(path.as_deref())?;
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        crate::api::serve::tls_acceptor(cert, key).map_err(|m| crate::config::ConfigError {
            file: config.source_label(),
            key: "server.tls_cert".into(),
            message: m,
        })?;
    }
    if let Some(stripe) = &config.stripe {
        crate::upstream::stripe::load_secret_key(stripe).map_err(|(key, message)| {
            crate::config::ConfigError {
                file: config.source_label(),
                key: key.into(),
                message,
            }
        })?;
    }
    if config.backup.s3.is_some() {
        crate::backup::upload::BackupUpload::new(&config, crate::upstream::http::HttpClient::new())
            .map_err(|(key, message)| crate::config::ConfigError {
                file: config.source_label(),
                key: key.into(),
                message,
            })?;
    }
    warn_if_writable_by_others(&config);
    Ok(format!(
        "ok: {} (listen {}, database {}, {} registers, {} admins, {} managers, stripe {}, conexxus {})",
        config.source_label(),
        config.server.listen,
        config.resolved.database_path.display(),
        config.registers.len(),
        config.admins.len(),
        config.managers.len(),
        if config.stripe.is_some() { "configured" } else { "not configured" },
        if config.conexxus.is_some() { "configured" } else { "not configured" },
    ))
}

/// The config holds token hashes and perhaps a Stripe key: others must not be able to edit it.
fn warn_if_writable_by_others(config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(path) = &config.source {
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o002 != 0 {
                eprintln!(
                    "warning: {} is writable by every user; chmod 640 it",
                    path.display()
                );
            }
        }
    }
}

fn migrate(path: Option<PathBuf>) -> Result<String, StartError> {
    let config = Config::load(path.as_deref())?;
    let db = &config.resolved.database_path;
    let mut conn = store::open_rw(db)?;
    let outcome = store::migrate::run(&mut conn, db, &config.resolved.backup_directory)?;
    Ok(match (outcome.from == outcome.to, outcome.snapshot) {
        (true, _) => format!("{}: schema already at v{}", db.display(), outcome.to),
        (false, Some(s)) => format!(
            "{}: migrated v{} → v{} (snapshot {})",
            db.display(),
            outcome.from,
            outcome.to,
            s.display()
        ),
        (false, None) => format!("{}: created at schema v{}", db.display(), outcome.to),
    })
}
