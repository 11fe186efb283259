//! Writing a mail (lettre's builder): From the account, To/Cc, Subject,
//! Message-ID, In-Reply-To and References for replies, the text, and
//! real MIME attachments. Everything that becomes a header is cleaned
//! first: CR, LF, NUL and other control characters from XMPP never reach
//! a header line (they become spaces), and addresses are checked.

use std::time::SystemTime;

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use crate::address;

/// A file to attach.
#[derive(Clone, PartialEq, Eq)]
pub struct OutFile {
    /// File name.
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Content.
    pub data: Vec<u8>,
}

/// Everything a new mail needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Draft {
    /// The account's address.
    pub from: String,
    /// The sender's display name.
    pub from_name: Option<String>,
    /// Recipients.
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// The Message-ID (without brackets).
    pub message_id: String,
    /// The mail answered, when it is a reply.
    pub in_reply_to: Option<String>,
    /// The thread's ids, oldest first.
    pub references: Vec<String>,
    /// The text.
    pub body: String,
    /// The same text formatted (an HTML fragment), sent beside it as
    /// multipart/alternative.
    pub html: Option<String>,
    /// Files.
    pub files: Vec<OutFile>,
    /// Ask the recipient's mail program for a read receipt (RFC 8098
    /// `Disposition-Notification-To`).
    pub read_receipt: bool,
}

impl std::fmt::Debug for OutFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OutFile({}, {}, {} bytes)",
            self.name,
            self.mime,
            self.data.len()
        )
    }
}

/// A mail that cannot be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ComposeError(pub String);

/// Header text: every control character (CR, LF, NUL, tab …) becomes a
/// space, so nothing can start a new header line.
pub fn header_text(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A message id is `local@domain` with no spaces, brackets or controls.
fn checked_id(id: &str) -> Option<String> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    let ok = !id.is_empty()
        && id.len() <= 250
        && id.contains('@')
        && id.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\')
        });
    ok.then(|| id.to_owned())
}

