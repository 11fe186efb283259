//! Tests of the component stream against the in-process fake XEP-0114
//! server (every behaviour) and against the real servers started by
//! `contrib/peers` (handshake, privileges, restart).

use std::sync::atomic::Ordering;
use std::time::Duration;

use xmpp_parsers::disco::DiscoInfoQuery;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::fake_server::{Event, FakeServer};
use super::*;
use crate::store::Key;

const DOMAIN: &str = "gw.example.org";
const SECRET: &str = "s3cret";

fn fast() -> Tuning {
    Tuning {
        keepalive: Duration::from_millis(400),
        keepalive_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(3),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        refused_retry: Duration::from_millis(300),
    }
}

struct Rig {
    dir: tempfile::TempDir,
    key: Arc<Key>,
    store: Store,
    metrics: Arc<BridgeMetrics>,
    handle: ComponentHandle,
    inbound: mpsc::Receiver<Inbound>,
    shutdown: CancellationToken,
}

impl Rig {
    fn start(port: u16, secret: &str, tuning: Tuning) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Arc::new(Key::load_or_create(&dir.path().join("k")).expect("key"));
        let store = Store::open(&dir.path().join("gw.db"), key.clone()).expect("store");
        Rig::with_store(dir, key, store, port, secret, tuning)
    }

    fn with_store(
        dir: tempfile::TempDir,
        key: Arc<Key>,
        store: Store,
        port: u16,
        secret: &str,
        tuning: Tuning,
    ) -> Rig {
        let metrics = Arc::new(BridgeMetrics::default());
        let shutdown = CancellationToken::new();
        let config = ComponentConfig {
            tuning,
            ..ComponentConfig::new(DOMAIN, secret, "127.0.0.1", port)
        };
        let (handle, inbound) = start(config, store.clone(), metrics.clone(), shutdown.clone());
        Rig {
            dir,
            key,
            store,
            metrics,
            handle,
            inbound,
            shutdown,
        }
    }

    async fn next(&mut self, secs: u64) -> Inbound {
        match tokio::time::timeout(Duration::from_secs(secs), self.inbound.recv()).await {
            Ok(Some(i)) => i,
            Ok(None) => panic!("inbound closed"),
            Err(_) => panic!(
                "nothing inbound within {secs} s (state {:?})",
                self.handle.state()
            ),
        }
    }

    async fn connected(&mut self, secs: u64) -> Privileges {
        loop {
            if let Inbound::Connected(p) = self.next(secs).await {
                return p;
            }
        }
    }

    async fn disconnected(&mut self, secs: u64) -> String {
        loop {
            if let Inbound::Disconnected(why) = self.next(secs).await {
                return why;
            }
        }
    }

    async fn wait_for(&self, what: &str, secs: u64, mut cond: impl FnMut(&Rig) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {secs} s (state {:?})",
                self.handle.state()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn msg(i: usize) -> Element {
    format!(
        "<message xmlns='jabber:component:accept' from='{DOMAIN}' to='alice@example.org' id='m{i}' type='chat'><body>{i}</body></message>"
    )
    .parse()
    .expect("xml")
}

fn body(el: &Element) -> usize {
    el.get_child("body", ns::COMPONENT_ACCEPT)
        .map(|b| b.text())
        .and_then(|t| t.parse().ok())
        .unwrap_or(usize::MAX)
}

use xmpp_parsers::ns;

fn adverts() -> Vec<Element> {
    vec![
        "<message xmlns='jabber:component:accept' from='example.org' to='gw.example.org'>\
           <privilege xmlns='urn:xmpp:privilege:2'>\
             <perm type='both' access='roster'/><perm type='outgoing' access='message'/>\
             <perm access='iq'><namespace ns='urn:xmpp:mam:2' type='get'/></perm>\
           </privilege></message>"
            .parse()
            .expect("xml"),
        "<message xmlns='jabber:component:accept' from='other.org' to='gw.example.org'>\
           <privilege xmlns='urn:xmpp:privilege:1'>\
             <perm type='get' access='roster'/><perm type='managed_entity' access='presence'/>\
           </privilege></message>"
            .parse()
            .expect("xml"),
    ]
}

#[tokio::test]
async fn handshake_privileges_and_stanzas_both_ways() {
    let mut server = FakeServer::start(DOMAIN, SECRET, adverts()).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    let privileges = rig.connected(5).await;
    let g = privileges.for_domain("example.org").expect("example.org");
    assert_eq!(g.roster, Access::Both);
    assert!(g.message_outgoing);
    assert_eq!(g.iq.get("urn:xmpp:mam:2"), Some(&Access::Get));
    let g = privileges.for_domain("other.org").expect("other.org");
    assert_eq!(g.namespace, "urn:xmpp:privilege:1");
    assert_eq!(g.roster, Access::Get);
    assert_eq!(g.presence.as_deref(), Some("managed_entity"));
    assert_eq!(rig.handle.privileges(), privileges);
    assert!(matches!(rig.handle.state(), StreamState::Connected { .. }));
    assert_eq!(rig.metrics.connected.load(Ordering::Relaxed), 1);

    for i in 0..3 {
        rig.handle.send(msg(i));
    }
    let got = server.received(3, 5).await;
    assert_eq!(
        got.iter().map(|(_, e)| body(e)).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    server
        .send(
            "<message xmlns='jabber:component:accept' from='alice@example.org/phone' to='bob@gw.example.org' id='in1'><body>hello</body></message>"
                .parse()
                .expect("xml"),
        )
        .await;
    match rig.next(5).await {
        Inbound::Stanza(xmpp_parsers::stanza::Stanza::Message(m)) => {
            assert_eq!(m.id.as_ref().map(|i| i.0.as_str()), Some("in1"));
        }
        other => panic!("expected the message, got {other:?}"),
    }
    assert_eq!(rig.metrics.stanzas_out.load(Ordering::Relaxed), 3);
    assert!(rig.metrics.stanzas_in.load(Ordering::Relaxed) >= 1);
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_late_advertisement_is_waited_for() {
    let mut server =
        FakeServer::start_with(DOMAIN, SECRET, adverts(), Duration::from_millis(150)).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    let privileges = rig.connected(5).await;
    assert_eq!(privileges.by_domain.len(), 2, "{privileges:?}");
}

#[tokio::test]
async fn without_privileges_the_stream_still_comes_up() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    let started = std::time::Instant::now();
    let privileges = rig.connected(5).await;
    assert!(privileges.by_domain.is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_refused_handshake_is_reported_and_retried() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let rig = Rig::start(server.port, "wrong-secret", fast());
    let mut refused = 0;
    while refused < 2 {
        match server.next_event(5).await {
            Event::Refused => refused += 1,
            Event::Connected(_) => panic!("a wrong secret was accepted"),
            _ => {}
        }
    }
    rig.wait_for(
        "two failed attempts",
        5,
        |r| matches!(r.handle.state(), StreamState::Connecting { attempt, .. } if attempt >= 2),
    )
    .await;
    match rig.handle.state() {
        StreamState::Connecting {
            last_error: Some(e),
            ..
        } => assert!(e.contains("not-authorized") || e.contains("refused"), "{e}"),
        other => panic!("unexpected state {other:?}"),
    }
    assert_eq!(rig.metrics.connected.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn the_state_shows_the_failure_while_waiting_to_retry() {
    let slow = Tuning {
        backoff_min: Duration::from_secs(5),
        backoff_max: Duration::from_secs(10),
        refused_retry: Duration::from_secs(10),
        ..fast()
    };
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let refused = Rig::start(server.port, "wrong", slow);
    refused
        .wait_for("the refusal shown", 2, |r| {
            matches!(&r.handle.state(), StreamState::Connecting { attempt: 1, last_error: Some(e) } if e.contains("not-authorized"))
        })
        .await;
    let mut rig = Rig::start(server.port, SECRET, slow);
    loop {
        if let Event::Connected(_) = server.next_event(5).await {
            break;
        }
    }
    rig.connected(5).await;
    server.drop_connection().await;
    rig.disconnected(5).await;
    match rig.handle.state() {
        StreamState::Connecting {
            attempt: 1,
            last_error: Some(_),
        } => {}
        other => panic!("while waiting to reconnect the state is {other:?}"),
    }
}

#[tokio::test]
async fn reconnects_after_the_server_drops_the_connection() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    assert_eq!(server.connected(5).await, 1);
    rig.connected(5).await;
    server.drop_connection().await;
    let why = rig.disconnected(5).await;
    assert!(!why.is_empty());
    assert_eq!(server.connected(5).await, 2);
    rig.connected(5).await;
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 1);
    rig.handle.send(msg(7));
    let got = server.received(1, 5).await;
    assert_eq!((got[0].0, body(&got[0].1)), (2, 7));
}

#[tokio::test]
async fn backs_off_while_the_server_is_down_then_reconnects() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    server.stop().await;
    rig.disconnected(5).await;
    let started = std::time::Instant::now();
    rig.wait_for(
        "four failed attempts",
        10,
        |r| matches!(r.handle.state(), StreamState::Connecting { attempt, .. } if attempt >= 4),
    )
    .await;
    let elapsed = started.elapsed();
    // 50 ms doubling with jitter: at least 25+50+100 ms before attempt 4,
    // and the cap (400 ms) keeps it well under 3 s.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    println!("4 attempts in {elapsed:?}");
    match rig.handle.state() {
        StreamState::Connecting {
            last_error: Some(e),
            ..
        } => assert!(e.to_lowercase().contains("refused"), "{e}"),
        other => panic!("unexpected state {other:?}"),
    }
    server.resume().await;
    server.connected(5).await;
    rig.connected(5).await;
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_outbox_keeps_order_across_a_disconnection() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    rig.handle.send(msg(0));
    server.received(1, 5).await;
    server.stop().await;
    rig.disconnected(5).await;
    for i in 1..=50 {
        rig.handle.send(msg(i));
    }
    let store = rig.store.clone();
    rig.wait_for("50 stanzas in the outbox", 5, move |_| {
        store.outbox_len().unwrap_or(0) == 50
    })
    .await;
    rig.wait_for("an outbox depth of 50", 5, |r| {
        r.metrics.outbox_depth.load(Ordering::Relaxed) == 50
    })
    .await;
    server.resume().await;
    server.connected(5).await;
    rig.connected(5).await;
    for i in 51..=60 {
        rig.handle.send(msg(i));
    }
    let got = server.received(60, 10).await;
    assert_eq!(
        got.iter().map(|(_, e)| body(e)).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<_>>()
    );
    let store = rig.store.clone();
    rig.wait_for("the outbox emptied once confirmed", 5, move |_| {
        store.outbox_len().unwrap_or(1) == 0
    })
    .await;
    rig.wait_for("depth 0", 5, |r| {
        r.metrics.outbox_depth.load(Ordering::Relaxed) == 0
    })
    .await;
}

#[tokio::test]
async fn nothing_is_lost_when_the_server_dies_mid_stream() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    server.die_after(10).await;
    // Let the order reach the connection before writing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..200 {
        rig.handle.send(msg(i));
    }
    let mut seen = Vec::new();
    let mut firsts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while firsts.len() < 200 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(e) = tokio::time::timeout(left, server.next_event(15)).await else {
            panic!("only {} of 200 arrived: {firsts:?}", firsts.len());
        };
        if let Event::Received(conn, el) = e {
            let b = body(&el);
            seen.push((conn, b));
            if !firsts.contains(&b) {
                firsts.push(b);
            }
        }
    }
    assert_eq!(
        firsts,
        (0..200).collect::<Vec<_>>(),
        "first arrivals in order"
    );
    let first_conn: Vec<usize> = seen
        .iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, b)| *b)
        .collect();
    assert_eq!(first_conn, (0..10).collect::<Vec<_>>());
    let dups = seen.len() - 200;
    println!("server died after 10 of 200: {dups} duplicates after the reconnection");
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn keepalive_pings_on_silence_and_stays_up() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    let events = server.drain(Duration::from_millis(1500)).await;
    let pings = events
        .iter()
        .filter(|e| matches!(e, Event::Pinged(1)))
        .count();
    assert!(pings >= 2, "{pings} pings in 1.5 s of silence: {events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Closed(_) | Event::Connected(_)))
    );
    assert!(matches!(rig.handle.state(), StreamState::Connected { .. }));
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_slow_gateway_does_not_make_the_stream_look_dead() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    // A ping in flight, its answer behind 2000 stanzas the gateway does not
    // read for longer than the ping timeout (2 s).
    server.delay_pings(Duration::from_millis(100));
    rig.handle.send(msg(1));
    server.received(1, 5).await;
    server.burst(2000).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0;
    while got < 2000 {
        match rig.next(5).await {
            Inbound::Stanza(_) => got += 1,
            Inbound::Disconnected(why) => panic!("disconnected after {got}: {why}"),
            _ => {}
        }
    }
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 0);
    assert!(matches!(rig.handle.state(), StreamState::Connected { .. }));
}

