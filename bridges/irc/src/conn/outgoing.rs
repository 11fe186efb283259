//! What the user sends: messages turned into PRIVMSG/NOTICE lines (IRC
//! formatting, CTCP ACTION, one line per body line or one draft/multiline
//! batch, long lines cut to the real prefix length), typing
//! notifications, reactions and redactions (client tags).

use std::time::{Duration, Instant};

use ferry_bridge::{
    BridgeError, ChatState, ErrorKind, MessageId, MessageKind, Outcome, OutgoingMessage,
};

use super::{Conn, ECHO_TIMEOUT, EchoWait, Pending, PendingKind, REPLY_TIMEOUT, Reply};
use crate::format;
use crate::proto::{Line, wire_len};

/// How long the echo of a message sent while disconnected is waited for.
const DEFERRED_ECHO_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest pause between two `+typing=active` to the same target.
const TYPING_REPEAT: Duration = Duration::from_secs(3);

/// Cleans a body for IRC: CR LF and lone CR become line breaks, NUL and
/// CTCP markers go, blank lines at both ends are dropped and blank lines
/// inside become a single space (IRC cannot send an empty line).
pub fn body_lines(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text: String = text
        .chars()
        .filter(|c| *c != '\0' && *c != '\x01')
        .collect();
    let mut lines: Vec<String> = text.split('\n').map(|l| l.trim_end().to_owned()).collect();
    while lines
        .last()
        .is_some_and(|l| format::strip(l).trim().is_empty())
    {
        lines.pop();
    }
    while lines
        .first()
        .is_some_and(|l| format::strip(l).trim().is_empty())
    {
        lines.remove(0);
    }
    for l in lines.iter_mut() {
        if l.is_empty() {
            l.push(' ');
        }
    }
    lines
}

/// Parses a `draft/multiline` capability value (`max-bytes=4096,max-lines=24`).
fn multiline_limits(value: &str) -> (usize, usize) {
    let mut bytes = 0;
    let mut lines = 100;
    for kv in value.split(',') {
        match kv.split_once('=') {
            Some(("max-bytes", v)) => bytes = v.parse().unwrap_or(0),
            Some(("max-lines", v)) => lines = v.parse().unwrap_or(100),
            _ => {}
        }
    }
    (bytes, lines)
}

impl Conn {
    /// Bytes the server puts in front of our messages when relaying them
    /// (`:nick!user@host `): learned from our own echoes, JOINs and the
    /// welcome, else the worst case biboumi also assumes.
    pub fn prefix_len(&self) -> usize {
        match &self.me {
            Some(src) if src.user.is_some() && src.host.is_some() => {
                1 + src.nick.len()
                    + 1
                    + src.user.as_ref().map_or(0, |u| u.len())
                    + 1
                    + src.host.as_ref().map_or(0, |h| h.len())
                    + 1
            }
            _ => 1 + self.nick.len() + 1 + 10 + 1 + 63 + 1,
        }
    }

    /// Bytes left for the text of `COMMAND target :text` relayed to others.
    pub fn text_budget(&self, command: &str, target: &str, extra: usize) -> usize {
        let fixed = 2
            + self.prefix_len()
            + command.len()
            + 1
            + wire_len(target, self.out_encoding)
            + 2
            + extra;
        self.isupport.linelen.max(512).saturating_sub(fixed).max(32)
    }

