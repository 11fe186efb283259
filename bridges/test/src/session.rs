//! One user's session on the test network: what happens when it connects
//! and disconnects, and the actions on contacts, messages and presence.
//! Rooms are in [`crate::room`], the bot in [`crate::echo`], commands in
//! [`crate::commands`].
//!
//! On connect the session reports, in this order: `Connection(Connecting)`,
//! `Connection(Connected("Logged in as NAME"))`, a `Contact` (in the roster)
//! and a `ContactPresence` for every other account and the bot,
//! `ServicePresence` of `server`, `RoomAvailable` for `#lounge`, the
//! messages that arrived while the account had no session, then the
//! persistent rooms it is back in (`RoomJoined`).

use std::sync::Arc;

use async_trait::async_trait;
use ferry_bridge::{
    Action, Address, Avatar, BridgeError, Capabilities, CloseReason, ConnectionState, ContactId,
    ContactInfo, ErrorKind, Event, Feature, FormValues, IncomingMessage, KeyValue, MessageId,
    Outcome, OutgoingMessage, Presence, ReplyTo, RoomId, Sender, ServiceId, Session,
    SessionContext, Spawner, UserId,
};
use tokio::sync::mpsc;

use crate::address::SERVER;
use crate::echo::{self, ECHO};
use crate::state::{Carried, Chat, NetState, Queued, Receipt, SessionEntry, Shared};

/// A session of the test network.
pub(crate) struct TestSession {
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) account: String,
    pub(crate) user: UserId,
    pub(crate) tx: mpsc::UnboundedSender<Queued>,
    pub(crate) store: Arc<dyn KeyValue>,
    pub(crate) spawner: Spawner,
    pub(crate) prefs: FormValues,
    closed: bool,
}

