//! What arrives for users — texts from phones, delivery reports — and what
//! the queue reports, handed to the user who owns the number through the
//! core's [`UserRouter`](ferry_bridge::UserRouter). `deliver` returns once
//! the core has stored the events, so the backend is acknowledged (HTTP
//! 200, deliver_sm_resp) only for what will not be lost; users who are
//! offline get the texts from their server's offline storage.

use ferry_bridge::{
    Address, Attachment, AttachmentSource, BridgeError, ContactId, ContactInfo, Event,
    IncomingMessage, MessageId, RoomId, RouteError, Sender, UserId,
};

use crate::backend::{Inbound, IncomingText, new_id};
use crate::groups;
use crate::number::Party;
use crate::outbox::{Fate, Update};
use crate::state::Runtime;

/// Why something that arrived was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Nobody owns the receiving number (or the owner is gone).
    #[error("{0}")]
    NoOwner(String),
    /// Not stored now; the backend should try again.
    #[error("{0}")]
    Later(String),
}

/// Hands one text or report to its user.
pub(crate) async fn handle(rt: &Runtime, inbound: Inbound) -> Result<(), Refused> {
    match inbound {
        Inbound::Text(t) => text(rt, t).await,
        Inbound::Report(r) => {
            let update = rt
                .outbox
                .report(&r)
                .map_err(|e| Refused::Later(e.to_string()))?;
            match update {
                Some(u) => deliver_update(rt, u).await,
                // An unknown text (already final), or a step on the way.
                None => Ok(()),
            }
        }
    }
}

async fn text(rt: &Runtime, t: IncomingText) -> Result<(), Refused> {
    let Some(to) = t.to.address() else {
        return Err(Refused::NoOwner(format!(
            "{:?} is not a number texts can be sent to",
            t.to
        )));
    };
    let owner = rt
        .ctx
        .users
        .owner(to)
        .await
        .map_err(|e| Refused::Later(e.to_string()))?
        .ok_or_else(|| Refused::NoOwner(format!("no user has the number {to}")))?;
    let contact = ContactId::new(t.from.local_part());
    let mut events = Vec::new();
    if let Party::Alphanumeric(name) = &t.from {
        events.push(Event::Contact(ContactInfo {
            contact: contact.clone(),
            name: Some(name.clone()),
            ..ContactInfo::default()
        }));
    }
    let mut m = IncomingMessage::text(
        Address::Contact(contact.clone()),
        Sender::Contact(contact),
        t.text,
    );
    m.id = Some(MessageId::new(t.backend_id.unwrap_or_else(new_id)));
    m.attachments = t
        .media
        .into_iter()
        .map(|media| Attachment {
            source: AttachmentSource::Url(media.url),
            name: None,
            mime: media.mime,
            size: None,
            caption: None,
        })
        .collect();
    events.push(Event::Message(m));
    route(rt, &owner, events).await?;
    tracing::info!(user = %owner, number = to, "text from a phone delivered");
    Ok(())
}

/// Tells the user what became of their text.
pub(crate) async fn deliver_update(rt: &Runtime, u: Update) -> Result<(), Refused> {
    let chat = if groups::is_group(&u.chat) {
        Address::Room(RoomId::new(u.chat))
    } else {
        Address::Contact(ContactId::new(u.chat))
    };
    let id = MessageId::new(u.id);
    let event = match u.fate {
        Fate::Submitted => return Ok(()),
        Fate::Delivered => Event::Delivered { chat, id },
        Fate::Failed { reason, permanent } => Event::DeliveryFailed {
            chat,
            id,
            error: BridgeError::remote(format!("the text was not delivered: {reason}")),
            permanent,
        },
    };
    route(rt, &UserId::new(u.user), vec![event]).await
}

async fn route(rt: &Runtime, user: &UserId, events: Vec<Event>) -> Result<(), Refused> {
    match rt.ctx.users.deliver(user, events).await {
        Ok(()) => Ok(()),
        Err(e @ (RouteError::NotRegistered(_) | RouteError::NotAllowed(_))) => {
            Err(Refused::NoOwner(e.to_string()))
        }
        Err(e) => Err(Refused::Later(e.to_string())),
    }
}
