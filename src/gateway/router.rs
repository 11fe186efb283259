//! The gateway's task for one bridge: holds the parts that own the state
//! (users in [`super::users`], rooms, command sessions, disco), receives
//! stanzas from the component, events from the sessions and results of
//! background work, and routes each to its handler. Running the users'
//! sessions (starting, acting, holding events, closing) is
//! [`super::sessions`].
//!
//! Everything that waits (a session's action, a login, an IQ to the XMPP
//! server, publishing a file) runs elsewhere and comes back here as a
//! continuation, so this task never blocks and handles one thing at a time
//! in the order it arrived.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_bridge::{
    CloseReason, Envelope, Field, FormValues, Network, NetworkInfo, Registration, SessionPolicy,
    UserId,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::session::Report;
use super::users::User;
use super::{GatewayParts, GatewaySettings};
use crate::component::{ComponentHandle, Inbound, InvalidStanza};
use crate::metrics::BridgeMetrics;
use crate::store::Store;
use crate::xmpp::xml;

/// A continuation run on the gateway's task.
pub type Internal = Box<dyn FnOnce(&mut Gateway) + Send>;

/// How long a user's events may wait for an action in flight (so that an
/// event caused by the action does not overtake its result).
pub const HOLD_AT_MOST: Duration = Duration::from_millis(250);

/// An IQ request to answer later: who asked, of whom, with which id.
#[derive(Clone, Debug)]
pub struct Asked {
    /// The requester.
    pub from: Jid,
    /// The JID asked (ours).
    pub to: Jid,
    /// The request's id.
    pub id: String,
}

impl Asked {
    /// The request from `from` to `to` with `id`.
    pub fn new(from: &Jid, to: &Jid, id: &str) -> Asked {
        Asked {
            from: from.clone(),
            to: to.clone(),
            id: id.to_owned(),
        }
    }
}

/// The gateway of one bridge.
pub struct Gateway {
    /// Settings.
    pub settings: GatewaySettings,
    /// The bridge.
    pub network: Arc<dyn Network>,
    /// The bridge's description.
    pub info: NetworkInfo,
    /// The component stream.
    pub comp: ComponentHandle,
    /// The database.
    pub store: Store,
    /// File publishing (XEP-0363 on the user's server, else `media`).
    pub uploader: super::upload::Uploader,
    /// Counters.
    pub metrics: Arc<BridgeMetrics>,
    /// JID <-> address mapping.
    pub jids: crate::xmpp::jids::Jids,
    /// Users the gateway has state for.
    pub users: HashMap<UserId, User>,
    /// Registered users (cache of the store).
    pub registered: HashSet<UserId>,
    /// Ad-hoc command sessions.
    pub adhoc: super::adhoc::Sessions,
    /// Hosted rooms.
    pub rooms: crate::muc::Rooms,
    /// Disco/caps of the gateway and its entities.
    pub disco: super::disco::Disco,
    /// What clients' caps say about roster exchange.
    pub caps: super::roster::ClientCaps,
    /// Continuations from background work.
    pub internal: mpsc::UnboundedSender<Internal>,
    /// Events channel handed to sessions.
    pub events: mpsc::Sender<Envelope>,
    /// Reports from sessions.
    pub reports: mpsc::UnboundedSender<Report>,
    /// Background publishing work the next flush must wait for.
    pub publishing: Vec<tokio::task::JoinHandle<()>>,
    /// Session incarnation counter.
    pub generation: u64,
    /// When the gateway started.
    pub started: Instant,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Whether the component stream has been up at least once.
    pub connected_once: bool,
    /// The bridge's context.
    pub bridge: ferry_bridge::BridgeContext,
    /// Group conversations opened and not yet joined by the session.
    pub groups: HashMap<(UserId, ferry_bridge::RoomId), super::groups::PendingGroup>,
    /// Users' leases, when several instances serve the domain.
    pub leases: Option<super::leases::Leases>,
}

