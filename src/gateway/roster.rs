//! Putting the network's contacts into the user's roster, by the best
//! means available: an XEP-0356 privileged roster push when the user's
//! server granted roster access (after a privileged roster get, only what
//! changed is pushed), else XEP-0144 roster item exchange to clients that
//! advertise it in their capabilities, else a `subscribe` presence from each
//! contact. The user is told once which applies and why.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ferry_bridge::{ContactId, ContactInfo, UserId};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PType};

use super::router::Gateway;
use crate::store::RosterItem;
use crate::xmpp::xml::{self, B, ns};

/// How contacts reach a user's roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// XEP-0356 roster push.
    Privilege,
    /// XEP-0144 roster item exchange.
    RosterX,
    /// A subscription request from each contact.
    Subscribe,
}

impl Mechanism {
    /// The name stored in roster items.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Privilege => "privilege",
            Mechanism::RosterX => "rosterx",
            Mechanism::Subscribe => "subscribe",
        }
    }
}

/// An item of the user's roster as the server has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerItem {
    /// Name.
    pub name: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Subscription.
    pub subscription: String,
}

/// Whether clients with a caps `node#ver` support roster exchange
/// (XEP-0144), learnt once per `node#ver` for every user.
#[derive(Default)]
pub struct ClientCaps {
    /// What each known `node#ver` supports.
    pub known: HashMap<String, bool>,
    /// Caps queries under way.
    pub pending: HashSet<String>,
}

/// A user's contacts as the network told them, and the synchronisation of
/// the roster with their server.
#[derive(Default)]
pub struct RosterState {
    /// Contacts the network told about.
    pub contacts: HashMap<ContactId, ContactInfo>,
    /// The roster the server has (privileged get), once fetched.
    pub server: Option<HashMap<String, ServerItem>>,
    /// A privileged get is under way.
    pub fetching: bool,
    /// The server refused privileged access for this user.
    pub privilege_failed: bool,
    /// A sync is scheduled.
    pub scheduled: bool,
    /// The mechanism the user was told about.
    pub told: Option<Mechanism>,
}

fn roster_item(jid: &str, name: Option<&str>, groups: &[String], subscription: &str) -> Element {
    B::new("item", ns::ROSTER)
        .a("jid", jid)
        .oa(
            "name",
            name.map(|n| crate::xmpp::clean::clean(n).into_owned()),
        )
        .a("subscription", subscription)
        .cs(groups.iter().map(|g| {
            B::new("group", ns::ROSTER)
                .t(crate::xmpp::clean::clean(g))
                .build()
        }))
        .build()
}

/// Parses a `jabber:iq:roster` query result.
pub fn parse_roster(q: &Element) -> HashMap<String, ServerItem> {
    q.children()
        .filter(|c| c.is("item", ns::ROSTER))
        .filter_map(|c| {
            Some((
                c.attr("jid")?.to_owned(),
                ServerItem {
                    name: c.attr("name").map(str::to_owned),
                    groups: c
                        .children()
                        .filter(|g| g.is("group", ns::ROSTER))
                        .map(Element::text)
                        .collect(),
                    subscription: c.attr("subscription").unwrap_or("none").to_owned(),
                },
            ))
        })
        .collect()
}

impl Gateway {
    /// The mechanism that applies to a user now.
    pub fn roster_mechanism(&self, user: &UserId) -> Mechanism {
        let domain = user.as_str().rsplit('@').next().unwrap_or_default();
        let privileged = self
            .comp
            .privileges()
            .for_domain(domain)
            .is_some_and(|g| g.roster.can_set() && g.roster.can_get());
        let failed = self
            .users
            .get(user)
            .is_some_and(|u| u.roster.privilege_failed);
        if privileged && !failed {
            return Mechanism::Privilege;
        }
        if !self.rosterx_resources(user).is_empty() {
            return Mechanism::RosterX;
        }
        Mechanism::Subscribe
    }

