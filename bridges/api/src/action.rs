//! Actions: what the core asks a session to do on the network, on behalf of
//! the user, and what comes back.
//!
//! The core translates XMPP requests into actions; message ids are already
//! mapped to the network's ids ([`MessageId`]). A session that cannot do
//! something answers [`BridgeError`] with [`ErrorKind::Unsupported`] and a
//! sentence, which the user then sees: never silence.
//!
//! [`BridgeError`]: crate::BridgeError
//! [`ErrorKind::Unsupported`]: crate::ErrorKind::Unsupported

use crate::capability::Feature;
use crate::command::{CommandCall, CommandReply};
use crate::form::FormValues;
use crate::id::{Address, ContactId, MessageId, RoomId, ServiceId};
use crate::message::{ChatState, IncomingMessage, OutgoingMessage};
use crate::room::{Affiliation, Presence, Role, RoomListing};

/// Something to do on the network.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a message. Answer: [`Outcome::Sent`].
    SendMessage(OutgoingMessage),
    /// Replace the text of one of the user's earlier messages.
    Edit {
        /// The corrected message, with the same `to`.
        message: OutgoingMessage,
        /// The message it replaces.
        replaces: MessageId,
    },
    /// Delete a message: the user's own, or (with `moderate`) someone
    /// else's in a room the user moderates.
    Retract {
        /// The conversation.
        chat: Address,
        /// The message.
        target: MessageId,
        /// Moderation of another person's message, with a reason.
        moderate: Option<Option<String>>,
    },
    /// Set the user's reactions to a message. `emojis` is the complete new
    /// set: empty removes every reaction of the user.
    React {
        /// The conversation.
        chat: Address,
        /// The message reacted to.
        target: MessageId,
        /// All reactions of the user to it, after the change.
        emojis: Vec<String>,
    },
    /// Typing notification.
    ChatState {
        /// The conversation.
        chat: Address,
        /// The state.
        state: ChatState,
    },
    /// The user has seen every message up to this one.
    Displayed {
        /// The conversation.
        chat: Address,
        /// The last message seen.
        up_to: MessageId,
    },
    /// Join a room. Answer [`Outcome::Done`] at once; the session then
    /// reports [`Event::RoomJoined`] or [`Event::RoomJoinFailed`].
    ///
    /// [`Event::RoomJoined`]: crate::Event::RoomJoined
    /// [`Event::RoomJoinFailed`]: crate::Event::RoomJoinFailed
    JoinRoom {
        /// The room.
        room: RoomId,
        /// The nickname asked for.
        nick: String,
        /// Password (channel key), if the user gave one.
        password: Option<String>,
    },
    /// The user's last client left the room. The session leaves it on the
    /// network, or stays (a persistent room) and keeps reporting its
    /// events, which the core archives.
    LeaveRoom {
        /// The room.
        room: RoomId,
        /// Why, as the user said.
        reason: Option<String>,
    },
    /// Change the room's subject.
    SetSubject {
        /// The room.
        room: RoomId,
        /// The new subject.
        subject: String,
    },
    /// Change the user's nickname in a room (on networks where a nickname
    /// is global, everywhere).
    ChangeNick {
        /// The room.
        room: RoomId,
        /// The new nickname.
        nick: String,
    },
    /// Remove an occupant from a room.
    Kick {
        /// The room.
        room: RoomId,
        /// Who.
        nick: String,
        /// Why.
        reason: Option<String>,
    },
    /// Change an occupant's role.
    SetRole {
        /// The room.
        room: RoomId,
        /// Who.
        nick: String,
        /// The new role ([`Role::None`] kicks).
        role: Role,
        /// Why.
        reason: Option<String>,
    },
    /// Change a participant's affiliation (by nickname or contact).
    SetAffiliation {
        /// The room.
        room: RoomId,
        /// Who.
        target: Address,
        /// The new affiliation ([`Affiliation::Outcast`] bans).
        affiliation: Affiliation,
        /// Why.
        reason: Option<String>,
    },
    /// Invite someone to a room.
    Invite {
        /// The room.
        room: RoomId,
        /// Who: a contact, or an occupant address (a nickname).
        invitee: Address,
        /// Why.
        reason: Option<String>,
    },
    /// The user's presence changed (aggregated over their clients).
    SetPresence(Presence),
    /// The user added a contact to their roster (or wrote to it first).
    AddContact(ContactId),
    /// The user removed a contact from their roster.
    RemoveContact(ContactId),
    /// Fetch older messages of a conversation from the network, newest
    /// first, for the archive. Answer: [`Outcome::History`].
    FetchHistory {
        /// The conversation.
        chat: Address,
        /// Only messages before this one (None: the newest).
        before: Option<MessageId>,
        /// At most this many.
        limit: u32,
    },
    /// List rooms (of a service, or all). Answer: [`Outcome::Rooms`].
    ListRooms {
        /// The service whose rooms, if the network has several.
        service: Option<ServiceId>,
    },
    /// Ask a contact's client for its software version. Answer:
    /// [`Outcome::Version`].
    QueryVersion(Address),
    /// Check that a contact answers. Answer: [`Outcome::Done`] when it did.
    Ping(Address),
    /// One step of a bridge command. Answer: [`Outcome::Command`].
    Command(CommandCall),
    /// The user changed their preferences.
    PreferencesChanged(FormValues),
    /// Open a group conversation with a set of people (a group mail
    /// thread, a group SMS): answer [`Outcome::Room`] with the room's id
    /// (an existing one when the network has a conversation with exactly
    /// these members), then report [`Event::RoomJoined`] for it, with
    /// [`RoomInfo::members`] set, as for any room. Needs
    /// [`Feature::Groups`].
    ///
    /// [`Event::RoomJoined`]: crate::Event::RoomJoined
    /// [`RoomInfo::members`]: crate::RoomInfo::members
    OpenGroup {
        /// The other members (the user is implied).
        members: Vec<ContactId>,
        /// The conversation's subject, when the user gave one.
        subject: Option<String>,
    },
}