/// A fresh Message-ID on the account's domain.
pub fn new_message_id(from: &str) -> String {
    let domain = from.rsplit_once('@').map_or("ferry.invalid", |(_, d)| d);
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes.copy_from_slice(&t.to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("ferry.{hex}@{domain}")
}

/// The subject of a reply: `Re: ` once.
pub fn reply_subject(subject: &str) -> String {
    let s = header_text(subject);
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("re:") || lower.starts_with("aw:") || lower.starts_with("sv:") {
        s
    } else if s.is_empty() {
        String::new()
    } else {
        format!("Re: {s}")
    }
}

fn mailbox(addr: &str, name: Option<&str>) -> Result<Mailbox, ComposeError> {
    let addr = address::normalize(addr).map_err(|e| ComposeError(e.0))?;
    let parsed = addr
        .parse::<lettre::Address>()
        .map_err(|e| ComposeError(format!("{addr}: {e}")))?;
    Ok(Mailbox::new(
        name.map(header_text).filter(|n| !n.is_empty()),
        parsed,
    ))
}

/// Builds the mail.
pub fn build(d: &Draft) -> Result<Message, ComposeError> {
    if d.to.is_empty() {
        return Err(ComposeError("a mail needs at least one recipient".into()));
    }
    let message_id = checked_id(&d.message_id)
        .ok_or_else(|| ComposeError(format!("{:?} is not a message id", d.message_id)))?;
    let mut b = Message::builder()
        .from(mailbox(&d.from, d.from_name.as_deref())?)
        .subject(header_text(&d.subject))
        .message_id(Some(format!("<{message_id}>")))
        .date(SystemTime::now())
        .user_agent(format!(
            "Ferry {} (XMPP gateway)",
            env!("CARGO_PKG_VERSION")
        ));
    for to in &d.to {
        b = b.to(mailbox(to, None)?);
    }
    for cc in &d.cc {
        b = b.cc(mailbox(cc, None)?);
    }
    if let Some(id) = d.in_reply_to.as_deref().and_then(checked_id) {
        b = b.in_reply_to(format!("<{id}>"));
    }
    let refs: Vec<String> = d
        .references
        .iter()
        .filter_map(|r| checked_id(r))
        .map(|r| format!("<{r}>"))
        .collect();
    if !refs.is_empty() {
        b = b.references(refs.join(" "));
    }
    if d.read_receipt {
        let own = address::normalize(&d.from).map_err(|e| ComposeError(e.0))?;
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Disposition-Notification-To"),
            own,
        ));
    }
    let body = d.body.replace("\r\n", "\n").replace(['\r', '\0'], "");
    let text = SinglePart::plain(body.clone());
    let alternative = d.html.as_ref().map(|h| {
        MultiPart::alternative_plain_html(
            body,
            format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>{h}</body></html>\n"
            ),
        )
    });
    let result = if d.files.is_empty() {
        match alternative {
            Some(alt) => b.multipart(alt),
            None => b.singlepart(text),
        }
    } else {
        let mut mixed = match alternative {
            Some(alt) => MultiPart::mixed().multipart(alt),
            None => MultiPart::mixed().singlepart(text),
        };
        for f in &d.files {
            let ct = ContentType::parse(&header_text(&f.mime)).unwrap_or(
                ContentType::parse("application/octet-stream")
                    .map_err(|e| ComposeError(e.to_string()))?,
            );
            let name = header_text(&f.name).replace(['/', '\\', '"'], "_");
            mixed = mixed.singlepart(Attachment::new(name).body(f.data.clone(), ct));
        }
        b.multipart(mixed)
    };
    result.map_err(|e| ComposeError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            from: "me@example.com".into(),
            from_name: Some("Me\r\nBcc: evil@example.org".into()),
            to: vec!["bob@example.org".into()],
            subject: "hello\r\nBcc: evil@example.org\0".into(),
            message_id: new_message_id("me@example.com"),
            in_reply_to: Some("m1@example.org".into()),
            references: vec![
                "m0@example.org".into(),
                "bad id\r\nX: y".into(),
                "m1@example.org".into(),
            ],
            body: "line one\r\nline two".into(),
            ..Draft::default()
        }
    }

    #[test]
    fn headers_cannot_be_injected() {
        let raw = String::from_utf8(build(&draft()).unwrap().formatted()).unwrap();
        let header = raw.split("\r\n\r\n").next().unwrap();
        for line in header.split("\r\n") {
            assert!(!line.to_ascii_lowercase().starts_with("bcc:"), "{line}");
            assert!(!line.starts_with("X: "), "{line}");
        }
        assert!(header.contains("In-Reply-To: <m1@example.org>"), "{header}");
        assert!(
            header.contains("References: <m0@example.org> <m1@example.org>"),
            "{header}"
        );
        assert!(
            header.contains("Subject: hello Bcc: evil@example.org"),
            "{header}"
        );
    }

    #[test]
    fn bad_addresses_and_ids_are_refused() {
        let mut d = draft();
        d.to = vec!["bob@example.org\r\nBcc: x@y.z".into()];
        assert!(build(&d).is_err());
        let mut d = draft();
        d.message_id = "no at sign".into();
        assert!(build(&d).is_err());
        let mut d = draft();
        d.to.clear();
        assert!(build(&d).is_err());
    }

    #[test]
    fn attachments_are_mime_parts() {
        let mut d = draft();
        d.files.push(OutFile {
            name: "../../etc/passwd\".png".into(),
            mime: "image/png".into(),
            data: vec![0x89, b'P', b'N', b'G'],
        });
        let raw = String::from_utf8_lossy(&build(&d).unwrap().formatted()).into_owned();
        assert!(raw.contains("multipart/mixed"), "{raw}");
        assert!(raw.contains("Content-Type: image/png"), "{raw}");
        let parsed = crate::parse::parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.files.len(), 1);
        assert_eq!(parsed.files[0].data, vec![0x89, b'P', b'N', b'G']);
    }

    #[test]
    fn reply_subjects() {
        assert_eq!(reply_subject("lunch"), "Re: lunch");
        assert_eq!(reply_subject("RE: lunch"), "RE: lunch");
        assert_eq!(reply_subject(""), "");
    }
}
