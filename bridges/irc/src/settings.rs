//! Per-user settings, kept in the session's key/value store: the global
//! options (`configure` on the gateway), the options of each IRC server
//! (`configure` on `irc.server@GW`) and of each channel (`configure` on
//! `#chan%irc.server@GW`), plus the defaults of the optional registration.
//! [`ConnSettings`] is what one connection uses once all are combined with
//! the operator's `[irc]` defaults.
//!
//! A server's secrets (`pass`, `sasl_password`, `client_cert` with its
//! private key) are kept apart from its other options, sealed with the
//! gateway's key ([`KeyValue::put_sealed`]): the database file never holds
//! them in the clear. Options saved in the clear by older versions are
//! moved to the sealed record the first time they are read.

use ferry_bridge::{KeyValue, StoreError, UserId};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Options of the gateway's `configure` command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalOptions {
    /// Messages a joining client gets from the archive.
    pub max_history_length: Option<u32>,
    /// Archive channel messages.
    pub record_history: Option<bool>,
    /// Channels stay joined when the last client leaves.
    pub persistent: Option<bool>,
}

/// How to authenticate with SASL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaslMechanism {
    /// EXTERNAL with a client certificate when one is set, else PLAIN
    /// with the SASL password.
    #[default]
    Auto,
    /// PLAIN (account and password).
    Plain,
    /// EXTERNAL (the TLS client certificate).
    External,
}

/// Options of one IRC server (`configure` on `irc.server@GW`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerOptions {
    /// Host to connect to, when it differs from the server's name.
    pub address: Option<String>,
    /// Plain-text ports.
    pub ports: Option<Vec<u16>>,
    /// TLS ports (tried first).
    pub tls_ports: Option<Vec<u16>>,
    /// Verify the server's certificate.
    pub verify_cert: Option<bool>,
    /// Pinned certificate fingerprint (SHA-256 or SHA-1, hex).
    pub fingerprint: Option<String>,
    /// SASL password (SASL is used when it or a client certificate is set).
    pub sasl_password: Option<String>,
    /// SASL account name, when not the nickname.
    pub sasl_username: Option<String>,
    /// SASL mechanism.
    pub sasl_mechanism: SaslMechanism,
    /// TLS client certificate and its private key, PEM.
    pub client_cert: Option<String>,
    /// Nickname.
    pub nick: Option<String>,
    /// Server password (IRC PASS).
    pub pass: Option<String>,
    /// Raw commands sent once connected.
    pub after_connect_commands: Vec<String>,
    /// IRC username (ident).
    pub username: Option<String>,
    /// IRC realname.
    pub realname: Option<String>,
    /// Flood control (negative disables).
    pub throttle_limit: Option<i64>,
    /// Archived messages a joining client gets.
    pub max_history_length: Option<u32>,
    /// Encoding of text we send.
    pub encoding_out: Option<String>,
    /// Encoding of received text that is not UTF-8.
    pub encoding_in: Option<String>,
}

/// The secret part of [`ServerOptions`], stored sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct ServerSecrets {
    sasl_password: Option<String>,
    pass: Option<String>,
    client_cert: Option<String>,
}

impl ServerSecrets {
    /// Takes the secrets out of `o`, leaving None.
    fn take(o: &mut ServerOptions) -> ServerSecrets {
        ServerSecrets {
            sasl_password: o.sasl_password.take(),
            pass: o.pass.take(),
            client_cert: o.client_cert.take(),
        }
    }

    /// Puts them back into `o`.
    fn restore(self, o: &mut ServerOptions) {
        o.sasl_password = self.sasl_password;
        o.pass = self.pass;
        o.client_cert = self.client_cert;
    }

    fn is_empty(&self) -> bool {
        self == &ServerSecrets::default()
    }
}

/// `record_history` of a channel: inherit, or a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelOptions {
    /// Archive this channel (None: the global option).
    pub record_history: Option<bool>,
    /// Stay joined when the last client leaves.
    pub persistent: Option<bool>,
    /// Encoding of text we send here.
    pub encoding_out: Option<String>,
    /// Encoding of received text that is not UTF-8.
    pub encoding_in: Option<String>,
}

/// Defaults from the optional registration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Defaults {
    /// Nickname on every server.
    pub nick: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Realname.
    pub realname: Option<String>,
    /// The server the SASL password belongs to.
    pub server: Option<String>,
    /// SASL password for `server`.
    pub sasl_password: Option<String>,
}

