//! Backups and `posedge status` on the real binary: a backup taken under write load restores
//! every sale acknowledged before it began; restore refuses a running daemon, a corrupt file
//! and a newer schema; `keep` prunes only our own files; scheduled backups run; status exit
//! codes for healthy, degraded and down.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `posedge ARGS --config dir/config.toml`: (exit code, stdout + stderr).
pub fn posedge(dir: &Path, args: &[&str]) -> (i32, String) {
    let config = dir.join("config.toml");
    let out = Command::new(posedge_bin())
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Writes `dir/config.toml` as `BinaryDaemon::start` would, for commands run with no daemon.
fn write_config(dir: &Path, extra: &str) {
    let toml = config_toml(dir, &format!("127.0.0.1:{}", free_port()), "", extra);
    std::fs::write(dir.join("config.toml"), toml).unwrap();
}

/// No internet probe (nothing to reach from a test box): the link is `unconfigured`.
const QUIET: &str = "\n[probe]\ninternet_targets = []\n";

fn backup_file_from(out: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != "backup")
        .nth(1)
        .unwrap_or_else(|| panic!("no file name in {out:?}"))
        .to_string()
}

fn sha(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn client_txn_ids(db: &Path) -> std::collections::HashSet<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare("SELECT client_txn_id FROM sales").unwrap();
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ids
}

