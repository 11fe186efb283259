//! One copy of the strings every connection to a server keeps of the same
//! channel members: nicknames (as spelled and folded), idents, hosts,
//! accounts, away messages and status modes.
//!
//! Each Ferry user has a connection of their own: with 200 users in one
//! channel the same 200 nicknames were held 200 times over, in a few small
//! heap blocks per member each. Interned, the text exists once in the
//! process (the members themselves are shared per channel, see
//! [`crate::conn::members`]; names that are not members yet, a NAMES list
//! being received, and variants of a member while connections disagree
//! share the strings too).
//!
//! The table keeps a string while anything else holds it: whenever it has
//! doubled since the last sweep, it forgets the strings only it still holds.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// The table's size below which it is never swept.
const MIN_SWEEP: usize = 1024;

struct Table {
    strings: HashSet<Arc<str>>,
    sweep_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        strings: HashSet::new(),
        sweep_at: MIN_SWEEP,
    })
});

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(shared) = table.strings.get(s) {
        return Arc::clone(shared);
    }
    if table.strings.len() >= table.sweep_at {
        // Only the table holds these (a clone is only made under the lock,
        // so none can appear meanwhile).
        table.strings.retain(|s| Arc::strong_count(s) > 1);
        table.sweep_at = (table.strings.len() * 2).max(MIN_SWEEP);
    }
    let shared: Arc<str> = Arc::from(s);
    table.strings.insert(Arc::clone(&shared));
    shared
}

/// The shared copy of `s`, if any.
pub fn intern_opt(s: Option<&str>) -> Option<Arc<str>> {
    s.map(intern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = intern("intern-test-alice");
        let b = intern(&String::from("intern-test-alice"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "intern-test-alice");
        assert!(!Arc::ptr_eq(&a, &intern("intern-test-bob")));
    }

    #[test]
    fn unused_strings_are_forgotten_by_a_sweep() {
        let kept = intern("intern-test-kept");
        for i in 0..(MIN_SWEEP * 3) {
            intern(&format!("intern-test-dropped-{i}"));
        }
        let table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(table.strings.len() < MIN_SWEEP * 3);
        assert!(table.strings.contains("intern-test-kept"));
        drop(table);
        assert!(Arc::ptr_eq(&kept, &intern("intern-test-kept")));
    }
}
