//! Live tests against the real InspIRCd (IRCv3 modules) and ngIRCd: a
//! session of the bridge on one side, a raw IRC client on the other.
//! Channels, messages both ways, hostile input, formatting, long lines.

mod common;

use std::time::Duration;

use common::*;
use ferry_bridge::{
    Action, Address, Color, Event, MessageKind, Outcome, OutgoingMessage, Rich, Role, Sender, Span,
    Style,
};

#[tokio::test]
async fn join_chat_both_ways_and_echo_ids() {
    let chan = format!("#{}", unique("chat"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), "alice@localhost").await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    let joined = gw.join(&room, &nick).await;
    let Event::RoomJoined {
        nick: got,
        occupants,
        info,
        ..
    } = joined
    else {
        unreachable!()
    };
    assert_eq!(got, nick);
    assert!(info.history.record);
    let me = occupants.iter().find(|o| o.is_self).expect("self occupant");
    assert_eq!(me.nick, nick);
    let op = occupants
        .iter()
        .find(|o| o.nick == raw.nick)
        .expect("raw client listed");
    // The raw client created the channel: op -> moderator/admin.
    assert_eq!(op.role, Role::Moderator);
    assert_eq!(op.affiliation, ferry_bridge::Affiliation::Admin);
    assert!(
        op.contact
            .as_ref()
            .unwrap()
            .as_str()
            .ends_with("%127.0.0.1")
    );
    raw.expect(|m| m.command == "JOIN" && m.nick() == nick)
        .await;

    // IRC -> XMPP
    raw.send(&format!("PRIVMSG {chan} :hello from irc")).await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body == "hello from irc"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.chat, Address::Room(room.clone()));
    assert_eq!(m.from, Sender::Occupant(raw.nick.clone()));
    assert!(m.id.is_some(), "InspIRCd gives a msgid");
    assert!(m.timestamp.is_none(), "live messages carry no delay");

    // XMPP -> IRC, answered with the server's msgid (echo-message).
    let out = gw
        .say(Address::Room(room.clone()), "hello from xmpp")
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Sent(ref ids) if ids.len() == 1),
        "{out:?}"
    );
    let got = raw
        .expect(|m| m.command == "PRIVMSG" && m.nick() == nick)
        .await;
    assert_eq!(got.params, vec![chan.clone(), "hello from xmpp".into()]);
    // The echo is not reported as a new message.
    assert!(
        gw.event_within(
            Duration::from_millis(500),
            |e| matches!(e, Event::Message(m) if m.body == "hello from xmpp")
        )
        .await
        .is_none()
    );

    // Leave: PART on IRC.
    gw.act(Action::LeaveRoom {
        room: room.clone(),
        reason: Some("bye now".into()),
    })
    .await
    .unwrap();
    let part = raw
        .expect(|m| m.command == "PART" && m.nick() == nick)
        .await;
    assert_eq!(part.param(1), "bye now");
}

