//! An in-memory [`KeyValue`] space, for tests and tools that run a bridge
//! without the core's database.
//!
//! Nothing is encrypted here: values written with
//! [`KeyValue::put_sealed`] are kept apart and shown by
//! [`KeyValue::get`] and [`KeyValue::list`] only behind a marker with their
//! bytes reversed, so a test can tell that a secret was sealed and never
//! finds it in the clear ([`MemoryKeyValue::clear_text`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::network::{KeyValue, StoreError};

/// What [`KeyValue::get`] shows of a sealed value: this marker, then the
/// value's bytes reversed.
pub const SEALED_MARKER: &[u8] = b"\0sealed\0";

#[derive(Clone, Debug)]
enum Entry {
    Clear(Vec<u8>),
    Sealed(Vec<u8>),
}

impl Entry {
    fn stored(&self) -> Vec<u8> {
        match self {
            Entry::Clear(v) => v.clone(),
            Entry::Sealed(v) => SEALED_MARKER
                .iter()
                .chain(v.iter().rev())
                .copied()
                .collect(),
        }
    }
}

/// A key/value space in memory (see the module documentation).
#[derive(Debug, Default)]
pub struct MemoryKeyValue(Mutex<BTreeMap<String, Entry>>);

impl MemoryKeyValue {
    /// An empty space.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> Result<MutexGuard<'_, BTreeMap<String, Entry>>, StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError("the in-memory store was poisoned by a panic".into()))
    }

    /// Everything a reader of the stored bytes would see in the clear: the
    /// values written with [`KeyValue::put`], concatenated (lossy UTF-8).
    pub fn clear_text(&self) -> String {
        let Ok(map) = self.map() else {
            return String::new();
        };
        map.values()
            .filter_map(|e| match e {
                Entry::Clear(v) => Some(String::from_utf8_lossy(v).into_owned()),
                Entry::Sealed(_) => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl KeyValue for MemoryKeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map()?.get(key).map(Entry::stored))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.map()?
            .insert(key.to_owned(), Entry::Clear(value.to_vec()));
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.map()?.remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .map()?
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.stored()))
            .collect())
    }

    fn put_sealed(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.map()?
            .insert(key.to_owned(), Entry::Sealed(value.to_vec()));
        Ok(())
    }

    fn get_sealed(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.map()?.get(key) {
            None => Ok(None),
            Some(Entry::Sealed(v)) => Ok(Some(v.clone())),
            Some(Entry::Clear(_)) => Err(StoreError(format!(
                "{key} was not written sealed: it does not decrypt"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_stay_apart_from_clear_ones() {
        let kv = MemoryKeyValue::new();
        kv.put("a/name", b"alice").unwrap();
        kv.put_sealed("a/password", b"hunter2").unwrap();
        kv.put("b/other", b"x").unwrap();
        assert_eq!(
            kv.get_sealed("a/password").unwrap().as_deref(),
            Some(&b"hunter2"[..])
        );
        assert!(kv.get_sealed("a/name").is_err());
        assert_eq!(kv.get_sealed("a/missing").unwrap(), None);
        let listed = kv.list("a/").unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[1].1.starts_with(SEALED_MARKER));
        assert!(!kv.clear_text().contains("hunter2"));
        assert!(kv.clear_text().contains("alice"));
        kv.delete("a/password").unwrap();
        assert_eq!(kv.get("a/password").unwrap(), None);
    }
}
