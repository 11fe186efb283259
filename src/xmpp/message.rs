//! The message codec shared by 1:1 chats and rooms: reading every
//! extension of an XMPP `<message/>` the gateway maps to the network
//! (ids, formatting, corrections, retractions, reactions, replies, threads,
//! chat states, markers, receipts, attachments), and building the
//! `<message/>` for something that came from the network.

use std::time::SystemTime;

use ferry_bridge::{
    Address, Attachment, AttachmentSource, ChatState, IncomingMessage, MessageKind,
    OutgoingMessage, Rich,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::minidom::Element;

use crate::xmpp::clean::{clean, truncate};
use crate::xmpp::xml::{B, ns};
use crate::xmpp::{styling, time, xhtml};

/// A reply reference (XEP-0461).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyRef {
    /// The id of the message answered.
    pub id: String,
    /// Its author's JID, when given.
    pub to: Option<String>,
}

/// A mediated invitation inside a groupchat message (XEP-0045 §7.8.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MucInvite {
    /// Who is invited.
    pub to: String,
    /// Why.
    pub reason: Option<String>,
}

/// Everything the gateway reads from a `<message/>` sent by a user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inbound {
    /// The stanza's `id`.
    pub id: Option<String>,
    /// XEP-0359 origin-id.
    pub origin_id: Option<String>,
    /// The body, with reply fallbacks removed.
    pub body: Option<String>,
    /// The XHTML-IM body, when sent.
    pub html: Option<Rich>,
    /// The subject.
    pub subject: Option<String>,
    /// XEP-0201 thread.
    pub thread: Option<String>,
    /// XEP-0308: id of the message corrected.
    pub replace: Option<String>,
    /// XEP-0424: id of the message retracted.
    pub retract: Option<String>,
    /// XEP-0444: id of the message reacted to, and the full set.
    pub reactions: Option<(String, Vec<String>)>,
    /// XEP-0461.
    pub reply: Option<ReplyRef>,
    /// XEP-0085.
    pub chat_state: Option<ChatState>,
    /// XEP-0333: the last message displayed.
    pub displayed: Option<String>,
    /// XEP-0184: a receipt is requested.
    pub receipt_request: bool,
    /// XEP-0184: a receipt for one of the gateway's messages.
    pub received: Option<String>,
    /// XEP-0066: (url, description).
    pub oob: Vec<(String, Option<String>)>,
    /// An end-to-end encrypted payload (OMEMO, OpenPGP …).
    pub encrypted: bool,
    /// Mediated invitations (groupchat).
    pub invites: Vec<MucInvite>,
}

impl Inbound {
    /// The id a client would use to refer to this message: origin-id,
    /// else the stanza id.
    pub fn client_id(&self) -> Option<&str> {
        self.origin_id.as_deref().or(self.id.as_deref())
    }

    /// Whether the message carries text (or files) to send.
    pub fn has_content(&self) -> bool {
        self.body.as_deref().is_some_and(|b| !b.is_empty()) || !self.oob.is_empty()
    }
}

fn chat_state_of(el: &Element) -> Option<ChatState> {
    if el.ns() != ns::CHATSTATES {
        return None;
    }
    Some(match el.name() {
        "active" => ChatState::Active,
        "composing" => ChatState::Composing,
        "paused" => ChatState::Paused,
        "inactive" => ChatState::Inactive,
        "gone" => ChatState::Gone,
        _ => return None,
    })
}

/// The element name of a chat state.
pub fn chat_state_name(state: ChatState) -> &'static str {
    match state {
        ChatState::Active => "active",
        ChatState::Composing => "composing",
        ChatState::Paused => "paused",
        ChatState::Inactive => "inactive",
        ChatState::Gone => "gone",
    }
}

/// Removes code-point ranges from a string.
fn remove_ranges(text: &str, mut ranges: Vec<(usize, usize)>) -> String {
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        if !ranges.iter().any(|&(s, e)| i >= s && i < e) {
            out.push(c);
        }
    }
    out
}

