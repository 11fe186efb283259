//! Who may use a bridge and who administers it (`[access]`).
//!
//! `users` are glob patterns over bare JIDs (`*@example.org`,
//! `alice@*.example.net`, `{bob,carol}@example.com`), matched without regard
//! to case; `*` also matches dots. `admins` are bare JIDs; an administrator
//! may always use the bridge. When `users` is not configured, each bridge
//! admits the users of its parent domain: `irc.example.org` admits
//! `*@example.org`.

use std::collections::BTreeSet;
use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Access rules of one bridge.
#[derive(Clone)]
pub struct AccessPolicy {
    patterns: Vec<String>,
    /// The patterns that need no glob engine.
    simple: Vec<Simple>,
    /// The others; `None` when there are none.
    users: Option<GlobSet>,
    admins: BTreeSet<String>,
}

/// A pattern matched without the glob engine. Most configurations hold
/// only `*@domain` (the default) or plain JIDs, and building a glob set
/// compiles regular expressions: the regex engine's code and tables at
/// every start, for a suffix comparison.
#[derive(Clone, Debug)]
enum Simple {
    /// A plain JID, in lower case.
    Exact(String),
    /// `*` followed by plain text (in lower case): matches what ends with it.
    Suffix(String),
}

impl Simple {
    fn of(pattern: &str) -> Option<Simple> {
        let plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
        let lower = pattern.to_lowercase();
        match lower.strip_prefix('*') {
            Some(rest) if plain(rest) => Some(Simple::Suffix(rest.to_owned())),
            _ if plain(&lower) => Some(Simple::Exact(lower)),
            _ => None,
        }
    }

    fn matches(&self, jid: &str) -> bool {
        match self {
            Simple::Exact(p) => jid == p,
            Simple::Suffix(p) => jid.ends_with(p.as_str()),
        }
    }
}

impl fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("users", &self.patterns)
            .field("admins", &self.admins)
            .finish()
    }
}

/// A `users` pattern or an `admins` entry that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Not a valid glob.
    #[error("bad pattern {pattern:?} in users: {reason}")]
    BadPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a bare JID.
    #[error("bad admin {jid:?}: {reason}")]
    BadAdmin {
        /// The entry as written.
        jid: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AccessPolicy {
    /// Builds the rules from `users` patterns and `admins` JIDs.
    pub fn new<U, A>(users: U, admins: A) -> Result<AccessPolicy, AccessError>
    where
        U: IntoIterator,
        U::Item: AsRef<str>,
        A: IntoIterator,
        A::Item: AsRef<str>,
    {
        let mut builder = GlobSetBuilder::new();
        let mut patterns = Vec::new();
        let mut simple = Vec::new();
        let mut globs = 0;
        for pattern in users {
            let pattern = pattern.as_ref();
            validate_pattern(pattern)?;
            if let Some(s) = Simple::of(pattern) {
                simple.push(s);
                patterns.push(pattern.to_owned());
                continue;
            }
            globs += 1;
            let glob = GlobBuilder::new(pattern)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| AccessError::BadPattern {
                    pattern: pattern.to_owned(),
                    reason: e.kind().to_string(),
                })?;
            builder.add(glob);
            patterns.push(pattern.to_owned());
        }
        let users = if globs == 0 {
            None
        } else {
            Some(builder.build().map_err(|e| AccessError::BadPattern {
                pattern: patterns.join(", "),
                reason: e.to_string(),
            })?)
        };
        let mut set = BTreeSet::new();
        for jid in admins {
            set.insert(normalize_admin(jid.as_ref())?);
        }
        Ok(AccessPolicy {
            patterns,
            simple,
            users,
            admins: set,
        })
    }

    /// The default `users` pattern of a bridge domain: every user of the
    /// parent domain (`irc.example.org` -> `*@example.org`); a domain
    /// without a dot admits its own users.
    pub fn default_pattern(domain: &str) -> String {
        match domain.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => format!("*@{parent}"),
            _ => format!("*@{domain}"),
        }
    }

    /// The `users` patterns, as configured.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a bare JID may register with and use the bridge.
    pub fn allows(&self, bare_jid: &str) -> bool {
        let jid = bare_jid.trim().to_lowercase();
        if jid.is_empty() || jid.contains('/') {
            return false;
        }
        self.admins.contains(&jid)
            || self.simple.iter().any(|s| s.matches(&jid))
            || self
                .users
                .as_ref()
                .is_some_and(|u| u.is_match(jid.as_str()))
    }

    /// Whether a bare JID is an administrator.
    pub fn is_admin(&self, bare_jid: &str) -> bool {
        self.admins.contains(&bare_jid.trim().to_lowercase())
    }
}

