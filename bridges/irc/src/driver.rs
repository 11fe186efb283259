//! The I/O around a [`Conn`]: one task per (user, server) — the only task
//! a connection has — that opens the socket, feeds the state machine with
//! lines, requests and time, writes its lines through the flood-control
//! bucket, delivers its events, and reconnects with backoff when the
//! server goes away. Also the caps on the number of connections.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use ferry_bridge::{EventSink, HostPolicy};
use futures::StreamExt;
use futures::channel::mpsc;
use tokio::io::{AsyncWriteExt, ReadBuf};

use crate::conn::{Conn, Down, Phase, Request};
use crate::identd::IdentRegistry;
use crate::proto::Line;
use crate::resume::ResumeLog;
use crate::throttle::TokenBucket;
use crate::transport::{self, ConnectError, Connected, Io, TlsContext};

/// Longest line accepted from a server (tags included).
const MAX_READ_LINE: usize = 16 * 1024;
/// How long a QUIT waits for the server to close.
const QUIT_GRACE: Duration = Duration::from_secs(2);
/// How long one write may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Caps on open connections, global and per server.
#[derive(Debug, Default)]
pub struct Limits {
    global: u32,
    per_server: u32,
    counts: Mutex<(u32, HashMap<String, u32>)>,
}

/// A counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    server: String,
}

impl Limits {
    /// Caps (0 = none).
    pub fn new(global: u32, per_server: u32) -> Self {
        Self {
            global,
            per_server,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    /// Takes a slot for a connection to `server`, or says which cap is hit.
    pub fn acquire(self: &Arc<Self>, server: &str) -> Result<Slot, String> {
        let mut c = self
            .counts
            .lock()
            .map_err(|_| "internal error".to_owned())?;
        if self.global > 0 && c.0 >= self.global {
            return Err(format!(
                "The gateway already has {} IRC connections open, its limit; try again later",
                c.0
            ));
        }
        let per = c.1.get(server).copied().unwrap_or(0);
        if self.per_server > 0 && per >= self.per_server {
            return Err(format!(
                "The gateway already has {per} connections to {server}, its limit for one server"
            ));
        }
        c.0 += 1;
        *c.1.entry(server.to_owned()).or_default() += 1;
        Ok(Slot {
            limits: self.clone(),
            server: server.to_owned(),
        })
    }

    /// Connections open now (global, to `server`).
    pub fn count(&self, server: &str) -> (u32, u32) {
        self.counts
            .lock()
            .map(|c| (c.0, c.1.get(server).copied().unwrap_or(0)))
            .unwrap_or((0, 0))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.limits.counts.lock() {
            c.0 = c.0.saturating_sub(1);
            if let Some(n) = c.1.get_mut(&self.server) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.1.remove(&self.server);
                }
            }
        }
    }
}

/// What the driver needs besides the state machine.
pub struct DriverEnv {
    /// TLS roots and provider.
    pub tls: Arc<TlsContext>,
    /// Local address for outgoing connections.
    pub bind: Option<IpAddr>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest backoff.
    pub reconnect_max: Duration,
    /// WEBIRC password.
    pub webirc_password: Option<String>,
    /// The user's host for WEBIRC (their XMPP domain).
    pub user_host: String,
    /// identd registry and this user's ident, when identd runs.
    pub identd: Option<(IdentRegistry, String)>,
    /// The connection's slot.
    pub slot: Slot,
    /// The servers the operator lets connections go to.
    pub hosts: Arc<HostPolicy>,
    /// Where private conversations to restore after a restart are noted
    /// (None: not noted, as for a login probe).
    pub resume: Option<ResumeLog>,
}

type Connecting = Pin<
    Box<
        dyn Future<
                Output = (
                    Result<Connected, ConnectError>,
                    Option<(String, String, String)>,
                ),
            > + Send,
    >,
>;

fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    // ±20 %
    let factor = 0.8 + (nanos % 400) as f64 / 1000.0;
    d.mul_f64(factor)
}

/// How much one read takes from a socket at most.
const READ_CHUNK: usize = 8 * 1024;

thread_local! {
    /// The buffer reads land in, one per worker thread: a connection keeps
    /// only the unfinished end of a line between reads (usually nothing),
    /// not a read buffer of its own.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads what the server sent and appends it to `rbuf`; how many bytes
/// (0: closed).
fn read_shared<'a>(
    io: &'a mut dyn Io,
    rbuf: &'a mut Vec<u8>,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        READ_BUF.with_borrow_mut(|buf| {
            let mut read = ReadBuf::new(buf);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    rbuf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
}

