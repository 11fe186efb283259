//! Encryption and login life: undecryptable messages become a notice, SAS
//! (emoji) verification with the user's other device from the `verify`
//! command, recovery key import, and a revoked token followed by
//! `re-login` without losing messages.

use std::time::Duration;

use ferry_bridge::{
    Action, Address, CommandCall, CommandReply, ConnectionState, ErrorKind, Event, FieldKind,
    FormValues, MessageKind, Outcome, OutgoingMessage, RoomId,
};
use ferry_matrix::account::StoredSession;
use matrix_sdk::encryption::verification::Verification;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::key::verification::request::ToDeviceKeyVerificationRequestEvent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedUserId, UserId};
use matrix_sdk_base::crypto::CollectStrategy;

use crate::common::{self, Ferry, Peer};

fn command(node: &str, stage: Option<String>, values: FormValues) -> Action {
    Action::Command(CommandCall {
        node: node.into(),
        target: None,
        stage,
        values,
        admin: false,
    })
}

#[tokio::test]
async fn undecryptable_messages_become_a_notice() {
    let alice = Ferry::new("alice").await;
    alice.connected().await;
    let (bob_id, bob_pw) = common::register("bob").await;
    // Bob only shares keys with devices he verified: ferry's is not.
    let bob = Peer::login_with(
        &bob_id,
        &bob_pw,
        "strict",
        Some(CollectStrategy::OnlyTrustedDevices),
    )
    .await;
    let alice_id: OwnedUserId = alice.user_id.as_str().try_into().expect("uid");
    let room = bob.client.create_dm(&alice_id).await.expect("dm");
    bob.wait(room.room_id(), "alice joined", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == alice.user_id.as_str()
            && v["content"]["membership"] == "join"
    })
    .await;
    room.send(RoomMessageEventContent::text_plain("secret"))
        .await
        .expect("send");
    let ev = alice
        .take(
            "the notice",
            |e| matches!(e, Event::Message(m) if m.body.contains("could not be decrypted")),
        )
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.kind, MessageKind::Notice);
    assert!(!m.body.contains("secret"));
    assert!(m.id.is_some());
}

