//! Group conversations opened from a set of addresses
//! ([`Action::OpenGroup`]): a group mail thread, a group SMS.
//!
//! Two ways in, for networks that declare [`Feature::Groups`]: an XEP-0033
//! message to the gateway's domain whose `<addresses/>` name several people
//! of the network (then the message is the conversation's first), and the
//! `new-group` command on the gateway (members and a subject). The network
//! answers with a room, which the core hosts like any other: once the
//! session reports it joined, the user gets an invitation to the room's
//! JID, and the first message is sent there and archived, so the client
//! finds it in the room's history when it joins.
//!
//! A group the network opens by itself (someone wrote to the user and
//! others: a mail with several recipients) arrives as `RoomJoined` with
//! `RoomInfo::members` set and no action of the user: the core hosts it the
//! same way and invites the user the first time; its messages are archived
//! meanwhile, so the client finds them when it joins.

use ferry_bridge::{Action, Address, BridgeError, ContactId, Feature, Outcome, RoomId, UserId};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::router::Gateway;
use crate::xmpp::jids::Target;
use crate::xmpp::message::Inbound;
use crate::xmpp::xml;

/// XEP-0033 Extended Stanza Addressing.
pub const NS_ADDRESS: &str = "http://jabber.org/protocol/address";

/// The core's keys in a user's key/value space that remember the groups
/// the user was invited to (`ferry.` keys belong to the core).
const INVITED_PREFIX: &str = "ferry.group-invited/";

/// The first message of a group conversation, waiting for the session to
/// be in the room.
pub struct FirstMessage {
    /// The user's message, as sent to the gateway.
    original: Element,
    /// What it reads as.
    parsed: Inbound,
    /// The client that sent it.
    client: Jid,
}

/// A group conversation opened and not yet joined by the session.
#[derive(Default)]
pub struct PendingGroup {
    first: Option<FirstMessage>,
}

/// The JIDs an XEP-0033 `<addresses/>` sends to (`to` and `cc`; `bcc`
/// would hide members from each other, which a group conversation cannot).
pub fn multicast_addresses(m: &Message) -> Option<Vec<String>> {
    let addresses = m.payloads.iter().find(|p| p.is("addresses", NS_ADDRESS))?;
    Some(
        addresses
            .children()
            .filter(|a| a.is("address", NS_ADDRESS))
            .filter(|a| matches!(a.attr("type"), Some("to" | "cc") | None))
            .filter_map(|a| a.attr("jid").map(str::to_owned))
            .collect(),
    )
}

impl Gateway {
    /// The people of the network a list of JIDs (or typed addresses) names.
    /// The error says which one is not someone of the network.
    pub fn group_members(&self, user: &UserId, jids: &[String]) -> Result<Vec<ContactId>, String> {
        let mut members = Vec::new();
        for j in jids {
            let j = j.trim();
            let jid = match Jid::new(j) {
                Ok(jid) if self.jids.is_ours(&jid) => jid,
                _ => {
                    // An address as a person types it (a phone number).
                    let prefs = self.preferences_of(user);
                    let ctx = ferry_bridge::AddressContext {
                        user: Some(user),
                        preferences: &prefs,
                    };
                    match self.network.address().from_prompt(j, &ctx) {
                        Ok(Address::Contact(c)) => {
                            if !members.contains(&c) {
                                members.push(c);
                            }
                            continue;
                        }
                        _ => {
                            return Err(format!(
                                "{j} is not someone on {}: give their address on {}.",
                                self.info.name,
                                self.jids.domain()
                            ));
                        }
                    }
                }
            };
            match self.target_of(user, &jid) {
                Ok(Target::Address(Address::Contact(c))) => {
                    if !members.contains(&c) {
                        members.push(c);
                    }
                }
                Ok(_) => return Err(format!("{jid} is not a person on {}.", self.info.name)),
                Err(e) => return Err(format!("{jid}: {e}")),
            }
        }
        if members.is_empty() {
            return Err("A group conversation needs at least one other person.".into());
        }
        Ok(members)
    }

