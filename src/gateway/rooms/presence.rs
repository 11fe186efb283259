//! Presences of the user's clients to a room: joining (the first client
//! asks the network, the others are served from the gateway's state, in
//! XEP-0045 order), changing nickname and leaving.

use std::time::SystemTime;

use ferry_bridge::{Action, Feature, Occupant, Role, RoomId, UserId};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::gateway::router::Gateway;
use crate::store::ArchiveQuery;
use crate::xmpp::message::{self};
use crate::xmpp::xml::{self, ns};

use super::history::HistoryRequest;
use super::join::{JoinView, OccupantView, occupant_presence};

use super::*;

/// A client's presence in a room, as the gateway tracks resources.
fn client_presence(p: &Presence) -> crate::xmpp::availability::Resource {
    crate::xmpp::availability::Resource {
        show: p.show.clone(),
        status: p
            .statuses
            .get("")
            .or_else(|| p.statuses.values().next())
            .cloned(),
        priority: p.priority.0,
        caps: None,
        seq: crate::xmpp::availability::next_presence_seq(),
    }
}

impl Gateway {
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
        // The room speaks from the JID the gateway writes for it: a join
        // under another spelling (an escape written differently) would
        // show the user two rooms, so it is refused with the right one.
        if let Some(canonical) = self.jids.room(&room)
            && canonical.to_string().to_lowercase() != to.to_bare().to_string().to_lowercase()
        {
            let err = xml::error(
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                &format!(
                    "This room's address is {canonical}: join it there (the gateway writes \
                     {} that way).",
                    to.to_bare()
                ),
            );
            return self.send_error(xml::presence_error(&to, &from, p.id.as_deref(), err));
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
        let presence = client_presence(&p);
        let already = r.clients.get(&resource).is_some_and(|c| c.joined);
        if already {
            if let Some(c) = r.clients.get_mut(&resource) {
                c.presence = presence;
            }
            if nick != r.nick {
                return self.muc_change_nick(&user, &room, &from, &to, &nick);
            }
            // A presence update of a joined client (away, back).
            return self.user_presence_changed(&user);
        }
        let joined = r.joined;
        r.clients.insert(
            resource.clone(),
            Client {
                joined: false,
                requested: nick.clone(),
                history,
                presence,
            },
        );
        // The user is available from this client on, before the network
        // is asked to join (a connection made for it is not away).
        self.user_presence_changed(&user);
        let Some(r) = self.rooms.get_mut(&user, &room) else {
            return;
        };
        if joined {
            self.send_join(&user, &room, &resource);
            return;
        }
        if r.joining {
            return;
        }
        r.joining = true;
        r.nick = nick.clone();
        r.password = password.clone();
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

    pub(super) fn muc_change_nick(
        &mut self,
        user: &UserId,
        room: &RoomId,
        from: &Jid,
        to: &Jid,
        nick: &str,
    ) {
        if !self.info.capabilities.has(Feature::NickChange) {
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

    pub(super) fn muc_client_leaves(
        &mut self,
        user: &UserId,
        room: &RoomId,
        resource: &str,
        p: &Presence,
    ) {
        let Some(r) = self.rooms.get_mut(user, room) else {
            return;
        };
        let Some(client) = r.clients.remove(resource) else {
            return;
        };
        let nick = r.nick.clone();
        let jid = r.jid.clone();
        let last = r.clients.is_empty();
        let me = self
            .rooms
            .get(user, room)
            .and_then(|r| self.rooms.occupants(r).get(&nick).map(|o| o.affiliation));
        if client.joined
            && let Some(to) = Self::client_jid(user, resource)
        {
            let view = OccupantView {
                role: Some(Role::None),
                affiliation: Some(me.unwrap_or_default()),
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
        self.user_presence_changed(user);
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
    pub(super) fn send_join(&mut self, user: &UserId, room: &RoomId, resource: &str) {
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
        let occupants: Vec<&Occupant> = self.rooms.occupants(r).iter().collect();
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
}
