//! Routing of IQ requests to their handlers, and the small ones handled
//! here: XEP-0092 version, XEP-0199 ping, XEP-0100 `jabber:iq:gateway`
//! and vcard-temp of contacts (XEP-0054, with the XEP-0153 photo).

use ferry_bridge::{Action, Address, AddressContext, BridgeError, Feature, Outcome, UserId};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::router::{Asked, Gateway};
use crate::xmpp::escape;
use crate::xmpp::jids::Target;
use crate::xmpp::xml::{self, B, ns};

/// Base64 without line breaks (vCard photos).
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl Gateway {
    /// Handles an IQ addressed to the gateway's domain.
    pub fn on_iq(&mut self, iq: Iq) {
        match iq {
            Iq::Get {
                from: Some(from),
                to: Some(to),
                id,
                payload,
            } => self.on_iq_request(from, to, id, payload, false),
            Iq::Set {
                from: Some(from),
                to: Some(to),
                id,
                payload,
            } => self.on_iq_request(from, to, id, payload, true),
            // Results and errors of requests the component made itself are
            // delivered to it; others are ignored.
            _ => {}
        }
    }

    fn on_iq_request(&mut self, from: Jid, to: Jid, id: String, payload: Element, set: bool) {
        let ns_ = payload.ns();
        let name = payload.name().to_owned();
        match (ns_.as_str(), name.as_str(), set) {
            (ns::DISCO_INFO, "query", false) => {
                let node = payload.attr("node").map(str::to_owned);
                self.disco_info(&from, &to, &id, node)
            }
            (ns::DISCO_ITEMS, "query", false) => {
                let node = payload.attr("node").map(str::to_owned);
                self.disco_items(&from, &to, &id, node)
            }
            (ns::VERSION, "query", false) => self.on_version(&from, &to, &id),
            (ns::PING, "ping", false) => self.on_ping(&from, &to, &id),
            (ns::REGISTER, "query", _) if to.node().is_none() => {
                self.on_register_iq(&from, &to, &id, &payload, set)
            }
            (ns::COMMANDS, "command", true) => self.on_command(&from, &to, &id, &payload),
            (ns::GATEWAY, "query", _) if to.node().is_none() => {
                self.on_gateway_prompt(&from, &to, &id, &payload, set)
            }
            (ns::VCARD, "vCard", false) => self.on_vcard(&from, &to, &id),
            (ns::MUC_ADMIN, "query", _)
            | (ns::MUC_OWNER, "query", _)
            | (ns::MAM, "query", _)
            | (ns::MAM, "metadata", false)
            | (ns::MODERATE1, "moderate", true)
            | (ns::FASTEN, "apply-to", true) => self.muc_iq(&from, &to, &id, &payload, set),
            (ns::ROSTER, "query", true) => {
                // A roster push forwarded by the server (XEP-0356 push):
                // acknowledge it.
                self.send(xml::iq_result(&to, &from, &id, None));
            }
            _ => {
                let err = xml::error(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    &format!("This entity does not support <{name} xmlns='{ns_}'/>."),
                );
                self.send_error(xml::iq_error(&to, &from, &id, err));
            }
        }
    }

    fn on_version(&mut self, from: &Jid, to: &Jid, id: &str) {
        match self.target_of(&Self::user_id(from), to) {
            Ok(Target::Gateway) => {
                self.send(xml::iq_result(to, from, id, Some(super::disco::version())))
            }
            Ok(Target::Address(addr)) if self.info.capabilities.has(Feature::VersionQuery) => {
                let user = UserId::new(from.to_bare().to_string());
                if let Err(e) = self.check_use(&user) {
                    return self.send_error(xml::iq_error(to, from, id, *e));
                }
                let asked = Asked::new(from, to, id);
                self.act_answer(&user, Action::QueryVersion(addr), asked, |_, o| match o {
                    Outcome::Version { name, version, os } => Ok(Some(
                        B::new("query", ns::VERSION)
                            .tc("name", ns::VERSION, name)
                            .tc("version", ns::VERSION, version)
                            .oc(os.map(|o| B::new("os", ns::VERSION).t(o)))
                            .build(),
                    )),
                    _ => Err(BridgeError::internal("The bridge gave no version.")),
                });
            }
            _ => {
                let err = xml::error(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    &format!(
                        "{} cannot ask its users for their software version.",
                        self.info.name
                    ),
                );
                self.send_error(xml::iq_error(to, from, id, err));
            }
        }
    }

    fn on_ping(&mut self, from: &Jid, to: &Jid, id: &str) {
        if to.node().is_none() {
            return self.send(xml::iq_result(to, from, id, None));
        }
        let user = UserId::new(from.to_bare().to_string());
        let target = match self.target_of(&Self::user_id(from), to) {
            Ok(Target::Address(a)) => a,
            Ok(Target::Gateway) => return self.send(xml::iq_result(to, from, id, None)),
            Err(e) => {
                let err = xml::error(ErrorType::Cancel, DefinedCondition::ItemNotFound, &e.0);
                return self.send_error(xml::iq_error(to, from, id, err));
            }
        };
        match &target {
            // XEP-0410 self-ping and pings of rooms are answered locally.
            Address::Room(_) | Address::Occupant { .. } => self.muc_ping(from, to, id, &target),
            _ if self.info.capabilities.has(Feature::Ping) => {
                if let Err(e) = self.check_use(&user) {
                    return self.send_error(xml::iq_error(to, from, id, *e));
                }
                let asked = Asked::new(from, to, id);
                self.act_answer(&user, Action::Ping(target), asked, |_, _| Ok(None));
            }
            _ => {
                let err = xml::error(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    &format!("{} cannot ping its contacts.", self.info.name),
                );
                self.send_error(xml::iq_error(to, from, id, err));
            }
        }
    }

    /// XEP-0100 §6.3: `get` gives the prompt, `set` turns an address into
    /// a JID.
    fn on_gateway_prompt(&mut self, from: &Jid, to: &Jid, id: &str, q: &Element, set: bool) {
        let rules = self.network.address();
        if !set {
            let p = rules.prompt();
            let el = B::new("query", ns::GATEWAY)
                .tc("desc", ns::GATEWAY, p.description)
                .tc("prompt", ns::GATEWAY, p.label)
                .build();
            return self.send(xml::iq_result(to, from, id, Some(el)));
        }
        let input = xml::child_text(q, "prompt", ns::GATEWAY).unwrap_or_default();
        let input = input.trim();
        let user = Self::user_id(from);
        let preferences = self.preferences_of(&user);
        let ctx = AddressContext {
            user: Some(&user),
            preferences: &preferences,
        };
        let result = rules
            .from_prompt(input, &ctx)
            .map_err(|e| e.0)
            .and_then(|addr| {
                let (local, _) = rules.format(&addr);
                escape::escape_checked(&local).map_err(|e| e.to_string())?;
                self.jids
                    .bare(&addr)
                    .ok_or_else(|| format!("{input:?} cannot be written as an address here."))
            });
        match result {
            Ok(jid) => {
                let el = B::new("query", ns::GATEWAY)
                    .tc("jid", ns::GATEWAY, jid.to_string())
                    .tc("prompt", ns::GATEWAY, jid.to_string())
                    .build();
                self.send(xml::iq_result(to, from, id, Some(el)));
            }
            Err(text) => {
                let err = xml::error(ErrorType::Modify, DefinedCondition::NotAcceptable, &text);
                self.send_error(xml::iq_error(to, from, id, err));
            }
        }
    }

    /// vcard-temp of a contact: its name and avatar, as the network told.
    fn on_vcard(&mut self, from: &Jid, to: &Jid, id: &str) {
        let user = UserId::new(from.to_bare().to_string());
        let contact = match self.target_of(&Self::user_id(from), to) {
            Ok(Target::Address(Address::Contact(c))) => Some(c),
            Ok(Target::Gateway) => None,
            _ => {
                let el = Element::bare("vCard", ns::VCARD);
                return self.send(xml::iq_result(to, from, id, Some(el)));
            }
        };
        let mut v = B::new("vCard", ns::VCARD);
        match contact {
            None => {
                v = v.tc("FN", ns::VCARD, self.info.name.clone());
            }
            Some(c) => {
                let info = self
                    .users
                    .get(&user)
                    .and_then(|u| u.roster.contacts.get(&c));
                let name = info
                    .and_then(|i| i.name.clone())
                    .unwrap_or_else(|| c.to_string());
                v = v
                    .tc("FN", ns::VCARD, name.clone())
                    .tc("NICKNAME", ns::VCARD, name);
                if let Some(a) = info.and_then(|i| i.avatar.as_ref()) {
                    v = v.c(B::new("PHOTO", ns::VCARD)
                        .tc("TYPE", ns::VCARD, a.mime.clone())
                        .tc("BINVAL", ns::VCARD, base64(&a.data)));
                }
            }
        }
        self.send(xml::iq_result(to, from, id, Some(v.build())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
