//! How test-network addresses are written as JID local parts: `name` is a
//! contact, `#name` a room (with a resource: the occupant of that nick),
//! `server` the network's service. Names are lower-case ASCII letters,
//! digits, `.`, `_` and `-`; upper case is folded (the XMPP server folds it
//! too).

use ferry_bridge::{
    Address, AddressContext, AddressError, AddressRules, ContactId, Prompt, RoomId, ServiceId,
};

use crate::config::valid_name;

/// The local part of the network's service.
pub const SERVER: &str = "server";

/// The test network's address rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestAddressRules;

fn name(raw: &str, what: &str) -> Result<String, AddressError> {
    let folded = raw.trim().to_ascii_lowercase();
    if valid_name(&folded) {
        Ok(folded)
    } else {
        Err(AddressError::new(format!(
            "{raw:?} is not a valid {what} on the test network: use lower-case letters, \
             digits, '.', '_' or '-' (at most 64)"
        )))
    }
}

impl AddressRules for TestAddressRules {
    fn parse(
        &self,
        local: &str,
        resource: Option<&str>,
        _ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError> {
        if let Some(room) = local.strip_prefix('#') {
            let room = RoomId::new(format!("#{}", name(room, "room name")?));
            return Ok(match resource {
                Some(nick) if !nick.is_empty() => Address::Occupant {
                    room,
                    nick: nick.to_owned(),
                },
                _ => Address::Room(room),
            });
        }
        if local.eq_ignore_ascii_case(SERVER) {
            return Ok(Address::Service(ServiceId::new(SERVER)));
        }
        if local.contains(['#', '@', '/', ' ']) {
            return Err(AddressError::new(format!(
                "{local:?} is not an address on the test network: write a user name (alice), \
                 a room (#lounge) or {SERVER}"
            )));
        }
        Ok(Address::Contact(ContactId::new(name(local, "user name")?)))
    }

    fn format(&self, address: &Address) -> (String, Option<String>) {
        match address {
            Address::Contact(c) => (c.as_str().to_owned(), None),
            Address::Room(r) => (r.as_str().to_owned(), None),
            Address::Occupant { room, nick } => (room.as_str().to_owned(), Some(nick.clone())),
            Address::Service(s) => (s.as_str().to_owned(), None),
        }
    }

    fn prompt(&self) -> Prompt {
        Prompt {
            description: "Enter a username of the test network".into(),
            label: "Username".into(),
        }
    }

    fn from_prompt(&self, input: &str, _ctx: &AddressContext<'_>) -> Result<Address, AddressError> {
        let input = input.trim();
        if input.starts_with('#') {
            return Err(AddressError::new(format!(
                "{input:?} is a room: the prompt takes a user name (alice)"
            )));
        }
        Ok(Address::Contact(ContactId::new(name(input, "user name")?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_address_and_formats_it_back() {
        let r = TestAddressRules;
        let cases = [
            (("bob", None), Address::Contact("bob".into())),
            (("#lounge", None), Address::Room("#lounge".into())),
            (
                ("#lounge", Some("Bob Smith")),
                Address::Occupant {
                    room: "#lounge".into(),
                    nick: "Bob Smith".into(),
                },
            ),
            (("server", None), Address::Service("server".into())),
        ];
        for ((local, res), want) in cases {
            let got = r.parse(local, res, &AddressContext::none()).unwrap();
            assert_eq!(got, want);
            let (l, rs) = r.format(&got);
            assert_eq!((l.as_str(), rs.as_deref()), (local, res));
        }
        // a resource on a contact names a client, not something else
        assert_eq!(
            r.parse("bob", Some("phone"), &AddressContext::none())
                .unwrap(),
            Address::Contact("bob".into())
        );
        // case is folded
        assert_eq!(
            r.parse("Bob", None, &AddressContext::none()).unwrap(),
            Address::Contact("bob".into())
        );
        assert_eq!(
            r.parse("#Lounge", None, &AddressContext::none()).unwrap(),
            Address::Room("#lounge".into())
        );
    }

    #[test]
    fn anything_else_is_a_readable_error() {
        let r = TestAddressRules;
        for bad in ["#", "a b", "bob@x", "##x", "b/c", "é", "#lo unge"] {
            let err = r.parse(bad, None, &AddressContext::none()).unwrap_err();
            assert!(err.0.contains("test network"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_prompt_gives_contacts() {
        let r = TestAddressRules;
        assert_eq!(
            r.prompt().description,
            "Enter a username of the test network"
        );
        assert_eq!(
            r.from_prompt(" Carol ", &AddressContext::none()).unwrap(),
            Address::Contact("carol".into())
        );
        assert!(r.from_prompt("#lounge", &AddressContext::none()).is_err());
        assert!(r.from_prompt("", &AddressContext::none()).is_err());
    }
}
