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
//!
//! How "confirmed" works: the component pings itself (an IQ from its
//! domain to its domain, which the server routes back). The server handles
//! a stream in order, so when the ping comes back every stanza written
//! before it has been processed. A ping follows every burst of writes, so
//! the window of unconfirmed stanzas stays small; when a connection dies,
//! the unconfirmed ones are put back in the outbox ahead of anything newer
//! (a duplicate is better than a loss).
//!
//! Back-pressure: [`ComponentHandle::send`] never waits, but the handle
//! counts what is queued for the connection task. Above
//! [`QUEUE_HIGH`] stanzas the stream is [congested]
//! (the XMPP server reads slower than the gateway produces, as during a
//! big room's join burst); the gateway then stops taking events from the
//! sessions until [`ComponentHandle::uncongested`] (at most [`QUEUE_LOW`]
//! queued), so a burst waits in the network sockets instead of as queued
//! stanzas in memory.
//!
//! [congested]: ComponentHandle::congested

mod connection;
#[cfg(test)]
pub(crate) mod fake_server;
pub mod privilege;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::{Element, Node};

use crate::metrics::BridgeMetrics;
use crate::store::Store;

/// Where and how to connect.
#[derive(Clone)]
pub struct ComponentConfig {
    /// The component's domain (`irc.example.org`).
    pub domain: String,
    /// The shared secret.
    pub secret: String,
    /// The XMPP server's host.
    pub host: String,
    /// Its component port.
    pub port: u16,
    /// Timers of the connection.
    pub tuning: Tuning,
}

impl ComponentConfig {
    /// A configuration with the default timers.
    pub fn new(
        domain: impl Into<String>,
        secret: impl Into<String>,
        host: impl Into<String>,
        port: u16,
    ) -> ComponentConfig {
        ComponentConfig {
            domain: domain.into(),
            secret: secret.into(),
            host: host.into(),
            port,
            tuning: Tuning::default(),
        }
    }

    /// Sets the keepalive timers (`[xmpp] keepalive`, `keepalive_timeout`).
    pub fn with_keepalive(mut self, keepalive: Duration, timeout: Duration) -> ComponentConfig {
        self.tuning.keepalive = keepalive;
        self.tuning.keepalive_timeout = timeout;
        self
    }
}

/// The timers of a component connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Silence after which a keepalive ping is sent.
    pub keepalive: Duration,
    /// How long a ping may go unanswered before the stream counts as dead.
    pub keepalive_timeout: Duration,
    /// Time allowed to connect and complete the handshake.
    pub connect_timeout: Duration,
    /// First delay before reconnecting; doubles on each failure.
    pub backoff_min: Duration,
    /// Longest delay between attempts.
    pub backoff_max: Duration,
    /// Delay after the server refused the handshake (wrong secret).
    pub refused_retry: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            keepalive: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            refused_retry: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentConfig")
            .field("domain", &self.domain)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

/// What arrives from the XMPP server.
// Nearly every value is a `Stanza` (the large variant): boxing it would add
// an allocation per stanza and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Inbound {
    /// A stanza addressed to the component's domain.
    Stanza(xmpp_parsers::stanza::Stanza),
    /// A stanza that could not be parsed; enough of it is kept to answer
    /// with an error.
    Invalid(InvalidStanza),
    /// The stream is (again) up; the privileges granted on this connection.
    /// (An advertisement that comes later than the server's answers to the
    /// first pings still updates [`ComponentHandle::privileges`]; the
    /// handle always has the current grants.)
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
// Returned once per request, rarely: the size of the stanza error it
// carries costs nothing worth an allocation.
#[allow(clippy::large_enum_variant)]
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
#[derive(Clone)]
pub struct ComponentHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ComponentHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentHandle")
            .field("domain", &self.shared.domain)
            .finish_non_exhaustive()
    }
}

/// What the handle asks of the connection task.
enum Command {
    /// Send a stanza (in order), serialized: a join burst queues tens of
    /// thousands of stanzas while the server reads them (the component
    /// stream is the slower side then), and an element tree takes several
    /// kilobytes where its text takes a few hundred bytes. The text is what
    /// is kept until the server confirms it, too.
    Send(Box<str>),
    /// Send what is queued, close the stream, stop.
    Close {
        timeout: Duration,
        done: oneshot::Sender<()>,
    },
    /// Send what is queued and close the stream, but keep storing what is
    /// sent in the outbox (never reconnecting) until `Close`.
    Detach {
        timeout: Duration,
        done: oneshot::Sender<()>,
    },
}

type PendingRequests = HashMap<String, oneshot::Sender<Result<Iq, RequestError>>>;

/// Queued stanzas above which the stream counts as congested (a few
/// hundred bytes each: ~0.5 MB).
pub const QUEUE_HIGH: usize = 1024;
/// Queued stanzas at which a congestion ends.
pub const QUEUE_LOW: usize = 256;

