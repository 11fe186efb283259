//! Whether a session has a matrix-sdk client in memory, and its stores
//! open.
//!
//! A logged-in matrix-sdk [`Client`] costs about 0.6 MiB even with its
//! SQLite stores closed: its broadcast channels, tasks, the olm machine and
//! the room state, plus the fragmentation they leave. An account that
//! nothing happens to needs none of it: to wait for news it only needs its
//! access token, the homeserver's URL, its sync position and the bridge's
//! shared HTTP client (see `sync::wait_for_news`). So once a session has
//! been idle for `[matrix] store_idle_secs`, the gate closes the stores
//! ([`Client::pause`]: in-flight operations finish, the WAL is
//! checkpointed, the connections close) and **drops the client**; before
//! anything uses it again the gate builds it again from the same stores
//! (the login restored from the stored session, as at start-up). What
//! lives only in the client's memory is then gone, which is harmless for
//! everything but a SAS verification in progress: while one may be
//! running (see [`Shared::in_verification`]) the gate only closes the
//! stores and keeps the client.
//!
//! What uses the client takes a [`Hold`]: the core's actions, the joins
//! they spawn, and the sync loop while it syncs and delivers. A [`Hold`]
//! carries the session's [`Ctx`], the only way to reach the client, so
//! nothing keeps a client alive past its hold; should something still
//! hold one when the gate needs it again, that one is opened again rather
//! than a second client built on the same stores.
//!
//! [`Shared::in_verification`]: crate::ctx::Shared::in_verification

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use ferry_bridge::BridgeError;
use matrix_sdk::Client;

use crate::account::StoredSession;
use crate::client::{self, Trust};
use crate::config::Config;
use crate::ctx::{Ctx, Shared};

/// Everything needed to build a session's client again.
pub struct Opener {
    /// Bridge settings.
    pub config: Arc<Config>,
    /// The bridge's shared HTTP client.
    pub http: matrix_sdk::reqwest::Client,
    /// The stored login.
    pub account: StoredSession,
    /// The directory of the session's stores.
    pub dir: PathBuf,
    /// The trust settings the client is built with.
    pub trust: Trust,
}

impl Opener {
    /// Builds the client on the session's stores and restores its login.
    pub async fn open(&self) -> Result<Client, BridgeError> {
        let client = client::open(
            &self.config,
            &self.http,
            &self.account.homeserver,
            &self.dir,
            &self.account.store_passphrase,
            self.trust,
        )
        .await?;
        client
            .matrix_auth()
            .restore_session(self.account.matrix_session(), Default::default())
            .await
            .map_err(|e| client::action_error("restoring the Matrix login", e))?;
        Ok(client)
    }
}

/// Where a session's client is.
enum State {
    /// Built, stores open.
    Open(Arc<Client>),
    /// Stores closed, the client kept (a verification may be running).
    Paused(Arc<Client>),
    /// No client: the session only waits for news. The weak reference
    /// finds a client something still held when it was dropped.
    Dropped(Weak<Client>),
}

/// Builds, opens, closes and drops one session's client.
pub struct StoreGate {
    opener: Opener,
    shared: Arc<Shared>,
    /// Closed after this long without activity; `None`: never.
    idle_after: Option<Duration>,
    /// Held across opening and closing so that neither races a new [`Hold`].
    state: tokio::sync::Mutex<State>,
    /// Holds alive, and when the client was last used for something.
    usage: Mutex<Usage>,
}

struct Usage {
    holds: usize,
    last_active: Instant,
}

/// Keeps the client built and its stores open while it lives; gives the
/// session's [`Ctx`].
pub struct Hold {
    /// The session's context; its `stores` is the gate this hold keeps.
    ctx: Ctx,
    /// Whether dropping it counts as activity (an action: yes; a sync that
    /// brought nothing: no, see [`Hold::quiet`]).
    active: bool,
}

