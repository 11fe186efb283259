//! The task behind a [`ComponentHandle`](super::ComponentHandle): connects,
//! performs the XEP-0114 handshake, moves stanzas both ways, and when
//! anything fails reconnects with capped exponential backoff and jitter.
//!
//! While connected, outgoing stanzas are written in order and followed by a
//! self-ping after each burst; a returning ping confirms everything written
//! before it. While disconnected, outgoing stanzas are appended to the
//! persisted outbox; after a reconnection the outbox is sent, in order,
//! before anything new.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, StreamElementError, StreamHeader, Timeouts, XmppStream,
    XmppStreamElement, initiate_stream,
};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use crate::logging::STANZA_TARGET;
use crate::redact::Redacted;
use xmpp_parsers::ns;
use xmpp_parsers::stanza::Stanza;

use super::privilege::{self, describe};
use super::wire::Wire;
use super::{
    Command, ComponentConfig, Inbound, InvalidStanza, Privileges, RequestError, Shared, StreamState,
};
use crate::metrics::BridgeMetrics;
use crate::store::Store;

type Stream = XmppStream<Wire<TcpStream>>;

/// Stanzas written between two flushes at most.
const WRITE_BURST: usize = 256;
/// Bytes written between two flushes at most (a burst of big stanzas).
const WRITE_BURST_BYTES: usize = 32 * 1024;
/// Outbox entries read at once.
const OUTBOX_BATCH: usize = 256;
/// How long to wait for a privilege advertisement after the first ping's
/// answer when none came before it.
const PRIVILEGE_GRACE: Duration = Duration::from_millis(300);

/// Why a connection attempt failed.
enum ConnectError {
    /// Network, timeout or protocol trouble: retry with backoff.
    Failed(String),
    /// The server refused the handshake (wrong secret or domain): retry
    /// slowly.
    Refused(String),
}

/// How a connected session ended.
enum Ended {
    /// Closed on request.
    Closed,
    /// The connection died.
    Dead(String),
}

/// Something written and not yet confirmed by a returning ping.
enum Unconfirmed {
    /// From the outbox (still stored there): its sequence number.
    Outbox(i64),
    /// Sent live (only in memory), serialized: a few hundred bytes where
    /// the element tree takes several kilobytes, and a burst (a big room
    /// joined by many users) stays unconfirmed until the next ping's answer.
    /// Boxed to its exact length: the serializer's buffer grows by
    /// doubling, a quarter of it unused on average, and a join burst keeps
    /// tens of thousands of these until the server confirms them.
    Live(Box<str>),
}

struct PingInFlight {
    id: String,
    /// How many of the unconfirmed stanzas (from the front) it confirms.
    covers: usize,
    deadline: Instant,
}

/// The connection task.
pub(super) struct Task {
    config: ComponentConfig,
    store: Store,
    metrics: Arc<BridgeMetrics>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
    /// Stanzas in the outbox (mirrors the database).
    outbox_depth: usize,
    unconfirmed: VecDeque<Unconfirmed>,
    ping: Option<PingInFlight>,
    /// A close was requested (or the process is shutting down).
    closing: bool,
    /// Who waits for the close to finish.
    close_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Detached ([`super::ComponentHandle::detach`]): never connect again,
    /// spool what is sent until closed.
    detached: bool,
    /// Who waits for the detach to finish.
    detach_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// How long closing may wait for the last confirmation.
    close_timeout: Duration,
    /// The component's own JID (pings go from it to it).
    own_jid: Option<Jid>,
    /// The server closed the stream over something it received (a stream
    /// error about content, not about the server itself).
    rejected: bool,
    /// After a rejection: the outbox goes out one stanza per ping, so that
    /// a second rejection names the stanza that causes it.
    careful: bool,
}

/// The state of the outbox drain on a connection.
enum Drain {
    /// Entries after this sequence number are still to be sent.
    After(i64),
    /// Everything stored has been sent.
    Done,
}

impl Task {
    pub(super) fn new(
        config: ComponentConfig,
        store: Store,
        metrics: Arc<BridgeMetrics>,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        inbound: mpsc::Sender<Inbound>,
        shutdown: CancellationToken,
    ) -> Task {
        Task {
            config,
            store,
            metrics,
            shared,
            commands,
            inbound,
            shutdown,
            outbox_depth: 0,
            unconfirmed: VecDeque::new(),
            ping: None,
            closing: false,
            close_waiters: Vec::new(),
            detached: false,
            detach_waiters: Vec::new(),
            close_timeout: Duration::from_secs(5),
            own_jid: None,
            rejected: false,
            careful: false,
        }
    }

