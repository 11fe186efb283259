//! One-to-one conversations (with contacts, services and room occupants),
//! both ways: a user's `<message/>` becomes an action with its ids mapped
//! to the network's, and the network's messages, edits, retractions,
//! reactions, chat states, receipts and markers become stanzas.
//!
//! A capability the bridge lacks or a failed action is answered with an
//! error stanza to the sender, never silence; pure signals (typing,
//! markers) are dropped quietly when the network cannot carry them.

use ferry_bridge::{
    Action, Address, Feature, IncomingMessage, MessageId, Outcome, ReplyTo, Sender, UserId,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::receipts::Sent;
use super::router::Gateway;
use crate::xmpp::jids::Target;
use crate::xmpp::message::{self, Inbound, Refs};
use crate::xmpp::xml::{self, B, ns};

/// The key of a conversation in the message map.
pub fn chat_key(a: &Address) -> String {
    match a {
        Address::Contact(c) => format!("c/{c}"),
        Address::Room(r) => format!("r/{r}"),
        Address::Occupant { room, nick } => format!("o/{room}/{nick}"),
        Address::Service(s) => format!("s/{s}"),
    }
}

/// Prefix of the ids of messages the gateway sends as the user (XEP-0356),
/// which the server routes back to the gateway.
const OWN_PREFIX: &str = "ferry-own-";

fn unsupported(what: &str, network: &str) -> StanzaError {
    xml::error(
        ErrorType::Cancel,
        DefinedCondition::FeatureNotImplemented,
        &format!("{network} does not support {what}."),
    )
}

impl Gateway {
    /// Handles a message addressed to the gateway's domain.
    pub fn on_message(&mut self, m: Message) {
        let (Some(from), Some(to)) = (m.from.clone(), m.to.clone()) else {
            return;
        };
        if m.type_ == MessageType::Error || from.node().is_none() {
            // Bounces, and server messages (privilege advertisements).
            return;
        }
        let user = super::router::Gateway::user_id(&from);
        // What the gateway itself sent as the user comes back: drop it.
        if from.resource().is_none() && m.id.as_ref().is_some_and(|i| i.0.starts_with(OWN_PREFIX)) {
            return;
        }
        let parsed = message::read(&m);
        if to.node().is_none()
            && m.type_ != MessageType::Groupchat
            && let Some(addresses) = super::groups::multicast_addresses(&m)
        {
            return self.on_multicast(m, parsed, addresses);
        }
        if to.node().is_none() {
            if m.type_ != MessageType::Groupchat
                && let Some(body) = parsed.body.as_deref()
                && !body.trim().is_empty()
            {
                self.on_gateway_chat(&from, body);
            }
            return;
        }
        let meaningful = parsed.has_content()
            || parsed.retract.is_some()
            || parsed.reactions.is_some()
            || parsed.subject.is_some()
            || !parsed.invites.is_empty();
        if let Err(e) = self.check_use(&user) {
            if meaningful {
                self.send_error(xml::message_error(&to, &from, parsed.id.as_deref(), *e));
            }
            return;
        }
        let target = match self.target_of(&user, &to) {
            Ok(Target::Address(a)) => a,
            Ok(Target::Gateway) => return,
            Err(e) => {
                if meaningful {
                    let err = xml::error(ErrorType::Cancel, DefinedCondition::ItemNotFound, &e.0);
                    self.send_error(xml::message_error(&to, &from, parsed.id.as_deref(), err));
                }
                return;
            }
        };
        if let Address::Room(room) = &target {
            return self.muc_message(m, parsed, from, to, user, room.clone());
        }
        if let Address::Occupant { .. } = &target
            && !self.info.capabilities.has(Feature::PrivateMessages)
        {
            if meaningful {
                let err = unsupported("private messages to room occupants", &self.info.name);
                self.send_error(xml::message_error(&to, &from, parsed.id.as_deref(), err));
            }
            return;
        }
        self.direct_message(&m, parsed, &from, &to, &user, target);
    }

    /// The user id of a sender.
    pub fn user_id(from: &Jid) -> UserId {
        UserId::new(from.to_bare().to_string())
    }

    /// Checks the common refusals of content from XMPP: encryption and
    /// size. Sends the error and returns false when refused.
    pub fn accept_content(&self, from: &Jid, to: &Jid, p: &Inbound) -> bool {
        if p.encrypted {
            let err = xml::error(
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                &format!(
                    "End-to-end encrypted messages cannot be bridged to {}: send it unencrypted.",
                    self.info.name
                ),
            );
            self.send_error(xml::message_error(to, from, p.id.as_deref(), err));
            return false;
        }
        let len = message::text_len(p);
        if let Err(text) = super::limits::check_text(&self.info.limits, &self.info.name, len) {
            let err = xml::error(ErrorType::Modify, DefinedCondition::PolicyViolation, &text);
            self.send_error(xml::message_error(to, from, p.id.as_deref(), err));
            return false;
        }
        if len > self.settings.max_message_bytes {
            let err = xml::error(
                ErrorType::Modify,
                DefinedCondition::PolicyViolation,
                &format!(
                    "The message is too long: {len} bytes, the limit is {} bytes.",
                    self.settings.max_message_bytes
                ),
            );
            self.send_error(xml::message_error(to, from, p.id.as_deref(), err));
            return false;
        }
        true
    }

    /// Looks up the network id of a message the user refers to.
    pub fn foreign_of(&self, user: &UserId, chat: &Address, xmpp_id: &str) -> Option<MessageId> {
        self.store
            .foreign_id(user, &chat_key(chat), xmpp_id)
            .ok()
            .flatten()
            .map(MessageId::new)
    }

    /// Looks up the XMPP id of a network message.
    pub fn xmpp_of(&self, user: &UserId, chat: &Address, id: &MessageId) -> Option<String> {
        self.store
            .xmpp_id(user, &chat_key(chat), id.as_str())
            .ok()
            .flatten()
    }

    /// Builds the action for a user's message with content (text, files,
    /// correction), or an error to send back.
    pub fn content_action(
        &self,
        user: &UserId,
        m: &Message,
        p: &Inbound,
        chat: &Address,
    ) -> Result<Action, Box<StanzaError>> {
        let caps = &self.info.capabilities;
        let mut p = p.clone();
        if !caps.has(Feature::Replies) && p.reply.is_some() {
            // Keep the quote the client wrote as fallback.
            p.body = m
                .bodies
                .get("")
                .or_else(|| m.bodies.values().next())
                .cloned();
            p.reply = None;
        }
        if !caps.has(Feature::Attachments) && !p.oob.is_empty() {
            let mut body = p.body.clone().unwrap_or_default();
            for (url, _) in &p.oob {
                if !body.contains(url.as_str()) {
                    if !body.is_empty() {
                        body.push('\n');
                    }
                    body.push_str(url);
                }
            }
            p.body = Some(body);
            p.oob.clear();
        }
        let mut out = message::outgoing(&p, chat.clone(), caps.has(Feature::Formatting));
        if !caps.has(Feature::Threads) {
            out.thread = None;
        }
        if matches!(chat, Address::Room(_)) {
            // A room's subject is changed by a message without a body.
            out.subject = None;
        } else if !caps.has(Feature::Subjects)
            && let Some(subject) = out.subject.take()
        {
            // Networks without subjects get it as the first line.
            out.body = if out.body.is_empty() {
                subject
            } else {
                format!("{subject}\n\n{}", out.body)
            };
            out.rich = None;
        }
        if let Some(r) = &p.reply
            && let Some(fid) = self.foreign_of(user, chat, &r.id)
        {
            out.reply_to = Some(ReplyTo {
                id: fid,
                author: None,
                quote: None,
            });
        }
        if let Some(orig) = &p.replace {
            if !caps.has(Feature::Corrections) {
                return Err(Box::new(unsupported(
                    "message corrections",
                    &self.info.name,
                )));
            }
            let Some(fid) = self.foreign_of(user, chat, orig) else {
                return Err(Box::new(xml::error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "The message to correct is not known to the gateway (too old, or it did not go through it).",
                )));
            };
            return Ok(Action::Edit {
                message: out,
                replaces: fid,
            });
        }
        Ok(Action::SendMessage(out))
    }

    /// A 1:1 message (to a contact, a service or a room occupant).
    fn direct_message(
        &mut self,
        m: &Message,
        p: Inbound,
        from: &Jid,
        to: &Jid,
        user: &UserId,
        chat: Address,
    ) {
        if self.dispatch_edit(user, &p, from, to, &chat) {
            return;
        }
        if p.has_content() {
            if !self.accept_content(from, to, &p) {
                return;
            }
            let action = match self.content_action(user, m, &p, &chat) {
                Ok(a) => a,
                Err(e) => {
                    return self.send_error(xml::message_error(to, from, p.id.as_deref(), *e));
                }
            };
            self.send_content(user, action, from.clone(), to.clone(), &p, chat);
            return;
        }
        self.dispatch_signals(user, &p, &chat);
    }

    /// Runs a signal action whose failure nobody needs to hear about.
    pub fn act_silent(&mut self, user: &UserId, action: Action) {
        self.act(user, action, |_, r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "signal refused by the network");
            }
        });
    }

    /// Runs an action; when it fails, an error goes back to the sender.
    pub fn act_or_bounce(
        &mut self,
        user: &UserId,
        action: Action,
        from: &Jid,
        to: &Jid,
        id: Option<String>,
    ) {
        let (from, to) = (from.clone(), to.clone());
        self.act(user, action, move |gw, r| {
            if let Err(e) = r {
                gw.send_error(xml::message_error(
                    &to,
                    &from,
                    id.as_deref(),
                    xml::bridge_error(&e),
                ));
            }
        });
    }

    /// Sends a message with content and handles ids and receipts.
    fn send_content(
        &mut self,
        user: &UserId,
        action: Action,
        from: Jid,
        to: Jid,
        p: &Inbound,
        chat: Address,
    ) {
        let xmpp_id = p.client_id().map(str::to_owned);
        let stanza_id = p.id.clone();
        let receipt = p.receipt_request;
        let key = chat_key(&chat);
        let is_edit = matches!(action, Action::Edit { .. });
        let u = user.clone();
        self.act(user, action, move |gw, r| match r {
            Ok(outcome) => {
                let ids = match outcome {
                    Outcome::Sent(ids) => ids,
                    _ => Vec::new(),
                };
                for fid in &ids {
                    if let Some(x) = &xmpp_id {
                        // A correction's own id refers to the same message.
                        gw.store.map_message(&u, &key, x, fid.as_str());
                    }
                    if !is_edit
                        && let Some(sid) = &stanza_id
                        && Some(sid) != xmpp_id.as_ref()
                    {
                        gw.store.map_message(&u, &key, sid, fid.as_str());
                    }
                }
                gw.message_sent(
                    &u,
                    Sent {
                        chat: &chat,
                        ids: &ids,
                        stanza_id: stanza_id.as_deref().or(xmpp_id.as_deref()),
                        peer: &to,
                        client: &from,
                        receipt,
                    },
                );
            }
            Err(e) => {
                gw.send_error(xml::message_error(
                    &to,
                    &from,
                    stanza_id.as_deref(),
                    xml::bridge_error(&e),
                ));
            }
        });
    }

    /// The JID a network sender appears as in a 1:1 conversation.
    pub fn sender_jid(&self, chat: &Address, from: &Sender) -> Option<Jid> {
        match (chat, from) {
            (Address::Occupant { room, nick }, _) => {
                let room_jid = self.jids.room(room)?;
                Some(Jid::from(self.jids.occupant(&room_jid, nick)))
            }
            (_, Sender::Contact(c)) => self.jids.contact(c).map(Jid::from),
            _ => self.jids.jid(chat),
        }
    }

    /// A message from the network in a 1:1 conversation.
    pub fn direct_incoming(&mut self, user: &UserId, msg: IncomingMessage) {
        if msg.archive_only {
            return;
        }
        let Some(to) = Self::user_jid(user).map(Jid::from) else {
            return;
        };
        let Some(from) = self.sender_jid(&msg.chat, &msg.from) else {
            tracing::debug!(user = %user, chat = %msg.chat, "message from an address with no JID");
            return;
        };
        let own = msg.from == Sender::Own;
        let id = if own {
            format!("{OWN_PREFIX}{}", xml::new_id())
        } else {
            xml::new_id()
        };
        let key = chat_key(&msg.chat);
        if let Some(fid) = &msg.id {
            self.store.map_message(user, &key, &id, fid.as_str());
        }
        let replaces = msg
            .replaces
            .as_ref()
            .and_then(|r| self.xmpp_of(user, &msg.chat, r));
        let reply = msg.reply_to.as_ref().and_then(|r| {
            let xid = self.xmpp_of(user, &msg.chat, &r.id)?;
            let author = match &r.author {
                Some(Sender::Own) => Some(to.clone()),
                Some(s) => self.sender_jid(&msg.chat, s),
                None => None,
            };
            Some((xid, author))
        });
        let refs = Refs {
            replaces,
            reply,
            stanza_id: None,
            origin_id: true,
            markable: self.info.capabilities.has(Feature::DisplayedMarkers),
            delay_from: Some(self.gw_jid()),
        };
        let is_occupant = matches!(msg.chat, Address::Occupant { .. });
        let max = self.settings.max_message_bytes;
        let user2 = user.clone();
        self.with_published(user, msg, move |gw, msg, urls| {
            let (f, t) = if own {
                (to.clone(), from.clone())
            } else {
                (from.clone(), to.clone())
            };
            let mut els = message::build(&msg, &f, &t, MessageType::Chat, &id, &refs, &urls, max);
            for el in &mut els {
                if is_occupant {
                    el.append_child(Element::bare("x", ns::MUC_USER));
                }
            }
            for el in els {
                if own {
                    gw.send_as_user(&user2, el, &from);
                } else {
                    gw.send(el);
                }
            }
        });
    }

    /// Sends a message the user wrote on another client of the network:
    /// as the user (XEP-0356 message privilege) when granted, else from the
    /// contact with a marker.
    pub fn send_as_user(&self, user: &UserId, mut el: Element, contact: &Jid) {
        let domain = user.as_str().rsplit('@').next().unwrap_or_default();
        let grant = self.comp.privileges().for_domain(domain).cloned();
        if let Some(g) = grant.filter(|g| g.message_outgoing) {
            let el = xml::renamespace(&el, ns::STREAM, ns::CLIENT);
            let outer = B::new("message", ns::STREAM)
                .a("from", self.jids.domain())
                .a("to", domain)
                .c(B::new("privilege", g.namespace.as_str())
                    .c(B::new("forwarded", ns::FORWARD).c(el)))
                .build();
            self.send(outer);
            return;
        }
        // No privilege: from the contact, marked.
        xml::set_attr(&mut el, "from", contact.to_string());
        xml::set_attr(&mut el, "to", user.to_string());
        if let Some(b) = el.get_child_mut("body", ns::STREAM) {
            let text = b.text();
            let new = B::new("body", ns::STREAM)
                .t(format!("[you, from another device] {text}"))
                .build();
            *b = new;
        }
        self.send(el);
    }

    /// Publishes a message's byte attachments, then runs `then` with the
    /// public URLs of all attachments.
    pub fn with_published(
        &mut self,
        user: &UserId,
        msg: IncomingMessage,
        then: impl FnOnce(&mut Gateway, IncomingMessage, Vec<(String, Option<String>)>) + Send + 'static,
    ) {
        let needs_publish = msg
            .attachments
            .iter()
            .any(|a| matches!(a.source, ferry_bridge::AttachmentSource::Bytes(_)));
        if !needs_publish {
            let urls = msg
                .attachments
                .iter()
                .filter_map(|a| match &a.source {
                    ferry_bridge::AttachmentSource::Url(u) => {
                        Some((u.clone(), a.caption.clone().or_else(|| a.name.clone())))
                    }
                    ferry_bridge::AttachmentSource::Bytes(_) => None,
                })
                .collect();
            return then(self, msg, urls);
        }
        let uploader = self.uploader.clone();
        let domain = user.as_str().rsplit('@').next().unwrap_or_default();
        // XEP-0363 as the user when their server lets the gateway ask for
        // upload slots on their behalf.
        let privilege = self
            .comp
            .privileges()
            .for_domain(domain)
            .filter(|g| g.iq.get(ns::HTTP_UPLOAD).is_some_and(|a| a.can_get()))
            .map(|g| g.namespace.clone());
        let attachments = msg.attachments.clone();
        let u = user.clone();
        let tx = self.internal.clone();
        let handle = tokio::spawn(async move {
            let mut urls = Vec::new();
            let mut failed = Vec::new();
            for a in attachments {
                let desc = a.caption.clone().or_else(|| a.name.clone());
                match a.source {
                    ferry_bridge::AttachmentSource::Url(u) => urls.push((u, desc)),
                    ferry_bridge::AttachmentSource::Bytes(b) => {
                        let published = uploader
                            .publish(
                                u.as_str(),
                                privilege.clone(),
                                b,
                                a.mime.as_deref(),
                                a.name.as_deref(),
                            )
                            .await;
                        match published {
                            Ok(url) => urls.push((url, desc)),
                            Err(e) => failed
                                .push(format!("{}: {e}", a.name.as_deref().unwrap_or("a file"))),
                        }
                    }
                }
            }
            let _ = tx.send(Box::new(move |gw: &mut Gateway| {
                if !failed.is_empty() {
                    gw.notify(
                        &u,
                        &format!("A file could not be passed on: {}", failed.join("; ")),
                    );
                }
                then(gw, msg, urls)
            }));
        });
        self.publishing.push(handle);
    }

    /// A retraction, reaction, chat state or marker from the network in a
    /// 1:1 conversation.
    pub fn direct_signal(
        &mut self,
        user: &UserId,
        chat: &Address,
        from: &Sender,
        payloads: Vec<Element>,
    ) {
        if *from == Sender::Own {
            return;
        }
        let Some(to) = Self::user_jid(user).map(Jid::from) else {
            return;
        };
        let Some(f) = self.sender_jid(chat, from) else {
            return;
        };
        let el = message::signal(&f, &to, MessageType::Chat, payloads);
        self.send(el);
    }
}
