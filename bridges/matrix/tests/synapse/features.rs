//! Message features both ways in an encrypted direct chat: edits,
//! redactions, reactions, replies, threads, formatting, notices, emotes,
//! typing, read receipts, presence, messages from the user's other Matrix
//! client, and history; moderation in a group room.

use ferry_bridge::{
    Action, Address, ChatState, ContactId, Event, MessageId, MessageKind, Outcome, OutgoingMessage,
    Presence, ReplyTo, Rich, Sender, Show, Style,
};
use matrix_sdk::Room;
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::{Annotation, InReplyTo, Reply, Thread};
use matrix_sdk::ruma::events::room::message::{
    Relation, ReplacementMetadata, RoomMessageEventContent,
};
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedUserId};

use crate::common::{self, Ferry, Peer};

/// Alice (ferry) and Bob (peer) in an encrypted direct chat.
async fn pair() -> (Ferry, Peer, Room, ContactId) {
    let alice = Ferry::new("alice").await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let alice_id: OwnedUserId = alice.user_id.as_str().try_into().expect("uid");
    let room = bob.client.create_dm(&alice_id).await.expect("dm");
    let contact = ContactId::new(bob.user_id.as_str());
    alice
        .take(
            "bob in the roster",
            |e| matches!(e, Event::Contact(c) if c.contact == contact),
        )
        .await;
    // Wait until ferry has joined.
    bob.wait(room.room_id(), "alice joined", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == alice.user_id.as_str()
            && v["content"]["membership"] == "join"
    })
    .await;
    (alice, bob, room, contact)
}

async fn send(
    room: &Room,
    content: impl matrix_sdk::ruma::events::MessageLikeEventContent,
) -> OwnedEventId {
    room.send(content).await.expect("send").response.event_id
}

fn message(e: &Event, body: &str) -> bool {
    matches!(e, Event::Message(m) if m.body == body)
}

