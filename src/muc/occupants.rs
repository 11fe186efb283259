//! Who is in a room, as each user sees it, stored once per room.
//!
//! Every user joined to a network room gets the occupant list from their
//! own session, so the core used to keep one copy of the same list per
//! user (200 users in a channel of 200: 40,000 occupants). Here a room
//! (by its bridge room id) has one [`Table`] shared by the users whose view
//! is based on it, and each such user's [`View`] holds only where their
//! list differs from the table: their own entry (`is_self`), a member their
//! session has not reported yet, or one it no longer sees.
//!
//! A user's list is exactly what their own events made it, never what
//! another user's events said: a change one session reports goes into that
//! user's differences first. The table takes the value most views hold —
//! when more views hold a value as a difference than see the table's own,
//! the table switches to it and the views that had not reported it yet keep
//! the old value as their difference until their session reports the
//! change too. Every switch removes at least one difference, so a change
//! seen by every user ends with no difference at all, and views that
//! disagree for good (a user kicked, a bridge that shows each user another
//! list) keep their own values. A list too far from the table (a user
//! joined long after the others, another network's view) stays a list of
//! its own ([`View::Own`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferry_bridge::{Occupant, RoomId, UserId};

use super::{Room, Rooms};

/// An occupant as a view sees it under one nickname: absent (None) or
/// present.
type Value = Option<Arc<Occupant>>;

/// Whether two values are the same occupant state.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(x, y) || x == y,
        _ => false,
    }
}

/// One user's occupant list of one room.
#[derive(Debug)]
pub enum View {
    /// A list of its own, not based on the room's table: a view that is
    /// not joined yet, or one too different from the others' to share.
    Own(BTreeMap<String, Arc<Occupant>>),
    /// The room's table, except for these nicknames (None: a nickname the
    /// table has and this user does not see).
    Shared(BTreeMap<String, Value>),
}

impl Default for View {
    fn default() -> View {
        View::Own(BTreeMap::new())
    }
}

/// The occupant table of one room, shared by the views based on it.
#[derive(Debug, Default)]
pub struct Table {
    slots: BTreeMap<String, Slot>,
    /// The users whose view is based on this table.
    viewers: BTreeSet<UserId>,
}

/// One nickname of a table.
#[derive(Debug)]
struct Slot {
    /// What the views without a difference here see.
    value: Value,
    /// The values the views with a difference here see, with how many
    /// views see each.
    others: Vec<(Value, usize)>,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            value: None,
            others: Vec::new(),
        }
    }

    /// How many views differ here.
    fn differing(&self) -> usize {
        self.others.iter().map(|(_, n)| n).sum()
    }

    /// Counts one more view seeing `v` as a difference; returns the value
    /// to store (shared with the views that see the same) and its count.
    fn add(&mut self, v: Value) -> (Value, usize) {
        if let Some((have, n)) = self.others.iter_mut().find(|(have, _)| same(have, &v)) {
            *n += 1;
            return (have.clone(), *n);
        }
        self.others.push((v.clone(), 1));
        (v, 1)
    }

    /// Counts one view fewer seeing `v` as a difference.
    fn sub(&mut self, v: &Value) {
        if let Some(i) = self.others.iter().position(|(have, _)| same(have, v)) {
            self.others[i].1 -= 1;
            if self.others[i].1 == 0 {
                self.others.swap_remove(i);
            }
        }
    }

    /// Nothing to keep: no view sees anything under this nickname.
    fn unused(&self) -> bool {
        self.value.is_none() && self.others.is_empty()
    }
}

impl Table {
    /// How many differences the views hold in all.
    #[cfg(test)]
    pub fn differences(&self) -> usize {
        self.slots.values().map(Slot::differing).sum()
    }

    /// How many occupants the table holds.
    fn len(&self) -> usize {
        self.slots.values().filter(|s| s.value.is_some()).count()
    }

    /// How far a list is from the table: the nicknames whose occupant
    /// differs.
    fn distance(&self, list: &BTreeMap<String, Arc<Occupant>>) -> usize {
        let changed = list
            .iter()
            .filter(|(n, o)| {
                !self
                    .slots
                    .get(*n)
                    .is_some_and(|s| same(&s.value, &Some((*o).clone())))
            })
            .count();
        let missing = self
            .slots
            .iter()
            .filter(|(n, s)| s.value.is_some() && !list.contains_key(*n))
            .count();
        changed + missing
    }
}