impl Defaults {
    /// Decodes the account secret (JSON); bad data means no defaults.
    pub fn from_secret(bytes: &[u8]) -> Defaults {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// Encodes as an account secret.
    pub fn to_secret(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Typed access to the user's settings in their key/value space.
#[derive(Clone)]
pub struct SettingsStore<'a> {
    kv: &'a dyn KeyValue,
}

fn load<T: for<'de> Deserialize<'de> + Default>(
    kv: &dyn KeyValue,
    key: &str,
) -> Result<T, StoreError> {
    match kv.get(key)? {
        None => Ok(T::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StoreError(format!("setting {key} unreadable: {e}"))),
    }
}

fn save<T: Serialize>(kv: &dyn KeyValue, key: &str, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError(e.to_string()))?;
    kv.put(key, &bytes)
}

impl<'a> SettingsStore<'a> {
    /// Wraps a key/value space.
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        Self { kv }
    }

    /// The global options.
    pub fn global(&self) -> Result<GlobalOptions, StoreError> {
        load(self.kv, "global")
    }

    /// Saves the global options.
    pub fn set_global(&self, o: &GlobalOptions) -> Result<(), StoreError> {
        save(self.kv, "global", o)
    }

    /// A server's options, secrets included.
    pub fn server(&self, server: &str) -> Result<ServerOptions, StoreError> {
        let mut o: ServerOptions = load(self.kv, &format!("server/{server}"))?;
        let legacy = ServerSecrets::take(&mut o);
        let key = format!("secret/server/{server}");
        let sealed = match self.kv.get_sealed(&key)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError(format!("setting {key} unreadable: {e}")))?,
            None => ServerSecrets::default(),
        };
        if legacy.is_empty() {
            sealed.restore(&mut o);
        } else {
            // Written in the clear by an older version: seal it now.
            legacy.restore(&mut o);
            self.set_server(server, &o)?;
        }
        Ok(o)
    }

    /// Saves a server's options; the secrets are sealed (written first, so
    /// a failure loses nothing) and the rest is stored without them.
    pub fn set_server(&self, server: &str, o: &ServerOptions) -> Result<(), StoreError> {
        let mut plain = o.clone();
        let secrets = ServerSecrets::take(&mut plain);
        let key = format!("secret/server/{server}");
        if secrets.is_empty() {
            self.kv.delete(&key)?;
        } else {
            let bytes = serde_json::to_vec(&secrets).map_err(|e| StoreError(e.to_string()))?;
            self.kv.put_sealed(&key, &bytes)?;
        }
        save(self.kv, &format!("server/{server}"), &plain)
    }

    /// A channel's options (by canonical room id).
    pub fn channel(&self, room: &str) -> Result<ChannelOptions, StoreError> {
        load(self.kv, &format!("channel/{room}"))
    }

    /// Saves a channel's options.
    pub fn set_channel(&self, room: &str, o: &ChannelOptions) -> Result<(), StoreError> {
        save(self.kv, &format!("channel/{room}"), o)
    }

    /// Contacts the user watches on a server (MONITOR).
    pub fn contacts(&self, server: &str) -> Result<Vec<String>, StoreError> {
        load(self.kv, &format!("contacts/{server}"))
    }

    /// Saves the watched contacts of a server.
    pub fn set_contacts(&self, server: &str, nicks: &[String]) -> Result<(), StoreError> {
        save(self.kv, &format!("contacts/{server}"), &nicks)
    }
}

/// Everything one connection needs to know, resolved from the operator's
/// config, the registration defaults and the user's server options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnSettings {
    /// Canonical server name (`irc.libera.chat`).
    pub server: String,
    /// Host to connect to.
    pub address: String,
    /// (port, tls) in the order to try.
    pub ports: Vec<(u16, bool)>,
    /// Verify certificates.
    pub verify_cert: bool,
    /// Pinned fingerprint.
    pub fingerprint: Option<String>,
    /// Nickname to ask for (None: the one the first join asks for).
    pub nick: Option<String>,
    /// Username.
    pub username: String,
    /// Realname.
    pub realname: String,
    /// Server password.
    pub pass: Option<String>,
    /// SASL (account, password) for PLAIN.
    pub sasl_plain: Option<(String, String)>,
    /// Use SASL EXTERNAL.
    pub sasl_external: bool,
    /// SASL must succeed (a password or an explicit mechanism); otherwise
    /// a client certificate alone is used for SASL EXTERNAL when the server
    /// offers SASL, and just presented (CertFP) when it does not.
    pub sasl_required: bool,
    /// Client certificate + key (PEM).
    pub client_cert: Option<String>,
    /// Raw commands once connected.
    pub after_connect: Vec<String>,
    /// Flood control.
    pub throttle_limit: i64,
    /// Fallback decoding (label).
    pub encoding_in: String,
    /// Encoding of what we send (label; None = UTF-8).
    pub encoding_out: Option<String>,
}

