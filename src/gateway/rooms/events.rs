//! What the network reports about rooms: the user joined, could not join or
//! was removed; occupants came, changed, left or renamed themselves; the
//! subject and the room's facts changed; invitations and rooms to offer as
//! bookmarks.

use ferry_bridge::{
    Action, BridgeError, Occupant, RoomExit, RoomId, RoomInfo, Sender, Subject, UserId,
};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;

use crate::gateway::router::Gateway;
use crate::xmpp::jids::with_resource;
use crate::xmpp::message::{self};
use crate::xmpp::xml::{self, B, ns};

use super::join::occupant_presence;

use super::*;

impl Gateway {
    /// The session is in a room.
    pub fn muc_joined(
        &mut self,
        user: &UserId,
        info: RoomInfo,
        nick: String,
        occupants: Vec<Occupant>,
        subject: Subject,
    ) {
        let room = info.room.clone();
        let Some(r) = self.room_entry(user, &room) else {
            tracing::debug!(room = %room, "joined a room with no JID");
            return;
        };
        r.joined = true;
        r.joining = false;
        r.rejoin = false;
        let old_nick = std::mem::replace(&mut r.nick, nick);
        r.info = Some(info);
        let subject_changed = r.subject.as_ref().is_some_and(|s| *s != subject);
        r.subject = Some(subject);
        let pending: Vec<String> = r
            .clients
            .iter()
            .filter(|(_, c)| !c.joined)
            .map(|(k, _)| k.clone())
            .collect();
        let rejoined: Vec<String> = r.joined_resources().cloned().collect();
        // Who the clients already in the room saw (only they need it).
        let old: Vec<String> = match self.rooms.get(user, &room) {
            Some(r) if !rejoined.is_empty() => self
                .rooms
                .occupants(r)
                .iter()
                .filter(|o| o.nick != old_nick)
                .map(|o| o.nick.clone())
                .collect(),
            _ => Vec::new(),
        };
        self.rooms.replace_occupants(user, &room, occupants);
        let gone: Vec<String> = match self.rooms.get(user, &room) {
            Some(r) => {
                let now = self.rooms.occupants(r);
                old.into_iter().filter(|n| !now.contains(n)).collect()
            }
            None => Vec::new(),
        };
        for res in pending {
            self.send_join(user, &room, &res);
        }
        // Clients that were in the room already (a reconnection): bring
        // their nickname, occupant list and subject up to date.
        for res in rejoined {
            let Some(to) = Self::client_jid(user, &res) else {
                continue;
            };
            let Some(r) = self.rooms.get(user, &room) else {
                return;
            };
            if !old_nick.is_empty() && old_nick != r.nick {
                let me = self
                    .rooms
                    .occupants(r)
                    .get(&r.nick)
                    .cloned()
                    .unwrap_or_else(|| Occupant::new(r.nick.clone()));
                let mut view =
                    join::view_of(&r.jid, &me, r.non_anonymous(), &self.contact_jid_fn());
                view.nick = Some(r.nick.clone());
                view.codes = vec![110, 303];
                view.occupant_id = Some(join::occupant_id(&r.jid, &format!("self:{user}")));
                self.send(occupant_presence(
                    &r.jid,
                    &old_nick,
                    &to,
                    ferry_bridge::Show::Offline,
                    None,
                    &view,
                    true,
                ));
            }
            for n in &gone {
                let (v, s, _) = exit_view(&RoomExit::Left(None), false);
                self.send(occupant_presence(
                    &r.jid,
                    n,
                    &to,
                    ferry_bridge::Show::Offline,
                    s.as_deref(),
                    &v,
                    true,
                ));
            }
            // Self-presence last, as on a join.
            let occupants = self.rooms.occupants(r);
            for o in occupants.iter().filter(|o| o.nick != r.nick) {
                self.send(self.occupant_el(user, r, o, &to));
            }
            let me = occupants
                .get(&r.nick)
                .cloned()
                .unwrap_or_else(|| Occupant::new(r.nick.clone()));
            self.send(self.occupant_el(user, r, &me, &to));
            if subject_changed {
                self.send(join::subject_message(&r.jid, &to, r.subject.as_ref()));
            }
        }
        // A group conversation the user just opened.
        self.group_joined(user, &room);
    }

