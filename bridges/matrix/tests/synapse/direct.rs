//! Direct chats: 1:1 conversations with a contact, encrypted both ways.

use ferry_bridge::{Action, Address, ContactId, Event, OutgoingMessage, Sender};
use matrix_sdk::RoomState;

use crate::common::{self, Ferry, Peer};

#[tokio::test]
async fn encrypted_direct_chat_both_ways() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let alice_id: matrix_sdk::ruma::OwnedUserId = alice.user_id.as_str().try_into().expect("uid");

    // Bob starts an encrypted direct chat; ferry accepts it by itself.
    let room = bob.client.create_dm(&alice_id).await.expect("create dm");
    assert!(
        room.latest_encryption_state()
            .await
            .expect("state")
            .is_encrypted()
    );
    let contact = ContactId::new(bob.user_id.as_str());
    alice
        .take(
            "bob in the roster",
            |e| matches!(e, Event::Contact(c) if c.contact == contact && c.in_roster),
        )
        .await;
    room.send(
        matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain("hello alice"),
    )
    .await
    .expect("send");
    let ev = alice
        .take(
            "bob's message",
            |e| matches!(e, Event::Message(m) if m.body == "hello alice"),
        )
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.chat, Address::Contact(contact.clone()));
    assert_eq!(m.from, Sender::Contact(contact.clone()));
    assert!(m.id.is_some());

    // Ferry answers; Bob's client decrypts it.
    let out = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Contact(contact.clone()),
            "x1",
            "hi bob",
        )))
        .await
        .expect("sent");
    let Some(id) = out.clone().sent_id() else {
        panic!("no event id: {out:?}")
    };
    let got = bob
        .wait(room.room_id(), "ferry's answer", |v| {
            common::is_text(v, "hi bob")
        })
        .await;
    assert_eq!(got["event_id"], id.as_str());
    // Ferry's own message does not come back as an event.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !alice
            .events
            .all()
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.body == "hi bob")),
        "echo suppressed"
    );
    alice.close().await;
}

#[tokio::test]
async fn writing_to_a_contact_without_a_chat_creates_one() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let carol = Peer::new("carol").await;
    let contact = ContactId::new(carol.user_id.as_str());
    alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Contact(contact.clone()),
            "first",
            "are you there?",
        )))
        .await
        .expect("sent");
    // Carol is invited to a direct chat and reads the (encrypted) message.
    let invited = loop {
        if let Some(r) = carol.client.invited_rooms().into_iter().next() {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let room = carol.accept(invited.room_id()).await;
    assert_eq!(room.state(), RoomState::Joined);
    // Joining a direct invitation marks the room as direct (m.direct),
    // which the client sees after its next sync.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while !room.is_direct().await.expect("dm flag") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked as a direct chat"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    carol
        .wait(room.room_id(), "the first message", |v| {
            common::is_text(v, "are you there?")
        })
        .await;
    // A second message goes to the same room.
    alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Contact(contact),
            "second",
            "hello again",
        )))
        .await
        .expect("sent");
    carol
        .wait(room.room_id(), "the second message", |v| {
            common::is_text(v, "hello again")
        })
        .await;
    alice.close().await;
}

/// A small PNG-looking avatar.
fn avatar_bytes() -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    v.extend((0..600u32).map(|i| (i % 253) as u8));
    v
}

