//! Service discovery (XEP-0030) and entity capabilities (XEP-0115) of the
//! gateway, its contacts, its rooms and its services, and the software
//! version (XEP-0092).
//!
//! What each entity advertises follows the bridge's capabilities: a
//! feature the network cannot carry is not announced.

use ferry_bridge::{
    Address, BridgeError, Capabilities, CommandScope, Feature, Network, NetworkInfo, Outcome,
    RoomId, RoomInfo, RoomListing, UserId,
};
use xmpp_parsers::caps::{compute_disco, hash_caps};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field as XField, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::hashes::Algo;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::router::Gateway;
use crate::xmpp::xml::{self, B, ns};

/// The XEP-0115 node naming Ferry (a URI naming the software).
pub const CAPS_NODE: &str = "urn:ferry:caps";

/// Precomputed discovery data.
pub struct Disco {
    /// disco#info of the gateway JID.
    pub gateway: DiscoInfoResult,
    /// Its caps hash.
    pub gateway_ver: String,
    /// disco#info of contact JIDs.
    pub contact: DiscoInfoResult,
    /// Its caps hash.
    pub contact_ver: String,
}

fn info(identities: Vec<Identity>, features: Vec<&str>) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities,
        features: features.into_iter().map(str::to_owned).collect(),
        extensions: Vec::new(),
    }
}

fn ver_of(info: &DiscoInfoResult) -> String {
    hash_caps(&compute_disco(info), Algo::Sha_1)
        .map(|h| h.to_base64())
        .unwrap_or_default()
}

/// Message features a network's capabilities allow, for disco.
pub fn message_features(c: &Capabilities) -> Vec<&'static str> {
    let mut f = vec![ns::RECEIPTS, ns::SID];
    if c.has(Feature::Corrections) {
        f.push(ns::CORRECT);
    }
    if c.has(Feature::ChatStates) {
        f.push(ns::CHATSTATES);
    }
    if c.has(Feature::Retractions) || c.has(Feature::Moderation) {
        f.push(ns::RETRACT1);
        f.push(ns::RETRACT0);
    }
    if c.has(Feature::Reactions) {
        f.push(ns::REACTIONS);
    }
    if c.has(Feature::Replies) {
        f.push(ns::REPLY);
    }
    if c.has(Feature::DisplayedMarkers) {
        f.push(ns::MARKERS);
    }
    if c.has(Feature::Attachments) {
        f.push(ns::OOB);
    }
    if c.has(Feature::Formatting) {
        f.push(ns::XHTML_IM);
        f.push(ns::STYLING);
    }
    if c.has(Feature::Threads) {
        f.push(ns::THREADS);
    }
    f
}

impl Disco {
    /// Computes the disco data of a bridge.
    pub fn new(net: &NetworkInfo, network: &dyn Network) -> Disco {
        let c = &net.capabilities;
        let mut ids = vec![Identity {
            category: "gateway".into(),
            type_: net.gateway_type.clone(),
            lang: None,
            name: Some(net.name.clone()),
        }];
        if c.has(Feature::Rooms) {
            ids.push(Identity {
                category: "conference".into(),
                type_: "text".into(),
                lang: None,
                name: Some(format!("{} rooms", net.name)),
            });
        }
        let mut f = vec![
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            ns::REGISTER,
            ns::GATEWAY,
            ns::COMMANDS,
            ns::JID_ESCAPING,
            ns::PING,
            ns::VERSION,
            ns::CAPS,
        ];
        if c.has(Feature::Rooms) {
            f.push(ns::MUC);
            f.push(ns::MAM);
        }
        if c.has(Feature::Groups) {
            // XEP-0033: a message to several people opens a group.
            f.push(super::groups::NS_ADDRESS);
        }
        f.extend(message_features(c));
        let gateway = info(ids, f);
        let client_type = if net.gateway_type == "sms" || net.gateway_type == "pstn" {
            "sms"
        } else {
            "pc"
        };
        let mut cf = vec![ns::DISCO_INFO, ns::CAPS, ns::VCARD, ns::COMMANDS];
        if c.has(Feature::Ping) {
            cf.push(ns::PING);
        }
        if c.has(Feature::VersionQuery) {
            cf.push(ns::VERSION);
        }
        cf.extend(message_features(c));
        let _ = network;
        let contact = info(
            vec![Identity {
                category: "client".into(),
                type_: client_type.into(),
                lang: None,
                name: None,
            }],
            cf,
        );
        Disco {
            gateway_ver: ver_of(&gateway),
            contact_ver: ver_of(&contact),
            gateway,
            contact,
        }
    }

