//! Disk full and read-only (issue 7). The database lives on a small tmpfs, or on an ext4
//! image the kernel turns read-only under the running daemon (the `errors=remount-ro` path a
//! failing disk takes), and the test fills or breaks it while registers keep posting.
//!
//! What must hold: a write is answered 2xx only if it committed, otherwise 503 with
//! `disk_full` / `read_only` and Retry-After; reads go on; the daemon stays up and says
//! `degraded` in `/healthz`, `/v1/status` and `posedge status`; the disk reserve lets sales
//! go on when something else fills the disk; writes come back by themselves once space is
//! freed. These need root (mount); `.ci/disk.sh` runs them (`--ignored`).

use crate::util::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A file system mounted for one test, lazily unmounted when dropped.
struct Mount {
    path: PathBuf,
    /// Kept alive for the mount point and the image.
    _dir: tempfile::TempDir,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tmpfs(mib: u64) -> Mount {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::create_dir(&path).unwrap();
    let size = format!("size={mib}m");
    run(
        "mount",
        &["-t", "tmpfs", "-o", &size, "tmpfs", path.to_str().unwrap()],
    );
    Mount { path, _dir: dir }
}

/// An ext4 image of `mib` MiB, loop-mounted with `errors=remount-ro`.
fn ext4(mib: u64) -> (Mount, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("state.img");
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(mib * 1024 * 1024).unwrap();
    run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
    let path = dir.path().join("state");
    std::fs::create_dir(&path).unwrap();
    mount_ext4(&image, &path);
    (Mount { path, _dir: dir }, image)
}

fn mount_ext4(image: &Path, at: &Path) {
    run(
        "mount",
        &[
            "-o",
            "loop,errors=remount-ro",
            image.to_str().unwrap(),
            at.to_str().unwrap(),
        ],
    );
}

/// What "something else" does: writes files until the disk says ENOSPC.
fn fill(dir: &Path, name: &str) -> PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xAAu8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0xAA; 512]).is_ok() {}
    let _ = f.sync_all();
    path
}

fn only_root_can_mount() -> bool {
    let root = unsafe_geteuid() == 0;
    if !root {
        eprintln!(
            "SKIPPED: needs root to mount a tmpfs / ext4 image (CI runs .ci/disk.sh as root)"
        );
    }
    root
}

fn unsafe_geteuid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

struct Register {
    client: reqwest::Client,
    base: String,
}

impl Register {
    fn new(d: &BinaryDaemon) -> Register {
        Register {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: format!("http://{}", d.addr),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value, Option<String>) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "POST" => self.client.post(url),
            _ => self.client.get(url),
        };
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("the daemon answers");
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        (status, body, retry_after)
    }

    async fn sale(&self, txn: &str) -> (u16, Value, Option<String>) {
        self.call("POST", "/v1/sales", R1_TOKEN, Some(&sale("R1", txn)))
            .await
    }

    async fn healthz(&self) -> Value {
        let (status, body, _) = self.call("GET", "/healthz", "", None).await;
        assert_eq!(status, 200, "the daemon is up: {body}");
        body
    }
}

/// Every answer to a sale is a commit (2xx) or a documented 503 with Retry-After: the
/// ledger of what the register was told.
#[derive(Default)]
struct Told {
    acked: BTreeSet<String>,
    refused: BTreeSet<String>,
}

impl Told {
    fn note(
        &mut self,
        txn: &str,
        (status, body, retry_after): &(u16, Value, Option<String>),
        expect: &str,
    ) {
        match status {
            200 | 201 => {
                self.acked.insert(txn.to_string());
                self.refused.remove(txn);
            }
            503 => {
                assert_eq!(error_code(body), expect, "{body}");
                assert!(retry_after.is_some(), "503 without Retry-After");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("nothing was recorded"),
                    "{body}"
                );
                self.refused.insert(txn.to_string());
            }
            other => panic!("sale {txn}: unexpected {other}: {body}"),
        }
    }
}

