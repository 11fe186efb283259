//! The backends that carry texts, behind one trait: Kannel's smsbox
//! ([`kannel`]), an SMSC over SMPP 3.4 ([`smpp`]) and Twilio ([`twilio`]).
//!
//! Out: [`Backend::submit`] hands one text over and says exactly one of
//! three things — accepted (with the backend's ids), not sent (try again
//! later: the backend is down or busy), or refused (never try again). When
//! it cannot know (the connection broke after the request went out) it
//! says [`SubmitError::Unknown`], which the queue never retries: a text is
//! never submitted twice.
//!
//! In: texts from phones and delivery reports arrive as [`Inbound`]s with a
//! [`Commit`]: the backend acknowledges upstream (HTTP 200, deliver_sm_resp)
//! only once the bridge has stored what it got, so a crash in between makes
//! the backend send it again instead of losing it.

pub mod kannel;
pub mod smpp;
pub mod twilio;

use std::fmt;

use tokio::sync::{mpsc, oneshot};

use crate::number::Party;
use crate::segment::Coding;

/// One text to send.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    /// Ferry's own id of the text: delivery reports come back with it
    /// (Kannel, Twilio) or are matched to it through the backend's ids.
    pub id: String,
    /// The sending number.
    pub from: String,
    /// The receiving number (E.164 with `+`, or a short code).
    pub to: String,
    /// The text (may be empty when media go along).
    pub text: String,
    /// Public URLs of media (MMS; backends without MMS refuse them).
    pub media: Vec<String>,
    /// Reference shared by the parts of a long text (SMPP's concatenation
    /// header): fixed when the text is queued, so a retry sends the same.
    pub reference: u8,
    /// Parts already accepted by the backend (SMPP sends part by part and
    /// never sends an accepted part again), with their backend ids.
    pub accepted: Vec<String>,
}

/// What the backend said to a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The backend's ids (one per part where it splits: SMPP; one for the
    /// whole text: Twilio; none: Kannel, which reports with Ferry's id).
    pub backend_ids: Vec<String>,
    /// Parts the text went out as.
    pub parts: usize,
    /// How it was coded.
    pub coding: Coding,
}

/// Why a text did not go out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Not handed over; sending again later is safe (backend down, busy).
    /// `accepted` holds the parts that did go out (SMPP).
    #[error("{reason}")]
    NotSent {
        /// Why.
        reason: String,
        /// Backend ids of parts that were accepted before the failure.
        accepted: Vec<String>,
    },
    /// Refused for good (bad number, no credit, not allowed).
    #[error("{0}")]
    Refused(String),
    /// Maybe handed over, maybe not: never retried.
    #[error("{0}")]
    Unknown(String),
}

impl SubmitError {
    /// Not sent, nothing accepted.
    pub fn not_sent(reason: impl Into<String>) -> Self {
        SubmitError::NotSent {
            reason: reason.into(),
            accepted: Vec::new(),
        }
    }
}

/// A backend.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `kannel`, `smpp`, `twilio`.
    fn name(&self) -> &'static str;
    /// Whether it carries media (MMS).
    fn media(&self) -> bool {
        false
    }
    /// Hands one text over.
    async fn submit(
        &self,
        text: &Outgoing,
        account: Option<&OwnAccount>,
    ) -> Result<Accepted, SubmitError>;
}

/// A user's own backend account (bring-your-own mode: Twilio).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnAccount {
    /// Account SID.
    pub account_sid: String,
    /// Auth token.
    pub auth_token: String,
    /// The user's number.
    pub number: String,
}

impl fmt::Debug for OwnAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnAccount")
            .field("account_sid", &self.account_sid)
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

/// A file that came with a text (MMS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// Where it is.
    pub url: String,
    /// Its MIME type, when said.
    pub mime: Option<String>,
}

/// A text from a phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingText {
    /// Who sent it.
    pub from: Party,
    /// The number it was sent to (the gateway user's).
    pub to: Party,
    /// The text, whole (parts already joined).
    pub text: String,
    /// Media (MMS).
    pub media: Vec<Media>,
    /// The backend's id, when it gives one.
    pub backend_id: Option<String>,
}

/// What became of a sent text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// On the phone.
    Delivered,
    /// Accepted by the network, on its way (reports in between).
    EnRoute,
    /// Will not arrive.
    Failed {
        /// Why, for the user.
        reason: String,
        /// Final (rejected, expired, undeliverable) or passing (try again).
        permanent: bool,
    },
}

/// A delivery report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Ferry's id of the text, when the backend carries it back.
    pub id: Option<String>,
    /// The backend's id of the text or of one part.
    pub backend_id: Option<String>,
    /// What happened.
    pub state: DeliveryState,
}

/// Something the backend received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A text from a phone.
    Text(IncomingText),
    /// A delivery report.
    Report(Report),
}

/// Says whether the bridge stored an [`Inbound`]: the backend acknowledges
/// upstream only on `Ok`.
pub type Commit = oneshot::Sender<Result<(), String>>;

/// Where backends hand what they receive.
#[derive(Clone, Debug)]
pub struct InboundSink(mpsc::Sender<(Inbound, Commit)>);

impl InboundSink {
    /// A sink and its receiving end.
    pub fn channel(capacity: usize) -> (InboundSink, mpsc::Receiver<(Inbound, Commit)>) {
        let (tx, rx) = mpsc::channel(capacity);
        (InboundSink(tx), rx)
    }

    /// Hands `inbound` over and waits until it is stored (Err: it was not;
    /// the backend must not acknowledge it).
    pub async fn deliver(&self, inbound: Inbound) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.0
            .send((inbound, done))
            .await
            .map_err(|_| "the bridge is shutting down".to_owned())?;
        wait.await
            .map_err(|_| "the bridge dropped the message".to_owned())?
    }
}

/// A random id of 16 hex digits (Ferry's ids of texts).
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: time and a counter are unique enough for ids.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes = n.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