/// Reads a user's message.
pub fn read(msg: &Message) -> Inbound {
    let mut m = Inbound {
        id: msg.id.as_ref().map(|i| i.0.clone()),
        body: msg
            .bodies
            .get("")
            .or_else(|| msg.bodies.values().next())
            .cloned(),
        subject: msg
            .subjects
            .get("")
            .or_else(|| msg.subjects.values().next())
            .cloned(),
        thread: msg.thread.as_ref().map(|t| t.id.clone()),
        ..Inbound::default()
    };
    let mut fallback_ranges = Vec::new();
    let mut whole_body_fallback = false;
    for p in &msg.payloads {
        let n = p.ns();
        match (p.name(), n.as_str()) {
            ("origin-id", ns::SID) => m.origin_id = p.attr("id").map(str::to_owned),
            ("html", ns::XHTML_IM) => m.html = xhtml::parse(p),
            ("replace", ns::CORRECT) => m.replace = p.attr("id").map(str::to_owned),
            ("retract", ns::RETRACT1) => m.retract = p.attr("id").map(str::to_owned),
            ("apply-to", ns::FASTEN) => {
                if p.has_child("retract", ns::RETRACT0) {
                    m.retract = p.attr("id").map(str::to_owned);
                }
            }
            ("reactions", ns::REACTIONS) => {
                if let Some(id) = p.attr("id") {
                    let emojis = p
                        .children()
                        .filter(|c| c.is("reaction", ns::REACTIONS))
                        .map(|c| c.text())
                        .filter(|t| !t.is_empty())
                        .collect();
                    m.reactions = Some((id.to_owned(), emojis));
                }
            }
            ("reply", ns::REPLY) => {
                if let Some(id) = p.attr("id") {
                    m.reply = Some(ReplyRef {
                        id: id.to_owned(),
                        to: p.attr("to").map(str::to_owned),
                    });
                }
            }
            ("fallback", ns::FALLBACK) => {
                let is_reply = p.attr("for") == Some(ns::REPLY);
                let is_retract = matches!(p.attr("for"), Some(ns::RETRACT1 | ns::RETRACT0));
                if is_reply {
                    for b in p.children().filter(|c| c.is("body", ns::FALLBACK)) {
                        let s = b.attr("start").and_then(|v| v.parse().ok());
                        let e = b.attr("end").and_then(|v| v.parse().ok());
                        if let (Some(s), Some(e)) = (s, e) {
                            fallback_ranges.push((s, e));
                        }
                    }
                } else if is_retract {
                    whole_body_fallback = true;
                }
            }
            ("displayed", ns::MARKERS) => m.displayed = p.attr("id").map(str::to_owned),
            ("request", ns::RECEIPTS) => m.receipt_request = true,
            ("received", ns::RECEIPTS) => m.received = p.attr("id").map(str::to_owned),
            ("x", ns::OOB) => {
                let url = p.get_child("url", ns::OOB).map(Element::text);
                if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
                    let desc = p.get_child("desc", ns::OOB).map(Element::text);
                    m.oob
                        .push((url.trim().to_owned(), desc.filter(|d| !d.is_empty())));
                }
            }
            ("encrypted", ns::OMEMO_LEGACY | ns::OMEMO2)
            | ("openpgp", ns::OPENPGP)
            | ("x", ns::LEGACY_PGP) => m.encrypted = true,
            ("x", ns::MUC_USER) => {
                for inv in p.children().filter(|c| c.is("invite", ns::MUC_USER)) {
                    if let Some(to) = inv.attr("to") {
                        m.invites.push(MucInvite {
                            to: to.to_owned(),
                            reason: inv
                                .get_child("reason", ns::MUC_USER)
                                .map(Element::text)
                                .filter(|r| !r.is_empty()),
                        });
                    }
                }
            }
            _ => {
                if let Some(state) = chat_state_of(p) {
                    m.chat_state = Some(state);
                }
            }
        }
    }
    if whole_body_fallback || m.retract.is_some() {
        m.body = None;
    } else if !fallback_ranges.is_empty()
        && let Some(body) = &m.body
    {
        m.body = Some(remove_ranges(body, fallback_ranges));
    }
    m
}

