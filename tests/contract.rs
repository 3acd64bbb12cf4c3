//! Answers against the daemon's own OpenAPI document (`GET /openapi.json`): regression tests
//! for what the schemathesis run (`.ci/schemathesis.sh`) found. Each test sends the request
//! that failed there and checks, with [`Spec`], what schemathesis checks: the status is
//! documented for the operation, the body is valid against that status's schema, and a request
//! the document calls invalid is refused (or, where the document was wrong, that it now
//! describes what the daemon accepts).
//!
//! [`Spec::conforms`] validates the subset of JSON Schema openapi.json uses: `$ref`, `allOf`,
//! `oneOf`, `anyOf`, `type` (a name or a list), `nullable`, `enum`, `required`, `properties`,
//! `additionalProperties`, `items`, `minimum`/`maximum`, `minLength`/`maxLength`,
//! `minItems`/`maxItems`. `pattern` and `format` are not checked here (schemathesis does).

use crate::util::*;
use serde_json::{json, Value};

/// The document the daemon serves, and checks against it.
pub struct Spec {
    pub doc: Value,
}

impl Spec {
    /// Fetches `GET /openapi.json` from a running daemon (the document it serves, not the file).
    pub async fn of(d: &TestDaemon) -> Spec {
        let (status, doc) = d.get("/openapi.json", "").await;
        assert_eq!(status, 200, "GET /openapi.json");
        Spec { doc }
    }

    pub fn operation(&self, method: &str, path: &str) -> &Value {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not documented");
        op
    }

    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node["$ref"].as_str() {
            Some(r) => {
                let target = r
                    .strip_prefix('#')
                    .and_then(|p| self.doc.pointer(p))
                    .unwrap_or_else(|| panic!("$ref {r} points nowhere"));
                self.resolve(target)
            }
            None => node,
        }
    }

    /// The JSON schema of the request body of `method path`.
    pub fn request_schema(&self, method: &str, path: &str) -> &Value {
        let body = self.resolve(&self.operation(method, path)["requestBody"]);
        &body["content"]["application/json"]["schema"]
    }

    /// The schema of parameter `name` of `method path`.
    pub fn parameter_schema(&self, method: &str, path: &str, name: &str) -> &Value {
        self.operation(method, path)["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p))
            .find(|p| p["name"] == name)
            .map(|p| &p["schema"])
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
    }

    /// Panics unless `status` is documented for `method path` and `body` is valid against the
    /// schema of that answer.
    pub fn check_answer(&self, method: &str, path: &str, status: u16, body: &Value) {
        let responses = &self.operation(method, path)["responses"];
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| {
                panic!("{method} {path} answered {status}, which it does not document: {body}")
            });
        let response = self.resolve(response);
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return;
        }
        if let Err(e) = self.conforms(schema, body, "") {
            panic!("{method} {path} answered {status} with a body the document does not allow: {e}\nbody: {body}");
        }
    }

    /// Whether `value` is valid against `schema`; the error names the first place it is not.
    pub fn conforms(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        let fail = |what: String| Err(format!("at `{at}`: {what}"));
        if value.is_null() && schema["nullable"] == true {
            return Ok(());
        }
        for sub in schema["allOf"].as_array().into_iter().flatten() {
            self.conforms(sub, value, at)?;
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(subs) = schema[key].as_array() {
                let matching = subs
                    .iter()
                    .filter(|s| self.conforms(s, value, at).is_ok())
                    .count();
                if matching == 0 || (key == "oneOf" && matching > 1) {
                    return fail(format!("{matching} of the {key} alternatives match"));
                }
            }
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                return fail(format!("{value} is not one of {}", schema["enum"]));
            }
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() && !types.iter().any(|t| is_type(value, t)) {
            return fail(format!("{value} is not of type {}", schema["type"]));
        }
        let number = |k: &str| schema[k].as_f64();
        if let Some(n) = value.as_f64() {
            if number("minimum").is_some_and(|m| n < m) || number("maximum").is_some_and(|m| n > m)
            {
                return fail(format!("{n} is out of the schema's range"));
            }
        }
        let count = |k: &str| schema[k].as_u64().map(|n| n as usize);
        if let Some(s) = value.as_str() {
            let len = s.chars().count();
            if count("minLength").is_some_and(|m| len < m)
                || count("maxLength").is_some_and(|m| len > m)
            {
                return fail(format!("the length {len} is out of the schema's range"));
            }
        }
        if let Some(items) = value.as_array() {
            if count("minItems").is_some_and(|m| items.len() < m)
                || count("maxItems").is_some_and(|m| items.len() > m)
            {
                return fail(format!(
                    "{} items is out of the schema's range",
                    items.len()
                ));
            }
            if schema.get("items").is_some() {
                for (i, item) in items.iter().enumerate() {
                    self.conforms(&schema["items"], item, &format!("{at}[{i}]"))?;
                }
            }
        }
        if let Some(object) = value.as_object() {
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    return fail(format!("the required property `{name}` is missing"));
                }
            }
            let properties = schema["properties"].as_object();
            for (name, v) in object {
                let path = format!("{at}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(s) => self.conforms(s, v, &path)?,
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => {
                            return fail(format!("`{name}` is not an allowed property"))
                        }
                        s @ Value::Object(_) => self.conforms(s, v, &path)?,
                        _ => {}
                    },
                }
            }
        }
        Ok(())
    }
}