#[tokio::test]
async fn edits_reactions_redactions_replies_from_matrix() {
    let (mut alice, bob, room, contact) = pair().await;
    let chat = Address::Contact(contact.clone());
    let m1 = send(&room, RoomMessageEventContent::text_plain("original")).await;
    alice.take("original", |e| message(e, "original")).await;

    // Edit.
    let edit = RoomMessageEventContent::text_plain("corrected")
        .make_replacement(ReplacementMetadata::new(m1.clone(), None));
    send(&room, edit).await;
    let ev = alice
        .take(
            "the edit",
            |e| matches!(e, Event::Message(m) if m.body == "corrected"),
        )
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.replaces, Some(MessageId::new(m1.as_str())));
    assert_eq!(m.chat, chat);

    // Reactions: add two, remove one.
    let r1 = send(
        &room,
        ReactionEventContent::new(Annotation::new(m1.clone(), "👍".into())),
    )
    .await;
    alice
        .take(
            "a reaction",
            |e| matches!(e, Event::Reactions { emojis, .. } if emojis == &vec!["👍".to_owned()]),
        )
        .await;
    send(
        &room,
        ReactionEventContent::new(Annotation::new(m1.clone(), "🎉".into())),
    )
    .await;
    let ev = alice
        .take(
            "two reactions",
            |e| matches!(e, Event::Reactions { emojis, .. } if emojis.len() == 2),
        )
        .await;
    let Event::Reactions { from, target, .. } = ev else {
        unreachable!()
    };
    assert_eq!(from, Sender::Contact(contact.clone()));
    assert_eq!(target, MessageId::new(m1.as_str()));
    room.redact(&r1, None, None).await.expect("unreact");
    alice
        .take(
            "one reaction left",
            |e| matches!(e, Event::Reactions { emojis, .. } if emojis == &vec!["🎉".to_owned()]),
        )
        .await;

    // Reply (with the classic fallback in the body, which is removed).
    let mut reply = RoomMessageEventContent::text_html(
        "> <@bob> original\n\nthe answer",
        "<mx-reply><blockquote>original</blockquote></mx-reply>the <b>answer</b>",
    );
    reply.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(m1.clone()))));
    send(&room, reply).await;
    let ev = alice
        .take(
            "the reply",
            |e| matches!(e, Event::Message(m) if m.reply_to.is_some()),
        )
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.body, "the answer");
    let r = m.reply_to.expect("reply");
    assert_eq!(r.id, MessageId::new(m1.as_str()));
    assert_eq!(r.author, Some(Sender::Contact(contact.clone())));
    let rich = m.rich.expect("formatted");
    assert_eq!(rich.to_plain(), "the answer");
    assert!(
        rich.spans
            .iter()
            .any(|s| s.text == "answer" && s.style.bold)
    );

    // Thread.
    let mut in_thread = RoomMessageEventContent::text_plain("in a thread");
    in_thread.relates_to = Some(Relation::Thread(Thread::plain(m1.clone(), m1.clone())));
    send(&room, in_thread).await;
    let ev = alice
        .take("thread message", |e| message(e, "in a thread"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.thread.as_deref(), Some(m1.as_str()));

    // Notice and emote.
    send(&room, RoomMessageEventContent::notice_plain("a notice")).await;
    let ev = alice.take("notice", |e| message(e, "a notice")).await;
    assert!(matches!(ev, Event::Message(m) if m.kind == MessageKind::Notice));
    send(&room, RoomMessageEventContent::emote_plain("waves")).await;
    let ev = alice.take("emote", |e| message(e, "waves")).await;
    assert!(matches!(ev, Event::Message(m) if m.kind == MessageKind::Emote));

    // Redaction by the author.
    room.redact(&m1, Some("oops"), None).await.expect("redact");
    let ev = alice
        .take("the redaction", |e| matches!(e, Event::Retracted { .. }))
        .await;
    let Event::Retracted {
        target,
        moderated,
        by,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(target, MessageId::new(m1.as_str()));
    assert_eq!(moderated, None, "the author's own redaction");
    assert_eq!(by, Sender::Contact(contact));

    // Typing and read receipts.
    room.typing_notice(true).await.expect("typing");
    alice
        .take("typing", |e| {
            matches!(
                e,
                Event::ChatState {
                    state: ChatState::Composing,
                    ..
                }
            )
        })
        .await;
    room.typing_notice(false).await.expect("typing");
    alice
        .take("stopped typing", |e| {
            matches!(
                e,
                Event::ChatState {
                    state: ChatState::Paused,
                    ..
                }
            )
        })
        .await;
    let Some(mine) = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            chat.clone(),
            "r1",
            "read me",
        )))
        .await
        .expect("send")
        .sent_id()
    else {
        panic!("no id")
    };
    bob.wait(room.room_id(), "read me", |v| common::is_text(v, "read me"))
        .await;
    let mine_id = EventId::parse(mine.as_str()).expect("event id");
    room.send_single_receipt(
        matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType::Read,
        matrix_sdk::ruma::events::receipt::ReceiptThread::Unthreaded,
        mine_id,
    )
    .await
    .expect("receipt");
    alice
        .take("bob read it", |e| {
            matches!(e, Event::Displayed { up_to, by: Sender::Contact(_), .. } if *up_to == mine)
        })
        .await;
    alice.close().await;
}

