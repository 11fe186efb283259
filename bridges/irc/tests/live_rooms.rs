//! Live tests of channel life: topic, kicks, nick changes, modes <->
//! roles/affiliations, bans, invitations, away, multi-prefix NAMES, keys,
//! two joins of one user behind one nick, persistent channels.

mod common;

use std::time::Duration;

use common::*;
use ferry_bridge::{
    Action, Address, Affiliation, ErrorKind, Event, Presence, Role, RoomExit, Sender, Show,
};

/// A channel created by the raw client (op), with the gateway joined.
async fn setup(tag: &str) -> (Raw, Gw, String, ferry_bridge::RoomId, String) {
    let chan = format!("#{}", unique(tag));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &["multi-prefix", "away-notify"]).await;
    raw.join(&chan).await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let room = gw.room(&chan, INSP);
    let nick = unique("gw");
    gw.join(&room, &nick).await;
    raw.expect(|m| m.command == "JOIN" && m.nick() == nick)
        .await;
    (raw, gw, chan, room, nick)
}

#[tokio::test]
async fn topic_both_ways() {
    let (mut raw, mut gw, chan, room, nick) = setup("topic").await;
    raw.send(&format!("TOPIC {chan} :\x02new\x02 topic")).await;
    let ev = gw.event(|e| matches!(e, Event::Subject { .. })).await;
    let Event::Subject { room: r, subject } = ev else {
        unreachable!()
    };
    assert_eq!(r, room);
    assert_eq!(subject.text, "new topic");
    assert_eq!(subject.by.as_deref(), Some(raw.nick.as_str()));

    raw.send(&format!("MODE {chan} +o {nick}")).await;
    gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.is_self && occupant.role == Role::Moderator)).await;
    gw.act(Action::SetSubject {
        room: room.clone(),
        subject: "from xmpp".into(),
    })
    .await
    .unwrap();
    let t = raw
        .expect(|m| m.command == "TOPIC" && m.nick() == nick)
        .await;
    assert_eq!(t.trailing(), "from xmpp");
    // The existing topic is part of the join of a second user.
    let mut gw2 = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let ev = gw2.join(&room, &unique("gw")).await;
    let Event::RoomJoined { subject, .. } = ev else {
        unreachable!()
    };
    assert_eq!(subject.text, "from xmpp");
    assert_eq!(subject.by.as_deref(), Some(nick.as_str()));
}

#[tokio::test]
async fn kicks_both_ways() {
    let (mut raw, mut gw, chan, room, nick) = setup("kick").await;
    // XMPP kick without op rights: the server's refusal is the answer.
    let err = gw
        .act(Action::Kick {
            room: room.clone(),
            nick: raw.nick.clone(),
            reason: Some("go".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotAllowed);

    // A third person, kicked by the raw op.
    let mut other = Raw::connect(inspircd(), &unique("oth"), &[]).await;
    other.join(&chan).await;
    gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.nick == other.nick))
        .await;
    raw.send(&format!("KICK {chan} {} :behave", other.nick))
        .await;
    let ev = gw
        .event(|e| matches!(e, Event::OccupantLeft { nick, .. } if *nick == other.nick))
        .await;
    let Event::OccupantLeft { exit, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        exit,
        RoomExit::Kicked {
            by: Some(raw.nick.clone()),
            reason: Some("behave".into())
        }
    );

    // Op the gateway, then kick from XMPP (role none).
    raw.send(&format!("MODE {chan} +o {nick}")).await;
    gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.is_self && occupant.role == Role::Moderator)).await;
    other.join(&chan).await;
    gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.nick == other.nick))
        .await;
    gw.act(Action::SetRole {
        room: room.clone(),
        nick: other.nick.clone(),
        role: Role::None,
        reason: Some("out".into()),
    })
    .await
    .unwrap();
    let k = other
        .expect(|m| m.command == "KICK" && m.nick() == nick)
        .await;
    assert_eq!((k.param(1), k.param(2)), (other.nick.as_str(), "out"));

    // The gateway kicked by IRC: the room is left with the reason.
    raw.send(&format!("KICK {chan} {nick} :you too")).await;
    let ev = gw.event(|e| matches!(e, Event::RoomLeft { .. })).await;
    let Event::RoomLeft { room: r, exit } = ev else {
        unreachable!()
    };
    assert_eq!(r, room);
    assert_eq!(
        exit,
        RoomExit::Kicked {
            by: Some(raw.nick.clone()),
            reason: Some("you too".into())
        }
    );
}

