//! Tests of the store against real SQLite files in a temporary directory,
//! and (the same tests, through [`on_both_backends`]) against a real
//! PostgreSQL: `FERRY_TEST_PG_URL` (peers.env of the `postgres` peer), a
//! schema of its own per test.

use std::time::Instant;

use rusqlite::Connection;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    key: Arc<Key>,
    location: Location,
}

/// Runs each test function (taking a [`Fixture`]) once per backend:
/// `with_sqlite::NAME` and `with_postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod with_sqlite {
            $(#[test] fn $name() { super::$name(super::Fixture::new()) })*
        }
        mod with_postgres {
            $(#[test] fn $name() { super::$name(super::Fixture::postgres()) })*
        }
    };
}

on_both_backends!(
    accounts_are_sealed_and_survive_a_restart,
    a_wrong_key_is_detected,
    reads_see_every_write_issued_before_them,
    queued_writes_share_one_transaction,
    a_failing_write_does_not_take_the_batch_down,
    batched_writes_are_committed_when_the_store_is_dropped,
    key_value_spaces_are_separate,
    sealed_values_are_encrypted_and_bound_to_their_row,
    preferences_round_trip_and_replace,
    archive_pages_forward_and_backward,
    archive_filters,
    archive_ids_grow_across_restarts,
    roster_items,
    unregister_removes_everything_of_the_user,
    outbox_keeps_order,
    a_write_returns_the_rows_it_asks_for,
);

mod bench {
    #[test]
    #[ignore = "benchmark: run on demand"]
    fn bench_store_archive_inserts_sqlite() {
        super::bench_store_archive_inserts(super::Fixture::new())
    }

    #[test]
    #[ignore = "benchmark: run on demand"]
    fn bench_store_archive_inserts_postgres() {
        super::bench_store_archive_inserts(super::Fixture::postgres())
    }
}

/// The PostgreSQL URL of the test peer.
pub(crate) fn test_pg_url() -> String {
    match std::env::var("FERRY_TEST_PG_URL") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "FERRY_TEST_PG_URL is not set: this test needs the real PostgreSQL. Start it with \
             PEERS=postgres contrib/peers/start-peers.sh DIR and `source DIR/peers.env` \
             (tests/run.sh does both)"
        ),
    }
}

/// A bridge name no other test uses (its own PostgreSQL schema).
pub(crate) fn unique_bridge(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Arc::new(Key::load_or_create(&dir.path().join("ferry.key")).expect("key"));
        let location = Location::Sqlite(dir.path().join("test.db"));
        Fixture { dir, key, location }
    }

    fn postgres() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Arc::new(Key::load_or_create(&dir.path().join("ferry.key")).expect("key"));
        let location = Location::Postgres {
            url: test_pg_url(),
            bridge: unique_bridge("t"),
            ca_file: None,
        };
        Fixture { dir, key, location }
    }

    fn backend(&self) -> &'static str {
        match self.location {
            Location::Sqlite(_) => "SQLite",
            Location::Postgres { .. } => "PostgreSQL",
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("test.db")
    }

    /// What the database holds, as bytes: the SQLite file and its WAL, or
    /// every stored secret and value of the PostgreSQL schema.
    fn raw_bytes(&self) -> Vec<Vec<u8>> {
        match &self.location {
            Location::Sqlite(path) => vec![
                std::fs::read(path).expect("db file"),
                std::fs::read(self.dir.path().join("test.db-wal")).unwrap_or_default(),
            ],
            Location::Postgres { .. } => {
                let store = self.open();
                let mut out = Vec::new();
                for sql in ["SELECT secret FROM users", "SELECT value FROM kv"] {
                    for row in store
                        .query("raw", sql::Stmt::new(sql, vec![]))
                        .expect("raw")
                    {
                        out.push(row.blob(0).expect("bytes"));
                    }
                }
                out
            }
        }
    }

    fn open(&self) -> Store {
        Store::open_at(&self.location, self.key.clone()).expect("open")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Location::Postgres { url, bridge, .. } = &self.location {
            postgres::drop_schema(url, bridge);
        }
    }
}

fn alice() -> UserId {
    UserId::new("alice@example.org")
}

fn bob() -> UserId {
    UserId::new("bob@example.org")
}

fn account(name: &str, secret: &[u8]) -> Account {
    Account {
        name: name.into(),
        secret: Secret(secret.to_vec()),
    }
}