/// Shows a name the way the network displays it ("alice" -> "Alice").
pub(crate) fn display_name(name: &str) -> String {
    if name == ECHO {
        return "Echo bot".into();
    }
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What the network knows about a contact.
pub(crate) fn contact_info(name: &str) -> ContactInfo {
    ContactInfo {
        contact: ContactId::new(name),
        name: Some(display_name(name)),
        avatar: (name == ECHO).then(|| Avatar {
            data: echo::AVATAR_PNG.to_vec(),
            mime: "image/png".into(),
        }),
        in_roster: true,
        groups: vec!["Test network".into()],
    }
}

/// Drains a session's queue into its event sink.
async fn pump(mut rx: mpsc::UnboundedReceiver<Queued>, sink: ferry_bridge::EventSink) {
    while let Some(item) = rx.recv().await {
        match item {
            Queued::Event(e) => {
                if sink.send(e).await.is_err() {
                    break;
                }
            }
            Queued::Message { event, receipt } => {
                if sink.send(event).await.is_err() {
                    break;
                }
                if let Some(r) = receipt {
                    let _ = r.tx.send(Queued::Event(r.event));
                }
            }
            Queued::Sleep(d) => tokio::time::sleep(d).await,
        }
    }
}

/// The error for something whose feature is switched off.
pub(crate) fn need(caps: Capabilities, feature: Feature) -> Result<(), BridgeError> {
    if caps.has(feature) {
        Ok(())
    } else {
        Err(BridgeError::unsupported(format!(
            "the test network does not support {} (switched off by [test] disable)",
            feature.describe()
        )))
    }
}

impl TestSession {
    /// Registers a new session of `account` and queues what a connecting
    /// client learns.
    pub(crate) fn start(shared: Arc<Shared>, account: String, ctx: SessionContext) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        ctx.spawner
            .spawn("test-network-pump", pump(rx, ctx.events.clone()));
        let id = shared.new_session_id();
        let session = TestSession {
            shared: shared.clone(),
            id,
            account: account.clone(),
            user: ctx.user.clone(),
            tx: tx.clone(),
            store: ctx.store.clone(),
            spawner: ctx.spawner.clone(),
            prefs: ctx.preferences.clone(),
            closed: false,
        };
        let caps = shared.caps;
        let mut st = shared.lock();
        let first = st.sessions_of(&account).is_empty();
        st.sessions.insert(
            id,
            SessionEntry {
                account: account.clone(),
                tx: tx.clone(),
            },
        );
        let send = |e: Event| {
            let _ = tx.send(Queued::Event(e));
        };
        send(Event::Connection(ConnectionState::Connecting));
        send(Event::Connection(ConnectionState::Connected(Some(
            format!("Logged in as {account}"),
        ))));
        let contacts: Vec<String> = std::iter::once(ECHO.to_owned())
            .chain(st.accounts.keys().filter(|a| **a != account).cloned())
            .collect();
        if caps.has(Feature::ContactList) {
            for c in &contacts {
                send(Event::Contact(contact_info(c)));
            }
        }
        if caps.has(Feature::ContactPresence) {
            for c in &contacts {
                send(Event::ContactPresence {
                    contact: ContactId::new(c.clone()),
                    presence: st.presence_of(c),
                });
            }
        }
        send(Event::ServicePresence {
            service: ServiceId::new(SERVER),
            presence: Presence::available().with_status("Test network server"),
        });
        if caps.has(Feature::Rooms) {
            send(Event::RoomAvailable {
                room: RoomId::new("#lounge"),
                name: Some("Lounge".into()),
                autojoin: false,
            });
        }
        // the others see this account come online
        if first && caps.has(Feature::ContactPresence) {
            let presence = st.presence_of(&account);
            broadcast_presence(&st, &account, presence);
        }
        // what arrived while the account had no session
        for item in st.offline.remove(&account).unwrap_or_default() {
            let _ = tx.send(item);
        }
        drop(st);
        if caps.has(Feature::Rooms) {
            session.rejoin_persistent_rooms();
        }
        session
    }

    /// Queues an event for this session.
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.tx.send(Queued::Event(event));
    }

    /// The prefix the user wants before the bot's answers.
    pub(crate) fn echo_prefix(&self) -> String {
        self.prefs.get("echo_prefix").unwrap_or_default().to_owned()
    }

    /// Leaves the network: rooms, presence, the session table.
    fn cleanup(&mut self, why: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        tracing::debug!(user = %self.user, account = %self.account, why, "test network session ends");
        let mut st = self.shared.lock();
        st.sessions.remove(&self.id);
        let rooms = st.rooms_of(self.id);
        for room in rooms {
            crate::room::remove_member(
                &mut st,
                &room,
                self.id,
                ferry_bridge::RoomExit::Quit(Some(why.to_owned())),
            );
        }
        if st.sessions_of(&self.account).is_empty()
            && self.shared.caps.has(Feature::ContactPresence)
        {
            broadcast_presence(&st, &self.account, Presence::offline());
        }
    }

    /// Checks a contact exists and is not the user.
    pub(crate) fn contact(
        &self,
        st: &NetState,
        contact: &ContactId,
    ) -> Result<String, BridgeError> {
        let name = contact.as_str();
        if name == self.account {
            return Err(BridgeError::bad_request(
                "that is your own account on the test network",
            ));
        }
        if !st.is_contact(name) {
            return Err(BridgeError::not_found(format!(
                "there is no user {name} on the test network"
            )));
        }
        Ok(name.to_owned())
    }

    /// The reply as the recipient sees it.
    fn reply_for(
        &self,
        st: &NetState,
        reply: &Option<ReplyTo>,
        recipient: &str,
    ) -> Option<ReplyTo> {
        if !self.shared.caps.has(Feature::Replies) {
            return None;
        }
        reply.as_ref().map(|r| ReplyTo {
            id: r.id.clone(),
            author: r.author.as_ref().map(|a| match a {
                Sender::Own => Sender::Contact(ContactId::new(self.account.clone())),
                Sender::Contact(c) if c.as_str() == recipient => Sender::Own,
                other => other.clone(),
            }),
            quote: r
                .quote
                .clone()
                .or_else(|| st.carried.get(&r.id).map(|c| c.body.clone())),
        })
    }

    /// The message as its recipients see it.
    pub(crate) fn incoming(
        &self,
        msg: &OutgoingMessage,
        chat: Address,
        from: Sender,
        id: &MessageId,
    ) -> IncomingMessage {
        let caps = self.shared.caps;
        IncomingMessage {
            chat,
            from,
            id: Some(id.clone()),
            body: msg.body.clone(),
            subject: msg.subject.clone().filter(|_| caps.has(Feature::Subjects)),
            rich: msg.rich.clone().filter(|_| caps.has(Feature::Formatting)),
            kind: msg.kind,
            timestamp: None,
            replaces: None,
            reply_to: None,
            thread: msg.thread.clone().filter(|_| caps.has(Feature::Threads)),
            attachments: msg.attachments.clone(),
            archive_only: false,
        }
    }

    fn send_message(&mut self, msg: OutgoingMessage) -> Result<Outcome, BridgeError> {
        let caps = self.shared.caps;
        if !msg.attachments.is_empty() {
            need(caps, Feature::Attachments)?;
        }
        if msg.body.is_empty() && msg.attachments.is_empty() {
            return Err(BridgeError::bad_request("an empty message cannot be sent"));
        }
        match msg.to.clone() {
            Address::Contact(c) => self.send_direct(&c, msg),
            Address::Room(room) => crate::room::send(self, &room, msg),
            Address::Occupant { room, nick } => crate::room::send_private(self, &room, &nick, msg),
            Address::Service(s) => self.send_service(&s, &msg),
        }
    }

    fn send_direct(
        &mut self,
        to: &ContactId,
        msg: OutgoingMessage,
    ) -> Result<Outcome, BridgeError> {
        if to.as_str() == ECHO && msg.body.trim() == "panic" {
            // the crash-isolation test: a panic in `act`, outside any lock
            panic!("test network: the echo bot was asked to panic");
        }
        let id = self.shared.new_id();
        if let Some(ctx) = self.shared.bridge() {
            // For the /fail endpoint, also after a restart.
            let key = crate::state::Shared::last_key(&self.account, to.as_str());
            ctx.store.put(&key, id.as_str().as_bytes())?;
        }
        let mut st = self.shared.lock();
        let to = self.contact(&st, to)?;
        st.carried.insert(
            id.clone(),
            Carried {
                author: self.account.clone(),
                chat: Chat::direct(&self.account, &to),
                body: msg.body.clone(),
            },
        );
        // the user's other sessions see what they sent
        let mut own = self.incoming(
            &msg,
            Address::Contact(ContactId::new(to.clone())),
            Sender::Own,
            &id,
        );
        own.reply_to = msg
            .reply_to
            .clone()
            .filter(|_| self.shared.caps.has(Feature::Replies));
        for s in st.sessions_of(&self.account) {
            if s != self.id {
                st.event_to_session(s, Event::Message(own.clone()));
            }
        }
        if to == ECHO {
            echo::answer(self, &mut st, &msg, &id);
            return Ok(Outcome::sent(id));
        }
        let mut incoming = self.incoming(
            &msg,
            Address::Contact(ContactId::new(self.account.clone())),
            Sender::Contact(ContactId::new(self.account.clone())),
            &id,
        );
        incoming.reply_to = self.reply_for(&st, &msg.reply_to, &to);
        let receipt = self.shared.caps.has(Feature::DeliveryReceipts).then(|| {
            Box::new(Receipt {
                tx: self.tx.clone(),
                event: Event::Delivered {
                    chat: Address::Contact(ContactId::new(to.clone())),
                    id: id.clone(),
                },
            })
        });
        st.message_to_account(&to, Event::Message(incoming), receipt);
        Ok(Outcome::sent(id))
    }

    fn send_service(
        &mut self,
        service: &ServiceId,
        msg: &OutgoingMessage,
    ) -> Result<Outcome, BridgeError> {
        if service.as_str() != SERVER {
            return Err(BridgeError::not_found(format!(
                "the test network has no service {service}"
            )));
        }
        let text = match msg.body.trim() {
            "help" => "Commands of the server: help, motd, time".to_owned(),
            "motd" => "Welcome to the test network".to_owned(),
            "time" => "It is always test time here".to_owned(),
            other => format!("Unknown command {other:?}: try help"),
        };
        let id = self.shared.new_id();
        let mut answer =
            IncomingMessage::text(Address::Service(service.clone()), Sender::Service, text);
        answer.kind = ferry_bridge::MessageKind::Notice;
        answer.id = Some(self.shared.new_id());
        self.emit(Event::Message(answer));
        Ok(Outcome::sent(id))
    }

    /// Finds a message the user may edit or retract, checking it was theirs
    /// and written where they say.
    fn own_message(
        &self,
        st: &NetState,
        target: &MessageId,
        what: &str,
    ) -> Result<Carried, BridgeError> {
        let carried = st.carried.get(target).cloned().ok_or_else(|| {
            BridgeError::not_found(format!("there is no message {target} to {what}"))
        })?;
        if carried.author != self.account {
            return Err(BridgeError::new(
                ErrorKind::NotAllowed,
                format!("you can only {what} your own messages"),
            ));
        }
        Ok(carried)
    }

    fn edit(&mut self, msg: OutgoingMessage, replaces: MessageId) -> Result<Outcome, BridgeError> {
        if msg.body.is_empty() {
            return Err(BridgeError::bad_request("a correction needs a text"));
        }
        let id = self.shared.new_id();
        let mut st = self.shared.lock();
        let original = self.own_message(&st, &replaces, "correct")?;
        st.carried.insert(
            id.clone(),
            Carried {
                author: self.account.clone(),
                chat: original.chat.clone(),
                body: msg.body.clone(),
            },
        );
        let me = ContactId::new(self.account.clone());
        match msg.to.clone() {
            Address::Contact(c) if c.as_str() == ECHO => {
                echo::edit(self, &mut st, &msg, &replaces);
            }
            Address::Contact(c) => {
                let to = self.contact(&st, &c)?;
                if original.chat != Chat::direct(&self.account, &to) {
                    return Err(BridgeError::bad_request(format!(
                        "message {replaces} was not sent to {to}"
                    )));
                }
                let mut m =
                    self.incoming(&msg, Address::Contact(me.clone()), Sender::Contact(me), &id);
                m.replaces = Some(replaces);
                st.message_to_account(&to, Event::Message(m), None);
            }
            Address::Room(room) => {
                let nick = crate::room::my_nick(&st, &room, self.id)?;
                if original.chat != Chat::Room(room.clone()) {
                    return Err(BridgeError::bad_request(format!(
                        "message {replaces} was not sent to {room}"
                    )));
                }
                let mut m = self.incoming(
                    &msg,
                    Address::Room(room.clone()),
                    Sender::Occupant(nick),
                    &id,
                );
                m.replaces = Some(replaces);
                st.to_room(&room, &Event::Message(m), Some(self.id));
            }
            Address::Occupant { room, nick } => {
                let (mine, target) = crate::room::pm_target(&st, &room, &nick, self.id)?;
                let mut m = self.incoming(
                    &msg,
                    Address::Occupant {
                        room: room.clone(),
                        nick: mine.clone(),
                    },
                    Sender::Occupant(mine),
                    &id,
                );
                m.replaces = Some(replaces);
                if let Some(session) = target {
                    st.event_to_session(session, Event::Message(m));
                }
            }
            Address::Service(_) => {
                return Err(BridgeError::bad_request(
                    "messages to the server cannot be corrected",
                ));
            }
        }
        Ok(Outcome::sent(id))
    }

    fn retract(
        &mut self,
        chat: Address,
        target: MessageId,
        moderate: Option<Option<String>>,
    ) -> Result<Outcome, BridgeError> {
        if let Some(reason) = moderate {
            return crate::room::moderate(self, &chat, &target, reason);
        }
        let mut st = self.shared.lock();
        let original = self.own_message(&st, &target, "retract")?;
        let me = ContactId::new(self.account.clone());
        match &chat {
            Address::Contact(c) if c.as_str() == ECHO => echo::retract(self, &mut st, &target),
            Address::Contact(c) => {
                let to = self.contact(&st, c)?;
                if original.chat != Chat::direct(&self.account, &to) {
                    return Err(BridgeError::bad_request(format!(
                        "message {target} was not sent to {to}"
                    )));
                }
                st.event_to_account(
                    &to,
                    &Event::Retracted {
                        chat: Address::Contact(me.clone()),
                        by: Sender::Contact(me),
                        target,
                        moderated: None,
                    },
                );
            }
            Address::Room(room) => {
                let nick = crate::room::my_nick(&st, room, self.id)?;
                st.to_room(
                    room,
                    &Event::Retracted {
                        chat: chat.clone(),
                        by: Sender::Occupant(nick),
                        target,
                        moderated: None,
                    },
                    Some(self.id),
                );
            }
            Address::Occupant { room, nick } => {
                let (mine, session) = crate::room::pm_target(&st, room, nick, self.id)?;
                if let Some(session) = session {
                    st.event_to_session(
                        session,
                        Event::Retracted {
                            chat: Address::Occupant {
                                room: room.clone(),
                                nick: mine.clone(),
                            },
                            by: Sender::Occupant(mine),
                            target,
                            moderated: None,
                        },
                    );
                }
            }
            Address::Service(_) => {
                return Err(BridgeError::bad_request(
                    "messages to the server cannot be retracted",
                ));
            }
        }
        Ok(Outcome::Done)
    }

    fn react(
        &mut self,
        chat: Address,
        target: MessageId,
        emojis: Vec<String>,
    ) -> Result<Outcome, BridgeError> {
        if let Some(bad) = emojis.iter().find(|e| e.is_empty() || e.len() > 64) {
            return Err(BridgeError::bad_request(format!(
                "{bad:?} is not a reaction the test network accepts"
            )));
        }
        let mut st = self.shared.lock();
        if !st.carried.contains_key(&target) && !crate::room::is_history_id(&target) {
            return Err(BridgeError::not_found(format!(
                "there is no message {target} to react to"
            )));
        }
        let me = ContactId::new(self.account.clone());
        match &chat {
            Address::Contact(c) if c.as_str() == ECHO => {
                echo::react(self, &mut st, &target, &emojis)
            }
            Address::Contact(c) => {
                let to = self.contact(&st, c)?;
                st.event_to_account(
                    &to,
                    &Event::Reactions {
                        chat: Address::Contact(me.clone()),
                        from: Sender::Contact(me),
                        target,
                        emojis,
                    },
                );
            }
            Address::Room(room) => {
                let nick = crate::room::my_nick(&st, room, self.id)?;
                st.to_room(
                    room,
                    &Event::Reactions {
                        chat: chat.clone(),
                        from: Sender::Occupant(nick),
                        target,
                        emojis,
                    },
                    Some(self.id),
                );
            }
            Address::Occupant { room, nick } => {
                let (mine, session) = crate::room::pm_target(&st, room, nick, self.id)?;
                if let Some(session) = session {
                    st.event_to_session(
                        session,
                        Event::Reactions {
                            chat: Address::Occupant {
                                room: room.clone(),
                                nick: mine.clone(),
                            },
                            from: Sender::Occupant(mine),
                            target,
                            emojis,
                        },
                    );
                }
            }
            Address::Service(_) => {
                return Err(BridgeError::bad_request("the server takes no reactions"));
            }
        }
        Ok(Outcome::Done)
    }

    fn chat_state(
        &mut self,
        chat: Address,
        state: ferry_bridge::ChatState,
    ) -> Result<Outcome, BridgeError> {
        let st = self.shared.lock();
        let me = ContactId::new(self.account.clone());
        match &chat {
            Address::Contact(c) if c.as_str() == ECHO => echo::chat_state(self, &st, state),
            Address::Contact(c) => {
                let to = self.contact(&st, c)?;
                st.event_to_account(
                    &to,
                    &Event::ChatState {
                        chat: Address::Contact(me.clone()),
                        from: Sender::Contact(me),
                        state,
                    },
                );
            }
            Address::Room(room) => {
                let nick = crate::room::my_nick(&st, room, self.id)?;
                st.to_room(
                    room,
                    &Event::ChatState {
                        chat: chat.clone(),
                        from: Sender::Occupant(nick),
                        state,
                    },
                    Some(self.id),
                );
            }
            Address::Occupant { room, nick } => {
                let (mine, session) = crate::room::pm_target(&st, room, nick, self.id)?;
                if let Some(session) = session {
                    st.event_to_session(
                        session,
                        Event::ChatState {
                            chat: Address::Occupant {
                                room: room.clone(),
                                nick: mine.clone(),
                            },
                            from: Sender::Occupant(mine),
                            state,
                        },
                    );
                }
            }
            Address::Service(_) => {}
        }
        Ok(Outcome::Done)
    }

    fn displayed(&mut self, chat: Address, up_to: MessageId) -> Result<Outcome, BridgeError> {
        let st = self.shared.lock();
        let me = ContactId::new(self.account.clone());
        // the user's other sessions learn it was read elsewhere
        for s in st.sessions_of(&self.account) {
            if s != self.id {
                st.event_to_session(
                    s,
                    Event::Displayed {
                        chat: chat.clone(),
                        by: Sender::Own,
                        up_to: up_to.clone(),
                    },
                );
            }
        }
        match &chat {
            Address::Contact(c) if c.as_str() == ECHO => {}
            Address::Contact(c) => {
                let to = self.contact(&st, c)?;
                st.event_to_account(
                    &to,
                    &Event::Displayed {
                        chat: Address::Contact(me.clone()),
                        by: Sender::Contact(me),
                        up_to,
                    },
                );
            }
            Address::Room(room) => {
                let nick = crate::room::my_nick(&st, room, self.id)?;
                st.to_room(
                    room,
                    &Event::Displayed {
                        chat: chat.clone(),
                        by: Sender::Occupant(nick),
                        up_to,
                    },
                    Some(self.id),
                );
            }
            Address::Occupant { .. } | Address::Service(_) => {}
        }
        Ok(Outcome::Done)
    }

    fn set_presence(&mut self, presence: Presence) -> Result<Outcome, BridgeError> {
        let mut st = self.shared.lock();
        st.presence.insert(self.account.clone(), presence.clone());
        if self.shared.caps.has(Feature::ContactPresence) {
            broadcast_presence(&st, &self.account, presence.clone());
        }
        crate::room::presence_changed(&mut st, self.id, &presence);
        Ok(Outcome::Done)
    }

    fn add_contact(&mut self, contact: ContactId) -> Result<Outcome, BridgeError> {
        let st = self.shared.lock();
        let name = self.contact(&st, &contact)?;
        if self.shared.caps.has(Feature::ContactList) {
            self.emit(Event::Contact(contact_info(&name)));
        }
        if self.shared.caps.has(Feature::ContactPresence) {
            self.emit(Event::ContactPresence {
                contact: ContactId::new(name.clone()),
                presence: st.presence_of(&name),
            });
        }
        Ok(Outcome::Done)
    }

    fn query_version(&self, address: &Address) -> Result<Outcome, BridgeError> {
        match self.reachable(address)? {
            Reach::Bot => Ok(Outcome::Version {
                name: "TestNet bot".into(),
                version: "1.0".into(),
                os: Some("TestOS".into()),
            }),
            Reach::User => Ok(Outcome::Version {
                name: "TestNet client".into(),
                version: "1.0".into(),
                os: None,
            }),
            Reach::Server => Ok(Outcome::Version {
                name: "TestNet server".into(),
                version: "1.0".into(),
                os: None,
            }),
        }
    }

    /// Whether something answers on the network, and what it is.
    fn reachable(&self, address: &Address) -> Result<Reach, BridgeError> {
        let st = self.shared.lock();
        let online = |account: &str| {
            if st.sessions_of(account).is_empty() {
                Err(BridgeError::unavailable(format!(
                    "{account} is not connected to the test network"
                )))
            } else {
                Ok(Reach::User)
            }
        };
        match address {
            Address::Contact(c) if c.as_str() == ECHO => Ok(Reach::Bot),
            Address::Contact(c) if c.as_str() == self.account => Ok(Reach::User),
            Address::Contact(c) => {
                let name = self.contact(&st, c)?;
                online(&name)
            }
            Address::Occupant { room, nick } => {
                let r = st
                    .rooms
                    .get(room)
                    .ok_or_else(|| BridgeError::not_found(format!("there is no room {room}")))?;
                if nick == ECHO {
                    return Ok(Reach::Bot);
                }
                let m = r.by_nick(nick).ok_or_else(|| {
                    BridgeError::not_found(format!("nobody is called {nick} in {room}"))
                })?;
                online(&m.account.clone())
            }
            Address::Service(_) => Ok(Reach::Server),
            Address::Room(room) => Err(BridgeError::bad_request(format!(
                "{room} is a room, not somebody"
            ))),
        }
    }
}