/// Checks one `users` pattern.
pub fn check_pattern(pattern: &str) -> Result<(), AccessError> {
    validate_pattern(pattern)?;
    GlobBuilder::new(pattern)
        .build()
        .map(drop)
        .map_err(|e| AccessError::BadPattern {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

/// Checks one `admins` entry.
pub fn check_admin(jid: &str) -> Result<(), AccessError> {
    normalize_admin(jid).map(drop)
}

fn validate_pattern(pattern: &str) -> Result<(), AccessError> {
    let bad = |reason: &str| {
        Err(AccessError::BadPattern {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if pattern.trim().is_empty() {
        return bad("empty pattern");
    }
    if pattern.chars().any(char::is_whitespace) {
        return bad("patterns cannot contain spaces");
    }
    if !pattern.contains('@') {
        return bad("a pattern matches a bare JID and needs an '@' (e.g. \"*@example.org\")");
    }
    if pattern.contains('/') {
        return bad("patterns match bare JIDs, without a resource ('/')");
    }
    Ok(())
}

fn normalize_admin(jid: &str) -> Result<String, AccessError> {
    let bad = |reason: &str| {
        Err(AccessError::BadAdmin {
            jid: jid.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if jid.contains('/') {
        return bad("admins are bare JIDs, without a resource");
    }
    match xmpp_parsers::jid::BareJid::new(jid.trim()) {
        Ok(bare) if bare.node().is_some() => Ok(bare.to_string().to_lowercase()),
        Ok(_) => bad("an admin is a user JID (user@domain)"),
        Err(e) => bad(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(users: &[&str], admins: &[&str]) -> AccessPolicy {
        AccessPolicy::new(users, admins).expect("valid policy")
    }

    #[test]
    fn globs_match_bare_jids_case_insensitively() {
        let p = policy(&["*@example.org", "alice@*.example.net"], &[]);
        assert!(p.allows("bob@example.org"));
        assert!(p.allows("Bob@Example.ORG"));
        assert!(p.allows("alice@chat.example.net"));
        assert!(p.allows("alice@a.b.example.net"));
        assert!(!p.allows("bob@example.org.evil.com"));
        assert!(!p.allows("bob@sub.example.org"));
        assert!(!p.allows("mallory@example.com"));
        assert!(!p.allows("alice@example.net"));
        assert!(!p.allows(""));
        assert!(!p.allows("bob@example.org/resource"));
    }

    #[test]
    fn plain_jids_and_suffixes_need_no_glob_engine() {
        let p = policy(&["Alice@Example.org", "*@x.org"], &[]);
        assert!(p.users.is_none(), "no glob set built");
        assert!(p.allows("alice@example.org"));
        assert!(p.allows("ALICE@example.ORG"));
        assert!(!p.allows("alice@example.org.evil.com"));
        assert!(!p.allows("malice@example.org"));
        assert!(p.allows("bob@x.org"));
        assert!(!p.allows("bob@x.org.evil"));
        let mixed = policy(&["*@x.org", "{bob,carol}@example.com"], &[]);
        assert!(mixed.users.is_some());
        assert!(mixed.allows("dave@x.org") && mixed.allows("carol@example.com"));
        assert!(!mixed.allows("dave@example.com"));
    }

    #[test]
    fn alternatives_and_classes() {
        let p = policy(&["{bob,carol}@example.com", "user[0-9]@x.org"], &[]);
        assert!(p.allows("carol@example.com"));
        assert!(p.allows("user7@x.org"));
        assert!(!p.allows("dave@example.com"));
        assert!(!p.allows("userx@x.org"));
    }

    #[test]
    fn admins_are_allowed_and_recognised() {
        let p = policy(&["*@example.org"], &["Root@Elsewhere.net"]);
        assert!(p.is_admin("root@elsewhere.net"));
        assert!(p.is_admin("ROOT@elsewhere.net"));
        assert!(p.allows("root@elsewhere.net"));
        assert!(!p.is_admin("bob@example.org"));
    }

    #[test]
    fn no_users_admits_only_admins() {
        let p = policy(&[], &["a@b.c"]);
        assert!(!p.allows("x@b.c"));
        assert!(p.allows("a@b.c"));
    }

    #[test]
    fn default_pattern_is_parent_domain() {
        assert_eq!(
            AccessPolicy::default_pattern("irc.example.org"),
            "*@example.org"
        );
        assert_eq!(AccessPolicy::default_pattern("gw.localhost"), "*@localhost");
        assert_eq!(AccessPolicy::default_pattern("localhost"), "*@localhost");
    }

    #[test]
    fn bad_patterns_and_admins_are_refused() {
        for bad in [
            "[a-@example.org",
            "",
            "example.org",
            "a@b/c",
            "a @b",
            "{a,b@c",
        ] {
            assert!(
                matches!(
                    AccessPolicy::new([bad], [] as [&str; 0]),
                    Err(AccessError::BadPattern { .. })
                ),
                "{bad:?} accepted"
            );
        }
        for bad in ["example.org", "a@b/c", "@x", "a@"] {
            assert!(
                matches!(
                    AccessPolicy::new([] as [&str; 0], [bad]),
                    Err(AccessError::BadAdmin { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
