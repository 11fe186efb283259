//! An in-process XEP-0114 server for the component tests: it accepts
//! component connections on 127.0.0.1, checks the handshake, routes stanzas
//! a component addresses to itself back to it (as a real server does, which
//! is what answers the component's pings), records every other stanza, and
//! can be told to send stanzas, drop the connection, die after some
//! stanzas, stop answering pings, or stop listening altogether.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt as _};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, StreamHeader, Timeouts, XmlStream, XmppStreamElement, accept_stream,
};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stream_error::{DefinedCondition, StreamError};
use xmpp_parsers::stream_features::StreamFeatures;

/// What the server saw.
#[derive(Debug)]
pub enum Event {
    /// A component completed the handshake (connection number).
    Connected(u32),
    /// A component sent a wrong handshake and was refused.
    Refused,
    /// A stanza (not a self-ping).
    Received(u32, Element),
    /// A self-addressed ping went through.
    Pinged(u32),
    /// A connection ended.
    Closed(u32),
}

/// Orders for the current connection.
#[derive(Debug)]
enum Order {
    Send(Element),
    Burst(usize),
    Drop,
    DieAfter(usize),
}

#[derive(Clone)]
struct Options {
    domain: String,
    secret: String,
    adverts: Vec<Element>,
    advert_delay: Duration,
    answer_pings: Arc<AtomicBool>,
    /// Milliseconds before a ping is routed back.
    ping_delay_ms: Arc<AtomicU64>,
}

/// The server.
pub struct FakeServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    options: Options,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    orders: Arc<Mutex<Option<mpsc::UnboundedSender<Order>>>>,
    counter: Arc<AtomicU32>,
    acceptor: Option<JoinHandle<()>>,
    current: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl FakeServer {
    /// Starts listening for component `domain` with `secret`; `adverts`
    /// are sent right after each successful handshake.
    pub async fn start(domain: &str, secret: &str, adverts: Vec<Element>) -> FakeServer {
        FakeServer::start_with(domain, secret, adverts, Duration::ZERO).await
    }

    /// Like [`FakeServer::start`], with the advertisements sent `delay`
    /// after the handshake (as ejabberd does, from another process).
    pub async fn start_with(
        domain: &str,
        secret: &str,
        adverts: Vec<Element>,
        advert_delay: Duration,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut server = FakeServer {
            port,
            options: Options {
                domain: domain.to_owned(),
                secret: secret.to_owned(),
                adverts,
                advert_delay,
                answer_pings: Arc::new(AtomicBool::new(true)),
                ping_delay_ms: Arc::new(AtomicU64::new(0)),
            },
            events_tx,
            events,
            orders: Arc::new(Mutex::new(None)),
            counter: Arc::new(AtomicU32::new(0)),
            acceptor: None,
            current: Arc::new(std::sync::Mutex::new(None)),
        };
        server.listen(listener);
        server
    }

    fn listen(&mut self, listener: TcpListener) {
        let options = self.options.clone();
        let events = self.events_tx.clone();
        let orders = self.orders.clone();
        let counter = self.counter.clone();
        let current = self.current.clone();
        self.acceptor = Some(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let (tx, rx) = mpsc::unbounded_channel();
                *orders.lock().await = Some(tx);
                let task = tokio::spawn(connection(tcp, n, options.clone(), events.clone(), rx));
                // One connection at a time, like a server with one route
                // per component: a new one replaces the old.
                if let Some(old) = current.lock().ok().and_then(|mut c| c.replace(task)) {
                    old.abort();
                }
            }
        }));
    }

    /// Stops listening and kills the current connection: the server is
    /// down (connections are refused).
    pub async fn stop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
            let _ = a.await;
        }
        let task = self.current.lock().ok().and_then(|mut c| c.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        *self.orders.lock().await = None;
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind");
        self.listen(listener);
    }

    /// Whether self-pings are routed back.
    pub fn answer_pings(&self, yes: bool) {
        self.options.answer_pings.store(yes, Ordering::SeqCst);
    }

    /// Routes self-pings back only after `delay` (a slow server).
    pub fn delay_pings(&self, delay: Duration) {
        self.options
            .ping_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sends `n` chat messages to the component at once.
    pub async fn burst(&self, n: usize) {
        self.order(Order::Burst(n)).await;
    }

    async fn order(&self, order: Order) {
        if let Some(tx) = self.orders.lock().await.as_ref() {
            let _ = tx.send(order);
        }
    }

    /// Sends a stanza on the current connection.
    pub async fn send(&self, el: Element) {
        self.order(Order::Send(el)).await;
    }

    /// Drops the current connection (as a crash would: no stream footer).
    pub async fn drop_connection(&self) {
        self.order(Order::Drop).await;
    }

    /// The current connection handles `n` more stanzas and then dies,
    /// ignoring whatever else was written to it.
    pub async fn die_after(&self, n: usize) {
        self.order(Order::DieAfter(n)).await;
    }

    /// The next event, or a panic after `secs` seconds.
    pub async fn next_event(&mut self, secs: u64) -> Event {
        match tokio::time::timeout(Duration::from_secs(secs), self.events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => panic!("fake server gone"),
            Err(_) => panic!("no event from the fake server within {secs} s"),
        }
    }

    /// Waits for a connection to complete its handshake; returns its number.
    pub async fn connected(&mut self, secs: u64) -> u32 {
        loop {
            if let Event::Connected(n) = self.next_event(secs).await {
                return n;
            }
        }
    }

    /// The next `count` stanzas received (skipping other events).
    pub async fn received(&mut self, count: usize, secs: u64) -> Vec<(u32, Element)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while out.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(Event::Received(n, el))) => out.push((n, el)),
                Ok(Some(_)) => {}
                Ok(None) => panic!("fake server gone"),
                Err(_) => panic!(
                    "received {} of {count} stanzas within {secs} s: {:?}",
                    out.len(),
                    out.iter()
                        .map(|(n, e)| format!("{n}:{}", String::from(e)))
                        .collect::<Vec<_>>()
                ),
            }
        }
        out
    }

    /// Every event that arrives within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(e);
        }
        out
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        if let Some(task) = self.current.lock().ok().and_then(|mut c| c.take()) {
            task.abort();
        }
    }
}

