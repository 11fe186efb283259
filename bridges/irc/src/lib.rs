//! Ferry's IRC bridge: a drop-in replacement for biboumi.
//!
//! Users address IRC exactly as with biboumi (`#chan%irc.server@GW`,
//! `nick%irc.server@GW`, `irc.server@GW`, see [`address`]); each user gets
//! one IRC connection per server, shared by all their clients and
//! channels, opened on demand and closed when idle. The connection speaks
//! IRCv3 (CAP 302, SASL, message tags, echo-message, batches,
//! labeled-response …) and is modelled as a pure state machine
//! ([`conn`]) driven by one task ([`driver`]).
//!
//! Modules, each owning one thing: [`config`] (the `[irc]` section),
//! [`address`] and [`casemap`] (JIDs <-> IRC names), [`proto`] (lines on
//! the wire), [`format`] (IRC formatting <-> rich text), [`ctcp`],
//! [`throttle`] (flood control), [`transport`] (TCP/TLS), [`identd`],
//! [`settings`] (per-user options), [`session`] (the bridge API session),
//! [`resume`] (private conversations restored after a restart),
//! [`commands`] (biboumi's ad-hoc commands).

pub mod address;
pub mod casemap;
pub mod commands;
pub mod config;
pub mod conn;
pub mod ctcp;
pub mod driver;
pub mod format;
pub mod identd;
pub mod intern;
pub mod proto;
pub mod resume;
pub mod session;
pub mod settings;
pub mod throttle;
pub mod time;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::{
    Account, AddressRules, BridgeContext, BridgeError, BridgeSetup, Capabilities, CommandSpec,
    EventSink, Feature, Field, Form, FormValues, HostPolicy, LoginError, Network, NetworkInfo,
    Registration, Secret, Session, SessionContext, SessionPolicy, UserId,
};

pub use config::Config;

use address::IrcAddresses;
use casemap::TraitsRegistry;
use driver::Limits;
use identd::IdentRegistry;
use settings::Defaults;
use transport::TlsContext;

/// What every session of the bridge shares.
pub struct Shared {
    /// The `[irc]` section.
    pub config: Config,
    /// The component domain.
    pub domain: String,
    /// Address rules.
    pub addresses: IrcAddresses,
    /// Server traits learned from ISUPPORT.
    pub traits: TraitsRegistry,
    /// Connection caps.
    pub limits: Arc<Limits>,
    /// TLS roots and provider.
    pub tls: Arc<TlsContext>,
    /// identd, when enabled (it runs in the bridge-wide part, see
    /// [`Network::start`]).
    pub identd: Option<IdentRegistry>,
    /// The CTCP VERSION answer.
    pub version: String,
    /// The servers connections may go to (the operator's policy; the
    /// `fixed_server` is always allowed).
    pub hosts: Arc<HostPolicy>,
    /// Channel members, one table per (server, channel) shared by every
    /// connection in it.
    pub members: crate::conn::MemberTables,
}

/// The IRC network bridge.
pub struct IrcNetwork {
    info: NetworkInfo,
    shared: Arc<Shared>,
}

/// Builds the bridge from its configuration section.
pub fn build(config: Config, setup: BridgeSetup) -> Result<Arc<dyn Network>, String> {
    config.validate()?;
    let traits = TraitsRegistry::default();
    // The identd listens from `start` (build must not listen).
    let identd = (config.identd_port != 0).then(IdentRegistry::default);
    let hosts = match &config.fixed_server {
        Some(fixed) => setup
            .hosts
            .also_allowing(fixed)
            .map_err(|e| format!("irc.fixed_server: {e}"))?,
        None => setup.hosts,
    };
    let shared = Shared {
        hosts: Arc::new(hosts),
        addresses: IrcAddresses::new(config.fixed_server.clone(), traits.clone()),
        traits,
        limits: Arc::new(Limits::new(
            config.max_connections,
            config.max_connections_per_server,
        )),
        tls: Arc::new(TlsContext::new(config.ca_file.as_deref())),
        identd,
        version: format!("Ferry {} (XMPP gateway)", env!("CARGO_PKG_VERSION")),
        domain: setup.domain,
        members: Default::default(),
        config,
    };
    Ok(Arc::new(IrcNetwork::new(shared)))
}