#[tokio::test]
async fn crlf_injection_never_reaches_the_wire_as_commands() {
    let chan = format!("#{}", unique("crlf"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), "mallory@localhost").await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    raw.expect(|m| m.command == "JOIN" && m.nick() == nick)
        .await;

    gw.say(
        Address::Room(room.clone()),
        "first\r\nQUIT :pwned\rPART #x\n\0KICK",
    )
    .await
    .unwrap();
    let msgs = raw.collect(Duration::from_millis(1500)).await;
    let from_gw: Vec<_> = msgs.iter().filter(|m| m.nick() == nick).collect();
    let texts: Vec<&str> = from_gw.iter().map(|m| m.trailing()).collect();
    assert!(
        from_gw.iter().all(|m| m.command == "PRIVMSG"),
        "only PRIVMSG: {from_gw:?}"
    );
    assert_eq!(texts, vec!["first", "QUIT :pwned", "PART #x", "KICK"]);
    // Still in the channel.
    gw.say(Address::Room(room.clone()), "still here")
        .await
        .unwrap();
    raw.expect(|m| m.command == "PRIVMSG" && m.trailing() == "still here")
        .await;

    // A topic with line breaks stays one command. Not an op yet:
    // the server's refusal comes back as the answer.
    let err = gw
        .act(Action::SetSubject {
            room: room.clone(),
            subject: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ferry_bridge::ErrorKind::NotAllowed, "{err}");
    raw.send(&format!("MODE {chan} -t")).await;
    raw.expect(|m| m.command == "MODE").await;
    gw.act(Action::SetSubject {
        room: room.clone(),
        subject: "a\r\nQUIT :x".into(),
    })
    .await
    .unwrap();
    let t = raw.expect(|m| m.command == "TOPIC").await;
    assert_eq!(t.trailing(), "a QUIT :x");

    // Raw commands to the server JID: a NUL is refused with a reason.
    let err = gw.say(gw.service(INSP), "WHOIS x\0QUIT").await.unwrap_err();
    assert!(
        err.message.contains("NUL") || err.message.contains("line break"),
        "{err}"
    );
}

#[tokio::test]
async fn control_characters_and_latin1_from_irc_are_cleaned() {
    let chan = format!("#{}", unique("enc"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), "alice@localhost").await;
    let room = gw.room(&chan, INSP);
    gw.join(&room, &unique("gw")).await;

    let mut line = format!("PRIVMSG {chan} :bell\x07 caf").into_bytes();
    line.extend_from_slice(b"\xe9 cr\xe8me \x01odd\x1b[0m");
    raw.send_bytes(&line).await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body.starts_with("bell")))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.body, "bell café crème odd[0m");
    assert!(m.body.chars().all(|c| !c.is_control()));
}

#[tokio::test]
async fn a_2000_character_message_is_split_to_fit_the_line() {
    let chan = format!("#{}", unique("long"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), "alice@localhost").await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    raw.expect(|m| m.command == "JOIN" && m.nick() == nick)
        .await;

    // Multi-byte characters and no spaces: cut on character boundaries.
    let body: String = "aé€😀".repeat(500);
    assert_eq!(body.chars().count(), 2000);
    gw.say(Address::Room(room.clone()), &body).await.unwrap();
    let mut got = String::new();
    let mut lines = 0;
    while got.chars().count() < 2000 {
        let m = raw
            .expect(|m| m.command == "PRIVMSG" && m.nick() == nick)
            .await;
        got.push_str(m.trailing());
        lines += 1;
    }
    assert_eq!(got, body);
    assert!(lines >= 11, "{lines} lines");
    // Every relayed line fits in 512 bytes, prefix included.
    for l in raw
        .log
        .iter()
        .filter(|l| l.windows(7).any(|w| w == b"PRIVMSG"))
    {
        assert!(l.len() <= 512, "line of {} bytes", l.len());
    }
    // Words are cut at spaces.
    let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
    gw.say(Address::Room(room.clone()), &words.join(" "))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 400 {
        let m = raw
            .expect(|m| m.command == "PRIVMSG" && m.nick() == nick)
            .await;
        seen.extend(m.trailing().split(' ').map(str::to_owned));
    }
    assert_eq!(seen, words);
}

#[tokio::test]
async fn multi_line_bodies_become_several_lines() {
    let chan = format!("#{}", unique("ml"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), "alice@localhost").await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    gw.say(Address::Room(room.clone()), "one\ntwo\n\nfour\n")
        .await
        .unwrap();
    for want in ["one", "two", " ", "four"] {
        let m = raw
            .expect(|m| m.command == "PRIVMSG" && m.nick() == nick)
            .await;
        assert_eq!(m.trailing(), want);
    }
    let err = gw
        .say(Address::Room(room.clone()), "\n \n")
        .await
        .unwrap_err();
    assert!(err.message.contains("empty"));
}

