//! The database of one bridge: a SQLite file under `[storage] data_dir`
//! (the embedded default), or a schema of a PostgreSQL database shared by
//! several instances (`[storage] url`, see [`postgres`]).
//!
//! One API over both backends: statements are data ([`sql`]) that each
//! backend runs in its dialect. Versioned migrations are applied at open
//! ([`schema`]), and one writer thread gathers every write waiting in its
//! queue into a single transaction (never one fsync per message). Reads
//! see every write issued before them.
//!
//! What is stored: registered users with their account (the account secret
//! sealed with the gateway's AEAD key, see [`crypto`]) and preferences,
//! bridge-private key/value data, the map between XMPP message ids and the
//! network's ids, the room archive served by MAM, the component outbox, and
//! the roster/subscription state of every user, messages awaiting the
//! network's delivery report and the owners of network addresses
//! ([`deliveries`]).
//!
//! Durability: SQLite runs `synchronous=NORMAL` in WAL mode, so a committed
//! write survives a crash of ferry (PostgreSQL: a commit is durable); writes documented as "durable on return"
//! wait for their commit, the others ("batched") return at once and are
//! committed with the next batch, in issue order.

pub mod crypto;
mod deliveries;
mod leases;
pub(crate) mod pg_tls;
pub mod postgres;
mod schema;
pub(crate) mod sql;
mod sqlite;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_bridge::{Account, FormValues, KeyValue, Secret, StoreError, UserId};

use sql::{Row, Stmt, params};

pub use crypto::Key;
pub use deliveries::Pending;
pub use leases::{Claim, Renewal};
pub use writer::WriterStats;

use writer::Writer;

/// A registered user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Bare JID.
    pub user: UserId,
    /// How the account is shown ([`Account::name`]).
    pub account_name: String,
    /// When they registered.
    pub registered_at: SystemTime,
}

/// Whose key/value space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvScope {
    /// The bridge's own, shared by all users (`BridgeContext::store`).
    Bridge,
    /// One user's.
    User(UserId),
}

/// One archived room message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// Whose archive (archives are per user: rooms are per-user views).
    pub user: UserId,
    /// The room (its bridge id).
    pub room: String,
    /// The archive id, also the `stanza-id` the message was sent with
    /// (from [`Store::new_archive_id`]: sortable by time).
    pub id: String,
    /// When the message was sent.
    pub timestamp: SystemTime,
    /// The sender's nickname.
    pub nick: String,
    /// The network's id of the message, if any.
    pub foreign_id: Option<String>,
    /// The `<message/>` as delivered, serialised.
    pub stanza: String,
}

/// A MAM query on one user's archive of one room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Whose archive.
    pub user: Option<UserId>,
    /// Which room.
    pub room: String,
    /// Not before.
    pub start: Option<SystemTime>,
    /// Not after.
    pub end: Option<SystemTime>,
    /// Only from this nickname.
    pub with_nick: Option<String>,
    /// RSM: only items after this archive id.
    pub after_id: Option<String>,
    /// RSM: only items before this archive id. `Some("")` asks for the
    /// last page.
    pub before_id: Option<String>,
    /// Page size.
    pub max: usize,
}

/// A page of archive results, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// The items.
    pub items: Vec<ArchiveEntry>,
    /// Whether the page reaches the end of the query's range (MAM
    /// `complete`).
    pub complete: bool,
    /// Total number of items matching the query, without paging.
    pub count: usize,
}

/// What the gateway knows about one roster item of a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's JID (bare).
    pub jid: String,
    /// Display name last pushed.
    pub name: Option<String>,
    /// The user receives the contact's presence.
    pub to_user: bool,
    /// The contact (gateway) receives the user's presence.
    pub from_user: bool,
    /// How the item reached the roster: `privilege`, `rosterx`,
    /// `subscribe`, or empty when not yet.
    pub via: String,
}

/// Where a bridge's database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (the embedded default: one file per bridge).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several instances; each bridge has
    /// its own schema in it ([`postgres::schema_name`]).
    Postgres {
        /// `postgres://…` (the password is never logged).
        url: String,
        /// The bridge's name (its config section).
        bridge: String,
        /// `[storage] ca_file`: CA certificates trusted besides the
        /// system's for TLS to the server.
        ca_file: Option<PathBuf>,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres { url, bridge, .. } => {
                write!(
                    f,
                    "{} (schema {})",
                    postgres::redacted(url),
                    postgres::schema_name(bridge)
                )
            }
        }
    }
}

