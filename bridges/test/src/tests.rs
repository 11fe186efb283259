//! Behaviour of the test network, driven through its sessions the way the
//! core drives them: actions in, events out of the sink.

use std::sync::Arc;

use ferry_bridge::{
    Action, Address, Affiliation, AttachmentSource, BridgeError, ChatState, CommandCall,
    CommandReply, ConnectionState, ContactId, ErrorKind, Event, FormValues, LoginError, MessageId,
    MessageKind, Network, Outcome, OutgoingMessage, Presence, ReplyTo, Role, RoomExit, RoomId,
    Sender, ServiceId, Show, WebhookRequest,
};

use crate::Config;
use crate::echo::{BAD_XML_BODY, HUGE_BYTES};
use crate::testkit::{Client, MemoryStore, connect, connect_with, network, try_connect};

fn contact(name: &str) -> Address {
    Address::Contact(ContactId::new(name))
}

fn room(name: &str) -> RoomId {
    RoomId::new(name)
}

fn echo() -> Address {
    contact("echo")
}

fn kind(e: &BridgeError) -> ErrorKind {
    e.kind
}

fn msg_body(e: &Event) -> Option<&str> {
    match e {
        Event::Message(m) => Some(m.body.as_str()),
        _ => None,
    }
}

fn is_message(e: &Event, body: &str) -> bool {
    msg_body(e) == Some(body)
}

async fn connected(net: &crate::TestNetwork, account: &str) -> Client {
    let mut c = connect(net, account).await;
    c.drain().await;
    c
}

async fn join(c: &mut Client, r: &str, nick: &str) -> Event {
    c.act(Action::JoinRoom {
        room: room(r),
        nick: nick.into(),
        password: None,
    })
    .await
    .expect("join accepted");
    c.wait_for("RoomJoined or RoomJoinFailed", |e| {
        matches!(e, Event::RoomJoined { .. } | Event::RoomJoinFailed { .. })
    })
    .await
}

fn webhook(method: &str, path: &str, query: &str, body: &[u8]) -> WebhookRequest {
    WebhookRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: Vec::new(),
        body: body.to_vec(),
    }
}

fn call(node: &str, target: Option<Address>, stage: Option<&str>, values: FormValues) -> Action {
    Action::Command(CommandCall {
        node: node.into(),
        target,
        stage: stage.map(str::to_owned),
        values,
        admin: false,
    })
}

// ------------------------------------------------------------------ connect

#[tokio::test]
async fn connecting_reports_state_contacts_presence_service_and_lounge() {
    let net = network(Config::default());
    let mut alice = connect(&net, "alice").await;
    let events = alice.drain().await;
    assert_eq!(events[0], Event::Connection(ConnectionState::Connecting));
    assert_eq!(
        events[1],
        Event::Connection(ConnectionState::Connected(Some(
            "Logged in as alice".into()
        )))
    );
    let contacts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Contact(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let names: Vec<_> = contacts.iter().map(|c| c.contact.as_str()).collect();
    assert_eq!(names, ["echo", "admin", "bob", "carol"]);
    assert!(contacts.iter().all(|c| c.in_roster));
    assert!(
        contacts[0]
            .avatar
            .as_ref()
            .is_some_and(|a| a.mime == "image/png")
    );
    assert_eq!(contacts[0].name.as_deref(), Some("Echo bot"));
    assert_eq!(contacts[2].name.as_deref(), Some("Bob"));
    assert!(events.contains(&Event::ContactPresence {
        contact: ContactId::new("echo"),
        presence: Presence::available().with_status("I repeat everything"),
    }));
    assert!(events.contains(&Event::ContactPresence {
        contact: ContactId::new("bob"),
        presence: Presence::offline(),
    }));
    assert!(events.iter().any(
        |e| matches!(e, Event::ServicePresence { service, .. } if service.as_str() == "server")
    ));
    assert!(events.contains(&Event::RoomAvailable {
        room: room("#lounge"),
        name: Some("Lounge".into()),
        autojoin: false,
    }));
}

#[tokio::test]
async fn stale_credentials_are_expired_and_missing_ones_refused() {
    let net = network(Config::default());
    let err = try_connect(&net, "alice", "old", Arc::default(), FormValues::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LoginError::Expired(_)), "{err:?}");
    let err = try_connect(&net, "mallory", "x", Arc::default(), FormValues::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, LoginError::Expired(_)), "{err:?}");
}

#[tokio::test]
async fn contacts_see_each_other_come_and_go_and_change_presence() {
    let net = network(Config::default());
    let mut bob = connected(&net, "bob").await;
    let mut alice = connected(&net, "alice").await;
    assert_eq!(
        bob.next().await,
        Event::ContactPresence {
            contact: ContactId::new("alice"),
            presence: Presence::available(),
        }
    );
    let away = Presence {
        show: Show::Away,
        status: Some("lunch".into()),
        last_active: None,
    };
    alice.act(Action::SetPresence(away.clone())).await.unwrap();
    assert_eq!(
        bob.next().await,
        Event::ContactPresence {
            contact: ContactId::new("alice"),
            presence: away,
        }
    );
    alice
        .session
        .close(ferry_bridge::CloseReason::Shutdown)
        .await;
    assert_eq!(
        bob.next().await,
        Event::ContactPresence {
            contact: ContactId::new("alice"),
            presence: Presence::offline(),
        }
    );
}

// ------------------------------------------------------------------ 1:1 between users

#[tokio::test]
async fn a_message_reaches_the_other_user_and_comes_back_as_delivered() {
    let net = network(Config::default());
    let mut bob = connected(&net, "bob").await;
    let mut alice = connected(&net, "alice").await;
    bob.drain().await;
    let id = alice.say(contact("bob"), "hi bob").await;
    match bob.next().await {
        Event::Message(m) => {
            assert_eq!(m.chat, contact("alice"));
            assert_eq!(m.from, Sender::Contact(ContactId::new("alice")));
            assert_eq!(m.id.as_ref(), Some(&id));
            assert_eq!(m.body, "hi bob");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        alice.next().await,
        Event::Delivered {
            chat: contact("bob"),
            id: id.clone(),
        }
    );
    // ids are unique
    let id2 = alice.say(contact("bob"), "again").await;
    assert_ne!(id, id2);
}

#[tokio::test]
async fn messages_to_an_offline_user_wait_for_their_session() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let id = alice.say(contact("carol"), "while you were out").await;
    assert!(alice.drain().await.is_empty(), "no receipt before delivery");
    let mut carol = connect(&net, "carol").await;
    carol
        .wait_for("the kept message", |e| is_message(e, "while you were out"))
        .await;
    assert_eq!(
        alice
            .wait_for("the receipt", |e| matches!(e, Event::Delivered { .. }))
            .await,
        Event::Delivered {
            chat: contact("carol"),
            id,
        }
    );
}