/// Passes I/O through, except that writes are discarded while `discard`
/// is set (used to swallow the stream features the responder API insists
/// on sending: XEP-0114 has none).
struct Gate<S> {
    inner: S,
    discard: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Gate<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncBufRead + Unpin> AsyncBufRead for Gate<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.inner).consume(amt)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gate<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.discard.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn is_ping(el: &Element) -> bool {
    el.name() == "iq"
        && el
            .children()
            .any(|c| c.name() == "ping" && c.ns() == ns::PING)
}

async fn connection(
    tcp: TcpStream,
    n: u32,
    options: Options,
    events: mpsc::UnboundedSender<Event>,
    mut orders: mpsc::UnboundedReceiver<Order>,
) {
    let discard = Arc::new(AtomicBool::new(false));
    let io = Gate {
        inner: BufStream::new(tcp),
        discard: discard.clone(),
    };
    let long = Timeouts {
        read_timeout: Duration::from_secs(3600),
        response_timeout: Duration::from_secs(3600),
    };
    let Ok(accepted) = accept_stream(io, ns::COMPONENT, long).await else {
        let _ = events.send(Event::Closed(n));
        return;
    };
    let stream_id = format!("fake-stream-{n}");
    let Ok(pending) = accepted
        .send_header(StreamHeader {
            from: Some(options.domain.clone().into()),
            to: None,
            id: Some(stream_id.clone().into()),
        })
        .await
    else {
        let _ = events.send(Event::Closed(n));
        return;
    };
    discard.store(true, Ordering::SeqCst);
    let features = pending
        .send_features::<FallibleStreamElement>(&StreamFeatures::default())
        .await;
    discard.store(false, Ordering::SeqCst);
    let Ok(mut xs) = features else {
        let _ = events.send(Event::Closed(n));
        return;
    };
    let expected = Handshake::from_stream_id_and_password(stream_id, &options.secret);
    match xs.next().await {
        Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(h))))
            if h.data == expected.data =>
        {
            if xs
                .send(&XmppStreamElement::ComponentHandshake(Handshake::new()))
                .await
                .is_err()
            {
                return;
            }
        }
        _ => {
            let _ = events.send(Event::Refused);
            let _ = xs
                .send(&StreamError::new(
                    DefinedCondition::NotAuthorized,
                    "en",
                    "bad handshake",
                ))
                .await;
            let _ = SinkExt::<&Element>::close(&mut xs).await;
            return;
        }
    }
    let _ = events.send(Event::Connected(n));
    let mut adverts: Vec<Element> = options.adverts.clone();
    if options.advert_delay.is_zero() {
        for advert in adverts.drain(..) {
            if xs.send(&advert).await.is_err() {
                return;
            }
        }
    }
    serve(&mut xs, n, &options, &events, &mut orders, adverts).await;
    let _ = events.send(Event::Closed(n));
}

