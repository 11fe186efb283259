//! Matrix identifiers as JID local parts, and back.
//!
//! | Matrix | bridge id | JID (the core adds XEP-0106 escaping) |
//! |---|---|---|
//! | user `@alice:example.org` | `ContactId("@alice:example.org")` | `alice\3aexample.org@GW` |
//! | room `!Abc:example.org` | `RoomId("!Abc:example.org")` | `!^abc\3aexample.org@GW` |
//! | alias `#rust:example.org` | `RoomId("#rust:example.org")` | `#rust\3aexample.org@GW` |
//! | member of a room | `Address::Occupant` | `<room JID>/<nickname>` |
//!
//! **Case.** Matrix identifiers are case-sensitive, JID local parts are
//! case-folded by the XMPP server, so the local part carries case in a
//! reversible way (the scheme matridge uses, extended to non-ASCII):
//!
//! * an ASCII capital letter `X` is written `^x` (`!AbC:hs` → `!^ab^c:hs`);
//! * `^` itself is written `^^`;
//! * a character outside printable ASCII is written `^_` + its code point in
//!   lowercase hexadecimal + `_` (`é` → `^_e9_`), because XMPP servers fold
//!   or normalise such characters in ways that cannot be undone.
//!
//! Every other character stands for itself. Decoding reverses this and
//! reads a stray capital as its lower-case letter (what the server's case
//! folding would have made of it), so `^` followed by anything else is the
//! only malformed input.

use ferry_bridge::{
    Address, AddressContext, AddressError, AddressRules, ContactId, Prompt, RoomId,
};
use matrix_sdk::ruma::matrix_uri::MatrixId;
use matrix_sdk::ruma::{MatrixToUri, MatrixUri, RoomAliasId, RoomId as MxRoomId, UserId};

/// Writes a Matrix identifier so that it survives case folding.
pub fn encode_case(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 4);
    for c in id.chars() {
        match c {
            '^' => out.push_str("^^"),
            'A'..='Z' => {
                out.push('^');
                out.push(c.to_ascii_lowercase());
            }
            ' '..='~' => out.push(c),
            _ => {
                out.push_str("^_");
                out.push_str(&format!("{:x}", u32::from(c)));
                out.push('_');
            }
        }
    }
    out
}

/// Reverses [`encode_case`].
pub fn decode_case(local: &str) -> Result<String, AddressError> {
    let mut out = String::with_capacity(local.len());
    let mut chars = local.chars();
    while let Some(c) = chars.next() {
        if c != '^' {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        match chars.next() {
            Some('^') => out.push('^'),
            Some(l @ 'a'..='z') => out.push(l.to_ascii_uppercase()),
            Some('_') => {
                let hex: String = chars.by_ref().take_while(|c| *c != '_').collect();
                let decoded = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        AddressError::new(format!(
                            "\"^_{hex}_\" in {local:?} is not a character code"
                        ))
                    })?;
                out.push(decoded);
            }
            _ => {
                return Err(AddressError::new(format!(
                    "{local:?} is not a valid Matrix address: '^' must be followed by a \
                     letter (a capital), '^' or '_'"
                )));
            }
        }
    }
    Ok(out)
}

/// The kind of Matrix identifier a bridge id holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomRef {
    /// `!id:server`.
    Id(matrix_sdk::ruma::OwnedRoomId),
    /// `#alias:server`.
    Alias(matrix_sdk::ruma::OwnedRoomAliasId),
}

impl RoomRef {
    /// Parses a room id or alias.
    pub fn parse(id: &str) -> Result<RoomRef, AddressError> {
        if id.chars().count() < 2 {
            return Err(AddressError::new(format!("{id:?} is not a Matrix room")));
        }
        if id.starts_with('!') {
            MxRoomId::parse(id)
                .map(RoomRef::Id)
                .map_err(|e| AddressError::new(format!("{id:?} is not a Matrix room id: {e}")))
        } else if id.starts_with('#') {
            RoomAliasId::parse(id)
                .map(RoomRef::Alias)
                .map_err(|e| AddressError::new(format!("{id:?} is not a Matrix room alias: {e}")))
        } else {
            Err(AddressError::new(format!(
                "{id:?} is not a Matrix room: room ids start with '!', aliases with '#'"
            )))
        }
    }
}