#[tokio::test]
async fn an_unanswered_ping_means_a_dead_stream() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    server.answer_pings(false);
    let why = rig.disconnected(10).await;
    assert!(why.contains("ping") || why.contains("silent"), "{why}");
    server.answer_pings(true);
    assert_eq!(server.connected(5).await, 2);
    rig.connected(5).await;
}

#[tokio::test]
async fn an_invalid_stanza_arrives_with_its_header() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    // An iq get must have exactly one child.
    server
        .send(
            "<iq xmlns='jabber:component:accept' type='get' id='bad1' from='u@example.org/r' to='gw.example.org'/>"
                .parse()
                .expect("xml"),
        )
        .await;
    server.send(msg(42)).await;
    match rig.next(5).await {
        Inbound::Invalid(inv) => {
            assert_eq!(inv.name, "iq");
            assert_eq!(inv.id.as_deref(), Some("bad1"));
            assert_eq!(inv.from.as_deref(), Some("u@example.org/r"));
            assert_eq!(inv.to.as_deref(), Some("gw.example.org"));
            assert_eq!(inv.type_.as_deref(), Some("get"));
            assert!(!inv.error.is_empty());
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(
        matches!(rig.next(5).await, Inbound::Stanza(_)),
        "the stream goes on"
    );
}

#[tokio::test]
async fn requests_are_correlated_with_their_responses() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    let to: Jid = "example.org".parse().expect("jid");
    let from: Jid = DOMAIN.parse().expect("jid");
    let query = || {
        Iq::from_get("", DiscoInfoQuery { node: None })
            .with_to(to.clone())
            .with_from(from.clone())
    };
    let h = rig.handle.clone();
    let q = query();
    let ok = tokio::spawn(async move { h.request(q, Duration::from_secs(5)).await });
    let (_, req) = server.received(1, 5).await.remove(0);
    let id = req.attr("id").expect("an id was assigned").to_owned();
    assert!(!id.is_empty());
    // An unrelated result first: not a response to the request.
    server
        .send(Element::from(
            Iq::empty_result(from.clone(), "someone-else").with_from(to.clone()),
        ))
        .await;
    server
        .send(Element::from(
            Iq::empty_result(from.clone(), id).with_from(to.clone()),
        ))
        .await;
    let answer = ok.await.expect("task").expect("result");
    assert!(matches!(answer, Iq::Result { .. }));
    match rig.next(5).await {
        Inbound::Stanza(xmpp_parsers::stanza::Stanza::Iq(iq)) => {
            assert_eq!(iq.id(), "someone-else")
        }
        other => panic!("expected the unrelated iq, got {other:?}"),
    }

    let h = rig.handle.clone();
    let q = query();
    let err = tokio::spawn(async move { h.request(q, Duration::from_secs(5)).await });
    let (_, req) = server.received(1, 5).await.remove(0);
    let id = req.attr("id").expect("id").to_owned();
    let error = StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ItemNotFound,
        "en",
        "nope",
    );
    server
        .send(Element::from(
            Iq::from_error(id, error)
                .with_to(from.clone())
                .with_from(to.clone()),
        ))
        .await;
    match err.await.expect("task") {
        Err(RequestError::Error(e)) => {
            assert_eq!(e.defined_condition, DefinedCondition::ItemNotFound)
        }
        other => panic!("expected an error response, got {other:?}"),
    }

    let started = std::time::Instant::now();
    let r = rig
        .handle
        .request(query(), Duration::from_millis(300))
        .await;
    assert!(matches!(r, Err(RequestError::Timeout)), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn requests_fail_when_the_stream_dies() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    let h = rig.handle.clone();
    let req = tokio::spawn(async move {
        h.request(
            Iq::from_get("q1", DiscoInfoQuery { node: None })
                .with_to("example.org".parse().expect("jid")),
            Duration::from_secs(10),
        )
        .await
    });
    server.received(1, 5).await;
    server.drop_connection().await;
    assert!(matches!(
        req.await.expect("task"),
        Err(RequestError::Disconnected)
    ));
}

