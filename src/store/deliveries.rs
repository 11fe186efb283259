//! Messages of users the network reported on, or will: kept in the
//! database so that a report that arrives after a restart still finds the
//! XMPP message it is about (to send its XEP-0184 receipt, or an error on
//! its stanza id).
//!
//! A message sent in several parts (a long SMS) has one row per part; it
//! counts as delivered when the last part is, and as failed as soon as one
//! part fails. A delivered part stays, marked, until it expires ([`KEEP`]):
//! some networks report a failure after they confirmed the message (an
//! email bounce comes after the submission server accepted the mail), and
//! that failure still becomes an error on the original stanza id.

use std::time::{Duration, SystemTime};

use ferry_bridge::{StoreError, UserId};

use super::Store;
use super::sql::{Stmt, params};

/// A message waiting for its delivery report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The stanza id of the user's message.
    pub xmpp_id: String,
    /// The JID the user wrote to (receipts and errors come from it).
    pub peer: String,
    /// The full JID of the user's client that sent it (errors go to it).
    pub client: String,
    /// Whether the user asked for a receipt.
    pub receipt: bool,
    /// Whether this report settles the message: its last part delivered,
    /// or a part failed.
    pub settled: bool,
}

/// How long a sent message is remembered (answered or not).
pub const KEEP: Duration = Duration::from_secs(14 * 24 * 3600);

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Records a sent message's network ids, each with whether the network
    /// already confirmed it (batched write).
    pub fn deliveries_add(
        &self,
        user: &UserId,
        chat: &str,
        sent: &Pending,
        parts: &[(String, bool)],
    ) {
        let now = unix(SystemTime::now());
        self.write(
            "recording a message awaiting delivery",
            parts
                .iter()
                .map(|(id, delivered)| {
                    Stmt::new(
                        "INSERT INTO deliveries
                         (jid, chat, foreign_id, xmpp_id, peer, client, receipt, created, delivered)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (jid, chat, foreign_id) DO UPDATE SET
                             xmpp_id = excluded.xmpp_id, peer = excluded.peer,
                             client = excluded.client, receipt = excluded.receipt,
                             created = excluded.created, delivered = excluded.delivered",
                        params![
                            user.as_str(),
                            chat,
                            id.as_str(),
                            sent.xmpp_id.as_str(),
                            sent.peer.as_str(),
                            sent.client.as_str(),
                            sent.receipt,
                            now,
                            *delivered
                        ],
                    )
                })
                .collect(),
        );
    }

    /// One part of a message was delivered: marks it and tells whether the
    /// whole message now is. None when no message waits for this id (or
    /// the part was already reported delivered).
    pub fn delivery_done(
        &self,
        user: &UserId,
        chat: &str,
        foreign_id: &str,
    ) -> Result<Option<Pending>, StoreError> {
        self.delivery_settle(user, chat, foreign_id, false)
    }

    /// One part of a message failed (even after it was reported
    /// delivered): forgets every part of it. None when no message has this
    /// id.
    pub fn delivery_failed(
        &self,
        user: &UserId,
        chat: &str,
        foreign_id: &str,
    ) -> Result<Option<Pending>, StoreError> {
        self.delivery_settle(user, chat, foreign_id, true)
    }

    fn delivery_settle(
        &self,
        user: &UserId,
        chat: &str,
        foreign_id: &str,
        failed: bool,
    ) -> Result<Option<Pending>, StoreError> {
        let found = self.query_opt(
            "looking up a message awaiting delivery",
            Stmt::new(
                "SELECT d.xmpp_id, d.peer, d.client, d.receipt,
                        (SELECT COUNT(*) FROM deliveries o
                         WHERE o.jid = d.jid AND o.chat = d.chat AND o.xmpp_id = d.xmpp_id
                           AND NOT o.delivered)
                 FROM deliveries d WHERE d.jid = ?1 AND d.chat = ?2 AND d.foreign_id = ?3
                   AND (?4 OR NOT d.delivered)",
                params![user.as_str(), chat, foreign_id, failed],
            ),
            |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.bool(3)?, r.int(4)?)),
        )?;
        let Some((xmpp_id, peer, client, receipt, parts)) = found else {
            return Ok(None);
        };
        if failed {
            self.delivery_forget_message(user, chat, &xmpp_id);
        } else {
            self.delivery_mark_delivered(user, chat, foreign_id);
        }
        Ok(Some(Pending {
            xmpp_id,
            peer,
            client,
            receipt,
            settled: failed || parts <= 1,
        }))
    }

    /// Marks one part of a message delivered (batched write; also for a
    /// report the core settled from memory). The row stays until it
    /// expires, for a failure reported later.
    pub fn delivery_mark_delivered(&self, user: &UserId, chat: &str, foreign_id: &str) {
        self.write(
            "marking a message delivered",
            vec![Stmt::new(
                "UPDATE deliveries SET delivered = TRUE
                 WHERE jid = ?1 AND chat = ?2 AND foreign_id = ?3",
                params![user.as_str(), chat, foreign_id],
            )],
        );
    }

    /// Forgets every part of a message (batched write).
    pub fn delivery_forget_message(&self, user: &UserId, chat: &str, xmpp_id: &str) {
        self.write(
            "forgetting a failed message",
            vec![Stmt::new(
                "DELETE FROM deliveries WHERE jid = ?1 AND chat = ?2 AND xmpp_id = ?3",
                params![user.as_str(), chat, xmpp_id],
            )],
        );
    }

    /// Forgets messages sent longer than [`KEEP`] ago (batched write).
    pub fn deliveries_expire(&self) {
        let before = unix(SystemTime::now()) - KEEP.as_secs() as i64;
        self.write(
            "forgetting old sent messages",
            vec![Stmt::new(
                "DELETE FROM deliveries WHERE created < ?1",
                params![before],
            )],
        );
    }

    /// Who owns a network address.
    pub fn owner(&self, address: &str) -> Result<Option<UserId>, StoreError> {
        self.query_opt(
            "looking up an address owner",
            Stmt::new(
                "SELECT jid FROM owners WHERE address = ?1",
                params![address],
            ),
            |r| r.text(0).map(UserId::new),
        )
    }

    /// Records (or forgets, with None) who owns a network address. Durable
    /// on return.
    pub fn set_owner(&self, address: &str, owner: Option<&UserId>) -> Result<(), StoreError> {
        let stmt = match owner {
            Some(jid) => Stmt::new(
                "INSERT INTO owners (address, jid) VALUES (?1, ?2)
                 ON CONFLICT (address) DO UPDATE SET jid = excluded.jid",
                params![address, jid.as_str()],
            ),
            None => Stmt::new("DELETE FROM owners WHERE address = ?1", params![address]),
        };
        self.write_wait("recording an address owner", vec![stmt])
    }

    /// The addresses a user owns, sorted.
    pub fn owned_by(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        self.query_map(
            "listing a user's addresses",
            Stmt::new(
                "SELECT address FROM owners WHERE jid = ?1 ORDER BY address",
                params![user.as_str()],
            ),
            |r| r.text(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{Key, Location};

    fn sent(receipt: bool) -> Pending {
        Pending {
            xmpp_id: "x1".into(),
            peer: "bob@gw".into(),
            client: "u@example.org/phone".into(),
            receipt,
            settled: false,
        }
    }

    fn parts(ids: &[&str]) -> Vec<(String, bool)> {
        ids.iter().map(|i| (i.to_string(), false)).collect()
    }

    /// A store of one backend and how to open it again.
    struct Db {
        _dir: tempfile::TempDir,
        key: Arc<Key>,
        location: Location,
    }

    impl Db {
        fn sqlite() -> Db {
            let dir = tempfile::tempdir().expect("tempdir");
            let key = Arc::new(Key::load_or_create(&dir.path().join("key")).expect("key"));
            let location = Location::Sqlite(dir.path().join("t.db"));
            Db {
                _dir: dir,
                key,
                location,
            }
        }

        fn postgres() -> Db {
            let dir = tempfile::tempdir().expect("tempdir");
            let key = Arc::new(Key::load_or_create(&dir.path().join("key")).expect("key"));
            let location = Location::Postgres {
                url: crate::store::tests::test_pg_url(),
                bridge: crate::store::tests::unique_bridge("d"),
                ca_file: None,
            };
            Db {
                _dir: dir,
                key,
                location,
            }
        }

        fn open(&self) -> Store {
            Store::open_at(&self.location, self.key.clone()).expect("store")
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            if let Location::Postgres { url, bridge, .. } = &self.location {
                crate::store::postgres::drop_schema(url, bridge);
            }
        }
    }

    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod with_sqlite {
                $(#[test] fn $name() { super::$name(super::Db::sqlite()) })*
            }
            mod with_postgres {
                $(#[test] fn $name() { super::$name(super::Db::postgres()) })*
            }
        };
    }

    on_both_backends!(
        a_split_message_is_delivered_with_its_last_part_and_survives_a_reopen,
        a_failed_part_settles_the_whole_message,
        a_failure_after_delivery_still_finds_the_message_once,
        owners_are_one_per_address,
    );

    fn a_split_message_is_delivered_with_its_last_part_and_survives_a_reopen(db: Db) {
        let store = db.open();
        let u = UserId::new("u@example.org");
        store.deliveries_add(&u, "c/bob", &sent(true), &parts(&["p1", "p2"]));
        drop(store);
        let store = db.open();
        let first = store.delivery_done(&u, "c/bob", "p1").expect("read");
        assert_eq!(
            first,
            Some(Pending {
                settled: false,
                ..sent(true)
            })
        );
        let last = store.delivery_done(&u, "c/bob", "p2").expect("read");
        assert!(last.is_some_and(|p| p.settled));
        assert_eq!(store.delivery_done(&u, "c/bob", "p2").expect("read"), None);
    }

    fn a_failed_part_settles_the_whole_message(db: Db) {
        let store = db.open();
        let u = UserId::new("u@example.org");
        store.deliveries_add(&u, "c/bob", &sent(false), &parts(&["p1", "p2"]));
        let failed = store.delivery_failed(&u, "c/bob", "p2").expect("read");
        assert!(failed.is_some_and(|p| p.settled && !p.receipt));
        assert_eq!(store.delivery_done(&u, "c/bob", "p1").expect("read"), None);
    }

    fn a_failure_after_delivery_still_finds_the_message_once(db: Db) {
        let store = db.open();
        let u = UserId::new("u@example.org");
        store.deliveries_add(&u, "c/bob", &sent(true), &[("m1".into(), true)]);
        store.deliveries_add(&u, "c/bob", &sent(true), &[("m2".into(), false)]);
        assert!(
            store
                .delivery_done(&u, "c/bob", "m1")
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .delivery_done(&u, "c/bob", "m2")
                .expect("read")
                .is_some()
        );
        assert!(
            store
                .delivery_done(&u, "c/bob", "m2")
                .expect("read")
                .is_none()
        );
        let failed = store.delivery_failed(&u, "c/bob", "m2").expect("read");
        assert_eq!(
            failed,
            Some(Pending {
                settled: true,
                ..sent(true)
            })
        );
        assert_eq!(
            store.delivery_failed(&u, "c/bob", "m2").expect("read"),
            None
        );
    }

    fn owners_are_one_per_address(db: Db) {
        let store = db.open();
        let (a, b) = (UserId::new("a@x"), UserId::new("b@x"));
        store.set_owner("+1555", Some(&a)).expect("set");
        store.set_owner("+1666", Some(&a)).expect("set");
        assert_eq!(store.owned_by(&a).expect("list"), vec!["+1555", "+1666"]);
        store.set_owner("+1555", Some(&b)).expect("set");
        assert_eq!(store.owner("+1555").expect("get"), Some(b.clone()));
        assert_eq!(store.owned_by(&a).expect("list"), vec!["+1666"]);
        store.set_owner("+1666", None).expect("unset");
        assert_eq!(store.owner("+1666").expect("get"), None);
    }
}
