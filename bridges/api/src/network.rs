//! The two traits a bridge implements — [`Network`] and [`Session`] — and
//! what the core gives a session to work with.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use crate::action::{Action, Outcome};
use crate::address::AddressRules;
use crate::command::CommandSpec;
use crate::error::{BridgeError, LoginError};
use crate::event::EventSink;
use crate::form::{Form, FormValues};
use crate::id::UserId;

/// What the core tells a bridge when it builds it, besides the bridge's own
/// configuration section (which each bridge crate deserialises into its
/// own `Config` type, refusing unknown keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSetup {
    /// The component's domain (`irc.example.org`).
    pub domain: String,
    /// A directory for the bridge's files (created by the core).
    pub data_dir: PathBuf,
}

/// A network bridge: one per bridged network, shared by all users.
#[async_trait::async_trait]
pub trait Network: Send + Sync + 'static {
    /// Name, kind and capabilities.
    fn info(&self) -> &NetworkInfo;

    /// How network addresses are written as JIDs.
    fn address(&self) -> &dyn AddressRules;

    /// The registration form (empty when [`Registration::None`]).
    fn registration(&self) -> Form;

    /// Per-user preferences the bridge understands, with their defaults.
    /// The core adds its own and stores the values.
    fn preferences(&self) -> Vec<crate::form::Field> {
        Vec::new()
    }

    /// Commands the bridge adds to the core's.
    fn commands(&self) -> Vec<CommandSpec> {
        Vec::new()
    }

    /// Checks registration values against the real network (logs in) and
    /// returns the account to store. Called for a new registration and
    /// when a user changes theirs. `values` have been validated against
    /// [`Network::registration`].
    async fn login(&self, user: &UserId, values: &FormValues) -> Result<Account, LoginError>;

    /// Starts a session for a user. `ctx.account` is the stored account
    /// (None for users of a bridge without required registration who never
    /// registered). May connect right away or lazily.
    async fn connect(&self, ctx: SessionContext) -> Result<Box<dyn Session>, LoginError>;

    /// The user unregistered: undo on the network what registration did
    /// (log the device out). The session has already been closed.
    async fn unregister(
        &self,
        user: &UserId,
        account: Option<&Account>,
    ) -> Result<(), BridgeError> {
        let _ = (user, account);
        Ok(())
    }

    /// An HTTP request to `/bridge/<name>/…` on the gateway's HTTP
    /// listener (`path` is the part after that prefix).
    async fn webhook(&self, request: WebhookRequest) -> WebhookResponse {
        let _ = request;
        WebhookResponse::status(404, "no such endpoint")
    }
}

/// One user's connection to the network.
///
/// The core calls [`Session::act`] for one action at a time, in the order
/// the user did things. A session that needs background work (reading from
/// a socket, a sync loop) starts it with [`SessionContext::spawner`]; those
/// tasks are stopped when the session ends, and a panic in one of them
/// restarts the session like a panic in `act`.
#[async_trait::async_trait]
pub trait Session: Send + 'static {
    /// Does something on the network.
    async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError>;

    /// Ends the session cleanly (IRC QUIT, stop syncing). The session is
    /// dropped afterwards.
    async fn close(&mut self, reason: CloseReason);
}

/// Why a session is being closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The gateway is shutting down.
    Shutdown,
    /// The user unregistered.
    Unregistered,
    /// An administrator disconnected the user, with a message.
    Disconnected(Option<String>),
    /// The session is restarted after a failure.
    Restart,
    /// The user is offline and the session had nothing to do for a while.
    Idle,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Shutdown => f.write_str("Gateway shutting down"),
            CloseReason::Unregistered => f.write_str("Unregistered"),
            CloseReason::Disconnected(Some(m)) => f.write_str(m),
            CloseReason::Disconnected(None) => f.write_str("Disconnected by an administrator"),
            CloseReason::Restart => f.write_str("Restarting"),
            CloseReason::Idle => f.write_str("Idle"),
        }
    }
}

/// What a bridge is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Human-readable name ("IRC").
    pub name: String,
    /// The disco gateway type (`irc`, `matrix`, `smtp`, `sms`).
    pub gateway_type: String,
    /// Whether users must register.
    pub registration: Registration,
    /// When sessions start.
    pub sessions: SessionPolicy,
    /// What the network can do.
    pub capabilities: Capabilities,
}

/// Whether a user must register before using the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Registration is needed (credentials for the network).
    Required,
    /// Registration stores defaults; the bridge works without it.
    Optional,
}

/// When the core starts a user's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionPolicy {
    /// At gateway start for every registered user, and kept running while
    /// the user is offline (so nothing the network sends is missed).
    AlwaysOn,
    /// When the user first addresses the bridge (joins a room, sends a
    /// message, runs a command) or comes online after registering.
    OnDemand,
}

/// What a network supports. Everything the core cannot map to a capability
/// is answered with a clear error to the user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Group conversations (the core hosts them as rooms).
    pub rooms: bool,
    /// Private messages to room occupants.
    pub private_messages: bool,
    /// Editing sent messages.
    pub corrections: bool,
    /// Deleting sent messages.
    pub retractions: bool,
    /// Deleting others' messages as a moderator.
    pub moderation: bool,
    /// Reactions.
    pub reactions: bool,
    /// Replies.
    pub replies: bool,
    /// Threads.
    pub threads: bool,
    /// Typing notifications.
    pub chat_states: bool,
    /// The network confirms delivery ([`Event::Delivered`]); without it the
    /// core confirms delivery when the session has sent the message.
    ///
    /// [`Event::Delivered`]: crate::Event::Delivered
    pub delivery_receipts: bool,
    /// Read markers.
    pub displayed_markers: bool,
    /// Files.
    pub attachments: bool,
    /// Formatted text.
    pub formatting: bool,
    /// Setting a room's subject.
    pub subject_change: bool,
    /// Changing nickname in rooms.
    pub nick_change: bool,
    /// Inviting people to rooms.
    pub invites: bool,
    /// Kicking, bans, roles and affiliations.
    pub moderation_roles: bool,
    /// Fetching older messages ([`Action::FetchHistory`]).
    pub history: bool,
    /// Listing rooms ([`Action::ListRooms`]).
    pub room_list: bool,
    /// Contacts have presence.
    pub contact_presence: bool,
    /// A contact list to put in the roster.
    pub contact_list: bool,
    /// Software version of contacts ([`Action::QueryVersion`]).
    pub version_query: bool,
    /// Pinging contacts ([`Action::Ping`]).
    pub ping: bool,
}