impl Store {
    /// Keeps the writer from starting its next batch until the guard is
    /// dropped.
    fn pause_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        match self.inner.writer.gate.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

fn accounts_are_sealed_and_survive_a_restart(f: Fixture) {
    {
        let store = f.open();
        store
            .register(&alice(), &account("alice-irc", b"pa55word-of-alice"))
            .expect("register");
        let first = store.user(&alice()).expect("read").expect("registered");
        assert_eq!(first.account_name, "alice-irc");
        // Re-registering replaces the account, keeps the date.
        store
            .register(&alice(), &account("alice-new", b"pa55word-of-alice-2"))
            .expect("register again");
        let again = store.user(&alice()).expect("read").expect("registered");
        assert_eq!(again.registered_at, first.registered_at);
        assert_eq!(again.account_name, "alice-new");
        store
            .register(&bob(), &account("bob", b"bobsecret"))
            .expect("register");
    }
    for bytes in f.raw_bytes() {
        assert!(
            !bytes.windows(17).any(|w| w == b"pa55word-of-alice"),
            "secret stored in the clear"
        );
    }
    let store = f.open();
    let users = store.users().expect("users");
    assert_eq!(
        users.iter().map(|u| u.user.as_str()).collect::<Vec<_>>(),
        vec!["alice@example.org", "bob@example.org"]
    );
    assert_eq!(
        store.account(&alice()).expect("account"),
        Some(account("alice-new", b"pa55word-of-alice-2"))
    );
    assert_eq!(store.account(&UserId::new("nobody@x")).expect("ok"), None);
}

#[test]
fn a_sealed_secret_moved_to_another_user_does_not_open() {
    let f = Fixture::new();
    let store = f.open();
    store
        .register(&alice(), &account("a", b"alice-token"))
        .expect("register");
    store
        .register(&bob(), &account("b", b"bob-token"))
        .expect("register");
    drop(store);
    let conn = Connection::open(f.path()).expect("open");
    conn.execute(
        "UPDATE users SET secret = (SELECT secret FROM users WHERE jid = 'alice@example.org')
         WHERE jid = 'bob@example.org'",
        [],
    )
    .expect("swap");
    drop(conn);
    let store = f.open();
    let e = store.account(&bob()).expect_err("refused");
    assert!(e.0.contains("cannot decrypt"), "{e}");
    assert!(store.account(&alice()).expect("alice").is_some());
}

fn a_wrong_key_is_detected(f: Fixture) {
    f.open()
        .register(&alice(), &account("a", b"alice-token"))
        .expect("register");
    let other = Arc::new(Key::load_or_create(&f.dir.path().join("other.key")).expect("key"));
    let store = Store::open_at(&f.location, other).expect("open");
    assert!(store.account(&alice()).is_err());
}

fn reads_see_every_write_issued_before_them(f: Fixture) {
    let store = f.open();
    for i in 0..200 {
        store.map_message(&alice(), "#room", &format!("x{i}"), &format!("f{i}"));
        assert_eq!(
            store
                .foreign_id(&alice(), "#room", &format!("x{i}"))
                .expect("read"),
            Some(format!("f{i}"))
        );
    }
    store.set_roster_item(
        &alice(),
        &RosterItem {
            jid: "c@gw".into(),
            to_user: true,
            ..RosterItem::default()
        },
    );
    assert_eq!(store.roster(&alice()).expect("roster").len(), 1);
    // From another thread too.
    let s2 = store.clone();
    std::thread::spawn(move || s2.map_message(&bob(), "c", "x", "y"))
        .join()
        .expect("thread");
    assert_eq!(
        store.xmpp_id(&bob(), "c", "y").expect("read"),
        Some("x".into())
    );
}

fn queued_writes_share_one_transaction(f: Fixture) {
    let store = f.open();
    let before = store.stats();
    let release = store.pause_writer();
    for i in 0..1000 {
        store.map_message(&alice(), "chat", &format!("x{i}"), &format!("f{i}"));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    store
        .inner
        .writer
        .submit("marker", Vec::new(), Some(writer::Reply::Blocking(tx)))
        .expect("submit");
    drop(release);
    rx.recv().expect("reply").expect("committed");
    let after = store.stats();
    // One transaction for all 1000 writes and the marker.
    assert_eq!(after.commits - before.commits, 1, "{before:?} -> {after:?}");
    assert_eq!(after.writes - before.writes, 1000 + 1);
    assert_eq!(
        store.foreign_id(&alice(), "chat", "x999").expect("read"),
        Some("f999".into())
    );
}

fn a_failing_write_does_not_take_the_batch_down(f: Fixture) {
    let store = f.open();
    let release = store.pause_writer();
    store.map_message(&alice(), "chat", "a", "1");
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    store
        .inner
        .writer
        .submit(
            "a broken write",
            vec![sql::Stmt::new(
                "INSERT INTO no_such_table VALUES (1)",
                vec![],
            )],
            Some(writer::Reply::Blocking(tx)),
        )
        .expect("submit");
    store.map_message(&alice(), "chat", "b", "2");
    drop(release);
    let result = rx.recv().expect("reply");
    assert!(result.expect_err("failed").0.contains("a broken write"));
    assert_eq!(
        store.foreign_id(&alice(), "chat", "a").expect("read"),
        Some("1".into())
    );
    assert_eq!(
        store.foreign_id(&alice(), "chat", "b").expect("read"),
        Some("2".into())
    );
}

fn batched_writes_are_committed_when_the_store_is_dropped(f: Fixture) {
    {
        let store = f.open();
        for i in 0..50 {
            store.map_message(&alice(), "c", &format!("x{i}"), &format!("f{i}"));
        }
    }
    let store = f.open();
    assert_eq!(
        store.foreign_id(&alice(), "c", "x49").expect("read"),
        Some("f49".into())
    );
}

#[test]
fn migrates_from_version_1_and_keeps_data() {
    let f = Fixture::new();
    {
        let old =
            Store::open_at_version(&Location::Sqlite(f.path()), f.key.clone(), 1).expect("v1");
        old.register(&alice(), &account("a", b"s"))
            .expect("register");
        old.kv(KvScope::Bridge).put("k", b"v").expect("put");
    }
    let conn = Connection::open(f.path()).expect("open");
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, 1);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('archive', 'outbox')",
            [],
            |r| r.get(0),
        )
        .expect("tables");
    assert_eq!(tables, 0);
    drop(conn);

