//! Session actors: one task per (bridge, user) that owns the bridge's
//! [`Session`] and runs the user's actions one at a time, in order.
//!
//! The task is its own supervisor. A panic or an internal error in
//! `Network::connect` or `Session::act`, or a panic in a task the session
//! started through its [`Spawner`], ends that incarnation of the session:
//! the failure is reported to the gateway (which tells the user), the
//! session is closed, its background tasks aborted, and after a backoff
//! (doubling, capped, with jitter) it is connected again. Actions waiting
//! in the inbox are kept across restarts. A login the network refuses for
//! good (bad or expired credentials) parks the session: further actions
//! fail with `not-authorized` until the user registers again.
//!
//! Nothing here knows XMPP: results and failures go back to the gateway as
//! [`Report`]s.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_bridge::network::panic_message;
use ferry_bridge::{
    Account, Action, BridgeError, CloseReason, Envelope, ErrorKind, EventSink, FailureWatch,
    FormValues, KeyValue, LoginError, Network, Outcome, Session, SessionContext, Spawner, UserId,
};
use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the gateway does with the result of an action.
pub type Then = Box<dyn FnOnce(&mut super::router::Gateway, Result<Outcome, BridgeError>) + Send>;

/// One action for a session, with what to do with its result.
pub struct Job {
    /// The action.
    pub action: Action,
    /// The continuation, run on the gateway's task.
    pub then: Then,
}

/// What a session task tells the gateway.
pub enum Report {
    /// An action finished.
    Done {
        /// The continuation.
        then: Then,
        /// The result.
        result: Result<Outcome, BridgeError>,
    },
    /// The session is connected (`Network::connect` returned).
    Up {
        /// Whose.
        user: UserId,
        /// Which incarnation.
        generation: u64,
    },
    /// The session failed and restarts after `retry_in`.
    Fault {
        /// Whose.
        user: UserId,
        /// What happened, for the user.
        message: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// The network refused the login. `retry_in` is `None` when the user
    /// must register again.
    LoginFailed {
        /// Whose.
        user: UserId,
        /// Why.
        error: LoginError,
        /// When it is tried again, if it is.
        retry_in: Option<Duration>,
    },
    /// The task ended (closed).
    Ended {
        /// Whose.
        user: UserId,
        /// Which incarnation.
        generation: u64,
    },
}

/// Everything a session task needs.
pub struct Setup {
    /// Whose session.
    pub user: UserId,
    /// The bridge.
    pub network: Arc<dyn Network>,
    /// Reads the stored account (decrypted) when (re)connecting.
    pub account: Box<dyn Fn() -> Result<Option<Account>, String> + Send + Sync>,
    /// Reads the preferences (defaults filled in) when (re)connecting.
    pub preferences: Box<dyn Fn() -> FormValues + Send + Sync>,
    /// The user's key/value space.
    pub kv: Arc<dyn KeyValue>,
    /// The user's directory.
    pub data_dir: PathBuf,
    /// Where events go.
    pub events: mpsc::Sender<Envelope>,
    /// Where reports go.
    pub reports: mpsc::UnboundedSender<Report>,
    /// Incarnation number, echoed in reports.
    pub generation: u64,
    /// First restart delay.
    pub backoff_min: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// The network's name and limits, checked before each action.
    pub limits: (String, ferry_bridge::Limits),
    /// For the limits' questions to file servers.
    pub http: super::upload::LazyHttp,
}

/// A running session task.
pub struct Handle {
    /// Boxed: a channel allocates room for 32 of its items at a time, and a
    /// `Job` is a few hundred bytes (~11 KB per idle session unboxed).
    tx: mpsc::UnboundedSender<Box<Job>>,
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
    task: JoinHandle<()>,
    /// Incarnation number.
    pub generation: u64,
}

impl Handle {
    /// Queues an action. Returns it back when the task is gone.
    pub fn send(&self, job: Job) -> Result<(), Box<Job>> {
        self.tx.send(Box::new(job)).map_err(|e| e.0)
    }

