//! Ferry's email bridge: an XMPP user's mailbox as chats. Every
//! correspondent is a contact `alice\40example.com@GW`; their mail arrives
//! as chat messages (IMAP IDLE, nothing lost or doubled across restarts),
//! and what the user writes goes out as mail from their own account (SMTP
//! submission), threaded so that the correspondent's mail client shows a
//! conversation.
//!
//! Modules, each owning one thing: [`config`] (the `[email]` section),
//! [`address`] (addresses as contacts), [`settings`] (servers and the
//! stored account), [`discovery`] (autoconfig, SRV, guessing), [`hosts`]
//! (the operator's host policy on every server and URL), [`tls`],
//! [`imap`] and [`smtp`] (the two protocols), [`parse`] (reading MIME),
//! [`html`] (HTML to text, sanitising), [`groups`] (group threads,
//! subjects), [`simplify`] (quotes and
//! signatures), [`dsn`] (bounces), [`compose`] (writing mail), [`state`]
//! (what is remembered per user), [`incoming`] and [`outgoing`] (the two
//! directions), [`watcher`] (the inbox task), [`login`] (registration),
//! [`prefs`] (per-user preferences), [`session`] (the bridge API session).
//! See `docs/email.md` for the user's view.

pub mod address;
pub mod compose;
pub mod config;
pub mod discovery;
pub mod dsn;
pub mod groups;
pub mod hosts;
pub mod html;
pub mod imap;
pub mod incoming;
pub mod lists;
pub mod login;
pub mod outgoing;
pub mod parse;
pub mod prefs;
pub mod session;
pub mod settings;
pub mod simplify;
pub mod smtp;
pub mod state;
pub mod tls;
pub mod watcher;

use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::{
    Account, AddressRules, BridgeSetup, Capabilities, CommandScope, CommandSpec, Feature, Field,
    Form, FormValues, HostPolicy, Limits, LoginError, Network, NetworkInfo, Registration, Session,
    SessionContext, SessionPolicy, UserId,
};

pub use config::Config;

use address::EmailAddresses;
use tls::TlsContext;

/// What every session of the bridge shares.
pub struct Shared {
    /// The `[email]` section.
    pub config: Config,
    /// TLS roots.
    pub tls: TlsContext,
    /// HTTP client (autoconfig, attachments), bound to `hosts`.
    pub http: reqwest::Client,
    /// The hosts users may make the bridge connect to.
    pub hosts: HostPolicy,
}

impl Shared {
    /// Shared state from a configuration and the operator's host policy.
    pub fn new(config: Config, hosts: HostPolicy) -> Result<Self, String> {
        config.validate()?;
        let builder = reqwest::Client::builder()
            .user_agent(format!(
                "Ferry/{} (XMPP gateway)",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(Duration::from_secs(config.connect_timeout));
        let http = hosts::http_client(&hosts, builder)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            tls: TlsContext::new(config.ca_file.as_deref()),
            http,
            hosts,
            config,
        })
    }
}

/// The email bridge.
pub struct EmailNetwork {
    info: NetworkInfo,
    shared: Arc<Shared>,
    addresses: EmailAddresses,
}

/// Builds the bridge from its configuration section.
pub fn build(config: Config, setup: BridgeSetup) -> Result<Arc<dyn Network>, String> {
    Ok(Arc::new(EmailNetwork::new(Shared::new(
        config,
        setup.hosts,
    )?)))
}

impl EmailNetwork {
    /// The bridge around shared state.
    pub fn new(shared: Shared) -> Self {
        Self {
            info: NetworkInfo {
                name: "Email".into(),
                gateway_type: "smtp".into(),
                registration: Registration::Required,
                sessions: SessionPolicy::AlwaysOn,
                capabilities: Capabilities::of(&[
                    Feature::Replies,
                    Feature::Threads,
                    Feature::Subjects,
                    Feature::DeliveryReceipts,
                    Feature::DisplayedMarkers,
                    Feature::Attachments,
                    Feature::Formatting,
                    Feature::Rooms,
                    Feature::Groups,
                ]),
                limits: Limits::default(),
            },
            shared: Arc::new(shared),
            addresses: EmailAddresses,
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

#[async_trait::async_trait]
impl Network for EmailNetwork {
    fn info(&self) -> &NetworkInfo {
        &self.info
    }

    fn address(&self) -> &dyn AddressRules {
        &self.addresses
    }

    fn registration(&self) -> Form {
        login::form()
    }

    fn preferences(&self) -> Vec<Field> {
        prefs::fields()
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![CommandSpec::new(
            session::FULL_TEXT,
            "Show the last mail whole (with quotes and signature)",
            CommandScope::Contact,
        )]
    }

    async fn login(&self, _user: &UserId, values: &FormValues) -> Result<Account, LoginError> {
        let req = login::Request::from_form(values)?;
        let stored = login::register(&self.shared, req).await?;
        Ok(stored.to_account())
    }

    async fn connect(&self, ctx: SessionContext) -> Result<Box<dyn Session>, LoginError> {
        session::connect(self.shared.clone(), ctx).await
    }
}
