//! Several instances, one domain: each user's network sessions run in
//! exactly one instance at a time, the one holding the user's lease in the
//! shared database ([`crate::store::Claim`]).
//!
//! The XMPP server decides who serves a user (ejabberd's `domain_balancing`
//! by bare JID): the instance that receives a user's stanzas claims the
//! user's lease. While it does, the user's stanzas wait here, in order and
//! bounded; the owner sees the request at its next renewal, closes the
//! user's sessions cleanly (so there are never two connections for one
//! user on the network) and releases the lease, which the claimant then
//! takes and replays the stanzas. An owner that died stops renewing: its
//! leases expire after `[cluster] lease_timeout` and are taken then.
//!
//! Each instance renews all its leases in one statement, a few times per
//! timeout; one that could not renew for a whole timeout closes its
//! sessions itself (another instance may hold those users by now). Users
//! with sessions to restore (the bridge's resume marker, or every user of
//! an always-on bridge) whose lease is free or expired are adopted by the
//! survivors at once, and the outbox of a dead instance is sent by one of
//! them. SIGTERM leaves the XMPP server first (it routes the users to the
//! others), closes the sessions, then releases every lease (`crate::app`),
//! so the others take over at their next tick. Without `[cluster]` none of this
//! runs: a single instance holds no leases and stanzas never wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use ferry_bridge::{CloseReason, SessionPolicy, UserId};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::MessageType;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::router::Gateway;
use crate::component::Inbound;
use crate::config::ClusterConfig;
use crate::store::{Claim, Renewal};
use crate::xmpp::xml;

/// The most stanzas of one user that wait for a lease; more are refused
/// with a `wait` error.
const QUEUE_MAX: usize = 256;
/// How often waiting claims are retried and orphans looked for.
const TICK: Duration = Duration::from_millis(500);
/// The most outbox stanzas of a dead instance sent per tick.
const ADOPT_OUTBOX_BATCH: usize = 500;

/// The lease state of one instance (present only with `[cluster]`).
pub struct Leases {
    instance: String,
    ttl: Duration,
    /// Users whose lease this instance holds: their sessions may run here.
    held: HashSet<UserId>,
    /// Users whose stanzas wait for the lease.
    waiting: HashMap<UserId, Waiting>,
    /// Users whose sessions are closing to hand the lease over.
    handing_over: HashSet<UserId>,
    /// When the leases were last renewed.
    renewed: Instant,
    /// When the last renewal started (None: none running).
    renewing: Option<Instant>,
    /// An adoption of orphans is running.
    adopting: bool,
    ticks: u64,
}

struct Waiting {
    stanzas: VecDeque<Stanza>,
    since: Instant,
    claiming: bool,
}

impl Leases {
    /// The state of a starting instance (it holds nothing yet).
    pub fn new(config: &ClusterConfig) -> Leases {
        Leases {
            instance: config.instance.clone(),
            ttl: config.lease_timeout,
            held: HashSet::new(),
            waiting: HashMap::new(),
            handing_over: HashSet::new(),
            renewed: Instant::now(),
            renewing: None,
            adopting: false,
            ticks: 0,
        }
    }

    /// Whether the user's sessions may run here.
    pub fn holds(&self, user: &UserId) -> bool {
        self.held.contains(user) && !self.handing_over.contains(user)
    }

    /// How long a user's stanzas wait for a lease before they are
    /// answered with an error: the owner's death is noticed after a lease
    /// timeout, and its sessions take a while to close.
    fn max_wait(&self) -> Duration {
        self.ttl * 2 + Duration::from_secs(5)
    }
}

/// The user a stanza comes from, if it comes from a user (not from a
/// server, not from our own domain).
fn sender(s: &Stanza, domain: &str) -> Option<UserId> {
    let from = match s {
        Stanza::Iq(Iq::Get { from, .. } | Iq::Set { from, .. }) => from.as_ref()?,
        Stanza::Iq(_) => return None,
        Stanza::Message(m) if m.type_ == MessageType::Error => return None,
        Stanza::Message(m) => m.from.as_ref()?,
        Stanza::Presence(p) => p.from.as_ref()?,
    };
    from.node()?;
    if from.domain().as_str() == domain {
        return None;
    }
    Some(UserId::new(from.to_bare().to_string()))
}

impl Gateway {
    /// Starts the lease ticker (cluster mode only).
    pub(super) fn leases_start(&mut self) {
        if self.leases.is_some() {
            self.leases_schedule();
        }
    }

