//! Reading a fetched mail (mail-parser does the MIME: every charset,
//! encoded-words, transfer encodings): who wrote it to whom, its ids for
//! threading (Message-ID, In-Reply-To, References), the subject, the date,
//! the readable text (text/plain preferred, else the HTML made readable),
//! the sanitised HTML, the files, and whether it is a mailing-list mail
//! or a delivery report. Malformed input never panics: what cannot be read
//! is left out, and a mail that is not a mail at all is an error the
//! caller reports.

use std::time::{Duration, SystemTime};

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders as _, PartType};

use crate::address;
use crate::dsn::{self, Bounce, Displayed};
use crate::html;

/// A person in a mail header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// The address, normalised.
    pub address: String,
    /// The display name, when the header has one.
    pub name: Option<String>,
}

/// A file in a mail.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// File name.
    pub name: Option<String>,
    /// MIME type.
    pub mime: String,
    /// Content.
    pub data: Vec<u8>,
    /// Shown inside the HTML (an inline image) rather than attached.
    pub inline: bool,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "File({:?}, {}, {} bytes)",
            self.name,
            self.mime,
            self.data.len()
        )
    }
}

/// What the bridge needs of a mail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mail {
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To ids.
    pub in_reply_to: Vec<String>,
    /// References ids, oldest first.
    pub references: Vec<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Author.
    pub from: Option<Person>,
    /// Where replies go, when not to the author.
    pub reply_to: Option<Person>,
    /// To recipients.
    pub to: Vec<Person>,
    /// Cc recipients.
    pub cc: Vec<Person>,
    /// The Date header.
    pub date: Option<SystemTime>,
    /// The readable text (text/plain, or the HTML as text).
    pub text: String,
    /// The HTML body, sanitised, when the mail has one.
    pub html: Option<String>,
    /// Attachments and inline images.
    pub files: Vec<File>,
    /// List-Id, for mailing lists.
    pub list_id: Option<String>,
    /// The list's posting address (List-Post `<mailto:…>`; None for `NO`
    /// or without the header).
    pub list_post: Option<String>,
    /// Auto-Submitted other than `no` (vacation replies, notifications).
    pub auto_submitted: bool,
    /// A delivery status notification (bounce).
    pub bounce: Option<Bounce>,
    /// A read receipt for one of the user's mails.
    pub displayed: Option<Displayed>,
}

impl Mail {
    /// The id of the conversation this mail belongs to: the first of its
    /// References, else what it replies to, else itself.
    pub fn thread_root(&self) -> Option<&str> {
        self.references
            .first()
            .or_else(|| self.in_reply_to.first())
            .or(self.message_id.as_ref())
            .map(String::as_str)
    }

