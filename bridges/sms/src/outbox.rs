//! The persisted queue of outgoing texts and the record of texts awaiting
//! their delivery report, in the bridge's key/value space.
//!
//! A text is written to the queue before the user is told it was taken.
//! The worker hands queued texts to the backend, several at once (never two
//! to the same number at once, so they arrive in order); a text the backend
//! did not take (down, busy) stays queued and is tried again every
//! `retry`. Before each attempt the text is marked in flight: if Ferry dies
//! during the attempt, the text is reported as "may have been sent" after
//! the restart instead of being sent a second time. Accepted parts of a long
//! SMPP text are remembered, so a retry sends only the parts still missing.
//!
//! A sent text stays recorded (`sent/ID`, and `bid/BACKEND-ID` → ID for each
//! backend id) until its final delivery report, so reports that arrive after
//! a restart still find the text and the user it belongs to.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::{KeyValue, StoreError};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::backend::{Backend, DeliveryState, Outgoing, OwnAccount, Report, SubmitError};

/// A queued text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// Whose (the XMPP user's bare JID).
    pub user: String,
    /// The conversation (the contact's id) the user sees the text in.
    pub chat: String,
    /// The text.
    pub text: Outgoing,
    /// An attempt was under way (a crash then leaves the outcome unknown).
    pub in_flight: bool,
}

/// A text handed over, awaiting its report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Whose.
    pub user: String,
    /// The conversation.
    pub chat: String,
    /// Delivery reports that make it delivered (one per backend id).
    pub reports: usize,
    /// Backend ids of parts reported delivered so far.
    pub delivered: Vec<String>,
}

/// What became of a text, for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Handed to the backend.
    Submitted,
    /// On the phone (every part).
    Delivered,
    /// Not sent, or not delivered.
    Failed {
        /// Why.
        reason: String,
        /// Final, or worth trying again by hand.
        permanent: bool,
    },
}

/// A change to tell a user about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Whose text.
    pub user: String,
    /// The conversation.
    pub chat: String,
    /// Ferry's id of the text.
    pub id: String,
    /// What happened.
    pub fate: Fate,
}

/// Looks up a user's own backend account when their text is sent.
pub type Accounts = Arc<dyn Fn(&str) -> Option<OwnAccount> + Send + Sync>;

/// The queue and the record of sent texts.
pub struct Outbox {
    kv: Arc<dyn KeyValue>,
    backend: Arc<dyn Backend>,
    accounts: Accounts,
    wake: Notify,
    retry: Duration,
    window: usize,
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Outbox {
    /// A queue in `kv` sending through `backend`.
    pub fn new(
        kv: Arc<dyn KeyValue>,
        backend: Arc<dyn Backend>,
        accounts: Accounts,
        retry: Duration,
        window: usize,
    ) -> Outbox {
        Outbox {
            kv,
            backend,
            accounts,
            wake: Notify::new(),
            retry,
            window: window.max(1),
        }
    }

    /// Queues a text (durable when this returns).
    pub fn enqueue(&self, user: &str, chat: &str, text: Outgoing) -> Result<(), StoreError> {
        let key = format!("out/{:020}-{}", now_micros(), text.id);
        let q = Queued {
            user: user.to_owned(),
            chat: chat.to_owned(),
            text,
            in_flight: false,
        };
        self.kv.put(&key, &json(&q))?;
        self.wake.notify_one();
        Ok(())
    }

    /// Texts waiting, oldest first.
    pub fn queued(&self) -> Result<Vec<(String, Queued)>, StoreError> {
        Ok(self
            .kv
            .list("out/")?
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_slice(&v).ok().map(|q| (k, q)))
            .collect())
    }

    /// Sends queued texts until the task is aborted, reporting each outcome.
    pub async fn run(self: Arc<Self>, updates: mpsc::Sender<Update>) {
        // Texts in flight when Ferry stopped: their fate is unknown.
        if let Ok(list) = self.queued() {
            for (key, q) in list.into_iter().filter(|(_, q)| q.in_flight) {
                let _ = self.kv.delete(&key);
                let _ = updates
                    .send(Update {
                        user: q.user,
                        chat: q.chat,
                        id: q.text.id,
                        fate: Fate::Failed {
                            reason: "Ferry stopped while sending this text: it may or may not have gone out, so it is not sent again".into(),
                            permanent: false,
                        },
                    })
                    .await;
            }
        }
        loop {
            let waiting = self.round(&updates).await;
            if waiting {
                tokio::select! {
                    _ = tokio::time::sleep(self.retry) => {}
                    _ = self.wake.notified() => {}
                }
            } else {
                self.wake.notified().await;
            }
        }
    }