    fn leases_schedule(&self) {
        self.spawn_then(tokio::time::sleep(TICK), |gw, ()| gw.leases_tick());
    }

    /// Whether the user's sessions may run in this instance (always, for a
    /// single instance).
    pub fn lease_allows(&self, user: &UserId) -> bool {
        self.leases.as_ref().is_none_or(|l| l.holds(user))
    }

    /// Lets a stanza through when its sender's sessions may run here;
    /// otherwise it waits for the lease (claimed now) and None is returned.
    pub(super) fn lease_gate(&mut self, s: Stanza) -> Option<Stanza> {
        if self.leases.is_none() {
            return Some(s);
        }
        let domain = self.jids.domain().to_owned();
        // Only users the bridge serves: stanzas of other components (a
        // contact of another gateway) and of strangers are handled (and
        // refused) as they are.
        let Some(user) = sender(&s, &domain).filter(|u| self.settings.access.allows(u.as_str()))
        else {
            return Some(s);
        };
        let leases = self.leases.as_mut()?;
        if leases.holds(&user) && !leases.waiting.contains_key(&user) {
            return Some(s);
        }
        let w = leases
            .waiting
            .entry(user.clone())
            .or_insert_with(|| Waiting {
                stanzas: VecDeque::new(),
                since: Instant::now(),
                claiming: false,
            });
        if w.stanzas.len() >= QUEUE_MAX {
            self.lease_refuse(
                s,
                DefinedCondition::ResourceConstraint,
                "Too many stanzas wait while your session moves between gateway instances; send this again in a few seconds.",
            );
            return None;
        }
        w.stanzas.push_back(s);
        if !w.claiming && !leases.handing_over.contains(&user) {
            self.lease_claim(user);
        }
        None
    }

    /// Answers a stanza that cannot wait any more with a `wait` error
    /// (presences are dropped: an error there confuses clients).
    fn lease_refuse(&self, s: Stanza, condition: DefinedCondition, text: &str) {
        let err = || xml::error(ErrorType::Wait, condition.clone(), text);
        let el = match s {
            Stanza::Iq(
                Iq::Get {
                    from: Some(from),
                    to: Some(to),
                    id,
                    ..
                }
                | Iq::Set {
                    from: Some(from),
                    to: Some(to),
                    id,
                    ..
                },
            ) => xml::iq_error(&to, &from, &id, err()),
            Stanza::Message(m) => match (m.from, m.to) {
                (Some(from), Some(to)) => {
                    xml::message_error(&to, &from, m.id.as_ref().map(|i| i.0.as_str()), err())
                }
                _ => return,
            },
            _ => return,
        };
        self.send_error(el);
    }

