//! Chat to mail: a message the user writes to `x\40y.z@GW` becomes a mail
//! from their account — the reply to the last mail of that conversation
//! (In-Reply-To, References, `Re: ` subject), or to the message the user
//! replied to (XEP-0461), or a new conversation — with files shared from
//! XMPP downloaded (size-limited) and attached, submitted over SMTP, then
//! copied to the Sent folder. The mail's Message-ID is the message's id
//! on the network, so later replies and bounces find it.

use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::{Address, BridgeError, Dialect, ErrorKind, MessageId, Outcome, OutgoingMessage};

use crate::Shared;
use crate::compose::{self, Draft, OutFile};
use crate::prefs::Prefs;
use crate::settings::StoredAccount;
use crate::smtp::{self, SmtpError, Transport};
use crate::state::{MailRecord, State, chain};
use crate::watcher::{Queue, Request};

/// What sending needs from the session.
pub struct Outbox<'a> {
    /// Bridge-wide state.
    pub shared: &'a Shared,
    /// The account.
    pub account: &'a StoredAccount,
    /// Persisted state.
    pub state: &'a State,
    /// The submission transport.
    pub transport: &'a Transport,
    /// The IMAP request queue (for the Sent copy).
    pub queue: &'a Arc<Queue>,
    /// Preferences.
    pub prefs: Prefs,
}

fn store_err(e: ferry_bridge::StoreError) -> BridgeError {
    BridgeError::internal(e.to_string())
}

/// A subject for a new conversation: the first line of the text.
pub fn first_line_subject(body: &str) -> String {
    let line = body
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut s: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        s.push('…');
    }
    compose::header_text(&s)
}

/// Downloads a file shared from XMPP.
async fn download(
    shared: &Shared,
    url: &str,
    name: Option<&str>,
    mime: Option<&str>,
) -> Result<OutFile, BridgeError> {
    let limit = shared.config.max_attachment_bytes;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(BridgeError::bad_request(format!(
            "cannot attach {url}: only http(s) links can be attached to a mail"
        )));
    }
    crate::hosts::check_url(&shared.hosts, url)
        .await
        .map_err(|r| {
            BridgeError::new(ErrorKind::NotAllowed, format!("cannot attach {url}: {r}"))
        })?;
    let mut resp = shared
        .http
        .get(url)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .map_err(|e| BridgeError::unavailable(format!("cannot download {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(BridgeError::remote(format!(
            "cannot download {url}: HTTP {}",
            resp.status()
        )));
    }
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(BridgeError::new(
            ErrorKind::ResourceConstraint,
            format!(
                "the file {url} is larger than the {} MB a mail may carry here",
                limit >> 20
            ),
        ));
    }
    let header_mime = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut data = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BridgeError::unavailable(format!("cannot download {url}: {e}")))?
    {
        if (data.len() + chunk.len()) as u64 > limit {
            return Err(BridgeError::new(
                ErrorKind::ResourceConstraint,
                format!(
                    "the file {url} is larger than the {} MB a mail may carry here",
                    limit >> 20
                ),
            ));
        }
        data.extend_from_slice(&chunk);
    }
    let name = name
        .map(str::to_owned)
        .or_else(|| {
            url.split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "file".into());
    let mime = mime
        .map(str::to_owned)
        .or(header_mime)
        .unwrap_or_else(|| "application/octet-stream".into());
    Ok(OutFile { name, mime, data })
}

/// The text of a message without the upload links that became attachments.
fn body_without_links(body: &str, urls: &[String]) -> String {
    let mut out = body.to_owned();
    for u in urls {
        out = out.replace(u.as_str(), "");
    }
    out.trim().to_owned()
}

