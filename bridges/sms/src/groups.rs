//! Group texts: a conversation with a fixed set of numbers, hosted by the
//! core as a room (`group-<16 hex>@GW`), opened from an XEP-0033 message or
//! the `new-group` command (`Action::OpenGroup`).
//!
//! SMS has no groups: a text to the group goes to each member as its own
//! text (each with its delivery report; the user's receipt comes when every
//! member has it). Answers come back 1:1 from each member. The id is a
//! digest of the user's sorted member numbers, so the same members are the
//! same group; the members are kept in the bridge's store
//! (`group/<user>/<id>`).

use ferry_bridge::{
    ContactId, Event, KeyValue, Occupant, RoomId, RoomInfo, StoreError, Subject, UserId,
};
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};

/// The prefix of group ids.
pub const PREFIX: &str = "group-";

/// Whether a local part names a group.
pub fn is_group(local: &str) -> bool {
    local
        .strip_prefix(PREFIX)
        .is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A group's members and subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The members' contact ids (E.164 numbers or short codes), sorted.
    pub members: Vec<String>,
    /// Its subject, when given.
    pub subject: Option<String>,
}

/// The id of the group of `members` (sorted, without duplicates).
pub fn id_of(members: &[String]) -> RoomId {
    let digest = Sha1::digest(members.join(",").as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    RoomId::new(format!("{PREFIX}{hex}"))
}

fn key(user: &UserId, room: &RoomId) -> String {
    format!("group/{user}/{room}")
}

/// Stores a group of the user.
pub fn save(
    kv: &dyn KeyValue,
    user: &UserId,
    room: &RoomId,
    group: &Group,
) -> Result<(), StoreError> {
    let raw = serde_json::to_vec(group).map_err(|e| StoreError(e.to_string()))?;
    kv.put(&key(user, room), &raw)
}

/// A group of the user, when it exists.
pub fn load(kv: &dyn KeyValue, user: &UserId, room: &RoomId) -> Result<Option<Group>, StoreError> {
    Ok(kv
        .get(&key(user, room))?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// The `RoomJoined` of a group, with the user as `nick`.
pub fn joined(room: &RoomId, group: &Group, nick: &str) -> Event {
    let mut info = RoomInfo::new(room.clone());
    info.name = Some(match &group.subject {
        Some(s) => s.clone(),
        None => group.members.join(", "),
    });
    info.non_anonymous = true;
    info.occupant_count = Some(group.members.len() as u32 + 1);
    info.members = Some(group.members.iter().map(ContactId::new).collect());
    let mut occupants: Vec<Occupant> = group
        .members
        .iter()
        .map(|m| {
            let mut o = Occupant::new(m.clone());
            o.contact = Some(ContactId::new(m));
            o
        })
        .collect();
    let mut me = Occupant::new(nick);
    me.is_self = true;
    occupants.push(me);
    Event::RoomJoined {
        info,
        nick: nick.to_owned(),
        occupants,
        subject: Subject {
            text: group.subject.clone().unwrap_or_default(),
            by: None,
            at: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_recognised() {
        let a = id_of(&["+15550001001".into(), "+15550001002".into()]);
        assert_eq!(a, id_of(&["+15550001001".into(), "+15550001002".into()]));
        assert_ne!(a, id_of(&["+15550001001".into()]));
        assert!(is_group(a.as_str()));
        assert!(!is_group("group-xyz"));
        assert!(!is_group("+15550001001"));
    }
}
