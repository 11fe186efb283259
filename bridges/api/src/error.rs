//! Errors a bridge reports to the core. Every one of them reaches the user
//! as a readable message (an XMPP error with text, a command note), so the
//! message must make sense to a person.

use std::fmt;

/// Why an action failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or makes no sense.
    BadRequest,
    /// The request is understood but refused.
    NotAllowed,
    /// The user must log in (again) first.
    NotAuthorized,
    /// The target does not exist.
    NotFound,
    /// Conflicts with the current state (nickname taken …).
    Conflict,
    /// The network or bridge cannot do this.
    Unsupported,
    /// The network is not reachable right now.
    Unavailable,
    /// The network did not answer in time.
    Timeout,
    /// The network refused or failed the request.
    Remote,
    /// Too much: too long, too many, too fast.
    ResourceConstraint,
    /// A fault of the bridge itself.
    Internal,
}

/// An error from a bridge: a kind for the core and a text for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeError {
    /// What class of failure.
    pub kind: ErrorKind,
    /// A sentence for the user.
    pub message: String,
}

impl BridgeError {
    /// Creates an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// [`ErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Remote`].
    pub fn remote(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Remote, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BridgeError {}

/// Why a login (registration, session start) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The network refused the credentials.
    #[error("the network refused the credentials: {0}")]
    BadCredentials(String),
    /// A form value is not usable (bad server name, bad URL …).
    #[error("{field}: {message}")]
    InvalidField {
        /// The form variable at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The network could not be reached.
    #[error("could not reach the network: {0}")]
    Unreachable(String),
    /// Stored credentials no longer work (revoked token): the user must
    /// log in again.
    #[error("the login is no longer valid: {0}")]
    Expired(String),
    /// Anything else.
    #[error("{0}")]
    Other(BridgeError),
}

impl From<BridgeError> for LoginError {
    fn from(e: BridgeError) -> Self {
        LoginError::Other(e)
    }
}