enum Reach {
    Bot,
    User,
    Server,
}

/// Tells every session of every other account about an account's presence.
pub(crate) fn broadcast_presence(st: &NetState, account: &str, presence: Presence) {
    let event = Event::ContactPresence {
        contact: ContactId::new(account),
        presence,
    };
    for (id, s) in &st.sessions {
        if s.account != account {
            st.event_to_session(*id, event.clone());
        }
    }
}

#[async_trait]
impl Session for TestSession {
    async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        // The core never sends an action whose feature is not declared;
        // sessions driven without it (the tests) are held to the same rule.
        if let Some(feature) = action.feature() {
            need(self.shared.caps, feature)?;
        }
        match action {
            Action::SendMessage(msg) => self.send_message(msg),
            Action::Edit { message, replaces } => self.edit(message, replaces),
            Action::Retract {
                chat,
                target,
                moderate,
            } => self.retract(chat, target, moderate),
            Action::React {
                chat,
                target,
                emojis,
            } => self.react(chat, target, emojis),
            Action::ChatState { chat, state } => self.chat_state(chat, state),
            Action::Displayed { chat, up_to } => self.displayed(chat, up_to),
            Action::JoinRoom {
                room,
                nick,
                password,
            } => crate::room::join(self, &room, &nick, password.as_deref()),
            Action::LeaveRoom { room, reason } => crate::room::leave(self, &room, reason),
            Action::SetSubject { room, subject } => crate::room::set_subject(self, &room, subject),
            Action::ChangeNick { room, nick } => crate::room::change_nick(self, &room, &nick),
            Action::Kick { room, nick, reason } => {
                crate::room::set_role(self, &room, &nick, ferry_bridge::Role::None, reason)
            }
            Action::SetRole {
                room,
                nick,
                role,
                reason,
            } => crate::room::set_role(self, &room, &nick, role, reason),
            Action::SetAffiliation {
                room,
                target,
                affiliation,
                reason,
            } => crate::room::set_affiliation(self, &room, &target, affiliation, reason),
            Action::Invite {
                room,
                invitee,
                reason,
            } => crate::room::invite(self, &room, &invitee, reason),
            Action::SetPresence(p) => self.set_presence(p),
            Action::AddContact(c) => self.add_contact(c),
            Action::RemoveContact(c) => {
                let st = self.shared.lock();
                self.contact(&st, &c)?;
                Ok(Outcome::Done)
            }
            Action::FetchHistory {
                chat,
                before,
                limit,
            } => crate::room::history(self, &chat, before.as_ref(), limit),
            Action::ListRooms { service } => {
                if let Some(s) = service.filter(|s| s.as_str() != SERVER) {
                    return Err(BridgeError::not_found(format!(
                        "the test network has no service {s}"
                    )));
                }
                Ok(crate::room::list(self))
            }
            Action::QueryVersion(a) => self.query_version(&a),
            Action::Ping(a) => self.reachable(&a).map(|_| Outcome::Done),
            Action::Command(call) => crate::commands::run(self, call),
            Action::OpenGroup { members, subject } => {
                crate::room::open_group(self, &members, subject)
            }
            Action::PreferencesChanged(values) => {
                self.prefs = values;
                Ok(Outcome::Done)
            }
        }
    }

    async fn close(&mut self, reason: CloseReason) {
        self.cleanup(&reason.to_string());
    }
}

impl Drop for TestSession {
    fn drop(&mut self) {
        // a session dropped without close() (after a panic) lost its connection
        self.cleanup("Connection lost");
    }
}
