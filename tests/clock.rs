//! Clock jumps: the real `posedge` binary runs with libfaketime preloaded, its wall clock read
//! from a timestamp file the test rewrites while the daemon runs (`FAKETIME_NO_CACHE=1`), and
//! its monotonic clock left alone (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as an NTP step or a
//! technician's `date -s` would do. Against the fake Stripe and the fake Conexxus back office
//! (real HTTP servers with a ledger of what they received), each jump (−1 h, back to before
//! the last sale, +25 h past Stripe's 24 h idempotency-key memory, +3 days past the offline
//! window) is surrounded by sales and card payments, online and offline, an outage and a
//! recovery; then the ledgers and the SQLite file must show every acknowledged sale once,
//! each payment charged at most once, the daily offline limit never overspent, approvals
//! outside the offline window denied and `posedge audit verify` passing.
//!
//! These tests are `#[ignore]`d under plain `cargo test`: `bash .ci/clock.sh` installs
//! Debian's `faketime` and runs them with `--ignored` and `POSEDGE_REQUIRE_FAKETIME=1`. Run
//! without libfaketime they skip with a loud message, unless `POSEDGE_REQUIRE_FAKETIME` is
//! set, when they fail.

use crate::fake_stripe::{FakeStripe, StripeFault};
use crate::fake_upstream::{FakeUpstream, Fault};
use crate::util::*;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

// ---- libfaketime ------------------------------------------------------------------------

/// The preload library: `$POSEDGE_LIBFAKETIME`, or where Debian's `libfaketime` puts it.
fn libfaketime() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("POSEDGE_LIBFAKETIME") {
        let p = PathBuf::from(p);
        // A missing preload library is only a warning to ld.so: the daemon would run
        // unfaked and every "jump" would be no jump at all.
        assert!(
            p.is_file(),
            "POSEDGE_LIBFAKETIME={} is not a file",
            p.display()
        );
        return Some(p);
    }
    let mut dirs = vec![
        PathBuf::from("/usr/lib/faketime"),
        PathBuf::from("/usr/local/lib/faketime"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        // Multiarch: /usr/lib/x86_64-linux-gnu/faketime, /usr/lib/aarch64-linux-gnu/faketime …
        dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
    }
    dirs.into_iter()
        .map(|d| d.join("libfaketime.so.1"))
        .find(|p| p.is_file())
}

/// The library, or `None` after a loud message when it is missing and not required.
fn faketime_or_skip(test: &str) -> Option<PathBuf> {
    match libfaketime() {
        Some(lib) => Some(lib),
        None if std::env::var_os("POSEDGE_REQUIRE_FAKETIME").is_some() => panic!(
            "POSEDGE_REQUIRE_FAKETIME is set but libfaketime.so.1 was not found \
             (apt-get install -y faketime, or set POSEDGE_LIBFAKETIME)"
        ),
        None => {
            eprintln!(
                "\n\n!!!!!!!! SKIPPED {test}: libfaketime is not installed, so the clock-jump \
                 test did NOT run. `apt-get install -y faketime` (or `bash .ci/clock.sh`) runs \
                 it; POSEDGE_REQUIRE_FAKETIME=1 turns this skip into a failure. !!!!!!!!\n"
            );
            None
        }
    }
}

/// The daemon's wall clock: an offset from the real time, in a file libfaketime reads on
/// every clock call. Written atomically (rename), so a read never sees half a line.
struct FakeClock {
    file: PathBuf,
    lib: PathBuf,
    offset_s: i64,
}

impl FakeClock {
    /// A clock reading `wall` now (and advancing in step with the real time).
    fn at(dir: &Path, lib: PathBuf, wall: DateTime<Utc>) -> FakeClock {
        let mut c = FakeClock {
            file: dir.join("faketime.rc"),
            lib,
            offset_s: 0,
        };
        c.set_wall(wall);
        c
    }

    fn write(&self) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{:+}\n", self.offset_s)).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// Steps the clock so it reads `wall` now.
    fn set_wall(&mut self, wall: DateTime<Utc>) {
        self.offset_s = (wall - Utc::now()).num_seconds();
        self.write();
    }

    /// Steps the clock by `by` (negative: back).
    fn jump(&mut self, by: chrono::Duration) {
        self.offset_s += by.num_seconds();
        self.write();
    }

