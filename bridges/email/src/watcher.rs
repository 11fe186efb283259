//! The inbox watcher of one account: a background task that keeps one
//! IMAP connection, delivers new mail in batches and waits for more with
//! IDLE (renewed before the server's 29 minutes) or by polling when the
//! server has no IDLE, reconnecting with exponential backoff.
//!
//! Nothing is lost or doubled: the UIDVALIDITY and the last UID are saved
//! only after the core has stored a batch ([`EventSink::flush`]), so mail
//! that arrived while ferry was down is delivered at the next start, and
//! every delivered Message-ID is recorded so that a batch repeated after a
//! crash (or a mailbox whose UIDVALIDITY changed) is not shown twice.
//!
//! The same connection serves the session's requests (mark `\Seen`,
//! append to Sent, fetch a whole mail): a request interrupts IDLE, runs,
//! and IDLE starts again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_bridge::{
    Address, BridgeError, ConnectionState, ContactId, ErrorKind, Event, EventSink, MessageId,
    RoomId,
};
use tokio::sync::{Notify, oneshot, watch};

use crate::Shared;
use crate::imap::{self, Connection, ImapError, Timeouts, Woken};
use crate::incoming;
use crate::parse;
use crate::prefs::Prefs;
use crate::settings::StoredAccount;
use crate::state::{Position, State};

/// Something the session needs done on the IMAP connection.
pub enum Request {
    /// Add `\Seen` to these UIDs.
    MarkSeen(Vec<u32>),
    /// Append a sent mail to the Sent folder.
    AppendSent(Vec<u8>),
    /// Fetch one whole mail.
    Fetch(u32, oneshot::Sender<Result<Option<Vec<u8>>, String>>),
}

/// The requests waiting for the connection, and the bell that wakes it.
#[derive(Default)]
pub struct Queue {
    items: Mutex<VecDeque<Request>>,
    bell: Notify,
}

impl Queue {
    /// Queues a request and interrupts IDLE.
    pub fn push(&self, r: Request) {
        if let Ok(mut q) = self.items.lock() {
            q.push_back(r);
        }
        self.bell.notify_one();
    }

