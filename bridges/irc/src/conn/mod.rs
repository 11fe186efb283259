//! One user's connection to one IRC server, as a state machine without
//! I/O: it is fed the lines the server sends, the requests of the user's
//! session and the passing of time, and produces lines to send, events for
//! the core and answers to requests. [`crate::driver`] does the I/O around
//! it; tests drive it directly with lines.
//!
//! The submodules split the work: `registration` (CAP, SASL, ISUPPORT,
//! nick collisions), `incoming` (everything a server sends once
//! registered), `outgoing` (messages the user sends, cut to fit) and
//! `requests` (the session's requests).

mod caps;
pub mod channel;
mod incoming;
pub mod isupport;
pub mod members;
mod outgoing;
mod registration;
mod requests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use encoding_rs::Encoding;
use ferry_bridge::{
    Address, BridgeError, ConnectionState, ContactId, ErrorKind, Event, HistoryPolicy,
    IncomingMessage, MessageId, Outcome, Presence, RoomExit, RoomId, RoomListing, Sender,
    ServiceId,
};
use tokio::sync::oneshot;

use crate::address::IrcAddresses;
use crate::casemap::{ServerTraits, TraitsRegistry};
use crate::proto::{Line, Source};
use crate::settings::ConnSettings;
use crate::transport::ConnectError;

pub use channel::{ChanState, Channel, Member};
pub use isupport::Isupport;
pub use members::MemberTables;

/// How the session is answered.
pub type Reply = oneshot::Sender<Result<Outcome, BridgeError>>;

/// Who a message or command is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A channel (its name).
    Channel(String),
    /// A nickname, with the room the conversation was started from.
    Nick {
        /// The nickname.
        nick: String,
        /// The room, for a private message from inside a room.
        room: Option<RoomId>,
    },
    /// The server itself (raw commands).
    Server,
}

/// A CTCP query the user makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtcpQuery {
    /// Software version.
    Version,
    /// Round trip.
    Ping,
}

/// What the session asks of a connection.
#[derive(Debug)]
pub enum Request {
    /// Join a channel (or report it again if joined).
    Join {
        /// Channel name.
        channel: String,
        /// Room id.
        room: RoomId,
        /// Nickname asked for (used when not connected yet).
        nick: String,
        /// Key.
        key: Option<String>,
        /// Archive settings.
        history: HistoryPolicy,
        /// Stay joined without clients.
        persistent: bool,
    },
    /// The user's last client left a channel.
    Leave {
        /// Channel name.
        channel: String,
        /// Why.
        reason: Option<String>,
    },
    /// Change a joined channel's settings.
    ChannelSettings {
        /// Channel name.
        channel: String,
        /// Stay joined without clients.
        persistent: bool,
        /// Archive settings.
        history: HistoryPolicy,
    },
    /// Send a message.
    Send {
        /// To whom.
        to: Target,
        /// The message.
        msg: Box<ferry_bridge::OutgoingMessage>,
        /// Answer.
        reply: Reply,
    },
    /// Typing notification.
    Typing {
        /// To whom.
        to: Target,
        /// State.
        state: ferry_bridge::ChatState,
    },
    /// Set the user's reactions to a message.
    React {
        /// Where.
        to: Target,
        /// The message.
        target: MessageId,
        /// All reactions of the user to it.
        emojis: Vec<String>,
        /// Answer.
        reply: Reply,
    },
    /// Delete a message.
    Redact {
        /// Where.
        to: Target,
        /// The message.
        target: MessageId,
        /// Why.
        reason: Option<String>,
        /// Answer.
        reply: Reply,
    },
    /// Change a channel topic.
    Topic {
        /// Channel.
        channel: String,
        /// Text.
        topic: String,
        /// Answer.
        reply: Reply,
    },
    /// Change nickname.
    Nick {
        /// New nickname.
        nick: String,
        /// Answer.
        reply: Reply,
    },
    /// Kick someone.
    Kick {
        /// Channel.
        channel: String,
        /// Who.
        nick: String,
        /// Why.
        reason: Option<String>,
        /// Answer.
        reply: Reply,
    },
    /// Change someone's role.
    Role {
        /// Channel.
        channel: String,
        /// Who.
        nick: String,
        /// New role.
        role: ferry_bridge::Role,
        /// Why (for a kick).
        reason: Option<String>,
        /// Answer.
        reply: Reply,
    },
    /// Change someone's affiliation.
    Affiliation {
        /// Channel.
        channel: String,
        /// Who.
        nick: String,
        /// New affiliation.
        affiliation: ferry_bridge::Affiliation,
        /// Why (for a ban).
        reason: Option<String>,
        /// Answer.
        reply: Reply,
    },
    /// Invite someone.
    Invite {
        /// Channel.
        channel: String,
        /// Who.
        nick: String,
        /// Answer.
        reply: Reply,
    },
    /// Set or clear AWAY.
    Away(Option<String>),
    /// Ask a user's client something over CTCP.
    Ctcp {
        /// Who.
        nick: String,
        /// What.
        query: CtcpQuery,
        /// Answer.
        reply: Reply,
    },
    /// List channels.
    List {
        /// Answer.
        reply: Reply,
    },
    /// Fetch older messages (draft/chathistory).
    History {
        /// Conversation.
        to: Target,
        /// Before this message.
        before: Option<MessageId>,
        /// How many.
        limit: u32,
        /// Answer.
        reply: Reply,
    },
    /// Watch (or stop watching) a nickname's presence.
    Monitor {
        /// Nickname.
        nick: String,
        /// Add or remove.
        add: bool,
    },
    /// Describe the connection (get-irc-connection-info).
    Info {
        /// Answer.
        reply: oneshot::Sender<ConnInfo>,
    },
    /// Settings changed (applied from the next connection on, and the
    /// flood limit at once).
    Settings(Box<ConnSettings>),
    /// A private conversation was active at `at` (`wall` on the clock)
    /// before the gateway restarted: keep the connection as long as it
    /// would have stayed.
    Resume {
        /// When, on the monotonic clock.
        at: Instant,
        /// When, on the wall clock.
        wall: SystemTime,
    },
    /// Disconnect with a QUIT message.
    Quit {
        /// The message.
        message: Option<String>,
        /// Told when the connection is closed.
        done: Option<oneshot::Sender<()>>,
        /// The user asked for it (`disconnect-from-irc-server`): the rooms
        /// of this server are left for good once the connection is closed.
        /// (When the session itself closes, the core ends its rooms.)
        leave_rooms: bool,
    },
}