    /// One pass over the queue; true when texts are still waiting.
    async fn round(&self, updates: &mpsc::Sender<Update>) -> bool {
        let list = match self.queued() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "SMS queue unreadable");
                return true;
            }
        };
        if list.is_empty() {
            return false;
        }
        // One text per number at a time, in queue order.
        let mut busy = HashSet::new();
        let batch: Vec<(String, Queued)> = list
            .iter()
            .filter(|(_, q)| busy.insert(q.text.to.clone()))
            .cloned()
            .collect();
        let left = list.len() - batch.len();
        let results: Vec<bool> = futures::stream::iter(batch)
            .map(|(key, q)| self.attempt(key, q, updates))
            .buffer_unordered(self.window)
            .collect()
            .await;
        left > 0 || results.iter().any(|waiting| *waiting)
    }

    /// One attempt at one text; true when it stays queued.
    async fn attempt(&self, key: String, mut q: Queued, updates: &mpsc::Sender<Update>) -> bool {
        q.in_flight = true;
        if self.kv.put(&key, &json(&q)).is_err() {
            return true;
        }
        let own = (self.accounts)(&q.user);
        let result = self.backend.submit(&q.text, own.as_ref()).await;
        let fate = match result {
            Ok(accepted) => {
                let sent = Sent {
                    user: q.user.clone(),
                    chat: q.chat.clone(),
                    // Reports come per backend id (SMPP: per part), or
                    // once for the whole text (Kannel, with Ferry's id).
                    reports: accepted.backend_ids.len().max(1),
                    delivered: Vec::new(),
                };
                let stored = self
                    .kv
                    .put(&format!("sent/{}", q.text.id), &json(&sent))
                    .and_then(|_| {
                        accepted.backend_ids.iter().try_for_each(|b| {
                            self.kv.put(&format!("bid/{b}"), q.text.id.as_bytes())
                        })
                    });
                if let Err(e) = stored {
                    tracing::error!(error = %e, "cannot record a sent text; its report will not find it");
                }
                Fate::Submitted
            }
            Err(SubmitError::NotSent { reason, accepted }) => {
                tracing::info!(id = %q.text.id, %reason, "SMS not sent yet; will try again");
                q.in_flight = false;
                q.text.accepted = accepted;
                if let Err(e) = self.kv.put(&key, &json(&q)) {
                    tracing::error!(error = %e, "cannot keep a queued text");
                }
                return true;
            }
            Err(SubmitError::Refused(reason)) => Fate::Failed {
                reason,
                permanent: true,
            },
            Err(SubmitError::Unknown(reason)) => Fate::Failed {
                reason,
                permanent: false,
            },
        };
        let _ = self.kv.delete(&key);
        let _ = updates
            .send(Update {
                user: q.user,
                chat: q.chat,
                id: q.text.id,
                fate,
            })
            .await;
        false
    }

    /// Matches a delivery report with its text. None: unknown text, or a
    /// report that changes nothing yet (en route, one part of several).
    pub fn report(&self, report: &Report) -> Result<Option<Update>, ReportError> {
        // A report can overtake the answer to its own submission (Kannel
        // reports as soon as the SMSC takes the text). While the text is
        // still being submitted, its record does not exist yet: the backend
        // must send the report again rather than have it dropped. The
        // queue is read first: an attempt records the text before it
        // leaves the queue, so no report falls between the two.
        let in_flight = |id: Option<&str>| -> Result<bool, StoreError> {
            Ok(self
                .queued()?
                .iter()
                .any(|(_, q)| q.in_flight && id.is_none_or(|id| q.text.id == id)))
        };
        let id = match (&report.id, &report.backend_id) {
            (Some(id), _) => {
                if in_flight(Some(id))? {
                    return Err(ReportError::Early);
                }
                id.clone()
            }
            (None, Some(bid)) => {
                let submitting = in_flight(None)?;
                match self.kv.get(&format!("bid/{bid}"))? {
                    Some(id) => String::from_utf8_lossy(&id).into_owned(),
                    None if submitting => return Err(ReportError::Early),
                    None => return Ok(None),
                }
            }
            (None, None) => return Ok(None),
        };
        let key = format!("sent/{id}");
        let Some(raw) = self.kv.get(&key)? else {
            return Ok(None);
        };
        let Ok(mut sent) = serde_json::from_slice::<Sent>(&raw) else {
            return Ok(None);
        };
        let fate = match &report.state {
            DeliveryState::EnRoute => return Ok(None),
            DeliveryState::Delivered => {
                let part = report
                    .backend_id
                    .clone()
                    .unwrap_or_else(|| format!("part{}", sent.delivered.len()));
                if !sent.delivered.contains(&part) {
                    sent.delivered.push(part);
                }
                if sent.delivered.len() < sent.reports {
                    self.kv.put(&key, &json(&sent))?;
                    return Ok(None);
                }
                Fate::Delivered
            }
            DeliveryState::Failed { reason, permanent } => Fate::Failed {
                reason: reason.clone(),
                permanent: *permanent,
            },
        };
        self.forget(&id)?;
        Ok(Some(Update {
            user: sent.user,
            chat: sent.chat,
            id,
            fate,
        }))
    }

    /// Drops the record of a text and its backend ids.
    fn forget(&self, id: &str) -> Result<(), StoreError> {
        self.kv.delete(&format!("sent/{id}"))?;
        // Backend ids point at the text; a few per text, found by value.
        for (k, v) in self.kv.list("bid/")? {
            if v == id.as_bytes() {
                self.kv.delete(&k)?;
            }
        }
        Ok(())
    }
}