/// The file name at the end of a URL's path, if any.
fn url_file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let last = path.rsplit('/').next()?;
    (!last.is_empty() && path.contains("://") && path.matches('/').count() > 2)
        .then(|| last.to_owned())
}

/// Builds the message to send to the network from what a user sent.
/// `formatting`: whether the network takes formatted text (then XEP-0393
/// styling is parsed; XHTML-IM is read either way).
pub fn outgoing(m: &Inbound, to: Address, formatting: bool) -> OutgoingMessage {
    let mut body = m.body.clone().unwrap_or_default();
    let mut kind = MessageKind::Normal;
    if let Some(rest) = body.strip_prefix("/me ") {
        kind = MessageKind::Emote;
        body = rest.to_owned();
    }
    let mut rich = None;
    if let Some(html) = &m.html {
        let mut r = html.clone();
        if kind == MessageKind::Emote
            && let Some(first) = r.spans.first_mut()
            && let Some(rest) = first.text.strip_prefix("/me ")
        {
            first.text = rest.to_owned();
        }
        if r.is_styled() {
            body = r.to_plain();
            rich = Some(r);
        }
    } else if formatting {
        let r = styling::parse(&body);
        if r.is_styled() {
            body = r.to_plain();
            rich = Some(r);
        }
    }
    let attachments: Vec<Attachment> = m
        .oob
        .iter()
        .map(|(url, desc)| Attachment {
            source: AttachmentSource::Url(url.clone()),
            name: url_file_name(url),
            mime: None,
            size: None,
            caption: desc.clone(),
        })
        .collect();
    // Clients send the URL as the body along with OOB: the file is the
    // message then, not the text.
    if m.oob.len() == 1 && m.oob.iter().any(|(u, _)| body.trim() == u) {
        body.clear();
    }
    OutgoingMessage {
        to,
        client_id: m.client_id().unwrap_or_default().to_owned(),
        body,
        subject: m.subject.clone().filter(|s| !s.trim().is_empty()),
        rich,
        kind,
        reply_to: None,
        thread: m.thread.clone(),
        attachments,
    }
}

/// How an outgoing stanza refers to other messages and to the archive.
#[derive(Clone, Debug, Default)]
pub struct Refs {
    /// The XMPP id of the message this one corrects.
    pub replaces: Option<String>,
    /// The XMPP id of the message answered, and its author's JID.
    pub reply: Option<(String, Option<Jid>)>,
    /// XEP-0359 stanza-id: (id, by).
    pub stanza_id: Option<(String, Jid)>,
    /// Whether to add an origin-id equal to the message id.
    pub origin_id: bool,
    /// Whether to ask for displayed markers.
    pub markable: bool,
    /// Whether to add a `<delay/>` from the message timestamp.
    pub delay_from: Option<Jid>,
}