    /// Logs a stanza at `trace` (target `ferry::stanza`), secrets redacted.
    fn trace_stanza(&self, direction: &str, el: &Element) {
        if tracing::enabled!(target: STANZA_TARGET, tracing::Level::TRACE) {
            let shown = Redacted {
                stanza: el,
                gateway: self.domain(),
            };
            tracing::trace!(target: STANZA_TARGET, domain = %self.domain(), "{direction}: {shown}");
        }
    }

    fn domain(&self) -> &str {
        &self.config.domain
    }

    fn set_depth(&mut self, depth: usize) {
        self.outbox_depth = depth;
        self.metrics
            .outbox_depth
            .store(depth as i64, Ordering::Relaxed);
    }

    pub(super) async fn run(mut self) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.outbox_len()).await {
            Ok(Ok(n)) => {
                if n > 0 {
                    tracing::info!(domain = %self.domain(), "{n} stanzas wait in the outbox");
                }
                self.set_depth(n);
            }
            Ok(Err(e)) => tracing::error!(domain = %self.domain(), "cannot read the outbox: {e}"),
            Err(e) => tracing::error!(domain = %self.domain(), "cannot read the outbox: {e}"),
        }
        let mut attempt: u32 = 0;
        let mut last_error: Option<String> = None;
        let mut connected_before = false;
        let mut refused = false;
        loop {
            if self.detached {
                self.spool_until_closed().await;
                break;
            }
            if attempt > 0 {
                // What went wrong is visible (in /health) while waiting.
                self.shared.set_state(StreamState::Connecting {
                    attempt,
                    last_error: last_error.clone(),
                });
                let delay = self.backoff(attempt, refused);
                tracing::debug!(domain = %self.domain(), "reconnecting in {} ms", delay.as_millis());
                if !self.wait_disconnected(Some(delay)).await {
                    break;
                }
                if self.detached {
                    continue;
                }
            }
            self.shared.set_state(StreamState::Connecting {
                attempt,
                last_error: last_error.clone(),
            });
            let connect = connect(self.config.clone());
            tokio::pin!(connect);
            let result = loop {
                tokio::select! {
                    r = &mut connect => break Some(r),
                    keep = self.wait_disconnected(None) => if !keep || self.detached { break None },
                }
            };
            let Some(result) = result else {
                if self.detached {
                    continue;
                }
                break;
            };
            match result {
                Ok((stream, early)) => {
                    if connected_before {
                        BridgeMetrics::inc(&self.metrics.reconnects);
                    }
                    connected_before = true;
                    refused = false;
                    self.rejected = false;
                    let ended = self.connected(stream, early).await;
                    self.metrics.connected.store(0, Ordering::Relaxed);
                    self.shared.fail_pending();
                    if self.rejected {
                        self.isolate_rejected().await;
                    }
                    self.requeue_unconfirmed().await;
                    match ended {
                        Ended::Closed if self.detached => {
                            tracing::info!(domain = %self.domain(), "component stream left the server; what is still sent waits in the outbox");
                            self.shared.set_state(StreamState::Closed);
                            continue;
                        }
                        Ended::Closed => break,
                        Ended::Dead(reason) => {
                            tracing::warn!(domain = %self.domain(), "component stream lost: {reason}");
                            let _ = self
                                .inbound
                                .send(Inbound::Disconnected(reason.clone()))
                                .await;
                            last_error = Some(reason);
                            attempt = 1;
                        }
                    }
                }
                Err(ConnectError::Failed(e)) => {
                    attempt += 1;
                    refused = false;
                    if attempt <= 3 || attempt.is_multiple_of(10) {
                        tracing::warn!(
                            domain = %self.domain(),
                            "cannot connect to the XMPP server at {}:{} (attempt {attempt}): {e}",
                            self.config.host, self.config.port
                        );
                    }
                    last_error = Some(e);
                }
                Err(ConnectError::Refused(e)) => {
                    attempt += 1;
                    refused = true;
                    tracing::error!(
                        domain = %self.domain(),
                        "the XMPP server refused the component {}: {e}; check that the server has a component \"{}\" with the same secret",
                        self.domain(), self.domain()
                    );
                    last_error = Some(e);
                }
            }
        }
        self.shared.set_state(StreamState::Closed);
        self.metrics.connected.store(0, Ordering::Relaxed);
        for done in self.close_waiters.drain(..) {
            let _ = done.send(());
        }
        tracing::info!(domain = %self.domain(), "component stream closed");
    }

    /// Detached: stores what is sent in the outbox until a close (or the
    /// end of every handle).
    async fn spool_until_closed(&mut self) {
        for done in self.detach_waiters.drain(..) {
            let _ = done.send(());
        }
        self.closing = false;
        while self.wait_disconnected(None).await {}
    }

    /// The delay before attempt `attempt` (1-based): doubling from
    /// `backoff_min` up to `backoff_max`, with jitter (half to all of it).
    fn backoff(&self, attempt: u32, refused: bool) -> Duration {
        let t = &self.config.tuning;
        let exp = t
            .backoff_min
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(t.backoff_max);
        let base = if refused {
            exp.max(t.refused_retry)
        } else {
            exp
        };
        base.mul_f64(rand::random_range(0.5..=1.0))
    }

    /// While disconnected: stores what is sent in the outbox and serves a
    /// close request. With `delay`, returns after it; without, returns
    /// after the first command (to be called in a loop). Returns false
    /// when the task must stop.
    async fn wait_disconnected(&mut self, delay: Option<Duration>) -> bool {
        let sleep = tokio::time::sleep(delay.unwrap_or(Duration::from_secs(365 * 86_400)));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                _ = self.shutdown.cancelled() => return false,
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else {
                        // Every handle is gone: nothing more will be sent.
                        return false;
                    };
                    let mut batch = Vec::new();
                    let mut close = None;
                    let mut next = Some(cmd);
                    while let Some(cmd) = next.take() {
                        match cmd {
                            Command::Send(text) => {
                                self.shared.taken();
                                batch.push(String::from(text));
                            }
                            Command::Close { done, timeout } => {
                                self.close_timeout = timeout;
                                close = Some(done);
                                break;
                            }
                            Command::Detach { done, .. } => {
                                self.detached = true;
                                let _ = done.send(());
                            }
                        }
                        if batch.len() < 4096 {
                            next = self.commands.try_recv().ok();
                        }
                    }
                    self.spool(batch).await;
                    if let Some(done) = close {
                        self.closing = true;
                        self.close_waiters.push(done);
                        return false;
                    }
                    if delay.is_none() {
                        return true;
                    }
                }
            }
        }
    }

    /// Appends serialised stanzas to the outbox.
    async fn spool(&mut self, batch: Vec<String>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.outbox_push(&batch)).await {
            Ok(Ok(())) => self.set_depth(self.outbox_depth + n),
            Ok(Err(e)) => {
                tracing::error!(domain = %self.domain(), "{n} stanzas could not be stored in the outbox and are lost: {e}")
            }
            Err(e) => {
                tracing::error!(domain = %self.domain(), "{n} stanzas could not be stored in the outbox and are lost: {e}")
            }
        }
    }

    /// The server closed the stream because of something it received. In
    /// careful mode only one stanza was unconfirmed: that one is dropped
    /// (and logged). Otherwise the next connection sends the outbox one
    /// stanza at a time to find out.
    async fn isolate_rejected(&mut self) {
        let culprit = match self.unconfirmed.iter().collect::<Vec<_>>().as_slice() {
            [Unconfirmed::Outbox(seq)] if self.careful => Some(*seq),
            _ => None,
        };
        let Some(seq) = culprit else {
            if !self.unconfirmed.is_empty() {
                tracing::warn!(
                    domain = %self.domain(),
                    "the server rejected one of the last {} stanzas: sending them one by one to find it",
                    self.unconfirmed.len()
                );
            }
            self.careful = true;
            return;
        };
        self.unconfirmed.clear();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let stanza = store
                .outbox_peek_after(seq - 1, 1)?
                .into_iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, text)| text);
            store.outbox_delete(seq)?;
            Ok::<_, ferry_bridge::StoreError>(stanza)
        })
        .await;
        BridgeMetrics::inc(&self.metrics.errors);
        match result {
            Ok(Ok(stanza)) => {
                self.set_depth(self.outbox_depth.saturating_sub(1));
                tracing::error!(
                    domain = %self.domain(),
                    "the XMPP server closes the stream for this stanza; it is dropped: {}",
                    stanza.unwrap_or_default()
                );
            }
            Ok(Err(e)) => {
                tracing::error!(domain = %self.domain(), "cannot drop a rejected stanza: {e}")
            }
            Err(e) => {
                tracing::error!(domain = %self.domain(), "cannot drop a rejected stanza: {e}")
            }
        }
    }

    /// After a connection died: stanzas sent live and not confirmed go to
    /// the outbox (those sent from the outbox are still there).
    async fn requeue_unconfirmed(&mut self) {
        self.ping = None;
        let live: Vec<String> = self
            .unconfirmed
            .drain(..)
            .filter_map(|u| match u {
                Unconfirmed::Live(text) => Some(String::from(text)),
                Unconfirmed::Outbox(_) => None,
            })
            .collect();
        if !live.is_empty() {
            tracing::info!(
                domain = %self.domain(),
                "{} stanzas sent just before the connection died are queued again",
                live.len()
            );
            self.spool(live).await;
        }
    }

    /// Runs one connection until it dies or is closed.
    async fn connected(&mut self, mut stream: Stream, early: Vec<FallibleStreamElement>) -> Ended {
        // 1. A first ping: adverts sent at connection time arrive before
        //    its answer, so the privileges are known when it returns.
        let mut privileges = Privileges::default();
        let mut buffered: Vec<FallibleStreamElement> = Vec::new();
        for el in early {
            if !self.take_advert(&el, &mut privileges) {
                buffered.push(el);
            }
        }
        let first_ping = self.new_ping_id();
        if let Err(e) = self.write_ping(&mut stream, &first_ping).await {
            return Ended::Dead(e);
        }
        // Some servers (ejabberd) announce from another process, a little
        // after the handshake: without an advertisement by the first ping's
        // answer, wait a moment for one; after one, a ping round collects
        // any others sent with it.
        let mut waiting: Option<String> = Some(first_ping);
        let mut grace_until: Option<Instant> = None;
        let deadline = Instant::now() + self.config.tuning.keepalive_timeout;
        loop {
            let until = match (&waiting, grace_until) {
                (None, Some(g)) => g.min(deadline),
                _ => deadline,
            };
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tokio::time::sleep_until(until) => {
                    if waiting.is_none() {
                        break;
                    }
                    return Ended::Dead(format!(
                        "the server did not answer the first ping within {} s",
                        self.config.tuning.keepalive_timeout.as_secs_f32()
                    ));
                }
            };
            match next {
                Some(Ok(el)) => {
                    if waiting.as_deref().is_some_and(|id| is_ping_answer(&el, id)) {
                        waiting = None;
                        if !privileges.by_domain.is_empty() {
                            break;
                        }
                        grace_until.get_or_insert(Instant::now() + PRIVILEGE_GRACE);
                        continue;
                    }
                    if self.take_advert(&el, &mut privileges) {
                        if waiting.is_none() {
                            let id = self.new_ping_id();
                            if let Err(e) = self.write_ping(&mut stream, &id).await {
                                return Ended::Dead(e);
                            }
                            waiting = Some(id);
                        }
                    } else {
                        buffered.push(el);
                    }
                }
                Some(Err(ReadError::SoftTimeout)) => {
                    // Keep the stream's read timer happy.
                    let id = self.new_ping_id();
                    if let Err(e) = self.write_ping(&mut stream, &id).await {
                        return Ended::Dead(e);
                    }
                }
                Some(Err(ReadError::ParseError(e))) => {
                    tracing::warn!(domain = %self.domain(), "unparsable data from the server: {e}");
                }
                Some(Err(e)) => return Ended::Dead(read_error_text(e)),
                None => return Ended::Dead("the server closed the connection".into()),
            }
        }
        if privileges.by_domain.is_empty() {
            tracing::info!(domain = %self.domain(), "no XEP-0356 privileges granted by the server");
        }
        for (domain, grant) in &privileges.by_domain {
            tracing::info!(component = %self.domain(), "{}", describe(domain, grant));
        }
        if let Ok(mut p) = self.shared.privileges.lock() {
            *p = privileges.clone();
        }
        self.shared.set_state(StreamState::Connected {
            since: SystemTime::now(),
        });
        self.metrics.connected.store(1, Ordering::Relaxed);
        tracing::info!(
            domain = %self.domain(),
            "component stream up ({}:{})",
            self.config.host,
            self.config.port
        );
        let _ = self.inbound.send(Inbound::Connected(privileges)).await;
        for el in buffered {
            if let Err(reason) = self.incoming(&mut stream, el).await {
                return Ended::Dead(reason);
            }
        }

        // 2. The outbox first, then live stanzas.
        let mut drain = if self.outbox_depth > 0 {
            Drain::After(0)
        } else {
            Drain::Done
        };
        loop {
            if self.closing && matches!(drain, Drain::Done) {
                return self.finish(stream).await;
            }
            let ping_deadline = self.ping.as_ref().map(|p| p.deadline);
            let draining = matches!(drain, Drain::After(_));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled(), if !self.closing => {
                    self.closing = true;
                    drain = Drain::Done;
                }
                next = stream.next() => {
                    let result = match next {
                        Some(Ok(el)) => self.incoming(&mut stream, el).await,
                        Some(Err(ReadError::SoftTimeout)) => self.keepalive(&mut stream).await,
                        Some(Err(ReadError::ParseError(e))) => {
                            tracing::warn!(domain = %self.domain(), "unparsable data from the server: {e}");
                            Ok(())
                        }
                        Some(Err(e)) => Err(read_error_text(e)),
                        None => Err("the server closed the connection".into()),
                    };
                    if let Err(reason) = result {
                        return Ended::Dead(reason);
                    }
                }
                _ = sleep_until_opt(ping_deadline) => {
                    return Ended::Dead(format!(
                        "no answer to a ping within {} s",
                        self.config.tuning.keepalive_timeout.as_secs_f32()
                    ));
                }
                _ = std::future::ready(()), if draining && (!self.careful || self.ping.is_none()) => {
                    match self.send_outbox_batch(&mut stream, &drain).await {
                        Ok(next) => drain = next,
                        Err(reason) => return Ended::Dead(reason),
                    }
                }
                cmd = self.commands.recv(), if !draining && !self.closing => {
                    let Some(cmd) = cmd else {
                        self.closing = true;
                        continue;
                    };
                    if let Err(reason) = self.send_commands(&mut stream, cmd).await {
                        return Ended::Dead(reason);
                    }
                }
            }
        }
    }

    /// Writes a burst of commands (the first one given), then flushes and
    /// pings.
    async fn send_commands(&mut self, stream: &mut Stream, first: Command) -> Result<(), String> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Send(text) => {
                    self.shared.taken();
                    self.trace_queued(&text);
                    stream.get_stream().push(&text);
                    BridgeMetrics::inc(&self.metrics.stanzas_out);
                    self.unconfirmed.push_back(Unconfirmed::Live(text));
                    written += 1;
                }
                Command::Close { done, timeout } => {
                    self.closing = true;
                    self.close_timeout = timeout;
                    self.close_waiters.push(done);
                    break;
                }
                Command::Detach { done, timeout } => {
                    self.closing = true;
                    self.detached = true;
                    self.close_timeout = timeout;
                    self.detach_waiters.push(done);
                    break;
                }
            }
            if written < WRITE_BURST && stream.get_stream().pending() < WRITE_BURST_BYTES {
                next = self.commands.try_recv().ok();
            }
        }
        self.flush_and_ping(stream).await
    }

    /// Traces a queued stanza (serialized by
    /// [`ComponentHandle::send`](super::ComponentHandle::send) from an
    /// element, so it parses) when stanza tracing is on.
    fn trace_queued(&self, text: &str) {
        if tracing::enabled!(target: STANZA_TARGET, tracing::Level::TRACE) {
            match text.parse::<Element>() {
                Ok(el) => self.trace_stanza("out", &el),
                Err(e) => {
                    tracing::trace!(target: STANZA_TARGET, domain = %self.domain(), "out: ({e}, {} bytes)", text.len())
                }
            }
        }
    }

    /// Sends the next batch of the outbox.
    async fn send_outbox_batch(
        &mut self,
        stream: &mut Stream,
        drain: &Drain,
    ) -> Result<Drain, String> {
        let Drain::After(after) = *drain else {
            return Ok(Drain::Done);
        };
        let store = self.store.clone();
        let limit = if self.careful { 1 } else { OUTBOX_BATCH };
        let batch = match tokio::task::spawn_blocking(move || store.outbox_peek_after(after, limit))
            .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(format!("cannot read the outbox: {e}")),
            Err(e) => return Err(format!("cannot read the outbox: {e}")),
        };
        let mut last = after;
        let full = batch.len() == limit;
        for (seq, text) in batch {
            last = seq;
            match text.parse::<Element>() {
                Ok(mut el) => match super::check_addressing(&mut el, &self.config.domain) {
                    Ok(()) => {
                        self.trace_stanza("out", &el);
                        stream.feed(&el).await.map_err(write_error)?;
                        BridgeMetrics::inc(&self.metrics.stanzas_out);
                    }
                    Err(e) => {
                        BridgeMetrics::inc(&self.metrics.errors);
                        let shown = Redacted {
                            stanza: &el,
                            gateway: self.domain(),
                        };
                        tracing::error!(domain = %self.domain(), "dropping an outbox entry the server would close the stream for ({e}): {shown}");
                    }
                },
                Err(e) => {
                    tracing::error!(domain = %self.domain(), "dropping an outbox entry that is not XML ({e}, {} bytes)", text.len());
                }
            }
            self.unconfirmed.push_back(Unconfirmed::Outbox(seq));
        }
        self.flush_and_ping(stream).await?;
        if full {
            return Ok(Drain::After(last));
        }
        if self.careful {
            tracing::info!(domain = %self.domain(), "the outbox went out one by one; back to normal sending");
            self.careful = false;
        }
        Ok(Drain::Done)
    }

    /// Writes what is buffered, then a ping covering everything unconfirmed
    /// unless one is out. The stanzas leave first, in a write of their
    /// own: nothing of the ping is on their way (putting both in one write
    /// measured no different on a round trip through Prosody; docs/perf/wire.md).
    async fn flush_and_ping(&mut self, stream: &mut Stream) -> Result<(), String> {
        flush(&mut *stream).await.map_err(write_error)?;
        if self.ping.is_none() && !self.unconfirmed.is_empty() {
            self.send_ping(stream).await?;
        }
        Ok(())
    }

    async fn send_ping(&mut self, stream: &mut Stream) -> Result<(), String> {
        let id = self.new_ping_id();
        self.write_ping(stream, &id).await?;
        self.ping = Some(PingInFlight {
            id,
            covers: self.unconfirmed.len(),
            deadline: Instant::now() + self.config.tuning.keepalive_timeout,
        });
        Ok(())
    }

    /// Silence on the stream: make sure something comes back.
    async fn keepalive(&mut self, stream: &mut Stream) -> Result<(), String> {
        if self.ping.is_none() {
            self.send_ping(stream).await?;
        }
        Ok(())
    }

    fn new_ping_id(&self) -> String {
        self.shared.next_id("ping")
    }

    async fn write_ping(&mut self, stream: &mut Stream, id: &str) -> Result<(), String> {
        let own = match &self.own_jid {
            Some(j) => j.clone(),
            None => {
                let j = Jid::new(self.domain()).map_err(|e| format!("bad domain: {e}"))?;
                self.own_jid = Some(j.clone());
                j
            }
        };
        let ping = Iq::from_get(id, xmpp_parsers::ping::Ping)
            .with_from(own.clone())
            .with_to(own);
        stream.send(&Element::from(ping)).await.map_err(write_error)
    }

    /// A ping came back: everything it covers is confirmed.
    async fn confirmed(&mut self, stream: &mut Stream) -> Result<(), String> {
        let Some(ping) = self.ping.take() else {
            return Ok(());
        };
        let mut max_seq = None;
        let mut from_outbox = 0;
        for _ in 0..ping.covers.min(self.unconfirmed.len()) {
            if let Some(Unconfirmed::Outbox(seq)) = self.unconfirmed.pop_front() {
                max_seq = Some(seq);
                from_outbox += 1;
            }
        }
        if let Some(seq) = max_seq {
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.outbox_remove(seq)).await {
                Ok(Ok(())) => {
                    let depth = self.outbox_depth.saturating_sub(from_outbox);
                    self.set_depth(depth);
                }
                Ok(Err(e)) => {
                    tracing::error!(domain = %self.domain(), "cannot clear sent stanzas from the outbox (they will be sent again): {e}")
                }
                Err(e) => {
                    tracing::error!(domain = %self.domain(), "cannot clear sent stanzas from the outbox (they will be sent again): {e}")
                }
            }
        }
        self.flush_and_ping(stream).await
    }

    /// Whether `el` is a privilege advertisement (then recorded).
    fn take_advert(&self, el: &FallibleStreamElement, privileges: &mut Privileges) -> bool {
        let FallibleStreamElement::Ok(XmppStreamElement::Stanza(Stanza::Message(m))) = el else {
            return false;
        };
        let element = Element::from(m.clone());
        match privilege::parse_advertisement(&element) {
            Some((domain, grant)) => {
                privileges.by_domain.insert(domain, grant);
                true
            }
            None => false,
        }
    }

    /// Handles one element from the server.
    async fn incoming(
        &mut self,
        stream: &mut Stream,
        el: FallibleStreamElement,
    ) -> Result<(), String> {
        match el {
            FallibleStreamElement::Ok(XmppStreamElement::Stanza(stanza)) => {
                BridgeMetrics::inc(&self.metrics.stanzas_in);
                if tracing::enabled!(target: STANZA_TARGET, tracing::Level::TRACE) {
                    let el = match &stanza {
                        Stanza::Iq(iq) => Element::from(iq.clone()),
                        Stanza::Message(m) => Element::from(m.clone()),
                        Stanza::Presence(p) => Element::from(p.clone()),
                    };
                    self.trace_stanza("in", &el);
                }
                self.stanza(stream, stanza).await
            }
            FallibleStreamElement::Err(StreamElementError::InvalidStanza {
                name,
                header,
                error,
                ..
            }) => {
                BridgeMetrics::inc(&self.metrics.stanzas_in);
                let name = match name.to_string().as_str() {
                    "iq" => "iq",
                    "message" => "message",
                    _ => "presence",
                };
                tracing::debug!(domain = %self.domain(), "invalid <{name}/> from {:?}: {error}", header.from);
                self.deliver(Inbound::Invalid(InvalidStanza {
                    name,
                    from: header.from,
                    to: header.to,
                    id: header.id,
                    type_: header.type_,
                    error: error.to_string(),
                }))
                .await;
                Ok(())
            }
            FallibleStreamElement::Err(e @ StreamElementError::InvalidNonza { .. }) => {
                tracing::warn!(domain = %self.domain(), "ignoring {e}");
                Ok(())
            }
            FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)) => {
                use xmpp_parsers::stream_error::DefinedCondition as C;
                self.rejected = matches!(
                    e.0.condition,
                    C::BadFormat
                        | C::BadNamespacePrefix
                        | C::ImproperAddressing
                        | C::InvalidFrom
                        | C::InvalidNamespace
                        | C::InvalidXml
                        | C::NotWellFormed
                        | C::PolicyViolation
                        | C::RestrictedXml
                        | C::UnsupportedStanzaType
                        | C::UnsupportedEncoding
                );
                Err(format!("stream error from the server: {}", e.0))
            }
            FallibleStreamElement::Ok(other) => {
                tracing::debug!(domain = %self.domain(), "ignoring {other:?}");
                Ok(())
            }
        }
    }

    async fn stanza(&mut self, stream: &mut Stream, stanza: Stanza) -> Result<(), String> {
        match stanza {
            Stanza::Iq(iq) => {
                let id = iq.id().to_owned();
                if self.ping.as_ref().is_some_and(|p| p.id == id) {
                    return self.confirmed(stream).await;
                }
                if id.starts_with("ferry-ping-") && self.is_own_ping(&iq) {
                    // A late answer to a ping of an earlier burst.
                    return Ok(());
                }
                match iq {
                    Iq::Result { .. } if self.shared.pending_contains(&id) => {
                        self.shared.complete(&id, Ok(iq));
                        Ok(())
                    }
                    Iq::Error { ref error, .. } if self.shared.pending_contains(&id) => {
                        let error = error.clone();
                        self.shared.complete(&id, Err(RequestError::Error(error)));
                        Ok(())
                    }
                    iq => {
                        self.deliver(Inbound::Stanza(Stanza::Iq(iq))).await;
                        Ok(())
                    }
                }
            }
            Stanza::Message(m) => {
                let element = Element::from(m.clone());
                if let Some((domain, grant)) = privilege::parse_advertisement(&element) {
                    tracing::info!(component = %self.domain(), "{}", describe(&domain, &grant));
                    if let Ok(mut p) = self.shared.privileges.lock() {
                        p.by_domain.insert(domain, grant);
                    }
                    return Ok(());
                }
                self.deliver(Inbound::Stanza(Stanza::Message(m))).await;
                Ok(())
            }
            other => {
                self.deliver(Inbound::Stanza(other)).await;
                Ok(())
            }
        }
    }

    fn is_own_ping(&self, iq: &Iq) -> bool {
        let own = |j: Option<&Jid>| j.is_some_and(|j| j.as_str() == self.domain());
        own(iq.from()) || own(iq.to())
    }

    /// Hands a stanza to the gateway. While the gateway is too busy to
    /// take it the stream is not read, so a ping's answer may be waiting
    /// unread: the time spent here does not count against the ping.
    async fn deliver(&mut self, inbound: Inbound) {
        let started = Instant::now();
        if self.inbound.send(inbound).await.is_err() {
            tracing::debug!(domain = %self.domain(), "no one reads the component stream any more");
        }
        if let Some(ping) = &mut self.ping {
            ping.deadline += started.elapsed();
        }
    }

    /// Closing: everything queued goes out, a ping confirms it, then the
    /// stream is closed.
    async fn finish(&mut self, mut stream: Stream) -> Ended {
        let deadline = Instant::now() + self.close_timeout;
        // Whatever is still in the queue.
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Send(text) => {
                    self.shared.taken();
                    self.trace_queued(&text);
                    stream.get_stream().push(&text);
                    BridgeMetrics::inc(&self.metrics.stanzas_out);
                    self.unconfirmed.push_back(Unconfirmed::Live(text));
                }
                Command::Close { done, .. } => self.close_waiters.push(done),
                Command::Detach { done, .. } => {
                    self.detached = true;
                    self.detach_waiters.push(done);
                }
            }
        }
        if flush(&mut stream).await.is_err() {
            return Ended::Dead("the connection failed while closing".into());
        }
        if self.ping.is_none()
            && !self.unconfirmed.is_empty()
            && let Err(e) = self.send_ping(&mut stream).await
        {
            return Ended::Dead(e);
        }
        while self.ping.is_some() {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tokio::time::sleep_until(deadline) => {
                    return Ended::Dead("closing: the last stanzas were not confirmed in time".into());
                }
            };
            match next {
                Some(Ok(el)) => {
                    if let Err(e) = self.incoming(&mut stream, el).await {
                        return Ended::Dead(e);
                    }
                }
                Some(Err(ReadError::SoftTimeout | ReadError::ParseError(_))) => {}
                Some(Err(e)) => return Ended::Dead(read_error_text(e)),
                None => return Ended::Dead("the server closed the connection".into()),
            }
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            SinkExt::<&Element>::close(&mut stream),
        )
        .await;
        Ended::Closed
    }
}

