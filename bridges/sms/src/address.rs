//! How SMS addresses are written as JID local parts, with the user's region.
//!
//! * `+15551234567` — an E.164 number, the one canonical spelling of a
//!   phone (the core compares ids verbatim).
//! * `12345` — a short code (3 to 8 digits, no `+`).
//! * `479136678077;phone-context=alphanumeric.phone-context.soprani.ca` —
//!   an alphanumeric sender ("MyBank", Cheogram's scheme, see
//!   [`crate::number`]); it cannot be written to.
//! * `group-<16 hex>` — a group text (a room, see [`crate::groups`]).
//!
//! A national number in a JID or typed into XEP-0100 (`0151 2345678`,
//! `(555) 123-4567`) is read with the user's region: their `region`
//! preference, else the region they gave at registration, else the
//! operator's `default_region`.

use std::sync::Arc;

use ferry_bridge::{
    Address, AddressContext, AddressError, AddressRules, ContactId, Prompt, RoomId,
};

use crate::number::{self, Party, Region};
use crate::state::Shared;

/// The SMS bridge's address rules.
#[derive(Clone)]
pub struct SmsAddressRules {
    shared: Arc<Shared>,
}

impl SmsAddressRules {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The region national numbers are read in, for the user of `ctx`.
    fn region(&self, ctx: &AddressContext<'_>) -> Option<Region> {
        ctx.preferences
            .get("region")
            .and_then(|r| r.parse().ok())
            .or_else(|| ctx.user.and_then(|u| self.shared.registered_region(u)))
            .or_else(|| self.shared.config.region())
    }

    /// Reads a number or short code as a person writes it.
    fn read(&self, input: &str, ctx: &AddressContext<'_>) -> Result<Party, AddressError> {
        let input = input.trim();
        if input.contains(['\r', '\n', '\0']) {
            return Err(AddressError::new(
                "a phone number cannot contain line breaks".to_owned(),
            ));
        }
        if (3..=8).contains(&input.len()) && input.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Party::ShortCode(input.to_owned()));
        }
        number::normalise(input, self.region(ctx))
            .map(Party::Number)
            .map_err(|e| AddressError::new(e.0))
    }
}

impl AddressRules for SmsAddressRules {
    fn parse(
        &self,
        local: &str,
        _resource: Option<&str>,
        ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError> {
        if crate::groups::is_group(local) {
            return Ok(Address::Room(RoomId::new(local)));
        }
        if local.starts_with('+') || local.contains(";phone-context=") {
            return Party::from_local_part(local)
                .map(|p| Address::Contact(ContactId::new(p.local_part())))
                .map_err(|e| AddressError::new(e.0));
        }
        self.read(local, ctx)
            .map(|p| Address::Contact(ContactId::new(p.local_part())))
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
            description: "Enter a phone number: in international form (+49 151 2345678), or as \
                          dialled in your region (0151 2345678), or a short code (12345)"
                .into(),
            label: "Phone number".into(),
        }
    }

    fn from_prompt(&self, input: &str, ctx: &AddressContext<'_>) -> Result<Address, AddressError> {
        self.read(input, ctx)
            .map(|p| Address::Contact(ContactId::new(p.local_part())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use ferry_bridge::{FormValues, UserId};

    fn rules(default_region: Option<&str>) -> SmsAddressRules {
        let config = Config {
            default_region: default_region.map(str::to_owned),
            ..Config::default()
        };
        SmsAddressRules::new(Arc::new(Shared::new(config)))
    }

    fn contact(a: Result<Address, AddressError>) -> String {
        match a {
            Ok(Address::Contact(c)) => c.as_str().to_owned(),
            other => panic!("not a contact: {other:?}"),
        }
    }

    #[test]
    fn national_numbers_take_the_users_region() {
        let r = rules(Some("US"));
        let de = FormValues::new().with("region", "DE");
        let alice = UserId::new("alice@example.org");
        let ctx = AddressContext {
            user: Some(&alice),
            preferences: &de,
        };
        assert_eq!(
            contact(r.from_prompt("0151 2345678", &ctx)),
            "+491512345678"
        );
        assert_eq!(
            contact(r.from_prompt("(555) 123-4567", &AddressContext::none())),
            "+15551234567"
        );
        assert_eq!(contact(r.parse("01512345678", None, &ctx)), "+491512345678");
        assert_eq!(contact(r.parse("+15551234567", None, &ctx)), "+15551234567");
        assert_eq!(contact(r.parse("12345", None, &ctx)), "12345");
        assert!(
            rules(None)
                .from_prompt("0151 2345678", &AddressContext::none())
                .is_err()
        );
        assert!(r.parse("+1555", None, &ctx).is_err());
        assert!(r.from_prompt("call me", &ctx).is_err());
        assert!(r.from_prompt("+1555123\n4567", &ctx).is_err());
        let alnum = Party::Alphanumeric("MyBank".into()).local_part();
        assert!(r.parse(&alnum, None, &ctx).is_err());
        assert_eq!(
            r.parse("group-0123456789abcdef", None, &ctx),
            Ok(Address::Room(RoomId::new("group-0123456789abcdef")))
        );
    }
}
