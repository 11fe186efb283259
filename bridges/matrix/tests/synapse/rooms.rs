//! Group rooms: invitations both ways, joining (by id and by alias),
//! occupants with power levels as roles and affiliations, subject and name
//! both ways, kicks and bans both ways, nickname changes, room list.

use ferry_bridge::{
    Action, Address, Affiliation, CommandCall, CommandReply, ContactId, Event, FormValues,
    Occupant, Outcome, Role, RoomExit, RoomId, Sender,
};
use matrix_sdk::Room;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedUserId, RoomId as MxRoomId};

use crate::common::{self, Ferry, Peer};

fn uid(s: &str) -> OwnedUserId {
    s.try_into().expect("user id")
}

/// Bob creates a room with a name, a topic and power levels, inviting
/// `invite`.
pub async fn create_room(
    bob: &Peer,
    name: &str,
    invite: &[&str],
    levels: serde_json::Value,
    alias: Option<&str>,
) -> Room {
    let mut req = create_room::v3::Request::new();
    req.name = Some(name.to_owned());
    req.topic = Some("first topic".into());
    req.invite = invite.iter().map(|u| uid(u)).collect();
    req.room_alias_name = alias.map(str::to_owned);
    req.power_level_content_override = Some(Raw::from_json(
        serde_json::value::to_raw_value(&levels).expect("json"),
    ));
    bob.client.create_room(req).await.expect("create room")
}

fn occupant<'a>(list: &'a [Occupant], user: &str) -> &'a Occupant {
    list.iter()
        .find(|o| o.contact.as_ref().map(|c| c.as_str()) == Some(user))
        .unwrap_or_else(|| panic!("{user} not among {list:?}"))
}

