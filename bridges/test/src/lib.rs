//! The test network: a tiny, complete chat network that lives inside the
//! Ferry process, so the core can be tested end to end without a foreign
//! server. It is not a product and is only compiled with the `test-bridge`
//! feature.
//!
//! The network has accounts (`[test] accounts`, name -> password), a bot
//! called `echo` that answers and reacts to everything, and rooms (`#lounge`
//! exists, any other `#name` is created when joined; `#secret` needs the
//! password `letmein`). Everything the bridge API can express travels
//! between its users: messages with their ids, edits, retractions,
//! reactions, replies, threads, attachments, chat states, read markers,
//! presence, room state and moderation, invitations, commands. What exactly
//! the bot and the network do is documented in [`echo`], [`room`] and
//! [`webhook`].
//!
//! Addresses (the unescaped local part of a JID on the gateway's domain):
//! `name` is a contact (an account or `echo`), `#name` a room, `#name` with
//! a resource an occupant of that room, `server` the network's service.
//!
//! Configuration (`[test]` in `ferry.toml`, see [`Config`]).
//!
//! Timing, as on real networks: the events an action causes (the bot's
//! answer, a `Delivered`, `RoomJoined`) are queued while the action runs and
//! may reach the core before it has seen the action's outcome; the core must
//! not depend on the order of the two. `echo_delay_ms` delays the bot.

mod address;
pub mod commands;
mod config;
pub mod echo;
mod network;
pub mod room;
mod session;
mod state;
pub mod webhook;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use address::TestAddressRules;
pub use config::Config;
pub use network::TestNetwork;

/// Builds the test network from its configuration section.
pub fn build(
    config: Config,
    setup: ferry_bridge::BridgeSetup,
) -> Result<Arc<dyn ferry_bridge::Network>, String> {
    Ok(Arc::new(TestNetwork::new(config, setup)?))
}
