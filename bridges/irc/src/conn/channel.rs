//! One joined channel as a connection tracks it (members and their status
//! modes, topic, key), and the mapping between IRC status modes and MUC
//! roles/affiliations, as biboumi does it:
//!
//! | IRC          | affiliation | role        |
//! |--------------|-------------|-------------|
//! | `~` (q), `&` (a) | owner   | moderator   |
//! | `@` (o)      | admin       | moderator   |
//! | `%` (h)      | member      | moderator   |
//! | `+` (v)      | member      | participant |
//! | none         | none        | participant |

use std::collections::HashMap;
use std::sync::Arc;

use ferry_bridge::{Affiliation, HistoryPolicy, Role, RoomId, Subject};

use super::isupport::Isupport;
use super::members::{MemberTables, MemberView};
use crate::intern::{intern, intern_opt};

/// A channel member. Every connection to a server sees the same members:
/// the strings are shared between them ([`crate::intern`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Nickname as the server spells it.
    pub nick: Arc<str>,
    /// Status modes held (`o`, `v` …).
    pub modes: Arc<str>,
    /// Away message, when away.
    pub away: Option<Arc<str>>,
    /// Services account, when known.
    pub account: Option<Arc<str>>,
    /// Ident.
    pub user: Option<Arc<str>>,
    /// Host.
    pub host: Option<Arc<str>>,
}

impl Member {
    /// Gives or takes a status mode.
    pub fn set_mode(&mut self, mode: char, held: bool) {
        if self.modes.contains(mode) == held {
            return;
        }
        let modes: String = if held {
            self.modes.chars().chain([mode]).collect()
        } else {
            self.modes.chars().filter(|c| *c != mode).collect()
        };
        self.modes = intern(&modes);
    }
}

/// Members by folded nickname (the keys shared like the members' strings).
pub type Members = HashMap<Arc<str>, Member>;

/// Where we are with a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChanState {
    /// To be joined once the connection is ready (again).
    Wanted,
    /// JOIN sent, waiting for the server.
    Joining,
    /// Joined; `synced` tells whether NAMES is complete.
    Joined,
}

/// A channel of the connection.
#[derive(Debug)]
pub struct Channel {
    /// Name as the server spells it.
    pub name: String,
    /// The room id the core knows it by.
    pub room: RoomId,
    /// The key to (re)join with.
    pub key: Option<String>,
    /// State.
    pub state: ChanState,
    /// NAMES received and the room reported to the core.
    pub synced: bool,
    /// Whether the user's clients are in the room.
    pub xmpp: bool,
    /// Stay joined without clients.
    pub persistent: bool,
    /// Archive settings.
    pub history: HistoryPolicy,
    /// Members by folded nickname, as this connection sees them (the
    /// records are shared with the other connections in the channel).
    pub members: MemberView,
    /// NAMES being received (replaces `members` at 366).
    pub names: Option<Members>,
    /// Topic.
    pub topic: Subject,
    /// We sent PART ourselves.
    pub leaving: bool,
}

impl Channel {
    /// A channel to join, its members kept in `tables`.
    pub fn new(name: &str, room: RoomId, key: Option<String>, tables: &MemberTables) -> Self {
        let members = tables.view(room.as_str());
        Self {
            name: name.to_owned(),
            room,
            key,
            state: ChanState::Wanted,
            synced: false,
            xmpp: true,
            persistent: false,
            history: HistoryPolicy::default(),
            members,
            names: None,
            topic: Subject::default(),
            leaving: false,
        }
    }
}

