//! Ferry's SMS bridge: phone numbers as XMPP contacts (`+15551234567@GW`),
//! over Kannel, an SMSC (SMPP 3.4) or Twilio, with delivery reports as
//! XMPP receipts.
//!
//! Modules: [`config`] (the `[sms]` section), [`number`] (E.164 and the
//! other kinds of sender as JID local parts), [`gsm7`] (the GSM 03.38
//! alphabet), [`segment`] (coding and splitting texts, joining parts),
//! [`backend`] (the three backends behind one trait).

pub mod backend;
pub mod config;
pub mod gsm7;
pub mod number;
pub mod outbox;
pub mod segment;

pub use config::Config;