fn posedge_status(config: &Path) -> (i32, Value, String) {
    let out = Command::new(posedge_bin())
        .args(["status", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let json = Command::new(posedge_bin())
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), doc, text)
}

/// The sales in the database, by client id, with how many rows each has.
fn ledger(db: &Path) -> Vec<(String, i64)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut s = conn
        .prepare("SELECT client_txn_id, count(*) FROM sales GROUP BY client_txn_id")
        .unwrap();
    let rows = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

/// What the register does with a refused sale: the same client id again until it is taken.
async fn retry_until_taken(
    reg: &Register,
    told: &mut Told,
    txn: &str,
    within: Duration,
    expect: &str,
) {
    let deadline = Instant::now() + within;
    loop {
        let answer = reg.sale(txn).await;
        told.note(txn, &answer, expect);
        if told.acked.contains(txn) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sale {txn} still refused after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` sales while the disk is healthy (`before-0`…); the id of the first, for reading back.
async fn record_before(reg: &Register, told: &mut Told, n: usize, expect: &str) -> String {
    for i in 0..n {
        let txn = format!("before-{i}");
        retry_until_taken(reg, told, &txn, Duration::from_secs(5), expect).await;
    }
    let (_, first, _) = reg.sale("before-0").await;
    first["id"].as_str().unwrap().to_string()
}

/// After the run: every sale the register was told about is in the ledger exactly once,
/// nothing else is, and the audit chain holds.
fn assert_ledger_is_what_registers_were_told(dir: &Path, db: &Path, told: &Told) {
    let rows = ledger(db);
    for (txn, n) in &rows {
        assert_eq!(*n, 1, "sale {txn} recorded {n} times");
        assert!(
            told.acked.contains(txn),
            "sale {txn} committed but the register was told otherwise"
        );
    }
    let recorded: BTreeSet<String> = rows.into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        recorded, told.acked,
        "acknowledged sales missing from the ledger"
    );
    let out = Command::new(posedge_bin())
        .args(["audit", "verify", "--config"])
        .arg(dir.join("config.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

const QUIET: &str = "\n[probe]\ninternet_targets = []\n";

/// The storage object of `/healthz` once it says `reason` (the watch looks every second).
async fn storage_says(reg: &Register, reason: Option<&str>) -> Value {
    let want = reason.map(Value::from).unwrap_or(Value::Null);
    eventually(
        Duration::from_secs(10),
        &format!("storage reason {want}"),
        || async {
            let h = reg.healthz().await;
            (h["storage"]["reason"] == want).then_some(h)
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs root to mount a tmpfs: .ci/disk.sh"]
async fn sales_keep_committing_on_the_reserve_when_something_else_fills_the_disk() {
    if !only_root_can_mount() {
        return;
    }
    let m = tmpfs(64);
    let dir = tempfile::tempdir().unwrap();
    let d = BinaryDaemon::start_with_db(dir.path(), &m.path, "reserve_mib = 16", QUIET);
    let reg = Register::new(&d);
    let reserve = m.path.join("posedge.reserve");
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 16 << 20);
    assert_eq!(reg.healthz().await["status"], "ok");
    let mut told = Told::default();
    for i in 0..20 {
        let txn = format!("before-{i}");
        retry_until_taken(&reg, &mut told, &txn, Duration::from_secs(5), "disk_full").await;
    }

    let filler = fill(&m.path, "someone-elses.log");
    // The writer looks at free space before each commit: the reserve goes before any sale
    // needs its room, so none is refused.
    let started = Instant::now();
    for i in 0..300 {
        let txn = format!("full-{i}");
        retry_until_taken(&reg, &mut told, &txn, Duration::from_secs(5), "disk_full").await;
    }
    eprintln!(
        "300 sales on the reserve in {:?}; {} answered 503 once before being taken",
        started.elapsed(),
        told.refused.len()
    );
    assert!(told.refused.is_empty(), "sales refused: {:?}", told.refused);
    assert!(!reserve.exists(), "the reserve was released to the ledger");
    let h = storage_says(&reg, Some("reserve_in_use")).await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["storage"]["writable"], true);
    let (code, doc, text) = posedge_status(&dir.path().join("config.toml"));
    assert_eq!(code, 1, "{text}");
    assert_eq!(doc["storage"]["reason"], "reserve_in_use");
    eventually(
        Duration::from_secs(5),
        "the storage alert in /v1/status",
        || async {
            let (_, status, _) = reg.call("GET", "/v1/status", R1_TOKEN, None).await;
            let alerts = status["alerts"].as_array().unwrap().clone();
            alerts.iter().any(|a| a["alert"] == "storage").then_some(())
        },
    )
    .await;

    std::fs::remove_file(filler).unwrap();
    storage_says(&reg, None).await;
    assert_eq!(
        std::fs::metadata(&reserve).unwrap().len(),
        16 << 20,
        "the reserve is back"
    );
    assert_eq!(d.terminate(), Some(0));
    assert_ledger_is_what_registers_were_told(dir.path(), &m.path.join("posedge.db"), &told);
}

#[tokio::test]
#[ignore = "needs root to mount a tmpfs: .ci/disk.sh"]
async fn a_full_disk_refuses_writes_with_503_serves_reads_and_recovers_when_space_is_freed() {
    if !only_root_can_mount() {
        return;
    }
    let m = tmpfs(48);
    let dir = tempfile::tempdir().unwrap();
    let mut d = BinaryDaemon::start_with_db(dir.path(), &m.path, "reserve_mib = 8", QUIET);
    let reg = Register::new(&d);
    let mut told = Told::default();
    let first_id = record_before(&reg, &mut told, 10, "disk_full").await;

    // Something fills the disk, and keeps eating what the reserve gave back.
    let mut fillers = vec![fill(&m.path, "filler-0")];
    let mut refused_in_a_row = 0;
    let mut refused_txn = None;
    for i in 0..20_000 {
        let txn = format!("during-{i}");
        let answer = reg.sale(&txn).await;
        told.note(&txn, &answer, "disk_full");
        if answer.0 == 503 {
            refused_in_a_row += 1;
            refused_txn = Some(txn);
            fillers.push(fill(&m.path, &format!("filler-after-{i}")));
            if refused_in_a_row >= 5 {
                break;
            }
        } else {
            refused_in_a_row = 0;
        }
    }
    assert!(refused_in_a_row >= 5, "writes never refused on a full disk");
    let refused_txn = refused_txn.unwrap();

    // Refused writes, working reads, a daemon that is up and says so.
    let (status, body, _) = reg
        .call("GET", &format!("/v1/sales/{first_id}"), R1_TOKEN, None)
        .await;
    assert_eq!(
        (status, body["client_txn_id"].as_str()),
        (200, Some("before-0"))
    );
    let (status, _, _) = reg.sale("before-3").await;
    assert_eq!(
        status, 200,
        "a replay of a recorded sale is a read: it still answers"
    );
    let h = storage_says(&reg, Some("disk_full")).await;
    assert_eq!(
        (h["status"].as_str(), h["storage"]["writable"].as_bool()),
        (Some("degraded"), Some(false))
    );
    let (status, s, _) = reg.call("GET", "/v1/status", R1_TOKEN, None).await;
    assert_eq!(status, 200);
    assert_eq!(s["storage"]["reason"], "disk_full");
    let (status, q, _) = reg.call("GET", "/health/offline-queue", "", None).await;
    assert_eq!(status, 200, "{q}");
    let (code, doc, text) = posedge_status(&dir.path().join("config.toml"));
    assert_eq!(code, 1, "degraded, not down: {text}");
    assert!(text.contains("WRITES REFUSED"), "{text}");
    assert_eq!(doc["daemon"]["running"], true);
    let (status, body, _) = reg.call("POST", "/admin/backup", ADMIN_TOKEN, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "disk_full"),
        "no backup on a full disk"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon stayed up"
    );
    // A small commit may still squeeze into the WAL's last block; either answer is fine
    // as long as it is true.
    let answer = reg.sale(&refused_txn).await;
    told.note(&refused_txn, &answer, "disk_full");

    // Space is freed: the refused sale goes through by itself on the register's next try.
    for f in fillers {
        std::fs::remove_file(f).unwrap();
    }
    retry_until_taken(
        &reg,
        &mut told,
        &refused_txn,
        Duration::from_secs(10),
        "disk_full",
    )
    .await;
    for txn in told.refused.clone() {
        retry_until_taken(&reg, &mut told, &txn, Duration::from_secs(10), "disk_full").await;
    }
    storage_says(&reg, None).await;
    let (code, _, text) = posedge_status(&dir.path().join("config.toml"));
    assert_ne!(code, 2, "{text}");
    assert!(!text.contains("WRITES REFUSED"), "{text}");
    assert_eq!(d.terminate(), Some(0));
    assert_ledger_is_what_registers_were_told(dir.path(), &m.path.join("posedge.db"), &told);
}

#[tokio::test]
#[ignore = "needs root to mount an ext4 image: .ci/disk.sh"]
async fn a_disk_turned_read_only_under_the_daemon_refuses_writes_serves_reads_and_loses_nothing() {
    if !only_root_can_mount() {
        return;
    }
    let (m, image) = ext4(64);
    let dir = tempfile::tempdir().unwrap();
    let mut d = BinaryDaemon::start_with_db(dir.path(), &m.path, "reserve_mib = 8", QUIET);
    let reg = Register::new(&d);
    let mut told = Told::default();
    let first_id = record_before(&reg, &mut told, 20, "read_only").await;

    // What ext4 does on a disk error with errors=remount-ro, files open or not.
    let source = String::from_utf8(
        Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(&m.path)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let device = Path::new(source.trim())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").unwrap();

    for i in 0..5 {
        let txn = format!("after-{i}");
        let answer = reg.sale(&txn).await;
        told.note(&txn, &answer, "read_only");
        assert_eq!(answer.0, 503, "a read-only disk took a write: {}", answer.1);
    }
    let (status, body, _) = reg
        .call("GET", &format!("/v1/sales/{first_id}"), R1_TOKEN, None)
        .await;
    assert_eq!(
        (status, body["client_txn_id"].as_str()),
        (200, Some("before-0"))
    );
    let h = storage_says(&reg, Some("read_only")).await;
    assert_eq!(h["status"], "degraded");
    let (status, s, _) = reg.call("GET", "/v1/status", R1_TOKEN, None).await;
    assert_eq!(
        (status, s["storage"]["reason"].as_str()),
        (200, Some("read_only"))
    );
    let (code, _, text) = posedge_status(&dir.path().join("config.toml"));
    assert_eq!(code, 1, "degraded, not down: {text}");
    assert!(text.contains("read-only"), "{text}");
    let (status, body, _) = reg.call("POST", "/admin/backup", ADMIN_TOKEN, None).await;
    assert_eq!((status, error_code(&body)), (503, "read_only"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon stayed up"
    );

    // The technician's repair: stop, check the file system, mount it again, start.
    assert_eq!(
        d.terminate(),
        Some(0),
        "a clean stop even with a read-only database"
    );
    run("umount", &[m.path.to_str().unwrap()]);
    let fsck = Command::new("e2fsck")
        .args(["-fy"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        fsck.status.code().unwrap_or(8) < 4,
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    mount_ext4(&image, &m.path);
    let d = BinaryDaemon::start_with_db(dir.path(), &m.path, "reserve_mib = 8", QUIET);
    let reg = Register::new(&d);
    for txn in told.refused.clone() {
        retry_until_taken(&reg, &mut told, &txn, Duration::from_secs(10), "read_only").await;
    }
    storage_says(&reg, None).await;
    assert_eq!(d.terminate(), Some(0));
    assert_ledger_is_what_registers_were_told(dir.path(), &m.path.join("posedge.db"), &told);
}
