//! Events: what happens on the network, reported by a session to the core.
//!
//! A session sends events through its [`EventSink`] in the order they
//! happen; the core turns each into stanzas, archive entries and roster
//! changes. [`EventSink::flush`] waits until the core has stored everything
//! sent before it, which is what a bridge needs before acknowledging
//! messages upstream (saving a sync token, marking mail as seen).

use tokio::sync::{mpsc, oneshot};

use crate::error::BridgeError;
use crate::id::{Address, ContactId, MessageId, RoomId, ServiceId, UserId};
use crate::message::{ChatState, IncomingMessage, Sender};
use crate::network::Account;
use crate::room::{Occupant, Presence, RoomInfo, Subject};

/// Something that happened on the network.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A message (new, or an edit when `replaces` is set).
    Message(IncomingMessage),
    /// A message was deleted.
    Retracted {
        /// The conversation.
        chat: Address,
        /// Who deleted it.
        by: Sender,
        /// The message.
        target: MessageId,
        /// Deleted by a moderator rather than its author, with a reason.
        moderated: Option<Option<String>>,
    },
    /// Someone's reactions to a message. `emojis` is their complete set.
    Reactions {
        /// The conversation.
        chat: Address,
        /// Who reacted.
        from: Sender,
        /// The message reacted to.
        target: MessageId,
        /// All reactions of that person to it now.
        emojis: Vec<String>,
    },
    /// Typing notification.
    ChatState {
        /// The conversation.
        chat: Address,
        /// Who.
        from: Sender,
        /// The state.
        state: ChatState,
    },
    /// A message of the user reached the recipient. For a message sent in
    /// several parts, every part is reported; the core confirms delivery to
    /// the user when the last one is.
    Delivered {
        /// The conversation.
        chat: Address,
        /// The message.
        id: MessageId,
    },
    /// A message of the user could not be delivered. The core answers the
    /// user's original message with an error (type `cancel` when
    /// `permanent`, `wait` otherwise) carrying `error`'s text. Also after a
    /// restart: the core keeps what it needs in its database.
    DeliveryFailed {
        /// The conversation.
        chat: Address,
        /// The message (one of its ids when it was split).
        id: MessageId,
        /// Why, for the user.
        error: BridgeError,
        /// Whether trying again cannot help (an invalid number) rather
        /// than later might (the phone is off).
        permanent: bool,
    },
    /// Someone has seen every message up to this one.
    Displayed {
        /// The conversation.
        chat: Address,
        /// Who (`Sender::Own`: the user, on another client).
        by: Sender,
        /// The last message seen.
        up_to: MessageId,
    },
    /// A contact's presence.
    ContactPresence {
        /// Who.
        contact: ContactId,
        /// Presence.
        presence: Presence,
    },
    /// What is known about a contact (name, avatar), and whether it belongs
    /// in the user's roster.
    Contact(ContactInfo),
    /// A contact is no longer in the user's contact list.
    ContactRemoved(ContactId),
    /// The user is now in a room: everything a joining client needs.
    RoomJoined {
        /// The room, its name, its settings.
        info: RoomInfo,
        /// The user's nickname (may differ from the one asked for).
        nick: String,
        /// Everyone in the room, the user included (`is_self`).
        occupants: Vec<Occupant>,
        /// The subject.
        subject: Subject,
    },
    /// Joining a room failed.
    RoomJoinFailed {
        /// The room.
        room: RoomId,
        /// Why.
        error: BridgeError,
    },
    /// The user is no longer in a room, not by their own leaving.
    RoomLeft {
        /// The room.
        room: RoomId,
        /// How.
        exit: RoomExit,
    },
    /// An occupant appeared or changed (role, affiliation, presence).
    Occupant {
        /// The room.
        room: RoomId,
        /// The occupant, as it is now.
        occupant: Occupant,
    },
    /// An occupant left.
    OccupantLeft {
        /// The room.
        room: RoomId,
        /// Their nickname.
        nick: String,
        /// How.
        exit: RoomExit,
    },
    /// An occupant (possibly the user) changed nickname.
    NickChanged {
        /// The room.
        room: RoomId,
        /// The old nickname.
        old: String,
        /// The new nickname.
        new: String,
    },
    /// The subject changed.
    Subject {
        /// The room.
        room: RoomId,
        /// The new subject.
        subject: Subject,
    },
    /// The room's name or settings changed.
    RoomInfo(RoomInfo),
    /// Someone invites the user to a room.
    Invited {
        /// The room.
        room: RoomId,
        /// Who invites.
        from: Option<Sender>,
        /// Why.
        reason: Option<String>,
        /// Password needed to join, if any.
        password: Option<String>,
    },
    /// A room the user belongs to on the network and should find in their
    /// client (offered as a bookmark or an invitation).
    RoomAvailable {
        /// The room.
        room: RoomId,
        /// Display name.
        name: Option<String>,
        /// Whether clients should join it automatically.
        autojoin: bool,
    },
    /// A service's presence (an IRC server connected or not).
    ServicePresence {
        /// The service.
        service: ServiceId,
        /// Presence.
        presence: Presence,
    },
    /// The state of the user's connection to the network, shown as the
    /// gateway's presence.
    Connection(ConnectionState),
    /// A message from the gateway itself to the user.
    Notice(String),
    /// The account's stored credentials changed (refreshed token).
    AccountUpdated(Account),
}

