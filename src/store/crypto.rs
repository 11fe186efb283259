//! Encryption of account secrets at rest: an AEAD key kept in a key file
//! that is created with mode 0600 on first start.

use std::path::Path;

use ferry_bridge::StoreError;

/// The gateway's secret key. Never printed.
pub struct Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Reads the key file, creating it (mode 0600) with a fresh random key
    /// if it does not exist. Refuses a key file readable by others.
    pub fn load_or_create(path: &Path) -> Result<Key, StoreError> {
        let _ = path;
        todo!("crypto: load_or_create")
    }

    /// Encrypts `plaintext`, binding it to `context` (e.g. the user's JID)
    /// so a sealed value cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let _ = (plaintext, context);
        todo!("crypto: seal")
    }

    /// Decrypts what [`Key::seal`] produced with the same context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, StoreError> {
        let _ = (sealed, context);
        todo!("crypto: open")
    }
}
