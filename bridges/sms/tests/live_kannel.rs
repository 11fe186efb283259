//! The Kannel backend against the real Kannel (bearerbox + smsbox + the
//! fake SMSC of kannel-extras): texts out, delivery reports back with
//! Ferry's id, texts from phones in, long texts in GSM-7 and UCS-2, Kannel
//! down. One test: Kannel calls one fixed webhook port ($SMS_WEBHOOK_PORT).

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{env, eventually, listener, next, number, port};
use ferry_sms::backend::kannel::{self, Kannel};
use ferry_sms::backend::{Backend, DeliveryState, Outgoing, SubmitError, new_id};
use ferry_sms::config::KannelConfig;
use ferry_sms::segment::Coding;

fn config() -> KannelConfig {
    KannelConfig {
        sendsms_url: env("KANNEL_SENDSMS_URL"),
        username: env("KANNEL_USER"),
        password: env("KANNEL_PASSWORD"),
        smsc: None,
        timeout_secs: 10,
    }
}

fn text(to: &str, body: &str) -> Outgoing {
    Outgoing {
        id: new_id(),
        from: "+15550009000".into(),
        to: to.into(),
        text: body.into(),
        media: Vec::new(),
        reference: 1,
        accepted: Vec::new(),
    }
}

/// The MT lines fakesmsc printed so far ("Got message N: <from to type text>").
fn fakesmsc_lines() -> Vec<String> {
    std::fs::read_to_string(env("KANNEL_FAKESMSC_LOG"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Got message"))
        .map(str::to_owned)
        .collect()
}

/// A text from a phone, through the fake SMSC's second port.
fn inject(line: &str) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port("KANNEL_SMSC2_PORT")))
        .expect("fake-mo SMSC");
    s.write_all(format!("{line}\n").as_bytes()).expect("write");
    // fake SMSC reads line by line; give it the line before closing
    std::thread::sleep(Duration::from_millis(100));
}

#[tokio::test]
async fn kannel_end_to_end() {
    let secret = env("SMS_WEBHOOK_SECRET");
    let (web, mut hits) = listener(port("SMS_WEBHOOK_PORT")).await;
    let public = format!("http://127.0.0.1:{web}/bridge/sms");
    let k = Kannel::new(config(), public, secret.clone(), 10).expect("backend");

    // --- out, and the report back with our id
    let to = number("001");
    let t = text(&to, "hello from ferry");
    let accepted = k.submit(&t, None).await.expect("accepted");
    assert_eq!((accepted.parts, accepted.coding), (1, Coding::Gsm7));
    eventually("fakesmsc got the text", || {
        fakesmsc_lines()
            .into_iter()
            .find(|l| l.contains(&to) && l.contains("hello from ferry"))
    })
    .await;
    let delivered = loop {
        let hit = next(&mut hits, "a delivery report").await;
        assert_eq!(hit.path, "/bridge/sms/kannel/dlr");
        assert!(
            kannel::authentic(&hit.query, &secret),
            "the report carries the secret"
        );
        let r = kannel::parse_dlr(&hit.query).expect("readable report");
        assert_eq!(
            r.id.as_deref(),
            Some(t.id.as_str()),
            "Ferry's own id comes back"
        );
        if r.state == DeliveryState::Delivered {
            break r;
        }
        assert_eq!(r.state, DeliveryState::EnRoute);
    };
    assert_eq!(delivered.state, DeliveryState::Delivered);

    // --- 400 characters, GSM-7 and UCS-2 (Kannel splits them with UDH)
    let before = fakesmsc_lines().len();
    let long_gsm: String = "0123456789".repeat(40);
    let to_gsm = number("002");
    let a = k
        .submit(&text(&to_gsm, &long_gsm), None)
        .await
        .expect("long GSM");
    assert_eq!((a.parts, a.coding), (3, Coding::Gsm7));
    let to_ucs = number("003");
    let long_ucs: String = "Привет 😀 ".repeat(40);
    let a = k
        .submit(&text(&to_ucs, &long_ucs), None)
        .await
        .expect("long UCS-2");
    assert_eq!(a.coding, Coding::Ucs2);
    let lines = eventually("every part at fakesmsc", || {
        let l: Vec<String> = fakesmsc_lines().split_off(before);
        let gsm = l.iter().filter(|x| x.contains(&to_gsm)).count();
        let ucs = l.iter().filter(|x| x.contains(&to_ucs)).count();
        (gsm == 3 && ucs == a.parts).then_some(l)
    })
    .await;
    // Kannel cut them where we counted, each part with a concatenation header.
    assert!(
        lines
            .iter()
            .filter(|l| l.contains(&to_gsm) || l.contains(&to_ucs))
            .all(|l| l.contains(" udh %05%00%03")),
        "{lines:?}"
    );
    assert_eq!(a.parts, 6);

    // --- in: a text from a phone, plain and with an emoji
    let phone = number("004");
    inject(&format!("{phone} +15550009000 text Hi+from+the+phone"));
    let hit = loop {
        let hit = next(&mut hits, "the text from the phone").await;
        if hit.path == "/bridge/sms/kannel/mo" {
            break hit;
        }
    };
    assert!(kannel::authentic(&hit.query, &secret));
    let mo = kannel::parse_mo(&hit.query).expect("readable");
    assert_eq!(mo.from.local_part(), phone);
    assert_eq!(mo.to.local_part(), "+15550009000");
    assert_eq!(mo.text, "Hi+from+the+phone");
    // UCS-2: "hé 😀" as URL-encoded UTF-16BE
    inject(&format!(
        "{phone} +15550009000 ucs2 %00h%00%E9%00%20%D8%3D%DE%00"
    ));
    let hit = loop {
        let hit = next(&mut hits, "the emoji text").await;
        if hit.path == "/bridge/sms/kannel/mo" {
            break hit;
        }
    };
    assert_eq!(
        kannel::parse_mo(&hit.query).expect("readable").text,
        "hé 😀"
    );
    // A forged callback (no secret) is told apart.
    assert!(!kannel::authentic("from=1&to=2&text=x", &secret));

    // --- Kannel unreachable: not sent, safe to retry
    let mut down = config();
    down.sendsms_url = "http://127.0.0.1:9/cgi-bin/sendsms".into();
    let k2 = Kannel::new(down, "http://127.0.0.1:1".into(), secret.clone(), 10).expect("backend");
    match k2.submit(&text(&number("005"), "x"), None).await {
        Err(SubmitError::NotSent { .. }) => {}
        other => panic!("expected NotSent, got {other:?}"),
    }
    // --- refused: wrong password (Kannel answers 403)
    let mut wrong = config();
    wrong.password = "wrong".into();
    let k3 = Kannel::new(wrong, "http://127.0.0.1:1".into(), secret, 10).expect("backend");
    match k3.submit(&text(&number("006"), "x"), None).await {
        Err(SubmitError::Refused(_)) => {}
        other => panic!("expected Refused, got {other:?}"),
    }
}