impl IrcNetwork {
    /// The bridge around shared state (tests build it directly).
    pub fn new(shared: Shared) -> Self {
        let info = NetworkInfo {
            name: "IRC".into(),
            gateway_type: "irc".into(),
            registration: Registration::Optional,
            sessions: SessionPolicy::OnDemand,
            capabilities: Capabilities::of(&[
                Feature::Rooms,
                Feature::PrivateMessages,
                Feature::Corrections,
                Feature::Retractions,
                Feature::Moderation,
                Feature::Reactions,
                Feature::Replies,
                Feature::ChatStates,
                Feature::Attachments,
                Feature::Formatting,
                Feature::SubjectChange,
                Feature::NickChange,
                Feature::Invites,
                Feature::ModerationRoles,
                Feature::History,
                Feature::RoomList,
                Feature::ContactPresence,
                Feature::VersionQuery,
                Feature::Ping,
            ]),
            limits: ferry_bridge::Limits::default(),
        };
        Self {
            info,
            shared: Arc::new(shared),
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

#[async_trait::async_trait]
impl Network for IrcNetwork {
    fn info(&self) -> &NetworkInfo {
        &self.info
    }

    fn address(&self) -> &dyn AddressRules {
        &self.shared.addresses
    }

    fn registration(&self) -> Form {
        let fixed = self.shared.config.fixed_server.is_some();
        let mut form = Form::new("IRC defaults").instructions(
            "Nothing here is needed to use IRC: join #channel%irc.server rooms right away. \
             These values are defaults for every IRC server; each server can also be \
             configured with the 'configure' command on irc.server@this gateway.",
        );
        form = form.field(
            Field::text("nick", "Nickname")
                .desc("Used on every IRC server unless a server sets its own"),
        );
        if self.shared.config.realname_customization {
            form = form
                .field(Field::text("username", "Username").desc("IRC username (ident)"))
                .field(Field::text("realname", "Realname"));
        }
        if !fixed {
            form = form.field(
                Field::text("server", "IRC server of the SASL password")
                    .desc("The SASL password below is only ever sent to this server"),
            );
        }
        form.field(
            Field::private("sasl_password", "SASL password")
                .desc("Your account password on the IRC network (NickServ); checked by logging in"),
        )
    }

    fn commands(&self) -> Vec<CommandSpec> {
        commands::specs(self.shared.config.fixed_server.is_some())
    }

    async fn login(&self, user: &UserId, values: &FormValues) -> Result<Account, LoginError> {
        let invalid = |field: &str, message: String| LoginError::InvalidField {
            field: field.into(),
            message,
        };
        let nick = values.get("nick").map(str::to_owned);
        if let Some(n) = &nick {
            address::valid_nick(n).map_err(|e| invalid("nick", e.0))?;
        }
        let username = values.get("username").map(str::to_owned);
        let realname = values
            .get("realname")
            .map(|r| r.replace(['\r', '\n', '\0'], " "));
        let server = match &self.shared.config.fixed_server {
            Some(s) => values.get("sasl_password").map(|_| s.to_ascii_lowercase()),
            None => values.get("server").map(str::to_ascii_lowercase),
        };
        if let Some(s) = &server {
            address::valid_server(s).map_err(|e| invalid("server", e.0))?;
        }
        let sasl_password = values.get("sasl_password").map(str::to_owned);
        if sasl_password.is_some() && server.is_none() {
            return Err(invalid(
                "server",
                "Say which IRC server the SASL password is for".into(),
            ));
        }
        let defaults = Defaults {
            nick: nick.clone(),
            username,
            realname,
            server: server.clone(),
            sasl_password: sasl_password.clone(),
        };
        if let (Some(server), Some(_)) = (&server, &sasl_password) {
            session::probe_login(&self.shared, user, server, &defaults).await?;
        }
        Ok(Account {
            name: nick.unwrap_or_else(|| user.as_str().to_owned()),
            secret: Secret(defaults.to_secret()),
        })
    }

    async fn connect(&self, ctx: SessionContext) -> Result<Box<dyn Session>, LoginError> {
        Ok(Box::new(session::IrcSession::new(self.shared.clone(), ctx)))
    }

    /// The bridge-wide part is the identd (when `identd_port` is set): it
    /// serves every user's connections, supervised by the core.
    async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError> {
        let Some(registry) = &self.shared.identd else {
            return Ok(());
        };
        let config = &self.shared.config;
        let addr = std::net::SocketAddr::new(config.identd_address, config.identd_port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            BridgeError::unavailable(format!("identd cannot listen on {addr}: {e}"))
        })?;
        if let Ok(local) = listener.local_addr() {
            tracing::info!(%local, "identd listening");
        }
        ctx.spawner
            .spawn("identd", identd::serve_on(listener, registry.clone()));
        Ok(())
    }
}

/// Shorthand used across the crate.
pub(crate) fn unavailable(server: &str) -> BridgeError {
    BridgeError::unavailable(format!("The connection to {server} is closed"))
}

/// Seconds as a duration.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An event sink for tests and probes.
pub fn sink_pair(
    user: &UserId,
    cap: usize,
) -> (
    EventSink,
    tokio::sync::mpsc::Receiver<ferry_bridge::Envelope>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    (EventSink::new(user.clone(), tx), rx)
}
