//! Tests of the gateway's task against the in-process XEP-0114 server and a
//! scripted bridge: session supervision (a crash in `connect`, in `act` or
//! in a session's task restarts that user's session only, with backoff),
//! `EventSink::flush`, and the order of an action's result and the events
//! it caused.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_bridge::{
    Account, Action, Address, AddressContext, AddressError, AddressRules, BridgeError,
    Capabilities, CloseReason, ContactId, Event, EventSink, Feature, Field, Form, FormValues,
    IncomingMessage, LoginError, MessageId, Network, NetworkInfo, Outcome, Prompt, Registration,
    Secret, Sender, Session, SessionContext, SessionPolicy, Spawner, UserId,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::minidom::Element;

use super::{GatewayParts, GatewaySettings};
use crate::access::AccessPolicy;
use crate::component::fake_server::FakeServer;
use crate::component::{ComponentConfig, Tuning};
use crate::http::Media;
use crate::metrics::BridgeMetrics;
use crate::store::{Key, Store};

const DOMAIN: &str = "gw.example.org";
const SECRET: &str = "s3cret";
const U: &str = "u@example.org";
const V: &str = "v@example.org";

struct Rules;

impl AddressRules for Rules {
    fn parse(
        &self,
        local: &str,
        _resource: Option<&str>,
        _ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError> {
        Ok(Address::Contact(ContactId::new(local)))
    }
    fn format(&self, address: &Address) -> (String, Option<String>) {
        match address {
            Address::Contact(c) => (c.to_string(), None),
            other => (other.to_string(), None),
        }
    }
    fn prompt(&self) -> Prompt {
        Prompt {
            description: "a name".into(),
            label: "Name".into(),
        }
    }
    fn from_prompt(&self, input: &str, _ctx: &AddressContext<'_>) -> Result<Address, AddressError> {
        Ok(Address::Contact(ContactId::new(input)))
    }
}

/// What the scripted network records and is told.
#[derive(Default)]
struct Script {
    /// `connect` calls per user, with their time.
    connects: Mutex<Vec<(String, Instant)>>,
    /// `connect` of this user panics this many times first.
    panics_in_connect: AtomicU32,
    /// Told when a session's flush returned.
    flushed: Mutex<Option<oneshot::Sender<()>>>,
}

struct Net {
    info: NetworkInfo,
    script: Arc<Script>,
}

#[async_trait]
impl Network for Net {
    fn info(&self) -> &NetworkInfo {
        &self.info
    }
    fn address(&self) -> &dyn AddressRules {
        &Rules
    }
    fn registration(&self) -> Form {
        Form::new("Register").field(Field::text("username", "User").required())
    }
    async fn login(&self, _user: &UserId, values: &FormValues) -> Result<Account, LoginError> {
        Ok(Account {
            name: values.get("username").unwrap_or_default().to_owned(),
            secret: Secret::default(),
        })
    }
    async fn connect(&self, ctx: SessionContext) -> Result<Box<dyn Session>, LoginError> {
        if let Ok(mut c) = self.script.connects.lock() {
            c.push((ctx.user.to_string(), Instant::now()));
        }
        if ctx.user.as_str() == U
            && self
                .script
                .panics_in_connect
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            panic!("scripted crash in connect");
        }
        Ok(Box::new(Sess {
            events: ctx.events,
            spawner: ctx.spawner,
            script: self.script.clone(),
        }))
    }
}

struct Sess {
    events: EventSink,
    spawner: Spawner,
    script: Arc<Script>,
}

#[async_trait]
impl Session for Sess {
    async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        let Action::SendMessage(m) = action else {
            return Ok(Outcome::Done);
        };
        match m.body.as_str() {
            "panic" => panic!("scripted crash in act"),
            "internal" => Err(BridgeError::internal("scripted internal error")),
            "task-panic" => {
                self.spawner
                    .spawn("scripted", async { panic!("scripted crash in a task") });
                Ok(Outcome::sent_none())
            }
            "flush" => {
                let events = self.events.clone();
                let script = self.script.clone();
                self.spawner.spawn("flusher", async move {
                    let mut msg = IncomingMessage::text(
                        Address::Contact(ContactId::new("bob")),
                        Sender::Contact(ContactId::new("bob")),
                        "from the network",
                    );
                    msg.id = Some(MessageId::new("f1"));
                    let _ = events.send(Event::Message(msg)).await;
                    let _ = events.flush().await;
                    let tx = script.flushed.lock().ok().and_then(|mut f| f.take());
                    if let Some(tx) = tx {
                        let _ = tx.send(());
                    }
                });
                Ok(Outcome::sent(MessageId::new("s-flush")))
            }
            "slow" => {
                // A network event arrives while this action is still busy.
                let events = self.events.clone();
                self.spawner.spawn("meanwhile", async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let msg = IncomingMessage::text(
                        Address::Contact(ContactId::new("bob")),
                        Sender::Contact(ContactId::new("bob")),
                        "meanwhile",
                    );
                    let _ = events.send(Event::Message(msg)).await;
                });
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(Outcome::sent_none())
            }
            "delivered-early" => {
                // The network confirms delivery before `act` returns.
                let _ = self
                    .events
                    .send(Event::Delivered {
                        chat: m.to.clone(),
                        id: MessageId::new("s-early"),
                    })
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Outcome::sent(MessageId::new("s-early")))
            }
            _ => Ok(Outcome::sent(MessageId::new(format!("s-{}", m.client_id)))),
        }
    }
    async fn close(&mut self, _reason: CloseReason) {}
}

