//! The SMS bridge as a Ferry network: its description, registration (a
//! number from the operator's pool or assigned by an administrator, or the
//! user's own Twilio account, checked against Twilio), the bridge-wide part
//! (the backend, the outgoing queue, the SMPP bind) and the
//! `admin/assign-number` command.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_bridge::{
    Account, AddressRules, BridgeContext, BridgeError, BridgeSetup, Capabilities, CommandCall,
    CommandReply, CommandScope, CommandSpec, ErrorKind, Feature, Field, FieldKind, Form,
    FormValues, Limits, LoginError, Network, NetworkInfo, Registration, Secret, Session,
    SessionContext, SessionPolicy, UserId, WebhookRequest, WebhookResponse,
};
use tokio::sync::mpsc;

use crate::address::SmsAddressRules;
use crate::backend::kannel::Kannel;
use crate::backend::smpp::Smpp;
use crate::backend::twilio::{CheckError, Twilio};
use crate::backend::{Backend, InboundSink, OwnAccount};
use crate::config::{AccountMode, BackendKind, Config};
use crate::number::{self, Region};
use crate::outbox::Outbox;
use crate::session::SmsSession;
use crate::state::{Runtime, Shared, own_key, region_key};

/// The node of the administrators' command that gives a user a number.
pub const ASSIGN_NUMBER: &str = "admin/assign-number";

/// The SMS bridge.
pub struct SmsNetwork {
    shared: Arc<Shared>,
    info: NetworkInfo,
    rules: SmsAddressRules,
}

impl SmsNetwork {
    /// Creates the bridge from its configuration (checked; nothing is
    /// connected before `start`).
    pub fn new(config: Config, _setup: BridgeSetup) -> Result<Self, String> {
        config.validate()?;
        let twilio = config.backend == BackendKind::Twilio;
        let mut features = vec![Feature::DeliveryReceipts, Feature::Groups, Feature::Rooms];
        if twilio {
            features.push(Feature::Attachments);
        }
        let info = NetworkInfo {
            name: "SMS".into(),
            gateway_type: "sms".into(),
            registration: Registration::Required,
            sessions: SessionPolicy::OnDemand,
            capabilities: Capabilities::of(&features),
            limits: Limits {
                // The longest text: every part full of 4-byte characters
                // (a clear error beyond; the split itself says more).
                message_bytes: Some(config.max_parts * crate::segment::UCS2_PART * 4),
                // Twilio's MMS limit.
                attachment_bytes: twilio.then_some(5 * 1024 * 1024),
                attachment_types: Vec::new(),
            },
        };
        let shared = Arc::new(Shared::new(config));
        Ok(SmsNetwork {
            rules: SmsAddressRules::new(shared.clone()),
            shared,
            info,
        })
    }

    fn config(&self) -> &Config {
        &self.shared.config
    }

    fn region_field(&self) -> Field {
        let mut f = Field::new("region", FieldKind::ListSingle)
            .label("Region")
            .desc("The country whose way of writing phone numbers you use (DE, US…): national numbers such as 0151 2345678 are read with it.");
        for r in Region::all() {
            f = f.option(r.clone(), r);
        }
        f
    }

