//! How a bridge's addresses are written as the local part (and resource) of
//! a JID on the gateway's domain.
//!
//! The core strips and adds XEP-0106 escaping itself: a bridge reads and
//! writes the *unescaped* local part (`#rust%irc.libera.chat`,
//! `@alice:example.org`), never `\40` sequences. The local part the bridge
//! receives has been through the XMPP server's case folding, so a bridge on
//! a case-sensitive network must encode case in its own reversible way and
//! document it.

use crate::form::FormValues;
use crate::id::{Address, UserId};

/// Who is asking, for rules that depend on the user: a national phone
/// number completed with the user's country, say.
#[derive(Clone, Copy, Debug)]
pub struct AddressContext<'a> {
    /// The user whose stanza or request it is; None when there is no user
    /// (an address the gateway itself writes, a test).
    pub user: Option<&'a UserId>,
    /// That user's preferences, defaults filled in (empty without a user).
    pub preferences: &'a FormValues,
}

static NO_PREFERENCES: std::sync::LazyLock<FormValues> = std::sync::LazyLock::new(FormValues::new);

impl AddressContext<'static> {
    /// No user, no preferences.
    pub fn none() -> AddressContext<'static> {
        AddressContext {
            user: None,
            preferences: &NO_PREFERENCES,
        }
    }
}

/// The mapping between a network's addresses and JID local parts.
pub trait AddressRules: Send + Sync {
    /// Parses the unescaped local part of a JID on the gateway domain, with
    /// the JID's resource if it has one. A bridge uses the resource where it
    /// names something (the occupant of a room) and ignores it elsewhere
    /// (a client may write to any resource of a contact).
    ///
    /// `local` is never empty: the bare gateway domain is handled by the
    /// core. Returns an error that the user can read when the local part
    /// names nothing on the network. `ctx` tells whose request it is (a
    /// national number is read with that user's region).
    fn parse(
        &self,
        local: &str,
        resource: Option<&str>,
        ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError>;

    /// Writes an address as an unescaped local part and optional resource:
    /// the inverse of [`AddressRules::parse`].
    fn format(&self, address: &Address) -> (String, Option<String>);

    /// The text of the XEP-0100 `jabber:iq:gateway` prompt.
    fn prompt(&self) -> Prompt;

    /// Turns what a user typed at the prompt into an address (which the core
    /// then writes as a JID).
    // "address from prompt": a conversion that needs the rules, hence &self.
    #[allow(clippy::wrong_self_convention)]
    fn from_prompt(&self, input: &str, ctx: &AddressContext<'_>) -> Result<Address, AddressError>;
}

/// Description and label of the address prompt (XEP-0100).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// A sentence telling the user what to type.
    pub description: String,
    /// A short label for the input field.
    pub label: String,
}

/// An address that the bridge does not understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(pub String);

impl AddressError {
    /// Creates an error with a message meant for the user.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