#[tokio::test]
async fn nick_changes_both_ways_and_conflicts() {
    let (mut raw, mut gw, _chan, room, nick) = setup("nick").await;
    let new_raw = unique("ren");
    let old = raw.nick.clone();
    raw.send(&format!("NICK {new_raw}")).await;
    let echo = raw
        .expect(|m| m.command == "NICK" || m.command.starts_with('4'))
        .await;
    assert_eq!(echo.command, "NICK", "{echo:?}");
    let ev = gw.event(|e| matches!(e, Event::NickChanged { .. })).await;
    assert_eq!(
        ev,
        Event::NickChanged {
            room: room.clone(),
            old,
            new: new_raw.clone()
        }
    );
    raw.nick = new_raw.clone();

    let mine = unique("me");
    gw.act(Action::ChangeNick {
        room: room.clone(),
        nick: mine.clone(),
    })
    .await
    .unwrap();
    let n = raw
        .expect(|m| m.command == "NICK" && m.nick() == nick)
        .await;
    assert_eq!(n.param(0), mine);
    gw.event(|e| matches!(e, Event::NickChanged { new, .. } if *new == mine))
        .await;

    // Taken nickname: conflict.
    let err = gw
        .act(Action::ChangeNick {
            room: room.clone(),
            nick: new_raw.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    // Invalid nickname: refused before reaching IRC.
    let err = gw
        .act(Action::ChangeNick {
            room: room.clone(),
            nick: "bad nick".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
}

#[tokio::test]
async fn modes_map_to_roles_and_back() {
    let (mut raw, mut gw, chan, room, nick) = setup("mode").await;
    raw.send(&format!("MODE {chan} +v {nick}")).await;
    let ev = gw
        .event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.is_self))
        .await;
    let Event::Occupant { occupant, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        (occupant.affiliation, occupant.role),
        (Affiliation::Member, Role::Participant)
    );
    // The mode change is shown in the room.
    gw.event(
        |e| matches!(e, Event::Message(m) if m.from == Sender::Service && m.body.contains("+v")),
    )
    .await;
    raw.send(&format!("MODE {chan} +o {nick}")).await;
    let ev = gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.is_self && occupant.role == Role::Moderator)).await;
    let Event::Occupant { occupant, .. } = ev else {
        unreachable!()
    };
    assert_eq!(occupant.affiliation, Affiliation::Admin);

    // XMPP affiliation/role changes become MODE.
    let mut other = Raw::connect(inspircd(), &unique("oth"), &[]).await;
    other.join(&chan).await;
    gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.nick == other.nick))
        .await;
    gw.act(Action::SetAffiliation {
        room: room.clone(),
        target: Address::Occupant {
            room: room.clone(),
            nick: other.nick.clone(),
        },
        affiliation: Affiliation::Member,
        reason: None,
    })
    .await
    .unwrap();
    let m = raw
        .expect(|m| m.command == "MODE" && m.nick() == nick)
        .await;
    assert_eq!(m.param(1), "+v");
    gw.act(Action::SetAffiliation {
        room: room.clone(),
        target: Address::Occupant {
            room: room.clone(),
            nick: other.nick.clone(),
        },
        affiliation: Affiliation::Admin,
        reason: None,
    })
    .await
    .unwrap();
    let m = raw
        .expect(|m| m.command == "MODE" && m.nick() == nick && m.param(1).contains('o'))
        .await;
    assert_eq!(m.param(1), "+o");
    gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.nick == other.nick && occupant.affiliation == Affiliation::Admin)).await;
    gw.act(Action::SetRole {
        room: room.clone(),
        nick: other.nick.clone(),
        role: Role::Visitor,
        reason: None,
    })
    .await
    .unwrap();
    let m = raw
        .expect(|m| m.command == "MODE" && m.nick() == nick && m.param(1).starts_with('-'))
        .await;
    assert_eq!(m.param(1), "-v");

    // Ban: +b on the host, then a kick.
    gw.act(Action::SetAffiliation {
        room: room.clone(),
        target: Address::Occupant {
            room: room.clone(),
            nick: other.nick.clone(),
        },
        affiliation: Affiliation::Outcast,
        reason: Some("banned".into()),
    })
    .await
    .unwrap();
    let b = raw
        .expect(|m| m.command == "MODE" && m.param(1) == "+b")
        .await;
    assert_eq!(b.param(2), "*!*@127.0.0.1");
    let k = raw.expect(|m| m.command == "KICK").await;
    assert_eq!(k.param(1), other.nick);
    other.send(&format!("JOIN {chan}")).await;
    other.expect(|m| m.command == "474").await;
}