/// A user's occupant list of one room, to read.
#[derive(Clone, Copy)]
pub struct Occupants<'a> {
    view: &'a View,
    table: Option<&'a Table>,
}

impl<'a> Occupants<'a> {
    /// The occupant with this nickname.
    pub fn get(&self, nick: &str) -> Option<&'a Occupant> {
        self.shared(nick).map(|o| &**o)
    }

    /// The occupant with this nickname, as stored (shared with the views
    /// that see the same).
    pub fn shared(&self, nick: &str) -> Option<&'a Arc<Occupant>> {
        match self.view {
            View::Own(m) => m.get(nick),
            View::Shared(diff) => match diff.get(nick) {
                Some(v) => v.as_ref(),
                None => self
                    .table
                    .and_then(|t| t.slots.get(nick))
                    .and_then(|s| s.value.as_ref()),
            },
        }
    }

    /// Whether an occupant has this nickname.
    pub fn contains(&self, nick: &str) -> bool {
        self.get(nick).is_some()
    }

    /// Every occupant, by nickname.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &'a Occupant> + 'a> {
        match (self.view, self.table) {
            (View::Own(m), _) => Box::new(m.values().map(|o| &**o)),
            (View::Shared(diff), None) => Box::new(diff.values().filter_map(|v| v.as_deref())),
            (View::Shared(diff), Some(t)) => Box::new(Merge {
                table: t.slots.iter().peekable(),
                diff: diff.iter().peekable(),
            }),
        }
    }
}

/// The table's occupants with a view's differences laid over them, in
/// nickname order.
struct Merge<'a> {
    table: std::iter::Peekable<std::collections::btree_map::Iter<'a, String, Slot>>,
    diff: std::iter::Peekable<std::collections::btree_map::Iter<'a, String, Value>>,
}

impl<'a> Iterator for Merge<'a> {
    type Item = &'a Occupant;

    fn next(&mut self) -> Option<&'a Occupant> {
        loop {
            let v: &'a Value = match (self.table.peek(), self.diff.peek()) {
                (None, None) => return None,
                (Some(_), None) => &self.table.next()?.1.value,
                (None, Some(_)) => self.diff.next()?.1,
                (Some((tn, _)), Some((dn, _))) => match tn.cmp(dn) {
                    std::cmp::Ordering::Less => &self.table.next()?.1.value,
                    std::cmp::Ordering::Greater => self.diff.next()?.1,
                    std::cmp::Ordering::Equal => {
                        self.table.next();
                        self.diff.next()?.1
                    }
                },
            };
            if let Some(o) = v.as_deref() {
                return Some(o);
            }
        }
    }
}

/// Lists whose distance to the table is at most this share of the larger
/// of the two (plus a few) are based on the table.
fn close_enough(distance: usize, list: usize, table: usize) -> bool {
    distance <= list.max(table) / 2 + 4
}

impl Rooms {
    /// A user's occupant list of a room.
    pub fn occupants<'a>(&'a self, r: &'a Room) -> Occupants<'a> {
        Occupants {
            view: &r.occupants,
            table: match &r.occupants {
                View::Own(_) => None,
                View::Shared(_) => self.tables.get(&r.id),
            },
        }
    }

    /// The shared table of a room.
    #[cfg(test)]
    pub fn table(&self, room: &RoomId) -> Option<&Table> {
        self.tables.get(room)
    }

    /// An occupant appeared or changed in a user's view.
    pub fn set_occupant(&mut self, user: &UserId, room: &RoomId, occupant: Occupant) {
        let nick = occupant.nick.clone();
        self.set(user, room, &nick, Some(Arc::new(occupant)));
    }

    /// An occupant left a user's view; returns what it was.
    pub fn remove_occupant(
        &mut self,
        user: &UserId,
        room: &RoomId,
        nick: &str,
    ) -> Option<Arc<Occupant>> {
        let r = self.get(user, room)?;
        let old = self.occupants(r).shared(nick)?.clone();
        self.set(user, room, nick, None);
        Some(old)
    }