    let store = f.open();
    assert_eq!(
        store.account(&alice()).expect("account"),
        Some(account("a", b"s"))
    );
    assert_eq!(
        store.kv(KvScope::Bridge).get("k").expect("get"),
        Some(b"v".to_vec())
    );
    store.outbox_push(&["<message/>".into()]).expect("outbox");
    let id = store.new_archive_id();
    store.archive(entry(&alice(), "#r", &id, 1, "n"));
    assert_eq!(
        store
            .archive_last(&alice(), "#r")
            .expect("last")
            .map(|e| e.id),
        Some(id)
    );
    drop(store);
    let conn = Connection::open(f.path()).expect("open");
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, schema::LATEST as i64);
}

#[test]
fn refuses_a_database_from_a_newer_ferry() {
    let f = Fixture::new();
    drop(f.open());
    let conn = Connection::open(f.path()).expect("open");
    conn.pragma_update(None, "user_version", 99).expect("set");
    drop(conn);
    let e = Store::open(&f.path(), f.key.clone()).expect_err("refused");
    assert!(e.0.contains("newer"), "{e}");
}

#[test]
fn wal_mode_is_on() {
    let f = Fixture::new();
    let _store = f.open();
    let conn = Connection::open(f.path()).expect("open");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

fn key_value_spaces_are_separate(f: Fixture) {
    let store = f.open();
    let bridge = store.kv(KvScope::Bridge);
    let a = store.kv(KvScope::User(alice()));
    let b = store.kv(KvScope::User(bob()));
    bridge.put("token", b"bridge").expect("put");
    a.put("token", b"alice").expect("put");
    a.put("room/#a", b"1").expect("put");
    a.put("room/#b", b"2").expect("put");
    a.put("roomz", b"3").expect("put");
    assert_eq!(bridge.get("token").expect("get"), Some(b"bridge".to_vec()));
    assert_eq!(a.get("token").expect("get"), Some(b"alice".to_vec()));
    assert_eq!(b.get("token").expect("get"), None);
    assert_eq!(
        a.list("room/").expect("list"),
        vec![
            ("room/#a".to_owned(), b"1".to_vec()),
            ("room/#b".to_owned(), b"2".to_vec())
        ]
    );
    assert_eq!(a.list("").expect("list").len(), 4);
    a.delete("room/#a").expect("delete");
    assert_eq!(a.list("room/").expect("list").len(), 1);
    a.put("token", b"replaced").expect("put");
    assert_eq!(a.get("token").expect("get"), Some(b"replaced".to_vec()));
}

fn sealed_values_are_encrypted_and_bound_to_their_row(f: Fixture) {
    {
        let store = f.open();
        let a = store.kv(KvScope::User(alice()));
        let b = store.kv(KvScope::User(bob()));
        a.put_sealed("server/irc.x/secrets", b"nickserv-pa55word")
            .expect("put_sealed");
        assert_eq!(
            a.get_sealed("server/irc.x/secrets").expect("get_sealed"),
            Some(b"nickserv-pa55word".to_vec())
        );
        assert_eq!(a.get_sealed("missing").expect("get_sealed"), None);
        // The raw value is not the secret, and it does not open under
        // another key or in another user's space.
        let raw = a.get("server/irc.x/secrets").expect("get").expect("stored");
        assert!(!raw.windows(9).any(|w| w == b"pa55word"));
        b.put("server/irc.x/secrets", &raw).expect("copy");
        assert!(b.get_sealed("server/irc.x/secrets").is_err());
        a.put("other", &raw).expect("copy");
        assert!(a.get_sealed("other").is_err());
        // A value written in the clear is refused, not returned as is.
        a.put("plain", b"written in the clear").expect("put");
        assert!(a.get_sealed("plain").is_err());
        a.delete("plain").expect("delete");
        a.delete("other").expect("delete");
    }
    for bytes in f.raw_bytes() {
        assert!(
            !bytes.windows(17).any(|w| w == b"nickserv-pa55word"),
            "secret stored in the clear"
        );
    }
    let store = f.open();
    assert_eq!(
        store
            .kv(KvScope::User(alice()))
            .get_sealed("server/irc.x/secrets")
            .expect("reopened"),
        Some(b"nickserv-pa55word".to_vec())
    );
}

fn preferences_round_trip_and_replace(f: Fixture) {
    let store = f.open();
    assert!(store.preferences(&alice()).expect("prefs").is_empty());
    let mut v = FormValues::new();
    v.set_one("nick", "al");
    v.set("channels", vec!["#a".into(), "#b".into()]);
    store.set_preferences(&alice(), &v).expect("set");
    assert_eq!(store.preferences(&alice()).expect("prefs"), v);
    let w = FormValues::new().with("nick", "alice");
    store.set_preferences(&alice(), &w).expect("set");
    assert_eq!(store.preferences(&alice()).expect("prefs"), w);
    assert!(store.preferences(&bob()).expect("prefs").is_empty());
}

fn entry(user: &UserId, room: &str, id: &str, second: u64, nick: &str) -> ArchiveEntry {
    ArchiveEntry {
        user: user.clone(),
        room: room.into(),
        id: id.into(),
        timestamp: SystemTime::UNIX_EPOCH
            + Duration::from_nanos(1_700_000_000_000_000_000 + second * 1_000_000_000 + 123),
        nick: nick.into(),
        foreign_id: Some(format!("f-{id}")),
        stanza: format!("<message id='{id}'><body>{second}</body></message>"),
    }
}

/// Ten messages in #r (nicks alternate a/b), one in #other, one of bob's.
fn archive_fixture(store: &Store) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 1..=10u64 {
        let id = store.new_archive_id();
        store.archive(entry(
            &alice(),
            "#r",
            &id,
            i,
            if i % 2 == 0 { "b" } else { "a" },
        ));
        ids.push(id);
    }
    let id = store.new_archive_id();
    store.archive(entry(&alice(), "#other", &id, 5, "a"));
    let id = store.new_archive_id();
    store.archive(entry(&bob(), "#r", &id, 5, "a"));
    ids
}