    /// The session lost the room with its connection to the network: the
    /// clients stay, their own presence shows `xa` and why, until the
    /// session is back in the room or gives up.
    pub fn muc_suspend(&mut self, user: &UserId, room: &RoomId, why: &str) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        if r.clients.values().all(|c| !c.joined) {
            // Nobody to keep in the room.
            r.joined = false;
            r.joining = false;
            return;
        }
        r.joined = false;
        r.joining = true;
        let Some(r) = self.rooms.get(user, room) else {
            return;
        };
        let mut me = self
            .rooms
            .occupants(r)
            .get(&r.nick)
            .cloned()
            .unwrap_or_else(|| Occupant::new(r.nick.clone()));
        me.is_self = true;
        me.presence.show = ferry_bridge::Show::ExtendedAway;
        me.presence.status = Some(why.to_owned());
        for to in self.joined_clients(user, room) {
            self.send(self.occupant_el(user, r, &me, &to));
        }
    }

    /// The session restarts: every room it was in is suspended, to be
    /// joined again when the new session is up ([`Gateway::rooms_rejoin`]).
    pub fn rooms_suspend_user(&mut self, user: &UserId, why: &str) {
        let rooms: Vec<RoomId> = self
            .rooms
            .of_user(user)
            .filter(|r| r.joined || r.suspended())
            .map(|r| r.id.clone())
            .collect();
        for room in rooms {
            self.muc_suspend(user, &room, why);
            if let Some(r) = self.rooms.get_mut(user, &room)
                && r.suspended()
            {
                r.rejoin = true;
            }
        }
    }

    /// A new session is up: it joins the rooms the old one was in.
    pub fn rooms_rejoin(&mut self, user: &UserId) {
        let rooms: Vec<(RoomId, String, Option<String>)> = self
            .rooms
            .of_user(user)
            .filter(|r| r.rejoin && r.suspended())
            .map(|r| (r.id.clone(), r.nick.clone(), r.password.clone()))
            .collect();
        for (room, nick, password) in rooms {
            if let Some(r) = self.rooms.get_mut(user, &room) {
                r.rejoin = false;
            }
            let (user2, room2) = (user.clone(), room.clone());
            self.act(
                user,
                Action::JoinRoom {
                    room,
                    nick,
                    password,
                },
                move |gw, res| {
                    if let Err(e) = res {
                        gw.muc_join_failed(&user2, &room2, &e);
                    }
                },
            );
        }
    }

    /// The session cannot be in any room any more (it ended, or its login
    /// needs the user): clients still in a room leave it with status 332.
    pub fn rooms_end_user(&mut self, user: &UserId, why: &str) {
        let rooms: Vec<RoomId> = self
            .rooms
            .of_user(user)
            .filter(|r| r.joined_resources().next().is_some())
            .map(|r| r.id.clone())
            .collect();
        for room in rooms {
            self.muc_left_with(
                user,
                &room,
                &RoomExit::Disconnected(why.to_owned()),
                Some(332),
            );
        }
    }

    /// Joining failed.
    pub fn muc_join_failed(&mut self, user: &UserId, room: &RoomId, error: &BridgeError) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        let pending: Vec<(String, String)> = r
            .clients
            .iter()
            .filter(|(_, c)| !c.joined)
            .map(|(k, c)| (k.clone(), c.requested.clone()))
            .collect();
        r.clients.retain(|_, c| c.joined);
        r.joining = false;
        r.rejoin = false;
        let jid = r.jid.clone();
        let suspended = r.suspended();
        let remove = r.clients.is_empty() && !r.joined;
        for (res, nick) in pending {
            if let Some(to) = Self::client_jid(user, &res) {
                let from = Jid::from(with_resource(&jid, &nick));
                self.send_error(xml::presence_error(&from, &to, None, join_error(error)));
            }
        }
        if suspended {
            // The session could not get back in: the waiting clients leave.
            let why = format!("Could not join the room again: {}", error.message);
            self.muc_left_with(user, room, &RoomExit::Disconnected(why), Some(332));
            self.rooms.remove(user, room);
        } else if remove {
            self.rooms.remove(user, room);
        }
    }

    /// The user is no longer in a room (kicked, banned, destroyed), or not
    /// for now (disconnected: the clients wait, see [`Gateway::muc_suspend`]).
    pub fn muc_left(&mut self, user: &UserId, room: &RoomId, exit: &RoomExit) {
        match exit {
            RoomExit::Disconnected(why) => self.muc_suspend(user, room, why),
            _ => self.muc_left_with(user, room, exit, None),
        }
    }

    /// [`Gateway::muc_left`] with a status code replacing the exit's own
    /// (332: the service shuts down).
    pub(super) fn muc_left_with(
        &mut self,
        user: &UserId,
        room: &RoomId,
        exit: &RoomExit,
        code: Option<u16>,
    ) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        let clients: Vec<String> = r.joined_resources().cloned().collect();
        let (jid, nick) = (r.jid.clone(), r.nick.clone());
        r.joined = false;
        r.joining = false;
        r.clients.clear();
        self.rooms.clear_occupants(user, room);
        let (mut view, status, destroy) = exit_view(exit, true);
        if let Some(c) = code {
            view.codes.retain(|x| *x == 110);
            view.codes.push(c);
        }
        for res in clients {
            if let Some(to) = Self::client_jid(user, &res) {
                let mut el = occupant_presence(
                    &jid,
                    &nick,
                    &to,
                    ferry_bridge::Show::Offline,
                    status.as_deref(),
                    &view,
                    true,
                );
                if let Some(d) = &destroy
                    && let Some(x) = el.get_child_mut("x", ns::MUC_USER)
                {
                    x.append_child(d.clone());
                }
                self.send(el);
            }
        }
    }

    /// An occupant appeared or changed.
    pub fn muc_occupant(&mut self, user: &UserId, room: &RoomId, occupant: Occupant) {
        let Some(r) = self.room_entry(user, room) else {
            return;
        };
        if occupant.is_self {
            r.nick = occupant.nick.clone();
        }
        let nick = occupant.nick.clone();
        self.rooms.set_occupant(user, room, occupant);
        // Read the room again through a shared borrow rather than copying
        // it: every occupant of a join burst passes here for every user.
        let Some(r) = self.rooms.get(user, room) else {
            return;
        };
        let Some(o) = self.rooms.occupants(r).get(&nick) else {
            return;
        };
        for to in self.joined_clients(user, room) {
            self.send(self.occupant_el(user, r, o, &to));
        }
    }

    /// An occupant left.
    pub fn muc_occupant_left(&mut self, user: &UserId, room: &RoomId, nick: &str, exit: &RoomExit) {
        let Some(jid) = self.rooms.get(user, room).map(|r| r.jid.clone()) else {
            return;
        };
        let old = self.rooms.remove_occupant(user, room, nick);
        let (mut view, status, _) = exit_view(exit, false);
        if let Some(o) = &old {
            if !matches!(exit, RoomExit::Banned { .. }) {
                view.affiliation = Some(o.affiliation);
            }
            view.occupant_id = Some(join::occupant_id(
                &jid,
                &o.stable_id
                    .clone()
                    .unwrap_or_else(|| format!("nick:{}", o.nick)),
            ));
        }
        for to in self.joined_clients(user, room) {
            self.send(occupant_presence(
                &jid,
                nick,
                &to,
                ferry_bridge::Show::Offline,
                status.as_deref(),
                &view,
                true,
            ));
        }
    }

    /// An occupant (maybe the user) changed nickname: 303 then the new
    /// presence.
    pub fn muc_nick_changed(&mut self, user: &UserId, room: &RoomId, old: &str, new: &str) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        let me = old == r.nick;
        if me {
            r.nick = new.to_owned();
        }
        let mut occ = self
            .rooms
            .remove_occupant(user, room, old)
            .map(|o| Occupant::clone(&o))
            .unwrap_or_else(|| Occupant::new(old));
        occ.nick = new.to_owned();
        if me {
            occ.is_self = true;
        }
        self.rooms.set_occupant(user, room, occ.clone());
        let Some(r) = self.rooms.get(user, room) else {
            return;
        };
        for to in self.joined_clients(user, room) {
            let mut view = join::view_of(&r.jid, &occ, r.non_anonymous(), &self.contact_jid_fn());
            view.nick = Some(new.to_owned());
            view.codes.push(303);
            if me {
                view.codes.insert(0, 110);
                view.occupant_id = Some(join::occupant_id(&r.jid, &format!("self:{user}")));
            }
            self.send(occupant_presence(
                &r.jid,
                old,
                &to,
                ferry_bridge::Show::Offline,
                None,
                &view,
                true,
            ));
            self.send(self.occupant_el(user, r, &occ, &to));
        }
    }

    /// The subject changed.
    pub fn muc_subject(&mut self, user: &UserId, room: &RoomId, subject: Subject) {
        let Some(r) = self.room_entry(user, room) else {
            return;
        };
        r.subject = Some(subject.clone());
        let jid = r.jid.clone();
        for to in self.joined_clients(user, room) {
            self.send(join::subject_message(&jid, &to, Some(&subject)));
        }
    }

    /// The room's facts changed (status 104 to clients).
    pub fn muc_info(&mut self, user: &UserId, info: RoomInfo) {
        let room = info.room.clone();
        let Some(r) = self.room_entry(user, &room) else {
            return;
        };
        r.info = Some(info);
        let jid = r.jid.clone();
        for to in self.joined_clients(user, &room) {
            let mut m = Message::new(Some(to));
            m.from = Some(Jid::from(jid.clone()));
            m.type_ = MessageType::Groupchat;
            let mut el: Element = m.into();
            el.append_child(
                B::new("x", ns::MUC_USER)
                    .c(B::new("status", ns::MUC_USER).a("code", "104"))
                    .build(),
            );
            self.send(el);
        }
    }

    /// Someone invites the user to a room: XEP-0249 direct invitation.
    pub fn muc_invited(
        &mut self,
        user: &UserId,
        room: &RoomId,
        from: Option<&Sender>,
        reason: Option<String>,
        password: Option<String>,
    ) {
        let (Some(room_jid), Some(to)) = (self.jids.room(room), Gateway::user_jid(user)) else {
            return;
        };
        let inviter = match from {
            Some(Sender::Contact(c)) => self.jids.contact(c).map(Jid::from),
            _ => None,
        }
        .unwrap_or_else(|| self.gw_jid());
        let who = match from {
            Some(Sender::Contact(c)) => c.to_string(),
            Some(Sender::Occupant(n)) => n.clone(),
            _ => "Someone".to_owned(),
        };
        let mut text = format!("{who} invites you to {room_jid}");
        if let Some(r) = &reason {
            text.push_str(&format!(": {r}"));
        }
        self.send_invitation(&inviter, &Jid::from(to), &room_jid, &text, reason, password);
    }

    pub(super) fn send_invitation(
        &self,
        from: &Jid,
        to: &Jid,
        room: &BareJid,
        body: &str,
        reason: Option<String>,
        password: Option<String>,
    ) {
        let mut m = Message::new(Some(to.clone()));
        m.from = Some(from.clone());
        let mut el: Element = message::with_body(m, body).into();
        el.append_child(
            B::new("x", ns::CONFERENCE)
                .a("jid", room.to_string())
                .oa("reason", reason)
                .oa("password", password)
                .build(),
        );
        self.send(el);
    }

    /// A room the user belongs to: an XEP-0402 bookmark published for them
    /// (privileged pubsub IQ) when their server allows it, else an
    /// invitation.
    pub fn muc_available(
        &mut self,
        user: &UserId,
        room: &RoomId,
        name: Option<String>,
        autojoin: bool,
    ) {
        let (Some(room_jid), Some(bare)) = (self.jids.room(room), Gateway::user_jid(user)) else {
            return;
        };
        if let Some(r) = self.room_entry(user, room)
            && r.info.is_none()
        {
            let mut info = RoomInfo::new(room.clone());
            info.name = name.clone();
            r.info = Some(info);
        }
        let domain = bare.domain().as_str().to_owned();
        let grant = self.comp.privileges().for_domain(&domain).cloned();
        let can_publish = grant
            .as_ref()
            .is_some_and(|g| g.iq.get(ns::PUBSUB).is_some_and(|a| a.can_set()));
        let nick = bare
            .node()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        if let (true, Some(g)) = (can_publish, grant) {
            let conference = B::new("conference", ns::BOOKMARKS2)
                .oa("name", name.clone())
                .a("autojoin", if autojoin { "true" } else { "false" })
                .c(B::new("nick", ns::BOOKMARKS2).t(nick));
            let field = |var: &str, type_: &str, v: &str| {
                B::new("field", ns::DATA_FORMS)
                    .a("var", var)
                    .a("type", type_)
                    .c(B::new("value", ns::DATA_FORMS).t(v))
            };
            let pubsub = B::new("pubsub", ns::PUBSUB)
                .c(B::new("publish", ns::PUBSUB)
                    .a("node", ns::BOOKMARKS2)
                    .c(B::new("item", ns::PUBSUB)
                        .a("id", room_jid.to_string())
                        .c(conference)))
                .c(
                    B::new("publish-options", ns::PUBSUB).c(B::new("x", ns::DATA_FORMS)
                        .a("type", "submit")
                        .c(field(
                            "FORM_TYPE",
                            "hidden",
                            "http://jabber.org/protocol/pubsub#publish-options",
                        ))
                        .c(field("pubsub#persist_items", "boolean", "true"))
                        .c(field("pubsub#max_items", "text-single", "max"))
                        .c(field(
                            "pubsub#send_last_published_item",
                            "list-single",
                            "never",
                        ))
                        .c(field("pubsub#access_model", "list-single", "whitelist"))),
                );
            let inner = B::new("iq", ns::CLIENT)
                .a("type", "set")
                .a("id", xml::new_id())
                .a("from", bare.to_string())
                .a("to", bare.to_string())
                .c(pubsub)
                .build();
            let iq = Iq::Set {
                from: Some(self.gw_jid()),
                to: Some(Jid::from(bare.clone())),
                id: xml::new_id(),
                payload: B::new("privileged_iq", g.namespace.as_str())
                    .c(inner)
                    .build(),
            };
            let comp = self.comp.clone();
            let u = user.clone();
            let text = format!(
                "You are in {}: it was added to your bookmarks.",
                name.clone().unwrap_or_else(|| room_jid.to_string())
            );
            let room_jid2 = room_jid.clone();
            self.spawn_then(
                async move { comp.request(iq, std::time::Duration::from_secs(20)).await },
                move |gw: &mut Gateway, r| match r {
                    Ok(_) => tracing::debug!(user = %u, "bookmark published: {text}"),
                    Err(e) => {
                        tracing::info!(user = %u, error = %e, "bookmark publishing refused; inviting instead");
                        let to = Jid::from(bare.clone());
                        let body = format!("You are in {room_jid2} on the network; join it here.");
                        gw.send_invitation(&gw.gw_jid(), &to, &room_jid2, &body, None, None);
                    }
                },
            );
            return;
        }
        let body = format!(
            "You are in {} on {} (this gateway cannot add bookmarks for you: your server did not grant it the pubsub privilege).",
            name.unwrap_or_else(|| room_jid.to_string()),
            self.info.name
        );
        self.send_invitation(
            &self.gw_jid(),
            &Jid::from(bare),
            &room_jid,
            &body,
            None,
            None,
        );
    }

    /// Shutdown: every joined client gets unavailable with status 332.
    pub fn rooms_shutdown(&mut self) {
        let all: Vec<(UserId, RoomId)> = self.rooms.keys().cloned().collect();
        for (u, r) in all {
            self.muc_left_with(
                &u,
                &r,
                &RoomExit::Disconnected("The gateway is shutting down".into()),
                Some(332),
            );
        }
    }

    /// The user unregistered: leave every room.
    pub fn rooms_forget_user(&mut self, user: &UserId, why: &str) {
        let rooms: Vec<RoomId> = self.rooms.of_user(user).map(|r| r.id.clone()).collect();
        for r in rooms {
            self.muc_left_with(user, &r, &RoomExit::Disconnected(why.to_owned()), Some(332));
            self.rooms.remove(user, &r);
        }
    }
}
