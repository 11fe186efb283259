//! Small helpers to build and read XML elements: namespaces the gateway
//! uses, a compact element builder, stanza errors built from a bridge's
//! [`ErrorKind`], and replies to IQs, messages and presences.
//!
//! Typed `xmpp_parsers` structs are used where they exist; everything
//! else is a `minidom::Element` built here. No function of this module
//! panics on input from the network.

use ferry_bridge::{BridgeError, ErrorKind};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::minidom::rxml::{Namespace, NcName};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// Namespaces, by the XEP that defines them.
pub mod ns {
    /// The stream's namespace for stanzas (`jabber:component:accept`).
    pub const STREAM: &str = xmpp_parsers::ns::DEFAULT_NS;
    /// Stanzas nested inside other stanzas (forwarded, MAM results).
    pub const CLIENT: &str = "jabber:client";
    /// XEP-0030.
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    /// XEP-0030.
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    /// XEP-0004.
    pub const DATA_FORMS: &str = "jabber:x:data";
    /// XEP-0050.
    pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
    /// XEP-0077.
    pub const REGISTER: &str = "jabber:iq:register";
    /// XEP-0100.
    pub const GATEWAY: &str = "jabber:iq:gateway";
    /// XEP-0106 (a disco feature, not a namespace).
    pub const JID_ESCAPING: &str = "jid\\20escaping";
    /// XEP-0199.
    pub const PING: &str = "urn:xmpp:ping";
    /// XEP-0092.
    pub const VERSION: &str = "jabber:iq:version";
    /// XEP-0115.
    pub const CAPS: &str = "http://jabber.org/protocol/caps";
    /// RFC 6121 roster.
    pub const ROSTER: &str = "jabber:iq:roster";
    /// XEP-0144.
    pub const ROSTERX: &str = "http://jabber.org/protocol/rosterx";
    /// XEP-0297.
    pub const FORWARD: &str = "urn:xmpp:forward:0";
    /// XEP-0203.
    pub const DELAY: &str = "urn:xmpp:delay";
    /// XEP-0359.
    pub const SID: &str = "urn:xmpp:sid:0";
    /// XEP-0184.
    pub const RECEIPTS: &str = "urn:xmpp:receipts";
    /// XEP-0085.
    pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
    /// XEP-0308.
    pub const CORRECT: &str = "urn:xmpp:message-correct:0";
    /// XEP-0424 (current).
    pub const RETRACT1: &str = "urn:xmpp:message-retract:1";
    /// XEP-0424 (0.3 and older, inside XEP-0422 `apply-to`).
    pub const RETRACT0: &str = "urn:xmpp:message-retract:0";
    /// XEP-0422.
    pub const FASTEN: &str = "urn:xmpp:fasten:0";
    /// XEP-0425 (current).
    pub const MODERATE1: &str = "urn:xmpp:message-moderate:1";
    /// XEP-0425 (0.2 and older).
    pub const MODERATE0: &str = "urn:xmpp:message-moderate:0";
    /// XEP-0444.
    pub const REACTIONS: &str = "urn:xmpp:reactions:0";
    /// XEP-0461.
    pub const REPLY: &str = "urn:xmpp:reply:0";
    /// XEP-0428.
    pub const FALLBACK: &str = "urn:xmpp:fallback:0";
    /// XEP-0333.
    pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
    /// XEP-0066.
    pub const OOB: &str = "jabber:x:oob";
    /// XEP-0071.
    pub const XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";
    /// XHTML body inside XEP-0071.
    pub const XHTML: &str = "http://www.w3.org/1999/xhtml";
    /// XEP-0393 (disco feature).
    pub const STYLING: &str = "urn:xmpp:styling:0";
    /// XEP-0045.
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    /// XEP-0045.
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    /// XEP-0045.
    pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    /// XEP-0045.
    pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
    /// XEP-0249.
    pub const CONFERENCE: &str = "jabber:x:conference";
    /// XEP-0421.
    pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
    /// XEP-0410 (disco feature of rooms answering self-pings).
    pub const SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
    /// XEP-0313.
    pub const MAM: &str = "urn:xmpp:mam:2";
    /// XEP-0059.
    pub const RSM: &str = "http://jabber.org/protocol/rsm";
    /// XEP-0054.
    pub const VCARD: &str = "vcard-temp";
    /// XEP-0153.
    pub const VCARD_UPDATE: &str = "vcard-temp:x:update";
    /// XEP-0172.
    pub const NICK: &str = "http://jabber.org/protocol/nick";
    /// XEP-0201 (disco feature).
    pub const THREADS: &str = "http://jabber.org/protocol/threads";
    /// XEP-0363.
    pub const HTTP_UPLOAD: &str = "urn:xmpp:http:upload:0";
    /// XEP-0402.
    pub const BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
    /// XEP-0060.
    pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
    /// XEP-0384 / OMEMO and other end-to-end encryption payloads.
    pub const OMEMO_LEGACY: &str = "eu.siacs.conversations.axolotl";
    /// XEP-0384 (current).
    pub const OMEMO2: &str = "urn:xmpp:omemo:2";
    /// XEP-0373.
    pub const OPENPGP: &str = "urn:xmpp:openpgp:0";
    /// XEP-0027.
    pub const LEGACY_PGP: &str = "jabber:x:encrypted";
}