#[tokio::test]
async fn room_with_power_levels_both_ways() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let carol = Peer::new("carol").await;
    // Bob created the room: owner (in room version 12 creators are above
    // every power level and must not be listed).
    let levels = serde_json::json!({
        "users": {
            alice.user_id.as_str(): 50,
        }
    });
    let room = create_room(
        &bob,
        "Test room",
        &[&alice.user_id, carol.user_id.as_str()],
        levels,
        None,
    )
    .await;
    let rid = RoomId::new(room.room_id().as_str());

    // A Matrix invitation becomes an invitation the user accepts by joining.
    let inv = alice
        .take(
            "the invitation",
            |e| matches!(e, Event::Invited { room, .. } if *room == rid),
        )
        .await;
    let Event::Invited { from, .. } = inv else {
        unreachable!()
    };
    assert_eq!(
        from,
        Some(Sender::Contact(ContactId::new(bob.user_id.as_str())))
    );
    assert_eq!(
        alice
            .act(Action::JoinRoom {
                room: rid.clone(),
                nick: "whatever".into(),
                password: None,
            })
            .await
            .expect("join"),
        Outcome::Done
    );
    let joined = alice
        .take(
            "RoomJoined",
            |e| matches!(e, Event::RoomJoined { info, .. } if info.room == rid),
        )
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
    assert_eq!(info.name.as_deref(), Some("Test room"));
    assert_eq!(subject.text, "first topic");
    let me = occupant(&occupants, &alice.user_id);
    assert!(me.is_self);
    assert_eq!(me.nick, nick);
    assert_eq!(
        (me.role, me.affiliation),
        (Role::Moderator, Affiliation::Admin),
        "power level 50"
    );
    let b = occupant(&occupants, bob.user_id.as_str());
    assert_eq!(
        (b.role, b.affiliation),
        (Role::Moderator, Affiliation::Owner)
    );
    let bob_nick = b.nick.clone();

    // Carol joins: a participant.
    carol.accept(room.room_id()).await;
    let ev = alice
        .take("carol's arrival", |e| {
            matches!(e, Event::Occupant { occupant, .. }
                if occupant.contact.as_ref().map(|c| c.as_str()) == Some(carol.user_id.as_str()))
        })
        .await;
    let Event::Occupant { occupant: c, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        (c.role, c.affiliation),
        (Role::Participant, Affiliation::Member)
    );
    let carol_nick = c.nick.clone();

    // Bob raises Carol to power level 50: she becomes admin.
    room.update_power_levels(vec![(&carol.user_id, 50.into())])
        .await
        .expect("power levels");
    alice
        .take("carol promoted", |e| {
            matches!(e, Event::Occupant { occupant, .. }
                if occupant.nick == carol_nick && occupant.affiliation == Affiliation::Admin
                    && occupant.role == Role::Moderator)
        })
        .await;

    // And back down.
    room.update_power_levels(vec![(&carol.user_id, 0.into())])
        .await
        .expect("power levels");
    alice
        .take("carol demoted", |e| {
            matches!(e, Event::Occupant { occupant, .. }
                if occupant.nick == carol_nick && occupant.affiliation == Affiliation::Member
                    && occupant.role == Role::Participant)
        })
        .await;

    // Topic both ways.
    room.set_room_topic("second topic").await.expect("topic");
    let ev = alice
        .take(
            "the new subject",
            |e| matches!(e, Event::Subject { subject, .. } if subject.text == "second topic"),
        )
        .await;
    let Event::Subject { subject, .. } = ev else {
        unreachable!()
    };
    assert_eq!(subject.by.as_deref(), Some(bob_nick.as_str()));
    alice
        .act(Action::SetSubject {
            room: rid.clone(),
            subject: "topic from xmpp".into(),
        })
        .await
        .expect("set subject");
    bob.wait(room.room_id(), "the topic from ferry", |v| {
        v["type"] == "m.room.topic" && v["content"]["topic"] == "topic from xmpp"
    })
    .await;

    // Name from XMPP through the room's configure command; to XMPP as room info.
    let reply = alice
        .act(Action::Command(CommandCall {
            node: "configure".into(),
            target: Some(Address::Room(rid.clone())),
            stage: None,
            values: FormValues::new(),
            admin: false,
        }))
        .await
        .expect("configure form");
    let Outcome::Command(CommandReply::Form { stage, form, .. }) = reply else {
        panic!("expected a form: {reply:?}")
    };
    assert_eq!(
        form.get("name").map(|f| f.values.clone()),
        Some(vec!["Test room".into()])
    );
    alice
        .act(Action::Command(CommandCall {
            node: "configure".into(),
            target: Some(Address::Room(rid.clone())),
            stage: Some(stage),
            values: FormValues::new().with("name", "Renamed room"),
            admin: false,
        }))
        .await
        .expect("configure applies");
    bob.wait(room.room_id(), "the new name", |v| {
        v["type"] == "m.room.name" && v["content"]["name"] == "Renamed room"
    })
    .await;
    alice
        .take(
            "the renamed room info",
            |e| matches!(e, Event::RoomInfo(i) if i.name.as_deref() == Some("Renamed room")),
        )
        .await;

    // Nickname change on Matrix.
    room.set_own_member_display_name(Some("Bobby".into()))
        .await
        .expect("display name");
    let ev = alice
        .take(
            "bob's nick change",
            |e| matches!(e, Event::NickChanged { new, .. } if new == "Bobby"),
        )
        .await;
    let Event::NickChanged { old, .. } = ev else {
        unreachable!()
    };
    assert_eq!(old, bob_nick);

    // A kick on Matrix.
    room.kick_user(&carol.user_id, Some("calm down"))
        .await
        .expect("kick");
    let ev = alice
        .take(
            "carol kicked",
            |e| matches!(e, Event::OccupantLeft { nick, .. } if *nick == carol_nick),
        )
        .await;
    let Event::OccupantLeft { exit, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        exit,
        RoomExit::Kicked {
            by: Some("Bobby".into()),
            reason: Some("calm down".into())
        }
    );

    // Ferry invites Dave, and bans Carol (power level 50 may ban).
    let dave = Peer::new("dave").await;
    alice
        .act(Action::Invite {
            room: rid.clone(),
            invitee: Address::Contact(ContactId::new(dave.user_id.as_str())),
            reason: None,
        })
        .await
        .expect("invite");
    dave.accept(room.room_id()).await;
    let dave_nick = {
        let ev = alice
            .take("dave's arrival", |e| {
                matches!(e, Event::Occupant { occupant, .. }
                    if occupant.contact.as_ref().map(|c| c.as_str()) == Some(dave.user_id.as_str()))
            })
            .await;
        let Event::Occupant { occupant, .. } = ev else {
            unreachable!()
        };
        occupant.nick
    };
    alice
        .act(Action::SetAffiliation {
            room: rid.clone(),
            target: Address::Contact(ContactId::new(carol.user_id.as_str())),
            affiliation: Affiliation::Outcast,
            reason: Some("spam".into()),
        })
        .await
        .expect("ban");
    bob.wait(room.room_id(), "carol banned", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == carol.user_id.as_str()
            && v["content"]["membership"] == "ban"
    })
    .await;
    // Ferry kicks Dave by nickname.
    alice
        .act(Action::Kick {
            room: rid.clone(),
            nick: dave_nick.clone(),
            reason: Some("bye".into()),
        })
        .await
        .expect("kick");
    bob.wait(room.room_id(), "dave kicked", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == dave.user_id.as_str()
            && v["content"]["membership"] == "leave"
            && v["sender"] == alice.user_id.as_str()
    })
    .await;
    // Kicking someone unknown is a clear error.
    let err = alice
        .act(Action::Kick {
            room: rid.clone(),
            nick: "nobody here".into(),
            reason: None,
        })
        .await
        .expect_err("unknown nick");
    assert!(err.message.contains("nobody"), "{err:?}");

    // Raising Dave's role from XMPP is refused by Matrix for a power level
    // 50 user towards 100 (can't grant above own level): a clear error.
    let err = alice
        .act(Action::SetAffiliation {
            room: rid.clone(),
            target: Address::Contact(ContactId::new(bob.user_id.as_str())),
            affiliation: Affiliation::Member,
            reason: None,
        })
        .await
        .expect_err("cannot demote the owner");
    assert!(err.message.starts_with("Matrix:"), "{err:?}");

    // The room list.
    let Outcome::Rooms(list) = alice
        .act(Action::ListRooms { service: None })
        .await
        .expect("list")
    else {
        panic!("rooms")
    };
    assert!(
        list.iter()
            .any(|r| r.room == rid && r.name.as_deref() == Some("Renamed room"))
    );

    // Bob kicks Alice: the room is gone for her.
    room.kick_user(&uid(&alice.user_id), None)
        .await
        .expect("kick alice");
    let ev = alice
        .take(
            "alice removed",
            |e| matches!(e, Event::RoomLeft { room, .. } if *room == rid),
        )
        .await;
    assert!(
        matches!(
            ev,
            Event::RoomLeft {
                exit: RoomExit::Kicked { .. },
                ..
            }
        ),
        "{ev:?}"
    );
    alice.close().await;
}

