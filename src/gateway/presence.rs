//! Presence (XEP-0100): the user's presence logs their session in and is
//! mirrored on the network; the session's connection state is shown as the
//! gateway's presence; contacts' presence and subscriptions are bridged.

use std::collections::{BTreeMap, HashMap};

use ferry_bridge::{
    Action, Address, ConnectionState, ContactId, ErrorKind, Feature, Presence as FPresence,
    Registration, Show, UserId,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Show as XShow, Type as PType};

use super::router::Gateway;
use crate::store::RosterItem;
use crate::xmpp::availability::{Resource, next_presence_seq, xshow};
use crate::xmpp::jids::Target;
use crate::xmpp::xml::{self, B, ns};

/// A user's presence as the gateway tracks it: their available clients, the
/// presence last sent to the network, and their contacts' presence.
#[derive(Default)]
pub struct PresenceState {
    /// Available resources that sent presence to the gateway or a contact.
    pub resources: BTreeMap<String, Resource>,
    /// Contacts' presence.
    pub of_contacts: HashMap<ContactId, FPresence>,
    /// The presence last sent to the network.
    pub sent: Option<FPresence>,
}

/// The gateway presence text of a connection state.
pub fn connection_text(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connecting => "Connecting…".into(),
        ConnectionState::Connected(Some(t)) => t.clone(),
        ConnectionState::Connected(None) => "Connected".into(),
        ConnectionState::Reconnecting(e) => format!("Reconnecting: {e}"),
        ConnectionState::LoginRequired(e) => format!("Login required: {e}"),
        ConnectionState::Disconnected(e) => format!("Disconnected: {e}"),
    }
}

fn show_of(x: Option<&XShow>) -> Show {
    match x {
        None => Show::Available,
        Some(XShow::Chat) => Show::Chat,
        Some(XShow::Away) => Show::Away,
        Some(XShow::Xa) => Show::ExtendedAway,
        Some(XShow::Dnd) => Show::DoNotDisturb,
    }
}

fn rank(s: &Show) -> u8 {
    match s {
        Show::Chat => 5,
        Show::Available => 4,
        Show::Away => 3,
        Show::DoNotDisturb => 2,
        Show::ExtendedAway => 1,
        Show::Offline => 0,
    }
}

/// The user's presence over all their resources.
pub fn aggregate<'a>(resources: impl Iterator<Item = &'a Resource>) -> FPresence {
    let best = resources.max_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(rank(&show_of(a.show.as_ref())).cmp(&rank(&show_of(b.show.as_ref()))))
    });
    match best {
        None => FPresence::offline(),
        Some(r) => FPresence {
            show: show_of(r.show.as_ref()),
            status: r.status.clone(),
            last_active: None,
        },
    }
}