impl Shared {
    fn pending_contains(&self, id: &str) -> bool {
        self.pending.lock().is_ok_and(|p| p.contains_key(id))
    }
}

fn is_ping_answer(el: &FallibleStreamElement, id: &str) -> bool {
    matches!(el, FallibleStreamElement::Ok(XmppStreamElement::Stanza(Stanza::Iq(iq))) if iq.id() == id)
}

async fn flush(stream: &mut Stream) -> std::io::Result<()> {
    SinkExt::<&Element>::flush(stream).await
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn write_error(e: std::io::Error) -> String {
    format!("write failed: {e}")
}

fn read_error_text(e: ReadError) -> String {
    match e {
        ReadError::HardError(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            "the server went silent (read timeout)".into()
        }
        ReadError::HardError(e) => format!("read failed: {e}"),
        ReadError::StreamFooterReceived => "the server closed the stream".into(),
        ReadError::SoftTimeout => "soft timeout".into(),
        ReadError::ParseError(e) => format!("parse error: {e}"),
    }
}

/// Connects and performs the handshake. Returns the stream and anything
/// the server sent before the handshake answer.
async fn connect(
    config: ComponentConfig,
) -> Result<(Stream, Vec<FallibleStreamElement>), ConnectError> {
    let timeout = config.tuning.connect_timeout;
    match tokio::time::timeout(timeout, connect_inner(&config)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Failed(format!(
            "no handshake within {} s",
            timeout.as_secs_f32()
        ))),
    }
}

