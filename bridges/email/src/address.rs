//! Email addresses as contacts: `alice@example.com` is the contact
//! `alice\40example.com@GW` (the core adds the XEP-0106 escaping). Also the
//! one place that decides whether a string is an address ferry will write
//! to: RFC 5321 syntax, no control characters, a domain with a dot or
//! `localhost`, at most 254 bytes. Addresses are kept lower-case because a
//! JID's local part is case-folded by the XMPP server anyway.

use ferry_bridge::{
    Address, AddressContext, AddressError, AddressRules, ContactId, Prompt, RoomId,
};

/// The address rules of the email bridge.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmailAddresses;

/// Checks and normalises an address (`Alice@Example.COM` ->
/// `alice@example.com`).
pub fn normalize(input: &str) -> Result<String, AddressError> {
    let addr = input.trim();
    if addr.is_empty() {
        return Err(AddressError::new("An email address is needed"));
    }
    if addr.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AddressError::new(format!(
            "{:?} is not an email address: it contains spaces or control characters",
            addr
        )));
    }
    if addr.len() > 254 {
        return Err(AddressError::new("That email address is too long"));
    }
    let lower = addr.to_lowercase();
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return Err(AddressError::new(format!(
            "{addr:?} is not an email address (no @)"
        )));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(AddressError::new(format!(
            "{addr:?} is not an email address"
        )));
    }
    if !(domain.contains('.') || domain == "localhost") {
        return Err(AddressError::new(format!(
            "{addr:?} is not an email address: {domain:?} is not a mail domain"
        )));
    }
    // lettre implements the RFC 5322 addr-spec rules (dot-atoms, quoted
    // local parts, IDNA domains); it is also what the mail is sent with.
    lower
        .parse::<lettre::Address>()
        .map_err(|e| AddressError::new(format!("{addr:?} is not an email address: {e}")))?;
    Ok(lower)
}

/// What a person may type for an address: `alice@example.com`,
/// `Alice <alice@example.com>`, `mailto:alice@example.com?subject=hi`.
pub fn from_typed(input: &str) -> Result<String, AddressError> {
    let mut s = input.trim();
    if let (Some(open), true) = (s.rfind('<'), s.ends_with('>')) {
        s = &s[open + 1..s.len() - 1];
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("mailto:") {
        s = &s["mailto:".len()..];
        if let Some(q) = s.find('?') {
            s = &s[..q];
        }
        let decoded = percent_decode(s)?;
        return normalize(&decoded);
    }
    normalize(s)
}

fn percent_decode(s: &str) -> Result<String, AddressError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| AddressError::new("bad %-escape in the mailto: address"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AddressError::new("the mailto: address is not UTF-8"))
}

impl AddressRules for EmailAddresses {
    fn parse(
        &self,
        local: &str,
        resource: Option<&str>,
        _ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError> {
        if crate::groups::is_group_id(local) || crate::lists::is_list_id(local) {
            let room = RoomId::new(local.to_ascii_lowercase());
            return Ok(match resource {
                Some(nick) => Address::Occupant {
                    room,
                    nick: nick.to_owned(),
                },
                None => Address::Room(room),
            });
        }
        normalize(local).map(|a| Address::Contact(ContactId::new(a)))
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
            description: "Enter the email address of the person you want to write to".into(),
            label: "Email address".into(),
        }
    }

    fn from_prompt(&self, input: &str, _ctx: &AddressContext<'_>) -> Result<Address, AddressError> {
        from_typed(input).map(|a| Address::Contact(ContactId::new(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lowercased() {
        assert_eq!(normalize("Alice@Example.COM").unwrap(), "alice@example.com");
        assert_eq!(normalize("bob@localhost").unwrap(), "bob@localhost");
        assert_eq!(
            normalize("o'neil&co/x@example.org").unwrap(),
            "o'neil&co/x@example.org"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a b@example.com",
            "alice@example.com\r\nBcc: x@y.z",
            "alice\0@example.com",
            "a@b@c",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn typed_forms() {
        assert_eq!(
            from_typed(" Alice <Alice@Example.com> ").unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            from_typed("mailto:alice%40example.com?subject=hi").unwrap(),
            "alice@example.com"
        );
        assert!(from_typed("mailto:%zz").is_err());
        let rules = EmailAddresses;
        assert_eq!(
            rules
                .parse("alice@example.com", Some("res"), &AddressContext::none())
                .unwrap(),
            Address::Contact(ContactId::new("alice@example.com"))
        );
        assert!(
            rules
                .from_prompt("not an address", &AddressContext::none())
                .is_err()
        );
    }
}
