//! The `[irc]` section of `ferry.toml` (the core strips `enabled`,
//! `domain`, `secret` and `secret_file` before handing it over).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The IRC bridge's configuration. Every key is optional.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Single-server mode: channels are `#chan@GW`, nicknames `nick@GW`.
    pub fixed_server: Option<String>,
    /// Plain-text ports tried (after the TLS ports) when a user did not
    /// configure the server.
    pub ports: Vec<u16>,
    /// TLS ports tried first.
    pub tls_ports: Vec<u16>,
    /// Verify server certificates by default (users may turn it off per
    /// server, or pin a fingerprint).
    pub verify_cert: bool,
    /// A PEM file of extra trusted CA certificates (besides the system's).
    pub ca_file: Option<PathBuf>,
    /// Default flood control: commands sent at once before the connection
    /// is limited to one per second. Negative disables it.
    pub throttle_limit: i64,
    /// Default number of archived messages a joining client gets.
    pub max_history_length: u32,
    /// Default for archiving channel messages.
    pub record_history: bool,
    /// Default of the per-user `persistent` option: channels stay joined
    /// on IRC when the user's last client leaves them.
    pub persistent_by_default: bool,
    /// Encoding for incoming text that is not valid UTF-8.
    pub encoding_in: String,
    /// Most IRC connections open at once for all users (0: no limit).
    pub max_connections: u32,
    /// Most IRC connections open at once to one server (0: no limit).
    pub max_connections_per_server: u32,
    /// Seconds a connection stays open with no channel joined and no
    /// private conversation active, before it is closed.
    pub idle_timeout: u64,
    /// Port of the built-in identd (RFC 1413); 0 disables it.
    pub identd_port: u16,
    /// Address the identd listens on.
    pub identd_address: IpAddr,
    /// Password for the WEBIRC command, which tells the IRC server each
    /// user's own host (the IRC server must list this gateway).
    pub webirc_password: Option<String>,
    /// Local address IRC connections are made from.
    pub outgoing_bind: Option<IpAddr>,
    /// Whether users may set their IRC username and realname.
    pub realname_customization: bool,
    /// Default realname = the user's bare JID and username = its local
    /// part (instead of the nickname).
    pub realname_from_jid: bool,
    /// Seconds to wait for a TCP/TLS connection.
    pub connect_timeout: u64,
    /// Seconds of silence from a server before it is pinged (and as much
    /// again before the connection is considered dead).
    pub ping_interval: u64,
    /// Longest wait, in seconds, between two reconnection attempts.
    pub reconnect_max_delay: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fixed_server: None,
            ports: vec![6667],
            tls_ports: vec![6697, 6670],
            verify_cert: true,
            ca_file: None,
            throttle_limit: 10,
            max_history_length: 20,
            record_history: true,
            persistent_by_default: false,
            encoding_in: "ISO-8859-1".into(),
            max_connections: 0,
            max_connections_per_server: 0,
            idle_timeout: 300,
            identd_port: 0,
            identd_address: IpAddr::from([0, 0, 0, 0]),
            webirc_password: None,
            outgoing_bind: None,
            realname_customization: true,
            realname_from_jid: false,
            connect_timeout: 10,
            ping_interval: 240,
            reconnect_max_delay: 300,
        }
    }
}

impl Config {
    /// Checks values serde cannot: the encoding label, the server name.
    pub fn validate(&self) -> Result<(), String> {
        if crate::proto::encoding_for(&self.encoding_in).is_none() {
            return Err(format!(
                "irc.encoding_in: unknown encoding {:?}",
                self.encoding_in
            ));
        }
        if let Some(s) = &self.fixed_server {
            crate::address::valid_server(s).map_err(|e| format!("irc.fixed_server: {e}"))?;
        }
        if self.ports.is_empty() && self.tls_ports.is_empty() {
            return Err("irc.ports and irc.tls_ports are both empty".into());
        }
        if self.ping_interval == 0 || self.connect_timeout == 0 {
            return Err("irc.ping_interval and irc.connect_timeout must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_are_refused() {
        let c = Config {
            encoding_in: "klingon".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("encoding_in"));
        let c = Config {
            fixed_server: Some("bad server".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("fixed_server"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<Config>(r#"{"nope": 1}"#).unwrap_err();
        assert!(e.to_string().contains("nope"));
        let c: Config = serde_json::from_str(r#"{"throttle_limit": -1, "ports": [6668]}"#).unwrap();
        assert_eq!(c.throttle_limit, -1);
        assert_eq!(c.ports, vec![6668]);
        assert_eq!(c.tls_ports, vec![6697, 6670]);
    }
}
