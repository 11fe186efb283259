//! The network's shared state: accounts, connected sessions, rooms, the
//! messages it has carried, and the queues that carry events to sessions.
//!
//! Every session owns an unbounded queue drained by a pump task (started
//! with the session's spawner) into its event sink, so delivering something
//! to another user never waits on the core and events of one session keep
//! their order. The state sits behind one `std` mutex that is never held
//! across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_bridge::{
    Affiliation, Capabilities, ContactId, Event, MessageId, Occupant, Presence, Role, RoomId,
    Subject,
};
use tokio::sync::mpsc;

use crate::echo::ECHO;

/// What travels through a session's queue to its pump.
#[derive(Debug)]
pub(crate) enum Queued {
    /// Report an event.
    Event(Event),
    /// Report a message; once the sink took it, tell the sender's session
    /// (when the network confirms delivery).
    Message {
        event: Event,
        receipt: Option<Box<Receipt>>,
    },
    /// Wait before reporting what follows (the bot's answer delay).
    Sleep(Duration),
}

/// Where to report that a message was delivered, and what.
#[derive(Debug)]
pub(crate) struct Receipt {
    /// The sender's queue.
    pub tx: mpsc::UnboundedSender<Queued>,
    /// The `Delivered` event.
    pub event: Event,
}

/// A connected session, as the network sees it.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    /// The account it is logged in as.
    pub account: String,
    /// Its queue.
    pub tx: mpsc::UnboundedSender<Queued>,
}

/// Where a message the network carried was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Chat {
    /// Between two parties (accounts or `echo`), sorted.
    Direct(String, String),
    /// In a room.
    Room(RoomId),
    /// A private message inside a room, between two nicknames' accounts.
    Private(RoomId, String, String),
}

impl Chat {
    pub fn direct(a: &str, b: &str) -> Chat {
        if a <= b {
            Chat::Direct(a.to_owned(), b.to_owned())
        } else {
            Chat::Direct(b.to_owned(), a.to_owned())
        }
    }

    pub fn private(room: &RoomId, a: &str, b: &str) -> Chat {
        if a <= b {
            Chat::Private(room.clone(), a.to_owned(), b.to_owned())
        } else {
            Chat::Private(room.clone(), b.to_owned(), a.to_owned())
        }
    }
}

/// A message the network carried.
#[derive(Clone, Debug)]
pub(crate) struct Carried {
    /// Its author (an account, or `echo`).
    pub author: String,
    /// Where.
    pub chat: Chat,
    /// Its text (for reply quotes).
    pub body: String,
}

/// A member of a room (the bot is not listed: it is in every room).
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub session: u64,
    pub account: String,
    pub nick: String,
    pub role: Role,
    pub affiliation: Affiliation,
    pub presence: Presence,
}

impl Member {
    pub fn occupant(&self, is_self: bool) -> Occupant {
        Occupant {
            nick: self.nick.clone(),
            role: self.role,
            affiliation: self.affiliation,
            presence: self.presence.clone(),
            contact: Some(ContactId::new(self.account.clone())),
            stable_id: Some(self.account.clone()),
            is_self,
        }
    }
}

/// A room of the network.
#[derive(Clone, Debug)]
pub(crate) struct Room {
    pub id: RoomId,
    pub subject: Subject,
    pub password: Option<String>,
    /// In join order.
    pub members: Vec<Member>,
    /// Banned accounts.
    pub banned: BTreeSet<String>,
    /// A group conversation (`Action::OpenGroup`): its members, the bot
    /// included when it was asked for.
    pub group: Option<BTreeSet<String>>,
}

impl Room {
    pub fn new(id: RoomId) -> Self {
        Room {
            id,
            subject: Subject::default(),
            password: None,
            members: Vec::new(),
            banned: BTreeSet::new(),
            group: None,
        }
    }

    pub fn member(&self, session: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.session == session)
    }

    pub fn member_mut(&mut self, session: u64) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.session == session)
    }

    pub fn by_nick(&self, nick: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.nick == nick)
    }

    /// Whether a nickname is taken (the bot's included).
    pub fn nick_taken(&self, nick: &str) -> bool {
        nick == ECHO || self.by_nick(nick).is_some()
    }

    /// The bot as an occupant.
    pub fn echo_occupant() -> Occupant {
        Occupant {
            nick: ECHO.to_owned(),
            role: Role::Moderator,
            affiliation: Affiliation::Owner,
            presence: Presence::available(),
            contact: Some(ContactId::new(ECHO)),
            stable_id: Some(ECHO.to_owned()),
            is_self: false,
        }
    }
}

/// Everything the network knows.
#[derive(Debug)]
pub(crate) struct NetState {
    /// name -> password.
    pub accounts: BTreeMap<String, String>,
    /// Connected sessions by id.
    pub sessions: BTreeMap<u64, SessionEntry>,
    /// Presence each account set (absent: available while connected).
    pub presence: HashMap<String, Presence>,
    /// The bot's presence.
    pub echo_presence: Presence,
    /// Rooms by id.
    pub rooms: BTreeMap<RoomId, Room>,
    /// Messages for accounts with no session, delivered on connect.
    pub offline: HashMap<String, Vec<Queued>>,
    /// Messages the network carried, by id.
    pub carried: HashMap<MessageId, Carried>,
    /// A user's message and the bot's echo of it, both ways.
    pub echo_pairs: HashMap<MessageId, MessageId>,
}