#[tokio::test]
async fn the_outbox_survives_a_restart_of_ferry() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    server.stop().await;
    let rig = Rig::start(server.port, SECRET, fast());
    for i in 0..5 {
        rig.handle.send(msg(i));
    }
    let store = rig.store.clone();
    rig.wait_for("5 in the outbox", 5, move |_| {
        store.outbox_len().unwrap_or(0) == 5
    })
    .await;
    rig.handle.close(Duration::from_secs(1)).await;
    assert_eq!(rig.handle.state(), StreamState::Closed);
    // Sent after close: kept for the next start.
    rig.handle.send(msg(5));
    let Rig {
        dir, key, store, ..
    } = rig;
    drop(store);
    let store = Store::open(&dir.path().join("gw.db"), key.clone()).expect("reopen");
    assert_eq!(store.outbox_len().expect("len"), 6);
    server.resume().await;
    let mut rig = Rig::with_store(dir, key, store, server.port, SECRET, fast());
    rig.connected(5).await;
    let got = server.received(6, 5).await;
    assert_eq!(
        got.iter().map(|(_, e)| body(e)).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn a_long_queue_is_congested_until_the_task_has_written_it() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    assert!(!rig.handle.congested());
    // The test runtime has one thread: nothing is written before this
    // task waits, so the whole burst is queued.
    let n = QUEUE_HIGH + 10;
    for i in 0..n {
        rig.handle.send(msg(i));
    }
    assert!(rig.handle.congested(), "{n} queued stanzas");
    tokio::time::timeout(Duration::from_secs(5), rig.handle.uncongested())
        .await
        .expect("the queue drains below the low mark");
    assert!(!rig.handle.congested());
    // Nothing was held back or lost on the way.
    let got = server.received(n, 10).await;
    assert_eq!(got.len(), n);
    assert_eq!(body(&got[n - 1].1), n - 1);
    rig.shutdown.cancel();
}

