//! One user's SMS session: sends their texts (through the bridge's
//! persisted queue) and keeps their group texts. Texts from phones and
//! delivery reports do not come through here but through the bridge-wide
//! part ([`crate::inbound`]), which reaches users whether or not their
//! session runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_bridge::{
    Action, Address, AttachmentSource, BridgeError, CloseReason, ContactId, ErrorKind, Event,
    EventSink, MessageId, Outcome, OutgoingMessage, RoomId, Session, UserId,
};

use crate::backend::{Outgoing, new_id};
use crate::groups::{self, Group};
use crate::number::Party;
use crate::segment;
use crate::state::Shared;

/// A user's session.
pub struct SmsSession {
    shared: Arc<Shared>,
    user: UserId,
    events: EventSink,
}

impl SmsSession {
    pub(crate) fn new(shared: Arc<Shared>, user: UserId, events: EventSink) -> Self {
        Self {
            shared,
            user,
            events,
        }
    }

    /// The number the user's texts go out from.
    async fn own_number(&self) -> Result<String, BridgeError> {
        if let Some(own) = self.shared.own_account(self.user.as_str()) {
            return Ok(own.number);
        }
        let rt = self.shared.runtime()?;
        let owned = rt
            .ctx
            .users
            .owned_by(&self.user)
            .await
            .map_err(|e| BridgeError::internal(e.to_string()))?;
        owned.into_iter().next().ok_or_else(|| {
            BridgeError::new(
                ErrorKind::NotAllowed,
                "you have no phone number yet: an administrator assigns one \
                 (command admin/assign-number on the gateway)",
            )
        })
    }

    async fn send(&self, m: OutgoingMessage) -> Result<Outcome, BridgeError> {
        let (chat, recipients) = match &m.to {
            Address::Contact(c) => (c.as_str().to_owned(), vec![recipient(c)?]),
            Address::Room(room) => {
                let rt = self.shared.runtime()?;
                let group = groups::load(rt.ctx.store.as_ref(), &self.user, room)
                    .map_err(|e| BridgeError::internal(e.to_string()))?
                    .ok_or_else(|| no_group(room))?;
                let members = group
                    .members
                    .iter()
                    .map(|c| recipient(&ContactId::new(c)))
                    .collect::<Result<Vec<_>, _>>()?;
                (room.as_str().to_owned(), members)
            }
            other => {
                return Err(BridgeError::bad_request(format!(
                    "{other:?} is not a phone number"
                )));
            }
        };
        let rt = self.shared.runtime()?;
        let mut media = Vec::new();
        for a in &m.attachments {
            match &a.source {
                AttachmentSource::Url(u) => media.push(u.clone()),
                AttachmentSource::Bytes(_) => {
                    return Err(BridgeError::unsupported(
                        "files must be shared by URL (XEP-0363 upload) to be sent as MMS",
                    ));
                }
            }
        }
        if !media.is_empty() && !rt.backend.media() {
            return Err(BridgeError::unsupported(format!(
                "the {} backend carries text only: no pictures or files",
                rt.backend.name()
            )));
        }
        // A file's URL is also the body of an OOB message: send it once.
        let text = if media.len() == 1 && m.body.trim() == media[0] {
            String::new()
        } else {
            m.body.clone()
        };
        if text.is_empty() && media.is_empty() {
            return Err(BridgeError::bad_request("the message is empty"));
        }
        if !text.is_empty() {
            segment::split(&text, self.shared.config.max_parts)
                .map_err(|e| BridgeError::bad_request(e.to_string()))?;
        }
        let from = self.own_number().await?;
        self.shared.take_rate(&self.user, recipients.len())?;
        let mut ids = Vec::new();
        for to in recipients {
            let id = new_id();
            let mut reference = [0u8; 1];
            let _ = getrandom::fill(&mut reference);
            let out = Outgoing {
                id: id.clone(),
                from: from.clone(),
                to,
                text: text.clone(),
                media: media.clone(),
                reference: reference[0],
                accepted: Vec::new(),
            };
            rt.outbox
                .enqueue(self.user.as_str(), &chat, out)
                .map_err(|e| BridgeError::internal(format!("cannot queue the text: {e}")))?;
            ids.push(MessageId::new(id));
        }
        Ok(Outcome::Sent(ids))
    }

    async fn open_group(
        &self,
        members: Vec<ContactId>,
        subject: Option<String>,
    ) -> Result<Outcome, BridgeError> {
        let mut set = BTreeSet::new();
        for c in &members {
            recipient(c)?;
            set.insert(c.as_str().to_owned());
        }
        if set.is_empty() {
            return Err(BridgeError::bad_request(
                "a group text needs at least one phone number",
            ));
        }
        let members: Vec<String> = set.into_iter().collect();
        let room = groups::id_of(&members);
        let rt = self.shared.runtime()?;
        let group = Group {
            members,
            subject: subject.filter(|s| !s.trim().is_empty()),
        };
        groups::save(rt.ctx.store.as_ref(), &self.user, &room, &group)
            .map_err(|e| BridgeError::internal(e.to_string()))?;
        let nick = self.nick().await;
        let _ = self.events.send(groups::joined(&room, &group, &nick)).await;
        Ok(Outcome::Room(room))
    }

    async fn join(&self, room: &RoomId, nick: &str) -> Result<Outcome, BridgeError> {
        let rt = self.shared.runtime()?;
        let group = groups::load(rt.ctx.store.as_ref(), &self.user, room)
            .map_err(|e| BridgeError::internal(e.to_string()))?
            .ok_or_else(|| no_group(room))?;
        let _ = self.events.send(groups::joined(room, &group, nick)).await;
        Ok(Outcome::Done)
    }

    /// The user's name in group texts: their number.
    async fn nick(&self) -> String {
        self.own_number()
            .await
            .unwrap_or_else(|_| self.user.as_str().to_owned())
    }
}

fn no_group(room: &RoomId) -> BridgeError {
    BridgeError::not_found(format!(
        "there is no group text {room}: open one with a message to several numbers \
         (XEP-0033) or the new-group command"
    ))
}

/// The backend address of a contact that can receive texts.
fn recipient(c: &ContactId) -> Result<String, BridgeError> {
    let party = Party::from_local_part(c.as_str()).map_err(|e| BridgeError::bad_request(e.0))?;
    party
        .address()
        .map(str::to_owned)
        .ok_or_else(|| BridgeError::bad_request(format!("{c} cannot receive texts")))
}

#[async_trait]
impl Session for SmsSession {
    async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        match action {
            Action::SendMessage(m) => self.send(m).await,
            Action::OpenGroup { members, subject } => self.open_group(members, subject).await,
            Action::JoinRoom { room, nick, .. } => self.join(&room, &nick).await,
            Action::LeaveRoom { room, .. } => {
                let _ = self
                    .events
                    .send(Event::RoomLeft {
                        room,
                        exit: ferry_bridge::RoomExit::Left(None),
                    })
                    .await;
                Ok(Outcome::Done)
            }
            Action::AddContact(_)
            | Action::RemoveContact(_)
            | Action::SetPresence(_)
            | Action::PreferencesChanged(_) => Ok(Outcome::Done),
            other => Err(BridgeError::unsupported(format!(
                "SMS cannot do this: {}",
                other
                    .feature()
                    .map(|f| f.describe().to_owned())
                    .unwrap_or_else(|| "this command".into())
            ))),
        }
    }

    async fn close(&mut self, _reason: CloseReason) {}
}