#[tokio::test]
async fn invites_both_ways() {
    let (mut raw, mut gw, chan, room, nick) = setup("inv").await;
    let mut other = Raw::connect(inspircd(), &unique("oth"), &[]).await;
    // Not an op: the server refuses, and says why.
    let err = gw
        .act(Action::Invite {
            room: room.clone(),
            invitee: Address::Contact(gw.contact(&other.nick, INSP)),
            reason: None,
        })
        .await
        .unwrap_err();
    assert!(err.message.contains("op"), "{err}");
    raw.send(&format!("MODE {chan} +o {nick}")).await;
    gw.event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.is_self && occupant.role == Role::Moderator)).await;
    gw.act(Action::Invite {
        room: room.clone(),
        invitee: Address::Contact(gw.contact(&other.nick, INSP)),
        reason: None,
    })
    .await
    .unwrap();
    let i = other.expect(|m| m.command == "INVITE").await;
    assert_eq!((i.nick(), i.param(1)), (nick.as_str(), chan.as_str()));
    // invite-notify: someone else's invitation shows in the room.
    raw.send(&format!("INVITE {} {chan}", other.nick)).await;
    let expected = format!("{} invited {} to {chan}", raw.nick, other.nick);
    gw.event(|e| matches!(e, Event::Message(m) if m.body == expected && m.from == Sender::Service))
        .await;

    let chan2 = format!("#{}", unique("inv2"));
    raw.join(&chan2).await;
    raw.send(&format!("INVITE {nick} {chan2}")).await;
    let ev = gw.event(|e| matches!(e, Event::Invited { .. })).await;
    let Event::Invited { room: r, from, .. } = ev else {
        unreachable!()
    };
    assert_eq!(r, gw.room(&chan2, INSP));
    assert_eq!(from, Some(Sender::Contact(gw.contact(&raw.nick, INSP))));
}

#[tokio::test]
async fn away_both_ways() {
    let (mut raw, mut gw, chan, _room, nick) = setup("away").await;
    gw.act(Action::SetPresence(Presence {
        show: Show::Away,
        status: Some("lunch".into()),
        last_active: None,
    }))
    .await
    .unwrap();
    let a = raw
        .expect(|m| m.command == "AWAY" && m.nick() == nick)
        .await;
    assert_eq!(a.trailing(), "lunch");
    gw.act(Action::SetPresence(Presence::available()))
        .await
        .unwrap();
    let a = raw
        .expect(|m| m.command == "AWAY" && m.nick() == nick)
        .await;
    assert!(a.params.is_empty());

    raw.send("AWAY :brb").await;
    let ev = gw
        .event(|e| matches!(e, Event::Occupant { occupant, .. } if occupant.presence.show == Show::Away))
        .await;
    let Event::Occupant { occupant, .. } = ev else {
        unreachable!()
    };
    assert_eq!(occupant.nick, raw.nick);
    assert_eq!(occupant.presence.status.as_deref(), Some("brb"));
    let _ = chan;
}