    /// Asks the session to close; returns a future that resolves once it
    /// has (or after `timeout`).
    pub fn close(self, reason: CloseReason, timeout: Duration) -> impl Future<Output = ()> {
        if let Ok(mut r) = self.reason.lock() {
            *r = Some(reason);
        }
        self.cancel.cancel();
        let task = self.task;
        async move {
            let abort = task.abort_handle();
            if tokio::time::timeout(timeout, task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts a session task.
pub fn start(setup: Setup) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let reason = Arc::new(Mutex::new(None));
    let generation = setup.generation;
    let task = tokio::spawn(run(setup, rx, cancel.clone(), reason.clone()));
    Handle {
        tx,
        cancel,
        reason,
        task,
        generation,
    }
}

/// How one incarnation of a session ended.
enum End {
    /// Asked to close.
    Cancelled,
    /// Failed; restart.
    Failed(String),
    /// The gateway dropped the handle.
    Gone,
}

fn is_fatal(e: &LoginError) -> bool {
    matches!(
        e,
        LoginError::BadCredentials(_) | LoginError::Expired(_) | LoginError::InvalidField { .. }
    )
}

/// Jitter in [0, max/4], from the clock (good enough to spread restarts).
fn jitter(max: Duration) -> Duration {
    let nanos = Instant::now().elapsed().subsec_nanos() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    let quarter = max.as_millis() as u64 / 4;
    if quarter == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(nanos % quarter)
}

fn backoff(setup: &Setup, attempt: u32) -> Duration {
    let base = setup
        .backoff_min
        .saturating_mul(1u32 << attempt.min(16))
        .min(setup.backoff_max);
    base + jitter(base)
}

async fn run(
    setup: Setup,
    mut inbox: mpsc::UnboundedReceiver<Box<Job>>,
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
) {
    let user = setup.user.clone();
    let mut attempt: u32 = 0;
    'outer: loop {
        if cancel.is_cancelled() {
            break;
        }
        // A watch, not a channel: a channel reserves a block of 32
        // failures per session, and only the first one matters.
        let (fail_tx, mut fail_rx) = FailureWatch::new();
        let spawner = Spawner::new(user.clone(), fail_tx);
        let account = match (setup.account)() {
            Ok(a) => a,
            Err(e) => {
                let retry_in = backoff(&setup, attempt);
                let _ = setup.reports.send(Report::Fault {
                    user: user.clone(),
                    message: format!("could not read the account: {e}"),
                    retry_in,
                });
                attempt = attempt.saturating_add(1);
                if wait(&cancel, &mut inbox, retry_in, None).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let ctx = SessionContext {
            user: user.clone(),
            account,
            preferences: (setup.preferences)(),
            events: EventSink::new(user.clone(), setup.events.clone()),
            store: setup.kv.clone(),
            data_dir: setup.data_dir.clone(),
            spawner: spawner.clone(),
        };
        let connected = tokio::select! {
            r = AssertUnwindSafe(setup.network.connect(ctx)).catch_unwind() => r,
            _ = cancel.cancelled() => {
                spawner.abort_all();
                break;
            }
        };
        let retry_in;
        match connected {
            Ok(Ok(mut session)) => {
                let _ = setup.reports.send(Report::Up {
                    user: user.clone(),
                    generation: setup.generation,
                });
                let started = Instant::now();
                let end = serve(&mut *session, &mut inbox, &mut fail_rx, &cancel, &setup).await;
                // The session closes first (it may still need its own tasks to
                // say goodbye, e.g. an IRC QUIT or a final sync); whatever it
                // left running is aborted afterwards.
                match end {
                    End::Cancelled | End::Gone => {
                        let why = reason
                            .lock()
                            .ok()
                            .and_then(|mut r| r.take())
                            .unwrap_or(CloseReason::Shutdown);
                        close(&mut *session, why).await;
                        spawner.abort_all();
                        break 'outer;
                    }
                    End::Failed(message) => {
                        close(&mut *session, CloseReason::Restart).await;
                        spawner.abort_all();
                        if started.elapsed() > Duration::from_secs(60) {
                            attempt = 0;
                        }
                        retry_in = backoff(&setup, attempt);
                        let _ = setup.reports.send(Report::Fault {
                            user: user.clone(),
                            message,
                            retry_in,
                        });
                    }
                }
            }
            Ok(Err(error)) => {
                spawner.abort_all();
                if is_fatal(&error) {
                    let message = error.to_string();
                    let _ = setup.reports.send(Report::LoginFailed {
                        user: user.clone(),
                        error,
                        retry_in: None,
                    });
                    // Parked until closed: actions fail with the reason.
                    let refusal = BridgeError::new(
                        ErrorKind::NotAuthorized,
                        format!("Not logged in: {message}. Register again with new credentials."),
                    );
                    let _ =
                        wait(&cancel, &mut inbox, Duration::MAX, Some((&refusal, &setup))).await;
                    break;
                }
                retry_in = backoff(&setup, attempt);
                let _ = setup.reports.send(Report::LoginFailed {
                    user: user.clone(),
                    error,
                    retry_in: Some(retry_in),
                });
            }
            Err(panic) => {
                spawner.abort_all();
                retry_in = backoff(&setup, attempt);
                let _ = setup.reports.send(Report::Fault {
                    user: user.clone(),
                    message: format!(
                        "the bridge crashed while connecting: {}",
                        panic_message(&*panic)
                    ),
                    retry_in,
                });
            }
        }
        attempt = attempt.saturating_add(1);
        if wait(&cancel, &mut inbox, retry_in, None).await.is_err() {
            break;
        }
    }
    // Whatever is still queued fails with a clear reason.
    inbox.close();
    while let Ok(job) = inbox.try_recv() {
        let _ = setup.reports.send(Report::Done {
            then: job.then,
            result: Err(BridgeError::unavailable("The session was closed.")),
        });
    }
    let _ = setup.reports.send(Report::Ended {
        user,
        generation: setup.generation,
    });
}

/// Waits `delay` (or until cancelled). When `refuse` is given, jobs that
/// arrive meanwhile fail with that error; otherwise they stay queued.
/// Err when the session must end.
async fn wait(
    cancel: &CancellationToken,
    inbox: &mut mpsc::UnboundedReceiver<Box<Job>>,
    delay: Duration,
    refuse: Option<(&BridgeError, &Setup)>,
) -> Result<(), ()> {
    let sleep = tokio::time::sleep(delay.min(Duration::from_secs(365 * 24 * 3600)));
    tokio::pin!(sleep);
    loop {
        match refuse {
            Some((err, setup)) => {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(()),
                    _ = &mut sleep => return Ok(()),
                    job = inbox.recv() => match job {
                        Some(job) => {
                            let _ = setup.reports.send(Report::Done {
                                then: job.then,
                                result: Err(err.clone()),
                            });
                        }
                        None => return Err(()),
                    },
                }
            }
            None => {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(()),
                    _ = &mut sleep => return Ok(()),
                }
            }
        }
    }
}

async fn close(session: &mut dyn Session, reason: CloseReason) {
    let closing = AssertUnwindSafe(session.close(reason)).catch_unwind();
    let _ = tokio::time::timeout(Duration::from_secs(5), closing).await;
}

async fn serve(
    session: &mut dyn Session,
    inbox: &mut mpsc::UnboundedReceiver<Box<Job>>,
    failures: &mut FailureWatch,
    cancel: &CancellationToken,
    setup: &Setup,
) -> End {
    loop {
        let job = tokio::select! {
            biased;
            // Jobs handed over before the close still run (a handover to
            // another instance must not drop the user's last messages).
            _ = cancel.cancelled() => match inbox.try_recv() {
                Ok(job) => job,
                Err(_) => return End::Cancelled,
            },
            f = failures.failed() => {
                return End::Failed(format!("the bridge's task {:?} crashed: {}", f.task, f.message));
            }
            job = inbox.recv() => match job {
                Some(job) => job,
                None => return End::Gone,
            },
        };
        let Job { action, then } = *job;
        let (network, limits) = &setup.limits;
        if let Err(e) = super::limits::check_files(limits, network, &action, &setup.http).await {
            let _ = setup.reports.send(Report::Done {
                then,
                result: Err(e),
            });
            continue;
        }
        let result = tokio::select! {
            biased;
            r = AssertUnwindSafe(session.act(action)).catch_unwind() => r,
            f = failures.failed() => {
                let message = format!("the bridge's task {:?} crashed: {}", f.task, f.message);
                let _ = setup.reports.send(Report::Done {
                    then,
                    result: Err(BridgeError::internal(format!("The session failed: {message}"))),
                });
                return End::Failed(message);
            }
        };
        match result {
            Ok(Ok(outcome)) => {
                let _ = setup.reports.send(Report::Done {
                    then,
                    result: Ok(outcome),
                });
            }
            Ok(Err(e)) => {
                let internal = e.kind == ErrorKind::Internal;
                let message = e.message.clone();
                let _ = setup.reports.send(Report::Done {
                    then,
                    result: Err(e),
                });
                if internal {
                    return End::Failed(format!("internal error: {message}"));
                }
            }
            Err(panic) => {
                let message = panic_message(&*panic);
                let _ = setup.reports.send(Report::Done {
                    then,
                    result: Err(BridgeError::internal(format!(
                        "The session crashed while doing this: {message}"
                    ))),
                });
                return End::Failed(format!("the bridge crashed: {message}"));
            }
        }
    }
}