    async fn login_inner(&self, user: &UserId, values: &FormValues) -> Result<Account, LoginError> {
        let rt = self.shared.runtime().map_err(LoginError::Other)?;
        let region = match values.get("region") {
            Some(r) => Some(r.parse::<Region>().map_err(|e| LoginError::InvalidField {
                field: "region".into(),
                message: e.0,
            })?),
            None => None,
        };
        let store = |r: Result<(), ferry_bridge::StoreError>| {
            r.map_err(|e| LoginError::Other(BridgeError::internal(e.to_string())))
        };
        match region {
            Some(r) => store(rt.ctx.store.put(&region_key(user), r.code().as_bytes()))?,
            None => store(rt.ctx.store.delete(&region_key(user)))?,
        }
        let users = &rt.ctx.users;
        let owner_err =
            |e: ferry_bridge::StoreError| LoginError::Other(BridgeError::internal(e.to_string()));
        match self.config().accounts {
            AccountMode::Own => {
                let field = |f: &str| {
                    values.get(f).map(|v| v.trim().to_owned()).ok_or_else(|| {
                        LoginError::InvalidField {
                            field: f.into(),
                            message: format!("{f} is required"),
                        }
                    })
                };
                let number =
                    number::normalise(&field("number")?, region.or(self.config().region()))
                        .map_err(|e| LoginError::InvalidField {
                            field: "number".into(),
                            message: e.0,
                        })?;
                let account = OwnAccount {
                    account_sid: field("account_sid")?,
                    auth_token: field("auth_token")?,
                    number: number.to_string(),
                };
                let twilio = rt.twilio.clone().ok_or_else(|| {
                    LoginError::Other(BridgeError::unsupported(
                        "own accounts need the Twilio backend",
                    ))
                })?;
                twilio.check_account(&account).await.map_err(|e| match e {
                    CheckError::Refused(m) => LoginError::BadCredentials(m),
                    CheckError::Unreachable(m) => LoginError::Unreachable(m),
                })?;
                if let Some(other) = users
                    .owner(account.number.as_str())
                    .await
                    .map_err(owner_err)?
                    && &other != user
                {
                    return Err(LoginError::InvalidField {
                        field: "number".into(),
                        message: format!(
                            "{} is already registered by another user",
                            account.number
                        ),
                    });
                }
                for old in users.owned_by(user).await.map_err(owner_err)? {
                    users.set_owner(&old, None).await.map_err(owner_err)?;
                }
                users
                    .set_owner(&account.number, Some(user))
                    .await
                    .map_err(owner_err)?;
                let raw = serde_json::to_vec(&account)
                    .map_err(|e| LoginError::Other(BridgeError::internal(e.to_string())))?;
                store(rt.ctx.store.put_sealed(&own_key(user.as_str()), &raw))?;
                Ok(Account {
                    name: account.number.clone(),
                    secret: Secret(raw),
                })
            }
            AccountMode::Operator => {
                let mut owned = users.owned_by(user).await.map_err(owner_err)?;
                if owned.is_empty() {
                    for n in &self.config().number_pool {
                        if users.owner(n).await.map_err(owner_err)?.is_none() {
                            users.set_owner(n, Some(user)).await.map_err(owner_err)?;
                            tracing::info!(%user, number = %n, "SMS number claimed from the pool");
                            owned.push(n.clone());
                            break;
                        }
                    }
                }
                Ok(Account {
                    name: owned
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "no number yet (an administrator assigns one)".into()),
                    secret: Secret::default(),
                })
            }
        }
    }

    async fn assign(
        &self,
        ctx: &BridgeContext,
        call: CommandCall,
    ) -> Result<CommandReply, BridgeError> {
        if !call.admin {
            return Err(BridgeError::new(
                ErrorKind::NotAllowed,
                "only administrators assign numbers",
            ));
        }
        let form = Form::new("Assign a phone number")
            .instructions("Texts to the number reach this user, and the user's texts go out from it. An empty JID takes the number back.")
            .field(Field::new("jid", FieldKind::JidSingle).label("User (bare JID)"))
            .field(Field::text("number", "Number (E.164, +15551234567)").required());
        if call.stage.is_none() {
            return Ok(CommandReply::Form {
                form,
                stage: "assign".into(),
                last: true,
            });
        }
        let values = form
            .validate(&call.values)
            .map_err(|e| BridgeError::bad_request(e.to_string()))?;
        let raw = values.get("number").unwrap_or_default();
        let number = number::parse_e164(raw).map_err(|e| BridgeError::bad_request(e.0))?;
        let owner_err = |e: ferry_bridge::StoreError| BridgeError::internal(e.to_string());
        let Some(jid) = values.get("jid").map(str::trim).filter(|j| !j.is_empty()) else {
            ctx.users
                .set_owner(number.as_str(), None)
                .await
                .map_err(owner_err)?;
            tracing::info!(%number, "SMS number unassigned");
            return Ok(CommandReply::done(format!(
                "{number} belongs to nobody now."
            )));
        };
        let valid = jid.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && !d.is_empty()
                && !d.contains(['@', '/'])
                && !jid.contains(char::is_whitespace)
        });
        if !valid {
            return Err(BridgeError::bad_request(format!(
                "{jid:?} is not a bare JID such as alice@example.org"
            )));
        }
        let target = UserId::new(jid.to_lowercase());
        let before = ctx.users.owner(number.as_str()).await.map_err(owner_err)?;
        ctx.users
            .set_owner(number.as_str(), Some(&target))
            .await
            .map_err(owner_err)?;
        tracing::info!(%number, user = %target, "SMS number assigned");
        Ok(CommandReply::done(match before {
            Some(b) if b != target => format!("{number} now belongs to {target} (it was {b}'s)."),
            _ => format!("{number} now belongs to {target}."),
        }))
    }
}

