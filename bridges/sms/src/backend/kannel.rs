//! Kannel's smsbox over HTTP: texts out through `/cgi-bin/sendsms`, texts in
//! through an `sms-service` `get-url`, delivery reports through a `dlr-url`
//! given with each text that carries Ferry's own id (the ids Kannel puts in
//! its reports are not those of the submitted text).
//!
//! Kannel's side of the configuration (see docs/sms.md):
//!
//! ```text
//! group = sms-service
//! keyword = default
//! catch-all = true
//! max-messages = 0
//! concatenation = true
//! get-url = "https://GW/bridge/sms/kannel/mo?secret=SECRET&from=%p&to=%P&text=%a&charset=%C&coding=%c"
//! group = smsbox
//! mo-recode = true
//! ```

use std::time::Duration;

use crate::backend::{
    Accepted, Backend, DeliveryState, IncomingText, OwnAccount, Report, SubmitError,
};
use crate::config::KannelConfig;
use crate::number::Party;
use crate::segment::{self, Coding};

/// Kannel's dlr-mask bits: delivered (1), failed (2), rejected by the SMSC
/// (16). Intermediate states (buffered 4, accepted by the SMSC 8) are
/// asked for too: they say the text left Kannel.
pub const DLR_MASK: u8 = 1 | 2 | 4 | 8 | 16;

/// The Kannel backend.
pub struct Kannel {
    config: KannelConfig,
    http: reqwest::Client,
    /// Where Kannel reaches the bridge (`…/bridge/sms`).
    public_url: String,
    secret: String,
    max_parts: usize,
}

impl Kannel {
    /// A backend sending through `config`'s smsbox; reports go to
    /// `public_url` + `/kannel/dlr` with `secret`.
    pub fn new(
        config: KannelConfig,
        public_url: String,
        secret: String,
        max_parts: usize,
    ) -> Result<Kannel, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Kannel {
            config,
            http,
            public_url: public_url.trim_end_matches('/').to_owned(),
            secret,
            max_parts,
        })
    }

    /// The dlr-url of one text.
    fn dlr_url(&self, id: &str) -> String {
        format!(
            "{}/kannel/dlr?secret={}&id={}&state=%d&smsc_id=%F&reply=%A",
            self.public_url,
            enc(&self.secret),
            enc(id)
        )
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[async_trait::async_trait]
impl Backend for Kannel {
    fn name(&self) -> &'static str {
        "kannel"
    }

    async fn submit(
        &self,
        text: &Outgoing,
        _: Option<&OwnAccount>,
    ) -> Result<Accepted, SubmitError> {
        if !text.media.is_empty() {
            return Err(SubmitError::Refused(
                "Kannel carries text only: no pictures or files".into(),
            ));
        }
        let split = segment::split(&text.text, self.max_parts)
            .map_err(|e| SubmitError::Refused(e.to_string()))?;
        let coding = match split.coding {
            Coding::Gsm7 => "0",
            Coding::Ucs2 => "2",
        };
        let mut query: Vec<(&str, String)> = vec![
            ("username", self.config.username.clone()),
            ("password", self.config.password.clone()),
            ("from", text.from.clone()),
            ("to", text.to.clone()),
            ("text", text.text.clone()),
            ("charset", "UTF-8".into()),
            ("coding", coding.into()),
            ("dlr-mask", DLR_MASK.to_string()),
            ("dlr-url", self.dlr_url(&text.id)),
        ];
        if let Some(smsc) = &self.config.smsc {
            query.push(("smsc", smsc.clone()));
        }
        let response = self
            .http
            .get(&self.config.sendsms_url)
            .query(&query)
            .send()
            .await
            .map_err(|e| {
                // The sendsms URL carries smsbox's password: never in a
                // log line or an error a user reads.
                let e = e.without_url();
                if e.is_connect() || e.is_builder() {
                    SubmitError::not_sent(format!("Kannel is not reachable: {e}"))
                } else {
                    SubmitError::Unknown(format!(
                        "no answer from Kannel (the text may have gone out): {e}"
                    ))
                }
            })?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let body = body.trim();
        match status {
            // "0: Accepted for delivery", "3: Queued for later delivery"
            200..=299 => Ok(Accepted {
                backend_ids: Vec::new(),
                parts: split.parts.len(),
                coding: split.coding,
            }),
            // Bearerbox down, or "Sendsms queue full": nothing was taken.
            503 => Err(SubmitError::not_sent(format!(
                "Kannel is not ready: {body}"
            ))),
            // Credentials, parameters, routing: asking again changes nothing.
            400..=499 => Err(SubmitError::Refused(format!(
                "Kannel refused the text: {body}"
            ))),
            _ => Err(SubmitError::Unknown(format!(
                "Kannel answered {status}: {body}"
            ))),
        }
    }
}

use crate::backend::Outgoing;