#[test]
fn a_backup_taken_under_write_load_restores_every_sale_acknowledged_before_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(dir.path(), QUIET);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("http://{}/v1/sales", daemon.addr);
    let mut registers = Vec::new();
    for r in 0..8 {
        let (acked, stop, url) = (acked.clone(), stop.clone(), url.clone());
        let (register, token) = if r % 2 == 0 {
            ("R1", R1_TOKEN)
        } else {
            ("R2", R2_TOKEN)
        };
        registers.push(rt.spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let txn = format!("L{r}-{n}");
                n += 1;
                let resp = client
                    .post(&url)
                    .bearer_auth(token)
                    .json(&sale(register, &txn))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
                acked.lock().unwrap().push((txn, Instant::now()));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let (code, out) = posedge(dir.path(), &["backup", "now"]);
    let finished = Instant::now();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("through the daemon"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for r in registers {
        rt.block_on(r).unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(t, _)| t)
        .collect();
    let during = acked
        .iter()
        .filter(|(_, at)| *at >= started && *at <= finished)
        .count();
    let after = acked.iter().filter(|(_, at)| *at > finished).count();
    assert!(before.len() > 100, "too little load: {}", before.len());
    assert!(after > 0, "the registers stopped while the backup ran");
    eprintln!(
        "sales acknowledged: {} before the backup, {during} while it ran ({} ms), {after} after",
        before.len(),
        (finished - started).as_millis()
    );

    // Refused while the daemon runs, and nothing is touched.
    let file = backup_file_from(&out);
    let db = dir.path().join("posedge.db");
    let (code, refused) = posedge(dir.path(), &["backup", "restore", &file]);
    assert_ne!(code, 0, "{refused}");
    assert!(refused.contains("daemon is running"), "{refused}");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("before-restore"))
            .count(),
        0
    );
    assert_eq!(daemon.terminate(), Some(0));
    let all_sales = count(&db, "SELECT count(*) FROM sales");
    assert_eq!(all_sales as usize, acked.len());

    let (code, out) = posedge(dir.path(), &["backup", "restore", &file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kept as"), "{out}");
    let restored = client_txn_ids(&db);
    let missing: Vec<_> = before.iter().filter(|t| !restored.contains(**t)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged sales missing after restore, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        restored.len() < acked.len(),
        "the backup holds sales acknowledged after it finished"
    );
    // The replaced database is kept whole, every sale in it.
    let kept: PathBuf = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("before-restore"))
        .unwrap();
    assert_eq!(count(&kept, "SELECT count(*) FROM sales"), all_sales);
    // The daemon starts on the restored file, and the sale counts match.
    let daemon = BinaryDaemon::start(dir.path(), QUIET);
    assert_eq!(daemon.terminate(), Some(0));
    assert_eq!(
        count(&db, "SELECT count(*) FROM sales") as usize,
        restored.len()
    );
}

#[test]
fn restore_refuses_a_corrupt_file_or_a_newer_schema_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(dir.path(), QUIET);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{}/v1/sales", daemon.addr))
            .bearer_auth(R1_TOKEN)
            .json(&sale("R1", "KEEP-1"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 201);
    let (code, out) = posedge(dir.path(), &["backup", "now"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(daemon.terminate(), Some(0));
    let good = dir.path().join("backups").join(backup_file_from(&out));
    let db = dir.path().join("posedge.db");
    let before = sha(&db);

    // A page in the middle overwritten.
    let mut bytes = std::fs::read(&good).unwrap();
    assert!(bytes.len() > 16384);
    for b in &mut bytes[8192..12288] {
        *b = 0xA5;
    }
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, &bytes).unwrap();
    // Cut short.
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &std::fs::read(&good).unwrap()[..5000]).unwrap();
    // Newer than the binary.
    let newer = dir.path().join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            [],
        )
        .unwrap();

    for (file, says) in [
        (&corrupt, "corrupt"),
        (&truncated, "corrupt"),
        (&newer, "newer"),
    ] {
        let (code, out) = posedge(dir.path(), &["backup", "restore", file.to_str().unwrap()]);
        assert_eq!(code, 65, "{}: {out}", file.display());
        assert!(out.contains(says), "{}: {out}", file.display());
        assert_eq!(sha(&db), before, "the database changed");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("before-restore") || n.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The good one is accepted (by bare name, found in the backup directory).
    let name = good.file_name().unwrap().to_str().unwrap();
    let (code, out) = posedge(dir.path(), &["backup", "restore", name]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(count(&db, "SELECT count(*) FROM sales"), 1);
}

#[test]
fn keep_prunes_the_oldest_backups_and_leaves_every_other_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &format!("{QUIET}\n[backup]\nkeep = 2\n"));
    let (code, out) = posedge(dir.path(), &["migrate"]);
    assert_eq!(code, 0, "{out}");
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let foreign = [
        "notes.txt",
        "posedge-pre-migration-v1-to-v2-20260101T000000Z.db",
        "copy-of-posedge.db",
    ];
    for f in foreign {
        std::fs::write(backups.join(f), b"not ours to delete").unwrap();
    }
    let mut taken = Vec::new();
    for _ in 0..4 {
        let (code, out) = posedge(dir.path(), &["backup", "now"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("daemon stopped"), "{out}");
        taken.push(backup_file_from(&out));
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut present: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut expected: Vec<String> = foreign.iter().map(|s| s.to_string()).collect();
    expected.extend(taken[2..].iter().cloned());
    expected.sort();
    assert_eq!(present, expected);
    let (code, list) = posedge(dir.path(), &["backup", "list", "--check"]);
    assert_eq!(code, 0, "{list}");
    assert!(
        list.contains(&taken[3]) && list.contains(&taken[2]),
        "{list}"
    );
    assert!(
        !list.contains(&taken[0]) && !list.contains("notes.txt"),
        "{list}"
    );
    // The pre-migration name is ours to list but not to prune; this one is not a database.
    assert!(
        list.contains("pre-migration v1→v2") && list.contains("FAILED"),
        "{list}"
    );
    assert_eq!(list.matches("ok (checked now)").count(), 2, "{list}");
}

#[test]
fn scheduled_backups_run_on_the_interval_and_show_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(
        dir.path(),
        &format!("{QUIET}\n[backup]\ninterval = \"700ms\"\nkeep = 2\n"),
    );
    let backups = dir.path().join("backups");
    // Finished backups only: a `.tmp` of one being written does not count.
    let listed = || {
        std::fs::read_dir(&backups)
            .map(|d| {
                d.filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".db") && !name.starts_with('.')
                })
                .count()
            })
            .unwrap_or(0)
    };
    // Not at once: the first one is due one interval after the first start.
    assert_eq!(listed(), 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while listed() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(listed(), 2, "keep = 2");
    let (code, out) = posedge(dir.path(), &["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(code, 0, "{out}");
    assert_eq!(doc["backup"]["last"]["ok"], true, "{out}");
    assert_eq!(doc["backup"]["last"]["trigger"], "scheduled", "{out}");
    assert!(
        backups
            .join(doc["backup"]["last"]["file"].as_str().unwrap())
            .exists()
            || listed() == 2
    );
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn status_exits_0_when_healthy_1_when_degraded_and_2_when_the_daemon_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let drop_dir = dir.path().join("BOOutbox");
    std::fs::create_dir_all(&drop_dir).unwrap();
    let extra = format!(
        "{QUIET}\n[conexxus]\ntransport = \"directory\"\ndirectory = \"{}\"\n",
        drop_dir.display()
    );
    let daemon = BinaryDaemon::start(dir.path(), &extra);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut code, mut out) = posedge(dir.path(), &["status"]);
    while code != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        (code, out) = posedge(dir.path(), &["status"]);
    }
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("HEALTHY") && out.contains("conexxus  online"),
        "{out}"
    );

    let (c, o) = posedge(dir.path(), &["network", "offline", "conexxus"]);
    assert_eq!(c, 0, "{o}");
    let (code, out) = posedge(dir.path(), &["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DEGRADED") && out.contains("conexxus is offline (forced)"),
        "{out}"
    );
    let (code, json) = posedge(dir.path(), &["status", "--json"]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["health"]["exit_code"], 1);
    assert_eq!(doc["network"]["upstreams"]["conexxus"]["forced"], true);
    let (c, o) = posedge(dir.path(), &["network", "auto"]);
    assert_eq!(c, 0, "{o}");

    assert_eq!(daemon.terminate(), Some(0));
    let (code, out) = posedge(dir.path(), &["status"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("DOWN") && out.contains("daemon is not running") && out.contains("schema v"),
        "what the database says is still printed: {out}"
    );
    let (code, json) = posedge(dir.path(), &["status", "--json"]);
    assert_eq!(code, 2);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["daemon"]["running"], false);
    assert_eq!(doc["outbox"]["dead"], 0);
}

#[test]
fn a_failed_backup_degrades_status_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // The backup directory is a file: every snapshot fails.
    let blocked = dir.path().join("not-a-directory");
    std::fs::write(&blocked, b"x").unwrap();
    let daemon = BinaryDaemon::start(
        dir.path(),
        &format!(
            "{QUIET}\n[backup]\ndirectory = \"{}\"\n",
            blocked.join("sub").display()
        ),
    );
    let (code, out) = posedge(dir.path(), &["status"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = posedge(dir.path(), &["backup", "now"]);
    assert_ne!(code, 0, "{out}");
    let (code, out) = posedge(dir.path(), &["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("backup: the last backup failed"), "{out}");
    assert!(out.contains("backup      FAILED"), "{out}");
    assert_eq!(daemon.terminate(), Some(0));
}