/// Builds the `<message/>` for a message from the network. `urls` are the
/// attachments' public URLs (with their captions), already published.
/// Returns the text message and one message per further attachment.
#[allow(clippy::too_many_arguments)]
pub fn build(
    msg: &IncomingMessage,
    from: &Jid,
    to: &Jid,
    type_: MessageType,
    id: &str,
    refs: &Refs,
    urls: &[(String, Option<String>)],
    max_bytes: usize,
) -> Vec<Element> {
    let (mut body, mut html) = match &msg.rich {
        Some(r) if r.is_styled() => (styling::render(r), xhtml::render(r)),
        _ => (msg.body.clone(), None),
    };
    if msg.kind == MessageKind::Emote {
        body = format!("/me {body}");
        html = None;
    }
    let mut fallback = None;
    if let (Some(reply), Some(_)) = (&msg.reply_to, &refs.reply)
        && let Some(quote) = reply.quote.as_deref().filter(|q| !q.is_empty())
    {
        let quoted: String = quote.lines().map(|l| format!("> {l}\n")).collect();
        let len = quoted.chars().count();
        body = format!("{quoted}{body}");
        fallback = Some(len);
        html = None;
    }
    let cleaned = clean(&body);
    let cut = truncate(&cleaned, max_bytes);
    if cut.len() != cleaned.len() {
        html = None;
    }
    let body = cut.into_owned();
    let mut first_url: Option<&(String, Option<String>)> = None;
    let mut rest: &[(String, Option<String>)] = urls;
    let text_body = if body.trim().is_empty() {
        // No text: the first attachment is the message.
        if let Some((u, rem)) = urls.split_first() {
            first_url = Some(u);
            rest = rem;
            u.0.clone()
        } else {
            body
        }
    } else {
        body
    };

    let mut el = base(from, to, type_.clone(), id);
    if !text_body.is_empty() {
        el.append_child(B::new("body", ns::STREAM).t(text_body).build());
    }
    if let Some(thread) = &msg.thread {
        el.append_child(B::new("thread", ns::STREAM).t(clean(thread)).build());
    }
    // A subject on a groupchat message would change the room's subject.
    if type_ != MessageType::Groupchat
        && let Some(subject) = msg.subject.as_deref().filter(|s| !s.trim().is_empty())
    {
        el.append_child(B::new("subject", ns::STREAM).t(clean(subject)).build());
    }
    if let Some(h) = html {
        el.append_child(h);
    }
    if let Some(u) = first_url {
        el.append_child(oob(u));
    }
    if let Some(r) = &refs.replaces {
        el.append_child(B::new("replace", ns::CORRECT).a("id", r.clone()).build());
    }
    if let Some((rid, rto)) = &refs.reply {
        el.append_child(
            B::new("reply", ns::REPLY)
                .a("id", rid.clone())
                .oa("to", rto.as_ref().map(|j| j.to_string()))
                .build(),
        );
        if let Some(len) = fallback {
            el.append_child(
                B::new("fallback", ns::FALLBACK)
                    .a("for", ns::REPLY)
                    .c(B::new("body", ns::FALLBACK)
                        .a("start", "0")
                        .a("end", len.to_string()))
                    .build(),
            );
        }
    }
    if refs.origin_id {
        el.append_child(B::new("origin-id", ns::SID).a("id", id).build());
    }
    if let Some((sid, by)) = &refs.stanza_id {
        el.append_child(
            B::new("stanza-id", ns::SID)
                .a("id", sid.clone())
                .a("by", by.to_string())
                .build(),
        );
    }
    if refs.markable {
        el.append_child(Element::bare("markable", ns::MARKERS));
    }
    if let (Some(ts), Some(by)) = (msg.timestamp, &refs.delay_from) {
        el.append_child(delay(ts, by));
    }
    let mut out = vec![el];
    for (i, u) in rest.iter().enumerate() {
        let mut a = base(from, to, type_.clone(), &format!("{id}-{}", i + 1));
        a.append_child(B::new("body", ns::STREAM).t(u.0.clone()).build());
        a.append_child(oob(u));
        if let (Some(ts), Some(by)) = (msg.timestamp, &refs.delay_from) {
            a.append_child(delay(ts, by));
        }
        out.push(a);
    }
    out
}

fn base(from: &Jid, to: &Jid, type_: MessageType, id: &str) -> Element {
    let mut m = Message::new(Some(to.clone()));
    m.from = Some(from.clone());
    m.type_ = type_;
    m.id = Some(xmpp_parsers::message::Id(id.to_owned()));
    m.into()
}

fn oob((url, desc): &(String, Option<String>)) -> Element {
    B::new("x", ns::OOB)
        .tc("url", ns::OOB, clean(url))
        .oc(desc.as_ref().map(|d| B::new("desc", ns::OOB).t(clean(d))))
        .build()
}

/// An XEP-0203 delay.
pub fn delay(ts: SystemTime, from: &Jid) -> Element {
    B::new("delay", ns::DELAY)
        .a("from", from.to_string())
        .a("stamp", time::format(ts))
        .build()
}

