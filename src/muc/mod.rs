//! Rooms hosted by the gateway for bridges that have group conversations
//! (XEP-0045), with their archive (XEP-0313).
//!
//! Each user has their own view of a room: the occupants, subject and
//! history as their own network session sees them. Several clients
//! (resources) of one user share one presence in the room behind one
//! nickname: the first join asks the network, later ones are served from
//! the gateway's state, and the network is left when the last client
//! leaves. Messages the user sends are reflected to every joined client
//! with the client's id and a `stanza-id` (the archive id) once the network
//! took them; the network's messages are delivered to every joined client
//! and archived, also while no client is joined.

pub mod history;
pub mod join;
pub mod mam;

use std::collections::BTreeMap;
use std::time::SystemTime;

use ferry_bridge::{
    Action, Address, Affiliation, BridgeError, CommandCall, CommandReply, CommandScope, ErrorKind,
    IncomingMessage, MessageId, Occupant, Outcome, Role, RoomExit, RoomId, RoomInfo, Sender,
    Subject, UserId,
};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::gateway::direct::chat_key;
use crate::gateway::forms::{self, Secrets, Submitted};
use crate::gateway::jids::{Target, with_resource};
use crate::gateway::message::{self, Inbound, Refs};
use crate::gateway::router::Gateway;
use crate::gateway::xml::{self, B, ns};
use crate::store::{ArchiveEntry, ArchiveQuery};

use history::HistoryRequest;
use join::{JoinView, OccupantView, occupant_presence};

/// One client of the user in a room.
#[derive(Clone, Debug)]
pub struct Client {
    /// Whether it got the join sequence.
    pub joined: bool,
    /// The nickname it asked for.
    pub requested: String,
    /// The history it asked for.
    pub history: HistoryRequest,
}

/// A user's view of one room.
#[derive(Clone, Debug)]
pub struct Room {
    /// The room.
    pub id: RoomId,
    /// Its JID.
    pub jid: BareJid,
    /// The session is in the room (RoomJoined, no RoomLeft since).
    pub joined: bool,
    /// A join was asked and is not answered yet.
    pub joining: bool,
    /// The user's nickname.
    pub nick: String,
    /// Facts about the room.
    pub info: Option<RoomInfo>,
    /// The subject.
    pub subject: Option<Subject>,
    /// Occupants by nickname.
    pub occupants: BTreeMap<String, Occupant>,
    /// The user's clients, by resource.
    pub clients: BTreeMap<String, Client>,
    /// Room configuration in progress: (stage, form).
    pub owner_step: Option<(String, ferry_bridge::Form)>,
    /// The network has no older history.
    pub history_exhausted: bool,
}

impl Room {
    fn new(id: RoomId, jid: BareJid) -> Room {
        Room {
            id,
            jid,
            joined: false,
            joining: false,
            nick: String::new(),
            info: None,
            subject: None,
            occupants: BTreeMap::new(),
            clients: BTreeMap::new(),
            owner_step: None,
            history_exhausted: false,
        }
    }

    /// Whether messages are archived.
    pub fn records(&self) -> bool {
        self.info.as_ref().is_none_or(|i| i.history.record)
    }

    fn non_anonymous(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.non_anonymous)
    }

    fn joined_resources(&self) -> impl Iterator<Item = &String> {
        self.clients
            .iter()
            .filter(|(_, c)| c.joined)
            .map(|(r, _)| r)
    }
}

/// Every user's rooms.
#[derive(Default)]
pub struct Rooms {
    map: BTreeMap<(UserId, RoomId), Room>,
}

impl Rooms {
    /// A user's view of a room.
    pub fn get(&self, user: &UserId, room: &RoomId) -> Option<&Room> {
        self.map.get(&(user.clone(), room.clone()))
    }

    fn get_mut(&mut self, user: &UserId, room: &RoomId) -> Option<&mut Room> {
        self.map.get_mut(&(user.clone(), room.clone()))
    }

    /// A user's rooms.
    pub fn of_user<'a>(&'a self, user: &'a UserId) -> impl Iterator<Item = &'a Room> + 'a {
        self.map
            .iter()
            .filter(move |((u, _), _)| u == user)
            .map(|(_, r)| r)
    }

    /// Rooms the sessions are in.
    pub fn joined_count(&self) -> usize {
        self.map.values().filter(|r| r.joined).count()
    }
}

