//! Shared test helpers: daemons (in-process and as the real binary), configs, sale bodies.

#![allow(dead_code)]

use posedge::config::Config;
use posedge::daemon::Daemon;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const R1_TOKEN: &str = "r1-secret-token";
pub const R2_TOKEN: &str = "r2-secret-token";
pub const ADMIN_TOKEN: &str = "admin-secret-token";

/// A config with registers R1, R2 and admin `tech`, the database in `dir`, on `listen`.
/// `server_extra` lines go into `[server]`; `extra` is appended after the tables.
pub fn config_toml(dir: &Path, listen: &str, server_extra: &str, extra: &str) -> String {
    config_toml_with(dir, listen, server_extra, "", extra)
}

/// [`config_toml`] with `database_extra` lines in `[database]`.
pub fn config_toml_with(
    dir: &Path,
    listen: &str,
    server_extra: &str,
    database_extra: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[store]
timezone = "UTC"
location_id = "loc-test"

[server]
listen = "{listen}"
max_body_bytes = 65536
{server_extra}

[database]
path = "{db}"
{database_extra}

[[registers]]
id = "R1"
token_sha256 = "{r1}"

[[registers]]
id = "R2"
token_sha256 = "{r2}"

[[admins]]
id = "tech"
token_sha256 = "{admin}"
{extra}
"#,
        db = dir.join("posedge.db").display(),
        r1 = posedge::credentials::hash_token(R1_TOKEN),
        r2 = posedge::credentials::hash_token(R2_TOKEN),
        admin = posedge::credentials::hash_token(ADMIN_TOKEN),
    )
}

/// A valid cash sale of 4.30 with 0.70 change for register `register`.
pub fn sale(register: &str, txn: &str) -> Value {
    json!({
        "client_txn_id": txn,
        "register_id": register,
        "cashier_id": "E7",
        "currency": "USD",
        "lines": [{"sku": "049000050103", "description": "Cola 20oz", "quantity": 2,
                   "unit_price": 199, "amount": 398, "merchandise_code": "101", "tax_code": "1"}],
        "taxes": [{"tax_code": "1", "taxable_amount": 398, "amount": 32}],
        "tenders": [{"method": "cash", "amount": 500}, {"method": "cash", "amount": -70}],
        "total": 430
    })
}

/// The daemon running in this process on 127.0.0.1:0.
pub struct TestDaemon {
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestDaemon {
    pub async fn start() -> TestDaemon {
        TestDaemon::start_with("").await
    }

    pub async fn start_with(extra_toml: &str) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        TestDaemon::launch(dir, "", extra_toml).await
    }

    pub async fn start_with_server_extra(server_extra: &str) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        TestDaemon::launch(dir, server_extra, "").await
    }

    pub async fn start_in_with_server_extra(dir: TempDir, server_extra: &str) -> TestDaemon {
        TestDaemon::launch(dir, server_extra, "").await
    }

    /// Starts on an existing directory (to restart over the same database).
    pub async fn start_in(dir: TempDir, extra_toml: &str) -> TestDaemon {
        TestDaemon::launch(dir, "", extra_toml).await
    }

    pub async fn launch(dir: TempDir, server_extra: &str, extra_toml: &str) -> TestDaemon {
        let toml = config_toml(dir.path(), "127.0.0.1:0", server_extra, extra_toml);
        let config = Config::parse_str(&toml, "test.toml")
            .unwrap()
            .validated()
            .unwrap();
        let daemon = tokio::task::spawn_blocking(move || Daemon::open(config))
            .await
            .unwrap()
            .expect("daemon opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(listener, async {
            let _ = stopped.await;
        }));
        TestDaemon {
            addr,
            dir,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("posedge.db")
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    /// Graceful stop (as on SIGTERM); returns the directory for a restart.
    pub async fn stop(mut self) -> TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        let TestDaemon { dir, .. } = self;
        dir
    }
}