    /// The XEP-0115 `<c/>` of the gateway's presence.
    pub fn gateway_caps(&self) -> Element {
        caps(&self.gateway_ver)
    }

    /// The XEP-0115 `<c/>` of contacts' presence.
    pub fn contact_caps(&self) -> Element {
        caps(&self.contact_ver)
    }
}

/// An XEP-0115 `<c/>` element.
pub fn caps(ver: &str) -> Element {
    B::new("c", ns::CAPS)
        .a("hash", "sha-1")
        .a("node", CAPS_NODE)
        .a("ver", ver)
        .build()
}

/// The disco#info of a room, from what is known of it.
pub fn room_info(
    name: &str,
    info: Option<&RoomInfo>,
    subject: Option<&str>,
    caps: &Capabilities,
    commands: bool,
) -> DiscoInfoResult {
    let mut f: Vec<&str> = vec![
        ns::DISCO_INFO,
        ns::MUC,
        "muc_persistent",
        ns::SID,
        ns::SELF_PING,
        "http://jabber.org/protocol/muc#stable_id",
        ns::OCCUPANT_ID,
        ns::PING,
    ];
    let record = info.is_none_or(|i| i.history.record);
    if record {
        f.push(ns::MAM);
    }
    if commands {
        f.push(ns::COMMANDS);
    }
    match info {
        Some(i) => {
            f.push(if i.public { "muc_public" } else { "muc_hidden" });
            f.push(if i.public {
                "muc_open"
            } else {
                "muc_membersonly"
            });
            f.push(if i.non_anonymous {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            });
            f.push(if i.password_protected {
                "muc_passwordprotected"
            } else {
                "muc_unsecured"
            });
        }
        None => {
            f.push("muc_semianonymous");
            f.push("muc_unsecured");
        }
    }
    f.push("muc_unmoderated");
    f.extend(message_features(caps));
    let mut fields = vec![XField {
        var: Some("muc#roomconfig_roomname".into()),
        type_: FieldType::TextSingle,
        label: Some("Name".into()),
        required: false,
        desc: None,
        options: Vec::new(),
        values: vec![name.to_owned()],
        media: Vec::new(),
        validate: None,
    }];
    let mut text_field = |var: &str, label: &str, value: String| {
        fields.push(XField {
            var: Some(var.into()),
            type_: FieldType::TextSingle,
            label: Some(label.into()),
            required: false,
            desc: None,
            options: Vec::new(),
            values: vec![value],
            media: Vec::new(),
            validate: None,
        });
    };
    if let Some(d) = info.and_then(|i| i.description.as_deref()) {
        text_field("muc#roominfo_description", "Description", d.to_owned());
    }
    if let Some(n) = info.and_then(|i| i.occupant_count) {
        text_field(
            "muc#roominfo_occupants",
            "Number of occupants",
            n.to_string(),
        );
    }
    if let Some(s) = subject {
        text_field("muc#roominfo_subject", "Subject", s.to_owned());
    }
    let form = DataForm::new(
        DataFormType::Result_,
        "http://jabber.org/protocol/muc#roominfo",
        fields,
    );
    let mut r = info_result(
        vec![Identity {
            category: "conference".into(),
            type_: "text".into(),
            lang: None,
            name: Some(name.to_owned()),
        }],
        f,
    );
    r.extensions.push(form);
    r
}

fn info_result(identities: Vec<Identity>, features: Vec<&str>) -> DiscoInfoResult {
    info(identities, features)
}

/// XEP-0092 answer.
pub fn version() -> Element {
    B::new("query", ns::VERSION)
        .tc("name", ns::VERSION, "Ferry")
        .tc("version", ns::VERSION, env!("CARGO_PKG_VERSION"))
        .tc("os", ns::VERSION, std::env::consts::OS)
        .build()
}