    /// What the daemon's wall clock reads now.
    fn wall(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_s)
    }

    /// The environment that makes the daemon read this clock.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", self.lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            // Both spellings (libfaketime ≥ 0.9.8 reads the first; older ones the second):
            // only CLOCK_REALTIME moves, as an NTP step would move it.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
            ("DONT_FAKE_MONOTONIC", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

// ---- the store under test -----------------------------------------------------------------

/// 2031-06-10 12:00:00 UTC: midday, far from any business-date boundary.
fn midday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 6, 10, 12, 0, 0).unwrap()
}

/// Offline limits of every scenario: 10.00 payments against a 50.00 daily total; a manager
/// above 15.00.
const PAYMENT: i64 = 1_000;
const DAILY_TOTAL: i64 = 5_000;

fn config(
    stripe: &str,
    backoffice: &str,
    offline_extra: &str,
    conexxus_extra: &str,
    backup: &str,
) -> String {
    let outstanding = if offline_extra.contains("max_outstanding_total") {
        ""
    } else {
        "max_outstanding_total = \"1000.00\""
    };
    // The Stripe, probe and outbox settings every Stripe test uses (`util::stripe_toml`),
    // then the back office and backups.
    let offline = format!(
        "max_transaction_amount = \"20.00\"\nmax_daily_total = \"50.00\"\n{outstanding}\napproval_required_over = \"15.00\"\n{offline_extra}"
    );
    format!(
        r#"{stripe_part}
[conexxus]
transport = "http"
url = "{backoffice}"
timeout = "1s"
eod_sync_time = "00:00"
{conexxus_extra}

[backup]
{backup}
"#,
        stripe_part = stripe_toml(stripe, &offline)
    )
}

/// A daemon under a fake clock, its two upstreams and what the registers were told.
struct Store {
    dir: TempDir,
    clock: FakeClock,
    stripe: FakeStripe,
    backoffice: FakeUpstream,
    toml: String,
    daemon: Option<BinaryDaemon>,
    http: reqwest::Client,
    /// Sale ids answered 201/200, by client_txn_id.
    sales: HashMap<String, String>,
    /// The last answer for every payment, by id.
    payments: HashMap<String, Value>,
    txn: u32,
    /// When (real time) the scenario's jump happened.
    jumped: Option<std::time::Instant>,
}

impl Store {
    /// Starts a store whose clock reads `wall`; `None` when the test is skipped.
    async fn open(test: &str, wall: DateTime<Utc>, offline: &str, conexxus: &str) -> Option<Store> {
        Store::open_with(test, wall, offline, conexxus, "enabled = false").await
    }

    /// [`Store::open`] with these `[backup]` keys.
    async fn open_with(
        test: &str,
        wall: DateTime<Utc>,
        offline: &str,
        conexxus: &str,
        backup: &str,
    ) -> Option<Store> {
        let lib = faketime_or_skip(test)?;
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::at(dir.path(), lib, wall);
        let stripe = FakeStripe::start().await;
        let backoffice = FakeUpstream::start().await;
        let toml = config(
            &stripe.base_url(),
            &backoffice.url("/naxml"),
            offline,
            conexxus,
            backup,
        );
        let mut s = Store {
            dir,
            clock,
            stripe,
            backoffice,
            toml,
            daemon: None,
            http: reqwest::Client::new(),
            sales: HashMap::new(),
            payments: HashMap::new(),
            txn: 0,
            jumped: None,
        };
        s.start();
        Some(s)
    }

    fn start(&mut self) {
        let (dir, toml, env) = (
            self.dir.path().to_path_buf(),
            self.toml.clone(),
            self.clock.env(),
        );
        self.daemon = Some(tokio::task::block_in_place(|| {
            BinaryDaemon::start_with_env(&dir, &toml, &env)
        }));
    }

