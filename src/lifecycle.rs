//! The bridge-wide part of each bridge: started with a [`BridgeContext`]
//! before its gateway serves anything, supervised while it runs, stopped
//! after every session closed.
//!
//! Supervision is the sessions' own: a panic in a task of the context's
//! spawner (or an error from [`Network::start`]) stops the bridge-wide part
//! — [`Network::stop`], then every task of the spawner aborted — and starts
//! it again after a backoff that doubles up to two minutes. The failure is
//! logged and counted in the bridge's error metric.
//!
//! This module also implements the [`UserRouter`] the context carries
//! ([`CoreUsers`]): events for a user go to the gateway's task as a
//! [`Routed`] request, owners of network addresses live in the bridge's
//! database.

use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::{
    BridgeContext, Event, Network, Registration, RouteError, Spawner, StoreError, TaskFailure,
    UserId, UserRouter, Users,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::access::AccessPolicy;
use crate::metrics::BridgeMetrics;
use crate::store::{KvScope, Store};

/// How long `Network::start` and `Network::stop` may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait before the bridge-wide part starts again.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// Events a bridge hands to a user ([`UserRouter::deliver`]), for the
/// gateway's task.
pub struct Routed {
    /// Whose.
    pub user: UserId,
    /// What happened.
    pub events: Vec<Event>,
    /// Answered once the events are processed and stored.
    pub done: oneshot::Sender<Result<(), RouteError>>,
}

/// The core's side of a bridge's [`UserRouter`].
pub struct CoreUsers {
    store: Store,
    access: AccessPolicy,
    registration: Registration,
    routed: mpsc::Sender<Routed>,
}

impl CoreUsers {
    /// A router for a bridge: its database and access policy, and the
    /// channel its gateway reads [`Routed`] requests from.
    pub fn router(
        store: Store,
        access: AccessPolicy,
        registration: Registration,
        routed: mpsc::Sender<Routed>,
    ) -> UserRouter {
        UserRouter::new(Arc::new(CoreUsers {
            store,
            access,
            registration,
            routed,
        }))
    }
}

#[async_trait::async_trait]
impl Users for CoreUsers {
    async fn deliver(&self, user: &UserId, events: Vec<Event>) -> Result<(), RouteError> {
        if !self.access.allows(user.as_str()) {
            return Err(RouteError::NotAllowed(user.clone()));
        }
        if self.registration == Registration::Required && self.store.user(user)?.is_none() {
            return Err(RouteError::NotRegistered(user.clone()));
        }
        let (done, answer) = oneshot::channel();
        self.routed
            .send(Routed {
                user: user.clone(),
                events,
                done,
            })
            .await
            .map_err(|_| RouteError::Closed)?;
        answer.await.map_err(|_| RouteError::Closed)?
    }

    async fn owner(&self, address: &str) -> Result<Option<UserId>, StoreError> {
        self.store.owner(address)
    }

    async fn set_owner(&self, address: &str, owner: Option<&UserId>) -> Result<(), StoreError> {
        self.store.set_owner(address, owner)
    }

    async fn owned_by(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        self.store.owned_by(user)
    }

    fn registered(&self) -> Vec<UserId> {
        match self.store.users() {
            Ok(users) => users.into_iter().map(|u| u.user).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the registered users");
                Vec::new()
            }
        }
    }
}

/// What a bridge's bridge-wide part runs with.
pub struct Lifecycle {
    name: String,
    network: Arc<dyn Network>,
    ctx: BridgeContext,
    failures: mpsc::UnboundedReceiver<TaskFailure>,
    metrics: Arc<BridgeMetrics>,
}

/// A running bridge-wide part.
pub struct Running {
    name: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Lifecycle {
    /// The bridge-wide part of a bridge: its context is made here (the
    /// bridge's own key/value space of `store`, a supervised spawner).
    pub fn new(
        name: &str,
        domain: &str,
        network: Arc<dyn Network>,
        store: &Store,
        public_url: Option<String>,
        users: UserRouter,
        metrics: Arc<BridgeMetrics>,
    ) -> Lifecycle {
        let (failures_tx, failures) = mpsc::unbounded_channel::<TaskFailure>();
        let ctx = BridgeContext {
            name: name.to_owned(),
            domain: domain.to_owned(),
            spawner: Spawner::bridge(failures_tx),
            store: store.kv(KvScope::Bridge),
            public_url,
            users,
        };
        Lifecycle {
            name: name.to_owned(),
            network,
            ctx,
            failures,
            metrics,
        }
    }

    /// The bridge's context (also given to its gateway, for bridge-wide
    /// commands).
    pub fn context(&self) -> BridgeContext {
        self.ctx.clone()
    }

    /// Starts the bridge-wide part (waits for the first `start` to
    /// return) and supervises it until [`Running::stop`].
    pub async fn start(mut self) -> Running {
        let ctx = self.ctx.clone();
        let failures = std::mem::replace(&mut self.failures, mpsc::unbounded_channel().1);
        let stop = CancellationToken::new();
        let first = start_once(&self, &ctx).await;
        let name = self.name.clone();
        let task = tokio::spawn(supervise(self, ctx, first, failures, stop.clone()));
        Running { name, stop, task }
    }
}

/// Calls `Network::start` once; the error to log when it failed.
async fn start_once(l: &Lifecycle, ctx: &BridgeContext) -> Result<(), String> {
    match tokio::time::timeout(START_TIMEOUT, l.network.start(ctx.clone())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.message),
        Err(_) => Err(format!(
            "it did not start within {} s",
            START_TIMEOUT.as_secs()
        )),
    }
}