    /// A user's view becomes exactly this list (the session (re)joined).
    pub fn replace_occupants(&mut self, user: &UserId, room: &RoomId, list: Vec<Occupant>) {
        let list: BTreeMap<String, Arc<Occupant>> = list
            .into_iter()
            .map(|o| (o.nick.clone(), Arc::new(o)))
            .collect();
        let key = (user.clone(), room.clone());
        let Some(r) = self.map.get(&key) else {
            return;
        };
        let shared = matches!(r.occupants, View::Shared(_));
        let table = self.tables.get(room).filter(|t| !t.viewers.is_empty());
        let Some(table) = table else {
            // The first view of the room: the table is its list.
            self.detach(user, room);
            let t = self.tables.entry(room.clone()).or_default();
            t.slots = list
                .into_iter()
                .map(|(n, o)| {
                    (
                        n,
                        Slot {
                            value: Some(o),
                            others: Vec::new(),
                        },
                    )
                })
                .collect();
            t.viewers.insert(user.clone());
            if let Some(r) = self.map.get_mut(&key) {
                r.occupants = View::Shared(BTreeMap::new());
            }
            return;
        };
        if !close_enough(table.distance(&list), list.len(), table.len()) {
            self.detach(user, room);
            if let Some(r) = self.map.get_mut(&key) {
                r.occupants = View::Own(list);
            }
            return;
        }
        if !shared {
            // Based on the table from now on: its differences follow.
            if let Some(t) = self.tables.get_mut(room) {
                t.viewers.insert(user.clone());
            }
            if let Some(r) = self.map.get_mut(&key) {
                r.occupants = View::Shared(BTreeMap::new());
            }
        }
        // Every nickname the view or the list has.
        let mut nicks: BTreeSet<String> = list.keys().cloned().collect();
        if let (Some(r), Some(t)) = (self.map.get(&key), self.tables.get(room)) {
            let occ = Occupants {
                view: &r.occupants,
                table: Some(t),
            };
            nicks.extend(occ.iter().map(|o| o.nick.clone()));
        }
        for nick in nicks {
            let new = list.get(&nick).cloned();
            let now = self
                .map
                .get(&key)
                .and_then(|r| self.occupants(r).shared(&nick))
                .cloned();
            if !same(&now, &new) {
                self.set(user, room, &nick, new);
            }
        }
    }

    /// A user's view becomes empty (the user left the room).
    pub fn clear_occupants(&mut self, user: &UserId, room: &RoomId) {
        self.detach(user, room);
        if let Some(r) = self.get_mut(user, room) {
            r.occupants = View::default();
        }
    }

    /// Sets what a user's view shows under a nickname.
    fn set(&mut self, user: &UserId, room: &RoomId, nick: &str, new: Value) {
        let key = (user.clone(), room.clone());
        let Some(r) = self.map.get_mut(&key) else {
            return;
        };
        let diff = match &mut r.occupants {
            View::Own(m) => {
                match new {
                    Some(o) => m.insert(nick.to_owned(), o),
                    None => m.remove(nick),
                };
                return;
            }
            View::Shared(diff) => diff,
        };
        let Some(table) = self.tables.get_mut(room) else {
            // Not reachable: a shared view's table lives while it is based
            // on it. Keep the change anyway.
            diff.insert(nick.to_owned(), new);
            return;
        };
        let slot = table
            .slots
            .entry(nick.to_owned())
            .or_insert_with(Slot::empty);
        if let Some(old) = diff.remove(nick) {
            slot.sub(&old);
        }
        if same(&slot.value, &new) {
            if slot.unused() {
                table.slots.remove(nick);
            }
            return;
        }
        let (value, count) = slot.add(new);
        diff.insert(nick.to_owned(), value.clone());
        let agree = table.viewers.len().saturating_sub(slot.differing());
        if count <= agree {
            return;
        }
        // More views see the new value than the table's: the table takes
        // it, the views that still see the old value keep it as theirs.
        let old = std::mem::replace(&mut slot.value, value.clone());
        if let Some(i) = slot.others.iter().position(|(v, _)| same(v, &value)) {
            slot.others.swap_remove(i);
        }
        if agree > 0 {
            slot.others.push((old.clone(), agree));
        }
        if slot.unused() {
            table.slots.remove(nick);
        }
        for viewer in &table.viewers {
            let Some(View::Shared(diff)) = self
                .map
                .get_mut(&(viewer.clone(), room.clone()))
                .map(|r| &mut r.occupants)
            else {
                continue;
            };
            match diff.get(nick) {
                Some(v) if same(v, &value) => {
                    diff.remove(nick);
                }
                Some(_) => {}
                None => {
                    diff.insert(nick.to_owned(), old.clone());
                }
            }
        }
    }

