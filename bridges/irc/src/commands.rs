//! biboumi's ad-hoc commands, field for field: `configure` on the gateway
//! (global options), on `irc.server@GW` (server options) and on
//! `#chan%irc.server@GW` (channel options, also the room's muc#owner
//! form), `get-irc-connection-info` on the server, and
//! `disconnect-from-irc-server` on the gateway. In `fixed_server` mode the
//! server's commands live on the gateway as `server-configure` and
//! `get-irc-connection-info`, as in biboumi.

use std::time::SystemTime;

use ferry_bridge::{
    Address, BridgeError, CommandCall, CommandReply, CommandScope, CommandSpec, Field, FieldKind,
    Form, FormValues, Outcome,
};

use crate::address::split_id;
use crate::session::IrcSession;
use crate::settings::{ChannelOptions, GlobalOptions, SaslMechanism, ServerOptions, SettingsStore};

const SUBMIT: &str = "submit";
const APPLIED: &str = "Configuration successfully applied.";
const SECRET_HINT: &str =
    "Leave empty to keep the current value; enter a single dash (-) to remove it.";

/// The commands the bridge adds to the core's.
pub fn specs(fixed: bool) -> Vec<CommandSpec> {
    let mut v = vec![
        CommandSpec::new(
            if fixed {
                "global-configure"
            } else {
                "configure"
            },
            "Configure a few settings",
            CommandScope::Gateway,
        ),
        CommandSpec::new(
            "disconnect-from-irc-server",
            "Disconnect from the selected IRC servers",
            CommandScope::Gateway,
        ),
        CommandSpec::new(
            "configure",
            "Configure the IRC server",
            CommandScope::Service,
        ),
        CommandSpec::new(
            "get-irc-connection-info",
            "Get your IRC connection information",
            CommandScope::Service,
        ),
        CommandSpec::new("configure", "Configure the IRC channel", CommandScope::Room),
    ];
    if fixed {
        v.push(CommandSpec::new(
            "server-configure",
            "Configure the IRC server",
            CommandScope::Gateway,
        ));
        v.push(CommandSpec::new(
            "get-irc-connection-info",
            "Get your IRC connection information",
            CommandScope::Gateway,
        ));
    }
    v
}

/// Runs one step of a command.
pub async fn run(s: &mut IrcSession, call: CommandCall) -> Result<Outcome, BridgeError> {
    let fixed = s
        .shared
        .config
        .fixed_server
        .clone()
        .map(|f| f.to_ascii_lowercase());
    let reply = match (&call.target, call.node.as_str()) {
        (None, "configure") if fixed.is_none() => global_configure(s, &call)?,
        (None, "global-configure") if fixed.is_some() => global_configure(s, &call)?,
        (None, "disconnect-from-irc-server") => disconnect(s, &call).await?,
        (None, "server-configure") if fixed.is_some() => {
            let server = fixed.clone().unwrap_or_default();
            server_configure(s, &call, &server, true).await?
        }
        (None, "get-irc-connection-info") if fixed.is_some() => {
            let server = fixed.clone().unwrap_or_default();
            connection_info(s, &server).await
        }
        (Some(Address::Service(server)), "configure") => {
            let server = server.as_str().to_owned();
            server_configure(s, &call, &server, fixed.is_some()).await?
        }
        (Some(Address::Service(server)), "get-irc-connection-info") => {
            let server = server.as_str().to_owned();
            connection_info(s, &server).await
        }
        (Some(Address::Room(room)), "configure") => channel_configure(s, &call, room).await?,
        _ => {
            return Err(BridgeError::not_found(format!(
                "There is no command {:?} here",
                call.node
            )));
        }
    };
    Ok(Outcome::Command(reply))
}

fn form_reply(form: Form) -> CommandReply {
    CommandReply::Form {
        form,
        stage: SUBMIT.into(),
        last: true,
    }
}

fn first_step(call: &CommandCall) -> bool {
    call.stage.as_deref() != Some(SUBMIT)
}