#[tokio::test]
async fn close_sends_what_is_queued_first() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    for i in 0..20 {
        rig.handle.send(msg(i));
    }
    rig.handle.close(Duration::from_secs(3)).await;
    assert_eq!(rig.handle.state(), StreamState::Closed);
    let got = server.received(20, 5).await;
    assert_eq!(got.len(), 20);
    assert!(
        server
            .drain(Duration::from_millis(500))
            .await
            .iter()
            .any(|e| matches!(e, Event::Closed(1)))
    );
    assert_eq!(rig.store.outbox_len().expect("len"), 0);
    rig.shutdown.cancel();
}

#[tokio::test]
async fn client_namespace_stanzas_are_sent_in_the_component_namespace() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    let el: Element = "<message xmlns='jabber:client' to='alice@example.org' from='gw.example.org'><body>9</body><x xmlns='urn:other'><y/></x></message>"
        .parse()
        .expect("xml");
    rig.handle.send(el);
    let (_, got) = server.received(1, 5).await.remove(0);
    assert_eq!(got.ns(), ns::COMPONENT_ACCEPT);
    assert_eq!(body(&got), 9);
    assert!(
        got.get_child("x", "urn:other")
            .and_then(|x| x.get_child("y", "urn:other"))
            .is_some()
    );
    // A stanza nested in an extension keeps jabber:client (XEP-0297,
    // XEP-0356, XEP-0313 require it).
    let el: Element = "<message xmlns='jabber:component:accept' to='alice@example.org' from='gw.example.org'>\
        <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='r@gw/n'><body>8</body></message></forwarded></message>"
        .parse()
        .expect("xml");
    rig.handle.send(el);
    let (_, got) = server.received(1, 5).await.remove(0);
    let inner = got
        .get_child("forwarded", "urn:xmpp:forward:0")
        .and_then(|f| f.get_child("message", "jabber:client"));
    assert!(inner.is_some(), "{}", String::from(&got));
}

