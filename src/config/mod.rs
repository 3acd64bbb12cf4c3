//! Configuration: TOML → a validated [`Config`], once, at start-up.
//!
//! Invariants:
//! - every key has a default, so no file at all is a valid configuration;
//! - unknown keys are errors (`deny_unknown_fields`), and every error names the file and the
//!   dotted key (`offline_payments.max_daily_total`) so a technician can fix it in one go;
//! - amounts are decimal strings converted exactly to minor units of `store.currency`;
//!   durations are strings with a unit (`"30s"`); the time zone is an IANA name.

mod duration;

pub use duration::ConfigDuration;

use crate::money::{Currency, Decimal};
use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest `outbox.retention_days`: ten years, like the longest duration, so the sweep's
/// cutoff (now minus that many days) is always a date `chrono` can hold.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// Where `posedge serve` looks when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/posedge/config.toml";

/// A configuration error: the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: key `{key}`: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub registers: Vec<TokenEntry>,
    pub admins: Vec<TokenEntry>,
    pub managers: Vec<ManagerEntry>,
    pub offline_payments: OfflinePaymentsConfig,
    pub probe: ProbeConfig,
    pub outbox: OutboxConfig,
    pub stripe: Option<StripeConfig>,
    pub conexxus: Option<ConexxusConfig>,
    pub alerts: AlertsConfig,
    pub backup: BackupConfig,
    /// The file this came from; `None` when running on defaults.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Resolved at validation.
    #[serde(skip)]
    pub resolved: Resolved,
}

/// Values computed from the raw keys once, so nothing downstream parses strings again.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub currency: Currency,
    pub timezone: Tz,
    pub day_close: NaiveTime,
    /// `[conexxus] eod_sync_time` (its default when `[conexxus]` is absent).
    pub eod_sync_time: NaiveTime,
    pub database_path: PathBuf,
    pub backup_directory: PathBuf,
    pub admin_socket: PathBuf,
    pub offline: OfflineLimits,
}

impl Default for Resolved {
    fn default() -> Self {
        Resolved {
            currency: Currency::from_code("USD").expect("USD is ISO 4217"),
            timezone: Tz::UTC,
            day_close: NaiveTime::MIN,
            eod_sync_time: NaiveTime::from_hms_opt(23, 30, 0).expect("a valid time"),
            database_path: PathBuf::from("posedge-data/posedge.db"),
            backup_directory: PathBuf::from("posedge-data/backups"),
            admin_socket: PathBuf::from("posedge-data/posedge.sock"),
            offline: OfflineLimits::default(),
        }
    }
}

/// Offline payment limits in minor units of the store currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineLimits {
    pub max_transaction_amount: i64,
    pub max_daily_total: i64,
    pub max_outstanding_total: i64,
    pub approval_required_over: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub location_id: String,
    pub timezone: String,
    pub currency: String,
    pub day_close: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            location_id: "loc-1".into(),
            timezone: "America/Chicago".into(),
            currency: "USD".into(),
            day_close: "00:00".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_health: bool,
    pub max_body_bytes: usize,
    /// Whole-request bound: headers, body and handler. A slow client cannot hold a slot.
    pub request_timeout: ConfigDuration,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    pub shutdown_grace: ConfigDuration,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Local admin socket for the `posedge` CLI; default `posedge.sock` beside the database.
    /// Connections on it act as admin: only the daemon's user (and root) can open it.
    pub admin_socket: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_health: true,
            max_body_bytes: 65536,
            request_timeout: ConfigDuration(Duration::from_secs(30)),
            shutdown_grace: ConfigDuration(Duration::from_secs(10)),
            tls_cert: None,
            tls_key: None,
            admin_socket: None,
        }
    }
}