fn bad(field: &str, why: impl std::fmt::Display) -> BridgeError {
    BridgeError::bad_request(format!("{field}: {why}"))
}

fn parse_u32(values: &FormValues, var: &str) -> Result<Option<u32>, BridgeError> {
    match values.get(var).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad(var, format!("{v:?} is not a number"))),
    }
}

fn parse_bool(values: &FormValues, var: &str) -> Result<Option<bool>, BridgeError> {
    match values.get(var) {
        None => Ok(None),
        Some(v) => ferry_bridge::form::parse_bool(v)
            .map(Some)
            .ok_or_else(|| bad(var, format!("{v:?} is not true or false"))),
    }
}

fn parse_ports(values: &FormValues, var: &str) -> Result<Option<Vec<u16>>, BridgeError> {
    let Some(all) = values.all(var) else {
        return Ok(None);
    };
    let mut ports = Vec::new();
    for v in all.iter().flat_map(|v| v.split([',', ';', ' ', '\n'])) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let p: u16 = v
            .parse()
            .map_err(|_| bad(var, format!("{v:?} is not a port number")))?;
        if p == 0 {
            return Err(bad(var, "0 is not a port number"));
        }
        ports.push(p);
    }
    Ok(Some(ports))
}

fn parse_encoding(values: &FormValues, var: &str) -> Result<Option<String>, BridgeError> {
    match values.get(var).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match crate::proto::encoding_for(v) {
            Some(_) => Ok(Some(v.to_owned())),
            None => Err(bad(var, format!("unknown encoding {v:?}"))),
        },
    }
}

/// A text-private value: empty keeps `old`, "-" removes it.
fn secret(values: &FormValues, var: &str, old: Option<String>) -> Option<String> {
    match values.get(var) {
        None => old,
        Some("-") => None,
        Some(v) => Some(v.to_owned()),
    }
}

// ------------------------------------------------------------------ global

fn global_form(s: &IrcSession, o: &GlobalOptions) -> Form {
    let config = &s.shared.config;
    Form::new("Configure some global default settings.")
        .instructions("Edit the form, to configure your global settings for the component.")
        .field(
            Field::text("max_history_length", "Max history length")
                .desc("The maximum number of lines in the history that the server sends when joining a channel")
                .value(o.max_history_length.unwrap_or(config.max_history_length).to_string()),
        )
        .field(
            Field::boolean("record_history", "Record history", o.record_history.unwrap_or(config.record_history))
                .desc("Whether to save the messages into the database, or not"),
        )
        .field(
            Field::boolean(
                "persistent",
                "Make all channels persistent",
                o.persistent.unwrap_or(config.persistent_by_default),
            )
            .desc("If true, all channels will be persistent"),
        )
}

fn global_configure(s: &mut IrcSession, call: &CommandCall) -> Result<CommandReply, BridgeError> {
    let store = SettingsStore::new(s.store.as_ref());
    let current = store.global()?;
    if first_step(call) {
        return Ok(form_reply(global_form(s, &current)));
    }
    let v = &call.values;
    let o = GlobalOptions {
        max_history_length: parse_u32(v, "max_history_length")?.or(current.max_history_length),
        record_history: parse_bool(v, "record_history")?.or(current.record_history),
        persistent: parse_bool(v, "persistent")?.or(current.persistent),
    };
    store.set_global(&o)?;
    Ok(CommandReply::done(format!(
        "{APPLIED} It applies to channels joined from now on."
    )))
}

// ------------------------------------------------------------------ server