fn is_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => panic!("unknown schema type {t}"),
    }
}

#[tokio::test]
async fn the_contract_checker_itself_refuses_what_the_document_forbids() {
    // A checker that accepts everything would make every test below pass; prove it does not.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    let request = spec.request_schema("POST", "/v1/sales");
    assert!(spec.conforms(request, &sale("R1", "C-1"), "").is_ok());
    for broken in [
        json!({"client_txn_id": "C-1"}),
        {
            let mut s = sale("R1", "C-1");
            s["lines"] = json!([]);
            s
        },
        {
            let mut s = sale("R1", "C-1");
            s["surprise"] = json!(1);
            s
        },
        {
            let mut s = sale("R1", "C-1");
            s["total"] = json!("430");
            s
        },
        {
            let mut s = sale("R1", "C-1");
            s["kind"] = json!("void");
            s
        },
    ] {
        assert!(spec.conforms(request, &broken, "").is_err(), "{broken}");
    }
    let (status, body) = d.post("/v1/sales", R1_TOKEN, &sale("R1", "C-1")).await;
    assert_eq!(status, 201);
    spec.check_answer("POST", "/v1/sales", status, &body);
    let mut wrong = body.clone();
    wrong["id"] = json!(7);
    let caught = std::panic::catch_unwind(|| spec.check_answer("POST", "/v1/sales", 201, &wrong));
    assert!(caught.is_err(), "an id of the wrong type passed");
    let caught = std::panic::catch_unwind(|| spec.check_answer("POST", "/v1/sales", 418, &body));
    assert!(caught.is_err(), "an undocumented status passed");
}

#[tokio::test]
async fn every_refund_rule_error_of_a_sale_is_a_documented_422_code() {
    // schemathesis: POST /v1/sales answered 422 `original_sale_on_sale`, a code the 422 schema
    // did not list (nor `refund_tender_not_cash`, `original_sale_not_found`).
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    let mut on_sale = sale("R1", "RF-1");
    on_sale["original_sale_id"] = json!("sale_01JDQ8W2K5N8P1R4T7V0X3Z6AC");
    let mut card_refund = sale("R1", "RF-2");
    card_refund["kind"] = json!("refund");
    card_refund["tenders"] = json!([{"method": "card", "amount": 430, "payment_id": "pay_x"}]);
    let mut unknown_original = sale("R1", "RF-3");
    unknown_original["kind"] = json!("refund");
    unknown_original["original_sale_id"] = json!("sale_nope");
    for (body, code) in [
        (on_sale, "original_sale_on_sale"),
        (card_refund, "refund_tender_not_cash"),
        (unknown_original, "original_sale_not_found"),
    ] {
        let (status, answer) = d.post("/v1/sales", R1_TOKEN, &body).await;
        assert_eq!((status, error_code(&answer)), (422, code));
        spec.check_answer("POST", "/v1/sales", status, &answer);
    }
}