/// Upper bound of `[database] reserve_mib`: 64 GiB.
pub const MAX_RESERVE_MIB: u64 = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Default: `$STATE_DIRECTORY/posedge.db` under systemd, else `./posedge-data/posedge.db`.
    pub path: Option<PathBuf>,
    /// MiB held in `posedge.reserve` beside the database and released to the ledger when
    /// the disk fills up (`crate::store::space`); 0 keeps no reserve.
    pub reserve_mib: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: None,
            reserve_mib: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub id: String,
    pub token_sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerEntry {
    pub id: String,
    pub pin_hash: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflinePaymentsConfig {
    pub enabled: bool,
    pub allowed_methods: Vec<String>,
    pub max_transaction_amount: AmountText,
    pub max_daily_total: AmountText,
    pub max_outstanding_total: AmountText,
    pub require_manager_approval: bool,
    pub approval_required_over: AmountText,
    pub offline_window: ConfigDuration,
}

impl Default for OfflinePaymentsConfig {
    fn default() -> Self {
        OfflinePaymentsConfig {
            enabled: true,
            allowed_methods: vec!["cash".into(), "card".into()],
            max_transaction_amount: AmountText::of("500.00"),
            max_daily_total: AmountText::of("5000.00"),
            max_outstanding_total: AmountText::of("5000.00"),
            require_manager_approval: false,
            approval_required_over: AmountText::of("100.00"),
            offline_window: ConfigDuration(Duration::from_secs(72 * 3600)),
        }
    }
}

/// A decimal amount as written in config; converted to minor units at validation, when the
/// store currency is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountText(pub Decimal);

impl AmountText {
    fn of(s: &str) -> AmountText {
        AmountText(Decimal::parse(s).expect("built-in default amount"))
    }
}

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Decimal::parse(&s)
            .map(AmountText)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    pub interval: ConfigDuration,
    pub timeout: ConfigDuration,
    pub offline_interval: ConfigDuration,
    pub internet_targets: Vec<String>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: ConfigDuration(Duration::from_secs(30)),
            timeout: ConfigDuration(Duration::from_secs(5)),
            offline_interval: ConfigDuration(Duration::from_secs(5)),
            internet_targets: vec!["1.1.1.1:443".into(), "8.8.8.8:443".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    pub max_concurrent: u32,
    pub process_interval: ConfigDuration,
    pub max_retries: u32,
    pub retention_days: u32,
    pub backoff_base: ConfigDuration,
    pub backoff_max: ConfigDuration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_concurrent: 5,
            process_interval: ConfigDuration(Duration::from_secs(120)),
            max_retries: 5,
            retention_days: 7,
            backoff_base: ConfigDuration(Duration::from_secs(1)),
            backoff_max: ConfigDuration(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    pub api_base: String,
    pub secret_key_file: Option<PathBuf>,
    pub secret_key: Option<String>,
    pub online_timeout: ConfigDuration,
    pub rate_limit_per_sec: u32,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            api_base: "https://api.stripe.com".into(),
            secret_key_file: None,
            secret_key: None,
            online_timeout: ConfigDuration(Duration::from_secs(10)),
            rate_limit_per_sec: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConexxusTransport {
    Http,
    Directory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConexxusConfig {
    pub transport: ConexxusTransport,
    pub url: Option<String>,
    pub directory: Option<PathBuf>,
    pub auto_eod_sync: bool,
    pub eod_sync_time: String,
    pub sync_priority: u32,
    pub max_retries: u32,
    /// Bound on one delivery (HTTP request, or file write + fsync + rename).
    pub timeout: ConfigDuration,
    /// Optional `Authorization: Bearer` for the back office.
    pub bearer_token: Option<String>,
    /// Optional HTTP basic auth for the back office.
    pub basic_user: Option<String>,
    pub basic_password: Option<String>,
    /// Documents per second at most; 0 means unlimited.
    pub rate_limit_per_sec: u32,
    /// Sale and refund events per POSJournal document: 1 sends each sale on its own as it
    /// is recorded; more gathers up to this many into one document.
    pub events_per_document: u32,
    /// With `events_per_document` > 1: a partial document goes once its oldest sale has
    /// waited this long.
    pub batch_max_wait: ConfigDuration,
}

impl Default for ConexxusConfig {
    fn default() -> Self {
        ConexxusConfig {
            transport: ConexxusTransport::Http,
            url: None,
            directory: None,
            auto_eod_sync: true,
            eod_sync_time: "23:30".into(),
            sync_priority: 8,
            max_retries: 10,
            timeout: ConfigDuration(Duration::from_secs(30)),
            bearer_token: None,
            basic_user: None,
            basic_password: None,
            rate_limit_per_sec: 0,
            events_per_document: 1,
            batch_max_wait: ConfigDuration(Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub queue_depth: u64,
    pub offline_for: ConfigDuration,
    pub dead_rows: u64,
    pub oldest_pending: ConfigDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            queue_depth: 100,
            offline_for: ConfigDuration(Duration::from_secs(30 * 60)),
            dead_rows: 1,
            oldest_pending: ConfigDuration(Duration::from_secs(3600)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    pub enabled: bool,
    pub interval: ConfigDuration,
    pub keep: u32,
    /// Default: `backups/` beside the database.
    pub directory: Option<PathBuf>,
    /// Optional upload of every scheduled backup to S3-compatible storage.
    pub s3: Option<S3Config>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            enabled: true,
            interval: ConfigDuration(Duration::from_secs(24 * 3600)),
            keep: 7,
            directory: None,
            s3: None,
        }
    }
}

/// `[backup.s3]`: where backups are uploaded (an outbox kind, so an outage only delays it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, or any S3-compatible endpoint.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Prepended to the file name to make the object key, e.g. `"store-17/"`.
    pub prefix: String,
    pub access_key_id: String,
    /// The secret comes from here, `secret_access_key_file`, env
    /// `POSEDGE_S3_SECRET_ACCESS_KEY` or the systemd credential `s3_secret_access_key`.
    pub secret_access_key: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// Bound on one upload (the whole file).
    pub timeout: ConfigDuration,
    pub max_retries: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: String::new(),
            secret_access_key: None,
            secret_access_key_file: None,
            path_style: false,
            timeout: ConfigDuration(Duration::from_secs(600)),
            max_retries: 20,
        }
    }
}

impl Config {
    /// Loads `path` if given (it must exist), else [`DEFAULT_CONFIG_PATH`] if it exists, else
    /// the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::from_file(p),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Config::from_file(Path::new(DEFAULT_CONFIG_PATH))
            }
            None => Config::default().validated(),
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::from_text(&text, path)
    }

    /// The text of the file at `path`, parsed and validated: what `posedge check-config`
    /// and start-up do once the file is read (the fuzz target `config_toml` starts here).
    pub fn from_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::parse_str(text, &path.display().to_string())?;
        config.source = Some(path.to_path_buf());
        config.validated()
    }

    /// Parses TOML text; `file` only labels errors.
    pub fn parse_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
            file: file.into(),
            key: "(syntax)".into(),
            message: one_line(&e.to_string()),
        })?;
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            let mut key = dotted_key(e.path());
            let message = one_line(&e.inner().to_string());
            // serde reports an unknown field at its parent; name the field itself.
            if let Some(rest) = message.strip_prefix("unknown field `") {
                if let Some((field, _)) = rest.split_once('`') {
                    key = if key == "." {
                        field.to_string()
                    } else {
                        format!("{key}.{field}")
                    };
                }
            }
            ConfigError {
                file: file.into(),
                key,
                message,
            }
        })
    }

    /// Checks what types cannot and computes [`Resolved`].
    pub fn validated(mut self) -> Result<Config, ConfigError> {
        let file = self
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(defaults)".into());
        let err = |key: &str, message: String| ConfigError {
            file: file.clone(),
            key: key.into(),
            message,
        };

        let currency = Currency::from_code(&self.store.currency).ok_or_else(|| {
            err(
                "store.currency",
                format!("{:?} is not an ISO 4217 currency code", self.store.currency),
            )
        })?;
        let timezone: Tz = self.store.timezone.parse().map_err(|_| {
            err(
                "store.timezone",
                format!(
                    "{:?} is not an IANA time zone name (like \"America/Chicago\")",
                    self.store.timezone
                ),
            )
        })?;
        let day_close =
            parse_time_of_day(&self.store.day_close).map_err(|m| err("store.day_close", m))?;
        if self.store.location_id.trim().is_empty() {
            return Err(err("store.location_id", "must not be empty".into()));
        }

        if self.database.reserve_mib > MAX_RESERVE_MIB {
            return Err(err(
                "database.reserve_mib",
                format!("must be at most {MAX_RESERVE_MIB} (64 GiB)"),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(err("server.max_body_bytes", "must be at least 1024".into()));
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => {
                return Err(err(
                    "server.tls_key",
                    "tls_cert is set but tls_key is not".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    "server.tls_cert",
                    "tls_key is set but tls_cert is not".into(),
                ))
            }
            _ => {}
        }
        if self.server.request_timeout.0.is_zero() {
            return Err(err(
                "server.request_timeout",
                "must be more than zero".into(),
            ));
        }

        for (section, entries) in [("registers", &self.registers), ("admins", &self.admins)] {
            for (i, entry) in entries.iter().enumerate() {
                check_id(&entry.id).map_err(|m| err(&format!("{section}[{i}].id"), m))?;
                if entry.token_sha256.len() != 64
                    || !entry.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(err(
                        &format!("{section}[{i}].token_sha256"),
                        "must be 64 hex characters; `posedge hash-token TOKEN` prints it".into(),
                    ));
                }
            }
        }
        let mut ids: Vec<&str> = self
            .registers
            .iter()
            .chain(&self.admins)
            .map(|e| e.id.as_str())
            .collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(err(
                "registers/admins",
                format!("id {:?} is used twice", w[0]),
            ));
        }
        for (i, m) in self.managers.iter().enumerate() {
            check_id(&m.id).map_err(|msg| err(&format!("managers[{i}].id"), msg))?;
            crate::credentials::check_pin_hash(&m.pin_hash)
                .map_err(|msg| err(&format!("managers[{i}].pin_hash"), msg))?;
        }

        let op = &self.offline_payments;
        let minor = |key: &str, a: &AmountText| {
            a.0.to_minor(currency)
                .map_err(|e| err(&format!("offline_payments.{key}"), e.to_string()))
        };
        let offline = OfflineLimits {
            max_transaction_amount: minor("max_transaction_amount", &op.max_transaction_amount)?,
            max_daily_total: minor("max_daily_total", &op.max_daily_total)?,
            max_outstanding_total: minor("max_outstanding_total", &op.max_outstanding_total)?,
            approval_required_over: minor("approval_required_over", &op.approval_required_over)?,
        };
        for m in &op.allowed_methods {
            if !matches!(m.as_str(), "cash" | "card") {
                return Err(err(
                    "offline_payments.allowed_methods",
                    format!("unknown method {m:?}; known: \"cash\", \"card\""),
                ));
            }
        }

        for (key, d) in [
            ("probe.interval", self.probe.interval),
            ("probe.timeout", self.probe.timeout),
            ("probe.offline_interval", self.probe.offline_interval),
            ("outbox.process_interval", self.outbox.process_interval),
            ("outbox.backoff_base", self.outbox.backoff_base),
            ("backup.interval", self.backup.interval),
        ] {
            if d.0.is_zero() {
                return Err(err(key, "must be more than zero".into()));
            }
        }
        if self.outbox.backoff_max < self.outbox.backoff_base {
            return Err(err(
                "outbox.backoff_max",
                "must not be less than outbox.backoff_base".into(),
            ));
        }
        if self.outbox.retention_days > MAX_RETENTION_DAYS {
            return Err(err(
                "outbox.retention_days",
                format!(
                    "must be at most {MAX_RETENTION_DAYS} (ten years), not {}",
                    self.outbox.retention_days
                ),
            ));
        }
        if self.outbox.max_retries == 0 {
            return Err(err("outbox.max_retries", "must be at least 1".into()));
        }
        if self.outbox.max_concurrent == 0 {
            return Err(err("outbox.max_concurrent", "must be at least 1".into()));
        }
        for (i, t) in self.probe.internet_targets.iter().enumerate() {
            if t.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(err(
                    &format!("probe.internet_targets[{i}]"),
                    format!("{t:?} is not host:port"),
                ));
            }
        }

        if let Some(s) = &self.stripe {
            check_upstream_url(&s.api_base).map_err(|m| err("stripe.api_base", m))?;
            if s.secret_key_file.is_some() && s.secret_key.is_some() {
                return Err(err(
                    "stripe.secret_key",
                    "set either secret_key or secret_key_file, not both".into(),
                ));
            }
            if let Some(k) = &s.secret_key {
                if !(k.starts_with("sk_") || k.starts_with("rk_")) {
                    return Err(err(
                        "stripe.secret_key",
                        "must be a Stripe secret key (sk_… or rk_…)".into(),
                    ));
                }
            }
            if s.rate_limit_per_sec == 0 {
                return Err(err(
                    "stripe.rate_limit_per_sec",
                    "must be at least 1".into(),
                ));
            }
        }
        if let Some(c) = &self.conexxus {
            match c.transport {
                ConexxusTransport::Http => {
                    let url = c.url.as_deref().ok_or_else(|| {
                        err("conexxus.url", "required when transport = \"http\"".into())
                    })?;
                    check_upstream_url(url).map_err(|m| err("conexxus.url", m))?;
                }
                ConexxusTransport::Directory => {}
            }
            parse_time_of_day(&c.eod_sync_time).map_err(|m| err("conexxus.eod_sync_time", m))?;
            if c.bearer_token.is_some() && c.basic_user.is_some() {
                return Err(err(
                    "conexxus.bearer_token",
                    "set either bearer_token or basic_user/basic_password, not both".into(),
                ));
            }
            if c.basic_user.is_some() != c.basic_password.is_some() {
                return Err(err(
                    "conexxus.basic_password",
                    "basic_user and basic_password go together".into(),
                ));
            }
            if c.max_retries == 0 {
                return Err(err("conexxus.max_retries", "must be at least 1".into()));
            }
            if !(1..=1000).contains(&c.events_per_document) {
                return Err(err(
                    "conexxus.events_per_document",
                    format!("must be between 1 and 1000, not {}", c.events_per_document),
                ));
            }
        }

        if let Some(s3) = &self.backup.s3 {
            check_upstream_url(&s3.endpoint).map_err(|m| err("backup.s3.endpoint", m))?;
            for (key, value) in [
                ("backup.s3.bucket", &s3.bucket),
                ("backup.s3.region", &s3.region),
                ("backup.s3.access_key_id", &s3.access_key_id),
            ] {
                if value.trim().is_empty() {
                    return Err(err(key, "required in [backup.s3]".into()));
                }
            }
            if s3.secret_access_key.is_some() && s3.secret_access_key_file.is_some() {
                return Err(err(
                    "backup.s3.secret_access_key",
                    "set either secret_access_key or secret_access_key_file, not both".into(),
                ));
            }
            if s3.timeout.0.is_zero() || s3.max_retries == 0 {
                return Err(err(
                    "backup.s3.timeout",
                    "timeout and max_retries must be more than zero".into(),
                ));
            }
        }
        if self.backup.keep == 0 {
            return Err(err(
                "backup.keep",
                "must be at least 1 (set enabled = false to take no backups)".into(),
            ));
        }

        let database_path = self.database.path.clone().unwrap_or_else(|| {
            let dir = std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("posedge-data"));
            dir.join("posedge.db")
        });
        let db_dir = database_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let backup_directory = self
            .backup
            .directory
            .clone()
            .unwrap_or_else(|| db_dir.join("backups"));

        let admin_socket = self
            .server
            .admin_socket
            .clone()
            .unwrap_or_else(|| db_dir.join("posedge.sock"));
        self.resolved = Resolved {
            currency,
            timezone,
            day_close,
            eod_sync_time: parse_time_of_day(&self.conexxus_settings().eod_sync_time)
                .map_err(|m| err("conexxus.eod_sync_time", m))?,
            database_path,
            backup_directory,
            admin_socket,
            offline,
        };
        Ok(self)
    }

    /// `[conexxus]`, or its defaults when absent: documents are still built and held.
    pub fn conexxus_settings(&self) -> ConexxusConfig {
        self.conexxus.clone().unwrap_or_default()
    }

    /// Short label for logs: the config file or "defaults".
    pub fn source_label(&self) -> String {
        self.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into())
    }
}