#[tokio::test]
async fn emoji_verification_with_another_device() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let ferry_device = StoredSession::from_account(&alice.account)
        .expect("stored")
        .device_id;
    let element = Peer::login(&alice.user_id, &alice.password, "element").await;
    let element_device = element.client.device_id().expect("device").to_owned();
    // Ferry must know the other device's keys before it can send a request.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The other device answers requests and compares emojis.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    element
        .client
        .add_event_handler(move |ev: ToDeviceKeyVerificationRequestEvent| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((ev.sender, ev.content.transaction_id.to_string()));
            }
        });
    let client = element.client.clone();
    let peer = tokio::spawn(async move {
        let (sender, flow) = rx.recv().await.expect("a request");
        let enc = client.encryption();
        let request = enc
            .get_verification_request(&sender, &flow)
            .await
            .expect("request known");
        request.accept().await.expect("accept");
        let deadline = tokio::time::Instant::now() + common::WAIT;
        loop {
            if let Some(Verification::SasV1(sas)) = enc.get_verification(&sender, &flow).await {
                if !sas.we_started() {
                    let _ = sas.accept().await;
                }
                if sas.can_be_presented() {
                    let emojis: Vec<String> = sas
                        .emoji()
                        .expect("emojis")
                        .iter()
                        .map(|e| format!("{} {}", e.symbol, e.description))
                        .collect();
                    sas.confirm().await.expect("confirm");
                    while !sas.is_done() {
                        assert!(!sas.is_cancelled(), "cancelled: {:?}", sas.cancel_info());
                        assert!(tokio::time::Instant::now() < deadline, "never done");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    return emojis;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no SAS started");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // Ferry starts from the verify command.
    let Outcome::Command(CommandReply::Form { form, stage, .. }) = alice
        .act(command("verify", None, FormValues::new()))
        .await
        .expect("form")
    else {
        panic!("a form")
    };
    let who = form.get("who").expect("who");
    let choice = who
        .options
        .iter()
        .find(|o| o.value == format!("device {element_device}"))
        .unwrap_or_else(|| panic!("element's device offered: {who:?}"))
        .value
        .clone();
    let mut reply = alice
        .act(command(
            "verify",
            Some(stage),
            FormValues::new().with("who", choice),
        ))
        .await
        .expect("started");
    let (stage, shown) = loop {
        match reply {
            Outcome::Command(CommandReply::Form { form, stage, .. })
                if stage.starts_with("confirm") =>
            {
                let emojis = form.get("emojis").expect("emojis");
                assert_eq!(emojis.kind, FieldKind::Fixed);
                break (stage, emojis.values.clone());
            }
            Outcome::Command(CommandReply::Form { stage, .. }) if stage.starts_with("wait") => {
                reply = alice
                    .act(command("verify", Some(stage), FormValues::new()))
                    .await
                    .expect("waiting");
            }
            other => panic!("unexpected step: {other:?}"),
        }
    };
    assert_eq!(shown.len(), 7);
    let done = alice
        .act(command(
            "verify",
            Some(stage),
            FormValues::new().with("match", "yes"),
        ))
        .await
        .expect("confirmed");
    let Outcome::Command(CommandReply::Done { note, .. }) = done else {
        panic!("done: {done:?}")
    };
    assert!(note.unwrap_or_default().starts_with("Verified"));
    let peer_emojis = peer.await.expect("peer side");
    assert_eq!(peer_emojis, shown, "both sides showed the same emojis");
    let alice_id = UserId::parse(&alice.user_id).expect("uid");
    let device = element
        .client
        .encryption()
        .get_device(&alice_id, &ferry_device)
        .await
        .expect("store")
        .expect("ferry's device known");
    assert!(device.is_verified(), "the other device trusts ferry now");
    alice.close().await;
}

#[tokio::test]
async fn recovery_key_import() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let ferry_device = StoredSession::from_account(&alice.account)
        .expect("stored")
        .device_id;
    // The user's main client sets up cross-signing and a recovery key.
    let element = Peer::login(&alice.user_id, &alice.password, "element").await;
    let enc = element.client.encryption();
    if let Err(e) = enc.bootstrap_cross_signing(None).await {
        let response = e.as_uiaa_response().expect("password asked");
        let local = alice
            .user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .expect("local");
        let mut password = uiaa::Password::new(
            uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(local.to_owned())),
            alice.password.clone(),
        );
        password.session = response.session.clone();
        enc.bootstrap_cross_signing(Some(uiaa::AuthData::Password(password)))
            .await
            .expect("cross-signing");
    }
    let key = enc.recovery().enable().await.expect("recovery key");

    // A wrong key is refused clearly.
    let err = alice
        .act(command(
            "recovery-key",
            Some("import".into()),
            FormValues::new().with("key", "EsTc nope"),
        ))
        .await
        .expect_err("bad key");
    assert_eq!(err.kind, ErrorKind::BadRequest, "{err:?}");

    let Outcome::Command(CommandReply::Form { stage, form, .. }) = alice
        .act(command("recovery-key", None, FormValues::new()))
        .await
        .expect("form")
    else {
        panic!("form")
    };
    assert_eq!(
        form.get("key").expect("key field").kind,
        FieldKind::TextPrivate
    );
    let done = alice
        .act(command(
            "recovery-key",
            Some(stage),
            FormValues::new().with("key", key),
        ))
        .await
        .expect("imported");
    assert!(
        matches!(done, Outcome::Command(CommandReply::Done { .. })),
        "{done:?}"
    );
    // The main client sees ferry's device signed by the user's identity.
    let alice_id = UserId::parse(&alice.user_id).expect("uid");
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let _ = enc.request_user_identity(&alice_id).await;
        if let Ok(Some(d)) = enc.get_device(&alice_id, &ferry_device).await
            && d.is_cross_signed_by_owner()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ferry's device never cross-signed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    alice.close().await;
}

#[tokio::test]
async fn revoked_token_then_relogin_loses_nothing() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let room = crate::rooms::create_room(
        &bob,
        "Plain room",
        &[&alice.user_id],
        serde_json::json!({}),
        None,
    )
    .await;
    let rid = RoomId::new(room.room_id().as_str());
    alice
        .take(
            "invite",
            |e| matches!(e, Event::Invited { room, .. } if *room == rid),
        )
        .await;
    alice
        .act(Action::JoinRoom {
            room: rid.clone(),
            nick: "a".into(),
            password: None,
        })
        .await
        .expect("join");
    alice
        .take("joined", |e| matches!(e, Event::RoomJoined { .. }))
        .await;
    room.send(RoomMessageEventContent::text_plain("one"))
        .await
        .expect("send");
    alice
        .take("one", |e| matches!(e, Event::Message(m) if m.body == "one"))
        .await;

    // The device is logged out elsewhere (session list in Element).
    let old = StoredSession::from_account(&alice.account).expect("stored");
    let status = matrix_sdk::reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/logout", common::url()))
        .bearer_auth(&old.access_token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("logout")
        .status();
    assert!(status.is_success());
    alice
        .take("login required", |e| {
            matches!(e, Event::Connection(ConnectionState::LoginRequired(_)))
        })
        .await;
    alice
        .take(
            "the notice",
            |e| matches!(e, Event::Notice(n) if n.contains("re-login")),
        )
        .await;
    room.send(RoomMessageEventContent::text_plain("during"))
        .await
        .expect("send");
    let err = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Room(rid.clone()),
            "z",
            "no",
        )))
        .await
        .expect_err("not logged in");
    assert_eq!(err.kind, ErrorKind::NotAuthorized);

    // re-login: a wrong password is refused, the right one replaces the account.
    let Outcome::Command(CommandReply::Form { stage, form, .. }) = alice
        .act(command("re-login", None, FormValues::new()))
        .await
        .expect("form")
    else {
        panic!("form")
    };
    assert_eq!(
        form.get("password").expect("password").kind,
        FieldKind::TextPrivate
    );
    let err = alice
        .act(command(
            "re-login",
            Some(stage.clone()),
            FormValues::new().with("password", "wrong"),
        ))
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind, ErrorKind::NotAuthorized, "{err:?}");
    let done = alice
        .act(command(
            "re-login",
            Some(stage),
            FormValues::new().with("password", alice.password.clone()),
        ))
        .await
        .expect("logged in");
    assert!(
        matches!(done, Outcome::Command(CommandReply::Done { .. })),
        "{done:?}"
    );
    let ev = alice
        .take("account updated", |e| matches!(e, Event::AccountUpdated(_)))
        .await;
    let Event::AccountUpdated(account) = ev else {
        unreachable!()
    };
    let new = StoredSession::from_account(&account).expect("stored");
    assert_ne!(new.device_id, old.device_id);
    assert_ne!(new.access_token, old.access_token);
    alice.account = account;
    alice.connected().await;
    alice
        .take(
            "during",
            |e| matches!(e, Event::Message(m) if m.body == "during"),
        )
        .await;
    room.send(RoomMessageEventContent::text_plain("after"))
        .await
        .expect("send");
    alice
        .take(
            "after",
            |e| matches!(e, Event::Message(m) if m.body == "after"),
        )
        .await;
    let ones = alice
        .events
        .all()
        .iter()
        .filter(|e| matches!(e, Event::Message(m) if m.body == "one"))
        .count();
    assert_eq!(ones, 1, "nothing doubled after the re-login");
    alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Room(rid),
            "y",
            "back",
        )))
        .await
        .expect("sending works again");
    bob.wait(room.room_id(), "back", |v| common::is_text(v, "back"))
        .await;
    alice.close().await;
}