fn server_form(s: &IrcSession, server: &str, o: &ServerOptions, fixed: bool) -> Form {
    let config = &s.shared.config;
    let ports = |p: &Option<Vec<u16>>, d: &Vec<u16>| -> Vec<String> {
        p.clone()
            .unwrap_or_else(|| d.clone())
            .iter()
            .map(u16::to_string)
            .collect()
    };
    let set = |x: &Option<String>| {
        if x.is_some() {
            "(currently set) "
        } else {
            "(not set) "
        }
    };
    let mut form = Form::new(format!("Configure the IRC server {server}")).instructions(
        "Edit the form, to configure the settings of the IRC server ".to_owned() + server,
    );
    if !fixed {
        form = form.field(
            Field::text("address", "Address")
                .desc("The hostname or IP address to connect to, if it differs from the server's name")
                .values(o.address.clone()),
        );
    }
    form = form
        .field(
            Field::new("ports", FieldKind::TextMulti)
                .label("Ports")
                .desc("List of ports to try, without TLS. Defaults: 6667.")
                .values(ports(&o.ports, &config.ports)),
        )
        .field(
            Field::new("tls_ports", FieldKind::TextMulti)
                .label("TLS ports")
                .desc("List of ports to try, with TLS. Defaults: 6697, 6670.")
                .values(ports(&o.tls_ports, &config.tls_ports)),
        )
        .field(
            Field::boolean("verify_cert", "Verify certificate", o.verify_cert.unwrap_or(config.verify_cert))
                .desc("Whether or not to abort the connection if the server's TLS certificate is invalid"),
        )
        .field(
            Field::text("fingerprint", "TLS certificate fingerprint")
                .desc("SHA-256 (or SHA-1) fingerprint of the TLS certificate to trust, whatever its issuer")
                .values(o.fingerprint.clone()),
        )
        .field(
            Field::private("sasl_password", "SASL password")
                .desc(format!("{}Password of your account on this network, sent with SASL. {SECRET_HINT}", set(&o.sasl_password))),
        )
        .field(
            Field::text("sasl_username", "SASL account")
                .desc("Account name for SASL PLAIN, when it is not your nickname")
                .values(o.sasl_username.clone()),
        )
        .field(
            Field::new("sasl_mechanism", FieldKind::ListSingle)
                .label("SASL mechanism")
                .desc("EXTERNAL logs in with the TLS client certificate below")
                .option("Automatic", "auto")
                .option("PLAIN (password)", "plain")
                .option("EXTERNAL (client certificate)", "external")
                .value(match o.sasl_mechanism {
                    SaslMechanism::Auto => "auto",
                    SaslMechanism::Plain => "plain",
                    SaslMechanism::External => "external",
                }),
        )
        .field(
            Field::new("client_cert", FieldKind::TextMulti)
                .label("TLS client certificate")
                .desc(format!(
                    "{}PEM certificate and private key, for SASL EXTERNAL (CertFP). {SECRET_HINT}",
                    set(&o.client_cert)
                )),
        )
        .field(
            Field::text("nick", "Nickname")
                .desc("If set, will override the nickname provided in the initial presence sent to join the first server channel")
                .values(o.nick.clone()),
        )
        .field(
            Field::private("pass", "Server password")
                .desc(format!("{}Will be used in a PASS command when connecting. {SECRET_HINT}", set(&o.pass))),
        )
        .field(
            Field::new("after_connect_commands", FieldKind::TextMulti)
                .label("After-connection IRC commands")
                .desc("Raw IRC commands to be sent after the connection is established, one per line")
                .values(o.after_connect_commands.clone()),
        );
    if config.realname_customization {
        form = form
            .field(
                Field::text("username", "Username")
                    .desc("Username used in the USER command when connecting")
                    .values(o.username.clone()),
            )
            .field(
                Field::text("realname", "Realname")
                    .desc("The realname used in the USER command when connecting")
                    .values(o.realname.clone()),
            );
    }
    form.field(
        Field::text("throttle_limit", "Throttle limit")
            .desc("Limit the number of commands sent to the server per second; -1 disables it")
            .value(o.throttle_limit.unwrap_or(config.throttle_limit).to_string()),
    )
    .field(
        Field::text("max_history_length", "Maximum history length")
            .desc("The maximum number of messages of the history sent when joining a channel")
            .values(o.max_history_length.map(|n| n.to_string())),
    )
    .field(
        Field::text("encoding_out", "Out encoding")
            .desc("The encoding used when sending messages to the IRC server (default UTF-8)")
            .values(o.encoding_out.clone()),
    )
    .field(
        Field::text("encoding_in", "In encoding")
            .desc("The encoding used to decode messages received from the IRC server that are not UTF-8")
            .values(o.encoding_in.clone()),
    )
}