impl Outbox<'_> {
    /// Sends one message as a mail: to a correspondent, or to every member
    /// of a group (reply-all).
    pub async fn send(&self, msg: OutgoingMessage) -> Result<Outcome, BridgeError> {
        match &msg.to {
            Address::Contact(peer) => {
                let peer = crate::address::normalize(peer.as_str())
                    .map_err(|e| BridgeError::bad_request(e.0))?;
                self.send_to(&msg, &peer).await
            }
            Address::Room(room) if crate::lists::is_list_id(room.as_str()) => {
                self.send_to_list(&msg, room.as_str()).await
            }
            Address::Room(room) => self.send_to_group(&msg, room.as_str()).await,
            _ => Err(BridgeError::bad_request(
                "mail can only be written to an address (alice\\40example.com@this gateway) \
                 or a group",
            )),
        }
    }

    /// The subject the user wrote (XMPP `<subject/>`), when any.
    fn own_subject(msg: &OutgoingMessage) -> Option<String> {
        msg.subject
            .as_deref()
            .map(compose::header_text)
            .filter(|s| !s.trim().is_empty())
    }

    async fn send_to(&self, msg: &OutgoingMessage, peer: &str) -> Result<Outcome, BridgeError> {
        let mut conv = self.state.conversation(peer).map_err(store_err)?;

        // What this mail answers.
        let replied = match &msg.reply_to {
            Some(r) => self
                .state
                .mail(r.id.as_str())
                .map_err(store_err)?
                .map(|rec| (r.id.as_str().to_owned(), rec)),
            None => None,
        };
        let (in_reply_to, references, subject) = match (&replied, &conv.last) {
            (Some((id, rec)), _) => (
                Some(id.clone()),
                chain(&rec.references, id),
                compose::reply_subject(rec.subject.as_deref().unwrap_or_default()),
            ),
            (None, Some(last)) => (
                Some(last.clone()),
                conv.references.clone(),
                compose::reply_subject(conv.subject.as_deref().unwrap_or_default()),
            ),
            (None, None) => (None, Vec::new(), first_line_subject(&msg.body)),
        };
        // A subject the user wrote names the mail, and the conversation
        // from then on.
        let own_subject = Self::own_subject(msg);
        let subject = own_subject.clone().unwrap_or(subject);
        let message_id = compose::new_message_id(&self.account.email);
        let draft = self
            .draft(msg, vec![peer.to_owned()], subject, message_id.clone())
            .await?;
        let draft = Draft {
            in_reply_to: in_reply_to.clone(),
            references: references.clone(),
            ..draft
        };
        self.submit(&draft).await?;

        let thread = replied
            .as_ref()
            .map(|(_, r)| r.thread.clone())
            .or_else(|| conv.thread.clone())
            .unwrap_or_else(|| message_id.clone());
        self.state
            .put_mail(
                &message_id,
                &MailRecord {
                    uid: None,
                    thread: thread.clone(),
                    references: references.clone(),
                    subject: Some(draft.subject.clone()),
                    peer: peer.to_owned(),
                    room: None,
                },
            )
            .map_err(store_err)?;
        conv.references = chain(&references, &message_id);
        conv.last = Some(message_id.clone());
        if conv.subject.is_none() || own_subject.is_some() {
            conv.subject = Some(draft.subject.clone());
        }
        conv.thread = Some(thread);
        self.state
            .put_conversation(peer, &conv)
            .map_err(store_err)?;
        Ok(Outcome::sent(MessageId::new(message_id)))
    }

    /// A post to a mailing list: to its posting address (List-Post), as a
    /// reply to the thread the user answers (XEP-0461) or to the list's
    /// last post.
    async fn send_to_list(&self, msg: &OutgoingMessage, id: &str) -> Result<Outcome, BridgeError> {
        let mut l = self
            .state
            .list(id)
            .map_err(store_err)?
            .ok_or_else(|| BridgeError::not_found(format!("there is no mailing list {id}")))?;
        let Some(post) = l.post.clone() else {
            return Err(BridgeError::unsupported(format!(
                "The mailing list {} takes no posts (its mails have no List-Post address): \
                 your message was not sent.",
                l.name
            )));
        };
        let replied = match &msg.reply_to {
            Some(r) => self
                .state
                .mail(r.id.as_str())
                .map_err(store_err)?
                .map(|rec| (r.id.as_str().to_owned(), rec.references, rec.subject)),
            None => None,
        };
        let (in_reply_to, references, base) = match replied {
            Some((id, refs, subject)) => (Some(id.clone()), chain(&refs, &id), subject),
            None => (l.last.clone(), l.references.clone(), l.subject.clone()),
        };
        let subject = match (Self::own_subject(msg), &base) {
            (Some(s), _) => s,
            (None, Some(b)) => compose::reply_subject(b),
            (None, None) => first_line_subject(&msg.body),
        };
        let message_id = compose::new_message_id(&self.account.email);
        let draft = self
            .draft(msg, vec![post.clone()], subject, message_id.clone())
            .await?;
        let draft = Draft {
            in_reply_to: in_reply_to.clone(),
            references: references.clone(),
            ..draft
        };
        self.submit(&draft).await?;
        let thread = references
            .first()
            .cloned()
            .unwrap_or_else(|| message_id.clone());
        self.state
            .put_mail(
                &message_id,
                &MailRecord {
                    uid: None,
                    thread,
                    references: references.clone(),
                    subject: Some(draft.subject.clone()),
                    peer: post,
                    room: Some(id.to_owned()),
                },
            )
            .map_err(store_err)?;
        l.references = chain(&references, &message_id);
        l.last = Some(message_id.clone());
        l.subject = Some(draft.subject.clone());
        self.state.put_list(id, &l).map_err(store_err)?;
        Ok(Outcome::sent(MessageId::new(message_id)))
    }

    /// Reply-all in a group: to every member, threaded after the group's
    /// last mail (the first mail of a group the user opened is its root).
    async fn send_to_group(&self, msg: &OutgoingMessage, id: &str) -> Result<Outcome, BridgeError> {
        let mut g = self
            .state
            .group(id)
            .map_err(store_err)?
            .ok_or_else(|| BridgeError::not_found(format!("there is no mail group {id}")))?;
        let own_subject = Self::own_subject(msg);
        let subject = match (&own_subject, &g.last) {
            (Some(s), _) => s.clone(),
            (None, Some(_)) => compose::reply_subject(g.subject.as_deref().unwrap_or_default()),
            (None, None) => g
                .subject
                .clone()
                .unwrap_or_else(|| first_line_subject(&msg.body)),
        };
        let message_id = if g.last.is_none() {
            g.root.clone()
        } else {
            compose::new_message_id(&self.account.email)
        };
        let draft = self
            .draft(msg, g.members.clone(), subject, message_id.clone())
            .await?;
        let draft = Draft {
            in_reply_to: g.last.clone(),
            references: g.references.clone(),
            ..draft
        };
        self.submit(&draft).await?;
        self.state
            .put_mail(
                &message_id,
                &MailRecord {
                    uid: None,
                    thread: g.root.clone(),
                    references: g.references.clone(),
                    subject: Some(draft.subject.clone()),
                    peer: g.members.first().cloned().unwrap_or_default(),
                    room: Some(id.to_owned()),
                },
            )
            .map_err(store_err)?;
        g.references = chain(&g.references, &message_id);
        g.last = Some(message_id.clone());
        if g.subject.is_none() || own_subject.is_some() {
            g.subject = Some(crate::groups::base_subject(&draft.subject));
        }
        self.state.put_group(id, &g).map_err(store_err)?;
        Ok(Outcome::sent(MessageId::new(message_id)))
    }

    /// The mail of a message, without threading: text, formatted text,
    /// files (shared links downloaded).
    async fn draft(
        &self,
        msg: &OutgoingMessage,
        to: Vec<String>,
        subject: String,
        message_id: String,
    ) -> Result<Draft, BridgeError> {
        let mut files = Vec::new();
        let mut urls = Vec::new();
        for a in &msg.attachments {
            match &a.source {
                ferry_bridge::AttachmentSource::Url(u) => {
                    files.push(
                        download(self.shared, u, a.name.as_deref(), a.mime.as_deref()).await?,
                    );
                    urls.push(u.clone());
                }
                ferry_bridge::AttachmentSource::Bytes(b) => files.push(OutFile {
                    name: a.name.clone().unwrap_or_else(|| "file".into()),
                    mime: a
                        .mime
                        .clone()
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    data: b.clone(),
                }),
            }
        }
        Ok(Draft {
            from: self.account.email.clone(),
            from_name: self.prefs.display_name.clone(),
            to,
            cc: Vec::new(),
            subject: if subject.is_empty() {
                "(no subject)".into()
            } else {
                subject
            },
            message_id,
            in_reply_to: None,
            references: Vec::new(),
            body: body_without_links(&msg.body, &urls),
            html: msg
                .rich
                .as_ref()
                .filter(|r| r.is_styled())
                .map(|r| r.to_html(Dialect::Email)),
            files,
            read_receipt: self.prefs.read_receipts,
        })
    }

    /// Submits a mail, and queues its Sent copy.
    async fn submit(&self, draft: &Draft) -> Result<(), BridgeError> {
        let mail = compose::build(draft).map_err(|e| BridgeError::bad_request(e.0))?;
        let raw = mail.formatted();
        smtp::send(
            self.transport,
            &self.account.servers.smtp,
            mail.envelope(),
            &raw,
        )
        .await
        .map_err(|e| match e {
            SmtpError::Refused { text, .. } => BridgeError::remote(text),
            SmtpError::BadCredentials(t) => BridgeError::new(ErrorKind::NotAuthorized, t),
            SmtpError::Unreachable { .. } => BridgeError::unavailable(e.to_string()),
            other => BridgeError::remote(other.to_string()),
        })?;
        if self.prefs.sent_copy {
            self.queue.push(Request::AppendSent(raw));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_new_conversations() {
        assert_eq!(first_line_subject("\n\nHello there\nsecond"), "Hello there");
        let long = "x".repeat(100);
        assert_eq!(first_line_subject(&long).chars().count(), 61);
        assert_eq!(first_line_subject("a\r\nBcc: x"), "a");
        assert_eq!(
            body_without_links("see http://u/f.png", &["http://u/f.png".into()]),
            "see"
        );
    }
}