/// A message carrying only a payload (chat state, receipt, marker,
/// reactions, retraction).
pub fn signal(from: &Jid, to: &Jid, type_: MessageType, payloads: Vec<Element>) -> Element {
    let mut el = base(from, to, type_, &crate::xmpp::xml::new_id());
    for p in payloads {
        el.append_child(p);
    }
    el.append_child(Element::bare("store", "urn:xmpp:hints"));
    el
}

/// A chat state payload.
pub fn chat_state(state: ChatState) -> Element {
    Element::bare(chat_state_name(state), ns::CHATSTATES)
}

/// XEP-0184 `<received/>`.
pub fn received(id: &str) -> Element {
    B::new("received", ns::RECEIPTS).a("id", id).build()
}

/// XEP-0333 `<displayed/>`.
pub fn displayed(id: &str) -> Element {
    B::new("displayed", ns::MARKERS).a("id", id).build()
}

/// XEP-0444 `<reactions/>`.
pub fn reactions(id: &str, emojis: &[String]) -> Element {
    B::new("reactions", ns::REACTIONS)
        .a("id", id)
        .cs(emojis
            .iter()
            .map(|e| B::new("reaction", ns::REACTIONS).t(clean(e)).build()))
        .build()
}

/// XEP-0424 retraction (with the fallback body older clients show).
pub fn retraction(id: &str) -> Vec<Element> {
    vec![
        B::new("retract", ns::RETRACT1).a("id", id).build(),
        B::new("fallback", ns::FALLBACK).a("for", ns::RETRACT1).build(),
        B::new("body", ns::STREAM)
            .t("This person attempted to retract a previous message, but it's unsupported by your client.")
            .build(),
    ]
}

/// The message's text for size checks: body plus subject.
pub fn text_len(m: &Inbound) -> usize {
    m.body.as_deref().map_or(0, str::len) + m.subject.as_deref().map_or(0, str::len)
}

