//! Matrix rooms seen as multi-user chats: nicknames, power levels as roles
//! and affiliations, room information and subjects.
//!
//! **Nicknames.** An occupant's nickname is their display name in the room
//! (their user id's local part when they have none). Matrix display names
//! are not unique, XMPP nicknames are: the first member (in user id order)
//! to use a name gets it as is, later ones get `name (@user:server)`.
//! A nickname only changes when the member changes their display name.
//!
//! **Power levels** (documented thresholds):
//!
//! | Matrix | affiliation |
//! |---|---|
//! | room creator (v12 rooms) or power level ≥ 100 | owner |
//! | power level ≥ 50 | admin |
//! | any other joined member | member |
//! | banned | outcast |
//!
//! | Matrix | role |
//! |---|---|
//! | may kick (power level ≥ the room's `kick` level, 50 by default) | moderator |
//! | may send messages (≥ the `m.room.message` level) | participant |
//! | may not send messages | visitor |
//!
//! From XMPP: owner → 100, admin → 50, member/none → the room's default
//! level, moderator role → the `kick` level, participant role → the
//! default level, visitor role → one below the message level; outcast →
//! ban, none on an outcast → unban, role none → kick.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_bridge::{
    Affiliation, ContactId, HistoryPolicy, Occupant, Presence, Role, RoomId, RoomInfo, Subject,
};
use matrix_sdk::deserialized_responses::SyncOrStrippedState;
use matrix_sdk::room::RoomMember;
use matrix_sdk::ruma::events::room::power_levels::{RoomPowerLevels, UserPowerLevel};
use matrix_sdk::ruma::events::room::topic::RoomTopicEventContent;
use matrix_sdk::ruma::events::{MessageLikeEventType, SyncStateEvent};
use matrix_sdk::ruma::{Int, MilliSecondsSinceUnixEpoch, OwnedUserId, UserId};
use matrix_sdk::{Room, RoomMemberships};

/// Power level of an owner.
pub const OWNER_LEVEL: i64 = 100;
/// Power level of an admin.
pub const ADMIN_LEVEL: i64 = 50;

/// The unique nicknames of one room's members.
#[derive(Clone, Debug, Default)]
pub struct NickTable {
    by_user: HashMap<OwnedUserId, String>,
    by_nick: HashMap<String, OwnedUserId>,
    /// Role and affiliation last reported per member.
    pub standing: HashMap<OwnedUserId, (Role, Affiliation)>,
    /// Whether every joined member was loaded.
    pub complete: bool,
}

impl NickTable {
    /// The nickname of a member, if assigned.
    pub fn nick(&self, user: &UserId) -> Option<&str> {
        self.by_user.get(user).map(String::as_str)
    }

    /// The member behind a nickname.
    pub fn user(&self, nick: &str) -> Option<&OwnedUserId> {
        self.by_nick.get(nick)
    }

    /// Gives a member a nickname derived from `name`, unique in the room,
    /// and returns it (the same as before when nothing changed).
    pub fn assign(&mut self, user: &UserId, name: &str) -> String {
        let name = clean_nick(name, user);
        if let Some(current) = self.by_user.get(user)
            && (*current == name || current.starts_with(&format!("{name} (")))
        {
            return current.clone();
        }
        self.remove(user);
        let nick = match self.by_nick.get(&name) {
            Some(other) if other.as_str() != user.as_str() => format!("{name} ({user})"),
            _ => name,
        };
        self.by_user.insert(user.to_owned(), nick.clone());
        self.by_nick.insert(nick.clone(), user.to_owned());
        nick
    }

    /// Forgets a member; returns the nickname they had.
    pub fn remove(&mut self, user: &UserId) -> Option<String> {
        let nick = self.by_user.remove(user)?;
        self.by_nick.remove(&nick);
        self.standing.remove(user);
        Some(nick)
    }

    /// The members with a nickname.
    pub fn users(&self) -> impl Iterator<Item = &OwnedUserId> {
        self.by_user.keys()
    }
}