#[async_trait]
impl Network for SmsNetwork {
    fn info(&self) -> &NetworkInfo {
        &self.info
    }

    fn address(&self) -> &dyn AddressRules {
        &self.rules
    }

    fn registration(&self) -> Form {
        let mut region = self.region_field();
        if let Some(r) = self.config().region() {
            region = region.value(r.code());
        }
        let form = Form::new("Register with the SMS gateway").field(region);
        match self.config().accounts {
            AccountMode::Operator => form.instructions(
                "Choose your region. Your phone number comes from the operator (from its pool, or assigned by an administrator).",
            ),
            AccountMode::Own => form
                .instructions("Enter your Twilio account and the Twilio number texts go out from. They are checked with Twilio.")
                .field(Field::text("account_sid", "Twilio Account SID").required())
                .field(Field::private("auth_token", "Twilio Auth Token").required())
                .field(Field::text("number", "Your Twilio number (E.164)").required()),
        }
    }

    fn preferences(&self) -> Vec<Field> {
        vec![self.region_field()]
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![
            CommandSpec::new(
                ASSIGN_NUMBER,
                "Assign a phone number to a user",
                CommandScope::Gateway,
            )
            .admin()
            .bridge_wide(),
        ]
    }

    async fn login(&self, user: &UserId, values: &FormValues) -> Result<Account, LoginError> {
        self.login_inner(user, values).await
    }

    async fn connect(&self, ctx: SessionContext) -> Result<Box<dyn Session>, LoginError> {
        if ctx.account.is_none() {
            return Err(LoginError::Other(BridgeError::new(
                ErrorKind::NotAuthorized,
                "register with the SMS gateway first",
            )));
        }
        Ok(Box::new(SmsSession::new(
            self.shared.clone(),
            ctx.user,
            ctx.events,
        )))
    }

