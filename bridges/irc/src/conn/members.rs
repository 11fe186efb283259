//! One member table per (server, channel), shared by every connection in
//! that channel, with each connection's own view of it.
//!
//! Each Ferry user has an IRC connection of their own, and with 200 users
//! in one channel the same 200 members were tracked 200 times over. Here a
//! channel's members are kept once, as records in a table that every
//! connection to that channel shares; a connection holds only a bit per
//! record: the records it sees.
//!
//! Connections do not see the same thing at the same time: each reads the
//! server's lines at its own pace, one may be past a PART another has not
//! read yet, or joined after a member left, or have seen a MODE the other
//! has not. So a record is never changed in place: a connection that sees a
//! change moves its bit to the record that holds the new state (shared
//! with the connections that already saw it, or new), and a record that no
//! connection sees any more is freed. A connection's view is exactly what
//! its own lines said, whatever the others saw.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::channel::{Member, Members};

/// The registry's size below which dead tables are never swept.
const MIN_SWEEP: usize = 64;

/// The tables of every channel a connection of this bridge is in, by
/// (server, channel). Cheap to clone; every clone is the same registry.
#[derive(Clone, Default)]
pub struct MemberTables {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    tables: HashMap<String, Weak<Mutex<Table>>>,
    sweep_at: usize,
}

impl fmt::Debug for MemberTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = lock(&self.inner).tables.len();
        f.debug_struct("MemberTables").field("tables", &n).finish()
    }
}

impl MemberTables {
    /// An empty view of the table of the channel known as `key` (one key
    /// per server and channel: the room id). Two connections that use
    /// different keys for the same channel only share less.
    pub fn view(&self, key: &str) -> MemberView {
        let mut reg = lock(&self.inner);
        let table = match reg.tables.get(key).and_then(Weak::upgrade) {
            Some(t) => t,
            None => {
                if reg.tables.len() >= reg.sweep_at.max(MIN_SWEEP) {
                    reg.tables.retain(|_, t| t.strong_count() > 0);
                    reg.sweep_at = reg.tables.len() * 2;
                }
                let t = Arc::new(Mutex::new(Table::default()));
                reg.tables.insert(key.to_owned(), Arc::downgrade(&t));
                t
            }
        };
        MemberView {
            table,
            seen: Bits::default(),
        }
    }

    /// How many channel tables are alive (tests).
    #[cfg(test)]
    pub fn live(&self) -> usize {
        lock(&self.inner)
            .tables
            .values()
            .filter(|t| t.strong_count() > 0)
            .count()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One channel's members as every connection saw them: records, each seen
/// by `refs` connections.
#[derive(Default)]
struct Table {
    records: Vec<Option<Record>>,
    free: Vec<u32>,
    /// Record ids by folded nickname (several while connections disagree).
    index: HashMap<Arc<str>, Vec<u32>>,
}

struct Record {
    key: Arc<str>,
    member: Member,
    refs: u32,
}

impl Table {
    fn record(&self, id: u32) -> Option<&Record> {
        self.records.get(id as usize).and_then(Option::as_ref)
    }

    /// The record of `key` a connection with `seen` sees.
    fn find(&self, seen: &Bits, key: &str) -> Option<u32> {
        self.index
            .get(key)?
            .iter()
            .copied()
            .find(|id| seen.has(*id))
    }

    /// A reference to the record holding `member` under `key`.
    fn acquire(&mut self, key: Arc<str>, member: Member) -> u32 {
        if let Some(ids) = self.index.get(&key) {
            for id in ids {
                if let Some(r) = self.records.get_mut(*id as usize).and_then(Option::as_mut)
                    && r.member == member
                {
                    r.refs += 1;
                    return *id;
                }
            }
        }
        let record = Record {
            key: Arc::clone(&key),
            member,
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.records[id as usize] = Some(record);
                id
            }
            None => {
                self.records.push(Some(record));
                (self.records.len() - 1) as u32
            }
        };
        self.index.entry(key).or_default().push(id);
        id
    }

    /// Gives back a reference; the record goes with the last one.
    fn release(&mut self, id: u32) {
        let Some(r) = self.records.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        r.refs -= 1;
        if r.refs > 0 {
            return;
        }
        let Some(r) = self.records[id as usize].take() else {
            return;
        };
        self.free.push(id);
        if let Some(ids) = self.index.get_mut(&r.key) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.index.remove(&r.key);
            }
        }
        if self.free.len() == self.records.len() {
            // Nobody left: give the memory back.
            self.records = Vec::new();
            self.free = Vec::new();
        }
    }
}