    /// An XEP-0033 message to the gateway's domain: a group conversation
    /// with its addresses, and this message as its first.
    pub fn on_multicast(&mut self, m: Message, parsed: Inbound, addresses: Vec<String>) {
        let (Some(from), Some(to)) = (m.from.clone(), m.to.clone()) else {
            return;
        };
        let user = Self::user_id(&from);
        let refuse = |gw: &Gateway, t: ErrorType, c: DefinedCondition, text: &str| {
            let err = xml::error(t, c, text);
            gw.send_error(xml::message_error(&to, &from, parsed.id.as_deref(), err));
        };
        if let Err(e) = self.check_use(&user) {
            return self.send_error(xml::message_error(&to, &from, parsed.id.as_deref(), *e));
        }
        if !self.info.capabilities.has(Feature::Groups) {
            let text = format!(
                "{} does not support {}: write to each person.",
                self.info.name,
                Feature::Groups.describe()
            );
            return refuse(
                self,
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                &text,
            );
        }
        let members = match self.group_members(&user, &addresses) {
            Ok(m) => m,
            Err(text) => {
                return refuse(
                    self,
                    ErrorType::Modify,
                    DefinedCondition::JidMalformed,
                    &text,
                );
            }
        };
        if parsed.has_content() && !self.accept_content(&from, &to, &parsed) {
            return;
        }
        let first = parsed.has_content().then(|| FirstMessage {
            original: m.clone().into(),
            parsed: parsed.clone(),
            client: from.clone(),
        });
        let subject = parsed.subject.clone();
        let id = parsed.id.clone();
        self.open_group(&user, members, subject, first, move |gw, r| {
            if let Err(e) = r {
                gw.send_error(xml::message_error(
                    &to,
                    &from,
                    id.as_deref(),
                    xml::bridge_error(&e),
                ));
            }
        });
    }

    /// Opens a group conversation; `then` gets the room (or why not).
    pub fn open_group(
        &mut self,
        user: &UserId,
        members: Vec<ContactId>,
        subject: Option<String>,
        first: Option<FirstMessage>,
        then: impl FnOnce(&mut Gateway, Result<RoomId, BridgeError>) + Send + 'static,
    ) {
        let u = user.clone();
        self.act(user, Action::OpenGroup { members, subject }, move |gw, r| {
            let room = match r {
                Ok(Outcome::Room(room)) => room,
                Ok(_) => {
                    return then(
                        gw,
                        Err(BridgeError::internal(
                            "The bridge answered the group conversation with something else than a room.",
                        )),
                    );
                }
                Err(e) => return then(gw, Err(e)),
            };
            gw.groups
                .insert((u.clone(), room.clone()), PendingGroup { first });
            // The session may be in the room already (an existing group).
            if gw.rooms.get(&u, &room).is_some_and(|r| r.joined) {
                gw.group_joined(&u, &room);
            }
            then(gw, Ok(room));
        });
    }