impl Gateway {
    /// Handles a presence addressed to the gateway's domain.
    pub fn on_presence(&mut self, p: Presence) {
        let (Some(from), Some(to)) = (p.from.clone(), p.to.clone()) else {
            return;
        };
        let user = UserId::new(from.to_bare().to_string());
        // Rooms: presence to room@gw/nick.
        if to.node().is_some()
            && self.info.capabilities.has(Feature::Rooms)
            && let Ok(Target::Address(Address::Room(room))) =
                self.target_of(&user, &Jid::from(to.to_bare()))
            && matches!(p.type_, PType::None | PType::Unavailable | PType::Error)
        {
            return self.muc_presence(p, from, to, user, room);
        }
        let target = if to.node().is_none() {
            Target::Gateway
        } else {
            match self.target_of(&user, &to) {
                Ok(t) => t,
                Err(e) => {
                    if matches!(p.type_, PType::None | PType::Subscribe | PType::Probe) {
                        let err = xml::error(
                            xmpp_parsers::stanza_error::ErrorType::Cancel,
                            xmpp_parsers::stanza_error::DefinedCondition::ItemNotFound,
                            &e.0,
                        );
                        self.send_error(xml::presence_error(&to, &from, p.id.as_deref(), err));
                    }
                    return;
                }
            }
        };
        match p.type_ {
            PType::None | PType::Unavailable => {
                self.resource_presence(&user, &from, &p);
            }
            PType::Subscribe => self.on_subscribe(&user, &from, &to, &target),
            PType::Subscribed => self.set_subscription(&user, &to, |i| i.from_user = true),
            PType::Unsubscribed => self.set_subscription(&user, &to, |i| i.from_user = false),
            PType::Unsubscribe => {
                self.set_subscription(&user, &to, |i| i.to_user = false);
                if let Target::Address(Address::Contact(c)) = &target
                    && self.check_use(&user).is_ok()
                {
                    self.act_quiet(&user, Action::RemoveContact(c.clone()));
                }
                let reply = Presence::new(PType::Unsubscribed)
                    .with_from(Jid::from(to.to_bare()))
                    .with_to(Jid::from(from.to_bare()));
                self.send(reply.into());
            }
            PType::Probe => match &target {
                Target::Gateway if self.is_registered(&user) => {
                    self.send_gateway_presence(&user);
                }
                Target::Address(Address::Contact(c)) => {
                    let pres = self
                        .users
                        .get(&user)
                        .and_then(|u| u.presence.of_contacts.get(c).cloned())
                        .unwrap_or_else(FPresence::offline);
                    self.send_contact_presence(&user, c, &pres);
                }
                _ => {}
            },
            PType::Error => {}
        }
    }

    fn on_subscribe(&mut self, user: &UserId, from: &Jid, to: &Jid, target: &Target) {
        let to_bare = Jid::from(to.to_bare());
        let from_bare = Jid::from(from.to_bare());
        let ok = match target {
            Target::Gateway => {
                self.allowed(user)
                    && (self.is_registered(user)
                        || self.info.registration == Registration::Optional)
            }
            _ => self.check_use(user).is_ok(),
        };
        if !ok {
            let p = Presence::new(PType::Unsubscribed)
                .with_from(to_bare)
                .with_to(from_bare);
            return self.send(p.into());
        }
        match target {
            Target::Address(Address::Contact(c)) => {
                // The contact is added on the network first; only then is
                // the subscription approved.
                let (c, to, user2) = (c.clone(), to.clone(), user.clone());
                self.act(user, Action::AddContact(c.clone()), move |gw, r| {
                    match r {
                        Ok(_) => {}
                        // A network without contact lists: messaging works.
                        Err(e) if e.kind == ErrorKind::Unsupported => {}
                        Err(e) => {
                            let p = Presence::new(PType::Unsubscribed)
                                .with_from(to_bare)
                                .with_to(from_bare);
                            gw.send(p.into());
                            gw.notify(&user2, &format!("{c} could not be added: {}", e.message));
                            return;
                        }
                    }
                    let p = Presence::new(PType::Subscribed)
                        .with_from(to_bare)
                        .with_to(from_bare);
                    gw.send(p.into());
                    gw.set_subscription(&user2, &to, |i| i.to_user = true);
                    let pres = gw
                        .users
                        .get(&user2)
                        .and_then(|u| u.presence.of_contacts.get(&c).cloned());
                    if let Some(pres) = pres {
                        gw.send_contact_presence(&user2, &c, &pres);
                    }
                });
            }
            _ => {
                let p = Presence::new(PType::Subscribed)
                    .with_from(to_bare)
                    .with_to(from_bare);
                self.send(p.into());
                self.set_subscription(user, to, |i| i.to_user = true);
                if *target == Target::Gateway {
                    self.send_gateway_presence(user);
                    self.subscribe_to_user(user);
                }
            }
        }
    }

    /// Records a subscription change of a roster item (gateway or contact).
    fn set_subscription(&mut self, user: &UserId, to: &Jid, f: impl FnOnce(&mut RosterItem)) {
        if !self.is_registered(user) {
            return;
        }
        let jid = to.to_bare().to_string();
        let mut item = self
            .store
            .roster(user)
            .unwrap_or_default()
            .into_iter()
            .find(|i| i.jid == jid)
            .unwrap_or(RosterItem {
                jid,
                ..RosterItem::default()
            });
        f(&mut item);
        self.store.set_roster_item(user, &item);
    }

