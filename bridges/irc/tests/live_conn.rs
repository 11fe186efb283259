//! Live tests of the connection's life on InspIRCd: idle close after the
//! last room even after private messages, flood control, connection caps,
//! MONITOR presence, LIST, the server JID's commands, QUIT messages.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferry_bridge::{
    Action, Address, CloseReason, CommandCall, CommandReply, ErrorKind, Event, FormValues, Outcome,
    RoomExit, Show,
};
use ferry_irc::Config;

#[tokio::test]
async fn connection_closes_after_the_last_room_even_after_a_private_message() {
    let mut watcher = Raw::connect(inspircd(), &unique("w"), &[]).await;
    let local = unique("idle");
    let mut gw = Gw::new(
        Config {
            idle_timeout: 3,
            ..config()
        },
        &format!("{local}@localhost"),
    )
    .await;
    let chan = format!("#{}", unique("idle"));
    let room = gw.room(&chan, INSP);
    gw.join(&room, &local).await;
    watcher.send(&format!("MONITOR + {local}")).await;
    watcher.expect(|m| m.command == "730").await;
    // A private conversation, then the last room is left.
    gw.say(Address::Contact(gw.contact(&watcher.nick, INSP)), "hi")
        .await
        .unwrap();
    watcher
        .expect(|m| m.command == "PRIVMSG" && m.trailing() == "hi")
        .await;
    watcher.send(&format!("PRIVMSG {local} :hi back")).await;
    gw.event(|e| matches!(e, Event::Message(m) if m.body == "hi back"))
        .await;
    let left_at = Instant::now();
    gw.act(Action::LeaveRoom { room, reason: None })
        .await
        .unwrap();
    // Still connected for the idle period, then gone.
    assert!(
        watcher
            .expect_within(Duration::from_millis(1500), |m| m.command == "731")
            .await
            .is_none()
    );
    watcher.expect(|m| m.command == "731").await;
    let after = left_at.elapsed();
    assert!(after >= Duration::from_secs(2), "closed after {after:?}");
    gw.event(
        |e| matches!(e, Event::ServicePresence { presence, .. } if presence.show == Show::Offline),
    )
    .await;
}

#[tokio::test]
async fn connection_closes_at_once_without_private_messages() {
    let mut watcher = Raw::connect(inspircd(), &unique("w"), &[]).await;
    let local = unique("idle");
    let mut gw = Gw::new(
        Config {
            idle_timeout: 30,
            ..config()
        },
        &format!("{local}@localhost"),
    )
    .await;
    let room = gw.room(&format!("#{}", unique("idle")), INSP);
    gw.join(&room, &local).await;
    watcher.send(&format!("MONITOR + {local}")).await;
    watcher.expect(|m| m.command == "730").await;
    gw.act(Action::LeaveRoom { room, reason: None })
        .await
        .unwrap();
    // No private conversation: leaving the last room closes it (QUIT).
    watcher
        .expect_within(Duration::from_secs(2), |m| m.command == "731")
        .await
        .expect("closed at once");
}

