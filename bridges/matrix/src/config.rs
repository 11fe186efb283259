//! The `[matrix]` section of `ferry.toml`: the bridge's own keys (the core
//! strips `enabled`, `domain`, `secret` and `secret_file` before handing the
//! section over).

use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::HostPolicy;
use serde::Deserialize;

/// Settings of the Matrix bridge.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Default name of the Matrix device ferry creates for each user (the
    /// registration form lets the user change it).
    pub device_name: String,
    /// How long one `/sync` request waits for news on the homeserver, in
    /// seconds.
    pub sync_timeout_secs: u64,
    /// Timeout of every other request to the homeserver, in seconds.
    pub request_timeout_secs: u64,
    /// Messages per room asked for in each sync. A room with more news than
    /// this since the last sync is completed from `/messages` (see
    /// `gap_fill_limit`).
    pub timeline_limit: u32,
    /// After a downtime, at most this many missed events per room are
    /// fetched to fill the gap between the last delivered message and the
    /// first one of the sync.
    pub gap_fill_limit: u32,
    /// Largest number of messages one history request (MAM backfill) may ask
    /// the homeserver for.
    pub history_fetch_limit: u32,
    /// Allow homeservers reached over plain `http://` (only sensible on
    /// loopback, as in tests).
    pub allow_insecure_http: bool,
    /// Largest file, in bytes, ferry downloads from Matrix or uploads to it.
    /// Bigger files become a message with a note instead.
    pub max_media_bytes: u64,
    /// Page cache of each SQLite database of a user's Matrix store, in KiB
    /// (memory per session against disk reads).
    pub store_cache_kib: u32,
    /// Seconds without activity after which a session closes its SQLite
    /// stores and drops its matrix-sdk client until the homeserver has news
    /// for it (see `stores.rs`); 0 keeps them.
    pub store_idle_secs: u64,
    /// The hosts the bridge may connect to (the section's `allowed_hosts`
    /// and `denied_hosts`, which belong to the core): not a key of its
    /// own, [`crate::build`] sets it.
    #[serde(skip)]
    pub hosts: Arc<HostPolicy>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device_name: "Ferry".into(),
            sync_timeout_secs: 30,
            request_timeout_secs: 60,
            timeline_limit: 50,
            gap_fill_limit: 1000,
            history_fetch_limit: 100,
            allow_insecure_http: false,
            max_media_bytes: 50 * 1024 * 1024,
            store_cache_kib: 256,
            store_idle_secs: 30,
            hosts: Arc::default(),
        }
    }
}

impl Config {
    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.device_name.trim().is_empty() {
            return Err("[matrix] device_name must not be empty".into());
        }
        if self.sync_timeout_secs == 0 || self.sync_timeout_secs > 600 {
            return Err("[matrix] sync_timeout_secs must be between 1 and 600".into());
        }
        if self.request_timeout_secs == 0 {
            return Err("[matrix] request_timeout_secs must be at least 1".into());
        }
        if self.timeline_limit == 0 || self.timeline_limit > 1000 {
            return Err("[matrix] timeline_limit must be between 1 and 1000".into());
        }
        if self.history_fetch_limit == 0 || self.history_fetch_limit > 1000 {
            return Err("[matrix] history_fetch_limit must be between 1 and 1000".into());
        }
        Ok(())
    }

    /// The sync long-poll timeout.
    pub fn sync_timeout(&self) -> Duration {
        Duration::from_secs(self.sync_timeout_secs)
    }

    /// How long a session stays idle before closing its stores (`None`:
    /// never).
    pub fn store_idle(&self) -> Option<Duration> {
        (self.store_idle_secs > 0).then(|| Duration::from_secs(self.store_idle_secs))
    }

    /// The timeout of other requests.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_refused() {
        Config::default().validate().expect("defaults valid");
        let c: Config = serde_json::from_str(r#"{"allow_insecure_http": true}"#).expect("parses");
        assert!(c.allow_insecure_http);
        assert_eq!(c.device_name, "Ferry");
        let err = serde_json::from_str::<Config>(r#"{"device": "x"}"#).expect_err("unknown key");
        assert!(err.to_string().contains("unknown field"), "{err}");
        let bad = Config {
            timeline_limit: 0,
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }
}
