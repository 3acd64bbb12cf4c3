//! The command line: `posedge serve | check-config | migrate | hash-token | hash-pin`.
//!
//! Exit codes: 0 success, 1 failure, 65 database refused (corrupt or newer), 78 bad config.

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (what systemd starts).
    Serve {
        /// Config file; default /etc/posedge/config.toml if it exists, else built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and exit: 0 valid, 78 invalid (the key is named).
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Apply pending database migrations (after a snapshot) and exit.
    Migrate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the token_sha256 value of a register or admin token.
    HashToken { token: String },
    /// Print an argon2id pin_hash for a manager PIN.
    HashPin { pin: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::CheckConfig { config } => match check_config(config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Migrate { config } => {
            crate::logging::init();
            match migrate(config) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Serve { config } => {
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