/// How someone left a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomExit {
    /// Left the room.
    Left(Option<String>),
    /// Left the network.
    Quit(Option<String>),
    /// Removed by someone.
    Kicked {
        /// By whom (nickname).
        by: Option<String>,
        /// Why.
        reason: Option<String>,
    },
    /// Banned.
    Banned {
        /// By whom (nickname).
        by: Option<String>,
        /// Why.
        reason: Option<String>,
    },
    /// The connection to the network was lost. The user's clients stay in
    /// the room (their presence shows the reason): the session reports
    /// [`Event::RoomJoined`] again once it is back in the room, or
    /// [`Event::RoomJoinFailed`] when it gives up.
    Disconnected(String),
    /// The room went away.
    Destroyed(Option<String>),
}

/// Everything known about a contact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactInfo {
    /// Who.
    pub contact: ContactId,
    /// Display name.
    pub name: Option<String>,
    /// Avatar image.
    pub avatar: Option<Avatar>,
    /// Whether the contact belongs in the user's roster.
    pub in_roster: bool,
    /// Roster groups.
    pub groups: Vec<String>,
}

/// An image.
#[derive(Clone, PartialEq, Eq)]
pub struct Avatar {
    /// The bytes.
    pub data: Vec<u8>,
    /// MIME type (`image/png`).
    pub mime: String,
}

impl std::fmt::Debug for Avatar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Avatar({}, {} bytes)", self.mime, self.data.len())
    }
}

/// The state of a session's connection to the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting or logging in.
    Connecting,
    /// Connected; a status text such as "Logged in as …".
    Connected(Option<String>),
    /// Connection lost; the session is retrying.
    Reconnecting(String),
    /// The login no longer works; the user must log in again.
    LoginRequired(String),
    /// Disconnected for good (until the user does something).
    Disconnected(String),
}

/// What travels from sessions to the core.
// Events move through the channel once each; boxing them would cost an
// allocation per event to shrink the rare flush marker.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Envelope {
    /// An event of a user's session.
    Event {
        /// Whose session.
        user: UserId,
        /// What happened.
        event: Event,
    },
    /// A request to be told when everything sent before has been stored.
    Flush(Flushed),
}

/// Completion signal of [`EventSink::flush`].
pub type Flushed = oneshot::Sender<()>;

/// The channel a session reports events through. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSink {
    user: UserId,
    tx: mpsc::Sender<Envelope>,
}

/// The core is shutting down; the event was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the gateway core no longer takes events")]
pub struct Closed;

impl EventSink {
    /// Creates a sink for one user's events (used by the core, and by tests).
    pub fn new(user: UserId, tx: mpsc::Sender<Envelope>) -> Self {
        Self { user, tx }
    }

    /// The user this sink reports for.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Reports an event; waits while the core is busy.
    pub async fn send(&self, event: Event) -> Result<(), Closed> {
        self.tx
            .send(Envelope::Event {
                user: self.user.clone(),
                event,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Waits until the core has processed and stored every event sent
    /// before this call.
    pub async fn flush(&self) -> Result<(), Closed> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Envelope::Flush(done))
            .await
            .map_err(|_| Closed)?;
        wait.await.map_err(|_| Closed)
    }
}
