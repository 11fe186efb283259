//! One user's Matrix session: opens their matrix-sdk client (SQLite store
//! under the user's data directory, encrypted with the passphrase from the
//! stored account), restores the login, runs the sync loop in the
//! background and executes the core's actions. Also the `re-login` command
//! and preference changes, which rebuild the client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_bridge::{
    Action, BridgeError, CloseReason, CommandCall, CommandReply, ErrorKind, Event, Field, Form,
    FormValues, LoginError, Outcome, Presence, Session, SessionContext, Spawner, UserId,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::account::StoredSession;
use crate::client::Trust;
use crate::commands;
use crate::config::Config;
use crate::ctx::Shared;
use crate::kv::Kv;
use crate::login::{self, Credentials};
use crate::outgoing;
use crate::stores::{Opener, StoreGate};
use crate::sync;

/// Preference: share keys with / accept messages from unverified devices.
pub const PREF_TRUST: &str = "trust_unverified_devices";
/// Preference: join direct chats others start.
pub const PREF_AUTO_DIRECT: &str = "auto_accept_direct_chats";

/// How long closing waits for the sync loop to finish the batch it is
/// delivering.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The preference fields of the bridge.
pub fn preference_fields() -> Vec<Field> {
    vec![
        Field::boolean(
            PREF_TRUST,
            "Trust unverified Matrix devices (encrypt to them, accept their messages)",
            true,
        ),
        Field::boolean(
            PREF_AUTO_DIRECT,
            "Accept direct chats others start with you",
            true,
        ),
    ]
}

fn trust_of(prefs: &FormValues) -> Trust {
    if prefs.bool(PREF_TRUST).unwrap_or(true) {
        Trust::Everyone
    } else {
        Trust::CrossSigned
    }
}

/// A user's session.
pub struct MatrixSession {
    shared: Arc<Shared>,
    http: matrix_sdk::reqwest::Client,
    spawner: Spawner,
    /// The client (built, paused or dropped while idle) and the login.
    gate: Option<Arc<StoreGate>>,
    sync: Option<(JoinHandle<()>, watch::Sender<bool>)>,
    trust: Trust,
    /// Set by the sync loop when the access token stopped working.
    login_required: Arc<AtomicBool>,
}

/// Starts a session.
pub async fn connect(
    config: Arc<Config>,
    http: matrix_sdk::reqwest::Client,
    ctx: SessionContext,
) -> Result<Box<dyn Session>, LoginError> {
    let account = ctx
        .account
        .as_ref()
        .ok_or_else(|| LoginError::Expired("not registered with the Matrix gateway".into()))?;
    let stored = StoredSession::from_account(account)?;
    let shared = Arc::new(Shared::new(
        config,
        ctx.user.clone(),
        ctx.events.clone(),
        Kv::new(ctx.store.clone()),
        ctx.data_dir.clone(),
    ));
    shared.load_views().await.map_err(LoginError::Other)?;
    shared.mem().auto_accept_direct = ctx.preferences.bool(PREF_AUTO_DIRECT).unwrap_or(true);
    let mut session = MatrixSession {
        shared,
        http,
        spawner: ctx.spawner.clone(),
        gate: None,
        sync: None,
        trust: trust_of(&ctx.preferences),
        login_required: Arc::new(AtomicBool::new(false)),
    };
    session.start(stored).await.map_err(LoginError::Other)?;
    Ok(Box::new(session))
}

/// Logs what the account's secret storage means, once it is known.
/// matrix-sdk asks the homeserver for `m.secret_storage.default_key` at
/// every start and logs the 404 of an account that has none as an ERROR
/// (the core's logging holds that back): it is normal for a fresh account.
async fn say_recovery_state(user: &UserId, client: &matrix_sdk::Client) {
    use futures::StreamExt as _;
    use matrix_sdk::encryption::recovery::RecoveryState;
    let recovery = client.encryption().recovery();
    let states = recovery.state_stream();
    futures::pin_mut!(states);
    let known = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Some(s) = states.next().await {
            if s != RecoveryState::Unknown {
                return Some(s);
            }
        }
        None
    })
    .await;
    match known {
        Ok(Some(RecoveryState::Disabled)) => tracing::info!(
            user = %user,
            "the Matrix account has no secret storage (no m.secret_storage.default_key): \
             normal until one of its clients sets up recovery; then the \"recovery-key\" \
             command lets ferry read older encrypted messages"
        ),
        Ok(Some(RecoveryState::Incomplete)) => tracing::info!(
            user = %user,
            "the Matrix account has secret storage but ferry lacks its secrets: the \
             \"recovery-key\" or \"verify\" command gives them"
        ),
        Ok(Some(s)) => tracing::debug!(user = %user, state = ?s, "Matrix secret storage"),
        _ => tracing::debug!(user = %user, "the state of the Matrix secret storage is not known"),
    }
}

