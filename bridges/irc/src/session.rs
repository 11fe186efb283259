//! One user's session: routes the core's actions to the user's
//! connections (one per IRC server, started on demand, shared by all
//! rooms and private conversations on that server) and answers them.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_bridge::{
    Action, Address, BridgeError, CloseReason, ErrorKind, Event, EventSink, HistoryPolicy,
    HostRefused, KeyValue, LoginError, Outcome, OutgoingMessage, Presence, RoomId, Session,
    SessionContext, Show, Spawner, UserId,
};
use futures::channel::mpsc;
use futures::{FutureExt, SinkExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::address::split_id;
use crate::conn::{Conn, ConnEnv, ConnInfo, CtcpQuery, Request, Target};
use crate::driver::{self, DriverEnv};
use crate::resume::{self, ResumeLog};
use crate::settings::{ConnSettings, Defaults, SettingsStore};
use crate::{Shared, secs, unavailable};

/// A running connection: one task, which owns the socket, the state
/// machine, its timers and the receiving end of the request channel.
///
/// The connection's task is not aborted with the session's tasks: the core
/// aborts those before it calls [`Session::close`], and a connection must
/// still be able to say QUIT then. It ends by itself when the session is
/// dropped (its request channel closes: it quits). A panic of the
/// connection is reported to the core as a failure of one of the
/// session's tasks while the session runs (a task started with the
/// session's spawner at that moment), and only logged once the session
/// ended — no watcher task waits for it meanwhile.
///
/// The request channel is `futures`' bounded channel: it allocates a node
/// per queued request and nothing ahead, where tokio's allocates a block
/// of 32 requests (3.6 KB) when it is created.
pub(crate) struct ConnHandle {
    pub(crate) tx: mpsc::Sender<Request>,
    task: JoinHandle<()>,
    closing: Arc<AtomicBool>,
}

impl ConnHandle {
    fn alive(&self) -> bool {
        !self.tx.is_closed() && !self.task.is_finished()
    }

    /// It sent QUIT (idle, closed by the user) and is about to end.
    fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// The IRC session of one user.
pub struct IrcSession {
    pub(crate) shared: Arc<Shared>,
    pub(crate) user: UserId,
    events: EventSink,
    pub(crate) store: Arc<dyn KeyValue>,
    spawner: Spawner,
    pub(crate) defaults: Defaults,
    pub(crate) conns: HashMap<String, ConnHandle>,
    away: Option<String>,
    down: Arc<Mutex<BTreeSet<String>>>,
    /// Set when the session closes or is dropped: a connection that panics
    /// afterwards is only logged, not reported as the session's failure.
    ended: Arc<AtomicBool>,
}

/// The away message for a presence (None: available).
pub fn away_text(p: &Presence) -> Option<String> {
    let status = p.status.clone().filter(|s| !s.trim().is_empty());
    match p.show {
        Show::Available | Show::Chat => None,
        Show::Away => Some(status.unwrap_or_else(|| "Away".into())),
        Show::ExtendedAway => Some(status.unwrap_or_else(|| "Not available".into())),
        Show::DoNotDisturb => Some(status.unwrap_or_else(|| "Busy".into())),
        Show::Offline => Some(status.unwrap_or_else(|| "Offline".into())),
    }
}

impl IrcSession {
    /// A session; connects nothing until the user does something, except
    /// the private conversations a restart interrupted ([`resume`]).
    pub fn new(shared: Arc<Shared>, ctx: SessionContext) -> Self {
        let defaults = ctx
            .account
            .as_ref()
            .map(|a| Defaults::from_secret(&a.secret.0))
            .unwrap_or_default();
        let mut session = Self {
            shared,
            user: ctx.user,
            events: ctx.events,
            store: ctx.store,
            spawner: ctx.spawner,
            defaults,
            conns: HashMap::new(),
            away: None,
            down: Arc::new(Mutex::new(BTreeSet::new())),
            ended: Arc::new(AtomicBool::new(false)),
        };
        session.resume_conversations();
        session
    }

    /// Reconnects the servers whose private conversation was active within
    /// `idle_timeout` when the gateway (or this session) last stopped.
    fn resume_conversations(&mut self) {
        let idle = secs(self.shared.config.idle_timeout);
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        for (server, note) in resume::pending(self.store.as_ref(), idle, wall) {
            let age = wall.duration_since(note.time()).unwrap_or_default();
            let at = now.checked_sub(age).unwrap_or(now);
            match self.connection(&server, Some(&note.nick)) {
                Ok(mut tx) => {
                    tracing::info!(user = %self.user, %server, "IRC connection restored for a private conversation");
                    let _ = tx.try_send(Request::Resume {
                        at,
                        wall: note.time(),
                    });
                }
                Err(e) => {
                    tracing::info!(user = %self.user, %server, "IRC connection not restored: {e}");
                }
            }
        }
    }

    fn settings(&self) -> SettingsStore<'_> {
        SettingsStore::new(self.store.as_ref())
    }

    /// The resolved settings of one server.
    pub(crate) fn conn_settings(&self, server: &str) -> Result<ConnSettings, BridgeError> {
        let opts = self.settings().server(server)?;
        Ok(ConnSettings::resolve(
            &self.shared.config,
            &self.user,
            server,
            &self.defaults,
            &opts,
        ))
    }

    fn default_nick(&self) -> String {
        let local = self.user.as_str().split('@').next().unwrap_or("ferry");
        let nick: String = local
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_[]{}\\|^`".contains(*c))
            .take(16)
            .collect();
        match nick.chars().next() {
            Some(c) if c.is_ascii_alphabetic() || "[]{}\\|^`_".contains(c) => nick,
            _ => format!("x{nick}"),
        }
    }

    /// The running connection to `server`, if any.
    pub(crate) fn running(&mut self, server: &str) -> Option<mpsc::Sender<Request>> {
        match self.conns.get(server) {
            Some(h) if h.alive() => Some(h.tx.clone()),
            Some(_) => {
                self.conns.remove(server);
                None
            }
            None => None,
        }
    }

    /// The connection to `server`, started if needed.
    pub(crate) fn connection(
        &mut self,
        server: &str,
        nick: Option<&str>,
    ) -> Result<mpsc::Sender<Request>, BridgeError> {
        if let Some(tx) = self.running(server) {
            return Ok(tx);
        }
        let settings = self.conn_settings(server)?;
        let slot = self
            .shared
            .limits
            .acquire(server)
            .map_err(|e| BridgeError::new(ErrorKind::ResourceConstraint, e))?;
        let closing = Arc::new(AtomicBool::new(false));
        let config = &self.shared.config;
        let nick = nick
            .map(str::to_owned)
            .or_else(|| self.defaults.nick.clone())
            .unwrap_or_else(|| self.default_nick());
        let env = ConnEnv {
            addresses: self.shared.addresses.clone(),
            traits: self.shared.traits.clone(),
            idle_timeout: secs(config.idle_timeout),
            ping_interval: secs(config.ping_interval),
            version: self.shared.version.clone(),
            down: self.down.clone(),
            user: self.user.as_str().to_owned(),
            closing: closing.clone(),
            members: self.shared.members.clone(),
        };
        let now = Instant::now();
        let mut conn = Conn::new(settings, env, &nick, now);
        for nick in self.settings().contacts(server).unwrap_or_default() {
            conn.on_request(Request::Monitor { nick, add: true }, now);
        }
        if let Some(a) = &self.away {
            conn.on_request(Request::Away(Some(a.clone())), now);
        }
        let denv = DriverEnv {
            tls: self.shared.tls.clone(),
            bind: config.outgoing_bind,
            connect_timeout: secs(config.connect_timeout),
            reconnect_max: secs(config.reconnect_max_delay.max(1)),
            webirc_password: config.webirc_password.clone(),
            user_host: self
                .user
                .as_str()
                .rsplit('@')
                .next()
                .unwrap_or("localhost")
                .to_owned(),
            identd: self
                .shared
                .identd
                .clone()
                .map(|r| (r, crate::identd::ident_of(self.user.as_str()))),
            slot,
            hosts: self.shared.hosts.clone(),
            resume: Some(ResumeLog::new(self.store.clone(), server)),
        };
        let (tx, rx) = mpsc::channel(REQUEST_BUFFER);
        let run = driver::run(conn, rx, self.events.clone(), denv);
        let (spawner, ended) = (self.spawner.clone(), self.ended.clone());
        // A combinator, not an async block: a block would keep the
        // unstarted driver future next to the running one in its state
        // (the task cell twice the driver's size, measured).
        let task = tokio::spawn(AssertUnwindSafe(run).catch_unwind().map(move |outcome| {
            let Err(panic) = outcome else {
                return;
            };
            if ended.load(Ordering::Relaxed) {
                tracing::error!(
                    "an IRC connection failed after its session ended: {}",
                    ferry_bridge::network::panic_message(panic.as_ref())
                );
            } else {
                // The session's failure, as if one of its tasks panicked.
                spawner.spawn("irc-connection", async move {
                    std::panic::resume_unwind(panic);
                });
            }
        }));
        self.conns.insert(
            server.to_owned(),
            ConnHandle {
                tx: tx.clone(),
                task,
                closing,
            },
        );
        Ok(tx)
    }

    /// The connection to `server`, started if needed once the operator's
    /// host policy allows what it would connect to (the connection checks
    /// again the addresses it connects to; this gives the user a clear
    /// error for the request that started it).
    pub(crate) async fn open(
        &mut self,
        server: &str,
        nick: Option<&str>,
    ) -> Result<mpsc::Sender<Request>, BridgeError> {
        // A connection that is quitting (idle a moment ago, when the user
        // left the last room) would drop the request: it ends first (its
        // nickname is free again), then a new one opens.
        if self.conns.get(server).is_some_and(ConnHandle::closing)
            && let Some(old) = self.conns.remove(server)
        {
            let _ = tokio::time::timeout(Duration::from_secs(3), old.task).await;
        }
        if self.running(server).is_none() {
            let settings = self.conn_settings(server)?;
            let host = settings
                .address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = settings.ports.first().map_or(0, |(p, _)| *p);
            let timeout = secs(self.shared.config.connect_timeout);
            // Name errors and the rest are reported by the connection.
            if let Ok(Err(refused @ (HostRefused::Denied { .. } | HostRefused::Internal { .. }))) =
                tokio::time::timeout(timeout, self.shared.hosts.check(&host, port)).await
            {
                let msg = crate::conn::capitalized(&refused.to_string());
                tracing::info!(user = %self.user, %server, "IRC connection refused: {msg}");
                return Err(BridgeError::new(ErrorKind::NotAllowed, msg));
            }
        }
        self.connection(server, nick)
    }

    /// Sends a request and waits for its answer.
    async fn ask(
        &mut self,
        server: &str,
        start: Option<Option<&str>>,
        make: impl FnOnce(oneshot::Sender<Result<Outcome, BridgeError>>) -> Request,
    ) -> Result<Outcome, BridgeError> {
        let mut tx = match start {
            Some(nick) => self.open(server, nick).await?,
            None => self.running(server).ok_or_else(|| unavailable(server))?,
        };
        let (reply, wait) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| unavailable(server))?;
        wait.await.map_err(|_| unavailable(server))?
    }

    /// Sends a request that needs no answer to a running connection.
    async fn tell(&mut self, server: &str, req: Request) {
        if let Some(mut tx) = self.running(server) {
            let _ = tx.send(req).await;
        }
    }

    fn history_policy(&self, server: &str, room: &RoomId) -> (HistoryPolicy, bool) {
        let s = self.settings();
        let global = s.global().unwrap_or_default();
        let server_opts = s.server(server).unwrap_or_default();
        let chan = s.channel(room.as_str()).unwrap_or_default();
        let config = &self.shared.config;
        let record = chan
            .record_history
            .or(global.record_history)
            .unwrap_or(config.record_history);
        let on_join = server_opts
            .max_history_length
            .or(global.max_history_length)
            .unwrap_or(config.max_history_length);
        let persistent = chan
            .persistent
            .or(global.persistent)
            .unwrap_or(config.persistent_by_default);
        (HistoryPolicy { record, on_join }, persistent)
    }

    /// Applies changed channel settings to a joined channel.
    pub(crate) async fn channel_settings_changed(&mut self, room: &RoomId) {
        let Some((chan, server)) = split_id(room.as_str()) else {
            return;
        };
        let (history, persistent) = self.history_policy(server, room);
        let (chan, server) = (chan.to_owned(), server.to_owned());
        self.tell(
            &server,
            Request::ChannelSettings {
                channel: chan,
                persistent,
                history,
            },
        )
        .await;
    }

    /// Applies changed server settings to a running connection.
    pub(crate) async fn server_settings_changed(&mut self, server: &str) {
        if let Ok(s) = self.conn_settings(server) {
            self.tell(server, Request::Settings(Box::new(s))).await;
        }
    }

    /// get-irc-connection-info of one server.
    pub(crate) async fn conn_info(&mut self, server: &str) -> Option<ConnInfo> {
        let mut tx = self.running(server)?;
        let (reply, wait) = oneshot::channel();
        tx.send(Request::Info { reply }).await.ok()?;
        wait.await.ok()
    }

    /// Servers with a running connection.
    pub(crate) fn connected_servers(&mut self) -> Vec<String> {
        self.conns.retain(|_, h| h.alive());
        let mut v: Vec<String> = self.conns.keys().cloned().collect();
        v.sort();
        v
    }

    /// Disconnects from a server with a QUIT message and waits (a little)
    /// for the connection to end.
    pub(crate) async fn disconnect(&mut self, server: &str, message: Option<String>) {
        let Some(mut tx) = self.running(server) else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if tx
            .send(Request::Quit {
                message,
                done: Some(done),
                leave_rooms: true,
            })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        }
        if let Some(h) = self.conns.remove(server) {
            let _ = tokio::time::timeout(Duration::from_secs(1), h.task).await;
        }
    }

    fn server_of_room(room: &RoomId) -> Result<(String, String), BridgeError> {
        split_id(room.as_str())
            .map(|(c, s)| (c.to_owned(), s.to_owned()))
            .ok_or_else(|| BridgeError::bad_request(format!("{room} is not an IRC channel")))
    }

    /// Server and wire target of a conversation.
    fn target_of(&self, addr: &Address) -> Result<(String, Target), BridgeError> {
        match addr {
            Address::Room(room) => {
                let (chan, server) = Self::server_of_room(room)?;
                Ok((server, Target::Channel(chan)))
            }
            Address::Occupant { room, nick } => {
                let (_, server) = Self::server_of_room(room)?;
                Ok((
                    server,
                    Target::Nick {
                        nick: nick.clone(),
                        room: Some(room.clone()),
                    },
                ))
            }
            Address::Contact(c) => {
                let (nick, server) = split_id(c.as_str())
                    .ok_or_else(|| BridgeError::bad_request(format!("{c} is not an IRC user")))?;
                Ok((
                    server.to_owned(),
                    Target::Nick {
                        nick: nick.to_owned(),
                        room: None,
                    },
                ))
            }
            Address::Service(s) => Ok((s.as_str().to_owned(), Target::Server)),
        }
    }

    /// The nickname an address stands for (invitee, affiliation target).
    fn nick_of(addr: &Address) -> Result<String, BridgeError> {
        match addr {
            Address::Occupant { nick, .. } => Ok(nick.clone()),
            Address::Contact(c) => split_id(c.as_str())
                .map(|(n, _)| n.to_owned())
                .ok_or_else(|| BridgeError::bad_request(format!("{c} is not an IRC user"))),
            other => Err(BridgeError::bad_request(format!(
                "{other} is not an IRC user"
            ))),
        }
    }

    async fn send(&mut self, mut msg: OutgoingMessage) -> Result<Outcome, BridgeError> {
        for a in &msg.attachments {
            if let ferry_bridge::AttachmentSource::Url(url) = &a.source
                && !msg.body.contains(url.as_str())
            {
                if !msg.body.is_empty() {
                    msg.body.push('\n');
                }
                msg.body.push_str(url);
                msg.rich = None;
            }
        }
        let (server, to) = self.target_of(&msg.to)?;
        let start = match &to {
            // Messages to a channel need it joined; the rest opens the
            // connection when needed.
            Target::Channel(_) => None,
            _ => Some(None),
        };
        if matches!(to, Target::Channel(_)) && self.running(&server).is_none() {
            let chan = match &to {
                Target::Channel(c) => c.clone(),
                _ => String::new(),
            };
            return Err(BridgeError::new(
                ErrorKind::NotAllowed,
                format!("You are not in {chan} on {server}"),
            ));
        }
        self.ask(&server, start, |reply| Request::Send {
            to,
            msg: Box::new(msg),
            reply,
        })
        .await
    }
}

