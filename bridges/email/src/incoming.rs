//! Mail to chat: what one fetched mail becomes for the core — the
//! correspondent's name for the roster, and a chat message from their
//! address with the readable text (quotes and signature stripped unless
//! the user wants the full text), the files, the thread (root of the
//! References), the Date as a delay for mail that waited — and what the
//! bridge records about it for threading and deduplication.

use std::time::{Duration, SystemTime};

use ferry_bridge::{
    Address, Attachment, AttachmentSource, ContactId, ContactInfo, Dialect, Event, IncomingMessage,
    MessageId, Rich, Sender,
};

use crate::parse::Mail;
use crate::prefs::Prefs;
use crate::simplify::simplify;
use crate::state::{Conversation, MailRecord, chain};

/// What one mail changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivery {
    /// Events for the core, in order.
    pub events: Vec<Event>,
    /// The record to keep under the mail's Message-ID.
    pub record: Option<(String, MailRecord)>,
    /// The conversation after this mail, under the correspondent's address.
    pub conversation: Option<(String, Conversation)>,
}

/// Mail older than this when it is delivered carries its Date (XEP-0203).
const DELAYED: Duration = Duration::from_secs(60);

/// Where a mail came from in the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Its UID.
    pub uid: u32,
    /// Its size on the server.
    pub size: u32,
    /// Whether only its header was fetched (too large).
    pub header_only: bool,
    /// Whether it waited in the inbox while the bridge was away (fetched
    /// when catching up after a (re)connection rather than announced live):
    /// it then carries its Date (XEP-0203 delay).
    pub waited: bool,
}

