//! Secrets kept out of the log. Ferry logs the stanzas it exchanges (at
//! `trace`, target `ferry::stanza`) only through [`Redacted`], which
//! replaces with `[redacted]`:
//!
//! - the values of `text-private` data-form fields;
//! - the values of submitted fields (a client's `type='submit'` form names
//!   no types) whose field Ferry ever showed as `text-private`
//!   ([`note_private`], called for every form Ferry sends and for every
//!   bridge's registration form at start-up);
//! - the XEP-0077 `<password/>`;
//! - the body of a message to the gateway's own JID (the chat fallback
//!   asks for passwords there, one answer per message).
//!
//! The XML library's own capture of every byte read and written is never
//! enabled (see [`crate::logging`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{LazyLock, RwLock};

use xmpp_parsers::minidom::Element;

const DATA_FORMS: &str = "jabber:x:data";
const REGISTER: &str = "jabber:iq:register";
const MASK: &str = "[redacted]";

static PRIVATE: LazyLock<RwLock<BTreeSet<String>>> = LazyLock::new(Default::default);

/// Remembers that fields named `var` hold secrets (a `text-private` field
/// of some form).
pub fn note_private(var: &str) {
    let known = PRIVATE.read().is_ok_and(|p| p.contains(var));
    if !known && let Ok(mut p) = PRIVATE.write() {
        p.insert(var.to_owned());
    }
}

fn is_private(var: &str) -> bool {
    PRIVATE.read().is_ok_and(|p| p.contains(var))
}

/// A stanza shown with its secrets replaced; `gateway` is the component's
/// domain.
pub struct Redacted<'a> {
    /// The stanza.
    pub stanza: &'a Element,
    /// The gateway's JID.
    pub gateway: &'a str,
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut el = self.stanza.clone();
        redact(&mut el, self.gateway);
        f.write_str(&String::from(&el))
    }
}

fn mask(el: &mut Element) {
    el.take_nodes();
    el.append_text(MASK);
}

/// Replaces the secrets in `el` (a whole stanza).
pub fn redact(el: &mut Element, gateway: &str) {
    if el.name() == "message" {
        let to_gateway = el
            .attr("to")
            .is_some_and(|j| j.split('/').next() == Some(gateway));
        if to_gateway {
            let ns = el.ns();
            if let Some(body) = el.get_child_mut("body", ns.as_str()) {
                mask(body);
            }
        }
    }
    redact_inside(el);
}

fn redact_inside(el: &mut Element) {
    if el.is("x", DATA_FORMS) {
        for field in el.children_mut().filter(|c| c.is("field", DATA_FORMS)) {
            let secret = field.attr("type") == Some("text-private")
                || field.attr("var").is_some_and(is_private);
            if secret {
                for value in field.children_mut().filter(|c| c.is("value", DATA_FORMS)) {
                    mask(value);
                }
            }
        }
        return;
    }
    if el.is("query", REGISTER)
        && let Some(p) = el.get_child_mut("password", REGISTER)
    {
        mask(p);
    }
    for child in el.children_mut() {
        redact_inside(child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(xml: &str) -> String {
        let el: Element = xml.parse().expect("parses");
        Redacted {
            stanza: &el,
            gateway: "gw.example.org",
        }
        .to_string()
    }

    #[test]
    fn private_fields_passwords_and_chat_answers_are_masked() {
        note_private("sasl_password");
        let s = shown(
            "<iq xmlns='jabber:component:accept' type='set' from='a@example.org/r' to='x@gw.example.org' id='1'>\
             <command xmlns='http://jabber.org/protocol/commands' node='configure'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='nick'><value>alice</value></field>\
             <field var='sasl_password'><value>hunter2</value></field>\
             <field var='pass' type='text-private'><value>swordfish</value></field>\
             </x></command></iq>",
        );
        assert!(s.contains("alice"), "{s}");
        assert!(!s.contains("hunter2") && !s.contains("swordfish"), "{s}");
        assert_eq!(s.matches(MASK).count(), 2, "{s}");
        let s = shown(
            "<iq xmlns='jabber:component:accept' type='set' id='2'>\
             <query xmlns='jabber:iq:register'><username>alice</username><password>hunter2</password></query></iq>",
        );
        assert!(s.contains("alice") && !s.contains("hunter2"), "{s}");
        let s = shown(
            "<message xmlns='jabber:component:accept' from='a@example.org/r' to='gw.example.org'><body>hunter2</body></message>",
        );
        assert!(!s.contains("hunter2"), "{s}");
        let s = shown(
            "<message xmlns='jabber:component:accept' from='a@example.org/r' to='bob@gw.example.org'><body>hello</body></message>",
        );
        assert!(s.contains("hello"), "{s}");
    }
}