#[async_trait::async_trait]
impl Session for IrcSession {
    async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        match action {
            Action::SendMessage(msg) => self.send(msg).await,
            Action::Edit { message, .. } => self.send(message).await,
            Action::Retract {
                chat,
                target,
                moderate,
            } => {
                let (server, to) = self.target_of(&chat)?;
                let reason = moderate.flatten();
                self.ask(&server, None, |reply| Request::Redact {
                    to,
                    target,
                    reason,
                    reply,
                })
                .await
            }
            Action::React {
                chat,
                target,
                emojis,
            } => {
                let (server, to) = self.target_of(&chat)?;
                self.ask(&server, None, |reply| Request::React {
                    to,
                    target,
                    emojis,
                    reply,
                })
                .await
            }
            Action::ChatState { chat, state } => {
                if let Ok((server, to)) = self.target_of(&chat) {
                    self.tell(&server, Request::Typing { to, state }).await;
                }
                Ok(Outcome::Done)
            }
            Action::Displayed { .. } => Ok(Outcome::Done),
            Action::JoinRoom {
                room,
                nick,
                password,
            } => {
                let (chan, server) = Self::server_of_room(&room)?;
                let (history, persistent) = self.history_policy(&server, &room);
                let req = Request::Join {
                    channel: chan,
                    room: room.clone(),
                    nick: nick.clone(),
                    key: password.filter(|p| !p.is_empty()),
                    history,
                    persistent,
                };
                let sent = match self.open(&server, Some(&nick)).await {
                    Ok(mut tx) => tx.send(req).await.map_err(|_| unavailable(&server)),
                    Err(e) => Err(e),
                };
                if let Err(error) = sent {
                    let _ = self
                        .events
                        .send(Event::RoomJoinFailed { room, error })
                        .await;
                }
                Ok(Outcome::Done)
            }
            Action::LeaveRoom { room, reason } => {
                let (chan, server) = Self::server_of_room(&room)?;
                self.tell(
                    &server,
                    Request::Leave {
                        channel: chan,
                        reason,
                    },
                )
                .await;
                Ok(Outcome::Done)
            }
            Action::SetSubject { room, subject } => {
                let (chan, server) = Self::server_of_room(&room)?;
                self.ask(&server, None, |reply| Request::Topic {
                    channel: chan,
                    topic: subject,
                    reply,
                })
                .await
            }
            Action::ChangeNick { room, nick } => {
                let (_, server) = Self::server_of_room(&room)?;
                self.ask(&server, None, |reply| Request::Nick { nick, reply })
                    .await
            }
            Action::Kick { room, nick, reason } => {
                let (chan, server) = Self::server_of_room(&room)?;
                self.ask(&server, None, |reply| Request::Kick {
                    channel: chan,
                    nick,
                    reason,
                    reply,
                })
                .await
            }
            Action::SetRole {
                room,
                nick,
                role,
                reason,
            } => {
                let (chan, server) = Self::server_of_room(&room)?;
                self.ask(&server, None, |reply| Request::Role {
                    channel: chan,
                    nick,
                    role,
                    reason,
                    reply,
                })
                .await
            }
            Action::SetAffiliation {
                room,
                target,
                affiliation,
                reason,
            } => {
                let (chan, server) = Self::server_of_room(&room)?;
                let nick = Self::nick_of(&target)?;
                self.ask(&server, None, |reply| Request::Affiliation {
                    channel: chan,
                    nick,
                    affiliation,
                    reason,
                    reply,
                })
                .await
            }
            Action::Invite { room, invitee, .. } => {
                let (chan, server) = Self::server_of_room(&room)?;
                let nick = Self::nick_of(&invitee)?;
                self.ask(&server, None, |reply| Request::Invite {
                    channel: chan,
                    nick,
                    reply,
                })
                .await
            }
            Action::SetPresence(p) => {
                let away = away_text(&p);
                if away != self.away {
                    self.away = away.clone();
                    for server in self.connected_servers() {
                        self.tell(&server, Request::Away(away.clone())).await;
                    }
                }
                Ok(Outcome::Done)
            }
            Action::AddContact(c) | Action::RemoveContact(c) if split_id(c.as_str()).is_none() => {
                Err(BridgeError::bad_request(format!("{c} is not an IRC user")))
            }
            Action::AddContact(c) => {
                self.watch(c.as_str(), true).await?;
                Ok(Outcome::Done)
            }
            Action::RemoveContact(c) => {
                self.watch(c.as_str(), false).await?;
                Ok(Outcome::Done)
            }
            Action::FetchHistory {
                chat,
                before,
                limit,
            } => {
                let (server, to) = self.target_of(&chat)?;
                if self.running(&server).is_none() {
                    return Ok(Outcome::History(Vec::new()));
                }
                self.ask(&server, None, |reply| Request::History {
                    to,
                    before,
                    limit,
                    reply,
                })
                .await
            }
            Action::ListRooms { service } => {
                let server = match service {
                    Some(s) => s.into_string(),
                    None => match &self.shared.config.fixed_server {
                        Some(f) => f.to_ascii_lowercase(),
                        None => {
                            return Err(BridgeError::bad_request(
                                "List the channels of a server on irc.server@this gateway",
                            ));
                        }
                    },
                };
                self.ask(&server, Some(None), |reply| Request::List { reply })
                    .await
            }
            Action::QueryVersion(addr) => {
                let (server, to) = self.target_of(&addr)?;
                let Target::Nick { nick, .. } = to else {
                    return Ok(Outcome::Version {
                        name: "Ferry".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        os: None,
                    });
                };
                self.ask(&server, Some(None), |reply| Request::Ctcp {
                    nick,
                    query: CtcpQuery::Version,
                    reply,
                })
                .await
            }
            Action::Ping(addr) => {
                let (server, to) = self.target_of(&addr)?;
                match to {
                    Target::Nick { nick, .. } => {
                        self.ask(&server, Some(None), |reply| Request::Ctcp {
                            nick,
                            query: CtcpQuery::Ping,
                            reply,
                        })
                        .await
                    }
                    _ => Ok(Outcome::Done),
                }
            }
            Action::Command(call) => crate::commands::run(self, call).await,
            Action::PreferencesChanged(_) => Ok(Outcome::Done),
            // Not declared (Feature::Groups): the core never sends it.
            Action::OpenGroup { .. } => Err(BridgeError::unsupported(
                "IRC has no group conversations: join a channel",
            )),
        }
    }

    async fn close(&mut self, reason: CloseReason) {
        self.ended.store(true, Ordering::Relaxed);
        if matches!(
            reason,
            CloseReason::Unregistered | CloseReason::Disconnected(_) | CloseReason::Idle
        ) {
            resume::clear_all(self.store.as_ref());
        }
        let message = match &reason {
            CloseReason::Disconnected(Some(m)) => Some(m.clone()),
            other => Some(other.to_string()),
        };
        let servers = self.connected_servers();
        let mut waits = Vec::new();
        for server in servers {
            if let Some(mut tx) = self.running(&server) {
                let (done, wait) = oneshot::channel();
                if tx
                    .send(Request::Quit {
                        message: message.clone(),
                        done: Some(done),
                        leave_rooms: false,
                    })
                    .await
                    .is_ok()
                {
                    waits.push(wait);
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), futures_join(waits)).await;
        for (_, h) in self.conns.drain() {
            let _ = tokio::time::timeout(Duration::from_millis(500), h.task).await;
        }
    }
}

