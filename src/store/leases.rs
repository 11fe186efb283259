//! Leases: which ferry instance owns a user's network sessions, when several
//! instances serve one component domain from one shared database.
//!
//! A lease row names its owner and when it expires; the owner renews all of
//! its rows at once, often (see [`crate::gateway::leases`]). An instance that
//! wants a user takes the row if it is free or expired, else marks itself in
//! `wanted_by` so that the owner hands it over. Every operation is one
//! statement or one read-modify-write in the writer's immediate transaction,
//! so two instances never both believe they took a row. The `instances`
//! table holds each instance's heartbeat: the outbox stanzas of an instance
//! whose heartbeat expired are taken and sent by a survivor.
//!
//! Times are unix milliseconds of the machines' clocks (instances of one
//! cluster need synchronised clocks, to well under the lease timeout).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use ferry_bridge::{StoreError, UserId};

use super::Store;
use super::sql::{Stmt, params};

/// What asking for a user's lease gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This instance owns it now (or already did).
    Taken,
    /// Another live instance owns it; it was asked to hand it over.
    Held {
        /// The owner.
        owner: String,
    },
}

/// What one renewal of an instance's leases found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renewal {
    /// The users whose lease this instance still owns.
    pub owned: Vec<UserId>,
    /// Of those, the ones another instance asked for.
    pub wanted: Vec<UserId>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Takes the row of `jid` for `me` until `until` if it is free, expired
/// (before `now`) or already `me`'s: one atomic statement.
fn take(jid: &str, me: &str, until: i64, now: i64) -> Stmt {
    Stmt::new(
        "INSERT INTO leases (jid, owner, expires, wanted_by) VALUES (?1, ?2, ?3, '')
         ON CONFLICT (jid) DO UPDATE SET owner = ?2, expires = ?3, wanted_by = ''
         WHERE leases.owner = '' OR leases.owner = ?2 OR leases.expires <= ?4",
        params![jid, me, until, now],
    )
}

/// Takes the row of `jid` for `me` like [`take`], but only when no other
/// instance asked for it: a user handed over to an instance that asked is
/// not adopted back by the one that let it go.
fn take_unwanted(jid: &str, me: &str, until: i64, now: i64) -> Stmt {
    Stmt::new(
        "INSERT INTO leases (jid, owner, expires, wanted_by) VALUES (?1, ?2, ?3, '')
         ON CONFLICT (jid) DO UPDATE SET owner = ?2, expires = ?3, wanted_by = ''
         WHERE (leases.owner = '' OR leases.owner = ?2 OR leases.expires <= ?4)
           AND (leases.wanted_by = '' OR leases.wanted_by = ?2)",
        params![jid, me, until, now],
    )
}

impl Store {
    fn lease_owners(&self, instance: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.query_map(
            "reading leases",
            Stmt::new(
                "SELECT jid, wanted_by FROM leases WHERE owner = ?1",
                params![instance],
            ),
            |r| Ok((r.text(0)?, r.text(1)?)),
        )
    }

    /// Takes `user`'s lease for `instance` for `ttl` if it is free, expired
    /// or already ours; otherwise records that `instance` wants it (durable
    /// on return).
    pub fn lease_claim(
        &self,
        user: &UserId,
        instance: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let now = now_ms();
        self.write_wait(
            "claiming a lease",
            vec![
                take(user.as_str(), instance, now + ms(ttl), now),
                Stmt::new(
                    "UPDATE leases SET wanted_by = ?2 WHERE jid = ?1 AND owner <> ?2",
                    params![user.as_str(), instance],
                ),
            ],
        )?;
        let owner = self
            .query_opt(
                "reading a lease",
                Stmt::new(
                    "SELECT owner FROM leases WHERE jid = ?1",
                    params![user.as_str()],
                ),
                |r| r.text(0),
            )?
            .unwrap_or_default();
        Ok(if owner == instance {
            Claim::Taken
        } else {
            Claim::Held { owner }
        })
    }

