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
//!
//! When the session loses the room because its connection to the network
//! dropped (`RoomExit::Disconnected`) or the session restarts, the clients
//! stay in the room: they see their own presence turn `xa` with the reason,
//! and when the session is back in the room (`RoomJoined` again) the
//! occupant list, nickname and subject are brought up to date. Only when the
//! session cannot get back in (`RoomJoinFailed`, a login that needs the
//! user, the session ending) do the clients leave, with status 332.

mod events;
pub mod history;
mod iq;
pub mod join;
pub mod mam;
mod messages;
mod presence;

use std::collections::BTreeMap;

use ferry_bridge::{
    Affiliation, BridgeError, ErrorKind, Occupant, Role, RoomExit, RoomId, RoomInfo, Subject,
    UserId,
};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::gateway::router::Gateway;
use crate::xmpp::xml::{self, B, ns};

use history::HistoryRequest;
use join::{OccupantView, occupant_presence};

/// One client of the user in a room.
#[derive(Clone, Debug)]
pub struct Client {
    /// Whether it got the join sequence.
    pub joined: bool,
    /// The nickname it asked for.
    pub requested: String,
    /// The history it asked for.
    pub history: HistoryRequest,
    /// Its presence in the room (show, status, priority): a client in a
    /// room is available even without presence to the gateway.
    pub presence: crate::xmpp::availability::Resource,
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
    /// The room password given on the first join (for joining again after
    /// the session restarted).
    pub password: Option<String>,
    /// The session restarted while in the room: join again once it is up.
    pub rejoin: bool,
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
            password: None,
            rejoin: false,
        }
    }

    /// Whether messages are archived.
    pub fn records(&self) -> bool {
        self.info.as_ref().is_none_or(|i| i.history.record)
    }

    fn non_anonymous(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.non_anonymous)
    }

    /// The network connection is lost while clients stay in the room,
    /// waiting for the session to be back in it.
    pub fn suspended(&self) -> bool {
        !self.joined && self.clients.values().any(|c| c.joined)
    }

    /// The nickname a sender has in this room (None for the room itself).
    pub fn sender_nick(&self, from: &ferry_bridge::Sender) -> Option<String> {
        use ferry_bridge::Sender;
        match from {
            Sender::Occupant(n) => Some(n.clone()),
            Sender::Own => Some(self.nick.clone()),
            Sender::Contact(c) => Some(
                self.occupants
                    .values()
                    .find(|o| o.contact.as_ref() == Some(c))
                    .map(|o| o.nick.clone())
                    .unwrap_or_else(|| c.to_string()),
            ),
            Sender::Service => None,
        }
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

    /// Whether a user is in a room, on the way in, or has a client there
    /// (their session is needed for it).
    pub fn in_use_by(&self, user: &UserId) -> bool {
        self.of_user(user)
            .any(|r| r.joined || r.joining || r.rejoin || !r.clients.is_empty())
    }

    /// Forgets the user's views of rooms they are no longer in (joined
    /// again, a room starts afresh; its archive is in the store).
    pub fn forget_left(&mut self, user: &UserId) {
        self.map.retain(|(u, _), r| {
            u != user || r.joined || r.joining || r.rejoin || !r.clients.is_empty()
        });
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
            // As biboumi does: the connection to the network is gone.
            v.codes.push(332);
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
    pub(super) fn room_entry(&mut self, user: &UserId, room: &RoomId) -> Option<&mut Room> {
        let key = (user.clone(), room.clone());
        if !self.rooms.map.contains_key(&key) {
            let jid = self.jids.room(room)?;
            self.rooms
                .map
                .insert(key.clone(), Room::new(room.clone(), jid));
        }
        self.rooms.map.get_mut(&key)
    }

    pub(super) fn client_jid(user: &UserId, resource: &str) -> Option<Jid> {
        Gateway::user_jid(user)?
            .with_resource_str(resource)
            .ok()
            .map(Jid::from)
    }

    /// Full JIDs of the user's clients joined to a room.
    pub(super) fn joined_clients(&self, user: &UserId, room: &RoomId) -> Vec<Jid> {
        self.rooms
            .get(user, room)
            .map(|r| {
                r.joined_resources()
                    .filter_map(|res| Self::client_jid(user, res))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn contact_jid_fn(&self) -> impl Fn(&Occupant) -> Option<Jid> + '_ {
        move |o: &Occupant| {
            o.contact
                .as_ref()
                .and_then(|c| self.jids.contact(c))
                .map(Jid::from)
        }
    }

    // ----- presence -----

    pub(super) fn occupant_el(&self, user: &UserId, r: &Room, o: &Occupant, to: &Jid) -> Element {
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
}