fn join_error(e: &BridgeError) -> StanzaError {
    let (t, c) = match e.kind {
        ErrorKind::Conflict => (ErrorType::Cancel, DefinedCondition::Conflict),
        ErrorKind::NotAuthorized => (ErrorType::Auth, DefinedCondition::NotAuthorized),
        ErrorKind::NotAllowed => (ErrorType::Auth, DefinedCondition::Forbidden),
        ErrorKind::NotFound => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
        other => xml::condition_of(other),
    };
    xml::error(t, c, &e.message)
}

fn exit_view(exit: &RoomExit, me: bool) -> (OccupantView, Option<String>, Option<Element>) {
    let mut v = OccupantView {
        role: Some(Role::None),
        affiliation: Some(Affiliation::None),
        ..OccupantView::default()
    };
    let mut status = None;
    let mut destroy = None;
    match exit {
        RoomExit::Left(r) => status = r.clone(),
        RoomExit::Quit(r) => status = Some(format!("Quit: {}", r.as_deref().unwrap_or(""))),
        RoomExit::Kicked { by, reason } => {
            v.codes.push(307);
            v.actor = by.clone();
            v.reason = reason.clone();
        }
        RoomExit::Banned { by, reason } => {
            v.codes.push(301);
            v.affiliation = Some(Affiliation::Outcast);
            v.actor = by.clone();
            v.reason = reason.clone();
        }
        RoomExit::Disconnected(why) => {
            v.codes.push(333);
            status = Some(why.clone());
        }
        RoomExit::Destroyed(reason) => {
            destroy = Some(
                B::new("destroy", ns::MUC_USER)
                    .oc(reason
                        .as_ref()
                        .map(|r| B::new("reason", ns::MUC_USER).t(r.clone())))
                    .build(),
            );
        }
    }
    if me {
        v.codes.insert(0, 110);
    }
    (v, status, destroy)
}

impl Gateway {
    fn room_entry(&mut self, user: &UserId, room: &RoomId) -> Option<&mut Room> {
        let key = (user.clone(), room.clone());
        if !self.rooms.map.contains_key(&key) {
            let jid = self.jids.room(room)?;
            self.rooms
                .map
                .insert(key.clone(), Room::new(room.clone(), jid));
        }
        self.rooms.map.get_mut(&key)
    }

    fn client_jid(user: &UserId, resource: &str) -> Option<Jid> {
        Gateway::user_jid(user)?
            .with_resource_str(resource)
            .ok()
            .map(Jid::from)
    }

