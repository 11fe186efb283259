//! Delivery reports, both for 1:1 conversations and rooms: what the
//! network says about a user's sent message becomes an XEP-0184 receipt
//! (when the user asked for one) or an error on the message's original
//! stanza id (`cancel` when the failure is permanent, `wait` when it is
//! not).
//!
//! Messages waiting for their report are kept in memory for the common
//! case and in the database ([`Pending`]) for the rest, so a report that
//! comes after a restart still finds them (and a report in the running
//! process costs no read of the database). A delivered message stays in
//! the database (marked) until it expires, so that a failure the network
//! reports after confirming it (an email bounce after the submission
//! server accepted the mail) is still an error on the original stanza id,
//! sent from the contact to the client that wrote it;
//! a message sent in several parts is delivered with its last part and
//! failed with its first failed part. A report may also come before the
//! core has seen the action's outcome (the network is fast): such reports
//! wait in memory until the outcome arrives.

use std::collections::HashMap;

use ferry_bridge::{Address, BridgeError, Feature, MessageId, UserId};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::MessageType;
use xmpp_parsers::stanza_error::ErrorType;

use super::direct::chat_key;
use super::router::Gateway;
use crate::store::Pending;
use crate::xmpp::message;
use crate::xmpp::xml;

/// How many early reports a user may have waiting.
const EARLY_MAX: usize = 1000;
/// How many unreported message parts of a user are kept in memory (the
/// database keeps them all).
const AWAITING_MAX: usize = 10_000;

/// A user's message that went out, as the continuation of its action sees
/// it.
pub struct Sent<'a> {
    /// The conversation.
    pub chat: &'a Address,
    /// The network's ids of it (several when split, none when the network
    /// gives none).
    pub ids: &'a [MessageId],
    /// The stanza id of the user's message.
    pub stanza_id: Option<&'a str>,
    /// The JID the user wrote to.
    pub peer: &'a Jid,
    /// The user's client that sent it.
    pub client: &'a Jid,
    /// Whether the user asked for a receipt.
    pub receipt: bool,
}

/// A user's messages awaiting the network's delivery report, and reports
/// that came before their message's outcome.
#[derive(Default)]
pub struct Receipts {
    /// Messages awaiting the network's delivery report.
    pub awaiting: Awaiting,
    /// Delivery reports that came before their message's outcome, by
    /// network id.
    pub early: HashMap<String, Early>,
}

impl Receipts {
    /// Keeps a report that came before its message's outcome (a bounded
    /// number: beyond, the oldest are of messages that will never come).
    fn keep_early(&mut self, id: &MessageId, report: Early) {
        if self.early.len() > EARLY_MAX {
            self.early.clear();
        }
        self.early.insert(id.to_string(), report);
    }
}

/// What a user's gateway state keeps of their messages awaiting a report
/// (those sent since the start; older ones are in the database only).
#[derive(Default)]
pub struct Awaiting {
    /// Network id -> (conversation key, the message).
    parts: HashMap<String, (String, Pending)>,
    /// Stanza id -> parts not yet delivered.
    left: HashMap<String, usize>,
}

impl Awaiting {
    /// Whether no message of the user waits for a report (in memory).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// A delivery report that came before its message's outcome.
#[derive(Clone, Debug)]
pub enum Early {
    /// Delivered.
    Delivered,
    /// Failed.
    Failed(BridgeError, bool),
}

impl Gateway {
    /// A user's message went out: answers its receipt now (when the
    /// network confirms nothing) or remembers it until the report comes.
    pub fn message_sent(&mut self, user: &UserId, sent: Sent<'_>) {
        let Some(stanza_id) = sent.stanza_id else {
            return;
        };
        let tracked = self.info.capabilities.has(Feature::DeliveryReceipts);
        if !tracked || sent.ids.is_empty() {
            if sent.receipt {
                self.send_receipt(sent.peer, sent.client, stanza_id);
            }
            return;
        }
        let mut waiting = Vec::new();
        let mut parts = Vec::new();
        for id in sent.ids {
            let early = self
                .users
                .get_mut(user)
                .and_then(|u| u.receipts.early.remove(id.as_str()));
            match early {
                Some(Early::Failed(error, permanent)) => {
                    return self.send_delivery_error(
                        sent.peer,
                        sent.client,
                        stanza_id,
                        &error,
                        permanent,
                    );
                }
                Some(Early::Delivered) => parts.push((id.to_string(), true)),
                None => {
                    waiting.push(id.to_string());
                    parts.push((id.to_string(), false));
                }
            }
        }
        let pending = Pending {
            xmpp_id: stanza_id.to_owned(),
            peer: sent.peer.to_string(),
            client: sent.client.to_string(),
            receipt: sent.receipt,
            settled: false,
        };
        let key = chat_key(sent.chat);
        self.store.deliveries_add(user, &key, &pending, &parts);
        if waiting.is_empty() {
            if sent.receipt {
                self.send_receipt(sent.peer, sent.client, stanza_id);
            }
            return;
        }
        let awaiting = &mut self.user_mut(user).receipts.awaiting;
        if awaiting.parts.len() > AWAITING_MAX {
            awaiting.parts.clear();
            awaiting.left.clear();
        }
        awaiting.left.insert(pending.xmpp_id.clone(), waiting.len());
        for id in waiting {
            awaiting.parts.insert(id, (key.clone(), pending.clone()));
        }
    }