    /// A user's view stops being based on the room's table (it keeps its
    /// list: the caller replaces it).
    pub(super) fn detach(&mut self, user: &UserId, room: &RoomId) {
        let Some(r) = self.map.get_mut(&(user.clone(), room.clone())) else {
            return;
        };
        let View::Shared(diff) = std::mem::take(&mut r.occupants) else {
            return;
        };
        let Some(table) = self.tables.get_mut(room) else {
            return;
        };
        for (nick, v) in diff {
            if let Some(slot) = table.slots.get_mut(&nick) {
                slot.sub(&v);
                if slot.unused() {
                    table.slots.remove(&nick);
                }
            }
        }
        table.viewers.remove(user);
        if table.viewers.is_empty() {
            self.tables.remove(room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::jid::BareJid;

    fn room() -> RoomId {
        RoomId::new("#lounge%irc.example")
    }

    fn user(n: usize) -> UserId {
        UserId::new(format!("u{n}@localhost"))
    }

    fn occ(nick: &str) -> Occupant {
        Occupant::new(nick)
    }

    fn me(nick: &str) -> Occupant {
        let mut o = Occupant::new(nick);
        o.is_self = true;
        o
    }

    fn rooms_with(users: usize) -> Rooms {
        let mut rooms = Rooms::default();
        for i in 0..users {
            rooms.entry(&user(i), &room(), || {
                BareJid::new("#lounge%irc.example@irc.localhost").ok()
            });
        }
        rooms
    }

    /// What a user's view shows, as (nick, is_self, away status).
    fn seen(rooms: &Rooms, u: &UserId) -> Vec<(String, bool, Option<String>)> {
        let r = rooms.get(u, &room()).expect("room");
        rooms
            .occupants(r)
            .iter()
            .map(|o| (o.nick.clone(), o.is_self, o.presence.status.clone()))
            .collect()
    }

    fn nicks(rooms: &Rooms, u: &UserId) -> Vec<String> {
        seen(rooms, u).into_iter().map(|s| s.0).collect()
    }

    /// Users 0..n join one after another, each seeing those before and
    /// itself; the others see each newcomer: as the IRC bridge reports a
    /// join burst.
    fn join_burst(rooms: &mut Rooms, n: usize) {
        for k in 0..n {
            let mut list: Vec<Occupant> = (0..k).map(|i| occ(&format!("n{i}"))).collect();
            list.push(me(&format!("n{k}")));
            rooms.replace_occupants(&user(k), &room(), list);
            for i in 0..k {
                rooms.set_occupant(&user(i), &room(), occ(&format!("n{k}")));
            }
        }
    }

    #[test]
    fn a_room_everyone_sees_alike_is_stored_once() {
        let mut rooms = rooms_with(50);
        join_burst(&mut rooms, 50);
        let t = rooms.table(&room()).expect("table");
        assert_eq!(t.len(), 50);
        // One difference per user: their own entry (is_self).
        assert_eq!(t.differences(), 50);
        for k in 0..50 {
            let s = seen(&rooms, &user(k));
            assert_eq!(s.len(), 50);
            let selves: Vec<&String> = s.iter().filter(|x| x.1).map(|x| &x.0).collect();
            assert_eq!(selves, vec![&format!("n{k}")], "user {k}");
        }
    }

    #[test]
    fn a_change_one_session_reported_is_not_seen_by_the_others() {
        let mut rooms = rooms_with(3);
        join_burst(&mut rooms, 3);
        let mut away = occ("n1");
        away.presence.status = Some("lunch".into());
        // Only user 0's session has reported it so far.
        rooms.set_occupant(&user(0), &room(), away.clone());
        let status = |rooms: &Rooms, u: usize| {
            seen(rooms, &user(u))
                .into_iter()
                .find(|s| s.0 == "n1")
                .map(|s| s.2)
        };
        assert_eq!(status(&rooms, 0), Some(Some("lunch".into())));
        assert_eq!(status(&rooms, 2), Some(None));
        // User 2 reports it too: now most views see it (the table switches),
        // user 1 (whose own entry n1 is, is_self) still sees itself.
        rooms.set_occupant(&user(2), &room(), away.clone());
        assert_eq!(status(&rooms, 2), Some(Some("lunch".into())));
        assert_eq!(status(&rooms, 1), Some(None));
        assert!(seen(&rooms, &user(1)).iter().any(|s| s.0 == "n1" && s.1));
        assert!(seen(&rooms, &user(0)).iter().all(|s| s.0 != "n1" || !s.1));
    }

    #[test]
    fn a_user_joined_later_sees_only_what_its_session_said() {
        let mut rooms = rooms_with(4);
        join_burst(&mut rooms, 3);
        // Users 0..2 see n3 arrive before user 3 has joined at all.
        for i in 0..3 {
            rooms.set_occupant(&user(i), &room(), occ("x"));
        }
        assert!(nicks(&rooms, &user(3)).is_empty());
        // User 3 joins and its session lists an older state (no x).
        rooms.replace_occupants(
            &user(3),
            &room(),
            vec![occ("n0"), occ("n1"), occ("n2"), me("n3")],
        );
        assert_eq!(nicks(&rooms, &user(3)), vec!["n0", "n1", "n2", "n3"]);
        assert_eq!(nicks(&rooms, &user(0)), vec!["n0", "n1", "n2", "x"]);
    }

    #[test]
    fn a_kicked_user_sees_nobody_and_the_others_are_unchanged() {
        let mut rooms = rooms_with(5);
        join_burst(&mut rooms, 5);
        let before = seen(&rooms, &user(0));
        rooms.clear_occupants(&user(4), &room());
        assert!(nicks(&rooms, &user(4)).is_empty());
        assert_eq!(seen(&rooms, &user(0)), before);
        // The others see user 4 leave; its view stays empty.
        for i in 0..4 {
            rooms.remove_occupant(&user(i), &room(), "n4");
        }
        assert!(nicks(&rooms, &user(4)).is_empty());
        assert_eq!(nicks(&rooms, &user(1)), vec!["n0", "n1", "n2", "n3"]);
        let t = rooms.table(&room()).expect("table");
        assert_eq!(t.len(), 4);
        assert_eq!(t.differences(), 4);
    }

    #[test]
    fn views_a_bridge_makes_different_stay_different() {
        // A network that shows each user another list (per-user names).
        let mut rooms = rooms_with(3);
        for k in 0..3 {
            let list = (0..20)
                .map(|i| occ(&format!("u{k}-sees-{i}")))
                .chain([me("self")])
                .collect();
            rooms.replace_occupants(&user(k), &room(), list);
        }
        for k in 0..3 {
            let n = nicks(&rooms, &user(k));
            assert_eq!(n.len(), 21);
            assert!(
                n.iter()
                    .all(|x| x == "self" || x.starts_with(&format!("u{k}-")))
            );
        }
        // Each changes on its own.
        rooms.remove_occupant(&user(1), &room(), "u1-sees-3");
        rooms.set_occupant(&user(2), &room(), occ("only-2"));
        assert_eq!(nicks(&rooms, &user(0)).len(), 21);
        assert_eq!(nicks(&rooms, &user(1)).len(), 20);
        assert!(nicks(&rooms, &user(2)).contains(&"only-2".to_owned()));
        assert!(!nicks(&rooms, &user(0)).contains(&"only-2".to_owned()));
    }

    #[test]
    fn nick_changes_reported_in_any_order_end_with_no_difference() {
        let mut rooms = rooms_with(6);
        join_burst(&mut rooms, 6);
        let base = rooms.table(&room()).expect("table").differences();
        // n5 renames itself to m5, then n4 goes away; sessions report in
        // different orders and at different times.
        for i in [3usize, 0, 1] {
            rooms.remove_occupant(&user(i), &room(), "n5");
            rooms.set_occupant(&user(i), &room(), occ("m5"));
        }
        assert!(nicks(&rooms, &user(2)).contains(&"n5".to_owned()));
        assert!(!nicks(&rooms, &user(3)).contains(&"n5".to_owned()));
        for i in [2usize, 4] {
            rooms.remove_occupant(&user(i), &room(), "n4");
            rooms.remove_occupant(&user(i), &room(), "n5");
            rooms.set_occupant(&user(i), &room(), occ("m5"));
        }
        rooms.remove_occupant(&user(5), &room(), "n5");
        rooms.set_occupant(&user(5), &room(), me("m5"));
        for i in [0usize, 1, 3, 5] {
            rooms.remove_occupant(&user(i), &room(), "n4");
        }
        for i in [0usize, 1, 2, 3, 5] {
            assert_eq!(nicks(&rooms, &user(i)), vec!["m5", "n0", "n1", "n2", "n3"]);
        }
        assert_eq!(nicks(&rooms, &user(4)), vec!["m5", "n0", "n1", "n2", "n3"]);
        // User 4 removed n4 itself: only the is_self entries differ (n4's
        // own "self" entry is gone with its nickname).
        assert!(rooms.table(&room()).expect("table").differences() <= base);
    }

    #[test]
    fn leaving_and_forgetting_frees_the_table() {
        let mut rooms = rooms_with(3);
        join_burst(&mut rooms, 3);
        rooms.remove(&user(0), &room());
        rooms.clear_occupants(&user(1), &room());
        assert!(rooms.table(&room()).is_some());
        rooms.clear_occupants(&user(2), &room());
        assert!(rooms.table(&room()).is_none());
        // Joining again starts a fresh table.
        rooms.replace_occupants(&user(1), &room(), vec![me("n1"), occ("z")]);
        assert_eq!(nicks(&rooms, &user(1)), vec!["n1", "z"]);
        assert!(nicks(&rooms, &user(2)).is_empty());
    }

    /// Random changes reported by random users' sessions, checked after
    /// each against a plain list per user: no view ever shows another
    /// user's change, and a table nobody uses is gone.
    #[test]
    fn every_view_is_exactly_what_its_own_events_made_it() {
        let users = 7;
        let mut rooms = rooms_with(users);
        let mut model: Vec<BTreeMap<String, Occupant>> = vec![BTreeMap::new(); users];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..20_000 {
            let u = next(users as u64) as usize;
            let nick = format!("n{}", next(12));
            match next(20) {
                0 => {
                    rooms.clear_occupants(&user(u), &room());
                    model[u].clear();
                }
                1 => {
                    // (Re)join with a list near what most see, or not.
                    let from = next(users as u64) as usize;
                    let mut list: BTreeMap<String, Occupant> = model[from].clone();
                    if next(3) == 0 {
                        list.insert(nick.clone(), me(&nick));
                    }
                    if next(4) == 0 {
                        list.clear();
                        for i in 0..next(6) {
                            list.insert(format!("o{i}"), occ(&format!("o{i}")));
                        }
                    }
                    rooms.replace_occupants(&user(u), &room(), list.values().cloned().collect());
                    model[u] = list;
                }
                2..=7 => {
                    let removed = rooms.remove_occupant(&user(u), &room(), &nick);
                    let expected = model[u].remove(&nick);
                    assert_eq!(removed.as_deref(), expected.as_ref(), "step {step}");
                }
                _ => {
                    let mut o = occ(&nick);
                    match next(4) {
                        0 => o.presence.status = Some(format!("s{}", next(3))),
                        1 => o.is_self = true,
                        _ => {}
                    }
                    rooms.set_occupant(&user(u), &room(), o.clone());
                    model[u].insert(nick, o);
                }
            }
            for (i, m) in model.iter().enumerate() {
                let r = rooms.get(&user(i), &room()).expect("room");
                let got: Vec<&Occupant> = rooms.occupants(r).iter().collect();
                let want: Vec<&Occupant> = m.values().collect();
                assert_eq!(got, want, "user {i} after step {step}");
            }
            if let Some(t) = rooms.table(&room()) {
                assert!(!t.viewers.is_empty());
                for (nick, s) in &t.slots {
                    assert!(!s.unused());
                    let holding = t
                        .viewers
                        .iter()
                        .filter(|v| {
                            matches!(&rooms.get(v, &room()).expect("room").occupants,
                                View::Shared(d) if d.contains_key(nick))
                        })
                        .count();
                    assert_eq!(s.differing(), holding, "counts of {nick} at step {step}");
                }
            }
        }
    }

    #[test]
    fn a_rejoin_replaces_the_whole_view() {
        let mut rooms = rooms_with(3);
        join_burst(&mut rooms, 3);
        rooms.replace_occupants(&user(2), &room(), vec![occ("n0"), me("n2"), occ("q")]);
        assert_eq!(nicks(&rooms, &user(2)), vec!["n0", "n2", "q"]);
        assert_eq!(nicks(&rooms, &user(0)), vec!["n0", "n1", "n2"]);
        assert_eq!(nicks(&rooms, &user(1)), vec!["n0", "n1", "n2"]);
    }
}