/// The user's main client (Element) sets up cross-signing and a recovery
/// key; returns the key.
async fn cross_signing_with_recovery(alice: &Ferry) -> (Peer, String) {
    let element = Peer::login(&alice.user_id, &alice.password, "element").await;
    let enc = element.client.encryption();
    if let Err(e) = enc.bootstrap_cross_signing(None).await {
        let response = e.as_uiaa_response().expect("password asked");
        let local = alice
            .user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .expect("local");
        let mut password = uiaa::Password::new(
            uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(local.to_owned())),
            alice.password.clone(),
        );
        password.session = response.session.clone();
        enc.bootstrap_cross_signing(Some(uiaa::AuthData::Password(password)))
            .await
            .expect("cross-signing");
    }
    let key = enc.recovery().enable().await.expect("recovery key");
    (element, key)
}

#[tokio::test]
async fn unverified_devices_get_keys_only_when_the_preference_allows() {
    // The user does not trust unverified devices.
    let mut alice = Ferry::new("alice").await;
    alice.close().await;
    alice
        .connect_with(FormValues::new().with("trust_unverified_devices", "false"))
        .await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let alice_id: OwnedUserId = alice.user_id.as_str().try_into().expect("uid");
    let room = bob.client.create_dm(&alice_id).await.expect("dm");
    bob.wait(room.room_id(), "alice joined", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == alice.user_id.as_str()
            && v["content"]["membership"] == "join"
    })
    .await;
    let contact = ferry_bridge::ContactId::new(bob.user_id.as_str());
    let chat = Address::Contact(contact);

    // Ferry's own device is not cross-signed yet: sending is refused with
    // what to do, nothing goes out unencrypted.
    let err = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            chat.clone(),
            "t0",
            "too early",
        )))
        .await
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::NotAllowed, "{err:?}");
    assert!(err.message.contains("recovery-key"), "{err:?}");

    // Once cross-signed (recovery key), ferry encrypts, but Bob's device
    // (no cross-signing, never verified) gets no key.
    let (_element, key) = cross_signing_with_recovery(&alice).await;
    alice
        .act(command(
            "recovery-key",
            Some("import".into()),
            FormValues::new().with("key", key),
        ))
        .await
        .expect("imported");
    alice
        .act(Action::SendMessage(OutgoingMessage::text(
            chat.clone(),
            "t1",
            "for verified eyes",
        )))
        .await
        .expect("sent");
    bob.wait(room.room_id(), "an undecryptable message", |v| {
        v["type"] == "m.room.encrypted" && v["sender"] == alice.user_id.as_str()
    })
    .await;
    assert!(
        !bob.timeline.all().iter().any(
            |(_, v)| common::is_text(v, "for verified eyes") || common::is_text(v, "too early")
        ),
        "an unverified device must not read it"
    );

    // Turning the preference on (the default) shares keys with him.
    alice
        .act(Action::PreferencesChanged(
            FormValues::new().with("trust_unverified_devices", "true"),
        ))
        .await
        .expect("preferences");
    alice.connected().await;
    alice
        .act(Action::SendMessage(OutgoingMessage::text(
            chat,
            "t2",
            "for everyone",
        )))
        .await
        .expect("sent");
    bob.wait(room.room_id(), "the readable message", |v| {
        common::is_text(v, "for everyone")
    })
    .await;
    alice.close().await;
}