    /// The roster item of the gateway itself for a user.
    pub fn gateway_roster_item(&self, user: &UserId) -> RosterItem {
        let jid = self.jids.domain().to_owned();
        self.store
            .roster(user)
            .unwrap_or_default()
            .into_iter()
            .find(|i| i.jid == jid)
            .unwrap_or(RosterItem {
                jid,
                ..RosterItem::default()
            })
    }

    /// Tracks one resource's presence; logs in on the first, mirrors the
    /// aggregate on the network.
    fn resource_presence(&mut self, user: &UserId, from: &Jid, p: &Presence) {
        let Some(resource) = from.resource().map(|r| r.as_str().to_owned()) else {
            return;
        };
        let available = p.type_ == PType::None;
        if available && !self.allowed(user) {
            return;
        }
        let caps = p
            .payloads
            .iter()
            .find(|e| e.is("c", ns::CAPS))
            .and_then(|c| Some(format!("{}#{}", c.attr("node")?, c.attr("ver")?)));
        let was_empty;
        {
            let u = self.user_mut(user);
            was_empty = u.presence.resources.is_empty();
            if available {
                u.presence.resources.insert(
                    resource,
                    Resource {
                        show: p.show.clone(),
                        status: p
                            .statuses
                            .get("")
                            .or_else(|| p.statuses.values().next())
                            .cloned(),
                        priority: p.priority.0,
                        caps: caps.clone(),
                        seq: next_presence_seq(),
                    },
                );
            } else {
                u.presence.resources.remove(&resource);
            }
        }
        if available {
            if let Some(c) = caps {
                self.learn_client_caps(user, from, &c);
            }
            if was_empty {
                // XEP-0100 log in: the first available presence.
                let can =
                    self.is_registered(user) || self.info.registration == Registration::Optional;
                if can {
                    self.ensure_session(user);
                    self.send_gateway_presence(user);
                    self.resend_contact_presences(user);
                }
            }
        }
        self.user_presence_changed(user);
    }

    /// Sends the user's aggregated presence to the network when it changed.
    pub fn user_presence_changed(&mut self, user: &UserId) {
        let Some(u) = self.users.get(user) else {
            return;
        };
        let running = u.session.is_some();
        // Every available client counts, with the latest presence it sent,
        // to the gateway or to a room (where it may be the only one).
        let mut latest: BTreeMap<&str, &Resource> = u
            .presence
            .resources
            .iter()
            .map(|(name, r)| (name.as_str(), r))
            .collect();
        for room in self.rooms.of_user(user) {
            for (name, c) in &room.clients {
                if latest
                    .get(name.as_str())
                    .is_none_or(|r| r.seq < c.presence.seq)
                {
                    latest.insert(name, &c.presence);
                }
            }
        }
        let mut pres = aggregate(latest.into_values());
        if pres.show != Show::Offline && !self.pref_on(user, "sync_presence") {
            pres = FPresence::available();
        }
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        if u.presence.sent.as_ref() == Some(&pres) {
            return;
        }
        if !running && pres.show == Show::Offline {
            u.presence.sent = Some(pres);
            return;
        }
        if !running {
            return;
        }
        u.presence.sent = Some(pres.clone());
        self.act_quiet(user, Action::SetPresence(pres));
    }

