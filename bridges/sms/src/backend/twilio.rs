//! Twilio's Messaging API: texts and MMS out with a `StatusCallback` that
//! carries Ferry's id, texts and MMS in through a webhook, every webhook
//! checked against its `X-Twilio-Signature` (HMAC-SHA1 with the account's
//! auth token over the full URL and the sorted form parameters, compared in
//! constant time). Tested against a local mock of the API, since Twilio
//! cannot run here.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::backend::{
    Accepted, Backend, DeliveryState, IncomingText, Media, Outgoing, OwnAccount, Report,
    SubmitError,
};
use crate::config::TwilioConfig;
use crate::number::Party;
use crate::segment::{self, Coding};

/// The Twilio backend.
pub struct Twilio {
    config: TwilioConfig,
    http: reqwest::Client,
    public_url: String,
    max_parts: usize,
}

/// Why credentials were not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// Twilio said no.
    #[error("{0}")]
    Refused(String),
    /// Twilio could not be asked.
    #[error("{0}")]
    Unreachable(String),
}

impl Twilio {
    /// A backend speaking to `config.api_url`; webhooks are at `public_url`.
    pub fn new(
        config: TwilioConfig,
        public_url: String,
        max_parts: usize,
    ) -> Result<Twilio, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Twilio {
            config,
            http,
            public_url: public_url.trim_end_matches('/').to_owned(),
            max_parts,
        })
    }

    fn api(&self) -> &str {
        self.config.api_url.trim_end_matches('/')
    }

    /// The account a text goes through: the user's own, or the operator's.
    fn account<'a>(&'a self, own: Option<&'a OwnAccount>) -> (&'a str, &'a str) {
        match own {
            Some(a) => (&a.account_sid, &a.auth_token),
            None => (&self.config.account_sid, &self.config.auth_token),
        }
    }

    /// Checks a user's credentials and that the number is theirs (before a
    /// bring-your-own registration succeeds).
    pub async fn check_account(&self, account: &OwnAccount) -> Result<(), CheckError> {
        let unreachable =
            |e: reqwest::Error| CheckError::Unreachable(format!("cannot reach Twilio: {e}"));
        let url = format!(
            "{}/2010-04-01/Accounts/{}.json",
            self.api(),
            enc_path(&account.account_sid)
        );
        let r = self
            .http
            .get(&url)
            .basic_auth(&account.account_sid, Some(&account.auth_token))
            .send()
            .await
            .map_err(unreachable)?;
        match r.status().as_u16() {
            200 => {}
            401 | 403 | 404 => {
                return Err(CheckError::Refused(
                    "Twilio refused the account SID and auth token".into(),
                ));
            }
            s => return Err(CheckError::Unreachable(format!("Twilio answered {s}"))),
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json",
            self.api(),
            enc_path(&account.account_sid)
        );
        let r = self
            .http
            .get(&url)
            .query(&[("PhoneNumber", account.number.as_str())])
            .basic_auth(&account.account_sid, Some(&account.auth_token))
            .send()
            .await
            .map_err(unreachable)?;
        if !r.status().is_success() {
            return Err(CheckError::Unreachable(format!(
                "Twilio answered {}",
                r.status()
            )));
        }
        let bytes = r
            .bytes()
            .await
            .map_err(|e| CheckError::Unreachable(format!("no answer from Twilio: {e}")))?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| CheckError::Unreachable(format!("unreadable answer from Twilio: {e}")))?;
        let owned = body["incoming_phone_numbers"].as_array().is_some_and(|l| {
            l.iter()
                .any(|n| n["phone_number"] == account.number.as_str())
        });
        if owned {
            Ok(())
        } else {
            Err(CheckError::Refused(format!(
                "{} is not a number of this Twilio account",
                account.number
            )))
        }
    }
}

fn enc_path(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[async_trait::async_trait]
impl Backend for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn media(&self) -> bool {
        true
    }

    async fn submit(
        &self,
        text: &Outgoing,
        own: Option<&OwnAccount>,
    ) -> Result<Accepted, SubmitError> {
        let (parts, coding) = if text.text.is_empty() {
            if text.media.is_empty() {
                return Err(SubmitError::Refused("the message is empty".into()));
            }
            (1, Coding::Gsm7)
        } else {
            let s = segment::split(&text.text, self.max_parts)
                .map_err(|e| SubmitError::Refused(e.to_string()))?;
            (s.parts.len(), s.coding)
        };
        let (sid, token) = self.account(own);
        let mut form: Vec<(&str, String)> = vec![
            ("To", text.to.clone()),
            ("From", text.from.clone()),
            (
                "StatusCallback",
                format!(
                    "{}/twilio/status?id={}",
                    self.public_url,
                    form_urlencoded::byte_serialize(text.id.as_bytes()).collect::<String>()
                ),
            ),
        ];
        if !text.text.is_empty() {
            form.push(("Body", text.text.clone()));
        }
        for m in &text.media {
            form.push(("MediaUrl", m.clone()));
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.api(),
            enc_path(sid)
        );
        let response = self
            .http
            .post(&url)
            .basic_auth(sid, Some(token))
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() || e.is_builder() {
                    SubmitError::not_sent(format!("Twilio is not reachable: {e}"))
                } else {
                    SubmitError::Unknown(format!(
                        "no answer from Twilio (the text may have gone out): {e}"
                    ))
                }
            })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = body["message"]
            .as_str()
            .unwrap_or("no reason given")
            .to_owned();
        match status {
            200..=299 => {
                let id = body["sid"].as_str().map(str::to_owned);
                Ok(Accepted {
                    backend_ids: id.into_iter().collect(),
                    parts,
                    coding,
                })
            }
            // Too many requests, or Twilio not ready: nothing was created.
            429 | 503 => Err(SubmitError::not_sent(format!("Twilio is busy: {message}"))),
            401 | 403 => Err(SubmitError::Refused(format!(
                "Twilio refused the account: {message}"
            ))),
            400..=499 => Err(SubmitError::Refused(format!(
                "Twilio refused the text: {message}"
            ))),
            _ => Err(SubmitError::Unknown(format!(
                "Twilio answered {status}: {message}"
            ))),
        }
    }
}