async fn serve<Io: AsyncBufRead + AsyncWrite + Unpin>(
    xs: &mut XmlStream<Io, FallibleStreamElement>,
    n: u32,
    options: &Options,
    events: &mpsc::UnboundedSender<Event>,
    orders: &mut mpsc::UnboundedReceiver<Order>,
    mut late_adverts: Vec<Element>,
) {
    let mut handled = 0usize;
    let mut die_at: Option<usize> = None;
    let adverts_at = tokio::time::Instant::now() + options.advert_delay;
    let mut echoes: VecDeque<(tokio::time::Instant, Element)> = VecDeque::new();
    loop {
        let next_echo = echoes.front().map(|(t, _)| *t);
        tokio::select! {
            _ = async {
                match next_echo {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((_, el)) = echoes.pop_front()
                    && xs.send(&el).await.is_err()
                {
                    return;
                }
            }
            _ = tokio::time::sleep_until(adverts_at), if !late_adverts.is_empty() => {
                for advert in late_adverts.drain(..) {
                    if xs.send(&advert).await.is_err() {
                        return;
                    }
                }
            }
            next = xs.next() => {
                let el = match next {
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(st)))) => Element::from(st),
                    Some(Ok(_)) => continue,
                    Some(Err(tokio_xmpp::xmlstream::ReadError::SoftTimeout)) => continue,
                    _ => return,
                };
                let to_self = el.attr("to") == Some(options.domain.as_str());
                if to_self && is_ping(&el) {
                    if options.answer_pings.load(Ordering::SeqCst) {
                        let _ = events.send(Event::Pinged(n));
                        let delay = Duration::from_millis(options.ping_delay_ms.load(Ordering::SeqCst));
                        if delay.is_zero() && echoes.is_empty() {
                            if xs.send(&el).await.is_err() {
                                return;
                            }
                        } else {
                            echoes.push_back((tokio::time::Instant::now() + delay, el));
                        }
                    }
                    continue;
                }
                let poison = el
                    .get_child("body", ns::COMPONENT_ACCEPT)
                    .is_some_and(|b| b.text() == "poison");
                if poison {
                    // As a server with a policy it enforces by closing.
                    let _ = xs
                        .send(&StreamError::new(
                            DefinedCondition::PolicyViolation,
                            "en",
                            "no poison here",
                        ))
                        .await;
                    let _ = SinkExt::<&Element>::close(xs).await;
                    return;
                }
                let _ = events.send(Event::Received(n, el));
                handled += 1;
                if die_at == Some(handled) {
                    // Dies without reading what else is in flight.
                    return;
                }
            }
            order = orders.recv() => match order {
                Some(Order::Send(el)) => {
                    if xs.send(&el).await.is_err() {
                        return;
                    }
                }
                Some(Order::DieAfter(k)) => die_at = Some(handled + k),
                Some(Order::Burst(k)) => {
                    for i in 0..k {
                        let el: Element = format!(
                            "<message xmlns='jabber:component:accept' from='burst@example.org/r' to='x@{}' id='b{i}'><body>{i}</body></message>",
                            options.domain
                        )
                        .parse()
                        .expect("xml");
                        if xs.feed(&el).await.is_err() {
                            return;
                        }
                    }
                    if SinkExt::<&Element>::flush(xs).await.is_err() {
                        return;
                    }
                }
                Some(Order::Drop) | None => return,
            }
        }
    }
}