#[tokio::test]
async fn keyed_channels_need_the_password() {
    let chan = format!("#{}", unique("key"));
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.join(&chan).await;
    raw.send(&format!("MODE {chan} +k sesame")).await;
    raw.expect(|m| m.command == "MODE").await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let room = gw.room(&chan, INSP);
    gw.act(Action::JoinRoom {
        room: room.clone(),
        nick: unique("gw"),
        password: None,
    })
    .await
    .unwrap();
    let ev = gw
        .event(|e| matches!(e, Event::RoomJoinFailed { .. }))
        .await;
    let Event::RoomJoinFailed { error, .. } = ev else {
        unreachable!()
    };
    assert_eq!(error.kind, ErrorKind::NotAuthorized);
    assert!(error.message.contains("key"), "{error}");
    gw.act(Action::JoinRoom {
        room: room.clone(),
        nick: unique("gw"),
        password: Some("sesame".into()),
    })
    .await
    .unwrap();
    let ev = gw.event(|e| matches!(e, Event::RoomJoined { .. })).await;
    let Event::RoomJoined { info, .. } = ev else {
        unreachable!()
    };
    assert!(info.password_protected);
}

#[tokio::test]
async fn two_joins_share_one_nick_and_one_join() {
    let (mut raw, mut gw, _chan, room, nick) = setup("tworesources").await;
    // The core joins again (a second client): same nick, reported again,
    // no second JOIN on IRC.
    let ev = gw.join(&room, "othernick").await;
    let Event::RoomJoined {
        nick: n, occupants, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(n, nick);
    assert_eq!(occupants.iter().filter(|o| o.is_self).count(), 1);
    assert!(
        raw.expect_within(Duration::from_millis(800), |m| (m.command == "JOIN"
            || m.command == "NICK")
            && m.nick() == nick)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn persistent_channels_stay_joined_and_keep_reporting() {
    let (mut raw, mut gw, chan, room, nick) = setup("persist").await;
    // Make it persistent through the channel's configure command.
    let call = |stage: Option<&str>, values: ferry_bridge::FormValues| {
        Action::Command(ferry_bridge::CommandCall {
            node: "configure".into(),
            target: Some(Address::Room(room.clone())),
            stage: stage.map(str::to_owned),
            values,
            admin: false,
        })
    };
    let first = gw.act(call(None, Default::default())).await.unwrap();
    let ferry_bridge::Outcome::Command(ferry_bridge::CommandReply::Form { form, stage, .. }) =
        first
    else {
        panic!("{first:?}")
    };
    assert!(form.get("persistent").is_some() && form.get("record_history").is_some());
    gw.act(call(
        Some(&stage),
        ferry_bridge::FormValues::new().with("persistent", "true"),
    ))
    .await
    .unwrap();
    gw.act(Action::LeaveRoom {
        room: room.clone(),
        reason: None,
    })
    .await
    .unwrap();
    assert!(
        raw.expect_within(Duration::from_millis(800), |m| m.command == "PART"
            && m.nick() == nick)
            .await
            .is_none()
    );
    raw.send(&format!("PRIVMSG {chan} :while you were away"))
        .await;
    gw.event(|e| matches!(e, Event::Message(m) if m.body == "while you were away"))
        .await;
    // Coming back: reported at once, no new JOIN.
    let ev = gw.join(&room, &nick).await;
    assert!(matches!(ev, Event::RoomJoined { .. }));
}