fn store_dir(data_dir: &Path, device: &str) -> PathBuf {
    let safe: String = device
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    data_dir.join(format!("store-{safe}"))
}

impl MatrixSession {
    /// Opens the client for a stored login and starts syncing.
    async fn start(&mut self, stored: StoredSession) -> Result<(), BridgeError> {
        self.stop().await;
        let config = self.shared.config.clone();
        let dir = store_dir(&self.shared.data_dir, stored.device_id.as_str());
        let fresh = !dir.exists();
        std::fs::create_dir_all(&dir)
            .map_err(|e| BridgeError::internal(format!("cannot create {}: {e}", dir.display())))?;
        let opener = Opener {
            config: config.clone(),
            http: self.http.clone(),
            account: stored,
            dir,
            trust: self.trust,
        };
        let client = opener.open().await?;
        remove_other_stores(&self.shared.data_dir, &opener.dir);
        let gate = StoreGate::new(opener, client, self.shared.clone(), config.store_idle());
        self.login_required.store(false, Ordering::SeqCst);
        let flag = self.login_required.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let sync_gate = gate.clone();
        let task = self.spawner.spawn("matrix-sync", async move {
            let exit = sync::run(sync_gate, fresh, stop_rx).await;
            if exit == sync::Exit::LoginRequired {
                flag.store(true, Ordering::SeqCst);
            }
        });
        self.sync = Some((task, stop_tx));
        // Holds the client until the first sync says what the secret
        // storage is (or two minutes), without counting as activity.
        let recovery_gate = gate.clone();
        self.spawner.spawn("matrix-recovery-state", async move {
            if let Ok(open) = recovery_gate.hold().await {
                say_recovery_state(&open.shared.user, &open.client).await;
                open.quiet();
            }
        });
        self.gate = Some(gate);
        Ok(())
    }

    /// Stops the sync loop between two batches (so a delivered batch always
    /// has its position saved), aborting it if it does not stop in time.
    async fn stop(&mut self) {
        if let Some((mut task, stop)) = self.sync.take() {
            let _ = stop.send(true);
            if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
                tracing::warn!(user = %self.shared.user, "the Matrix sync did not stop in time");
                task.abort();
            }
        }
    }

    fn gate(&self) -> Result<Arc<StoreGate>, BridgeError> {
        if self.login_required.load(Ordering::SeqCst) {
            return Err(BridgeError::new(
                ErrorKind::NotAuthorized,
                "Matrix: the login stopped working; run the \"re-login\" command",
            ));
        }
        self.gate
            .clone()
            .ok_or_else(|| BridgeError::unavailable("Matrix: not connected"))
    }

    async fn relogin(&mut self, call: CommandCall) -> Result<Outcome, BridgeError> {
        let Some(current) = self.gate.as_ref().map(|g| g.account().clone()) else {
            return Err(BridgeError::unavailable("Matrix: no stored login to renew"));
        };
        if call.stage.is_none() {
            return Ok(Outcome::Command(CommandReply::Form {
                form: Form::new(format!("Log in to Matrix again as {}", current.user_id))
                    .instructions("Your password is used once and never stored.")
                    .field(Field::private(login::PASSWORD, "Password").required()),
                stage: "login".into(),
                last: true,
            }));
        }
        let password = call
            .values
            .get(login::PASSWORD)
            .ok_or_else(|| BridgeError::bad_request("the password is required"))?
            .to_owned();
        let creds = Credentials {
            homeserver: current.homeserver.clone(),
            username: current.user_id.to_string(),
            password,
            device_name: self.shared.config.device_name.clone(),
            device_id: None,
        };
        let mut fresh = login::password_login(&self.shared.config, &self.http, &creds)
            .await
            .map_err(|e| match e {
                LoginError::BadCredentials(m) => BridgeError::new(ErrorKind::NotAuthorized, m),
                LoginError::Unreachable(m) => BridgeError::unavailable(m),
                LoginError::InvalidField { message, .. } => BridgeError::bad_request(message),
                LoginError::Expired(m) => BridgeError::new(ErrorKind::NotAuthorized, m),
                LoginError::Other(b) => b,
            })?;
        if fresh.user_id != current.user_id {
            return Err(BridgeError::bad_request(format!(
                "that password logged in as {}, not {}",
                fresh.user_id, current.user_id
            )));
        }
        fresh.homeserver = current.homeserver.clone();
        self.start(fresh.clone()).await?;
        self.shared
            .emit(Event::AccountUpdated(fresh.to_account()))
            .await;
        Ok(Outcome::Command(CommandReply::done(format!(
            "Logged in again as {} (new device {}).",
            fresh.user_id, fresh.device_id
        ))))
    }

    async fn preferences(&mut self, values: FormValues) -> Result<Outcome, BridgeError> {
        self.shared.mem().auto_accept_direct = values.bool(PREF_AUTO_DIRECT).unwrap_or(true);
        let trust = trust_of(&values);
        if trust != self.trust {
            self.trust = trust;
            if let Some(account) = self.gate.as_ref().map(|g| g.account().clone()) {
                // The trust settings are part of the client: rebuild it.
                self.gate = None;
                self.start(account).await?;
            }
        }
        Ok(Outcome::Done)
    }
}