/// Builds an element.
pub struct B(Element);

impl B {
    /// An element with a name and namespace.
    pub fn new(name: &str, ns: &str) -> B {
        B(Element::bare(name, ns))
    }

    /// Sets an attribute. Names are the gateway's own constants; a name
    /// that is not a valid XML name is ignored.
    pub fn a(mut self, name: &str, value: impl Into<String>) -> B {
        set_attr(&mut self.0, name, value);
        self
    }

    /// Sets an attribute when there is a value.
    pub fn oa(self, name: &str, value: Option<impl Into<String>>) -> B {
        match value {
            Some(v) => self.a(name, v),
            None => self,
        }
    }

    /// Appends text.
    pub fn t(mut self, text: impl Into<String>) -> B {
        let text = text.into();
        if !text.is_empty() {
            self.0.append_text(text);
        }
        self
    }

    /// Appends a child element.
    pub fn c(mut self, child: impl Into<Element>) -> B {
        self.0.append_child(child.into());
        self
    }

    /// Appends a child when there is one.
    pub fn oc(self, child: Option<impl Into<Element>>) -> B {
        match child {
            Some(c) => self.c(c),
            None => self,
        }
    }

    /// Appends children.
    pub fn cs<I: IntoIterator<Item = Element>>(mut self, children: I) -> B {
        for c in children {
            self.0.append_child(c);
        }
        self
    }

    /// Appends `<name xmlns=ns>text</name>`.
    pub fn tc(self, name: &str, ns: &str, text: impl Into<String>) -> B {
        let child = B::new(name, ns).t(text).build();
        self.c(child)
    }

    /// The element.
    pub fn build(self) -> Element {
        self.0
    }
}

impl From<B> for Element {
    fn from(b: B) -> Element {
        b.0
    }
}

/// Sets (or replaces) an attribute on an element.
pub fn set_attr(el: &mut Element, name: &str, value: impl Into<String>) {
    if let Ok(n) = NcName::try_from(name) {
        el.attrs_mut().insert(Namespace::NONE, n, value.into());
    }
}

/// Removes an attribute.
pub fn remove_attr(el: &mut Element, name: &str) {
    el.attrs_mut().remove(&Namespace::NONE, name);
}

/// The first child with this name and namespace.
pub fn child<'a>(el: &'a Element, name: &str, ns: &str) -> Option<&'a Element> {
    el.children().find(|c| c.is(name, ns))
}

/// The text of the first child with this name and namespace.
pub fn child_text(el: &Element, name: &str, ns: &str) -> Option<String> {
    child(el, name, ns).map(Element::text)
}