    /// Full JIDs of a user's clients that advertise XEP-0144.
    fn rosterx_resources(&self, user: &UserId) -> Vec<Jid> {
        let Some(u) = self.users.get(user) else {
            return Vec::new();
        };
        let Some(bare) = Self::user_jid(user) else {
            return Vec::new();
        };
        u.presence
            .resources
            .iter()
            .filter(|(_, r)| {
                r.caps
                    .as_ref()
                    .is_some_and(|c| self.caps.known.get(c).copied().unwrap_or(false))
            })
            .filter_map(|(res, _)| bare.with_resource_str(res).ok().map(Jid::from))
            .collect()
    }

    /// Learns whether a client (by caps) supports roster exchange.
    pub fn learn_client_caps(&mut self, user: &UserId, from: &Jid, caps: &str) {
        if self.caps.known.contains_key(caps) || !self.caps.pending.insert(caps.to_owned()) {
            return;
        }
        let iq = Iq::Get {
            from: Some(self.gw_jid()),
            to: Some(from.clone()),
            id: xml::new_id(),
            payload: B::new("query", ns::DISCO_INFO).a("node", caps).build(),
        };
        let comp = self.comp.clone();
        let caps = caps.to_owned();
        let user = user.clone();
        self.spawn_then(
            async move { comp.request(iq, Duration::from_secs(20)).await },
            move |gw: &mut Gateway, r| {
                gw.caps.pending.remove(&caps);
                let supports = match r {
                    Ok(Iq::Result {
                        payload: Some(q), ..
                    }) => q.children().any(|f| {
                        f.is("feature", ns::DISCO_INFO) && f.attr("var") == Some(ns::ROSTERX)
                    }),
                    _ => false,
                };
                gw.caps.known.insert(caps, supports);
                if supports {
                    gw.schedule_roster_sync(&user);
                }
            },
        );
    }

    /// Records what the network says about a contact and syncs the roster.
    pub fn on_contact_info(&mut self, user: &UserId, info: ContactInfo) {
        let c = info.contact.clone();
        let u = self.user_mut(user);
        let changed = u.roster.contacts.get(&c) != Some(&info);
        u.roster.contacts.insert(c.clone(), info);
        if changed {
            // Presence carries the avatar hash and nickname.
            let pres = self
                .users
                .get(user)
                .and_then(|u| u.presence.of_contacts.get(&c).cloned());
            if let Some(p) = pres {
                self.send_contact_presence(user, &c, &p);
            }
            self.schedule_roster_sync(user);
        }
    }

    /// Runs a roster sync soon (many contacts arrive together).
    pub fn schedule_roster_sync(&mut self, user: &UserId) {
        if !self.is_registered(user) {
            return;
        }
        let u = self.user_mut(user);
        if u.roster.scheduled {
            return;
        }
        u.roster.scheduled = true;
        let user = user.clone();
        self.spawn_then(
            tokio::time::sleep(Duration::from_millis(300)),
            move |gw, ()| {
                if let Some(u) = gw.users.get_mut(&user) {
                    u.roster.scheduled = false;
                }
                gw.roster_sync(&user);
            },
        );
    }

    fn tell_mechanism(&mut self, user: &UserId, m: Mechanism) {
        let u = self.user_mut(user);
        if u.roster.told == Some(m) {
            return;
        }
        u.roster.told = Some(m);
        let stored = self.gateway_roster_item(user);
        if stored.via == m.as_str() {
            return;
        }
        let domain = user
            .as_str()
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_owned();
        let text = match m {
            Mechanism::Privilege => format!(
                "Your server ({domain}) lets this gateway manage your roster, so your {} contacts are added to it directly.",
                self.info.name
            ),
            Mechanism::RosterX => format!(
                "Your server ({domain}) does not let this gateway manage your roster (XEP-0356 privileges are not granted), so your client is asked to add your {} contacts (roster item exchange): please accept.",
                self.info.name
            ),
            Mechanism::Subscribe => format!(
                "Your server ({domain}) does not let this gateway manage your roster (XEP-0356 privileges are not granted) and your client does not support roster item exchange, so each {} contact asks for your presence subscription: accept them to add them to your roster.",
                self.info.name
            ),
        };
        self.notify(user, &text);
        let mut item = stored;
        item.via = m.as_str().to_owned();
        self.store.set_roster_item(user, &item);
    }