#[tokio::test]
async fn features_from_xmpp_reach_matrix() {
    let (mut alice, bob, room, contact) = pair().await;
    let chat = Address::Contact(contact.clone());
    let rid = room.room_id().to_owned();
    let b1 = send(&room, RoomMessageEventContent::text_plain("question")).await;
    alice.take("question", |e| message(e, "question")).await;
    let target = MessageId::new(b1.as_str());

    // A formatted reply.
    let mut rich = Rich::default();
    rich.push("the ", &Style::default());
    rich.push(
        "answer",
        &Style {
            bold: true,
            ..Style::default()
        },
    );
    let mut msg = OutgoingMessage::text(chat.clone(), "a1", "the answer");
    msg.rich = Some(rich);
    msg.reply_to = Some(ReplyTo {
        id: target.clone(),
        author: None,
        quote: None,
    });
    let Some(a1) = alice
        .act(Action::SendMessage(msg))
        .await
        .expect("send")
        .sent_id()
    else {
        panic!("id")
    };
    let v = bob
        .wait(&rid, "the reply", |v| common::is_text(v, "the answer"))
        .await;
    assert_eq!(
        v["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        b1.as_str()
    );
    assert_eq!(v["content"]["format"], "org.matrix.custom.html");
    assert_eq!(
        v["content"]["formatted_body"],
        "the <strong>answer</strong>"
    );

    // Edit.
    alice
        .act(Action::Edit {
            message: OutgoingMessage::text(chat.clone(), "a2", "the real answer"),
            replaces: a1.clone(),
        })
        .await
        .expect("edit");
    let v = bob
        .wait(&rid, "the edit", |v| {
            v["content"]["m.relates_to"]["rel_type"] == "m.replace"
        })
        .await;
    assert_eq!(v["content"]["m.relates_to"]["event_id"], a1.as_str());
    assert_eq!(v["content"]["m.new_content"]["body"], "the real answer");

    // Reactions: the full set each time; removal redacts.
    alice
        .act(Action::React {
            chat: chat.clone(),
            target: target.clone(),
            emojis: vec!["👍".into(), "❤️".into()],
        })
        .await
        .expect("react");
    let thumbs = bob
        .wait(&rid, "thumbs up", |v| {
            v["type"] == "m.reaction" && v["content"]["m.relates_to"]["key"] == "👍"
        })
        .await;
    bob.wait(&rid, "heart", |v| {
        v["type"] == "m.reaction" && v["content"]["m.relates_to"]["key"] == "❤️"
    })
    .await;
    alice
        .act(Action::React {
            chat: chat.clone(),
            target: target.clone(),
            emojis: vec!["❤️".into()],
        })
        .await
        .expect("unreact");
    bob.wait(&rid, "thumbs up taken back", |v| {
        v["type"] == "m.room.redaction"
            && (v["redacts"] == thumbs["event_id"] || v["content"]["redacts"] == thumbs["event_id"])
    })
    .await;

    // Thread continuation, notice, emote.
    let mut t = OutgoingMessage::text(chat.clone(), "t1", "thread reply");
    t.thread = Some(b1.to_string());
    alice.act(Action::SendMessage(t)).await.expect("thread");
    let v = bob
        .wait(&rid, "thread reply", |v| common::is_text(v, "thread reply"))
        .await;
    assert_eq!(v["content"]["m.relates_to"]["rel_type"], "m.thread");
    assert_eq!(v["content"]["m.relates_to"]["event_id"], b1.as_str());
    // A thread id an XMPP client made up does not start a Matrix thread.
    let mut t = OutgoingMessage::text(chat.clone(), "t2", "not a thread");
    t.thread = Some("random-xmpp-thread".into());
    alice.act(Action::SendMessage(t)).await.expect("send");
    let v = bob
        .wait(&rid, "plain", |v| common::is_text(v, "not a thread"))
        .await;
    assert!(v["content"]["m.relates_to"].is_null(), "{v}");
    let mut n = OutgoingMessage::text(chat.clone(), "n1", "bot says");
    n.kind = MessageKind::Notice;
    alice.act(Action::SendMessage(n)).await.expect("notice");
    bob.wait(&rid, "notice", |v| {
        common::is_text(v, "bot says") && v["content"]["msgtype"] == "m.notice"
    })
    .await;
    let mut em = OutgoingMessage::text(chat.clone(), "e1", "dances");
    em.kind = MessageKind::Emote;
    alice.act(Action::SendMessage(em)).await.expect("emote");
    bob.wait(&rid, "emote", |v| {
        common::is_text(v, "dances") && v["content"]["msgtype"] == "m.emote"
    })
    .await;

    // Retraction of the user's own message.
    alice
        .act(Action::Retract {
            chat: chat.clone(),
            target: a1.clone(),
            moderate: None,
        })
        .await
        .expect("retract");
    bob.wait(&rid, "redaction", |v| {
        v["type"] == "m.room.redaction"
            && (v["redacts"] == a1.as_str() || v["content"]["redacts"] == a1.as_str())
    })
    .await;

    // Typing and read receipt.
    alice
        .act(Action::ChatState {
            chat: chat.clone(),
            state: ChatState::Composing,
        })
        .await
        .expect("typing");
    bob.wait(&rid, "typing", |v| {
        v["type"] == "m.typing"
            && v["content"]["user_ids"]
                .as_array()
                .is_some_and(|a| a.iter().any(|u| u == alice.user_id.as_str()))
    })
    .await;
    alice
        .act(Action::Displayed {
            chat: chat.clone(),
            up_to: target.clone(),
        })
        .await
        .expect("displayed");
    bob.wait(&rid, "receipt", |v| {
        v["type"] == "m.receipt"
            && v["content"][b1.as_str()]["m.read"][alice.user_id.as_str()].is_object()
    })
    .await;

    // Presence.
    alice
        .act(Action::SetPresence(Presence {
            show: Show::Away,
            status: Some("lunch".into()),
            last_active: None,
        }))
        .await
        .expect("presence");
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let p = bob
            .client
            .send(
                matrix_sdk::ruma::api::client::presence::get_presence::v3::Request::new(
                    alice.user_id.as_str().try_into().expect("uid"),
                ),
            )
            .await
            .expect("presence");
        if p.presence == matrix_sdk::ruma::presence::PresenceState::Unavailable
            && p.status_msg.as_deref() == Some("lunch")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence never arrived: {p:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    alice.close().await;
}

#[tokio::test]
async fn own_messages_from_another_client_and_history() {
    let (mut alice, bob, room, contact) = pair().await;
    let chat = Address::Contact(contact.clone());
    // Alice's Element: a second device of the same account.
    let element = Peer::login(&alice.user_id, &alice_password(&alice), "element").await;
    let eroom = element
        .room_in_state(room.room_id(), matrix_sdk::RoomState::Joined)
        .await;
    send(
        &eroom,
        RoomMessageEventContent::text_plain("sent from element"),
    )
    .await;
    let ev = alice
        .take("own message", |e| message(e, "sent from element"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.from, Sender::Own);
    assert_eq!(m.chat, chat);

    // History, newest first, archive-only.
    for i in 0..5 {
        send(
            &room,
            RoomMessageEventContent::text_plain(format!("old {i}")),
        )
        .await;
    }
    alice.take("old 4", |e| message(e, "old 4")).await;
    let Outcome::History(h) = alice
        .act(Action::FetchHistory {
            chat: chat.clone(),
            before: None,
            limit: 3,
        })
        .await
        .expect("history")
    else {
        panic!("history")
    };
    let bodies: Vec<&str> = h.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, vec!["old 4", "old 3", "old 2"]);
    assert!(h.iter().all(|m| m.archive_only && m.timestamp.is_some()));
    let before = h.last().and_then(|m| m.id.clone());
    let Outcome::History(h) = alice
        .act(Action::FetchHistory {
            chat,
            before,
            limit: 2,
        })
        .await
        .expect("history")
    else {
        panic!("history")
    };
    let bodies: Vec<&str> = h.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, vec!["old 1", "old 0"]);
    drop(bob);
    alice.close().await;
}

fn alice_password(f: &Ferry) -> String {
    f.password.clone()
}

#[tokio::test]
async fn moderation_in_a_group_room() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let levels = serde_json::json!({ "users": { alice.user_id.as_str(): 100 } });
    let room = crate::rooms::create_room(&bob, "Moderated", &[&alice.user_id], levels, None).await;
    let rid = ferry_bridge::RoomId::new(room.room_id().as_str());
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
    let spam = send(&room, RoomMessageEventContent::text_plain("spam")).await;
    let ev = alice.take("spam", |e| message(e, "spam")).await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert!(matches!(m.from, Sender::Occupant(_)));
    assert_eq!(m.chat, Address::Room(rid.clone()));
    // Moderation of Bob's message from XMPP.
    alice
        .act(Action::Retract {
            chat: Address::Room(rid.clone()),
            target: MessageId::new(spam.as_str()),
            moderate: Some(Some("no spam".into())),
        })
        .await
        .expect("moderate");
    let v = bob
        .wait(room.room_id(), "moderation", |v| {
            v["type"] == "m.room.redaction"
        })
        .await;
    assert_eq!(v["content"]["reason"], "no spam");
    // Bob moderates Alice's message: reported as moderation.
    let Some(mine) = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Room(rid.clone()),
            "m1",
            "hmm",
        )))
        .await
        .expect("send")
        .sent_id()
    else {
        panic!("id")
    };
    bob.wait(room.room_id(), "hmm", |v| common::is_text(v, "hmm"))
        .await;
    room.redact(
        &EventId::parse(mine.as_str()).expect("id"),
        Some("off topic"),
        None,
    )
    .await
    .expect("redact");
    let ev = alice
        .take(
            "moderated",
            |e| matches!(e, Event::Retracted { target, .. } if *target == mine),
        )
        .await;
    let Event::Retracted { moderated, by, .. } = ev else {
        unreachable!()
    };
    assert_eq!(moderated, Some(Some("off topic".into())));
    assert!(matches!(by, Sender::Occupant(_)));
    alice.close().await;
}
