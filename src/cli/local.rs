//! The CLI's line to a running daemon: HTTP over the local admin socket. No token, no TLS:
//! the socket's file permissions (0600, the daemon's user; root) are the authentication.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::Path;

/// Sends one request. `Ok(None)` when no daemon is listening (stopped, or another box).
pub fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Option<(u16, Value)>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let Ok(stream) = tokio::net::UnixStream::connect(socket).await else {
            return Ok(None);
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .map_err(|e| e.to_string())?;
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(30), sender.send_request(req))
                .await
                .map_err(|_| "the daemon did not answer within 30 s".to_string())?
                .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok(Some((status, value)))
    })
}
