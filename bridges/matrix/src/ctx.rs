//! What a user's session shares between its action handler and its
//! background tasks (sync loop, joins): the logged-in client, the event
//! sink, the durable store and the in-memory indexes, plus the lookups
//! both directions need (which conversation a room is, which room an
//! address means).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_bridge::{Address, BridgeError, ContactId, Event, EventSink, RoomId, UserId};
use matrix_sdk::ruma::{
    OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, UserId as MxUserId,
};
use matrix_sdk::{Client, Room, RoomState};
use tokio::sync::watch;

use crate::account::StoredSession;
use crate::address::{RoomRef, parse_user};
use crate::client::action_error;
use crate::config::Config;
use crate::kv::{self, Kv};
use crate::rooms::NickTable;
use crate::stores::StoreGate;

/// How many event ids of messages ferry sent are remembered for echo
/// suppression.
const SENT_MEMORY: usize = 4096;

/// How long a message to someone waits for ferry to join the direct chat
/// they started.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long after its last step a SAS verification keeps the idle
/// session's client in memory (matrix-sdk's own flows time out after 10
/// minutes).
const VERIFICATION_TIME: std::time::Duration = std::time::Duration::from_secs(600);

/// The parts of a session that do not change while it lives.
pub struct Shared {
    /// Bridge settings.
    pub config: Arc<Config>,
    /// The XMPP user.
    pub user: UserId,
    /// Where events go.
    pub events: EventSink,
    /// Durable state.
    pub kv: Kv,
    /// The user's directory.
    pub data_dir: PathBuf,
    /// How many sync responses this session has processed.
    syncs: watch::Sender<u64>,
    /// In-memory indexes.
    mem: Mutex<Memory>,
}

/// Indexes kept in memory (rebuilt from the store or the homeserver after a
/// restart).
#[derive(Default)]
pub struct Memory {
    /// Room id → the bridge id the user knows it by, when that is an alias.
    pub views: HashMap<OwnedRoomId, String>,
    /// Nicknames per room.
    pub nicks: HashMap<OwnedRoomId, NickTable>,
    /// Event ids of what ferry sent, newest last.
    sent: VecDeque<OwnedEventId>,
    sent_set: HashSet<OwnedEventId>,
    /// Who is typing, per room.
    pub typing: HashMap<OwnedRoomId, BTreeSet<OwnedUserId>>,
    /// Joined rooms seen in this session.
    pub known_rooms: HashSet<OwnedRoomId>,
    /// Direct-chat partners announced to the core in this session.
    pub contacts: HashSet<OwnedUserId>,
    /// Verification requests waiting for the user: (user, flow id).
    pub verification_requests: Vec<(OwnedUserId, String)>,
    /// Until when a SAS verification may be running: its flow lives only
    /// in the client's memory, so the idle session keeps its client.
    pub verifying_until: Option<std::time::Instant>,
    /// The read receipt ferry last sent per room (not reported back).
    pub own_receipts: HashMap<OwnedRoomId, OwnedEventId>,
    /// Preference: join direct chats others start without asking.
    pub auto_accept_direct: bool,
    /// Direct chats others started that ferry is joining: partner → the
    /// room, and a channel that turns true once the join is over.
    pub joining_direct: HashMap<OwnedUserId, (OwnedRoomId, watch::Receiver<bool>)>,
    /// Direct chats ferry accepted in this session: room → partner (the
    /// homeserver's m.direct update that marks them direct comes back
    /// later, with a sync).
    pub accepted_direct: HashMap<OwnedRoomId, OwnedUserId>,
}

impl Memory {
    /// Remembers an event ferry sent.
    pub fn remember_sent(&mut self, id: OwnedEventId) {
        if self.sent_set.insert(id.clone()) {
            self.sent.push_back(id);
            while self.sent.len() > SENT_MEMORY {
                if let Some(old) = self.sent.pop_front() {
                    self.sent_set.remove(&old);
                }
            }
        }
    }

