//! The one outbound HTTP client (hyper + rustls, webpki roots; no OpenSSL), with a deadline
//! on every request and errors sorted into what a retry policy needs to know.
//!
//! Invariant: a request either returns a complete response (status, headers, body) within
//! its timeout, or an [`HttpError`] saying whether anything could have reached the server.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

/// Largest response body we read; upstream answers are small JSON or empty.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A request body read from disk chunk by chunk (backup uploads), never whole in memory.
pub type FileBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Cheap to clone; the pools are shared (behind `Arc`s so the handle stays small inside the
/// enums that hold it).
#[derive(Clone)]
pub struct HttpClient {
    inner: std::sync::Arc<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>>,
    files: std::sync::Arc<Client<hyper_rustls::HttpsConnector<HttpConnector>, FileBody>>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub latency: Duration,
}

/// What went wrong, from the point of view of "did the server possibly act on it".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No connection was made: the request cannot have reached the server.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The deadline passed; the server may or may not have acted.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke after the request was (perhaps) sent.
    #[error("connection failed mid-request: {0}")]
    Io(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl HttpError {
    /// True when the server cannot have seen the request.
    pub fn never_sent(&self) -> bool {
        matches!(self, HttpError::Connect(_) | HttpError::Invalid(_))
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        HttpClient {
            inner: std::sync::Arc::new(Self::client()),
            files: std::sync::Arc::new(Self::client()),
        }
    }

    /// Same TLS (rustls, webpki roots, no OpenSSL) and pool settings for every body type.
    fn client<B>() -> Client<hyper_rustls::HttpsConnector<HttpConnector>, B>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
    {
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(tokio_rustls::rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(connector)
    }

    /// Sends the file at `path` as the body (with its Content-Length), streamed from disk
    /// in 64 KiB chunks, and reads the whole answer, all within `timeout`.
    pub async fn send_file(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        path: &std::path::Path,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| HttpError::Invalid(format!("cannot open {}: {e}", path.display())))?;
        let length = file
            .metadata()
            .await
            .map_err(|e| HttpError::Invalid(format!("cannot stat {}: {e}", path.display())))?
            .len();
        let chunks = futures_util::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        })
        .boxed();
        let body = BodyExt::boxed_unsync(http_body_util::StreamBody::new(chunks));
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header(hyper::header::CONTENT_LENGTH, length);
        for (k, v) in headers {
            builder = builder.header(k, v);
        }
        let request = builder
            .body(body)
            .map_err(|e| HttpError::Invalid(e.to_string()))?;
        let started = Instant::now();
        let exchange = async {
            let response = self.files.request(request).await.map_err(classify)?;
            read_response(response, started).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }

    /// Sends one request and reads the whole answer, all within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(k, v);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| HttpError::Invalid(e.to_string()))?;
        let started = Instant::now();
        let exchange = async {
            let response = self.inner.request(request).await.map_err(classify)?;
            read_response(response, started).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }
}

async fn read_response(
    response: hyper::Response<hyper::body::Incoming>,
    started: Instant,
) -> Result<Response, HttpError> {
    let (parts, body) = response.into_parts();
    if let Some(date) = parts.headers.get(hyper::header::DATE) {
        // An upstream's clock agreeing with ours confirms a step of the wall clock.
        crate::clock::sense().confirm_header(date.as_bytes());
    }
    let limited = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| HttpError::Io(e.to_string()))?
        .to_bytes();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: bytes,
        latency: started.elapsed(),
    })
}

fn classify(e: hyper_util::client::legacy::Error) -> HttpError {
    if e.is_connect() {
        return HttpError::Connect(root_cause(&e));
    }
    HttpError::Io(root_cause(&e))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// The longest wait a `Retry-After` can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Parses `Retry-After` as delay-seconds (the form Stripe and most APIs send): `1*DIGIT`
/// (RFC 9110 §10.2.3), no sign. A delay beyond what `u64` holds is still a long delay, so it
/// is the cap like any other over a day. HTTP dates are ignored: they depend on the wall
/// clock, which we do not trust for timers.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(hyper::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = value.parse().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_ignores_dates_and_garbage() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            hyper::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
        h.insert(
            hyper::header::RETRY_AFTER,
            HeaderValue::from_static("99999999999"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(24 * 3600)));
    }

    #[test]
    fn retry_after_is_digits_only_and_any_huge_delay_is_the_cap() {
        // Found by the fuzz target retry_after: "+30" was read as 30 s (u64's parser takes
        // a sign, delay-seconds has none), and a delay too long for u64 was dropped.
        let read = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static(v));
            retry_after(&h)
        };
        assert_eq!(read("+30"), None);
        assert_eq!(read("3 0"), None);
        assert_eq!(read(" 30\t"), Some(Duration::from_secs(30)));
        assert_eq!(read("000"), Some(Duration::ZERO));
        assert_eq!(read("99999999999999999999999999"), Some(MAX_RETRY_AFTER));
    }
}
