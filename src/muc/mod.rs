//! The rooms the gateway hosts (XEP-0045) as data: each user's view of a
//! room ([`Room`]: occupants, subject, the user's clients in it), every
//! user's views ([`Rooms`]), and the stanzas of the protocol — join
//! sequences and occupant presence ([`join`]), history requests
//! ([`history`]) and the archive's queries and results (XEP-0313, [`mam`]).
//!
//! This module knows no session and sends nothing: the gateway's room
//! handling ([`crate::gateway::rooms`]) owns a [`Rooms`], acts on the
//! network and sends what is built here. It depends only on the shared
//! XMPP vocabulary ([`crate::xmpp`]) and the store's archive types.
pub mod history;
pub mod join;
pub mod mam;
pub mod occupants;

use std::collections::{BTreeMap, HashMap};

use ferry_bridge::{
    Affiliation, BridgeError, ErrorKind, Role, RoomExit, RoomId, RoomInfo, Subject, UserId,
};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::xmpp::xml::{self, B, ns};

use history::HistoryRequest;
use join::OccupantView;

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
#[derive(Debug)]
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
    /// Occupants by nickname, as differences from the room's shared
    /// table (read them with [`Rooms::occupants`]).
    occupants: occupants::View,
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
    /// A view of a room the user is not in yet.
    pub fn new(id: RoomId, jid: BareJid) -> Room {
        Room {
            id,
            jid,
            joined: false,
            joining: false,
            nick: String::new(),
            info: None,
            subject: None,
            occupants: occupants::View::default(),
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

    /// Whether occupants see each other's real JIDs.
    pub fn non_anonymous(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.non_anonymous)
    }

    /// The network connection is lost while clients stay in the room,
    /// waiting for the session to be back in it.
    pub fn suspended(&self) -> bool {
        !self.joined && self.clients.values().any(|c| c.joined)
    }

    /// The resources of the user's clients that are joined.
    pub fn joined_resources(&self) -> impl Iterator<Item = &String> {
        self.clients
            .iter()
            .filter(|(_, c)| c.joined)
            .map(|(r, _)| r)
    }
}

/// Every user's rooms, and the occupant tables the users of a room share
/// ([`occupants`]).
#[derive(Default)]
pub struct Rooms {
    map: BTreeMap<(UserId, RoomId), Room>,
    tables: HashMap<RoomId, occupants::Table>,
}

impl Rooms {
    /// The nickname a sender has in a user's view of a room (None for the
    /// room itself).
    pub fn sender_nick(&self, r: &Room, from: &ferry_bridge::Sender) -> Option<String> {
        use ferry_bridge::Sender;
        match from {
            Sender::Occupant(n) => Some(n.clone()),
            Sender::Own => Some(r.nick.clone()),
            Sender::Contact(c) => Some(
                self.occupants(r)
                    .iter()
                    .find(|o| o.contact.as_ref() == Some(c))
                    .map(|o| o.nick.clone())
                    .unwrap_or_else(|| c.to_string()),
            ),
            Sender::Service => None,
        }
    }

    /// A user's view of a room.
    pub fn get(&self, user: &UserId, room: &RoomId) -> Option<&Room> {
        self.map.get(&(user.clone(), room.clone()))
    }

    /// A user's view of a room, to change.
    pub fn get_mut(&mut self, user: &UserId, room: &RoomId) -> Option<&mut Room> {
        self.map.get_mut(&(user.clone(), room.clone()))
    }

    /// A user's view of a room, made with the room's JID (from `jid`) when
    /// there is none yet; None when the room has no JID.
    pub fn entry(
        &mut self,
        user: &UserId,
        room: &RoomId,
        jid: impl FnOnce() -> Option<BareJid>,
    ) -> Option<&mut Room> {
        let key = (user.clone(), room.clone());
        if !self.map.contains_key(&key) {
            let jid = jid()?;
            self.map.insert(key.clone(), Room::new(room.clone(), jid));
        }
        self.map.get_mut(&key)
    }

    /// Forgets a user's view of a room.
    pub fn remove(&mut self, user: &UserId, room: &RoomId) -> Option<Room> {
        self.detach(user, room);
        self.map.remove(&(user.clone(), room.clone()))
    }

    /// Every (user, room) with a view.
    pub fn keys(&self) -> impl Iterator<Item = &(UserId, RoomId)> {
        self.map.keys()
    }

    /// A user's rooms.
    pub fn of_user<'a>(&'a self, user: &'a UserId) -> impl Iterator<Item = &'a Room> + 'a {
        // Keys sort by user first: the user's rooms are one range.
        self.map
            .range((user.clone(), RoomId::new(""))..)
            .take_while(move |((u, _), _)| u == user)
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
        let left: Vec<RoomId> = self
            .of_user(user)
            .filter(|r| !(r.joined || r.joining || r.rejoin || !r.clients.is_empty()))
            .map(|r| r.id.clone())
            .collect();
        for room in left {
            self.remove(user, &room);
        }
    }

    /// Rooms the sessions are in.
    pub fn joined_count(&self) -> usize {
        self.map.values().filter(|r| r.joined).count()
    }
}

/// The stanza error for a join the network refused.
pub fn join_error(e: &BridgeError) -> StanzaError {
    let (t, c) = match e.kind {
        ErrorKind::Conflict => (ErrorType::Cancel, DefinedCondition::Conflict),
        ErrorKind::NotAuthorized => (ErrorType::Auth, DefinedCondition::NotAuthorized),
        ErrorKind::NotAllowed => (ErrorType::Auth, DefinedCondition::Forbidden),
        ErrorKind::NotFound => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
        other => xml::condition_of(other),
    };
    xml::error(t, c, &e.message)
}

/// How an occupant's exit is shown: its view (codes, actor, reason), the
/// status text, and the `<destroy/>` of a destroyed room.
pub fn exit_view(exit: &RoomExit, me: bool) -> (OccupantView, Option<String>, Option<Element>) {
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
