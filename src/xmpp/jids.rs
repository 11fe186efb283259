//! JIDs of the gateway's domain and the network addresses they stand for.
//!
//! A bridge reads and writes unescaped local parts through its
//! [`AddressRules`]; this module adds XEP-0106 escaping in both directions,
//! so that every JID <-> address mapping of the core goes through one
//! place.
//!
//! [`AddressRules`]: ferry_bridge::AddressRules

use std::sync::Arc;

use ferry_bridge::{Address, AddressContext, AddressError, ContactId, Network, RoomId, ServiceId};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};

use crate::xmpp::clean::clean;
use crate::xmpp::escape::{escape, unescape};

/// What a JID of the gateway's domain names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The gateway itself (the bare domain, any resource).
    Gateway,
    /// Something on the network.
    Address(Address),
}

/// Maps JIDs of one gateway domain to addresses and back.
#[derive(Clone)]
pub struct Jids {
    domain: BareJid,
    network: Arc<dyn Network>,
}

impl Jids {
    /// Mapping for a domain and a bridge.
    pub fn new(domain: &str, network: Arc<dyn Network>) -> anyhow::Result<Jids> {
        let domain = BareJid::new(domain)
            .map_err(|e| anyhow::anyhow!("invalid component domain {domain:?}: {e}"))?;
        Ok(Jids { domain, network })
    }

    /// The gateway's own JID.
    pub fn gateway(&self) -> Jid {
        Jid::from(self.domain.clone())
    }

    /// The gateway's domain.
    pub fn domain(&self) -> &str {
        self.domain.domain().as_str()
    }

    /// Whether a JID is on the gateway's domain.
    pub fn is_ours(&self, jid: &Jid) -> bool {
        jid.domain() == self.domain.domain()
    }

    /// What a JID of our domain names. The resource is given to the
    /// bridge's rules (it names an occupant of a room).
    pub fn target(&self, jid: &Jid, ctx: &AddressContext<'_>) -> Result<Target, AddressError> {
        match jid.node() {
            None => Ok(Target::Gateway),
            Some(node) => {
                let local = unescape(node.as_str());
                let resource = jid.resource().map(|r| r.as_str());
                self.network
                    .address()
                    .parse(&local, resource, ctx)
                    .map(Target::Address)
            }
        }
    }

    /// The bare JID of an address (for an occupant: the room's JID).
    pub fn bare(&self, address: &Address) -> Option<BareJid> {
        let (local, _) = self.network.address().format(address);
        let escaped = escape(&clean(&local));
        if escaped.is_empty() {
            return None;
        }
        BareJid::new(&format!("{escaped}@{}", self.domain())).ok()
    }

    /// The JID of an address: bare for contacts, rooms and services, the
    /// room's JID with the nickname as resource for an occupant.
    pub fn jid(&self, address: &Address) -> Option<Jid> {
        let bare = self.bare(address)?;
        let (_, resource) = self.network.address().format(address);
        match resource {
            Some(r) => Some(Jid::from(with_resource(&bare, &r))),
            None => Some(Jid::from(bare)),
        }
    }

    /// A contact's JID.
    pub fn contact(&self, contact: &ContactId) -> Option<BareJid> {
        self.bare(&Address::Contact(contact.clone()))
    }

    /// A room's JID.
    pub fn room(&self, room: &RoomId) -> Option<BareJid> {
        self.bare(&Address::Room(room.clone()))
    }

    /// A service's JID.
    pub fn service(&self, service: &ServiceId) -> Option<BareJid> {
        self.bare(&Address::Service(service.clone()))
    }

    /// The JID of an occupant of a room, with a nickname that is not a
    /// valid resource made into one.
    pub fn occupant(&self, room: &BareJid, nick: &str) -> FullJid {
        with_resource(room, nick)
    }
}

/// A bare JID with a resource; a resource the JID rules refuse is replaced
/// by a close, valid one.
pub fn with_resource(bare: &BareJid, resource: &str) -> FullJid {
    let cleaned = clean(resource);
    if let Ok(j) = bare.with_resource_str(&cleaned) {
        return j;
    }
    let safe: String = cleaned
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_ascii_punctuation() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim();
    if let Ok(j) = bare.with_resource_str(safe) {
        return j;
    }
    let fallback = if safe.is_empty() { "_" } else { safe };
    bare.with_resource_str(&fallback.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
        .unwrap_or_else(|_| {
            // "_" is always a valid resource.
            #[allow(clippy::expect_used)]
            bare.with_resource_str("_")
                .expect("'_' is a valid resource")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_always_valid() {
        let room = BareJid::new("room@gw.example").expect("valid");
        assert_eq!(with_resource(&room, "nick").resource().as_str(), "nick");
        assert_eq!(with_resource(&room, "a\u{1}b").resource().as_str(), "ab");
        let odd = with_resource(&room, "\u{202e}evil");
        assert!(!odd.resource().as_str().is_empty());
        assert_eq!(with_resource(&room, "").resource().as_str(), "_");
    }
}