/// A display name made fit for a nickname: no control characters, not
/// empty, not absurdly long.
fn clean_nick(name: &str, user: &UserId) -> String {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        user.localpart().to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// The name a member goes by.
pub fn member_name(member: &RoomMember) -> String {
    member.name().to_owned()
}

fn level_of(levels: &RoomPowerLevels, user: &UserId) -> Option<i64> {
    match levels.for_user(user) {
        UserPowerLevel::Infinite => None,
        UserPowerLevel::Int(i) => Some(i.into()),
        _ => None,
    }
}

/// Role and affiliation of a joined member.
pub fn standing(levels: &RoomPowerLevels, user: &UserId) -> (Role, Affiliation) {
    let level = level_of(levels, user);
    let affiliation = match level {
        None => Affiliation::Owner,
        Some(l) if l >= OWNER_LEVEL => Affiliation::Owner,
        Some(l) if l >= ADMIN_LEVEL => Affiliation::Admin,
        Some(_) => Affiliation::Member,
    };
    let role = if levels.user_can_kick(user) {
        Role::Moderator
    } else if levels.user_can_send_message(user, MessageLikeEventType::RoomMessage) {
        Role::Participant
    } else {
        Role::Visitor
    };
    (role, affiliation)
}

/// The power level that gives an affiliation.
pub fn level_for_affiliation(levels: &RoomPowerLevels, affiliation: Affiliation) -> Int {
    match affiliation {
        Affiliation::Owner => Int::from(OWNER_LEVEL as i32),
        Affiliation::Admin => Int::from(ADMIN_LEVEL as i32),
        Affiliation::Member | Affiliation::None | Affiliation::Outcast => levels.users_default,
    }
}

/// The power level that gives a role.
pub fn level_for_role(levels: &RoomPowerLevels, role: Role) -> Int {
    match role {
        Role::Moderator => levels.kick,
        Role::Participant | Role::None => levels.users_default,
        Role::Visitor => {
            let need = levels.for_message(MessageLikeEventType::RoomMessage);
            need.checked_sub(Int::from(1)).unwrap_or(need)
        }
    }
}

/// An occupant for a member.
pub fn occupant(nick: String, user: &UserId, levels: &RoomPowerLevels, own: &UserId) -> Occupant {
    let (role, affiliation) = standing(levels, user);
    Occupant {
        nick,
        role,
        affiliation,
        presence: Presence::available(),
        contact: Some(ContactId::new(user.as_str())),
        stable_id: Some(user.to_string()),
        is_self: user == own,
    }
}

/// Loads every joined member of a room into a fresh nickname table (from
/// the homeserver when the local member list is incomplete).
pub async fn load_members(room: &Room) -> Result<(NickTable, Vec<RoomMember>), matrix_sdk::Error> {
    let mut members = room.members(RoomMemberships::JOIN).await?;
    members.sort_by(|a, b| a.user_id().cmp(b.user_id()));
    let mut table = NickTable::default();
    for m in &members {
        table.assign(m.user_id(), &member_name(m));
    }
    table.complete = true;
    Ok((table, members))
}

/// Facts about a room for the core.
pub async fn room_info(room: &Room, id: RoomId) -> RoomInfo {
    let name = match room.name() {
        Some(n) if !n.trim().is_empty() => Some(n),
        _ => room
            .display_name()
            .await
            .ok()
            .map(|d| d.to_string())
            .filter(|n| !n.is_empty()),
    };
    RoomInfo {
        room: id,
        name,
        description: room.topic().filter(|t| !t.is_empty()),
        public: room.is_public().unwrap_or(false),
        encrypted: room.encryption_state().is_encrypted(),
        non_anonymous: true,
        password_protected: false,
        occupant_count: u32::try_from(room.joined_members_count()).ok(),
        history: HistoryPolicy::default(),
        members: None,
    }
}

/// Converts a Matrix timestamp.
pub fn system_time(ts: MilliSecondsSinceUnixEpoch) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::from(ts.0))
}

/// The room's current subject (topic), with who set it when known.
pub async fn subject(room: &Room, table: &NickTable) -> Subject {
    let text = room.topic().unwrap_or_default();
    let mut subject = Subject {
        text,
        by: None,
        at: None,
    };
    if let Ok(Some(raw)) = room.get_state_event_static::<RoomTopicEventContent>().await
        && let Ok(SyncOrStrippedState::Sync(SyncStateEvent::Original(ev))) = raw.deserialize()
    {
        subject.by = Some(
            table
                .nick(&ev.sender)
                .map(str::to_owned)
                .unwrap_or_else(|| ev.sender.to_string()),
        );
        subject.at = Some(system_time(ev.origin_server_ts));
    }
    subject
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix_sdk::ruma::room_version_rules::AuthorizationRules;
    use matrix_sdk::ruma::user_id;

    #[test]
    fn nicknames_are_unique_and_stable() {
        let mut t = NickTable::default();
        let a = user_id!("@a:hs");
        let b = user_id!("@b:hs");
        assert_eq!(t.assign(a, "Alice"), "Alice");
        assert_eq!(t.assign(b, "Alice"), "Alice (@b:hs)");
        assert_eq!(
            t.assign(b, "Alice"),
            "Alice (@b:hs)",
            "unchanged name keeps nick"
        );
        assert_eq!(t.user("Alice (@b:hs)").map(|u| u.as_str()), Some("@b:hs"));
        assert_eq!(t.assign(a, "Ann"), "Ann");
        assert_eq!(t.user("Alice"), None);
        assert_eq!(t.remove(b).as_deref(), Some("Alice (@b:hs)"));
        assert_eq!(
            t.assign(b, "\u{7}  "),
            "b",
            "control characters and blanks fall back"
        );
    }

    #[test]
    fn power_levels_map_to_roles_and_affiliations() {
        let mut pl = RoomPowerLevels::new(
            matrix_sdk::ruma::events::room::power_levels::RoomPowerLevelsSource::None,
            &AuthorizationRules::V1,
            std::iter::empty::<matrix_sdk::ruma::OwnedUserId>(),
        );
        let owner = user_id!("@o:hs");
        let admin = user_id!("@ad:hs");
        let modr = user_id!("@m:hs");
        let member = user_id!("@u:hs");
        let muted = user_id!("@v:hs");
        pl.users.insert(owner.to_owned(), Int::from(100));
        pl.users.insert(admin.to_owned(), Int::from(50));
        pl.kick = Int::from(40);
        pl.users.insert(modr.to_owned(), Int::from(40));
        pl.events_default = Int::from(0);
        pl.users.insert(muted.to_owned(), Int::from(-1));
        assert_eq!(standing(&pl, owner), (Role::Moderator, Affiliation::Owner));
        assert_eq!(standing(&pl, admin), (Role::Moderator, Affiliation::Admin));
        assert_eq!(standing(&pl, modr), (Role::Moderator, Affiliation::Member));
        assert_eq!(
            standing(&pl, member),
            (Role::Participant, Affiliation::Member)
        );
        assert_eq!(standing(&pl, muted), (Role::Visitor, Affiliation::Member));
        assert_eq!(
            level_for_affiliation(&pl, Affiliation::Owner),
            Int::from(100)
        );
        assert_eq!(level_for_role(&pl, Role::Moderator), Int::from(40));
        assert_eq!(level_for_role(&pl, Role::Visitor), Int::from(-1));
    }
}