async fn server_configure(
    s: &mut IrcSession,
    call: &CommandCall,
    server: &str,
    fixed: bool,
) -> Result<CommandReply, BridgeError> {
    crate::address::valid_server(server).map_err(|e| BridgeError::bad_request(e.0))?;
    let current = SettingsStore::new(s.store.as_ref()).server(server)?;
    if first_step(call) {
        return Ok(form_reply(server_form(s, server, &current, fixed)));
    }
    let v = &call.values;
    let text = |var: &str| {
        v.get(var)
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
    };
    let address = if fixed { None } else { text("address") };
    if let Some(a) = &address {
        crate::address::valid_server(a).map_err(|e| bad("address", e.0))?;
    }
    let nick = text("nick");
    if let Some(n) = &nick {
        crate::address::valid_nick(n).map_err(|e| bad("nick", e.0))?;
    }
    let throttle_limit = match text("throttle_limit") {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| bad("throttle_limit", format!("{t:?} is not a number")))?,
        ),
    };
    let fingerprint = text("fingerprint");
    if let Some(fp) = &fingerprint {
        let n = crate::transport::normalize_fingerprint(fp).len();
        if n != 40 && n != 64 {
            return Err(bad(
                "fingerprint",
                "expected a SHA-256 (64 hex digits) or SHA-1 (40) fingerprint",
            ));
        }
    }
    let mechanism = match v.get("sasl_mechanism") {
        None | Some("auto") => SaslMechanism::Auto,
        Some("plain") => SaslMechanism::Plain,
        Some("external") => SaslMechanism::External,
        Some(other) => {
            return Err(bad(
                "sasl_mechanism",
                format!("{other:?} is not one of the choices"),
            ));
        }
    };
    let client_cert = match v.all("client_cert") {
        None => current.client_cert.clone(),
        Some(lines) => {
            let pem = lines.join("\n");
            match pem.trim() {
                "" => current.client_cert.clone(),
                "-" => None,
                _ => Some(pem),
            }
        }
    };
    let after_connect_commands: Vec<String> = v
        .all("after_connect_commands")
        .map(|l| {
            l.iter()
                .flat_map(|x| x.split('\n'))
                .map(|x| x.trim_end_matches('\r').to_owned())
                .filter(|x| !x.trim().is_empty())
                .collect()
        })
        .unwrap_or_default();
    for c in &after_connect_commands {
        crate::proto::Line::raw(c)
            .map_err(|e| bad("after_connect_commands", format!("{c:?}: {e}")))?;
    }
    let custom = s.shared.config.realname_customization;
    let o = ServerOptions {
        address,
        ports: parse_ports(v, "ports")?,
        tls_ports: parse_ports(v, "tls_ports")?,
        verify_cert: parse_bool(v, "verify_cert")?,
        fingerprint,
        sasl_password: secret(v, "sasl_password", current.sasl_password.clone()),
        sasl_username: text("sasl_username"),
        sasl_mechanism: mechanism,
        client_cert,
        nick,
        pass: secret(v, "pass", current.pass.clone()),
        after_connect_commands,
        username: if custom {
            text("username")
        } else {
            current.username.clone()
        },
        realname: if custom {
            text("realname")
        } else {
            current.realname.clone()
        },
        throttle_limit,
        max_history_length: parse_u32(v, "max_history_length")?,
        encoding_out: parse_encoding(v, "encoding_out")?,
        encoding_in: parse_encoding(v, "encoding_in")?,
    };
    if o.ports.as_ref().is_some_and(Vec::is_empty)
        && o.tls_ports.as_ref().is_some_and(Vec::is_empty)
    {
        return Err(bad("ports", "give at least one port or TLS port"));
    }
    if o.client_cert.is_some() {
        let probe = crate::settings::ConnSettings {
            client_cert: o.client_cert.clone(),
            verify_cert: false,
            ..s.conn_settings(server)?
        };
        s.shared
            .tls
            .client_config(&probe)
            .map_err(|e| bad("client_cert", e))?;
    }
    SettingsStore::new(s.store.as_ref()).set_server(server, &o)?;
    s.server_settings_changed(server).await;
    Ok(CommandReply::done(format!(
        "{APPLIED} Connection settings apply from the next connection on."
    )))
}

