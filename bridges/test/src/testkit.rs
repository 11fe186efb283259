//! Helpers of the unit tests: sessions driven directly with actions, their
//! events read from the sink, an in-memory key/value store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::{
    Account, Action, BridgeError, BridgeSetup, Envelope, Event, EventSink, FormValues, Network,
    Outcome, OutgoingMessage, Secret, Session, SessionContext, Spawner, TaskFailure, UserId,
};
use tokio::sync::mpsc;

use crate::{Config, TestNetwork};

pub(crate) fn setup() -> BridgeSetup {
    BridgeSetup {
        domain: "test.localhost".into(),
        data_dir: PathBuf::from("/nonexistent"),
        hosts: Default::default(),
    }
}

pub(crate) fn network(config: Config) -> TestNetwork {
    TestNetwork::new(config, setup()).expect("valid config")
}

/// A key/value store in memory.
pub(crate) use ferry_bridge::MemoryKeyValue as MemoryStore;

/// A connected session and what it reports.
pub(crate) struct Client {
    pub session: Box<dyn Session>,
    pub events: mpsc::Receiver<Envelope>,
    pub failures: mpsc::UnboundedReceiver<TaskFailure>,
    pub spawner: Spawner,
    pub account: String,
}

/// Connects `account` (password from the default table) to the network.
pub(crate) async fn connect(net: &TestNetwork, account: &str) -> Client {
    connect_with(
        net,
        account,
        Arc::new(MemoryStore::default()),
        FormValues::new(),
    )
    .await
}

pub(crate) async fn connect_with(
    net: &TestNetwork,
    account: &str,
    store: Arc<MemoryStore>,
    preferences: FormValues,
) -> Client {
    try_connect(net, account, &format!("{account}pw"), store, preferences)
        .await
        .expect("connect")
}

pub(crate) async fn try_connect(
    net: &TestNetwork,
    account: &str,
    password: &str,
    store: Arc<MemoryStore>,
    preferences: FormValues,
) -> Result<Client, ferry_bridge::LoginError> {
    let user = UserId::new(format!("{account}@localhost"));
    let (tx, events) = mpsc::channel(1024);
    let (ftx, failures) = mpsc::unbounded_channel();
    let spawner = Spawner::new(user.clone(), ftx);
    let session = net
        .connect(SessionContext {
            user: user.clone(),
            account: Some(Account {
                name: account.into(),
                secret: Secret(password.as_bytes().to_vec()),
            }),
            preferences,
            events: EventSink::new(user, tx),
            store: store.clone(),
            data_dir: PathBuf::from("/nonexistent"),
            spawner: spawner.clone(),
        })
        .await?;
    Ok(Client {
        session,
        events,
        failures,

        spawner,
        account: account.into(),
    })
}

impl Client {
    pub async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        self.session.act(action).await
    }

    /// Sends a text message and returns its network id.
    pub async fn say(&mut self, to: ferry_bridge::Address, body: &str) -> ferry_bridge::MessageId {
        match self
            .act(Action::SendMessage(OutgoingMessage::text(to, "c1", body)))
            .await
            .expect("send")
        {
            Outcome::Sent(mut ids) if ids.len() == 1 => ids.remove(0),
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    /// The next event (waits up to 2 s).
    pub async fn next(&mut self) -> Event {
        match tokio::time::timeout(Duration::from_secs(2), self.events.recv()).await {
            Ok(Some(Envelope::Event { event, .. })) => event,
            Ok(Some(Envelope::Flush(done))) => {
                let _ = done.send(());
                Box::pin(self.next()).await
            }
            Ok(None) => panic!("{}: event channel closed", self.account),
            Err(_) => panic!("{}: no event within 2 s", self.account),
        }
    }

    /// Skips events until one matches; returns it.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let mut seen = Vec::new();
        loop {
            let e = match tokio::time::timeout(Duration::from_secs(2), self.next_opt()).await {
                Ok(Some(e)) => e,
                _ => panic!(
                    "{}: no event {what} within 2 s; saw {seen:#?}",
                    self.account
                ),
            };
            if pred(&e) {
                return e;
            }
            seen.push(e);
        }
    }

    async fn next_opt(&mut self) -> Option<Event> {
        loop {
            match self.events.recv().await? {
                Envelope::Event { event, .. } => return Some(event),
                Envelope::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Every event reported until 100 ms of silence.
    pub async fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(100), self.next_opt()).await
        {
            out.push(e);
        }
        out
    }
}