/// The expected `X-Twilio-Signature` of a request to `url` with `params`
/// (form parameters of a POST; empty for a GET, whose parameters are in
/// the URL).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `given` is the signature of the request (constant-time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given.trim()) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac.verify_slice(&given).is_ok()
}

/// A form-encoded body as pairs.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The account a webhook is for.
pub fn account_sid(params: &[(String, String)]) -> Option<&str> {
    field(params, "AccountSid")
}

/// Reads an incoming SMS/MMS webhook.
pub fn parse_incoming(params: &[(String, String)]) -> Result<IncomingText, String> {
    let from = field(params, "From")
        .filter(|s| !s.is_empty())
        .ok_or("missing From")?;
    let to = field(params, "To")
        .filter(|s| !s.is_empty())
        .ok_or("missing To")?;
    let count: usize = field(params, "NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let media = (0..count.min(10))
        .filter_map(|i| {
            Some(Media {
                url: field(params, &format!("MediaUrl{i}"))?.to_owned(),
                mime: field(params, &format!("MediaContentType{i}")).map(str::to_owned),
            })
        })
        .collect();
    Ok(IncomingText {
        from: Party::from_backend(from),
        to: Party::from_backend(to),
        text: field(params, "Body").unwrap_or_default().to_owned(),
        media,
        backend_id: field(params, "MessageSid").map(str::to_owned),
    })
}

/// Reads a status callback (`id` is Ferry's id from the callback URL).
/// None for states that change nothing for the user (queued, sending, sent).
pub fn parse_status(id: &str, params: &[(String, String)]) -> Result<Option<Report>, String> {
    let status = field(params, "MessageStatus").ok_or("missing MessageStatus")?;
    let code = field(params, "ErrorCode").filter(|c| !c.is_empty());
    let reason = |what: &str| match code {
        Some(c) => format!("{what} (Twilio error {c})"),
        None => what.to_owned(),
    };
    let state = match status {
        "delivered" | "read" => DeliveryState::Delivered,
        "undelivered" => DeliveryState::Failed {
            reason: reason("the phone network could not deliver it"),
            permanent: true,
        },
        "failed" => DeliveryState::Failed {
            reason: reason("Twilio could not send it"),
            permanent: true,
        },
        "accepted" | "queued" | "sending" | "sent" | "scheduled" => return Ok(None),
        other => return Err(format!("unknown MessageStatus {other:?}")),
    };
    Ok(Some(Report {
        id: Some(id.to_owned()),
        backend_id: field(params, "MessageSid").map(str::to_owned),
        state,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Twilio's security documentation.
    #[test]
    fn signature_matches_twilios_documented_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let token = "12345";
        assert_eq!(
            signature(token, url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(token, url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify(token, url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgR="));
        assert!(!verify(
            "54321",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify(token, url, &params, "not base64!"));
    }

    #[test]
    fn incoming_and_status_webhooks_are_read() {
        let f = form(b"From=%2B15551230001&To=%2B15557770001&Body=hi&NumMedia=1&MediaUrl0=http%3A%2F%2Fx%2Fa.jpg&MediaContentType0=image%2Fjpeg&MessageSid=MM1");
        let t = parse_incoming(&f).expect("incoming");
        assert_eq!(t.text, "hi");
        assert_eq!(
            t.media,
            vec![Media {
                url: "http://x/a.jpg".into(),
                mime: Some("image/jpeg".into())
            }]
        );
        let s = parse_status("abc", &form(b"MessageStatus=undelivered&ErrorCode=30003"))
            .expect("status");
        assert!(
            matches!(s, Some(Report { state: DeliveryState::Failed { ref reason, .. }, .. }) if reason.contains("30003"))
        );
        assert_eq!(
            parse_status("abc", &form(b"MessageStatus=sent")).expect("sent"),
            None
        );
        assert!(parse_status("abc", &form(b"x=1")).is_err());
    }
}