/// Why a delivery report could not be matched now.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Its text is still being submitted: the backend should report again.
    #[error("the text this report is about is still being submitted")]
    Early,
    /// The queue could not be read.
    #[error("the queue is unreadable: {0}")]
    Store(#[from] StoreError),
}

fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Accepted, new_id};
    use crate::segment::Coding;
    use ferry_bridge::MemoryKeyValue;
    use std::sync::Mutex;

    /// A backend that answers from a script and counts submissions.
    struct Scripted {
        answers: Mutex<Vec<Result<Accepted, SubmitError>>>,
        seen: Mutex<Vec<Outgoing>>,
    }

    #[async_trait::async_trait]
    impl Backend for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn submit(
            &self,
            text: &Outgoing,
            _: Option<&OwnAccount>,
        ) -> Result<Accepted, SubmitError> {
            self.seen.lock().expect("lock").push(text.clone());
            self.answers.lock().expect("lock").remove(0)
        }
    }

    fn text(to: &str) -> Outgoing {
        Outgoing {
            id: new_id(),
            from: "+15550000001".into(),
            to: to.into(),
            text: "hi".into(),
            media: Vec::new(),
            reference: 0,
            accepted: Vec::new(),
        }
    }

    fn accepted(ids: &[&str]) -> Result<Accepted, SubmitError> {
        Ok(Accepted {
            backend_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            parts: ids.len(),
            coding: Coding::Gsm7,
        })
    }

    #[tokio::test]
    async fn retries_only_what_was_not_taken_and_matches_reports() {
        let kv: Arc<dyn KeyValue> = Arc::new(MemoryKeyValue::new());
        let backend = Arc::new(Scripted {
            answers: Mutex::new(vec![
                Err(SubmitError::NotSent {
                    reason: "down".into(),
                    accepted: vec!["p1".into()],
                }),
                accepted(&["p1", "p2"]),
            ]),
            seen: Mutex::new(Vec::new()),
        });
        let outbox = Arc::new(Outbox::new(
            kv.clone(),
            backend.clone(),
            Arc::new(|_| None),
            Duration::from_millis(20),
            4,
        ));
        let t = text("+15551230001");
        outbox
            .enqueue("alice@x", "+15551230001", t.clone())
            .expect("queued");
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(outbox.clone().run(tx));
        let u = rx.recv().await.expect("update");
        assert_eq!((u.id.as_str(), &u.fate), (t.id.as_str(), &Fate::Submitted));
        let seen = backend.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2, "tried twice");
        assert_eq!(
            seen[1].accepted,
            vec!["p1".to_owned()],
            "the second try knows part 1 went out"
        );
        assert!(outbox.queued().expect("list").is_empty());
        task.abort();

        // A report per part; the text is delivered when both are — also
        // through a new Outbox on the same store (a restart).
        let again = Outbox::new(
            kv,
            backend,
            Arc::new(|_| None),
            Duration::from_millis(20),
            4,
        );
        let part = |b: &str| Report {
            id: None,
            backend_id: Some(b.into()),
            state: DeliveryState::Delivered,
        };
        assert_eq!(again.report(&part("p1")).expect("ok"), None);
        let u = again.report(&part("p2")).expect("ok").expect("delivered");
        assert_eq!((u.user.as_str(), u.fate), ("alice@x", Fate::Delivered));
        assert_eq!(
            again.report(&part("p2")).expect("ok"),
            None,
            "forgotten afterwards"
        );
    }

    #[tokio::test]
    async fn a_text_in_flight_at_a_crash_is_not_sent_again() {
        let kv: Arc<dyn KeyValue> = Arc::new(MemoryKeyValue::new());
        let t = text("+15551230002");
        let q = Queued {
            user: "bob@x".into(),
            chat: "+15551230002".into(),
            text: t.clone(),
            in_flight: true,
        };
        kv.put("out/00000000000000000001-x", &json(&q))
            .expect("put");
        let backend = Arc::new(Scripted {
            answers: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let outbox = Arc::new(Outbox::new(
            kv,
            backend.clone(),
            Arc::new(|_| None),
            Duration::from_millis(20),
            4,
        ));
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(outbox.clone().run(tx));
        let u = rx.recv().await.expect("update");
        assert!(
            matches!(u.fate, Fate::Failed { permanent: false, ref reason } if reason.contains("may or may not"))
        );
        assert!(
            backend.seen.lock().expect("lock").is_empty(),
            "never submitted"
        );
        task.abort();
    }

    #[tokio::test]
    async fn refusals_and_failures_reach_the_user() {
        let kv: Arc<dyn KeyValue> = Arc::new(MemoryKeyValue::new());
        let backend = Arc::new(Scripted {
            answers: Mutex::new(vec![
                Err(SubmitError::Refused("bad number".into())),
                accepted(&["z"]),
            ]),
            seen: Mutex::new(Vec::new()),
        });
        let outbox = Arc::new(Outbox::new(
            kv,
            backend,
            Arc::new(|_| None),
            Duration::from_millis(20),
            1,
        ));
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(outbox.clone().run(tx));
        outbox
            .enqueue("a@x", "+1", text("+15551230003"))
            .expect("q");
        let u = rx.recv().await.expect("update");
        assert_eq!(
            u.fate,
            Fate::Failed {
                reason: "bad number".into(),
                permanent: true
            }
        );
        let t = text("+15551230004");
        outbox.enqueue("a@x", "+1", t.clone()).expect("q");
        assert_eq!(rx.recv().await.expect("update").fate, Fate::Submitted);
        let failed = Report {
            id: Some(t.id.clone()),
            backend_id: None,
            state: DeliveryState::Failed {
                reason: "expired".into(),
                permanent: true,
            },
        };
        let u = outbox.report(&failed).expect("ok").expect("known");
        assert_eq!(
            u.fate,
            Fate::Failed {
                reason: "expired".into(),
                permanent: true
            }
        );
        task.abort();
    }

    #[test]
    fn a_report_that_overtakes_its_submission_is_asked_again() {
        let kv: Arc<dyn KeyValue> = Arc::new(MemoryKeyValue::new());
        let backend = Arc::new(Scripted {
            answers: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let outbox = Outbox::new(
            kv,
            backend,
            Arc::new(|_| None),
            Duration::from_millis(20),
            1,
        );
        let t = text("+15551230005");
        outbox.enqueue("a@x", "+1", t.clone()).expect("q");
        // The attempt is under way: the backend has the text, Ferry has not
        // recorded it yet.
        let (key, mut q) = outbox.queued().expect("read").remove(0);
        q.in_flight = true;
        outbox.kv.put(&key, &json(&q)).expect("put");
        let ours = Report {
            id: Some(t.id.clone()),
            backend_id: None,
            state: DeliveryState::Delivered,
        };
        assert!(matches!(outbox.report(&ours), Err(ReportError::Early)));
        let by_backend_id = Report {
            id: None,
            backend_id: Some("smsc-1".into()),
            state: DeliveryState::Delivered,
        };
        assert!(matches!(
            outbox.report(&by_backend_id),
            Err(ReportError::Early)
        ));
        // Once nothing is in flight, an unknown report changes nothing.
        outbox.kv.delete(&key).expect("delete");
        assert!(matches!(outbox.report(&by_backend_id), Ok(None)));
    }
}