impl Request {
    /// Whether the user asked for something that needs the server now (a
    /// join, a message, a query): a connection waiting to reconnect tries
    /// at once instead of after its backoff.
    pub fn is_urgent(&self) -> bool {
        matches!(
            self,
            Request::Join { .. }
                | Request::Send { .. }
                | Request::React { .. }
                | Request::Redact { .. }
                | Request::Topic { .. }
                | Request::Nick { .. }
                | Request::Kick { .. }
                | Request::Role { .. }
                | Request::Affiliation { .. }
                | Request::Invite { .. }
                | Request::Ctcp { .. }
                | Request::List { .. }
                | Request::History { .. }
        )
    }
}

/// What `get-irc-connection-info` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// Connected and registered.
    pub connected: bool,
    /// Host and port.
    pub endpoint: Option<(String, u16)>,
    /// Over TLS.
    pub tls: bool,
    /// Since when.
    pub since: Option<SystemTime>,
    /// Our nickname.
    pub nick: String,
    /// Joined channels (with whether persistent).
    pub channels: Vec<(String, bool)>,
    /// Enabled IRCv3 capabilities.
    pub caps: Vec<String>,
    /// Status text (reconnecting …).
    pub status: Option<String>,
    /// SHA-256 of the server's TLS certificate.
    pub fingerprint: Option<String>,
}

/// How the connection went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Down {
    /// Lost; try again.
    Lost(String),
    /// Refused for good (SASL failure, bad nickname): do not retry.
    Fatal(String),
    /// We quit.
    Quit,
}

/// Facts shared by every connection of the gateway.
#[derive(Clone)]
pub struct ConnEnv {
    /// Address rules (ids of rooms and contacts).
    pub addresses: IrcAddresses,
    /// Where server traits are published.
    pub traits: TraitsRegistry,
    /// Seconds without a room and private messages before closing.
    pub idle_timeout: Duration,
    /// Ping after this much silence.
    pub ping_interval: Duration,
    /// The CTCP VERSION answer.
    pub version: String,
    /// Servers of this user that are down (for the gateway's presence).
    pub down: Arc<Mutex<BTreeSet<String>>>,
    /// The user's bare JID, for the operator's log.
    pub user: String,
    /// Set once the connection quits: the session opens a new one (after
    /// this one is gone) for what needs the server.
    pub closing: Arc<AtomicBool>,
    /// The channels' member tables, shared by every connection of the
    /// bridge.
    pub members: members::MemberTables,
}

/// A reply waiting for the server.
struct Pending {
    label: Option<String>,
    kind: PendingKind,
    reply: Option<Reply>,
    deadline: Instant,
}