impl ConnSettings {
    /// Combines the sources, most specific last.
    pub fn resolve(
        config: &Config,
        user: &UserId,
        server: &str,
        defaults: &Defaults,
        opts: &ServerOptions,
    ) -> ConnSettings {
        let tls_ports = opts
            .tls_ports
            .clone()
            .unwrap_or_else(|| config.tls_ports.clone());
        let plain_ports = opts.ports.clone().unwrap_or_else(|| config.ports.clone());
        let mut ports: Vec<(u16, bool)> = tls_ports.iter().map(|p| (*p, true)).collect();
        ports.extend(plain_ports.iter().map(|p| (*p, false)));
        let nick = opts.nick.clone().or_else(|| defaults.nick.clone());
        let jid_local = user
            .as_str()
            .split('@')
            .next()
            .unwrap_or("ferry")
            .to_owned();
        let custom = config.realname_customization;
        let username = custom
            .then(|| opts.username.clone().or_else(|| defaults.username.clone()))
            .flatten()
            .or_else(|| config.realname_from_jid.then(|| jid_local.clone()))
            .or_else(|| nick.clone())
            .unwrap_or_else(|| jid_local.clone());
        let realname = custom
            .then(|| opts.realname.clone().or_else(|| defaults.realname.clone()))
            .flatten()
            .or_else(|| config.realname_from_jid.then(|| user.as_str().to_owned()))
            .or_else(|| nick.clone())
            .unwrap_or_else(|| jid_local.clone());
        let sasl_password = opts.sasl_password.clone().or_else(|| {
            (defaults.server.as_deref() == Some(server))
                .then(|| defaults.sasl_password.clone())
                .flatten()
        });
        let has_cert = opts
            .client_cert
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty());
        let sasl_external = match opts.sasl_mechanism {
            SaslMechanism::External => true,
            SaslMechanism::Plain => false,
            SaslMechanism::Auto => has_cert && sasl_password.is_none(),
        };
        let sasl_plain = if sasl_external {
            None
        } else {
            sasl_password.map(|p| {
                let account = opts
                    .sasl_username
                    .clone()
                    .or_else(|| nick.clone())
                    .unwrap_or_else(|| username.clone());
                (account, p)
            })
        };
        let sasl_required = sasl_plain.is_some() || opts.sasl_mechanism != SaslMechanism::Auto;
        ConnSettings {
            sasl_required,
            server: server.to_owned(),
            address: opts.address.clone().unwrap_or_else(|| server.to_owned()),
            ports,
            verify_cert: opts.verify_cert.unwrap_or(config.verify_cert),
            fingerprint: opts.fingerprint.clone().filter(|f| !f.trim().is_empty()),
            nick,
            username: sanitize_user(&username),
            realname,
            pass: opts.pass.clone().filter(|p| !p.is_empty()),
            sasl_plain,
            sasl_external,
            client_cert: opts.client_cert.clone().filter(|c| !c.trim().is_empty()),
            after_connect: opts.after_connect_commands.clone(),
            throttle_limit: opts.throttle_limit.unwrap_or(config.throttle_limit),
            encoding_in: opts
                .encoding_in
                .clone()
                .filter(|e| crate::proto::encoding_for(e).is_some())
                .unwrap_or_else(|| config.encoding_in.clone()),
            encoding_out: opts
                .encoding_out
                .clone()
                .filter(|e| crate::proto::encoding_for(e).is_some()),
        }
    }
}

