//! kill -9 at random moments under concurrent load: every acknowledged sale survives exactly
//! once and the database passes `PRAGMA integrity_check` (DESIGN.md invariant 1).

use crate::util::*;
use rand::Rng;
use std::collections::HashMap;
use std::time::Duration;

const ROUNDS: usize = 50;
const CLIENTS: usize = 8;

#[test]
fn kill_9_under_load_never_loses_or_duplicates_an_acknowledged_sale() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("posedge.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rng = rand::rng();
    // client_txn_id → sale id, for every sale that got a 2xx.
    let mut acked: HashMap<String, String> = HashMap::new();
    for round in 0..ROUNDS {
        let daemon = BinaryDaemon::start(dir.path(), "");
        let url = format!("http://{}/v1/sales", daemon.addr);
        let kill_after = Duration::from_millis(rng.random_range(5..250));
        let round_acked = rt.block_on(async {
            let mut tasks = Vec::new();
            for c in 0..CLIENTS {
                let url = url.clone();
                tasks.push(tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut acked = Vec::new();
                    for i in 0.. {
                        let txn = format!("K{round}-{c}-{i}");
                        let sent = client
                            .post(&url)
                            .bearer_auth(R1_TOKEN)
                            .json(&sale("R1", &txn))
                            .send()
                            .await;
                        let Ok(r) = sent else { break };
                        if !r.status().is_success() {
                            break;
                        }
                        let Ok(body) = r.json::<serde_json::Value>().await else {
                            break;
                        };
                        acked.push((txn, body["id"].as_str().unwrap().to_string()));
                    }
                    acked
                }));
            }
            tokio::time::sleep(kill_after).await;
            daemon.kill9();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
        acked.extend(round_acked);

        // Recovery happens on open; check after every crash, not only at the end.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "integrity_check after round {round}");
        let mut stmt = conn
            .prepare("SELECT id, count(*) OVER (PARTITION BY client_txn_id) FROM sales WHERE register_id = 'R1' AND client_txn_id = ?1")
            .unwrap();
        for (txn, id) in &acked {
            let (stored, copies): (String, i64) = stmt
                .query_row([txn], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap_or_else(|_| panic!("round {round}: acknowledged {txn} is missing"));
            assert_eq!((&stored, copies), (id, 1), "round {round}: {txn}");
        }
        let orphans: i64 = conn
            .query_row(
                "SELECT count(*) FROM sales s WHERE NOT EXISTS
                 (SELECT 1 FROM outbox o WHERE o.idempotency_key = 'naxml-sale:' || s.id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0, "a sale without its outbox row");
    }
    assert!(
        acked.len() > ROUNDS,
        "too few acknowledged sales to mean anything: {}",
        acked.len()
    );
}
