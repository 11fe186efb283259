//! Mailing lists as rooms: every mail with a List-Id becomes a message of
//! one read-mostly room per list (when the user's preference says so),
//! opened by the bridge itself the first time a list's mail arrives. The
//! room's name and subject are the list's name; each post comes from its
//! sender's name as occupant nick; what the user writes in the room goes
//! to the list's posting address (List-Post) as a reply to the thread.
//!
//! A list room's id is `list-` and 16 hex digits of a hash of the list's
//! identifier (the `<…>` part of List-Id): never an email address, stable
//! across restarts.

use ferry_bridge::{Address, Event, Occupant, RoomId, RoomInfo, Sender, Subject};
use serde::{Deserialize, Serialize};

use crate::groups::base_subject;
use crate::incoming::Delivery;
use crate::parse::Mail;
use crate::state::chain;

/// The prefix of list room ids.
pub const PREFIX: &str = "list-";

/// A mailing list the user receives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    /// The list's identifier (List-Id without its phrase).
    pub ident: String,
    /// Its name (the List-Id phrase, or the identifier).
    pub name: String,
    /// Where posts go (List-Post); None when the list takes none.
    pub post: Option<String>,
    /// The last post (Message-ID): what the user's message answers.
    pub last: Option<String>,
    /// Its References plus itself, oldest first (capped).
    pub references: Vec<String>,
    /// The subject of the last post.
    pub subject: Option<String>,
}

/// The identifier and the name of a List-Id header value
/// (`Dev list <dev.example.org>`).
pub fn identity(raw: &str) -> Option<(String, String)> {
    let raw = raw.trim();
    let (ident, phrase) = match (raw.rfind('<'), raw.rfind('>')) {
        (Some(a), Some(b)) if a < b => (&raw[a + 1..b], raw[..a].trim()),
        _ => (raw, ""),
    };
    let ident = ident.trim().to_ascii_lowercase();
    if ident.is_empty() {
        return None;
    }
    let name = phrase.trim_matches('"').trim();
    let name = if name.is_empty() {
        ident.clone()
    } else {
        name.to_owned()
    };
    Some((ident, name))
}

/// The room id of a list: the first 8 bytes of the SHA-256 of its
/// identifier.
pub fn id_of(ident: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(ident.trim().to_ascii_lowercase().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}

/// Whether a local part names a list room.
pub fn is_list_id(s: &str) -> bool {
    s.strip_prefix(PREFIX)
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What the core hears of a list room: opened by the network (members
/// known: none but the user), named and titled after the list.
pub fn joined(id: &str, l: &List, own: &str) -> Event {
    let mut info = RoomInfo::new(RoomId::new(id));
    info.name = Some(l.name.clone());
    info.members = Some(Vec::new());
    let mut me = Occupant::new(own);
    me.is_self = true;
    Event::RoomJoined {
        info,
        nick: own.to_owned(),
        occupants: vec![me],
        subject: Subject {
            text: l.name.clone(),
            by: None,
            at: None,
        },
    }
}

/// Turns the delivery of a list's mail into a message of the list's room
/// (reporting the room first when it is new or renamed); returns the list
/// to store under the room id. None when the mail is no list mail or
/// became no message.
pub fn relist(
    d: &mut Delivery,
    mail: &Mail,
    own: &str,
    stored: Option<List>,
) -> Option<(String, List)> {
    let (ident, name) = identity(mail.list_id.as_deref()?)?;
    let mid = mail.message_id.clone()?;
    if !d.events.iter().any(|e| matches!(e, Event::Message(_))) {
        return None;
    }
    let id = id_of(&ident);
    let is_new = stored.is_none();
    let mut l = stored.unwrap_or_else(|| List {
        ident,
        name: name.clone(),
        ..List::default()
    });
    let renamed = l.name != name;
    l.name = name;
    if mail.list_post.is_some() {
        l.post.clone_from(&mail.list_post);
    }
    let mut events = vec![];
    if is_new || renamed {
        events.push(joined(&id, &l, own));
    }
    let nick = mail
        .from
        .as_ref()
        .map(|p| p.name.clone().unwrap_or_else(|| p.address.clone()));
    let new_subject = mail
        .subject
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter(|s| {
            l.subject
                .as_deref()
                .is_none_or(|p| base_subject(p) != base_subject(s))
        });
    for e in d.events.drain(..) {
        match e {
            Event::Message(mut m) => {
                m.chat = Address::Room(RoomId::new(id.clone()));
                if !matches!(m.from, Sender::Own)
                    && let Some(n) = &nick
                {
                    m.from = Sender::Occupant(n.clone());
                }
                // The room's subject is the list's name: a thread's
                // subject heads the post that starts it.
                m.subject = None;
                if let Some(s) = new_subject {
                    m.body = format!("{s}\n\n{}", m.body);
                }
                events.push(Event::Message(m));
            }
            Event::Contact(_) => {}
            other => events.push(other),
        }
    }
    d.events = events;
    d.conversation = None;
    l.subject.clone_from(&mail.subject);
    l.references = chain(&mail.references, &mid);
    l.last = Some(mid);
    Some((id, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_ids_name_the_list() {
        assert_eq!(
            identity("\"Dev list\" <Dev.Example.org>"),
            Some(("dev.example.org".into(), "Dev list".into()))
        );
        assert_eq!(
            identity("<dev.example.org>"),
            Some(("dev.example.org".into(), "dev.example.org".into()))
        );
        assert_eq!(identity("  "), None);
        let id = id_of("dev.example.org");
        assert!(is_list_id(&id) && !id.contains('@'), "{id}");
        assert_eq!(id, id_of("DEV.example.org"));
        assert!(!crate::groups::is_group_id(&id));
    }
}
