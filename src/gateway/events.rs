//! Events from the sessions: each becomes stanzas, archive entries or
//! roster changes, in the order the session reported them.

use ferry_bridge::{Address, ConnectionState, Event, Presence, UserId};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence as XPresence, Type as PType};

use super::router::Gateway;
use crate::xmpp::availability::xshow;
use crate::xmpp::message;

impl Gateway {
    /// Handles one event of a user's session.
    pub fn on_event(&mut self, user: UserId, event: Event) {
        match event {
            Event::Message(msg) => match &msg.chat {
                Address::Room(_) => self.muc_incoming(&user, msg),
                _ => self.direct_incoming(&user, msg),
            },
            Event::Retracted {
                chat,
                by,
                target,
                moderated,
            } => {
                if let Address::Room(room) = &chat {
                    return self.muc_retracted(&user, room, &by, &target, moderated);
                }
                let Some(xid) = self.xmpp_of(&user, &chat, &target) else {
                    return;
                };
                self.direct_signal(&user, &chat, &by, message::retraction(&xid));
            }
            Event::Reactions {
                chat,
                from,
                target,
                emojis,
            } => {
                if let Address::Room(room) = &chat {
                    return self.muc_reactions(&user, room, &from, &target, &emojis);
                }
                let Some(xid) = self.xmpp_of(&user, &chat, &target) else {
                    return;
                };
                self.direct_signal(&user, &chat, &from, vec![message::reactions(&xid, &emojis)]);
            }
            Event::ChatState { chat, from, state } => {
                if let Address::Room(room) = &chat {
                    return self.muc_chat_state(&user, room, &from, state);
                }
                self.direct_signal(&user, &chat, &from, vec![message::chat_state(state)]);
            }
            Event::Delivered { chat, id } => self.on_delivered(&user, &chat, &id),
            Event::DeliveryFailed {
                chat,
                id,
                error,
                permanent,
            } => self.on_delivery_failed(&user, &chat, &id, error, permanent),
            Event::Displayed { chat, by, up_to } => {
                if let Address::Room(room) = &chat {
                    return self.muc_displayed(&user, room, &by, &up_to);
                }
                let Some(xid) = self.xmpp_of(&user, &chat, &up_to) else {
                    return;
                };
                self.direct_signal(&user, &chat, &by, vec![message::displayed(&xid)]);
            }
            Event::ContactPresence { contact, presence } => {
                self.user_mut(&user)
                    .presence
                    .of_contacts
                    .insert(contact.clone(), presence.clone());
                self.send_contact_presence(&user, &contact, &presence);
            }
            Event::Contact(info) => self.on_contact_info(&user, info),
            Event::ContactRemoved(c) => self.on_contact_removed(&user, &c),
            Event::RoomJoined {
                info,
                nick,
                occupants,
                subject,
            } => self.muc_joined(&user, info, nick, occupants, subject),
            Event::RoomJoinFailed { room, error } => self.muc_join_failed(&user, &room, &error),
            Event::RoomLeft { room, exit } => self.muc_left(&user, &room, &exit),
            Event::Occupant { room, occupant } => self.muc_occupant(&user, &room, occupant),
            Event::OccupantLeft { room, nick, exit } => {
                self.muc_occupant_left(&user, &room, &nick, &exit)
            }
            Event::NickChanged { room, old, new } => {
                self.muc_nick_changed(&user, &room, &old, &new)
            }
            Event::Subject { room, subject } => self.muc_subject(&user, &room, subject),
            Event::RoomInfo(info) => self.muc_info(&user, info),
            Event::Invited {
                room,
                from,
                reason,
                password,
            } => self.muc_invited(&user, &room, from.as_ref(), reason, password),
            Event::RoomAvailable {
                room,
                name,
                autojoin,
            } => self.muc_available(&user, &room, name, autojoin),
            Event::ServicePresence { service, presence } => {
                self.send_service_presence(&user, &service, &presence)
            }
            Event::Connection(state) => self.on_connection(&user, state),
            Event::Notice(text) => self.notify(&user, &text),
            Event::AccountUpdated(account) => {
                if let Err(e) = self.store.register(&user, &account) {
                    tracing::warn!(user = %user, error = %e, "storing the updated account failed");
                }
            }
        }
    }

    fn on_connection(&mut self, user: &UserId, state: ConnectionState) {
        let u = self.user_mut(user);
        let previous = u.connection.replace(state.clone());
        if previous.as_ref() == Some(&state) {
            return;
        }
        match &state {
            ConnectionState::Disconnected(_) => {
                self.rooms_end_user(user, &super::presence::connection_text(&state));
            }
            ConnectionState::LoginRequired(e) => {
                self.rooms_end_user(user, &super::presence::connection_text(&state));
                self.notify(
                    user,
                    &format!(
                        "Login required: {e}. Register again with valid credentials (the 'Register' command, or send 'register' here)."
                    ),
                );
            }
            ConnectionState::Connected(_) => {
                // After a login the network's view of the user's presence
                // must be set again.
                if let Some(u) = self.users.get_mut(user) {
                    u.presence.sent = None;
                }
                self.user_presence_changed(user);
            }
            _ => {}
        }
        self.send_gateway_presence(user);
    }

    fn send_service_presence(
        &self,
        user: &UserId,
        service: &ferry_bridge::ServiceId,
        p: &Presence,
    ) {
        let (Some(from), Some(to)) = (self.jids.service(service), Self::user_jid(user)) else {
            return;
        };
        let mut x = if p.show == ferry_bridge::Show::Offline {
            XPresence::new(PType::Unavailable)
        } else {
            XPresence::available()
        }
        .with_from(Jid::from(from))
        .with_to(Jid::from(to));
        x.show = xshow(p.show);
        if let Some(s) = &p.status {
            x.set_status("", crate::xmpp::clean::clean(s).into_owned());
        }
        self.send(x.into());
    }
}