#[tokio::test]
async fn flood_control_limits_bursts() {
    let chan = format!("#{}", unique("flood"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(
        Config {
            throttle_limit: 3,
            ..config()
        },
        &format!("{}@localhost", unique("u")),
    )
    .await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    // Let the bucket refill after the join.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // Each send is answered once the server echoes it: the answers show
    // when the lines went out.
    let t0 = Instant::now();
    let mut at = Vec::new();
    for i in 0..6 {
        gw.say(Address::Room(room.clone()), &format!("burst {i}"))
            .await
            .unwrap();
        at.push(t0.elapsed());
    }
    for i in 0..6 {
        raw.expect(|m| m.command == "PRIVMSG" && m.trailing() == format!("burst {i}"))
            .await;
    }
    assert!(at[2] < Duration::from_millis(700), "{at:?}");
    assert!(at[3] >= Duration::from_millis(800), "{at:?}");
    assert!(at[5] >= Duration::from_millis(2700), "{at:?}");
}

#[tokio::test]
async fn connection_caps_refuse_with_a_reason() {
    let _lock = exclusive("ngircd");
    let net = ferry_irc::build(
        Config {
            max_connections_per_server: 1,
            ..config()
        },
        ferry_bridge::BridgeSetup {
            domain: "irc.localhost".into(),
            data_dir: std::env::temp_dir(),
            hosts: ferry_bridge::HostPolicy::new(["127.0.0.1", "127.0.0.2"], [""; 0])
                .expect("test host policy"),
        },
    )
    .unwrap();
    let mut a = Gw::on(net.clone(), &format!("{}@localhost", unique("a"))).await;
    let mut b = Gw::on(net.clone(), &format!("{}@localhost", unique("b"))).await;
    let room = a.room(&format!("#{}", unique("cap")), INSP);
    a.join(&room, &unique("a")).await;
    b.act(Action::JoinRoom {
        room: room.clone(),
        nick: unique("b"),
        password: None,
    })
    .await
    .unwrap();
    let ev = b.event(|e| matches!(e, Event::RoomJoinFailed { .. })).await;
    let Event::RoomJoinFailed { error, .. } = ev else {
        unreachable!()
    };
    assert_eq!(error.kind, ErrorKind::ResourceConstraint);
    assert!(error.message.contains("limit"), "{error}");
    // Another server is not affected by the per-server cap.
    let room2 = b.room(&format!("#{}", unique("cap")), NG);
    b.join(&room2, &unique("b")).await;
}

#[tokio::test]
async fn monitored_contacts_have_presence() {
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let room = gw.room(&format!("#{}", unique("mon")), INSP);
    gw.join(&room, &unique("gw")).await;
    let nick = unique("friend");
    let contact = gw.contact(&nick, INSP);
    gw.act(Action::AddContact(contact.clone())).await.unwrap();
    gw.event(|e| matches!(e, Event::ContactPresence { contact: c, presence } if *c == contact && presence.show == Show::Offline)).await;
    let raw = Raw::connect(inspircd(), &nick, &[]).await;
    gw.event(|e| matches!(e, Event::ContactPresence { contact: c, presence } if *c == contact && presence.show == Show::Available)).await;
    drop(raw);
    gw.event(|e| matches!(e, Event::ContactPresence { contact: c, presence } if *c == contact && presence.show == Show::Offline)).await;
}

#[tokio::test]
async fn list_rooms_of_a_server() {
    let chan = format!("#{}", unique("list"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    raw.send(&format!("TOPIC {chan} :listed topic")).await;
    raw.expect(|m| m.command == "TOPIC").await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let out = gw
        .act(Action::ListRooms {
            service: Some(ferry_bridge::ServiceId::new(INSP)),
        })
        .await
        .unwrap();
    let Outcome::Rooms(rooms) = out else {
        panic!("{out:?}")
    };
    let mine = rooms
        .iter()
        .find(|r| r.name.as_deref() == Some(chan.as_str()))
        .expect("listed");
    assert_eq!(mine.room, gw.room(&chan, INSP));
    assert_eq!(mine.topic.as_deref(), Some("listed topic"));
    assert_eq!(mine.occupants, Some(1));
}

fn call(node: &str, target: Option<Address>, stage: Option<String>, values: FormValues) -> Action {
    Action::Command(CommandCall {
        node: node.into(),
        target,
        stage,
        values,
        admin: false,
    })
}

#[tokio::test]
async fn server_commands_configure_info_and_disconnect() {
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    let chan = format!("#{}", unique("cmd"));
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let service = gw.service(INSP);

    // configure on the server: every biboumi field, correctly labelled.
    let out = gw
        .act(call(
            "configure",
            Some(service.clone()),
            None,
            FormValues::new(),
        ))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Form { form, stage, last }) = out else {
        panic!("{out:?}")
    };
    assert!(last);
    for var in [
        "address",
        "ports",
        "tls_ports",
        "verify_cert",
        "fingerprint",
        "sasl_password",
        "nick",
        "pass",
        "after_connect_commands",
        "username",
        "realname",
        "throttle_limit",
        "max_history_length",
        "encoding_out",
        "encoding_in",
    ] {
        assert!(form.get(var).is_some(), "field {var} missing");
    }
    assert_eq!(
        form.get("max_history_length").unwrap().display_label(),
        "Maximum history length"
    );
    assert_eq!(
        form.get("tls_ports").unwrap().kind,
        ferry_bridge::FieldKind::TextMulti
    );

    // Bad values are refused with the field's name.
    let bad = FormValues::new().with("ports", "sixty");
    let err = gw
        .act(call(
            "configure",
            Some(service.clone()),
            Some(stage.clone()),
            bad,
        ))
        .await
        .unwrap_err();
    assert!(err.message.contains("ports"), "{err}");
    let bad = FormValues::new().with("after_connect_commands", "JOIN #a\0");
    assert!(
        gw.act(call(
            "configure",
            Some(service.clone()),
            Some(stage.clone()),
            bad
        ))
        .await
        .is_err()
    );

    // A nick and an after-connect command, applied at the next connection.
    let nick = unique("cfg");
    let mut v = FormValues::new().with("nick", nick.clone());
    v.set(
        "after_connect_commands",
        vec![format!("PRIVMSG {} :connected!", raw.nick)],
    );
    v.set("ports", vec![inspircd().to_string()]);
    v.set("tls_ports", vec![]);
    let out = gw
        .act(call("configure", Some(service.clone()), Some(stage), v))
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Command(CommandReply::Done { .. })));
    let room = gw.room(&chan, INSP);
    let ev = gw.join(&room, "ignored").await;
    let Event::RoomJoined { nick: got, .. } = ev else {
        unreachable!()
    };
    assert_eq!(got, nick, "the configured nick wins over the join's");
    raw.expect(|m| m.command == "PRIVMSG" && m.trailing() == "connected!" && m.nick() == nick)
        .await;

    // get-irc-connection-info
    let out = gw
        .act(call(
            "get-irc-connection-info",
            Some(service.clone()),
            None,
            FormValues::new(),
        ))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Done {
        note: Some(note), ..
    }) = out
    else {
        panic!("{out:?}")
    };
    assert!(
        note.contains(&format!(
            "Connected to IRC server 127.0.0.1 on port {}",
            inspircd()
        )),
        "{note}"
    );
    assert!(
        note.contains("seconds ago") && note.contains(&chan),
        "{note}"
    );
    assert!(note.contains("plain text"), "{note}");

    // disconnect-from-irc-server on the gateway
    let out = gw
        .act(call(
            "disconnect-from-irc-server",
            None,
            None,
            FormValues::new(),
        ))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Form { form, stage, .. }) = out else {
        panic!("{out:?}")
    };
    let f = form.get("irc-servers").unwrap();
    assert_eq!(
        f.options
            .iter()
            .map(|o| o.value.as_str())
            .collect::<Vec<_>>(),
        vec![INSP]
    );
    let mut v = FormValues::new().with("quit-message", "see you");
    v.set("irc-servers", vec![INSP.into()]);
    gw.act(call("disconnect-from-irc-server", None, Some(stage), v))
        .await
        .unwrap();
    let q = raw
        .expect(|m| m.command == "QUIT" && m.nick() == nick)
        .await;
    assert!(q.trailing().contains("see you"), "{q:?}");
    let out = gw
        .act(call(
            "get-irc-connection-info",
            Some(service),
            None,
            FormValues::new(),
        ))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Done {
        note: Some(note), ..
    }) = out
    else {
        panic!()
    };
    assert!(note.contains("not connected"), "{note}");
}