    /// Whether ferry itself sent this read receipt.
    pub fn own_receipt_is(
        &self,
        room: &matrix_sdk::ruma::RoomId,
        event: &matrix_sdk::ruma::EventId,
    ) -> bool {
        self.own_receipts.get(room).is_some_and(|e| e == event)
    }

    /// Whether ferry sent this event.
    pub fn was_sent(&self, id: &matrix_sdk::ruma::EventId) -> bool {
        self.sent_set.contains(id)
    }
}

impl Shared {
    /// Creates the shared part of a session.
    pub fn new(
        config: Arc<Config>,
        user: UserId,
        events: EventSink,
        kv: Kv,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            config,
            user,
            events,
            kv,
            data_dir,
            syncs: watch::Sender::new(0),
            mem: Mutex::new(Memory {
                auto_accept_direct: true,
                ..Memory::default()
            }),
        }
    }

    /// Records that one more sync response was processed.
    pub fn synced(&self) {
        self.syncs.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until a sync response is processed after this call (at most
    /// `limit`).
    pub async fn next_sync(&self, limit: std::time::Duration) {
        let mut rx = self.syncs.subscribe();
        let _ = tokio::time::timeout(limit, rx.changed()).await;
    }

    /// The in-memory indexes. Never held across an await.
    pub fn mem(&self) -> MutexGuard<'_, Memory> {
        // A panic while holding the lock cannot leave the indexes in a state
        // worse than stale, so a poisoned lock is simply taken over.
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that a SAS verification started or moved on: the session
    /// keeps its client in memory for [`VERIFICATION_TIME`] from now.
    pub fn verifying(&self) {
        self.mem().verifying_until = Some(std::time::Instant::now() + VERIFICATION_TIME);
    }

    /// Whether a SAS verification may be running.
    pub fn in_verification(&self) -> bool {
        self.mem()
            .verifying_until
            .is_some_and(|t| t > std::time::Instant::now())
    }

    /// Whether direct chats others start are joined without asking.
    pub fn auto_accept_direct(&self) -> bool {
        self.mem().auto_accept_direct
    }

    /// Loads the room views saved in the store.
    pub async fn load_views(&self) -> Result<(), BridgeError> {
        let views = self.kv.list("view/").await.map_err(kv::store_err)?;
        let mut mem = self.mem();
        for (k, v) in views {
            if let Some(id) = k.strip_prefix("view/")
                && let Ok(room) = matrix_sdk::ruma::RoomId::parse(id)
            {
                mem.views.insert(room, v);
            }
        }
        Ok(())
    }

    /// Reports an event to the core. Fails only when the core is shutting
    /// down, which ends the session anyway.
    pub async fn emit(&self, event: Event) {
        if self.events.send(event).await.is_err() {
            tracing::debug!(user = %self.user, "core no longer takes events");
        }
    }
}

/// One conversation as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chat {
    /// A direct chat with one person.
    Direct(OwnedUserId),
    /// A room.
    Group(RoomId),
}

impl Chat {
    /// The address of the conversation.
    pub fn address(&self) -> Address {
        match self {
            Chat::Direct(u) => Address::Contact(ContactId::new(u.as_str())),
            Chat::Group(r) => Address::Room(r.clone()),
        }
    }
}

/// A session's logged-in client with everything around it.
#[derive(Clone)]
pub struct Ctx {
    /// The session's fixed parts.
    pub shared: Arc<Shared>,
    /// The client (only ever reached through a [`crate::stores::Hold`]).
    pub client: Arc<Client>,
    /// The stored session it runs on.
    pub account: StoredSession,
    /// Builds the client and opens its stores for what uses them, drops it
    /// when idle.
    pub stores: Arc<StoreGate>,
}

impl Ctx {
    /// The Matrix user.
    pub fn own(&self) -> &MxUserId {
        &self.account.user_id
    }

    /// The bridge id of a room: its alias when the user joined it by alias,
    /// else its id.
    pub fn view_of(&self, room: &matrix_sdk::ruma::RoomId) -> RoomId {
        match self.shared.mem().views.get(room) {
            Some(alias) => RoomId::new(alias.clone()),
            None => RoomId::new(room.as_str()),
        }
    }