/// A set of record ids.
#[derive(Default)]
struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    fn has(&self, id: u32) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        self.words.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    fn set(&mut self, id: u32) {
        let (w, b) = (id as usize / 64, id % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        if self.words[w] & (1 << b) == 0 {
            self.words[w] |= 1 << b;
            self.len += 1;
        }
    }

    fn unset(&mut self, id: u32) {
        let (w, b) = (id as usize / 64, id % 64);
        if let Some(x) = self.words.get_mut(w)
            && *x & (1 << b) != 0
        {
            *x &= !(1 << b);
            self.len -= 1;
        }
    }

    fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, x)| {
            (0..64u32)
                .filter(move |b| x & (1 << b) != 0)
                .map(move |b| w as u32 * 64 + b)
        })
    }
}

/// The members of one channel as one connection sees them, by folded
/// nickname.
pub struct MemberView {
    table: Arc<Mutex<Table>>,
    seen: Bits,
}

impl fmt::Debug for MemberView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberView")
            .field("members", &self.seen.len)
            .finish()
    }
}

impl Drop for MemberView {
    fn drop(&mut self) {
        self.clear();
    }
}

impl MemberView {
    /// How many members this connection sees.
    pub fn len(&self) -> usize {
        self.seen.len
    }

    /// Whether this connection sees no member.
    pub fn is_empty(&self) -> bool {
        self.seen.len == 0
    }

    /// Whether `key` (a folded nickname) is a member.
    pub fn contains(&self, key: &str) -> bool {
        lock(&self.table).find(&self.seen, key).is_some()
    }

    /// The member under `key`.
    pub fn get(&self, key: &str) -> Option<Member> {
        let t = lock(&self.table);
        let id = t.find(&self.seen, key)?;
        t.record(id).map(|r| r.member.clone())
    }

    /// Every member.
    pub fn all(&self) -> Vec<Member> {
        let t = lock(&self.table);
        self.seen
            .ids()
            .filter_map(|id| t.record(id).map(|r| r.member.clone()))
            .collect()
    }

    /// Adds or replaces the member under `key`.
    pub fn insert(&mut self, key: Arc<str>, member: Member) {
        let mut t = lock(&self.table);
        let old = t.find(&self.seen, &key);
        if let Some(old) = old
            && t.record(old).is_some_and(|r| r.member == member)
        {
            return;
        }
        let id = t.acquire(key, member);
        if let Some(old) = old {
            self.seen.unset(old);
            t.release(old);
        }
        self.seen.set(id);
    }

    /// Takes the member under `key` out.
    pub fn remove(&mut self, key: &str) -> Option<Member> {
        let mut t = lock(&self.table);
        let id = t.find(&self.seen, key)?;
        let member = t.record(id).map(|r| r.member.clone());
        self.seen.unset(id);
        t.release(id);
        member
    }

    /// Changes the member under `key` with `f`: `None` when there is no
    /// such member, else whether `f` changed anything.
    pub fn update(&mut self, key: &str, f: impl FnOnce(&mut Member)) -> Option<bool> {
        let mut t = lock(&self.table);
        let id = t.find(&self.seen, key)?;
        let r = t.record(id)?;
        let mut member = r.member.clone();
        f(&mut member);
        if member == r.member {
            return Some(false);
        }
        let key = Arc::clone(&r.key);
        let new = t.acquire(key, member);
        self.seen.unset(id);
        t.release(id);
        self.seen.set(new);
        Some(true)
    }

