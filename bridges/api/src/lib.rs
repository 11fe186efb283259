//! The bridge API of Ferry: what a network bridge implements and what it
//! exchanges with the gateway core.
//!
//! A bridge speaks its own network and nothing else. The core owns every
//! XMPP stanza, the database and the mapping of addresses to JIDs; a bridge
//! only ever sees the neutral types of this crate:
//!
//! * [`Network`] is the bridge as a whole: its [`NetworkInfo`] (name,
//!   capabilities), its [`AddressRules`], its registration [`Form`], and the
//!   factory for per-user [`Session`]s.
//! * A [`Session`] is one user's connection to the network. The core drives
//!   it with [`Action`]s (send a message, join a room, run a command …) and
//!   the session reports what happens on the network as [`Event`]s through
//!   its [`EventSink`].
//! * Everything a user addresses is an [`Address`]: a contact, a room, an
//!   occupant of a room or a network service (an IRC server, say).
//! * The bridge as a whole is started with a [`BridgeContext`]: a
//!   supervised spawner, its own store, its public webhook URL, and a
//!   [`UserRouter`] that hands events to any user's session.
//! * What the network can do is a set of [`Feature`]s ([`Capabilities`]),
//!   what it takes has [`Limits`]; the core enforces both.
//! * A bridge that connects to a host a user named checks it with the
//!   operator's [`HostPolicy`] (given in [`BridgeSetup`]) first.
//!
//! Each session runs in its own task; a panic or error in one is reported to
//! that user and the session is restarted, so a bridge never needs global
//! error handling of its own.

pub mod action;
pub mod address;
pub mod capability;
pub mod command;
pub mod error;
pub mod event;
pub mod form;
pub mod hosts;
mod html;
pub mod id;
pub mod memory;
pub mod message;
pub mod network;
pub mod room;
pub mod text;
pub mod users;

pub use action::{Action, Outcome};
pub use address::{AddressContext, AddressError, AddressRules, Prompt};
pub use capability::{Capabilities, Feature};
pub use command::{CommandCall, CommandReply, CommandScope, CommandSpec};
pub use error::{BridgeError, ErrorKind, LoginError};
pub use event::{
    Avatar, Closed, ConnectionState, ContactInfo, Envelope, Event, EventSink, Flushed, RoomExit,
};
pub use form::{Field, FieldKind, FieldOption, Form, FormError, FormValues};
pub use hosts::{HostPatternError, HostPolicy, HostRefused};
pub use id::{Address, ContactId, MessageId, RoomId, ServiceId, UserId};
pub use memory::MemoryKeyValue;
pub use message::{
    Attachment, AttachmentSource, ChatState, IncomingMessage, MessageKind, OutgoingMessage,
    ReplyTo, Sender,
};
pub use network::{
    Account, BridgeContext, BridgeSetup, CloseReason, FailureSink, FailureWatch, KeyValue, Limits,
    Network, NetworkInfo, RESUME_KEY, Registration, Secret, Session, SessionContext, SessionPolicy,
    Spawner, StoreError, TaskFailure, WebhookRequest, WebhookResponse,
};
pub use room::{
    Affiliation, HistoryPolicy, Occupant, Presence, Role, RoomInfo, RoomListing, Show, Subject,
};
pub use text::{Color, Dialect, Rich, Span, Style};
pub use users::{MemoryUsers, RouteError, UserRouter, Users};