/// A username IRC servers accept: ASCII letters, digits and `-_.`, at most
/// 10 characters, never empty.
pub fn sanitize_user(u: &str) -> String {
    let s: String = u
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(10)
        .collect();
    if s.is_empty() { "ferry".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ferry_bridge::MemoryKeyValue as Mem;

    fn clear_values(kv: &Mem) -> String {
        kv.clear_text()
    }

    #[test]
    fn server_secrets_are_sealed_and_legacy_ones_migrated() {
        let kv = Mem::default();
        let s = SettingsStore::new(&kv);
        let o = ServerOptions {
            nick: Some("bob".into()),
            pass: Some("server-pw".into()),
            sasl_password: Some("sasl-pw".into()),
            client_cert: Some("-----BEGIN PRIVATE KEY-----".into()),
            ..Default::default()
        };
        s.set_server("irc.x", &o).unwrap();
        assert_eq!(s.server("irc.x").unwrap(), o);
        let clear = clear_values(&kv);
        assert!(clear.contains("bob"), "{clear}");
        for secret in ["server-pw", "sasl-pw", "PRIVATE KEY"] {
            assert!(!clear.contains(secret), "{secret} in the clear: {clear}");
        }
        // Removing the secrets removes the sealed record.
        let bare = ServerOptions {
            nick: Some("bob".into()),
            ..Default::default()
        };
        s.set_server("irc.x", &bare).unwrap();
        assert_eq!(s.server("irc.x").unwrap(), bare);
        assert_eq!(kv.get("secret/server/irc.x").unwrap(), None);

        // An older version wrote everything in the clear.
        kv.put("server/irc.y", &serde_json::to_vec(&o).unwrap())
            .unwrap();
        assert_eq!(s.server("irc.y").unwrap(), o);
        let clear = clear_values(&kv);
        assert!(!clear.contains("sasl-pw"), "not migrated: {clear}");
        assert_eq!(s.server("irc.y").unwrap(), o);
    }

    #[test]
    fn settings_round_trip_through_the_store() {
        let kv = Mem::default();
        let s = SettingsStore::new(&kv);
        assert_eq!(s.server("irc.x").unwrap(), ServerOptions::default());
        let o = ServerOptions {
            nick: Some("bob".into()),
            ports: Some(vec![6668]),
            ..Default::default()
        };
        s.set_server("irc.x", &o).unwrap();
        assert_eq!(s.server("irc.x").unwrap(), o);
        kv.put("global", b"not json").unwrap();
        assert!(s.global().is_err());
    }

    #[test]
    fn resolution_order() {
        let config = Config::default();
        let user = UserId::new("alice@example.org");
        let d = Defaults {
            nick: Some("ali".into()),
            server: Some("irc.x".into()),
            sasl_password: Some("pw".into()),
            ..Default::default()
        };
        let c = ConnSettings::resolve(&config, &user, "irc.x", &d, &ServerOptions::default());
        assert_eq!(c.ports, vec![(6697, true), (6670, true), (6667, false)]);
        assert_eq!(c.nick.as_deref(), Some("ali"));
        assert_eq!(c.username, "ali");
        assert_eq!(c.sasl_plain, Some(("ali".into(), "pw".into())));
        // The registration's SASL password is not sent to other servers.
        let c = ConnSettings::resolve(&config, &user, "irc.y", &d, &ServerOptions::default());
        assert_eq!(c.sasl_plain, None);
        let o = ServerOptions {
            nick: Some("other".into()),
            tls_ports: Some(vec![]),
            ports: Some(vec![7000]),
            client_cert: Some("PEM".into()),
            ..Default::default()
        };
        let c = ConnSettings::resolve(&config, &user, "irc.y", &Defaults::default(), &o);
        assert_eq!(c.ports, vec![(7000, false)]);
        assert_eq!(c.nick.as_deref(), Some("other"));
        assert!(c.sasl_external);
        let config = Config {
            realname_from_jid: true,
            ..Config::default()
        };
        let c = ConnSettings::resolve(
            &config,
            &user,
            "irc.y",
            &Defaults::default(),
            &ServerOptions::default(),
        );
        assert_eq!(c.realname, "alice@example.org");
        assert_eq!(c.username, "alice");
    }

    #[test]
    fn usernames_are_sanitized() {
        assert_eq!(sanitize_user("a b\r\nc"), "abc");
        assert_eq!(sanitize_user("ééé"), "ferry");
        assert_eq!(sanitize_user("abcdefghijklmnop"), "abcdefghij");
    }
}