struct Rig {
    server: FakeServer,
    store: Store,
    script: Arc<Script>,
    shutdown: CancellationToken,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn rig(delivery_receipts: bool) -> Rig {
    let mut server = FakeServer::start(DOMAIN, SECRET, vec![]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(Key::load_or_create(&dir.path().join("k")).expect("key"));
    let store = Store::open(&dir.path().join("gw.db"), key).expect("store");
    for u in [U, V] {
        store
            .register(
                &UserId::new(u),
                &Account {
                    name: u.split('@').next().unwrap_or_default().to_owned(),
                    secret: Secret::default(),
                },
            )
            .expect("register");
    }
    let metrics = Arc::new(BridgeMetrics::default());
    let shutdown = CancellationToken::new();
    let config = ComponentConfig {
        tuning: Tuning {
            keepalive: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            refused_retry: Duration::from_millis(300),
        },
        ..ComponentConfig::new(DOMAIN, SECRET, "127.0.0.1", server.port)
    };
    let (component, inbound) =
        crate::component::start(config, store.clone(), metrics.clone(), shutdown.clone());
    server.connected(5).await;
    let script = Arc::new(Script::default());
    script.panics_in_connect.store(1, Ordering::SeqCst);
    let network = Arc::new(Net {
        info: NetworkInfo {
            name: "Script".into(),
            gateway_type: "test".into(),
            registration: Registration::Required,
            sessions: SessionPolicy::AlwaysOn,
            capabilities: Capabilities::none().set(Feature::DeliveryReceipts, delivery_receipts),
            limits: ferry_bridge::Limits::default(),
        },
        script: script.clone(),
    });
    let parts = GatewayParts {
        settings: GatewaySettings {
            name: "script".into(),
            domain: DOMAIN.into(),
            access: AccessPolicy::new(["*@example.org"], ["admin@example.org"]).expect("access"),
            max_message_bytes: 65536,
            data_dir: dir.path().join("script"),
            session_idle_timeout: None,
            cluster: None,
        },
        network,
        component,
        inbound,
        store: store.clone(),
        media: Media::disabled(),
        metrics,
        shutdown: shutdown.clone(),
        routed: tokio::sync::mpsc::channel(1).1,
        bridge: ferry_bridge::BridgeContext::standalone("script", DOMAIN).0,
    };
    let gateway = tokio::spawn(super::run(parts));
    Rig {
        server,
        store,
        script,
        shutdown,
        gateway,
        _dir: dir,
    }
}

fn message(from: &str, to: &str, id: &str, body: &str, receipt: bool) -> Element {
    let receipt = if receipt {
        "<request xmlns='urn:xmpp:receipts'/>"
    } else {
        ""
    };
    format!(
        "<message xmlns='jabber:component:accept' from='{from}/r' to='{to}' type='chat' id='{id}'>\
         <body>{body}</body>{receipt}</message>"
    )
    .parse()
    .expect("test stanza")
}

/// Waits for a stanza that matches.
async fn wait_for(rig: &mut Rig, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let got = rig.server.received(1, left).await;
        if let Some((_, el)) = got.into_iter().next()
            && pred(&el)
        {
            return el;
        }
        assert!(Instant::now() < deadline, "no {what} within 10 s");
    }
}

fn body(el: &Element) -> String {
    el.get_child("body", "jabber:component:accept")
        .map(Element::text)
        .unwrap_or_default()
}

fn is_receipt_for(el: &Element, id: &str) -> bool {
    el.get_child("received", "urn:xmpp:receipts")
        .is_some_and(|r| r.attr("id") == Some(id))
}

async fn stop(rig: Rig) {
    rig.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), rig.gateway).await;
}