    /// SIGTERM, then start again over the same database (under the same fake clock).
    fn restart(&mut self) {
        let d = self.daemon.take().unwrap();
        assert_eq!(tokio::task::block_in_place(|| d.terminate()), Some(0));
        self.start();
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("posedge.db")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.as_ref().unwrap().addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon.as_ref().unwrap().log).unwrap_or_default()
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        split(
            self.http
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Records a cash sale; it must be acknowledged.
    async fn sale(&mut self) -> Value {
        self.txn += 1;
        let txn = format!("T-{}", self.txn);
        let (status, body) = self.post("/v1/sales", R1_TOKEN, &sale("R1", &txn)).await;
        assert!(
            status == 201 || status == 200,
            "sale {txn}: {status} {body}"
        );
        self.sales
            .insert(txn, body["id"].as_str().unwrap().to_string());
        body
    }

    /// A card payment of `amount`; returns the daemon's answer (always a 201).
    async fn card(&mut self, amount: i64) -> Value {
        self.txn += 1;
        let client = format!("P-{}", self.txn);
        let (status, body) = self
            .post(
                "/v1/payments",
                R1_TOKEN,
                &card_payment("R1", &client, amount, "pm_card_visa"),
            )
            .await;
        assert_eq!(status, 201, "payment {client}: {body}");
        self.payments
            .insert(body["id"].as_str().unwrap().to_string(), body.clone());
        body
    }

    async fn approve(&mut self, id: &str) -> (u16, Value) {
        let (status, body) = self
            .post(
                &format!("/v1/payments/{id}/approve"),
                R1_TOKEN,
                &json!({"manager_id": "M1", "pin": "2468"}),
            )
            .await;
        if status == 200 || status == 201 {
            self.payments.insert(id.to_string(), body.clone());
        }
        (status, body)
    }

    async fn link(&self, link: &str) -> String {
        let (_, net) = self.get("/health/network", R1_TOKEN).await;
        net["upstreams"][link]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn online(&self) {
        eventually(
            Duration::from_secs(15),
            "stripe and conexxus online",
            || async {
                (self.link("stripe").await == "online" && self.link("conexxus").await == "online")
                    .then_some(())
            },
        )
        .await;
    }

    /// Stripe and the back office stop answering (connections refused).
    async fn outage(&self) {
        self.stripe.refuse();
        self.backoffice.refuse();
        eventually(Duration::from_secs(15), "stripe offline", || async {
            (self.link("stripe").await == "offline").then_some(())
        })
        .await;
    }

    async fn recover(&self) {
        self.stripe.restore().await;
        self.backoffice.restore().await;
        self.online().await;
    }

    /// Waits until nothing is waiting to go out: no pending or in-flight outbox row and no
    /// payment still `approved_offline`/`forwarding`.
    async fn drained(&self) {
        let db = self.db();
        let waiting = || {
            count(
                &db,
                "SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')",
            ) + count(
                &db,
                "SELECT count(*) FROM payments WHERE status IN ('approved_offline', 'forwarding')",
            )
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while waiting() > 0 {
            if std::time::Instant::now() > deadline {
                panic!(
                    "the outbox did not drain; rows: {:#?}\nlog:\n{}",
                    rows(
                        &db,
                        "SELECT id || ' ' || kind || ' ' || state || ' ' || attempts || ' ' || coalesce(last_error, '') FROM outbox WHERE state != 'delivered'"
                    ),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `posedge audit verify` on the database (the real binary, no fake clock).
    fn audit_verify(&self) {
        let out = std::process::Command::new(posedge_bin())
            .args(["audit", "verify", "--config"])
            .arg(self.dir.path().join("config.toml"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("audit trail intact"),
            "posedge audit verify: {text}"
        );
    }

    /// What must hold after any clock jump, read from the fakes' ledgers and the database.
    fn check(&self) {
        let db = self.db();
        // Every acknowledged sale is in the ledger once, and nothing else is.
        for (txn, id) in &self.sales {
            assert_eq!(
                count(
                    &db,
                    &format!(
                        "SELECT count(*) FROM sales WHERE id = '{id}' AND client_txn_id = '{txn}'"
                    )
                ),
                1,
                "acknowledged sale {txn} ({id}) not in the ledger exactly once"
            );
        }
        assert_eq!(
            count(&db, "SELECT count(*) FROM sales") as usize,
            self.sales.len(),
            "the ledger holds sales no register was told about"
        );
        // …and reached the back office under exactly one key, its own.
        let accepted: HashSet<String> = self.backoffice.accepted_keys().into_iter().collect();
        for id in self.sales.values() {
            assert!(
                accepted.contains(&format!("naxml-sale:{id}")),
                "sale {id} never reached the back office"
            );
        }
        let sale_keys = accepted
            .iter()
            .filter(|k| k.starts_with("naxml-sale:"))
            .count();
        assert_eq!(
            sale_keys,
            self.sales.len(),
            "a sale went out under two keys"
        );

        // Each payment charged at most once: one PaymentIntent per payment, each under its
        // payment's own key; every charge that should exist does.
        let intents = self.stripe.intents();
        let by_payment: HashSet<&str> = intents
            .iter()
            .filter_map(|i| i.metadata.get("posedge_payment_id").map(String::as_str))
            .collect();
        let keys: HashSet<&str> = intents
            .iter()
            .filter_map(|i| i.idempotency_key.as_deref())
            .collect();
        assert_eq!(
            by_payment.len(),
            intents.len(),
            "a payment was charged twice: {intents:#?}"
        );
        assert_eq!(keys.len(), intents.len(), "two charges under one key");
        for i in &intents {
            let pid = &i.metadata["posedge_payment_id"];
            assert_eq!(
                i.idempotency_key.as_deref(),
                Some(format!("posedge-{pid}").as_str()),
                "{pid} charged under a key that is not its own"
            );
        }
        for (id, status) in rows2(&db, "SELECT id, status FROM payments WHERE method = 'card'") {
            let charged = self.stripe.intents_for_payment(&id);
            match status.as_str() {
                "captured" | "authorized" => assert_eq!(charged, 1, "{id} is {status}"),
                "refused_offline" | "rejected" | "pending_approval" => {
                    assert_eq!(charged, 0, "{id} is {status} but was charged")
                }
                "expired" => panic!("{id} expired: a charge Stripe would take is lost"),
                other => panic!("{id} is still {other}"),
            }
        }

        // Offline approvals never exceed the daily total (the whole test is minutes of real
        // time inside one business date of the monotonic clock).
        let approved = count(
            &db,
            "SELECT coalesce(sum(amount), 0) FROM payments WHERE method = 'card' AND mode = 'offline'
               AND status IN ('approved_offline', 'forwarding', 'captured', 'authorized', 'declined_upstream', 'expired')",
        );
        assert!(
            approved <= DAILY_TOTAL,
            "{approved} approved offline against a daily total of {DAILY_TOTAL}"
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM outbox WHERE state IN ('dead', 'discarded')"
            ),
            0,
            "an outbox row was given up: {:#?}",
            rows(&db, "SELECT kind || ' ' || state || ' ' || coalesce(last_error, '') FROM outbox WHERE state IN ('dead', 'discarded')")
        );
        // No sale is dated into a business date whose automatic end-of-day report was
        // already queued (its journal row is after the report's rows), and no date is
        // reported twice.
        let late = rows(
            &db,
            "SELECT s.id || ' ' || s.business_date FROM sales s
               JOIN eod_syncs e ON e.business_date = s.business_date AND e.trigger != 'manual'
               JOIN outbox o ON o.idempotency_key = 'naxml-sale:' || s.id
              WHERE o.id > (SELECT min(value) FROM json_each(e.outbox_ids))",
        );
        assert!(
            late.is_empty(),
            "sales dated into a day already reported: {late:?}"
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM eod_syncs WHERE trigger != 'manual'"
            ),
            count(
                &db,
                "SELECT count(DISTINCT business_date) FROM eod_syncs WHERE trigger != 'manual'"
            ),
            "a business date reported twice"
        );
        self.audit_verify();
    }
}

/// The first column of every row of `sql`, as text.
fn rows(db: &Path, sql: &str) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn rows2(db: &Path, sql: &str) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The jumps of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jump {
    /// −1 h.
    BackAnHour,
    /// Past midnight, the day reported, then back to 30 s before the last sale: the store's
    /// previous business date again on the wall clock.
    BeforeTheLastSale,
    /// +25 h: past Stripe's 24 h idempotency-key memory, and into the next business date.
    Ahead25Hours,
    /// +3 days: past the 72 h offline window.
    Ahead3Days,
}

/// The scenario around one jump: online sales and payments (one whose online answer never
/// comes), an outage with offline approvals and one waiting for a manager, the jump, the
/// manager's approval and more offline payments than the daily total allows, recovery, and
/// online again. Returns the store and the manager's answer.
async fn around_a_jump(test: &str, jump: Jump) -> Option<(Store, Value)> {
    let start = match jump {
        // Ten seconds before midnight: the first sales are on the 10th, later ones on the 11th.
        Jump::BeforeTheLastSale => Utc.with_ymd_and_hms(2031, 6, 10, 23, 59, 50).unwrap(),
        _ => midday(),
    };
    let mut s = Store::open(test, start, "", "").await?;
    s.online().await;
    s.sale().await;
    let p = s.card(PAYMENT).await;
    assert_eq!(p["status"], "captured", "{p}");
    // Stripe executes this one but answers after the 1 s online timeout: decided offline,
    // forwarded later under the same key.
    s.stripe
        .script([StripeFault::Stall(Duration::from_millis(1500))]);
    let p = s.card(PAYMENT).await;
    assert_eq!(p["status"], "approved_offline", "{p}");

    s.outage().await;
    s.sale().await;
    let p = s.card(PAYMENT).await;
    assert_eq!(p["status"], "approved_offline", "{p}");
    let pending = s.card(1_600).await;
    assert_eq!(pending["status"], "pending_approval", "{pending}");

    match jump {
        Jump::BackAnHour => s.clock.jump(chrono::Duration::hours(-1)),
        Jump::Ahead25Hours => s.clock.jump(chrono::Duration::hours(25)),
        Jump::Ahead3Days => s.clock.jump(chrono::Duration::days(3)),
        Jump::BeforeTheLastSale => {
            // Let midnight pass on both clocks and the 10th be reported, with a sale on the 11th.
            let db = s.db();
            eventually(Duration::from_secs(30), "the 10th reported", || async {
                (count(
                    &db,
                    "SELECT count(*) FROM eod_syncs WHERE business_date = '2031-06-10'",
                ) == 1)
                    .then_some(())
            })
            .await;
            s.sale().await;
            let last = rows(&db, "SELECT max(created_at) FROM sales")[0].clone();
            let last = DateTime::parse_from_rfc3339(&last)
                .unwrap()
                .with_timezone(&Utc);
            s.clock.set_wall(last - chrono::Duration::seconds(30));
        }
    }
    s.jumped = Some(std::time::Instant::now());

    let receipt = s.sale().await;
    if jump == Jump::BeforeTheLastSale {
        // The wall clock reads the 10th again, whose reports went: the sale is the 11th's.
        assert_eq!(receipt["business_date"], "2031-06-11", "{receipt}");
    }
    let pending_id = pending["id"].as_str().unwrap().to_string();
    let (status, approval) = s.approve(&pending_id).await;
    assert_eq!(status, 200, "approve: {approval}");
    let mut decisions = Vec::new();
    for _ in 0..3 {
        decisions.push(
            s.card(PAYMENT).await["status"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    s.sale().await;

    s.recover().await;
    s.drained().await;
    s.sale().await;
    let p = s.card(PAYMENT).await;
    assert_eq!(p["status"], "captured", "{p}");
    s.drained().await;
    eprintln!(
        "{test}: manager approval {}, decisions after the jump {decisions:?}",
        approval["status"]
    );
    Some((s, approval))
}

// ---- the jumps ----------------------------------------------------------------------------

/// The daemon's `/admin/status` clock block.
async fn daemon_clock(s: &Store) -> Value {
    let (status, doc) = s.get("/admin/status", ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{doc}");
    doc["clock"].clone()
}

fn parse(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn libfaketime_steps_the_daemons_wall_clock_and_leaves_its_monotonic_clock_alone() {
    let Some(mut s) = Store::open("libfaketime", midday(), "", "").await else {
        return;
    };
    let close = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).num_seconds().abs() <= 5;
    let c = daemon_clock(&s).await;
    assert!(close(parse(&c["wall"]), s.clock.wall()), "{c}");
    assert_eq!(c["stepped"], false, "{c}");

    s.clock.jump(chrono::Duration::hours(-1));
    let c = daemon_clock(&s).await;
    // The wall clock moved back an hour; the monotonic clock went on as if nothing happened.
    assert!(close(parse(&c["wall"]), s.clock.wall()), "{c}");
    assert!(
        close(
            parse(&c["monotonic"]),
            s.clock.wall() + chrono::Duration::hours(1)
        ),
        "{c}"
    );
    assert!((c["skew_s"].as_i64().unwrap() + 3600).abs() <= 5, "{c}");
    assert_eq!(c["stepped"], true, "{c}");
    // Timers still fire: the probe keeps checking (monotonic sleeps), the API answers.
    s.outage().await;
    s.recover().await;

    s.clock.jump(chrono::Duration::hours(1));
    let c = daemon_clock(&s).await;
    assert_eq!(c["stepped"], false, "{c}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_clock_set_back_an_hour_loses_repeats_and_overspends_nothing() {
    let Some((s, approval)) = around_a_jump("clock_back_1h", Jump::BackAnHour).await else {
        return;
    };
    assert_eq!(approval["status"], "approved_offline", "{approval}");
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_clock_25_hours_ahead_opens_no_new_daily_limit_and_charges_nothing_twice() {
    let Some((s, approval)) = around_a_jump("clock_ahead_25h", Jump::Ahead25Hours).await else {
        return;
    };
    assert_eq!(approval["status"], "approved_offline", "{approval}");
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_clock_3_days_ahead_expires_no_offline_payment_and_frees_no_outstanding_headroom() {
    let Some(mut s) = Store::open(
        "clock_ahead_3d_expiry",
        midday(),
        "max_outstanding_total = \"20.00\"",
        "",
    )
    .await
    else {
        return;
    };
    s.online().await;
    s.outage().await;
    for _ in 0..2 {
        let p = s.card(PAYMENT).await;
        assert_eq!(p["status"], "approved_offline", "{p}");
    }
    s.clock.jump(chrono::Duration::days(3));
    // Housekeeping (expiry) runs every process_interval = 1 s: give it a few rounds.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let db = s.db();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM payments WHERE status = 'approved_offline'"
        ),
        2,
        "{:?}",
        rows(&db, "SELECT id || ' ' || status FROM payments")
    );
    // 20.00 are still outstanding: nothing more is approved offline.
    let p = s.card(PAYMENT).await;
    assert_eq!(
        (p["status"].as_str(), p["decline_code"].as_str()),
        (Some("refused_offline"), Some("over_outstanding_limit")),
        "{p}"
    );
    s.recover().await;
    s.drained().await;
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_manager_cannot_approve_a_payment_older_than_the_offline_window_on_either_clock() {
    // A 6 s window: long enough for an approval at once, short enough to outwait.
    let Some(mut s) = Store::open("approval_window", midday(), "offline_window = \"6s\"", "").await
    else {
        return;
    };
    s.online().await;
    s.outage().await;
    let ahead = s.card(1_600).await;
    let back = s.card(1_600).await;
    assert_eq!(ahead["status"], "pending_approval", "{ahead}");
    let id = |p: &Value| p["id"].as_str().unwrap().to_string();

    // The wall clock says it waited 3 days: deny, never allow.
    s.clock.jump(chrono::Duration::days(3));
    let (_, a) = s.approve(&id(&ahead)).await;
    assert_eq!(
        (a["status"].as_str(), a["decline_code"].as_str()),
        (Some("refused_offline"), Some("outside_offline_window")),
        "{a}"
    );

    // Back to an hour before it was taken: the wall clock makes it look unborn, the
    // monotonic clock knows it waited past the window.
    s.clock
        .jump(chrono::Duration::days(-3) - chrono::Duration::hours(1));
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    let (_, b) = s.approve(&id(&back)).await;
    assert_eq!(
        (b["status"].as_str(), b["decline_code"].as_str()),
        (Some("refused_offline"), Some("outside_offline_window")),
        "{b}"
    );

    // One taken now is approved at once, whatever the clocks disagree about.
    let fresh = s.card(1_600).await;
    assert_eq!(fresh["status"], "pending_approval", "{fresh}");
    let (_, f) = s.approve(&id(&fresh)).await;
    assert_eq!(f["status"], "approved_offline", "{f}");

    s.recover().await;
    s.drained().await;
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_forward_after_the_clock_went_back_before_the_payment_looks_for_an_earlier_charge_first()
{
    let Some(mut s) = Store::open("forward_after_clock_back", midday(), "", "").await else {
        return;
    };
    s.online().await;
    let mode = |m: &str| json!({"mode": m, "upstream": "stripe"});
    let (status, body) = s
        .post("/admin/network/mode", ADMIN_TOKEN, &mode("offline"))
        .await;
    assert_eq!(status, 200, "{body}");
    let p = s.card(PAYMENT).await;
    assert_eq!(p["status"], "approved_offline", "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    // An earlier attempt for it reached Stripe under a key Stripe has since forgotten (its
    // 24 h are up: the daemon's wall clock, set back, cannot tell).
    let form = [
        ("amount", "1000"),
        ("currency", "usd"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("metadata[posedge_payment_id]", id.as_str()),
    ];
    let r = s
        .http
        .post(format!("{}/v1/payment_intents", s.stripe.base_url()))
        .bearer_auth("sk_test_posedge")
        .header("Idempotency-Key", "pruned-long-ago")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let created = DateTime::parse_from_rfc3339(p["created_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    s.clock.set_wall(created - chrono::Duration::minutes(10));
    let (status, body) = s
        .post("/admin/network/mode", ADMIN_TOKEN, &mode("auto"))
        .await;
    assert_eq!(status, 200, "{body}");
    s.drained().await;
    assert_eq!(
        s.stripe.intents_for_payment(&id),
        1,
        "charged twice: the forward re-created a charge under a key Stripe may have forgotten"
    );
    let (_, done) = s.get(&format!("/v1/payments/{id}"), R1_TOKEN).await;
    assert_eq!(done["status"], "captured", "{done}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_clock_3_days_ahead_closes_no_day_until_an_upstream_confirms_it_then_reports_each_once() {
    let Some(mut s) = Store::open("eod_after_3_days", midday(), "", "").await else {
        return;
    };
    s.online().await;
    s.sale().await;
    s.sale().await;
    let db = s.db();
    let syncs = || {
        rows(
            &db,
            "SELECT business_date || ' ' || trigger FROM eod_syncs ORDER BY id",
        )
    };

    // Nothing but the wall clock says three days passed: no business date is closed.
    s.clock.jump(chrono::Duration::days(3));
    tokio::time::sleep(Duration::from_secs(6)).await; // the schedule looks every 5 s
    assert_eq!(
        syncs(),
        Vec::<String>::new(),
        "reported on the wall clock's word alone"
    );

    // The back office's clock agrees with the new wall clock: the three dates that closed
    // are reported, each once.
    s.backoffice.set_date_offset(Some(s.clock.offset_s));
    eventually(Duration::from_secs(15), "three dates reported", || async {
        (syncs().len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        syncs(),
        [
            "2031-06-10 schedule",
            "2031-06-11 schedule",
            "2031-06-12 schedule"
        ]
    );
    s.drained().await;

    // Back three days (the back office agreeing again): nothing is reported again.
    s.clock.jump(chrono::Duration::days(-3));
    s.backoffice.set_date_offset(Some(s.clock.offset_s));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(syncs().len(), 3, "{:?}", syncs());
    let reports: Vec<String> = s
        .backoffice
        .accepted_keys()
        .into_iter()
        .filter(|k| k.starts_with("naxml-movement:"))
        .collect();
    let distinct: HashSet<&String> = reports.iter().collect();
    assert_eq!(distinct.len(), 12, "four reports per date: {reports:?}");
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_clock_3_days_ahead_expires_nothing_approves_nothing_outside_the_window_and_closes_no_day_early(
) {
    let Some((s, approval)) = around_a_jump("clock_ahead_3d", Jump::Ahead3Days).await else {
        return;
    };
    // The wall clock says the payment waited past the 72 h window: deny, never allow.
    assert_eq!(
        (
            approval["status"].as_str(),
            approval["decline_code"].as_str()
        ),
        (Some("refused_offline"), Some("outside_offline_window")),
        "{approval}"
    );
    s.check();
    // The end-of-day schedule looks every 5 s: give it a look after the jump.
    let since = s.jumped.unwrap().elapsed();
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(since)).await;
    assert_eq!(
        count(&s.db(), "SELECT count(*) FROM eod_syncs"),
        0,
        "a business date was reported closed on the wall clock alone: {:?}",
        rows(
            &s.db(),
            "SELECT business_date || ' ' || trigger FROM eod_syncs"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_clock_set_back_before_the_last_sale_loses_repeats_and_overspends_nothing() {
    let Some((s, approval)) =
        around_a_jump("clock_back_before_last_sale", Jump::BeforeTheLastSale).await
    else {
        return;
    };
    assert_eq!(approval["status"], "approved_offline", "{approval}");
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_clock_set_back_does_not_hold_a_partial_journal_batch_back() {
    let Some(mut s) = Store::open(
        "batch_after_clock_back",
        midday(),
        "",
        "events_per_document = 5\nbatch_max_wait = \"2s\"",
    )
    .await
    else {
        return;
    };
    s.online().await;
    s.sale().await;
    s.sale().await;
    // Two sales of five: the document goes once the older has waited 2 s, on any clock.
    s.clock.jump(chrono::Duration::hours(-1));
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(8),
        "the partial journal document",
        || async {
            s.backoffice
                .accepted_keys()
                .contains(&"naxml-journal:1-2".to_string())
                .then_some(())
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_backup_taken_after_the_clock_went_back_is_kept_not_pruned_as_the_oldest() {
    let Some(mut s) = Store::open_with(
        "backup_after_clock_back",
        midday(),
        "",
        "",
        "enabled = true\ninterval = \"24h\"\nkeep = 2",
    )
    .await
    else {
        return;
    };
    s.sale().await;
    let backup = |s: &Store| {
        let s = s
            .http
            .post(s.url("/admin/backup"))
            .bearer_auth(ADMIN_TOKEN)
            .send();
        async move { split(s.await.unwrap()).await }
    };
    for _ in 0..2 {
        let (status, b) = backup(&s).await;
        assert_eq!(status, 200, "{b}");
    }
    s.clock.jump(chrono::Duration::days(-1));
    s.sale().await;
    let (status, b) = backup(&s).await;
    assert_eq!(status, 200, "{b}");
    let newest = b["file"].as_str().unwrap().to_string();
    let dir = s.dir.path().join("backups");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".db") && !n.contains("pre-migration"))
        .collect();
    assert!(
        files.contains(&newest),
        "the backup just taken ({newest}, the only one with the last sale) was pruned: {files:?}"
    );
    assert_eq!(files.len(), 2, "keep = 2: {files:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_restart_under_a_clock_3_days_ahead_catches_up_each_closed_day_once_and_never_again() {
    let Some(mut s) = Store::open("eod_restart_after_3_days", midday(), "", "").await else {
        return;
    };
    s.online().await;
    s.sale().await;
    let db = s.db();
    let syncs = || {
        rows(
            &db,
            "SELECT business_date || ' ' || trigger FROM eod_syncs ORDER BY id",
        )
    };
    s.clock.jump(chrono::Duration::days(3));
    // A restart has nothing but the wall clock to go by: it trusts it and catches up.
    s.restart();
    eventually(Duration::from_secs(15), "three dates caught up", || async {
        (syncs().len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        syncs(),
        [
            "2031-06-10 catch_up",
            "2031-06-11 catch_up",
            "2031-06-12 catch_up"
        ]
    );
    // Set back three days: nothing is reported again, and a new sale goes on the first day
    // not reported.
    s.clock.jump(chrono::Duration::days(-3));
    let receipt = s.sale().await;
    assert_eq!(receipt["business_date"], "2031-06-13", "{receipt}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(syncs().len(), 3, "{:?}", syncs());
    s.drained().await;
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_retry_waits_its_backoff_on_the_monotonic_clock_neither_fired_nor_starved_by_a_step() {
    let Some(mut s) = Store::open("retry_backoff", midday(), "", "").await else {
        return;
    };
    s.online().await;
    // The first delivery is told to come back in 4 s.
    s.backoffice.script([Fault::RetryAfter(503, 4)]);
    let sale = s.sale().await;
    let key = format!("naxml-sale:{}", sale["id"].as_str().unwrap());
    let posts = |s: &Store| {
        s.backoffice
            .posts()
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(key.as_str()))
            .map(|r| r.at)
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(5), "the first delivery", || async {
        (!posts(&s).is_empty()).then_some(())
    })
    .await;
    // A day ahead: the retry is not due yet for all that.
    s.clock.jump(chrono::Duration::hours(25));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(posts(&s).len(), 1, "a step ahead fired the retry early");
    // An hour behind where it started: the retry still comes when its 4 s are up.
    s.clock.jump(chrono::Duration::hours(-26));
    eventually(Duration::from_secs(6), "the retry", || async {
        (posts(&s).len() == 2).then_some(())
    })
    .await;
    let at = posts(&s);
    let waited = at[1] - at[0];
    assert!(
        waited >= Duration::from_millis(3_900) && waited < Duration::from_secs(6),
        "retried after {waited:?}"
    );
    s.drained().await;
    s.check();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libfaketime: bash .ci/clock.sh"]
async fn a_manager_locked_out_stays_locked_out_when_the_clock_jumps_ahead() {
    let Some(mut s) = Store::open("lockout", midday(), "", "").await else {
        return;
    };
    s.online().await;
    s.outage().await;
    let p = s.card(1_600).await;
    let id = p["id"].as_str().unwrap().to_string();
    for _ in 0..5 {
        let (status, body) = s
            .post(
                &format!("/v1/payments/{id}/approve"),
                R1_TOKEN,
                &json!({"manager_id": "M2", "pin": "0000"}),
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }
    // The five-minute lock-out is on the monotonic clock: a day ahead does not lift it.
    s.clock.jump(chrono::Duration::days(1));
    let (status, body) = s
        .post(
            &format!("/v1/payments/{id}/approve"),
            R1_TOKEN,
            &json!({"manager_id": "M2", "pin": "1357"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "manager_locked_out"),
        "{body}"
    );
}