    async fn unregister(
        &self,
        user: &UserId,
        _account: Option<&Account>,
    ) -> Result<(), BridgeError> {
        let rt = self.shared.runtime()?;
        let err = |e: ferry_bridge::StoreError| BridgeError::internal(e.to_string());
        for n in rt.ctx.users.owned_by(user).await.map_err(err)? {
            rt.ctx.users.set_owner(&n, None).await.map_err(err)?;
        }
        rt.ctx.store.delete(&own_key(user.as_str())).map_err(err)?;
        rt.ctx.store.delete(&region_key(user)).map_err(err)?;
        Ok(())
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError> {
        let config = self.config();
        let public_url = config
            .public_url
            .clone()
            .or_else(|| ctx.public_url.clone())
            .map(|u| u.trim_end_matches('/').to_owned());
        let needs_url = config.backend != BackendKind::Smpp;
        let public_url = match public_url {
            Some(u) => u,
            None if needs_url => {
                return Err(BridgeError::new(
                    ErrorKind::Unavailable,
                    "the SMS bridge needs a URL for its webhooks: set [http] listen (and public_url), or [sms] public_url",
                ));
            }
            None => String::new(),
        };
        let (sink, mut received) = InboundSink::channel(256);
        let mut twilio = None;
        let backend: Arc<dyn Backend> = match config.backend {
            BackendKind::Kannel => Arc::new(
                Kannel::new(
                    config.kannel.clone(),
                    public_url.clone(),
                    config.webhook_secret.clone().unwrap_or_default(),
                    config.max_parts,
                )
                .map_err(BridgeError::internal)?,
            ),
            BackendKind::Smpp => {
                let smpp = Arc::new(Smpp::new(config.smpp.clone(), config.max_parts));
                ctx.spawner
                    .spawn("smpp-bind", smpp.clone().run(sink.clone()));
                smpp
            }
            BackendKind::Twilio => {
                let t = Arc::new(
                    Twilio::new(config.twilio.clone(), public_url.clone(), config.max_parts)
                        .map_err(BridgeError::internal)?,
                );
                twilio = Some(t.clone());
                t
            }
        };
        let accounts: crate::outbox::Accounts = {
            let shared = Arc::downgrade(&self.shared);
            Arc::new(move |user: &str| shared.upgrade().and_then(|s| s.own_account(user)))
        };
        let outbox = Arc::new(Outbox::new(
            ctx.store.clone(),
            backend.clone(),
            accounts,
            config.retry(),
            match config.backend {
                BackendKind::Smpp => config.smpp.window,
                _ => 8,
            },
        ));
        let rt = Runtime {
            ctx: ctx.clone(),
            backend,
            twilio,
            outbox: outbox.clone(),
            public_url,
        };
        let (updates_tx, mut updates) = mpsc::channel(256);
        ctx.spawner.spawn("sms-outbox", outbox.run(updates_tx));
        {
            let rt = rt.clone();
            ctx.spawner.spawn("sms-updates", async move {
                while let Some(u) = updates.recv().await {
                    // The user's session may be restarting: try a few times.
                    for attempt in 0..5u64 {
                        match crate::inbound::deliver_update(&rt, u.clone()).await {
                            Ok(()) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, id = %u.id, "cannot tell the user what became of a text");
                                tokio::time::sleep(std::time::Duration::from_secs(1 + attempt)).await;
                            }
                        }
                    }
                }
            });
        }
        {
            let rt = rt.clone();
            ctx.spawner.spawn("sms-inbound", async move {
                while let Some((inbound, commit)) = received.recv().await {
                    let r = crate::inbound::handle(&rt, inbound).await;
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "SMS not taken from the SMSC");
                    }
                    let _ = commit.send(r.map_err(|e| e.to_string()));
                }
            });
        }
        drop(sink);
        self.shared.set_runtime(Some(rt));
        tracing::info!(backend = ?config.backend, "SMS bridge started");
        Ok(())
    }

    async fn stop(&self) {
        self.shared.set_runtime(None);
    }

    async fn command(
        &self,
        ctx: &BridgeContext,
        _user: &UserId,
        call: CommandCall,
    ) -> Result<CommandReply, BridgeError> {
        match call.node.as_str() {
            ASSIGN_NUMBER => self.assign(ctx, call).await,
            other => Err(BridgeError::not_found(format!(
                "the SMS bridge has no command {other}"
            ))),
        }
    }

    async fn webhook(&self, request: WebhookRequest) -> WebhookResponse {
        crate::webhook::handle(&self.shared, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Inbound, IncomingText};
    use crate::number::Party;
    use ferry_bridge::{Address, Event};

    fn network(pool: &[&str]) -> SmsNetwork {
        let config = Config {
            webhook_secret: Some("a-secret-of-sixteen-chars".into()),
            number_pool: pool.iter().map(|s| (*s).to_owned()).collect(),
            kannel: crate::config::KannelConfig {
                username: "ferry".into(),
                sendsms_url: "http://127.0.0.1:9/cgi-bin/sendsms".into(),
                ..Default::default()
            },
            public_url: Some("http://127.0.0.1:9/bridge/sms".into()),
            ..Config::default()
        };
        let setup = BridgeSetup {
            domain: "sms.example.org".into(),
            data_dir: std::path::PathBuf::from("/nonexistent"),
            hosts: Default::default(),
        };
        SmsNetwork::new(config, setup).expect("valid config")
    }

    fn call(stage: Option<&str>, values: FormValues, admin: bool) -> CommandCall {
        CommandCall {
            node: ASSIGN_NUMBER.into(),
            target: None,
            stage: stage.map(str::to_owned),
            values,
            admin,
        }
    }

    #[tokio::test]
    async fn numbers_come_from_the_pool_or_an_administrator_and_texts_find_their_owner() {
        let net = network(&["+15550001001"]);
        let (ctx, users, _failures) = BridgeContext::standalone("sms", "sms.example.org");
        net.start(ctx.clone()).await.expect("started");
        let alice = UserId::new("alice@example.org");
        let bob = UserId::new("bob@example.org");
        let region = FormValues::new().with("region", "DE");
        let a = net.login(&alice, &region).await.expect("alice registers");
        assert_eq!(a.name, "+15550001001");
        let b = net
            .login(&bob, &FormValues::new())
            .await
            .expect("bob registers");
        assert!(b.name.contains("no number"), "{}", b.name);
        // The user's registered region reads national numbers.
        let ctx_alice = ferry_bridge::AddressContext {
            user: Some(&alice),
            preferences: &FormValues::new(),
        };
        assert_eq!(
            net.address().from_prompt("0151 2345678", &ctx_alice),
            Ok(Address::Contact(ferry_bridge::ContactId::new(
                "+491512345678"
            )))
        );
        // Only administrators assign; a bad number is refused.
        let values = FormValues::new()
            .with("jid", "bob@example.org")
            .with("number", "+15550001002");
        assert!(
            net.command(&ctx, &bob, call(Some("assign"), values.clone(), false))
                .await
                .is_err()
        );
        assert!(matches!(
            net.command(&ctx, &bob, call(None, FormValues::new(), true))
                .await,
            Ok(CommandReply::Form { .. })
        ));
        let bad = FormValues::new()
            .with("jid", "bob@example.org")
            .with("number", "555");
        assert!(
            net.command(&ctx, &bob, call(Some("assign"), bad, true))
                .await
                .is_err()
        );
        net.command(&ctx, &bob, call(Some("assign"), values, true))
            .await
            .expect("assigned");
        assert_eq!(
            ctx.users.owner("+15550001002").await.expect("read"),
            Some(bob.clone())
        );
        // A text to bob's number reaches bob, none to a number nobody has.
        let rt = net.shared.runtime().expect("running");
        let text = |to: &str| {
            Inbound::Text(IncomingText {
                from: Party::from_backend("+15557770001"),
                to: Party::from_backend(to),
                text: "hi bob".into(),
                media: Vec::new(),
                backend_id: None,
            })
        };
        crate::inbound::handle(&rt, text("+15550001002"))
            .await
            .expect("delivered");
        assert!(matches!(
            crate::inbound::handle(&rt, text("+15550009999")).await,
            Err(crate::inbound::Refused::NoOwner(_))
        ));
        let delivered = users.delivered();
        assert!(
            matches!(
                &delivered[..],
                [(u, Event::Message(m))] if u == &bob && m.body == "hi bob"
            ),
            "{delivered:?}"
        );
        // Unregistering gives the number back to the pool.
        net.unregister(&alice, None).await.expect("unregistered");
        assert_eq!(ctx.users.owner("+15550001001").await.expect("read"), None);
    }
}