/// Runs a connection until it ends (quit, idle, fatal error, or the
/// session dropped its sender).
pub async fn run(mut conn: Conn, mut rx: mpsc::Receiver<Request>, sink: EventSink, env: DriverEnv) {
    let mut io: Option<Box<dyn Io>> = None;
    let mut socket: Option<std::net::TcpStream> = None;
    let mut ports: Option<(u16, u16)> = None;
    let mut connecting: Option<Connecting> = None;
    let mut reconnect_at: Option<Instant> = Some(Instant::now());
    let mut backoff = Duration::from_secs(1);
    let mut ready_since: Option<Instant> = None;
    let mut queue: VecDeque<Line> = VecDeque::new();
    let mut bucket = TokenBucket::new(conn.throttle_limit(), Instant::now());
    let mut limit = conn.throttle_limit();
    let mut throttled_until: Option<Instant> = None;
    let mut rbuf: Vec<u8> = Vec::new();
    let mut wbuf: Vec<u8> = Vec::new();
    let mut rx_open = true;
    let mut quit_deadline: Option<Instant> = None;

    loop {
        // Deliver events (waiting while the core is busy).
        for ev in conn.take_events() {
            if sink.send(ev).await.is_err() {
                return;
            }
        }
        note_resume(&mut conn, &env);
        let now = Instant::now();
        if conn.throttle_limit() != limit {
            limit = conn.throttle_limit();
            bucket.set_limit(limit, now);
        }
        // Lines: urgent ones at once, the rest through the bucket.
        let mut lost: Option<String> = None;
        wbuf.clear();
        for line in conn.take_lines() {
            if line.urgent {
                line.write_to(&mut wbuf);
            } else {
                queue.push_back(line);
            }
        }
        if io.is_some() && conn.phase() != Phase::Offline {
            throttled_until = None;
            while let Some(line) = queue.front() {
                match bucket.take(now) {
                    Ok(()) => {
                        line.write_to(&mut wbuf);
                        queue.pop_front();
                    }
                    Err(next) => {
                        throttled_until = Some(next);
                        break;
                    }
                }
            }
        }
        if !wbuf.is_empty()
            && let Some(stream) = io.as_mut()
        {
            match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&wbuf)).await {
                // Nothing kept between writes.
                Ok(Ok(())) => wbuf = Vec::new(),
                Ok(Err(e)) => lost = Some(e.to_string()),
                Err(_) => lost = Some("write timed out".into()),
            }
        }
        if let Some(reason) = lost.or_else(|| conn.take_lost()) {
            io = None;
            socket = None;
            release_ident(&env, &mut ports);
            requeue(&mut conn, &mut queue);
            conn.on_disconnected(&reason, now);
            reconnect_at = Some(now + jitter(backoff));
            backoff = (backoff * 2).min(env.reconnect_max);
            continue;
        }
        if let Some(down) = conn.finished() {
            match down {
                Down::Quit if io.is_some() => {
                    quit_deadline.get_or_insert(now + QUIT_GRACE);
                }
                _ => {
                    if matches!(down, Down::Fatal(_)) && io.is_some() {
                        // Let the QUIT out, then close.
                        quit_deadline.get_or_insert(now + Duration::from_millis(200));
                    } else {
                        break;
                    }
                }
            }
            if quit_deadline.is_some_and(|d| now >= d) {
                break;
            }
        }
        if io.is_none() && connecting.is_none() && conn.finished().is_some() {
            break;
        }
        if conn.quitting() && io.is_some() {
            // A server that does not close after QUIT is closed on.
            let d = *quit_deadline.get_or_insert(now + QUIT_GRACE);
            if now >= d {
                break;
            }
        }

        let mut deadline = conn.next_deadline(now);
        for d in [
            throttled_until,
            reconnect_at.filter(|_| io.is_none() && connecting.is_none()),
            quit_deadline,
        ]
        .into_iter()
        .flatten()
        {
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = async {
                match io.as_mut() {
                    Some(s) => read_shared(s.as_mut(), &mut rbuf).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                match r {
                    Ok(0) | Err(_) => {
                        let reason = match r { Err(e) => e.to_string(), _ => "the server closed the connection".into() };
                        io = None;
                        socket = None;
                        rbuf = Vec::new();
                        release_ident(&env, &mut ports);
                        requeue(&mut conn, &mut queue);
                        conn.on_disconnected(&reason, now);
                        if conn.finished().is_some() {
                            continue;
                        }
                        // A connection that lasted resets the backoff.
                        if ready_since.is_some_and(|t| now.duration_since(t) > Duration::from_secs(60)) {
                            backoff = Duration::from_secs(1);
                        }
                        ready_since = None;
                        reconnect_at = Some(now + jitter(backoff));
                        backoff = (backoff * 2).min(env.reconnect_max);
                    }
                    Ok(_) => {
                        if let Some(s) = &socket {
                            transport::quickack(s);
                        }
                        let mut start = 0;
                        while let Some(pos) = rbuf[start..].iter().position(|b| *b == b'\n') {
                            let end = start + pos;
                            conn.on_line(&rbuf[start..end], now);
                            start = end + 1;
                        }
                        rbuf.drain(..start);
                        if rbuf.len() > MAX_READ_LINE {
                            tracing::warn!("dropping an over-long line from the IRC server");
                            rbuf.clear();
                        }
                        if rbuf.is_empty() {
                            // Most reads end on a line's end: nothing to keep.
                            rbuf = Vec::new();
                        }
                        if conn.phase() == Phase::Ready && ready_since.is_none() {
                            ready_since = Some(now);
                        }
                    }
                }
            }
            (result, webirc) = async {
                match connecting.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => {
                connecting = None;
                let now = Instant::now();
                match result {
                    Ok(c) => {
                        if let Some((registry, ident)) = &env.identd {
                            registry.register(c.local.port(), c.peer.port(), ident.clone());
                            ports = Some((c.local.port(), c.peer.port()));
                        }
                        io = Some(c.io);
                        socket = c.socket;
                        bucket = TokenBucket::new(conn.throttle_limit(), now);
                        conn.on_connected(&c.host, c.port, c.tls, webirc, now);
                        if let Some(fp) = c.fingerprint {
                            conn.set_fingerprint(fp);
                        }
                    }
                    Err(e) => {
                        conn.on_connect_failed(&e, now);
                        reconnect_at = Some(now + jitter(backoff));
                        backoff = (backoff * 2).min(env.reconnect_max);
                    }
                }
            }
            req = rx.next(), if rx_open => {
                let now = Instant::now();
                match req {
                    Some(r) => {
                        // The user's own request does not wait for the
                        // backoff of a connection that went down.
                        if r.is_urgent()
                            && io.is_none()
                            && connecting.is_none()
                            && reconnect_at.is_some_and(|t| t > now)
                        {
                            reconnect_at = Some(now);
                        }
                        conn.on_request(r, now);
                    }
                    None => {
                        rx_open = false;
                        conn.on_request(Request::Quit { message: None, done: None, leave_rooms: false }, now);
                    }
                }
            }
            _ = sleep => {
                let now = Instant::now();
                conn.on_tick(now);
                if io.is_none() && connecting.is_none() && reconnect_at.is_some_and(|t| now >= t) {
                    reconnect_at = None;
                    if conn.finished().is_none() && (conn.wants_connection(now) || !conn.registered_once()) {
                        connecting = Some(start_connect(&conn, &env));
                    } else {
                        conn.on_closed();
                    }
                }
            }
        }
    }
    release_ident(&env, &mut ports);
    conn.on_closed();
    note_resume(&mut conn, &env);
    for ev in conn.take_events() {
        if sink.send(ev).await.is_err() {
            return;
        }
    }
}

