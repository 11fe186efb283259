//! Rooms and their participants, in the vocabulary of group chat that XMPP
//! multi-user chat also uses (roles and affiliations), and presence.

use std::time::SystemTime;

use crate::id::{ContactId, RoomId};

/// Availability of a person.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Show {
    /// Online and available.
    #[default]
    Available,
    /// Free for chat.
    Chat,
    /// Away.
    Away,
    /// Away for a long time.
    ExtendedAway,
    /// Do not disturb.
    DoNotDisturb,
    /// Offline.
    Offline,
}

/// Presence of a contact, an occupant or the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// Availability.
    pub show: Show,
    /// Status text.
    pub status: Option<String>,
    /// Last activity, when offline or away and the network knows.
    pub last_active: Option<SystemTime>,
}

impl Presence {
    /// Online, no status.
    pub fn available() -> Self {
        Self::default()
    }

    /// Offline.
    pub fn offline() -> Self {
        Self {
            show: Show::Offline,
            ..Self::default()
        }
    }

    /// With a status text.
    pub fn with_status(mut self, status: impl Into<String>) -> Self {
        self.status = Some(status.into());
        self
    }
}

/// What an occupant may do in the room right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not in the room.
    None,
    /// May read, not write.
    Visitor,
    /// May read and write.
    #[default]
    Participant,
    /// May kick and moderate.
    Moderator,
}

/// An occupant's long-term standing in the room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No standing.
    #[default]
    None,
    /// A member.
    Member,
    /// An administrator.
    Admin,
    /// An owner.
    Owner,
}

/// A participant of a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupant {
    /// Nickname in the room (unique in it).
    pub nick: String,
    /// Role.
    pub role: Role,
    /// Affiliation.
    pub affiliation: Affiliation,
    /// Presence (away, status text).
    pub presence: Presence,
    /// The contact behind the nickname, when the network says (shown as
    /// the occupant's real JID).
    pub contact: Option<ContactId>,
    /// A stable identifier of the participant across nickname changes
    /// (account name, user id), for XEP-0421 occupant ids.
    pub stable_id: Option<String>,
    /// Whether this occupant is the user.
    pub is_self: bool,
}

impl Occupant {
    /// A participant with default role and no affiliation.
    pub fn new(nick: impl Into<String>) -> Self {
        Self {
            nick: nick.into(),
            role: Role::Participant,
            affiliation: Affiliation::None,
            presence: Presence::available(),
            contact: None,
            stable_id: None,
            is_self: false,
        }
    }
}

/// A room's subject (topic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The text; empty when the room has none.
    pub text: String,
    /// Who set it (nickname), when known.
    pub by: Option<String>,
    /// When it was set, when known.
    pub at: Option<SystemTime>,
}

/// How the core keeps this room's history for the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Whether messages are archived (MAM, history on join).
    pub record: bool,
    /// How many messages a joining client gets at most, unless it asks for
    /// fewer.
    pub on_join: u32,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        Self {
            record: true,
            on_join: 20,
        }
    }
}

/// Facts about a room that the core shows in service discovery and room
/// configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room.
    pub room: RoomId,
    /// Display name.
    pub name: Option<String>,
    /// Longer description.
    pub description: Option<String>,
    /// Whether anyone may join (as opposed to invitation only).
    pub public: bool,
    /// Whether messages are end-to-end encrypted on the network.
    pub encrypted: bool,
    /// Whether nicknames can be mapped to real identities by everyone.
    pub non_anonymous: bool,
    /// Whether a password (key) is needed to join.
    pub password_protected: bool,
    /// Number of participants, when known.
    pub occupant_count: Option<u32>,
    /// History settings.
    pub history: HistoryPolicy,
    /// For a group conversation with a fixed set of people (a mail thread,
    /// a group SMS, [`Action::OpenGroup`]): the other members. None for an
    /// ordinary room.
    ///
    /// [`Action::OpenGroup`]: crate::Action::OpenGroup
    pub members: Option<Vec<ContactId>>,
}

impl RoomInfo {
    /// Info with only the room id set.
    pub fn new(room: RoomId) -> Self {
        Self {
            room,
            ..Self::default()
        }
    }
}

/// One entry of a room listing (disco#items, bookmarks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomListing {
    /// The room.
    pub room: RoomId,
    /// Display name.
    pub name: Option<String>,
    /// Topic or description.
    pub topic: Option<String>,
    /// Number of participants, when known.
    pub occupants: Option<u32>,
}