/// MUC affiliation and role of a member with these status modes.
pub fn muc_standing(modes: &str, isupport: &Isupport) -> (Affiliation, Role) {
    // The highest-ranked mode the member holds.
    let best = modes
        .chars()
        .filter_map(|m| isupport.rank_of_mode(m).map(|r| (r, m)))
        .min();
    match best.map(|(_, m)| m) {
        Some('q') | Some('a') | Some('y') => (Affiliation::Owner, Role::Moderator),
        Some('o') => (Affiliation::Admin, Role::Moderator),
        Some('h') => (Affiliation::Member, Role::Moderator),
        Some('v') => (Affiliation::Member, Role::Participant),
        // An unknown status mode: rank it by position against `o`.
        Some(m) => match (isupport.rank_of_mode(m), isupport.rank_of_mode('o')) {
            (Some(r), Some(o)) if r < o => (Affiliation::Owner, Role::Moderator),
            _ => (Affiliation::Member, Role::Participant),
        },
        None => (Affiliation::None, Role::Participant),
    }
}

/// Parses NAMES entries: `@+nick`, `@nick!user@host` (multi-prefix,
/// userhost-in-names).
pub fn parse_names_entry(entry: &str, isupport: &Isupport) -> Option<Member> {
    let mut modes = String::new();
    let mut rest = entry;
    while let Some(c) = rest.chars().next() {
        match isupport.mode_of_prefix(c) {
            Some(m) => {
                modes.push(m);
                rest = &rest[c.len_utf8()..];
            }
            None => break,
        }
    }
    if rest.is_empty() {
        return None;
    }
    let src = crate::proto::Source::parse(rest);
    Some(Member {
        nick: intern(&src.nick),
        modes: intern(&modes),
        user: intern_opt(src.user.as_deref()),
        host: intern_opt(src.host.as_deref()),
        ..Member::default()
    })
}

/// One parsed mode change: (adding, mode, parameter).
pub type ModeChange = (bool, char, Option<String>);

/// Parses a channel MODE line's mode string and parameters.
pub fn parse_modes(modestr: &str, params: &[String], isupport: &Isupport) -> Vec<ModeChange> {
    let mut out = Vec::new();
    let mut adding = true;
    let mut args = params.iter();
    for c in modestr.chars() {
        match c {
            '+' => adding = true,
            '-' => adding = false,
            m => {
                let p = if isupport.mode_takes_param(m, adding) {
                    args.next().cloned()
                } else {
                    None
                };
                out.push((adding, m, p));
            }
        }
    }
    out
}

/// Status mode changes that give a member an affiliation, biboumi's
/// mapping: none `-vhoaq`, member `+v-hoaq`, admin `+o-aq`, owner `+a-q`
/// (`+q` where there is no `a`). Only modes the server has are used.
pub fn affiliation_modes(aff: Affiliation, isupport: &Isupport) -> Vec<(bool, char)> {
    let has = |m: char| isupport.rank_of_mode(m).is_some();
    let plan: Vec<(bool, char)> = match aff {
        Affiliation::None | Affiliation::Outcast => {
            vec![
                (false, 'v'),
                (false, 'h'),
                (false, 'o'),
                (false, 'a'),
                (false, 'q'),
            ]
        }
        Affiliation::Member => {
            vec![
                (true, 'v'),
                (false, 'h'),
                (false, 'o'),
                (false, 'a'),
                (false, 'q'),
            ]
        }
        Affiliation::Admin => vec![(true, 'o'), (false, 'a'), (false, 'q')],
        Affiliation::Owner => {
            if has('a') {
                vec![(true, 'a'), (false, 'q')]
            } else {
                vec![(true, 'q')]
            }
        }
    };
    plan.into_iter().filter(|(_, m)| has(*m)).collect()
}

/// Status mode changes for a role: moderator `+h` (or `+o` without
/// halfops), participant `+v`, visitor `-v` (and `-h`).
pub fn role_modes(role: Role, isupport: &Isupport) -> Vec<(bool, char)> {
    let has = |m: char| isupport.rank_of_mode(m).is_some();
    let plan = match role {
        Role::Moderator => {
            if has('h') {
                vec![(true, 'h')]
            } else {
                vec![(true, 'o')]
            }
        }
        Role::Participant => vec![(true, 'v')],
        Role::Visitor => vec![(false, 'h'), (false, 'v')],
        Role::None => vec![],
    };
    plan.into_iter().filter(|(_, m)| has(*m)).collect()
}