    fn take(&self) -> Vec<Request> {
        self.items
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn requeue(&self, mut rs: Vec<Request>) {
        if let Ok(mut q) = self.items.lock() {
            for r in rs.drain(..).rev() {
                q.push_front(r);
            }
        }
    }
}

/// Everything the task needs.
pub struct Watcher {
    /// Bridge-wide state.
    pub shared: Arc<Shared>,
    /// The account.
    pub account: Arc<StoredAccount>,
    /// Persisted state.
    pub state: State,
    /// Where events go.
    pub events: EventSink,
    /// The session's requests.
    pub queue: Arc<Queue>,
    /// Current preferences.
    pub prefs: Arc<Mutex<Prefs>>,
    /// Set to true to stop (between batches).
    pub stop: watch::Receiver<bool>,
}

enum Exit {
    Stopped,
    Lost(ImapError),
}

impl Watcher {
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(self.shared.config.connect_timeout),
            command: Duration::from_secs(self.shared.config.command_timeout),
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn emit(&self, e: Event) {
        let _ = self.events.send(e).await;
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        let max = Duration::from_secs(self.shared.config.reconnect_max_delay.max(1));
        let mut backoff = Duration::from_secs(1);
        let mut told_polling = false;
        let mut first = true;
        while !self.stopped() {
            if first {
                self.emit(Event::Connection(ConnectionState::Connecting))
                    .await;
            }
            let a = self.account.clone();
            let login = imap::login(
                &self.shared.tls,
                &self.shared.hosts,
                &a.servers.imap,
                &a.servers.username,
                &a.password,
                self.timeouts(),
            )
            .await;
            let mut conn = match login {
                Ok(c) => c,
                Err(e) => {
                    let state = match &e {
                        ImapError::BadCredentials(_) => ConnectionState::LoginRequired(format!(
                            "{e}. Register again with the new password."
                        )),
                        _ => ConnectionState::Reconnecting(e.to_string()),
                    };
                    tracing::info!(user = %self.events.user(), "IMAP login failed: {e}");
                    self.emit(Event::Connection(state)).await;
                    first = false;
                    if !self.sleep(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(max);
                    continue;
                }
            };
            backoff = Duration::from_secs(1);
            first = false;
            let mode = if conn.caps.idle {
                ""
            } else {
                " (polling: no IDLE)"
            };
            self.emit(Event::Connection(ConnectionState::Connected(Some(
                format!("Logged in as {}{mode}", a.email),
            ))))
            .await;
            if !conn.caps.idle && !told_polling {
                told_polling = true;
                self.emit(Event::Notice(format!(
                    "Your IMAP server {} does not support IDLE, so new mail cannot be pushed: \
                     ferry checks your inbox every {} seconds instead.",
                    a.servers.imap.host, self.shared.config.poll_interval
                )))
                .await;
            }
            match self.serve(&mut conn).await {
                Exit::Stopped => {
                    conn.logout().await;
                    break;
                }
                Exit::Lost(e) => {
                    tracing::info!(user = %self.events.user(), "IMAP connection lost: {e}");
                    self.emit(Event::Connection(ConnectionState::Reconnecting(
                        e.to_string(),
                    )))
                    .await;
                    if !self.sleep(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }

    /// Sleeps unless stopped first; false when stopped.
    async fn sleep(&mut self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    async fn serve(&mut self, conn: &mut Connection) -> Exit {
        let idle_for = Duration::from_secs(self.shared.config.idle_timeout);
        let poll = Duration::from_secs(self.shared.config.poll_interval);
        // The first look after a (re)connection finds mail that waited.
        let mut waited = true;
        loop {
            if self.stopped() {
                return Exit::Stopped;
            }
            if let Err(e) = self.sync(conn, waited).await {
                return e;
            }
            waited = false;
            if let Err(e) = self.requests(conn).await {
                return Exit::Lost(e);
            }
            if self.stopped() {
                return Exit::Stopped;
            }
            if conn.pending_news() {
                continue;
            }
            let queue = self.queue.clone();
            let mut stop = self.stop.clone();
            let wake = async move {
                tokio::select! {
                    () = queue.bell.notified() => {},
                    _ = stop.wait_for(|s| *s) => {},
                }
            };
            if conn.caps.idle {
                match conn.idle(idle_for, wake).await {
                    Ok(Woken::NewData | Woken::Timeout | Woken::Interrupted) => {}
                    Err(e) => return Exit::Lost(e),
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep(poll) => {},
                    () = wake => {},
                }
                if let Err(e) = conn.noop().await {
                    return Exit::Lost(e);
                }
            }
        }
    }

    /// Runs the queued requests.
    async fn requests(&mut self, conn: &mut Connection) -> Result<(), ImapError> {
        let mut pending = self.queue.take();
        while !pending.is_empty() {
            let r = pending.remove(0);
            let result = match r {
                Request::MarkSeen(uids) => conn.mark_seen(&uids).await,
                Request::AppendSent(raw) => match conn.sent_folder().await {
                    Ok(folder) => conn.append(&folder, &raw).await,
                    Err(e) => Err(e),
                },
                Request::Fetch(uid, reply) => {
                    let r = conn.fetch_one(uid).await;
                    let _ = reply.send(r.clone().map_err(|e| e.to_string()));
                    r.map(|_| ())
                }
            };
            if let Err(e) = result {
                // The connection is gone: what is left waits for the next one.
                self.queue.requeue(pending);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Delivers every mail above the saved position.
    async fn sync(&mut self, conn: &mut Connection, waited: bool) -> Result<(), Exit> {
        let inbox = conn.select_inbox().await.map_err(Exit::Lost)?;
        let saved = self
            .state
            .position()
            .map_err(|e| Exit::Lost(ImapError::Protocol(e.to_string())))?;
        let now = || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let (mut pos, uids) = match saved {
            Some(p) if p.uid_validity == inbox.uid_validity => {
                let uids = conn.uids_after(p.last_uid).await.map_err(Exit::Lost)?;
                (p, uids)
            }
            Some(p) => {
                // The UIDs were renumbered: look again at the mail since the
                // day of the last save; what was delivered before is
                // recognised by its Message-ID.
                tracing::warn!(
                    user = %self.events.user(),
                    old = p.uid_validity,
                    new = inbox.uid_validity,
                    "UIDVALIDITY changed"
                );
                let uids = conn.uids_since(p.saved_at).await.map_err(Exit::Lost)?;
                let p = Position {
                    uid_validity: inbox.uid_validity,
                    last_uid: 0,
                    saved_at: p.saved_at,
                };
                (p, uids)
            }
            None => {
                // First start: mail already in the inbox is history, not news.
                let last = match inbox.uid_next {
                    Some(n) => n.saturating_sub(1),
                    None => conn
                        .uids_after(0)
                        .await
                        .map_err(Exit::Lost)?
                        .last()
                        .copied()
                        .unwrap_or(0),
                };
                let p = Position {
                    uid_validity: inbox.uid_validity,
                    last_uid: last,
                    saved_at: now(),
                };
                self.state
                    .set_position(p)
                    .map_err(|e| Exit::Lost(ImapError::Protocol(e.to_string())))?;
                let uids = conn.uids_after(p.last_uid).await.map_err(Exit::Lost)?;
                (p, uids)
            }
        };
        for batch in uids.chunks(self.shared.config.fetch_batch) {
            let fetched = conn
                .fetch(batch, self.shared.config.max_message_bytes)
                .await
                .map_err(Exit::Lost)?;
            self.deliver(&fetched, waited).await.map_err(Exit::Lost)?;
            if let Some(last) = batch.last() {
                pos.last_uid = pos.last_uid.max(*last);
            }
            pos.saved_at = now();
            self.state
                .set_position(pos)
                .map_err(|e| Exit::Lost(ImapError::Protocol(e.to_string())))?;
            if self.stopped() {
                return Err(Exit::Stopped);
            }
        }
        Ok(())
    }

    /// Hands a batch to the core and records it once stored.
    async fn deliver(&mut self, fetched: &[imap::Fetched], waited: bool) -> Result<(), ImapError> {
        let store_err = |e: ferry_bridge::StoreError| ImapError::Protocol(e.to_string());
        let prefs = self.prefs.lock().map(|p| p.clone()).unwrap_or_default();
        let own = self.account.email.clone();
        let now = SystemTime::now();
        let mut records = Vec::new();
        let mut conversations: Vec<(String, crate::state::Conversation)> = Vec::new();
        let mut groups: Vec<(String, crate::groups::Group)> = Vec::new();
        let mut lists: Vec<(String, crate::lists::List)> = Vec::new();
        for f in fetched {
            let mail = match parse::parse(&f.raw) {
                Ok(m) => m,
                Err(e) => {
                    self.emit(Event::Notice(format!(
                        "A mail (UID {}) could not be read ({e}); it is in your inbox.",
                        f.uid
                    )))
                    .await;
                    continue;
                }
            };
            if let Some(mid) = &mail.message_id
                && (self.state.mail(mid).map_err(store_err)?.is_some()
                    || records.iter().any(|(id, _)| id == mid))
            {
                continue;
            }
            if let Some(d) = &mail.displayed {
                // A read receipt for a mail the user sent: a read marker.
                if let Some(sent) = self.state.mail(&d.original_id).map_err(store_err)?
                    && sent.uid.is_none()
                    && let Some(from) = &mail.from
                {
                    let contact = ContactId::new(from.address.clone());
                    self.emit(Event::Displayed {
                        chat: ferry_bridge::Address::Contact(ContactId::new(sent.peer.clone())),
                        by: ferry_bridge::Sender::Contact(contact),
                        up_to: ferry_bridge::MessageId::new(d.original_id.clone()),
                    })
                    .await;
                }
                if let Some(mid) = &mail.message_id {
                    records.push((
                        mid.clone(),
                        crate::state::MailRecord {
                            uid: Some(f.uid),
                            thread: mid.clone(),
                            ..Default::default()
                        },
                    ));
                }
                continue;
            }
            if let Some(b) = &mail.bounce {
                self.bounce(&mail, b).await;
                if let Some(mid) = &mail.message_id {
                    records.push((
                        mid.clone(),
                        crate::state::MailRecord {
                            uid: Some(f.uid),
                            thread: mid.clone(),
                            ..Default::default()
                        },
                    ));
                }
                continue;
            }
            let peer = mail
                .from
                .as_ref()
                .map(|p| p.address.clone())
                .unwrap_or_default();
            let conv = match conversations.iter().find(|(p, _)| *p == peer) {
                Some((_, c)) => c.clone(),
                None => self.state.conversation(&peer).map_err(store_err)?,
            };
            let at = incoming::Arrival {
                uid: f.uid,
                size: f.size,
                header_only: f.header_only,
                waited,
            };
            let mut d = incoming::deliver(&mail, at, &own, &prefs, conv, now);
            let list_room = mail
                .list_id
                .as_deref()
                .filter(|_| prefs.lists == crate::prefs::Lists::Room)
                .and_then(crate::lists::identity)
                .map(|(ident, _)| crate::lists::id_of(&ident));
            if let Some(id) = list_room {
                let stored = match lists.iter().find(|(l, _)| *l == id) {
                    Some((_, l)) => Some(l.clone()),
                    None => self.state.list(&id).map_err(store_err)?,
                };
                if let Some((id, l)) = crate::lists::relist(&mut d, &mail, &own, stored) {
                    lists.retain(|(i, _)| *i != id);
                    lists.push((id, l));
                }
            } else if crate::groups::members_of(&mail, &own).is_some() {
                let root = mail
                    .thread_root()
                    .or(mail.message_id.as_deref())
                    .map(crate::groups::id_of);
                let stored = match root {
                    Some(id) => match groups.iter().find(|(g, _)| *g == id) {
                        Some((_, g)) => Some(g.clone()),
                        None => self.state.group(&id).map_err(store_err)?,
                    },
                    None => None,
                };
                if let Some((id, g)) = crate::groups::regroup(&mut d, &mail, &own, stored) {
                    groups.retain(|(i, _)| *i != id);
                    groups.push((id, g));
                }
            }
            for e in d.events {
                self.emit(e).await;
            }
            if let Some(r) = d.record {
                records.push(r);
            }
            if let Some((peer, conv)) = d.conversation {
                conversations.retain(|(p, _)| *p != peer);
                conversations.push((peer, conv));
            }
        }
        // The core has stored everything before the position moves.
        self.events
            .flush()
            .await
            .map_err(|_| ImapError::Protocol("the gateway is shutting down".into()))?;
        for (id, r) in &records {
            self.state.put_mail(id, r).map_err(store_err)?;
        }
        for (peer, c) in &conversations {
            self.state.put_conversation(peer, c).map_err(store_err)?;
        }
        for (id, g) in &groups {
            self.state.put_group(id, g).map_err(store_err)?;
        }
        for (id, l) in &lists {
            self.state.put_list(id, l).map_err(store_err)?;
        }
        Ok(())
    }

    async fn bounce(&self, mail: &parse::Mail, b: &crate::dsn::Bounce) {
        let original = b.original_id.as_deref().and_then(|id| {
            self.state
                .mail(id)
                .ok()
                .flatten()
                .map(|r| (id.to_owned(), r))
        });
        let to = if b.recipients.is_empty() {
            original
                .as_ref()
                .map(|(_, r)| r.peer.clone())
                .unwrap_or_default()
        } else {
            b.recipients.join(", ")
        };
        let what = if b.permanent {
            "could not be delivered"
        } else {
            "is delayed"
        };
        let subject = original
            .as_ref()
            .and_then(|(_, r)| r.subject.clone())
            .or_else(|| mail.subject.clone())
            .unwrap_or_default();
        let text = format!("Your mail to {to} ({subject}) {what}: {}", b.reason);
        match original {
            // One of the user's mails sent through the gateway: an error on
            // that message.
            Some((id, r)) if r.uid.is_none() => {
                let kind = if b.permanent {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Unavailable
                };
                let reason = if b.permanent {
                    format!("the mail server reported: {}", b.reason)
                } else {
                    format!("delayed; the mail server reported: {}", b.reason)
                };
                // A mail written in a group or list room fails there.
                let chat = match r.room {
                    Some(room) => Address::Room(RoomId::new(room)),
                    None => Address::Contact(ContactId::new(r.peer)),
                };
                self.emit(Event::DeliveryFailed {
                    chat,
                    id: MessageId::new(id),
                    error: BridgeError::new(kind, reason),
                    permanent: b.permanent,
                })
                .await;
            }
            _ => self.emit(Event::Notice(text)).await,
        }
    }
}
