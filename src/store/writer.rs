//! The one writer of a database: a thread that takes every write waiting in
//! its queue and applies them in one transaction, in the order they were
//! issued.
//!
//! Each write runs inside its own savepoint, so one failing write is rolled
//! back and reported alone while the rest of the batch commits. Every write
//! gets a sequence number when it is queued; after a commit the writer
//! publishes the highest committed number, which is how readers wait for
//! the writes issued before them ([`Writer::wait_committed`]).
//!
//! How a batch is applied is the backend's ([`Apply`]): SQLite here, on
//! the writer's own connection; PostgreSQL in [`super::postgres`], which
//! retries a batch on a new connection when the database went away, so
//! that a write is acknowledged only once it is committed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_bridge::StoreError;
use rusqlite::{Connection, TransactionBehavior};

use super::sql::{Row, Stmt, Value};

/// The most writes gathered in one transaction (readers wait for the
/// transaction in progress: it must stay short).
const MAX_BATCH: usize = 2_000;

/// A write: statements run in order inside the batch, undone together
/// when one fails.
pub(crate) type Op = Vec<Stmt>;

/// What a write came to: the rows its statements returned, or why it
/// failed.
pub(crate) type Outcome = Result<Vec<Row>, StoreError>;

/// A backend's way to apply a batch of writes in one transaction.
pub(crate) trait Apply: Send + 'static {
    /// Applies `ops` in one transaction, in order, each undone alone when
    /// it fails; returns each one's outcome. `closing` tells that the
    /// store is being dropped (a backend that retries gives up then).
    /// An outcome holds the rows the op's statements returned (`RETURNING`,
    /// a `SELECT` inside the write), in order.
    fn apply(&mut self, ops: &[Op], closing: &dyn Fn() -> bool) -> Vec<Outcome>;
}

/// Where the outcome of a write goes, if anyone waits for it.
pub(crate) enum Reply {
    /// A thread blocked on the result.
    Blocking(mpsc::SyncSender<Outcome>),
    /// A task awaiting the result.
    Async(tokio::sync::oneshot::Sender<Outcome>),
}

impl Reply {
    fn send(self, result: Outcome) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

struct Queued {
    seq: u64,
    /// What it is, for the log when it fails.
    what: &'static str,
    op: Op,
    reply: Option<Reply>,
}

struct Committed {
    seq: u64,
    /// The writer thread has ended (it only does when the store is
    /// dropped, or after a panic).
    stopped: bool,
}

/// Counters of the writer, for tests, benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Writes applied.
    pub writes: u64,
    /// Transactions committed.
    pub commits: u64,
}

/// The queue in front of the writer thread.
pub(crate) struct Writer {
    /// The next sequence number and the queue, under one lock so that
    /// sequence numbers enter the queue in order.
    queue: Mutex<(u64, Option<mpsc::Sender<Queued>>)>,
    committed: Mutex<Committed>,
    changed: Condvar,
    writes: AtomicU64,
    commits: AtomicU64,
    /// Set when the store is dropped.
    closing: AtomicBool,
    /// Held by a test to keep the writer from starting a batch.
    #[cfg(test)]
    pub(crate) gate: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(
        conn: Box<dyn Apply>,
        name: String,
    ) -> std::io::Result<std::sync::Arc<Writer>> {
        let (tx, rx) = mpsc::channel::<Queued>();
        let writer = std::sync::Arc::new(Writer {
            queue: Mutex::new((0, Some(tx))),
            committed: Mutex::new(Committed {
                seq: 0,
                stopped: false,
            }),
            changed: Condvar::new(),
            writes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            #[cfg(test)]
            gate: Mutex::new(()),
            thread: Mutex::new(None),
        });
        let shared = std::sync::Arc::downgrade(&writer);
        let handle = std::thread::Builder::new()
            .name(format!("store-{name}"))
            .spawn(move || {
                let guard = StopGuard(shared.clone());
                run(conn, rx, &shared);
                drop(guard);
            })?;
        if let Ok(mut t) = writer.thread.lock() {
            *t = Some(handle);
        }
        Ok(writer)
    }

    /// Queues a write and returns its sequence number.
    pub(crate) fn submit(
        &self,
        what: &'static str,
        op: Op,
        reply: Option<Reply>,
    ) -> Result<u64, StoreError> {
        let mut queue = self
            .queue
            .lock()
            .map_err(|_| StoreError("the database writer failed".into()))?;
        let seq = queue.0 + 1;
        let sent = match &queue.1 {
            Some(tx) => tx
                .send(Queued {
                    seq,
                    what,
                    op,
                    reply,
                })
                .is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError("the database writer has stopped".into()));
        }
        queue.0 = seq;
        Ok(seq)
    }

    /// The sequence number of the last write queued.
    pub(crate) fn issued(&self) -> u64 {
        self.queue.lock().map(|q| q.0).unwrap_or(0)
    }

    /// Blocks until every write up to `seq` is committed (at most
    /// `limit`, when given: then an error says the database is
    /// unavailable).
    pub(crate) fn wait_committed(
        &self,
        seq: u64,
        limit: Option<Duration>,
    ) -> Result<(), StoreError> {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut c = self
            .committed
            .lock()
            .map_err(|_| StoreError("the database writer failed".into()))?;
        while c.seq < seq {
            if c.stopped {
                return Err(StoreError("the database writer has stopped".into()));
            }
            c = match deadline {
                None => self
                    .changed
                    .wait(c)
                    .map_err(|_| StoreError("the database writer failed".into()))?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(StoreError(
                            "the database is unavailable (writes are waiting for it)".into(),
                        ));
                    }
                    self.changed
                        .wait_timeout(c, left)
                        .map_err(|_| StoreError("the database writer failed".into()))?
                        .0
                }
            };
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            writes: self.writes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, seq: u64) {
        if let Ok(mut c) = self.committed.lock() {
            c.seq = c.seq.max(seq);
        }
        self.changed.notify_all();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what is queued and end.
        self.closing.store(true, Ordering::Relaxed);
        if let Ok(mut q) = self.queue.lock() {
            q.1 = None;
        }
        if let Ok(mut t) = self.thread.lock()
            && let Some(handle) = t.take()
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

/// Marks the writer stopped when its thread ends, however it ends, so that
/// readers waiting for it get an error instead of waiting forever.
struct StopGuard(std::sync::Weak<Writer>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if let Some(w) = self.0.upgrade() {
            if let Ok(mut c) = w.committed.lock() {
                c.stopped = true;
            }
            w.changed.notify_all();
        }
    }
}