fn page_ids(page: &ArchivePage) -> Vec<String> {
    page.items.iter().map(|e| e.id.clone()).collect()
}

fn archive_pages_forward_and_backward(f: Fixture) {
    let store = f.open();
    let ids = archive_fixture(&store);
    let q = ArchiveQuery {
        user: Some(alice()),
        room: "#r".into(),
        max: 3,
        ..ArchiveQuery::default()
    };
    // Forward from the start.
    let p = store.archive_query(&q).expect("query");
    assert_eq!(page_ids(&p), ids[0..3]);
    assert!(!p.complete);
    assert_eq!(p.count, 10);
    let mut after = p.items[2].id.clone();
    let mut seen = page_ids(&p);
    loop {
        let p = store
            .archive_query(&ArchiveQuery {
                after_id: Some(after.clone()),
                ..q.clone()
            })
            .expect("query");
        assert_eq!(p.count, 10);
        seen.extend(page_ids(&p));
        if p.complete {
            assert_eq!(page_ids(&p), ids[9..10]);
            break;
        }
        after = p.items.last().expect("items").id.clone();
    }
    assert_eq!(seen, ids);

    // The last page, then backwards.
    let p = store
        .archive_query(&ArchiveQuery {
            before_id: Some(String::new()),
            ..q.clone()
        })
        .expect("query");
    assert_eq!(page_ids(&p), ids[7..10]);
    assert!(!p.complete);
    let p = store
        .archive_query(&ArchiveQuery {
            before_id: Some(ids[7].clone()),
            ..q.clone()
        })
        .expect("query");
    assert_eq!(page_ids(&p), ids[4..7]);
    assert!(!p.complete);
    let p = store
        .archive_query(&ArchiveQuery {
            before_id: Some(ids[1].clone()),
            ..q.clone()
        })
        .expect("query");
    assert_eq!(page_ids(&p), ids[0..1]);
    assert!(p.complete);
    // Exactly a full page at the end is complete too.
    let p = store
        .archive_query(&ArchiveQuery {
            before_id: Some(ids[3].clone()),
            ..q.clone()
        })
        .expect("query");
    assert_eq!(page_ids(&p), ids[0..3]);
    assert!(p.complete);
    // Between two ids.
    let p = store
        .archive_query(&ArchiveQuery {
            after_id: Some(ids[2].clone()),
            before_id: Some(ids[6].clone()),
            max: 10,
            ..q.clone()
        })
        .expect("query");
    assert_eq!(page_ids(&p), ids[3..6]);
    assert!(p.complete);
}