/// The database of one bridge. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    key: Arc<Key>,
    writer: Arc<Writer>,
    reads: Reads,
    /// The last archive id handed out (microseconds since the epoch).
    last_archive_id: Mutex<u64>,
    /// Whose outbox this store reads and writes: the instance name when
    /// several instances share the database ([`leases`]), else empty.
    instance: std::sync::OnceLock<String>,
}

/// How reads reach the database.
enum Reads {
    /// Connections of the file, reused.
    Sqlite(sqlite::Readers),
    /// The pool of the PostgreSQL backend.
    Postgres(postgres::Pg),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.inner.location.to_string())
            .finish_non_exhaustive()
    }
}

/// Nanoseconds since the epoch (negative before it).
fn to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn from_nanos(n: i64) -> SystemTime {
    if n >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Archive ids: 16 hexadecimal digits of a microsecond clock that never
/// goes backwards, so they sort by time as strings.
fn format_archive_id(n: u64) -> String {
    format!("{n:016x}")
}

fn parse_archive_id(id: &str) -> Option<u64> {
    (id.len() == 16)
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
}

impl Store {
    /// Opens (creating and migrating if needed) the SQLite database at
    /// `path`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn open(path: &Path, key: Arc<Key>) -> Result<Store, StoreError> {
        Store::open_at(&Location::Sqlite(path.to_owned()), key)
    }

    /// Opens (creating and migrating if needed) a bridge's database,
    /// wherever it lives. A PostgreSQL server that cannot be reached is an
    /// error here (at start-up); later, the store reconnects.
    pub fn open_at(location: &Location, key: Arc<Key>) -> Result<Store, StoreError> {
        Store::open_at_version(location, key, schema::LATEST)
    }

    fn open_at_version(
        location: &Location,
        key: Arc<Key>,
        version: usize,
    ) -> Result<Store, StoreError> {
        let (apply, reads, name): (Box<dyn writer::Apply>, Reads, String) = match location {
            Location::Sqlite(path) => {
                let (apply, readers) = sqlite::open(path, version)?;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (apply, Reads::Sqlite(readers), name)
            }
            Location::Postgres {
                url,
                bridge,
                ca_file,
            } => {
                let (apply, pg) = postgres::open(url, ca_file.as_deref(), bridge, version)?;
                (apply, Reads::Postgres(pg), bridge.clone())
            }
        };
        let writer = Writer::start(apply, name)
            .map_err(|e| StoreError(format!("cannot start the database writer: {e}")))?;
        let store = Store {
            inner: Arc::new(Inner {
                location: location.clone(),
                key,
                writer,
                reads,
                last_archive_id: Mutex::new(0),
                instance: std::sync::OnceLock::new(),
            }),
        };
        if version >= 2 {
            let last = store
                .query_opt(
                    "reading the archive",
                    Stmt::new("SELECT max(id) FROM archive", vec![]),
                    |r| r.opt_text(0),
                )?
                .flatten();
            if let Ok(mut l) = store.inner.last_archive_id.lock() {
                *l = last.as_deref().and_then(parse_archive_id).unwrap_or(0);
            }
        }
        Ok(store)
    }

    /// Names the instance whose outbox this store serves (several
    /// instances on one database); set once, before the outbox is used.
    pub fn set_instance(&self, name: &str) {
        let _ = self.inner.instance.set(name.to_owned());
    }

    fn instance(&self) -> String {
        self.inner.instance.get().cloned().unwrap_or_default()
    }

    /// Where the database lives.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// Writes applied and transactions committed so far.
    pub fn stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    /// How long a caller waits for an unavailable database before it gets
    /// an error (None: as long as it takes; a SQLite file is never away).
    fn patience(&self) -> Option<Duration> {
        match &self.inner.reads {
            Reads::Sqlite(_) => None,
            Reads::Postgres(_) => Some(postgres::PATIENCE),
        }
    }

    /// Runs `f`, which blocks on the database: with PostgreSQL it may wait
    /// for the network, so a tokio worker hands its other tasks over first.
    fn blocking<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.inner.reads {
            Reads::Sqlite(_) => f(),
            Reads::Postgres(_) => postgres::blocking(f),
        }
    }

    /// Queues a write without waiting for it.
    fn write(&self, what: &'static str, op: writer::Op) {
        if let Err(e) = self.inner.writer.submit(what, op, None) {
            tracing::error!("database: {what} lost: {e}");
        }
    }

    /// Queues a write and blocks until it is committed.
    fn write_wait(&self, what: &'static str, op: writer::Op) -> Result<(), StoreError> {
        self.write_rows(what, op).map(drop)
    }

    /// Queues a write, blocks until it is committed, and returns the rows
    /// its statements returned (`INSERT … RETURNING`, or a `SELECT` among
    /// them, which sees the write's own changes): a read-modify-write in
    /// the writer's transaction. With several instances on PostgreSQL,
    /// make the decision in one statement (`ON CONFLICT … DO UPDATE …
    /// WHERE …`), not across statements.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn write_rows(
        &self,
        what: &'static str,
        op: writer::Op,
    ) -> Result<Vec<Row>, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner
            .writer
            .submit(what, op, Some(writer::Reply::Blocking(tx)))?;
        let patience = self.patience();
        self.blocking(|| match patience {
            None => rx
                .recv()
                .map_err(|_| StoreError("the database writer has stopped".into()))?,
            Some(limit) => match rx.recv_timeout(limit) {
                Ok(result) => result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(StoreError(format!(
                    "{what}: the database is unavailable (the write is kept and retried)"
                ))),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    Err(StoreError("the database writer has stopped".into()))
                }
            },
        })
    }

    /// Runs a query after every write issued so far is committed.
    fn query(&self, what: &str, stmt: Stmt) -> Result<Vec<Row>, StoreError> {
        let writer = &self.inner.writer;
        let seq = writer.issued();
        let patience = self.patience();
        self.blocking(|| {
            writer
                .wait_committed(seq, patience)
                .map_err(|e| StoreError(format!("{what}: {}", e.0)))?;
            match &self.inner.reads {
                Reads::Sqlite(r) => r.query(&stmt),
                Reads::Postgres(pg) => pg.query(&stmt),
            }
            .map_err(|e| StoreError(format!("{what}: {}", e.0)))
        })
    }

    /// Runs a query and maps every row.
    fn query_map<T>(
        &self,
        what: &str,
        stmt: Stmt,
        f: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(what, stmt)?
            .iter()
            .map(|r| f(r).map_err(|e| StoreError(format!("{what}: {}", e.0))))
            .collect()
    }

    /// Runs a query and maps its first row, if any.
    fn query_opt<T>(
        &self,
        what: &str,
        stmt: Stmt,
        f: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query(what, stmt)?
            .first()
            .map(|r| f(r).map_err(|e| StoreError(format!("{what}: {}", e.0))))
            .transpose()
    }

    /// A registered user.
    pub fn user(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        self.query_opt(
            "reading a user",
            Stmt::new(
                "SELECT jid, account_name, registered_at FROM users WHERE jid = ?1",
                params![user.as_str()],
            ),
            user_row,
        )
    }

    /// Every registered user.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.query_map(
            "listing users",
            Stmt::new(
                "SELECT jid, account_name, registered_at FROM users ORDER BY jid",
                vec![],
            ),
            user_row,
        )
    }

    /// The users whose key/value space holds `key` (such as
    /// [`ferry_bridge::RESUME_KEY`]).
    pub fn users_with_key(&self, key: &str) -> Result<Vec<UserId>, StoreError> {
        self.query_map(
            "listing users with a key",
            Stmt::new(
                "SELECT scope FROM kv WHERE key = ?1 AND scope != '' ORDER BY scope",
                params![key],
            ),
            |r| r.text(0).map(UserId::new),
        )
    }

    /// Registers a user, or replaces their account (keeping the date of
    /// the first registration). Durable on return.
    pub fn register(&self, user: &UserId, account: &Account) -> Result<(), StoreError> {
        let jid = user.as_str();
        let sealed = self.inner.key.seal(&account.secret.0, jid.as_bytes());
        let now = to_nanos(SystemTime::now());
        self.write_wait(
            "registering a user",
            vec![Stmt::new(
                "INSERT INTO users (jid, account_name, secret, registered_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (jid) DO UPDATE SET account_name = excluded.account_name,
                                                 secret = excluded.secret",
                params![jid, account.name.as_str(), sealed, now],
            )],
        )
    }

    /// A user's account, decrypted.
    pub fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        let row = self.query_opt(
            "reading an account",
            Stmt::new(
                "SELECT account_name, secret FROM users WHERE jid = ?1",
                params![user.as_str()],
            ),
            |r| Ok((r.text(0)?, r.blob(1)?)),
        )?;
        match row {
            None => Ok(None),
            Some((name, sealed)) => {
                let secret = self
                    .inner
                    .key
                    .open(&sealed, user.as_str().as_bytes())
                    .map_err(|e| StoreError(format!("account of {user}: {}", e.0)))?;
                Ok(Some(Account {
                    name,
                    secret: Secret(secret),
                }))
            }
        }
    }

    /// Deletes a user and everything stored for them (account,
    /// preferences, key/value space, message map, archive, roster).
    pub fn unregister(&self, user: &UserId) -> Result<(), StoreError> {
        let jid = user.as_str();
        self.write_wait(
            "unregistering a user",
            [
                "DELETE FROM users WHERE jid = ?1",
                "DELETE FROM preferences WHERE jid = ?1",
                "DELETE FROM kv WHERE scope = ?1",
                "DELETE FROM message_map WHERE jid = ?1",
                "DELETE FROM archive WHERE jid = ?1",
                "DELETE FROM roster WHERE jid = ?1",
            ]
            .into_iter()
            .map(|sql| Stmt::new(sql, params![jid]))
            .collect(),
        )
    }

    /// A user's stored preference values (without defaults).
    pub fn preferences(&self, user: &UserId) -> Result<FormValues, StoreError> {
        let rows = self.query_map(
            "reading preferences",
            Stmt::new(
                "SELECT var, vals FROM preferences WHERE jid = ?1 ORDER BY var",
                params![user.as_str()],
            ),
            |r| Ok((r.text(0)?, r.text(1)?)),
        )?;
        let mut values = FormValues::new();
        for (var, vals) in rows {
            let list: Vec<String> = serde_json::from_str(&vals)
                .map_err(|e| StoreError(format!("preference {var} of {user}: {e}")))?;
            values.set(var, list);
        }
        Ok(values)
    }

    /// Stores a user's preference values, replacing every value stored for
    /// them before. Durable on return.
    pub fn set_preferences(&self, user: &UserId, values: &FormValues) -> Result<(), StoreError> {
        let jid = user.as_str();
        let mut op = vec![Stmt::new(
            "DELETE FROM preferences WHERE jid = ?1",
            params![jid],
        )];
        for (var, vals) in values.iter() {
            let json = serde_json::to_string(vals)
                .map_err(|e| StoreError(format!("preference {var}: {e}")))?;
            op.push(Stmt::new(
                "INSERT INTO preferences (jid, var, vals) VALUES (?1, ?2, ?3)",
                params![jid, var, json],
            ));
        }
        self.write_wait("storing preferences", op)
    }

    /// A key/value space (what bridges get as [`KeyValue`]).
    pub fn kv(&self, scope: KvScope) -> Arc<dyn KeyValue> {
        let scope = match scope {
            KvScope::Bridge => String::new(),
            KvScope::User(user) => user.into_string(),
        };
        Arc::new(KvSpace {
            store: self.clone(),
            scope,
        })
    }

    /// Records that XMPP id `xmpp_id` and network id `foreign_id` are the
    /// same message in conversation `chat` of `user` (batched write).
    /// A mapping made again becomes the latest one.
    pub fn map_message(&self, user: &UserId, chat: &str, xmpp_id: &str, foreign_id: &str) {
        let jid = user.as_str();
        self.write(
            "mapping a message id",
            vec![
                Stmt::new(
                    "DELETE FROM message_map WHERE jid = ?1 AND chat = ?2 AND xmpp_id = ?3",
                    params![jid, chat, xmpp_id],
                ),
                Stmt::new(
                    "INSERT INTO message_map (jid, chat, xmpp_id, foreign_id)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![jid, chat, xmpp_id, foreign_id],
                ),
            ],
        );
    }

    /// The network id of an XMPP message id.
    pub fn foreign_id(
        &self,
        user: &UserId,
        chat: &str,
        xmpp_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.query_opt(
            "looking up a message id",
            Stmt::new(
                "SELECT foreign_id FROM message_map WHERE jid = ?1 AND chat = ?2 AND xmpp_id = ?3",
                params![user.as_str(), chat, xmpp_id],
            ),
            |r| r.text(0),
        )
    }

    /// The XMPP id of a network message id (the latest mapped, if several).
    pub fn xmpp_id(
        &self,
        user: &UserId,
        chat: &str,
        foreign_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.query_opt(
            "looking up a message id",
            Stmt::each(
                "SELECT xmpp_id FROM message_map WHERE jid = ?1 AND chat = ?2 AND foreign_id = ?3
                 ORDER BY rowid DESC LIMIT 1",
                "SELECT xmpp_id FROM message_map WHERE jid = ?1 AND chat = ?2 AND foreign_id = ?3
                 ORDER BY seq DESC LIMIT 1",
                params![user.as_str(), chat, foreign_id],
            ),
            |r| r.text(0),
        )
    }

    /// An archive id for a message sent at `at` (older history fetched
    /// from a network), so that it sorts among the others by time. Callers
    /// archiving several messages of the same microsecond keep them apart
    /// with `not_before` (the previous id).
    pub fn archive_id_at(&self, at: SystemTime, not_before: Option<&str>) -> String {
        let micros = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let floor = not_before
            .and_then(parse_archive_id)
            .map_or(0, |n| n.saturating_add(1));
        format_archive_id(micros.max(floor))
    }

    /// A new archive id: unique, and greater than every id handed out
    /// before (so ids sort by time).
    pub fn new_archive_id(&self) -> String {
        let mut last = match self.inner.last_archive_id.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = now_micros().max(*last + 1);
        *last = next;
        format_archive_id(next)
    }

    /// Archives a room message (batched write). Archiving the same (user,
    /// room, id) again replaces the entry.
    pub fn archive(&self, entry: ArchiveEntry) {
        if let Some(n) = parse_archive_id(&entry.id)
            && let Ok(mut last) = self.inner.last_archive_id.lock()
        {
            *last = (*last).max(n);
        }
        self.write(
            "archiving a message",
            vec![Stmt::new(
                "INSERT INTO archive (jid, room, id, ts, nick, foreign_id, stanza)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (jid, room, id) DO UPDATE SET ts = excluded.ts,
                     nick = excluded.nick, foreign_id = excluded.foreign_id,
                     stanza = excluded.stanza",
                params![
                    entry.user.into_string(),
                    entry.room,
                    entry.id,
                    to_nanos(entry.timestamp),
                    entry.nick,
                    entry.foreign_id,
                    entry.stanza
                ],
            )],
        );
    }

    /// Queries a user's archive of a room: a page of at most `max` items,
    /// oldest first. With `before_id` the page is the newest items before
    /// it (`Some("")`: the last page), otherwise the oldest items after
    /// `after_id` (or from the start). `complete` says whether the page
    /// reaches the end of the range in the direction of paging; `count` is
    /// the number of items matching the filters, regardless of paging.
    pub fn archive_query(&self, query: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let q = query;
        let mut filter = String::from("room = ?");
        let mut params = params![q.room.as_str()];
        if let Some(user) = &q.user {
            filter.push_str(" AND jid = ?");
            params.push(user.as_str().into());
        }
        if let Some(start) = q.start {
            filter.push_str(" AND ts >= ?");
            params.push(to_nanos(start).into());
        }
        if let Some(end) = q.end {
            filter.push_str(" AND ts <= ?");
            params.push(to_nanos(end).into());
        }
        if let Some(nick) = &q.with_nick {
            filter.push_str(" AND nick = ?");
            params.push(nick.as_str().into());
        }
        let count = self
            .query_opt(
                "querying the archive",
                Stmt::built(
                    format!("SELECT count(*) FROM archive WHERE {filter}"),
                    params.clone(),
                ),
                |r| r.int(0),
            )?
            .unwrap_or(0);
        let mut range = filter;
        if let Some(after) = &q.after_id {
            range.push_str(" AND id > ?");
            params.push(after.as_str().into());
        }
        let backwards = q.before_id.is_some();
        if let Some(before) = q.before_id.as_deref().filter(|b| !b.is_empty()) {
            range.push_str(" AND id < ?");
            params.push(before.into());
        }
        let order = if backwards { "DESC" } else { "ASC" };
        params.push((q.max as i64 + 1).into());
        let mut items = self.query_map(
            "querying the archive",
            Stmt::built(
                format!(
                    "SELECT jid, room, id, ts, nick, foreign_id, stanza FROM archive
                     WHERE {range} ORDER BY id {order} LIMIT ?"
                ),
                params,
            ),
            archive_row,
        )?;
        let complete = items.len() <= q.max;
        items.truncate(q.max);
        if backwards {
            items.reverse();
        }
        Ok(ArchivePage {
            items,
            complete,
            count: usize::try_from(count).unwrap_or(0),
        })
    }

    /// The last archived entry of a room, if any.
    pub fn archive_last(
        &self,
        user: &UserId,
        room: &str,
    ) -> Result<Option<ArchiveEntry>, StoreError> {
        self.query_opt(
            "reading the archive",
            Stmt::new(
                "SELECT jid, room, id, ts, nick, foreign_id, stanza FROM archive
                 WHERE jid = ?1 AND room = ?2 ORDER BY id DESC LIMIT 1",
                params![user.as_str(), room],
            ),
            archive_row,
        )
    }

    /// A user's roster items as the gateway knows them.
    pub fn roster(&self, user: &UserId) -> Result<Vec<RosterItem>, StoreError> {
        self.query_map(
            "reading the roster",
            Stmt::new(
                "SELECT contact, name, to_user, from_user, via FROM roster
                 WHERE jid = ?1 ORDER BY contact",
                params![user.as_str()],
            ),
            |r| {
                Ok(RosterItem {
                    jid: r.text(0)?,
                    name: r.opt_text(1)?,
                    to_user: r.bool(2)?,
                    from_user: r.bool(3)?,
                    via: r.text(4)?,
                })
            },
        )
    }

    /// Records a roster item of a user (batched write).
    pub fn set_roster_item(&self, user: &UserId, item: &RosterItem) {
        self.write(
            "storing a roster item",
            vec![Stmt::new(
                "INSERT INTO roster (jid, contact, name, to_user, from_user, via)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (jid, contact) DO UPDATE SET name = excluded.name,
                     to_user = excluded.to_user, from_user = excluded.from_user,
                     via = excluded.via",
                params![
                    user.as_str(),
                    item.jid.as_str(),
                    item.name.as_deref(),
                    item.to_user,
                    item.from_user,
                    item.via.as_str()
                ],
            )],
        );
    }

    /// Removes a roster item of a user (batched write).
    pub fn remove_roster_item(&self, user: &UserId, jid: &str) {
        self.write(
            "removing a roster item",
            vec![Stmt::new(
                "DELETE FROM roster WHERE jid = ?1 AND contact = ?2",
                params![user.as_str(), jid],
            )],
        );
    }

    /// Appends serialised stanzas to the outbox (durable on return).
    pub fn outbox_push(&self, stanzas: &[String]) -> Result<(), StoreError> {
        if stanzas.is_empty() {
            return Ok(());
        }
        let me = self.instance();
        self.write_wait(
            "queueing stanzas in the outbox",
            stanzas
                .iter()
                .map(|s| {
                    Stmt::new(
                        "INSERT INTO outbox (stanza, instance) VALUES (?1, ?2)",
                        params![s.as_str(), me.as_str()],
                    )
                })
                .collect(),
        )
    }

    /// The oldest outbox entries: (sequence number, stanza). (The
    /// component reads with `outbox_peek_after`; this one serves tests.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        self.query_map(
            "reading the outbox",
            Stmt::new(
                "SELECT seq, stanza FROM outbox WHERE instance = ?2 ORDER BY seq LIMIT ?1",
                params![limit as i64, self.instance()],
            ),
            |r| Ok((r.int(0)?, r.text(1)?)),
        )
    }

    /// The oldest outbox entries after sequence number `after`.
    pub fn outbox_peek_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.query_map(
            "reading the outbox",
            Stmt::new(
                "SELECT seq, stanza FROM outbox WHERE instance = ?3 AND seq > ?1 ORDER BY seq LIMIT ?2",
                params![after, limit as i64, self.instance()],
            ),
            |r| Ok((r.int(0)?, r.text(1)?)),
        )
    }

    /// The number of stanzas in the outbox.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        self.query_opt(
            "counting the outbox",
            Stmt::new(
                "SELECT count(*) FROM outbox WHERE instance = ?1",
                params![self.instance()],
            ),
            |r| r.int(0),
        )
        .map(|n| n.and_then(|n| usize::try_from(n).ok()).unwrap_or(0))
    }

    /// Removes outbox entries up to and including `seq`.
    pub fn outbox_remove(&self, up_to_seq: i64) -> Result<(), StoreError> {
        let me = self.instance();
        self.write_wait(
            "removing sent stanzas from the outbox",
            vec![Stmt::new(
                "DELETE FROM outbox WHERE instance = ?2 AND seq <= ?1",
                params![up_to_seq, me],
            )],
        )
    }

    /// Removes one outbox entry.
    pub fn outbox_delete(&self, seq: i64) -> Result<(), StoreError> {
        self.write_wait(
            "removing a stanza from the outbox",
            vec![Stmt::new("DELETE FROM outbox WHERE seq = ?1", params![seq])],
        )
    }

    /// Waits until every write issued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .writer
            .submit("flushing", Vec::new(), Some(writer::Reply::Async(tx)))?;
        rx.await
            .map_err(|_| StoreError("the database writer has stopped".into()))?
            .map(drop)
    }
}