#[derive(Debug)]
enum PendingKind {
    /// Anything without an error is success.
    Generic { channel: Option<String> },
    /// NICK.
    Nick { new: String },
    /// A CTCP query.
    Ctcp {
        nick: String,
        query: CtcpQuery,
        token: String,
    },
    /// LIST.
    List { rooms: Vec<RoomListing> },
    /// CHATHISTORY.
    History {
        target: String,
        msgs: Vec<IncomingMessage>,
    },
}

/// One of our messages waiting for its echo.
struct EchoWait {
    target: String,
    label: Option<String>,
    remaining: usize,
    reply: Option<Reply>,
    deadline: Instant,
}

/// An open BATCH.
#[derive(Debug)]
struct Batch {
    kind: String,
    params: Vec<String>,
    tags: Vec<(String, String)>,
    label: Option<String>,
    /// Lines of a draft/multiline batch: (text, concat-with-previous).
    lines: Vec<(String, bool)>,
    source: Option<Source>,
    command: String,
}

/// Users gone in a netsplit whose departure is not shown yet.
struct Split {
    nick: String,
    channels: Vec<String>,
    reason: String,
    deadline: Instant,
}

/// What a restarted gateway needs to restore a private conversation on
/// this server (see [`crate::resume`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeChange {
    /// A private conversation was active at `at`; our nickname was `nick`.
    Active {
        /// When.
        at: SystemTime,
        /// Our nickname then.
        nick: String,
    },
    /// Nothing to restore any more (idle, disconnected by the user,
    /// refused for good).
    Clear,
}

/// Connection phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No transport.
    Offline,
    /// Transport up, registering.
    Registering,
    /// Registered, MOTD done.
    Ready,
}

const MAX_DEFERRED: usize = 500;
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
const SPLIT_GRACE: Duration = Duration::from_secs(60);
const RECENT_MESSAGES: usize = 512;
/// Reconnections refused by the server in a row before giving up.
const MAX_REFUSALS: u32 = 3;
/// How often, at most, an ongoing private conversation is noted for
/// [`ResumeChange`] (each note is a write to the store).
const RESUME_NOTE_EVERY: Duration = Duration::from_secs(30);

/// The connection state machine.
pub struct Conn {
    /// Resolved settings.
    pub settings: ConnSettings,
    env: ConnEnv,
    service: ServiceId,
    fallback: &'static Encoding,
    out_encoding: Option<&'static Encoding>,
    phase: Phase,
    /// Current nickname.
    nick: String,
    base_nick: String,
    nick_attempts: u32,
    welcomed: bool,
    server_error: Option<String>,
    /// Reconnections the server refused in a row (an ERROR before 001:
    /// K-line, ban); at [`MAX_REFUSALS`] the connection gives up.
    refusals: u32,
    /// Why the rooms end when the user closes the connection.
    leave_rooms: Option<String>,
    me: Option<Source>,
    isupport: Isupport,
    caps: caps::Caps,
    caps_ls_done: bool,
    caps_outstanding: usize,
    cap_ended: bool,
    sasl_started: bool,
    channels: HashMap<String, Channel>,
    pending: Vec<Pending>,
    echoes: VecDeque<EchoWait>,
    batches: HashMap<String, Batch>,
    splits: Vec<Split>,
    label_seq: u64,
    away: Option<String>,
    motd: Vec<String>,
    motd_shown: bool,
    monitor: BTreeSet<String>,
    pm_routes: HashMap<String, Address>,
    /// The last messages' ids and authors (folded), oldest first.
    recent: VecDeque<(Arc<str>, Arc<str>)>,
    reactions: HashMap<(String, String), Vec<String>>,
    own_reactions: HashMap<String, Vec<String>>,
    typing_sent: HashMap<String, Instant>,
    last_activity: Instant,
    /// The last private message (PRIVMSG to or from a nick).
    last_private: Instant,
    last_read: Instant,
    ping_sent: Option<Instant>,
    ctcp_answered: Option<Instant>,
    registered_once: bool,
    connected_since: Option<SystemTime>,
    endpoint: Option<(String, u16, bool)>,
    fingerprint: Option<String>,
    status: Option<String>,
    deferred: Vec<Line>,
    out: Vec<Line>,
    events: Vec<Event>,
    finished: Option<Down>,
    lost: Option<String>,
    quitting: bool,
    quit_waiters: Vec<oneshot::Sender<()>>,
    /// Who KILLed us and why, until the connection drops.
    killed: Option<String>,
    /// The last private conversation noted: (when noted, its time, nick).
    noted: Option<(Instant, SystemTime, String)>,
    resume: Vec<ResumeChange>,
}

