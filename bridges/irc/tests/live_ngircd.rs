//! Live tests on ngIRCd (few IRCv3 capabilities: no echo-message, no
//! labeled-response), including the server restarted in the middle of a
//! conversation. Every test here holds the "ngircd" lock: the restart
//! test takes the server away from everyone.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferry_bridge::{Action, Address, Event, Outcome, RoomExit, Sender};

async fn raw_ng(nick: &str) -> Raw {
    Raw::connect(ngircd(), nick, &[]).await
}

#[tokio::test]
async fn cold_join_and_chat_without_ircv3() {
    let _lock = exclusive("ngircd");
    let chan = format!("#{}", unique("ng"));
    let mut raw = raw_ng(&unique("raw")).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let room = gw.room(&chan, NG);
    let nick = unique("gw");
    let t0 = Instant::now();
    let ev = gw.join(&room, &nick).await;
    let cold = t0.elapsed();
    let Event::RoomJoined { occupants, .. } = ev else {
        unreachable!()
    };
    assert!(
        occupants
            .iter()
            .any(|o| o.nick == raw.nick && o.role == ferry_bridge::Role::Moderator)
    );
    assert!(cold < Duration::from_secs(2), "cold join took {cold:?}");

    // Without echo-message the send is answered at once, without an id.
    let out = gw
        .say(Address::Room(room.clone()), "hello ngircd")
        .await
        .unwrap();
    assert_eq!(out, Outcome::sent_none());
    raw.expect(|m| m.command == "PRIVMSG" && m.trailing() == "hello ngircd")
        .await;
    raw.send(&format!("PRIVMSG {chan} :hello gateway")).await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body == "hello gateway"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.from, Sender::Occupant(raw.nick.clone()));

    // Without labeled-response, a refused command is reported in the room.
    let out = gw
        .act(Action::Kick {
            room: room.clone(),
            nick: raw.nick.clone(),
            reason: None,
        })
        .await;
    assert_eq!(out, Ok(Outcome::Done));
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.from == Sender::Service && m.chat == Address::Room(room.clone())))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert!(
        m.body.contains("operator") || m.body.contains("privileges"),
        "{m:?}"
    );
}

