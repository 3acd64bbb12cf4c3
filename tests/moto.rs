//! Backup uploads (outbox kind `backup_upload`) against `moto` (PyPI), a third-party fake of
//! AWS S3: a backup is uploaded and the object read back byte for byte; while the storage is
//! down the upload waits pending, and it is delivered once the storage is back.
//!
//! The test starts and stops `moto_server` itself (on 127.0.0.1 only: `-H 127.0.0.1`), from
//! `POSEDGE_MOTO_SERVER`, the path `.ci/moto.sh` installs it at. Elsewhere it is reported as
//! ignored. moto keeps its state in memory: a restart forgets the bucket, so the test
//! recreates it while the internet link is forced offline, before the pending upload goes.

use crate::backup::posedge;
use crate::util::*;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "posedge-backups";

struct Moto {
    child: Child,
}

impl Moto {
    fn start(port: u16, log: &Path) -> Moto {
        let server = std::env::var("POSEDGE_MOTO_SERVER")
            .unwrap_or_else(|_| panic!("POSEDGE_MOTO_SERVER is not set: run `bash .ci/moto.sh`"));
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bucket(port: u16) -> (Bucket, Credentials) {
    let url = format!("http://127.0.0.1:{port}").parse().unwrap();
    (
        Bucket::new(url, UrlStyle::Path, BUCKET, "us-east-1").unwrap(),
        Credentials::new("testing", "testing"),
    )
}

async fn create_bucket(port: u16) {
    let (b, c) = bucket(port);
    let url = b.create_bucket(&c).sign(Duration::from_secs(60));
    let r = reqwest::Client::new()
        .put(url)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());
}

async fn object(port: u16, key: &str) -> Option<Vec<u8>> {
    let (b, c) = bucket(port);
    let url = b.get_object(Some(&c), key).sign(Duration::from_secs(60));
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    r.status().is_success().then_some(())?;
    Some(r.bytes().await.unwrap().to_vec())
}

fn upload_states(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT state FROM outbox WHERE kind = 'backup_upload' ORDER BY id")
        .unwrap();
    let states: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    states.join(",")
}

#[test]
#[ignore = "needs moto_server: run by .ci/moto.sh"]
fn a_backup_is_uploaded_to_s3_and_an_outage_only_delays_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start(port, &dir.path().join("moto.log"));
    rt.block_on(create_bucket(port));
    let extra = format!(
        r#"
[probe]
internet_targets = ["127.0.0.1:{port}"]
interval = "200ms"
offline_interval = "100ms"
timeout = "1s"

[outbox]
backoff_base = "50ms"
backoff_max = "300ms"
process_interval = "1s"

[backup.s3]
endpoint = "http://127.0.0.1:{port}"
bucket = "{BUCKET}"
region = "us-east-1"
prefix = "store-17/"
access_key_id = "testing"
secret_access_key = "testing"
path_style = true
timeout = "30s"
"#
    );
    let daemon = BinaryDaemon::start(dir.path(), &extra);
    let db = dir.path().join("posedge.db");
    rt.block_on(async {
        let c = reqwest::Client::new();
        for i in 0..200 {
            let r = c
                .post(format!("http://{}/v1/sales", daemon.addr))
                .bearer_auth(R1_TOKEN)
                .json(&sale("R1", &format!("S3-{i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    });

    // 1. Storage up: uploaded, and the object is the file, byte for byte.
    let (code, out) = posedge(dir.path(), &["backup", "now"]);
    assert_eq!(code, 0, "{out}");
    let first = out.split_whitespace().nth(1).unwrap().to_string();
    rt.block_on(eventually(
        Duration::from_secs(20),
        "the first upload delivered",
        || async { (upload_states(&db) == "delivered").then_some(()) },
    ));
    let local = std::fs::read(dir.path().join("backups").join(&first)).unwrap();
    let remote = rt
        .block_on(object(port, &format!("store-17/{first}")))
        .expect("the object is in the bucket");
    assert_eq!(remote.len(), local.len());
    assert!(remote == local, "the uploaded object differs from the file");

    // 2. Storage down: the next backup is taken, its upload waits pending.
    moto.stop();
    let (code, out) = posedge(dir.path(), &["backup", "now"]);
    assert_eq!(code, 0, "{out}");
    let second = out.split_whitespace().nth(1).unwrap().to_string();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(upload_states(&db), "delivered,pending");
    let (code, status) = posedge(dir.path(), &["status"]);
    assert_eq!(code, 1, "the outage shows as degraded: {status}");

    // 3. Storage back (with an empty memory: the bucket is made again before the upload may
    //    go), and the pending upload is delivered under the same key.
    let (c, o) = posedge(dir.path(), &["network", "offline", "internet"]);
    assert_eq!(c, 0, "{o}");
    let _moto = Moto::start(port, &dir.path().join("moto-2.log"));
    rt.block_on(create_bucket(port));
    let (c, o) = posedge(dir.path(), &["network", "auto", "internet"]);
    assert_eq!(c, 0, "{o}");
    rt.block_on(eventually(
        Duration::from_secs(30),
        "the second upload delivered after the outage",
        || async { (upload_states(&db) == "delivered,delivered").then_some(()) },
    ));
    let local = std::fs::read(dir.path().join("backups").join(&second)).unwrap();
    let remote = rt
        .block_on(object(port, &format!("store-17/{second}")))
        .expect("the second object is in the bucket");
    assert!(remote == local, "the second object differs from its file");
    assert_eq!(daemon.terminate(), Some(0));
}
