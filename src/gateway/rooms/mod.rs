//! The gateway's handling of the rooms it hosts for bridges that have group
//! conversations (XEP-0045), with their archive (XEP-0313): stanzas from
//! the users' clients to rooms, and the sessions' room events to clients.
//! The rooms' data and stanza builders are in [`crate::muc`].
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
mod iq;
mod messages;
mod presence;

use ferry_bridge::{Occupant, RoomId, UserId};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use crate::gateway::router::Gateway;
use crate::muc::history;
use crate::muc::join::{self, occupant_presence};
use crate::muc::{Client, Room, exit_view, join_error, mam};

impl Gateway {
    pub(super) fn room_entry(&mut self, user: &UserId, room: &RoomId) -> Option<&mut Room> {
        let jids = &self.jids;
        self.rooms.entry(user, room, || jids.room(room))
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