#[tokio::test]
async fn unknown_contacts_and_yourself_are_errors() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let err = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            contact("nobody"),
            "x",
            "hi",
        )))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);
    assert!(err.message.contains("nobody"));
    let err = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            contact("alice"),
            "x",
            "hi",
        )))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::BadRequest);
    let err = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            contact("bob"),
            "x",
            "",
        )))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::BadRequest);
}

#[tokio::test]
async fn edits_retractions_reactions_states_markers_travel_between_users() {
    let net = network(Config::default());
    let mut bob = connected(&net, "bob").await;
    let mut alice = connected(&net, "alice").await;
    bob.drain().await;
    let id = alice.say(contact("bob"), "helo").await;
    bob.next().await;
    alice.drain().await;

    let edit = Action::Edit {
        message: OutgoingMessage::text(contact("bob"), "c2", "hello"),
        replaces: id.clone(),
    };
    let Some(edit_id) = alice.act(edit).await.unwrap().sent_id() else {
        panic!("no id for the edit")
    };
    match bob.next().await {
        Event::Message(m) => {
            assert_eq!(m.replaces.as_ref(), Some(&id));
            assert_eq!(m.id.as_ref(), Some(&edit_id));
            assert_eq!(m.body, "hello");
        }
        other => panic!("{other:?}"),
    }

    alice
        .act(Action::React {
            chat: contact("bob"),
            target: id.clone(),
            emojis: vec!["👍".into()],
        })
        .await
        .unwrap();
    assert_eq!(
        bob.next().await,
        Event::Reactions {
            chat: contact("alice"),
            from: Sender::Contact(ContactId::new("alice")),
            target: id.clone(),
            emojis: vec!["👍".into()],
        }
    );

    alice
        .act(Action::ChatState {
            chat: contact("bob"),
            state: ChatState::Composing,
        })
        .await
        .unwrap();
    assert_eq!(
        bob.next().await,
        Event::ChatState {
            chat: contact("alice"),
            from: Sender::Contact(ContactId::new("alice")),
            state: ChatState::Composing,
        }
    );

    bob.act(Action::Displayed {
        chat: contact("alice"),
        up_to: id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        alice.next().await,
        Event::Displayed {
            chat: contact("bob"),
            by: Sender::Contact(ContactId::new("bob")),
            up_to: id.clone(),
        }
    );

    // bob may not edit or retract alice's message
    let err = bob
        .act(Action::Edit {
            message: OutgoingMessage::text(contact("alice"), "c3", "mine now"),
            replaces: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);
    let err = bob
        .act(Action::Retract {
            chat: contact("alice"),
            target: id.clone(),
            moderate: None,
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);
    let err = alice
        .act(Action::Retract {
            chat: contact("bob"),
            target: MessageId::new("nope"),
            moderate: None,
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);

    alice
        .act(Action::Retract {
            chat: contact("bob"),
            target: id.clone(),
            moderate: None,
        })
        .await
        .unwrap();
    assert_eq!(
        bob.next().await,
        Event::Retracted {
            chat: contact("alice"),
            by: Sender::Contact(ContactId::new("alice")),
            target: id,
            moderated: None,
        }
    );
}

#[tokio::test]
async fn replies_threads_formatting_and_attachments_travel() {
    let net = network(Config::default());
    let mut bob = connected(&net, "bob").await;
    let mut alice = connected(&net, "alice").await;
    bob.drain().await;
    let first = bob.say(contact("alice"), "question?").await;
    alice.drain().await;
    let mut reply = OutgoingMessage::text(contact("bob"), "c9", "answer");
    reply.reply_to = Some(ReplyTo {
        id: first.clone(),
        author: Some(Sender::Contact(ContactId::new("bob"))),
        quote: None,
    });
    reply.thread = Some("t1".into());
    reply.rich = Some(crate::echo::formatted());
    reply.attachments.push(ferry_bridge::Attachment {
        source: AttachmentSource::Url("https://example.org/a.png".into()),
        name: Some("a.png".into()),
        mime: Some("image/png".into()),
        size: Some(3),
        caption: None,
    });
    alice.act(Action::SendMessage(reply)).await.unwrap();
    let m = match bob.wait_for("the reply", |e| is_message(e, "answer")).await {
        Event::Message(m) => m,
        _ => unreachable!(),
    };
    // bob wrote the message replied to: from his side it is his own
    assert_eq!(
        m.reply_to,
        Some(ReplyTo {
            id: first,
            author: Some(Sender::Own),
            quote: Some("question?".into()),
        })
    );
    assert_eq!(m.thread.as_deref(), Some("t1"));
    assert_eq!(m.rich, Some(crate::echo::formatted()));
    assert_eq!(m.attachments.len(), 1);
}

#[tokio::test]
async fn a_second_session_of_the_same_account_sees_its_own_messages() {
    let net = network(Config::default());
    let mut a1 = connected(&net, "alice").await;
    let mut a2 = connected(&net, "alice").await;
    let id = a1.say(contact("bob"), "from my phone").await;
    match a2.next().await {
        Event::Message(m) => {
            assert_eq!(m.from, Sender::Own);
            assert_eq!(m.chat, contact("bob"));
            assert_eq!(m.id, Some(id));
        }
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ the bot

#[tokio::test]
async fn the_bot_confirms_answers_with_the_prefix_and_marks_read() {
    let net = network(Config::default());
    let prefs = FormValues::new().with("echo_prefix", "echo says: ");
    let mut alice = connect_with(&net, "alice", Arc::new(MemoryStore::default()), prefs).await;
    alice.drain().await;
    let id = alice.say(echo(), "hello").await;
    assert_eq!(
        alice.next().await,
        Event::Delivered {
            chat: echo(),
            id: id.clone(),
        }
    );
    let answer = match alice.next().await {
        Event::Message(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(answer.body, "echo says: hello");
    assert_eq!(answer.chat, echo());
    assert_eq!(answer.from, Sender::Contact(ContactId::new("echo")));
    assert!(answer.id.is_some() && answer.id.as_ref() != Some(&id));
    assert_eq!(
        alice.next().await,
        Event::Displayed {
            chat: echo(),
            by: Sender::Contact(ContactId::new("echo")),
            up_to: id,
        }
    );
    // the preference can change while the session runs
    alice
        .act(Action::PreferencesChanged(
            FormValues::new().with("echo_prefix", ">> "),
        ))
        .await
        .unwrap();
    alice.say(echo(), "x").await;
    alice
        .wait_for("the new prefix", |e| is_message(e, ">> x"))
        .await;
}

#[tokio::test]
async fn the_bot_follows_edits_retractions_reactions_and_typing() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let id = alice.say(echo(), "teh").await;
    let answer = match alice.wait_for("answer", |e| is_message(e, "teh")).await {
        Event::Message(m) => m.id.unwrap(),
        _ => unreachable!(),
    };
    alice.drain().await;

    alice
        .act(Action::Edit {
            message: OutgoingMessage::text(echo(), "c2", "the"),
            replaces: id.clone(),
        })
        .await
        .unwrap();
    match alice.next().await {
        Event::Message(m) => {
            assert_eq!(m.body, "the");
            assert_eq!(m.replaces.as_ref(), Some(&answer));
        }
        other => panic!("{other:?}"),
    }

    alice
        .act(Action::React {
            chat: echo(),
            target: answer.clone(),
            emojis: vec!["❤️".into()],
        })
        .await
        .unwrap();
    assert_eq!(
        alice.next().await,
        Event::Reactions {
            chat: echo(),
            from: Sender::Contact(ContactId::new("echo")),
            target: id.clone(),
            emojis: vec!["❤️".into()],
        }
    );

    alice
        .act(Action::ChatState {
            chat: echo(),
            state: ChatState::Composing,
        })
        .await
        .unwrap();
    assert_eq!(
        alice.next().await,
        Event::ChatState {
            chat: echo(),
            from: Sender::Contact(ContactId::new("echo")),
            state: ChatState::Composing,
        }
    );

    alice
        .act(Action::Retract {
            chat: echo(),
            target: id,
            moderate: None,
        })
        .await
        .unwrap();
    assert_eq!(
        alice.next().await,
        Event::Retracted {
            chat: echo(),
            by: Sender::Contact(ContactId::new("echo")),
            target: answer,
            moderated: None,
        }
    );
}

#[tokio::test]
async fn the_bot_replies_to_replies_and_keeps_threads_formatting_files() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let mut m = OutgoingMessage::text(echo(), "c1", "re: that");
    m.reply_to = Some(ReplyTo {
        id: MessageId::new("whatever"),
        author: None,
        quote: None,
    });
    m.thread = Some("th".into());
    m.rich = Some(crate::echo::formatted());
    m.attachments.push(ferry_bridge::Attachment {
        source: AttachmentSource::Url("https://example.org/x".into()),
        name: None,
        mime: None,
        size: None,
        caption: None,
    });
    let Some(id) = alice.act(Action::SendMessage(m)).await.unwrap().sent_id() else {
        panic!()
    };
    let answer = match alice
        .wait_for("answer", |e| is_message(e, "re: that"))
        .await
    {
        Event::Message(m) => m,
        _ => unreachable!(),
    };
    assert_eq!(answer.reply_to.as_ref().map(|r| &r.id), Some(&id));
    assert_eq!(
        answer.reply_to.as_ref().and_then(|r| r.author.clone()),
        Some(Sender::Own)
    );
    assert_eq!(answer.thread.as_deref(), Some("th"));
    assert_eq!(answer.rich, Some(crate::echo::formatted()));
    assert_eq!(answer.attachments.len(), 1);
}

#[tokio::test]
async fn the_bots_special_bodies() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let mut bob = connected(&net, "bob").await;
    alice.drain().await;

    alice.say(echo(), "notice look here").await;
    match alice
        .wait_for("notice", |e| is_message(e, "look here"))
        .await
    {
        Event::Message(m) => assert_eq!(m.kind, MessageKind::Notice),
        _ => unreachable!(),
    }
    alice.say(echo(), "emote waves").await;
    match alice.wait_for("emote", |e| is_message(e, "waves")).await {
        Event::Message(m) => assert_eq!(m.kind, MessageKind::Emote),
        _ => unreachable!(),
    }

    alice.say(echo(), "presence away gone fishing").await;
    let want = Event::ContactPresence {
        contact: ContactId::new("echo"),
        presence: Presence {
            show: Show::Away,
            status: Some("gone fishing".into()),
            last_active: None,
        },
    };
    assert_eq!(alice.wait_for("echo away", |e| *e == want).await, want);
    // every user has the bot as a contact
    assert_eq!(bob.wait_for("echo away", |e| *e == want).await, want);

    alice.drain().await;
    alice.say(echo(), "burst 5").await;
    let bodies: Vec<String> = alice
        .drain()
        .await
        .iter()
        .filter_map(|e| msg_body(e).map(str::to_owned))
        .collect();
    assert_eq!(
        bodies,
        [
            "burst 1/5",
            "burst 2/5",
            "burst 3/5",
            "burst 4/5",
            "burst 5/5"
        ]
    );
    alice.say(echo(), "burst 100000").await;
    alice
        .wait_for("refusal", |e| {
            msg_body(e).is_some_and(|b| b.starts_with("burst takes"))
        })
        .await;

    alice.say(echo(), "file").await;
    match alice
        .wait_for("file", |e| is_message(e, "here is a file"))
        .await
    {
        Event::Message(m) => {
            let a = &m.attachments[0];
            assert_eq!(a.mime.as_deref(), Some("image/png"));
            match &a.source {
                AttachmentSource::Bytes(b) => assert!(b.starts_with(b"\x89PNG\r\n")),
                AttachmentSource::Url(u) => panic!("url {u}"),
            }
        }
        _ => unreachable!(),
    }

    alice.say(echo(), "bad-xml").await;
    alice
        .wait_for("bad xml", |e| is_message(e, BAD_XML_BODY))
        .await;
    assert!(BAD_XML_BODY.contains('\u{1}') && BAD_XML_BODY.contains('\u{fffe}'));

    alice.say(echo(), "huge").await;
    alice
        .wait_for("huge", |e| {
            msg_body(e).is_some_and(|b| b.len() == HUGE_BYTES)
        })
        .await;

    alice.say(echo(), "formatted").await;
    match alice
        .wait_for(
            "formatted",
            |e| matches!(e, Event::Message(m) if m.rich.is_some()),
        )
        .await
    {
        Event::Message(m) => {
            let r = m.rich.unwrap();
            assert!(r.spans.iter().any(|s| s.style.bold));
            assert!(r.spans.iter().any(|s| s.style.italic));
            assert!(r.spans.iter().any(|s| s.style.fg.is_some()));
            assert!(r.spans.iter().any(|s| s.style.link.is_some()));
            assert!(r.spans.iter().any(|s| s.style.quote > 0));
            assert!(r.spans.iter().any(|s| s.style.pre));
            assert_eq!(m.body, r.to_plain());
        }
        _ => unreachable!(),
    }

    alice.say(echo(), "unfriend").await;
    alice
        .wait_for("removed", |e| {
            *e == Event::ContactRemoved(ContactId::new("echo"))
        })
        .await;
    alice.say(echo(), "friend").await;
    alice
        .wait_for(
            "back",
            |e| matches!(e, Event::Contact(c) if c.contact.as_str() == "echo"),
        )
        .await;
}

#[tokio::test]
async fn panic_panics_in_act_and_the_network_forgets_the_session() {
    let net = network(Config::default());
    let mut bob = connected(&net, "bob").await;
    let alice = connected(&net, "alice").await;
    bob.drain().await;
    let Client { mut session, .. } = alice;
    let crashed = tokio::spawn(async move {
        session
            .act(Action::SendMessage(OutgoingMessage::text(
                echo(),
                "c",
                "panic",
            )))
            .await
    })
    .await;
    assert!(crashed.unwrap_err().is_panic());
    // the dropped session lost its connection: bob sees alice go offline
    bob.wait_for("alice offline", |e| {
        *e == Event::ContactPresence {
            contact: ContactId::new("alice"),
            presence: Presence::offline(),
        }
    })
    .await;
}

#[tokio::test]
async fn spawn_panic_fails_a_background_task() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    alice.say(echo(), "spawn-panic").await;
    let failure = tokio::time::timeout(std::time::Duration::from_secs(2), alice.failures.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failure.task, "test-network-panic");
    assert!(failure.message.contains("asked to panic"));
    alice.spawner.abort_all();
}

#[tokio::test]
async fn the_bot_answers_after_the_configured_delay() {
    let net = network(Config {
        echo_delay_ms: 300,
        ..Config::default()
    });
    let mut alice = connected(&net, "alice").await;
    let t = std::time::Instant::now();
    alice.say(echo(), "slow").await;
    alice.wait_for("answer", |e| is_message(e, "slow")).await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
}

// ------------------------------------------------------------------ service, version, ping

#[tokio::test]
async fn the_server_version_and_ping() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    alice
        .say(Address::Service(ServiceId::new("server")), "motd")
        .await;
    match alice.next().await {
        Event::Message(m) => {
            assert_eq!(m.body, "Welcome to the test network");
            assert_eq!(m.from, Sender::Service);
            assert_eq!(m.kind, MessageKind::Notice);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        alice.act(Action::QueryVersion(echo())).await.unwrap(),
        Outcome::Version {
            name: "TestNet bot".into(),
            version: "1.0".into(),
            os: Some("TestOS".into()),
        }
    );
    assert_eq!(
        alice.act(Action::Ping(echo())).await.unwrap(),
        Outcome::Done
    );
    let err = alice.act(Action::Ping(contact("bob"))).await.unwrap_err();
    assert_eq!(kind(&err), ErrorKind::Unavailable);
    let err = alice.act(Action::Ping(contact("zed"))).await.unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);
    let _bob = connected(&net, "bob").await;
    assert!(matches!(
        alice.act(Action::QueryVersion(contact("bob"))).await.unwrap(),
        Outcome::Version { name, .. } if name == "TestNet client"
    ));
    assert!(matches!(
        alice
            .act(Action::QueryVersion(Address::Service(ServiceId::new("server"))))
            .await
            .unwrap(),
        Outcome::Version { name, .. } if name == "TestNet server"
    ));
}

#[tokio::test]
async fn adding_contacts_checks_they_exist() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    alice
        .act(Action::AddContact(ContactId::new("carol")))
        .await
        .unwrap();
    assert!(matches!(alice.next().await, Event::Contact(c) if c.contact.as_str() == "carol"));
    let err = alice
        .act(Action::AddContact(ContactId::new("zed")))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);
    alice
        .act(Action::RemoveContact(ContactId::new("carol")))
        .await
        .unwrap();
}

// ------------------------------------------------------------------ rooms

#[tokio::test]
async fn joining_the_lounge_gives_occupants_in_order_and_the_subject() {
    let net = network(Config::default());
    let mut bob = connected(&net, "bob").await;
    join(&mut bob, "#lounge", "bobby").await;
    let mut alice = connected(&net, "alice").await;
    match join(&mut alice, "#lounge", "al").await {
        Event::RoomJoined {
            info,
            nick,
            occupants,
            subject,
        } => {
            assert_eq!(nick, "al");
            assert_eq!(info.room, room("#lounge"));
            assert_eq!(info.name.as_deref(), Some("Lounge"));
            assert_eq!(info.occupant_count, Some(3));
            let nicks: Vec<_> = occupants.iter().map(|o| o.nick.as_str()).collect();
            assert_eq!(nicks, ["echo", "bobby", "al"]);
            assert_eq!(occupants[0].role, Role::Moderator);
            assert_eq!(occupants[0].affiliation, Affiliation::Owner);
            assert!(occupants[2].is_self && !occupants[1].is_self);
            assert_eq!(occupants[1].contact, Some(ContactId::new("bob")));
            assert!(subject.text.contains("Welcome"));
            assert_eq!(subject.by.as_deref(), Some("echo"));
        }
        other => panic!("{other:?}"),
    }
    match bob
        .wait_for("alice joins", |e| matches!(e, Event::Occupant { .. }))
        .await
    {
        Event::Occupant { occupant, .. } => {
            assert_eq!(occupant.nick, "al");
            assert!(!occupant.is_self);
        }
        _ => unreachable!(),
    }
    // any other room is created on join
    assert!(matches!(
        join(&mut alice, "#new-room", "al").await,
        Event::RoomJoined { .. }
    ));
}

#[tokio::test]
async fn wrong_password_taken_nick_and_bans_fail_the_join() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    match join(&mut alice, "#secret", "al").await {
        Event::RoomJoinFailed { room: r, error } => {
            assert_eq!(r, room("#secret"));
            assert_eq!(error.kind, ErrorKind::NotAllowed);
        }
        other => panic!("{other:?}"),
    }
    alice
        .act(Action::JoinRoom {
            room: room("#secret"),
            nick: "al".into(),
            password: Some("letmein".into()),
        })
        .await
        .unwrap();
    match alice.next().await {
        Event::RoomJoined { info, .. } => assert!(info.password_protected),
        other => panic!("{other:?}"),
    }
    match join(&mut alice, "#lounge", "echo").await {
        Event::RoomJoinFailed { error, .. } => assert_eq!(error.kind, ErrorKind::Conflict),
        other => panic!("{other:?}"),
    }
    match join(&mut alice, "#lounge", "bad\u{7}nick").await {
        Event::RoomJoinFailed { error, .. } => assert_eq!(error.kind, ErrorKind::BadRequest),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn room_messages_go_to_the_others_and_the_bot_repeats_echo_lines() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let mut bob = connected(&net, "bob").await;
    join(&mut alice, "#lounge", "al").await;
    join(&mut bob, "#lounge", "bo").await;
    alice.drain().await;
    let id = alice
        .say(Address::Room(room("#lounge")), "hello room")
        .await;
    match bob.next().await {
        Event::Message(m) => {
            assert_eq!(m.chat, Address::Room(room("#lounge")));
            assert_eq!(m.from, Sender::Occupant("al".into()));
            assert_eq!(m.id, Some(id));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        alice.drain().await.is_empty(),
        "the sender gets no copy (the core reflects)"
    );
    alice
        .say(Address::Room(room("#lounge")), "echo: ping")
        .await;
    for c in [&mut alice, &mut bob] {
        let e = c.wait_for("the bot", |e| is_message(e, "ping")).await;
        assert!(matches!(e, Event::Message(m) if m.from == Sender::Occupant("echo".into())));
    }
    // not joined: refused
    let mut carol = connected(&net, "carol").await;
    let err = carol
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Room(room("#lounge")),
            "c",
            "hi",
        )))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);
}

