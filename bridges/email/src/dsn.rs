//! Reports about the user's own mails: delivery status notifications
//! (RFC 3464 bounces) — which mail (the Message-ID of the returned original
//! or its headers), to whom, and the server's reason, so that the user sees
//! an error on the message they sent rather than a chat from MAILER-DAEMON
//! — and message disposition notifications (RFC 8098 read receipts), which
//! say that a correspondent has displayed one of them.

use mail_parser::{Message, MessageParser, MimeHeaders as _, PartType};

/// A bounce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bounce {
    /// The Message-ID of the mail that failed, when the report includes
    /// its headers.
    pub original_id: Option<String>,
    /// The recipients that failed.
    pub recipients: Vec<String>,
    /// Whether the failure is final (`Action: failed`, status 5.x.x)
    /// rather than a delay warning.
    pub permanent: bool,
    /// The reason, for the user: the diagnostic code, else the status.
    pub reason: String,
}

/// A read receipt: the correspondent displayed one of the user's mails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Displayed {
    /// The Message-ID of the mail that was displayed.
    pub original_id: String,
}

fn is_report(msg: &Message<'_>, kind: &str) -> bool {
    msg.root_part().content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|r| r.eq_ignore_ascii_case(kind))
    })
}

/// Reads a read receipt (`Disposition: …; displayed`); None for every
/// other mail, and for dispositions other than displayed.
pub fn read_mdn(msg: &Message<'_>) -> Option<Displayed> {
    if !is_report(msg, "disposition-notification") {
        return None;
    }
    for part in &msg.parts {
        let is_mdn = part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("disposition-notification")
                        || s.eq_ignore_ascii_case("global-disposition-notification")
                })
        });
        if !is_mdn {
            continue;
        }
        let text = String::from_utf8_lossy(part.contents()).into_owned();
        let displayed = field(&text, "Disposition").iter().any(|d| {
            d.rsplit(';')
                .next()
                .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("displayed"))
        });
        let original = field(&text, "Original-Message-ID")
            .first()
            .map(|id| crate::parse::bare_id(id))
            .filter(|id| !id.is_empty());
        if let (true, Some(original_id)) = (displayed, original) {
            return Some(Displayed { original_id });
        }
    }
    None
}

fn field<'a>(block: &'a str, name: &str) -> Vec<&'a str> {
    block
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// Reads a delivery report; None for every other mail.
pub fn read(msg: &Message<'_>) -> Option<Bounce> {
    let root = msg.root_part();
    let report = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|r| r.eq_ignore_ascii_case("delivery-status"))
    });
    if !report {
        return None;
    }
    let mut bounce = Bounce::default();
    let mut actions = Vec::new();
    let mut statuses = Vec::new();
    let mut diagnostics = Vec::new();
    for part in &msg.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let kind = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase()
        );
        match kind.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                for r in field(&text, "Final-Recipient") {
                    let addr = r.rsplit(';').next().unwrap_or(r).trim().to_lowercase();
                    if !addr.is_empty() {
                        bounce.recipients.push(addr);
                    }
                }
                actions.extend(field(&text, "Action").into_iter().map(str::to_lowercase));
                statuses.extend(field(&text, "Status").into_iter().map(str::to_owned));
                diagnostics.extend(
                    field(&text, "Diagnostic-Code")
                        .into_iter()
                        .map(|d| d.split_once(';').map_or(d, |(_, t)| t).trim().to_owned()),
                );
            }
            "message/rfc822" | "message/global" => {
                if let PartType::Message(inner) = &part.body {
                    bounce.original_id = inner.message_id().map(crate::parse::bare_id);
                }
            }
            "text/rfc822-headers" | "message/global-headers" => {
                let mut headers = part.contents().to_vec();
                headers.extend_from_slice(b"\r\n\r\n");
                if let Some(h) = MessageParser::default().parse_headers(&headers) {
                    bounce.original_id = h.message_id().map(crate::parse::bare_id);
                }
            }
            _ => {}
        }
    }
    bounce.permanent =
        actions.iter().any(|a| a == "failed") || statuses.iter().any(|s| s.starts_with('5'));
    bounce.reason = diagnostics
        .first()
        .cloned()
        .or_else(|| statuses.first().map(|s| format!("status {s}")))
        .unwrap_or_else(|| "the mail could not be delivered".into());
    Some(bounce)
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    #[test]
    fn postfix_bounce_is_read() {
        let raw = "From: MAILER-DAEMON@localhost (Mail Delivery System)\r\n\
To: me@localhost\r\nSubject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; localhost\r\n\r\n\
Final-Recipient: rfc822; nobody@nowhere.invalid\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: X-Postfix; outside mail is disabled in tests\r\n\r\n\
--B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
From: me@localhost\r\nTo: nobody@nowhere.invalid\r\nMessage-ID: <orig-1@localhost>\r\n\
Subject: hello\r\n\r\n--B--\r\n";
        let m = parse(raw.as_bytes()).unwrap();
        let b = m.bounce.expect("a bounce");
        assert_eq!(b.original_id.as_deref(), Some("orig-1@localhost"));
        assert_eq!(b.recipients, ["nobody@nowhere.invalid"]);
        assert!(b.permanent);
        assert_eq!(b.reason, "outside mail is disabled in tests");
    }

    #[test]
    fn read_receipts_are_read() {
        let raw = "From: bob@example.org\r\nTo: me@example.com\r\nSubject: Read: hello\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=disposition-notification; boundary=\"R\"\r\n\r\n\
--R\r\nContent-Type: text/plain\r\n\r\nYour message was displayed.\r\n\
--R\r\nContent-Type: message/disposition-notification\r\n\r\n\
Reporting-UA: mua.example.org; Thunderbird\r\nFinal-Recipient: rfc822;bob@example.org\r\n\
Original-Message-ID: <ferry.1@example.com>\r\n\
Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--R--\r\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.displayed.unwrap().original_id, "ferry.1@example.com");
        assert!(m.bounce.is_none());
        let deleted = raw.replace("; displayed", "; deleted");
        assert!(parse(deleted.as_bytes()).unwrap().displayed.is_none());
    }

    #[test]
    fn ordinary_mail_is_no_bounce() {
        let m = parse(b"From: a@example.org\r\nTo: b@example.org\r\n\r\nhi").unwrap();
        assert!(m.bounce.is_none());
    }
}
