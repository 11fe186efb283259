//! Ferry's SMS bridge: phone numbers as XMPP contacts (`+15551234567@GW`),
//! over Kannel, an SMSC (SMPP 3.4) or Twilio, with delivery reports as
//! XMPP receipts.
//!
//! Modules: [`config`] (the `[sms]` section), [`number`] (E.164 and the
//! other kinds of sender as JID local parts), [`address`] (JIDs and
//! XEP-0100 with the user's region), [`gsm7`] (the GSM 03.38 alphabet),
//! [`segment`] (coding and splitting texts, joining parts), [`backend`]
//! (the three backends behind one trait), [`outbox`] (the persisted queue
//! of outgoing texts), [`groups`] (group texts), and the bridge itself:
//! `network` (registration, the bridge-wide part, commands), `session`
//! (sending), `inbound` (texts and reports to their users), `webhook`
//! (the HTTP endpoints).

pub mod address;
pub mod backend;
pub mod config;
pub mod groups;
pub mod gsm7;
mod inbound;
mod network;
pub mod number;
pub mod outbox;
pub mod segment;
mod session;
mod state;
mod webhook;

use std::sync::Arc;

pub use config::Config;
pub use network::{ASSIGN_NUMBER, SmsNetwork};

/// Builds the SMS bridge from its configuration section.
pub fn build(
    config: Config,
    setup: ferry_bridge::BridgeSetup,
) -> Result<Arc<dyn ferry_bridge::Network>, String> {
    Ok(Arc::new(SmsNetwork::new(config, setup)?))
}
