//! Phone numbers and the other senders an SMS can have, and how each is
//! written as the local part of a contact's JID.
//!
//! * An E.164 number is `+15551234567` (the JID `+15551234567@GW`). What a
//!   person types — `0151 2345678`, `(555) 123-4567`, `+44 20 7946 0958` —
//!   is read with libphonenumber's rules (crate `phonenumber`) in the
//!   user's region, so a national number becomes the right E.164 one.
//! * A short code (3 to 8 digits that are not a phone number, `12345`) is
//!   its digits without a `+`: replies go to the same short code.
//! * An alphanumeric sender ("MyBank") cannot be written to. It gets a
//!   stable JID in Cheogram's scheme, so that users who move between
//!   gateways keep their contacts: each character as `ord(c) - 30` in
//!   decimal, then `;phone-context=alphanumeric.phone-context.soprani.ca`
//!   (`MyBank` → `479136678077;phone-context=…`), with the name itself
//!   as the contact's nickname.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;
use phonenumber::metadata::DATABASE;

/// The phone-context of alphanumeric senders (Cheogram's).
pub const ALPHANUMERIC_CONTEXT: &str = "alphanumeric.phone-context.soprani.ca";

/// Something that sends or receives texts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// An E.164 number, with its `+`.
    Number(E164),
    /// A short code (digits, no `+`).
    ShortCode(String),
    /// An alphanumeric sender name (cannot be written to).
    Alphanumeric(String),
}

/// A phone number in E.164 form (`+` and up to 15 digits), checked.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

impl E164 {
    /// The number with its `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without the `+` (as SMPP and Kannel want them).
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<E164> for String {
    fn from(n: E164) -> String {
        n.0
    }
}

impl TryFrom<String> for E164 {
    type Error = NumberError;
    fn try_from(s: String) -> Result<Self, NumberError> {
        parse_e164(&s)
    }
}

impl FromStr for E164 {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, NumberError> {
        parse_e164(s)
    }
}

/// A number that cannot be used, with a sentence for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NumberError(pub String);

/// An ISO 3166 region (`DE`), as libphonenumber knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region(country::Id);

impl Region {
    /// The two-letter code.
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }

