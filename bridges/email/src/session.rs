//! One user's email session: starts the inbox watcher, keeps the SMTP
//! transport, and carries out the core's actions — sending mail, marking
//! read mail `\Seen`, the `show-full-text` command — with a clear error
//! for what mail cannot do (corrections, retractions, reactions).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_bridge::{
    Action, Address, BridgeError, CloseReason, CommandCall, CommandReply, ContactInfo, ErrorKind,
    Event, EventSink, LoginError, Outcome, Session, SessionContext,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::Shared;
use crate::outgoing::Outbox;
use crate::parse;
use crate::prefs::Prefs;
use crate::settings::StoredAccount;
use crate::smtp::{self, Transport};
use crate::state::State;
use crate::watcher::{Queue, Request, Watcher};

/// The contact command that shows a mail whole.
pub const FULL_TEXT: &str = "show-full-text";

/// How long closing waits for the watcher to finish the batch it is
/// delivering.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// A user's session.
pub struct EmailSession {
    shared: Arc<Shared>,
    account: Arc<StoredAccount>,
    state: State,
    /// Built on the first mail sent: an idle account holds no SMTP state.
    transport: Option<Transport>,
    queue: Arc<Queue>,
    prefs: Arc<Mutex<Prefs>>,
    events: EventSink,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Starts a session.
pub async fn connect(
    shared: Arc<Shared>,
    ctx: SessionContext,
) -> Result<Box<dyn Session>, LoginError> {
    let account = ctx
        .account
        .as_ref()
        .ok_or_else(|| LoginError::Expired("not registered with the email gateway".into()))?;
    let account = Arc::new(StoredAccount::from_account(account)?);
    let state = State::new(ctx.store.clone());
    let queue = Arc::new(Queue::default());
    let prefs = Arc::new(Mutex::new(Prefs::from_values(&ctx.preferences)));
    let (stop, stop_rx) = watch::channel(false);
    let watcher = Watcher {
        shared: shared.clone(),
        account: account.clone(),
        state: state.clone(),
        events: ctx.events.clone(),
        queue: queue.clone(),
        prefs: prefs.clone(),
        stop: stop_rx,
    };
    let task = ctx.spawner.spawn("email-inbox", watcher.run());
    Ok(Box::new(EmailSession {
        shared,
        account,
        state,
        transport: None,
        queue,
        prefs,
        events: ctx.events.clone(),
        stop,
        task: Some(task),
    }))
}

fn prefs_of(p: &Mutex<Prefs>) -> Prefs {
    p.lock().map(|p| p.clone()).unwrap_or_default()
}

impl EmailSession {
    /// Builds the SMTP transport if this is the first mail.
    async fn ensure_transport(&mut self) -> Result<(), BridgeError> {
        if self.transport.is_none() {
            let ep = &self.account.servers.smtp;
            let addr = smtp::resolve(&self.shared.hosts, ep)
                .await
                .map_err(|e| match e {
                    smtp::SmtpError::HostRefused(r) => {
                        BridgeError::new(ErrorKind::NotAllowed, r.to_string())
                    }
                    other => BridgeError::unavailable(other.to_string()),
                })?;
            let t = smtp::transport(
                &self.shared.tls,
                ep,
                addr,
                &self.account.servers.username,
                &self.account.password,
                Duration::from_secs(self.shared.config.command_timeout),
            )
            .map_err(|e| BridgeError::internal(e.to_string()))?;
            self.transport = Some(t);
        }
        Ok(())
    }

    fn displayed(&self, chat: &Address, up_to: &str) -> Result<Outcome, BridgeError> {
        if !prefs_of(&self.prefs).mark_seen {
            return Ok(Outcome::Done);
        }
        let store = |e: ferry_bridge::StoreError| BridgeError::internal(e.to_string());
        let Some(uid) = self.state.mail(up_to).map_err(store)?.and_then(|r| r.uid) else {
            return Ok(Outcome::Done);
        };
        let peer = match chat {
            Address::Contact(peer) => peer,
            // In a group: the mail read.
            Address::Room(_) => {
                self.queue.push(Request::MarkSeen(vec![uid]));
                return Ok(Outcome::Done);
            }
            _ => return Ok(Outcome::Done),
        };
        let mut conv = self.state.conversation(peer.as_str()).map_err(store)?;
        let (seen, rest): (Vec<u32>, Vec<u32>) = conv.unseen.iter().partition(|u| **u <= uid);
        if seen.is_empty() {
            return Ok(Outcome::Done);
        }
        conv.unseen = rest;
        self.state
            .put_conversation(peer.as_str(), &conv)
            .map_err(store)?;
        self.queue.push(Request::MarkSeen(seen));
        Ok(Outcome::Done)
    }