impl Action {
    /// The feature a network must declare for this action; None for what
    /// every network handles (messages, rooms when it has rooms, presence,
    /// contacts, commands, preferences). The core refuses an action whose
    /// feature is not declared before it reaches the session.
    pub fn feature(&self) -> Option<Feature> {
        Some(match self {
            Action::SendMessage(m) => return message_feature(m),
            Action::Edit { .. } => Feature::Corrections,
            Action::Retract {
                moderate: Some(_), ..
            } => Feature::Moderation,
            Action::Retract { .. } => Feature::Retractions,
            Action::React { .. } => Feature::Reactions,
            Action::ChatState { .. } => Feature::ChatStates,
            Action::Displayed { .. } => Feature::DisplayedMarkers,
            Action::JoinRoom { .. } | Action::LeaveRoom { .. } => Feature::Rooms,
            Action::SetSubject { .. } => Feature::SubjectChange,
            Action::ChangeNick { .. } => Feature::NickChange,
            Action::Kick { .. } | Action::SetRole { .. } | Action::SetAffiliation { .. } => {
                Feature::ModerationRoles
            }
            Action::Invite { .. } => Feature::Invites,
            Action::FetchHistory { .. } => Feature::History,
            Action::ListRooms { .. } => Feature::RoomList,
            Action::QueryVersion(_) => Feature::VersionQuery,
            Action::Ping(_) => Feature::Ping,
            Action::OpenGroup { .. } => Feature::Groups,
            Action::SetPresence(_)
            | Action::AddContact(_)
            | Action::RemoveContact(_)
            | Action::Command(_)
            | Action::PreferencesChanged(_) => return None,
        })
    }
}

/// The feature a message needs by where it goes (a private message to an
/// occupant, a room). Attachments, formatting, replies and threads are
/// adapted by the core rather than refused.
fn message_feature(m: &OutgoingMessage) -> Option<Feature> {
    match &m.to {
        Address::Occupant { .. } => Some(Feature::PrivateMessages),
        Address::Room(_) => Some(Feature::Rooms),
        Address::Contact(_) | Address::Service(_) => None,
    }
}

/// The result of an action.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Done; nothing to report.
    Done,
    /// A message went out, with the network's ids of it: none when the
    /// network gives none, several when it was split (a long SMS). Delivery
    /// is confirmed to the user once every part is [`Event::Delivered`].
    ///
    /// [`Event::Delivered`]: crate::Event::Delivered
    Sent(Vec<MessageId>),
    /// The group conversation [`Action::OpenGroup`] opened.
    Room(RoomId),
    /// Older messages, newest first.
    History(Vec<IncomingMessage>),
    /// A room listing.
    Rooms(Vec<RoomListing>),
    /// A software version.
    Version {
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// Operating system.
        os: Option<String>,
    },
    /// The next step of a command.
    Command(CommandReply),
}

impl Outcome {
    /// [`Outcome::Sent`] with one id.
    pub fn sent(id: MessageId) -> Outcome {
        Outcome::Sent(vec![id])
    }

    /// [`Outcome::Sent`] with no id (the network gives none).
    pub fn sent_none() -> Outcome {
        Outcome::Sent(Vec::new())
    }

    /// The first network id of a sent message (None for any other
    /// outcome).
    pub fn sent_id(self) -> Option<MessageId> {
        match self {
            Outcome::Sent(ids) => ids.into_iter().next(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ContactId;

    #[test]
    fn every_action_names_the_feature_it_needs() {
        let contact = Address::Contact(ContactId::new("c"));
        let room = RoomId::new("#r");
        let msg = |to: Address| Action::SendMessage(OutgoingMessage::text(to, "i", "b"));
        assert_eq!(msg(contact.clone()).feature(), None);
        assert_eq!(
            msg(Address::Room(room.clone())).feature(),
            Some(Feature::Rooms)
        );
        assert_eq!(
            msg(Address::Occupant {
                room: room.clone(),
                nick: "n".into()
            })
            .feature(),
            Some(Feature::PrivateMessages)
        );
        let retract = |moderate| Action::Retract {
            chat: contact.clone(),
            target: MessageId::new("m"),
            moderate,
        };
        assert_eq!(retract(None).feature(), Some(Feature::Retractions));
        assert_eq!(retract(Some(None)).feature(), Some(Feature::Moderation));
        assert_eq!(
            Action::OpenGroup {
                members: vec![ContactId::new("a")],
                subject: None
            }
            .feature(),
            Some(Feature::Groups)
        );
        assert_eq!(Action::Ping(contact).feature(), Some(Feature::Ping));
        assert_eq!(Action::AddContact(ContactId::new("a")).feature(), None);
    }

    #[test]
    fn sent_ids() {
        assert_eq!(
            Outcome::sent(MessageId::new("a")).sent_id(),
            Some(MessageId::new("a"))
        );
        assert_eq!(Outcome::sent_none().sent_id(), None);
        assert_eq!(Outcome::Done.sent_id(), None);
    }
}