fn run(mut conn: Box<dyn Apply>, rx: mpsc::Receiver<Queued>, shared: &std::sync::Weak<Writer>) {
    let mut batch: Vec<Queued> = Vec::new();
    while let Ok(first) = rx.recv() {
        #[cfg(test)]
        if let Some(w) = shared.upgrade() {
            drop(w.gate.lock());
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let last_seq = batch.last().map(|q| q.seq).unwrap_or(0);
        let count = batch.len() as u64;
        let ops: Vec<Op> = batch
            .iter_mut()
            .map(|q| std::mem::take(&mut q.op))
            .collect();
        let closing = || {
            shared
                .upgrade()
                .is_none_or(|w| w.closing.load(Ordering::Relaxed))
        };
        let mut results = conn.apply(&ops, &closing).into_iter();
        let outcomes: Vec<_> = batch
            .drain(..)
            .map(|q| {
                let result = results
                    .next()
                    .unwrap_or_else(|| Err(StoreError("not applied".into())))
                    .map_err(|e| {
                        tracing::error!("database: {} failed: {}", q.what, e.0);
                        StoreError(format!("{} failed: {}", q.what, e.0))
                    });
                (q.reply, result)
            })
            .collect();
        if let Some(w) = shared.upgrade() {
            w.writes.fetch_add(count, Ordering::Relaxed);
            w.commits.fetch_add(1, Ordering::Relaxed);
            w.publish(last_seq);
        }
        for (reply, result) in outcomes {
            if let Some(reply) = reply {
                reply.send(result);
            }
        }
    }
}

/// The SQLite writer: the writer's own connection.
pub(crate) struct SqliteApply(pub(crate) Connection);

impl Apply for SqliteApply {
    fn apply(&mut self, ops: &[Op], _closing: &dyn Fn() -> bool) -> Vec<Outcome> {
        apply_sqlite(&mut self.0, ops)
    }
}

/// Binds neutral values to a SQLite statement.
pub(crate) fn sqlite_params(params: &[Value]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(n) => rusqlite::types::Value::Integer(*n),
            Value::Bool(b) => rusqlite::types::Value::Integer(i64::from(*b)),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
        })
        .collect()
}

/// Runs one write inside its own savepoint of the batch's transaction, so
/// that a failing write is undone alone. The savepoint statements are
/// prepared once and cached (`Connection::savepoint` parses two statements
/// for every write).
fn savepointed(conn: &Connection, op: &Op) -> rusqlite::Result<Vec<Row>> {
    conn.prepare_cached("SAVEPOINT w")?.execute([])?;
    let mut rows = Vec::new();
    let result = op.iter().try_for_each(|stmt| {
        let mut st = conn.prepare_cached(stmt.sql.sqlite())?;
        if st.column_count() == 0 {
            st.execute(rusqlite::params_from_iter(sqlite_params(&stmt.params)))
                .map(drop)
        } else {
            rows.extend(super::sqlite::rows(&mut st, &stmt.params)?);
            Ok(())
        }
    });
    match result {
        Ok(()) => conn.prepare_cached("RELEASE w")?.execute([]).map(|_| rows),
        Err(e) => {
            let _ = conn
                .prepare_cached("ROLLBACK TO w")
                .and_then(|mut st| st.execute([]));
            let _ = conn
                .prepare_cached("RELEASE w")
                .and_then(|mut st| st.execute([]));
            Err(e)
        }
    }
}

/// Applies a batch in one transaction; returns each write's outcome.
fn apply_sqlite(conn: &mut Connection, ops: &[Op]) -> Vec<Outcome> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!("database: cannot begin a transaction: {e}");
            return ops
                .iter()
                .map(|_| Err(StoreError(format!("cannot begin a transaction: {e}"))))
                .collect();
        }
    };
    let mut outcomes: Vec<Outcome> = ops
        .iter()
        .map(|op| savepointed(&tx, op).map_err(|e| StoreError(e.to_string())))
        .collect();
    if let Err(e) = tx.commit() {
        tracing::error!("database: commit failed: {e}");
        for o in &mut outcomes {
            *o = Err(StoreError(format!("commit failed: {e}")));
        }
    }
    outcomes
}
