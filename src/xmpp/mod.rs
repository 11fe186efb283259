//! The XMPP vocabulary that the gateway ([`crate::gateway`]) and the rooms
//! it hosts ([`crate::muc`]) share: building and reading stanzas, the
//! message codec with its text formats, JIDs of the gateway's domain,
//! data forms, dates, text cleaning and clients' availability.
//!
//! Nothing here knows a user's state or a session: these are functions and
//! small types of the protocol, so both layers above can use them without
//! depending on each other.

pub mod availability;
pub mod clean;
pub mod escape;
pub mod forms;
pub mod jids;
pub mod message;
pub mod styling;
pub mod time;
pub mod xhtml;
pub mod xml;