#[tokio::test]
async fn stanzas_that_would_close_the_stream_are_not_sent() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    let bad = [
        "<message xmlns='jabber:component:accept' from='evil@other.org' to='alice@example.org'><body>x</body></message>",
        "<message xmlns='jabber:component:accept' from='u@sub.gw.example.org' to='alice@example.org'><body>x</body></message>",
        "<message xmlns='jabber:component:accept' from='u@gw.example.org'><body>no to</body></message>",
        "<message xmlns='jabber:component:accept' from='u@gw.example.org' to='a@b@c'><body>x</body></message>",
        "<handshake xmlns='jabber:component:accept'/>",
    ];
    for b in bad {
        rig.handle.send(b.parse().expect("xml"));
    }
    // Fixed up: no from (the domain itself), a from in upper case.
    rig.handle.send(
        "<message xmlns='jabber:component:accept' to='alice@example.org' id='nofrom'><body>1</body></message>"
            .parse()
            .expect("xml"),
    );
    rig.handle.send(
        "<message xmlns='jabber:component:accept' from='Bob@GW.Example.org/Res' to='alice@example.org' id='upper'><body>2</body></message>"
            .parse()
            .expect("xml"),
    );
    let got = server.received(2, 5).await;
    assert_eq!(got[0].1.attr("from"), Some(DOMAIN));
    assert_eq!(got[1].1.attr("from"), Some("bob@gw.example.org/Res"));
    assert_eq!(rig.metrics.errors.load(Ordering::Relaxed), bad.len() as u64);
    assert!(
        server
            .drain(Duration::from_millis(300))
            .await
            .iter()
            .all(|e| !matches!(e, Event::Received(..)))
    );
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_stanza_the_server_rejects_is_found_and_dropped() {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let mut rig = Rig::start(server.port, SECRET, fast());
    server.connected(5).await;
    rig.connected(5).await;
    let poison: Element = format!(
        "<message xmlns='jabber:component:accept' from='{DOMAIN}' to='alice@example.org' id='p'><body>poison</body></message>"
    )
    .parse()
    .expect("xml");
    for i in 0..10 {
        if i == 5 {
            rig.handle.send(poison.clone());
        }
        rig.handle.send(msg(i));
    }
    let mut firsts = Vec::new();
    while firsts.len() < 10 {
        let (_, el) = server.received(1, 10).await.remove(0);
        let b = body(&el);
        if !firsts.contains(&b) {
            firsts.push(b);
        }
    }
    assert_eq!(firsts, (0..10).collect::<Vec<_>>());
    rig.wait_for("the stream up again", 10, |r| {
        matches!(r.handle.state(), StreamState::Connected { .. })
    })
    .await;
    assert_eq!(rig.metrics.errors.load(Ordering::Relaxed), 1);
    let store = rig.store.clone();
    rig.wait_for("the outbox empty", 5, move |_| {
        store.outbox_len().unwrap_or(1) == 0
    })
    .await;
    // Back to normal: the next stanzas flow.
    rig.handle.send(msg(99));
    let (_, el) = server.received(1, 5).await.remove(0);
    assert_eq!(body(&el), 99);
}