    /// Everyone in the conversation except `own`: the author, To and Cc.
    pub fn participants(&self, own: &str) -> Vec<Person> {
        let mut out: Vec<Person> = Vec::new();
        for p in self.from.iter().chain(self.to.iter()).chain(self.cc.iter()) {
            if p.address != own && !out.iter().any(|o| o.address == p.address) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// A mail that could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the mail could not be read: {0}")]
pub struct ParseError(pub String);

/// Strips `<>` and spaces from a message id.
pub fn bare_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_owned()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<String> = match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    };
    list.iter()
        .map(|s| bare_id(s))
        .filter(|s| !s.is_empty() && !s.contains(['\r', '\n', '\0']))
        .collect()
}

fn people(addr: Option<&Address<'_>>) -> Vec<Person> {
    let Some(addr) = addr else {
        return Vec::new();
    };
    addr.clone()
        .into_list()
        .into_iter()
        .filter_map(|a| {
            let address = address::normalize(a.address.as_deref()?).ok()?;
            let name = a
                .name
                .as_deref()
                .map(|n| clean_line(n.trim().trim_matches('"')))
                .filter(|n| !n.is_empty() && *n != address);
            Some(Person { address, name })
        })
        .collect()
}

/// One line of header text: control characters become spaces.
pub fn clean_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Reads a mail.
pub fn parse(raw: &[u8]) -> Result<Mail, ParseError> {
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| ParseError("no mail headers".into()))?;
    if msg.headers().is_empty() {
        return Err(ParseError("no mail headers".into()));
    }
    let mut mail = Mail {
        message_id: msg.message_id().map(bare_id).filter(|s| !s.is_empty()),
        in_reply_to: ids(msg.in_reply_to()),
        references: ids(msg.references()),
        subject: msg.subject().map(clean_line).filter(|s| !s.is_empty()),
        from: people(msg.from()).into_iter().next(),
        reply_to: people(msg.reply_to()).into_iter().next(),
        to: people(msg.to()),
        cc: people(msg.cc()),
        date: msg.date().and_then(|d| {
            let ts = d.to_timestamp();
            u64::try_from(ts)
                .ok()
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        }),
        list_id: msg
            .header_raw("List-Id")
            .map(clean_line)
            .filter(|s| !s.is_empty()),
        list_post: msg.header_raw("List-Post").and_then(list_post),
        auto_submitted: msg
            .header_raw("Auto-Submitted")
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no")),
        ..Mail::default()
    };

    // The text: every text/plain part of the body, in order; HTML parts
    // that stand in for missing plain text are turned into text.
    let mut texts = Vec::new();
    for part in msg.text_bodies() {
        match &part.body {
            PartType::Text(t) => texts.push(t.to_string()),
            PartType::Html(h) => texts.push(html::to_text(h)),
            _ => {}
        }
    }
    let html_body = msg.html_bodies().find_map(|p| match &p.body {
        PartType::Html(h) => Some(h.to_string()),
        _ => None,
    });
    if texts.iter().all(|t| t.trim().is_empty())
        && let Some(h) = &html_body
    {
        texts = vec![html::to_text(h)];
    }
    mail.text = texts
        .join("\n")
        .replace("\r\n", "\n")
        .replace(['\r', '\0'], "");
    mail.html = html_body.map(|h| html::sanitize(&h));

    let bodies: Vec<u32> = msg
        .text_body
        .iter()
        .chain(msg.html_body.iter())
        .copied()
        .collect();
    for (i, part) in msg.parts.iter().enumerate() {
        let id = u32::try_from(i).unwrap_or(u32::MAX);
        if bodies.contains(&id) {
            continue;
        }
        let data = match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
            PartType::Text(t) if part.attachment_name().is_some() => t.as_bytes().to_vec(),
            PartType::Html(h) if part.attachment_name().is_some() => h.as_bytes().to_vec(),
            _ => continue,
        };
        let mime = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        if mime.starts_with("message/") || mime == "text/rfc822-headers" {
            // Parts of delivery reports and read receipts, read by dsn.
            continue;
        }
        mail.files.push(File {
            name: part
                .attachment_name()
                .map(|n| clean_line(n).replace(['/', '\\'], "_"))
                .filter(|n| !n.is_empty()),
            mime,
            data,
            inline: matches!(part.body, PartType::InlineBinary(_)) || part.content_id().is_some(),
        });
    }
    mail.bounce = dsn::read(&msg);
    mail.displayed = dsn::read_mdn(&msg);
    Ok(mail)
}