    fn lease_claim(&mut self, user: UserId) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        if let Some(w) = leases.waiting.get_mut(&user) {
            w.claiming = true;
        }
        let store = self.store.clone();
        let (instance, ttl) = (leases.instance.clone(), leases.ttl);
        let u = user.clone();
        self.spawn_then(
            async move {
                tokio::task::spawn_blocking(move || store.lease_claim(&u, &instance, ttl)).await
            },
            move |gw, r| {
                let Some(leases) = gw.leases.as_mut() else {
                    return;
                };
                if let Some(w) = leases.waiting.get_mut(&user) {
                    w.claiming = false;
                }
                match r {
                    Ok(Ok(Claim::Taken)) => {
                        tracing::debug!(user = %user, "lease taken");
                        leases.held.insert(user.clone());
                        gw.lease_replay(&user);
                    }
                    Ok(Ok(Claim::Held { owner })) => {
                        tracing::debug!(user = %user, %owner, "lease held elsewhere; handover asked");
                    }
                    Ok(Err(e)) => tracing::warn!(user = %user, error = %e, "cannot claim a lease"),
                    Err(e) => tracing::warn!(user = %user, error = %e, "cannot claim a lease"),
                }
            },
        );
    }

    /// Handles, in order, the stanzas that waited for the user's lease.
    fn lease_replay(&mut self, user: &UserId) {
        let Some(w) = self.leases.as_mut().and_then(|l| l.waiting.remove(user)) else {
            return;
        };
        tracing::debug!(user = %user, n = w.stanzas.len(), waited_ms = w.since.elapsed().as_millis() as u64, "replaying stanzas after the lease");
        for s in w.stanzas {
            self.on_inbound(Inbound::Stanza(s));
        }
    }

    fn leases_tick(&mut self) {
        if self.shutdown.is_cancelled() {
            return;
        }
        self.leases_schedule();
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        leases.ticks += 1;
        let now = Instant::now();
        // Claims that wait: retried; too old: answered with an error.
        let max_wait = leases.max_wait();
        let mut expired = Vec::new();
        let mut retry = Vec::new();
        for (u, w) in &leases.waiting {
            if now.duration_since(w.since) > max_wait {
                expired.push(u.clone());
            } else if !w.claiming && !leases.handing_over.contains(u) {
                retry.push(u.clone());
            }
        }
        let mut refused = Vec::new();
        for u in expired {
            if let Some(w) = leases.waiting.remove(&u) {
                refused.extend(w.stanzas);
            }
        }
        let renew_due =
            leases.renewing.is_none() && now.duration_since(leases.renewed) >= leases.ttl / 4;
        let stale = now.duration_since(leases.renewed) >= leases.ttl;
        let adopt_due = !leases.adopting && leases.ticks % 2 == 0;
        for s in refused {
            self.lease_refuse(
                s,
                DefinedCondition::RemoteServerTimeout,
                "Your session is moving between gateway instances and did not arrive in time; send this again.",
            );
        }
        for u in retry {
            self.lease_claim(u);
        }
        if stale {
            self.leases_fence();
        }
        if renew_due {
            self.leases_renew();
        }
        if adopt_due {
            self.leases_adopt();
        }
    }

    /// No renewal for a whole lease timeout: another instance may hold
    /// our users by now, so their sessions stop here.
    fn leases_fence(&mut self) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        if leases.held.is_empty() {
            return;
        }
        tracing::warn!(
            users = leases.held.len(),
            "leases not renewed for a whole lease timeout; closing their sessions"
        );
        let lost: Vec<UserId> = leases.held.drain().collect();
        for u in lost {
            self.close_session(&u, CloseReason::Shutdown, |_| {});
        }
    }

    fn leases_renew(&mut self) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        let started = Instant::now();
        leases.renewing = Some(started);
        let store = self.store.clone();
        let (instance, ttl) = (leases.instance.clone(), leases.ttl);
        self.spawn_then(
            async move { tokio::task::spawn_blocking(move || store.lease_renew(&instance, ttl)).await },
            move |gw, r| {
                if let Some(l) = gw.leases.as_mut() {
                    l.renewing = None;
                }
                match r {
                    Ok(Ok(renewal)) => gw.leases_renewed(started, renewal),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the leases"),
                    Err(e) => tracing::warn!(error = %e, "cannot renew the leases"),
                }
            },
        );
    }

    fn leases_renewed(&mut self, started: Instant, renewal: Renewal) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        leases.renewed = started;
        let owned: HashSet<UserId> = renewal.owned.into_iter().collect();
        // Taken by another instance after ours expired: stop at once.
        let lost: Vec<UserId> = leases
            .held
            .iter()
            .filter(|u| !owned.contains(*u) && !leases.handing_over.contains(*u))
            .cloned()
            .collect();
        for u in &lost {
            leases.held.remove(u);
        }
        let wanted: Vec<UserId> = renewal
            .wanted
            .into_iter()
            .filter(|u| !leases.handing_over.contains(u))
            .collect();
        for u in lost {
            tracing::warn!(user = %u, "lease lost to another instance; closing the session here");
            self.close_session(&u, CloseReason::Shutdown, |_| {});
        }
        for u in wanted {
            self.lease_hand_over(u);
        }
    }

    /// Another instance wants the user: their sessions close here, then
    /// the lease is released for it to take.
    fn lease_hand_over(&mut self, user: UserId) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        leases.handing_over.insert(user.clone());
        tracing::info!(user = %user, "handing the user over to another instance");
        let u = user.clone();
        self.close_session(&user, CloseReason::Shutdown, move |gw| {
            gw.rooms_end_user(&u, "Your session moved to another gateway instance");
            let Some(leases) = gw.leases.as_ref() else {
                return;
            };
            let store = gw.store.clone();
            let instance = leases.instance.clone();
            let u2 = u.clone();
            gw.spawn_then(
                async move {
                    tokio::task::spawn_blocking(move || store.lease_release(&u2, &instance)).await
                },
                move |gw, r| {
                    if !matches!(r, Ok(Ok(()))) {
                        tracing::warn!(user = %u, "cannot release a lease; it expires instead");
                    }
                    let Some(leases) = gw.leases.as_mut() else {
                        return;
                    };
                    leases.held.remove(&u);
                    leases.handing_over.remove(&u);
                    gw.users.remove(&u);
                    // Stanzas that came here meanwhile claim it back.
                    if gw
                        .leases
                        .as_ref()
                        .is_some_and(|l| l.waiting.contains_key(&u))
                    {
                        gw.lease_claim(u);
                    }
                },
            );
        });
    }

    /// Takes the free or expired leases of users whose sessions must be
    /// restored, and starts those sessions; sends a dead instance's outbox.
    fn leases_adopt(&mut self) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        leases.adopting = true;
        let store = self.store.clone();
        let (instance, ttl) = (leases.instance.clone(), leases.ttl);
        let held = leases.held.clone();
        let access = self.settings.access.clone();
        let always_on: Option<Vec<UserId>> = (self.info.sessions == SessionPolicy::AlwaysOn)
            .then(|| self.registered.iter().cloned().collect());
        self.spawn_then(
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut candidates = match always_on {
                        Some(all) => all,
                        None => store.users_with_key(ferry_bridge::RESUME_KEY)?,
                    };
                    candidates.retain(|u| !held.contains(u) && access.allows(u.as_str()));
                    let taken = if candidates.is_empty() {
                        Vec::new()
                    } else {
                        store.lease_adopt(candidates, &instance, ttl)?
                    };
                    let outbox = store.outbox_take_dead(&instance, ADOPT_OUTBOX_BATCH)?;
                    Ok::<_, ferry_bridge::StoreError>((taken, outbox))
                })
                .await
            },
            |gw, r| {
                if let Some(l) = gw.leases.as_mut() {
                    l.adopting = false;
                }
                let (taken, outbox) = match r {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot adopt leases");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot adopt leases");
                        return;
                    }
                };
                if !outbox.is_empty() {
                    tracing::info!(
                        n = outbox.len(),
                        "sending the outbox of an instance that died"
                    );
                }
                for s in outbox {
                    match s.parse::<Element>() {
                        Ok(el) => gw.comp.send(el),
                        Err(e) => tracing::warn!(error = %e, "an outbox stanza of a dead instance cannot be read; dropped"),
                    }
                }
                for u in taken {
                    tracing::info!(user = %u, "adopted the user of an instance that left; restoring the session");
                    if let Some(l) = gw.leases.as_mut() {
                        l.held.insert(u.clone());
                    }
                    if gw.allowed(&u) {
                        gw.ensure_session(&u);
                    }
                    gw.lease_replay(&u);
                }
            },
        );
    }
}