#[tokio::test]
async fn roster_entries_carry_names_avatars_and_presence() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let avatar = avatar_bytes();
    bob.client
        .account()
        .set_display_name(Some("Bob Builder"))
        .await
        .expect("display name");
    bob.client
        .account()
        .upload_avatar(&"image/png".parse().expect("mime"), avatar.clone())
        .await
        .expect("avatar");
    let alice_id: matrix_sdk::ruma::OwnedUserId = alice.user_id.as_str().try_into().expect("uid");
    let room = bob.client.create_dm(&alice_id).await.expect("create dm");
    let contact = ContactId::new(bob.user_id.as_str());

    // The roster entry has Bob's display name and his avatar (vCard /
    // XEP-0084 through the core).
    let ev = alice
        .take(
            "bob in the roster",
            |e| matches!(e, Event::Contact(c) if c.contact == contact && c.in_roster),
        )
        .await;
    let Event::Contact(info) = ev else {
        unreachable!()
    };
    assert_eq!(info.name.as_deref(), Some("Bob Builder"));
    let got = info.avatar.expect("an avatar");
    assert_eq!(got.mime, "image/png");
    assert_eq!(got.data, avatar);
    bob.wait(room.room_id(), "alice joined", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == alice.user_id.as_str()
            && v["content"]["membership"] == "join"
    })
    .await;

    // A later rename reaches the roster too.
    bob.client
        .account()
        .set_display_name(Some("Robert"))
        .await
        .expect("rename");
    alice
        .take("the new name", |e| {
            matches!(e, Event::Contact(c) if c.contact == contact
                && c.name.as_deref() == Some("Robert") && c.avatar.is_some())
        })
        .await;

    // Bob's presence and status message reach the contact's presence.
    let mut request = matrix_sdk::ruma::api::client::presence::set_presence::v3::Request::new(
        bob.user_id.clone(),
        matrix_sdk::ruma::presence::PresenceState::Unavailable,
    );
    request.status_msg = Some("out for lunch".into());
    bob.client.send(request).await.expect("presence");
    alice
        .take("bob's status", |e| {
            matches!(e, Event::ContactPresence { contact: c, presence }
                if *c == contact && presence.status.as_deref() == Some("out for lunch")
                    && presence.show == ferry_bridge::Show::Away)
        })
        .await;
    alice.close().await;
}

/// Whether any SQLite database under `dir` has a write-ahead log: SQLite
/// removes it when the database's last connection closes.
fn stores_open(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            stores_open(&path)
        } else {
            path.to_string_lossy().ends_with(".sqlite3-wal")
        }
    })
}

/// Waits until the idle session closed its stores and dropped its
/// matrix-sdk client (nothing holds one any more).
async fn wait_until_idle_without_client(dir: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while stores_open(dir) || ferry_matrix::stores::has_client(dir) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle session never closed its stores and dropped its client \
             (stores open: {}, client: {})",
            stores_open(dir),
            ferry_matrix::stores::has_client(dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_idle_session_drops_its_client_and_builds_it_again_for_what_comes() {
    let config = ferry_matrix::Config {
        store_idle_secs: 1,
        ..common::config()
    };
    let mut alice = Ferry::with_config("alice", config).await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let alice_id: matrix_sdk::ruma::OwnedUserId = alice.user_id.as_str().try_into().expect("uid");
    let room = bob.client.create_dm(&alice_id).await.expect("create dm");
    let contact = ContactId::new(bob.user_id.as_str());
    alice
        .take(
            "bob in the roster",
            |e| matches!(e, Event::Contact(c) if c.contact == contact && c.in_roster),
        )
        .await;

    // Idle: the stores close and the client goes; an encrypted message from
    // Matrix (its room key comes as a to-device message meanwhile) wakes
    // the session, which builds the client again from its stores to
    // decrypt and deliver it.
    wait_until_idle_without_client(alice.dir.path()).await;
    room.send(
        matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain(
            "while you were idle",
        ),
    )
    .await
    .expect("send");
    room.send(
        matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain(
            "and a second one",
        ),
    )
    .await
    .expect("send");
    alice
        .take(
            "bob's message",
            |e| matches!(e, Event::Message(m) if m.body == "while you were idle"),
        )
        .await;
    alice
        .take(
            "bob's second message, after the first",
            |e| matches!(e, Event::Message(m) if m.body == "and a second one"),
        )
        .await;

    // Idle again: an action builds the client to encrypt and send.
    wait_until_idle_without_client(alice.dir.path()).await;
    alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Contact(contact.clone()),
            "x2",
            "back from idle",
        )))
        .await
        .expect("sent");
    bob.wait(room.room_id(), "ferry's answer", |v| {
        common::is_text(v, "back from idle")
    })
    .await;
    // Across two drops and rebuilds nothing came twice.
    for body in ["while you were idle", "and a second one"] {
        assert_eq!(
            alice
                .events
                .count(|e| matches!(e, Event::Message(m) if m.body == body)),
            1,
            "{body:?} delivered once"
        );
    }
    alice.close().await;
}