impl Conn {
    /// A connection for `user` to `settings.server`, not connected yet.
    pub fn new(settings: ConnSettings, env: ConnEnv, nick: &str, now: Instant) -> Self {
        let fallback =
            crate::proto::encoding_for(&settings.encoding_in).unwrap_or(encoding_rs::WINDOWS_1252);
        let out_encoding = settings
            .encoding_out
            .as_deref()
            .and_then(crate::proto::encoding_for);
        let nick = settings.nick.clone().unwrap_or_else(|| nick.to_owned());
        let env_idle = env.idle_timeout;
        Self {
            service: ServiceId::new(settings.server.clone()),
            settings,
            env,
            fallback,
            out_encoding,
            phase: Phase::Offline,
            base_nick: nick.clone(),
            nick,
            nick_attempts: 0,
            refusals: 0,
            leave_rooms: None,
            welcomed: false,
            server_error: None,
            me: None,
            isupport: Isupport::default(),
            caps: caps::Caps::default(),
            caps_ls_done: false,
            caps_outstanding: 0,
            cap_ended: false,
            sasl_started: false,
            channels: HashMap::new(),
            pending: Vec::new(),
            echoes: VecDeque::new(),
            batches: HashMap::new(),
            splits: Vec::new(),
            label_seq: 0,
            away: None,
            motd: Vec::new(),
            motd_shown: false,
            monitor: BTreeSet::new(),
            pm_routes: HashMap::new(),
            recent: VecDeque::new(),
            reactions: HashMap::new(),
            own_reactions: HashMap::new(),
            typing_sent: HashMap::new(),
            // No private conversation yet.
            last_activity: now.checked_sub(env_idle).unwrap_or(now),
            last_private: now.checked_sub(env_idle).unwrap_or(now),
            last_read: now,
            ping_sent: None,
            ctcp_answered: None,
            registered_once: false,
            connected_since: None,
            endpoint: None,
            fingerprint: None,
            status: None,
            deferred: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
            finished: None,
            lost: None,
            quitting: false,
            quit_waiters: Vec::new(),
            killed: None,
            noted: None,
            resume: Vec::new(),
        }
    }

    // ------------------------------------------------------------ outputs

    /// Lines to send, in order.
    pub fn take_lines(&mut self) -> Vec<Line> {
        std::mem::take(&mut self.out)
    }

    /// Events for the core, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Changes to what a restarted gateway should restore, in order.
    pub fn take_resume(&mut self) -> Vec<ResumeChange> {
        std::mem::take(&mut self.resume)
    }

    /// Set once the connection must end (and why).
    pub fn finished(&self) -> Option<&Down> {
        self.finished.as_ref()
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Current flood limit.
    pub fn throttle_limit(&self) -> i64 {
        self.settings.throttle_limit
    }

    /// The user's current nickname.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// Whether a QUIT was sent (the server should close the connection).
    pub fn quitting(&self) -> bool {
        self.quitting
    }

    /// Whether a capability is enabled.
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.enabled(cap)
    }

    /// Whether a reconnection is worth it: channels to be in, messages
    /// waiting, or a private conversation still active (a raw command or a
    /// channel list keeps a connection open for a while, but does not
    /// bring it back once it is gone).
    pub fn wants_connection(&self, now: Instant) -> bool {
        !self.quitting
            && (!self.channels.is_empty()
                || !self.deferred.is_empty()
                || !self.pending.is_empty()
                || now < self.last_private + self.env.idle_timeout)
    }

    /// Whether the connection has ever completed registration.
    pub fn registered_once(&self) -> bool {
        self.registered_once
    }

    /// A private conversation is going on (a message to or from a nick):
    /// the connection stays for `idle_timeout`, and a restarted gateway
    /// restores it within that time.
    pub(crate) fn private_activity(&mut self, now: Instant) {
        self.last_activity = now;
        self.last_private = now;
        let due = match &self.noted {
            None => true,
            Some((at, _, nick)) => {
                now.saturating_duration_since(*at) >= RESUME_NOTE_EVERY || *nick != self.nick
            }
        };
        if due {
            let wall = SystemTime::now();
            self.noted = Some((now, wall, self.nick.clone()));
            self.resume.push(ResumeChange::Active {
                at: wall,
                nick: self.nick.clone(),
            });
        }
    }

    /// Our nickname changed: a conversation to restore goes on under it.
    pub(crate) fn renote_nick(&mut self) {
        if let Some((_, wall, nick)) = &mut self.noted
            && *nick != self.nick
        {
            *nick = self.nick.clone();
            let at = *wall;
            self.resume.push(ResumeChange::Active {
                at,
                nick: self.nick.clone(),
            });
        }
    }