fn archive_filters(f: Fixture) {
    let store = f.open();
    let ids = archive_fixture(&store);
    let base = ArchiveQuery {
        user: Some(alice()),
        room: "#r".into(),
        max: 100,
        ..ArchiveQuery::default()
    };
    let p = store
        .archive_query(&ArchiveQuery {
            with_nick: Some("b".into()),
            ..base.clone()
        })
        .expect("query");
    assert_eq!(p.count, 5);
    assert!(p.items.iter().all(|e| e.nick == "b"));
    assert!(p.complete);
    let t = |s: u64| {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + s * 1_000_000_000)
    };
    let p = store
        .archive_query(&ArchiveQuery {
            start: Some(t(3)),
            end: Some(t(6)),
            ..base.clone()
        })
        .expect("query");
    // Times are second + 123 ns: 3..=5 fall in [t(3), t(6)].
    assert_eq!(page_ids(&p), ids[2..5]);
    assert_eq!(p.count, 3);
    let p = store
        .archive_query(&ArchiveQuery {
            user: Some(bob()),
            ..base.clone()
        })
        .expect("query");
    assert_eq!(p.count, 1);
    let p = store
        .archive_query(&ArchiveQuery {
            user: None,
            ..base.clone()
        })
        .expect("query");
    assert_eq!(p.count, 11);
    let p = store
        .archive_query(&ArchiveQuery {
            max: 0,
            ..base.clone()
        })
        .expect("query");
    assert!(p.items.is_empty());
    assert_eq!(p.count, 10);
    assert!(!p.complete);
    let p = store
        .archive_query(&ArchiveQuery {
            room: "#empty".into(),
            ..base.clone()
        })
        .expect("query");
    assert!(p.items.is_empty() && p.complete && p.count == 0);
    // Entries come back exactly as stored.
    let first = &store.archive_query(&base).expect("query").items[0];
    assert_eq!(*first, entry(&alice(), "#r", &ids[0], 1, "a"));
}

fn archive_ids_grow_across_restarts(f: Fixture) {
    let last = {
        let store = f.open();
        let ids: Vec<String> = (0..1000).map(|_| store.new_archive_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "ids are unique and sorted");
        // An id from the future (a clock that went back since).
        let future = format_archive_id(now_micros() + 3_600_000_000);
        store.archive(entry(&alice(), "#r", &future, 1, "a"));
        future
    };
    let store = f.open();
    let next = store.new_archive_id();
    assert!(next > last, "{next} <= {last}");
    assert_eq!(
        store
            .archive_last(&alice(), "#r")
            .expect("last")
            .map(|e| e.id),
        Some(last)
    );
    assert_eq!(store.archive_last(&alice(), "#none").expect("last"), None);
}

fn roster_items(f: Fixture) {
    let store = f.open();
    let item = RosterItem {
        jid: "carol%irc.x@irc.example.org".into(),
        name: Some("Carol".into()),
        to_user: true,
        from_user: false,
        via: "privilege".into(),
    };
    store.set_roster_item(&alice(), &item);
    store.set_roster_item(
        &alice(),
        &RosterItem {
            jid: "dave@irc.example.org".into(),
            ..RosterItem::default()
        },
    );
    assert_eq!(store.roster(&alice()).expect("roster")[0], item);
    assert!(store.roster(&bob()).expect("roster").is_empty());
    let updated = RosterItem {
        from_user: true,
        ..item.clone()
    };
    store.set_roster_item(&alice(), &updated);
    store.remove_roster_item(&alice(), "dave@irc.example.org");
    assert_eq!(store.roster(&alice()).expect("roster"), vec![updated]);
}