/// Writes MODE commands for `changes` on one target nick/mask, at most
/// `max` modes per command: returns (modestring, params) pairs.
pub fn mode_commands(
    changes: &[(bool, char)],
    arg: &str,
    max: usize,
) -> Vec<(String, Vec<String>)> {
    changes
        .chunks(max.max(1))
        .map(|chunk| {
            let mut s = String::new();
            let mut sign = None;
            for (add, m) in chunk {
                if sign != Some(*add) {
                    s.push(if *add { '+' } else { '-' });
                    sign = Some(*add);
                }
                s.push(*m);
            }
            (s, vec![arg.to_owned(); chunk.len()])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isupport(prefix: &str) -> Isupport {
        let mut i = Isupport::default();
        i.apply([prefix]);
        i
    }

    #[test]
    fn standing_follows_biboumi() {
        let i = isupport("PREFIX=(qaohv)~&@%+");
        assert_eq!(muc_standing("q", &i), (Affiliation::Owner, Role::Moderator));
        assert_eq!(
            muc_standing("av", &i),
            (Affiliation::Owner, Role::Moderator)
        );
        assert_eq!(
            muc_standing("vo", &i),
            (Affiliation::Admin, Role::Moderator)
        );
        assert_eq!(
            muc_standing("h", &i),
            (Affiliation::Member, Role::Moderator)
        );
        assert_eq!(
            muc_standing("v", &i),
            (Affiliation::Member, Role::Participant)
        );
        assert_eq!(muc_standing("", &i), (Affiliation::None, Role::Participant));
    }

    #[test]
    fn names_entries_with_every_prefix_and_host() {
        let i = isupport("PREFIX=(qaohv)~&@%+");
        let m = parse_names_entry("@+bob!b@host", &i).unwrap();
        assert_eq!(&*m.nick, "bob");
        assert_eq!(&*m.modes, "ov");
        assert_eq!(m.host.as_deref(), Some("host"));
        let m = parse_names_entry("~carol", &i).unwrap();
        assert_eq!((&*m.nick, &*m.modes), ("carol", "q"));
        assert!(parse_names_entry("@", &i).is_none());
    }

    #[test]
    fn mode_strings() {
        let i = isupport("PREFIX=(ov)@+");
        let params: Vec<String> = ["a", "key", "b", "*!*@x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = parse_modes("+ok-v+ib", &params, &i);
        assert_eq!(
            m,
            vec![
                (true, 'o', Some("a".into())),
                (true, 'k', Some("key".into())),
                (false, 'v', Some("b".into())),
                (true, 'i', None),
                (true, 'b', Some("*!*@x".into())),
            ]
        );
    }

    #[test]
    fn muc_changes_become_modes() {
        let i = isupport("PREFIX=(qaohv)~&@%+");
        assert_eq!(
            affiliation_modes(Affiliation::Member, &i),
            vec![
                (true, 'v'),
                (false, 'h'),
                (false, 'o'),
                (false, 'a'),
                (false, 'q')
            ]
        );
        assert_eq!(
            affiliation_modes(Affiliation::Owner, &i),
            vec![(true, 'a'), (false, 'q')]
        );
        let small = isupport("PREFIX=(ov)@+");
        assert_eq!(
            affiliation_modes(Affiliation::None, &small),
            vec![(false, 'v'), (false, 'o')]
        );
        assert_eq!(affiliation_modes(Affiliation::Owner, &small), vec![]);
        assert_eq!(role_modes(Role::Moderator, &small), vec![(true, 'o')]);
        assert_eq!(role_modes(Role::Moderator, &i), vec![(true, 'h')]);
        let cmds = mode_commands(&affiliation_modes(Affiliation::Member, &i), "bob", 3);
        assert_eq!(cmds[0].0, "+v-ho");
        assert_eq!(cmds[0].1, vec!["bob", "bob", "bob"]);
        assert_eq!(cmds[1].0, "-aq");
    }
}
