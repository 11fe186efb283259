//! Helpers of the live tests: a raw IRC client (the "other side"), a bridge
//! session driven through the bridge API with its events collected, an
//! in-memory key/value store, and the ports of the real servers from the
//! environment the test command sets (IRC_PORT for InspIRCd, NGIRCD_PORT
//! for ngIRCd). A missing port fails the test with a clear message.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use encoding_rs::WINDOWS_1252;
use ferry_bridge::{
    Action, Address, BridgeError, ContactId, Envelope, Event, EventSink, Network, Outcome,
    OutgoingMessage, RoomId, ServiceId, Session, SessionContext, Spawner, UserId,
};
use ferry_irc::Config;
use ferry_irc::proto::Message;
use ferry_irc::settings::{ServerOptions, SettingsStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

pub const T: Duration = Duration::from_secs(10);

/// The port of a real server, from the environment.
pub fn port(var: &str) -> u16 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a port")),
        Err(_) => panic!(
            "{var} is not set: these tests need the real IRC servers. Start them with \
             contrib/peers/start-peers.sh (or tests/run.sh) and export {var} (see peers.env)"
        ),
    }
}

/// InspIRCd's port.
pub fn inspircd() -> u16 {
    port("IRC_PORT")
}

/// ngIRCd's port.
pub fn ngircd() -> u16 {
    port("NGIRCD_PORT")
}

/// A name unique to this test run: `prefix` + a short suffix.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 10_000;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!("{prefix}{pid}{t:03}{n}")
}

// ------------------------------------------------------------------ raw IRC

/// A plain IRC client on the other side.
pub struct Raw {
    pub nick: String,
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    /// Every line received, raw.
    pub log: Vec<Vec<u8>>,
    backlog: Vec<Message>,
}

impl Raw {
    /// Connects and registers, asking for `caps` (may be empty).
    pub async fn connect(port: u16, nick: &str, caps: &[&str]) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("raw client connects");
        s.set_nodelay(true).ok();
        let (r, w) = s.into_split();
        let mut raw = Raw {
            nick: nick.to_owned(),
            rd: BufReader::new(r),
            wr: w,
            log: Vec::new(),
            backlog: Vec::new(),
        };
        if !caps.is_empty() {
            raw.send("CAP LS 302").await;
            raw.send(&format!("CAP REQ :{}", caps.join(" "))).await;
        }
        raw.send(&format!("NICK {nick}")).await;
        raw.send(&format!("USER {nick} 0 * :raw test client")).await;
        if !caps.is_empty() {
            raw.expect(|m| m.command == "CAP" && (m.param(1) == "ACK" || m.param(1) == "NAK"))
                .await;
            raw.send("CAP END").await;
        }
        raw.expect(|m| m.command == "376" || m.command == "422")
            .await;
        raw
    }

    /// Sends one line (CR LF added).
    pub async fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes()).await;
    }

    /// Sends raw bytes (CR LF added).
    pub async fn send_bytes(&mut self, line: &[u8]) {
        let mut b = line.to_vec();
        b.extend_from_slice(b"\r\n");
        self.wr.write_all(&b).await.expect("raw write");
    }

    async fn read(&mut self, deadline: Instant) -> Option<Message> {
        loop {
            let mut buf = Vec::new();
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rd.read_until(b'\n', &mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
            self.log.push(buf.clone());
            let Some(m) = Message::parse(&buf, WINDOWS_1252) else {
                continue;
            };
            if m.command == "PING" {
                let t = m.param(0).to_owned();
                self.send(&format!("PONG :{t}")).await;
                continue;
            }
            // Answer CTCP VERSION like a real client.
            if m.command == "PRIVMSG" && m.trailing() == "\x01VERSION\x01" {
                let from = m.nick().to_owned();
                self.send(&format!("NOTICE {from} :\x01VERSION rawclient 1.0\x01"))
                    .await;
            }
            return Some(m);
        }
    }

    /// Waits for a message matching `pred` (others are kept for later).
    pub async fn expect(&mut self, pred: impl Fn(&Message) -> bool) -> Message {
        self.expect_within(T, pred).await.unwrap_or_else(|| {
            panic!(
                "{}: expected message not received; last lines: {:?}",
                self.nick,
                self.tail()
            )
        })
    }

    /// Like `expect`, None on timeout.
    pub async fn expect_within(
        &mut self,
        t: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Option<Message> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + t;
        while let Some(m) = self.read(deadline).await {
            if pred(&m) {
                return Some(m);
            }
            self.backlog.push(m);
        }
        None
    }

    /// Every message received within `t`, backlog first.
    pub async fn collect(&mut self, t: Duration) -> Vec<Message> {
        let mut out = std::mem::take(&mut self.backlog);
        let deadline = Instant::now() + t;
        while let Some(m) = self.read(deadline).await {
            out.push(m);
        }
        out
    }

    fn tail(&self) -> Vec<String> {
        self.log
            .iter()
            .rev()
            .take(8)
            .rev()
            .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
            .collect()
    }

    /// Joins and waits for the end of NAMES.
    pub async fn join(&mut self, chan: &str) {
        self.send(&format!("JOIN {chan}")).await;
        self.expect(|m| m.command == "366" && m.param(1).eq_ignore_ascii_case(chan))
            .await;
    }
}

