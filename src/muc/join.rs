//! Stanzas of room membership (XEP-0045): occupant presences with their
//! `muc#user` items, status codes and occupant ids, and the join sequence
//! in the order the XEP requires — every other occupant, the self-presence
//! (status 110) last, then history, then the subject.

use ferry_bridge::{Affiliation, Occupant, Role, Show, Subject};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PType};

use crate::xmpp::availability::xshow;
use crate::xmpp::clean::clean;
use crate::xmpp::jids::with_resource;
use crate::xmpp::xml::{B, ns};

/// The attribute value of a role.
pub fn role_str(r: Role) -> &'static str {
    match r {
        Role::None => "none",
        Role::Visitor => "visitor",
        Role::Participant => "participant",
        Role::Moderator => "moderator",
    }
}

/// The attribute value of an affiliation.
pub fn affiliation_str(a: Affiliation) -> &'static str {
    match a {
        Affiliation::Outcast => "outcast",
        Affiliation::None => "none",
        Affiliation::Member => "member",
        Affiliation::Admin => "admin",
        Affiliation::Owner => "owner",
    }
}

/// Parses a role attribute.
pub fn parse_role(s: &str) -> Option<Role> {
    Some(match s {
        "none" => Role::None,
        "visitor" => Role::Visitor,
        "participant" => Role::Participant,
        "moderator" => Role::Moderator,
        _ => return None,
    })
}

/// Parses an affiliation attribute.
pub fn parse_affiliation(s: &str) -> Option<Affiliation> {
    Some(match s {
        "outcast" => Affiliation::Outcast,
        "none" => Affiliation::None,
        "member" => Affiliation::Member,
        "admin" => Affiliation::Admin,
        "owner" => Affiliation::Owner,
        _ => return None,
    })
}

/// An XEP-0421 occupant id: opaque, stable for one participant of one
/// room.
pub fn occupant_id(room: &BareJid, stable: &str) -> String {
    use xmpp_parsers::sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(room.as_str().as_bytes());
    h.update([0u8]);
    h.update(stable.as_bytes());
    let d = h.finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a presence of an occupant says.
#[derive(Clone, Debug, Default)]
pub struct OccupantView {
    /// Role.
    pub role: Option<Role>,
    /// Affiliation.
    pub affiliation: Option<Affiliation>,
    /// Real JID, when the room shows it.
    pub jid: Option<Jid>,
    /// New nickname (status 303).
    pub nick: Option<String>,
    /// Status codes.
    pub codes: Vec<u16>,
    /// XEP-0421 id.
    pub occupant_id: Option<String>,
    /// Reason (kicks, bans).
    pub reason: Option<String>,
    /// Actor nickname (kicks, bans).
    pub actor: Option<String>,
}

/// The presence of an occupant (available unless `unavailable`).
pub fn occupant_presence(
    room: &BareJid,
    nick: &str,
    to: &Jid,
    show: Show,
    status: Option<&str>,
    view: &OccupantView,
    unavailable: bool,
) -> Element {
    let from = with_resource(room, nick);
    let mut p = if unavailable {
        Presence::new(PType::Unavailable)
    } else {
        Presence::available()
    }
    .with_from(Jid::from(from))
    .with_to(to.clone());
    if !unavailable {
        p.show = xshow(show);
    }
    if let Some(s) = status {
        p.set_status("", clean(s).into_owned());
    }
    let item = B::new("item", ns::MUC_USER)
        .oa("affiliation", view.affiliation.map(affiliation_str))
        .oa("role", view.role.map(role_str))
        .oa("jid", view.jid.as_ref().map(ToString::to_string))
        .oa("nick", view.nick.as_deref().map(|n| clean(n).into_owned()))
        .oc(view
            .actor
            .as_ref()
            .map(|a| B::new("actor", ns::MUC_USER).a("nick", clean(a))))
        .oc(view
            .reason
            .as_ref()
            .map(|r| B::new("reason", ns::MUC_USER).t(clean(r))));
    let x = B::new("x", ns::MUC_USER)
        .c(item)
        .cs(view.codes.iter().map(|c| {
            B::new("status", ns::MUC_USER)
                .a("code", c.to_string())
                .build()
        }));
    p.payloads.push(x.build());
    if let Some(id) = &view.occupant_id {
        p.payloads.push(
            B::new("occupant-id", ns::OCCUPANT_ID)
                .a("id", id.clone())
                .build(),
        );
    }
    p.into()
}

/// The subject message of a room (an empty `<subject/>` when it has none).
pub fn subject_message(room: &BareJid, to: &Jid, subject: Option<&Subject>) -> Element {
    let from = match subject.and_then(|s| s.by.as_deref()) {
        Some(by) if !by.is_empty() => Jid::from(with_resource(room, by)),
        _ => Jid::from(room.clone()),
    };
    let mut m = Message::new(Some(to.clone()));
    m.from = Some(from);
    m.type_ = MessageType::Groupchat;
    m.id = Some(xmpp_parsers::message::Id(crate::xmpp::xml::new_id()));
    let mut el: Element = m.into();
    let text = subject
        .map(|s| clean(&s.text).into_owned())
        .unwrap_or_default();
    el.append_child(B::new("subject", ns::STREAM).t(text).build());
    if let Some(at) = subject.and_then(|s| s.at) {
        el.append_child(crate::xmpp::message::delay(at, &Jid::from(room.clone())));
    }
    el
}

/// Everything needed to send the join sequence to one client.
pub struct JoinView<'a> {
    /// The room.
    pub room: &'a BareJid,
    /// The client (full JID).
    pub to: &'a Jid,
    /// The user's nickname in the room.
    pub nick: &'a str,
    /// The nickname this client asked for.
    pub requested: &'a str,
    /// Every occupant (the user included, `is_self`).
    pub occupants: &'a [&'a Occupant],
    /// Whether real JIDs are shown.
    pub non_anonymous: bool,
    /// The user's bare JID (their real JID in non-anonymous rooms).
    pub user: &'a BareJid,
    /// History messages, ready to send, oldest first.
    pub history: Vec<Element>,
    /// The subject.
    pub subject: Option<&'a Subject>,
    /// Whether the room was just created (status 201).
    pub created: bool,
}