    /// Takes the leases among `users` that nobody holds (free, or expired:
    /// their owner died) and no other instance asked for, for `instance`;
    /// returns the ones taken. A user without a lease row counts as free.
    pub fn lease_adopt(
        &self,
        users: Vec<UserId>,
        instance: &str,
        ttl: Duration,
    ) -> Result<Vec<UserId>, StoreError> {
        let now = now_ms();
        self.write_wait(
            "adopting leases",
            users
                .iter()
                .map(|u| take_unwanted(u.as_str(), instance, now + ms(ttl), now))
                .collect(),
        )?;
        let owned: HashSet<String> = self
            .lease_owners(instance)?
            .into_iter()
            .map(|(jid, _)| jid)
            .collect();
        Ok(users
            .into_iter()
            .filter(|u| owned.contains(u.as_str()))
            .collect())
    }

    /// Extends every lease `instance` owns by `ttl` and its heartbeat;
    /// says which it still owns and which are wanted elsewhere.
    pub fn lease_renew(&self, instance: &str, ttl: Duration) -> Result<Renewal, StoreError> {
        let until = now_ms() + ms(ttl);
        self.write_wait(
            "renewing leases",
            vec![
                Stmt::new(
                    "UPDATE leases SET expires = ?2 WHERE owner = ?1",
                    params![instance, until],
                ),
                Stmt::new(
                    "INSERT INTO instances (name, expires) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET expires = ?2",
                    params![instance, until],
                ),
            ],
        )?;
        let mut out = Renewal::default();
        for (jid, wanted_by) in self.lease_owners(instance)? {
            let user = UserId::new(jid);
            if !wanted_by.is_empty() && wanted_by != instance {
                out.wanted.push(user.clone());
            }
            out.owned.push(user);
        }
        Ok(out)
    }

    /// Gives `user`'s lease back (if `instance` still owns it): the next
    /// claim takes it at once.
    pub fn lease_release(&self, user: &UserId, instance: &str) -> Result<(), StoreError> {
        self.write_wait(
            "releasing a lease",
            vec![Stmt::new(
                "UPDATE leases SET owner = '', expires = 0 WHERE jid = ?1 AND owner = ?2",
                params![user.as_str(), instance],
            )],
        )
    }

    /// Gives back every lease of `instance` and ends its heartbeat (a clean
    /// shutdown): the survivors adopt the users and the outbox at once.
    pub fn lease_release_all(&self, instance: &str) -> Result<(), StoreError> {
        self.write_wait(
            "releasing every lease",
            vec![
                Stmt::new(
                    "UPDATE leases SET owner = '', expires = 0 WHERE owner = ?1",
                    params![instance],
                ),
                Stmt::new(
                    "UPDATE instances SET expires = 0 WHERE name = ?1",
                    params![instance],
                ),
            ],
        )
    }

