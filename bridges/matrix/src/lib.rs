//! Ferry's Matrix bridge: each registered XMPP user logs in to their own
//! Matrix account (ferry becomes one of their devices, end-to-end
//! encryption included) and sees it from any XMPP client: direct chats as
//! 1:1 chats with `alice\3aexample.org@GW`, rooms as multi-user chats
//! `!id\3aserver@GW` or `#alias\3aserver@GW`.
//!
//! The crate follows the bridge contract of `ferry-bridge`: [`Config`] is
//! the `[matrix]` section, [`build`] makes the [`Network`]; everything
//! Matrix-specific stays here. See `docs/matrix.md` for the user's view.
//!
//! Modules: [`config`] (settings), [`address`] (ids ↔ JID local parts),
//! [`account`] (what is stored per user), [`login`] (registration),
//! [`client`] (building matrix-sdk clients, errors), [`session`] (a user's
//! session), [`sync`] (the sync loop, nothing lost or doubled),
//! [`incoming`] / [`outgoing`] (the two directions), [`rooms`]
//! (nicknames, power levels), [`html`] (formatted bodies), [`media`]
//! (files), [`commands`] (verification, recovery, room commands), [`kv`]
//! (durable per-user state), [`ctx`] (what a session's tasks share).

pub mod account;
pub mod address;
pub mod client;
pub mod commands;
pub mod config;
pub mod ctx;
pub mod html;
pub mod incoming;
pub mod kv;
pub mod login;
pub mod media;
pub mod outgoing;
pub mod rooms;
pub mod session;
pub mod stores;
pub mod sync;

use std::sync::{Arc, OnceLock};

use ferry_bridge::{
    Account, AddressRules, BridgeError, BridgeSetup, Capabilities, CommandSpec, Feature, Field,
    Form, FormValues, Limits, LoginError, Network, NetworkInfo, Registration, Session,
    SessionContext, SessionPolicy, UserId,
};

pub use config::Config;

use crate::account::StoredSession;
use crate::address::MatrixAddressRules;

/// The Matrix bridge.
pub struct MatrixNetwork {
    config: Arc<Config>,
    /// The HTTP client every session shares, built for the first login or
    /// session: building it loads the TLS root store, which a gateway with
    /// no Matrix user never needs.
    http: OnceLock<matrix_sdk::reqwest::Client>,
    info: NetworkInfo,
    rules: MatrixAddressRules,
}

/// Builds the Matrix bridge from its configuration section.
pub fn build(config: Config, setup: BridgeSetup) -> Result<Arc<dyn Network>, String> {
    let config = Config {
        hosts: Arc::new(setup.hosts),
        ..config
    };
    Ok(Arc::new(MatrixNetwork::new(config)?))
}

impl MatrixNetwork {
    /// A bridge with these settings (checked).
    pub fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(Self {
            config: Arc::new(config),
            http: OnceLock::new(),
            info: NetworkInfo {
                name: "Matrix".into(),
                gateway_type: "matrix".into(),
                registration: Registration::Required,
                sessions: SessionPolicy::AlwaysOn,
                capabilities: Capabilities::of(&[
                    Feature::Rooms,
                    Feature::Corrections,
                    Feature::Retractions,
                    Feature::Moderation,
                    Feature::Reactions,
                    Feature::Replies,
                    Feature::Threads,
                    Feature::ChatStates,
                    Feature::DisplayedMarkers,
                    Feature::Attachments,
                    Feature::Formatting,
                    Feature::SubjectChange,
                    Feature::NickChange,
                    Feature::Invites,
                    Feature::ModerationRoles,
                    Feature::History,
                    Feature::RoomList,
                    Feature::ContactPresence,
                    Feature::ContactList,
                ]),
                limits: Limits::default(),
            },
            rules: MatrixAddressRules,
        })
    }

    /// The shared HTTP client.
    fn http(&self) -> Result<&matrix_sdk::reqwest::Client, BridgeError> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let http = client::shared_http(&self.config).map_err(BridgeError::internal)?;
        Ok(self.http.get_or_init(|| http))
    }

    /// The bridge's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

#[async_trait::async_trait]
impl Network for MatrixNetwork {
    fn info(&self) -> &NetworkInfo {
        &self.info
    }

    fn address(&self) -> &dyn AddressRules {
        &self.rules
    }

    fn registration(&self) -> Form {
        login::registration_form(&self.config)
    }

    fn preferences(&self) -> Vec<Field> {
        session::preference_fields()
    }

    fn commands(&self) -> Vec<CommandSpec> {
        commands::specs()
    }

    async fn login(&self, _user: &UserId, values: &FormValues) -> Result<Account, LoginError> {
        let creds = login::Credentials::from_form(&self.config, values)?;
        let stored = login::password_login(
            &self.config,
            self.http().map_err(LoginError::Other)?,
            &creds,
        )
        .await?;
        Ok(stored.to_account())
    }

    async fn connect(&self, ctx: SessionContext) -> Result<Box<dyn Session>, LoginError> {
        let http = self.http().map_err(LoginError::Other)?.clone();
        session::connect(self.config.clone(), http, ctx).await
    }

    async fn unregister(
        &self,
        _user: &UserId,
        account: Option<&Account>,
    ) -> Result<(), BridgeError> {
        let Some(account) = account else {
            return Ok(());
        };
        let stored = StoredSession::from_account(account)
            .map_err(|e| BridgeError::internal(e.to_string()))?;
        login::logout(&self.config, self.http()?, &stored).await
    }
}
