//! The Twilio backend against the Twilio MOCK (contrib/peers/kit/twilio_mock.py;
//! Twilio itself cannot run here): account checks, texts and MMS out, signed
//! status callbacks, signed incoming SMS/MMS webhooks, refusals.

mod common;

use common::{env, listener, next, number};
use ferry_sms::backend::twilio::{self, CheckError, Twilio};
use ferry_sms::backend::{Backend, DeliveryState, Outgoing, OwnAccount, SubmitError, new_id};
use ferry_sms::config::TwilioConfig;

/// (sid, token, numbers) of the mock's accounts.
fn accounts() -> Vec<(String, String, Vec<String>)> {
    env("TWILIO_MOCK_ACCOUNTS")
        .split_whitespace()
        .map(|a| {
            let mut it = a.split(':').map(str::to_owned);
            let sid = it.next().expect("sid");
            let token = it.next().expect("token");
            (sid, token, it.collect())
        })
        .collect()
}

fn config() -> TwilioConfig {
    let (sid, token, _) = accounts().remove(0);
    TwilioConfig {
        api_url: env("TWILIO_MOCK_URL"),
        account_sid: sid,
        auth_token: token,
        timeout_secs: 10,
    }
}

fn text(from: &str, to: &str, body: &str) -> Outgoing {
    Outgoing {
        id: new_id(),
        from: from.into(),
        to: to.into(),
        text: body.into(),
        media: Vec::new(),
        reference: 0,
        accepted: Vec::new(),
    }
}

async fn mock(path: &str, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", env("TWILIO_MOCK_URL")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("mock");
    serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON")
}

#[tokio::test]
async fn twilio_against_the_mock() {
    let (port, mut hits) = listener(0).await;
    let public = format!("http://127.0.0.1:{port}/bridge/sms");
    let cfg = config();
    let t = Twilio::new(cfg.clone(), public.clone(), 10).expect("backend");
    let (op_sid, op_token, op_numbers) = accounts().remove(0);
    let (user_sid, user_token, user_numbers) = accounts().remove(1);

    // --- bring-your-own checks
    let own = OwnAccount {
        account_sid: user_sid.clone(),
        auth_token: user_token.clone(),
        number: user_numbers[0].clone(),
    };
    t.check_account(&own)
        .await
        .expect("the user's account and number");
    let wrong = OwnAccount {
        auth_token: "nope".into(),
        ..own.clone()
    };
    assert!(matches!(
        t.check_account(&wrong).await,
        Err(CheckError::Refused(_))
    ));
    let not_theirs = OwnAccount {
        number: op_numbers[0].clone(),
        ..own.clone()
    };
    assert!(
        matches!(t.check_account(&not_theirs).await, Err(CheckError::Refused(m)) if m.contains("not a number"))
    );

    // --- out, and the signed status callbacks
    let to = number("001");
    let msg = text(&op_numbers[0], &to, "hello Twilio");
    let a = t.submit(&msg, None).await.expect("accepted");
    assert_eq!(a.backend_ids.len(), 1);
    let mut final_state = None;
    while final_state.is_none() {
        let hit = next(&mut hits, "a status callback").await;
        assert_eq!(hit.path, "/bridge/sms/twilio/status");
        let params = twilio::form(&hit.body);
        let url = format!("http://127.0.0.1:{port}{}?{}", hit.path, hit.query);
        let sig = hit.header("x-twilio-signature").expect("signed");
        assert!(
            twilio::verify(&op_token, &url, &params, sig),
            "valid signature"
        );
        let id = hit.query.strip_prefix("id=").expect("our id");
        assert_eq!(id, msg.id);
        final_state = twilio::parse_status(id, &params).expect("readable");
    }
    assert_eq!(final_state.map(|r| r.state), Some(DeliveryState::Delivered));

    // --- MMS out with the user's own account; undelivered
    let to = number("666");
    let mut mms = text(&user_numbers[0], &to, "");
    mms.media = vec![format!("{}/mock/media/cat.png", env("TWILIO_MOCK_URL"))];
    t.submit(&mms, Some(&own)).await.expect("MMS accepted");
    let sent: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!("{}/mock/messages", env("TWILIO_MOCK_URL")))
            .await
            .expect("messages")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("JSON");
    let last = sent
        .as_array()
        .and_then(|a| a.iter().rev().find(|m| m["to"] == to.as_str()))
        .expect("recorded");
    assert_eq!(last["account_sid"], user_sid.as_str());
    assert_eq!(last["media"][0], mms.media[0].as_str());
    let failed = loop {
        let hit = next(&mut hits, "the failure callback").await;
        let params = twilio::form(&hit.body);
        let url = format!("http://127.0.0.1:{port}{}?{}", hit.path, hit.query);
        assert!(twilio::verify(
            &user_token,
            &url,
            &params,
            hit.header("x-twilio-signature").unwrap_or_default()
        ));
        if let Some(r) = twilio::parse_status(&mms.id, &params).expect("readable") {
            break r;
        }
    };
    assert!(
        matches!(failed.state, DeliveryState::Failed { ref reason, .. } if reason.contains("30003"))
    );

    // --- refusals: a number that is not one; busy
    match t.submit(&text(&op_numbers[0], "555-1234", "x"), None).await {
        Err(SubmitError::Refused(m)) => assert!(m.contains("not a valid phone number"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    mock("/mock/fail", serde_json::json!({"count": 1, "status": 429})).await;
    assert!(matches!(
        t.submit(&text(&op_numbers[0], &number("002"), "x"), None)
            .await,
        Err(SubmitError::NotSent { .. })
    ));

    // --- in: a signed MMS webhook, and a forged one
    let phone = number("003");
    let r = mock(
        "/mock/incoming",
        serde_json::json!({"account": op_sid, "from": phone, "to": op_numbers[1], "body": "look",
            "media": [{"url": format!("{}/mock/media/dog.png", env("TWILIO_MOCK_URL")), "type": "image/png"}],
            "url": format!("{public}/twilio/sms")}),
    )
    .await;
    assert_eq!(r["status"], 200);
    let hit = next(&mut hits, "the incoming webhook").await;
    let params = twilio::form(&hit.body);
    let url = format!("http://127.0.0.1:{port}{}", hit.path);
    assert!(twilio::verify(
        &op_token,
        &url,
        &params,
        hit.header("x-twilio-signature").unwrap_or_default()
    ));
    let t_in = twilio::parse_incoming(&params).expect("readable");
    assert_eq!(
        (t_in.from.local_part(), t_in.text.as_str(), t_in.media.len()),
        (phone.clone(), "look", 1)
    );
    mock(
        "/mock/incoming",
        serde_json::json!({"account": op_sid, "from": phone, "to": op_numbers[1], "body": "forged",
            "url": format!("{public}/twilio/sms"), "signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
    )
    .await;
    let hit = next(&mut hits, "the forged webhook").await;
    let params = twilio::form(&hit.body);
    assert!(!twilio::verify(
        &op_token,
        &url,
        &params,
        hit.header("x-twilio-signature").unwrap_or_default()
    ));
}
