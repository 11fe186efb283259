//! The `[test]` configuration section and the capability switches it
//! controls.

use std::collections::BTreeMap;

use ferry_bridge::{Capabilities, Feature};
use serde::Deserialize;

/// The test network's own keys of its configuration section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Accounts of the network: name -> password. Names are lower-case
    /// ASCII letters, digits, `.`, `_` and `-`; `echo` and `server` are
    /// taken by the bot and the service.
    pub accounts: BTreeMap<String, String>,
    /// Sessions run while the user is offline (`SessionPolicy::AlwaysOn`);
    /// false: started on demand.
    pub always_on: bool,
    /// Capabilities to switch off (names of [`Feature`]s: `reactions`, `rooms` …), to test
    /// how the core handles a network that lacks them. The session refuses
    /// the matching actions with an `Unsupported` error.
    pub disable: Vec<String>,
    /// The network confirms delivery (`Event::Delivered`) when the
    /// recipient's session got a message.
    pub delivery_receipts: bool,
    /// The bot waits this long before answering (0: at once).
    pub echo_delay_ms: u64,
    /// The network's limit of message length in bytes (`Limits`), which
    /// the core enforces; none by default.
    pub max_message_bytes: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        let accounts = [
            ("alice", "alicepw"),
            ("bob", "bobpw"),
            ("carol", "carolpw"),
            ("admin", "adminpw"),
        ]
        .into_iter()
        .map(|(a, p)| (a.to_owned(), p.to_owned()))
        .collect();
        Self {
            accounts,
            always_on: true,
            disable: Vec::new(),
            delivery_receipts: true,
            echo_delay_ms: 0,
            max_message_bytes: None,
        }
    }
}

/// Whether a name is a valid account or room name of the test network.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

impl Config {
    /// Checks the section and returns the capabilities it leaves on.
    pub(crate) fn capabilities(&self) -> Result<Capabilities, String> {
        for name in self.accounts.keys() {
            if !valid_name(name) {
                return Err(format!(
                    "[test] accounts: {name:?} is not a valid account name \
                     (lower-case letters, digits, '.', '_', '-')"
                ));
            }
            if name == crate::echo::ECHO || name == crate::address::SERVER {
                return Err(format!(
                    "[test] accounts: {name:?} is reserved (the bot and the service)"
                ));
            }
        }
        let mut caps = Capabilities::all().set(Feature::DeliveryReceipts, self.delivery_receipts);
        for name in &self.disable {
            let Some(feature) = Feature::from_name(name) else {
                return Err(format!(
                    "[test] disable: unknown capability {name:?} (known: {})",
                    Feature::ALL
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            caps = caps.without(feature);
        }
        Ok(caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_have_four_accounts_and_everything_on() {
        let c = Config::default();
        assert_eq!(c.accounts.get("alice").map(String::as_str), Some("alicepw"));
        assert_eq!(c.accounts.len(), 4);
        let caps = c.capabilities().unwrap();
        assert_eq!(caps, Capabilities::all());
    }

    #[test]
    fn disable_switches_capabilities_off_and_rejects_unknown_names() {
        let c = Config {
            disable: vec!["corrections".into(), "rooms".into()],
            ..Config::default()
        };
        let caps = c.capabilities().unwrap();
        assert!(
            !caps.has(Feature::Corrections)
                && !caps.has(Feature::Rooms)
                && caps.has(Feature::Reactions)
        );
        let bad = Config {
            disable: vec!["teleport".into()],
            ..Config::default()
        };
        let err = bad.capabilities().unwrap_err();
        assert!(
            err.contains("teleport") && err.contains("corrections"),
            "{err}"
        );
    }

    #[test]
    fn bad_and_reserved_account_names_are_refused() {
        for name in ["Alice", "a b", "", "echo", "server"] {
            let mut c = Config::default();
            c.accounts.insert(name.into(), "pw".into());
            assert!(c.capabilities().is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn every_capability_name_is_known() {
        for feature in Feature::ALL {
            let name = feature.name();
            let c = Config {
                disable: vec![name.to_owned()],
                ..Config::default()
            };
            assert!(c.capabilities().is_ok(), "{name}");
        }
    }
}