async fn connect_inner(
    config: &ComponentConfig,
) -> Result<(Stream, Vec<FallibleStreamElement>), ConnectError> {
    let jid = Jid::new(&config.domain).map_err(|e| {
        ConnectError::Refused(format!("{:?} is not a valid domain: {e}", config.domain))
    })?;
    let addrs: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((config.host.as_str(), config.port))
            .await
            .map_err(|e| ConnectError::Failed(format!("cannot resolve {}: {e}", config.host)))?
            .collect();
    let timeouts = Timeouts {
        read_timeout: config.tuning.keepalive,
        response_timeout: config.tuning.keepalive_timeout,
    };
    let mut last = format!("{} has no address", config.host);
    let mut socket = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let Some(socket) = socket else {
        return Err(ConnectError::Failed(last));
    };
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    let header = StreamHeader {
        to: Some(jid.domain().as_str().into()),
        from: None,
        id: None,
    };
    let mut pending = initiate_stream(Wire::new(socket), ns::COMPONENT, header, timeouts)
        .await
        .map_err(|e| ConnectError::Failed(format!("stream header: {e}")))?;
    let header = pending.take_header();
    let mut stream: Stream = pending.skip_features();
    let Some(stream_id) = header.id.map(|id| id.into_owned()) else {
        return Err(ConnectError::Failed(
            "the server's stream header has no id (is this a component port?)".into(),
        ));
    };
    let handshake = Handshake::from_stream_id_and_password(stream_id, &config.secret);
    stream
        .send(&XmppStreamElement::ComponentHandshake(handshake))
        .await
        .map_err(|e| ConnectError::Failed(format!("write failed: {e}")))?;
    let mut early = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                return Ok((stream, early));
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(ConnectError::Refused(format!("handshake refused: {}", e.0)));
            }
            Some(Ok(el @ FallibleStreamElement::Ok(XmppStreamElement::Stanza(_))))
            | Some(Ok(el @ FallibleStreamElement::Err(StreamElementError::InvalidStanza { .. }))) =>
            {
                early.push(el);
            }
            Some(Ok(other)) => {
                return Err(ConnectError::Failed(format!(
                    "unexpected answer to the handshake: {other:?}"
                )));
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::ParseError(e))) => {
                return Err(ConnectError::Failed(format!(
                    "unparsable answer to the handshake: {e}"
                )));
            }
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(ConnectError::Refused(
                    "the server closed the stream after the handshake (wrong secret?)".into(),
                ));
            }
            Some(Err(ReadError::HardError(e))) => {
                return Err(ConnectError::Failed(format!(
                    "read failed during the handshake: {e}"
                )));
            }
        }
    }
}
