//! The XMPP face of one bridge: routes every stanza addressed to the
//! bridge's domain, runs the users' sessions, and turns the sessions'
//! events into stanzas.
//!
//! What lives here: session actors and their supervision, service discovery
//! and capabilities, registration (XEP-0077, the `jabber:iq:register`
//! command, the chat fallback), the ad-hoc command engine and the core's
//! commands, XEP-0100 `jabber:iq:gateway`, access control, presence and
//! roster management, 1:1 messages with their extensions ([`direct`]), and
//! the rooms it hosts ([`rooms`], over the room model of [`crate::muc`]).
//! The stanza vocabulary both use is [`crate::xmpp`].

pub mod adhoc;
pub mod chat;
pub mod commands;
pub mod direct;
pub mod disco;
pub mod dispatch;
pub mod events;
pub mod groups;
pub mod iq;
pub mod leases;
pub mod limits;
pub mod presence;
pub mod receipts;
pub mod register;
pub mod rooms;
pub mod roster;
pub mod router;
pub mod session;
pub mod sessions;
pub mod upload;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::Network;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::access::AccessPolicy;
use crate::component::{ComponentHandle, Inbound};
use crate::http::Media;
use crate::metrics::BridgeMetrics;
use crate::store::Store;

/// Settings of one bridge's gateway, from the configuration.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// The bridge's name (its configuration section: `irc`, `matrix` …).
    pub name: String,
    /// The component domain.
    pub domain: String,
    /// Who may use the bridge, who administers it.
    pub access: AccessPolicy,
    /// Largest message body accepted or produced, in bytes.
    pub max_message_bytes: usize,
    /// The bridge's data directory; sessions get subdirectories.
    pub data_dir: PathBuf,
    /// How long the session of a user who is offline and has nothing that
    /// needs it (no room, nothing under way) runs on before it is closed;
    /// None: never (bridges whose sessions are always on are never closed).
    pub session_idle_timeout: Option<Duration>,
    /// Several instances serve this domain (`[cluster]`): users' sessions
    /// run under leases ([`leases`]). None: a single instance, no leases.
    pub cluster: Option<crate::config::ClusterConfig>,
}

/// Everything a bridge's gateway runs on.
pub struct GatewayParts {
    /// Settings.
    pub settings: GatewaySettings,
    /// The bridge.
    pub network: Arc<dyn Network>,
    /// The component stream.
    pub component: ComponentHandle,
    /// Stanzas from the XMPP server.
    pub inbound: mpsc::Receiver<Inbound>,
    /// The bridge's database.
    pub store: Store,
    /// File publishing.
    pub media: Media,
    /// Counters.
    pub metrics: Arc<BridgeMetrics>,
    /// Cancelled when Ferry shuts down.
    pub shutdown: CancellationToken,
    /// Events the bridge-wide part hands to users ([`crate::lifecycle`]).
    pub routed: mpsc::Receiver<crate::lifecycle::Routed>,
    /// The bridge's context (for its bridge-wide commands).
    pub bridge: ferry_bridge::BridgeContext,
}

/// Runs the gateway until `shutdown` is cancelled, then sends unavailable
/// presence to every user, closes every session cleanly and flushes the
/// store before returning.
pub async fn run(parts: GatewayParts) -> anyhow::Result<()> {
    router::Gateway::run(parts).await
}

#[cfg(test)]
mod tests;