impl Drop for IrcSession {
    fn drop(&mut self) {
        self.ended.store(true, Ordering::Relaxed);
    }
}

/// Requests a session may queue for its connection before it waits (the
/// channel allocates per request, nothing ahead).
const REQUEST_BUFFER: usize = 256;

async fn futures_join(waits: Vec<oneshot::Receiver<()>>) {
    for w in waits {
        let _ = w.await;
    }
}

impl IrcSession {
    async fn watch(&mut self, contact: &str, add: bool) -> Result<(), BridgeError> {
        let Some((nick, server)) = split_id(contact) else {
            return Err(BridgeError::bad_request(format!(
                "{contact} is not an IRC user"
            )));
        };
        let (nick, server) = (nick.to_owned(), server.to_owned());
        let mut list = self.settings().contacts(&server)?;
        let had = list.contains(&nick);
        if add && !had {
            list.push(nick.clone());
        } else if !add {
            list.retain(|n| *n != nick);
        }
        self.settings().set_contacts(&server, &list)?;
        self.tell(&server, Request::Monitor { nick, add }).await;
        Ok(())
    }
}

/// Checks registration values for real: connects to the server, logs in
/// with SASL, and quits. Used by [`ferry_bridge::Network::login`].
pub async fn probe_login(
    shared: &Arc<Shared>,
    user: &UserId,
    server: &str,
    defaults: &Defaults,
) -> Result<(), LoginError> {
    let settings =
        ConnSettings::resolve(&shared.config, user, server, defaults, &Default::default());
    let port = settings.ports.first().map_or(0, |(p, _)| *p);
    if let Ok(Err(refused @ (HostRefused::Denied { .. } | HostRefused::Internal { .. }))) =
        tokio::time::timeout(
            secs(shared.config.connect_timeout),
            shared.hosts.check(&settings.address, port),
        )
        .await
    {
        return Err(LoginError::InvalidField {
            field: "server".into(),
            message: crate::conn::capitalized(&refused.to_string()),
        });
    }
    let slot = shared
        .limits
        .acquire(server)
        .map_err(LoginError::Unreachable)?;
    let (sink, mut rx) = crate::sink_pair(user, 64);
    let env = ConnEnv {
        addresses: shared.addresses.clone(),
        traits: shared.traits.clone(),
        idle_timeout: Duration::from_secs(30),
        ping_interval: secs(shared.config.ping_interval),
        version: shared.version.clone(),
        down: Arc::new(Mutex::new(BTreeSet::new())),
        user: user.as_str().to_owned(),
        closing: Default::default(),
        members: shared.members.clone(),
    };
    let nick = defaults
        .nick
        .clone()
        .unwrap_or_else(|| "ferry-check".into());
    let conn = Conn::new(settings, env, &nick, Instant::now());
    let denv = DriverEnv {
        tls: shared.tls.clone(),
        bind: shared.config.outgoing_bind,
        connect_timeout: secs(shared.config.connect_timeout),
        reconnect_max: secs(1),
        webirc_password: shared.config.webirc_password.clone(),
        user_host: user
            .as_str()
            .rsplit('@')
            .next()
            .unwrap_or("localhost")
            .to_owned(),
        identd: None,
        slot,
        hosts: shared.hosts.clone(),
        resume: None,
    };
    let (mut tx, req_rx) = mpsc::channel(4);
    let task = tokio::spawn(driver::run(conn, req_rx, sink, denv));
    let mut result = Err(LoginError::Unreachable(format!("{server} did not answer")));
    let deadline = tokio::time::Instant::now() + secs(shared.config.connect_timeout * 3);
    while let Ok(Some(env)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let ferry_bridge::Envelope::Event { event, .. } = env else {
            continue;
        };
        match event {
            Event::ServicePresence { presence, .. } if presence.show != Show::Offline => {
                result = Ok(());
                break;
            }
            Event::Message(m) if m.body.contains("SASL") => {
                result = Err(LoginError::BadCredentials(m.body));
                break;
            }
            Event::Message(m)
                if m.body.starts_with("Could not connect")
                    || m.body.starts_with("This gateway does not connect") =>
            {
                result = Err(LoginError::Unreachable(m.body));
                break;
            }
            _ => {}
        }
    }
    let _ = tx
        .send(Request::Quit {
            message: Some("Checked the login".into()),
            done: None,
            leave_rooms: false,
        })
        .await;
    drop(tx);
    // Drain events until the probe connection is gone.
    let drain = async { while rx.recv().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(3), drain).await;
    task.abort();
    result
}