    /// A private conversation that was active at `at` (restored after a
    /// restart): the connection stays as long as it would have.
    pub(crate) fn resume_at(&mut self, at: Instant, wall: SystemTime) {
        if at > self.last_activity {
            self.last_activity = at;
        }
        if at > self.last_private {
            self.last_private = at;
        }
        self.noted = Some((at, wall, self.nick.clone()));
    }

    fn forget_resume(&mut self) {
        if self.noted.take().is_some() {
            self.resume.push(ResumeChange::Clear);
        }
    }

    /// One line of the operator's log about this connection.
    fn log_info(&self, what: &str, detail: &str) {
        tracing::info!(
            user = %self.env.user,
            server = %self.settings.server,
            "IRC connection {what}{}{detail}",
            if detail.is_empty() { "" } else { ": " }
        );
    }

    fn send(&mut self, line: Line) {
        self.out.push(line.with_encoding(self.out_encoding));
    }

    fn send_urgent(&mut self, line: Line) {
        self.out
            .push(line.urgent().with_encoding(self.out_encoding));
    }

    /// Sends now if registered, else once registered.
    fn send_when_ready(&mut self, line: Line) {
        if self.phase == Phase::Ready {
            self.send(line);
        } else if self.deferred.len() < MAX_DEFERRED {
            self.deferred.push(line);
        }
    }

    fn line(&mut self, command: &str, params: &[&str]) {
        match Line::new(command, params) {
            Ok(l) => self.send(l),
            Err(e) => tracing::warn!(command, error = %e, "dropped an invalid line"),
        }
    }

    fn line_urgent(&mut self, command: &str, params: &[&str]) {
        match Line::new(command, params) {
            Ok(l) => self.send_urgent(l),
            Err(e) => tracing::warn!(command, error = %e, "dropped an invalid line"),
        }
    }

    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    fn next_label(&mut self) -> Option<String> {
        if !self.has_cap("labeled-response") {
            return None;
        }
        self.label_seq += 1;
        Some(format!("f{}", self.label_seq))
    }

    // ----------------------------------------------------------- helpers

    fn fold(&self, s: &str) -> String {
        self.isupport.casemapping.fold(s)
    }

    fn is_me(&self, nick: &str) -> bool {
        self.isupport.casemapping.eq(nick, &self.nick)
    }

    fn contact(&self, nick: &str) -> ContactId {
        self.env.addresses.contact_id(&self.settings.server, nick)
    }

    fn service_message(&mut self, text: impl Into<String>) {
        let text = text.into();
        let rich = crate::format::parse(&text);
        let mut m = IncomingMessage::text(
            Address::Service(self.service.clone()),
            Sender::Service,
            rich.to_plain(),
        );
        if rich.is_styled() {
            m.rich = Some(rich);
        }
        self.emit(Event::Message(m));
    }

    fn room_notice(&mut self, room: RoomId, text: impl Into<String>) {
        let mut m = IncomingMessage::text(Address::Room(room), Sender::Service, text.into());
        m.kind = ferry_bridge::MessageKind::Notice;
        self.emit(Event::Message(m));
    }

    fn publish_traits(&self) {
        self.env.traits.set(
            &self.settings.server,
            ServerTraits {
                chantypes: self.isupport.chantypes.clone(),
                casemapping: self.isupport.casemapping,
            },
        );
    }

    /// Notes who wrote a message. Every connection in a channel receives
    /// the same ids and nicks: both are interned, so that a connection's
    /// list costs it two pointers per message.
    fn remember_message(&mut self, msgid: &str, nick: &str) {
        while self.recent.len() >= RECENT_MESSAGES {
            if let Some((old, _)) = self.recent.pop_front() {
                self.reactions.retain(|(m, _), _| **m != *old);
                self.own_reactions.remove(&*old);
            }
        }
        let author = crate::intern::intern(&self.fold(nick));
        self.recent
            .push_back((crate::intern::intern(msgid), author));
    }

    fn author_of(&self, msgid: &str) -> Option<&str> {
        self.recent
            .iter()
            .rev()
            .find(|(m, _)| &**m == msgid)
            .map(|(_, n)| &**n)
    }

    fn set_down(&mut self, down: bool) {
        let (was_empty, now_empty) = match self.env.down.lock() {
            Ok(mut set) => {
                let before = set.is_empty();
                if down {
                    set.insert(self.settings.server.clone());
                } else {
                    set.remove(&self.settings.server);
                }
                (before, set.is_empty())
            }
            Err(_) => return,
        };
        if down && was_empty {
            self.emit(Event::Connection(ConnectionState::Reconnecting(format!(
                "Lost the connection to {}",
                self.settings.server
            ))));
        } else if !down && !was_empty && now_empty {
            self.emit(Event::Connection(ConnectionState::Connected(None)));
        }
    }