#[tokio::test]
async fn subject_nick_and_private_messages() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let mut bob = connected(&net, "bob").await;
    join(&mut alice, "#lounge", "al").await;
    join(&mut bob, "#lounge", "bo").await;
    alice.drain().await;

    alice
        .act(Action::SetSubject {
            room: room("#lounge"),
            subject: "new topic".into(),
        })
        .await
        .unwrap();
    for c in [&mut alice, &mut bob] {
        match c.next().await {
            Event::Subject { subject, .. } => {
                assert_eq!(subject.text, "new topic");
                assert_eq!(subject.by.as_deref(), Some("al"));
            }
            other => panic!("{other:?}"),
        }
    }

    let err = alice
        .act(Action::ChangeNick {
            room: room("#lounge"),
            nick: "bo".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::Conflict);
    alice
        .act(Action::ChangeNick {
            room: room("#lounge"),
            nick: "alice2".into(),
        })
        .await
        .unwrap();
    for c in [&mut alice, &mut bob] {
        assert_eq!(
            c.next().await,
            Event::NickChanged {
                room: room("#lounge"),
                old: "al".into(),
                new: "alice2".into(),
            }
        );
    }

    let pm = Address::Occupant {
        room: room("#lounge"),
        nick: "bo".into(),
    };
    let id = alice.say(pm, "psst").await;
    match bob.next().await {
        Event::Message(m) => {
            assert_eq!(
                m.chat,
                Address::Occupant {
                    room: room("#lounge"),
                    nick: "alice2".into(),
                }
            );
            assert_eq!(m.body, "psst");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(alice.next().await, Event::Delivered { id: d, .. } if d == id));
    alice
        .say(
            Address::Occupant {
                room: room("#lounge"),
                nick: "echo".into(),
            },
            "pm the bot",
        )
        .await;
    match alice.next().await {
        Event::Message(m) => {
            assert_eq!(m.body, "pm the bot");
            assert_eq!(m.from, Sender::Occupant("echo".into()));
        }
        other => panic!("{other:?}"),
    }
    let err = alice
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Occupant {
                room: room("#lounge"),
                nick: "ghost".into(),
            },
            "c",
            "boo",
        )))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);
}