#[tokio::test]
async fn a_null_upstream_in_a_network_mode_change_is_documented_as_all_three() {
    // schemathesis negative_data_rejection: `{"mode": "offline", "upstream": null}` was
    // answered 200 although the document's schema refused a null upstream; the description
    // already said null means all three, as the daemon does.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    let body = json!({"mode": "offline", "upstream": null});
    let schema = spec.request_schema("POST", "/admin/network/mode");
    assert_eq!(spec.conforms(schema, &body, ""), Ok(()));
    let (status, answer) = d.post("/admin/network/mode", ADMIN_TOKEN, &body).await;
    assert_eq!(status, 200);
    spec.check_answer("POST", "/admin/network/mode", status, &answer);
    // Null means all three, as absent does.
    let all = "SELECT count(*) FROM settings WHERE key = 'forced_offline' \
               AND value LIKE '%internet%' AND value LIKE '%stripe%' AND value LIKE '%conexxus%'";
    assert_eq!(count(&d.db_path(), all), 1);
}

#[tokio::test]
async fn a_null_business_date_in_a_sync_request_is_documented_as_the_default() {
    // schemathesis negative_data_rejection: `{"business_date": null}` was answered 202 (the
    // latest closed date, as when absent) although the schema refused null.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    let body = json!({"business_date": null});
    let schema = spec.request_schema("POST", "/conexxus/sync");
    assert_eq!(spec.conforms(schema, &body, ""), Ok(()));
    let (status, answer) = d.post("/conexxus/sync", ADMIN_TOKEN, &body).await;
    assert_eq!(status, 202);
    spec.check_answer("POST", "/conexxus/sync", status, &answer);
    let (_, absent) = d.post("/conexxus/sync", ADMIN_TOKEN, &json!({})).await;
    assert_eq!(answer["business_date"], absent["business_date"]);
    assert_eq!(answer["partial"], false);
}

#[tokio::test]
async fn an_outbox_listing_limit_outside_its_range_is_clamped_as_documented() {
    // schemathesis negative_data_rejection: `GET /admin/outbox?limit=10001` was answered 200
    // (clamped, as the parameter's description says) while its schema said maximum 10000.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    for txn in ["L-1", "L-2"] {
        assert_eq!(d.post("/v1/sales", R1_TOKEN, &sale("R1", txn)).await.0, 201);
    }
    let schema = spec.parameter_schema("GET", "/admin/outbox", "limit");
    for (limit, rows) in [(10_001, 2), (0, 1), (-5, 1), (1, 1), (100, 2)] {
        assert_eq!(spec.conforms(schema, &json!(limit), ""), Ok(()), "{limit}");
        let (status, answer) = d
            .get(&format!("/admin/outbox?limit={limit}"), ADMIN_TOKEN)
            .await;
        spec.check_answer("GET", "/admin/outbox", status, &answer);
        assert_eq!(status, 200);
        assert_eq!(
            answer["rows"].as_array().map(Vec::len),
            Some(rows),
            "{limit}"
        );
    }
    let (status, answer) = d.get("/admin/outbox?limit=many", ADMIN_TOKEN).await;
    assert_eq!((status, error_code(&answer)), (422, "invalid_field"));
}

#[tokio::test]
async fn a_pending_syncs_limit_outside_its_range_is_clamped_as_documented() {
    // schemathesis negative_data_rejection: `GET /conexxus/pending-syncs?limit=1001` was
    // answered 200 (clamped into 1-1000) while the schema said maximum 1000 and no
    // description said what happens outside it.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    for txn in ["P-1", "P-2"] {
        assert_eq!(d.post("/v1/sales", R1_TOKEN, &sale("R1", txn)).await.0, 201);
    }
    let schema = spec.parameter_schema("GET", "/conexxus/pending-syncs", "limit");
    for (limit, documents) in [(1001, 2), (0, 1), (-1, 1), (2, 2)] {
        assert_eq!(spec.conforms(schema, &json!(limit), ""), Ok(()), "{limit}");
        let path = format!("/conexxus/pending-syncs?limit={limit}");
        let (status, answer) = d.get(&path, "").await;
        spec.check_answer("GET", "/conexxus/pending-syncs", status, &answer);
        assert_eq!(status, 200);
        assert_eq!(answer["pending"], 2);
        let listed = answer["documents"].as_array().map(Vec::len);
        assert_eq!(listed, Some(documents), "{limit}");
    }
    let (status, answer) = d.get("/conexxus/pending-syncs?limit=x", "").await;
    assert_eq!((status, error_code(&answer)), (422, "invalid_query"));
    spec.check_answer("GET", "/conexxus/pending-syncs", status, &answer);
}