    /// Brings the user's roster in line with the contacts the network
    /// puts there.
    pub fn roster_sync(&mut self, user: &UserId) {
        let Some(u) = self.users.get(user) else {
            return;
        };
        let wanted: Vec<ContactInfo> = u
            .roster
            .contacts
            .values()
            .filter(|c| c.in_roster)
            .cloned()
            .collect();
        if wanted.is_empty() {
            return;
        }
        let m = self.roster_mechanism(user);
        self.tell_mechanism(user, m);
        let known: HashMap<String, RosterItem> = self
            .store
            .roster(user)
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.jid.clone(), i))
            .collect();
        match m {
            Mechanism::Privilege => self.sync_privileged(user, wanted, &known),
            Mechanism::RosterX => {
                let mut items = Vec::new();
                for c in &wanted {
                    let Some(jid) = self.jids.contact(&c.contact) else {
                        continue;
                    };
                    let jid = jid.to_string();
                    let k = known.get(&jid);
                    if k.is_some_and(|k| k.via == "rosterx" && k.name == c.name)
                        || k.is_some_and(|k| k.to_user)
                    {
                        continue;
                    }
                    items.push(
                        B::new("item", ns::ROSTERX)
                            .a("action", "add")
                            .a("jid", jid.clone())
                            .oa("name", c.name.clone())
                            .cs(c
                                .groups
                                .iter()
                                .map(|g| B::new("group", ns::ROSTERX).t(g.clone()).build()))
                            .build(),
                    );
                    let mut item = k.cloned().unwrap_or(RosterItem {
                        jid,
                        ..RosterItem::default()
                    });
                    item.name = c.name.clone();
                    item.via = "rosterx".into();
                    self.store.set_roster_item(user, &item);
                }
                if items.is_empty() {
                    return;
                }
                for to in self.rosterx_resources(user) {
                    let x = B::new("x", ns::ROSTERX).cs(items.iter().cloned()).build();
                    let mut m = xmpp_parsers::message::Message::new(Some(to));
                    m.from = Some(self.gw_jid());
                    let mut el: Element = m.into();
                    el.append_child(
                        B::new("body", ns::STREAM)
                            .t(format!(
                                "Add your {} contacts to your roster?",
                                self.info.name
                            ))
                            .build(),
                    );
                    el.append_child(x);
                    self.send(el);
                }
            }
            Mechanism::Subscribe => {
                let Some(to) = Self::user_jid(user).map(Jid::from) else {
                    return;
                };
                for c in &wanted {
                    let Some(jid) = self.jids.contact(&c.contact) else {
                        continue;
                    };
                    let js = jid.to_string();
                    let k = known.get(&js);
                    if k.is_some_and(|k| k.to_user || k.via == "subscribe") {
                        continue;
                    }
                    let mut p = Presence::new(PType::Subscribe)
                        .with_from(Jid::from(jid))
                        .with_to(to.clone());
                    if let Some(n) = &c.name {
                        p.payloads.push(
                            B::new("nick", ns::NICK)
                                .t(crate::xmpp::clean::clean(n))
                                .build(),
                        );
                    }
                    self.send(p.into());
                    let mut item = k.cloned().unwrap_or(RosterItem {
                        jid: js,
                        ..RosterItem::default()
                    });
                    item.name = c.name.clone();
                    item.via = "subscribe".into();
                    self.store.set_roster_item(user, &item);
                }
            }
        }
    }

    fn sync_privileged(
        &mut self,
        user: &UserId,
        wanted: Vec<ContactInfo>,
        known: &HashMap<String, RosterItem>,
    ) {
        let Some(bare) = Self::user_jid(user) else {
            return;
        };
        let state = &self.user_mut(user).roster;
        if state.server.is_none() {
            if state.fetching {
                return;
            }
            self.user_mut(user).roster.fetching = true;
            let iq = Iq::Get {
                from: Some(self.gw_jid()),
                to: Some(Jid::from(bare)),
                id: xml::new_id(),
                payload: Element::bare("query", ns::ROSTER),
            };
            let comp = self.comp.clone();
            let u = user.clone();
            self.spawn_then(
                async move { comp.request(iq, Duration::from_secs(20)).await },
                move |gw: &mut Gateway, r| {
                    let st = &mut gw.user_mut(&u).roster;
                    st.fetching = false;
                    match r {
                        Ok(Iq::Result { payload, .. }) => {
                            st.server = Some(payload.as_ref().map(parse_roster).unwrap_or_default());
                        }
                        other => {
                            tracing::info!(user = %u, result = ?other.err(), "privileged roster get refused; falling back");
                            st.privilege_failed = true;
                        }
                    }
                    gw.roster_sync(&u);
                },
            );
            return;
        }
        let server = self
            .users
            .get(user)
            .and_then(|u| u.roster.server.clone())
            .unwrap_or_default();
        for c in wanted {
            let Some(jid) = self.jids.contact(&c.contact) else {
                continue;
            };
            let js = jid.to_string();
            let name = c.name.clone().or_else(|| Some(c.contact.to_string()));
            let groups = if c.groups.is_empty() {
                vec![self.info.name.clone()]
            } else {
                c.groups.clone()
            };
            let want = ServerItem {
                name: name.clone(),
                groups: groups.clone(),
                subscription: "both".into(),
            };
            if server.get(&js).is_some_and(|have| {
                have.name == want.name
                    && have.subscription == "both"
                    && sorted(&have.groups) == sorted(&want.groups)
            }) {
                // Already there as the gateway would put it: the gateway
                // takes it as its own (to remove it on unregistration).
                if known.get(&js).is_none_or(|k| k.via != "privilege") {
                    self.store.set_roster_item(
                        user,
                        &RosterItem {
                            jid: js,
                            name,
                            to_user: true,
                            from_user: true,
                            via: "privilege".into(),
                        },
                    );
                }
                continue;
            }
            self.privileged_roster_set(
                user,
                roster_item(&js, name.as_deref(), &groups, "both"),
                Some((js, want)),
            );
        }
    }

    fn privileged_roster_set(
        &mut self,
        user: &UserId,
        item: Element,
        record: Option<(String, ServerItem)>,
    ) {
        let Some(bare) = Self::user_jid(user) else {
            return;
        };
        let iq = Iq::Set {
            from: Some(self.gw_jid()),
            to: Some(Jid::from(bare)),
            id: xml::new_id(),
            payload: B::new("query", ns::ROSTER).c(item).build(),
        };
        let comp = self.comp.clone();
        let u = user.clone();
        self.spawn_then(
            async move { comp.request(iq, Duration::from_secs(20)).await },
            move |gw: &mut Gateway, r| match (r, record) {
                (Ok(_), Some((jid, want))) => {
                    let name = want.name.clone();
                    if let Some(s) = gw.user_mut(&u).roster.server.as_mut() {
                        s.insert(jid.clone(), want);
                    }
                    gw.store.set_roster_item(
                        &u,
                        &RosterItem {
                            jid,
                            name,
                            to_user: true,
                            from_user: true,
                            via: "privilege".into(),
                        },
                    );
                }
                (Ok(_), None) => {}
                (Err(e), record) => {
                    tracing::warn!(user = %u, error = %e, "privileged roster set failed");
                    // A server that announces the privilege but refuses the
                    // push (ejabberd 23.01): the other ways take over.
                    if record.is_some() {
                        let st = &mut gw.user_mut(&u).roster;
                        if !st.privilege_failed {
                            st.privilege_failed = true;
                            gw.schedule_roster_sync(&u);
                        }
                    }
                }
            },
        );
    }

    /// A contact left the user's contact list on the network.
    pub fn on_contact_removed(&mut self, user: &UserId, contact: &ContactId) {
        if let Some(u) = self.users.get_mut(user) {
            u.roster.contacts.remove(contact);
            u.presence.of_contacts.remove(contact);
        }
        let Some(jid) = self.jids.contact(contact) else {
            return;
        };
        let js = jid.to_string();
        let item = self
            .store
            .roster(user)
            .unwrap_or_default()
            .into_iter()
            .find(|i| i.jid == js);
        if let Some(item) = item {
            self.remove_roster_items(user, &[item]);
            self.store.remove_roster_item(user, &js);
        }
        if let Some(s) = self.user_mut(user).roster.server.as_mut() {
            s.remove(&js);
        }
    }

    /// Unregistration: removes every contact of the gateway's domain from
    /// the user's roster. With roster privileges the server's roster is
    /// read and every such item removed (whoever put it there); without,
    /// each item the gateway knows is removed the way it got there.
    pub fn remove_all_contacts(&mut self, user: &UserId, known: Vec<RosterItem>) {
        let domain = user.as_str().rsplit('@').next().unwrap_or_default();
        let privileged = self
            .comp
            .privileges()
            .for_domain(domain)
            .is_some_and(|g| g.roster.can_get() && g.roster.can_set());
        let Some(bare) = Self::user_jid(user) else {
            return;
        };
        if !privileged {
            return self.remove_roster_items(user, &known);
        }
        let iq = Iq::Get {
            from: Some(self.gw_jid()),
            to: Some(Jid::from(bare)),
            id: xml::new_id(),
            payload: Element::bare("query", ns::ROSTER),
        };
        let comp = self.comp.clone();
        let u = user.clone();
        self.spawn_then(
            async move { comp.request(iq, Duration::from_secs(20)).await },
            move |gw: &mut Gateway, r| {
                let suffix = format!("@{}", gw.jids.domain());
                let mut items: Vec<RosterItem> =
                    known.into_iter().filter(|i| i.via != "privilege").collect();
                if let Ok(Iq::Result {
                    payload: Some(q), ..
                }) = r
                {
                    for jid in parse_roster(&q).into_keys() {
                        if jid.ends_with(&suffix) {
                            items.retain(|i| i.jid != jid);
                            items.push(RosterItem {
                                jid,
                                via: "privilege".into(),
                                ..RosterItem::default()
                            });
                        }
                    }
                }
                gw.remove_roster_items(&u, &items);
            },
        );
    }

    /// Removes items the gateway put in a user's roster, each the way it
    /// got there. The gateway's own item is left alone.
    pub fn remove_roster_items(&mut self, user: &UserId, items: &[RosterItem]) {
        let Some(bare) = Self::user_jid(user) else {
            return;
        };
        let to = Jid::from(bare);
        let mut rosterx = Vec::new();
        for item in items {
            if item.jid == self.jids.domain() {
                continue;
            }
            match item.via.as_str() {
                "privilege" => {
                    self.privileged_roster_set(
                        user,
                        roster_item(&item.jid, None, &[], "remove"),
                        None,
                    );
                }
                "rosterx" => rosterx.push(
                    B::new("item", ns::ROSTERX)
                        .a("action", "delete")
                        .a("jid", item.jid.clone())
                        .build(),
                ),
                _ => {
                    if let Ok(from) = Jid::new(&item.jid) {
                        for t in [PType::Unavailable, PType::Unsubscribed, PType::Unsubscribe] {
                            let p = Presence::new(t).with_from(from.clone()).with_to(to.clone());
                            self.send(p.into());
                        }
                    }
                }
            }
        }
        if !rosterx.is_empty() {
            let mut m = xmpp_parsers::message::Message::new(Some(to));
            m.from = Some(self.gw_jid());
            let mut el: Element = m.into();
            el.append_child(B::new("x", ns::ROSTERX).cs(rosterx).build());
            self.send(el);
        }
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roster_results() {
        let q: Element = "<query xmlns='jabber:iq:roster'>\
            <item jid='a@gw' name='A' subscription='both'><group>G</group></item>\
            <item jid='b@gw'/></query>"
            .parse()
            .expect("parses");
        let r = parse_roster(&q);
        assert_eq!(r["a@gw"].name.as_deref(), Some("A"));
        assert_eq!(r["a@gw"].groups, vec!["G".to_owned()]);
        assert_eq!(r["b@gw"].subscription, "none");
    }
}