impl Gateway {
    /// At shutdown: the stanzas that still wait for a lease cannot be
    /// served here any more; their senders are told to send them again.
    pub(super) fn leases_refuse_waiting(&mut self) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        let waiting: Vec<Waiting> = leases.waiting.drain().map(|(_, w)| w).collect();
        for s in waiting.into_iter().flat_map(|w| w.stanzas) {
            self.lease_refuse(
                s,
                DefinedCondition::RemoteServerTimeout,
                "This gateway instance is shutting down while your session was moving to it; send this again.",
            );
        }
    }
}

/// The sender of a stanza, as the gate sees it (tests).
#[cfg(test)]
pub(crate) fn sender_of(s: &Stanza, domain: &str) -> Option<UserId> {
    sender(s, domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::jid::Jid;
    use xmpp_parsers::message::Message;
    use xmpp_parsers::presence::{Presence, Type};

    #[test]
    fn only_users_stanzas_wait_for_a_lease() {
        let user: Jid = "alice@localhost/phone".parse().unwrap();
        let server: Jid = "localhost".parse().unwrap();
        let own: Jid = "#chan@irc.localhost/nick".parse().unwrap();
        let mut m = Message::new(None);
        m.from = Some(user.clone());
        let m = Stanza::Message(m);
        assert_eq!(
            sender_of(&m, "irc.localhost"),
            Some(UserId::new("alice@localhost"))
        );
        let p = Stanza::Presence(Presence::new(Type::None).with_from(server));
        assert_eq!(sender_of(&p, "irc.localhost"), None);
        let p = Stanza::Presence(Presence::new(Type::None).with_from(own));
        assert_eq!(sender_of(&p, "irc.localhost"), None);
        let mut e = Message::new(None);
        e.from = Some(user);
        e.type_ = MessageType::Error;
        assert_eq!(sender_of(&Stanza::Message(e), "irc.localhost"), None);
    }
}
