//! Direct chats: 1:1 conversations with a contact, encrypted both ways.

use ferry_bridge::{Action, Address, ContactId, Event, Outcome, OutgoingMessage, Sender};
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
    let Outcome::Sent(Some(id)) = out else {
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
