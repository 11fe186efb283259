//! When a session's matrix-sdk stores are open.
//!
//! Each session's state and crypto stores are SQLite databases of two
//! connections each (page cache, lookaside, schema and statements: about
//! 0.7 MiB of a session's memory). An account that nothing happens to does
//! not need them: the gate closes them ([`matrix_sdk::Client::pause`]) once
//! the session has been idle for `[matrix] store_idle_secs`, and opens them
//! again ([`matrix_sdk::Client::resume`]) before anything uses them. What
//! uses them takes a [`Hold`]: the core's actions, the joins they spawn,
//! and the sync loop while it syncs and delivers. While they are closed the
//! sync loop waits for news with a bare `/sync` long-poll that touches no
//! store (see `sync::wait_for_news`), and syncs for real once there is
//! some.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_bridge::BridgeError;
use matrix_sdk::Client;

/// Opens and closes one session's stores.
pub struct StoreGate {
    client: Client,
    /// Closed after this long without activity; `None`: never.
    idle_after: Option<Duration>,
    /// Whether the stores are open; held across opening and closing so
    /// that neither races a new [`Hold`].
    open: tokio::sync::Mutex<bool>,
    /// Holds alive, and when the stores were last used for something.
    usage: Mutex<Usage>,
}

struct Usage {
    holds: usize,
    last_active: Instant,
}

/// Keeps the stores open while it lives.
pub struct Hold {
    gate: Arc<StoreGate>,
    /// Whether dropping it counts as activity (an action: yes; a sync that
    /// brought nothing: no, see [`Hold::quiet`]).
    active: bool,
}

impl StoreGate {
    /// The gate of a client whose stores were just opened.
    pub fn new(client: Client, idle_after: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            client,
            idle_after,
            open: tokio::sync::Mutex::new(true),
            usage: Mutex::new(Usage {
                holds: 0,
                last_active: Instant::now(),
            }),
        })
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        // A poisoned lock only means a panic elsewhere: the counts hold.
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the stores if they are closed and keeps them open until the
    /// hold is dropped.
    pub async fn hold(self: &Arc<Self>) -> Result<Hold, BridgeError> {
        let mut open = self.open.lock().await;
        if !*open {
            self.client.resume().await.map_err(|e| {
                BridgeError::internal(format!("Matrix: cannot open the store again: {e}"))
            })?;
            *open = true;
            tracing::debug!("Matrix stores opened again");
        }
        self.usage().holds += 1;
        Ok(Hold {
            gate: self.clone(),
            active: true,
        })
    }

    /// Closes the stores if nothing holds them and nothing used them for
    /// `idle_after`; whether they are closed now.
    pub async fn close_if_idle(&self) -> bool {
        let Some(idle_after) = self.idle_after else {
            return false;
        };
        let mut open = self.open.lock().await;
        if !*open {
            return true;
        }
        {
            let usage = self.usage();
            if usage.holds > 0 || usage.last_active.elapsed() < idle_after {
                return false;
            }
        }
        match self.client.pause().await {
            Ok(()) => {
                *open = false;
                tracing::debug!("Matrix stores closed while the account is idle");
                true
            }
            Err(e) => {
                // Stay open: the stores work, only memory is not given back.
                tracing::warn!(error = %e, "cannot close the idle Matrix stores");
                if let Err(e) = self.client.resume().await {
                    tracing::warn!(error = %e, "cannot reopen the Matrix stores");
                }
                self.usage().last_active = Instant::now();
                false
            }
        }
    }

    /// Whether the stores are open now (tests).
    pub async fn is_open(&self) -> bool {
        *self.open.lock().await
    }
}

impl Hold {
    /// Dropping this hold does not count as activity (a sync that brought
    /// nothing to deliver).
    pub fn quiet(mut self) {
        self.active = false;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut usage = self.gate.usage();
        usage.holds = usage.holds.saturating_sub(1);
        if self.active {
            usage.last_active = Instant::now();
        }
    }
}