impl Gateway {
    /// Answers a disco#info request.
    pub fn disco_info(&mut self, from: &Jid, to: &Jid, id: &str, node: Option<String>) {
        let user = UserId::new(from.to_bare().to_string());
        let reply = |r: DiscoInfoResult| {
            let mut el: Element = r.into();
            crate::xmpp::forms::type_fields(&mut el);
            if let Some(n) = &node {
                xml::set_attr(&mut el, "node", n.clone());
            }
            el
        };
        match self.target_of(&Self::user_id(from), to) {
            Ok(crate::xmpp::jids::Target::Gateway) => {
                let r = match node.as_deref() {
                    None => self.disco.gateway.clone(),
                    Some(n) if n == format!("{CAPS_NODE}#{}", self.disco.gateway_ver) => {
                        self.disco.gateway.clone()
                    }
                    Some(ns::COMMANDS) => info(
                        vec![Identity {
                            category: "automation".into(),
                            type_: "command-list".into(),
                            lang: None,
                            name: Some("Commands".into()),
                        }],
                        vec![],
                    ),
                    Some(n) => match self.command_identity(&user, to, n) {
                        Some(r) => r,
                        None => return self.item_not_found(from, to, id, n),
                    },
                };
                self.send(xml::iq_result(to, from, id, Some(reply(r))));
            }
            Ok(crate::xmpp::jids::Target::Address(addr)) => {
                if let Some(n) = node.as_deref() {
                    let is_caps = n == format!("{CAPS_NODE}#{}", self.disco.contact_ver);
                    if !is_caps {
                        let r = if n == ns::COMMANDS {
                            Some(info(
                                vec![Identity {
                                    category: "automation".into(),
                                    type_: "command-list".into(),
                                    lang: None,
                                    name: Some("Commands".into()),
                                }],
                                vec![],
                            ))
                        } else {
                            self.command_identity(&user, to, n)
                        };
                        match r {
                            Some(r) => self.send(xml::iq_result(to, from, id, Some(reply(r)))),
                            None => self.item_not_found(from, to, id, n),
                        }
                        return;
                    }
                }
                let r = match &addr {
                    Address::Contact(_) => self.disco.contact.clone(),
                    Address::Occupant { .. } => {
                        // An occupant answers like a contact.
                        self.disco.contact.clone()
                    }
                    Address::Room(room) => {
                        if !self.info.capabilities.has(Feature::Rooms) {
                            return self.item_not_found(from, to, id, "rooms");
                        }
                        self.room_disco(&user, room)
                    }
                    Address::Service(s) => info(
                        vec![Identity {
                            category: "gateway".into(),
                            type_: self.info.gateway_type.clone(),
                            lang: None,
                            name: Some(s.to_string()),
                        }],
                        {
                            let mut f = vec![ns::DISCO_INFO, ns::DISCO_ITEMS, ns::COMMANDS];
                            if self.info.capabilities.has(Feature::Rooms) {
                                f.push(ns::MUC);
                            }
                            f
                        },
                    ),
                };
                self.send(xml::iq_result(to, from, id, Some(reply(r))));
            }
            Err(e) => {
                let err = xml::error(
                    xmpp_parsers::stanza_error::ErrorType::Cancel,
                    xmpp_parsers::stanza_error::DefinedCondition::ItemNotFound,
                    &e.0,
                );
                self.send_error(xml::iq_error(to, from, id, err));
            }
        }
    }

    fn item_not_found(&self, from: &Jid, to: &Jid, id: &str, node: &str) {
        let err = xml::error(
            xmpp_parsers::stanza_error::ErrorType::Cancel,
            xmpp_parsers::stanza_error::DefinedCondition::ItemNotFound,
            &format!("There is no node {node:?} here."),
        );
        self.send_error(xml::iq_error(to, from, id, err));
    }

    fn room_disco(&self, user: &UserId, room: &RoomId) -> DiscoInfoResult {
        let known = self.rooms.get(user, room);
        let name = known
            .and_then(|r| r.info.as_ref().and_then(|i| i.name.clone()))
            .unwrap_or_else(|| room.to_string());
        let subject = known.and_then(|r| r.subject.as_ref().map(|s| s.text.clone()));
        let commands = self
            .network
            .commands()
            .iter()
            .any(|c| c.scope == CommandScope::Room);
        room_info(
            &name,
            known.and_then(|r| r.info.as_ref()),
            subject.as_deref().filter(|s| !s.is_empty()),
            &self.info.capabilities,
            commands,
        )
    }