    async fn full_text(&self, call: CommandCall) -> Result<Outcome, BridgeError> {
        let Some(Address::Contact(peer)) = &call.target else {
            return Err(BridgeError::bad_request(
                "run show-full-text on a contact (alice\\40example.com@this gateway)",
            ));
        };
        let store = |e: ferry_bridge::StoreError| BridgeError::internal(e.to_string());
        let conv = self.state.conversation(peer.as_str()).map_err(store)?;
        let Some(uid) = conv
            .last
            .as_deref()
            .and_then(|id| self.state.mail(id).ok().flatten())
            .and_then(|r| r.uid)
        else {
            return Ok(Outcome::Command(CommandReply::done(format!(
                "No mail from {peer} has arrived through ferry yet."
            ))));
        };
        let (tx, rx) = oneshot::channel();
        self.queue.push(Request::Fetch(uid, tx));
        let raw = tokio::time::timeout(Duration::from_secs(self.shared.config.command_timeout), rx)
            .await
            .map_err(|_| BridgeError::unavailable("the IMAP server is not connected right now"))?
            .map_err(|_| BridgeError::unavailable("the IMAP connection was closed"))?
            .map_err(BridgeError::unavailable)?
            .ok_or_else(|| BridgeError::not_found("that mail is no longer in the inbox"))?;
        let mail = parse::parse(&raw).map_err(|e| BridgeError::remote(e.to_string()))?;
        let mut text = String::new();
        if let Some(s) = &mail.subject {
            text.push_str(&format!("Subject: {s}\n\n"));
        }
        text.push_str(mail.text.trim());
        Ok(Outcome::Command(CommandReply::done(text)))
    }
}

impl EmailSession {
    /// A new group (a mail thread the user starts with several people):
    /// stored with the Message-ID its first mail will carry as its root,
    /// reported to the core, answered with its room.
    async fn open_group(
        &mut self,
        members: Vec<ferry_bridge::ContactId>,
        subject: Option<String>,
    ) -> Result<Outcome, BridgeError> {
        let mut addresses = Vec::new();
        for m in &members {
            let a = crate::address::normalize(m.as_str())
                .map_err(|e| BridgeError::bad_request(format!("{}: {}", m.as_str(), e.0)))?;
            if a != self.account.email && !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        if addresses.is_empty() {
            return Err(BridgeError::bad_request(
                "a group mail needs at least one other address",
            ));
        }
        addresses.sort();
        let root = crate::compose::new_message_id(&self.account.email);
        let id = crate::groups::id_of(&root);
        let g = crate::groups::Group {
            root,
            members: addresses,
            subject: subject
                .as_deref()
                .map(crate::compose::header_text)
                .filter(|s| !s.trim().is_empty()),
            last: None,
            references: Vec::new(),
        };
        self.state
            .put_group(&id, &g)
            .map_err(|e| BridgeError::internal(e.to_string()))?;
        let _ = self
            .events
            .send(crate::groups::joined(&id, &g, &self.account.email))
            .await;
        Ok(Outcome::Room(ferry_bridge::RoomId::new(id)))
    }
}

#[async_trait::async_trait]
impl Session for EmailSession {
    async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        match action {
            Action::SendMessage(msg) => {
                self.ensure_transport().await?;
                // Someone the user writes to for the first time joins the
                // roster, like a correspondent whose mail arrived.
                let new_contact = match &msg.to {
                    Address::Contact(c) => self
                        .state
                        .conversation(c.as_str())
                        .map(|conv| conv.last.is_none())
                        .unwrap_or(false)
                        .then(|| c.clone()),
                    _ => None,
                };
                let Some(transport) = &self.transport else {
                    return Err(BridgeError::internal("no SMTP transport"));
                };
                let chat = msg.to.clone();
                let sent = Outbox {
                    shared: &self.shared,
                    account: &self.account,
                    state: &self.state,
                    transport,
                    queue: &self.queue,
                    prefs: prefs_of(&self.prefs),
                }
                .send(msg)
                .await;
                if let (Ok(_), Some(contact)) = (&sent, new_contact) {
                    let _ = self
                        .events
                        .send(Event::Contact(ContactInfo {
                            contact,
                            name: None,
                            avatar: None,
                            in_roster: true,
                            groups: vec!["Email".into()],
                        }))
                        .await;
                }
                // The submission server accepted the mail: that is the
                // delivery mail can confirm (the XEP-0184 receipt). The
                // core keeps the message, so that a bounce arriving later
                // is an error on it (see the watcher).
                if let Ok(Outcome::Sent(ids)) = &sent {
                    for id in ids {
                        let _ = self
                            .events
                            .send(Event::Delivered {
                                chat: chat.clone(),
                                id: id.clone(),
                            })
                            .await;
                    }
                }
                sent
            }
            Action::Edit { .. } => Err(BridgeError::unsupported(
                "A mail cannot be corrected once it is sent: the correction was not sent. \
                 Write a new message instead.",
            )),
            Action::Retract { .. } => Err(BridgeError::unsupported(
                "A mail cannot be taken back once it is sent.",
            )),
            Action::React { .. } => Err(BridgeError::unsupported(
                "Reactions cannot be sent by mail.",
            )),
            Action::ChatState { .. } | Action::SetPresence(_) => Ok(Outcome::Done),
            Action::Displayed { chat, up_to } => self.displayed(&chat, up_to.as_str()),
            Action::AddContact(_) | Action::RemoveContact(_) => Ok(Outcome::Done),
            Action::Command(call) if call.node == FULL_TEXT => self.full_text(call).await,
            Action::Command(call) => Err(BridgeError::not_found(format!(
                "the email gateway has no command {}",
                call.node
            ))),
            Action::PreferencesChanged(values) => {
                if let Ok(mut p) = self.prefs.lock() {
                    *p = Prefs::from_values(&values);
                }
                Ok(Outcome::Done)
            }
            Action::OpenGroup { members, subject } => self.open_group(members, subject).await,
            Action::JoinRoom { room, .. } if crate::lists::is_list_id(room.as_str()) => {
                let l = self
                    .state
                    .list(room.as_str())
                    .map_err(|e| BridgeError::internal(e.to_string()))?
                    .ok_or_else(|| {
                        BridgeError::not_found(
                            "There is no such mailing list: a list's room opens when its \
                             first mail arrives.",
                        )
                    })?;
                let _ = self
                    .events
                    .send(crate::lists::joined(room.as_str(), &l, &self.account.email))
                    .await;
                Ok(Outcome::Done)
            }
            Action::JoinRoom { room, .. } => {
                let g = self
                    .state
                    .group(room.as_str())
                    .map_err(|e| BridgeError::internal(e.to_string()))?
                    .ok_or_else(|| {
                        BridgeError::not_found(
                            "Email has no rooms to join: write to an address, or open a group \
                             with several addresses.",
                        )
                    })?;
                let _ = self
                    .events
                    .send(crate::groups::joined(
                        room.as_str(),
                        &g,
                        &self.account.email,
                    ))
                    .await;
                Ok(Outcome::Done)
            }
            Action::LeaveRoom { .. } => Ok(Outcome::Done),
            Action::SetSubject { .. }
            | Action::ChangeNick { .. }
            | Action::Kick { .. }
            | Action::SetRole { .. }
            | Action::SetAffiliation { .. }
            | Action::Invite { .. }
            | Action::ListRooms { .. } => Err(BridgeError::unsupported(
                "Email has no rooms to join: write to an address instead.",
            )),
            Action::FetchHistory { .. } => Err(BridgeError::unsupported(
                "Older mail is in your mailbox; ferry does not fetch history.",
            )),
            Action::QueryVersion(_) | Action::Ping(_) => Err(BridgeError::unsupported(
                "Email addresses do not answer version queries or pings.",
            )),
        }
    }

    async fn close(&mut self, reason: CloseReason) {
        let _ = reason;
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(STOP_WAIT, &mut task).await.is_err()
        {
            tracing::warn!(user = %self.account.email, "the inbox watcher did not stop in time");
            task.abort();
        }
    }
}
