//! The IRCv3 capabilities of one connection: which of the ones Ferry
//! knows the server offers (with their values) and which are enabled.
//!
//! Every connection to a server is offered the same capabilities. Kept as
//! strings, that was ~3 KB per connection (two ordered maps of a dozen
//! short strings each); here a capability is its index in [`KNOWN`], the
//! offered and the enabled ones are two bit sets, and the few values a
//! server sends (`sasl=PLAIN,EXTERNAL`, `draft/multiline=max-bytes=…`) are
//! interned, so a connection holds one small vector of shared strings.
//! Capabilities Ferry never asks for are not kept: nothing reads them.

use std::sync::Arc;

use crate::intern::intern;

/// Every capability Ferry may ask for: `sasl` (asked for when SASL is
/// configured) first, then [`WANTED`].
const KNOWN: &[&str] = &[
    "sasl",
    "multi-prefix",
    "message-tags",
    "server-time",
    "echo-message",
    "batch",
    "away-notify",
    "account-notify",
    "extended-join",
    "account-tag",
    "chghost",
    "setname",
    "userhost-in-names",
    "labeled-response",
    "invite-notify",
    "cap-notify",
    "extended-monitor",
    "draft/chathistory",
    "draft/multiline",
    "draft/message-redaction",
];

/// The capabilities asked for whenever the server offers them: every
/// known one but `sasl`.
pub(super) const WANTED: &[&str] = KNOWN.split_at(1).1;

/// The index of a known capability.
fn index(cap: &str) -> Option<u8> {
    KNOWN.iter().position(|k| *k == cap).map(|i| i as u8)
}

/// Offered and enabled capabilities of one connection.
#[derive(Debug, Default)]
pub struct Caps {
    offered: u32,
    enabled: u32,
    /// Values of offered capabilities that have one (interned).
    values: Vec<(u8, Arc<str>)>,
}

impl Caps {
    /// The server offers `cap` with `value` ("" for none); an unknown one
    /// is ignored.
    pub fn offer(&mut self, cap: &str, value: &str) {
        let Some(i) = index(cap) else {
            return;
        };
        self.offered |= 1 << i;
        self.values.retain(|(k, _)| *k != i);
        if !value.is_empty() {
            self.values.push((i, intern(value)));
        }
    }

    /// The server no longer offers `cap` (and it is off).
    pub fn withdraw(&mut self, cap: &str) {
        if let Some(i) = index(cap) {
            self.offered &= !(1 << i);
            self.enabled &= !(1 << i);
            self.values.retain(|(k, _)| *k != i);
        }
    }

    /// The offered capabilities, in [`KNOWN`]'s order.
    pub fn offered(&self) -> impl Iterator<Item = &'static str> + '_ {
        KNOWN
            .iter()
            .enumerate()
            .filter(|(i, _)| self.offered & (1 << i) != 0)
            .map(|(_, k)| *k)
    }

    /// The value an offered capability came with.
    pub fn value(&self, cap: &str) -> Option<&str> {
        let i = index(cap)?;
        if self.offered & (1 << i) == 0 {
            return None;
        }
        Some(
            self.values
                .iter()
                .find(|(k, _)| *k == i)
                .map_or("", |(_, v)| v),
        )
    }

    /// The server acknowledged `cap` (on) or `-cap` (off).
    pub fn set_enabled(&mut self, cap: &str, on: bool) {
        if let Some(i) = index(cap) {
            if on {
                self.enabled |= 1 << i;
            } else {
                self.enabled &= !(1 << i);
            }
        }
    }

    /// Whether `cap` is enabled.
    pub fn enabled(&self, cap: &str) -> bool {
        index(cap).is_some_and(|i| self.enabled & (1 << i) != 0)
    }

    /// The enabled capabilities, sorted by name.
    pub fn enabled_names(&self) -> Vec<String> {
        let mut v: Vec<String> = KNOWN
            .iter()
            .enumerate()
            .filter(|(i, _)| self.enabled & (1 << i) != 0)
            .map(|(_, k)| (*k).to_owned())
            .collect();
        v.sort();
        v
    }

    /// Nothing enabled (the connection went down; what was offered is
    /// kept until the next CAP LS).
    pub fn disable_all(&mut self) {
        self.enabled = 0;
    }

    /// Nothing offered nor enabled (a new connection).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wanted_capability_is_known_and_fits_the_bit_sets() {
        assert!(KNOWN.len() <= 32);
        assert_eq!(KNOWN[0], "sasl");
        // Each once: a second entry would never be found by `index`.
        for (i, cap) in KNOWN.iter().enumerate() {
            assert_eq!(index(cap), Some(i as u8), "{cap}");
        }
    }

    #[test]
    fn offers_values_and_acknowledgements() {
        let mut c = Caps::default();
        c.offer("sasl", "PLAIN,EXTERNAL");
        c.offer("batch", "");
        c.offer("znc.in/playback", "");
        assert_eq!(c.value("znc.in/playback"), None);
        assert_eq!(c.offered().collect::<Vec<_>>(), ["sasl", "batch"]);
        assert_eq!(c.value("sasl"), Some("PLAIN,EXTERNAL"));
        assert_eq!(c.value("batch"), Some(""));
        assert_eq!(c.value("echo-message"), None);
        c.offer("sasl", "PLAIN");
        assert_eq!(c.value("sasl"), Some("PLAIN"));
        c.set_enabled("batch", true);
        c.set_enabled("sasl", true);
        c.set_enabled("unknown-cap", true);
        assert!(c.enabled("batch") && c.enabled("sasl"));
        assert!(!c.enabled("unknown-cap"));
        assert_eq!(c.enabled_names(), ["batch", "sasl"]);
        c.set_enabled("batch", false);
        assert!(!c.enabled("batch"));
        c.withdraw("sasl");
        assert!(!c.enabled("sasl"));
        assert_eq!(c.value("sasl"), None);
        c.set_enabled("batch", true);
        c.disable_all();
        assert!(c.enabled_names().is_empty());
        assert_eq!(c.offered().collect::<Vec<_>>(), ["batch"]);
        c.clear();
        assert_eq!(c.offered().count(), 0);
    }

    #[test]
    fn values_are_shared_between_connections() {
        let (mut a, mut b) = (Caps::default(), Caps::default());
        a.offer("draft/multiline", "max-bytes=4096,max-lines=24");
        b.offer(
            "draft/multiline",
            &String::from("max-bytes=4096,max-lines=24"),
        );
        assert!(Arc::ptr_eq(&a.values[0].1, &b.values[0].1));
    }
}
