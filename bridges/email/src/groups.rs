//! Mail threads with several people as group conversations: a mail whose
//! To and Cc name more than one other person belongs to a group, one per
//! thread (the root of its References), whose members are the addresses;
//! what the user writes there goes to all of them (reply-all). Also when
//! a thread's subject is worth showing: when the thread starts or its
//! subject really changes (not for a mere `Re: `).
//!
//! A group's id is `group-` and 16 hex digits of a hash of the thread
//! root: never an email address (it has no `@`), stable across restarts,
//! the same for every member's copy of the thread.

use ferry_bridge::{Address, ContactId, Event, Occupant, RoomId, RoomInfo, Sender, Subject};
use serde::{Deserialize, Serialize};

use crate::incoming::Delivery;
use crate::parse::Mail;
use crate::state::chain;

/// The prefix of group ids.
pub const PREFIX: &str = "group-";

/// A group conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The thread root (Message-ID).
    pub root: String,
    /// The other members' addresses, sorted.
    pub members: Vec<String>,
    /// The subject in use.
    pub subject: Option<String>,
    /// The last mail of the thread (Message-ID).
    pub last: Option<String>,
    /// Its References plus itself, oldest first (capped).
    pub references: Vec<String>,
}

/// The id of the group of a thread: the first 8 bytes of the SHA-256 of
/// its root (stable across versions and platforms, unlike std's hasher).
pub fn id_of(root: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(root.trim().to_ascii_lowercase().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}

/// Whether a local part names a group.
pub fn is_group_id(s: &str) -> bool {
    s.strip_prefix(PREFIX)
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The other people of a mail, when it is a group mail (more than one
/// besides the user), sorted; None for a 1:1 mail.
pub fn members_of(mail: &Mail, own: &str) -> Option<Vec<String>> {
    let mut members: Vec<String> = mail
        .participants(own)
        .into_iter()
        .map(|p| p.address)
        .collect();
    members.sort();
    members.dedup();
    (members.len() > 1).then_some(members)
}

/// What the core hears of a group: the room, its members as occupants
/// (nicknames are their addresses), the user among them, the subject.
pub fn joined(id: &str, g: &Group, own: &str) -> Event {
    let mut info = RoomInfo::new(RoomId::new(id));
    info.name = g.subject.clone();
    info.members = Some(g.members.iter().map(ContactId::new).collect());
    let mut occupants: Vec<Occupant> = g
        .members
        .iter()
        .map(|m| {
            let mut o = Occupant::new(m.clone());
            o.contact = Some(ContactId::new(m.clone()));
            o
        })
        .collect();
    let mut me = Occupant::new(own);
    me.is_self = true;
    occupants.push(me);
    Event::RoomJoined {
        info,
        nick: own.to_owned(),
        occupants,
        subject: Subject {
            text: g.subject.clone().unwrap_or_default(),
            by: None,
            at: None,
        },
    }
}

/// Turns the delivery of a mail to the user and several others into a
/// message of the thread's group (reporting the group first when it is
/// new or gained members); returns the group to store under its id. A
/// 1:1 mail is left alone (None).
pub fn regroup(
    d: &mut Delivery,
    mail: &Mail,
    own: &str,
    stored: Option<Group>,
) -> Option<(String, Group)> {
    let members = members_of(mail, own)?;
    let mid = mail.message_id.clone()?;
    if !d.events.iter().any(|e| matches!(e, Event::Message(_))) {
        return None;
    }
    let root = mail.thread_root().unwrap_or(&mid).to_owned();
    let id = stored
        .as_ref()
        .map_or_else(|| id_of(&root), |g| id_of(&g.root));
    let is_new = stored.is_none();
    let mut g = stored.unwrap_or_else(|| Group {
        root,
        subject: mail.subject.as_deref().map(base_subject),
        ..Group::default()
    });
    let before = g.members.len();
    for m in members {
        if !g.members.contains(&m) {
            g.members.push(m);
        }
    }
    g.members.sort();
    let from = mail.from.as_ref().map(|p| p.address.clone());
    let mut events = vec![];
    if is_new || g.members.len() != before {
        events.push(joined(&id, &g, own));
    }
    for e in d.events.drain(..) {
        match e {
            Event::Message(mut m) => {
                m.chat = Address::Room(RoomId::new(id.clone()));
                if !matches!(m.from, Sender::Own)
                    && let Some(f) = &from
                {
                    m.from = Sender::Occupant(f.clone());
                }
                m.subject = None;
                events.push(Event::Message(m));
            }
            Event::Contact(_) => {}
            other => events.push(other),
        }
    }
    d.events = events;
    d.conversation = None;
    g.references = chain(&mail.references, &mid);
    g.last = Some(mid);
    Some((id, g))
}

/// A subject without reply and forward prefixes (`Re: Fwd: AW: x` -> `x`).
pub fn base_subject(s: &str) -> String {
    let mut cur = s.trim();
    loop {
        let lower = cur.to_ascii_lowercase();
        let cut = ["re:", "aw:", "sv:", "fw:", "fwd:", "wg:"]
            .iter()
            .find(|p| lower.starts_with(**p))
            .map(|p| p.len());
        match cut {
            Some(n) => cur = cur[n..].trim_start(),
            None => return cur.to_owned(),
        }
    }
}

/// The subject to show with a mail: when the conversation had none, or
/// this mail's differs from it other than by `Re: `.
pub fn shown_subject(previous: Option<&str>, new: Option<&str>) -> Option<String> {
    let new = new.map(str::trim).filter(|s| !s.is_empty())?;
    match previous {
        Some(p) if base_subject(p) == base_subject(new) => None,
        _ => Some(new.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    #[test]
    fn ids_are_stable_and_never_addresses() {
        let a = id_of("<root@example.org>".trim_matches(['<', '>']));
        assert_eq!(a, id_of("ROOT@example.org"));
        assert!(is_group_id(&a), "{a}");
        assert!(!a.contains('@'));
        assert_ne!(a, id_of("other@example.org"));
        assert!(!is_group_id("group-xyz"));
        assert!(!is_group_id("bob@example.org"));
    }

    #[test]
    fn group_mail_has_several_others() {
        let m = parse(
            b"From: bob@example.org\r\nTo: me@example.com, carol@example.net\r\nCc: Bob@example.org\r\n\r\nhi",
        )
        .unwrap();
        assert_eq!(
            members_of(&m, "me@example.com"),
            Some(vec!["bob@example.org".into(), "carol@example.net".into()])
        );
        let one = parse(b"From: bob@example.org\r\nTo: me@example.com\r\n\r\nhi").unwrap();
        assert_eq!(members_of(&one, "me@example.com"), None);
    }

    #[test]
    fn subjects_show_when_they_change() {
        assert_eq!(shown_subject(None, Some("lunch")), Some("lunch".into()));
        assert_eq!(shown_subject(Some("lunch"), Some("Re: lunch")), None);
        assert_eq!(
            shown_subject(Some("Re: lunch"), Some("RE: AW: lunch")),
            None
        );
        assert_eq!(
            shown_subject(Some("lunch"), Some("Re: dinner instead")),
            Some("Re: dinner instead".into())
        );
        assert_eq!(shown_subject(Some("x"), None), None);
        assert_eq!(base_subject("Fwd: Re:  plan"), "plan");
    }
}