fn unregister_removes_everything_of_the_user(f: Fixture) {
    let store = f.open();
    for u in [alice(), bob()] {
        store.register(&u, &account("x", b"y")).expect("register");
        store
            .set_preferences(&u, &FormValues::new().with("a", "b"))
            .expect("prefs");
        store
            .kv(KvScope::User(u.clone()))
            .put("k", b"v")
            .expect("kv");
        store.map_message(&u, "c", "x", "f");
        store.archive(entry(&u, "#r", &store.new_archive_id(), 1, "n"));
        store.set_roster_item(
            &u,
            &RosterItem {
                jid: "c@gw".into(),
                ..RosterItem::default()
            },
        );
    }
    store.kv(KvScope::Bridge).put("k", b"bridge").expect("kv");
    store.unregister(&alice()).expect("unregister");
    assert_eq!(store.user(&alice()).expect("user"), None);
    assert!(store.preferences(&alice()).expect("prefs").is_empty());
    assert_eq!(store.kv(KvScope::User(alice())).get("k").expect("kv"), None);
    assert_eq!(store.foreign_id(&alice(), "c", "x").expect("map"), None);
    assert_eq!(store.archive_last(&alice(), "#r").expect("archive"), None);
    assert!(store.roster(&alice()).expect("roster").is_empty());
    // Bob and the bridge keep theirs.
    assert!(store.user(&bob()).expect("user").is_some());
    assert_eq!(
        store.foreign_id(&bob(), "c", "x").expect("map"),
        Some("f".into())
    );
    assert_eq!(
        store.kv(KvScope::Bridge).get("k").expect("kv"),
        Some(b"bridge".to_vec())
    );
}

fn outbox_keeps_order(f: Fixture) {
    let store = f.open();
    store
        .outbox_push(&["<a/>".into(), "<b/>".into()])
        .expect("push");
    store.outbox_push(&["<c/>".into()]).expect("push");
    let all = store.outbox_peek(10).expect("peek");
    assert_eq!(
        all.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        ["<a/>", "<b/>", "<c/>"]
    );
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(store.outbox_len().expect("len"), 3);
    store.outbox_remove(all[1].0).expect("remove");
    assert_eq!(store.outbox_peek(10).expect("peek").len(), 1);
    store.outbox_push(&["<d/>".into()]).expect("push");
    let rest = store.outbox_peek(1).expect("peek");
    assert_eq!(rest[0].1, "<c/>");
    drop(store);
    let store = f.open();
    assert_eq!(
        store
            .outbox_peek(10)
            .expect("peek")
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>(),
        ["<c/>", "<d/>"]
    );
}