impl Gateway {
    /// Runs the gateway (see [`super::run`]).
    pub async fn run(parts: GatewayParts) -> anyhow::Result<()> {
        let GatewayParts {
            settings,
            network,
            component,
            mut inbound,
            store,
            media,
            metrics,
            shutdown,
            mut routed,
            bridge,
        } = parts;
        let info = network.info().clone();
        // A registration may be submitted without the form being asked for.
        for f in network.registration().fields {
            if f.kind == ferry_bridge::FieldKind::TextPrivate {
                crate::redact::note_private(&f.var);
            }
        }
        let jids = crate::xmpp::jids::Jids::new(&settings.domain, network.clone())?;
        let leases = settings.cluster.as_ref().map(super::leases::Leases::new);
        let (internal_tx, mut internal_rx) = mpsc::unbounded_channel::<Internal>();
        let (events_tx, mut events_rx) = mpsc::channel::<Envelope>(1024);
        let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<Report>();
        let registered: HashSet<UserId> = store
            .users()
            .map_err(|e| anyhow::anyhow!("reading registered users: {e}"))?
            .into_iter()
            .map(|u| u.user)
            .collect();
        store.deliveries_expire();
        let disco = super::disco::Disco::new(&info, network.as_ref());
        let uploader = super::upload::Uploader {
            comp: component.clone(),
            gateway: jids.gateway(),
            services: super::upload::Services::default(),
            media,
            http: super::upload::LazyHttp::default(),
        };
        let mut gw = Gateway {
            settings,
            network,
            info,
            comp: component,
            store,
            uploader,
            metrics,
            jids,
            users: HashMap::new(),
            registered,
            adhoc: super::adhoc::Sessions::default(),
            rooms: crate::muc::Rooms::default(),
            disco,
            caps: super::roster::ClientCaps::default(),
            internal: internal_tx,
            events: events_tx,
            reports: reports_tx,
            publishing: Vec::new(),
            generation: 0,
            started: Instant::now(),
            shutdown: shutdown.clone(),
            connected_once: false,
            bridge,
            groups: HashMap::new(),
            leases,
        };
        tracing::info!(
            bridge = %gw.settings.name,
            domain = %gw.settings.domain,
            users = gw.registered.len(),
            "gateway started"
        );
        if gw.leases.is_some() {
            // Sessions start as their leases are taken.
            gw.leases_start();
        } else {
            if gw.info.sessions == SessionPolicy::AlwaysOn {
                let users: Vec<UserId> = gw.registered.iter().cloned().collect();
                for u in users {
                    gw.ensure_session(&u);
                }
            }
            gw.resume_sessions();
        }
        // Often enough to close idle sessions on time.
        let every = gw
            .settings
            .session_idle_timeout
            .map_or(Duration::from_secs(30), |t| {
                (t / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
            });
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Back-pressure: while the XMPP server reads slower than the
            // sessions' events make stanzas (a big room's join burst), the
            // events wait in the sessions' bounded channel and the network
            // sockets rather than as queued stanzas here.
            let congested = gw.comp.congested();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(k) = internal_rx.recv() => k(&mut gw),
                Some(r) = reports_rx.recv() => gw.on_report(r),
                Some(env) = events_rx.recv(), if !congested => gw.on_envelope(env),
                _ = gw.comp.uncongested(), if congested => {}
                Some(r) = routed.recv() => gw.on_routed(r),
                inb = inbound.recv() => match inb {
                    Some(inb) => gw.on_inbound(inb),
                    None => {
                        tracing::warn!("component stream closed for good; gateway stops");
                        break;
                    }
                },
                _ = tick.tick() => gw.on_tick(),
            }
        }
        gw.stop(
            &mut internal_rx,
            &mut reports_rx,
            &mut events_rx,
            &mut inbound,
        )
        .await;
        Ok(())
    }

    /// Sends a stanza (made valid XML first).
    pub fn send(&self, mut el: Element) {
        xml::sanitize(&mut el);
        self.comp.send(el);
    }

    /// Sends a stanza error (and counts it).
    pub fn send_error(&self, el: Element) {
        BridgeMetrics::inc(&self.metrics.errors);
        self.send(el);
    }

    /// Runs `fut` in the background and `then` on this task with its
    /// output.
    pub fn spawn_then<T, F, K>(&self, fut: F, then: K)
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
        K: FnOnce(&mut Gateway, T) + Send + 'static,
    {
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let out = fut.await;
            let _ = tx.send(Box::new(move |gw: &mut Gateway| then(gw, out)));
        });
    }

    /// The gateway's JID.
    pub fn gw_jid(&self) -> Jid {
        self.jids.gateway()
    }

    /// The bare JID of a user.
    pub fn user_jid(user: &UserId) -> Option<BareJid> {
        BareJid::new(user.as_str()).ok()
    }

    /// A chat message from the gateway to a user.
    pub fn notify(&self, user: &UserId, text: &str) {
        if let Some(to) = Self::user_jid(user) {
            self.send(xml::chat(&self.gw_jid(), &Jid::from(to), text));
        }
    }

    /// Whether a user may use the bridge at all.
    pub fn allowed(&self, user: &UserId) -> bool {
        self.settings.access.allows(user.as_str())
    }

    /// Whether a user is an administrator.
    pub fn is_admin(&self, user: &UserId) -> bool {
        self.settings.access.is_admin(user.as_str())
    }

    /// Whether a user registered.
    pub fn is_registered(&self, user: &UserId) -> bool {
        self.registered.contains(user)
    }

    /// Checks that a user may use the bridge now; the error says why not.
    pub fn check_use(&self, user: &UserId) -> Result<(), Box<StanzaError>> {
        if !self.allowed(user) {
            return Err(Box::new(xml::error(
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                &format!(
                    "{user} is not allowed to use this gateway (the operator's [access] users list does not include it)."
                ),
            )));
        }
        if self.info.registration == Registration::Required && !self.is_registered(user) {
            return Err(Box::new(xml::error(
                ErrorType::Auth,
                DefinedCondition::RegistrationRequired,
                &format!(
                    "You must register with the {} gateway first: run its 'Register' command, or send 'register' to {}.",
                    self.info.name,
                    self.jids.domain()
                ),
            )));
        }
        Ok(())
    }

    /// The user's state, created on first use.
    pub fn user_mut(&mut self, user: &UserId) -> &mut User {
        self.users.entry(user.clone()).or_default()
    }

    /// Core preference fields (before the bridge's own).
    pub fn core_preferences() -> Vec<Field> {
        vec![
            Field::boolean(
                "sync_presence",
                "Show my XMPP presence (away, busy, status) on the network",
                true,
            ),
            Field::boolean(
                "send_typing",
                "Send my typing notifications to the network",
                true,
            ),
        ]
    }

    /// Every preference field, core first.
    pub fn preference_fields(&self) -> Vec<Field> {
        let mut f = Self::core_preferences();
        f.extend(self.network.preferences());
        f
    }

    /// A user's preferences with defaults filled in.
    pub fn preferences_of(&self, user: &UserId) -> FormValues {
        preferences_with_defaults(&self.preference_fields(), self.store.preferences(user))
    }

    /// What a JID of the gateway's domain names, for a user: the bridge's
    /// address rules see who asks and their preferences (a national phone
    /// number is read with the user's region).
    pub fn target_of(
        &self,
        user: &UserId,
        jid: &Jid,
    ) -> Result<crate::xmpp::jids::Target, ferry_bridge::AddressError> {
        if jid.node().is_none() {
            return Ok(crate::xmpp::jids::Target::Gateway);
        }
        let preferences = self.preferences_of(user);
        let ctx = ferry_bridge::AddressContext {
            user: Some(user),
            preferences: &preferences,
        };
        self.jids.target(jid, &ctx)
    }

    /// Whether a boolean preference is on.
    pub fn pref_on(&self, user: &UserId, var: &str) -> bool {
        self.preferences_of(user).bool(var).unwrap_or(true)
    }

    fn on_envelope(&mut self, env: Envelope) {
        if let Envelope::Event { user, .. } = &env
            && let Some(u) = self.users.get_mut(user)
        {
            u.idle_since = None;
        }
        match env {
            Envelope::Event { user, event } => match self.users.get_mut(&user) {
                Some(u) if u.in_flight > 0 || !u.held.is_empty() => {
                    let first = u.held.is_empty();
                    u.held_since.get_or_insert_with(Instant::now);
                    u.held.push_back(event);
                    if first {
                        // Events wait for the action in flight, but not
                        // long: a slow action (a throttled network) must
                        // not delay what the user receives.
                        self.spawn_then(tokio::time::sleep(HOLD_AT_MOST), move |gw, ()| {
                            gw.release_overdue(&user);
                        });
                    }
                }
                _ => self.on_event(user, event),
            },
            Envelope::Flush(done) => {
                // Everything sent before the flush is handled first.
                let waiting: Vec<UserId> = self
                    .users
                    .iter()
                    .filter(|(_, u)| !u.held.is_empty())
                    .map(|(k, _)| k.clone())
                    .collect();
                for user in waiting {
                    let held: Vec<_> = self
                        .users
                        .get_mut(&user)
                        .map(|u| {
                            u.held_since = None;
                            u.held.drain(..).collect()
                        })
                        .unwrap_or_default();
                    for e in held {
                        self.on_event(user.clone(), e);
                    }
                }
                let publishing: Vec<_> = self.publishing.drain(..).collect();
                let store = self.store.clone();
                tokio::spawn(async move {
                    for p in publishing {
                        let _ = p.await;
                    }
                    if let Err(e) = store.flush().await {
                        tracing::warn!(error = %e, "store flush failed");
                    }
                    let _ = done.send(());
                });
            }
        }
    }

    /// Events the bridge-wide part hands to a user: handled as the user's
    /// session's own (whose session starts if it can), then stored before
    /// the bridge hears back.
    fn on_routed(&mut self, r: crate::lifecycle::Routed) {
        let crate::lifecycle::Routed { user, events, done } = r;
        if !self.allowed(&user) {
            let _ = done.send(Err(ferry_bridge::RouteError::NotAllowed(user)));
            return;
        }
        if self.info.registration == Registration::Required && !self.is_registered(&user) {
            let _ = done.send(Err(ferry_bridge::RouteError::NotRegistered(user)));
            return;
        }
        self.ensure_session(&user);
        for event in events {
            self.on_envelope(Envelope::Event {
                user: user.clone(),
                event,
            });
        }
        let (flushed, wait) = tokio::sync::oneshot::channel();
        self.on_envelope(Envelope::Flush(flushed));
        tokio::spawn(async move {
            let result = wait.await.map_err(|_| ferry_bridge::RouteError::Closed);
            let _ = done.send(result);
        });
    }

    pub(super) fn on_inbound(&mut self, inb: Inbound) {
        match inb {
            // With several instances, a user's stanzas wait for the lease.
            Inbound::Stanza(s) => match self.lease_gate(s) {
                Some(Stanza::Iq(iq)) => self.on_iq(iq),
                Some(Stanza::Message(m)) => self.on_message(m),
                Some(Stanza::Presence(p)) => self.on_presence(p),
                None => {}
            },
            Inbound::Invalid(h) => self.on_invalid(h),
            Inbound::Connected(_privileges) => self.on_connected(),
            Inbound::Disconnected(why) => {
                tracing::info!(reason = %why, "component stream down; stanzas wait in the outbox");
            }
        }
    }

    /// Answers a stanza that failed to parse with `bad-request`, from its
    /// header, unless it was itself an error or a result.
    fn on_invalid(&mut self, h: InvalidStanza) {
        if matches!(h.type_.as_deref(), Some("error" | "result")) {
            return;
        }
        let (Some(from), Some(to)) = (
            h.from.as_deref().and_then(|f| Jid::new(f).ok()),
            h.to.as_deref().and_then(|t| Jid::new(t).ok()),
        ) else {
            return;
        };
        let err = xml::error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            &format!("The {} could not be read: {}", h.name, h.error),
        );
        let el = match h.name {
            "iq" => match h.id.as_deref() {
                Some(id) => xml::iq_error(&to, &from, id, err),
                None => return,
            },
            "message" => xml::message_error(&to, &from, h.id.as_deref(), err),
            _ => xml::presence_error(&to, &from, h.id.as_deref(), err),
        };
        self.send_error(el);
    }

    /// The stream is up: presence to every registered user, and a probe to
    /// learn who is online.
    fn on_connected(&mut self) {
        self.connected_once = true;
        let users: Vec<UserId> = self.registered.iter().cloned().collect();
        for u in &users {
            self.send_gateway_presence(u);
            if let Some(j) = Self::user_jid(u) {
                let probe =
                    xmpp_parsers::presence::Presence::new(xmpp_parsers::presence::Type::Probe)
                        .with_from(self.gw_jid())
                        .with_to(Jid::from(j));
                self.send(probe.into());
            }
        }
        // Rooms and contacts re-announce themselves to clients.
        for u in &users {
            self.resend_contact_presences(u);
        }
    }

    fn on_tick(&mut self) {
        self.adhoc.expire(Duration::from_secs(15 * 60));
        let now = Instant::now();
        for u in self.users.values_mut() {
            if u.dialog
                .as_ref()
                .is_some_and(|d| now.duration_since(d.touched) > Duration::from_secs(30 * 60))
            {
                u.dialog = None;
            }
        }
        self.publishing.retain(|h| !h.is_finished());
        self.close_idle_sessions(now);
    }

    /// Shutdown: unavailable presence from every entity to every user,
    /// sessions closed cleanly, the store flushed.
    async fn stop(
        mut self,
        internal_rx: &mut mpsc::UnboundedReceiver<Internal>,
        reports_rx: &mut mpsc::UnboundedReceiver<Report>,
        events_rx: &mut mpsc::Receiver<Envelope>,
        inbound: &mut mpsc::Receiver<Inbound>,
    ) {
        tracing::info!(bridge = %self.settings.name, "gateway stopping");
        if self.leases.is_some() {
            // The stream left the server before the shutdown: what the
            // server delivered until then is still handled here.
            let mut late = 0;
            while let Ok(inb) = inbound.try_recv() {
                late += 1;
                self.on_inbound(inb);
            }
            tracing::debug!(late, "handled what arrived while leaving the server");
            self.leases_refuse_waiting();
        }
        self.rooms_shutdown();
        // With several instances the domain stays served: no goodbye.
        if self.leases.is_none() {
            let mut to_notify: HashSet<UserId> = self.registered.clone();
            to_notify.extend(self.users.keys().cloned());
            for u in &to_notify {
                self.send_unavailable_all(u, "Gateway shutting down");
            }
        }
        let mut closing = Vec::new();
        for (_, u) in self.users.iter_mut() {
            if let Some(h) = u.session.take() {
                closing.push(h.close(CloseReason::Shutdown, Duration::from_secs(10)));
            }
        }
        let all = futures::future::join_all(closing);
        tokio::pin!(all);
        // Keep storing events while sessions close (they may report last
        // messages); continuations are dropped.
        loop {
            tokio::select! {
                _ = &mut all => break,
                Some(env) = events_rx.recv() => {
                    if let Envelope::Event { user, event } = env {
                        self.on_event(user, event);
                    } else if let Envelope::Flush(done) = env {
                        let _ = done.send(());
                    }
                }
                Some(_) = reports_rx.recv() => {}
                Some(_) = internal_rx.recv() => {}
            }
        }
        for p in self.publishing.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        }
        if let Err(e) = self.store.flush().await {
            tracing::warn!(error = %e, "flushing the store at shutdown failed");
        }
        tracing::info!(bridge = %self.settings.name, "gateway stopped");
    }
}

/// Preference values with the fields' defaults under them.
pub fn preferences_with_defaults(
    fields: &[Field],
    stored: Result<FormValues, ferry_bridge::StoreError>,
) -> FormValues {
    let mut v = FormValues::new();
    for f in fields {
        if !f.values.is_empty() {
            v.set(f.var.clone(), f.values.clone());
        }
    }
    match stored {
        Ok(s) => v.merge(&s),
        Err(e) => tracing::warn!(error = %e, "cannot read preferences; using defaults"),
    }
    v
}

/// A user's directory: `<data_dir>/users/<escaped bare jid>/` (XEP-0106
/// escaping leaves no `/` in a name, and a JID is never `.` or `..`).
pub fn user_dir(data_dir: &std::path::Path, user: &UserId) -> std::path::PathBuf {
    data_dir
        .join("users")
        .join(crate::xmpp::escape::escape(user.as_str()).replace('\0', "_"))
}