/// The network: its state and its fixed settings.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<NetState>,
    /// What the network can do.
    pub caps: Capabilities,
    /// The bot's answer delay.
    pub echo_delay: Duration,
    id_prefix: String,
    next_id: AtomicU64,
    next_session: AtomicU64,
    /// The bridge's context, once started (`Network::start`).
    pub bridge: Mutex<Option<ferry_bridge::BridgeContext>>,
}

impl Shared {
    pub fn new(
        accounts: BTreeMap<String, String>,
        caps: Capabilities,
        echo_delay: Duration,
    ) -> Self {
        let mut rooms = BTreeMap::new();
        let mut lounge = Room::new(RoomId::new("#lounge"));
        lounge.subject = Subject {
            text: "Welcome to the lounge of the test network".into(),
            by: Some(ECHO.into()),
            at: None,
        };
        rooms.insert(lounge.id.clone(), lounge);
        let mut secret = Room::new(RoomId::new("#secret"));
        secret.password = Some("letmein".into());
        secret.subject.text = "The password is letmein".into();
        rooms.insert(secret.id.clone(), secret);
        // ids stay unique across restarts of the process: time and pid prefix
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let id_prefix = format!("t{:x}", (nanos as u64) ^ u64::from(std::process::id()));
        Shared {
            state: Mutex::new(NetState {
                accounts,
                sessions: BTreeMap::new(),
                presence: HashMap::new(),
                echo_presence: Presence::available().with_status("I repeat everything"),
                rooms,
                offline: HashMap::new(),
                carried: HashMap::new(),
                echo_pairs: HashMap::new(),
            }),
            caps,
            echo_delay,
            id_prefix,
            next_id: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            bridge: Mutex::new(None),
        }
    }

    /// The bridge's context, when the bridge-wide part runs.
    pub fn bridge(&self) -> Option<ferry_bridge::BridgeContext> {
        self.bridge.lock().ok().and_then(|b| b.clone())
    }

    /// The key under which the bridge remembers the last message `author`
    /// sent to `to` (in its own store, which outlives a restart).
    pub fn last_key(author: &str, to: &str) -> String {
        format!("last/{author}/{to}")
    }

    /// The state. A panic elsewhere never leaves it unusable.
    pub fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new, unique message id.
    pub fn new_id(&self) -> MessageId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        MessageId::new(format!("{}-{n}", self.id_prefix))
    }

    /// A new session id.
    pub fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

impl NetState {
    /// Queues something for one session.
    pub fn to_session(&self, session: u64, item: Queued) {
        if let Some(s) = self.sessions.get(&session) {
            let _ = s.tx.send(item);
        }
    }

    /// Reports an event to one session.
    pub fn event_to_session(&self, session: u64, event: Event) {
        self.to_session(session, Queued::Event(event));
    }

    /// The sessions of an account.
    pub fn sessions_of(&self, account: &str) -> Vec<u64> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.account == account)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Reports an event to every session of an account (dropped when it has
    /// none).
    pub fn event_to_account(&self, account: &str, event: &Event) {
        for id in self.sessions_of(account) {
            self.event_to_session(id, event.clone());
        }
    }

    /// Delivers a message to every session of an account, or keeps it until
    /// the account connects. `receipt` is the sender's queue and the
    /// `Delivered` event to report there once a session took the message.
    pub fn message_to_account(
        &mut self,
        account: &str,
        event: Event,
        receipt: Option<Box<Receipt>>,
    ) {
        let ids = self.sessions_of(account);
        if ids.is_empty() {
            self.offline
                .entry(account.to_owned())
                .or_default()
                .push(Queued::Message { event, receipt });
            return;
        }
        let mut receipt = receipt;
        for id in ids {
            // one receipt per message, from the first session that takes it
            self.to_session(
                id,
                Queued::Message {
                    event: event.clone(),
                    receipt: receipt.take(),
                },
            );
        }
    }

    /// The presence an account shows to its contacts.
    pub fn presence_of(&self, account: &str) -> Presence {
        if account == ECHO {
            return self.echo_presence.clone();
        }
        if self.sessions.values().any(|s| s.account == account) {
            self.presence.get(account).cloned().unwrap_or_default()
        } else {
            Presence::offline()
        }
    }

    /// The rooms a session is in.
    pub fn rooms_of(&self, session: u64) -> Vec<RoomId> {
        self.rooms
            .values()
            .filter(|r| r.member(session).is_some())
            .map(|r| r.id.clone())
            .collect()
    }

    /// Reports an event to every member session of a room but `except`.
    pub fn to_room(&self, room: &RoomId, event: &Event, except: Option<u64>) {
        if let Some(r) = self.rooms.get(room) {
            for m in &r.members {
                if Some(m.session) != except {
                    self.event_to_session(m.session, event.clone());
                }
            }
        }
    }

    /// Whether a name is a contact of the network (an account or the bot).
    pub fn is_contact(&self, name: &str) -> bool {
        name == ECHO || self.accounts.contains_key(name)
    }
}
