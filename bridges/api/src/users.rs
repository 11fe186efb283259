//! The user router: how the bridge-wide part of a bridge (a webhook, a
//! shared connection) reaches the users it receives for, and who owns which
//! network address.
//!
//! A Twilio webhook, a Kannel callback or one SMPP bind receives messages
//! for many users. The bridge finds the user with [`UserRouter::owner`] and
//! hands the events to [`UserRouter::deliver`]: the core processes them as
//! if the user's own session had reported them (starting that session when
//! it is not running) and returns once they are stored, so a webhook
//! answers 200 only for what will not be lost. Users who are offline get
//! the messages from their XMPP server's offline storage.
//!
//! The core implements [`Users`]; [`MemoryUsers`] is an implementation in
//! memory for a bridge's own tests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::Event;
use crate::id::UserId;
use crate::network::StoreError;

/// Why events could not be handed to a user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The user has not registered with a bridge that needs registration.
    #[error("{0} is not registered with this gateway")]
    NotRegistered(UserId),
    /// The operator's access list does not admit the user.
    #[error("{0} is not allowed to use this gateway")]
    NotAllowed(UserId),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Closed,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the core does for a [`UserRouter`] (implemented by the core, and by
/// [`MemoryUsers`] for tests).
#[async_trait::async_trait]
pub trait Users: Send + Sync + 'static {
    /// See [`UserRouter::deliver`].
    async fn deliver(&self, user: &UserId, events: Vec<Event>) -> Result<(), RouteError>;
    /// See [`UserRouter::owner`].
    async fn owner(&self, address: &str) -> Result<Option<UserId>, StoreError>;
    /// See [`UserRouter::set_owner`].
    async fn set_owner(&self, address: &str, owner: Option<&UserId>) -> Result<(), StoreError>;
    /// See [`UserRouter::owned_by`].
    async fn owned_by(&self, user: &UserId) -> Result<Vec<String>, StoreError>;
    /// See [`UserRouter::registered`].
    fn registered(&self) -> Vec<UserId>;
}

/// Reaches users' sessions from the bridge-wide part of a bridge. Cheap to
/// clone.
#[derive(Clone)]
pub struct UserRouter(Arc<dyn Users>);

impl fmt::Debug for UserRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserRouter")
    }
}

impl UserRouter {
    /// Wraps an implementation.
    pub fn new(users: Arc<dyn Users>) -> UserRouter {
        UserRouter(users)
    }

    /// Hands events to the core as the user's own session would (starting
    /// the session when it is not running) and returns once the core has
    /// processed and stored them: answer a webhook only after this.
    /// Works for users who are offline.
    pub async fn deliver(&self, user: &UserId, events: Vec<Event>) -> Result<(), RouteError> {
        self.0.deliver(user, events).await
    }

    /// Who owns a network address (a phone number), as recorded by
    /// [`UserRouter::set_owner`].
    pub async fn owner(&self, address: &str) -> Result<Option<UserId>, StoreError> {
        self.0.owner(address).await
    }

    /// Records (or, with None, forgets) who owns a network address. An
    /// address has one owner at most; setting another replaces it.
    pub async fn set_owner(&self, address: &str, owner: Option<&UserId>) -> Result<(), StoreError> {
        self.0.set_owner(address, owner).await
    }

    /// The addresses a user owns, sorted.
    pub async fn owned_by(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        self.0.owned_by(user).await
    }

    /// The registered users.
    pub fn registered(&self) -> Vec<UserId> {
        self.0.registered()
    }
}

#[derive(Debug, Default)]
struct Memory {
    registered: Vec<UserId>,
    owners: BTreeMap<String, UserId>,
    delivered: Vec<(UserId, Event)>,
}

/// A [`Users`] in memory, for a bridge's tests: every user counts as
/// registered unless [`MemoryUsers::register`] named some; delivered events
/// are kept in order.
#[derive(Clone, Debug, Default)]
pub struct MemoryUsers(Arc<Mutex<Memory>>);

impl MemoryUsers {
    /// The memory and a router that writes to it.
    pub fn new() -> (MemoryUsers, UserRouter) {
        let users = MemoryUsers::default();
        let router = UserRouter::new(Arc::new(users.clone()));
        (users, router)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Memory>, StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError("the in-memory users were poisoned by a panic".into()))
    }

    /// Declares the registered users (the others are refused).
    pub fn register(&self, user: &UserId) {
        if let Ok(mut m) = self.lock() {
            m.registered.push(user.clone());
        }
    }

    /// Everything delivered so far, in order.
    pub fn delivered(&self) -> Vec<(UserId, Event)> {
        self.lock().map(|m| m.delivered.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Users for MemoryUsers {
    async fn deliver(&self, user: &UserId, events: Vec<Event>) -> Result<(), RouteError> {
        let mut m = self.lock()?;
        if !m.registered.is_empty() && !m.registered.contains(user) {
            return Err(RouteError::NotRegistered(user.clone()));
        }
        m.delivered
            .extend(events.into_iter().map(|e| (user.clone(), e)));
        Ok(())
    }

    async fn owner(&self, address: &str) -> Result<Option<UserId>, StoreError> {
        Ok(self.lock()?.owners.get(address).cloned())
    }

    async fn set_owner(&self, address: &str, owner: Option<&UserId>) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        match owner {
            Some(u) => m.owners.insert(address.to_owned(), u.clone()),
            None => m.owners.remove(address),
        };
        Ok(())
    }

    async fn owned_by(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .lock()?
            .owners
            .iter()
            .filter(|(_, u)| *u == user)
            .map(|(a, _)| a.clone())
            .collect())
    }

    fn registered(&self) -> Vec<UserId> {
        self.lock()
            .map(|m| m.registered.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_users_record_deliveries_and_owners() {
        let (users, router) = MemoryUsers::new();
        let alice = UserId::new("alice@example.org");
        router
            .deliver(&alice, vec![Event::Notice("hi".into())])
            .await
            .expect("delivered");
        assert_eq!(
            users.delivered(),
            vec![(alice.clone(), Event::Notice("hi".into()))]
        );
        router
            .set_owner("+15551234567", Some(&alice))
            .await
            .expect("set");
        assert_eq!(
            router.owner("+15551234567").await.expect("read"),
            Some(alice.clone())
        );
        assert_eq!(
            router.owned_by(&alice).await.expect("read"),
            vec!["+15551234567".to_owned()]
        );
        router.set_owner("+15551234567", None).await.expect("unset");
        assert_eq!(router.owner("+15551234567").await.expect("read"), None);

        users.register(&alice);
        let bob = UserId::new("bob@example.org");
        assert_eq!(
            router.deliver(&bob, vec![]).await,
            Err(RouteError::NotRegistered(bob))
        );
        assert_eq!(router.registered(), vec![alice]);
    }
}
