//! What the live tests share: the peers' settings (peers.env through the
//! environment, as tests/run.sh sets it), a webhook listener standing in for
//! Ferry's HTTP, and a sink that stores every inbound at once.

#![allow(dead_code)]

use std::time::Duration;

use axum::extract::Request;
use axum::routing::any;
use ferry_sms::backend::{Inbound, InboundSink};
use tokio::sync::mpsc;

/// A peers.env variable; a clear failure when the peers are not running.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the sms peers (contrib/peers/start-peers.sh, PEERS=sms) and source their peers.env")
    })
}

pub fn port(name: &str) -> u16 {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a port"))
}

/// One HTTP request the listener got.
#[derive(Debug)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Listens on 127.0.0.1:`port` (0: any), answers 200 to everything and
/// hands each request over. Returns the port.
pub async fn listener(port: u16) -> (u16, mpsc::UnboundedReceiver<Hit>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(any(move |req: Request| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default()
                .to_vec();
            let _ = tx.send(Hit {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            v.to_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
                body,
            });
            "<Response/>"
        }
    }));
    let sock = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("cannot listen on port {port}: {e}"));
    let port = sock.local_addr().expect("address").port();
    tokio::spawn(async move { axum::serve(sock, app).await });
    (port, rx)
}

/// A sink that commits everything at once and passes it on.
pub fn sink() -> (InboundSink, mpsc::UnboundedReceiver<Inbound>) {
    let (sink, mut rx) = InboundSink::channel(64);
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((inbound, commit)) = rx.recv().await {
            let _ = tx.send(inbound);
            let _ = commit.send(Ok(()));
        }
    });
    (sink, out)
}

/// The next item, or a failure naming what was awaited.
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("channel closed waiting for {what}"))
}

/// Polls `f` until it gives Some (15 s).
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh number of the fictional 555 range, unique enough per run.
pub fn number(suffix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() % 10_000)
        .unwrap_or(0);
    format!("+1555{n:04}{suffix}")
}