/// A registered user's account on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// How the account is shown to the user ("@alice:example.org").
    pub name: String,
    /// What the bridge needs to log in again (tokens, passwords), in the
    /// bridge's own encoding. The core encrypts it at rest and never logs
    /// it.
    pub secret: Secret,
}

/// Bytes that must not be logged or stored in the clear.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// What a session gets from the core.
pub struct SessionContext {
    /// Whose session.
    pub user: UserId,
    /// The stored account, if the user registered.
    pub account: Option<Account>,
    /// The user's preference values (bridge and core fields), defaults
    /// filled in.
    pub preferences: FormValues,
    /// Where events go.
    pub events: EventSink,
    /// This user's private key/value space in the bridge's database.
    pub store: Arc<dyn KeyValue>,
    /// A directory for this user's files, created by the core.
    pub data_dir: PathBuf,
    /// Starts background tasks tied to this session.
    pub spawner: Spawner,
}

impl fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("user", &self.user)
            .field("account", &self.account)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// A key/value space in the bridge's database. Reads see every completed
/// write.
pub trait KeyValue: Send + Sync {
    /// Reads a value.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a value (durable when this returns).
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Deletes a value.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Every (key, value) whose key starts with `prefix`, sorted by key.
    /// Values written with [`KeyValue::put_sealed`] come back encrypted.
    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Writes a secret (a password, a private key): like [`KeyValue::put`],
    /// but the value is encrypted at rest with the gateway's key and bound
    /// to this space and key, so it cannot be read from the database file
    /// nor moved to another row. Read it back with
    /// [`KeyValue::get_sealed`]; [`KeyValue::delete`] removes it.
    ///
    /// The defaults refuse (reading a missing key gives None): a store
    /// that cannot encrypt must not keep secrets. The core's store
    /// implements both; an in-memory test store may simply keep the value.
    fn put_sealed(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let _ = value;
        Err(StoreError(format!(
            "cannot store secret {key}: this store does not encrypt values"
        )))
    }

    /// Reads a value written with [`KeyValue::put_sealed`], decrypted. A
    /// value that does not decrypt (written with [`KeyValue::put`], another
    /// key file, altered) is an error, never returned as is.
    fn get_sealed(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(_) => Err(StoreError(format!(
                "cannot read secret {key}: this store does not encrypt values"
            ))),
        }
    }
}

/// The database failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(pub String);

impl From<StoreError> for BridgeError {
    fn from(e: StoreError) -> Self {
        BridgeError::internal(e.to_string())
    }
}

/// A background task of a session failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    /// Whose session.
    pub user: UserId,
    /// The task's name.
    pub task: &'static str,
    /// The panic message.
    pub message: String,
}

/// Starts a session's background tasks. Every task started here is aborted
/// when the session ends; a panic in one is reported to the core, which
/// restarts the session.
#[derive(Clone)]
pub struct Spawner {
    user: UserId,
    failures: mpsc::UnboundedSender<TaskFailure>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawner").field("user", &self.user).finish()
    }
}

impl Spawner {
    /// Creates a spawner reporting failures to `failures` (used by the
    /// core, and by tests).
    pub fn new(user: UserId, failures: mpsc::UnboundedSender<TaskFailure>) -> Self {
        Self {
            user,
            failures,
            tasks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Starts a task.
    pub fn spawn<F>(&self, task: &'static str, future: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let failures = self.failures.clone();
        let user = self.user.clone();
        let handle = tokio::spawn(async move {
            if let Err(panic) = AssertUnwindSafe(future).catch_unwind().await {
                let _ = failures.send(TaskFailure {
                    user,
                    task,
                    message: panic_message(panic.as_ref()),
                });
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(handle.abort_handle());
        }
        handle
    }

    /// Aborts every task started through this spawner (and its clones).
    pub fn abort_all(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// An HTTP request routed to a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRequest {
    /// `GET`, `POST` …
    pub method: String,
    /// The path after `/bridge/<name>`, starting with `/`.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The bridge's answer to a [`WebhookRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResponse {
    /// HTTP status.
    pub status: u16,
    /// Content type of the body.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl WebhookResponse {
    /// A plain-text response.
    pub fn status(status: u16, text: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: text.as_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawner_reports_panics_and_aborts_tasks() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let spawner = Spawner::new(UserId::new("u@x"), tx);
        spawner.spawn("boom", async { panic!("kaboom") });
        let failure = rx.recv().await.expect("failure reported");
        assert_eq!(failure.task, "boom");
        assert_eq!(failure.message, "kaboom");

        let handle = spawner.spawn("forever", std::future::pending());
        spawner.abort_all();
        assert!(handle.await.expect_err("aborted").is_cancelled());
    }

    #[test]
    fn secrets_are_not_printed() {
        let a = Account {
            name: "me".into(),
            secret: Secret(b"token".to_vec()),
        };
        assert!(!format!("{a:?}").contains("token"));
    }
}