// ------------------------------------------------------------------ store

pub use ferry_bridge::MemoryKeyValue as MemKv;

// ------------------------------------------------------------------ bridge side

/// The gateway side: one user's session of a bridge built like the core
/// builds it.
pub struct Gw {
    pub net: Arc<dyn Network>,
    pub session: Box<dyn Session>,
    pub events: mpsc::Receiver<Envelope>,
    pub user: UserId,
    pub store: Arc<MemKv>,
    /// The session's spawner (the core aborts its tasks before close()).
    pub spawner: Spawner,
    backlog: Vec<Event>,
}

/// The server name tests use for InspIRCd.
pub const INSP: &str = "127.0.0.1";
/// The server name tests use for ngIRCd (it also listens on 127.0.0.2).
pub const NG: &str = "127.0.0.2";

/// A config that reaches the test servers (InspIRCd as 127.0.0.1; ngIRCd
/// as 127.0.0.2 through the user's server options).
pub fn config() -> Config {
    Config {
        ports: vec![inspircd()],
        tls_ports: vec![],
        idle_timeout: 30,
        ..Config::default()
    }
}

impl Gw {
    /// A session of `user` on a new bridge with `config`.
    pub async fn new(config: Config, user: &str) -> Gw {
        let net = ferry_irc::build(
            config,
            ferry_bridge::BridgeSetup {
                domain: "irc.localhost".into(),
                data_dir: std::env::temp_dir(),
                hosts: ferry_bridge::HostPolicy::new(["127.0.0.1", "127.0.0.2"], [""; 0])
                    .expect("test host policy"),
            },
        )
        .expect("bridge builds");
        // The bridge-wide part (identd); its tasks end with the test.
        let (ctx, _, _) = ferry_bridge::BridgeContext::standalone("irc", "irc.localhost");
        net.start(ctx).await.expect("bridge starts");
        Self::on(net, user).await
    }