/// The view of one occupant for presences to others.
pub fn view_of(
    room: &BareJid,
    o: &Occupant,
    non_anonymous: bool,
    contact_jid: &dyn Fn(&Occupant) -> Option<Jid>,
) -> OccupantView {
    let stable = o
        .stable_id
        .clone()
        .unwrap_or_else(|| format!("nick:{}", o.nick));
    OccupantView {
        role: Some(o.role),
        affiliation: Some(o.affiliation),
        jid: if non_anonymous { contact_jid(o) } else { None },
        occupant_id: Some(occupant_id(room, &stable)),
        ..OccupantView::default()
    }
}

/// The join sequence for one client, in XEP-0045 order.
pub fn join_sequence(
    v: &JoinView<'_>,
    contact_jid: &dyn Fn(&Occupant) -> Option<Jid>,
) -> Vec<Element> {
    let mut out = Vec::with_capacity(v.occupants.len() + v.history.len() + 2);
    let mut me: Option<&Occupant> = None;
    for &o in v.occupants {
        if o.is_self || o.nick == v.nick {
            me = Some(o);
            continue;
        }
        let view = view_of(v.room, o, v.non_anonymous, contact_jid);
        out.push(occupant_presence(
            v.room,
            &o.nick,
            v.to,
            o.presence.show,
            o.presence.status.as_deref(),
            &view,
            false,
        ));
    }
    let mut codes = Vec::new();
    if v.non_anonymous {
        codes.push(100);
    }
    codes.push(110);
    if v.created {
        codes.push(201);
    }
    if v.requested != v.nick {
        codes.push(210);
    }
    let (role, affiliation) = me
        .map(|o| (o.role, o.affiliation))
        .unwrap_or((Role::Participant, Affiliation::None));
    let view = OccupantView {
        role: Some(role),
        affiliation: Some(affiliation),
        jid: v.non_anonymous.then(|| v.to.clone()),
        codes,
        occupant_id: Some(occupant_id(v.room, &format!("self:{}", v.user))),
        ..OccupantView::default()
    };
    out.push(occupant_presence(
        v.room,
        v.nick,
        v.to,
        me.map(|o| o.presence.show).unwrap_or_default(),
        None,
        &view,
        false,
    ));
    out.extend(v.history.iter().cloned());
    out.push(subject_message(v.room, v.to, v.subject));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::xml::child;
    use ferry_bridge::ContactId;

    fn codes(el: &Element) -> Vec<String> {
        child(el, "x", ns::MUC_USER)
            .map(|x| {
                x.children()
                    .filter(|s| s.is("status", ns::MUC_USER))
                    .filter_map(|s| s.attr("code").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn join_order_is_occupants_self_history_subject() {
        let room = BareJid::new("#lounge@test.localhost").expect("jid");
        let user = BareJid::new("alice@localhost").expect("jid");
        let to = Jid::new("alice@localhost/phone").expect("jid");
        let mut bob = Occupant::new("bob");
        bob.contact = Some(ContactId::new("bob"));
        bob.role = Role::Moderator;
        let mut me = Occupant::new("alice_");
        me.is_self = true;
        let carol = Occupant::new("carol");
        let occupants = vec![&me, &bob, &carol];
        let hist = Element::bare("message", ns::STREAM);
        let subject = Subject {
            text: "Welcome".into(),
            by: Some("bob".into()),
            at: None,
        };
        let view = JoinView {
            room: &room,
            to: &to,
            nick: "alice_",
            requested: "alice",
            occupants: &occupants,
            non_anonymous: true,
            user: &user,
            history: vec![hist],
            subject: Some(&subject),
            created: false,
        };
        let seq = join_sequence(&view, &|o| {
            o.contact
                .as_ref()
                .and_then(|c| Jid::new(&format!("{c}@test.localhost")).ok())
        });
        assert_eq!(seq.len(), 5);
        // Two other occupants first.
        assert_eq!(seq[0].attr("from"), Some("#lounge@test.localhost/bob"));
        assert_eq!(seq[1].attr("from"), Some("#lounge@test.localhost/carol"));
        assert!(codes(&seq[0]).is_empty());
        let item = child(&seq[0], "x", ns::MUC_USER)
            .and_then(|x| child(x, "item", ns::MUC_USER))
            .expect("item");
        assert_eq!(item.attr("role"), Some("moderator"));
        assert_eq!(item.attr("jid"), Some("bob@test.localhost"));
        assert!(child(&seq[0], "occupant-id", ns::OCCUPANT_ID).is_some());
        // Self-presence last of the presences, with 110 and 210.
        assert_eq!(seq[2].name(), "presence");
        assert_eq!(seq[2].attr("from"), Some("#lounge@test.localhost/alice_"));
        let c = codes(&seq[2]);
        assert!(c.contains(&"110".to_owned()));
        assert!(c.contains(&"210".to_owned()));
        assert!(c.contains(&"100".to_owned()));
        // History, then the subject.
        assert_eq!(seq[3].name(), "message");
        assert_eq!(
            seq[4].get_child("subject", ns::STREAM).map(Element::text),
            Some("Welcome".to_owned())
        );
        assert_eq!(seq[4].attr("from"), Some("#lounge@test.localhost/bob"));
    }

    #[test]
    fn empty_subject_is_sent_and_no_210_when_nick_kept() {
        let room = BareJid::new("r@gw").expect("jid");
        let user = BareJid::new("u@x").expect("jid");
        let to = Jid::new("u@x/r").expect("jid");
        let occupants = vec![];
        let view = JoinView {
            room: &room,
            to: &to,
            nick: "u",
            requested: "u",
            occupants: &occupants,
            non_anonymous: false,
            user: &user,
            history: vec![],
            subject: None,
            created: false,
        };
        let seq = join_sequence(&view, &|_| None);
        assert_eq!(seq.len(), 2);
        assert_eq!(codes(&seq[0]), vec!["110".to_owned()]);
        let s = seq[1].get_child("subject", ns::STREAM).expect("subject");
        assert_eq!(s.text(), "");
        assert!(seq[1].get_child("body", ns::STREAM).is_none());
    }

    #[test]
    fn occupant_ids_are_stable_and_opaque() {
        let room = BareJid::new("r@gw").expect("jid");
        let a = occupant_id(&room, "acct:bob");
        assert_eq!(a, occupant_id(&room, "acct:bob"));
        assert_ne!(a, occupant_id(&room, "acct:carol"));
        assert!(!a.contains("bob"));
    }
}