#[tokio::test]
async fn server_restart_mid_conversation_rejoins_without_duplicates() {
    let _lock = exclusive("ngircd");
    let chan = format!("#{}", unique("rs"));
    let raw_nick = unique("raw");
    let mut raw = raw_ng(&raw_nick).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(
        Config {
            reconnect_max_delay: 2,
            ..config()
        },
        &format!("{}@localhost", unique("u")),
    )
    .await;
    let room = gw.room(&chan, NG);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    raw.send(&format!("PRIVMSG {chan} :before")).await;
    gw.event(|e| matches!(e, Event::Message(m) if m.body == "before"))
        .await;

    restart_peer("ngircd", 2);

    // The room shows the outage.
    let ev = gw.event(|e| matches!(e, Event::RoomLeft { .. })).await;
    let Event::RoomLeft { room: r, exit } = ev else {
        unreachable!()
    };
    assert_eq!(r, room);
    assert!(matches!(exit, RoomExit::Disconnected(_)), "{exit:?}");
    gw.event(|e| {
        matches!(
            e,
            Event::Connection(ferry_bridge::ConnectionState::Reconnecting(_))
        )
    })
    .await;
    // Sending to the room meanwhile is refused with a reason, not lost.
    let err = gw
        .say(Address::Room(room.clone()), "during")
        .await
        .unwrap_err();
    assert!(err.message.contains("not"), "{err}");

    // The other side comes back too.
    let mut raw = loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            Raw::connect(ngircd(), &raw_nick, &[]),
        )
        .await
        {
            Ok(r) => break r,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    raw.join(&chan).await;
    // The gateway reconnects and rejoins by itself.
    let ev = gw
        .event_within(Duration::from_secs(20), |e| {
            matches!(e, Event::RoomJoined { .. })
        })
        .await
        .expect("rejoined after the restart");
    let Event::RoomJoined { nick: n, .. } = ev else {
        unreachable!()
    };
    assert_eq!(n, nick);
    gw.event(|e| {
        matches!(
            e,
            Event::Connection(ferry_bridge::ConnectionState::Connected(_))
        )
    })
    .await;

    raw.send(&format!("PRIVMSG {chan} :after")).await;
    gw.event(|e| matches!(e, Event::Message(m) if m.body == "after"))
        .await;
    gw.say(Address::Room(room.clone()), "me too").await.unwrap();
    raw.expect(|m| m.command == "PRIVMSG" && m.trailing() == "me too")
        .await;
    // Nothing twice.
    let rest = gw.drain(Duration::from_millis(800)).await;
    let dup = rest
        .iter()
        .filter(|e| matches!(e, Event::Message(m) if m.body == "after" || m.body == "before"))
        .count();
    assert_eq!(dup, 0, "{rest:?}");
    assert!(
        raw.expect_within(Duration::from_millis(500), |m| m.command == "PRIVMSG"
            && m.trailing() == "me too")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn private_messages_wait_for_the_connection() {
    let _lock = exclusive("ngircd");
    let raw_nick = unique("raw");
    let mut raw = raw_ng(&raw_nick).await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let contact = gw.contact(&raw_nick, NG);
    // The first message opens the connection: it waits for registration.
    gw.say(Address::Contact(contact.clone()), "first words")
        .await
        .unwrap();
    let m = raw
        .expect(|m| m.command == "PRIVMSG" && m.trailing() == "first words")
        .await;
    raw.send(&format!("PRIVMSG {} :answer", m.nick())).await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body == "answer"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.chat, Address::Contact(contact));
}

use ferry_irc::Config;

#[tokio::test]
async fn outgoing_connections_use_the_bind_address() {
    // ngIRCd (no DNS) shows the address a client connects from: with
    // `outgoing_bind = 127.0.0.3` the gateway's user joins from there.
    let _lock = exclusive("ngircd");
    let chan = format!("#{}", unique("bind"));
    let mut raw = raw_ng(&unique("raw")).await;
    raw.join(&chan).await;
    let bind: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let mut gw = Gw::new(
        ferry_irc::Config {
            outgoing_bind: Some(bind),
            ..config()
        },
        &format!("{}@localhost", unique("u")),
    )
    .await;
    let room = gw.room(&chan, NG);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    let join = raw
        .expect(|m| m.command == "JOIN" && m.nick() == nick)
        .await;
    let host = join.source.as_ref().and_then(|s| s.host.clone());
    assert_eq!(host.as_deref(), Some("127.0.0.3"), "{join:?}");
}

#[tokio::test]
async fn a_nick_taken_during_a_restart_rejoins_under_another() {
    // The server restarts and someone takes the user's nick before Ferry
    // is back: Ferry registers under another nick and reports the rooms
    // joined with it (the core shows the change to the clients as 303).
    let _lock = exclusive("ngircd");
    let chan = format!("#{}", unique("nk"));
    let mut gw = Gw::new(
        Config {
            reconnect_max_delay: 5,
            ..config()
        },
        &format!("{}@localhost", unique("u")),
    )
    .await;
    let room = gw.room(&chan, NG);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    // 4 s down: the attempts after 1 s and 3 s (±20 %) fail, the next one
    // comes >= 1.4 s after the server is back, when the nick is taken.
    restart_peer("ngircd", 4);
    gw.event(|e| {
        matches!(
            e,
            Event::RoomLeft {
                exit: RoomExit::Disconnected(_),
                ..
            }
        )
    })
    .await;
    // Take the nick as soon as the server is back.
    let _squatter = loop {
        match tokio::time::timeout(Duration::from_secs(5), Raw::connect(ngircd(), &nick, &[])).await
        {
            Ok(r) => break r,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let ev = gw
        .event_within(
            Duration::from_secs(20),
            |e| matches!(e, Event::RoomJoined { info, .. } if info.room == room),
        )
        .await
        .expect("rejoined");
    let Event::RoomJoined { nick: now, .. } = ev else {
        unreachable!()
    };
    assert_ne!(now, nick);
    assert!(now.starts_with(&nick[..nick.len().min(5)]), "{now}");
}
