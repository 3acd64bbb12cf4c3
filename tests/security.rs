//! Tokens and roles, body limits, card numbers, TLS.

use crate::util::*;
use serde_json::json;

#[tokio::test]
async fn a_missing_or_unknown_token_is_a_401_asking_for_bearer() {
    let d = TestDaemon::start().await;
    let r = d
        .client
        .post(d.url("/v1/sales"))
        .json(&sale("R1", "A-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (status, body) = d.post("/v1/sales", "not-a-token", &sale("R1", "A-1")).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, _) = d.get("/v1/status", "").await;
    assert_eq!(status, 401);
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 0);
}

#[tokio::test]
async fn an_admin_token_cannot_record_sales_and_a_register_cannot_speak_for_another() {
    let d = TestDaemon::start().await;
    let (status, body) = d.post("/v1/sales", ADMIN_TOKEN, &sale("R1", "A-2")).await;
    assert_eq!((status, error_code(&body)), (403, "wrong_role"));
    let (status, body) = d.post("/v1/sales", R1_TOKEN, &sale("R2", "A-2")).await;
    assert_eq!((status, error_code(&body)), (403, "register_mismatch"));
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_and_writes_nothing() {
    let d = TestDaemon::start().await;
    let mut body = sale("R1", "BIG-1");
    body["lines"][0]["description"] = json!("x".repeat(70_000));
    let (status, answer) = d.post("/v1/sales", R1_TOKEN, &body).await;
    assert_eq!((status, error_code(&answer)), (413, "body_too_large"));
    // Without Content-Length (chunked), the limit holds too.
    let mut raw = format!(
        "POST /v1/sales HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {R1_TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..80 {
        raw.extend(b"400\r\n");
        raw.extend([b' '; 1024]);
        raw.extend(b"\r\n");
    }
    raw.extend(b"0\r\n\r\n");
    assert_eq!(raw_request(d.addr, &raw).await, Some(413));
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM sales"), 0);
}

#[tokio::test]
async fn health_endpoints_need_a_token_when_not_public() {
    let d = TestDaemon::start_with("").await;
    assert_eq!(
        d.client
            .get(d.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let private = TestDaemon::start_with_server_extra("public_health = false").await;
    assert_eq!(
        private
            .client
            .get(private.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        private
            .client
            .get(private.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(private.get("/healthz", R1_TOKEN).await.0, 200);
}

/// Card numbers as registers might (wrongly) send them, in every kind of field.
const CARD_BODIES: &[(&str, &str)] = &[
    (
        "lines[0].description",
        r#""description": "card 4242424242424242""#,
    ),
    ("lines[0].sku", r#""sku": "4111-1111-1111-1111""#),
    ("cashier_id", r#""cashier_id": "5555 5555 5555 4444""#),
    (
        "escaped",
        r#""description": "\u0034\u0032\u0034\u0032424242424242""#,
    ),
];

#[test]
fn a_card_number_in_any_field_is_refused_and_never_reaches_the_database_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BinaryDaemon::start(dir.path(), "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/sales", daemon.addr);
    let template = serde_json::to_string(&sale("R1", "PAN-1")).unwrap();
    for (where_, field) in CARD_BODIES {
        let key = field.split(':').next().unwrap();
        let start = template
            .find(key)
            .unwrap_or_else(|| template.find("\"cashier_id\"").unwrap());
        let end = start + template[start..].find(',').unwrap();
        let body = format!("{}{}{}", &template[..start], field, &template[end..]);
        let (status, answer) = rt.block_on(async {
            split(
                client
                    .post(&url)
                    .bearer_auth(R1_TOKEN)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        });
        assert_eq!(status, 422, "{where_}: {answer}");
        assert_eq!(error_code(&answer), "card_number_refused");
    }
    // A card number as a JSON number, and inside a malformed body, too.
    for raw in [
        r#"{"total": 4242424242424242}"#,
        r#"{"x": "4242424242424242"#,
    ] {
        let (status, _) = rt.block_on(async {
            split(
                client
                    .post(&url)
                    .bearer_auth(R1_TOKEN)
                    .body(raw)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        });
        assert_eq!(status, 422, "{raw}");
    }
    let log = daemon.log.clone();
    assert_eq!(daemon.terminate(), Some(0));
    let mut haystack = std::fs::read(&log).unwrap();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() {
            haystack.extend(std::fs::read(&path).unwrap());
        }
    }
    for digits in ["4242424242424242", "4111", "5555 5555", "1111-1111"] {
        assert!(
            !haystack
                .windows(digits.len())
                .any(|w| w == digits.as_bytes()),
            "{digits} found in the log or the data directory"
        );
    }
}

#[tokio::test]
async fn with_a_certificate_configured_the_api_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    let d = TestDaemon::start_in_with_server_extra(dir, &extra).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", d.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/v1/sales", d.addr.port());
    let r = client
        .post(&url)
        .bearer_auth(R1_TOKEN)
        .json(&sale("R1", "TLS-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // Plain HTTP to the TLS port gets no answer.
    let plain = d.client.get(d.url("/healthz")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}