    /// Uses an alias as the bridge id of a room from now on.
    pub async fn set_view(&self, room: &matrix_sdk::ruma::RoomId, alias: &str) {
        self.shared
            .mem()
            .views
            .insert(room.to_owned(), alias.to_owned());
        if let Err(e) = self.shared.kv.put(kv::view_key(room.as_str()), alias).await {
            tracing::warn!(error = %e, "could not save a room alias view");
        }
    }

    /// The partner of a direct chat, or None for a group room.
    pub async fn dm_partner(&self, room: &Room) -> Option<OwnedUserId> {
        let accepted = self
            .shared
            .mem()
            .accepted_direct
            .get(room.room_id())
            .cloned();
        let partner = if room.is_direct().await.unwrap_or(false) {
            let targets = room.direct_targets();
            if targets.len() != 1 {
                return None;
            }
            targets.iter().next()?.as_user_id()?.to_owned()
        } else {
            // Accepted a moment ago: not marked direct yet.
            accepted?
        };
        if partner == *self.own() {
            return None;
        }
        // A "direct" room someone else joined is a group in practice.
        let others = room.joined_members_count() + room.invited_members_count();
        if others > 2 {
            return None;
        }
        Some(partner)
    }

    /// Which conversation a room is.
    pub async fn chat_of(&self, room: &Room) -> Chat {
        match self.dm_partner(room).await {
            Some(p) => Chat::Direct(p),
            None => Chat::Group(self.view_of(room.room_id())),
        }
    }

    /// The joined room behind a room address (id, alias or alias view).
    pub async fn joined_room(&self, id: &RoomId) -> Result<Room, BridgeError> {
        let room = self.known_room(id).await?;
        match room.state() {
            RoomState::Joined => Ok(room),
            _ => Err(BridgeError::new(
                ferry_bridge::ErrorKind::NotAllowed,
                format!("you are not in the Matrix room {id}: join it first"),
            )),
        }
    }

    /// The room behind a room address, if the client knows it.
    pub async fn known_room(&self, id: &RoomId) -> Result<Room, BridgeError> {
        let room_id = self.resolve(id, false).await?;
        self.client
            .get_room(&room_id)
            .ok_or_else(|| BridgeError::not_found(format!("you are not in the Matrix room {id}")))
    }

    /// Turns a room address into a room id, asking the homeserver for
    /// aliases it does not know (when `remote`).
    pub async fn resolve(&self, id: &RoomId, remote: bool) -> Result<OwnedRoomId, BridgeError> {
        match RoomRef::parse(id.as_str()).map_err(|e| BridgeError::bad_request(e.0))? {
            RoomRef::Id(r) => Ok(r),
            RoomRef::Alias(alias) => {
                // An alias the user joined by.
                let known = self
                    .shared
                    .mem()
                    .views
                    .iter()
                    .find(|(_, v)| v.as_str() == alias.as_str())
                    .map(|(k, _)| k.clone());
                if let Some(r) = known {
                    return Ok(r);
                }
                // The canonical alias of a joined room.
                for room in self.client.joined_rooms() {
                    if room.canonical_alias().as_deref() == Some(&*alias)
                        || room.alt_aliases().contains(&alias)
                    {
                        return Ok(room.room_id().to_owned());
                    }
                }
                if !remote {
                    return Err(BridgeError::not_found(format!(
                        "you are not in the Matrix room {alias}"
                    )));
                }
                let resolved = self
                    .client
                    .resolve_room_alias(&alias)
                    .await
                    .map_err(|e| crate::client::http_action_error("looking up the alias", e))?;
                Ok(resolved.room_id)
            }
        }
    }

    /// The direct chat to use with a user, if there is one.
    pub async fn dm_room(&self, user: &MxUserId) -> Option<Room> {
        if let Ok(Some(id)) = self.shared.kv.get(kv::dm_key(user.as_str())).await
            && let Ok(id) = matrix_sdk::ruma::RoomId::parse(id)
            && let Some(room) = self.client.get_room(&id)
            && room.state() == RoomState::Joined
            && self.dm_partner(&room).await.as_deref() == Some(user)
        {
            return Some(room);
        }
        for room in self.client.get_dm_rooms(user) {
            if room.state() == RoomState::Joined {
                return Some(room);
            }
        }
        None
    }