    /// Every region libphonenumber has numbering rules for, sorted.
    pub fn all() -> Vec<String> {
        let mut ids: Vec<String> = DATABASE
            .iter()
            .map(|m| m.id().to_owned())
            .filter(|id| {
                id.len() == 2 && id.parse::<country::Id>().is_ok() && id != "ZZ" && id != "001"
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl FromStr for Region {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, NumberError> {
        let upper = s.trim().to_ascii_uppercase();
        upper
            .parse::<country::Id>()
            .ok()
            .filter(|id| DATABASE.by_id(id.as_ref()).is_some())
            .map(Region)
            .ok_or_else(|| {
                NumberError(format!(
                    "{s:?} is not a region code (two letters such as DE, US, GB)"
                ))
            })
    }
}

/// Reads a number in international form (`+` and digits, spaces and
/// punctuation allowed).
pub fn parse_e164(s: &str) -> Result<E164, NumberError> {
    if !s.trim_start().starts_with('+') {
        return Err(NumberError(format!(
            "{s:?} is not an international number (it must start with +)"
        )));
    }
    normalise(s, None)
}

/// Reads a number as a person in `region` writes it: national form
/// (`0151 2345678`) or international (`+49 151 2345678`, `0049…`).
pub fn normalise(input: &str, region: Option<Region>) -> Result<E164, NumberError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(NumberError("no number given".into()));
    }
    if trimmed
        .chars()
        .any(|c| !(c.is_ascii_digit() || " +-()./".contains(c)))
    {
        return Err(NumberError(format!(
            "{trimmed:?} is not a phone number: only digits, spaces, + - ( ) . / are allowed"
        )));
    }
    // The international prefix 00 (most of the world) written instead of +.
    let international;
    let trimmed = match trimmed.strip_prefix("00") {
        Some(rest) => {
            international = format!("+{rest}");
            international.as_str()
        }
        None => trimmed,
    };
    // An international number is read without the region: phonenumber
    // 0.3.10 strips the region's national prefix after the country code
    // ("+49 151…" read in the US lost its "1").
    let hint = if trimmed.starts_with('+') {
        None
    } else {
        region.map(|r| r.0)
    };
    let parsed = phonenumber::parse(hint, trimmed).map_err(|_| {
        NumberError(match region {
            Some(r) if !trimmed.starts_with('+') => format!(
                "{trimmed:?} is not a phone number of region {} (write it with + and the country code)",
                r.code()
            ),
            None if !trimmed.starts_with('+') => format!(
                "{trimmed:?} is a national number: set your region (preferences) or write it with + and the country code"
            ),
            _ => format!("{trimmed:?} is not a phone number"),
        })
    })?;
    if !plausible(&parsed) {
        return Err(NumberError(format!(
            "{trimmed:?} is not a possible phone number (wrong length for country code +{})",
            parsed.code().value()
        )));
    }
    let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
    // 15 digits at most (ITU-T E.164)
    if e164.len() > 16 || e164.len() < 4 {
        return Err(NumberError(format!(
            "{trimmed:?} is not a possible phone number"
        )));
    }
    Ok(E164(e164))
}

/// Valid by libphonenumber's rules, or at least of a length its country's
/// numbers have (libphonenumber calls the fictional 555 numbers of North
/// America, used by films and tests, invalid; they are still numbers).
fn plausible(n: &phonenumber::PhoneNumber) -> bool {
    if n.is_valid() {
        return true;
    }
    let len = n.national().to_string().len() as u16;
    DATABASE.by_code(&n.code().value()).is_some_and(|metas| {
        metas.into_iter().any(|meta| {
            let d = meta.descriptors();
            [
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.voip(),
                d.personal_number(),
            ]
            .into_iter()
            .flatten()
            .chain(std::iter::once(d.general()))
            .any(|desc| desc.possible_length().contains(&len))
        })
    })
}

impl Party {
    /// Reads the sender or receiver of a text as a backend reports it: E.164
    /// with or without its `+`, a short code, or a name.
    pub fn from_backend(raw: &str) -> Party {
        let s = raw.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            if digits.len() <= 8 && !s.starts_with('+') {
                return Party::ShortCode(digits.to_owned());
            }
            if let Ok(n) = parse_e164(&format!("+{digits}")) {
                return Party::Number(n);
            }
            return Party::ShortCode(digits.to_owned());
        }
        Party::Alphanumeric(s.to_owned())
    }

    /// The JID local part (unescaped).
    pub fn local_part(&self) -> String {
        match self {
            Party::Number(n) => n.0.clone(),
            Party::ShortCode(d) => d.clone(),
            Party::Alphanumeric(name) => {
                let digits: String = name
                    .chars()
                    .map(|c| (u32::from(c).saturating_sub(30)).to_string())
                    .collect();
                format!("{digits};phone-context={ALPHANUMERIC_CONTEXT}")
            }
        }
    }

    /// Reads a JID local part back into a party that can receive texts.
    /// Alphanumeric senders cannot: their local part gives a clear error.
    pub fn from_local_part(local: &str) -> Result<Party, NumberError> {
        if local.ends_with(&format!(";phone-context={ALPHANUMERIC_CONTEXT}")) {
            return Err(NumberError(
                "this sender has a name instead of a number and cannot receive texts".into(),
            ));
        }
        if local.starts_with('+') {
            let n = parse_e164(local)?;
            if n.as_str() != local {
                return Err(NumberError(format!(
                    "{local:?} is not written in E.164 form; it is {n}"
                )));
            }
            return Ok(Party::Number(n));
        }
        if (3..=8).contains(&local.len()) && local.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Party::ShortCode(local.to_owned()));
        }
        Err(NumberError(format!(
            "{local:?} is not a phone number: write it in international form, like +15551234567"
        )))
    }

    /// What backends address: digits (E.164 with `+`, short codes bare).
    pub fn address(&self) -> Option<&str> {
        match self {
            Party::Number(n) => Some(n.as_str()),
            Party::ShortCode(d) => Some(d),
            Party::Alphanumeric(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(s: &str) -> Option<Region> {
        Some(s.parse().expect("region"))
    }

    #[test]
    fn national_numbers_become_e164_in_the_users_region() {
        assert_eq!(
            normalise("0151 23456789", region("DE"))
                .expect("DE")
                .as_str(),
            "+4915123456789"
        );
        assert_eq!(
            normalise("(555) 123-4567", region("US"))
                .expect("US")
                .as_str(),
            "+15551234567"
        );
        assert_eq!(
            normalise("020 7946 0958", region("GB"))
                .expect("GB")
                .as_str(),
            "+442079460958"
        );
        // International forms ignore the region.
        assert_eq!(
            normalise("+49 151 23456789", region("US"))
                .expect("intl")
                .as_str(),
            "+4915123456789"
        );
        assert_eq!(
            normalise("0049 151 23456789", region("DE"))
                .expect("00")
                .as_str(),
            "+4915123456789"
        );
        assert_eq!(
            normalise("+1 555 123 4567", None)
                .expect("no region")
                .as_str(),
            "+15551234567"
        );
    }

    #[test]
    fn malformed_numbers_are_refused_with_a_reason() {
        for bad in [
            "",
            "hello",
            "+1555",
            "+1 555 123 4567 8901 2",
            "12/ab",
            "+999 1234567",
        ] {
            let e = normalise(bad, region("US")).expect_err(bad);
            assert!(!e.0.is_empty());
        }
        let e = normalise("0151 23456789", None).expect_err("no region");
        assert!(e.0.contains("region"), "{e}");
        assert!("XX".parse::<Region>().is_err());
        assert!("de".parse::<Region>().is_ok());
        assert!(Region::all().contains(&"DE".to_owned()) && Region::all().len() > 200);
    }

    #[test]
    fn local_parts_round_trip() {
        let cases = [
            Party::Number("+15551234567".parse().expect("n")),
            Party::ShortCode("12345".into()),
        ];
        for p in cases {
            let local = p.local_part();
            assert_eq!(Party::from_local_part(&local), Ok(p.clone()), "{local}");
        }
        assert_eq!(
            Party::Alphanumeric("MyBank".into()).local_part(),
            "479136678077;phone-context=alphanumeric.phone-context.soprani.ca"
        );
        let alpha = Party::Alphanumeric("MyBank".into()).local_part();
        assert!(
            Party::from_local_part(&alpha)
                .expect_err("no replies")
                .0
                .contains("name")
        );
        assert!(Party::from_local_part("+1 555 123 4567").is_err());
        assert!(Party::from_local_part("alice").is_err());
    }

    #[test]
    fn backend_senders_are_classified() {
        assert_eq!(
            Party::from_backend("15551234567"),
            Party::Number("+15551234567".parse().expect("n"))
        );
        assert_eq!(
            Party::from_backend("+15551234567"),
            Party::Number("+15551234567".parse().expect("n"))
        );
        assert_eq!(
            Party::from_backend("12345"),
            Party::ShortCode("12345".into())
        );
        assert_eq!(
            Party::from_backend("MyBank"),
            Party::Alphanumeric("MyBank".into())
        );
    }
}