    // ------------------------------------------------------- transport

    /// The transport is up: start registration.
    pub fn on_connected(
        &mut self,
        host: &str,
        port: u16,
        tls: bool,
        webirc: Option<(String, String, String)>,
        now: Instant,
    ) {
        self.phase = Phase::Registering;
        self.endpoint = Some((host.to_owned(), port, tls));
        self.last_read = now;
        self.ping_sent = None;
        self.caps.clear();
        self.caps_ls_done = false;
        self.caps_outstanding = 0;
        self.cap_ended = false;
        self.sasl_started = false;
        self.batches.clear();
        self.nick_attempts = 0;
        self.welcomed = false;
        self.server_error = None;
        self.nick = self.base_nick.clone();
        if let Some((password, hostname, ip)) = webirc {
            self.line_urgent("WEBIRC", &[&password, "ferry", &hostname, &ip]);
        }
        self.line_urgent("CAP", &["LS", "302"]);
        if let Some(pass) = self.settings.pass.clone() {
            self.line_urgent("PASS", &[&pass]);
        }
        let nick = self.nick.clone();
        self.line_urgent("NICK", &[&nick]);
        let (user, real) = (
            self.settings.username.clone(),
            self.settings.realname.clone(),
        );
        let real = if real.trim().is_empty() {
            nick.clone()
        } else {
            real.replace(['\r', '\n', '\0'], " ")
        };
        self.line_urgent("USER", &[&user, "0", "*", &real]);
    }

    /// A connection attempt failed (no transport at all).
    pub fn on_connect_failed(&mut self, error: &ConnectError, now: Instant) {
        let _ = now;
        if let ConnectError::Refused(refused) = error {
            // The operator's policy: no retry, whatever was connected before.
            let msg = capitalized(&refused.to_string());
            self.log_info("refused", &msg);
            self.fail_everything(ErrorKind::NotAllowed, &msg);
            self.service_message(msg.clone());
            self.set_down(false);
            self.forget_resume();
            self.finished = Some(Down::Fatal(msg));
        } else if !self.registered_once {
            let msg = format!("Could not connect to {}: {error}", self.settings.server);
            self.log_info("refused", &error.to_string());
            self.fail_everything(ErrorKind::Unavailable, &msg);
            self.service_message(msg.clone());
            self.forget_resume();
            self.finished = Some(Down::Fatal(msg));
        } else {
            self.log_info("failed again, retrying", &error.to_string());
            self.status = Some(format!("Reconnecting: {error}"));
        }
    }

