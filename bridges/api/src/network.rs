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
use crate::capability::Capabilities;
use crate::command::CommandSpec;
use crate::error::{BridgeError, LoginError};
use crate::event::EventSink;
use crate::form::{Form, FormValues};
use crate::hosts::HostPolicy;
use crate::id::UserId;
use crate::users::UserRouter;

/// What the core tells a bridge when it builds it, besides the bridge's own
/// configuration section (which each bridge crate deserialises into its
/// own `Config` type, refusing unknown keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSetup {
    /// The component's domain (`irc.example.org`).
    pub domain: String,
    /// A directory for the bridge's files (created by the core).
    pub data_dir: PathBuf,
    /// The hosts the bridge may connect to when a user's input names one
    /// (the section's `allowed_hosts` and `denied_hosts`).
    pub hosts: HostPolicy,
}

/// The key a session writes in its user's [`KeyValue`] space while it has
/// something to restore after the gateway restarts or crashes (an IRC
/// connection carrying a private conversation): when the gateway starts,
/// the core starts the sessions of the users who have it, as it starts
/// [`SessionPolicy::AlwaysOn`] sessions. The value is the bridge's own;
/// delete the key when there is nothing to restore any more.
pub const RESUME_KEY: &str = "ferry.resume";

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

    /// Starts the bridge-wide part (a shared connection, an identd, a
    /// poller): called once before the gateway serves anything, with what
    /// the core gives the bridge as a whole. Tasks spawned through
    /// `ctx.spawner` run until [`Network::stop`]; a panic in one stops the
    /// bridge-wide part and the core starts it again (after a backoff), as
    /// it does when this returns an error.
    async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError> {
        let _ = ctx;
        Ok(())
    }

    /// Stops the bridge-wide part: on shutdown after every session was
    /// closed, and before a restart after a failure. The tasks of the
    /// context's spawner are aborted afterwards.
    async fn stop(&self) {}

    /// One step of a command marked [`CommandSpec::bridge_wide`], run for
    /// `user` (who need not have a session, nor be registered) with the
    /// bridge's context. `call.admin` says whether the user is an
    /// administrator; the core has already refused admin-only commands to
    /// others.
    async fn command(
        &self,
        ctx: &BridgeContext,
        user: &UserId,
        call: crate::command::CommandCall,
    ) -> Result<crate::command::CommandReply, BridgeError> {
        let _ = (ctx, user);
        Err(BridgeError::unsupported(format!(
            "the bridge has no bridge-wide command {}",
            call.node
        )))
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
    /// What sizes and kinds of content it takes.
    pub limits: Limits,
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

/// Sizes and kinds of content a network takes, declared by the bridge and
/// enforced by the core before an action reaches the session: a message
/// or file over a limit is refused to the user with an error that names the
/// limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest message text, in bytes of UTF-8 (the body, and the subject
    /// where the network carries one). None: only the core's own
    /// `[limits] max_message_bytes` applies.
    pub message_bytes: Option<usize>,
    /// Largest attachment, in bytes (checked when the size is known: the
    /// core asks the file's server before sending).
    pub attachment_bytes: Option<u64>,
    /// MIME types of attachments the network takes (`image/jpeg`, or
    /// `image/*` for a whole family); empty: any.
    pub attachment_types: Vec<String>,
}

impl Limits {
    /// Whether a MIME type is one the network takes.
    pub fn accepts_type(&self, mime: &str) -> bool {
        if self.attachment_types.is_empty() {
            return true;
        }
        let mime = mime
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.attachment_types.iter().any(|t| {
            let t = t.trim().to_ascii_lowercase();
            match t.strip_suffix("/*") {
                Some(family) => mime.split_once('/').is_some_and(|(f, _)| f == family),
                None => t == mime,
            }
        })
    }
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

/// What the core gives a bridge as a whole ([`Network::start`]).
#[derive(Clone)]
pub struct BridgeContext {
    /// The bridge's name (its configuration section: `sms`).
    pub name: String,
    /// The component's domain.
    pub domain: String,
    /// Starts bridge-wide background tasks, supervised by the core.
    pub spawner: Spawner,
    /// The bridge's own key/value space in its database (not any user's),
    /// sealed values included.
    pub store: Arc<dyn KeyValue>,
    /// The public base URL of the bridge's webhooks:
    /// `<[http] public_url, else http://<[http] listen>>/bridge/<name>`;
    /// None without an HTTP listener. A request to `<public_url>/x` reaches
    /// [`Network::webhook`] with the path `/x`.
    pub public_url: Option<String>,
    /// Hands events to users' sessions and knows who owns which network
    /// address.
    pub users: UserRouter,
}

impl BridgeContext {
    /// A context outside the core, for a bridge's tests and tools: an
    /// in-memory store, [`MemoryUsers`] (returned, to see what was
    /// delivered), no public URL, and the failures of the spawner's tasks
    /// on the returned receiver.
    ///
    /// [`MemoryUsers`]: crate::MemoryUsers
    pub fn standalone(
        name: &str,
        domain: &str,
    ) -> (
        BridgeContext,
        crate::users::MemoryUsers,
        mpsc::UnboundedReceiver<TaskFailure>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (memory, users) = crate::users::MemoryUsers::new();
        let ctx = BridgeContext {
            name: name.to_owned(),
            domain: domain.to_owned(),
            spawner: Spawner::bridge(tx),
            store: Arc::new(crate::memory::MemoryKeyValue::new()),
            public_url: None,
            users,
        };
        (ctx, memory, rx)
    }
}

impl fmt::Debug for BridgeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeContext")
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("public_url", &self.public_url)
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
    /// Whose session; None for a bridge-wide task.
    pub user: Option<UserId>,
    /// The task's name.
    pub task: &'static str,
    /// The panic message.
    pub message: String,
}