/// The address of a List-Post header (`<mailto:dev@example.org?subject=x>`),
/// when it is a valid one.
fn list_post(raw: &str) -> Option<String> {
    let start = raw.find("<mailto:")? + "<mailto:".len();
    let rest = &raw[start..];
    let end = rest.find('>')?;
    let addr = rest[..end].split('?').next().unwrap_or_default();
    crate::address::normalize(addr.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn plain_mail_with_threading_headers() {
        let raw = crlf(
            "From: \"Bob B.\" <Bob@Example.org>\nTo: me@example.com, Carol <carol@example.net>\n\
             Cc: dave@example.org\nSubject: Re: lunch\nMessage-ID: <m3@example.org>\n\
             In-Reply-To: <m2@example.com>\nReferences: <m1@example.org> <m2@example.com>\n\
             Date: Tue, 1 Jul 2025 10:52:37 +0200\n\nsee you\n",
        );
        let m = parse(&raw).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("m3@example.org"));
        assert_eq!(m.references, ["m1@example.org", "m2@example.com"]);
        assert_eq!(m.in_reply_to, ["m2@example.com"]);
        assert_eq!(m.thread_root(), Some("m1@example.org"));
        assert_eq!(
            m.from,
            Some(Person {
                address: "bob@example.org".into(),
                name: Some("Bob B.".into())
            })
        );
        assert_eq!(m.subject.as_deref(), Some("Re: lunch"));
        assert_eq!(m.text.trim(), "see you");
        assert_eq!(m.participants("me@example.com").len(), 3);
        assert!(m.date.is_some());
        assert!(m.bounce.is_none());
    }

    #[test]
    fn charsets_and_encoded_words() {
        let raw = b"From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.org>\r\n\
To: me@example.com\r\nSubject: =?UTF-8?B?w6l0w6k=?= =?iso-8859-1?q?_caf=E9?=\r\n\
Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Gr=FC=DFe aus K=F6ln\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.from.unwrap().name.as_deref(), Some("André"));
        assert_eq!(m.subject.as_deref(), Some("été café"));
        assert_eq!(m.text.trim(), "Grüße aus Köln");
    }

    #[test]
    fn html_only_becomes_text_and_is_sanitised() {
        let raw = crlf(
            "From: a@example.org\nTo: me@example.com\nContent-Type: text/html; charset=utf-8\n\n\
             <html><head><script>alert(1)</script></head><body><p>Hello <b>there</b></p>\
             <a href=\"https://example.org/x\" onclick=\"evil()\">link</a></body></html>\n",
        );
        let m = parse(&raw).unwrap();
        assert!(m.text.contains("Hello"), "{}", m.text);
        assert!(!m.text.contains("alert"), "{}", m.text);
        let h = m.html.unwrap();
        assert!(!h.contains("script") && !h.contains("onclick"), "{h}");
        assert!(
            h.contains("<b>there</b>") || h.contains("<strong>there</strong>"),
            "{h}"
        );
    }

    #[test]
    fn alternative_prefers_plain_and_attachments_are_files() {
        let raw = crlf(
            "From: a@example.org\nTo: me@example.com\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"X\"\n\n--X\n\
             Content-Type: multipart/alternative; boundary=\"Y\"\n\n--Y\n\
             Content-Type: text/plain; charset=utf-8\n\nplain version\n--Y\n\
             Content-Type: text/html; charset=utf-8\n\n<p>html version</p>\n--Y--\n--X\n\
             Content-Type: image/png\nContent-Disposition: attachment; filename=\"../pic.png\"\n\
             Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--X--\n",
        );
        let m = parse(&raw).unwrap();
        assert_eq!(m.text.trim(), "plain version");
        assert_eq!(m.files.len(), 1, "{:?}", m.files);
        assert_eq!(m.files[0].mime, "image/png");
        assert_eq!(m.files[0].name.as_deref(), Some(".._pic.png"));
        assert_eq!(m.files[0].data, b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn malformed_input_never_panics() {
        assert!(parse(b"").is_err());
        for raw in [
            &b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=\"never\"\r\n\r\n--never\r\nContent-Type: text/plain\r\n"[..],
            b"Subject: =?UTF-8?B?####?=\r\n\r\nbody",
            b"\xff\xfe\x00garbage\r\n\r\n\x00\x01",
            b"From: <<<@>>>\r\nTo: ,,,\r\nReferences: <a\r\n\r\nx",
        ] {
            let _ = parse(raw);
        }
    }
}