/// Turns a mail into events. `conv` is the stored conversation with the
/// author; `now` is the delivery time.
pub fn deliver(
    mail: &Mail,
    at: Arrival,
    own: &str,
    prefs: &Prefs,
    conv: Conversation,
    now: SystemTime,
) -> Delivery {
    let mut out = Delivery::default();
    if prefs.lists == crate::prefs::Lists::Mute && mail.list_id.is_some() {
        return out;
    }
    let Some(from) = &mail.from else {
        out.events.push(Event::Notice(format!(
            "A mail without a sender arrived (subject: {}); it is in your inbox.",
            mail.subject.as_deref().unwrap_or("none")
        )));
        return out;
    };
    // A mail the user wrote from another client (to themself, or copied):
    // shown as their own message in the conversation with the first other
    // participant.
    let own_mail = from.address == own;
    let peer = if own_mail {
        match mail.participants(own).into_iter().next() {
            Some(p) => p.address,
            None => return out,
        }
    } else {
        from.address.clone()
    };
    let contact = ContactId::new(peer.clone());
    let mut conv = conv;
    if !own_mail && from.name.is_some() && from.name != conv.name {
        conv.name.clone_from(&from.name);
        out.events.push(Event::Contact(ContactInfo {
            contact: contact.clone(),
            name: from.name.clone(),
            avatar: None,
            in_roster: true,
            groups: vec!["Email".into()],
        }));
    } else if !own_mail && conv.last.is_none() && conv.name.is_none() {
        out.events.push(Event::Contact(ContactInfo {
            contact: contact.clone(),
            name: None,
            avatar: None,
            in_roster: true,
            groups: vec!["Email".into()],
        }));
    }

    let mut cut = false;
    let mut body = if at.header_only {
        format!(
            "[A mail of {:.1} MB, too large to be shown here; it is in your inbox. Subject: {}]",
            f64::from(at.size) / (1024.0 * 1024.0),
            mail.subject.as_deref().unwrap_or("none")
        )
    } else if prefs.strip_quotes {
        let s = simplify(&mail.text);
        cut = s.cut;
        s.text
    } else {
        mail.text.trim().to_owned()
    };
    // The HTML part as formatted text (XHTML-IM for the client), when the
    // chat message shows the whole mail and the HTML has formatting.
    let rich = mail
        .html
        .as_deref()
        .filter(|_| !cut && !at.header_only)
        .map(|h| Rich::from_html(h, Dialect::Email))
        .filter(Rich::is_styled);
    if body.trim().is_empty() && mail.files.is_empty() {
        body = mail
            .subject
            .clone()
            .unwrap_or_else(|| "(an empty mail)".into());
    }
    let attachments = mail
        .files
        .iter()
        .map(|f| Attachment {
            source: AttachmentSource::Bytes(f.data.clone()),
            name: f.name.clone(),
            mime: Some(f.mime.clone()),
            size: Some(f.data.len() as u64),
            caption: None,
        })
        .collect();
    let thread = mail.thread_root().map(str::to_owned);
    let timestamp = mail
        .date
        .filter(|d| at.waited || now.duration_since(*d).is_ok_and(|age| age > DELAYED));
    out.events.push(Event::Message(IncomingMessage {
        chat: Address::Contact(contact),
        from: if own_mail {
            Sender::Own
        } else {
            Sender::Contact(ContactId::new(peer.clone()))
        },
        id: mail.message_id.clone().map(MessageId::new),
        body,
        rich,
        kind: ferry_bridge::MessageKind::Normal,
        timestamp,
        replaces: None,
        reply_to: None,
        thread: thread.clone(),
        subject: crate::groups::shown_subject(conv.subject.as_deref(), mail.subject.as_deref()),
        attachments,
        archive_only: false,
    }));

    if let Some(mid) = &mail.message_id {
        conv.references = chain(&mail.references, mid);
        conv.last = Some(mid.clone());
        out.record = Some((
            mid.clone(),
            MailRecord {
                uid: Some(at.uid),
                thread: thread.clone().unwrap_or_else(|| mid.clone()),
                references: mail.references.clone(),
                subject: mail.subject.clone(),
                peer: peer.clone(),
                room: None,
            },
        ));
    }
    if mail.subject.is_some() {
        conv.subject.clone_from(&mail.subject);
    }
    if thread.is_some() {
        conv.thread = thread;
    }
    if !own_mail {
        conv.unseen.push(at.uid);
    }
    out.conversation = Some((peer, conv));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn mail(s: &str) -> Mail {
        parse(s.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn a_reply_becomes_a_threaded_chat_message() {
        let m = mail(
            "From: Bob <bob@example.org>\nTo: me@example.com\nSubject: Re: lunch\n\
             Message-ID: <b2@example.org>\nReferences: <a1@example.com>\nIn-Reply-To: <a1@example.com>\n\n\
             yes!\n\nOn Monday, me wrote:\n> lunch?\n",
        );
        let d = deliver(
            &m,
            Arrival {
                uid: 7,
                size: 100,
                header_only: false,
                waited: false,
            },
            "me@example.com",
            &Prefs::default(),
            Conversation::default(),
            SystemTime::now(),
        );
        assert!(
            matches!(&d.events[0], Event::Contact(c) if c.name.as_deref() == Some("Bob") && c.in_roster)
        );
        let Event::Message(msg) = &d.events[1] else {
            panic!("{:?}", d.events)
        };
        assert_eq!(msg.body, "yes!");
        assert_eq!(msg.thread.as_deref(), Some("a1@example.com"));
        assert_eq!(
            msg.id.as_ref().map(MessageId::as_str),
            Some("b2@example.org")
        );
        assert_eq!(
            msg.chat,
            Address::Contact(ContactId::new("bob@example.org"))
        );
        let (peer, conv) = d.conversation.unwrap();
        assert_eq!(peer, "bob@example.org");
        assert_eq!(conv.references, ["a1@example.com", "b2@example.org"]);
        assert_eq!(conv.unseen, [7]);
        let prefs = Prefs {
            strip_quotes: false,
            ..Prefs::default()
        };
        let d = deliver(
            &m,
            Arrival {
                uid: 7,
                size: 100,
                header_only: false,
                waited: false,
            },
            "me@example.com",
            &prefs,
            conv,
            SystemTime::now(),
        );
        let Event::Message(msg) = &d.events[0] else {
            panic!("{:?}", d.events)
        };
        assert!(msg.body.contains("> lunch?"), "{}", msg.body);
    }

    #[test]
    fn muted_lists_and_big_mails() {
        let m = mail(
            "From: list@example.org\nTo: me@example.com\nList-Id: <dev.example.org>\nSubject: x\n\nhi",
        );
        let muted = Prefs {
            lists: crate::prefs::Lists::Mute,
            ..Prefs::default()
        };
        assert!(
            deliver(
                &m,
                Arrival {
                    uid: 1,
                    size: 10,
                    header_only: false,
                    waited: false,
                },
                "me@example.com",
                &muted,
                Conversation::default(),
                SystemTime::now()
            )
            .events
            .is_empty()
        );
        let d = deliver(
            &m,
            Arrival {
                uid: 1,
                size: 30 << 20,
                header_only: true,
                waited: false,
            },
            "me@example.com",
            &Prefs::default(),
            Conversation::default(),
            SystemTime::now(),
        );
        let Event::Message(msg) = d.events.last().unwrap() else {
            panic!()
        };
        assert!(msg.body.contains("30.0 MB"), "{}", msg.body);
    }
}