    /// A session of `user` on an existing bridge.
    pub async fn on(net: Arc<dyn Network>, user: &str) -> Gw {
        let user = UserId::new(user);
        let store = Arc::new(MemKv::default());
        if let Ok(ng) = std::env::var("NGIRCD_PORT")
            && let Ok(p) = ng.parse::<u16>()
        {
            SettingsStore::new(store.as_ref())
                .set_server(
                    NG,
                    &ServerOptions {
                        ports: Some(vec![p]),
                        tls_ports: Some(vec![]),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        let (tx, events) = mpsc::channel(4096);
        let (ftx, _frx) = mpsc::unbounded_channel();
        let spawner = Spawner::new(user.clone(), ftx);
        let ctx = SessionContext {
            user: user.clone(),
            account: None,
            preferences: Default::default(),
            events: EventSink::new(user.clone(), tx),
            store: store.clone(),
            data_dir: std::env::temp_dir(),
            spawner: spawner.clone(),
        };
        let session = net.connect(ctx).await.expect("session starts");
        Gw {
            net,
            session,
            events,
            user,
            store,
            spawner,
            backlog: Vec::new(),
        }
    }

    /// Does something.
    pub async fn act(&mut self, a: Action) -> Result<Outcome, BridgeError> {
        tokio::time::timeout(T * 2, self.session.act(a))
            .await
            .expect("act answers in time")
    }

    /// A room id through the address rules, as the core would get it.
    pub fn room(&self, chan: &str, server: &str) -> RoomId {
        match self.net.address().parse(
            &format!("{chan}%{server}"),
            None,
            &ferry_bridge::AddressContext::none(),
        ) {
            Ok(Address::Room(r)) => r,
            other => panic!("not a room: {other:?}"),
        }
    }

    /// A contact id.
    pub fn contact(&self, nick: &str, server: &str) -> ContactId {
        match self.net.address().parse(
            &format!("{nick}%{server}"),
            None,
            &ferry_bridge::AddressContext::none(),
        ) {
            Ok(Address::Contact(c)) => c,
            other => panic!("not a contact: {other:?}"),
        }
    }

    /// The service of a server.
    pub fn service(&self, server: &str) -> Address {
        Address::Service(ServiceId::new(server))
    }

    /// Waits for an event matching `pred` (others are kept).
    pub async fn event(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        self.event_within(T, &pred).await.unwrap_or_else(|| {
            panic!(
                "expected event not received; got meanwhile: {:#?}",
                self.backlog.iter().rev().take(10).collect::<Vec<_>>()
            )
        })
    }

    /// Like `event`, None on timeout.
    pub async fn event_within(
        &mut self,
        t: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Some(self.backlog.remove(i));
        }
        let deadline = tokio::time::Instant::now() + t;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Envelope::Event { event, .. })) => {
                    if pred(&event) {
                        return Some(event);
                    }
                    self.backlog.push(event);
                }
                Ok(Some(Envelope::Flush(done))) => {
                    let _ = done.send(());
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every event within `t` (backlog first).
    pub async fn drain(&mut self, t: Duration) -> Vec<Event> {
        let mut out = std::mem::take(&mut self.backlog);
        while let Some(e) = self.event_within(t, |_| true).await {
            out.push(e);
        }
        out
    }

    /// Joins a room and returns its RoomJoined event.
    pub async fn join(&mut self, room: &RoomId, nick: &str) -> Event {
        let r = self
            .act(Action::JoinRoom {
                room: room.clone(),
                nick: nick.into(),
                password: None,
            })
            .await;
        assert_eq!(r, Ok(Outcome::Done));
        let room = room.clone();
        self.event(move |e| match e {
            Event::RoomJoined { info, .. } => info.room == room,
            Event::RoomJoinFailed { room: r, error } => panic!("join of {r} failed: {error}"),
            _ => false,
        })
        .await
    }

    /// Sends a text message.
    pub async fn say(&mut self, to: Address, body: &str) -> Result<Outcome, BridgeError> {
        self.act(Action::SendMessage(OutgoingMessage::text(
            to,
            unique("id"),
            body,
        )))
        .await
    }
}

// ------------------------------------------------------------------ exclusivity

/// Holds an exclusive lock shared by every test process (a file lock):
/// tests that restart a server take it, and so do all tests using that
/// server.
pub struct Exclusive(std::fs::File);

pub fn exclusive(name: &str) -> Exclusive {
    let path = std::env::temp_dir().join(format!("ferry-irc-tests-{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("lock file");
    f.lock().expect("lock");
    Exclusive(f)
}

/// Restarts a peer with the project's script (`contrib/peers/restart-peer.sh`,
/// or the shared reference one), `down` seconds down.
pub fn restart_peer(name: &str, down: u32) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = std::env::var("RESTART_PEER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            let own = repo.join("contrib/peers/restart-peer.sh");
            if own.exists() {
                own
            } else {
                repo.join("../shared/peers/restart-peer.sh")
            }
        });
    let dir = std::env::var("PEERS_DIR").expect("PEERS_DIR is not set (source peers.env)");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(name)
        .arg(down.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "restart-peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
