//! IQs to rooms: XEP-0410 self-pings, XEP-0313 archive queries (with
//! backfill from the network), moderation (XEP-0425), and the muc#admin and
//! muc#owner requests mapped onto the bridge's actions and `configure`
//! command.

use std::time::SystemTime;

use ferry_bridge::{
    Action, Address, CommandCall, CommandReply, CommandScope, Feature, IncomingMessage, MessageId,
    Outcome, Role, RoomId, UserId,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::MessageType;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::gateway::direct::chat_key;
use crate::gateway::router::{Asked, Gateway};
use crate::store::{ArchiveEntry, ArchiveQuery};
use crate::xmpp::forms::{self, Secrets, Submitted};
use crate::xmpp::jids::{Target, with_resource};
use crate::xmpp::message::{self, Refs};
use crate::xmpp::xml::{self, B, ns};

use super::*;

impl Gateway {
    /// XEP-0410 self-ping and pings of rooms.
    pub fn muc_ping(&mut self, from: &Jid, to: &Jid, id: &str, target: &Address) {
        let user = Gateway::user_id(from);
        match target {
            Address::Occupant { room, nick } => {
                let resource = from.resource().map(|r| r.as_str()).unwrap_or_default();
                let ok = self.rooms.get(&user, room).is_some_and(|r| {
                    r.clients.get(resource).is_some_and(|c| c.joined)
                        && (r.nick == *nick
                            || to
                                .resource()
                                .is_some_and(|t| with_resource(&r.jid, &r.nick).resource() == t))
                });
                if ok {
                    self.send(xml::iq_result(to, from, id, None));
                } else {
                    let err = xml::error(
                        ErrorType::Modify,
                        DefinedCondition::NotAcceptable,
                        "You are not in this room with this nickname.",
                    );
                    self.send_error(xml::iq_error(to, from, id, err));
                }
            }
            _ => self.send(xml::iq_result(to, from, id, None)),
        }
    }

    /// IQs to rooms: muc#admin, muc#owner, MAM, moderation.
    pub fn muc_iq(&mut self, from: &Jid, to: &Jid, id: &str, q: &Element, set: bool) {
        let user = Gateway::user_id(from);
        let reply_err =
            |gw: &Gateway, e: StanzaError| gw.send_error(xml::iq_error(to, from, id, e));
        if let Err(e) = self.check_use(&user) {
            return reply_err(self, *e);
        }
        let room = match self.target_of(&Self::user_id(from), &Jid::from(to.to_bare())) {
            Ok(Target::Address(Address::Room(r))) if self.info.capabilities.has(Feature::Rooms) => {
                r
            }
            _ => {
                return reply_err(
                    self,
                    xml::error(
                        ErrorType::Cancel,
                        DefinedCondition::ItemNotFound,
                        "This is not a room.",
                    ),
                );
            }
        };
        let n = q.ns();
        match (n.as_str(), q.name(), set) {
            (ns::MAM, "query", false) => {
                self.send(xml::iq_result(to, from, id, Some(mam::query_form())))
            }
            (ns::MAM, "query", true) => {
                let Some(room_jid) = self.jids.room(&room) else {
                    return;
                };
                match mam::parse_query(q, &room_jid) {
                    Ok(mq) => self.mam_query(from, to, id, &user, &room, mq, true),
                    Err(t) => reply_err(
                        self,
                        xml::error(ErrorType::Modify, DefinedCondition::BadRequest, &t),
                    ),
                }
            }
            (ns::MAM, "metadata", false) => {
                let base = ArchiveQuery {
                    user: Some(user.clone()),
                    room: room.to_string(),
                    max: 1,
                    ..ArchiveQuery::default()
                };
                let first = self
                    .store
                    .archive_query(&base)
                    .ok()
                    .and_then(|p| p.items.into_iter().next());
                let last = self.store.archive_last(&user, room.as_str()).ok().flatten();
                self.send(xml::iq_result(
                    to,
                    from,
                    id,
                    Some(mam::metadata(first.as_ref(), last.as_ref())),
                ));
            }
            (ns::MUC_ADMIN, "query", true) => self.muc_admin_set(from, to, id, &user, &room, q),
            (ns::MUC_ADMIN, "query", false) => self.muc_admin_get(from, to, id, &user, &room, q),
            (ns::MUC_OWNER, "query", _) => self.muc_owner(from, to, id, &user, &room, q, set),
            (ns::MODERATE1, "moderate", true) => {
                let target = q.attr("id").map(str::to_owned);
                let reason = q.get_child("reason", ns::MODERATE1).map(Element::text);
                self.muc_moderate(from, to, id, &user, &room, target, reason);
            }
            (ns::FASTEN, "apply-to", true) => {
                let target = q.attr("id").map(str::to_owned);
                let m = q.get_child("moderate", ns::MODERATE0);
                if m.is_none() {
                    return reply_err(
                        self,
                        xml::error(
                            ErrorType::Cancel,
                            DefinedCondition::FeatureNotImplemented,
                            "Only moderation is supported here.",
                        ),
                    );
                }
                let reason = m
                    .and_then(|m| m.get_child("reason", ns::MODERATE0))
                    .map(Element::text);
                self.muc_moderate(from, to, id, &user, &room, target, reason);
            }
            _ => reply_err(
                self,
                xml::error(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "Not supported on rooms.",
                ),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn muc_moderate(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        user: &UserId,
        room: &RoomId,
        target: Option<String>,
        reason: Option<String>,
    ) {
        if !self.info.capabilities.has(Feature::Moderation) {
            let e = xml::error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                &format!("{} does not support moderating messages.", self.info.name),
            );
            return self.send_error(xml::iq_error(to, from, id, e));
        }
        let chat = Address::Room(room.clone());
        let Some(fid) = target.and_then(|t| self.foreign_of(user, &chat, &t)) else {
            let e = xml::error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "The message is not known to the gateway.",
            );
            return self.send_error(xml::iq_error(to, from, id, e));
        };
        let action = Action::Retract {
            chat,
            target: fid,
            moderate: Some(reason.filter(|r| !r.is_empty())),
        };
        self.act_answer(user, action, Asked::new(from, to, id), |_, _| Ok(None));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn mam_query(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        user: &UserId,
        room: &RoomId,
        q: mam::MamQuery,
        backfill: bool,
    ) {
        let aq = q.to_archive_query(user, room.as_str());
        let page = match self.store.archive_query(&aq) {
            Ok(p) => p,
            Err(e) => {
                let err = xml::error(
                    ErrorType::Wait,
                    DefinedCondition::InternalServerError,
                    &format!("The archive could not be read: {e}"),
                );
                return self.send_error(xml::iq_error(to, from, id, err));
            }
        };
        let exhausted = self
            .rooms
            .get(user, room)
            .is_none_or(|r| r.history_exhausted);
        let wants_older = q.backwards()
            && page.complete
            && page.items.len() < q.max
            && !q.count_only
            && q.start.is_none();
        if backfill && wants_older && !exhausted && self.info.capabilities.has(Feature::History) {
            let first = ArchiveQuery {
                user: Some(user.clone()),
                room: room.to_string(),
                max: 1,
                ..ArchiveQuery::default()
            };
            let oldest = self
                .store
                .archive_query(&first)
                .ok()
                .and_then(|p| p.items.into_iter().next())
                .and_then(|e| e.foreign_id)
                .map(MessageId::new);
            let limit = (q.max - page.items.len()).max(1) as u32;
            let (from2, to2, id2, user2, room2) = (
                from.clone(),
                to.clone(),
                id.to_owned(),
                user.clone(),
                room.clone(),
            );
            self.act(
                user,
                Action::FetchHistory {
                    chat: Address::Room(room.clone()),
                    before: oldest,
                    limit,
                },
                move |gw, r| {
                    match r {
                        Ok(Outcome::History(msgs)) => {
                            if msgs.is_empty()
                                && let Some(r) = gw.rooms.get_mut(&user2, &room2)
                            {
                                r.history_exhausted = true;
                            }
                            gw.backfill(&user2, &room2, msgs);
                        }
                        Ok(_) | Err(_) => {
                            if let Some(r) = gw.rooms.get_mut(&user2, &room2) {
                                r.history_exhausted = true;
                            }
                        }
                    }
                    gw.mam_query(&from2, &to2, &id2, &user2, &room2, q, false);
                },
            );
            return;
        }
        if !q.count_only {
            let Some(room_jid) = self.jids.room(room) else {
                return;
            };
            for e in &page.items {
                if let Some(el) = mam::result_message(from, &room_jid, q.queryid.as_deref(), e) {
                    self.send(el);
                }
            }
        }
        self.send(xml::iq_result(
            to,
            from,
            id,
            Some(mam::fin(&page, q.count_only)),
        ));
    }

    /// Archives older messages fetched from the network, oldest first.
    pub(super) fn backfill(
        &mut self,
        user: &UserId,
        room: &RoomId,
        mut msgs: Vec<IncomingMessage>,
    ) {
        // The network gives them newest first.
        msgs.reverse();
        let chat = Address::Room(room.clone());
        let Some(r) = self.room_entry(user, room) else {
            return;
        };
        let jid = r.jid.clone();
        let room_jid = Jid::from(jid.clone());
        let mut previous: Option<String> = None;
        for mut m in msgs {
            if let Some(f) = &m.id
                && self.xmpp_of(user, &chat, f).is_some()
            {
                continue;
            }
            m.archive_only = true;
            let nick = self
                .rooms
                .get(user, room)
                .and_then(|r| self.rooms.sender_nick(r, &m.from))
                .unwrap_or_default();
            let from = if nick.is_empty() {
                room_jid.clone()
            } else {
                Jid::from(with_resource(&jid, &nick))
            };
            let ts = m.timestamp.unwrap_or_else(SystemTime::now);
            // Older messages get ids of their own time, so that they sort
            // before what is archived already.
            let archive_id = self.store.archive_id_at(ts, previous.as_deref());
            previous = Some(archive_id.clone());
            if let Some(f) = &m.id {
                self.store
                    .map_message(user, &chat_key(&chat), &archive_id, f.as_str());
            }
            let refs = Refs {
                stanza_id: Some((archive_id.clone(), room_jid.clone())),
                ..Refs::default()
            };
            let urls: Vec<(String, Option<String>)> = m
                .attachments
                .iter()
                .filter_map(|a| match &a.source {
                    ferry_bridge::AttachmentSource::Url(u) => Some((u.clone(), a.caption.clone())),
                    ferry_bridge::AttachmentSource::Bytes(_) => None,
                })
                .collect();
            let els = message::build(
                &m,
                &from,
                &room_jid,
                MessageType::Groupchat,
                &archive_id,
                &refs,
                &urls,
                self.settings.max_message_bytes,
            );
            if let Some(mut stored) = els.into_iter().next() {
                xml::remove_attr(&mut stored, "to");
                xml::sanitize(&mut stored);
                self.store.archive(ArchiveEntry {
                    user: user.clone(),
                    room: room.to_string(),
                    id: archive_id,
                    timestamp: ts,
                    nick,
                    foreign_id: m.id.map(MessageId::into_string),
                    stanza: String::from(&xml::renamespace(&stored, ns::STREAM, ns::CLIENT)),
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn muc_admin_set(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        user: &UserId,
        room: &RoomId,
        q: &Element,
    ) {
        let reply_err =
            |gw: &Gateway, e: StanzaError| gw.send_error(xml::iq_error(to, from, id, e));
        if !self.info.capabilities.has(Feature::ModerationRoles) {
            return reply_err(
                self,
                xml::error(
                    ErrorType::Cancel,
                    DefinedCondition::FeatureNotImplemented,
                    &format!(
                        "{} does not support kicking, bans, roles or affiliations.",
                        self.info.name
                    ),
                ),
            );
        }
        let Some(item) = q.children().find(|c| c.is("item", ns::MUC_ADMIN)) else {
            return reply_err(
                self,
                xml::error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "The request has no item.",
                ),
            );
        };
        let reason = item
            .get_child("reason", ns::MUC_ADMIN)
            .map(Element::text)
            .filter(|r| !r.is_empty());
        let nick = item.attr("nick").map(str::to_owned);
        let action = if let Some(role) = item.attr("role") {
            let Some(role) = join::parse_role(role) else {
                return reply_err(
                    self,
                    xml::error(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        &format!("Unknown role {role:?}."),
                    ),
                );
            };
            let Some(nick) = nick else {
                return reply_err(
                    self,
                    xml::error(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "A role change needs a nick.",
                    ),
                );
            };
            if role == Role::None {
                Action::Kick {
                    room: room.clone(),
                    nick,
                    reason,
                }
            } else {
                Action::SetRole {
                    room: room.clone(),
                    nick,
                    role,
                    reason,
                }
            }
        } else if let Some(aff) = item.attr("affiliation") {
            let Some(affiliation) = join::parse_affiliation(aff) else {
                return reply_err(
                    self,
                    xml::error(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        &format!("Unknown affiliation {aff:?}."),
                    ),
                );
            };
            let target = match (item.attr("jid"), nick) {
                (Some(j), _) => match Jid::new(j)
                    .ok()
                    .filter(|j| self.jids.is_ours(j))
                    .map(|j| self.target_of(user, &j))
                {
                    Some(Ok(Target::Address(a))) => a,
                    _ => {
                        return reply_err(
                            self,
                            xml::error(
                                ErrorType::Modify,
                                DefinedCondition::JidMalformed,
                                &format!("{j} is not someone on {}.", self.info.name),
                            ),
                        );
                    }
                },
                (None, Some(n)) => Address::Occupant {
                    room: room.clone(),
                    nick: n,
                },
                (None, None) => {
                    return reply_err(
                        self,
                        xml::error(
                            ErrorType::Modify,
                            DefinedCondition::BadRequest,
                            "An affiliation change needs a jid or a nick.",
                        ),
                    );
                }
            };
            Action::SetAffiliation {
                room: room.clone(),
                target,
                affiliation,
                reason,
            }
        } else {
            return reply_err(
                self,
                xml::error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "The item has neither a role nor an affiliation.",
                ),
            );
        };
        self.act_answer(user, action, Asked::new(from, to, id), |_, _| Ok(None));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn muc_admin_get(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        user: &UserId,
        room: &RoomId,
        q: &Element,
    ) {
        let item = q.children().find(|c| c.is("item", ns::MUC_ADMIN));
        let want_aff = item
            .and_then(|i| i.attr("affiliation"))
            .and_then(join::parse_affiliation);
        let want_role = item.and_then(|i| i.attr("role")).and_then(join::parse_role);
        let Some(r) = self.rooms.get(user, room) else {
            let e = xml::error(
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                "Join the room to see its members.",
            );
            return self.send_error(xml::iq_error(to, from, id, e));
        };
        let items = self
            .rooms
            .occupants(r)
            .iter()
            .filter(|o| want_aff.is_none_or(|a| o.affiliation == a))
            .filter(|o| want_role.is_none_or(|ro| o.role == ro))
            .map(|o| {
                B::new("item", ns::MUC_ADMIN)
                    .a("nick", o.nick.clone())
                    .a("affiliation", join::affiliation_str(o.affiliation))
                    .a("role", join::role_str(o.role))
                    .oa(
                        "jid",
                        o.contact
                            .as_ref()
                            .and_then(|c| self.jids.contact(c))
                            .map(|j| j.to_string()),
                    )
                    .build()
            });
        let el = B::new("query", ns::MUC_ADMIN).cs(items).build();
        self.send(xml::iq_result(to, from, id, Some(el)));
    }

    /// muc#owner: the room configuration, mapped onto the bridge's
    /// room-scoped `configure` command.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn muc_owner(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        user: &UserId,
        room: &RoomId,
        q: &Element,
        set: bool,
    ) {
        let has_configure = self
            .network
            .commands()
            .iter()
            .any(|c| c.scope == CommandScope::Room && c.node == "configure");
        if !has_configure || q.has_child("destroy", ns::MUC_OWNER) {
            let e = xml::error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                &format!(
                    "Rooms of {} cannot be configured or destroyed from here.",
                    self.info.name
                ),
            );
            return self.send_error(xml::iq_error(to, from, id, e));
        }
        let admin = self.is_admin(user);
        let call = |stage, values| CommandCall {
            node: "configure".into(),
            target: Some(Address::Room(room.clone())),
            stage,
            values,
            admin,
        };
        let (from, to, id, room2, user2) = (
            from.clone(),
            to.clone(),
            id.to_owned(),
            room.clone(),
            user.clone(),
        );
        if !set {
            let asked = Asked::new(&from, &to, &id);
            self.act_answer(
                user,
                Action::Command(call(None, Default::default())),
                asked,
                move |gw, o| {
                    Ok(Some(match o {
                        Outcome::Command(CommandReply::Form { form, stage, .. }) => {
                            let df = forms::to_data_form(&form, None, Secrets::Hide);
                            if let Some(r) = gw.rooms.get_mut(&user2, &room2) {
                                r.owner_step = Some((stage, form));
                            }
                            B::new("query", ns::MUC_OWNER).c(df).build()
                        }
                        _ => Element::bare("query", ns::MUC_OWNER),
                    }))
                },
            );
            return;
        }
        let step = self
            .rooms
            .get(user, room)
            .and_then(|r| r.owner_step.clone());
        let Some((stage, form)) = step else {
            let e = xml::error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "Request the configuration form first.",
            );
            return self.send_error(xml::iq_error(&to, &from, &id, e));
        };
        let values = match forms::find_form(q).map(|x| forms::read_submitted(x, &form)) {
            Some(Ok(Submitted::Values(v))) => v,
            Some(Ok(Submitted::Cancel)) | None => {
                return self.send(xml::iq_result(&to, &from, &id, None));
            }
            Some(Err(e)) => {
                let e = xml::error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    &e.to_string(),
                );
                return self.send_error(xml::iq_error(&to, &from, &id, e));
            }
        };
        let values = match form.validate(&values) {
            Ok(v) => v,
            Err(e) => {
                let e = xml::error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    &e.to_string(),
                );
                return self.send_error(xml::iq_error(&to, &from, &id, e));
            }
        };
        // The form is used up whatever the answer.
        if let Some(r) = self.rooms.get_mut(&user2, &room2) {
            r.owner_step = None;
        }
        let asked = Asked::new(&from, &to, &id);
        self.act_answer(
            user,
            Action::Command(call(Some(stage), values)),
            asked,
            |_, _| Ok(None),
        );
    }
}
