//! One XEP-0114 component stream per bridge, kept up for as long as Ferry
//! runs.
//!
//! [`start`] returns a [`ComponentHandle`] to send stanzas and a receiver of
//! [`Inbound`] stanzas. Behind it a task connects to the XMPP server,
//! performs the handshake, and on any failure reconnects with capped
//! exponential backoff and jitter; it never gives up and never exits the
//! process. Silence on the stream triggers a keepalive ping, and a missing
//! answer counts as a dead connection (the tokio-xmpp stream reports a soft
//! timeout after its read timeout although the connection is alive: that is
//! not an end of stream).
//!
//! Nothing sent through the handle is lost: while the stream is down,
//! stanzas go to a persisted, ordered outbox in the bridge's store and are
//! sent in order once it is back; stanzas written just before a connection
//! died and not yet confirmed by the server (a ping round trip) are sent
//! again.
//!
//! The XEP-0356 privileges the server announces after the handshake
//! (`urn:xmpp:privilege:2` from Prosody, `:1` from ejabberd) are recorded
//! per server domain in [`Privileges`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;

use crate::metrics::BridgeMetrics;
use crate::store::Store;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ComponentConfig {
    /// The component's domain (`irc.example.org`).
    pub domain: String,
    /// The shared secret.
    pub secret: String,
    /// The XMPP server's host.
    pub host: String,
    /// Its component port.
    pub port: u16,
}

/// What arrives from the XMPP server.
#[derive(Debug)]
pub enum Inbound {
    /// A stanza addressed to the component's domain.
    Stanza(xmpp_parsers::stanza::Stanza),
    /// A stanza that could not be parsed; enough of it is kept to answer
    /// with an error.
    Invalid(InvalidStanza),
    /// The stream is (again) up; the privileges granted on this connection.
    Connected(Privileges),
    /// The stream went down (the handle keeps queueing).
    Disconnected(String),
}

/// The header of a stanza that failed to parse.
#[derive(Clone, Debug)]
pub struct InvalidStanza {
    /// `iq`, `message` or `presence`.
    pub name: &'static str,
    /// The `from` attribute.
    pub from: Option<String>,
    /// The `to` attribute.
    pub to: Option<String>,
    /// The `id` attribute.
    pub id: Option<String>,
    /// The `type` attribute.
    pub type_: Option<String>,
    /// What was wrong.
    pub error: String,
}

/// XEP-0356 permissions granted by the server, per server domain (a user of
/// `example.org` can only be managed if `example.org` granted them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privileges {
    /// Grants by the domain that announced them.
    pub by_domain: BTreeMap<String, Grant>,
}

impl Privileges {
    /// The grant of a user's server.
    pub fn for_domain(&self, domain: &str) -> Option<&Grant> {
        self.by_domain.get(domain)
    }
}

/// What one server domain granted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The namespace of the advertisement (`urn:xmpp:privilege:2` or `:1`).
    pub namespace: String,
    /// Roster access.
    pub roster: Access,
    /// Whether roster pushes are forwarded to the component.
    pub roster_push: bool,
    /// Whether the component may send messages on behalf of users.
    pub message_outgoing: bool,
    /// Presence permission (`managed_entity`, `roster`), if any.
    pub presence: Option<String>,
    /// IQ permissions by namespace.
    pub iq: BTreeMap<String, Access>,
}

/// A get/set permission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Nothing.
    #[default]
    None,
    /// Read.
    Get,
    /// Write.
    Set,
    /// Read and write.
    Both,
}

impl Access {
    /// Whether reading is allowed.
    pub fn can_get(self) -> bool {
        matches!(self, Access::Get | Access::Both)
    }

    /// Whether writing is allowed.
    pub fn can_set(self) -> bool {
        matches!(self, Access::Set | Access::Both)
    }
}

/// The state of the stream, for `/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// Connecting (first time or after a failure).
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
        /// The last error, if any.
        last_error: Option<String>,
    },
    /// Up since.
    Connected {
        /// When the handshake succeeded.
        since: SystemTime,
    },
    /// Closed by [`ComponentHandle::close`].
    Closed,
}

/// An IQ request to the XMPP server failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The answer was an error stanza.
    #[error("error response: {0:?}")]
    Error(xmpp_parsers::stanza_error::StanzaError),
    /// No answer in time.
    #[error("no response in time")]
    Timeout,
    /// The stream went down before an answer came.
    #[error("the component stream is down")]
    Disconnected,
}

/// Sends stanzas on the component stream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ComponentHandle {}

impl ComponentHandle {
    /// The component's domain.
    pub fn domain(&self) -> &str {
        todo!("component: domain")
    }

    /// Queues a stanza. Never blocks, never fails: stanzas go out in the
    /// order of the calls, now or after a reconnection.
    pub fn send(&self, stanza: Element) {
        let _ = stanza;
        todo!("component: send")
    }

    /// Sends an IQ get/set (an id is assigned if it has none) and waits for
    /// its result. Responses to these requests are not delivered as
    /// [`Inbound`].
    pub async fn request(&self, iq: Iq, timeout: Duration) -> Result<Iq, RequestError> {
        let _ = (iq, timeout);
        todo!("component: request")
    }

    /// The privileges granted on the current (or last) connection.
    pub fn privileges(&self) -> Privileges {
        todo!("component: privileges")
    }

    /// The state of the stream.
    pub fn state(&self) -> StreamState {
        todo!("component: state")
    }

    /// Sends what is queued, closes the stream cleanly and stops
    /// reconnecting. Returns when done (or after `timeout`).
    pub async fn close(&self, timeout: Duration) {
        let _ = timeout;
        todo!("component: close")
    }
}

/// Starts the component connection task.
pub fn start(
    config: ComponentConfig,
    store: Store,
    metrics: std::sync::Arc<BridgeMetrics>,
    shutdown: CancellationToken,
) -> (ComponentHandle, mpsc::Receiver<Inbound>) {
    let _ = (config, store, metrics, shutdown);
    todo!("component: start")
}