#[tokio::test]
async fn a_sync_request_whose_body_is_not_json_is_refused_and_queues_nothing() {
    // schemathesis negative_data_rejection: the body "\x0c" (a form feed, not JSON) was
    // answered 202 and queued a sync: any ASCII whitespace counted as an empty body.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    for body in ["\x0c", "\x0b", " ", "\n"] {
        let (status, answer) = d.post_raw("/conexxus/sync", ADMIN_TOKEN, body).await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "malformed_json"),
            "{body:?}"
        );
        spec.check_answer("POST", "/conexxus/sync", status, &answer);
    }
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM eod_syncs"), 0);
    // No body at all still means the defaults.
    let (status, answer) = d.post_raw("/conexxus/sync", ADMIN_TOKEN, "").await;
    assert_eq!(status, 202);
    spec.check_answer("POST", "/conexxus/sync", status, &answer);
}

#[tokio::test]
async fn a_sync_request_over_the_body_limit_is_a_413_like_every_write() {
    // Found reading the handler schemathesis flagged (the form feed above): POST /conexxus/sync
    // read its body with axum's own 2 MB limit, not `max_body_bytes`, so a 100 kB body was
    // parsed (and its date echoed back in a 422), and one over 2 MB got a plain-text 413.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    let body = format!(r#"{{"business_date": "{}"}}"#, "9".repeat(100_000));
    let (status, answer) = d.post_raw("/conexxus/sync", ADMIN_TOKEN, body).await;
    assert_eq!((status, error_code(&answer)), (413, "body_too_large"));
    spec.check_answer("POST", "/conexxus/sync", status, &answer);
    let r = d
        .client
        .post(d.url("/conexxus/sync"))
        .bearer_auth(ADMIN_TOKEN)
        .body(" ".repeat(3_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    // Chunked, without a declared length, the limit holds too.
    let mut raw = format!(
        "POST /conexxus/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
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
    assert_eq!(count(&d.db_path(), "SELECT count(*) FROM eod_syncs"), 0);
}

/// A sale of `n` lines like the example's, adding up, paid in cash.
fn sale_of(n: usize, txn: &str) -> serde_json::Value {
    let mut s = sale("R1", txn);
    let line = s["lines"][0].clone();
    s["lines"] = json!(vec![line; n]);
    s["taxes"] = json!([]);
    let total = 398 * n as i64;
    s["tenders"] = json!([{"method": "cash", "amount": total}]);
    s["total"] = json!(total);
    s
}

#[tokio::test]
async fn the_default_body_limit_holds_a_sale_of_480_lines_but_not_the_1000_the_schema_allows() {
    // schemathesis: a sale of more than 1000 lines (schema-invalid) was answered 413, not 422:
    // the body limit binds long before maxItems. The document now says how many lines fit.
    let d = TestDaemon::start().await;
    let spec = Spec::of(&d).await;
    let schema = spec.request_schema("POST", "/v1/sales");
    let long = sale_of(1000, "LONG-1");
    assert_eq!(spec.conforms(schema, &long, ""), Ok(()));
    let (status, answer) = d.post("/v1/sales", R1_TOKEN, &long).await;
    assert_eq!((status, error_code(&answer)), (413, "body_too_large"));
    spec.check_answer("POST", "/v1/sales", status, &answer);
    let (status, answer) = d.post("/v1/sales", R1_TOKEN, &sale_of(480, "LONG-2")).await;
    assert_eq!(status, 201, "{answer}");
    spec.check_answer("POST", "/v1/sales", status, &answer);
    let described = &spec.doc["components"]["schemas"]["SaleRequest"]["properties"]["lines"];
    let described = described["description"].as_str().unwrap_or_default();
    assert!(described.contains("max_body_bytes"), "{described}");
}

#[tokio::test]
async fn a_failed_backup_is_a_documented_500() {
    // Found auditing the documented error codes after schemathesis's first response-schema
    // failure: POST /admin/backup answers a failed snapshot 500 `backup_failed`, but its 500
    // allowed only `internal`.
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("not-a-directory");
    std::fs::write(&blocked, b"x").unwrap();
    let extra = format!(
        "[backup]\ndirectory = \"{}\"\n",
        blocked.join("sub").display()
    );
    let d = TestDaemon::start_in(dir, &extra).await;
    let spec = Spec::of(&d).await;
    let (status, answer) = d.post("/admin/backup", ADMIN_TOKEN, &json!(null)).await;
    assert_eq!((status, error_code(&answer)), (500, "backup_failed"));
    spec.check_answer("POST", "/admin/backup", status, &answer);
}
