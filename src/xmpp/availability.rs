//! A client's availability as the gateway tracks it: the presence of one
//! resource of a user (to the gateway, a contact or a room), the order in
//! which presences arrive, and the bridge's `Show` written as XMPP's.

use std::sync::atomic::{AtomicU64, Ordering};

use ferry_bridge::Show;
use xmpp_parsers::presence::Show as XShow;

/// One available client (resource) of a user, as its presence says.
#[derive(Clone, Debug, Default)]
pub struct Resource {
    /// `<show/>`, None for plain available.
    pub show: Option<XShow>,
    /// Status text.
    pub status: Option<String>,
    /// Priority.
    pub priority: i8,
    /// XEP-0115 caps `node#ver`, when advertised.
    pub caps: Option<String>,
    /// Order of arrival ([`next_presence_seq`]): a
    /// client's latest presence, to the gateway or to a room, is its state.
    pub seq: u64,
}

/// The next number in the order presences arrive in ([`Resource::seq`]).
pub fn next_presence_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed) + 1
}

/// The XMPP `<show/>` of a network presence.
pub fn xshow(s: Show) -> Option<XShow> {
    match s {
        Show::Chat => Some(XShow::Chat),
        Show::Away => Some(XShow::Away),
        Show::ExtendedAway => Some(XShow::Xa),
        Show::DoNotDisturb => Some(XShow::Dnd),
        Show::Available | Show::Offline => None,
    }
}
