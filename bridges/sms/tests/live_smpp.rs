//! The SMPP backend against an SMSC we did not write (PyPI smpp34's server,
//! contrib/peers/kit/smsc.py): bind, submit_sm with concatenation in GSM-7
//! and UCS-2, delivery receipts (delivered and failed), texts from phones in
//! one part and in several, refusals, throttling, and the bind coming back
//! after the SMSC restarts, with texts queued meanwhile sent exactly once. One test: the SMSC gives texts from phones to the
//! ESME that bound last.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{env, next, number, port, sink};
use ferry_sms::backend::smpp::Smpp;
use ferry_sms::backend::{Backend, DeliveryState, Inbound, Outgoing, SubmitError, new_id};
use ferry_sms::config::SmppConfig;
use ferry_sms::outbox::{Fate, Outbox};
use ferry_sms::segment::Coding;

fn config() -> SmppConfig {
    SmppConfig {
        port: port("SMPP_PORT"),
        system_id: env("SMPP_SYSTEM_ID"),
        password: env("SMPP_PASSWORD"),
        enquire_link_secs: 5,
        response_timeout_secs: 5,
        reconnect_secs: 1,
        ..SmppConfig::default()
    }
}

fn text(to: &str, body: &str) -> Outgoing {
    Outgoing {
        id: new_id(),
        from: "+15550009100".into(),
        to: to.into(),
        text: body.into(),
        media: Vec::new(),
        reference: 42,
        accepted: Vec::new(),
    }
}

/// What the SMSC recorded for one destination: (data_coding, esm_class, bytes).
fn submitted(to: &str) -> Vec<(u64, u64, Vec<u8>)> {
    let dest = to.trim_start_matches('+');
    std::fs::read_to_string(env("SMSC_LOG"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["dest"] == dest)
        .map(|v| {
            let hex = v["short_message"].as_str().unwrap_or_default();
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect();
            (
                v["data_coding"].as_u64().unwrap_or(99),
                v["esm_class"].as_u64().unwrap_or(99),
                bytes,
            )
        })
        .collect()
}

/// The SMSC records a submit_sm just after answering it: wait for `n`.
async fn submitted_n(to: &str, n: usize) -> Vec<(u64, u64, Vec<u8>)> {
    common::eventually(
        &format!("{n} submissions to {to} in the SMSC's log"),
        || {
            let s = submitted(to);
            (s.len() >= n).then_some(s)
        },
    )
    .await
}

async fn control(path: &str, body: serde_json::Value) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}{path}", port("SMPP_CONTROL_PORT"));
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("SMSC control");
    let bytes = r.bytes().await.expect("answer");
    serde_json::from_slice(&bytes).expect("JSON")
}

async fn report(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Inbound>,
    what: &str,
) -> ferry_sms::backend::Report {
    loop {
        if let Inbound::Report(r) = next(rx, what).await {
            return r;
        }
    }
}

async fn incoming(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Inbound>,
    what: &str,
) -> ferry_sms::backend::IncomingText {
    loop {
        if let Inbound::Text(t) = next(rx, what).await {
            return t;
        }
    }
}

