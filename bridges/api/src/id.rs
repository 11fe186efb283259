//! Identifiers: who the gateway's user is, and what they talk to.
//!
//! All identifiers are opaque strings whose format belongs to the bridge
//! (an IRC bridge might use `#rust%irc.libera.chat` for a room, a Matrix
//! bridge `!abc:matrix.org`). The core stores and compares them verbatim, so
//! a bridge must hand out one canonical spelling per thing (for example the
//! case-folded channel name on a network that ignores case).

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Wraps an identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the identifier.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A user of the gateway: their bare XMPP address (`alice@example.org`),
    /// as an opaque string. Bridges may derive per-user values from it (an
    /// ident hash, a default nickname) but never parse it as anything else.
    UserId
);
string_id!(
    /// A person (or bot) on the foreign network.
    ContactId
);
string_id!(
    /// A group conversation on the foreign network (channel, room, group).
    RoomId
);
string_id!(
    /// Something on the foreign network that is neither a person nor a room
    /// but can be talked to: an IRC server, for instance.
    ServiceId
);
string_id!(
    /// The foreign network's identifier of one message.
    MessageId
);

/// Anything a user can address through the gateway, other than the gateway
/// itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A person on the network (a 1:1 conversation).
    Contact(ContactId),
    /// A room.
    Room(RoomId),
    /// One participant of a room, by nickname (a private conversation
    /// started from inside the room).
    Occupant {
        /// The room.
        room: RoomId,
        /// The participant's nickname in that room.
        nick: String,
    },
    /// A network service (raw commands in, server messages out).
    Service(ServiceId),
}

impl Address {
    /// The room this address belongs to, if any.
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            Address::Room(room) | Address::Occupant { room, .. } => Some(room),
            Address::Contact(_) | Address::Service(_) => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Contact(c) => write!(f, "contact {c}"),
            Address::Room(r) => write!(f, "room {r}"),
            Address::Occupant { room, nick } => write!(f, "{nick} in room {room}"),
            Address::Service(s) => write!(f, "service {s}"),
        }
    }
}