#[tokio::test]
async fn formatting_both_ways_and_emotes_and_notices() {
    let chan = format!("#{}", unique("fmt"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), "alice@localhost").await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;

    raw.send(&format!(
        "PRIVMSG {chan} :\x02bold\x02 \x0304red\x03 \x1ditalic"
    ))
    .await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body == "bold red italic"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    let rich = m.rich.expect("formatting kept");
    assert!(rich.spans[0].style.bold);
    assert_eq!(rich.spans[2].style.fg, Some(Color(255, 0, 0)));
    assert!(rich.spans[4].style.italic);

    raw.send(&format!("PRIVMSG {chan} :\x01ACTION waves\x01"))
        .await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.kind == MessageKind::Emote))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.body, "waves");

    raw.send(&format!("NOTICE {chan} :a notice")).await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.kind == MessageKind::Notice))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.body, "a notice");

    // XMPP -> IRC: rich text becomes control codes.
    let mut out = OutgoingMessage::text(Address::Room(room.clone()), "x1", "bold and red");
    out.rich = Some(Rich {
        spans: vec![
            Span {
                text: "bold".into(),
                style: Style {
                    bold: true,
                    ..Style::default()
                },
            },
            Span {
                text: " and ".into(),
                style: Style::default(),
            },
            Span {
                text: "red".into(),
                style: Style {
                    fg: Some(Color(255, 0, 0)),
                    ..Style::default()
                },
            },
        ],
    });
    gw.act(Action::SendMessage(out)).await.unwrap();
    let m = raw
        .expect(|m| m.command == "PRIVMSG" && m.nick() == nick)
        .await;
    assert_eq!(m.trailing(), "\x02bold\x02 and \x0304red");

    // /me and NOTICE from XMPP.
    let mut me = OutgoingMessage::text(Address::Room(room.clone()), "x2", "dances");
    me.kind = MessageKind::Emote;
    gw.act(Action::SendMessage(me)).await.unwrap();
    let m = raw
        .expect(|m| m.command == "PRIVMSG" && m.nick() == nick)
        .await;
    assert_eq!(m.trailing(), "\x01ACTION dances\x01");
    let mut n = OutgoingMessage::text(Address::Room(room.clone()), "x3", "notice from xmpp");
    n.kind = MessageKind::Notice;
    gw.act(Action::SendMessage(n)).await.unwrap();
    let m = raw
        .expect(|m| m.command == "NOTICE" && m.nick() == nick)
        .await;
    assert_eq!(m.trailing(), "notice from xmpp");
}

#[tokio::test]
async fn private_messages_both_ways_and_ctcp() {
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    let local = unique("u");
    let mut gw = Gw::new(config(), &format!("{local}@localhost")).await;
    let contact = gw.contact(&raw.nick, INSP);
    // Writing to a contact opens the connection.
    gw.say(Address::Contact(contact.clone()), "psst")
        .await
        .unwrap();
    let m = raw
        .expect(|m| m.command == "PRIVMSG" && m.trailing() == "psst")
        .await;
    let gw_nick = m.nick().to_owned();
    assert_eq!(gw_nick, local, "nick derived from the JID");

    raw.send(&format!("PRIVMSG {gw_nick} :psst back")).await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body == "psst back"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.chat, Address::Contact(contact.clone()));
    assert_eq!(m.from, Sender::Contact(contact.clone()));

    // CTCP answered by the bridge.
    raw.send(&format!("PRIVMSG {gw_nick} :\x01VERSION\x01"))
        .await;
    let v = raw
        .expect(|m| m.command == "NOTICE" && m.trailing().starts_with("\x01VERSION"))
        .await;
    assert!(v.trailing().contains("Ferry"), "{v:?}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    raw.send(&format!("PRIVMSG {gw_nick} :\x01PING 12345\x01"))
        .await;
    raw.expect(|m| m.command == "NOTICE" && m.trailing() == "\x01PING 12345\x01")
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    raw.send(&format!("PRIVMSG {gw_nick} :\x01TIME\x01")).await;
    raw.expect(|m| m.command == "NOTICE" && m.trailing().starts_with("\x01TIME "))
        .await;

    // XMPP version query -> CTCP VERSION, answered by the raw client.
    let (out, _) = tokio::join!(
        gw.act(Action::QueryVersion(Address::Contact(contact.clone()))),
        raw.expect(|m| m.command == "PRIVMSG" && m.trailing() == "\x01VERSION\x01"),
    );
    let out = out.unwrap();
    assert_eq!(
        out,
        Outcome::Version {
            name: "rawclient".into(),
            version: "1.0".into(),
            os: None
        }
    );
    // A ping to someone who does not exist fails clearly.
    let ghost = gw.contact("nobody-here-x", INSP);
    let err = gw
        .act(Action::Ping(Address::Contact(ghost)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ferry_bridge::ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn raw_commands_and_numerics_through_the_server_jid() {
    let raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    let mut gw = Gw::new(config(), "alice@localhost").await;
    let service = gw.service(INSP);
    gw.say(service.clone(), &format!("WHOIS {}", raw.nick))
        .await
        .unwrap();
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.chat == Address::Service(ferry_bridge::ServiceId::new(INSP)) && m.body.contains("raw test client")))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.from, Sender::Service);
    // The server's presence went online.
    gw.event(|e| matches!(e, Event::ServicePresence { presence, .. } if presence.show == ferry_bridge::Show::Available)).await;
    // An unknown command comes back as an error from the server.
    gw.say(service.clone(), "FROBNICATE").await.unwrap();
    gw.event(|e| matches!(e, Event::Message(m) if m.body.contains("421") || m.body.contains("Unknown command"))).await;
    drop(raw);
}