#[tokio::test]
async fn global_and_channel_configure() {
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let out = gw
        .act(call("configure", None, None, FormValues::new()))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Form { form, stage, .. }) = out else {
        panic!()
    };
    assert_eq!(form.get("max_history_length").unwrap().values, vec!["20"]);
    assert!(form.get("record_history").is_some() && form.get("persistent").is_some());
    let v = FormValues::new()
        .with("max_history_length", "5")
        .with("record_history", "false");
    gw.act(call("configure", None, Some(stage), v))
        .await
        .unwrap();
    let room = gw.room(&format!("#{}", unique("cfg")), INSP);
    let ev = gw.join(&room, &unique("gw")).await;
    let Event::RoomJoined { info, .. } = ev else {
        unreachable!()
    };
    assert_eq!(info.history.on_join, 5);
    assert!(!info.history.record);
    // The channel's own setting wins.
    let out = gw
        .act(call(
            "configure",
            Some(Address::Room(room.clone())),
            None,
            FormValues::new(),
        ))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Form { stage, .. }) = out else {
        panic!()
    };
    let v = FormValues::new().with("record_history", "true");
    gw.act(call(
        "configure",
        Some(Address::Room(room.clone())),
        Some(stage),
        v,
    ))
    .await
    .unwrap();
    let ev = gw.event(|e| matches!(e, Event::RoomInfo(_))).await;
    let Event::RoomInfo(info) = ev else {
        unreachable!()
    };
    assert!(info.history.record);
    // Unknown nodes get a clear error.
    let err = gw
        .act(call("frobnicate", None, None, FormValues::new()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn an_admin_disconnect_quits_with_its_message() {
    let chan = format!("#{}", unique("quit"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    // As the core does it: the session's tasks are aborted, then close().
    gw.spawner.abort_all();
    gw.session
        .close(CloseReason::Disconnected(Some(
            "Kicked by the admin".into(),
        )))
        .await;
    let q = raw
        .expect(|m| m.command == "QUIT" && m.nick() == nick)
        .await;
    assert!(q.trailing().contains("Kicked by the admin"), "{q:?}");
}

#[tokio::test]
async fn a_k_line_ends_the_rooms_after_the_server_keeps_refusing() {
    // InspIRCd's operator K-lines the user: the rooms show the loss
    // (clients stay, waiting), Ferry tries again, the server refuses each
    // attempt (ERROR before 001), and after three refusals in a row the
    // rooms are told they cannot be joined again (the core then makes the
    // clients leave with 332) instead of waiting for ever.
    let mut oper = Raw::connect(inspircd(), &unique("op"), &[]).await;
    oper.send(&format!(
        "OPER {} {}",
        std::env::var("IRC_OPER_NAME").unwrap_or_else(|_| "oper".into()),
        std::env::var("IRC_OPER_PASSWORD").unwrap_or_else(|_| "operpw".into())
    ))
    .await;
    oper.expect(|m| m.command == "381").await;
    let local = unique("kl");
    let mut gw = Gw::new(
        Config {
            reconnect_max_delay: 2,
            ..config()
        },
        &format!("{local}@localhost"),
    )
    .await;
    let chan = format!("#{}", unique("kline"));
    let room = gw.room(&chan, INSP);
    gw.join(&room, &local).await;
    let user: String = local.chars().take(10).collect();
    let mask = format!("*{user}@127.0.0.1");
    oper.send(&format!("KLINE {mask} 300 :ferry test ban"))
        .await;
    let lost = gw
        .event(|e| {
            matches!(
                e,
                Event::RoomLeft {
                    exit: RoomExit::Disconnected(_),
                    ..
                }
            )
        })
        .await;
    let gave_up = gw
        .event_within(
            Duration::from_secs(60),
            |e| matches!(e, Event::RoomJoinFailed { room: r, .. } if *r == room),
        )
        .await;
    oper.send(&format!("KLINE {mask}")).await;
    let Some(Event::RoomJoinFailed { error, .. }) = gave_up else {
        panic!("the room was never ended after {lost:?}");
    };
    assert!(error.message.contains("refused"), "{error}");
    assert!(error.message.contains("ferry test ban"), "{error}");
    gw.event(
        |e| matches!(e, Event::ServicePresence { presence, .. } if presence.show == Show::Offline),
    )
    .await;
}

#[tokio::test]
async fn disconnecting_from_a_server_leaves_its_rooms() {
    let mut watcher = Raw::connect(inspircd(), &unique("w"), &[]).await;
    let local = unique("dis");
    let mut gw = Gw::new(config(), &format!("{local}@localhost")).await;
    let chan = format!("#{}", unique("dis"));
    watcher.join(&chan).await;
    let room = gw.room(&chan, INSP);
    gw.join(&room, &local).await;
    let out = gw
        .act(call(
            "disconnect-from-irc-server",
            None,
            None,
            FormValues::new(),
        ))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Form { stage, .. }) = out else {
        panic!("{out:?}")
    };
    let mut v = FormValues::new().with("quit-message", "see you");
    v.set("irc-servers", vec![INSP.into()]);
    gw.act(call("disconnect-from-irc-server", None, Some(stage), v))
        .await
        .unwrap();
    watcher
        .expect(|m| m.command == "QUIT" && m.trailing().contains("see you"))
        .await;
    let left = gw
        .event(|e| matches!(e, Event::RoomLeft { room: r, .. } if *r == room))
        .await;
    assert!(
        matches!(&left, Event::RoomLeft { exit: RoomExit::Left(Some(why)), .. } if why.contains("see you")),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_join_right_after_leaving_the_last_room_is_not_lost() {
    // Leaving the last room closes the connection (QUIT); a join at once
    // must not go to the connection that is ending.
    let local = unique("rj");
    let mut gw = Gw::new(config(), &format!("{local}@localhost")).await;
    let room = gw.room(&format!("#{}", unique("rj")), INSP);
    gw.join(&room, &local).await;
    gw.act(Action::LeaveRoom {
        room: room.clone(),
        reason: None,
    })
    .await
    .unwrap();
    gw.join(&room, &local).await;
}