    /// Answers a disco#items request.
    pub fn disco_items(&mut self, from: &Jid, to: &Jid, id: &str, node: Option<String>) {
        let user = UserId::new(from.to_bare().to_string());
        if node.as_deref() == Some(ns::COMMANDS) {
            let items = self
                .command_list(&user, to)
                .into_iter()
                .map(|(n, name)| Item {
                    jid: to.clone(),
                    node: Some(n),
                    name: Some(name),
                })
                .collect();
            let r = DiscoItemsResult {
                node,
                items,
                rsm: None,
            };
            self.send(xml::iq_result(to, from, id, Some(r.into())));
            return;
        }
        if let Some(n) = node {
            return self.item_not_found(from, to, id, &n);
        }
        let target = self.target_of(&Self::user_id(from), to);
        let service = match target {
            Ok(crate::xmpp::jids::Target::Gateway) => None,
            Ok(crate::xmpp::jids::Target::Address(Address::Service(s))) => Some(s),
            Ok(crate::xmpp::jids::Target::Address(_)) => {
                // Contacts and rooms have no items.
                let r = DiscoItemsResult {
                    node: None,
                    items: Vec::new(),
                    rsm: None,
                };
                self.send(xml::iq_result(to, from, id, Some(r.into())));
                return;
            }
            Err(e) => {
                let err = xml::error(
                    xmpp_parsers::stanza_error::ErrorType::Cancel,
                    xmpp_parsers::stanza_error::DefinedCondition::ItemNotFound,
                    &e.0,
                );
                self.send_error(xml::iq_error(to, from, id, err));
                return;
            }
        };
        let known = self.known_rooms(&user);
        let can_list = self.info.capabilities.has(Feature::RoomList)
            && self.info.capabilities.has(Feature::Rooms)
            && self.check_use(&user).is_ok();
        if !can_list {
            let items = if service.is_none() { known } else { Vec::new() };
            self.send_room_items(from, to, id, items);
            return;
        }
        let (from, to, id) = (from.clone(), to.clone(), id.to_owned());
        self.act(
            &user,
            ferry_bridge::Action::ListRooms {
                service: service.clone(),
            },
            move |gw, r: Result<Outcome, BridgeError>| match r {
                Ok(Outcome::Rooms(list)) => {
                    let mut items = gw.listing_items(&list);
                    if service.is_none() {
                        for k in known {
                            if !items.iter().any(|i| i.jid == k.jid) {
                                items.push(k);
                            }
                        }
                    }
                    gw.send_room_items(&from, &to, &id, items);
                }
                Ok(_) => gw.send_room_items(&from, &to, &id, known),
                // Browsing the gateway still shows the known rooms when the
                // network cannot list them; a service's listing fails.
                Err(e) if service.is_none() => {
                    tracing::debug!(error = %e, "room listing failed; known rooms only");
                    gw.send_room_items(&from, &to, &id, known);
                }
                Err(e) => {
                    gw.send_error(xml::iq_error(&to, &from, &id, xml::bridge_error(&e)));
                }
            },
        );
    }

    fn listing_items(&self, list: &[RoomListing]) -> Vec<Item> {
        list.iter()
            .filter_map(|l| {
                let jid = self.jids.room(&l.room)?;
                let mut name = l.name.clone().unwrap_or_else(|| l.room.to_string());
                if let Some(n) = l.occupants {
                    name = format!("{name} ({n})");
                }
                if let Some(t) = l.topic.as_deref().filter(|t| !t.is_empty()) {
                    name = format!("{name}: {t}");
                }
                Some(Item {
                    jid: Jid::from(jid),
                    node: None,
                    name: Some(name),
                })
            })
            .collect()
    }

    fn known_rooms(&self, user: &UserId) -> Vec<Item> {
        self.rooms
            .of_user(user)
            .filter_map(|r| {
                let jid = self.jids.room(&r.id)?;
                Some(Item {
                    jid: Jid::from(jid),
                    node: None,
                    name: Some(
                        r.info
                            .as_ref()
                            .and_then(|i| i.name.clone())
                            .unwrap_or_else(|| r.id.to_string()),
                    ),
                })
            })
            .collect()
    }

    fn send_room_items(&self, from: &Jid, to: &Jid, id: &str, items: Vec<Item>) {
        let r = DiscoItemsResult {
            node: None,
            items,
            rsm: None,
        };
        self.send(xml::iq_result(to, from, id, Some(r.into())));
    }

    /// The disco#info of a command node (XEP-0050 §2.3), when the command
    /// is offered at that JID to that user.
    fn command_identity(&self, user: &UserId, to: &Jid, node: &str) -> Option<DiscoInfoResult> {
        let name = self
            .command_list(user, to)
            .into_iter()
            .find(|(n, _)| n == node)
            .map(|(_, name)| name)?;
        Some(info(
            vec![Identity {
                category: "automation".into(),
                type_: "command-node".into(),
                lang: None,
                name: Some(name),
            }],
            vec![ns::COMMANDS, ns::DATA_FORMS],
        ))
    }
}
