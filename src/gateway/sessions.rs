//! The users' sessions as the gateway runs them: started on demand (and
//! restored after a restart), acted on — with the feature check, and the
//! user's events held while an action is in flight so that an event caused
//! by the action does not overtake its result —, their reports (a session
//! that ended, crashed or needs a login), and closed when idle.
//!
//! One session's own task (the actor around the bridge's `Session`) is
//! [`super::session`]; the loop that calls in here is [`super::router`].

use std::time::{Duration, Instant};

use ferry_bridge::{
    Action, BridgeError, CloseReason, ConnectionState, ErrorKind, Outcome, Registration,
    SessionPolicy, UserId,
};
use xmpp_parsers::minidom::Element;

use super::router::{Asked, Gateway, HOLD_AT_MOST, preferences_with_defaults, user_dir};
use super::session::{self, Job, Report};
use super::users::User;
use crate::metrics::BridgeMetrics;
use crate::store::KvScope;
use crate::xmpp::xml;

impl Gateway {
    /// Starts the sessions that have something to restore after a restart
    /// (they wrote [`ferry_bridge::RESUME_KEY`]).
    pub(super) fn resume_sessions(&mut self) {
        let users = match self.store.users_with_key(ferry_bridge::RESUME_KEY) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the sessions to restore");
                return;
            }
        };
        for u in users {
            if self.allowed(&u) {
                tracing::info!(user = %u, bridge = %self.settings.name, "restoring the session");
                self.ensure_session(&u);
            }
        }
    }

    /// Starts the user's session if it is not running. Returns false when
    /// it cannot run (not registered while registration is required).
    pub fn ensure_session(&mut self, user: &UserId) -> bool {
        if self.info.registration == Registration::Required && !self.is_registered(user) {
            return false;
        }
        if !self.lease_allows(user) {
            return false;
        }
        if self
            .users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .is_some_and(|s| !s.is_finished())
        {
            return true;
        }
        if self.shutdown.is_cancelled() {
            return false;
        }
        self.generation += 1;
        let generation = self.generation;
        let store = self.store.clone();
        let store2 = self.store.clone();
        let account_user = user.clone();
        let pref_user = user.clone();
        let fields = self.preference_fields();
        let data_dir = user_dir(&self.settings.data_dir, user);
        if let Err(e) = std::fs::create_dir_all(&data_dir) {
            tracing::warn!(user = %user, error = %e, "cannot create the session's data directory");
        }
        let setup = session::Setup {
            user: user.clone(),
            network: self.network.clone(),
            account: Box::new(move || store.account(&account_user).map_err(|e| e.to_string())),
            preferences: Box::new(move || {
                preferences_with_defaults(&fields, store2.preferences(&pref_user))
            }),
            kv: self.store.kv(KvScope::User(user.clone())),
            data_dir,
            events: self.events.clone(),
            reports: self.reports.clone(),
            generation,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(120),
            limits: (self.info.name.clone(), self.info.limits.clone()),
            http: self.uploader.http.clone(),
        };
        let handle = session::start(setup);
        let u = self.user_mut(user);
        u.session = Some(handle);
        u.login_required = None;
        u.connection = Some(ConnectionState::Connecting);
        self.metrics
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(user = %user, generation, "session started");
        true
    }

    /// Closes a user's session, if running; `then` runs once it is closed.
    pub fn close_session(
        &mut self,
        user: &UserId,
        reason: CloseReason,
        then: impl FnOnce(&mut Gateway) + Send + 'static,
    ) {
        let handle = self.users.get_mut(user).and_then(|u| u.session.take());
        match handle {
            Some(h) => {
                self.metrics
                    .sessions
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                self.spawn_then(h.close(reason, Duration::from_secs(10)), move |gw, ()| {
                    then(gw)
                });
            }
            None => then(self),
        }
    }

    /// Runs an action in the user's session (starting it if needed) and
    /// `then` with the result. Fails right away, through `then`, when the
    /// session cannot run.
    pub fn act(
        &mut self,
        user: &UserId,
        action: Action,
        then: impl FnOnce(&mut Gateway, Result<Outcome, BridgeError>) + Send + 'static,
    ) {
        // The one place a capability is checked against an action: a
        // bridge never sees what it did not declare.
        if let Some(feature) = action.feature()
            && !self.info.capabilities.has(feature)
        {
            let e = BridgeError::unsupported(format!(
                "{} does not support {}.",
                self.info.name,
                feature.describe()
            ));
            then(self, Err(e));
            return;
        }
        if !self.ensure_session(user) {
            let e = if self.shutdown.is_cancelled() {
                BridgeError::unavailable(
                    "The gateway is shutting down; send this again in a moment.",
                )
            } else {
                BridgeError::new(
                    ErrorKind::NotAuthorized,
                    format!(
                        "You are not registered with the {} gateway.",
                        self.info.name
                    ),
                )
            };
            then(self, Err(e));
            return;
        }
        // While an action runs, the user's events wait: an event about
        // what the action did (a delivery, an answer referring to the sent
        // message) must not overtake its result.
        let u = self.user_mut(user);
        u.in_flight += 1;
        u.idle_since = None;
        let u = user.clone();
        let job = Job {
            action,
            then: Box::new(move |gw: &mut Gateway, r| {
                then(gw, r);
                gw.act_finished(&u);
            }),
        };
        let sent = self
            .users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .map(|s| s.send(job));
        if let Some(Err(job)) = sent {
            let job = *job;
            (job.then)(
                self,
                Err(BridgeError::unavailable("The session is not running.")),
            );
        }
    }

    /// Runs an action for an IQ request and answers the request: `answer`
    /// turns the outcome into the result's payload (or an error); a failed
    /// action is answered with its error. The one place the pattern
    /// "act, then answer the iq" is written.
    pub fn act_answer(
        &mut self,
        user: &UserId,
        action: Action,
        asked: Asked,
        answer: impl FnOnce(&mut Gateway, Outcome) -> Result<Option<Element>, BridgeError>
        + Send
        + 'static,
    ) {
        self.act(user, action, move |gw, r| {
            match r.and_then(|o| answer(gw, o)) {
                Ok(payload) => gw.send(xml::iq_result(&asked.to, &asked.from, &asked.id, payload)),
                Err(e) => gw.send_error(xml::iq_error(
                    &asked.to,
                    &asked.from,
                    &asked.id,
                    xml::bridge_error(&e),
                )),
            }
        });
    }

    /// An action of the user finished: releases the events that waited.
    pub(super) fn act_finished(&mut self, user: &UserId) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        u.in_flight = u.in_flight.saturating_sub(1);
        self.release_events(user);
    }

    /// Handles the events held for a user while no action is in flight.
    pub(super) fn release_events(&mut self, user: &UserId) {
        loop {
            let Some(u) = self.users.get_mut(user) else {
                return;
            };
            if u.in_flight > 0 {
                return;
            }
            let Some(e) = u.held.pop_front() else {
                u.held_since = None;
                return;
            };
            self.on_event(user.clone(), e);
        }
    }

    /// Handles held events that waited [`HOLD_AT_MOST`] (the actions in
    /// flight keep running; later events are held again).
    pub(super) fn release_overdue(&mut self, user: &UserId) {
        let overdue = self
            .users
            .get(user)
            .and_then(|u| u.held_since)
            .is_some_and(|t| t.elapsed() >= HOLD_AT_MOST);
        if !overdue {
            return;
        }
        let held: Vec<_> = self
            .users
            .get_mut(user)
            .map(|u| {
                u.held_since = None;
                u.held.drain(..).collect()
            })
            .unwrap_or_default();
        for e in held {
            self.on_event(user.clone(), e);
        }
    }

    /// Forgets actions in flight whose results will never come (their
    /// session is gone, or they take far too long) and releases the events.
    pub(super) fn unhold(&mut self, user: &UserId) {
        if let Some(u) = self.users.get_mut(user) {
            u.in_flight = 0;
        }
        self.release_events(user);
    }

    /// An action whose result only matters when it fails: the failure goes
    /// to the user as a message.
    pub fn act_quiet(&mut self, user: &UserId, action: Action) {
        let u = user.clone();
        self.act(user, action, move |gw, r| {
            if let Err(e) = r
                && e.kind != ErrorKind::Unsupported
            {
                gw.notify(&u, &format!("The network refused: {}", e.message));
            }
        });
    }

    pub(super) fn on_report(&mut self, r: Report) {
        match r {
            Report::Done { then, result, .. } => {
                if let Err(e) = &result
                    && e.kind == ErrorKind::Internal
                {
                    BridgeMetrics::inc(&self.metrics.errors);
                }
                then(self, result);
            }
            Report::Up { user, generation } => {
                tracing::debug!(user = %user, generation, "session connected");
                self.rooms_rejoin(&user);
                // A bridge that reports no connection state is taken as
                // connected once `connect` returned (after a moment, so the
                // states a bridge does report are not contradicted).
                self.spawn_then(tokio::time::sleep(Duration::from_secs(2)), move |gw, ()| {
                    let Some(u) = gw.users.get_mut(&user) else {
                        return;
                    };
                    let same = u
                        .session
                        .as_ref()
                        .is_some_and(|s| s.generation == generation);
                    if same && matches!(u.connection, None | Some(ConnectionState::Connecting)) {
                        u.connection = Some(ConnectionState::Connected(None));
                        gw.send_gateway_presence(&user);
                    }
                });
            }
            Report::Fault {
                user,
                message,
                retry_in,
            } => {
                BridgeMetrics::inc(&self.metrics.session_restarts);
                BridgeMetrics::inc(&self.metrics.errors);
                tracing::warn!(user = %user, %message, "session failed; restarting");
                self.notify(
                    &user,
                    &format!(
                        "Your {} session failed: {message}. It restarts in {} s.",
                        self.info.name,
                        retry_in.as_secs().max(1)
                    ),
                );
                self.rooms_suspend_user(&user, &format!("Reconnecting: {message}"));
                let u = self.user_mut(&user);
                u.connection = Some(ConnectionState::Reconnecting(message));
                self.send_gateway_presence(&user);
            }
            Report::LoginFailed {
                user,
                error,
                retry_in,
            } => {
                let text = error.to_string();
                tracing::info!(user = %user, error = %text, "login failed");
                match retry_in {
                    Some(d) => {
                        self.user_mut(&user).connection =
                            Some(ConnectionState::Reconnecting(text.clone()));
                        self.notify(
                            &user,
                            &format!(
                                "Could not log in to {}: {text}. Retrying in {} s.",
                                self.info.name,
                                d.as_secs().max(1)
                            ),
                        );
                    }
                    None => {
                        let u = self.user_mut(&user);
                        u.connection = Some(ConnectionState::LoginRequired(text.clone()));
                        u.login_required = Some(text.clone());
                        self.rooms_end_user(&user, &format!("Login required: {text}"));
                        self.notify(
                            &user,
                            &format!(
                                "Login required: {text}. Register again (the 'Register' command, or send 'register' here) with valid credentials."
                            ),
                        );
                    }
                }
                self.send_gateway_presence(&user);
            }
            Report::Ended { user, generation } => {
                if let Some(u) = self.users.get_mut(&user)
                    && u.session
                        .as_ref()
                        .is_some_and(|s| s.generation == generation)
                {
                    u.session = None;
                    self.metrics
                        .sessions
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
                let running = self.users.get(&user).is_some_and(|u| u.session.is_some());
                if !running {
                    self.rooms_end_user(&user, "The session was closed");
                    self.unhold(&user);
                }
            }
        }
    }

    /// Whether a user's session has nothing to do: the user is offline
    /// (no available resource, in no room), and nothing is under way for
    /// them (action, held event, receipt awaited, dialog, command).
    pub(super) fn session_unneeded(&self, user: &UserId, u: &User) -> bool {
        u.session.is_some()
            && u.quiet()
            && u.dialog.is_none()
            && !self.rooms.in_use_by(user)
            && !self.adhoc.has_user(user)
    }

    /// Closes the sessions of on-demand bridges that have had nothing to do
    /// for `[limits] session_idle_timeout`, and forgets those users: the
    /// memory of a user who left goes back. The next time they come online
    /// or address the bridge, a session starts again.
    pub(super) fn close_idle_sessions(&mut self, now: Instant) {
        let Some(timeout) = self.settings.session_idle_timeout else {
            return;
        };
        if self.info.sessions == SessionPolicy::AlwaysOn {
            return;
        }
        let mut due = Vec::new();
        let users: Vec<UserId> = self.users.keys().cloned().collect();
        for user in users {
            let unneeded = self
                .users
                .get(&user)
                .is_some_and(|u| self.session_unneeded(&user, u));
            let Some(u) = self.users.get_mut(&user) else {
                continue;
            };
            if !unneeded {
                u.idle_since = None;
                continue;
            }
            let since = *u.idle_since.get_or_insert(now);
            if now.duration_since(since) >= timeout {
                due.push(user);
            }
        }
        for user in due {
            tracing::debug!(user = %user, "closing the session of a user who is offline and idle");
            let u2 = user.clone();
            self.close_session(&user, CloseReason::Idle, move |gw| {
                let gone = gw
                    .users
                    .get(&u2)
                    .is_some_and(|u| u.session.is_none() && u.quiet());
                if gone && !gw.rooms.in_use_by(&u2) {
                    gw.rooms.forget_left(&u2);
                    gw.users.remove(&u2);
                }
            });
        }
    }
}