/// Where a [`Spawner`] reports the panics of its tasks: a channel (one per
/// bridge, or one a test reads), or a [`FailureWatch`]'s slot.
///
/// A channel reserves room for 32 failures the moment it is made (a tokio
/// channel allocates its first block up front, ~2.5 KB with its header),
/// which is what a session costs when each has a channel of its own; a
/// watch keeps one failure and one wake-up (~150 bytes). The core gives
/// each session a watch; `From<UnboundedSender<TaskFailure>>` keeps
/// `Spawner::new(user, tx)` working for tests and tools.
#[derive(Clone, Debug)]
pub struct FailureSink(Sink);

#[derive(Clone, Debug)]
enum Sink {
    Channel(mpsc::UnboundedSender<TaskFailure>),
    Watch(Arc<WatchSlot>),
}

impl From<mpsc::UnboundedSender<TaskFailure>> for FailureSink {
    fn from(tx: mpsc::UnboundedSender<TaskFailure>) -> Self {
        FailureSink(Sink::Channel(tx))
    }
}

impl FailureSink {
    fn report(&self, failure: TaskFailure) {
        match &self.0 {
            Sink::Channel(tx) => {
                let _ = tx.send(failure);
            }
            Sink::Watch(slot) => {
                if let Ok(mut first) = slot.first.lock() {
                    // The first failure ends the session; later ones (its
                    // other tasks failing with it) add nothing.
                    if first.is_none() {
                        *first = Some(failure);
                    }
                }
                // A permit is kept when nobody waits yet: never lost.
                slot.wake.notify_one();
            }
        }
    }
}

#[derive(Debug, Default)]
struct WatchSlot {
    first: Mutex<Option<TaskFailure>>,
    wake: tokio::sync::Notify,
}

/// The receiving side of a [`FailureSink`] made by [`FailureWatch::new`]:
/// the first failure of any task of the spawners that report to it.
#[derive(Debug)]
pub struct FailureWatch(Arc<WatchSlot>);

impl FailureWatch {
    /// A watch and the sink to give to [`Spawner::new`].
    pub fn new() -> (FailureSink, FailureWatch) {
        let slot = Arc::new(WatchSlot::default());
        (FailureSink(Sink::Watch(slot.clone())), FailureWatch(slot))
    }

    /// Waits for the first failure (forever if none comes). Cancel-safe:
    /// a failure is taken only when this returns it.
    pub async fn failed(&mut self) -> TaskFailure {
        loop {
            if let Some(f) = self.0.first.lock().ok().and_then(|mut f| f.take()) {
                return f;
            }
            self.0.wake.notified().await;
        }
    }
}

/// Starts a session's background tasks. Every task started here is aborted
/// when the session ends; a panic in one is reported to the core, which
/// restarts the session.
///
/// Failures go to a [`FailureSink`]: the core gives each session a
/// [`FailureWatch`] (no channel block reserved per session); tests and
/// tools pass an `mpsc::UnboundedSender<TaskFailure>`, which converts.
#[derive(Clone)]
pub struct Spawner {
    user: Option<UserId>,
    failures: FailureSink,
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
    pub fn new(user: UserId, failures: impl Into<FailureSink>) -> Self {
        Self {
            user: Some(user),
            failures: failures.into(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Creates a spawner for bridge-wide tasks (used by the core, and by
    /// tests).
    pub fn bridge(failures: impl Into<FailureSink>) -> Self {
        Self {
            user: None,
            failures: failures.into(),
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
                failures.report(TaskFailure {
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
    use std::time::Duration;

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

    #[tokio::test]
    async fn a_watch_keeps_the_first_failure_until_it_is_read() {
        let (sink, mut watch) = FailureWatch::new();
        let spawner = Spawner::new(UserId::new("u@x"), sink);
        // Both fail before anyone waits: the first is kept, not lost.
        spawner
            .spawn("first", async { panic!("one") })
            .await
            .expect("the wrapper catches the panic");
        spawner
            .spawn("second", async { panic!("two") })
            .await
            .expect("the wrapper catches the panic");
        let failure = watch.failed().await;
        assert_eq!(failure.user, Some(UserId::new("u@x")));
        assert_eq!((failure.task, failure.message.as_str()), ("first", "one"));
        // Nothing more until another task fails; a later failure wakes a waiter.
        let waiting = tokio::time::timeout(Duration::from_millis(20), watch.failed()).await;
        assert!(waiting.is_err(), "no failure pending");
        let later = spawner.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            later.spawn("third", async { panic!("three") });
        });
        assert_eq!(watch.failed().await.task, "third");
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
