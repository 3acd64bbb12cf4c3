//! The port behind a fake upstream: a real HTTP/1.1 server on 127.0.0.1 that can close its
//! port (connections refused, open ones cut) and open the same port again, as an upstream
//! going down and coming back does.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

pub type Answer = Result<Response<Full<Bytes>>, std::io::Error>;
/// Answers one request; an `Err` drops the connection without an answer.
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

pub struct FakePort {
    pub addr: SocketAddr,
    handler: Handler,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl FakePort {
    /// Binds a fresh port and starts answering with `handler`.
    pub async fn start(handler: Handler) -> FakePort {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = FakePort {
            addr: listener.local_addr().unwrap(),
            handler,
            server: Mutex::new(None),
        };
        port.serve(listener);
        port
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let handler = self.handler.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handler(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// Closes the port: new connections are refused, open ones are cut.
    pub fn refuse(&self) {
        if let Some(h) = self.server.lock().unwrap().take() {
            h.abort();
        }
    }

    /// Opens the same port again.
    pub async fn restore(&self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }
}

impl Drop for FakePort {
    fn drop(&mut self) {
        self.refuse();
    }
}