/// The stanza error condition and type for a bridge's error kind.
pub fn condition_of(kind: ErrorKind) -> (ErrorType, DefinedCondition) {
    match kind {
        ErrorKind::BadRequest => (ErrorType::Modify, DefinedCondition::BadRequest),
        ErrorKind::NotAllowed => (ErrorType::Cancel, DefinedCondition::NotAllowed),
        ErrorKind::NotAuthorized => (ErrorType::Auth, DefinedCondition::NotAuthorized),
        ErrorKind::NotFound => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
        ErrorKind::Conflict => (ErrorType::Cancel, DefinedCondition::Conflict),
        ErrorKind::Unsupported => (ErrorType::Cancel, DefinedCondition::FeatureNotImplemented),
        ErrorKind::Unavailable => (ErrorType::Wait, DefinedCondition::RecipientUnavailable),
        ErrorKind::Timeout => (ErrorType::Wait, DefinedCondition::RemoteServerTimeout),
        ErrorKind::Remote => (ErrorType::Cancel, DefinedCondition::UndefinedCondition),
        ErrorKind::ResourceConstraint => (ErrorType::Wait, DefinedCondition::ResourceConstraint),
        ErrorKind::Internal => (ErrorType::Cancel, DefinedCondition::InternalServerError),
    }
}

/// A stanza error with a condition and a text.
pub fn error(type_: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(type_, condition, "en", crate::xmpp::clean::clean(text))
}

/// The stanza error for a bridge's error.
pub fn bridge_error(e: &BridgeError) -> StanzaError {
    let (t, c) = condition_of(e.kind);
    error(t, c, &e.message)
}

/// Adds an application-specific condition to an error.
pub fn with_app_condition(mut e: StanzaError, name: &str, ns: &str) -> StanzaError {
    e.other = Some(Element::bare(name, ns));
    e
}

/// The answer to an IQ request: swaps the addresses, keeps the id.
pub fn iq_result(from: &Jid, to: &Jid, id: &str, payload: Option<Element>) -> Element {
    Iq::Result {
        from: Some(from.clone()),
        to: Some(to.clone()),
        id: id.to_owned(),
        payload,
    }
    .into()
}

/// An IQ error answer.
pub fn iq_error(from: &Jid, to: &Jid, id: &str, error: StanzaError) -> Element {
    Iq::Error {
        from: Some(from.clone()),
        to: Some(to.clone()),
        id: id.to_owned(),
        error,
        payload: None,
    }
    .into()
}

/// A message error answer (to a message that failed), keeping its id.
pub fn message_error(from: &Jid, to: &Jid, id: Option<&str>, error: StanzaError) -> Element {
    let mut m = Message::new(Some(to.clone()));
    m.from = Some(from.clone());
    m.type_ = MessageType::Error;
    m.id = id.map(|i| xmpp_parsers::message::Id(i.to_owned()));
    let mut el: Element = m.into();
    el.append_child(error.into());
    el
}

/// A presence error answer.
pub fn presence_error(from: &Jid, to: &Jid, id: Option<&str>, error: StanzaError) -> Element {
    let mut p = Presence::new(PresenceType::Error)
        .with_from(from.clone())
        .with_to(to.clone());
    p.id = id.map(str::to_owned);
    p.payloads.push(error.into());
    p.into()
}

/// A chat message with a body.
pub fn chat(from: &Jid, to: &Jid, body: &str) -> Element {
    let mut m = Message::new(Some(to.clone()));
    m.from = Some(from.clone());
    m.type_ = MessageType::Chat;
    m.id = Some(xmpp_parsers::message::Id(new_id()));
    m.bodies.insert(
        xmpp_parsers::message::Lang::default(),
        crate::xmpp::clean::clean(body).into_owned(),
    );
    m.into()
}

/// A fresh random stanza id.
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Mix time, a counter and the process id so ids differ across restarts.
    let mixed = t ^ (u64::from(std::process::id()) << 40) ^ n.rotate_left(17);
    format!("f{mixed:x}{n:x}")
}