pub async fn split(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Counts rows in a table of the database file, opened read-only beside the daemon.
pub fn count(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The real `posedge` binary, started with a config file in `dir`.
pub struct BinaryDaemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn posedge_bin() -> &'static str {
    env!("CARGO_BIN_EXE_posedge")
}

impl BinaryDaemon {
    /// Writes `dir/config.toml` (fresh port) and starts `posedge serve`, waiting for /healthz.
    pub fn start(dir: &Path, extra_toml: &str) -> BinaryDaemon {
        BinaryDaemon::launch(dir, dir, "", extra_toml, &[])
    }

    /// Like [`BinaryDaemon::start`] with the database (and what lives beside it) in `db_dir`;
    /// the config file and the log stay in `dir`.
    pub fn start_with_db(
        dir: &Path,
        db_dir: &Path,
        database_extra: &str,
        extra_toml: &str,
    ) -> BinaryDaemon {
        BinaryDaemon::launch(dir, db_dir, database_extra, extra_toml, &[])
    }

    /// [`BinaryDaemon::start`] with these variables added to the daemon's environment
    /// (e.g. `LD_PRELOAD` of libfaketime).
    pub fn start_with_env(dir: &Path, extra_toml: &str, env: &[(String, String)]) -> BinaryDaemon {
        BinaryDaemon::launch(dir, dir, "", extra_toml, env)
    }

    fn launch(
        dir: &Path,
        db_dir: &Path,
        database_extra: &str,
        extra_toml: &str,
        env: &[(String, String)],
    ) -> BinaryDaemon {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            config_toml_with(db_dir, &addr.to_string(), "", database_extra, extra_toml),
        )
        .unwrap();
        let log = dir.join(format!("daemon-{port}.log"));
        let child = Command::new(posedge_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .unwrap();
        let mut d = BinaryDaemon { child, addr, log };
        d.wait_healthy(Duration::from_secs(20));
        d
    }

    fn wait_healthy(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "posedge exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http_get_status(self.addr, "/healthz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("posedge not healthy within {within:?}");
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        unsafe_sigterm(self.child.id());
        self.child.wait().ok().and_then(|s| s.code())
    }
}

/// A test that fails mid-way must not leave a daemon running.
impl Drop for BinaryDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// A minimal blocking HTTP GET for readiness polling (no runtime needed).
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// Sends a raw HTTP/1.1 request (for what a client library will not send: chunked bodies,
/// broken framing) and returns the status code.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(request).await.ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Config for a Conexxus back office over HTTP at `url`, with fast probing and retries so
/// tests take seconds, not minutes.
pub fn conexxus_http(url: &str, extra_conexxus: &str) -> String {
    format!(
        r#"
[probe]
interval = "200ms"
offline_interval = "100ms"
timeout = "1s"
internet_targets = []

[outbox]
backoff_base = "50ms"
backoff_max = "200ms"
max_concurrent = 5
process_interval = "1s"

[conexxus]
transport = "http"
url = "{url}"
timeout = "1s"
{extra_conexxus}
"#
    )
}

/// A manager M1 with PIN 2468 and M2 with PIN 1357 (argon2id hashes made once per run).
pub fn managers_toml() -> String {
    static HASHES: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (m1, m2) = HASHES.get_or_init(|| {
        (
            posedge::credentials::hash_pin("2468").unwrap(),
            posedge::credentials::hash_pin("1357").unwrap(),
        )
    });
    format!("\n[[managers]]\nid = \"M1\"\npin_hash = \"{m1}\"\n\n[[managers]]\nid = \"M2\"\npin_hash = \"{m2}\"\n")
}

/// Stripe at `base` with a 1 s online timeout, fast probing and retries, two managers.
pub fn stripe_toml(base: &str, extra_offline: &str) -> String {
    format!(
        r#"
[probe]
interval = "200ms"
offline_interval = "100ms"
timeout = "1s"
internet_targets = []

[outbox]
backoff_base = "50ms"
backoff_max = "300ms"
process_interval = "1s"

[stripe]
api_base = "{base}"
secret_key = "sk_test_posedge"
online_timeout = "1s"
rate_limit_per_sec = 50

[offline_payments]
{extra_offline}
{managers}"#,
        managers = managers_toml()
    )
}

/// A card payment request.
pub fn card_payment(register: &str, client_id: &str, amount: i64, pm: &str) -> serde_json::Value {
    serde_json::json!({
        "client_payment_id": client_id, "register_id": register, "cashier_id": "E7",
        "method": "card", "amount": amount, "currency": "USD",
        "payment_method": pm, "card": {"brand": "visa", "last4": "4242"}
    })
}

/// The probe's view of Stripe, from `/health/network`.
pub async fn stripe_status(d: &TestDaemon) -> String {
    let (_, net) = d.get("/health/network", R1_TOKEN).await;
    net["upstreams"]["stripe"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub async fn stripe_online(d: &TestDaemon) {
    eventually(Duration::from_secs(10), "stripe online", || async {
        (stripe_status(d).await == "online").then_some(())
    })
    .await;
}

/// Waits until payment `id` reaches `status`; returns it.
pub async fn payment_settled(d: &TestDaemon, id: &str, status: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("payment {id} to become {status}"),
        || async {
            let (_, p) = d.get(&format!("/v1/payments/{id}"), R1_TOKEN).await;
            (p["status"] == status).then_some(p)
        },
    )
    .await
}