/// Stops the bridge-wide part: `Network::stop`, then its tasks.
async fn stop_once(l: &Lifecycle, ctx: &BridgeContext) {
    if tokio::time::timeout(STOP_TIMEOUT, l.network.stop())
        .await
        .is_err()
    {
        tracing::warn!(bridge = %l.name, "the bridge did not stop within {} s", STOP_TIMEOUT.as_secs());
    }
    ctx.spawner.abort_all();
}

async fn supervise(
    l: Lifecycle,
    ctx: BridgeContext,
    mut result: Result<(), String>,
    mut failures: mpsc::UnboundedReceiver<TaskFailure>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let failure = match result {
            Err(e) => format!("the bridge could not start: {e}"),
            Ok(()) => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    f = failures.recv() => match f {
                        Some(f) => format!("the bridge's task {:?} crashed: {}", f.task, f.message),
                        None => break,
                    },
                }
            }
        };
        BridgeMetrics::inc(&l.metrics.errors);
        tracing::error!(
            bridge = %l.name,
            "{failure}; its bridge-wide part starts again in {} s",
            backoff.as_secs()
        );
        stop_once(&l, &ctx).await;
        // Tasks that failed meanwhile belong to the stopped incarnation.
        while failures.try_recv().is_ok() {}
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        result = start_once(&l, &ctx).await;
        if result.is_ok() {
            tracing::info!(bridge = %l.name, "the bridge-wide part runs again");
        }
    }
    stop_once(&l, &ctx).await;
}

impl Running {
    /// Stops the bridge-wide part and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        if tokio::time::timeout(STOP_TIMEOUT + Duration::from_secs(1), self.task)
            .await
            .is_err()
        {
            tracing::warn!(bridge = %self.name, "the bridge-wide part did not stop in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use ferry_bridge::{
        Account, AddressContext, AddressError, AddressRules, BridgeError, Capabilities, Form,
        FormValues, Limits, LoginError, NetworkInfo, Prompt, Session, SessionContext,
        SessionPolicy,
    };

    /// A bridge whose bridge-wide task panics on its first run.
    struct Flaky {
        info: NetworkInfo,
        starts: AtomicU32,
        stops: AtomicU32,
    }

    struct NoAddresses;

    impl AddressRules for NoAddresses {
        fn parse(
            &self,
            local: &str,
            _: Option<&str>,
            _: &AddressContext<'_>,
        ) -> Result<ferry_bridge::Address, AddressError> {
            Err(AddressError::new(local))
        }
        fn format(&self, _: &ferry_bridge::Address) -> (String, Option<String>) {
            (String::new(), None)
        }
        fn prompt(&self) -> Prompt {
            Prompt {
                description: String::new(),
                label: String::new(),
            }
        }
        fn from_prompt(
            &self,
            input: &str,
            _: &AddressContext<'_>,
        ) -> Result<ferry_bridge::Address, AddressError> {
            Err(AddressError::new(input))
        }
    }

    #[async_trait::async_trait]
    impl Network for Flaky {
        fn info(&self) -> &NetworkInfo {
            &self.info
        }
        fn address(&self) -> &dyn AddressRules {
            &NoAddresses
        }
        fn registration(&self) -> Form {
            Form::new("none")
        }
        async fn login(&self, _: &UserId, _: &FormValues) -> Result<Account, LoginError> {
            Err(LoginError::Unreachable("no".into()))
        }
        async fn connect(&self, _: SessionContext) -> Result<Box<dyn Session>, LoginError> {
            Err(LoginError::Unreachable("no".into()))
        }
        async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError> {
            let n = self.starts.fetch_add(1, Ordering::SeqCst);
            ctx.store.put("started", n.to_string().as_bytes())?;
            if n == 0 {
                ctx.spawner
                    .spawn("poller", async { panic!("poller broke") });
            } else {
                ctx.spawner.spawn("poller", std::future::pending());
            }
            Ok(())
        }
        async fn stop(&self) {
            self.stops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_crashed_bridge_task_restarts_the_bridge_wide_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key =
            Arc::new(crate::store::Key::load_or_create(&dir.path().join("key")).expect("key"));
        let store = Store::open(&dir.path().join("b.db"), key).expect("store");
        let network = Arc::new(Flaky {
            info: NetworkInfo {
                name: "Flaky".into(),
                gateway_type: "test".into(),
                registration: Registration::Optional,
                sessions: SessionPolicy::OnDemand,
                capabilities: Capabilities::none(),
                limits: Limits::default(),
            },
            starts: AtomicU32::new(0),
            stops: AtomicU32::new(0),
        });
        let metrics = Arc::new(BridgeMetrics::default());
        let (routed, _rx) = mpsc::channel(1);
        let access = AccessPolicy::new(["*@x"], Vec::<String>::new()).expect("access");
        let running = Lifecycle::new(
            "flaky",
            "flaky.x",
            network.clone(),
            &store,
            Some("http://127.0.0.1:1/bridge/flaky".into()),
            CoreUsers::router(store.clone(), access, Registration::Optional, routed),
            metrics.clone(),
        )
        .start()
        .await;
        for _ in 0..100 {
            if network.starts.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(network.starts.load(Ordering::SeqCst), 2, "started again");
        assert_eq!(
            network.stops.load(Ordering::SeqCst),
            1,
            "stopped after the crash"
        );
        assert_eq!(metrics.errors.load(Ordering::Relaxed), 1);
        // The bridge's own space, not a user's.
        let kv = store.kv(KvScope::Bridge);
        assert_eq!(kv.get("started").expect("read").as_deref(), Some(&b"1"[..]));
        running.stop().await;
        assert_eq!(
            network.stops.load(Ordering::SeqCst),
            2,
            "stopped at shutdown"
        );
    }
}
