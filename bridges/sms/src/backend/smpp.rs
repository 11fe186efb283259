//! SMPP 3.4 to an SMSC or aggregator: one bound transceiver (rusmppc) for
//! the whole bridge. Out: `submit_sm` per part with a concatenation header,
//! GSM 03.38 or UCS-2 per text, at most `window` requests in flight.
//! In: `deliver_sm` — texts from phones (parts put together again) and
//! delivery receipts — answered with `deliver_sm_resp` only after the
//! bridge has stored them. `enquire_link` keeps the bind alive; a lost bind
//! is re-established every `reconnect_secs`, and texts wait meanwhile.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{CommandId, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::sync::{Semaphore, watch};

use crate::backend::{
    Accepted, Backend, DeliveryState, Inbound, InboundSink, IncomingText, Outgoing, OwnAccount,
    Report, SubmitError,
};
use crate::config::SmppConfig;
use crate::number::Party;
use crate::segment::{self, Coding, PartInfo};

/// How long the parts of a long incoming text are waited for.
const PARTS_TIMEOUT: Duration = Duration::from_secs(600);

/// The SMPP backend.
pub struct Smpp {
    config: SmppConfig,
    max_parts: usize,
    client: RwLock<Option<Client>>,
    bound: watch::Sender<bool>,
    window: Semaphore,
    partial: Mutex<HashMap<PartKey, Partial>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PartKey {
    from: String,
    to: String,
    reference: u16,
    total: u8,
}

struct Partial {
    since: Instant,
    data_coding: u8,
    parts: Vec<Option<Vec<u8>>>,
}

impl Smpp {
    /// A backend for `config` (not connected: see [`Smpp::run`]).
    pub fn new(config: SmppConfig, max_parts: usize) -> Smpp {
        let window = Semaphore::new(config.window.max(1));
        Smpp {
            config,
            max_parts,
            client: RwLock::new(None),
            bound: watch::channel(false).0,
            window,
            partial: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the bind is up.
    pub fn is_bound(&self) -> bool {
        *self.bound.borrow()
    }

    /// Waits until the bind is up (or `timeout` passes); true when bound.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let mut rx = self.bound.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|b| *b))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn set_client(&self, client: Option<Client>) {
        let bound = client.is_some();
        if let Ok(mut c) = self.client.write() {
            *c = client;
        }
        self.bound.send_replace(bound);
    }

    fn current(&self) -> Option<Client> {
        self.client.read().ok().and_then(|c| c.clone())
    }

    /// Keeps the bind up and hands what arrives to `sink`, until the task is
    /// aborted.
    pub async fn run(self: Arc<Self>, sink: InboundSink) {
        let url = format!(
            "{}://{}:{}",
            if self.config.tls { "smpps" } else { "smpp" },
            self.config.host,
            self.config.port
        );
        loop {
            match self.bind(&url).await {
                Ok((client, mut events)) => {
                    tracing::info!(url, "SMPP: bound as transceiver");
                    self.set_client(Some(client.clone()));
                    while let Some(event) = events.next().await {
                        match event {
                            Event::Incoming(command) => match command.id() {
                                CommandId::DeliverSm => {
                                    let seq = command.sequence_number();
                                    if let Some(Pdu::DeliverSm(ds)) = command.pdu() {
                                        let ds = ds.clone();
                                        let me = self.clone();
                                        let sink = sink.clone();
                                        let client = client.clone();
                                        tokio::spawn(async move {
                                            me.deliver(&client, seq, ds, &sink).await
                                        });
                                    }
                                }
                                CommandId::Unbind => {
                                    tracing::warn!("SMPP: the SMSC unbinds");
                                    let _ = client.unbind_resp(command.sequence_number()).await;
                                    let _ = client.close().await;
                                }
                                _ => {}
                            },
                            Event::Error(e) => tracing::warn!(error = %e, "SMPP connection"),
                        }
                    }
                    self.set_client(None);
                    tracing::warn!(
                        url,
                        "SMPP: bind lost; binding again in {} s",
                        self.config.reconnect_secs
                    );
                }
                Err(e) => {
                    tracing::warn!(url, error = %e, "SMPP: cannot bind; trying again in {} s", self.config.reconnect_secs);
                }
            }
            tokio::time::sleep(Duration::from_secs(self.config.reconnect_secs.max(1))).await;
        }
    }

    async fn bind(
        &self,
        url: &str,
    ) -> Result<(Client, impl futures::Stream<Item = Event> + Unpin + 'static), String> {
        let (client, events) = ConnectionBuilder::new()
            .enquire_link_interval(Duration::from_secs(self.config.enquire_link_secs))
            .enquire_link_response_timeout(Duration::from_secs(self.config.response_timeout_secs))
            .response_timeout(Duration::from_secs(self.config.response_timeout_secs))
            .disable_interface_version_check()
            .connect(url)
            .await
            .map_err(|e| e.to_string())?;
        let bind = BindTransceiver::builder()
            .system_id(cstr(&self.config.system_id, "system_id")?)
            .password(cstr(&self.config.password, "password")?)
            .system_type(cstr(&self.config.system_type, "system_type")?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        if let Err(e) = client.bind_transceiver(bind).await {
            let _ = client.close().await;
            return Err(format!("bind refused: {e}"));
        }
        Ok((client, events))
    }

    /// One deliver_sm: stored, then acknowledged (or refused with a
    /// temporary error so that the SMSC delivers it again).
    async fn deliver(&self, client: &Client, seq: u32, ds: DeliverSm, sink: &InboundSink) {
        let status = match self.read_deliver(ds) {
            Ok(None) => Ok(()),
            Ok(Some(inbound)) => sink.deliver(inbound).await,
            Err(e) => {
                tracing::warn!(error = %e, "SMPP: unreadable deliver_sm, acknowledged and dropped");
                Ok(())
            }
        };
        let result = match status {
            Ok(()) => client.deliver_sm_resp(seq, DeliverSmResp::default()).await,
            Err(e) => {
                tracing::warn!(error = %e, "SMPP: deliver_sm not stored; the SMSC will retry");
                client
                    .status(CommandStatus::EsmeRxTAppn)
                    .deliver_sm_resp(seq, DeliverSmResp::default())
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "SMPP: cannot answer deliver_sm");
        }
    }

    /// A deliver_sm as a text or report; None for a part of a text whose
    /// other parts are still missing.
    fn read_deliver(&self, ds: DeliverSm) -> Result<Option<Inbound>, String> {
        let esm = u8::from(ds.esm_class);
        let data_coding = u8::from(ds.data_coding);
        let payload = ds
            .tlvs()
            .iter()
            .find_map(|t| match t.value() {
                Some(TlvValue::MessagePayload(p)) => Some(p.value.to_vec()),
                _ => None,
            })
            .unwrap_or_else(|| ds.short_message().as_ref().to_vec());
        // Message type bits 2..5: 0x04 = MC delivery receipt, 0x20 intermediate.
        if esm & 0x3C == 0x04 || esm & 0x3C == 0x20 {
            return read_receipt(&ds, &payload).map(|r| Some(Inbound::Report(r)));
        }
        let from = ds.source_addr.as_str().to_owned();
        let to = ds.destination_addr.as_str().to_owned();
        let (info, body) = if esm & 0x40 != 0 {
            let (info, rest) =
                segment::parse_header(&payload).ok_or("malformed user data header")?;
            (info, rest.to_vec())
        } else {
            (sar_info(&ds), payload)
        };
        let text = match info.filter(|i| i.total > 1) {
            None => segment::decode(data_coding, &body),
            Some(info) => match self.collect(&from, &to, info, data_coding, body) {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        Ok(Some(Inbound::Text(IncomingText {
            from: Party::from_backend(&from),
            to: Party::from_backend(&to),
            text,
            media: Vec::new(),
            backend_id: None,
        })))
    }

    /// Adds one part; the whole text when it was the last one missing.
    fn collect(
        &self,
        from: &str,
        to: &str,
        info: PartInfo,
        data_coding: u8,
        body: Vec<u8>,
    ) -> Option<String> {
        let mut partial = self.partial.lock().ok()?;
        partial.retain(|_, p| p.since.elapsed() < PARTS_TIMEOUT);
        let key = PartKey {
            from: from.to_owned(),
            to: to.to_owned(),
            reference: info.reference,
            total: info.total,
        };
        let entry = partial.entry(key.clone()).or_insert_with(|| Partial {
            since: Instant::now(),
            data_coding,
            parts: vec![None; usize::from(info.total)],
        });
        if let Some(slot) = entry.parts.get_mut(usize::from(info.seq) - 1) {
            *slot = Some(body);
        }
        if entry.parts.iter().all(Option::is_some) {
            let done = partial.remove(&key)?;
            let parts: Vec<Vec<u8>> = done.parts.into_iter().flatten().collect();
            Some(segment::join(done.data_coding, &parts))
        } else {
            None
        }
    }

    /// One part as a submit_sm (`udhi`: the payload starts with a header).
    fn submit_sm(
        &self,
        text: &Outgoing,
        coding: Coding,
        payload: Vec<u8>,
        udhi: bool,
    ) -> Result<SubmitSm, SubmitError> {
        let addr = |a: &str, what: &str| {
            COctetString::<1, 21>::from_str(a.trim_start_matches('+'))
                .map_err(|e| SubmitError::Refused(format!("{what} {a:?} is not usable: {e}")))
        };
        let international = |a: &str| {
            if a.starts_with('+') {
                (Ton::International, Npi::Isdn)
            } else {
                (Ton::Unknown, Npi::Unknown)
            }
        };
        let (ston, snpi) = international(&text.from);
        let (dton, dnpi) = international(&text.to);
        Ok(SubmitSm::builder()
            .source_addr_ton(ston)
            .source_addr_npi(snpi)
            .source_addr(addr(&text.from, "sender")?)
            .dest_addr_ton(dton)
            .dest_addr_npi(dnpi)
            .destination_addr(addr(&text.to, "number")?)
            // (rusmpp's EsmClass::default() is not 0: write the octet)
            .esm_class(EsmClass::from(if udhi { 0x40 } else { 0x00 }))
            .registered_delivery(RegisteredDelivery::from(0x01))
            .data_coding(DataCoding::from(coding.data_coding()))
            .short_message(
                OctetString::from_vec(payload)
                    .map_err(|e| SubmitError::Refused(format!("part too long: {e}")))?,
            )
            .build())
    }
}

/// A bind parameter as SMPP's C string of at most `N - 1` characters.
fn cstr<const N: usize>(s: &str, what: &str) -> Result<COctetString<1, N>, String> {
    COctetString::from_str(s).map_err(|e| format!("[sms.smpp] {what} is not usable: {e}"))
}

/// Concatenation by TLVs (sar_msg_ref_num, sar_total_segments,
/// sar_segment_seqnum) instead of a header.
fn sar_info(ds: &DeliverSm) -> Option<PartInfo> {
    let (mut reference, mut total, mut seq) = (None, None, None);
    for t in ds.tlvs() {
        match t.value() {
            Some(TlvValue::SarMsgRefNum(r)) => reference = Some(*r),
            Some(TlvValue::SarTotalSegments(n)) => total = Some(*n),
            Some(TlvValue::SarSegmentSeqnum(n)) => seq = Some(*n),
            _ => {}
        }
    }
    Some(PartInfo {
        reference: reference?,
        total: total?,
        seq: seq?,
    })
    .filter(|p| p.seq >= 1 && p.seq <= p.total)
}

/// A delivery receipt: the receipted_message_id and message_state TLVs
/// when present, otherwise the SMPP 3.4 appendix B text
/// (`id:… sub:… dlvrd:… submit date:… done date:… stat:DELIVRD err:…`).
fn read_receipt(ds: &DeliverSm, payload: &[u8]) -> Result<Report, String> {
    let text = String::from_utf8_lossy(payload);
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::to_owned)
    };
    let mut id = field("id");
    let mut stat = field("stat");
    for t in ds.tlvs() {
        match t.value() {
            Some(TlvValue::ReceiptedMessageId(r)) => id = Some(r.as_str().to_owned()),
            Some(TlvValue::MessageState(s)) => {
                stat.get_or_insert_with(|| format!("{s:?}").to_ascii_uppercase());
            }
            _ => {}
        }
    }
    let id = id.ok_or("a delivery receipt without a message id")?;
    let err = field("err").filter(|e| !e.trim_start_matches('0').is_empty());
    let failed = |what: &str, permanent: bool| DeliveryState::Failed {
        reason: match &err {
            Some(e) => format!("{what} (error {e})"),
            None => what.to_owned(),
        },
        permanent,
    };
    let state = match stat.as_deref().unwrap_or("").trim() {
        "DELIVRD" | "DELIVERED" => DeliveryState::Delivered,
        "EXPIRED" => failed("it expired before the phone could be reached", true),
        "UNDELIV" | "UNDELIVERABLE" => failed("the phone network could not deliver it", true),
        "REJECTD" | "REJECTED" => failed("the network rejected it", true),
        "DELETED" => failed("the SMS centre deleted it", true),
        "ENROUTE" | "ACCEPTD" | "ACCEPTED" | "SCHEDULED" => DeliveryState::EnRoute,
        "UNKNOWN" => failed("its fate is unknown", false),
        other => return Err(format!("unknown receipt state {other:?}")),
    };
    Ok(Report {
        id: None,
        backend_id: Some(id),
        state,
    })
}

/// Whether an SMSC error status means "not now" (the text may be sent
/// again) rather than "never".
fn temporary(status: CommandStatus) -> bool {
    matches!(
        status,
        CommandStatus::EsmeRthrottled
            | CommandStatus::EsmeRmsgqful
            | CommandStatus::EsmeRxTAppn
            | CommandStatus::EsmeRsyserr
    )
}

#[async_trait::async_trait]
impl Backend for Smpp {
    fn name(&self) -> &'static str {
        "smpp"
    }

    async fn submit(
        &self,
        text: &Outgoing,
        _: Option<&OwnAccount>,
    ) -> Result<Accepted, SubmitError> {
        if !text.media.is_empty() {
            return Err(SubmitError::Refused(
                "SMPP carries text only: no pictures or files".into(),
            ));
        }
        let split = segment::split(&text.text, self.max_parts)
            .map_err(|e| SubmitError::Refused(e.to_string()))?;
        let total = split.parts.len();
        let mut accepted = text.accepted.clone();
        for (i, part) in split.parts.into_iter().enumerate().skip(accepted.len()) {
            let payload = if total > 1 {
                let mut p =
                    segment::concat_header(text.reference, total as u8, i as u8 + 1).to_vec();
                p.extend_from_slice(&part);
                p
            } else {
                part
            };
            let sm = self.submit_sm(text, split.coding, payload, total > 1)?;
            let Some(client) = self.current() else {
                return Err(SubmitError::NotSent {
                    reason: "not bound to the SMS centre".into(),
                    accepted,
                });
            };
            let _permit = self
                .window
                .acquire()
                .await
                .map_err(|_| SubmitError::not_sent("shutting down"))?;
            match client.submit_sm(sm).await {
                Ok(resp) => accepted.push(resp.message_id().as_str().to_owned()),
                Err(rusmppc::error::Error::ConnectionClosed) => {
                    return Err(SubmitError::NotSent {
                        reason: "the connection to the SMS centre is closed".into(),
                        accepted,
                    });
                }
                Err(rusmppc::error::Error::UnexpectedResponse { response })
                    if temporary(response.status()) =>
                {
                    return Err(SubmitError::NotSent {
                        reason: format!("the SMS centre is busy ({:?})", response.status()),
                        accepted,
                    });
                }
                Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                    return Err(SubmitError::Refused(format!(
                        "the SMS centre refused the text ({:?})",
                        response.status()
                    )));
                }
                Err(e) => {
                    return Err(SubmitError::Unknown(format!(
                        "no answer from the SMS centre (the text may have gone out): {e}"
                    )));
                }
            }
        }
        Ok(Accepted {
            backend_ids: accepted,
            parts: total,
            coding: split.coding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(text: &str) -> DeliverSm {
        DeliverSm::builder()
            .esm_class(EsmClass::from(0x04))
            .short_message(OctetString::from_vec(text.as_bytes().to_vec()).expect("short"))
            .build()
    }

    #[test]
    fn receipts_are_read() {
        let text = "id:abc123 sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:hello";
        let ds = receipt(text);
        let r = read_receipt(&ds, text.as_bytes()).expect("receipt");
        assert_eq!(r.backend_id.as_deref(), Some("abc123"));
        assert_eq!(r.state, DeliveryState::Delivered);
        let text = "id:9 sub:001 dlvrd:000 submit date:2501011200 done date:2501011201 stat:UNDELIV err:011 text:x";
        let r = read_receipt(&receipt(text), text.as_bytes()).expect("receipt");
        assert!(
            matches!(r.state, DeliveryState::Failed { permanent: true, ref reason } if reason.contains("011"))
        );
        assert!(read_receipt(&receipt("stat:DELIVRD"), b"stat:DELIVRD").is_err());
    }

    #[test]
    fn long_texts_are_put_together() {
        let smpp = Smpp::new(SmppConfig::default(), 10);
        let info = |seq| PartInfo {
            reference: 9,
            total: 2,
            seq,
        };
        assert_eq!(smpp.collect("1", "2", info(2), 0, b"world".to_vec()), None);
        assert_eq!(
            smpp.collect("1", "2", info(1), 0, b"hello ".to_vec()),
            Some("hello world".into())
        );
        // A part of another sender does not mix in.
        assert_eq!(smpp.collect("3", "2", info(1), 0, b"x".to_vec()), None);
    }
}
