//! biboumi's addressing scheme: how channels, nicknames and servers are
//! written as JID local parts, and the canonical ids the core stores.
//!
//! | JID (local part / resource)    | address                         |
//! |--------------------------------|---------------------------------|
//! | `#chan%irc.server`             | room `#chan%irc.server`         |
//! | `#chan%irc.server` / `Nick`    | occupant `Nick` of that room    |
//! | `nick%irc.server`              | contact `nick%irc.server`       |
//! | `%irc.server` / `Nick`         | contact (nick not a local part) |
//! | `irc.server`                   | service (the server itself)     |
//!
//! Channel types come from the server's ISUPPORT `CHANTYPES` (default
//! `#&`), case folding from its `CASEMAPPING`. With `fixed_server` set the
//! `%irc.server` part is dropped from JIDs (`#chan`, `nick`), and the
//! server itself is its own name (`irc.server`).
//!
//! Canonical ids always carry the server (`#chan%server`, `nick%server`,
//! `server`), whatever the mode, so the core's stored ids do not depend
//! on it. The core handles XEP-0106: this module sees unescaped parts.
//!
//! A room id keeps the channel name as the user wrote it except for the
//! case of letters, which XMPP ignores too: folding `[]\~` as the server's
//! `CASEMAPPING` does would make the room speak from another JID than the
//! one joined (`#a` from `#a|b`). The connection compares channel names
//! with the server's folding, and refuses a second spelling of a channel
//! it is already in.

use ferry_bridge::{
    Address, AddressContext, AddressError, AddressRules, ContactId, Prompt, RoomId, ServiceId,
};

use crate::casemap::{CaseMapping, TraitsRegistry};

/// The address rules of the IRC bridge.
#[derive(Clone, Debug)]
pub struct IrcAddresses {
    fixed_server: Option<String>,
    traits: TraitsRegistry,
}

impl IrcAddresses {
    /// Rules for the given mode, reading server traits from `traits`.
    pub fn new(fixed_server: Option<String>, traits: TraitsRegistry) -> Self {
        Self {
            fixed_server: fixed_server.map(|s| s.to_ascii_lowercase()),
            traits,
        }
    }

    /// The fixed server, if the gateway runs in single-server mode.
    pub fn fixed_server(&self) -> Option<&str> {
        self.fixed_server.as_deref()
    }

    /// The canonical room id of a channel on a server: the name with
    /// its letters in lower case, nothing else changed (see the module
    /// documentation).
    pub fn room_id(&self, server: &str, channel: &str) -> RoomId {
        RoomId::new(format!("{}%{}", CaseMapping::Ascii.fold(channel), server))
    }

    /// The canonical contact id of a nickname on a server.
    pub fn contact_id(&self, server: &str, nick: &str) -> ContactId {
        let t = self.traits.get(server);
        ContactId::new(format!("{}%{}", t.casemapping.fold(nick), server))
    }
}

/// Splits a canonical room or contact id into (name, server).
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    let (name, server) = id.rsplit_once('%')?;
    if name.is_empty() || server.is_empty() {
        return None;
    }
    Some((name, server))
}

/// Checks an IRC server name: a host name or an IP literal.
pub fn valid_server(server: &str) -> Result<(), AddressError> {
    let ok = !server.is_empty()
        && server.len() <= 255
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        && !server.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(AddressError::new(format!(
            "{server:?} is not an IRC server name (expected a host name such as irc.libera.chat)"
        )))
    }
}

/// Checks a channel name (after its type character).
pub fn valid_channel(name: &str) -> Result<(), AddressError> {
    if name.chars().count() < 1
        || name.len() > 200
        || name
            .chars()
            .any(|c| c == ' ' || c == ',' || c == '\x07' || c.is_control())
    {
        return Err(AddressError::new(format!(
            "{name:?} is not a valid IRC channel name"
        )));
    }
    Ok(())
}

/// Checks a nickname.
pub fn valid_nick(nick: &str) -> Result<(), AddressError> {
    let bad_start = nick.starts_with([':', '$', '#', '&', '+', '~', '@', '%']);
    if nick.is_empty()
        || nick.len() > 64
        || bad_start
        || nick
            .chars()
            .any(|c| matches!(c, ' ' | ',' | '!' | '@' | '*' | '?' | '.') || c.is_control())
    {
        return Err(AddressError::new(format!(
            "{nick:?} is not a valid IRC nickname"
        )));
    }
    Ok(())
}

