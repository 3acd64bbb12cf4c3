//! Health, status, metrics and the OpenAPI document.

use super::auth::{Caller, HealthAccess};
use super::error::ApiError;
use super::AppState;
use crate::outbox;
use crate::store::StoreError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::time::Duration;

/// 200 when the writer answers a round-trip within a second (`degraded` while the disk
/// refuses writes or runs on its reserve: the daemon is up and serves reads), 503 otherwise.
pub async fn healthz(State(state): State<AppState>, _: HealthAccess) -> Response {
    if state.writer.ping(Duration::from_secs(1)).await {
        let storage = state.space.report();
        let body = json!({"status": storage.status, "storage": storage});
        (StatusCode::OK, Json(body)).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writer_unavailable",
            "the database writer is not accepting work",
        )
        .into_response()
    }
}

/// The register banner.
pub async fn status(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pending = state
        .reads
        .read(|conn| outbox::pending_count(conn).map_err(StoreError::from))
        .await?;
    let cfg = &state.config;
    let offline = &cfg.resolved.offline;
    let net = state.probe.snapshot();
    let (remaining_today, _) = state.payments.remaining().await?;
    Ok(Json(json!({
        "mode": net.mode,
        "since": net.since,
        "offline_payments": {
            "enabled": cfg.offline_payments.enabled,
            "remaining_today": remaining_today,
            "approval_required_over": offline.approval_required_over,
        },
        "outbox": {"pending": pending},
        "alerts": state.alerts.active(),
        "storage": state.space.report(),
    })))
}

