//! What the gateway keeps per user, grouped by the part of the gateway that
//! owns it: the session and its pacing (here, used by the router), the
//! user's and contacts' presence ([`super::presence`]), the roster
//! ([`super::roster`]), messages awaiting a delivery report
//! ([`super::receipts`]) and the chat-fallback dialog ([`super::chat`]).

use std::collections::VecDeque;
use std::time::Instant;

use ferry_bridge::{ConnectionState, Event};

use super::session;

/// What the gateway keeps per user.
#[derive(Default)]
pub struct User {
    /// The running session.
    pub session: Option<session::Handle>,
    /// The last connection state the session reported.
    pub connection: Option<ConnectionState>,
    /// The session is parked: the login must be renewed.
    pub login_required: Option<String>,
    /// Actions sent to the session whose results have not come back.
    pub in_flight: u32,
    /// Events that arrived while actions were in flight.
    pub held: VecDeque<Event>,
    /// Since when events are held.
    pub held_since: Option<Instant>,
    /// Since when the session has had nothing to do for a user who is
    /// offline (see `Gateway::close_idle_sessions`).
    pub idle_since: Option<Instant>,
    /// The user's clients and their contacts' presence.
    pub presence: super::presence::PresenceState,
    /// The contacts and the roster's synchronisation.
    pub roster: super::roster::RosterState,
    /// Messages awaiting the network's delivery report.
    pub receipts: super::receipts::Receipts,
    /// The chat-fallback dialog in progress.
    pub dialog: Option<super::chat::Dialog>,
}

impl User {
    /// Whether nothing of the user needs their session now: no available
    /// client, no action or held event, no message awaiting a report.
    pub fn quiet(&self) -> bool {
        self.presence.resources.is_empty()
            && self.in_flight == 0
            && self.held.is_empty()
            && self.receipts.awaiting.is_empty()
    }
}