/// Makes every text node and attribute value of an element valid XML 1.0
/// (see [`crate::xmpp::clean`]). Run on every stanza the gateway sends,
/// so that nothing a network sent can break the component stream.
pub fn sanitize(el: &mut Element) {
    for (_, value) in el.attrs_mut().iter_mut() {
        if let std::borrow::Cow::Owned(c) = crate::xmpp::clean::clean(value) {
            *value = c;
        }
    }
    for node in el.nodes_mut() {
        if let Some(text) = node.as_text_mut() {
            if let std::borrow::Cow::Owned(c) = crate::xmpp::clean::clean(text) {
                *text = c;
            }
        } else if let Some(child) = node.as_element_mut() {
            sanitize(child);
        }
    }
}

/// A copy of an element where every element in namespace `from` is in
/// namespace `to` instead (stream stanzas nested as `jabber:client`).
pub fn renamespace(el: &Element, from: &str, to: &str) -> Element {
    let ns = el.ns();
    let mut out = Element::bare(el.name(), if ns == from { to } else { ns.as_str() });
    for ((attr_ns, name), value) in el.attrs().iter() {
        out.attrs_mut()
            .insert(attr_ns.clone(), name.clone(), value.clone());
    }
    for node in el.nodes() {
        match node {
            xmpp_parsers::minidom::Node::Element(c) => {
                out.append_child(renamespace(c, from, to));
            }
            xmpp_parsers::minidom::Node::Text(t) => out.append_text(t.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_attributes_text_and_children() {
        let el = B::new("a", "urn:x")
            .a("id", "1")
            .oa("missing", None::<String>)
            .t("hi")
            .c(B::new("b", "urn:y").a("k", "v"))
            .build();
        assert_eq!(el.attr("id"), Some("1"));
        assert_eq!(el.attr("missing"), None);
        assert_eq!(el.text(), "hi");
        assert_eq!(
            child(&el, "b", "urn:y").and_then(|b| b.attr("k")),
            Some("v")
        );
    }

    #[test]
    fn errors_carry_condition_and_text() {
        let e = bridge_error(&BridgeError::unsupported("no reactions here"));
        let el: Element = e.into();
        assert!(el.has_child(
            "feature-not-implemented",
            "urn:ietf:params:xml:ns:xmpp-stanzas"
        ));
        assert_eq!(
            child_text(&el, "text", "urn:ietf:params:xml:ns:xmpp-stanzas").as_deref(),
            Some("no reactions here")
        );
        assert_eq!(el.attr("type"), Some("cancel"));
    }

    #[test]
    fn sanitize_cleans_text_and_attributes() {
        let mut el = B::new("m", ns::STREAM)
            .a("id", "a\u{1}b")
            .c(B::new("body", ns::STREAM).t("x\u{0}y\u{ffff}z"))
            .build();
        sanitize(&mut el);
        assert_eq!(el.attr("id"), Some("ab"));
        assert_eq!(child_text(&el, "body", ns::STREAM).as_deref(), Some("xyz"));
        // What is left serialises and parses back.
        let s = String::from(&el);
        let back: Element = s.parse().expect("parses");
        assert_eq!(back.attr("id"), Some("ab"));
    }

    #[test]
    fn ids_are_unique() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
    }
}

#[cfg(test)]
mod renamespace_tests {
    use super::*;

    #[test]
    fn nested_client_namespace_survives_serialisation() {
        let inner = B::new("message", ns::STREAM)
            .a("from", "r@gw/n")
            .c(B::new("body", ns::STREAM).t("hi"))
            .build();
        let client = renamespace(&inner, ns::STREAM, ns::CLIENT);
        assert_eq!(client.ns(), ns::CLIENT);
        let stored = String::from(&client);
        let back: Element = stored.parse().expect("parses");
        assert_eq!(back.ns(), ns::CLIENT, "{stored}");
        let outer = B::new("message", ns::STREAM)
            .c(B::new("forwarded", ns::FORWARD).c(back))
            .build();
        let s = String::from(&outer);
        assert!(s.contains("jabber:client"), "{s}");
    }
}