// ------------------------------------------------------------------ channel

async fn channel_configure(
    s: &mut IrcSession,
    call: &CommandCall,
    room: &ferry_bridge::RoomId,
) -> Result<CommandReply, BridgeError> {
    let store = SettingsStore::new(s.store.as_ref());
    let current = store.channel(room.as_str())?;
    let name = split_id(room.as_str())
        .map(|(c, _)| c.to_owned())
        .unwrap_or_default();
    if first_step(call) {
        let record = match current.record_history {
            None => "unset",
            Some(true) => "true",
            Some(false) => "false",
        };
        let form = Form::new(format!("Configure the IRC channel {name}"))
            .instructions("Edit the form, to configure the settings of the IRC channel ".to_owned() + &name)
            .field(
                Field::new("record_history", FieldKind::ListSingle)
                    .label("Record history for this channel")
                    .desc("If unset, the value is the one configured globally")
                    .option("unset", "unset")
                    .option("true", "true")
                    .option("false", "false")
                    .value(record),
            )
            .field(
                Field::text("encoding_out", "Out encoding")
                    .desc("The encoding used when sending messages to the IRC server. Defaults to the server's setting")
                    .values(current.encoding_out.clone()),
            )
            .field(
                Field::text("encoding_in", "In encoding")
                    .desc("The encoding used to decode messages received from the IRC server. Defaults to the server's setting")
                    .values(current.encoding_in.clone()),
            )
            .field(
                Field::boolean("persistent", "Persistent", current.persistent.unwrap_or(false)).desc(
                    "If set to true, when all XMPP clients have left this channel, the gateway will stay \
                     in it, without sending a PART command, and keep recording its history",
                ),
            );
        return Ok(form_reply(form));
    }
    let v = &call.values;
    let record_history = match v.get("record_history") {
        None => current.record_history,
        Some("unset") => None,
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        Some(other) => {
            return Err(bad(
                "record_history",
                format!("{other:?} is not one of the choices"),
            ));
        }
    };
    let o = ChannelOptions {
        record_history,
        persistent: parse_bool(v, "persistent")?.or(current.persistent),
        encoding_out: parse_encoding(v, "encoding_out")?,
        encoding_in: parse_encoding(v, "encoding_in")?,
    };
    store.set_channel(room.as_str(), &o)?;
    s.channel_settings_changed(room).await;
    Ok(CommandReply::done(APPLIED))
}

// ------------------------------------------------------------------ info

fn ago(since: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(since)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let when = chrono::DateTime::<chrono::Utc>::from(since).format("%Y-%m-%d %H:%M:%S UTC");
    format!("since {when} ({secs} seconds ago)")
}