/// State shared by the handles and the connection task.
struct Shared {
    domain: String,
    commands: mpsc::UnboundedSender<Command>,
    store: Store,
    metrics: Arc<BridgeMetrics>,
    state: Mutex<StreamState>,
    privileges: Mutex<Privileges>,
    pending: Mutex<PendingRequests>,
    ids: AtomicU64,
    /// `Send` commands in the channel, not yet taken by the task.
    queued: AtomicUsize,
    /// Woken when `queued` comes down to [`QUEUE_LOW`].
    drained: tokio::sync::Notify,
}

impl Shared {
    fn set_state(&self, state: StreamState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    /// The task took a queued stanza.
    fn taken(&self) {
        if self.queued.fetch_sub(1, Ordering::AcqRel) == QUEUE_LOW + 1 {
            // One waiter (the gateway); a permit is kept if it is not
            // waiting yet, so the wake-up is never lost.
            self.drained.notify_one();
        }
    }

    fn next_id(&self, kind: &str) -> String {
        format!("ferry-{kind}-{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Completes a pending request; false if no request has that id.
    fn complete(&self, id: &str, result: Result<Iq, RequestError>) -> bool {
        let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// Fails every request waiting for an answer (the stream died).
    fn fail_pending(&self) {
        let waiters: Vec<_> = match self.pending.lock() {
            Ok(mut p) => p.drain().collect(),
            Err(_) => Vec::new(),
        };
        for (_, tx) in waiters {
            let _ = tx.send(Err(RequestError::Disconnected));
        }
    }
}

impl ComponentHandle {
    /// The component's domain.
    pub fn domain(&self) -> &str {
        &self.shared.domain
    }

    /// Queues a stanza. Never blocks, never fails: stanzas go out in the
    /// order of the calls, now or after a reconnection. (After
    /// [`ComponentHandle::close`], stanzas are kept in the outbox for the
    /// next start.)
    ///
    /// A stanza the server would answer by closing the stream (a `from`
    /// outside the component's domain, no `to`, not a stanza at all) is
    /// not sent: it is logged as an error and counted in the metrics, so
    /// one bad stanza cannot take the stream down again and again. A
    /// missing `from` is the component's domain; `from` and `to` are
    /// rewritten in their canonical form.
    pub fn send(&self, stanza: Element) {
        let mut stanza = to_component_namespace(stanza);
        if let Err(e) = check_addressing(&mut stanza, &self.shared.domain) {
            BridgeMetrics::inc(&self.shared.metrics.errors);
            tracing::error!(
                domain = %self.shared.domain,
                "not sending a stanza the XMPP server would close the stream for: {e}: {}",
                abbreviate(&String::from(&stanza), 300)
            );
            return;
        }
        let text = String::from(&stanza).into_boxed_str();
        drop(stanza);
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(Command::Send(text))) =
            self.shared.commands.send(Command::Send(text))
        {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            match self.shared.store.outbox_push(&[String::from(text)]) {
                Ok(()) => {
                    self.shared
                        .metrics
                        .outbox_depth
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(
                    domain = %self.shared.domain,
                    "a stanza sent after the stream was closed is lost: {e}"
                ),
            }
        }
    }

    /// Whether more than [`QUEUE_HIGH`] stanzas wait for the connection
    /// task (see the module's "Back-pressure").
    pub fn congested(&self) -> bool {
        // A task that ended takes nothing more: never congested then.
        self.shared.queued.load(Ordering::Acquire) > QUEUE_HIGH && !self.shared.commands.is_closed()
    }

    /// Resolves once at most [`QUEUE_LOW`] stanzas wait for the connection
    /// task (at once when that is already so). Cancel-safe.
    pub async fn uncongested(&self) {
        while self.shared.queued.load(Ordering::Acquire) > QUEUE_LOW
            && !self.shared.commands.is_closed()
        {
            // The task's end wakes nobody: look again now and then.
            let _ =
                tokio::time::timeout(Duration::from_millis(200), self.shared.drained.notified())
                    .await;
        }
    }

    /// Sends an IQ get/set (an id is assigned if it has none) and waits for
    /// its result. Responses to these requests are not delivered as
    /// [`Inbound`].
    pub async fn request(&self, mut iq: Iq, timeout: Duration) -> Result<Iq, RequestError> {
        if iq.id().is_empty() {
            *iq.id_mut() = self.shared.next_id("iq");
        }
        let id = iq.id().to_owned();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.shared.pending.lock() {
            p.insert(id.clone(), tx);
        }
        self.send(Element::from(iq));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RequestError::Disconnected),
            Err(_) => {
                if let Ok(mut p) = self.shared.pending.lock() {
                    p.remove(&id);
                }
                Err(RequestError::Timeout)
            }
        }
    }

    /// The privileges granted on the current (or last) connection.
    pub fn privileges(&self) -> Privileges {
        self.shared
            .privileges
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// The state of the stream.
    pub fn state(&self) -> StreamState {
        self.shared
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(StreamState::Closed)
    }

    /// Sends what is queued, closes the stream cleanly and stops
    /// reconnecting. Returns when done (or after `timeout`).
    pub async fn close(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        if self
            .shared
            .commands
            .send(Command::Close { timeout, done })
            .is_err()
        {
            return;
        }
        // The task gives up confirming after `timeout`; allow it to finish.
        let _ = tokio::time::timeout(timeout + Duration::from_secs(1), wait).await;
    }

    /// Leaves the XMPP server (several instances: it routes this domain's
    /// stanzas to the others from now on) while what is still sent goes to
    /// the outbox, for a surviving instance to send; [`Self::close`] ends
    /// the task. Returns once the stream is closed (or after `timeout`).
    pub async fn detach(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        if self
            .shared
            .commands
            .send(Command::Detach { timeout, done })
            .is_err()
        {
            return;
        }
        let _ = tokio::time::timeout(timeout + Duration::from_secs(1), wait).await;
    }
}

/// Starts the component connection task.
pub fn start(
    config: ComponentConfig,
    store: Store,
    metrics: std::sync::Arc<BridgeMetrics>,
    shutdown: CancellationToken,
) -> (ComponentHandle, mpsc::Receiver<Inbound>) {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (inbound_tx, inbound_rx) = mpsc::channel(1024);
    let shared = Arc::new(Shared {
        domain: config.domain.clone(),
        commands: commands_tx,
        store: store.clone(),
        metrics: metrics.clone(),
        state: Mutex::new(StreamState::Connecting {
            attempt: 0,
            last_error: None,
        }),
        privileges: Mutex::new(Privileges::default()),
        pending: Mutex::new(HashMap::new()),
        ids: AtomicU64::new(1),
        queued: AtomicUsize::new(0),
        drained: tokio::sync::Notify::new(),
    });
    let task = connection::Task::new(
        config,
        store,
        metrics,
        shared.clone(),
        commands_rx,
        inbound_tx,
        shutdown,
    );
    tokio::spawn(task.run());
    (ComponentHandle { shared }, inbound_rx)
}

/// Checks what servers enforce on component stanzas (Prosody and ejabberd
/// close the stream otherwise): a stanza element, with a `from` in the
/// component's domain (the domain itself when missing) and a `to`; both are
/// rewritten canonically.
pub(crate) fn check_addressing(el: &mut Element, domain: &str) -> Result<(), String> {
    if !matches!(el.name(), "message" | "presence" | "iq") {
        return Err(format!("<{}/> is not a stanza", el.name()));
    }
    let canonical = |attr: &str, el: &Element| -> Result<Option<String>, String> {
        match el.attr(attr) {
            None => Err(format!("it has no '{attr}'")),
            Some(v) => match xmpp_parsers::jid::Jid::new(v) {
                Ok(jid) => Ok(Some(jid.to_string()).filter(|c| c != v)),
                Err(e) => Err(format!("its '{attr}' {v:?} is not a JID: {e}")),
            },
        }
    };
    if el.attr("from").is_none() {
        // The component speaks as itself.
        el.set_attr(
            xmpp_parsers::minidom::rxml::Namespace::NONE,
            xmpp_parsers::minidom::rxml::xml_ncname!("from").to_owned(),
            domain,
        );
    }
    let from = canonical("from", el)?;
    let to = canonical("to", el)?;
    let none = xmpp_parsers::minidom::rxml::Namespace::NONE;
    for (attr, value) in [("from", from), ("to", to)] {
        if let Some(v) = value
            && let Some(slot) = el.attrs_mut().get_mut(&none, attr)
        {
            *slot = v;
        }
    }
    let from = el.attr("from").unwrap_or("");
    // The domain of the bare JID: a resource may hold '@' (a room
    // occupant named by an email address).
    let from_domain = from
        .split('/')
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("");
    if !from_domain.eq_ignore_ascii_case(domain) {
        return Err(format!("its 'from' {from:?} is not in the domain {domain}"));
    }
    Ok(())
}

fn abbreviate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Stanzas built with the client namespace (`jabber:client`) or the server
/// one are rewritten to the component namespace, which is the default
/// namespace of the component stream. Only the stanza and its children of
/// the same namespace (body, subject, error …) move: a stanza nested in an
/// extension (a forwarded message of a MAM result, a privileged IQ or
/// message of XEP-0356) keeps `jabber:client`, as those XEPs require.
fn to_component_namespace(el: Element) -> Element {
    const FOREIGN: [&str; 2] = ["jabber:client", "jabber:server"];
    fn rebuild(el: &Element) -> Element {
        let own = el.ns();
        let mut out = Element::bare(el.name(), xmpp_parsers::ns::COMPONENT_ACCEPT);
        *out.attrs_mut() = el.attrs().clone();
        for node in el.nodes() {
            match node {
                Node::Element(child) if child.ns() == own => {
                    out.append_child(rebuild(child));
                }
                Node::Element(child) => {
                    out.append_child(child.clone());
                }
                Node::Text(text) => out.append_text_node(text.clone()),
            }
        }
        out
    }
    if FOREIGN.contains(&el.ns().as_str()) {
        rebuild(&el)
    } else {
        el
    }
}