    /// Sends a message to a channel or nick; `reply` gets the message id
    /// once the server echoed it (or at once without echo-message).
    pub(super) fn send_message(
        &mut self,
        target: &str,
        msg: &OutgoingMessage,
        reply: Reply,
        now: Instant,
    ) {
        let text = match &msg.rich {
            Some(rich) if rich.is_styled() => format::render(rich),
            _ => msg.body.clone(),
        };
        let lines = body_lines(&text);
        if lines.is_empty() {
            let _ = reply.send(Err(BridgeError::bad_request(
                "An empty message cannot be sent to IRC",
            )));
            return;
        }
        let command = if msg.kind == MessageKind::Notice {
            "NOTICE"
        } else {
            "PRIVMSG"
        };
        let emote = msg.kind == MessageKind::Emote;
        let tags_ok = self.has_cap("message-tags");
        let reply_tag = msg
            .reply_to
            .as_ref()
            .filter(|_| tags_ok)
            .map(|r| r.id.as_str().to_owned());
        let extra = if emote { "\x01ACTION \x01".len() } else { 0 };
        let budget = self.text_budget(command, target, extra);

        let mut built: Vec<Line> = Vec::new();
        let multiline = self
            .caps
            .value("draft/multiline")
            .filter(|_| {
                self.has_cap("draft/multiline")
                    && self.has_cap("batch")
                    && lines.len() > 1
                    && !emote
            })
            .map(multiline_limits);
        let mut used_batch = false;
        if let Some((max_bytes, max_lines)) = multiline {
            let total: usize = lines.iter().map(|l| l.len()).sum::<usize>() + lines.len();
            let pieces: Vec<(String, bool)> = lines
                .iter()
                .flat_map(|l| {
                    format::split_line(l, budget, self.out_encoding)
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| (p, i > 0))
                        .collect::<Vec<_>>()
                })
                .collect();
            if (max_bytes == 0 || total <= max_bytes) && pieces.len() <= max_lines {
                used_batch = true;
                self.label_seq += 1;
                let reference = format!("ml{}", self.label_seq);
                let open_ref = format!("+{reference}");
                let mut tags: Vec<(&str, Option<&str>)> = Vec::new();
                if let Some(r) = &reply_tag {
                    tags.push(("+draft/reply", Some(r)));
                }
                match Line::tagged(&tags, "BATCH", &[&open_ref, "draft/multiline", target]) {
                    Ok(l) => built.push(l),
                    Err(e) => {
                        let _ = reply.send(Err(BridgeError::bad_request(e.to_string())));
                        return;
                    }
                }
                for (piece, concat) in &pieces {
                    let mut tags: Vec<(&str, Option<&str>)> =
                        vec![("batch", Some(reference.as_str()))];
                    if *concat {
                        tags.push(("draft/multiline-concat", None));
                    }
                    match Line::tagged(&tags, command, &[target, piece]) {
                        Ok(l) => built.push(l),
                        Err(e) => {
                            let _ = reply.send(Err(BridgeError::bad_request(e.to_string())));
                            return;
                        }
                    }
                }
                let close_ref = format!("-{reference}");
                if let Ok(l) = Line::new("BATCH", &[&close_ref]) {
                    built.push(l);
                }
            }
        }
        if !used_batch {
            let mut first = true;
            for line in &lines {
                for piece in format::split_line(line, budget, self.out_encoding) {
                    let text = if emote {
                        crate::ctcp::format("ACTION", &piece)
                    } else {
                        piece
                    };
                    let mut tags: Vec<(&str, Option<&str>)> = Vec::new();
                    if first && let Some(r) = &reply_tag {
                        tags.push(("+draft/reply", Some(r)));
                    }
                    first = false;
                    match Line::tagged(&tags, command, &[target, &text]) {
                        Ok(l) => built.push(l),
                        Err(e) => {
                            let _ = reply.send(Err(BridgeError::bad_request(e.to_string())));
                            return;
                        }
                    }
                }
            }
        }
        let echoes = if used_batch {
            1
        } else {
            built.iter().filter(|l| l.command() == command).count()
        };
        for l in built {
            self.send_when_ready(l);
        }
        if self.phase == super::Phase::Ready && self.has_cap("echo-message") {
            self.echoes.push_back(EchoWait {
                target: self.fold(target),
                label: None,
                remaining: echoes,
                reply: Some(reply),
                deadline: now + ECHO_TIMEOUT,
            });
        } else {
            // Not connected right now: the lines wait for the connection.
            // Their echo, if the server sends one, must not come back as
            // the user's message from another client. Whether it will is
            // only known once the capabilities are negotiated (on the first
            // connection): the wait is dropped then if it will not.
            if self.phase != super::Phase::Ready {
                self.echoes.push_back(EchoWait {
                    target: self.fold(target),
                    label: None,
                    remaining: echoes,
                    reply: None,
                    deadline: now + DEFERRED_ECHO_TIMEOUT,
                });
            }
            let _ = reply.send(Ok(Outcome::sent_none()));
        }
    }

    /// A typing notification (needs message-tags; silently skipped without).
    pub(super) fn send_typing(&mut self, target: &str, state: ChatState, now: Instant) {
        if !self.has_cap("message-tags") || self.phase != super::Phase::Ready {
            return;
        }
        let value = match state {
            ChatState::Composing => "active",
            ChatState::Paused => "paused",
            ChatState::Active | ChatState::Inactive | ChatState::Gone => "done",
        };
        let key = self.fold(target);
        if value == "active" {
            if self
                .typing_sent
                .get(&key)
                .is_some_and(|t| now < *t + TYPING_REPEAT)
            {
                return;
            }
            self.typing_sent.insert(key, now);
        } else if self.typing_sent.remove(&key).is_none() {
            // Never said we were typing: nothing to stop.
            return;
        }
        if let Ok(l) = Line::tagged(&[("+typing", Some(value))], "TAGMSG", &[target]) {
            self.send(l);
        }
    }

    /// Sets the user's reactions to a message (`+draft/react`).
    pub(super) fn send_reactions(
        &mut self,
        target: &str,
        msgid: &MessageId,
        emojis: Vec<String>,
        reply: Reply,
    ) {
        if !self.has_cap("message-tags") {
            let _ = reply.send(Err(BridgeError::unsupported(format!(
                "{} does not carry reactions (no message-tags)",
                self.settings.server
            ))));
            return;
        }
        let id = msgid.as_str().to_owned();
        let old = self.own_reactions.get(&id).cloned().unwrap_or_default();
        for e in emojis.iter().filter(|e| !old.contains(e)) {
            if let Ok(l) = Line::tagged(
                &[("+draft/react", Some(e)), ("+draft/reply", Some(&id))],
                "TAGMSG",
                &[target],
            ) {
                self.send_when_ready(l);
            }
        }
        for e in old.iter().filter(|e| !emojis.contains(e)) {
            if let Ok(l) = Line::tagged(
                &[("+draft/unreact", Some(e)), ("+draft/reply", Some(&id))],
                "TAGMSG",
                &[target],
            ) {
                self.send_when_ready(l);
            }
        }
        self.own_reactions.insert(id, emojis);
        let _ = reply.send(Ok(Outcome::Done));
    }

    /// Deletes a message (draft/message-redaction).
    pub(super) fn send_redaction(
        &mut self,
        target: &str,
        msgid: &MessageId,
        reason: Option<String>,
        reply: Reply,
        now: Instant,
    ) {
        if !self.has_cap("draft/message-redaction") {
            let _ = reply.send(Err(BridgeError::new(
                ErrorKind::Unsupported,
                format!(
                    "{} cannot delete messages (no draft/message-redaction)",
                    self.settings.server
                ),
            )));
            return;
        }
        let label = self.next_label();
        let reason = reason.map(|r| r.replace(['\r', '\n', '\0'], " "));
        let mut params = vec![target, msgid.as_str()];
        if let Some(r) = reason.as_deref() {
            params.push(r);
        }
        let tags: Vec<(&str, Option<&str>)> =
            label.iter().map(|l| ("label", Some(l.as_str()))).collect();
        match Line::tagged(&tags, "REDACT", &params) {
            Ok(l) => self.send_when_ready(l),
            Err(e) => {
                let _ = reply.send(Err(BridgeError::bad_request(e.to_string())));
                return;
            }
        }
        if label.is_some() {
            self.pending.push(Pending {
                label,
                kind: PendingKind::Generic { channel: None },
                reply: Some(reply),
                deadline: now + REPLY_TIMEOUT,
            });
        } else {
            let _ = reply.send(Ok(Outcome::Done));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_lines_are_cleaned() {
        assert_eq!(body_lines("a\r\nb\rc\nd"), vec!["a", "b", "c", "d"]);
        assert_eq!(body_lines("\n\nx\n\ny\n\n"), vec!["x", " ", "y"]);
        assert_eq!(body_lines("a\0b\x01c"), vec!["abc"]);
        assert!(body_lines("\n \n").is_empty());
    }

    #[test]
    fn multiline_values() {
        assert_eq!(multiline_limits("max-bytes=4096,max-lines=24"), (4096, 24));
        assert_eq!(multiline_limits(""), (0, 100));
    }
}