    /// The session is in a room: when it is a group the user just opened,
    /// the user is invited and the first message goes out.
    pub fn group_joined(&mut self, user: &UserId, room: &RoomId) {
        let Some(pending) = self.groups.remove(&(user.clone(), room.clone())) else {
            // A group the network opened (someone wrote to the user and
            // others): the user is invited, once.
            return self.invite_to_new_group(user, room);
        };
        let Some(first) = pending.first else {
            return self.invite_to_group(user, room);
        };
        let chat = Address::Room(room.clone());
        let FirstMessage {
            original,
            parsed,
            client,
        } = first;
        let Ok(m) = Message::try_from(original.clone()) else {
            return;
        };
        let action = match self.content_action(user, &m, &parsed, &chat) {
            Ok(a) => a,
            Err(e) => {
                let to = self.gw_jid();
                self.send_error(xml::message_error(&to, &client, parsed.id.as_deref(), *e));
                return self.invite_to_group(user, room);
            }
        };
        // The copy in the room is the message without its addresses.
        let mut original = original;
        original.remove_child("addresses", NS_ADDRESS);
        let (u, r) = (user.clone(), room.clone());
        // The invitation follows the first message, so that a client
        // joining at once finds it in the room's history.
        self.act(user, action, move |gw, res| match res {
            Ok(o) => {
                let ids = match o {
                    Outcome::Sent(ids) => ids,
                    _ => Vec::new(),
                };
                let client_id = parsed.client_id().map(str::to_owned);
                gw.reflect(&u, &r, original, client_id.clone(), parsed.id.clone(), &ids);
                gw.invite_to_group(&u, &r);
                if let Some(room_jid) = gw.jids.room(&r) {
                    gw.message_sent(
                        &u,
                        super::receipts::Sent {
                            chat: &Address::Room(r.clone()),
                            ids: &ids,
                            stanza_id: parsed.id.as_deref().or(client_id.as_deref()),
                            peer: &Jid::from(room_jid),
                            client: &client,
                            receipt: false,
                        },
                    );
                }
            }
            Err(e) => {
                let from = gw.gw_jid();
                gw.send_error(xml::message_error(
                    &from,
                    &client,
                    parsed.id.as_deref(),
                    xml::bridge_error(&e),
                ));
                gw.invite_to_group(&u, &r);
            }
        });
    }

    /// Invites the user to a group conversation the network opened by
    /// itself, the first time the session reports it (remembered in the
    /// user's space of the database, so a restart does not invite again).
    fn invite_to_new_group(&mut self, user: &UserId, room: &RoomId) {
        let is_group = self
            .rooms
            .get(user, room)
            .and_then(|r| r.info.as_ref())
            .is_some_and(|i| i.members.is_some());
        if !is_group {
            return;
        }
        let kv = self.store.kv(crate::store::KvScope::User(user.clone()));
        let key = format!("{INVITED_PREFIX}{room}");
        match kv.get(&key) {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "cannot read the group invitations");
                return;
            }
        }
        if let Err(e) = kv.put(&key, b"1") {
            tracing::warn!(user = %user, error = %e, "cannot record a group invitation");
        }
        self.invite_to_group(user, room);
    }

    /// Invites the user to a group conversation, unless a client of theirs
    /// is in it already.
    fn invite_to_group(&mut self, user: &UserId, room: &RoomId) {
        let joined = self
            .rooms
            .get(user, room)
            .is_some_and(|r| r.clients.values().any(|c| c.joined));
        if joined {
            return;
        }
        let names = self
            .rooms
            .get(user, room)
            .and_then(|r| r.info.as_ref())
            .and_then(|i| i.members.clone())
            .map(|m| {
                m.iter()
                    .map(ContactId::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        let reason = names.map(|n| format!("Group conversation with {n}"));
        self.muc_invited(user, room, None, reason, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_takes_to_and_cc_not_bcc() {
        let el: Element = format!(
            "<message xmlns='jabber:component:accept' to='gw' from='u@x/r'>\
             <body>hi</body><addresses xmlns='{NS_ADDRESS}'>\
             <address type='to' jid='a@gw'/><address type='cc' jid='b@gw'/>\
             <address type='bcc' jid='c@gw'/><address type='to'/></addresses></message>"
        )
        .parse()
        .expect("xml");
        let m = Message::try_from(el).expect("message");
        assert_eq!(
            multicast_addresses(&m),
            Some(vec!["a@gw".to_owned(), "b@gw".to_owned()])
        );
        let plain: Element =
            "<message xmlns='jabber:component:accept' to='gw'><body>x</body></message>"
                .parse()
                .expect("xml");
        assert_eq!(
            multicast_addresses(&Message::try_from(plain).expect("message")),
            None
        );
    }
}