// ------------------------------------------------------------------ real servers

/// An environment variable the project's test command provides
/// (`contrib/peers/start-peers.sh` writes them to `peers.env`).
fn peer_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs the real XMPP servers. Start them with \
             contrib/peers/start-peers.sh DIR and `source DIR/peers.env` (tests/run.sh does both)"
        ),
    }
}

fn real_rig(domain: &str, secret: &str, host: &str, port: u16, tuning: Tuning) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(Key::load_or_create(&dir.path().join("k")).expect("key"));
    let store = Store::open(&dir.path().join("gw.db"), key.clone()).expect("store");
    let metrics = Arc::new(BridgeMetrics::default());
    let shutdown = CancellationToken::new();
    let config = ComponentConfig {
        tuning,
        ..ComponentConfig::new(domain, secret, host, port)
    };
    let (handle, inbound) = start(config, store.clone(), metrics.clone(), shutdown.clone());
    Rig {
        dir,
        key,
        store,
        metrics,
        handle,
        inbound,
        shutdown,
    }
}

fn real_tuning() -> Tuning {
    Tuning {
        keepalive: Duration::from_secs(2),
        keepalive_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        refused_retry: Duration::from_millis(500),
    }
}

/// Against Prosody with mod_privilege: the real handshake and privilege
/// advertisement, an unprivileged component, a wrong secret, keepalive,
/// a message through the server, and a restart of Prosody mid-stream with
/// nothing lost. One test, run in order: the steps share the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prosody() {
    let host = std::env::var("XMPP_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = peer_env("XMPP_COMPONENT_PORT").parse().expect("port");
    let peers_dir = peer_env("PEERS_DIR");
    let domain = peer_env("TEST_COMPONENT_JID");
    let secret = peer_env("TEST_COMPONENT_SECRET");
    let xmpp_domain = std::env::var("XMPP_DOMAIN").unwrap_or_else(|_| "localhost".into());

    // The privileged component: the advertisement of mod_privilege.
    let mut rig = real_rig(&domain, &secret, &host, port, real_tuning());
    let privileges = rig.connected(10).await;
    let grant = privileges
        .for_domain(&xmpp_domain)
        .unwrap_or_else(|| panic!("no privileges from {xmpp_domain}: {privileges:?}"));
    assert_eq!(grant.namespace, "urn:xmpp:privilege:2");
    assert_eq!(grant.roster, Access::Both);
    assert!(grant.message_outgoing);
    assert_eq!(grant.presence.as_deref(), Some("roster"));
    assert!(
        grant
            .iq
            .get("http://jabber.org/protocol/pubsub")
            .is_some_and(|a| a.can_get() && a.can_set()),
        "{grant:?}"
    );
    println!("prosody: {}", privilege::describe(&xmpp_domain, grant));

    // The server answers a request (disco#info of the server).
    let info = rig
        .handle
        .request(
            Iq::from_get("", DiscoInfoQuery { node: None })
                .with_from(domain.parse().expect("jid"))
                .with_to(xmpp_domain.parse().expect("jid")),
            Duration::from_secs(5),
        )
        .await
        .expect("disco#info answered");
    assert!(matches!(info, Iq::Result { .. }));

    // An unprivileged component gets none.
    let domain2 = peer_env("TEST2_COMPONENT_JID");
    let secret2 = peer_env("TEST2_COMPONENT_SECRET");
    let mut rig2 = real_rig(&domain2, &secret2, &host, port, real_tuning());
    let p2 = rig2.connected(10).await;
    assert!(p2.by_domain.is_empty(), "{p2:?}");
    rig2.handle.close(Duration::from_secs(2)).await;

    // A wrong secret is refused, clearly.
    let bad = real_rig(&domain2, "not-the-secret", &host, port, real_tuning());
    bad.wait_for("the wrong secret refused", 10, |r| {
        matches!(&r.handle.state(), StreamState::Connecting { last_error: Some(_), attempt } if *attempt >= 1)
    })
    .await;
    println!("prosody, wrong secret: {:?}", bad.handle.state());
    bad.handle.close(Duration::from_secs(1)).await;

    // Keepalive: stays up over several silent keepalive periods.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(matches!(rig.handle.state(), StreamState::Connected { .. }));
    assert_eq!(rig.metrics.reconnects.load(Ordering::Relaxed), 0);

    // Prosody restarts while messages flow: every message reaches the
    // server (stanzas to the component's own domain come back to it, so
    // each one that arrives proves the server processed it).
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/peers/restart-peer.sh");
    let restart = std::process::Command::new(&script)
        .arg(&peers_dir)
        .arg("prosody")
        .arg("2")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("restart-peer.sh");
    let total = 300;
    let mut received = std::collections::BTreeSet::new();
    let mut next = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut restart = Some(restart);
    let mut disconnected = false;
    while received.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {total} messages came back through prosody after its restart",
            received.len()
        );
        if next < total {
            let el: Element = format!(
                "<message xmlns='jabber:component:accept' from='probe@{domain}' to='echo@{domain}' id='r{next}' type='normal'><body>{next}</body></message>"
            )
            .parse()
            .expect("xml");
            rig.handle.send(el);
            next += 1;
        }
        if let Some(r) = restart.as_mut()
            && let Ok(Some(status)) = r.try_wait()
        {
            assert!(status.success(), "restart-peer.sh failed");
            restart = None;
        }
        let wait = if next < total { 20 } else { 500 };
        if let Ok(Some(i)) =
            tokio::time::timeout(Duration::from_millis(wait), rig.inbound.recv()).await
        {
            match i {
                Inbound::Stanza(xmpp_parsers::stanza::Stanza::Message(m)) => {
                    if let Some(b) = m.bodies.values().next()
                        && let Ok(n) = b.parse::<usize>()
                    {
                        received.insert(n);
                    }
                }
                Inbound::Disconnected(_) => disconnected = true,
                _ => {}
            }
        }
    }
    if let Some(mut r) = restart {
        let status = tokio::task::spawn_blocking(move || r.wait())
            .await
            .expect("join");
        assert!(status.expect("wait").success());
    }
    assert!(disconnected, "the restart was not noticed");
    assert!(rig.metrics.reconnects.load(Ordering::Relaxed) >= 1);
    println!(
        "prosody restart: {total} messages, all back; {} stanzas out, outbox now {}",
        rig.metrics.stanzas_out.load(Ordering::Relaxed),
        rig.store.outbox_len().expect("len")
    );
    rig.handle.close(Duration::from_secs(3)).await;
}