    /// Remembers which direct chat was last used with a user.
    pub async fn note_dm(&self, user: &MxUserId, room: &matrix_sdk::ruma::RoomId) {
        if let Err(e) = self
            .shared
            .kv
            .put(kv::dm_key(user.as_str()), room.as_str())
            .await
        {
            tracing::warn!(error = %e, "could not save the direct chat of a contact");
        }
    }

    /// Accepts a direct chat `partner` started: joins it, and meanwhile
    /// makes a message to `partner` wait for the join instead of starting
    /// another direct chat.
    pub async fn accept_direct(&self, room: &Room, partner: &MxUserId) -> matrix_sdk::Result<()> {
        let (done, wait) = watch::channel(false);
        self.shared
            .mem()
            .joining_direct
            .insert(partner.to_owned(), (room.room_id().to_owned(), wait));
        let joined = room.join().await;
        if joined.is_ok() {
            self.shared
                .mem()
                .accepted_direct
                .insert(room.room_id().to_owned(), partner.to_owned());
            self.note_dm(partner, room.room_id()).await;
        }
        {
            let mut mem = self.shared.mem();
            if mem
                .joining_direct
                .get(partner)
                .is_some_and(|(r, _)| r == room.room_id())
            {
                mem.joining_direct.remove(partner);
            }
        }
        let _ = done.send(true);
        joined
    }

    /// Waits (a while at most) for ferry to finish joining a direct chat
    /// `user` started, if it is joining one.
    async fn joined_direct_from(&self, user: &MxUserId) {
        let wait = self
            .shared
            .mem()
            .joining_direct
            .get(user)
            .map(|(_, w)| w.clone());
        if let Some(mut wait) = wait {
            let _ = tokio::time::timeout(JOIN_WAIT, wait.wait_for(|done| *done)).await;
        }
    }

    /// The direct chat with a user, created (with an invitation) when there
    /// is none yet.
    pub async fn dm_room_or_create(&self, contact: &ContactId) -> Result<Room, BridgeError> {
        let user = parse_user(contact).map_err(|e| BridgeError::bad_request(e.0))?;
        self.joined_direct_from(&user).await;
        if let Some(room) = self.dm_room(&user).await {
            return Ok(room);
        }
        let room = self
            .client
            .create_dm(&user)
            .await
            .map_err(|e| action_error(&format!("starting a direct chat with {user}"), e))?;
        self.note_dm(&user, room.room_id()).await;
        Ok(room)
    }

    /// The room a conversation address means, for sending.
    pub async fn room_for(&self, chat: &Address) -> Result<Room, BridgeError> {
        match chat {
            Address::Contact(c) => self.dm_room_or_create(c).await,
            Address::Room(r) => self.joined_room(r).await,
            Address::Occupant { .. } => Err(BridgeError::unsupported(
                "Matrix has no private messages inside a room: write to the person's own address",
            )),
            Address::Service(_) => Err(BridgeError::unsupported(
                "the Matrix bridge has no service addresses",
            )),
        }
    }

    /// The room an existing conversation is in (never creates one).
    pub async fn existing_room_for(&self, chat: &Address) -> Result<Room, BridgeError> {
        match chat {
            Address::Contact(c) => {
                let user = parse_user(c).map_err(|e| BridgeError::bad_request(e.0))?;
                self.dm_room(&user).await.ok_or_else(|| {
                    BridgeError::not_found(format!("there is no direct chat with {user} yet"))
                })
            }
            other => self.room_for(other).await,
        }
    }

    /// The servers to try when joining a room by id (its own server).
    pub fn via(id: &str) -> Vec<OwnedServerName> {
        id.split_once(':')
            .and_then(|(_, server)| OwnedServerName::try_from(server).ok())
            .into_iter()
            .collect()
    }
}