    /// Takes (removes and returns, oldest first, at most `limit`) the
    /// outbox stanzas of instances whose heartbeat expired, for `instance`
    /// to send; an expired instance with nothing left is forgotten. The
    /// rows first move, in one statement, under a name of this instance's
    /// own, so that two survivors never send the same stanza.
    pub fn outbox_take_dead(
        &self,
        instance: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let taking = format!("{instance}/adopted");
        self.write_wait(
            "taking the outbox of a dead instance",
            vec![
                Stmt::new(
                    "UPDATE outbox SET instance = ?3 WHERE instance IN
                       (SELECT name FROM instances WHERE expires <= ?2 AND name <> ?1)",
                    params![instance, now, taking.as_str()],
                ),
                Stmt::new(
                    "DELETE FROM instances WHERE expires <= ?2 AND name <> ?1
                       AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.instance = instances.name)",
                    params![instance, now],
                ),
            ],
        )?;
        let rows = self.query_map(
            "reading an adopted outbox",
            Stmt::new(
                "SELECT seq, stanza FROM outbox WHERE instance = ?1 ORDER BY seq LIMIT ?2",
                params![taking.as_str(), limit as i64],
            ),
            |r| Ok((r.int(0)?, r.text(1)?)),
        )?;
        if let Some((last, _)) = rows.last() {
            self.write_wait(
                "removing an adopted outbox",
                vec![Stmt::new(
                    "DELETE FROM outbox WHERE instance = ?1 AND seq <= ?2",
                    params![taking.as_str(), *last],
                )],
            )?;
        }
        Ok(rows.into_iter().map(|(_, s)| s).collect())
    }

    /// The owner of `user`'s lease, if it is held and not expired.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn lease_owner(&self, user: &UserId) -> Result<Option<String>, StoreError> {
        self.query_opt(
            "reading a lease",
            Stmt::new(
                "SELECT owner FROM leases WHERE jid = ?1 AND owner <> '' AND expires > ?2",
                params![user.as_str(), now_ms()],
            ),
            |r| r.text(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{test_pg_url, unique_bridge};
    use crate::store::{Key, Location};
    use std::sync::Arc;

    /// Two stores (two instances) on one database of each backend.
    fn two(location: Location, dir: &tempfile::TempDir) -> (Store, Store) {
        let key = Arc::new(Key::load_or_create(&dir.path().join("ferry.key")).unwrap());
        (
            Store::open_at(&location, key.clone()).unwrap(),
            Store::open_at(&location, key).unwrap(),
        )
    }

    fn sqlite(dir: &tempfile::TempDir) -> Location {
        Location::Sqlite(dir.path().join("t.db"))
    }

    fn postgres(_: &tempfile::TempDir) -> Location {
        Location::Postgres {
            url: test_pg_url(),
            bridge: unique_bridge("lease"),
            ca_file: None,
        }
    }

    #[test]
    fn one_owner_at_a_time_and_handover_on_request_sqlite() {
        one_owner_at_a_time_and_handover_on_request(sqlite)
    }

    #[test]
    fn one_owner_at_a_time_and_handover_on_request_postgres() {
        one_owner_at_a_time_and_handover_on_request(postgres)
    }

    #[test]
    fn expired_leases_and_outboxes_go_to_a_survivor_sqlite() {
        expired_leases_and_outboxes_go_to_a_survivor(sqlite)
    }

    #[test]
    fn expired_leases_and_outboxes_go_to_a_survivor_postgres() {
        expired_leases_and_outboxes_go_to_a_survivor(postgres)
    }

    fn one_owner_at_a_time_and_handover_on_request(at: fn(&tempfile::TempDir) -> Location) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two(at(&dir), &dir);
        let u = UserId::new("u@localhost");
        let ttl = Duration::from_secs(10);
        assert_eq!(a.lease_claim(&u, "a", ttl).unwrap(), Claim::Taken);
        assert_eq!(
            b.lease_claim(&u, "b", ttl).unwrap(),
            Claim::Held { owner: "a".into() }
        );
        let r = a.lease_renew("a", ttl).unwrap();
        assert_eq!(r.owned, vec![u.clone()]);
        assert_eq!(r.wanted, vec![u.clone()]);
        // b cannot adopt a live lease
        assert!(b.lease_adopt(vec![u.clone()], "b", ttl).unwrap().is_empty());
        a.lease_release(&u, "a").unwrap();
        // the user b asked for is not adopted back by a
        assert!(a.lease_adopt(vec![u.clone()], "a", ttl).unwrap().is_empty());
        assert_eq!(b.lease_claim(&u, "b", ttl).unwrap(), Claim::Taken);
        assert_eq!(b.lease_owner(&u).unwrap().as_deref(), Some("b"));
        let r = a.lease_renew("a", ttl).unwrap();
        assert!(r.owned.is_empty());
        // a's late release does not free b's lease
        a.lease_release(&u, "a").unwrap();
        assert_eq!(b.lease_owner(&u).unwrap().as_deref(), Some("b"));
    }

    fn expired_leases_and_outboxes_go_to_a_survivor(at: fn(&tempfile::TempDir) -> Location) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two(at(&dir), &dir);
        a.set_instance("a");
        b.set_instance("b");
        let u = UserId::new("u@localhost");
        assert_eq!(
            a.lease_claim(&u, "a", Duration::from_millis(1)).unwrap(),
            Claim::Taken
        );
        a.lease_renew("a", Duration::from_millis(1)).unwrap();
        a.outbox_push(&["<message/>".into()]).unwrap();
        assert_eq!(b.outbox_len().unwrap(), 0);
        assert_eq!(a.outbox_len().unwrap(), 1);
        std::thread::sleep(Duration::from_millis(5));
        b.lease_renew("b", Duration::from_secs(10)).unwrap();
        assert_eq!(
            b.lease_adopt(vec![u.clone()], "b", Duration::from_secs(10))
                .unwrap(),
            vec![u.clone()]
        );
        assert_eq!(
            b.outbox_take_dead("b", 10).unwrap(),
            vec!["<message/>".to_owned()]
        );
        assert_eq!(a.outbox_len().unwrap(), 0);
        assert!(b.outbox_take_dead("b", 10).unwrap().is_empty());
    }
}