fn user_row(r: &Row) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        user: UserId::new(r.text(0)?),
        account_name: r.text(1)?,
        registered_at: from_nanos(r.int(2)?),
    })
}

fn archive_row(r: &Row) -> Result<ArchiveEntry, StoreError> {
    Ok(ArchiveEntry {
        user: UserId::new(r.text(0)?),
        room: r.text(1)?,
        id: r.text(2)?,
        timestamp: from_nanos(r.int(3)?),
        nick: r.text(4)?,
        foreign_id: r.opt_text(5)?,
        stanza: r.text(6)?,
    })
}

/// A key/value space of the store.
struct KvSpace {
    store: Store,
    scope: String,
}

impl KvSpace {
    /// What a sealed value is bound to: this space and this key (the scope
    /// is the user's JID, or empty for the bridge-wide space).
    fn seal_context(&self, key: &str) -> Vec<u8> {
        format!("kv\0{}\0{key}", self.scope).into_bytes()
    }
}

impl KeyValue for KvSpace {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.query_opt(
            "reading a value",
            Stmt::new(
                "SELECT value FROM kv WHERE scope = ?1 AND key = ?2",
                params![self.scope.as_str(), key],
            ),
            |r| r.blob(0),
        )
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.store.write_wait(
            "storing a value",
            vec![Stmt::new(
                "INSERT INTO kv (scope, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
                params![self.scope.as_str(), key, value.to_vec()],
            )],
        )
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.write_wait(
            "deleting a value",
            vec![Stmt::new(
                "DELETE FROM kv WHERE scope = ?1 AND key = ?2",
                params![self.scope.as_str(), key],
            )],
        )
    }

    fn put_sealed(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let sealed = self.store.inner.key.seal(value, &self.seal_context(key));
        self.put(key, &sealed)
    }

    fn get_sealed(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(sealed) => self
                .store
                .inner
                .key
                .open(&sealed, &self.seal_context(key))
                .map(Some)
                .map_err(|e| StoreError(format!("secret {key}: {}", e.0))),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = self.store.query_map(
            "listing values",
            Stmt::new(
                "SELECT key, value FROM kv WHERE scope = ?1 AND key >= ?2
                 AND substr(key, 1, length(CAST(?2 AS TEXT))) = ?2 ORDER BY key",
                params![self.scope.as_str(), prefix],
            ),
            |r| Ok((r.text(0)?, r.blob(1)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect())
    }
}

#[cfg(test)]
mod tests;