#[tokio::test]
async fn only_the_admin_kicks_bans_changes_roles_and_moderates() {
    let net = network(Config::default());
    let mut admin = connected(&net, "admin").await;
    let mut bob = connected(&net, "bob").await;
    let mut carol = connected(&net, "carol").await;
    match join(&mut admin, "#lounge", "boss").await {
        Event::RoomJoined { occupants, .. } => {
            let me = occupants.last().unwrap();
            assert_eq!(
                (me.role, me.affiliation),
                (Role::Moderator, Affiliation::Admin)
            );
        }
        other => panic!("{other:?}"),
    }
    join(&mut bob, "#lounge", "bo").await;
    join(&mut carol, "#lounge", "ca").await;
    for c in [&mut admin, &mut bob, &mut carol] {
        c.drain().await;
    }

    let err = bob
        .act(Action::Kick {
            room: room("#lounge"),
            nick: "ca".into(),
            reason: None,
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);
    let err = admin
        .act(Action::Kick {
            room: room("#lounge"),
            nick: "echo".into(),
            reason: None,
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);

    // moderation of bob's message
    let id = bob.say(Address::Room(room("#lounge")), "spam").await;
    let err = carol
        .act(Action::Retract {
            chat: Address::Room(room("#lounge")),
            target: id.clone(),
            moderate: Some(None),
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);
    admin
        .act(Action::Retract {
            chat: Address::Room(room("#lounge")),
            target: id.clone(),
            moderate: Some(Some("no spam".into())),
        })
        .await
        .unwrap();
    let want = Event::Retracted {
        chat: Address::Room(room("#lounge")),
        by: Sender::Occupant("boss".into()),
        target: id,
        moderated: Some(Some("no spam".into())),
    };
    for c in [&mut admin, &mut bob, &mut carol] {
        assert_eq!(c.wait_for("moderation", |e| *e == want).await, want);
    }

    // voice
    admin
        .act(Action::SetRole {
            room: room("#lounge"),
            nick: "bo".into(),
            role: Role::Visitor,
            reason: None,
        })
        .await
        .unwrap();
    match bob.next().await {
        Event::Occupant { occupant, .. } => {
            assert_eq!(occupant.role, Role::Visitor);
            assert!(occupant.is_self);
        }
        other => panic!("{other:?}"),
    }
    let err = bob
        .act(Action::SendMessage(OutgoingMessage::text(
            Address::Room(room("#lounge")),
            "c",
            "can I speak?",
        )))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);

    // kick
    admin
        .act(Action::Kick {
            room: room("#lounge"),
            nick: "bo".into(),
            reason: Some("out".into()),
        })
        .await
        .unwrap();
    let exit = RoomExit::Kicked {
        by: Some("boss".into()),
        reason: Some("out".into()),
    };
    assert_eq!(
        bob.next().await,
        Event::RoomLeft {
            room: room("#lounge"),
            exit: exit.clone(),
        }
    );
    let left = Event::OccupantLeft {
        room: room("#lounge"),
        nick: "bo".into(),
        exit,
    };
    assert_eq!(carol.wait_for("bob kicked", |e| *e == left).await, left);

    // ban carol by account: she is removed and cannot come back
    admin
        .act(Action::SetAffiliation {
            room: room("#lounge"),
            target: contact("carol"),
            affiliation: Affiliation::Outcast,
            reason: None,
        })
        .await
        .unwrap();
    assert!(matches!(
        carol
            .wait_for("banned", |e| matches!(e, Event::RoomLeft { .. }))
            .await,
        Event::RoomLeft {
            exit: RoomExit::Banned { .. },
            ..
        }
    ));
    match join(&mut carol, "#lounge", "ca").await {
        Event::RoomJoinFailed { error, .. } => assert_eq!(error.kind, ErrorKind::NotAllowed),
        other => panic!("{other:?}"),
    }
    // affiliation change by nick
    join(&mut bob, "#lounge", "bo").await;
    admin.drain().await;
    admin
        .act(Action::SetAffiliation {
            room: room("#lounge"),
            target: Address::Occupant {
                room: room("#lounge"),
                nick: "bo".into(),
            },
            affiliation: Affiliation::Admin,
            reason: None,
        })
        .await
        .unwrap();
    assert!(matches!(
        admin.next().await,
        Event::Occupant { occupant, .. } if occupant.affiliation == Affiliation::Admin && occupant.nick == "bo"
    ));
}

#[tokio::test]
async fn invitations_reach_the_invitee() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let mut carol = connected(&net, "carol").await;
    join(&mut alice, "#lounge", "al").await;
    alice
        .act(Action::Invite {
            room: room("#lounge"),
            invitee: contact("carol"),
            reason: Some("come".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        carol.next().await,
        Event::Invited {
            room: room("#lounge"),
            from: Some(Sender::Contact(ContactId::new("alice"))),
            reason: Some("come".into()),
            password: None,
        }
    );
    let err = alice
        .act(Action::Invite {
            room: room("#lounge"),
            invitee: contact("zed"),
            reason: None,
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);
}

#[tokio::test]
async fn leaving_and_persistent_rooms() {
    let net = network(Config::default());
    let store = Arc::new(MemoryStore::default());
    let mut alice = connect_with(&net, "alice", store.clone(), FormValues::new()).await;
    let mut bob = connected(&net, "bob").await;
    alice.drain().await;
    join(&mut alice, "#lounge", "al").await;
    join(&mut bob, "#lounge", "bo").await;
    alice.drain().await;

    // plain leave
    alice
        .act(Action::LeaveRoom {
            room: room("#lounge"),
            reason: Some("bye".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        bob.next().await,
        Event::OccupantLeft {
            room: room("#lounge"),
            nick: "al".into(),
            exit: RoomExit::Left(Some("bye".into())),
        }
    );

    // configure persistent, then leaving keeps the session in
    join(&mut alice, "#lounge", "al").await;
    let target = Some(Address::Room(room("#lounge")));
    match alice
        .act(call("configure", target.clone(), None, FormValues::new()))
        .await
        .unwrap()
    {
        Outcome::Command(CommandReply::Form { form, stage, last }) => {
            assert!(last);
            assert_eq!(form.get("persistent").unwrap().values, ["false"]);
            assert_eq!(form.get("record_history").unwrap().values, ["true"]);
            let values = FormValues::new()
                .with("persistent", "true")
                .with("record_history", "false");
            let done = alice
                .act(call("configure", target.clone(), Some(&stage), values))
                .await
                .unwrap();
            assert!(
                matches!(done, Outcome::Command(CommandReply::Done { note: Some(n), .. }) if n.contains("persistent yes"))
            );
        }
        other => panic!("{other:?}"),
    }
    match alice
        .wait_for("room info", |e| matches!(e, Event::RoomInfo(_)))
        .await
    {
        Event::RoomInfo(info) => assert!(!info.history.record),
        _ => unreachable!(),
    }
    alice
        .act(Action::LeaveRoom {
            room: room("#lounge"),
            reason: None,
        })
        .await
        .unwrap();
    bob.drain().await;
    bob.say(Address::Room(room("#lounge")), "still there?")
        .await;
    alice
        .wait_for("still in", |e| is_message(e, "still there?"))
        .await;

    // a new session of alice (a restart) is back in the room by itself
    alice
        .session
        .close(ferry_bridge::CloseReason::Restart)
        .await;
    let mut again = connect_with(&net, "alice", store, FormValues::new()).await;
    match again
        .wait_for("rejoin", |e| matches!(e, Event::RoomJoined { .. }))
        .await
    {
        Event::RoomJoined { nick, info, .. } => {
            assert_eq!(nick, "al");
            assert_eq!(info.room, room("#lounge"));
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn history_is_deterministic_newest_first_and_paged() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let chat = Address::Room(room("#lounge"));
    let page = |o: Outcome| match o {
        Outcome::History(h) => h,
        other => panic!("{other:?}"),
    };
    let first = page(
        alice
            .act(Action::FetchHistory {
                chat: chat.clone(),
                before: None,
                limit: 3,
            })
            .await
            .unwrap(),
    );
    let bodies: Vec<_> = first.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["history 50", "history 49", "history 48"]);
    assert!(
        first
            .iter()
            .all(|m| m.archive_only && m.id.is_some() && m.timestamp.is_some())
    );
    assert!(first[0].timestamp > first[1].timestamp);
    let next = page(
        alice
            .act(Action::FetchHistory {
                chat: chat.clone(),
                before: first[2].id.clone(),
                limit: 100,
            })
            .await
            .unwrap(),
    );
    assert_eq!(next.len(), 47);
    assert_eq!(next[0].body, "history 47");
    assert_eq!(next.last().unwrap().body, "history 1");
    let err = alice
        .act(Action::FetchHistory {
            chat: chat.clone(),
            before: Some(MessageId::new("bogus")),
            limit: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::BadRequest);
    let with_bob = page(
        alice
            .act(Action::FetchHistory {
                chat: contact("bob"),
                before: None,
                limit: 2,
            })
            .await
            .unwrap(),
    );
    assert_eq!(with_bob[0].from, Sender::Contact(ContactId::new("bob")));
    assert_eq!(with_bob[1].from, Sender::Own);
}

#[tokio::test]
async fn room_list_includes_the_lounge() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    match alice
        .act(Action::ListRooms { service: None })
        .await
        .unwrap()
    {
        Outcome::Rooms(rooms) => {
            let lounge = rooms.iter().find(|r| r.room == room("#lounge")).unwrap();
            assert_eq!(lounge.name.as_deref(), Some("Lounge"));
            assert_eq!(lounge.occupants, Some(1));
            assert!(lounge.topic.is_some());
        }
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ commands

#[tokio::test]
async fn the_wizard_has_two_steps_and_can_go_back() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let Outcome::Command(CommandReply::Form { form, stage, last }) = alice
        .act(call("wizard", None, None, FormValues::new()))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!last);
    assert!(form.get("name").unwrap().required);
    // missing name: an error, not a crash
    let err = alice
        .act(call("wizard", None, Some(&stage), FormValues::new()))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::BadRequest);
    let Outcome::Command(CommandReply::Form {
        form: step2,
        stage: stage2,
        last,
    }) = alice
        .act(call(
            "wizard",
            None,
            Some(&stage),
            FormValues::new().with("name", "Ann"),
        ))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(last);
    let colour = step2.get("colour").unwrap();
    assert_eq!(colour.kind, ferry_bridge::FieldKind::ListSingle);
    assert_eq!(colour.options.len(), 3);
    // back: the first step again
    assert!(matches!(
        alice
            .act(call("wizard", None, None, FormValues::new()))
            .await
            .unwrap(),
        Outcome::Command(CommandReply::Form { .. })
    ));
    let err = alice
        .act(call(
            "wizard",
            None,
            Some(&stage2),
            FormValues::new().with("colour", "pink"),
        ))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::BadRequest);
    match alice
        .act(call(
            "wizard",
            None,
            Some(&stage2),
            FormValues::new().with("colour", "green"),
        ))
        .await
        .unwrap()
    {
        Outcome::Command(CommandReply::Done { note: Some(n), .. }) => {
            assert!(n.contains("Ann") && n.contains("green"), "{n}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn shout_is_for_admins_and_reaches_every_session() {
    let net = network(Config::default());
    let mut admin = connected(&net, "admin").await;
    let mut bob = connected(&net, "bob").await;
    let err = bob
        .act(call("shout", None, None, FormValues::new()))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotAllowed);
    let as_admin = |stage: Option<&str>, values: FormValues| {
        Action::Command(CommandCall {
            node: "shout".into(),
            target: None,
            stage: stage.map(str::to_owned),
            values,
            admin: true,
        })
    };
    let Outcome::Command(CommandReply::Form { stage, .. }) =
        admin.act(as_admin(None, FormValues::new())).await.unwrap()
    else {
        panic!()
    };
    admin
        .act(as_admin(
            Some(&stage),
            FormValues::new().with("message", "hear ye"),
        ))
        .await
        .unwrap();
    let want = Event::Notice("admin shouts: hear ye".into());
    assert_eq!(bob.wait_for("shout", |e| *e == want).await, want);
    assert_eq!(admin.wait_for("shout", |e| *e == want).await, want);
}

#[tokio::test]
async fn whois_motd_and_unknown_commands() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    match alice
        .act(call("whois", Some(echo()), None, FormValues::new()))
        .await
        .unwrap()
    {
        Outcome::Command(CommandReply::Done {
            note: Some(n),
            result: Some(form),
        }) => {
            assert!(n.contains("bot") && n.contains("online"), "{n}");
            assert_eq!(form.get("name").unwrap().values, ["Echo bot"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        alice
            .act(call(
                "motd",
                Some(Address::Service(ServiceId::new("server"))),
                None,
                FormValues::new()
            ))
            .await
            .unwrap(),
        Outcome::Command(CommandReply::Done { .. })
    ));
    let err = alice
        .act(call("nope", None, None, FormValues::new()))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);
    let err = alice
        .act(call(
            "configure",
            Some(Address::Room(room("#nowhere"))),
            None,
            FormValues::new(),
        ))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), ErrorKind::NotFound);
    let specs = crate::commands::specs();
    assert!(specs.iter().any(|c| c.node == "shout" && c.admin_only));
}

// ------------------------------------------------------------------ webhook

#[tokio::test]
async fn the_say_webhook_delivers_now_or_later() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let r = net
        .webhook(webhook(
            "POST",
            "/say",
            "to=alice&from=stranger",
            b"hello from outside",
        ))
        .await;
    assert_eq!(r.status, 200);
    match alice.next().await {
        Event::Message(m) => {
            assert_eq!(m.chat, contact("stranger"));
            assert_eq!(m.body, "hello from outside");
            assert_eq!(
                m.id.map(|i| i.into_string()),
                Some(String::from_utf8(r.body).unwrap())
            );
        }
        other => panic!("{other:?}"),
    }
    // carol is offline: kept until she connects
    assert_eq!(
        net.webhook(webhook("POST", "/say", "to=carol&from=bob", b"later"))
            .await
            .status,
        200
    );
    let mut carol = connect(&net, "carol").await;
    carol
        .wait_for("kept message", |e| is_message(e, "later"))
        .await;

    for (method, path, query, body, status) in [
        ("GET", "/say", "to=alice&from=bob", &b"x"[..], 405),
        ("POST", "/nope", "", &b"x"[..], 404),
        ("POST", "/say", "to=zed&from=bob", &b"x"[..], 404),
        ("POST", "/say", "to=alice", &b"x"[..], 400),
        ("POST", "/say", "to=alice&from=bob", &b"\xff\xfe"[..], 400),
        ("POST", "/say", "to=alice&from=B%20C", &b"x"[..], 400),
        ("POST", "/say", "room=%23nowhere&from=x", &b"x"[..], 404),
    ] {
        let r = net.webhook(webhook(method, path, query, body)).await;
        assert_eq!(r.status, status, "{method} {path}?{query}");
    }
}

#[tokio::test]
async fn webhooks_for_rooms_passwords_and_disconnects() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    join(&mut alice, "#lounge", "al").await;
    let r = net
        .webhook(webhook(
            "POST",
            "/say",
            "room=%23lounge&from=visitor",
            b"hi all",
        ))
        .await;
    assert_eq!(r.status, 200);
    match alice.next().await {
        Event::Message(m) => assert_eq!(m.from, Sender::Occupant("visitor".into())),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        net.webhook(webhook("POST", "/disconnect", "account=alice", b""))
            .await
            .status,
        200
    );
    assert!(matches!(
        alice.next().await,
        Event::Connection(ConnectionState::Reconnecting(_))
    ));
    assert!(matches!(
        alice.next().await,
        Event::Connection(ConnectionState::Connected(_))
    ));
    assert_eq!(
        net.webhook(webhook("POST", "/password", "account=alice", b"newpw"))
            .await
            .status,
        200
    );
    assert!(matches!(
        alice.next().await,
        Event::Connection(ConnectionState::LoginRequired(_))
    ));
    // the old password no longer logs in, the new one does
    let user = ferry_bridge::UserId::new("alice@localhost");
    assert!(
        net.login(
            &user,
            &FormValues::new()
                .with("username", "alice")
                .with("password", "alicepw")
        )
        .await
        .is_err()
    );
    assert!(
        net.login(
            &user,
            &FormValues::new()
                .with("username", "alice")
                .with("password", "newpw")
        )
        .await
        .is_ok()
    );
}

// ------------------------------------------------------------------ switched-off capabilities

#[tokio::test]
async fn disabled_capabilities_are_refused_with_unsupported() {
    let net = network(Config {
        disable: vec![
            "corrections".into(),
            "rooms".into(),
            "reactions".into(),
            "chat_states".into(),
            "history".into(),
            "ping".into(),
            "attachments".into(),
        ],
        ..Config::default()
    });
    let mut alice = connected(&net, "alice").await;
    let id = alice.say(contact("bob"), "x").await;
    let mut with_file = OutgoingMessage::text(contact("bob"), "c", "file");
    with_file.attachments.push(ferry_bridge::Attachment {
        source: AttachmentSource::Url("https://example.org/f".into()),
        name: None,
        mime: None,
        size: None,
        caption: None,
    });
    for action in [
        Action::Edit {
            message: OutgoingMessage::text(contact("bob"), "c", "y"),
            replaces: id.clone(),
        },
        Action::JoinRoom {
            room: room("#lounge"),
            nick: "al".into(),
            password: None,
        },
        Action::React {
            chat: contact("bob"),
            target: id.clone(),
            emojis: vec!["x".into()],
        },
        Action::ChatState {
            chat: contact("bob"),
            state: ChatState::Composing,
        },
        Action::FetchHistory {
            chat: contact("bob"),
            before: None,
            limit: 1,
        },
        Action::Ping(echo()),
        Action::SendMessage(with_file),
    ] {
        let err = alice.act(action.clone()).await.unwrap_err();
        assert_eq!(kind(&err), ErrorKind::Unsupported, "{action:?}");
        assert!(err.message.contains("does not support"), "{}", err.message);
    }
}

#[tokio::test]
async fn without_receipts_contact_list_or_formatting_nothing_of_them_is_reported() {
    let net = network(Config {
        delivery_receipts: false,
        disable: vec!["contact_list".into(), "formatting".into()],
        ..Config::default()
    });
    let mut alice = connect(&net, "alice").await;
    let events = alice.drain().await;
    assert!(!events.iter().any(|e| matches!(e, Event::Contact(_))));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ContactPresence { .. }))
    );
    alice.say(echo(), "formatted").await;
    let events = alice.drain().await;
    assert!(!events.iter().any(|e| matches!(e, Event::Delivered { .. })));
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Message(m) if m.rich.is_none() && m.body.starts_with("bold"))
        )
    );
}