/// Removes the stores of devices ferry no longer uses.
fn remove_other_stores(data_dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_store = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("store-"));
        if is_store
            && path != keep
            && let Err(e) = std::fs::remove_dir_all(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an old Matrix store");
        }
    }
}

#[async_trait::async_trait]
impl Session for MatrixSession {
    async fn act(&mut self, action: Action) -> Result<Outcome, BridgeError> {
        match action {
            Action::Command(call) if call.node == commands::RELOGIN => {
                return self.relogin(call).await;
            }
            Action::PreferencesChanged(values) => return self.preferences(values).await,
            _ => {}
        }
        let gate = self.gate()?;
        let open = gate.hold().await?;
        let ctx = &*open;
        match action {
            Action::SendMessage(msg) => outgoing::send_message(ctx, msg).await,
            Action::Edit { message, replaces } => outgoing::edit(ctx, message, replaces).await,
            Action::Retract {
                chat,
                target,
                moderate,
            } => outgoing::retract(ctx, &chat, &target, moderate).await,
            Action::React {
                chat,
                target,
                emojis,
            } => outgoing::react(ctx, &chat, &target, emojis).await,
            Action::ChatState { chat, state } => outgoing::chat_state(ctx, &chat, state).await,
            Action::Displayed { chat, up_to } => outgoing::displayed(ctx, &chat, &up_to).await,
            Action::JoinRoom { room, .. } => {
                let task_gate = gate.clone();
                self.spawner.spawn("matrix-join", async move {
                    let event = match task_gate.hold().await {
                        Ok(open) => outgoing::join(&open, &room).await,
                        Err(error) => Event::RoomJoinFailed { room, error },
                    };
                    task_gate.shared().emit(event).await;
                });
                Ok(Outcome::Done)
            }
            // Leaving the XMPP room only closes the view: the user stays in
            // the Matrix room (the room's "leave" command leaves it).
            Action::LeaveRoom { .. } => Ok(Outcome::Done),
            Action::SetSubject { room, subject } => {
                outgoing::set_subject(ctx, &room, &subject).await
            }
            Action::ChangeNick { room, nick } => outgoing::change_nick(ctx, &room, &nick).await,
            Action::Kick { room, nick, reason } => {
                outgoing::kick(ctx, &room, &nick, reason.as_deref()).await
            }
            Action::SetRole {
                room,
                nick,
                role,
                reason,
            } => outgoing::set_role(ctx, &room, &nick, role, reason.as_deref()).await,
            Action::SetAffiliation {
                room,
                target,
                affiliation,
                reason,
            } => {
                outgoing::set_affiliation(ctx, &room, &target, affiliation, reason.as_deref()).await
            }
            Action::Invite { room, invitee, .. } => outgoing::invite(ctx, &room, &invitee).await,
            Action::SetPresence(p) => outgoing::set_presence(ctx, &p).await,
            Action::AddContact(c) => outgoing::add_contact(ctx, &c).await,
            Action::RemoveContact(_) => Ok(Outcome::Done),
            Action::FetchHistory {
                chat,
                before,
                limit,
            } => outgoing::fetch_history(ctx, &chat, before.as_ref(), limit).await,
            Action::ListRooms { .. } => outgoing::list_rooms(ctx).await,
            Action::QueryVersion(_) => Err(BridgeError::unsupported(
                "Matrix has no software version queries",
            )),
            Action::Ping(_) => Err(BridgeError::unsupported("Matrix users cannot be pinged")),
            Action::Command(call) => commands::run(ctx, call).await.map(Outcome::Command),
            Action::PreferencesChanged(_) => Ok(Outcome::Done),
            // Not declared (Feature::Groups): the core never sends it.
            Action::OpenGroup { .. } => Err(BridgeError::unsupported(
                "Matrix group conversations are rooms: join or create one",
            )),
        }
    }

    async fn close(&mut self, reason: CloseReason) {
        self.stop().await;
        if let (CloseReason::Shutdown, Some(gate)) = (&reason, &self.gate) {
            // Show the user offline on Matrix while ferry is away; the
            // device itself stays logged in.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                let open = gate.hold().await?;
                outgoing::set_presence(&open, &Presence::offline()).await
            })
            .await;
        }
        self.gate = None;
    }
}