impl AddressRules for IrcAddresses {
    fn parse(
        &self,
        local: &str,
        resource: Option<&str>,
        _ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError> {
        let resource = resource.filter(|r| !r.is_empty());
        let (name, server) = match &self.fixed_server {
            Some(fixed) => {
                if local.eq_ignore_ascii_case(fixed) {
                    return Ok(Address::Service(ServiceId::new(fixed.clone())));
                }
                (local, fixed.clone())
            }
            None => match local.rsplit_once('%') {
                None => {
                    let server = local.to_ascii_lowercase();
                    valid_server(&server)?;
                    return Ok(Address::Service(ServiceId::new(server)));
                }
                Some((name, server)) => {
                    let server = server.to_ascii_lowercase();
                    valid_server(&server)?;
                    (name, server)
                }
            },
        };
        if name.is_empty() {
            return Ok(match resource {
                Some(nick) => {
                    valid_nick(nick)?;
                    Address::Contact(self.contact_id(&server, nick))
                }
                None => Address::Service(ServiceId::new(server)),
            });
        }
        let traits = self.traits.get(&server);
        if traits.is_channel(name) {
            valid_channel(name)?;
            let room = self.room_id(&server, name);
            return Ok(match resource {
                Some(nick) => Address::Occupant {
                    room,
                    nick: nick.to_owned(),
                },
                None => Address::Room(room),
            });
        }
        valid_nick(name)?;
        Ok(Address::Contact(self.contact_id(&server, name)))
    }

    fn format(&self, address: &Address) -> (String, Option<String>) {
        let local = |id: &str| -> String {
            match (&self.fixed_server, split_id(id)) {
                (Some(_), Some((name, _))) => name.to_owned(),
                _ => id.to_owned(),
            }
        };
        match address {
            Address::Room(room) => (local(room.as_str()), None),
            Address::Contact(c) => (local(c.as_str()), None),
            Address::Occupant { room, nick } => (local(room.as_str()), Some(nick.clone())),
            Address::Service(s) => (s.as_str().to_owned(), None),
        }
    }

    fn prompt(&self) -> Prompt {
        match &self.fixed_server {
            Some(server) => Prompt {
                description: format!("Enter an IRC channel (#channel) or a nickname on {server}"),
                label: "Channel or nickname".into(),
            },
            None => Prompt {
                description: "Enter an IRC channel or nickname followed by % and the IRC \
                              server, e.g. #rust%irc.libera.chat or alice%irc.libera.chat"
                    .into(),
                label: "Channel or nickname%server".into(),
            },
        }
    }

    fn from_prompt(&self, input: &str, ctx: &AddressContext<'_>) -> Result<Address, AddressError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(AddressError::new("Enter a channel or a nickname"));
        }
        self.parse(input, None, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::casemap::ServerTraits;

    fn rules() -> IrcAddresses {
        IrcAddresses::new(None, TraitsRegistry::default())
    }

    #[test]
    fn channels_contacts_servers() {
        let r = rules();
        assert_eq!(
            r.parse("#Rust%irc.Libera.chat", None, &AddressContext::none()),
            Ok(Address::Room(RoomId::new("#rust%irc.libera.chat")))
        );
        assert_eq!(
            r.parse("&local%irc.x", None, &AddressContext::none()),
            Ok(Address::Room(RoomId::new("&local%irc.x")))
        );
        assert_eq!(
            r.parse("#rust%irc.x", Some("Bob"), &AddressContext::none()),
            Ok(Address::Occupant {
                room: RoomId::new("#rust%irc.x"),
                nick: "Bob".into()
            })
        );
        assert_eq!(
            r.parse("Alice%irc.x", Some("whatever"), &AddressContext::none()),
            Ok(Address::Contact(ContactId::new("alice%irc.x")))
        );
        assert_eq!(
            r.parse("%irc.x", Some("[Odd]Nick"), &AddressContext::none()),
            Ok(Address::Contact(ContactId::new("{odd}nick%irc.x")))
        );
        assert_eq!(
            r.parse("irc.x", None, &AddressContext::none()),
            Ok(Address::Service(ServiceId::new("irc.x")))
        );
        assert_eq!(
            r.parse("%irc.x", None, &AddressContext::none()),
            Ok(Address::Service(ServiceId::new("irc.x")))
        );
    }

    #[test]
    fn channel_names_may_hold_percent_and_odd_characters() {
        let r = rules();
        assert_eq!(
            r.parse("#50%off%irc.x", None, &AddressContext::none()),
            Ok(Address::Room(RoomId::new("#50%off%irc.x")))
        );
        assert_eq!(
            r.parse("#b@byfoot%irc.example.com", None, &AddressContext::none()),
            Ok(Address::Room(RoomId::new("#b@byfoot%irc.example.com")))
        );
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        let r = rules();
        assert!(
            r.parse("#a b%irc.x", None, &AddressContext::none())
                .is_err()
        );
        assert!(
            r.parse("#a,b%irc.x", None, &AddressContext::none())
                .is_err()
        );
        assert!(
            r.parse("bad nick%irc.x", None, &AddressContext::none())
                .is_err()
        );
        assert!(
            r.parse("nick%bad server", None, &AddressContext::none())
                .is_err()
        );
        assert!(r.parse("nick%", None, &AddressContext::none()).is_err());
        let e = r
            .parse("#x%irc\r\nQUIT", None, &AddressContext::none())
            .unwrap_err();
        assert!(e.0.contains("server"), "{e}");
        assert!(
            r.parse("ni\rck%irc.x", None, &AddressContext::none())
                .is_err()
        );
    }

    #[test]
    fn chantypes_and_casemapping_come_from_the_server() {
        let traits = TraitsRegistry::default();
        traits.set(
            "irc.x",
            ServerTraits {
                chantypes: "#".into(),
                casemapping: CaseMapping::Ascii,
            },
        );
        let r = IrcAddresses::new(None, traits);
        // '&' is not a channel type there: a nickname, and an invalid one.
        assert!(
            r.parse("&foo%irc.x", None, &AddressContext::none())
                .is_err()
        );
        assert_eq!(
            r.parse("#A[b]%irc.x", None, &AddressContext::none()),
            Ok(Address::Room(RoomId::new("#a[b]%irc.x")))
        );
    }

    #[test]
    fn room_ids_keep_what_xmpp_does_not_fold() {
        // RFC 1459 folds [ ] \ ~ into { } | ^ on IRC; the room id keeps
        // them, so the room's JID is the one joined.
        let r = rules();
        for (local, id) in [
            ("#G\\0d%irc.x", "#g\\0d%irc.x"),
            ("#h\\00x%irc.x", "#h\\00x%irc.x"),
            ("#[Odd]~%irc.x", "#[odd]~%irc.x"),
            ("#k:key%irc.x", "#k:key%irc.x"),
            ("#Ünï%irc.x", "#ünï%irc.x"),
        ] {
            let a = r.parse(local, None, &AddressContext::none()).unwrap();
            assert_eq!(a, Address::Room(RoomId::new(id)), "{local}");
            assert_eq!(r.format(&a).0, id, "{local}");
        }
    }

    #[test]
    fn format_is_the_inverse_of_parse() {
        let r = rules();
        for (local, res) in [
            ("#rust%irc.x", None),
            ("#rust%irc.x", Some("Bob")),
            ("alice%irc.x", None),
            ("irc.x", None),
        ] {
            let a = r.parse(local, res, &AddressContext::none()).unwrap();
            let (l, rr) = r.format(&a);
            assert_eq!((l.as_str(), rr.as_deref()), (local, res));
        }
    }

    #[test]
    fn fixed_server_drops_the_server_part() {
        let r = IrcAddresses::new(Some("IRC.X".into()), TraitsRegistry::default());
        let room = r.parse("#Rust", None, &AddressContext::none()).unwrap();
        assert_eq!(room, Address::Room(RoomId::new("#rust%irc.x")));
        assert_eq!(r.format(&room), ("#rust".into(), None));
        let c = r.parse("Alice", None, &AddressContext::none()).unwrap();
        assert_eq!(c, Address::Contact(ContactId::new("alice%irc.x")));
        assert_eq!(r.format(&c), ("alice".into(), None));
        assert_eq!(
            r.parse("irc.x", None, &AddressContext::none()),
            Ok(Address::Service(ServiceId::new("irc.x")))
        );
        let o = r
            .parse("#rust", Some("Bob"), &AddressContext::none())
            .unwrap();
        assert_eq!(r.format(&o), ("#rust".into(), Some("Bob".into())));
    }

    #[test]
    fn prompt_input() {
        let r = rules();
        assert_eq!(
            r.from_prompt(" #rust%irc.x ", &AddressContext::none()),
            Ok(Address::Room(RoomId::new("#rust%irc.x")))
        );
        assert!(r.from_prompt("", &AddressContext::none()).is_err());
    }
}