    /// Settles a report from memory: None when the message is not there
    /// (sent before the start).
    fn settle_in_memory(
        &mut self,
        user: &UserId,
        chat: &str,
        id: &MessageId,
        failed: bool,
    ) -> Option<Pending> {
        let awaiting = &mut self.users.get_mut(user)?.receipts.awaiting;
        if awaiting
            .parts
            .get(id.as_str())
            .is_none_or(|(c, _)| c != chat)
        {
            return None;
        }
        let (_, mut pending) = awaiting.parts.remove(id.as_str())?;
        let left = awaiting.left.entry(pending.xmpp_id.clone()).or_insert(1);
        *left = left.saturating_sub(1);
        pending.settled = failed || *left == 0;
        if pending.settled {
            awaiting.left.remove(&pending.xmpp_id);
            let x = pending.xmpp_id.clone();
            awaiting.parts.retain(|_, (_, p)| p.xmpp_id != x);
        }
        if failed {
            self.store
                .delivery_forget_message(user, chat, &pending.xmpp_id);
        } else {
            self.store.delivery_mark_delivered(user, chat, id.as_str());
        }
        Some(pending)
    }

    /// XEP-0184 `<received/>` from `from` (the contact) to the user.
    pub fn send_receipt(&self, from: &Jid, to: &Jid, id: &str) {
        let el = message::signal(
            from,
            &Jid::from(to.to_bare()),
            MessageType::Chat,
            vec![message::received(id)],
        );
        self.send(el);
    }

    /// The error a failed delivery answers the original message with.
    fn send_delivery_error(
        &self,
        from: &Jid,
        to: &Jid,
        stanza_id: &str,
        error: &BridgeError,
        permanent: bool,
    ) {
        let mut e = xml::bridge_error(error);
        e.type_ = if permanent {
            ErrorType::Cancel
        } else {
            ErrorType::Wait
        };
        self.send_error(xml::message_error(from, to, Some(stanza_id), e));
    }

    /// The network confirmed delivery of (a part of) a user's message.
    pub fn on_delivered(&mut self, user: &UserId, chat: &Address, id: &MessageId) {
        let key = chat_key(chat);
        let settled = match self.settle_in_memory(user, &key, id, false) {
            Some(p) => Ok(Some(p)),
            None => self.store.delivery_done(user, &key, id.as_str()),
        };
        match settled {
            Ok(Some(p)) => {
                if p.settled && p.receipt {
                    let (Ok(from), Ok(to)) = (Jid::new(&p.peer), Jid::new(&p.client)) else {
                        return;
                    };
                    self.send_receipt(&from, &to, &p.xmpp_id);
                }
            }
            Ok(None) => self.early_report(user, chat, id, Early::Delivered),
            Err(e) => tracing::warn!(user = %user, error = %e, "cannot read a pending delivery"),
        }
    }

    /// The network could not deliver (a part of) a user's message.
    pub fn on_delivery_failed(
        &mut self,
        user: &UserId,
        chat: &Address,
        id: &MessageId,
        error: BridgeError,
        permanent: bool,
    ) {
        let key = chat_key(chat);
        let settled = match self.settle_in_memory(user, &key, id, true) {
            Some(p) => Ok(Some(p)),
            None => self.store.delivery_failed(user, &key, id.as_str()),
        };
        match settled {
            Ok(Some(p)) => {
                let (Ok(from), Ok(to)) = (Jid::new(&p.peer), Jid::new(&p.client)) else {
                    return;
                };
                self.send_delivery_error(&from, &to, &p.xmpp_id, &error, permanent);
            }
            Ok(None) => {
                if self.xmpp_of(user, chat, id).is_some() {
                    // A message nobody waits for (sent without an id, or
                    // reported twice): the user hears of it anyway.
                    self.notify(
                        user,
                        &format!("A message to {chat} was not delivered: {}", error.message),
                    );
                } else {
                    self.early_report(user, chat, id, Early::Failed(error, permanent));
                }
            }
            Err(e) => tracing::warn!(user = %user, error = %e, "cannot read a pending delivery"),
        }
    }

    /// A report for a message whose outcome the core has not seen yet (or
    /// that was sent without a receipt request): kept for the outcome.
    fn early_report(&mut self, user: &UserId, chat: &Address, id: &MessageId, report: Early) {
        if matches!(report, Early::Delivered) && self.xmpp_of(user, chat, id).is_some() {
            return;
        }
        self.user_mut(user).receipts.keep_early(id, report);
    }
}
