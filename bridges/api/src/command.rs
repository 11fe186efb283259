//! Commands a bridge adds to the core's own (XEP-0050 ad-hoc commands, also
//! reachable by chat).
//!
//! A command is a little state machine run by the user's [`Session`]: the
//! core calls [`Action::Command`] with the node, the target and the values
//! submitted so far; the session answers with the next form or with the
//! result. `stage` is the session's own bookmark between steps: the core
//! hands back whatever string the previous [`CommandReply::Form`] carried.
//!
//! A command marked [`CommandSpec::bridge_wide`] is run by the bridge
//! itself ([`Network::command`]) instead, without a session of the caller.
//!
//! [`Session`]: crate::Session
//! [`Action::Command`]: crate::Action::Command
//! [`Network::command`]: crate::Network::command

use crate::form::{Form, FormValues};
use crate::id::Address;

/// Where a command is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandScope {
    /// On the gateway's own address.
    Gateway,
    /// On contact addresses.
    Contact,
    /// On room addresses (and as the room's owner configuration when the
    /// node is `configure`).
    Room,
    /// On service addresses.
    Service,
}

/// Description of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command's node (its identifier), e.g. `configure`.
    pub node: String,
    /// Human-readable name.
    pub name: String,
    /// Where it is offered.
    pub scope: CommandScope,
    /// Only for the gateway's administrators.
    pub admin_only: bool,
    /// Run by the bridge as a whole ([`Network::command`]) rather than by
    /// the caller's session: for commands that need no session of the
    /// caller (an administrator assigning a phone number to another user).
    ///
    /// [`Network::command`]: crate::Network::command
    pub bridge_wide: bool,
}

impl CommandSpec {
    /// A command for every user.
    pub fn new(node: impl Into<String>, name: impl Into<String>, scope: CommandScope) -> Self {
        Self {
            node: node.into(),
            name: name.into(),
            scope,
            admin_only: false,
            bridge_wide: false,
        }
    }

    /// Runs it in the bridge as a whole ([`CommandSpec::bridge_wide`]).
    pub fn bridge_wide(mut self) -> Self {
        self.bridge_wide = true;
        self
    }

    /// Restricts it to administrators.
    pub fn admin(mut self) -> Self {
        self.admin_only = true;
        self
    }
}

/// One step of a command, from the core to the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandCall {
    /// Which command.
    pub node: String,
    /// On what (None: on the gateway).
    pub target: Option<Address>,
    /// `None` on the first step; afterwards the stage of the previous
    /// [`CommandReply::Form`].
    pub stage: Option<String>,
    /// Values the user submitted in this step (empty on the first).
    pub values: FormValues,
    /// Whether the user is an administrator of the gateway.
    pub admin: bool,
}

/// The session's answer to a [`CommandCall`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandReply {
    /// Show this form; its values come back in the next call with `stage`.
    Form {
        /// The form.
        form: Form,
        /// Bookmark for the next step.
        stage: String,
        /// Whether submitting this form completes the command (as opposed
        /// to leading to another form).
        last: bool,
    },
    /// The command is finished.
    Done {
        /// A sentence for the user.
        note: Option<String>,
        /// A result form (a table of values) to show, if any.
        result: Option<Form>,
    },
}

impl CommandReply {
    /// Finished with a note.
    pub fn done(note: impl Into<String>) -> Self {
        CommandReply::Done {
            note: Some(note.into()),
            result: None,
        }
    }
}