/// Write throughput, printed (run with `cargo test --release -- --ignored
/// --nocapture bench_store`; the PostgreSQL one needs FERRY_TEST_PG_URL).
fn bench_store_archive_inserts(f: Fixture) {
    println!("store bench: {}", f.backend());
    let store = f.open();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    for &n in &[10_000usize, 100_000] {
        let before = store.stats();
        let start = Instant::now();
        for i in 0..n {
            let id = store.new_archive_id();
            store.archive(ArchiveEntry {
                user: alice(),
                room: "#bench".into(),
                id,
                timestamp: SystemTime::now(),
                nick: format!("nick{}", i % 50),
                foreign_id: Some(format!("msg-{i}")),
                stanza: format!(
                    "<message xmlns='jabber:component:accept' type='groupchat' from='#bench%irc.example.org@irc.example.org/nick{}' to='alice@example.org'><body>message number {i} with some text in it</body></message>",
                    i % 50
                ),
            });
        }
        let queued = start.elapsed();
        rt.block_on(store.flush()).expect("flush");
        let total = start.elapsed();
        let after = store.stats();
        println!(
            "store bench: {n} archive inserts queued in {:.1} ms, committed in {:.1} ms ({:.0} inserts/s), {} commits",
            queued.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3,
            n as f64 / total.as_secs_f64(),
            after.commits - before.commits
        );
    }
    let start = Instant::now();
    let n = 1000;
    for i in 0..n {
        store.map_message(&alice(), "c", &format!("x{i}"), &format!("f{i}"));
        let _ = store
            .foreign_id(&alice(), "c", &format!("x{i}"))
            .expect("read");
    }
    println!(
        "store bench: {n} write+read-your-write pairs in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let start = Instant::now();
    for i in 0..n {
        store
            .kv(KvScope::Bridge)
            .put(&format!("k{i}"), b"value")
            .expect("put");
    }
    println!(
        "store bench: {n} durable kv puts (one commit each) in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
}

/// A TCP relay between the store and the test PostgreSQL that can be cut
/// (connections dropped, the port refusing) and restored on the same port:
/// the database going away and coming back, for this test's store alone.
struct Relay {
    port: u16,
    target: String,
    rt: tokio::runtime::Runtime,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    fn new(target: String) -> Relay {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut relay = Relay {
            port,
            target,
            rt,
            task: None,
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        self.task = Some(self.rt.spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                pipes.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Drops every relayed connection and stops listening.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = self.rt.block_on(task);
        }
    }

    fn restore(&mut self) {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .expect("rebind");
        self.serve(listener);
    }
}

#[test]
fn postgres_going_away_and_back_loses_nothing() {
    let url = test_pg_url();
    let config: tokio_postgres::Config = url.parse().expect("url");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut relay = Relay::new(format!("127.0.0.1:{port}"));
    let user = config.get_user().unwrap_or("ferry").to_owned();
    let db = config.get_dbname().unwrap_or("ferry").to_owned();
    let mut f = Fixture::postgres();
    let bridge = unique_bridge("outage");
    f.location = Location::Postgres {
        url: format!(
            "postgres://{user}@127.0.0.1:{}/{db}?sslmode=disable",
            relay.port
        ),
        bridge: bridge.clone(),
        ca_file: None,
    };
    let store = f.open();
    store
        .register(&alice(), &account("a", b"before"))
        .expect("register");

    relay.cut();
    // While the database is away: batched writes queue, a durable write
    // waits (it is not acknowledged), reads fail with a clear error.
    for i in 0..100 {
        store.archive(entry(&alice(), "#r", &format!("{i:016x}"), i, "n"));
    }
    let s2 = store.clone();
    let durable = std::thread::spawn(move || s2.kv(KvScope::Bridge).put("during", b"outage"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !durable.is_finished(),
        "a write was acknowledged while the database was away"
    );
    relay.restore();
    durable
        .join()
        .expect("thread")
        .expect("stored once the database is back");
    let page = store
        .archive_query(&ArchiveQuery {
            user: Some(alice()),
            room: "#r".into(),
            max: 1000,
            ..ArchiveQuery::default()
        })
        .expect("query");
    assert_eq!(page.count, 100);
    drop(store);
    // And all of it is in the database, not only in this process.
    let store = f.open();
    assert_eq!(
        store.kv(KvScope::Bridge).get("during").expect("get"),
        Some(b"outage".to_vec())
    );
    assert_eq!(
        store
            .archive_last(&alice(), "#r")
            .expect("last")
            .map(|e| e.id),
        Some(format!("{:016x}", 99))
    );
    assert_eq!(
        store.account(&alice()).expect("account"),
        Some(account("a", b"before"))
    );
    drop(store);
    drop(f);
    postgres::drop_schema(&url, &bridge);
}

#[test]
fn postgres_migrates_from_version_1_and_refuses_a_newer_schema() {
    let f = Fixture::postgres();
    {
        let old = Store::open_at_version(&f.location, f.key.clone(), 1).expect("v1");
        old.register(&alice(), &account("a", b"s"))
            .expect("register");
        old.kv(KvScope::Bridge).put("k", b"v").expect("put");
    }
    let store = f.open();
    assert_eq!(
        store.account(&alice()).expect("account"),
        Some(account("a", b"s"))
    );
    store.outbox_push(&["<message/>".into()]).expect("outbox");
    store.deliveries_add(
        &alice(),
        "c",
        &Pending {
            xmpp_id: "x".into(),
            peer: "p".into(),
            client: "c".into(),
            receipt: true,
            settled: false,
        },
        &[("f1".into(), false)],
    );
    assert!(
        store
            .delivery_done(&alice(), "c", "f1")
            .expect("read")
            .is_some_and(|p| p.settled && p.receipt)
    );
    drop(store);
    let Location::Postgres { url, bridge, .. } = &f.location else {
        unreachable!("a PostgreSQL fixture")
    };
    let (url, schema) = (url.clone(), postgres::schema_name(bridge));
    postgres::tests_execute(
        &url,
        &format!("UPDATE \"{schema}\".schema_version SET version = 99"),
    );
    let e = Store::open_at(&f.location, f.key.clone()).expect_err("refused");
    assert!(e.0.contains("newer"), "{e}");
}

/// A read-modify-write decided by one statement (as a lease claim is):
/// the rows come back once committed.
fn a_write_returns_the_rows_it_asks_for(f: Fixture) {
    let store = f.open();
    let claim = |who: &str| {
        store
            .write_rows(
                "claiming",
                vec![
                    sql::Stmt::new(
                        "INSERT INTO kv (scope, key, value) VALUES ('', 'owner', ?1)
                         ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value
                         WHERE kv.value = ?1 RETURNING value",
                        sql::params![who.as_bytes().to_vec()],
                    ),
                    sql::Stmt::new(
                        "SELECT value FROM kv WHERE scope = '' AND key = 'owner'",
                        vec![],
                    ),
                ],
            )
            .expect("claim")
            .iter()
            .map(|r| String::from_utf8(r.blob(0).expect("bytes")).expect("utf-8"))
            .collect::<Vec<_>>()
    };
    // The first claim wins and sees itself; a second one is refused and
    // sees the owner; the owner claims again.
    assert_eq!(claim("a"), ["a", "a"]);
    assert_eq!(claim("b"), ["a"]);
    assert_eq!(claim("a"), ["a", "a"]);
    assert_eq!(
        store.kv(KvScope::Bridge).get("owner").expect("get"),
        Some(b"a".to_vec())
    );
}

/// The test peer's URL with `sslmode=require` (the peer serves TLS with a
/// certificate of its own CA, `FERRY_TEST_PG_CA`).
fn test_pg_url_requiring_tls() -> String {
    let url = test_pg_url();
    match url.find("sslmode=") {
        Some(at) => {
            let end = url[at..].find('&').map_or(url.len(), |e| at + e);
            format!("{}sslmode=require{}", &url[..at], &url[end..])
        }
        None if url.contains('?') => format!("{url}&sslmode=require"),
        None => format!("{url}?sslmode=require"),
    }
}

fn test_pg_ca() -> PathBuf {
    match std::env::var("FERRY_TEST_PG_CA") {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            panic!("FERRY_TEST_PG_CA is not set: start the postgres peer and source its peers.env")
        }
    }
}

/// A fixture on the test peer over TLS (`sslmode=require`).
fn tls_fixture(url: String, ca_file: Option<PathBuf>) -> Fixture {
    let mut f = Fixture::postgres();
    let Location::Postgres { bridge, .. } = &f.location else {
        unreachable!("a PostgreSQL fixture")
    };
    f.location = Location::Postgres {
        url,
        bridge: bridge.clone(),
        ca_file,
    };
    f
}

/// Opening a store that must fail: its error message.
fn open_error(f: &Fixture) -> String {
    match Store::open_at(&f.location, f.key.clone()) {
        Ok(_) => panic!("{} opened", f.location),
        Err(e) => e.0,
    }
}

#[test]
fn postgres_over_tls_with_the_ca_file_round_trips() {
    let f = tls_fixture(test_pg_url_requiring_tls(), Some(test_pg_ca()));
    let store = f.open();
    store
        .kv(KvScope::Bridge)
        .put("k", b"over TLS")
        .expect("put");
    assert_eq!(
        store.kv(KvScope::Bridge).get("k").expect("get"),
        Some(b"over TLS".to_vec())
    );
    // The server itself says the connection is encrypted.
    let rows = store
        .query(
            "tls",
            sql::Stmt::new(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                vec![],
            ),
        )
        .expect("pg_stat_ssl");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].bool(0).expect("bool"), "the connection is not TLS");
}

#[test]
fn postgres_certificate_that_does_not_verify_is_a_clear_error() {
    // The peer's CA is neither a system root nor given: refused, whether
    // TLS is required or merely preferred (never clear text instead).
    for url in [
        test_pg_url_requiring_tls(),
        test_pg_url_requiring_tls().replace("sslmode=require", "sslmode=prefer"),
    ] {
        let f = tls_fixture(url, None);
        let e = open_error(&f);
        assert!(
            e.starts_with("cannot connect to PostgreSQL at postgres://")
                && e.contains("127.0.0.1")
                && e.contains("certificate")
                && e.contains("[storage] ca_file"),
            "{e}"
        );
    }
}

#[test]
fn postgres_requiring_tls_of_a_server_without_it_is_a_clear_error() {
    // A stand-in for a PostgreSQL with `ssl = off`: it answers the client's
    // SSLRequest with 'N' (no TLS here), as such a server does, and would
    // record anything sent after it in clear text.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut request = [0u8; 8];
        std::io::Read::read_exact(&mut conn, &mut request).expect("SSLRequest");
        std::io::Write::write_all(&mut conn, b"N").expect("answer");
        let mut after = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut after);
        (request, after)
    });
    let f = tls_fixture(
        format!("postgres://ferry:secret-pw@127.0.0.1:{port}/ferry?sslmode=require"),
        Some(test_pg_ca()),
    );
    let e = open_error(&f);
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("does not support TLS"),
        "{e}"
    );
    assert!(!e.contains("secret-pw"), "{e}");
    let (request, after) = server.join().expect("stand-in");
    // 80877103: the SSLRequest code; nothing (no startup message, no
    // password) followed it in clear text.
    assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47]);
    assert!(after.is_empty(), "sent in clear text: {after:?}");
}