    /// Moves the member under `old` to `new` (a nick change), with its new
    /// spelling; whether there was one.
    pub fn rename(&mut self, old: &str, new: Arc<str>, nick: Arc<str>) -> bool {
        let mut t = lock(&self.table);
        let Some(id) = t.find(&self.seen, old) else {
            return false;
        };
        let Some(mut member) = t.record(id).map(|r| r.member.clone()) else {
            return false;
        };
        member.nick = nick;
        // Whoever was under the new key for us is replaced.
        if let Some(there) = t.find(&self.seen, &new)
            && there != id
        {
            self.seen.unset(there);
            t.release(there);
        }
        let moved = t.acquire(new, member);
        self.seen.unset(id);
        t.release(id);
        self.seen.set(moved);
        true
    }

    /// Replaces every member with `members` (a complete NAMES list).
    pub fn replace(&mut self, members: Members) {
        let mut seen = Bits::default();
        let mut t = lock(&self.table);
        // Take the new references before giving back the old ones, so
        // that the records both lists share are never freed in between.
        for (key, member) in members {
            let id = t.acquire(key, member);
            seen.set(id);
        }
        let old = std::mem::replace(&mut self.seen, seen);
        for id in old.ids() {
            t.release(id);
        }
    }

    /// Forgets every member.
    pub fn clear(&mut self) {
        let old = std::mem::take(&mut self.seen);
        if old.len == 0 {
            return;
        }
        let mut t = lock(&self.table);
        for id in old.ids() {
            t.release(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intern::intern;

    fn member(nick: &str, modes: &str) -> Member {
        Member {
            nick: intern(nick),
            modes: intern(modes),
            ..Member::default()
        }
    }

    fn records(v: &MemberView) -> usize {
        lock(&v.table).records.iter().flatten().count()
    }

    #[test]
    fn views_share_records_and_keep_their_own_state() {
        let tables = MemberTables::default();
        let mut a = tables.view("#c%irc.x");
        let mut b = tables.view("#c%irc.x");
        a.insert(intern("bob"), member("bob", ""));
        b.insert(intern("bob"), member("bob", ""));
        assert_eq!(records(&a), 1, "one record for both");
        // A sees bob get +o first.
        assert_eq!(a.update("bob", |m| m.set_mode('o', true)), Some(true));
        assert_eq!(&*a.get("bob").unwrap().modes, "o");
        assert_eq!(&*b.get("bob").unwrap().modes, "");
        assert_eq!(records(&a), 2);
        // Then B: back to one record.
        assert_eq!(b.update("bob", |m| m.set_mode('o', true)), Some(true));
        assert_eq!(records(&a), 1);
        // A sees bob leave; B has not yet.
        assert!(a.remove("bob").is_some());
        assert!(!a.contains("bob"));
        assert!(b.contains("bob"));
        assert_eq!((a.len(), b.len()), (0, 1));
        // A view that goes away takes its references along.
        drop(b);
        assert_eq!(records(&a), 0);
        drop(a);
        assert_eq!(tables.live(), 0);
    }

    #[test]
    fn rename_and_replace() {
        let tables = MemberTables::default();
        let mut a = tables.view("#c%irc.x");
        let mut b = tables.view("#c%irc.x");
        let names: Members = [("bob", ""), ("carol", "v")]
            .into_iter()
            .map(|(n, m)| (intern(n), member(n, m)))
            .collect();
        a.replace(names.clone());
        b.replace(names);
        assert_eq!(records(&a), 2);
        assert!(a.rename("bob", intern("rob"), intern("Rob")));
        assert_eq!(&*a.get("rob").unwrap().nick, "Rob");
        assert!(a.get("bob").is_none());
        assert!(b.get("rob").is_none());
        assert_eq!(&*b.get("bob").unwrap().nick, "bob");
        let mut nicks: Vec<String> = a.all().iter().map(|m| m.nick.to_string()).collect();
        nicks.sort();
        assert_eq!(nicks, ["Rob", "carol"]);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(records(&a), 2);
    }

    #[test]
    fn views_of_other_channels_are_apart() {
        let tables = MemberTables::default();
        let mut a = tables.view("#a%irc.x");
        let b = tables.view("#b%irc.x");
        a.insert(intern("bob"), member("bob", ""));
        assert!(!b.contains("bob"));
        assert_eq!(tables.live(), 2);
    }
}
