//! The `[sms]` section of `ferry.toml`: which backend carries the texts and
//! how, who owns which number, and the limits (the core strips `enabled`,
//! `domain`, `secret` and `secret_file` before handing the section over).

use std::time::Duration;

use serde::Deserialize;

use crate::number::{E164, Region};

/// Settings of the SMS bridge.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `kannel`, `smpp` or `twilio`.
    pub backend: BackendKind,
    /// `operator`: the operator's backend account carries every user's texts
    /// and numbers are assigned by an admin (or claimed from `number_pool`).
    /// `own`: each user registers their own Twilio account and number.
    pub accounts: AccountMode,
    /// The region preselected in the registration form (ISO 3166, `DE`).
    pub default_region: Option<String>,
    /// Numbers a user may claim at registration in operator mode.
    pub number_pool: Vec<String>,
    /// At most this many parts per text (a part is 153 GSM or 67 UCS-2
    /// characters once a text is longer than one SMS).
    pub max_parts: usize,
    /// Texts one user may send per minute (0: no limit).
    pub rate_limit_per_minute: u32,
    /// Seconds between attempts while the backend is down.
    pub retry_secs: u64,
    /// Secret every Kannel callback must carry (`?secret=`); Twilio's are
    /// signed instead. Required with the Kannel backend.
    pub webhook_secret: Option<String>,
    /// The URL under which backends reach this bridge's webhooks
    /// (`https://gw.example.org/bridge/sms`). Defaults to the core's
    /// `[http] public_url` (or listener) plus `/bridge/sms`.
    pub public_url: Option<String>,
    /// Kannel's smsbox.
    pub kannel: KannelConfig,
    /// An SMSC over SMPP 3.4.
    pub smpp: SmppConfig,
    /// Twilio's REST API.
    pub twilio: TwilioConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backend: BackendKind::Kannel,
            accounts: AccountMode::Operator,
            default_region: None,
            number_pool: Vec::new(),
            max_parts: 10,
            rate_limit_per_minute: 30,
            retry_secs: 5,
            webhook_secret: None,
            public_url: None,
            kannel: KannelConfig::default(),
            smpp: SmppConfig::default(),
            twilio: TwilioConfig::default(),
        }
    }
}

/// Which backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Kannel's smsbox over HTTP.
    Kannel,
    /// SMPP 3.4, one bound transceiver.
    Smpp,
    /// Twilio's REST API and webhooks.
    Twilio,
}

/// Who owns the backend account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountMode {
    /// One account of the operator for everybody.
    Operator,
    /// Each user brings their own (Twilio only).
    Own,
}

/// Kannel's smsbox (`group = smsbox`, `group = sendsms-user`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KannelConfig {
    /// The sendsms URL, `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub sendsms_url: String,
    /// The sendsms-user's username.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Route through this `smsc-id` (empty: Kannel's choice).
    pub smsc: Option<String>,
    /// Seconds to wait for smsbox's answer.
    pub timeout_secs: u64,
}

impl Default for KannelConfig {
    fn default() -> Self {
        Self {
            sendsms_url: "http://127.0.0.1:13013/cgi-bin/sendsms".into(),
            username: String::new(),
            password: String::new(),
            smsc: None,
            timeout_secs: 10,
        }
    }
}

/// An SMSC reached over SMPP 3.4.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppConfig {
    /// Host name or address.
    pub host: String,
    /// Port (2775 by convention, 3550 for TLS).
    pub port: u16,
    /// Connect with TLS.
    pub tls: bool,
    /// The bind's system_id.
    pub system_id: String,
    /// The bind's password.
    pub password: String,
    /// The bind's system_type.
    pub system_type: String,
    /// submit_sm requests in flight at once (the window).
    pub window: usize,
    /// Seconds between enquire_link requests.
    pub enquire_link_secs: u64,
    /// Seconds to wait for any response.
    pub response_timeout_secs: u64,
    /// Seconds between reconnection attempts after the bind is lost.
    pub reconnect_secs: u64,
}

impl Default for SmppConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2775,
            tls: false,
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            window: 10,
            enquire_link_secs: 30,
            response_timeout_secs: 10,
            reconnect_secs: 5,
        }
    }
}

/// Twilio's API (or anything that speaks it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioConfig {
    /// Base URL of the API.
    pub api_url: String,
    /// The operator's account SID (operator mode).
    pub account_sid: String,
    /// Its auth token (operator mode): signs the webhooks too.
    pub auth_token: String,
    /// Seconds to wait for an answer.
    pub timeout_secs: u64,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.twilio.com".into(),
            account_sid: String::new(),
            auth_token: String::new(),
            timeout_secs: 15,
        }
    }
}

impl Config {
    /// Checks what serde cannot, with one sentence per problem.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(r) = &self.default_region
            && r.parse::<Region>().is_err()
        {
            problems.push(format!(
                "[sms] default_region {r:?} is not a region code such as DE or US"
            ));
        }
        for n in &self.number_pool {
            if n.parse::<E164>().map(|e| e.as_str() == n) != Ok(true) {
                problems.push(format!(
                    "[sms] number_pool: {n:?} is not an E.164 number such as +15551234567"
                ));
            }
        }
        if self.max_parts == 0 || self.max_parts > crate::segment::MAX_PARTS {
            problems.push("[sms] max_parts must be between 1 and 255".into());
        }
        if self.retry_secs == 0 {
            problems.push("[sms] retry_secs must be at least 1".into());
        }
        if self.accounts == AccountMode::Own && self.backend != BackendKind::Twilio {
            problems.push("[sms] accounts = \"own\" needs backend = \"twilio\"".into());
        }
        match self.backend {
            BackendKind::Kannel => {
                if self.kannel.username.is_empty() {
                    problems.push("[sms.kannel] username is required".into());
                }
                if self.webhook_secret.as_deref().is_none_or(|s| s.len() < 16) {
                    problems.push("[sms] webhook_secret (16 characters or more) is required with Kannel: its callbacks carry it".into());
                }
                if !self.kannel.sendsms_url.starts_with("http://")
                    && !self.kannel.sendsms_url.starts_with("https://")
                {
                    problems.push("[sms.kannel] sendsms_url must be an http(s) URL".into());
                }
            }
            BackendKind::Smpp => {
                if self.smpp.system_id.is_empty() {
                    problems.push("[sms.smpp] system_id is required".into());
                }
                if self.smpp.window == 0 {
                    problems.push("[sms.smpp] window must be at least 1".into());
                }
                if self.smpp.enquire_link_secs == 0 || self.smpp.response_timeout_secs == 0 {
                    problems.push(
                        "[sms.smpp] enquire_link_secs and response_timeout_secs must be at least 1"
                            .into(),
                    );
                }
            }
            BackendKind::Twilio => {
                if self.accounts == AccountMode::Operator
                    && (self.twilio.account_sid.is_empty() || self.twilio.auth_token.is_empty())
                {
                    problems.push(
                        "[sms.twilio] account_sid and auth_token are required in operator mode"
                            .into(),
                    );
                }
                if !self.twilio.api_url.starts_with("http://")
                    && !self.twilio.api_url.starts_with("https://")
                {
                    problems.push("[sms.twilio] api_url must be an http(s) URL".into());
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The default region, parsed.
    pub fn region(&self) -> Option<Region> {
        self.default_region.as_deref().and_then(|r| r.parse().ok())
    }

    /// [`Config::retry_secs`].
    pub fn retry(&self) -> Duration {
        Duration::from_secs(self.retry_secs)
    }
}
