//! Encryption of account secrets at rest: an AEAD key kept in a key file
//! that is created with mode 0600 on first start.
//!
//! The cipher is XChaCha20-Poly1305 with a fresh random 192-bit nonce for
//! every sealed value and a caller-given context (the user's JID) as
//! associated data, so a sealed value copied to another user's row does not
//! open. A sealed value is `version (1 byte) || nonce (24) || ciphertext+tag`.
//!
//! The key file holds the 32-byte key as 64 hexadecimal digits and a
//! newline. A key file that the group or others may read is refused: the
//! operator gets the `chmod` to run. The key is never logged.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ferry_bridge::StoreError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// The gateway's secret key. Never printed.
pub struct Key {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

fn err(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError(format!("key file {}: {what}", path.display()))
}

impl Key {
    /// Reads the key file, creating it (mode 0600) with a fresh random key
    /// if it does not exist. Refuses a key file readable by others.
    pub fn load_or_create(path: &Path) -> Result<Key, StoreError> {
        match Key::load(path) {
            Err(_) if !path.exists() => Key::create(path),
            other => other,
        }
    }

    /// Reads an existing key file.
    pub fn load(path: &Path) -> Result<Key, StoreError> {
        Key::check_file(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
        let bytes = decode_hex(text.trim()).ok_or_else(|| {
            err(
                path,
                "not a key (expected 64 hexadecimal digits); restore the original file",
            )
        })?;
        Key::from_bytes(&bytes).ok_or_else(|| err(path, "the key must be 32 bytes"))
    }

    /// Checks that an existing key file is a regular file readable only by
    /// its owner. A missing file is fine (it will be created).
    pub fn check_file(path: &Path) -> Result<(), StoreError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(path, e)),
        };
        if !meta.is_file() {
            return Err(err(path, "not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(
                path,
                format!(
                    "readable by others (mode {mode:04o}); run: chmod 600 {}",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    fn create(path: &Path) -> Result<Key, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(path, format!("cannot create its directory: {e}")))?;
        }
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| err(path, format!("no randomness: {e}")))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(path, format!("cannot create it: {e}")))?;
        let mut text = encode_hex(&bytes);
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| err(path, format!("cannot write it: {e}")))?;
        tracing::info!("created a new key file {}", path.display());
        Key::from_bytes(&bytes).ok_or_else(|| err(path, "the key must be 32 bytes"))
    }

    fn from_bytes(bytes: &[u8]) -> Option<Key> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        XChaCha20Poly1305::new_from_slice(bytes)
            .ok()
            .map(|cipher| Key { cipher })
    }

    /// Encrypts `plaintext`, binding it to `context` (e.g. the user's JID)
    /// so a sealed value cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The OS random source does not fail on Linux once booted; the
        // thread RNG (a CSPRNG seeded from it) is the fallback.
        if getrandom::fill(&mut nonce).is_err() {
            rand::fill(&mut nonce);
        }
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Key::seal`] produced with the same context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(StoreError("sealed value is truncated".into()));
        }
        if sealed[0] != VERSION {
            return Err(StoreError(format!(
                "sealed value has unknown format version {}",
                sealed[0]
            )));
        }
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: context,
                },
            )
            .map_err(|_| {
                StoreError(
                    "cannot decrypt a stored secret: wrong key file, or the data was altered"
                        .into(),
                )
            })
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn creates_key_file_0600_and_reads_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("ferry.key");
        let key = Key::load_or_create(&path).expect("created");
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim().len(), 64);
        let sealed = key.seal(b"hunter2", b"alice@example.org");
        let again = Key::load_or_create(&path).expect("loaded");
        assert_eq!(
            again.open(&sealed, b"alice@example.org").expect("opens"),
            b"hunter2"
        );
        assert!(!format!("{again:?}").contains(text.trim()));
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Key::load_or_create(&dir.path().join("k")).expect("key");
        let a = key.seal(b"secret", b"ctx");
        let b = key.seal(b"secret", b"ctx");
        assert_ne!(a, b, "every seal uses a new nonce");
        assert!(!a.windows(6).any(|w| w == b"secret"));
        assert_eq!(key.open(&a, b"ctx").expect("a"), b"secret");
        assert_eq!(key.open(&b, b"ctx").expect("b"), b"secret");
        assert_eq!(
            key.open(&key.seal(b"", b"ctx"), b"ctx").expect("empty"),
            b""
        );
    }

    #[test]
    fn tampering_and_other_context_are_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Key::load_or_create(&dir.path().join("k")).expect("key");
        let sealed = key.seal(b"token", b"alice@example.org");
        assert!(key.open(&sealed, b"bob@example.org").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(key.open(&bad, b"alice@example.org").is_err(), "byte {i}");
        }
        assert!(key.open(&sealed[..20], b"alice@example.org").is_err());
        let other = Key::load_or_create(&dir.path().join("other")).expect("key");
        assert!(other.open(&sealed, b"alice@example.org").is_err());
    }

    #[test]
    fn refuses_a_key_file_others_can_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        Key::load_or_create(&path).expect("key");
        for bad in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).expect("chmod");
            let e = Key::load_or_create(&path).expect_err("refused");
            assert!(e.0.contains("readable by others"), "{e}");
            assert!(e.0.contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        Key::load_or_create(&path).expect("0400 is fine");
    }

    #[test]
    fn refuses_a_corrupt_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        std::fs::write(&path, "not hex\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = Key::load_or_create(&path).expect_err("refused");
        assert!(e.0.contains("not a key"), "{e}");
        std::fs::write(&path, "abcd\n").expect("write");
        assert!(Key::load_or_create(&path).is_err());
    }
}