/// Percent-decodes one query value to bytes (`+` is a space).
fn decode_bytes(v: &str) -> Vec<u8> {
    let plus = v.replace('+', " ");
    percent_encoding::percent_decode(plus.as_bytes()).collect()
}

/// The raw (byte) values of a query string, by name.
pub fn query_bytes(query: &str) -> Vec<(String, Vec<u8>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&decode_bytes(k)).into_owned(),
                decode_bytes(v),
            )
        })
        .collect()
}

fn get<'a>(q: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

fn get_str(q: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    get(q, name).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Whether a callback carries the secret (compared in constant time).
pub fn authentic(query: &str, secret: &str) -> bool {
    let q = query_bytes(query);
    let given = get(&q, "secret").unwrap_or_default();
    constant_time_eq(given, secret.as_bytes())
}

/// Compares two byte strings in time that does not depend on where they
/// differ (`subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

/// Reads a text from the `get-url` callback.
pub fn parse_mo(query: &str) -> Result<IncomingText, String> {
    let q = query_bytes(query);
    let from = get_str(&q, "from")
        .filter(|s| !s.is_empty())
        .ok_or("missing from")?;
    let to = get_str(&q, "to")
        .filter(|s| !s.is_empty())
        .ok_or("missing to")?;
    let raw = get(&q, "text").unwrap_or_default();
    let charset = get_str(&q, "charset")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let text = match charset.as_str() {
        "UTF-16BE" | "UCS-2" | "UCS-2BE" => segment::decode(0x08, raw),
        "ISO-8859-1" | "LATIN1" | "WINDOWS-1252" => segment::decode(0x03, raw),
        _ => String::from_utf8(raw.to_vec()).map_err(|_| {
            format!(
                "the text is not {} as announced",
                if charset.is_empty() {
                    "UTF-8"
                } else {
                    charset.as_str()
                }
            )
        })?,
    };
    Ok(IncomingText {
        from: Party::from_backend(&from),
        to: Party::from_backend(&to),
        text,
        media: Vec::new(),
        backend_id: None,
    })
}

/// Reads a delivery report from the `dlr-url` callback.
pub fn parse_dlr(query: &str) -> Result<Report, String> {
    let q = query_bytes(query);
    let id = get_str(&q, "id")
        .filter(|s| !s.is_empty())
        .ok_or("missing id")?;
    let state: u8 = get_str(&q, "state")
        .and_then(|s| s.trim().parse().ok())
        .ok_or("missing or bad state")?;
    let reply = get_str(&q, "reply").unwrap_or_default();
    let state = match state {
        1 => DeliveryState::Delivered,
        2 => DeliveryState::Failed {
            reason: failure_reason("the phone network could not deliver it", &reply),
            permanent: true,
        },
        16 => DeliveryState::Failed {
            reason: failure_reason("the SMS centre rejected it", &reply),
            permanent: true,
        },
        4 | 8 => DeliveryState::EnRoute,
        other => return Err(format!("unknown delivery state {other}")),
    };
    Ok(Report {
        id: Some(id),
        backend_id: get_str(&q, "smsc_id").filter(|s| !s.is_empty()),
        state,
    })
}

fn failure_reason(what: &str, reply: &str) -> String {
    let reply = reply.trim();
    if reply.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({reply})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mo_callbacks_are_read() {
        let t = parse_mo(
            "secret=s&from=%2B15550002001&to=12345&text=hi+there%21&charset=UTF-8&coding=0",
        )
        .expect("mo");
        assert_eq!(t.from.local_part(), "+15550002001");
        assert_eq!(t.text, "hi there!");
        let t = parse_mo("from=15551234567&to=%2B15557654321&text=%D8%3D%DE%00&charset=UTF-16BE")
            .expect("ucs2");
        assert_eq!(t.text, "😀");
        assert_eq!(t.from.local_part(), "+15551234567");
        assert!(parse_mo("to=1").is_err());
    }

    #[test]
    fn dlr_callbacks_are_read() {
        let r = parse_dlr("id=abc&state=1&smsc_id=77&reply=ACK").expect("dlr");
        assert_eq!(r.id.as_deref(), Some("abc"));
        assert_eq!(r.state, DeliveryState::Delivered);
        let r = parse_dlr("id=abc&state=16&reply=NACK%2F0x0000000b").expect("dlr");
        assert!(
            matches!(r.state, DeliveryState::Failed { permanent: true, ref reason } if reason.contains("NACK/0x0000000b"))
        );
        assert_eq!(
            parse_dlr("id=abc&state=8").expect("dlr").state,
            DeliveryState::EnRoute
        );
        assert!(parse_dlr("id=abc&state=99").is_err());
        assert!(parse_dlr("state=1").is_err());
    }

    #[test]
    fn secrets_are_checked() {
        assert!(authentic("secret=0123456789abcdef&x=1", "0123456789abcdef"));
        assert!(!authentic("secret=0123456789abcdeX", "0123456789abcdef"));
        assert!(!authentic("x=1", "0123456789abcdef"));
    }
}
