//! Registration and unregistration: XEP-0077 in-band registration, and the
//! flows the three front-ends (XEP-0077, the `jabber:iq:register` command,
//! the chat fallback) share.
//!
//! Registering validates the values against the bridge's form, then logs in
//! for real ([`Network::login`]); only then is the account stored, the user
//! welcomed, subscribed to (XEP-0100) and their session started.
//! Unregistering closes the session, undoes what the network needs undone,
//! deletes everything stored for the user and removes the gateway and its
//! contacts from their roster.
//!
//! [`Network::login`]: ferry_bridge::Network::login

use ferry_bridge::{
    Account, BridgeError, CloseReason, ErrorKind, FieldKind, FormError, FormValues, LoginError,
    UserId,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::router::Gateway;
use crate::store::KvScope;
use crate::xmpp::forms::{self, Submitted};
use crate::xmpp::xml::{self, ns};

/// Key of the user's registration values (without secrets) in their
/// key/value space.
const REGISTRATION_KEY: &str = "ferry/registration";

/// Why a registration failed.
#[derive(Debug)]
pub enum RegisterError {
    /// The user may not use the gateway.
    NotAllowed(String),
    /// The values do not fit the form.
    Form(FormError),
    /// The network refused the login.
    Login(LoginError),
    /// The account could not be stored.
    Store(String),
}

impl RegisterError {
    /// The stanza error for XEP-0077.
    pub fn stanza_error(&self) -> StanzaError {
        match self {
            RegisterError::NotAllowed(t) => {
                xml::error(ErrorType::Cancel, DefinedCondition::NotAllowed, t)
            }
            RegisterError::Form(e) => xml::error(
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                &e.to_string(),
            ),
            RegisterError::Login(e) => {
                let (t, c) = match e {
                    LoginError::BadCredentials(_) | LoginError::Expired(_) => {
                        (ErrorType::Auth, DefinedCondition::NotAuthorized)
                    }
                    LoginError::InvalidField { .. } => {
                        (ErrorType::Modify, DefinedCondition::NotAcceptable)
                    }
                    LoginError::Unreachable(_) => {
                        (ErrorType::Wait, DefinedCondition::RemoteServerTimeout)
                    }
                    LoginError::Other(b) => xml::condition_of(b.kind),
                };
                xml::error(t, c, &e.to_string())
            }
            RegisterError::Store(t) => xml::error(
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
                &format!("The account could not be saved: {t}"),
            ),
        }
    }

    /// The error for command notes.
    pub fn bridge_error(&self) -> BridgeError {
        let kind = match self {
            RegisterError::NotAllowed(_) => ErrorKind::NotAllowed,
            RegisterError::Form(_) => ErrorKind::BadRequest,
            RegisterError::Login(LoginError::BadCredentials(_) | LoginError::Expired(_)) => {
                ErrorKind::NotAuthorized
            }
            RegisterError::Login(LoginError::Unreachable(_)) => ErrorKind::Unavailable,
            RegisterError::Login(_) => ErrorKind::BadRequest,
            RegisterError::Store(_) => ErrorKind::Internal,
        };
        BridgeError::new(kind, self.to_string())
    }
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::NotAllowed(t) => f.write_str(t),
            RegisterError::Form(e) => write!(f, "{e}"),
            RegisterError::Login(e) => write!(f, "Login failed: {e}"),
            RegisterError::Store(t) => write!(f, "The account could not be saved: {t}"),
        }
    }
}

impl Gateway {
    /// The message for users the access policy refuses.
    pub fn not_allowed_text(&self, user: &UserId) -> String {
        format!(
            "{user} is not allowed to register with this gateway (the operator's [access] users list does not include it)."
        )
    }

