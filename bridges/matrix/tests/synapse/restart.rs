//! Restarts: messages that arrive while the session is down are delivered
//! after it comes back, once; messages delivered before are not delivered
//! again; a gap longer than one sync is filled.

use ferry_bridge::{Action, Address, ContactId, Event, OutgoingMessage};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::common::{self, Ferry, Peer};

fn count(f: &Ferry, body: &str) -> usize {
    f.events
        .all()
        .iter()
        .filter(|e| matches!(e, Event::Message(m) if m.body == body))
        .count()
}

async fn setup(config: ferry_matrix::Config) -> (Ferry, Peer, matrix_sdk::Room, ContactId) {
    let alice = Ferry::with_config("alice", config).await;
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
    let contact = ContactId::new(bob.user_id.as_str());
    (alice, bob, room, contact)
}

#[tokio::test]
async fn nothing_lost_nothing_doubled_across_restarts() {
    let (mut alice, _bob, room, contact) = setup(common::config()).await;
    room.send(RoomMessageEventContent::text_plain("before"))
        .await
        .expect("send");
    alice
        .take(
            "before",
            |e| matches!(e, Event::Message(m) if m.body == "before"),
        )
        .await;
    // Ferry sends, and goes down before seeing its own echo.
    alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Contact(contact.clone()),
            "x",
            "from ferry",
        )))
        .await
        .expect("send");
    alice.close().await;

    for i in 0..3 {
        room.send(RoomMessageEventContent::text_plain(format!(
            "while down {i}"
        )))
        .await
        .expect("send");
    }

    alice.connect().await;
    alice.connected().await;
    for i in 0..3 {
        let body = format!("while down {i}");
        alice
            .take(&body, |e| matches!(e, Event::Message(m) if m.body == body))
            .await;
    }
    room.send(RoomMessageEventContent::text_plain("after"))
        .await
        .expect("send");
    alice
        .take(
            "after",
            |e| matches!(e, Event::Message(m) if m.body == "after"),
        )
        .await;
    // A second restart with nothing new delivers nothing again.
    alice.close().await;
    alice.connect().await;
    alice.connected().await;
    room.send(RoomMessageEventContent::text_plain("last"))
        .await
        .expect("send");
    alice
        .take(
            "last",
            |e| matches!(e, Event::Message(m) if m.body == "last"),
        )
        .await;
    for body in [
        "before",
        "while down 0",
        "while down 1",
        "while down 2",
        "after",
        "last",
    ] {
        assert_eq!(count(&alice, body), 1, "{body} delivered exactly once");
    }
    assert_eq!(
        count(&alice, "from ferry"),
        0,
        "ferry's own message is no echo"
    );
    alice.close().await;
}

#[tokio::test]
async fn nothing_lost_after_a_crash() {
    let (mut alice, _bob, room, _contact) = setup(common::config()).await;
    for round in 0..3 {
        let body = format!("live {round}");
        room.send(RoomMessageEventContent::text_plain(body.clone()))
            .await
            .expect("send");
        alice
            .take(&body, |e| matches!(e, Event::Message(m) if m.body == body))
            .await;
        // Killed right after delivering, wherever the sync loop is.
        alice.crash();
        let missed = format!("missed {round}");
        room.send(RoomMessageEventContent::text_plain(missed.clone()))
            .await
            .expect("send");
        alice.connect().await;
        alice
            .take(
                &missed,
                |e| matches!(e, Event::Message(m) if m.body == missed),
            )
            .await;
    }
    // At least once; a crash between the core storing a batch and the
    // position being saved can repeat that batch (the core's message-id
    // map recognises it), never more than once per crash.
    for round in 0..3 {
        assert!(count(&alice, &format!("missed {round}")) >= 1);
        assert!(count(&alice, &format!("live {round}")) <= 2);
    }
    alice.close().await;
}

#[tokio::test]
async fn a_long_gap_is_filled_in_order() {
    let config = ferry_matrix::Config {
        timeline_limit: 3,
        ..common::config()
    };
    let (mut alice, _bob, room, _contact) = setup(config).await;
    room.send(RoomMessageEventContent::text_plain("start"))
        .await
        .expect("send");
    alice
        .take(
            "start",
            |e| matches!(e, Event::Message(m) if m.body == "start"),
        )
        .await;
    alice.close().await;
    for i in 0..12 {
        room.send(RoomMessageEventContent::text_plain(format!("gap {i:02}")))
            .await
            .expect("send");
    }
    alice.connect().await;
    alice
        .take(
            "gap 11",
            |e| matches!(e, Event::Message(m) if m.body == "gap 11"),
        )
        .await;
    let got: Vec<String> = alice
        .events
        .all()
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.body.starts_with("gap ") => Some(m.body.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<String> = (0..12).map(|i| format!("gap {i:02}")).collect();
    assert_eq!(got, want, "every missed message, in order, once");
    assert_eq!(count(&alice, "start"), 1);
    alice.close().await;
}