    /// The transport went down.
    pub fn on_disconnected(&mut self, reason: &str, now: Instant) {
        let was_ready = self.phase == Phase::Ready;
        self.phase = Phase::Offline;
        self.connected_since = None;
        self.batches.clear();
        self.caps.disable_all();
        if self.quitting {
            self.finish(Down::Quit);
            return;
        }
        let refused = !self.welcomed && self.server_error.is_some();
        let reason = match (self.killed.take(), self.server_error.take()) {
            (Some(kill), _) => kill,
            (None, Some(error)) => error,
            (None, None) => reason.to_owned(),
        };
        let reason_text = format!("Connection to {} lost: {reason}", self.settings.server);
        if refused && self.registered_once {
            self.refusals += 1;
        }
        // Requests in flight cannot be answered any more.
        for p in self.pending.drain(..) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(BridgeError::unavailable(reason_text.clone())));
            }
        }
        for e in self.echoes.drain(..) {
            if let Some(r) = e.reply {
                let _ = r.send(Err(BridgeError::unavailable(reason_text.clone())));
            }
        }
        let mut left = Vec::new();
        for ch in self.channels.values_mut() {
            if ch.synced && ch.xmpp {
                left.push(ch.room.clone());
            }
            ch.state = ChanState::Wanted;
            ch.synced = false;
            ch.members.clear();
            ch.names = None;
        }
        for room in left {
            self.emit(Event::RoomLeft {
                room,
                exit: RoomExit::Disconnected(reason_text.clone()),
            });
        }
        self.emit(Event::ServicePresence {
            service: self.service.clone(),
            presence: Presence::offline().with_status(reason_text.clone()),
        });
        if self.registered_once && !self.wants_connection(now) {
            // No room, no conversation going on (a KILL of an unused
            // connection): nothing to come back for.
            self.log_info("dropped, not reconnecting (nothing uses it)", &reason);
            self.forget_resume();
            self.set_down(false);
            for w in self.quit_waiters.drain(..) {
                let _ = w.send(());
            }
            self.finished = Some(Down::Lost(reason));
            return;
        }
        if !self.registered_once {
            // Never got in: tell whoever waits, and stop.
            self.log_info("refused", &reason);
            self.fail_everything(ErrorKind::Unavailable, &reason_text);
            self.forget_resume();
            if self.finished.is_none() {
                self.finished = Some(Down::Fatal(reason_text));
            }
            return;
        }
        if self.refusals >= MAX_REFUSALS {
            // The server keeps refusing us (K-line, ban): give up, and the
            // rooms waiting for the connection are told they cannot be
            // joined again.
            let msg = format!(
                "{} refused the connection {} times in a row, giving up: {reason}",
                self.settings.server, self.refusals
            );
            self.log_info("refused", &msg);
            self.fail_everything(ErrorKind::Unavailable, &msg);
            self.service_message(msg.clone());
            self.set_down(false);
            self.forget_resume();
            self.finished = Some(Down::Fatal(msg));
            return;
        }
        if refused {
            self.log_info("refused, retrying", &reason);
        } else {
            self.log_info("dropped, reconnecting", &reason);
        }
        if was_ready || self.finished.is_none() {
            self.status = Some(format!("Reconnecting ({reason})"));
            self.set_down(true);
        }
    }

    fn fail_everything(&mut self, kind: ErrorKind, msg: &str) {
        let rooms: Vec<RoomId> = self
            .channels
            .values()
            .filter(|c| !c.synced)
            .map(|c| c.room.clone())
            .collect();
        for room in rooms {
            self.emit(Event::RoomJoinFailed {
                room,
                error: BridgeError::new(kind, msg),
            });
        }
        self.channels.retain(|_, c| c.synced);
        for p in self.pending.drain(..) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(BridgeError::new(kind, msg)));
            }
        }
        for e in self.echoes.drain(..) {
            if let Some(r) = e.reply {
                let _ = r.send(Err(BridgeError::new(kind, msg)));
            }
        }
        self.deferred.clear();
    }

    fn finish(&mut self, down: Down) {
        if self.finished.is_some() {
            return;
        }
        if let Some(why) = self.leave_rooms.take() {
            let channels: Vec<Channel> = self.channels.drain().map(|(_, c)| c).collect();
            for ch in channels.into_iter().filter(|c| c.xmpp) {
                // In the room: the user left it. Waiting for the connection
                // (or joining): the join cannot happen any more.
                if ch.synced {
                    self.emit(Event::RoomLeft {
                        room: ch.room,
                        exit: RoomExit::Left(Some(why.clone())),
                    });
                } else {
                    self.emit(Event::RoomJoinFailed {
                        room: ch.room,
                        error: BridgeError::unavailable(why.clone()),
                    });
                }
            }
        }
        for w in self.quit_waiters.drain(..) {
            let _ = w.send(());
        }
        self.set_down(false);
        if self.registered_once {
            self.emit(Event::ServicePresence {
                service: self.service.clone(),
                presence: Presence::offline(),
            });
        }
        self.finished = Some(down);
    }

    /// Called when the connection is closed for good (the driver exits).
    pub fn on_closed(&mut self) {
        if self.finished.is_none() {
            self.finish(Down::Quit);
        }
        for w in self.quit_waiters.drain(..) {
            let _ = w.send(());
        }
        self.set_down(false);
    }

    /// A fatal registration error: stop for good.
    fn fatal(&mut self, kind: ErrorKind, msg: String) {
        self.log_info("refused", &msg);
        self.forget_resume();
        self.fail_everything(kind, &msg);
        self.service_message(msg.clone());
        self.line_urgent("QUIT", &[&msg]);
        self.quitting = true;
        self.env.closing.store(true, Ordering::Relaxed);
        self.finished = Some(Down::Fatal(msg));
    }

    // ------------------------------------------------------------ time

    /// The next instant [`Conn::on_tick`] has something to do.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Instant| {
            d = Some(d.map_or(t, |x: Instant| x.min(t)));
        };
        for p in &self.pending {
            consider(p.deadline);
        }
        for e in &self.echoes {
            consider(e.deadline);
        }
        for s in &self.splits {
            consider(s.deadline);
        }
        if self.phase != Phase::Offline {
            match self.ping_sent {
                Some(t) => consider(t + self.env.ping_interval),
                None => consider(self.last_read + self.env.ping_interval),
            }
        }
        if self.phase == Phase::Ready && self.idle() && !self.quitting {
            consider((self.last_activity + self.env.idle_timeout).max(now));
        }
        d
    }

    fn idle(&self) -> bool {
        self.channels.is_empty()
            && self.pending.is_empty()
            && self.echoes.is_empty()
            && self.deferred.is_empty()
    }

    /// Time passed: timeouts, keepalive, idle close, delayed netsplits.
    pub fn on_tick(&mut self, now: Instant) {
        // Replies that never came.
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline <= now {
                let p = self.pending.remove(i);
                self.timeout_pending(p);
            } else {
                i += 1;
            }
        }
        while let Some(e) = self.echoes.front() {
            if e.deadline > now {
                break;
            }
            if let Some(e) = self.echoes.pop_front()
                && let Some(r) = e.reply
            {
                let _ = r.send(Ok(Outcome::sent_none()));
            }
        }
        // Netsplit departures nobody came back from.
        let (due, keep): (Vec<Split>, Vec<Split>) = std::mem::take(&mut self.splits)
            .into_iter()
            .partition(|s| s.deadline <= now);
        self.splits = keep;
        for s in due {
            for ch in s.channels {
                if let Some(room) = self.channels.get(&ch).map(|c| c.room.clone()) {
                    self.emit(Event::OccupantLeft {
                        room,
                        nick: s.nick.clone(),
                        exit: RoomExit::Quit(Some(s.reason.clone())),
                    });
                }
            }
        }
        if self.phase != Phase::Offline {
            match self.ping_sent {
                Some(t) if now >= t + self.env.ping_interval => {
                    // The driver sees `finished`/`lost` and reconnects.
                    self.lost = Some("ping timeout".into());
                }
                None if now >= self.last_read + self.env.ping_interval => {
                    self.ping_sent = Some(now);
                    let token = self.settings.server.clone();
                    self.line_urgent("PING", &[&token]);
                }
                _ => {}
            }
        }
        if self.phase == Phase::Ready
            && self.idle()
            && now >= self.last_activity + self.env.idle_timeout
            && !self.quitting
        {
            self.log_info("closed", "idle (no room, no conversation)");
            self.forget_resume();
            self.quit(Some("Idle".into()), false);
        }
    }

    fn timeout_pending(&mut self, p: Pending) {
        let Some(reply) = p.reply else { return };
        let result = match p.kind {
            PendingKind::Generic { .. } | PendingKind::Nick { .. } => Ok(Outcome::Done),
            PendingKind::Ctcp { nick, .. } => Err(BridgeError::new(
                ErrorKind::Timeout,
                format!("{nick} did not answer"),
            )),
            PendingKind::List { rooms } => Ok(Outcome::Rooms(rooms)),
            PendingKind::History { mut msgs, .. } => {
                msgs.reverse();
                Ok(Outcome::History(msgs))
            }
        };
        let _ = reply.send(result);
    }

    fn quit(&mut self, message: Option<String>, leave_rooms: bool) {
        if leave_rooms {
            // The user closed it: nothing to restore.
            self.forget_resume();
        }
        if leave_rooms && self.leave_rooms.is_none() {
            self.leave_rooms = Some(format!(
                "Disconnected from {}{}",
                self.settings.server,
                message
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
        if self.quitting {
            return;
        }
        self.quitting = true;
        self.env.closing.store(true, Ordering::Relaxed);
        let msg = message.unwrap_or_else(|| "Leaving".into());
        let msg = msg.replace(['\r', '\n', '\0'], " ");
        if self.phase == Phase::Offline {
            self.finish(Down::Quit);
        } else if self.phase == Phase::Ready {
            // Behind the lines already queued (the user's last messages,
            // when a session closes to move to another instance); the
            // driver closes the connection after a grace period anyway.
            self.line("QUIT", &[&msg]);
        } else {
            self.line_urgent("QUIT", &[&msg]);
        }
    }

    /// Keeps lines that could not be written for the next connection.
    pub fn defer(&mut self, lines: Vec<Line>) {
        let room = MAX_DEFERRED.saturating_sub(self.deferred.len());
        let mut lines: Vec<Line> = lines.into_iter().take(room).collect();
        lines.append(&mut self.deferred);
        self.deferred = lines;
    }

    /// Records the server certificate's fingerprint.
    pub fn set_fingerprint(&mut self, fp: String) {
        self.fingerprint = Some(fp);
    }

    /// Whether the connection should be dropped (ping timeout).
    pub fn take_lost(&mut self) -> Option<String> {
        self.lost.take()
    }
}

/// `text` with a capital first letter (an error text used as a sentence).
pub(crate) fn capitalized(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
