//! The one writer of a database: a thread that takes every write waiting in
//! its queue and applies them in one transaction, in the order they were
//! issued.
//!
//! Each write runs inside its own savepoint, so one failing write is rolled
//! back and reported alone while the rest of the batch commits. Every write
//! gets a sequence number when it is queued; after a commit the writer
//! publishes the highest committed number, which is how readers wait for
//! the writes issued before them ([`Writer::wait_committed`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::thread::JoinHandle;

use ferry_bridge::StoreError;
use rusqlite::{Connection, TransactionBehavior};

/// The most writes gathered in one transaction (readers wait for the
/// transaction in progress: it must stay short).
const MAX_BATCH: usize = 2_000;

/// A write: runs against the writer's connection inside the batch.
pub(crate) type Op = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

/// Where the outcome of a write goes, if anyone waits for it.
pub(crate) enum Reply {
    /// A thread blocked on the result.
    Blocking(mpsc::SyncSender<Result<(), StoreError>>),
    /// A task awaiting the result.
    Async(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    fn send(self, result: Result<(), StoreError>) {
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
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(conn: Connection, name: String) -> std::io::Result<std::sync::Arc<Writer>> {
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

    /// Blocks until every write up to `seq` is committed.
    pub(crate) fn wait_committed(&self, seq: u64) -> Result<(), StoreError> {
        let mut c = self
            .committed
            .lock()
            .map_err(|_| StoreError("the database writer failed".into()))?;
        while c.seq < seq {
            if c.stopped {
                return Err(StoreError("the database writer has stopped".into()));
            }
            c = self
                .changed
                .wait(c)
                .map_err(|_| StoreError("the database writer failed".into()))?;
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

fn run(mut conn: Connection, rx: mpsc::Receiver<Queued>, shared: &std::sync::Weak<Writer>) {
    let mut batch: Vec<Queued> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let last_seq = batch.last().map(|q| q.seq).unwrap_or(0);
        let count = batch.len() as u64;
        let outcomes = apply(&mut conn, &mut batch);
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

/// Runs one write inside its own savepoint of the batch's transaction, so
/// that a failing write is undone alone. The savepoint statements are
/// prepared once and cached (`Connection::savepoint` parses two statements
/// for every write).
fn savepointed(conn: &Connection, op: Op) -> rusqlite::Result<()> {
    conn.prepare_cached("SAVEPOINT w")?.execute([])?;
    match op(conn) {
        Ok(()) => conn.prepare_cached("RELEASE w")?.execute([]).map(drop),
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

/// Applies a batch in one transaction; returns each write's reply and
/// outcome.
fn apply(
    conn: &mut Connection,
    batch: &mut Vec<Queued>,
) -> Vec<(Option<Reply>, Result<(), StoreError>)> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!("database: cannot begin a transaction: {e}");
            for q in batch.drain(..) {
                outcomes.push((
                    q.reply,
                    Err(StoreError(format!("cannot begin a transaction: {e}"))),
                ));
            }
            return outcomes;
        }
    };
    for q in batch.drain(..) {
        let result = savepointed(&tx, q.op);
        let result = result.map_err(|e| {
            tracing::error!("database: {} failed: {e}", q.what);
            StoreError(format!("{} failed: {e}", q.what))
        });
        outcomes.push((q.reply, result));
    }
    if let Err(e) = tx.commit() {
        tracing::error!("database: commit failed: {e}");
        for o in &mut outcomes {
            o.1 = Err(StoreError(format!("commit failed: {e}")));
        }
    }
    outcomes
}