    /// Full JIDs of the user's clients joined to a room.
    fn joined_clients(&self, user: &UserId, room: &RoomId) -> Vec<Jid> {
        self.rooms
            .get(user, room)
            .map(|r| {
                r.joined_resources()
                    .filter_map(|res| Self::client_jid(user, res))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn contact_jid_fn(&self) -> impl Fn(&Occupant) -> Option<Jid> + '_ {
        move |o: &Occupant| {
            o.contact
                .as_ref()
                .and_then(|c| self.jids.contact(c))
                .map(Jid::from)
        }
    }

    // ----- presence -----

    /// A presence to `room@gw/nick`: join, nick change, leave.
    pub fn muc_presence(&mut self, p: Presence, from: Jid, to: Jid, user: UserId, room: RoomId) {
        let Some(resource) = from.resource().map(|r| r.as_str().to_owned()) else {
            return;
        };
        let nick = to.resource().map(|r| r.as_str().to_owned());
        if matches!(p.type_, PType::Unavailable | PType::Error) {
            return self.muc_client_leaves(&user, &room, &resource, &p);
        }
        let Some(nick) = nick.filter(|n| !n.trim().is_empty()) else {
            let err = xml::error(
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                "Join the room with a nickname: room@gateway/nickname.",
            );
            return self.send_error(xml::presence_error(&to, &from, p.id.as_deref(), err));
        };
        if let Err(e) = self.check_use(&user) {
            return self.send_error(xml::presence_error(&to, &from, p.id.as_deref(), *e));
        }
        let muc_x = p.payloads.iter().find(|e| e.is("x", ns::MUC));
        let password = muc_x
            .and_then(|x| x.get_child("password", ns::MUC))
            .map(Element::text);
        let history = HistoryRequest::parse(muc_x);
        let Some(r) = self.room_entry(&user, &room) else {
            let err = xml::error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "This room cannot be written as an address of the gateway.",
            );
            return self.send_error(xml::presence_error(&to, &from, p.id.as_deref(), err));
        };
        let already = r.clients.get(&resource).is_some_and(|c| c.joined);
        if already {
            if nick != r.nick {
                return self.muc_change_nick(&user, &room, &from, &to, &nick);
            }
            // A presence update of a joined client: nothing to do.
            return;
        }
        let joined = r.joined;
        r.clients.insert(
            resource.clone(),
            Client {
                joined: false,
                requested: nick.clone(),
                history,
            },
        );
        if joined {
            self.send_join(&user, &room, &resource);
            return;
        }
        if r.joining {
            return;
        }
        r.joining = true;
        r.nick = nick.clone();
        let room2 = room.clone();
        let user2 = user.clone();
        self.act(
            &user,
            Action::JoinRoom {
                room: room.clone(),
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

    fn muc_change_nick(&mut self, user: &UserId, room: &RoomId, from: &Jid, to: &Jid, nick: &str) {
        if !self.info.capabilities.nick_change {
            let err = xml::error(
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                &format!(
                    "{} does not let you change your nickname in rooms.",
                    self.info.name
                ),
            );
            return self.send_error(xml::presence_error(to, from, None, err));
        }
        let (from, to) = (from.clone(), to.clone());
        self.act(
            user,
            Action::ChangeNick {
                room: room.clone(),
                nick: nick.to_owned(),
            },
            move |gw, r| {
                if let Err(e) = r {
                    gw.send_error(xml::presence_error(&to, &from, None, join_error(&e)));
                }
            },
        );
    }

    fn muc_client_leaves(&mut self, user: &UserId, room: &RoomId, resource: &str, p: &Presence) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        let Some(client) = r.clients.remove(resource) else {
            return;
        };
        let nick = r.nick.clone();
        let jid = r.jid.clone();
        let me = r.occupants.get(&nick).cloned();
        let last = r.clients.is_empty();
        if client.joined
            && let Some(to) = Self::client_jid(user, resource)
        {
            let view = OccupantView {
                role: Some(Role::None),
                affiliation: Some(me.map(|o| o.affiliation).unwrap_or_default()),
                codes: vec![110],
                ..OccupantView::default()
            };
            let status = p.statuses.values().next().map(String::as_str);
            self.send(occupant_presence(
                &jid,
                &nick,
                &to,
                ferry_bridge::Show::Offline,
                status,
                &view,
                true,
            ));
        }
        if last {
            let reason = p.statuses.values().next().cloned();
            if let Some(r) = self.rooms.get_mut(user, room) {
                r.joined = false;
                r.joining = false;
            }
            self.act_silent(
                user,
                Action::LeaveRoom {
                    room: room.clone(),
                    reason,
                },
            );
        }
    }

    /// Sends the join sequence to one client.
    fn send_join(&mut self, user: &UserId, room: &RoomId, resource: &str) {
        let Some(to) = Self::client_jid(user, resource) else {
            return;
        };
        let Some(user_bare) = Gateway::user_jid(user) else {
            return;
        };
        let Some(r) = self.rooms.get(user, room) else {
            return;
        };
        let Some(client) = r.clients.get(resource).cloned() else {
            return;
        };
        let cap = r.info.as_ref().map_or(20, |i| i.history.on_join);
        let (max, start) = client.history.limits(cap, SystemTime::now());
        let mut hist = Vec::new();
        if max > 0 && r.records() {
            let q = ArchiveQuery {
                user: Some(user.clone()),
                room: room.to_string(),
                start,
                before_id: Some(String::new()),
                max,
                ..ArchiveQuery::default()
            };
            match self.store.archive_query(&q) {
                Ok(page) => {
                    for e in page.items {
                        if let Some(m) = mam::stored_message(&e) {
                            let mut m = xml::renamespace(&m, ns::CLIENT, ns::STREAM);
                            xml::set_attr(&mut m, "to", to.to_string());
                            m.append_child(message::delay(e.timestamp, &Jid::from(r.jid.clone())));
                            hist.push(m);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading room history failed"),
            }
            hist = client.history.apply_maxchars(hist);
        }
        let occupants: Vec<Occupant> = r.occupants.values().cloned().collect();
        let view = JoinView {
            room: &r.jid,
            to: &to,
            nick: &r.nick,
            requested: &client.requested,
            occupants: &occupants,
            non_anonymous: r.non_anonymous(),
            user: &user_bare,
            history: hist,
            subject: r.subject.as_ref(),
            created: false,
        };
        let seq = join::join_sequence(&view, &self.contact_jid_fn());
        for el in seq {
            self.send(el);
        }
        if let Some(r) = self.rooms.get_mut(user, room)
            && let Some(c) = r.clients.get_mut(resource)
        {
            c.joined = true;
        }
    }

    // ----- events -----

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
        r.nick = nick;
        r.info = Some(info);
        r.subject = Some(subject);
        let old: Vec<String> = r.occupants.keys().cloned().collect();
        r.occupants = occupants.into_iter().map(|o| (o.nick.clone(), o)).collect();
        let pending: Vec<String> = r
            .clients
            .iter()
            .filter(|(_, c)| !c.joined)
            .map(|(k, _)| k.clone())
            .collect();
        let rejoined: Vec<String> = r.joined_resources().cloned().collect();
        let gone: Vec<String> = old
            .into_iter()
            .filter(|n| !r.occupants.contains_key(n))
            .collect();
        for res in pending {
            self.send_join(user, &room, &res);
        }
        // Clients that were in the room already (a reconnection): bring
        // their occupant list up to date.
        for res in rejoined {
            let Some(to) = Self::client_jid(user, &res) else {
                continue;
            };
            let Some(r) = self.rooms.get(user, &room) else {
                return;
            };
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
            for o in r.occupants.values() {
                self.send(self.occupant_el(user, r, o, &to));
            }
        }
    }

    fn occupant_el(&self, user: &UserId, r: &Room, o: &Occupant, to: &Jid) -> Element {
        let me = o.is_self || o.nick == r.nick;
        let mut view = join::view_of(&r.jid, o, r.non_anonymous(), &self.contact_jid_fn());
        if me {
            view.codes.push(110);
            view.jid = r.non_anonymous().then(|| to.clone());
            view.occupant_id = Some(join::occupant_id(&r.jid, &format!("self:{user}")));
        }
        occupant_presence(
            &r.jid,
            &o.nick,
            to,
            o.presence.show,
            o.presence.status.as_deref(),
            &view,
            false,
        )
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
        let jid = r.jid.clone();
        let remove = r.clients.is_empty() && !r.joined;
        for (res, nick) in pending {
            if let Some(to) = Self::client_jid(user, &res) {
                let from = Jid::from(with_resource(&jid, &nick));
                self.send_error(xml::presence_error(&from, &to, None, join_error(error)));
            }
        }
        if remove {
            self.rooms.map.remove(&(user.clone(), room.clone()));
        }
    }

    /// The user is no longer in a room (kicked, banned, disconnected).
    pub fn muc_left(&mut self, user: &UserId, room: &RoomId, exit: &RoomExit) {
        self.muc_left_with(user, room, exit, None)
    }

    /// [`Gateway::muc_left`] with a status code replacing the exit's own
    /// (332: the service shuts down).
    fn muc_left_with(&mut self, user: &UserId, room: &RoomId, exit: &RoomExit, code: Option<u16>) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        let clients: Vec<String> = r.joined_resources().cloned().collect();
        let (jid, nick) = (r.jid.clone(), r.nick.clone());
        r.joined = false;
        r.joining = false;
        r.clients.clear();
        r.occupants.clear();
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
        r.occupants.insert(occupant.nick.clone(), occupant.clone());
        let r = r.clone();
        for to in self.joined_clients(user, room) {
            self.send(self.occupant_el(user, &r, &occupant, &to));
        }
    }

    /// An occupant left.
    pub fn muc_occupant_left(&mut self, user: &UserId, room: &RoomId, nick: &str, exit: &RoomExit) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        let old = r.occupants.remove(nick);
        let jid = r.jid.clone();
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
        let mut occ = r
            .occupants
            .remove(old)
            .unwrap_or_else(|| Occupant::new(old));
        occ.nick = new.to_owned();
        if me {
            occ.is_self = true;
            r.nick = new.to_owned();
        }
        r.occupants.insert(new.to_owned(), occ.clone());
        let r = r.clone();
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
            self.send(self.occupant_el(user, &r, &occ, &to));
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

    fn send_invitation(
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
            let field = |var: &str, v: &str| {
                B::new("field", ns::DATA_FORMS)
                    .a("var", var)
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
                            "http://jabber.org/protocol/pubsub#publish-options",
                        ))
                        .c(field("pubsub#persist_items", "true"))
                        .c(field("pubsub#max_items", "max"))
                        .c(field("pubsub#send_last_published_item", "never"))
                        .c(field("pubsub#access_model", "whitelist"))),
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

    // ----- messages -----

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
        if !caps.rooms {
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
            if !caps.invites {
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
                    .and_then(|j| match self.jids.target(&j) {
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
            if !caps.subject_change {
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
        if let Some(target) = &p.retract {
            if !caps.retractions {
                return bounce(
                    self,
                    xml::error(
                        ErrorType::Cancel,
                        DefinedCondition::FeatureNotImplemented,
                        &format!("{} does not support retracting messages.", self.info.name),
                    ),
                );
            }
            let Some(fid) = self.foreign_of(&user, &chat, target) else {
                return bounce(
                    self,
                    xml::error(
                        ErrorType::Cancel,
                        DefinedCondition::ItemNotFound,
                        "The message to retract is not known to the gateway.",
                    ),
                );
            };
            let action = Action::Retract {
                chat,
                target: fid,
                moderate: None,
            };
            return self.act_or_bounce(&user, action, &from, &to, p.id.clone());
        }
        if let Some((target, emojis)) = &p.reactions {
            if !caps.reactions {
                return bounce(
                    self,
                    xml::error(
                        ErrorType::Cancel,
                        DefinedCondition::FeatureNotImplemented,
                        &format!("{} does not support reactions.", self.info.name),
                    ),
                );
            }
            let Some(fid) = self.foreign_of(&user, &chat, target) else {
                return bounce(
                    self,
                    xml::error(
                        ErrorType::Cancel,
                        DefinedCondition::ItemNotFound,
                        "The message reacted to is not known to the gateway.",
                    ),
                );
            };
            let action = Action::React {
                chat,
                target: fid,
                emojis: emojis.clone(),
            };
            return self.act_or_bounce(&user, action, &from, &to, p.id.clone());
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
                    let fid = match o {
                        Outcome::Sent(f) => f,
                        _ => None,
                    };
                    gw.reflect(&u, &room, original, client_id, id, fid);
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
        if let Some(state) = p.chat_state
            && caps.chat_states
            && self.pref_on(&user, "send_typing")
        {
            self.act_silent(
                &user,
                Action::ChatState {
                    chat: chat.clone(),
                    state,
                },
            );
        }
        if let Some(id) = &p.displayed
            && caps.displayed_markers
            && let Some(fid) = self.foreign_of(&user, &chat, id)
        {
            self.act_silent(&user, Action::Displayed { chat, up_to: fid });
        }
    }

    /// Reflects a user's message to all their joined clients, with a
    /// stanza-id, then archives it.
    fn reflect(
        &mut self,
        user: &UserId,
        room: &RoomId,
        original: Element,
        client_id: Option<String>,
        id: Option<String>,
        fid: Option<MessageId>,
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
        if let Some(f) = &fid {
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
                foreign_id: fid.map(MessageId::into_string),
                stanza: String::from(&xml::renamespace(&base, ns::STREAM, ns::CLIENT)),
            });
        }
    }

    fn sender_nick(&self, r: &Room, from: &Sender) -> Option<String> {
        match from {
            Sender::Occupant(n) => Some(n.clone()),
            Sender::Own => Some(r.nick.clone()),
            Sender::Contact(c) => Some(
                r.occupants
                    .values()
                    .find(|o| o.contact.as_ref() == Some(c))
                    .map(|o| o.nick.clone())
                    .unwrap_or_else(|| c.to_string()),
            ),
            Sender::Service => None,
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
        let Some(r) = self.room_entry(user, &room) else {
            return;
        };
        let r = r.clone();
        let nick = self.sender_nick(&r, &msg.from);
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
            let author = rt
                .author
                .as_ref()
                .and_then(|a| self.sender_nick(&r, a))
                .map(|n| Jid::from(with_resource(&r.jid, &n)));
            Some((xid, author))
        });
        let refs = Refs {
            replaces,
            reply,
            stanza_id: Some((archive_id.clone(), room_jid.clone())),
            origin_id: false,
            markable: self.info.capabilities.displayed_markers,
            delay_from: msg.timestamp.map(|_| room_jid.clone()),
        };
        let max = self.settings.max_message_bytes;
        let user2 = user.clone();
        let records = r.records();
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
    fn room_signal(
        &mut self,
        user: &UserId,
        room: &RoomId,
        from: Option<&Sender>,
        payloads: Vec<Element>,
        archive: bool,
    ) {
        let Some(r) = self.rooms.get(user, room).cloned() else {
            return;
        };
        let nick = from.and_then(|f| self.sender_nick(&r, f));
        let sender = match &nick {
            Some(n) => Jid::from(with_resource(&r.jid, n)),
            None => Jid::from(r.jid.clone()),
        };
        let room_jid = Jid::from(r.jid.clone());
        let mut base = message::signal(&sender, &room_jid, MessageType::Groupchat, payloads);
        let archive_id = if archive && r.records() {
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
                let Some(r) = self.rooms.get(user, room).cloned() else {
                    return;
                };
                let by_jid = self
                    .sender_nick(&r, by)
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

    // ----- IQs -----

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
        let room = match self.jids.bare_target(to) {
            Ok(Target::Address(Address::Room(r))) if self.info.capabilities.rooms => r,
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
    fn muc_moderate(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        user: &UserId,
        room: &RoomId,
        target: Option<String>,
        reason: Option<String>,
    ) {
        if !self.info.capabilities.moderation {
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
        let (from, to, id) = (from.clone(), to.clone(), id.to_owned());
        self.act(
            user,
            Action::Retract {
                chat,
                target: fid,
                moderate: Some(reason.filter(|r| !r.is_empty())),
            },
            move |gw, r| match r {
                Ok(_) => gw.send(xml::iq_result(&to, &from, &id, None)),
                Err(e) => gw.send_error(xml::iq_error(&to, &from, &id, xml::bridge_error(&e))),
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn mam_query(
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
        if backfill && wants_older && !exhausted && self.info.capabilities.history {
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
    fn backfill(&mut self, user: &UserId, room: &RoomId, mut msgs: Vec<IncomingMessage>) {
        // The network gives them newest first.
        msgs.reverse();
        let chat = Address::Room(room.clone());
        let Some(r) = self.room_entry(user, room) else {
            return;
        };
        let r = r.clone();
        let room_jid = Jid::from(r.jid.clone());
        let mut previous: Option<String> = None;
        for mut m in msgs {
            if let Some(f) = &m.id
                && self.xmpp_of(user, &chat, f).is_some()
            {
                continue;
            }
            m.archive_only = true;
            let nick = self.sender_nick(&r, &m.from).unwrap_or_default();
            let from = if nick.is_empty() {
                room_jid.clone()
            } else {
                Jid::from(with_resource(&r.jid, &nick))
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
    fn muc_admin_set(
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
        if !self.info.capabilities.moderation_roles {
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
                    .map(|j| self.jids.target(&j))
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
        let (from, to, id) = (from.clone(), to.clone(), id.to_owned());
        self.act(user, action, move |gw, r| match r {
            Ok(_) => gw.send(xml::iq_result(&to, &from, &id, None)),
            Err(e) => gw.send_error(xml::iq_error(&to, &from, &id, xml::bridge_error(&e))),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn muc_admin_get(
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
        let items = r
            .occupants
            .values()
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
    fn muc_owner(
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
            self.act(
                user,
                Action::Command(call(None, Default::default())),
                move |gw, r| match r {
                    Ok(Outcome::Command(CommandReply::Form { form, stage, .. })) => {
                        let df = forms::to_data_form(&form, None, Secrets::Hide);
                        if let Some(r) = gw.rooms.get_mut(&user2, &room2) {
                            r.owner_step = Some((stage, form));
                        }
                        let el = B::new("query", ns::MUC_OWNER).c(Element::from(df)).build();
                        gw.send(xml::iq_result(&to, &from, &id, Some(el)));
                    }
                    Ok(_) => gw.send(xml::iq_result(
                        &to,
                        &from,
                        &id,
                        Some(Element::bare("query", ns::MUC_OWNER)),
                    )),
                    Err(e) => gw.send_error(xml::iq_error(&to, &from, &id, xml::bridge_error(&e))),
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
        self.act(
            user,
            Action::Command(call(Some(stage), values)),
            move |gw, r| {
                if let Some(r) = gw.rooms.get_mut(&user2, &room2) {
                    r.owner_step = None;
                }
                match r {
                    Ok(_) => gw.send(xml::iq_result(&to, &from, &id, None)),
                    Err(e) => gw.send_error(xml::iq_error(&to, &from, &id, xml::bridge_error(&e))),
                }
            },
        );
    }

    // ----- lifecycle -----

    /// Shutdown: every joined client gets unavailable with status 332.
    pub fn rooms_shutdown(&mut self) {
        let all: Vec<(UserId, RoomId)> = self.rooms.map.keys().cloned().collect();
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
            self.muc_left(user, &r, &RoomExit::Disconnected(why.to_owned()));
            self.rooms.map.remove(&(user.clone(), r));
        }
    }
}
