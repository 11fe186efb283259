//! Test harness: a real Synapse (from `MATRIX_URL`), ferry's Matrix
//! sessions driven through the bridge API, and "peer" Matrix users driven
//! with matrix-sdk itself (end-to-end encryption included).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_bridge::{
    Account, Action, BridgeError, ConnectionState, Envelope, Event, EventSink, FormValues, Network,
    Outcome, Session, SessionContext, Spawner, UserId,
};
use ferry_matrix::{Config, MatrixNetwork};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId};
use matrix_sdk::{Client, LoopCtrl, Room, RoomState};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

/// How long a test waits for something to happen.
pub const WAIT: Duration = Duration::from_secs(30);

/// The homeserver under test.
pub fn url() -> String {
    match std::env::var("MATRIX_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "MATRIX_URL is not set: these tests need the Synapse started by the project's peer \
             scripts (PEERS=matrix contrib/peers/start-peers.sh DIR; source DIR/peers.env)"
        ),
    }
}

/// The homeserver's server name.
pub fn server_name() -> String {
    std::env::var("MATRIX_SERVER_NAME").unwrap_or_else(|_| "localhost".into())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A user name nobody used before.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{}", std::process::id(), t % 1_000_000_000)
}

/// Registers a new Matrix user; returns (user id, password).
pub async fn register(prefix: &str) -> (String, String) {
    let name = unique(prefix);
    let password = format!("{name}-pw");
    let http = matrix_sdk::reqwest::Client::new();
    let body = serde_json::json!({
        "username": name, "password": password, "auth": {"type": "m.login.dummy"},
        "inhibit_login": true,
    });
    let response = http
        .post(format!("{}/_matrix/client/v3/register", url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("Synapse answers /register");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "register {name}: {status} {text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    (v["user_id"].as_str().expect("user_id").to_owned(), password)
}

/// The bridge config used in tests.
pub fn config() -> Config {
    Config {
        allow_insecure_http: true,
        sync_timeout_secs: 5,
        request_timeout_secs: 20,
        // Synapse and the tests' web servers listen on loopback.
        hosts: Arc::new(
            ferry_bridge::HostPolicy::new(["127.0.0.1", "127.0.0.2"], [""; 0])
                .expect("test host policy"),
        ),
        ..Config::default()
    }
}

/// An in-memory key/value store (the core's store in production).
pub use ferry_bridge::MemoryKeyValue as MemKv;

/// Events a session reported, for the test to take one by one.
#[derive(Clone, Default)]
pub struct EventLog {
    events: Arc<Mutex<VecDeque<Event>>>,
    all: Arc<Mutex<Vec<Event>>>,
    notify: Arc<Notify>,
}

impl EventLog {
    fn push(&self, e: Event) {
        self.events.lock().expect("lock").push_back(e.clone());
        self.all.lock().expect("lock").push(e);
        self.notify.notify_waiters();
    }

    /// How many events reported so far match `pred` (taken or not).
    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.all
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| pred(e))
            .count()
    }

    /// Waits for (and removes) the first event matching `pred`.
    pub async fn take(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.notify.notified();
            {
                let mut q = self.events.lock().expect("lock");
                if let Some(pos) = q.iter().position(&pred) {
                    return q.remove(pos).expect("present");
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .all
                    .lock()
                    .expect("lock")
                    .iter()
                    .map(|e| format!("{e:?}"))
                    .collect();
                panic!(
                    "timed out waiting for {what}; events seen:\n{}",
                    seen.join("\n")
                );
            }
        }
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Event> {
        self.all.lock().expect("lock").clone()
    }
}

/// A ferry user: registration through the bridge, a session driven with
/// actions.
pub struct Ferry {
    pub network: Arc<MatrixNetwork>,
    pub user_id: String,
    pub password: String,
    pub account: Account,
    pub kv: Arc<MemKv>,
    pub dir: tempfile::TempDir,
    pub session: Option<Box<dyn Session>>,
    pub events: EventLog,
    pub spawner: Option<Spawner>,
}

impl Ferry {
    /// Registers a Matrix user, logs in through the bridge and connects.
    pub async fn new(prefix: &str) -> Ferry {
        Self::with_config(prefix, config()).await
    }

    /// The same with a bridge config.
    pub async fn with_config(prefix: &str, config: Config) -> Ferry {
        // RUST_LOG=… shows the bridge's and matrix-sdk's log of a test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (user_id, password) = register(prefix).await;
        let network = Arc::new(MatrixNetwork::new(config.clone()).expect("valid config"));
        let values = FormValues::new()
            .with("homeserver", url())
            .with("username", user_id.clone())
            .with("password", password.clone())
            .with("device", "ferry test");
        let account = network
            .login(&UserId::new("tester@localhost"), &values)
            .await
            .expect("login works");
        let mut f = Ferry {
            network,
            user_id,
            password,
            account,
            kv: Arc::new(MemKv::default()),
            dir: tempfile::tempdir().expect("tempdir"),
            session: None,
            events: EventLog::default(),
            spawner: None,
        };
        f.connect().await;
        f
    }

    /// Starts (or restarts) the session with the stored account and store.
    pub async fn connect(&mut self) {
        self.connect_with(FormValues::new()).await;
    }

    /// Starts the session with preferences.
    pub async fn connect_with(&mut self, preferences: FormValues) {
        let (tx, mut rx) = mpsc::channel::<Envelope>(64);
        let log = self.events.clone();
        tokio::spawn(async move {
            while let Some(env) = rx.recv().await {
                match env {
                    Envelope::Event { event, .. } => log.push(event),
                    Envelope::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        let user = UserId::new("tester@localhost");
        let (ftx, mut frx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            if let Some(f) = frx.recv().await {
                panic!("a session task panicked: {f:?}");
            }
        });
        let spawner = Spawner::new(user.clone(), ftx);
        let ctx = SessionContext {
            user: user.clone(),
            account: Some(self.account.clone()),
            preferences,
            events: EventSink::new(user, tx),
            store: self.kv.clone(),
            data_dir: self.dir.path().to_path_buf(),
            spawner: spawner.clone(),
        };
        let session = self.network.connect(ctx).await.expect("connect works");
        self.session = Some(session);
        self.spawner = Some(spawner);
    }

    /// Closes the session as the core does at shutdown.
    pub async fn close(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.close(ferry_bridge::CloseReason::Shutdown).await;
        }
        if let Some(sp) = self.spawner.take() {
            sp.abort_all();
        }
    }

    /// Kills the session without closing it (a crash: tasks aborted
    /// wherever they are).
    pub fn crash(&mut self) {
        if let Some(sp) = self.spawner.take() {
            sp.abort_all();
        }
        self.session = None;
    }

    /// Runs an action.
    pub async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        self.session.as_mut().expect("connected").act(action).await
    }

    /// Waits until the session reports that it is connected.
    pub async fn connected(&self) {
        self.events
            .take("Connected", |e| {
                matches!(e, Event::Connection(ConnectionState::Connected(_)))
            })
            .await;
    }

    /// Waits for an event.
    pub async fn take(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        self.events.take(what, pred).await
    }
}

/// Timeline events a peer received, decrypted.
#[derive(Clone, Default)]
pub struct Timeline {
    events: Arc<Mutex<Vec<(OwnedRoomId, Value)>>>,
    notify: Arc<Notify>,
}

impl Timeline {
    /// Every event seen so far.
    pub fn all(&self) -> Vec<(OwnedRoomId, Value)> {
        self.events.lock().expect("lock").clone()
    }

    /// Waits for an event of a room matching `pred`.
    pub async fn wait(&self, room: &RoomId, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.notify.notified();
            {
                let evs = self.events.lock().expect("lock");
                if let Some((_, v)) = evs.iter().find(|(r, v)| r == room && pred(v)) {
                    return v.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .events
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|(r, _)| r == room)
                    .map(|(_, v)| v.to_string())
                    .collect();
                panic!(
                    "peer timed out waiting for {what} in {room}; seen:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
}

/// Another Matrix user (or another device of the ferry user), driven
/// with matrix-sdk.
pub struct Peer {
    pub client: Client,
    pub user_id: OwnedUserId,
    pub timeline: Timeline,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// A new Matrix user.
    pub async fn new(prefix: &str) -> Peer {
        let (user, password) = register(prefix).await;
        Self::login(&user, &password, "peer").await
    }

    /// Logs in as an existing user, as a new device.
    pub async fn login(user: &str, password: &str, device: &str) -> Peer {
        Self::login_with(user, password, device, None).await
    }

    /// Logs in with a room key sharing strategy.
    pub async fn login_with(
        user: &str,
        password: &str,
        device: &str,
        strategy: Option<matrix_sdk_base::crypto::CollectStrategy>,
    ) -> Peer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut builder = Client::builder()
            .homeserver_url(url())
            .sqlite_store(dir.path(), None);
        if let Some(s) = strategy {
            builder = builder.with_room_key_recipient_strategy(s);
        }
        let client = builder.build().await.expect("client");
        client
            .matrix_auth()
            .login_username(user, password)
            .initial_device_display_name(device)
            .await
            .expect("peer login");
        // One sync so the device keys are uploaded before anyone encrypts.
        client
            .sync_once(SyncSettings::default())
            .await
            .expect("first sync");
        let timeline = Timeline::default();
        let tl = timeline.clone();
        let c = client.clone();
        let task = tokio::spawn(async move {
            let _ = c
                .sync_with_callback(
                    SyncSettings::default().timeout(Duration::from_secs(5)),
                    |response| {
                        let tl = tl.clone();
                        async move {
                            {
                                let mut evs = tl.events.lock().expect("lock");
                                for (room, update) in &response.rooms.joined {
                                    for ev in &update.timeline.events {
                                        if let Ok(v) = ev.raw().deserialize_as::<Value>() {
                                            evs.push((room.clone(), v));
                                        }
                                    }
                                    for ev in &update.ephemeral {
                                        if let Ok(v) = ev.deserialize_as::<Value>() {
                                            evs.push((room.clone(), v));
                                        }
                                    }
                                }
                            }
                            tl.notify.notify_waiters();
                            LoopCtrl::Continue
                        }
                    },
                )
                .await;
        });
        Peer {
            user_id: client.user_id().expect("logged in").to_owned(),
            client,
            timeline,
            _dir: dir,
            task,
        }
    }

    /// Waits until the client knows a room in a state.
    pub async fn room_in_state(&self, room: &RoomId, state: RoomState) -> Room {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.client.get_room(room)
                && r.state() == state
            {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "peer never saw {room} as {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Accepts an invitation once it arrives.
    pub async fn accept(&self, room: &RoomId) -> Room {
        let r = self.room_in_state(room, RoomState::Invited).await;
        r.join().await.expect("join");
        self.room_in_state(room, RoomState::Joined).await
    }

    /// Waits for a timeline event.
    pub async fn wait(&self, room: &RoomId, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.timeline.wait(room, what, pred).await
    }
}

/// The `body` of a message event's content.
pub fn body(v: &Value) -> &str {
    v["content"]["body"].as_str().unwrap_or("")
}

/// Whether a JSON event is an `m.room.message` with this body.
pub fn is_text(v: &Value, text: &str) -> bool {
    v["type"] == "m.room.message" && body(v) == text
}
