//! What the bridge's parts share: the configuration, and once the
//! bridge-wide part runs ([`crate::network`]'s `start`), the backend, the
//! outgoing queue and the core's [`BridgeContext`].
//!
//! The bridge's own keys in its key/value space (besides the queue's
//! `out/`, `sent/`, `bid/`): `region/<user>` the region given at
//! registration, `own/<user>` (sealed) a bring-your-own Twilio account,
//! `group/<user>/<id>` the members of a group text.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_bridge::{BridgeContext, BridgeError, ErrorKind, UserId};

use crate::backend::twilio::Twilio;
use crate::backend::{Backend, OwnAccount};
use crate::config::Config;
use crate::number::Region;
use crate::outbox::Outbox;

/// The running bridge-wide part.
#[derive(Clone)]
pub(crate) struct Runtime {
    /// What the core gave at start.
    pub ctx: BridgeContext,
    /// The backend texts go through.
    pub backend: Arc<dyn Backend>,
    /// The Twilio backend again, when it is the one (account checks).
    pub twilio: Option<Arc<Twilio>>,
    /// The outgoing queue.
    pub outbox: Arc<Outbox>,
    /// Where backends reach the webhooks (`…/bridge/sms`).
    pub public_url: String,
}

/// Shared by the network, its sessions, its address rules and webhooks.
pub(crate) struct Shared {
    pub config: Config,
    runtime: Mutex<Option<Runtime>>,
    sent_times: Mutex<HashMap<UserId, VecDeque<Instant>>>,
}

impl Shared {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            runtime: Mutex::new(None),
            sent_times: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<Runtime>> {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bridge-wide part, or an error saying it is not running.
    pub fn runtime(&self) -> Result<Runtime, BridgeError> {
        self.slot().clone().ok_or_else(|| {
            BridgeError::unavailable("the SMS bridge is starting or stopped: try again shortly")
        })
    }

    pub fn set_runtime(&self, runtime: Option<Runtime>) {
        *self.slot() = runtime;
    }

    /// The region a user gave at registration.
    pub fn registered_region(&self, user: &UserId) -> Option<Region> {
        let rt = self.slot().clone()?;
        let raw = rt.ctx.store.get(&region_key(user)).ok()??;
        String::from_utf8(raw).ok()?.parse().ok()
    }

    /// A user's own Twilio account (bring-your-own mode).
    pub fn own_account(&self, user: &str) -> Option<OwnAccount> {
        let rt = self.slot().clone()?;
        let raw = rt.ctx.store.get_sealed(&own_key(user)).ok()??;
        serde_json::from_slice(&raw).ok()
    }

    /// Counts a text against the user's rate limit; an error when over it.
    pub fn take_rate(&self, user: &UserId, texts: usize) -> Result<(), BridgeError> {
        let limit = self.config.rate_limit_per_minute as usize;
        if limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut all = self.sent_times.lock().unwrap_or_else(|p| p.into_inner());
        let times = all.entry(user.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() + texts > limit {
            let wait = times
                .front()
                .map(|t| {
                    60u64
                        .saturating_sub(now.duration_since(*t).as_secs())
                        .max(1)
                })
                .unwrap_or(60);
            return Err(BridgeError::new(
                ErrorKind::ResourceConstraint,
                format!("rate limit: at most {limit} texts a minute; try again in {wait} seconds"),
            ));
        }
        times.extend(std::iter::repeat_n(now, texts));
        Ok(())
    }
}

pub(crate) fn region_key(user: &UserId) -> String {
    format!("region/{user}")
}

pub(crate) fn own_key(user: &str) -> String {
    format!("own/{user}")
}
