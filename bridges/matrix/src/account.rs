//! What ferry stores for a registered user (the core encrypts it at rest):
//! the Matrix session — homeserver, user id, device id, access token — and
//! the random passphrase that encrypts the user's matrix-sdk store on disk.
//! Never the password.

use ferry_bridge::{Account, BridgeError, LoginError, Secret};
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use matrix_sdk::{SessionMeta, SessionTokens};
use serde::{Deserialize, Serialize};

/// The stored session of one user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Format version of this record.
    pub version: u32,
    /// The homeserver's base URL (after discovery).
    pub homeserver: String,
    /// The Matrix user.
    pub user_id: OwnedUserId,
    /// The device ferry logged in as.
    pub device_id: OwnedDeviceId,
    /// The access token of that device.
    pub access_token: String,
    /// Passphrase of the encrypted matrix-sdk store (state and crypto).
    pub store_passphrase: String,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("homeserver", &self.homeserver)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl StoredSession {
    /// The matrix-sdk session to restore.
    pub fn matrix_session(&self) -> MatrixSession {
        MatrixSession {
            meta: SessionMeta {
                user_id: self.user_id.clone(),
                device_id: self.device_id.clone(),
            },
            tokens: SessionTokens {
                access_token: self.access_token.clone(),
                refresh_token: None,
            },
        }
    }

    /// The account record for the core.
    pub fn to_account(&self) -> Account {
        Account {
            name: self.user_id.to_string(),
            // Serialising a struct of strings cannot fail.
            secret: Secret(serde_json::to_vec(self).unwrap_or_default()),
        }
    }

    /// Reads the record back from an account.
    pub fn from_account(account: &Account) -> Result<StoredSession, LoginError> {
        serde_json::from_slice(&account.secret.0).map_err(|e| {
            LoginError::Expired(format!(
                "the stored Matrix session cannot be read ({e}); please log in again"
            ))
        })
    }
}

/// A random passphrase for a new store, from the operating system's
/// generator.
pub fn new_store_passphrase() -> Result<String, LoginError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        LoginError::Other(BridgeError::internal(format!(
            "the system's random number generator failed: {e}"
        )))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_token_in_debug() {
        let s = StoredSession {
            version: 1,
            homeserver: "http://127.0.0.1:8008/".into(),
            user_id: "@a:hs".try_into().expect("uid"),
            device_id: "DEV".into(),
            access_token: "syt_secret".into(),
            store_passphrase: new_store_passphrase().expect("rng"),
        };
        let acc = s.to_account();
        assert_eq!(acc.name, "@a:hs");
        assert_eq!(StoredSession::from_account(&acc).expect("reads"), s);
        assert!(!format!("{s:?}").contains("syt_secret"));
        assert_eq!(s.store_passphrase.len(), 64);
        let broken = Account {
            name: "x".into(),
            secret: Secret(b"nope".to_vec()),
        };
        assert!(matches!(
            StoredSession::from_account(&broken),
            Err(LoginError::Expired(_))
        ));
    }
}
