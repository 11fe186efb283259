//! The test network as a Ferry bridge: its description, registration and
//! login against its own accounts, and the factory of sessions.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_bridge::{
    Account, AddressRules, BridgeContext, BridgeError, BridgeSetup, CommandSpec, ErrorKind, Field,
    Form, FormValues, Limits, LoginError, Network, NetworkInfo, Registration, Secret, Session,
    SessionContext, SessionPolicy, UserId, WebhookRequest, WebhookResponse,
};

use crate::address::TestAddressRules;
use crate::config::Config;
use crate::session::TestSession;
use crate::state::Shared;

/// The test network (one per gateway).
#[derive(Debug)]
pub struct TestNetwork {
    shared: Arc<Shared>,
    info: NetworkInfo,
    rules: TestAddressRules,
}

impl TestNetwork {
    /// Creates the network from its configuration. Fails with a readable
    /// message on a bad account name or an unknown capability.
    pub fn new(config: Config, setup: BridgeSetup) -> Result<Self, String> {
        let capabilities = config.capabilities()?;
        tracing::debug!(domain = %setup.domain, accounts = config.accounts.len(), "test network ready");
        Ok(TestNetwork {
            shared: Arc::new(Shared::new(
                config.accounts,
                capabilities,
                Duration::from_millis(config.echo_delay_ms),
            )),
            info: NetworkInfo {
                name: "Test network".into(),
                gateway_type: "test".into(),
                registration: Registration::Required,
                sessions: if config.always_on {
                    SessionPolicy::AlwaysOn
                } else {
                    SessionPolicy::OnDemand
                },
                capabilities,
                limits: Limits {
                    message_bytes: config.max_message_bytes,
                    ..Limits::default()
                },
            },
            rules: TestAddressRules,
        })
    }
}

/// The registration form.
pub(crate) fn registration_form() -> Form {
    Form::new("Register with the test network")
        .instructions("Enter the user name and password of your test network account.")
        .field(Field::text("username", "User name").required())
        .field(Field::private("password", "Password").required())
}

#[async_trait]
impl Network for TestNetwork {
    fn info(&self) -> &NetworkInfo {
        &self.info
    }

    fn address(&self) -> &dyn AddressRules {
        &self.rules
    }

    fn registration(&self) -> Form {
        registration_form()
    }

    fn preferences(&self) -> Vec<Field> {
        vec![
            Field::text("echo_prefix", "Prefix of the echo bot's answers")
                .desc("Text the bot puts before what it repeats (empty: nothing)."),
        ]
    }

    fn commands(&self) -> Vec<CommandSpec> {
        crate::commands::specs()
    }

    async fn login(&self, user: &UserId, values: &FormValues) -> Result<Account, LoginError> {
        let username = values
            .get("username")
            .ok_or_else(|| LoginError::InvalidField {
                field: "username".into(),
                message: "a user name is required".into(),
            })?
            .trim()
            .to_ascii_lowercase();
        let password = values
            .get("password")
            .ok_or_else(|| LoginError::InvalidField {
                field: "password".into(),
                message: "a password is required".into(),
            })?;
        let known = self.shared.lock().accounts.get(&username).cloned();
        match known {
            Some(p) if p == password => {
                // The bridge-wide part finds the user by account name.
                if let Some(ctx) = self.shared.bridge()
                    && let Err(e) = ctx.users.set_owner(&username, Some(user)).await
                {
                    tracing::warn!(error = %e, "cannot record the owner of {username}");
                }
                Ok(Account {
                    name: username,
                    secret: Secret(password.as_bytes().to_vec()),
                })
            }
            _ => Err(LoginError::BadCredentials(
                "unknown user name or wrong password".into(),
            )),
        }
    }

    async fn connect(&self, ctx: SessionContext) -> Result<Box<dyn Session>, LoginError> {
        let account = ctx.account.clone().ok_or_else(|| {
            LoginError::Other(BridgeError::new(
                ErrorKind::NotAuthorized,
                "register with the test network first",
            ))
        })?;
        let current = self.shared.lock().accounts.get(&account.name).cloned();
        match current {
            None => {
                return Err(LoginError::Expired(format!(
                    "the test network has no account {} any more",
                    account.name
                )));
            }
            Some(p) if p.as_bytes() != account.secret.0.as_slice() => {
                return Err(LoginError::Expired(format!(
                    "the password of {} changed: register again",
                    account.name
                )));
            }
            Some(_) => {}
        }
        Ok(Box::new(TestSession::start(
            self.shared.clone(),
            account.name,
            ctx,
        )))
    }

    async fn webhook(&self, request: WebhookRequest) -> WebhookResponse {
        match request.path.as_str() {
            "/deliver" | "/fail" => crate::webhook::route(&self.shared, request).await,
            _ => crate::webhook::handle(&self.shared, request),
        }
    }

    /// The bridge-wide part: the context the `/deliver` and `/fail`
    /// endpoints route through.
    async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError> {
        if let Ok(mut b) = self.shared.bridge.lock() {
            *b = Some(ctx);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::network;
    use ferry_bridge::Feature;

    #[tokio::test]
    async fn login_checks_the_network_accounts() {
        let net = network(Config::default());
        let user = UserId::new("alice@localhost");
        let ok = net
            .login(
                &user,
                &FormValues::new()
                    .with("username", "Alice")
                    .with("password", "alicepw"),
            )
            .await
            .unwrap();
        assert_eq!(ok.name, "alice");
        assert_eq!(ok.secret.0, b"alicepw");
        for (u, p) in [("alice", "nope"), ("mallory", "alicepw")] {
            let err = net
                .login(
                    &user,
                    &FormValues::new().with("username", u).with("password", p),
                )
                .await
                .unwrap_err();
            assert!(matches!(err, LoginError::BadCredentials(_)), "{u}: {err:?}");
        }
        let err = net
            .login(&user, &FormValues::new().with("username", "alice"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidField { ref field, .. } if field == "password"));
    }

    #[test]
    fn registration_form_has_the_two_required_fields() {
        let form = registration_form();
        let u = form.get("username").unwrap();
        let p = form.get("password").unwrap();
        assert!(u.required && p.required);
        assert_eq!(p.kind, ferry_bridge::FieldKind::TextPrivate);
        assert!(
            form.validate(&FormValues::new().with("username", "a"))
                .is_err()
        );
    }

    #[test]
    fn info_follows_the_config() {
        let net = network(Config {
            always_on: false,
            disable: vec!["reactions".into()],
            ..Config::default()
        });
        assert_eq!(net.info().sessions, SessionPolicy::OnDemand);
        assert_eq!(net.info().registration, Registration::Required);
        assert!(!net.info().capabilities.has(Feature::Reactions));
        assert!(net.info().capabilities.has(Feature::Corrections));
        assert_eq!(net.info().gateway_type, "test");
        let bad = TestNetwork::new(
            Config {
                disable: vec!["x".into()],
                ..Config::default()
            },
            crate::testkit::setup(),
        );
        assert!(bad.is_err());
    }
}
