//! Messages in rooms, both ways: the user's groupchat messages (with
//! subject changes, corrections, retractions, reactions, invitations) go to
//! the network and are reflected with a stanza-id once it took them; the
//! network's messages and signals reach every joined client and the
//! archive.

use std::time::SystemTime;

use ferry_bridge::{
    Action, Address, Feature, IncomingMessage, MessageId, Outcome, RoomId, Sender, UserId,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::gateway::direct::chat_key;
use crate::gateway::router::Gateway;
use crate::store::ArchiveEntry;
use crate::xmpp::jids::{Target, with_resource};
use crate::xmpp::message::{self, Inbound, Refs};
use crate::xmpp::xml::{self, B, ns};

impl Gateway {
    /// A message to a room's bare JID.
    pub fn muc_message(
        &mut self,
        m: Message,
        p: Inbound,
        from: Jid,
        to: Jid,
        user: UserId,
        room: RoomId,
    ) {
        let caps = self.info.capabilities;
        let bounce = |gw: &Gateway, e: StanzaError| {
            gw.send_error(xml::message_error(&to, &from, p.id.as_deref(), e));
        };
        if !caps.has(Feature::Rooms) {
            return bounce(
                self,
                xml::error(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "This network has no rooms.",
                ),
            );
        }
        if !p.invites.is_empty() {
            if !caps.has(Feature::Invites) {
                return bounce(
                    self,
                    xml::error(
                        ErrorType::Cancel,
                        DefinedCondition::FeatureNotImplemented,
                        &format!("{} does not support invitations.", self.info.name),
                    ),
                );
            }
            for inv in p.invites.clone() {
                let invitee = Jid::new(&inv.to)
                    .ok()
                    .filter(|j| self.jids.is_ours(j))
                    .and_then(|j| match self.target_of(&user, &j) {
                        Ok(Target::Address(a)) => Some(a),
                        _ => None,
                    });
                let Some(invitee) = invitee else {
                    return bounce(
                        self,
                        xml::error(
                            ErrorType::Modify,
                            DefinedCondition::JidMalformed,
                            &format!(
                                "{} is not someone on {}: only its users can be invited here.",
                                inv.to, self.info.name
                            ),
                        ),
                    );
                };
                let action = Action::Invite {
                    room: room.clone(),
                    invitee,
                    reason: inv.reason.clone(),
                };
                self.act_or_bounce(&user, action, &from, &to, p.id.clone());
            }
            return;
        }
        let resource = from
            .resource()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default();
        let joined = self
            .rooms
            .get(&user, &room)
            .is_some_and(|r| r.clients.get(&resource).is_some_and(|c| c.joined));
        if !joined {
            let meaningful = p.has_content()
                || p.subject.is_some()
                || p.retract.is_some()
                || p.reactions.is_some();
            if meaningful {
                bounce(
                    self,
                    xml::error(
                        ErrorType::Modify,
                        DefinedCondition::NotAcceptable,
                        "You are not in this room: join it first.",
                    ),
                );
            }
            return;
        }
        let suspended = self.rooms.get(&user, &room).is_some_and(|r| r.suspended());
        if suspended && (p.has_content() || p.subject.is_some()) {
            let text = format!(
                "Not sent: the connection to {} is down and Ferry is getting you back into this room. Send it again once your presence in the room is back.",
                self.info.name
            );
            return bounce(
                self,
                xml::error(
                    ErrorType::Wait,
                    DefinedCondition::RecipientUnavailable,
                    &text,
                ),
            );
        }
        if m.type_ != MessageType::Groupchat {
            return bounce(
                self,
                xml::error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "Messages to a room are of type groupchat; write to room@gateway/nick for a private message.",
                ),
            );
        }
        let chat = Address::Room(room.clone());
        if let (Some(subject), false) = (&p.subject, p.has_content()) {
            if !caps.has(Feature::SubjectChange) {
                return bounce(
                    self,
                    xml::error(
                        ErrorType::Cancel,
                        DefinedCondition::Forbidden,
                        &format!("{} does not let you change the subject.", self.info.name),
                    ),
                );
            }
            let action = Action::SetSubject {
                room: room.clone(),
                subject: subject.clone(),
            };
            return self.act_or_bounce(&user, action, &from, &to, p.id.clone());
        }
        if self.dispatch_edit(&user, &p, &from, &to, &chat) {
            return;
        }
        if p.has_content() {
            if !self.accept_content(&from, &to, &p) {
                return;
            }
            let action = match self.content_action(&user, &m, &p, &chat) {
                Ok(a) => a,
                Err(e) => return bounce(self, *e),
            };
            let original: Element = m.into();
            let client_id = p.client_id().map(str::to_owned);
            let id = p.id.clone();
            let (from2, to2) = (from.clone(), to.clone());
            let u = user.clone();
            self.act(&user, action, move |gw, r| match r {
                Ok(o) => {
                    let ids = match o {
                        Outcome::Sent(ids) => ids,
                        _ => Vec::new(),
                    };
                    gw.reflect(&u, &room, original, client_id.clone(), id.clone(), &ids);
                    let chat = Address::Room(room.clone());
                    gw.message_sent(
                        &u,
                        crate::gateway::receipts::Sent {
                            chat: &chat,
                            ids: &ids,
                            stanza_id: id.as_deref().or(client_id.as_deref()),
                            peer: &Jid::from(to2.to_bare()),
                            client: &from2,
                            receipt: false,
                        },
                    );
                }
                Err(e) => gw.send_error(xml::message_error(
                    &to2,
                    &from2,
                    id.as_deref(),
                    xml::bridge_error(&e),
                )),
            });
            return;
        }
        self.dispatch_signals(&user, &p, &chat);
    }

    /// Reflects a user's message to all their joined clients, with a
    /// stanza-id, then archives it.
    pub(crate) fn reflect(
        &mut self,
        user: &UserId,
        room: &RoomId,
        original: Element,
        client_id: Option<String>,
        id: Option<String>,
        fids: &[MessageId],
    ) {
        let Some(r) = self.rooms.get(user, room) else {
            return;
        };
        let archive_id = self.store.new_archive_id();
        let from = Jid::from(with_resource(&r.jid, &r.nick));
        let room_jid = Jid::from(r.jid.clone());
        let nick = r.nick.clone();
        let records = r.records();
        let mut base = Element::bare("message", ns::STREAM);
        for ((ans, name), value) in original.attrs().iter() {
            base.attrs_mut()
                .insert(ans.clone(), name.clone(), value.clone());
        }
        for c in original.children() {
            let spoofed =
                c.is("stanza-id", ns::SID) && c.attr("by") == Some(room_jid.to_string().as_str());
            if !spoofed && !c.is("error", ns::STREAM) {
                base.append_child(c.clone());
            }
        }
        xml::set_attr(&mut base, "from", from.to_string());
        xml::set_attr(&mut base, "type", "groupchat");
        base.append_child(
            B::new("stanza-id", ns::SID)
                .a("id", archive_id.clone())
                .a("by", room_jid.to_string())
                .build(),
        );
        // Reflection first: it is the client's confirmation.
        for to in self.joined_clients(user, room) {
            let mut el = base.clone();
            xml::set_attr(&mut el, "to", to.to_string());
            self.send(el);
        }
        let key = chat_key(&Address::Room(room.clone()));
        for f in fids {
            if let Some(c) = &client_id {
                self.store.map_message(user, &key, c, f.as_str());
            }
            if let Some(i) = &id
                && Some(i) != client_id.as_ref()
            {
                self.store.map_message(user, &key, i, f.as_str());
            }
            self.store.map_message(user, &key, &archive_id, f.as_str());
        }
        if records {
            xml::remove_attr(&mut base, "to");
            xml::sanitize(&mut base);
            self.store.archive(ArchiveEntry {
                user: user.clone(),
                room: room.to_string(),
                id: archive_id,
                timestamp: SystemTime::now(),
                nick,
                foreign_id: fids.first().map(|f| f.as_str().to_owned()),
                stanza: String::from(&xml::renamespace(&base, ns::STREAM, ns::CLIENT)),
            });
        }
    }

    /// A message of the network in a room: delivered to joined clients and
    /// archived (also when no client is joined).
    pub fn muc_incoming(&mut self, user: &UserId, msg: IncomingMessage) {
        let Address::Room(room) = msg.chat.clone() else {
            return;
        };
        let chat = msg.chat.clone();
        if msg.from == Sender::Own
            && let Some(fid) = &msg.id
            && self.xmpp_of(user, &chat, fid).is_some()
        {
            // Already reflected when the user sent it from here.
            return;
        }
        if self.room_entry(user, &room).is_none() {
            return;
        }
        let Some(r) = self.rooms.get(user, &room) else {
            return;
        };
        // Only these facts of the room are needed: borrowing them keeps
        // the user's view of the room (occupants, clients) uncopied.
        let nick = self.rooms.sender_nick(r, &msg.from);
        let reply_author = msg
            .reply_to
            .as_ref()
            .and_then(|rt| rt.author.as_ref())
            .and_then(|a| self.rooms.sender_nick(r, a))
            .map(|n| Jid::from(with_resource(&r.jid, &n)));
        let records = r.records();
        let room_jid = Jid::from(r.jid.clone());
        let from = match &nick {
            Some(n) => Jid::from(with_resource(&r.jid, n)),
            None => room_jid.clone(),
        };
        let archive_id = self.store.new_archive_id();
        let key = chat_key(&chat);
        if let Some(f) = &msg.id {
            self.store.map_message(user, &key, &archive_id, f.as_str());
        }
        let replaces = msg
            .replaces
            .as_ref()
            .and_then(|x| self.xmpp_of(user, &chat, x));
        let reply = msg.reply_to.as_ref().and_then(|rt| {
            let xid = self.xmpp_of(user, &chat, &rt.id)?;
            Some((xid, reply_author))
        });
        let refs = Refs {
            replaces,
            reply,
            stanza_id: Some((archive_id.clone(), room_jid.clone())),
            origin_id: false,
            markable: self.info.capabilities.has(Feature::DisplayedMarkers),
            delay_from: msg.timestamp.map(|_| room_jid.clone()),
        };
        let max = self.settings.max_message_bytes;
        let user2 = user.clone();
        let nick_s = nick.unwrap_or_default();
        let timestamp = msg.timestamp.unwrap_or_else(SystemTime::now);
        let archive_only = msg.archive_only;
        let fid = msg.id.clone();
        self.with_published(user, msg, move |gw, msg, urls| {
            let els = message::build(
                &msg,
                &from,
                &room_jid,
                MessageType::Groupchat,
                &archive_id,
                &refs,
                &urls,
                max,
            );
            let clients = if archive_only {
                Vec::new()
            } else {
                gw.joined_clients(&user2, &room)
            };
            for (i, base) in els.into_iter().enumerate() {
                for to in &clients {
                    let mut el = base.clone();
                    xml::set_attr(&mut el, "to", to.to_string());
                    gw.send(el);
                }
                if records {
                    let mut stored = base;
                    xml::remove_attr(&mut stored, "to");
                    xml::sanitize(&mut stored);
                    let id = if i == 0 {
                        archive_id.clone()
                    } else {
                        gw.store.new_archive_id()
                    };
                    gw.store.archive(ArchiveEntry {
                        user: user2.clone(),
                        room: room.to_string(),
                        id,
                        timestamp,
                        nick: nick_s.clone(),
                        foreign_id: if i == 0 {
                            fid.clone().map(MessageId::into_string)
                        } else {
                            None
                        },
                        stanza: String::from(&xml::renamespace(&stored, ns::STREAM, ns::CLIENT)),
                    });
                }
            }
        });
    }

    /// Sends a room signal (retraction, reaction, chat state, marker) from
    /// an occupant (or the room) to every joined client, and archives it
    /// when asked.
    pub(super) fn room_signal(
        &mut self,
        user: &UserId,
        room: &RoomId,
        from: Option<&Sender>,
        payloads: Vec<Element>,
        archive: bool,
    ) {
        let Some(r) = self.rooms.get(user, room) else {
            return;
        };
        let nick = from.and_then(|f| self.rooms.sender_nick(r, f));
        let sender = match &nick {
            Some(n) => Jid::from(with_resource(&r.jid, n)),
            None => Jid::from(r.jid.clone()),
        };
        let records = r.records();
        let room_jid = Jid::from(r.jid.clone());
        let mut base = message::signal(&sender, &room_jid, MessageType::Groupchat, payloads);
        let archive_id = if archive && records {
            let id = self.store.new_archive_id();
            base.append_child(
                B::new("stanza-id", ns::SID)
                    .a("id", id.clone())
                    .a("by", room_jid.to_string())
                    .build(),
            );
            Some(id)
        } else {
            None
        };
        for to in self.joined_clients(user, room) {
            let mut el = base.clone();
            xml::set_attr(&mut el, "to", to.to_string());
            self.send(el);
        }
        if let Some(id) = archive_id {
            xml::remove_attr(&mut base, "to");
            self.store.archive(ArchiveEntry {
                user: user.clone(),
                room: room.to_string(),
                id,
                timestamp: SystemTime::now(),
                nick: nick.unwrap_or_default(),
                foreign_id: None,
                stanza: String::from(&xml::renamespace(&base, ns::STREAM, ns::CLIENT)),
            });
        }
    }

    /// A message was deleted in a room.
    pub fn muc_retracted(
        &mut self,
        user: &UserId,
        room: &RoomId,
        by: &Sender,
        target: &MessageId,
        moderated: Option<Option<String>>,
    ) {
        let chat = Address::Room(room.clone());
        let Some(xid) = self.xmpp_of(user, &chat, target) else {
            return;
        };
        match moderated {
            None => {
                let payloads = message::retraction(&xid);
                self.room_signal(user, room, Some(by), payloads, true);
            }
            Some(reason) => {
                let Some(r) = self.rooms.get(user, room) else {
                    return;
                };
                let by_jid = self
                    .rooms
                    .sender_nick(r, by)
                    .map(|n| with_resource(&r.jid, &n).to_string())
                    .unwrap_or_else(|| r.jid.to_string());
                let retract = B::new("retract", ns::RETRACT1)
                    .a("id", xid.clone())
                    .c(B::new("moderated", ns::MODERATE1).a("by", by_jid.clone()))
                    .oc(reason
                        .as_ref()
                        .map(|t| B::new("reason", ns::RETRACT1).t(t.clone())))
                    .build();
                let legacy = B::new("apply-to", ns::FASTEN)
                    .a("id", xid)
                    .c(B::new("moderated", ns::MODERATE0)
                        .a("by", by_jid)
                        .c(Element::bare("retract", ns::RETRACT0))
                        .oc(reason.map(|t| B::new("reason", ns::MODERATE0).t(t))))
                    .build();
                self.room_signal(user, room, None, vec![retract, legacy], true);
            }
        }
    }

    /// Reactions in a room.
    pub fn muc_reactions(
        &mut self,
        user: &UserId,
        room: &RoomId,
        from: &Sender,
        target: &MessageId,
        emojis: &[String],
    ) {
        let chat = Address::Room(room.clone());
        let Some(xid) = self.xmpp_of(user, &chat, target) else {
            return;
        };
        self.room_signal(
            user,
            room,
            Some(from),
            vec![message::reactions(&xid, emojis)],
            true,
        );
    }

    /// Typing in a room.
    pub fn muc_chat_state(
        &mut self,
        user: &UserId,
        room: &RoomId,
        from: &Sender,
        state: ferry_bridge::ChatState,
    ) {
        if *from == Sender::Own {
            return;
        }
        self.room_signal(
            user,
            room,
            Some(from),
            vec![message::chat_state(state)],
            false,
        );
    }

    /// A read marker in a room.
    pub fn muc_displayed(&mut self, user: &UserId, room: &RoomId, by: &Sender, up_to: &MessageId) {
        if *by == Sender::Own {
            return;
        }
        let chat = Address::Room(room.clone());
        let Some(xid) = self.xmpp_of(user, &chat, up_to) else {
            return;
        };
        self.room_signal(user, room, Some(by), vec![message::displayed(&xid)], false);
    }
}
