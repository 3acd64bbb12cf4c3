//! Start, stop, restart, and the systemd notify contract, on the real binary where it matters.

use crate::util::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_restart_keeps_every_sale_and_replays_still_answer_the_original() {
    let d = TestDaemon::start().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, r) = d
            .post("/v1/sales", R1_TOKEN, &sale("R1", &format!("RS-{i}")))
            .await;
        assert_eq!(status, 201);
        ids.push(r["id"].clone());
    }
    let dir = d.stop().await;
    let d = TestDaemon::start_in(dir, "").await;
    for (i, id) in ids.iter().enumerate() {
        let (status, r) = d
            .post("/v1/sales", R1_TOKEN, &sale("R1", &format!("RS-{i}")))
            .await;
        assert_eq!((status, &r["id"]), (200, id));
        let (status, _) = d
            .get(&format!("/v1/sales/{}", id.as_str().unwrap()), R1_TOKEN)
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 20);
}

#[test]
fn sigterm_exits_zero_with_the_wal_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(dir.path(), "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("http://{}/v1/sales", daemon.addr);
    rt.block_on(async {
        let c = reqwest::Client::new();
        for i in 0..10 {
            let r = c
                .post(&url)
                .bearer_auth(R1_TOKEN)
                .json(&sale("R1", &format!("T{i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
    });
    assert_eq!(daemon.terminate(), Some(0));
    let wal = dir.path().join("posedge.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL not checkpointed at shutdown");
    assert_eq!(
        count(&dir.path().join("posedge.db"), "SELECT count(*) FROM sales"),
        10
    );
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_sale() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(dir.path(), "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked = rt.block_on(async {
        let url = format!("http://{}/v1/sales", daemon.addr);
        let mut tasks = Vec::new();
        for t in 0..16 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let c = reqwest::Client::new();
                let mut acked = Vec::new();
                for i in 0.. {
                    let txn = format!("L{t}-{i}");
                    match c
                        .post(&url)
                        .bearer_auth(R1_TOKEN)
                        .json(&sale("R1", &txn))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().as_u16() == 201 => acked.push(txn),
                        Ok(_) | Err(_) => break,
                    }
                }
                acked
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pid = daemon.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let code = {
        let mut d = daemon;
        d.child.wait().unwrap().code()
    };
    assert_eq!(code, Some(0));
    assert!(!acked.is_empty());
    let db = dir.path().join("posedge.db");
    for txn in &acked {
        let n = count(
            &db,
            &format!("SELECT count(*) FROM sales WHERE client_txn_id = '{txn}'"),
        );
        assert_eq!(n, 1, "{txn} acknowledged but stored {n} times");
    }
}

/// Collects sd_notify datagrams sent to a socket we own.
struct NotifySocket {
    sock: UnixDatagram,
    pub path: std::path::PathBuf,
}

impl NotifySocket {
    fn new(dir: &std::path::Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        NotifySocket { sock, path }
    }

    /// Every message received during `window`.
    fn collect(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        out
    }

    fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == needle)
                {
                    return true;
                }
            }
        }
        false
    }
}

#[test]
fn systemd_hears_ready_after_bind_watchdog_pings_while_the_writer_turns_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new(dir.path());
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_toml(dir.path(), &addr.to_string(), "", "")).unwrap();
    let mut child = Command::new(posedge_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(20)),
        "no READY=1"
    );
    assert_eq!(
        http_get_status(addr, "/healthz"),
        Some(200),
        "READY before the listener answered"
    );
    let pings = notify.collect(Duration::from_millis(600));
    assert!(
        pings.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "{pings:?}"
    );

    // Wedge the writer: hold the database's write lock from outside, then ask for a write.
    let db = dir.path().join("posedge.db");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE; INSERT INTO outbox (kind, upstream, priority, idempotency_key, payload, created_at, updated_at) VALUES ('x','x',0,'wedge','{}','now','now');").unwrap();
    let post = std::thread::spawn(move || {
        let body = serde_json::to_string(&sale("R1", "WEDGE-1")).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "POST /v1/sales HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {R1_TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = notify.collect(Duration::from_millis(100)); // pings already in flight
    let wedged = notify.collect(Duration::from_millis(1200));
    assert!(
        !wedged.iter().any(|m| m.contains("WATCHDOG=1")),
        "watchdog pinged while the writer was wedged: {wedged:?}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let answer = post.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the write did not complete after the wedge: {answer}"
    );
    assert!(
        notify.wait_for("WATCHDOG=1", Duration::from_secs(3)),
        "pings did not resume"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(
        notify.wait_for("STOPPING=1", Duration::from_secs(10)),
        "no STOPPING=1"
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
