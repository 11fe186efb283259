//! Server settings of one mail account (where IMAP and SMTP are, how they
//! are secured, who logs in) and the stored account: what registration
//! keeps, serialised into the account secret that the core encrypts at
//! rest. The password lives only there.

use std::fmt;

use ferry_bridge::{Account, LoginError, Secret};
use serde::{Deserialize, Serialize};

/// How a connection is secured (the registration values `tls`,
/// `starttls`, `plain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, submissions 465).
    Tls,
    /// Plain text, upgraded with STARTTLS before logging in (143, 587).
    Starttls,
    /// No encryption at all (only for servers on a trusted network).
    Plain,
}

impl Security {
    /// The registration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::Plain => "plain",
        }
    }

    /// Parses a registration value.
    pub fn parse(s: &str) -> Option<Security> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tls" | "ssl" => Some(Security::Tls),
            "starttls" => Some(Security::Starttls),
            "plain" | "none" => Some(Security::Plain),
            _ => None,
        }
    }

    /// The usual IMAP port for this security.
    pub fn imap_port(self) -> u16 {
        match self {
            Security::Tls => 993,
            Security::Starttls | Security::Plain => 143,
        }
    }

    /// The usual submission port for this security.
    pub fn smtp_port(self) -> u16 {
        match self {
            Security::Tls => 465,
            Security::Starttls | Security::Plain => 587,
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server: host, port and security.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.host, self.port, self.security)
    }
}

/// Where a mailbox's servers are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// The IMAP server.
    pub imap: Endpoint,
    /// The submission server.
    pub smtp: Endpoint,
    /// The login name (often the address itself).
    pub username: String,
}

/// What is stored for a registered user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    /// The user's address (`From` of every mail).
    pub email: String,
    /// The password for both servers.
    pub password: String,
    /// The servers.
    pub servers: ServerSettings,
    /// Whether the IMAP server has IDLE (else the inbox is polled).
    pub idle: bool,
}

impl fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccount")
            .field("email", &self.email)
            .field("servers", &self.servers)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl StoredAccount {
    /// The account as the core stores it (the secret is encrypted at rest
    /// by the core).
    pub fn to_account(&self) -> Account {
        Account {
            name: self.email.clone(),
            secret: Secret(serde_json::to_vec(self).unwrap_or_default()),
        }
    }

    /// Reads a stored account back.
    pub fn from_account(account: &Account) -> Result<Self, LoginError> {
        serde_json::from_slice(&account.secret.0).map_err(|e| {
            LoginError::Expired(format!(
                "the stored mail account cannot be read ({e}); register again"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_round_trips_and_hides_the_password() {
        let a = StoredAccount {
            email: "me@example.org".into(),
            password: "hunter2".into(),
            servers: ServerSettings {
                imap: Endpoint {
                    host: "imap.example.org".into(),
                    port: 993,
                    security: Security::Tls,
                },
                smtp: Endpoint {
                    host: "smtp.example.org".into(),
                    port: 587,
                    security: Security::Starttls,
                },
                username: "me".into(),
            },
            idle: true,
        };
        let back = StoredAccount::from_account(&a.to_account()).unwrap();
        assert_eq!(back, a);
        assert!(!format!("{a:?}").contains("hunter2"));
        assert_eq!(Security::parse("STARTTLS"), Some(Security::Starttls));
        assert_eq!(Security::parse("x"), None);
    }
}