/// Sets a plain body on a message element (used for gateway notices).
pub fn with_body(mut m: Message, body: &str) -> Message {
    m.bodies.insert(Lang::default(), clean(body).into_owned());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bridge::{ContactId, ReplyTo, Sender, Style};

    fn parse(xml: &str) -> Inbound {
        let el: Element = xml.parse().expect("test xml parses");
        let msg = Message::try_from(el).expect("is a message");
        read(&msg)
    }

    const NS: &str = "jabber:component:accept";

    #[test]
    fn reads_ids_body_and_extensions() {
        let m = parse(&format!(
            "<message xmlns='{NS}' id='m1' type='chat' to='a@gw'>\
             <body>hello</body>\
             <origin-id xmlns='urn:xmpp:sid:0' id='o1'/>\
             <request xmlns='urn:xmpp:receipts'/>\
             <active xmlns='http://jabber.org/protocol/chatstates'/>\
             <thread>t1</thread>\
             </message>"
        ));
        assert_eq!(m.client_id(), Some("o1"));
        assert_eq!(m.body.as_deref(), Some("hello"));
        assert!(m.receipt_request);
        assert_eq!(m.chat_state, Some(ChatState::Active));
        assert_eq!(m.thread.as_deref(), Some("t1"));
    }

    #[test]
    fn reads_corrections_retractions_reactions_markers() {
        let m = parse(&format!(
            "<message xmlns='{NS}' id='m2'><body>fixed</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='m1'/></message>"
        ));
        assert_eq!(m.replace.as_deref(), Some("m1"));
        let m = parse(&format!(
            "<message xmlns='{NS}' id='m3'><body>This person attempted to retract…</body>\
             <retract xmlns='urn:xmpp:message-retract:1' id='m1'/>\
             <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/></message>"
        ));
        assert_eq!(m.retract.as_deref(), Some("m1"));
        assert_eq!(m.body, None);
        let m = parse(&format!(
            "<message xmlns='{NS}'><apply-to xmlns='urn:xmpp:fasten:0' id='old'>\
             <retract xmlns='urn:xmpp:message-retract:0'/></apply-to></message>"
        ));
        assert_eq!(m.retract.as_deref(), Some("old"));
        let m = parse(&format!(
            "<message xmlns='{NS}'><reactions xmlns='urn:xmpp:reactions:0' id='m1'>\
             <reaction>👍</reaction><reaction>🎉</reaction></reactions></message>"
        ));
        assert_eq!(
            m.reactions,
            Some(("m1".into(), vec!["👍".into(), "🎉".into()]))
        );
        let m = parse(&format!(
            "<message xmlns='{NS}'><displayed xmlns='urn:xmpp:chat-markers:0' id='x9'/></message>"
        ));
        assert_eq!(m.displayed.as_deref(), Some("x9"));
    }

    #[test]
    fn reply_fallback_is_removed_by_code_points() {
        let m = parse(&format!(
            "<message xmlns='{NS}'><body>&gt; héllo\nanswer</body>\
             <reply xmlns='urn:xmpp:reply:0' id='m1' to='x@gw/n'/>\
             <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>\
             <body start='0' end='8'/></fallback></message>"
        ));
        assert_eq!(m.body.as_deref(), Some("answer"));
        assert_eq!(
            m.reply,
            Some(ReplyRef {
                id: "m1".into(),
                to: Some("x@gw/n".into())
            })
        );
    }

    #[test]
    fn oob_and_encryption() {
        let m = parse(&format!(
            "<message xmlns='{NS}'><body>https://x.org/a/cat.png</body>\
             <x xmlns='jabber:x:oob'><url>https://x.org/a/cat.png</url></x></message>"
        ));
        let out = outgoing(&m, Address::Contact(ContactId::new("c")), true);
        assert_eq!(out.body, "");
        assert_eq!(out.attachments.len(), 1);
        assert_eq!(out.attachments[0].name.as_deref(), Some("cat.png"));
        let m = parse(&format!(
            "<message xmlns='{NS}'><body>secret</body>\
             <encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"
        ));
        assert!(m.encrypted);
    }

    #[test]
    fn outgoing_emotes_and_styling() {
        let m = parse(&format!(
            "<message xmlns='{NS}' id='i'><body>/me waves *hard*</body></message>"
        ));
        let out = outgoing(&m, Address::Contact(ContactId::new("c")), true);
        assert_eq!(out.kind, MessageKind::Emote);
        assert_eq!(out.body, "waves hard");
        assert!(out.rich.as_ref().is_some_and(Rich::is_styled));
        assert_eq!(out.client_id, "i");
        // Without formatting support the text is left as typed.
        let out = outgoing(&m, Address::Contact(ContactId::new("c")), false);
        assert_eq!(out.body, "waves *hard*");
        assert!(out.rich.is_none());
    }

    #[test]
    fn outgoing_prefers_xhtml() {
        let m = parse(&format!(
            "<message xmlns='{NS}'><body>*b*</body><html xmlns='http://jabber.org/protocol/xhtml-im'>\
             <body xmlns='http://www.w3.org/1999/xhtml'><em>b</em></body></html></message>"
        ));
        let out = outgoing(&m, Address::Contact(ContactId::new("c")), true);
        let r = out.rich.expect("rich");
        assert!(r.spans[0].style.italic);
        assert_eq!(out.body, "b");
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("valid jid")
    }

    #[test]
    fn builds_network_messages() {
        let mut msg = IncomingMessage::text(
            Address::Contact(ContactId::new("c")),
            Sender::Contact(ContactId::new("c")),
            "hi\u{1}",
        );
        let mut rich = Rich::default();
        rich.push(
            "bold",
            &Style {
                bold: true,
                ..Style::default()
            },
        );
        msg.rich = Some(rich);
        msg.reply_to = Some(ReplyTo {
            id: "f1".into(),
            author: None,
            quote: Some("earlier".into()),
        });
        msg.timestamp = Some(SystemTime::UNIX_EPOCH);
        let refs = Refs {
            replaces: Some("x1".into()),
            reply: Some(("x0".into(), None)),
            stanza_id: None,
            origin_id: true,
            markable: true,
            delay_from: Some(jid("gw")),
        };
        let out = build(
            &msg,
            &jid("c@gw"),
            &jid("u@example.org"),
            MessageType::Chat,
            "id1",
            &refs,
            &[],
            1000,
        );
        assert_eq!(out.len(), 1);
        let el = &out[0];
        let body = el.get_child("body", NS).map(Element::text).expect("body");
        assert_eq!(body, "> earlier\n*bold*");
        assert!(el.has_child("replace", ns::CORRECT));
        assert!(el.has_child("reply", ns::REPLY));
        let fb = el.get_child("fallback", ns::FALLBACK).expect("fallback");
        let fbody = fb.get_child("body", ns::FALLBACK).expect("fallback body");
        assert_eq!(fbody.attr("end"), Some("10"));
        assert!(el.has_child("origin-id", ns::SID));
        assert!(el.has_child("markable", ns::MARKERS));
        assert_eq!(
            el.get_child("delay", ns::DELAY)
                .and_then(|d| d.attr("stamp")),
            Some("1970-01-01T00:00:00Z")
        );
        // Reply fallbacks read back to the original text.
        let back = read(&Message::try_from(el.clone()).expect("message"));
        assert_eq!(back.body.as_deref(), Some("*bold*"));
    }

    #[test]
    fn subjects_travel_on_one_to_one_messages_only() {
        let mut msg = IncomingMessage::text(
            Address::Contact(ContactId::new("c")),
            Sender::Contact(ContactId::new("c")),
            "body",
        );
        msg.subject = Some("Re: plans".into());
        let build_as = |t| {
            build(
                &msg,
                &jid("c@gw"),
                &jid("u@example.org"),
                t,
                "id1",
                &Refs::default(),
                &[],
                100,
            )
        };
        let chat = build_as(MessageType::Chat);
        assert_eq!(
            chat[0]
                .get_child("subject", NS)
                .map(Element::text)
                .as_deref(),
            Some("Re: plans")
        );
        let room = build_as(MessageType::Groupchat);
        assert!(room[0].get_child("subject", NS).is_none());
        // And a user's subject reaches the network.
        let m = parse(&format!(
            "<message xmlns='{NS}' id='s'><subject>Hi</subject><body>there</body></message>"
        ));
        let out = outgoing(&m, Address::Contact(ContactId::new("c")), false);
        assert_eq!(out.subject.as_deref(), Some("Hi"));
    }

    #[test]
    fn long_network_messages_are_truncated_and_files_split() {
        let msg = IncomingMessage::text(
            Address::Contact(ContactId::new("c")),
            Sender::Contact(ContactId::new("c")),
            "x".repeat(500),
        );
        let out = build(
            &msg,
            &jid("c@gw"),
            &jid("u@example.org"),
            MessageType::Chat,
            "id1",
            &Refs::default(),
            &[
                ("https://h/1".into(), None),
                ("https://h/2".into(), Some("two".into())),
            ],
            100,
        );
        assert_eq!(out.len(), 3);
        let body = out[0]
            .get_child("body", NS)
            .map(Element::text)
            .expect("body");
        assert!(body.len() <= 100);
        assert!(body.contains("truncated"));
        assert!(out[2].has_child("x", ns::OOB));
    }

    #[test]
    fn file_only_messages_carry_the_url_as_body() {
        let msg = IncomingMessage::text(
            Address::Contact(ContactId::new("c")),
            Sender::Contact(ContactId::new("c")),
            "",
        );
        let out = build(
            &msg,
            &jid("c@gw"),
            &jid("u@example.org"),
            MessageType::Chat,
            "id1",
            &Refs::default(),
            &[("https://h/f.png".into(), None)],
            100,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].get_child("body", NS).map(Element::text).as_deref(),
            Some("https://h/f.png")
        );
        assert!(out[0].has_child("x", ns::OOB));
    }
}