    /// The gateway's presence for a user, from their session's state.
    pub fn gateway_presence(&self, user: &UserId) -> Option<Presence> {
        let to = Jid::from(Self::user_jid(user)?);
        let u = self.users.get(user);
        let account = self.store.user(user).ok().flatten().map(|r| r.account_name);
        let (show, status) = match u.and_then(|u| u.connection.as_ref()) {
            Some(ConnectionState::Connecting) => (Some(XShow::Dnd), "Connecting…".to_owned()),
            Some(ConnectionState::Connected(t)) => (
                None,
                t.clone().unwrap_or_else(|| match &account {
                    Some(a) if !a.is_empty() => format!("Logged in as {a}"),
                    _ => "Connected".into(),
                }),
            ),
            Some(s @ ConnectionState::Reconnecting(_)) => (Some(XShow::Xa), connection_text(s)),
            Some(s @ ConnectionState::LoginRequired(_)) => (Some(XShow::Dnd), connection_text(s)),
            Some(s @ ConnectionState::Disconnected(_)) => (Some(XShow::Xa), connection_text(s)),
            None => (None, format!("{} gateway", self.info.name)),
        };
        let mut p = Presence::available().with_from(self.gw_jid()).with_to(to);
        p.show = show;
        p.set_status("", status);
        p.payloads.push(self.disco.gateway_caps());
        Some(p)
    }

    /// Sends the gateway's presence to a user.
    pub fn send_gateway_presence(&self, user: &UserId) {
        if let Some(p) = self.gateway_presence(user) {
            self.send(p.into());
        }
    }

    /// A contact's presence as a stanza.
    pub fn contact_presence_el(
        &self,
        user: &UserId,
        contact: &ContactId,
        pres: &FPresence,
    ) -> Option<Element> {
        let from = Jid::from(self.jids.contact(contact)?);
        let to = Jid::from(Self::user_jid(user)?);
        let mut p = if pres.show == Show::Offline {
            Presence::new(PType::Unavailable)
        } else {
            Presence::available()
        }
        .with_from(from)
        .with_to(to);
        p.show = xshow(pres.show);
        if let Some(s) = &pres.status {
            p.set_status("", crate::xmpp::clean::clean(s).into_owned());
        }
        if pres.show != Show::Offline {
            p.payloads.push(self.disco.contact_caps());
            let info = self
                .users
                .get(user)
                .and_then(|u| u.roster.contacts.get(contact));
            if let Some(info) = info {
                let hash = info
                    .avatar
                    .as_ref()
                    .map(|a| {
                        use xmpp_parsers::sha1::{Digest, Sha1};
                        let d = Sha1::digest(&a.data);
                        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    })
                    .unwrap_or_default();
                p.payloads.push(
                    B::new("x", ns::VCARD_UPDATE)
                        .c(B::new("photo", ns::VCARD_UPDATE).t(hash))
                        .build(),
                );
                if let Some(n) = &info.name {
                    p.payloads.push(
                        B::new("nick", ns::NICK)
                            .t(crate::xmpp::clean::clean(n))
                            .build(),
                    );
                }
            }
            if let Some(t) = pres.last_active {
                p.payloads.push(
                    B::new("idle", "urn:xmpp:idle:1")
                        .a("since", crate::xmpp::time::format(t))
                        .build(),
                );
            }
        }
        Some(p.into())
    }

    /// Sends a contact's presence to a user.
    pub fn send_contact_presence(&self, user: &UserId, contact: &ContactId, pres: &FPresence) {
        if let Some(el) = self.contact_presence_el(user, contact, pres) {
            self.send(el);
        }
    }

    /// Sends every known contact presence again (after a reconnection or
    /// a login).
    pub fn resend_contact_presences(&self, user: &UserId) {
        let Some(u) = self.users.get(user) else {
            return;
        };
        for (c, p) in &u.presence.of_contacts {
            self.send_contact_presence(user, c, p);
        }
    }

    /// Unavailable from the gateway and every contact (shutdown).
    pub fn send_unavailable_all(&self, user: &UserId, status: &str) {
        let Some(to) = Self::user_jid(user).map(Jid::from) else {
            return;
        };
        let mut p = Presence::new(PType::Unavailable)
            .with_from(self.gw_jid())
            .with_to(to.clone());
        p.set_status("", status);
        self.send(p.into());
        if let Some(u) = self.users.get(user) {
            for c in u.presence.of_contacts.keys() {
                if let Some(j) = self.jids.contact(c) {
                    let mut p = Presence::new(PType::Unavailable)
                        .with_from(Jid::from(j))
                        .with_to(to.clone());
                    p.set_status("", status);
                    self.send(p.into());
                }
            }
        }
    }
}
