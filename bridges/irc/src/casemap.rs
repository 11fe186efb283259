//! IRC case folding (ISUPPORT `CASEMAPPING`) and the per-server facts that
//! address parsing needs (`CHANTYPES`), shared between the address rules
//! and every connection that learns them from a server.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How a server compares nicknames and channel names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaseMapping {
    /// `A-Z` and `[]\~` fold to `a-z` and `{}|^` (the RFC 1459 default).
    #[default]
    Rfc1459,
    /// Like [`CaseMapping::Rfc1459`] without `~` / `^`.
    StrictRfc1459,
    /// Only `A-Z`.
    Ascii,
}

impl CaseMapping {
    /// Parses an ISUPPORT `CASEMAPPING` value; unknown mappings fall back
    /// to `rfc1459`, which folds the most.
    pub fn from_isupport(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "ascii" => CaseMapping::Ascii,
            "strict-rfc1459" => CaseMapping::StrictRfc1459,
            _ => CaseMapping::Rfc1459,
        }
    }

    /// Folds one character.
    pub fn fold_char(self, c: char) -> char {
        match (self, c) {
            (_, 'A'..='Z') => c.to_ascii_lowercase(),
            (CaseMapping::Rfc1459 | CaseMapping::StrictRfc1459, '[') => '{',
            (CaseMapping::Rfc1459 | CaseMapping::StrictRfc1459, ']') => '}',
            (CaseMapping::Rfc1459 | CaseMapping::StrictRfc1459, '\\') => '|',
            (CaseMapping::Rfc1459, '~') => '^',
            _ => c,
        }
    }

    /// Folds a nickname or channel name to its canonical spelling. Non-ASCII
    /// characters are lower-cased too: the XMPP server has already folded
    /// them in every JID the user typed, so the canonical form must agree.
    pub fn fold(self, s: &str) -> String {
        s.chars()
            .flat_map(|c| {
                if c.is_ascii() {
                    either_one(self.fold_char(c))
                } else {
                    either_many(c)
                }
            })
            .collect()
    }

    /// Whether two names are the same under this mapping.
    pub fn eq(self, a: &str, b: &str) -> bool {
        self.fold(a) == self.fold(b)
    }
}

fn either_one(c: char) -> CharIter {
    CharIter::One(Some(c))
}

fn either_many(c: char) -> CharIter {
    CharIter::Many(c.to_lowercase())
}

enum CharIter {
    One(Option<char>),
    Many(std::char::ToLowercase),
}

impl Iterator for CharIter {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        match self {
            CharIter::One(c) => c.take(),
            CharIter::Many(it) => it.next(),
        }
    }
}

/// What address parsing needs to know about one IRC server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTraits {
    /// Characters that start a channel name (ISUPPORT `CHANTYPES`).
    pub chantypes: String,
    /// Case folding (ISUPPORT `CASEMAPPING`).
    pub casemapping: CaseMapping,
}

impl Default for ServerTraits {
    fn default() -> Self {
        Self {
            chantypes: DEFAULT_CHANTYPES.to_owned(),
            casemapping: CaseMapping::Rfc1459,
        }
    }
}

/// `CHANTYPES` when a server does not say.
pub const DEFAULT_CHANTYPES: &str = "#&";

impl ServerTraits {
    /// Whether `name` is a channel name on this server.
    pub fn is_channel(&self, name: &str) -> bool {
        name.chars()
            .next()
            .is_some_and(|c| self.chantypes.contains(c))
    }
}

/// The traits of every server seen so far, by (lower-case) server name.
/// Shared by the address rules and the connections; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TraitsRegistry {
    inner: Arc<RwLock<HashMap<String, ServerTraits>>>,
}

impl TraitsRegistry {
    /// The traits of a server (defaults until a connection learned them).
    pub fn get(&self, server: &str) -> ServerTraits {
        self.inner
            .read()
            .ok()
            .and_then(|m| m.get(server).cloned())
            .unwrap_or_default()
    }

    /// Records what a connection learned from a server's ISUPPORT.
    pub fn set(&self, server: &str, traits: ServerTraits) {
        if let Ok(mut m) = self.inner.write() {
            m.insert(server.to_owned(), traits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1459_folds_brackets_and_tilde() {
        let m = CaseMapping::Rfc1459;
        assert_eq!(m.fold("Nick[A]\\~"), "nick{a}|^");
        assert!(m.eq("FOO[]", "foo{}"));
    }

    #[test]
    fn strict_and_ascii_fold_less() {
        assert_eq!(CaseMapping::StrictRfc1459.fold("A[~"), "a{~");
        assert_eq!(CaseMapping::Ascii.fold("A[~\\"), "a[~\\");
        assert!(!CaseMapping::Ascii.eq("[", "{"));
    }

    #[test]
    fn isupport_values() {
        assert_eq!(CaseMapping::from_isupport("ascii"), CaseMapping::Ascii);
        assert_eq!(
            CaseMapping::from_isupport("strict-rfc1459"),
            CaseMapping::StrictRfc1459
        );
        assert_eq!(CaseMapping::from_isupport("rfc7613"), CaseMapping::Rfc1459);
    }

    #[test]
    fn non_ascii_is_lowercased_like_the_xmpp_server_does() {
        assert_eq!(CaseMapping::Ascii.fold("#ÉTÉ"), "#été");
    }

    #[test]
    fn registry_defaults_and_updates() {
        let r = TraitsRegistry::default();
        assert!(r.get("x").is_channel("&local"));
        r.set(
            "x",
            ServerTraits {
                chantypes: "#".into(),
                casemapping: CaseMapping::Ascii,
            },
        );
        assert!(!r.get("x").is_channel("&local"));
        assert!(r.get("x").is_channel("#a"));
    }
}