/// The clients of every gate, by store directory: whether a session has a
/// client in memory, as tests see it.
static CLIENTS: LazyLock<Mutex<HashMap<PathBuf, Weak<Client>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn clients() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Weak<Client>>> {
    CLIENTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the session whose user directory is `user_dir` (or any
/// directory under it) has a matrix-sdk client in memory now, held by
/// anything (tests of the idle state).
#[doc(hidden)]
pub fn has_client(user_dir: &Path) -> bool {
    clients()
        .iter()
        .any(|(dir, c)| dir.starts_with(user_dir) && c.strong_count() > 0)
}

impl StoreGate {
    /// The gate of a client just built by `opener`.
    pub fn new(
        opener: Opener,
        client: Client,
        shared: Arc<Shared>,
        idle_after: Option<Duration>,
    ) -> Arc<Self> {
        let client = Arc::new(client);
        clients().insert(opener.dir.clone(), Arc::downgrade(&client));
        Arc::new(Self {
            opener,
            shared,
            idle_after,
            state: tokio::sync::Mutex::new(State::Open(client)),
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

    /// The session's fixed parts.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The stored login the session runs on.
    pub fn account(&self) -> &StoredSession {
        &self.opener.account
    }

    /// The bridge's shared HTTP client.
    pub fn http(&self) -> &matrix_sdk::reqwest::Client {
        &self.opener.http
    }

    /// Builds the client or opens its stores as needed and keeps them until
    /// the hold is dropped.
    pub async fn hold(self: &Arc<Self>) -> Result<Hold, BridgeError> {
        let mut state = self.state.lock().await;
        let client = match &*state {
            State::Open(c) => c.clone(),
            State::Paused(c) => {
                let c = c.clone();
                resume(&c).await?;
                tracing::debug!(user = %self.shared.user, "Matrix stores opened again");
                c
            }
            State::Dropped(weak) => match weak.upgrade() {
                Some(c) => {
                    resume(&c).await?;
                    tracing::debug!(user = %self.shared.user, "Matrix client still held: stores opened again");
                    c
                }
                None => {
                    let c = Arc::new(self.opener.open().await?);
                    clients().insert(self.opener.dir.clone(), Arc::downgrade(&c));
                    tracing::debug!(user = %self.shared.user, "Matrix client built again from its stores");
                    c
                }
            },
        };
        *state = State::Open(client.clone());
        drop(state);
        self.usage().holds += 1;
        Ok(Hold {
            ctx: Ctx {
                shared: self.shared.clone(),
                client,
                account: self.opener.account.clone(),
                stores: self.clone(),
            },
            active: true,
        })
    }

    /// Closes the stores and drops the client if nothing holds it and
    /// nothing used it for `idle_after`; whether the session is idle (no
    /// open stores) now.
    pub async fn close_if_idle(&self) -> bool {
        let Some(idle_after) = self.idle_after else {
            return false;
        };
        let mut state = self.state.lock().await;
        let keep = self.shared.in_verification();
        let client = match &*state {
            State::Open(c) => c.clone(),
            State::Paused(c) if !keep => {
                // The verification is over: the client can go too.
                *state = State::Dropped(Arc::downgrade(c));
                tracing::debug!(user = %self.shared.user, "Matrix client dropped while the account is idle");
                return true;
            }
            State::Paused(_) | State::Dropped(_) => return true,
        };
        {
            let usage = self.usage();
            if usage.holds > 0 || usage.last_active.elapsed() < idle_after {
                return false;
            }
        }
        match client.pause().await {
            Ok(()) => {
                if keep {
                    *state = State::Paused(client);
                    tracing::debug!(user = %self.shared.user, "Matrix stores closed while the account is idle (client kept: verification)");
                } else {
                    *state = State::Dropped(Arc::downgrade(&client));
                    tracing::debug!(user = %self.shared.user, "Matrix client dropped while the account is idle");
                }
                true
            }
            Err(e) => {
                // Stay open: the client works, only memory is not given back.
                tracing::warn!(error = %e, "cannot close the idle Matrix stores");
                if let Err(e) = client.resume().await {
                    tracing::warn!(error = %e, "cannot reopen the Matrix stores");
                }
                self.usage().last_active = Instant::now();
                false
            }
        }
    }
}

async fn resume(client: &Client) -> Result<(), BridgeError> {
    client
        .resume()
        .await
        .map_err(|e| BridgeError::internal(format!("Matrix: cannot open the store again: {e}")))
}

impl Drop for StoreGate {
    fn drop(&mut self) {
        let mut clients = clients();
        if clients
            .get(&self.opener.dir)
            .is_some_and(|c| c.strong_count() == 0)
        {
            clients.remove(&self.opener.dir);
        }
    }
}

impl Hold {
    /// Dropping this hold does not count as activity (a sync that brought
    /// nothing to deliver).
    pub fn quiet(mut self) {
        self.active = false;
    }
}

impl std::ops::Deref for Hold {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut usage = self.ctx.stores.usage();
        usage.holds = usage.holds.saturating_sub(1);
        if self.active {
            usage.last_active = Instant::now();
        }
    }
}