fn note_resume(conn: &mut Conn, env: &DriverEnv) {
    let changes = conn.take_resume();
    if let Some(log) = &env.resume {
        for c in changes {
            log.apply(c);
        }
    }
}

fn release_ident(env: &DriverEnv, ports: &mut Option<(u16, u16)>) {
    if let (Some((registry, _)), Some((l, r))) = (&env.identd, ports.take()) {
        registry.unregister(l, r);
    }
}

/// Lines not yet written when the connection dropped: messages are kept
/// for the next connection, the rest is obsolete.
fn requeue(conn: &mut Conn, queue: &mut VecDeque<Line>) {
    let keep: Vec<Line> = queue
        .drain(..)
        .filter(|l| matches!(l.command(), "PRIVMSG" | "NOTICE"))
        .collect();
    conn.defer(keep);
}

fn start_connect(conn: &Conn, env: &DriverEnv) -> Connecting {
    let settings = conn.settings.clone();
    let tls = env.tls.clone();
    let hosts = env.hosts.clone();
    let bind = env.bind;
    let timeout = env.connect_timeout;
    let webirc = env
        .webirc_password
        .clone()
        .map(|p| (p, env.user_host.clone()));
    Box::pin(async move {
        let webirc = match webirc {
            Some((password, host)) => {
                match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                {
                    Ok(Ok(mut addrs)) => {
                        let ip = addrs.next().map(|a| a.ip().to_string());
                        ip.map(|ip| (password, host.clone(), ip))
                    }
                    _ => None,
                }
            }
            None => None,
        };
        (
            transport::connect(&settings, &tls, bind, timeout, &hosts).await,
            webirc,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_and_released() {
        let l = Arc::new(Limits::new(2, 1));
        let a = l.acquire("a").unwrap();
        assert!(l.acquire("a").unwrap_err().contains("a"));
        let b = l.acquire("b").unwrap();
        assert!(l.acquire("c").unwrap_err().contains("limit"));
        drop(a);
        assert_eq!(l.count("a"), (1, 0));
        let _a2 = l.acquire("a").unwrap();
        drop(b);
        assert_eq!(l.count("b"), (1, 0));
        let unlimited = Arc::new(Limits::new(0, 0));
        let slots: Vec<Slot> = (0..100).map(|_| unlimited.acquire("x").unwrap()).collect();
        assert_eq!(unlimited.count("x"), (100, 100));
        drop(slots);
        assert_eq!(unlimited.count("x"), (0, 0));
    }
}