#[tokio::test]
async fn a_group_is_a_room_with_fixed_members_and_opens_once() {
    let net = network(Config::default());
    let mut alice = connected(&net, "alice").await;
    let open = |members: &[&str]| Action::OpenGroup {
        members: members.iter().map(|m| ContactId::new(*m)).collect(),
        subject: Some("Plans".into()),
    };
    let Outcome::Room(group) = alice.act(open(&["bob", "carol"])).await.expect("opens") else {
        panic!("a room")
    };
    let joined = alice
        .wait_for("RoomJoined", |e| matches!(e, Event::RoomJoined { .. }))
        .await;
    let Event::RoomJoined {
        info,
        nick,
        occupants,
        subject,
    } = joined
    else {
        unreachable!()
    };
    assert_eq!(info.room, group);
    assert_eq!(
        info.members,
        Some(vec![ContactId::new("bob"), ContactId::new("carol")])
    );
    assert_eq!(nick, "alice");
    assert_eq!(subject.text, "Plans");
    let mut nicks: Vec<&str> = occupants.iter().map(|o| o.nick.as_str()).collect();
    nicks.sort_unstable();
    assert_eq!(nicks, ["alice", "bob", "carol", "echo"]);
    // The same members (in another order): the same conversation.
    let again = alice.act(open(&["carol", "bob"])).await.expect("opens");
    assert_eq!(again, Outcome::Room(group));
    // Nobody of that name on the network.
    let e = alice
        .act(open(&["bob", "mallory"]))
        .await
        .expect_err("unknown member");
    assert_eq!(kind(&e), ErrorKind::NotFound);
    let e = alice.act(open(&[])).await.expect_err("nobody");
    assert_eq!(kind(&e), ErrorKind::BadRequest);
}
