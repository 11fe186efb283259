//! The limits a network declares ([`Limits`]), enforced by the core before
//! a message reaches the bridge: message length (here, when the stanza is
//! read, so the error names the limit), and the size and type of files
//! (in the session's task, just before the action runs, so that the check
//! — which asks the file's server — keeps the user's messages in order).

use std::time::Duration;

use ferry_bridge::{Action, AttachmentSource, BridgeError, ErrorKind, Limits};

/// How long the file's server gets to answer the size and type question.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A message text of `len` bytes against the network's limit.
pub fn check_text(limits: &Limits, network: &str, len: usize) -> Result<(), String> {
    match limits.message_bytes {
        Some(max) if len > max => Err(format!(
            "The message is too long for {network}: {len} bytes, {network} takes at most {max} bytes."
        )),
        _ => Ok(()),
    }
}

/// Human-readable byte count.
fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.0} kB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// Checks the files of a message against the network's limits: the size
/// and type the attachment declares, else what its server answers to a
/// HEAD request (a server that does not answer is not held against the
/// file: the bridge finds out when it fetches it).
pub async fn check_files(
    limits: &Limits,
    network: &str,
    action: &Action,
    http: &super::upload::LazyHttp,
) -> Result<(), BridgeError> {
    if limits.attachment_bytes.is_none() && limits.attachment_types.is_empty() {
        return Ok(());
    }
    let message = match action {
        Action::SendMessage(m) | Action::Edit { message: m, .. } => m,
        _ => return Ok(()),
    };
    for a in &message.attachments {
        let name = a.name.clone().unwrap_or_else(|| "the file".into());
        let (mut bytes, mut mime) = (a.size, a.mime.clone());
        if let AttachmentSource::Bytes(b) = &a.source {
            bytes = bytes.or(Some(b.len() as u64));
        }
        if let (AttachmentSource::Url(url), true) = (&a.source, bytes.is_none() || mime.is_none())
            && let Ok(http) = http.get()
            && let Ok(Ok(r)) = tokio::time::timeout(HEAD_TIMEOUT, http.head(url).send()).await
            && r.status().is_success()
        {
            let h = r.headers();
            bytes = bytes.or_else(|| {
                h.get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            });
            mime = mime.or_else(|| {
                h.get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        }
        if let (Some(max), Some(n)) = (limits.attachment_bytes, bytes)
            && n > max
        {
            return Err(BridgeError::new(
                ErrorKind::NotAllowed,
                format!(
                    "{name} is too large for {network}: {}, {network} takes files of at most {}.",
                    size(n),
                    size(max)
                ),
            ));
        }
        if let Some(m) = &mime
            && !limits.accepts_type(m)
        {
            return Err(BridgeError::new(
                ErrorKind::NotAllowed,
                format!(
                    "{network} does not take files of type {m} ({name}); it takes {}.",
                    limits.attachment_types.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bridge::{Address, Attachment, ContactId, OutgoingMessage};

    #[test]
    fn text_over_the_network_limit_is_refused_with_the_numbers() {
        let limits = Limits {
            message_bytes: Some(10),
            ..Limits::default()
        };
        assert!(check_text(&limits, "SMS", 10).is_ok());
        let e = check_text(&limits, "SMS", 11).expect_err("too long");
        assert!(
            e.contains("11 bytes") && e.contains("at most 10 bytes"),
            "{e}"
        );
        assert!(check_text(&Limits::default(), "SMS", 1 << 20).is_ok());
    }

    #[tokio::test]
    async fn declared_sizes_and_types_are_checked_without_asking() {
        let limits = Limits {
            attachment_bytes: Some(1000),
            attachment_types: vec!["image/*".into()],
            ..Limits::default()
        };
        let mut m = OutgoingMessage::text(Address::Contact(ContactId::new("c")), "i", "");
        m.attachments.push(Attachment {
            source: AttachmentSource::Bytes(vec![0; 2000]),
            name: Some("big.png".into()),
            mime: Some("image/png".into()),
            size: None,
            caption: None,
        });
        let http = crate::gateway::upload::LazyHttp::default();
        let e = check_files(&limits, "SMS", &Action::SendMessage(m.clone()), &http)
            .await
            .expect_err("too large");
        assert!(e.message.contains("big.png is too large for SMS"), "{e}");
        m.attachments[0].source = AttachmentSource::Bytes(vec![0; 10]);
        m.attachments[0].mime = Some("video/mp4".into());
        let e = check_files(&limits, "SMS", &Action::SendMessage(m.clone()), &http)
            .await
            .expect_err("type");
        assert!(e.message.contains("video/mp4"), "{e}");
        m.attachments[0].mime = Some("image/jpeg; q=1".into());
        assert!(
            check_files(&limits, "SMS", &Action::SendMessage(m), &http)
                .await
                .is_ok()
        );
    }
}
