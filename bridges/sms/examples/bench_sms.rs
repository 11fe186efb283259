//! The SMS bridge's benchmark, run on demand against the sms peers
//! (contrib/peers/start-peers.sh with PEERS=sms, then `source peers.env`):
//!
//! ```sh
//! cargo run --release -p ferry-sms --example bench_sms [TEXTS]
//! ```
//!
//! Prints: outgoing throughput over SMPP against the test SMSC (the backend
//! alone, then through the persisted queue), and the latency of texts from
//! phones from the SMSC to the bridge via SMPP (deliver_sm sent → stored)
//! and via Kannel (line written to the fake SMSC → webhook received).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_sms::backend::smpp::Smpp;
use ferry_sms::backend::{Backend, Inbound, InboundSink, Outgoing, new_id};
use ferry_sms::config::SmppConfig;
use ferry_sms::outbox::{Fate, Outbox};
use futures::StreamExt as _;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: source the sms peers' peers.env"))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn text(i: usize) -> Outgoing {
    Outgoing {
        id: new_id(),
        from: "+15550007000".into(),
        to: format!("+1555{:07}", 2_000_001 + i % 1_000_000),
        text: format!("benchmark text number {i}"),
        media: Vec::new(),
        reference: 0,
        accepted: Vec::new(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{what}: n={} median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let window = 64;
    let config = SmppConfig {
        port: env("SMPP_PORT").parse().expect("port"),
        system_id: env("SMPP_SYSTEM_ID"),
        password: env("SMPP_PASSWORD"),
        window,
        ..SmppConfig::default()
    };
    let smpp = Arc::new(Smpp::new(config, 10));
    let (sink, mut rx) = InboundSink::channel(4096);
    // Texts and receipts are "stored" at once; texts' arrival times are kept.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<(f64, String)>();
    tokio::spawn(async move {
        while let Some((inbound, commit)) = rx.recv().await {
            if let Inbound::Text(t) = inbound {
                let _ = arrived_tx.send((now(), t.text));
            }
            let _ = commit.send(Ok(()));
        }
    });
    tokio::spawn(smpp.clone().run(sink));
    assert!(
        smpp.wait_bound(Duration::from_secs(10)).await,
        "bound to the SMSC"
    );

    // --- throughput: the backend alone, `window` submit_sm in flight
    let t0 = Instant::now();
    let ok = futures::stream::iter(0..n)
        .map(|i| {
            let smpp = smpp.clone();
            async move { smpp.submit(&text(i), None).await.is_ok() }
        })
        .buffer_unordered(window)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "SMPP submit_sm (window {window}): {ok}/{n} accepted in {secs:.2} s = {:.0} texts/s",
        ok as f64 / secs
    );

    // --- throughput through the persisted queue (in-memory store)
    let kv: Arc<dyn ferry_bridge::KeyValue> = Arc::new(ferry_bridge::MemoryKeyValue::new());
    let outbox = Arc::new(Outbox::new(
        kv,
        smpp.clone(),
        Arc::new(|_| None),
        Duration::from_secs(1),
        window,
    ));
    let (tx, mut updates) = tokio::sync::mpsc::channel(n.max(1));
    let t0 = Instant::now();
    for i in 0..n {
        let t = text(n + i);
        outbox
            .enqueue("bench@localhost", &t.to.clone(), t)
            .expect("queued");
    }
    tokio::spawn(outbox.clone().run(tx));
    let mut sent = 0;
    while sent < n {
        match tokio::time::timeout(Duration::from_secs(30), updates.recv()).await {
            Ok(Some(u)) if u.fate == Fate::Submitted => sent += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "through the queue: {sent}/{n} sent in {secs:.2} s = {:.0} texts/s",
        sent as f64 / secs
    );

    // --- incoming latency via SMPP: the SMSC's deliver_sm → stored
    let http = reqwest::Client::new();
    let run = new_id();
    let control = format!("http://127.0.0.1:{}/mo", env("SMPP_CONTROL_PORT"));
    let mut ms = Vec::new();
    for i in 0..100 {
        let body = format!(
            "{{\"from\":\"+15550007001\",\"to\":\"+15550007000\",\"text\":\"latency {run} {i}\"}}"
        );
        let r = http
            .post(&control)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("control");
        let v: serde_json::Value =
            serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
        let sent_at = v["t"].as_f64().expect("t");
        loop {
            let (at, text) = arrived.recv().await.expect("arrival");
            if text == format!("latency {run} {i}") {
                ms.push((at - sent_at) * 1000.0);
                break;
            }
        }
    }
    summary("incoming via SMPP (SMSC deliver_sm -> stored)", ms);

    // --- incoming latency via Kannel: fake SMSC line -> webhook
    let (hits_tx, mut hits) = tokio::sync::mpsc::unbounded_channel::<(f64, String)>();
    let app = axum::Router::new().fallback(axum::routing::any(move |uri: axum::http::Uri| {
        let tx = hits_tx.clone();
        async move {
            let _ = tx.send((now(), uri.query().unwrap_or_default().to_owned()));
            ""
        }
    }));
    let sock = tokio::net::TcpListener::bind((
        "127.0.0.1",
        env("SMS_WEBHOOK_PORT").parse::<u16>().expect("port"),
    ))
    .await
    .expect("listen on SMS_WEBHOOK_PORT");
    tokio::spawn(async move { axum::serve(sock, app).await });
    let mut ms = Vec::new();
    let run = new_id();
    let mo_port: u16 = env("KANNEL_SMSC2_PORT").parse().expect("port");
    for i in 0..50 {
        let t0 = now();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", mo_port)).expect("fake SMSC");
        s.write_all(format!("+15550007001 +15550007000 text k{run}n{i}\n").as_bytes())
            .expect("write");
        loop {
            let (at, q) = tokio::time::timeout(Duration::from_secs(10), hits.recv())
                .await
                .expect("webhook in time")
                .expect("hit");
            if q.contains(&format!("text=k{run}n{i}&")) {
                ms.push((at - t0) * 1000.0);
                break;
            }
        }
        drop(s);
    }
    summary("incoming via Kannel (fake SMSC line -> webhook)", ms);
}