/// Against ejabberd 23.01 (`WITH_EJABBERD=1`): handshake and its
/// `urn:xmpp:privilege:1` advertisement.
#[tokio::test]
async fn real_ejabberd() {
    let host = std::env::var("XMPP_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = peer_env("EJ_COMPONENT_PORT").parse().expect("port");
    let domain = peer_env("TEST_COMPONENT_JID");
    let secret = peer_env("TEST_COMPONENT_SECRET");
    let xmpp_domain = std::env::var("XMPP_DOMAIN").unwrap_or_else(|_| "localhost".into());
    let mut rig = real_rig(&domain, &secret, &host, port, real_tuning());
    let privileges = rig.connected(15).await;
    let grant = privileges
        .for_domain(&xmpp_domain)
        .unwrap_or_else(|| panic!("no privileges from {xmpp_domain}: {privileges:?}"));
    assert_eq!(grant.namespace, "urn:xmpp:privilege:1");
    assert_eq!(grant.roster, Access::Both);
    assert!(grant.message_outgoing);
    println!("ejabberd: {}", privilege::describe(&xmpp_domain, grant));
    for i in 0..20 {
        rig.handle.send(
            format!(
                "<message xmlns='jabber:component:accept' from='probe@{domain}' to='echo@{domain}' id='e{i}'><body>{i}</body></message>"
            )
            .parse()
            .expect("xml"),
        );
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        if let Inbound::Stanza(xmpp_parsers::stanza::Stanza::Message(m)) = rig.next(10).await {
            got.push(m.bodies.values().next().cloned().unwrap_or_default());
        }
    }
    assert_eq!(got, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    rig.handle.close(Duration::from_secs(3)).await;
}

/// Throughput through the real Prosody, printed (run on demand with
/// `cargo test --release -- --ignored --nocapture bench_component`):
/// messages to the component's own domain travel there and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand"]
async fn bench_component_round_trips_through_prosody() {
    let host = std::env::var("XMPP_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = peer_env("XMPP_COMPONENT_PORT").parse().expect("port");
    let domain = peer_env("TEST2_COMPONENT_JID");
    let secret = peer_env("TEST2_COMPONENT_SECRET");
    let mut rig = real_rig(&domain, &secret, &host, port, Tuning::default());
    rig.connected(10).await;
    for &n in &[1_000usize, 20_000] {
        let started = std::time::Instant::now();
        for i in 0..n {
            rig.handle.send(
                format!(
                    "<message xmlns='jabber:component:accept' from='a@{domain}' to='b@{domain}' id='t{i}'><body>message {i} with a little text</body></message>"
                )
                .parse()
                .expect("xml"),
            );
        }
        let mut got = 0;
        while got < n {
            if let Inbound::Stanza(_) = rig.next(60).await {
                got += 1;
            }
        }
        let t = started.elapsed();
        println!(
            "component bench: {n} messages through prosody and back in {:.0} ms ({:.0} msg/s each way)",
            t.as_secs_f64() * 1e3,
            n as f64 / t.as_secs_f64()
        );
    }
    rig.handle.close(Duration::from_secs(3)).await;
}

#[test]
fn a_resource_with_an_at_sign_is_in_the_domain() {
    let mut el: Element = "<presence xmlns='jabber:component:accept' \
        from='group-1@email.example.org/bob@example.net' to='alice@example.org/x'/>"
        .parse()
        .expect("stanza");
    assert_eq!(check_addressing(&mut el, "email.example.org"), Ok(()));
    let mut el: Element = "<presence xmlns='jabber:component:accept' \
        from='bob@example.net/x@email.example.org' to='alice@example.org/x'/>"
        .parse()
        .expect("stanza");
    assert!(check_addressing(&mut el, "email.example.org").is_err());
}