#[tokio::test]
async fn smpp_end_to_end() {
    let smpp = Arc::new(Smpp::new(config(), 10));
    let (sink, mut rx) = sink();
    let task = tokio::spawn(smpp.clone().run(sink));
    assert!(
        smpp.wait_bound(Duration::from_secs(10)).await,
        "bound to the SMSC"
    );

    // --- one part, delivered
    let to = number("001");
    let a = smpp
        .submit(&text(&to, "hello over SMPP"), None)
        .await
        .expect("accepted");
    assert_eq!(
        (a.parts, a.coding, a.backend_ids.len()),
        (1, Coding::Gsm7, 1)
    );
    let sent = submitted_n(&to, 1).await;
    assert_eq!(sent, vec![(0, 0, b"hello over SMPP".to_vec())]);
    let r = report(&mut rx, "the receipt").await;
    assert_eq!(r.backend_id.as_deref(), Some(a.backend_ids[0].as_str()));
    assert_eq!(r.state, DeliveryState::Delivered);

    // --- 400 characters in GSM-7: three parts with one reference
    let to = number("002");
    let long: String = "0123456789".repeat(40);
    let a = smpp
        .submit(&text(&to, &long), None)
        .await
        .expect("accepted");
    assert_eq!(
        (a.parts, a.coding, a.backend_ids.len()),
        (3, Coding::Gsm7, 3)
    );
    let parts = submitted_n(&to, 3).await;
    assert_eq!(parts.len(), 3);
    for (i, (dc, esm, bytes)) in parts.iter().enumerate() {
        assert_eq!((*dc, *esm & 0x40), (0, 0x40), "GSM with UDHI");
        assert_eq!(bytes[..6], [5, 0, 3, 42, 3, i as u8 + 1]);
    }
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.2[6..].to_vec()).collect();
    assert_eq!(joined, long.as_bytes());
    for _ in 0..3 {
        assert_eq!(
            report(&mut rx, "a part's receipt").await.state,
            DeliveryState::Delivered
        );
    }

    // --- 400 characters in UCS-2 with emoji: UTF-16BE, surrogates kept whole
    let to = number("003");
    let long: String = "Grüße 😀 ".repeat(50);
    let a = smpp
        .submit(&text(&to, &long), None)
        .await
        .expect("accepted");
    assert_eq!(a.coding, Coding::Ucs2);
    let parts = submitted_n(&to, a.parts).await;
    assert_eq!(parts.len(), a.parts);
    let units: Vec<u8> = parts.iter().flat_map(|p| p.2[6..].to_vec()).collect();
    let utf16: Vec<u16> = units
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(
        String::from_utf16(&utf16).expect("valid UTF-16 across parts"),
        long
    );
    assert!(parts.iter().all(|p| p.0 == 8));
    for _ in 0..a.parts {
        report(&mut rx, "a UCS-2 part's receipt").await;
    }

    // --- failure receipt
    let to = number("666");
    smpp.submit(&text(&to, "to a dead phone"), None)
        .await
        .expect("accepted");
    let r = report(&mut rx, "the failure receipt").await;
    assert!(
        matches!(
            r.state,
            DeliveryState::Failed {
                permanent: true,
                ..
            }
        ),
        "{r:?}"
    );

    // --- refused by the SMSC, and busy
    match smpp.submit(&text("+15551230000", "x"), None).await {
        Err(SubmitError::Refused(_)) => {}
        other => panic!("expected Refused, got {other:?}"),
    }
    control("/throttle", serde_json::json!({"count": 1})).await;
    match smpp.submit(&text(&number("004"), "x"), None).await {
        Err(SubmitError::NotSent { accepted, .. }) => assert!(accepted.is_empty()),
        other => panic!("expected NotSent, got {other:?}"),
    }

    // --- texts from phones: one part, and three parts (UCS-2) put together
    let phone = number("005");
    let r = control(
        "/mo",
        serde_json::json!({"from": phone, "to": "+15550009100", "text": "hi from a phone"}),
    )
    .await;
    assert_eq!(r["sent"], 1, "{r}");
    let t = incoming(&mut rx, "the text from the phone").await;
    assert_eq!(
        (t.from.local_part(), t.to.local_part(), t.text.as_str()),
        (phone.clone(), "+15550009100".into(), "hi from a phone")
    );
    let long = "Ünïcödé 😀 text ".repeat(10);
    let r = control(
        "/mo",
        serde_json::json!({"from": phone, "to": "+15550009100", "text": long, "split": 67}),
    )
    .await;
    assert!(r["sent"].as_u64().unwrap_or(0) > 1, "{r}");
    assert_eq!(incoming(&mut rx, "the long text").await.text, long);

    // --- the SMSC goes away and comes back: submissions wait, the bind returns
    let peers = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/peers/restart-peer.sh");
    let st = std::process::Command::new(&peers)
        .args([&env("PEERS_DIR"), "smsc", "stop"])
        .status()
        .expect("restart-peer");
    assert!(st.success());
    tokio::time::timeout(Duration::from_secs(10), async {
        while smpp.is_bound() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the bind is seen lost");
    match smpp.submit(&text(&number("006"), "while down"), None).await {
        Err(SubmitError::NotSent { .. }) => {}
        other => panic!("expected NotSent while the SMSC is down, got {other:?}"),
    }
    // Texts queued while the SMSC is down wait in the persisted queue …
    let kv: Arc<dyn ferry_bridge::KeyValue> = Arc::new(ferry_bridge::MemoryKeyValue::new());
    let outbox = Arc::new(Outbox::new(
        kv,
        smpp.clone(),
        Arc::new(|_| None),
        Duration::from_millis(200),
        4,
    ));
    let (updates_tx, mut updates) = tokio::sync::mpsc::channel(16);
    let worker = tokio::spawn(outbox.clone().run(updates_tx));
    let queued: Vec<Outgoing> = (0..3)
        .map(|i| text(&number(&format!("01{i}")), &format!("queued {i}")))
        .collect();
    for t in &queued {
        outbox
            .enqueue("alice@localhost", &t.to, t.clone())
            .expect("queued");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(outbox.queued().expect("list").len(), 3, "still waiting");
    let st = std::process::Command::new(&peers)
        .args([&env("PEERS_DIR"), "smsc", "start"])
        .status()
        .expect("restart-peer");
    assert!(st.success());
    assert!(
        smpp.wait_bound(Duration::from_secs(15)).await,
        "bound again"
    );
    // … and go out once each when it is back; their receipts find them.
    for _ in 0..3 {
        let u = tokio::time::timeout(Duration::from_secs(15), updates.recv())
            .await
            .expect("sent in time")
            .expect("update");
        assert_eq!(u.fate, Fate::Submitted);
    }
    let mut delivered = 0;
    while delivered < 3 {
        let r = report(&mut rx, "receipts of the queued texts").await;
        if let Some(u) = outbox.report(&r).expect("store") {
            assert_eq!(u.fate, Fate::Delivered);
            delivered += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for t in &queued {
        assert_eq!(
            submitted_n(&t.to, 1).await.len(),
            1,
            "{} submitted exactly once",
            t.to
        );
    }
    worker.abort();
    let to = number("007");
    smpp.submit(&text(&to, "after the restart"), None)
        .await
        .expect("accepted after the restart");
    assert_eq!(submitted_n(&to, 1).await.len(), 1);
    task.abort();
}