#[tokio::test]
async fn a_crash_in_connect_is_reported_and_the_session_restarts_with_backoff() {
    let mut rig = rig(false).await;
    let told = wait_for(&mut rig, "the crash notice", |el| {
        el.attr("to") == Some(U) && body(el).contains("session failed")
    })
    .await;
    assert!(
        body(&told).contains("scripted crash in connect"),
        "{}",
        body(&told)
    );
    // u's session is back: a message goes through (receipt after sending)
    rig.server
        .send(message(U, "bob@gw.example.org", "m1", "hi", true))
        .await;
    wait_for(&mut rig, "u's receipt", |el| is_receipt_for(el, "m1")).await;
    let connects = rig
        .script
        .connects
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let times: Vec<Instant> = connects
        .iter()
        .filter(|(u, _)| u == U)
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(times.len(), 2, "{connects:?}");
    assert!(
        times[1].duration_since(times[0]) >= Duration::from_millis(450),
        "restarted after a backoff"
    );
    // v was never restarted
    assert_eq!(connects.iter().filter(|(u, _)| u == V).count(), 1);
    stop(rig).await;
}

#[tokio::test]
async fn crashes_in_act_and_in_tasks_touch_only_their_user() {
    let mut rig = rig(false).await;
    wait_for(&mut rig, "u's first crash", |el| {
        body(el).contains("session failed")
    })
    .await;
    for trigger in ["panic", "task-panic", "internal"] {
        rig.server
            .send(message(U, "bob@gw.example.org", "x1", trigger, false))
            .await;
        wait_for(&mut rig, "the notice to u", |el| {
            el.attr("to") == Some(U) && body(el).contains("session failed")
        })
        .await;
        // v goes on meanwhile
        rig.server
            .send(message(V, "bob@gw.example.org", "v1", "hello", true))
            .await;
        let r = wait_for(&mut rig, "v's receipt", |el| is_receipt_for(el, "v1")).await;
        assert_eq!(r.attr("to"), Some(V));
    }
    let v_connects = rig
        .script
        .connects
        .lock()
        .map(|c| c.iter().filter(|(u, _)| u == V).count())
        .unwrap_or(0);
    assert_eq!(v_connects, 1, "v's session was never restarted");
    stop(rig).await;
}

#[tokio::test]
async fn flush_returns_once_what_came_before_is_stored() {
    let mut rig = rig(false).await;
    wait_for(&mut rig, "u's first crash", |el| {
        body(el).contains("session failed")
    })
    .await;
    let (tx, rx) = oneshot::channel();
    if let Ok(mut f) = rig.script.flushed.lock() {
        *f = Some(tx);
    }
    rig.server
        .send(message(U, "bob@gw.example.org", "m2", "flush", false))
        .await;
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("flush returned in time")
        .expect("flushed");
    // the message map of the event before the flush is stored now
    let stored = rig
        .store
        .xmpp_id(&UserId::new(U), "c/bob", "f1")
        .expect("store read");
    assert!(
        stored.is_some(),
        "the event's id mapping is stored at flush"
    );
    stop(rig).await;
}

#[tokio::test]
async fn a_delivery_reported_before_the_send_finished_still_gives_a_receipt() {
    let mut rig = rig(true).await;
    wait_for(&mut rig, "u's first crash", |el| {
        body(el).contains("session failed")
    })
    .await;
    rig.server
        .send(message(
            U,
            "bob@gw.example.org",
            "m3",
            "delivered-early",
            true,
        ))
        .await;
    let r = wait_for(&mut rig, "the receipt", |el| is_receipt_for(el, "m3")).await;
    assert_eq!(r.attr("from"), Some("bob@gw.example.org"));
    stop(rig).await;
}

#[tokio::test]
async fn a_slow_action_does_not_hold_back_the_users_events() {
    let mut rig = rig(false).await;
    wait_for(&mut rig, "u's first crash", |el| {
        body(el).contains("session failed")
    })
    .await;
    rig.server
        .send(message(U, "bob@gw.example.org", "m4", "slow", true))
        .await;
    // The network's message (100 ms into a 3 s action) arrives before the
    // receipt that follows the action's end.
    let first = wait_for(&mut rig, "the message or the receipt", |el| {
        body(el) == "meanwhile" || is_receipt_for(el, "m4")
    })
    .await;
    assert_eq!(body(&first), "meanwhile", "{}", String::from(&first));
    wait_for(&mut rig, "the receipt", |el| is_receipt_for(el, "m4")).await;
    stop(rig).await;
}
