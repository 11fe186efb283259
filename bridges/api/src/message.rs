//! Messages in both directions, and what travels with them.

use std::time::SystemTime;

use crate::id::{Address, ContactId, MessageId};
use crate::text::Rich;

/// What kind of message it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageKind {
    /// An ordinary message.
    #[default]
    Normal,
    /// A notice (IRC NOTICE, Matrix m.notice): automated or informational.
    Notice,
    /// An action, "/me waves" (IRC CTCP ACTION, Matrix m.emote). The body
    /// does not contain the `/me ` prefix.
    Emote,
}

/// A message the user sends to the network.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingMessage {
    /// Where it goes.
    pub to: Address,
    /// The XMPP message id chosen by the user's client (origin-id when
    /// present). Bridges that can attach a client id to a message (IRC
    /// labels, Matrix transaction ids) may use it.
    pub client_id: String,
    /// The text, without formatting markup, without a `/me ` prefix.
    pub body: String,
    /// The subject the user gave (only with [`Feature::Subjects`]; the
    /// core puts it into the body for other networks).
    ///
    /// [`Feature::Subjects`]: crate::Feature::Subjects
    pub subject: Option<String>,
    /// The formatted text, when the user sent formatting.
    pub rich: Option<Rich>,
    /// Normal, notice or emote.
    pub kind: MessageKind,
    /// The message this one answers.
    pub reply_to: Option<ReplyTo>,
    /// Thread identifier (XEP-0201), opaque.
    pub thread: Option<String>,
    /// Files linked to the message.
    pub attachments: Vec<Attachment>,
}

impl OutgoingMessage {
    /// A plain text message.
    pub fn text(to: Address, client_id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            to,
            client_id: client_id.into(),
            body: body.into(),
            subject: None,
            rich: None,
            kind: MessageKind::Normal,
            reply_to: None,
            thread: None,
            attachments: Vec::new(),
        }
    }
}

/// Who wrote a message that came from the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A contact (in a 1:1 conversation, or a room member the bridge knows
    /// as a contact).
    Contact(ContactId),
    /// An occupant of the room the message is in, by nickname.
    Occupant(String),
    /// The user themself, from another client of the network (the core
    /// shows it as a message the user sent).
    Own,
    /// The network service of the conversation (server notices).
    Service,
}

/// A message that came from the network.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingMessage {
    /// The conversation: a contact, a room, an occupant (private message)
    /// or a service.
    pub chat: Address,
    /// Who wrote it.
    pub from: Sender,
    /// The network's id of the message, when it has one.
    pub id: Option<MessageId>,
    /// The text without formatting.
    pub body: String,
    /// The subject (an email's), shown as the XMPP message's subject.
    pub subject: Option<String>,
    /// The formatted text, when the network sent formatting.
    pub rich: Option<Rich>,
    /// Normal, notice or emote.
    pub kind: MessageKind,
    /// When it was sent, when the network says so and it is not "now".
    pub timestamp: Option<SystemTime>,
    /// The earlier message this one corrects (an edit).
    pub replaces: Option<MessageId>,
    /// The message this one answers.
    pub reply_to: Option<ReplyTo>,
    /// Thread identifier, opaque.
    pub thread: Option<String>,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// History being filled in (backfill): archive it, do not deliver it
    /// live.
    pub archive_only: bool,
}

impl IncomingMessage {
    /// A plain text message with no id.
    pub fn text(chat: Address, from: Sender, body: impl Into<String>) -> Self {
        Self {
            chat,
            from,
            id: None,
            body: body.into(),
            subject: None,
            rich: None,
            kind: MessageKind::Normal,
            timestamp: None,
            replaces: None,
            reply_to: None,
            thread: None,
            attachments: Vec::new(),
            archive_only: false,
        }
    }
}

/// A reference to the message being answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The answered message.
    pub id: MessageId,
    /// Who wrote it, when known.
    pub author: Option<Sender>,
    /// A short quote of it for networks or clients that show replies as
    /// text.
    pub quote: Option<String>,
}

/// A file attached to a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Where the content is.
    pub source: AttachmentSource,
    /// File name.
    pub name: Option<String>,
    /// MIME type.
    pub mime: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Description / caption.
    pub caption: Option<String>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            AttachmentSource::Url(u) => format!("url {u}"),
            AttachmentSource::Bytes(b) => format!("{} bytes", b.len()),
        };
        f.debug_struct("Attachment")
            .field("source", &source)
            .field("name", &self.name)
            .field("mime", &self.mime)
            .finish()
    }
}

/// Where an attachment's content is.
#[derive(Clone, PartialEq, Eq)]
pub enum AttachmentSource {
    /// A public http(s) URL. Attachments from XMPP always come this way.
    Url(String),
    /// The content itself, which the core publishes (XEP-0363 upload or
    /// the gateway's own HTTP) before the message goes out.
    Bytes(Vec<u8>),
}

/// Typing notifications (XEP-0085 chat states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatState {
    /// Typing.
    Composing,
    /// Stopped typing, text still in the input box.
    Paused,
    /// Looking at the conversation.
    Active,
    /// Not looking at the conversation.
    Inactive,
    /// Left the conversation.
    Gone,
}
