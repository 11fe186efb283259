//! The `[email]` section of `ferry.toml` (the core strips `enabled`,
//! `domain`, `secret` and `secret_file` before handing it over).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The email bridge's configuration. Every key is optional.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A PEM file of extra trusted CA certificates (besides the system's),
    /// for IMAP and SMTP servers with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Where Mozilla-style autoconfig files are looked for, in order.
    /// `{domain}` is the domain of the address, `{email}` the address
    /// (URL-encoded).
    pub autoconfig_urls: Vec<String>,
    /// Look up RFC 6186 SRV records (`_imaps._tcp`, `_submission._tcp` …).
    pub srv_lookup: bool,
    /// DNS servers for the SRV lookups (`127.0.0.1:53`); empty: the
    /// system's resolver configuration.
    pub nameservers: Vec<SocketAddr>,
    /// Try the usual host names (`imap.<domain>`, `smtp.<domain>`,
    /// `mail.<domain>`) when nothing else says where the servers are.
    pub guess_hosts: bool,
    /// Seconds between two checks of the inbox on servers without IDLE.
    pub poll_interval: u64,
    /// Seconds an IDLE command stays open before it is renewed (RFC 2177
    /// asks for less than 29 minutes).
    pub idle_timeout: u64,
    /// Seconds to wait for a connection (TCP, TLS and greeting).
    pub connect_timeout: u64,
    /// Seconds to wait for a command's answer.
    pub command_timeout: u64,
    /// Longest wait, in seconds, between two reconnection attempts.
    pub reconnect_max_delay: u64,
    /// Largest mail fetched whole, in bytes; bigger ones are announced
    /// with their subject and size only.
    pub max_message_bytes: u64,
    /// Largest file attached to an outgoing mail (downloaded from the
    /// XMPP upload URL), in bytes.
    pub max_attachment_bytes: u64,
    /// Mails fetched and handed to XMPP per batch (UIDs are saved after
    /// each batch).
    pub fetch_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ca_file: None,
            autoconfig_urls: vec![
                "https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={email}".into(),
                "https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={email}"
                    .into(),
                "http://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={email}".into(),
            ],
            srv_lookup: true,
            nameservers: Vec::new(),
            guess_hosts: true,
            poll_interval: 60,
            idle_timeout: 23 * 60,
            connect_timeout: 20,
            command_timeout: 60,
            reconnect_max_delay: 300,
            max_message_bytes: 50 * 1024 * 1024,
            max_attachment_bytes: 25 * 1024 * 1024,
            fetch_batch: 50,
        }
    }
}

impl Config {
    /// Checks the values that have limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_timeout == 0 || self.idle_timeout >= 29 * 60 {
            return Err(format!(
                "idle_timeout must be between 1 and {} seconds (RFC 2177: renew IDLE before 29 minutes), not {}",
                29 * 60 - 1,
                self.idle_timeout
            ));
        }
        if self.poll_interval == 0 {
            return Err("poll_interval must be at least 1 second".into());
        }
        if self.connect_timeout == 0 || self.command_timeout == 0 {
            return Err("connect_timeout and command_timeout must be at least 1 second".into());
        }
        if self.fetch_batch == 0 {
            return Err("fetch_batch must be at least 1".into());
        }
        for url in &self.autoconfig_urls {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("autoconfig_urls: {url:?} is not an http(s) URL"));
            }
        }
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            return Err(format!("ca_file {} is not a readable file", path.display()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_checked() {
        assert!(Config::default().validate().is_ok());
        let c = Config {
            idle_timeout: 29 * 60,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("29 minutes"));
        let c = Config {
            autoconfig_urls: vec!["ftp://x".into()],
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