/// The TOML spelling of a key path: `registers[0].id`; a key that is not bare (empty, or
/// with characters beyond letters, digits, `-` and `_`) quoted, so `""` and `"a.b"` are
/// told apart from a missing key and from a nested one.
fn dotted_key(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if bare {
                    key.push_str(k);
                } else {
                    key.push_str(&format!("{k:?}"));
                }
            }
            Segment::Unknown => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push('?');
            }
        }
    }
    if key.is_empty() {
        key.push_str("(top level)");
    }
    key
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "{id:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// `"HH:MM"` in 24-hour time.
pub fn parse_time_of_day(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("expected a 24-hour time like \"23:30\", got {s:?}"))
}

/// Upstreams are HTTPS; plain HTTP only to loopback (tests, local fakes, a local proxy).
pub fn check_upstream_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false);
        if loopback {
            return Ok(());
        }
        return Err(format!(
            "{url:?}: plain http:// is only allowed to a loopback host; use https://"
        ));
    }
    Err(format!("{url:?} must start with https://"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_gives_valid_defaults_in_minor_units() {
        let c = Config::default().validated().unwrap();
        assert_eq!(c.resolved.offline.max_daily_total, 500_000);
        assert_eq!(c.resolved.offline.max_transaction_amount, 50_000);
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.stripe.is_none() && c.conexxus.is_none());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_section() {
        let e = Config::parse_str("[store]\nlocation = \"x\"\n", "/etc/x.toml").unwrap_err();
        assert_eq!(e.key, "store.location", "{e}");
        assert!(e.to_string().contains("/etc/x.toml"), "{e}");
        let top = Config::parse_str("colour = 1\n", "f.toml").unwrap_err();
        assert_eq!(top.key, "colour", "{top}");
    }

    #[test]
    fn an_unknown_key_that_is_not_bare_is_named_quoted() {
        // Found by the fuzz target config_toml: `''=''` gave an error naming key ``.
        let e = Config::parse_str("''=''\n", "f").unwrap_err();
        assert_eq!(e.key, "\"\"", "{e}");
        let e = Config::parse_str("[store]\n\"a.b\" = 1\n", "f").unwrap_err();
        assert_eq!(e.key, "store.\"a.b\"", "{e}");
        let e = Config::parse_str("[[registers]]\nid = 5\n", "f").unwrap_err();
        assert_eq!(e.key, "registers[0].id", "{e}");
    }

    #[test]
    fn a_bad_amount_or_duration_names_its_key() {
        let e =
            Config::parse_str("[offline_payments]\nmax_daily_total = \"5k\"\n", "f").unwrap_err();
        assert_eq!(e.key, "offline_payments.max_daily_total", "{e}");
        let e = Config::parse_str("[probe]\ninterval = \"30\"\n", "f").unwrap_err();
        assert_eq!(e.key, "probe.interval", "{e}");
        let e =
            Config::parse_str("[offline_payments]\noffline_window = \"4000d\"\n", "f").unwrap_err();
        assert_eq!(e.key, "offline_payments.offline_window", "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let bad = |toml: &str, key: &str| {
            let e = Config::parse_str(toml, "f")
                .and_then(Config::validated)
                .unwrap_err();
            assert_eq!(e.key, key, "{e}");
        };
        bad("[store]\ntimezone = \"Mars/Olympus\"\n", "store.timezone");
        bad("[store]\ncurrency = \"XYZ\"\n", "store.currency");
        bad("[store]\nday_close = \"25:00\"\n", "store.day_close");
        bad(
            "[offline_payments]\nmax_transaction_amount = \"1.005\"\n",
            "offline_payments.max_transaction_amount",
        );
        bad(
            "[[registers]]\nid = \"R1\"\ntoken_sha256 = \"abc\"\n",
            "registers[0].token_sha256",
        );
        bad(
            "[stripe]\napi_base = \"http://stripe.example\"\n",
            "stripe.api_base",
        );
        bad("[conexxus]\ntransport = \"http\"\n", "conexxus.url");
        bad("[server]\ntls_cert = \"/x\"\n", "server.tls_key");
        // A cutoff of now minus 100 million days is beyond chrono: the retention sweep
        // panicked (found while writing the config_toml fuzz check).
        bad(
            "[outbox]\nretention_days = 100000000\n",
            "outbox.retention_days",
        );
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback() {
        assert!(check_upstream_url("http://127.0.0.1:9999").is_ok());
        assert!(check_upstream_url("http://localhost/x").is_ok());
        assert!(check_upstream_url("http://[::1]:80").is_ok());
        assert!(check_upstream_url("https://api.stripe.com").is_ok());
        assert!(check_upstream_url("http://10.0.0.1").is_err());
        assert!(check_upstream_url("ftp://x").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config.toml.example");

    #[test]
    fn the_shipped_example_is_a_valid_config() {
        let c = Config::parse_str(EXAMPLE, "config.toml.example")
            .and_then(Config::validated)
            .unwrap();
        assert_eq!(
            c.resolved.database_path,
            PathBuf::from("/var/lib/posedge/posedge.db")
        );
    }

    #[test]
    fn the_example_documents_every_key() {
        // Commented-out keys count: they document placeholders (tokens, URLs).
        let keys = [
            "location_id",
            "timezone",
            "currency",
            "day_close",
            "listen",
            "public_health",
            "max_body_bytes",
            "request_timeout",
            "shutdown_grace",
            "tls_cert",
            "tls_key",
            "path",
            "[[registers]]",
            "[[admins]]",
            "[[managers]]",
            "token_sha256",
            "pin_hash",
            "enabled",
            "allowed_methods",
            "max_transaction_amount",
            "max_daily_total",
            "max_outstanding_total",
            "require_manager_approval",
            "approval_required_over",
            "offline_window",
            "interval",
            "timeout",
            "offline_interval",
            "internet_targets",
            "max_concurrent",
            "process_interval",
            "max_retries",
            "retention_days",
            "backoff_base",
            "backoff_max",
            "[stripe]",
            "api_base",
            "secret_key_file",
            "online_timeout",
            "rate_limit_per_sec",
            "[conexxus]",
            "transport",
            "url",
            "directory",
            "auto_eod_sync",
            "eod_sync_time",
            "sync_priority",
            "events_per_document",
            "batch_max_wait",
            "queue_depth",
            "bearer_token",
            "basic_user",
            "basic_password",
            "offline_for",
            "dead_rows",
            "oldest_pending",
            "keep",
            "[backup.s3]",
            "endpoint",
            "bucket",
            "region",
            "prefix",
            "access_key_id",
            "secret_access_key_file",
            "path_style",
        ];
        for key in keys {
            assert!(
                EXAMPLE.contains(key),
                "config.toml.example does not mention {key}"
            );
        }
    }

    #[test]
    fn the_example_with_every_section_uncommented_is_valid_too() {
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .filter(|l| !l.starts_with("#   ") && !l.trim_start().starts_with("#  "))
            .collect::<Vec<_>>()
            .join("\n");
        // Placeholders that must be replaced by real values on a real box.
        let pin = crate::credentials::hash_pin("2468").unwrap();
        let text = uncommented
            .replace("$argon2id$v=19$m=19456,t=2,p=1$…", &pin)
            .replace("# or secret_key = \"sk_…\", or env", "")
            .replace("bearer_token = \"…\"", "");
        let c = Config::parse_str(&text, "uncommented")
            .and_then(Config::validated)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.registers.len(), 1);
        assert!(c.stripe.is_some() && c.conexxus.is_some() && c.backup.s3.is_some());
    }
}