#[tokio::test]
async fn typing_replies_and_reactions_travel_as_client_tags() {
    let chan = format!("#{}", unique("tags"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &["message-tags"]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    raw.expect(|m| m.command == "JOIN" && m.nick() == nick)
        .await;

    // IRC -> XMPP: +typing and +draft/reply.
    raw.send(&format!("@+typing=active TAGMSG {chan}")).await;
    let ev = gw.event(|e| matches!(e, Event::ChatState { .. })).await;
    assert!(
        matches!(
            ev,
            Event::ChatState {
                state: ferry_bridge::ChatState::Composing,
                ..
            }
        ),
        "{ev:?}"
    );
    let out = gw
        .say(Address::Room(room.clone()), "original")
        .await
        .unwrap();
    let Some(id) = out.clone().sent_id() else {
        panic!("{out:?}")
    };
    raw.send(&format!(
        "@+draft/reply={} PRIVMSG {chan} :an answer",
        id.as_str()
    ))
    .await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body == "an answer"))
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.reply_to.map(|r| r.id), Some(id.clone()));

    // XMPP -> IRC: typing, and a reply.
    gw.act(Action::ChatState {
        chat: Address::Room(room.clone()),
        state: ferry_bridge::ChatState::Composing,
    })
    .await
    .unwrap();
    let t = raw
        .expect(|m| m.command == "TAGMSG" && m.nick() == nick)
        .await;
    assert_eq!(t.tag("+typing"), Some("active"));
    let mut reply = OutgoingMessage::text(Address::Room(room.clone()), "r1", "replying");
    reply.reply_to = Some(ferry_bridge::ReplyTo {
        id: id.clone(),
        author: None,
        quote: None,
    });
    gw.act(Action::SendMessage(reply)).await.unwrap();
    let m = raw
        .expect(|m| m.command == "PRIVMSG" && m.trailing() == "replying")
        .await;
    assert_eq!(m.tag("+draft/reply"), Some(id.as_str()));

    // +draft/react both ways (InspIRCd relays client tags in TAGMSG).
    raw.send(&format!(
        "@+draft/react=👍;+draft/reply={} TAGMSG {chan}",
        id.as_str()
    ))
    .await;
    let ev = gw.event(|e| matches!(e, Event::Reactions { .. })).await;
    let Event::Reactions {
        from,
        target,
        emojis,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(from, ferry_bridge::Sender::Occupant(raw.nick.clone()));
    assert_eq!(target, id);
    assert_eq!(emojis, vec!["👍".to_owned()]);
    raw.send(&format!("PRIVMSG {chan} :react to me")).await;
    let ev = gw
        .event(|e| matches!(e, Event::Message(m) if m.body == "react to me"))
        .await;
    let Event::Message(theirs) = ev else {
        unreachable!()
    };
    let their_id = theirs.id.clone().expect("InspIRCd gives msgids");
    gw.act(Action::React {
        chat: Address::Room(room.clone()),
        target: their_id.clone(),
        emojis: vec!["🎉".into()],
    })
    .await
    .unwrap();
    let t = raw
        .expect(|m| m.command == "TAGMSG" && m.nick() == nick && m.tag("+draft/react").is_some())
        .await;
    assert_eq!(t.tag("+draft/react"), Some("🎉"));
    assert_eq!(t.tag("+draft/reply"), Some(their_id.as_str()));
}