#[tokio::test]
async fn join_by_alias_and_leave_for_good() {
    let mut alice = Ferry::new("alice").await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let alias_local = common::unique("ferryroom");
    let mut req = create_room::v3::Request::new();
    req.name = Some("Public room".into());
    req.room_alias_name = Some(alias_local.clone());
    req.preset = Some(create_room::v3::RoomPreset::PublicChat);
    let room = bob.client.create_room(req).await.expect("create");
    let alias = format!("#{alias_local}:{}", common::server_name());
    let rid = RoomId::new(alias.clone());

    alice
        .act(Action::JoinRoom {
            room: rid.clone(),
            nick: "alice".into(),
            password: None,
        })
        .await
        .expect("join");
    let ev = alice
        .take("joined by alias", |e| matches!(e, Event::RoomJoined { .. }))
        .await;
    let Event::RoomJoined { info, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        info.room, rid,
        "the room keeps the address it was joined by"
    );
    assert!(info.public);

    // Messages of that room come under the alias.
    room.send(
        matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain("hello alias"),
    )
    .await
    .expect("send");
    let ev = alice
        .take(
            "message in the alias room",
            |e| matches!(e, Event::Message(m) if m.body == "hello alias"),
        )
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.chat, Address::Room(rid.clone()));

    // Leaving the MUC keeps the Matrix membership; the leave command ends it.
    alice
        .act(Action::LeaveRoom {
            room: rid.clone(),
            reason: None,
        })
        .await
        .expect("leave view");
    assert!(
        alice
            .act(Action::SendMessage(ferry_bridge::OutgoingMessage::text(
                Address::Room(rid.clone()),
                "still",
                "still here",
            )))
            .await
            .is_ok()
    );
    let reply = alice
        .act(Action::Command(CommandCall {
            node: "leave".into(),
            target: Some(Address::Room(rid.clone())),
            stage: None,
            values: FormValues::new(),
            admin: false,
        }))
        .await
        .expect("leave");
    assert!(matches!(reply, Outcome::Command(CommandReply::Done { .. })));
    bob.wait(room.room_id(), "alice left", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == alice.user_id.as_str()
            && v["content"]["membership"] == "leave"
    })
    .await;
    // A room that does not exist fails to join with a clear error.
    alice
        .act(Action::JoinRoom {
            room: RoomId::new(format!(
                "#nosuchroom{}:{}",
                alias_local,
                common::server_name()
            )),
            nick: "alice".into(),
            password: None,
        })
        .await
        .expect("accepted");
    let ev = alice
        .take("join failure", |e| {
            matches!(e, Event::RoomJoinFailed { .. })
        })
        .await;
    let Event::RoomJoinFailed { error, .. } = ev else {
        unreachable!()
    };
    assert_eq!(error.kind, ferry_bridge::ErrorKind::NotFound, "{error:?}");
    let _ = MxRoomId::parse(room.room_id().as_str());
    alice.close().await;
}