pub async fn metrics(State(state): State<AppState>, _: HealthAccess) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};

    /// The operation keys of an OpenAPI path item.
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is valid JSON")
    }

    /// `(path, method)` of every operation in the document.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let paths = doc["paths"].as_object().expect("the document has paths");
        let mut ops = BTreeSet::new();
        for (path, item) in paths {
            let item = item.as_object().expect("a path item is an object");
            for key in item.keys() {
                if METHODS.contains(&key.as_str()) {
                    ops.insert((path.clone(), key.clone()));
                } else {
                    assert!(
                        ["summary", "description", "servers", "parameters"].contains(&key.as_str()),
                        "path {path} has an unexpected key {key:?}"
                    );
                }
            }
        }
        ops
    }

    /// The text of a call's arguments: `s` starts just after the `(`; up to the matching `)`.
    /// Skips string literals and line comments.
    fn call_arguments(s: &str) -> &str {
        let bytes = s.as_bytes();
        let (mut depth, mut i) = (1usize, 0usize);
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return &s[..i];
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced call in router(): {s:?}")
    }

    /// The functions called at the top level of `s` (`get(a).post(b)` → `get`, `post`), by
    /// their last path segment.
    fn top_level_calls(s: &str) -> Vec<String> {
        let (mut calls, mut ident, mut depth) = (Vec::new(), String::new(), 0usize);
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    let mut escaped = false;
                    for c in chars.by_ref() {
                        if c == '"' && !escaped {
                            break;
                        }
                        escaped = c == '\\' && !escaped;
                    }
                }
                '(' => {
                    if depth == 0 && !ident.is_empty() {
                        calls.push(std::mem::take(&mut ident));
                    }
                    depth += 1;
                }
                '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                c if c.is_alphanumeric() || c == '_' => {
                    ident.push(c);
                    continue;
                }
                _ => {}
            }
            ident.clear();
        }
        calls
    }

    /// `(path, method)` of every route of `router()`, read from its source in mod.rs, so a
    /// route added there without documenting it fails the test below.
    fn routed() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let start = src.find("pub fn router(").expect("mod.rs defines router()");
        let end = start + src[start..].find("\n}\n").expect("router() ends");
        let body = &src[start..end];
        for unread in [".nest(", ".nest_service(", ".merge(", ".route_service("] {
            assert!(
                !body.contains(unread),
                "router() uses `{unread}`: teach this test to read it"
            );
        }
        let mut routes = BTreeSet::new();
        for (at, call) in body.match_indices(".route(") {
            let args = call_arguments(&body[at + call.len()..]);
            let (path, methods) = args.split_once(',').expect("route(path, method_router)");
            let path = path
                .trim()
                .strip_prefix('"')
                .and_then(|p| p.strip_suffix('"'))
                .unwrap_or_else(|| panic!("route path {path:?} is not a string literal"));
            let calls = top_level_calls(methods);
            assert!(
                !calls.is_empty(),
                "no method router for {path} in {methods:?}"
            );
            for method in calls {
                assert!(
                    METHODS.contains(&method.as_str()),
                    "route {path} uses `{method}(`: teach this test to read it"
                );
                routes.insert((path.to_string(), method));
            }
        }
        routes
    }

    /// Follows a local `$ref` (`#/components/...`).
    fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
        match node["$ref"].as_str() {
            Some(r) => {
                let target = r
                    .strip_prefix('#')
                    .and_then(|p| doc.pointer(p))
                    .unwrap_or_else(|| panic!("$ref {r} points nowhere"));
                resolve(doc, target)
            }
            None => node,
        }
    }

    fn every_ref<'a>(node: &'a Value, out: &mut Vec<&'a str>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| every_ref(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| every_ref(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_openapi_document_is_valid_json_and_documents_every_route() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["info"]["version"], "0.1.0");

        let routed = routed();
        let documented = documented(&doc);
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "the router serves operations openapi.json does not document: {undocumented:?}"
        );
        let unserved: Vec<_> = documented.difference(&routed).collect();
        assert!(
            unserved.is_empty(),
            "openapi.json documents operations the router does not serve: {unserved:?}"
        );
        let routed_paths: BTreeSet<&str> = routed.iter().map(|(p, _)| p.as_str()).collect();
        let documented_paths: BTreeSet<&str> = doc["paths"]
            .as_object()
            .expect("the document has paths")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            documented_paths, routed_paths,
            "openapi.json documents a path the router does not serve"
        );

        let mut refs = Vec::new();
        every_ref(&doc, &mut refs);
        for r in refs {
            resolve(&doc, &serde_json::json!({ "$ref": r }));
        }

        let tags: BTreeSet<&str> = doc["tags"]
            .as_array()
            .expect("the document has tags")
            .iter()
            .map(|t| t["name"].as_str().expect("a tag has a name"))
            .collect();
        let mut operation_ids = BTreeMap::new();
        for (path, method) in &documented {
            let op = &doc["paths"][path][method];
            let what = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{what} has no operationId"));
            if let Some(other) = operation_ids.insert(id, what.clone()) {
                panic!("{what} and {other} share the operationId {id}");
            }
            assert!(op["summary"].is_string(), "{what} has no summary");
            let op_tags = op["tags"].as_array().filter(|t| !t.is_empty());
            for tag in op_tags.unwrap_or_else(|| panic!("{what} has no tags")) {
                let tag = tag.as_str().expect("a tag is a string");
                assert!(tags.contains(tag), "{what} has the undeclared tag {tag}");
            }
            let responses = op["responses"]
                .as_object()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| panic!("{what} has no responses"));
            for status in responses.keys() {
                assert!(
                    status == "default" || (status.len() == 3 && status.parse::<u16>().is_ok()),
                    "{what} has the response key {status:?}"
                );
            }
            if path.starts_with("/admin/") {
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{what} is for admins but does not document {status}"
                    );
                }
            }
            // Every `{name}` in the path is a required path parameter, and only those.
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{what}: a path parameter is required");
                    p["name"].as_str().expect("a parameter has a name")
                })
                .collect();
            assert_eq!(templated, declared, "{what}: path parameters");
        }

        // Links (what stateful API testers follow) name a documented operation and only its
        // parameters, from the answer they hang on.
        for (path, method) in &documented {
            let responses = doc["paths"][path][method]["responses"].as_object();
            for (status, response) in responses.into_iter().flatten() {
                let links = response["links"].as_object();
                for (name, link) in links.into_iter().flatten() {
                    let what = format!("{} {path} {status} link {name}", method.to_uppercase());
                    let target_id = link["operationId"].as_str();
                    let target = target_id
                        .and_then(|id| operation_ids.get(id))
                        .unwrap_or_else(|| panic!("{what} names no documented operationId"));
                    let (target_method, target_path) =
                        target.split_once(' ').expect("labels are `METHOD path`");
                    let target_op = &doc["paths"][target_path][target_method.to_lowercase()];
                    let names: BTreeSet<&str> = target_op["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| resolve(&doc, p)["name"].as_str().unwrap_or_default())
                        .collect();
                    for (param, expression) in link["parameters"].as_object().into_iter().flatten()
                    {
                        assert!(
                            names.contains(param.as_str()),
                            "{what}: no parameter {param}"
                        );
                        let expression = expression.as_str().unwrap_or_default();
                        assert!(
                            expression.starts_with("$response.body#/"),
                            "{what}: {param} = {expression:?}"
                        );
                    }
                    if !link["requestBody"].is_null() {
                        assert!(
                            target_op["requestBody"].is_object(),
                            "{what}: a body for an operation that takes none"
                        );
                    }
                }
            }
        }
    }

    /// Every documented operation reaches a handler of the real router (not the 404/405
    /// fallbacks), and every other method on a documented path is 405.
    #[tokio::test]
    async fn every_openapi_operation_is_served_and_no_other_method_is() {
        use axum::body::Body;
        use axum::http::{Method, Request, StatusCode};
        use tower::ServiceExt;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let toml = format!(
            "[database]\npath = {:?}\n",
            dir.path().join("posedge.db").display().to_string()
        );
        let config = crate::config::Config::parse_str(&toml, "test.toml")
            .expect("test config parses")
            .validated()
            .expect("test config is valid");
        let daemon = tokio::task::spawn_blocking(move || crate::daemon::Daemon::open(config))
            .await
            .expect("open does not panic")
            .expect("the daemon opens");
        let app = super::super::router(daemon.state.clone());

        async fn call(app: &axum::Router, method: Method, uri: &str) -> (StatusCode, Value) {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .expect("a request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("a body");
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }

        let (status, body) = call(&app, Method::GET, "/no/such/path").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let fallback_404 = body;

        let doc = document();
        let documented = documented(&doc);
        let paths: BTreeSet<&String> = documented.iter().map(|(p, _)| p).collect();
        for path in paths {
            let uri = path.replace("{id}", "1");
            assert!(
                !uri.contains('{'),
                "give {path}'s parameter a value in this test"
            );
            for method in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ] {
                let what = format!("{method} {path}");
                let (status, body) = call(&app, method.clone(), &uri).await;
                let key = (path.clone(), method.as_str().to_lowercase());
                if documented.contains(&key) {
                    assert_ne!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{what} is documented"
                    );
                    assert!(
                        !(status == StatusCode::NOT_FOUND && body == fallback_404),
                        "{what} is documented but answered by the 404 fallback"
                    );
                } else {
                    assert_eq!(
                        (status, body["error"]["code"].as_str()),
                        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
                        "{what} is not documented, so it must be 405"
                    );
                }
            }
        }
        daemon.state.writer.stop().await;
    }
}