async fn connection_info(s: &mut IrcSession, server: &str) -> CommandReply {
    let Some(info) = s.conn_info(server).await else {
        return CommandReply::done(format!("You are not connected to the IRC server {server}"));
    };
    let mut lines = Vec::new();
    match (&info.endpoint, info.connected) {
        (Some((host, port)), true) => {
            let since = info.since.map(ago).unwrap_or_default();
            lines.push(format!(
                "Connected to IRC server {host} on port {port} {since}"
            ));
            lines.push(format!(
                "Transport: {}",
                if info.tls {
                    "TLS (encrypted)"
                } else {
                    "plain text (not encrypted)"
                }
            ));
            if let Some(fp) = &info.fingerprint {
                lines.push(format!("Certificate SHA-256: {fp}"));
            }
        }
        _ => lines.push(format!(
            "Not connected to {server} right now: {}",
            info.status.clone().unwrap_or_else(|| "connecting".into())
        )),
    }
    lines.push(format!("Nickname: {}", info.nick));
    if info.channels.is_empty() {
        lines.push("No channel joined".into());
    } else {
        let chans: Vec<String> = info
            .channels
            .iter()
            .map(|(c, p)| {
                if *p {
                    format!("{c} (persistent)")
                } else {
                    c.clone()
                }
            })
            .collect();
        lines.push(format!("Channels: {}", chans.join(", ")));
    }
    if !info.caps.is_empty() {
        lines.push(format!("IRCv3 capabilities: {}", info.caps.join(" ")));
    }
    CommandReply::done(lines.join("\n"))
}

// ------------------------------------------------------------------ disconnect

async fn disconnect(s: &mut IrcSession, call: &CommandCall) -> Result<CommandReply, BridgeError> {
    let servers = s.connected_servers();
    if first_step(call) {
        if servers.is_empty() {
            return Ok(CommandReply::done(
                "You are not connected to any IRC server.",
            ));
        }
        let mut field = Field::new("irc-servers", FieldKind::ListMulti)
            .label("IRC servers to disconnect from")
            .required();
        for srv in &servers {
            field = field.option(srv.clone(), srv.clone()).value(srv.clone());
        }
        let form = Form::new("Disconnect from the selected IRC servers")
            .instructions(
                "Select the IRC servers to disconnect from and, optionally, a quit message",
            )
            .field(field)
            .field(Field::text("quit-message", "Quit message").value("Disconnected by user"));
        return Ok(form_reply(form));
    }
    let chosen: Vec<String> = call
        .values
        .all("irc-servers")
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    if chosen.is_empty() {
        return Err(bad("irc-servers", "select at least one server"));
    }
    let message = call
        .values
        .get("quit-message")
        .map(|m| m.replace(['\r', '\n', '\0'], " "));
    let mut done = 0;
    for srv in &chosen {
        if servers.contains(srv) {
            s.disconnect(srv, message.clone()).await;
            done += 1;
        }
    }
    Ok(CommandReply::done(format!(
        "{done} IRC server{} disconnected.",
        if done == 1 { "" } else { "s" }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_biboumi_node_is_offered() {
        let v = specs(false);
        let has =
            |node: &str, scope: CommandScope| v.iter().any(|c| c.node == node && c.scope == scope);
        assert!(has("configure", CommandScope::Gateway));
        assert!(has("disconnect-from-irc-server", CommandScope::Gateway));
        assert!(has("configure", CommandScope::Service));
        assert!(has("get-irc-connection-info", CommandScope::Service));
        assert!(has("configure", CommandScope::Room));
        let f = specs(true);
        assert!(f.iter().any(|c| c.node == "server-configure"));
        assert!(f.iter().any(|c| c.node == "global-configure"));
    }

    #[test]
    fn ports_and_secrets() {
        let mut v = FormValues::new();
        v.set("ports", vec!["6667".into(), "7000, 7001".into()]);
        assert_eq!(
            parse_ports(&v, "ports").unwrap(),
            Some(vec![6667, 7000, 7001])
        );
        v.set("ports", vec!["x".into()]);
        assert!(
            parse_ports(&v, "ports")
                .unwrap_err()
                .message
                .contains("ports")
        );
        let v = FormValues::new().with("pass", "-");
        assert_eq!(secret(&v, "pass", Some("old".into())), None);
        assert_eq!(
            secret(&FormValues::new(), "pass", Some("old".into())),
            Some("old".into())
        );
        let v = FormValues::new().with("pass", "new");
        assert_eq!(secret(&v, "pass", None), Some("new".into()));
    }
}