/// Parses a contact id (`@user:server`) into a Matrix user id.
pub fn parse_user(contact: &ContactId) -> Result<matrix_sdk::ruma::OwnedUserId, AddressError> {
    UserId::parse(contact.as_str()).map_err(|e| {
        AddressError::new(format!(
            "{:?} is not a Matrix user id (@name:server): {e}",
            contact.as_str()
        ))
    })
}

/// The address rules of the Matrix bridge.
#[derive(Clone, Copy, Debug, Default)]
pub struct MatrixAddressRules;

impl MatrixAddressRules {
    fn parse_id(id: &str) -> Result<Address, AddressError> {
        if id.starts_with('!') || id.starts_with('#') {
            RoomRef::parse(id)?;
            return Ok(Address::Room(RoomId::new(id)));
        }
        let user = if id.starts_with('@') {
            id.to_owned()
        } else {
            format!("@{id}")
        };
        if !user.contains(':') {
            return Err(AddressError::new(format!(
                "{id:?} is not a Matrix address: a user is name:server (for @alice:example.org \
                 write alice\\3aexample.org), a room !id:server or #alias:server"
            )));
        }
        let contact = ContactId::new(user);
        parse_user(&contact)?;
        Ok(Address::Contact(contact))
    }
}

impl AddressRules for MatrixAddressRules {
    fn parse(
        &self,
        local: &str,
        resource: Option<&str>,
        _ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError> {
        let id = decode_case(local)?;
        if id.starts_with('@') {
            return Err(AddressError::new(format!(
                "{id:?}: write Matrix users without the '@' (alice\\3aexample.org for \
                 @alice:example.org)"
            )));
        }
        match (Self::parse_id(&id)?, resource) {
            (Address::Room(room), Some(nick)) if !nick.is_empty() => Ok(Address::Occupant {
                room,
                nick: nick.to_owned(),
            }),
            (address, _) => Ok(address),
        }
    }

    fn format(&self, address: &Address) -> (String, Option<String>) {
        match address {
            Address::Contact(c) => {
                let id = c.as_str();
                (encode_case(id.strip_prefix('@').unwrap_or(id)), None)
            }
            Address::Room(r) => (encode_case(r.as_str()), None),
            Address::Occupant { room, nick } => (encode_case(room.as_str()), Some(nick.clone())),
            Address::Service(s) => (encode_case(s.as_str()), None),
        }
    }

    fn prompt(&self) -> Prompt {
        Prompt {
            description: "Enter a Matrix user (@alice:example.org), a room alias \
                          (#room:example.org), a room id (!id:example.org) or a matrix.to link."
                .into(),
            label: "Matrix address".into(),
        }
    }

    fn from_prompt(&self, input: &str, _ctx: &AddressContext<'_>) -> Result<Address, AddressError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(AddressError::new("empty Matrix address"));
        }
        let from_uri = if input.starts_with("https://matrix.to/") {
            Some(
                MatrixToUri::parse(input)
                    .map_err(|e| AddressError::new(format!("bad matrix.to link: {e}")))?
                    .id()
                    .clone(),
            )
        } else if input.starts_with("matrix:") {
            Some(
                MatrixUri::parse(input)
                    .map_err(|e| AddressError::new(format!("bad matrix: URI: {e}")))?
                    .id()
                    .clone(),
            )
        } else {
            None
        };
        match from_uri {
            Some(MatrixId::User(u)) => Ok(Address::Contact(ContactId::new(u.as_str()))),
            Some(MatrixId::Room(r)) => Ok(Address::Room(RoomId::new(r.as_str()))),
            Some(MatrixId::RoomAlias(a)) => Ok(Address::Room(RoomId::new(a.as_str()))),
            Some(MatrixId::Event(room, _)) => Ok(Address::Room(RoomId::new(room.as_str()))),
            Some(_) => Err(AddressError::new("this link names nothing ferry can open")),
            None => Self::parse_id(input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(s: &str) -> String {
        // What an XMPP server's case folding does to a local part.
        s.to_lowercase()
    }

    #[test]
    fn case_scheme_round_trips_through_case_folding() {
        for id in [
            "!AbCdEf:example.org",
            "#Rust^Lang:Example.ORG",
            "@alice:example.org",
            "#café:exämple.org",
            "!x^^y:hs",
            "@ÀÉ:hs",
            "#emoji😀:hs",
        ] {
            let enc = encode_case(id);
            assert_eq!(folded(&enc), enc, "{id} encodes to lower case only");
            assert_eq!(decode_case(&folded(&enc)).expect("decodes"), id);
        }
        assert_eq!(encode_case("!AbC:hs"), "!^ab^c:hs");
        assert_eq!(encode_case("a^b"), "a^^b");
        assert_eq!(encode_case("é"), "^_e9_");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert!(decode_case("^").is_err());
        assert!(decode_case("a^1").is_err());
        assert!(decode_case("^_zz_").is_err());
        assert!(decode_case("^_110000_").is_err());
        // A capital the server did not fold is read as lower case.
        assert_eq!(decode_case("Alice").expect("ok"), "alice");
    }

    #[test]
    fn parse_and_format_are_inverse() {
        let r = MatrixAddressRules;
        let cases = [
            (
                "alice:example.org",
                None,
                Address::Contact("@alice:example.org".into()),
            ),
            ("!^abc:hs", None, Address::Room("!Abc:hs".into())),
            ("#room:hs", None, Address::Room("#room:hs".into())),
            (
                "#room:hs",
                Some("Bob"),
                Address::Occupant {
                    room: "#room:hs".into(),
                    nick: "Bob".into(),
                },
            ),
        ];
        for (local, res, want) in cases {
            let got = r
                .parse(local, res, &AddressContext::none())
                .expect("parses");
            assert_eq!(got, want);
            let (l, rs) = r.format(&got);
            assert_eq!(l, local);
            assert_eq!(rs.as_deref(), res);
        }
        // A contact's resource is ignored.
        assert_eq!(
            r.parse("bob:hs", Some("phone"), &AddressContext::none())
                .expect("parses"),
            Address::Contact("@bob:hs".into())
        );
    }

    #[test]
    fn bad_local_parts_get_readable_errors() {
        let r = MatrixAddressRules;
        for bad in ["alice", "#noserver", "#", "!", "@alice:hs", "a^"] {
            let e = r.parse(bad, None, &AddressContext::none()).expect_err(bad);
            assert!(!e.0.is_empty());
        }
    }

    #[test]
    fn prompt_accepts_ids_and_links() {
        let r = MatrixAddressRules;
        assert_eq!(
            r.from_prompt(" @alice:example.org ", &AddressContext::none())
                .expect("id"),
            Address::Contact("@alice:example.org".into())
        );
        assert_eq!(
            r.from_prompt("alice:example.org", &AddressContext::none())
                .expect("bare"),
            Address::Contact("@alice:example.org".into())
        );
        assert_eq!(
            r.from_prompt(
                "https://matrix.to/#/%23rust:example.org",
                &AddressContext::none()
            )
            .expect("link"),
            Address::Room("#rust:example.org".into())
        );
        assert_eq!(
            r.from_prompt("matrix:u/bob:example.org", &AddressContext::none())
                .expect("uri"),
            Address::Contact("@bob:example.org".into())
        );
        assert_eq!(
            r.from_prompt("!Room:hs", &AddressContext::none())
                .expect("room"),
            Address::Room("!Room:hs".into())
        );
        assert!(r.from_prompt("", &AddressContext::none()).is_err());
        assert!(
            r.from_prompt("https://matrix.to/#/nothing", &AddressContext::none())
                .is_err()
        );
    }
}