    /// The registration values stored for a user (secrets left out), when
    /// registered.
    pub fn registration_values(&self, user: &UserId) -> Option<FormValues> {
        if !self.is_registered(user) {
            return None;
        }
        let mut v = FormValues::new();
        let raw = self
            .store
            .kv(KvScope::User(user.clone()))
            .get(REGISTRATION_KEY)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Ok(map) =
            serde_json::from_slice::<std::collections::BTreeMap<String, Vec<String>>>(&raw)
        {
            for (k, vals) in map {
                v.set(k, vals);
            }
        }
        Some(v)
    }

    /// Handles `jabber:iq:register` on the gateway JID.
    pub fn on_register_iq(&mut self, from: &Jid, to: &Jid, id: &str, q: &Element, set: bool) {
        let user = UserId::new(from.to_bare().to_string());
        if !self.allowed(&user) {
            let err = xml::error(
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                &self.not_allowed_text(&user),
            );
            return self.send_error(xml::iq_error(to, from, id, err));
        }
        let form = self.network.registration();
        if !set {
            let current = self.registration_values(&user);
            let el = forms::register_query(&form, current.as_ref());
            return self.send(xml::iq_result(to, from, id, Some(el)));
        }
        let (from, to, id) = (from.clone(), to.clone(), id.to_owned());
        if q.has_child("remove", ns::REGISTER) {
            if !self.is_registered(&user) {
                let err = xml::error(
                    ErrorType::Auth,
                    DefinedCondition::RegistrationRequired,
                    "You are not registered, so there is nothing to remove.",
                );
                return self.send_error(xml::iq_error(&to, &from, &id, err));
            }
            // XEP-0077 §3.2: answer, then cancel the subscription.
            self.send(xml::iq_result(&to, &from, &id, None));
            self.unregister_user(&user, false, |_, _| {});
            return;
        }
        let values = match forms::register_values(q, &form) {
            Ok(Submitted::Values(v)) => v,
            Ok(Submitted::Cancel) => {
                return self.send(xml::iq_result(&to, &from, &id, None));
            }
            Err(e) => {
                let err = xml::error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    &e.to_string(),
                );
                return self.send_error(xml::iq_error(&to, &from, &id, err));
            }
        };
        self.register_user(&user, values, move |gw, r| match r {
            Ok(_) => gw.send(xml::iq_result(&to, &from, &id, None)),
            Err(e) => gw.send_error(xml::iq_error(&to, &from, &id, e.stanza_error())),
        });
    }

    /// Registers (or re-registers) a user: validates, logs in, stores,
    /// welcomes, subscribes, starts the session. `done` gets the account.
    pub fn register_user(
        &mut self,
        user: &UserId,
        values: FormValues,
        done: impl FnOnce(&mut Gateway, Result<Account, RegisterError>) + Send + 'static,
    ) {
        if !self.allowed(user) {
            let t = self.not_allowed_text(user);
            return done(self, Err(RegisterError::NotAllowed(t)));
        }
        let form = self.network.registration();
        let values = match form.validate(&values) {
            Ok(v) => v,
            Err(e) => return done(self, Err(RegisterError::Form(e))),
        };
        // What is kept to show as current values: everything but secrets.
        let mut shown = std::collections::BTreeMap::new();
        for f in &form.fields {
            if f.kind != FieldKind::TextPrivate
                && let Some(v) = values.all(&f.var)
            {
                shown.insert(f.var.clone(), v.to_vec());
            }
        }
        let network = self.network.clone();
        let u = user.clone();
        self.spawn_then(async move { network.login(&u, &values).await }, {
            let user = user.clone();
            move |gw: &mut Gateway, r: Result<Account, LoginError>| {
                let account = match r {
                    Ok(a) => a,
                    Err(e) => return done(gw, Err(RegisterError::Login(e))),
                };
                if let Err(e) = gw.store.register(&user, &account) {
                    return done(gw, Err(RegisterError::Store(e.to_string())));
                }
                if let Ok(raw) = serde_json::to_vec(&shown) {
                    let _ = gw
                        .store
                        .kv(KvScope::User(user.clone()))
                        .put(REGISTRATION_KEY, &raw);
                }
                let again = !gw.registered.insert(user.clone());
                tracing::info!(bridge = %gw.settings.name, user = %user, again, "user registered");
                gw.after_registration(&user, &account, again);
                done(gw, Ok(account));
            }
        });
    }

    fn after_registration(&mut self, user: &UserId, account: &Account, again: bool) {
        let text = if again {
            format!(
                "Your registration is updated: you are registered with {} as {}. Reconnecting with it.",
                self.info.name, account.name
            )
        } else {
            format!(
                "Welcome! You are registered with {} as {}. Send 'help' here to list the commands; write to contacts at {} addresses.",
                self.info.name,
                account.name,
                self.jids.domain()
            )
        };
        self.notify(user, &text);
        self.subscribe_to_user(user);
        // A new account means a new session.
        self.close_session(user, CloseReason::Restart, {
            let user = user.clone();
            move |gw| {
                gw.ensure_session(&user);
                gw.send_gateway_presence(&user);
            }
        });
    }

    /// XEP-0100 §4.1.1: the gateway asks for the user's presence.
    pub fn subscribe_to_user(&mut self, user: &UserId) {
        let Some(j) = Self::user_jid(user) else {
            return;
        };
        let item = self.gateway_roster_item(user);
        if item.from_user {
            return;
        }
        let p = Presence::new(PresenceType::Subscribe)
            .with_from(self.gw_jid())
            .with_to(Jid::from(j));
        self.send(p.into());
    }

    /// Unregisters a user (themself, or an admin for them).
    pub fn unregister_user(
        &mut self,
        user: &UserId,
        by_admin: bool,
        done: impl FnOnce(&mut Gateway, Result<(), String>) + Send + 'static,
    ) {
        let account = self.store.account(user).ok().flatten();
        let roster = self.store.roster(user).unwrap_or_default();
        let network = self.network.clone();
        let u = user.clone();
        let reason = CloseReason::Unregistered;
        self.close_session(user, reason, move |gw| {
            gw.spawn_then(
                async move {
                    let r = network.unregister(&u, account.as_ref()).await;
                    (u, r)
                },
                move |gw: &mut Gateway, (user, r): (UserId, Result<(), BridgeError>)| {
                    let warning = r.err().map(|e| e.message);
                    gw.finish_unregister(&user, roster, warning, by_admin);
                    done(gw, Ok(()));
                },
            );
        });
    }

    fn finish_unregister(
        &mut self,
        user: &UserId,
        roster: Vec<crate::store::RosterItem>,
        warning: Option<String>,
        by_admin: bool,
    ) {
        if let Some(w) = &warning {
            tracing::warn!(user = %user, warning = %w, "network-side unregistration failed");
        }
        self.rooms_forget_user(user, "You unregistered from the gateway.");
        self.remove_all_contacts(user, roster);
        if let Err(e) = self.store.unregister(user) {
            tracing::warn!(user = %user, error = %e, "deleting the user's data failed");
        }
        let dir = super::router::user_dir(&self.settings.data_dir, user);
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(dir);
        });
        self.registered.remove(user);
        self.adhoc.forget_user(user);
        let text = match (&warning, by_admin) {
            (Some(w), _) => format!(
                "You are unregistered from {}. Note: the network side could not be undone: {w}",
                self.info.name
            ),
            (None, true) => format!(
                "An administrator removed your registration with {}.",
                self.info.name
            ),
            (None, false) => format!("You are unregistered from {}. Goodbye!", self.info.name),
        };
        self.notify(user, &text);
        if let Some(j) = Self::user_jid(user) {
            let to = Jid::from(j);
            for t in [
                PresenceType::Unavailable,
                PresenceType::Unsubscribed,
                PresenceType::Unsubscribe,
            ] {
                let p = Presence::new(t)
                    .with_from(self.gw_jid())
                    .with_to(to.clone());
                self.send(p.into());
            }
        }
        self.users.remove(user);
        tracing::info!(user = %user, "user unregistered");
    }
}
