//! The database schema as numbered migration steps, applied in order at
//! open. SQLite: `PRAGMA user_version` records how many steps a database
//! has had; PostgreSQL: the `schema_version` table of the bridge's schema
//! ([`super::postgres`]). A step is never edited once released, changes
//! are new steps — one in each list, with the same number: [`POSTGRES`]
//! is [`MIGRATIONS`] in PostgreSQL's dialect (BIGINT for integers,
//! BOOLEAN for flags, BYTEA for bytes, `COLLATE "C"` so that text sorts
//! and compares by bytes as in SQLite, BIGSERIAL for SQLite's rowids).

use rusqlite::Connection;

/// Step N (1-based) brings a database from version N-1 to N.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: registered users and their data.
    "CREATE TABLE users (
        jid TEXT PRIMARY KEY NOT NULL,
        account_name TEXT NOT NULL,
        secret BLOB NOT NULL,             -- sealed with the gateway key, AD = jid
        registered_at INTEGER NOT NULL    -- unix nanoseconds
    ) WITHOUT ROWID;
    CREATE TABLE preferences (
        jid TEXT NOT NULL,
        var TEXT NOT NULL,
        vals TEXT NOT NULL,               -- JSON array of strings
        PRIMARY KEY (jid, var)
    ) WITHOUT ROWID;
    CREATE TABLE kv (
        scope TEXT NOT NULL,              -- '' for the bridge, else the user's jid
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;",
    // 2: message ids and the room archive.
    "CREATE TABLE message_map (
        jid TEXT NOT NULL,
        chat TEXT NOT NULL,
        xmpp_id TEXT NOT NULL,
        foreign_id TEXT NOT NULL,
        UNIQUE (jid, chat, xmpp_id)
    );
    CREATE INDEX message_map_foreign ON message_map (jid, chat, foreign_id);
    CREATE TABLE archive (
        jid TEXT NOT NULL,
        room TEXT NOT NULL,
        id TEXT NOT NULL,                 -- sortable archive id (stanza-id)
        ts INTEGER NOT NULL,              -- unix nanoseconds
        nick TEXT NOT NULL,
        foreign_id TEXT,
        stanza TEXT NOT NULL,
        PRIMARY KEY (jid, room, id)
    ) WITHOUT ROWID;",
    // 3: component outbox and roster state.
    "CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        stanza TEXT NOT NULL
    );
    CREATE TABLE roster (
        jid TEXT NOT NULL,
        contact TEXT NOT NULL,
        name TEXT,
        to_user INTEGER NOT NULL,
        from_user INTEGER NOT NULL,
        via TEXT NOT NULL,
        PRIMARY KEY (jid, contact)
    ) WITHOUT ROWID;",
    // 4: messages waiting for the network's delivery report, and who owns
    // which network address (phone numbers).
    "CREATE TABLE deliveries (
        jid TEXT NOT NULL,
        chat TEXT NOT NULL,
        foreign_id TEXT NOT NULL,         -- one part of the sent message
        xmpp_id TEXT NOT NULL,            -- the stanza id of the user's message
        peer TEXT NOT NULL,               -- the JID it was sent to
        client TEXT NOT NULL,             -- the full JID of the user's client
        receipt INTEGER NOT NULL,         -- 1: the user asked for a receipt
        created INTEGER NOT NULL,         -- unix seconds
        PRIMARY KEY (jid, chat, foreign_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_message ON deliveries (jid, chat, xmpp_id);
    CREATE TABLE owners (
        address TEXT PRIMARY KEY NOT NULL,
        jid TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX owners_jid ON owners (jid);",
    // 5: a delivered message stays (marked) until it expires, so that a
    // failure the network reports later (an email bounce) still finds it.
    "ALTER TABLE deliveries ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;",
];

/// [`MIGRATIONS`] for PostgreSQL, step for step.
pub(crate) const POSTGRES: &[&str] = &[
    // 1
    r#"CREATE TABLE users (
        jid TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        account_name TEXT COLLATE "C" NOT NULL,
        secret BYTEA NOT NULL,
        registered_at BIGINT NOT NULL
    );
    CREATE TABLE preferences (
        jid TEXT COLLATE "C" NOT NULL,
        var TEXT COLLATE "C" NOT NULL,
        vals TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (jid, var)
    );
    CREATE TABLE kv (
        scope TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (scope, key)
    );"#,
    // 2
    r#"CREATE TABLE message_map (
        seq BIGSERIAL NOT NULL,
        jid TEXT COLLATE "C" NOT NULL,
        chat TEXT COLLATE "C" NOT NULL,
        xmpp_id TEXT COLLATE "C" NOT NULL,
        foreign_id TEXT COLLATE "C" NOT NULL,
        UNIQUE (jid, chat, xmpp_id)
    );
    CREATE INDEX message_map_foreign ON message_map (jid, chat, foreign_id, seq);
    CREATE TABLE archive (
        jid TEXT COLLATE "C" NOT NULL,
        room TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        ts BIGINT NOT NULL,
        nick TEXT COLLATE "C" NOT NULL,
        foreign_id TEXT COLLATE "C",
        stanza TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (jid, room, id)
    );"#,
    // 3
    r#"CREATE TABLE outbox (
        seq BIGSERIAL PRIMARY KEY,
        stanza TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE roster (
        jid TEXT COLLATE "C" NOT NULL,
        contact TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C",
        to_user BOOLEAN NOT NULL,
        from_user BOOLEAN NOT NULL,
        via TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (jid, contact)
    );"#,
    // 4
    r#"CREATE TABLE deliveries (
        jid TEXT COLLATE "C" NOT NULL,
        chat TEXT COLLATE "C" NOT NULL,
        foreign_id TEXT COLLATE "C" NOT NULL,
        xmpp_id TEXT COLLATE "C" NOT NULL,
        peer TEXT COLLATE "C" NOT NULL,
        client TEXT COLLATE "C" NOT NULL,
        receipt BOOLEAN NOT NULL,
        created BIGINT NOT NULL,
        PRIMARY KEY (jid, chat, foreign_id)
    );
    CREATE INDEX deliveries_message ON deliveries (jid, chat, xmpp_id);
    CREATE TABLE owners (
        address TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        jid TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX owners_jid ON owners (jid);"#,
    // 5
    "ALTER TABLE deliveries ADD COLUMN delivered BOOLEAN NOT NULL DEFAULT FALSE;",
];

/// The version a fully migrated database has.
pub(crate) const LATEST: usize = MIGRATIONS.len();

/// Brings the database to version `target`, one transaction per step.
pub(crate) fn migrate(conn: &mut Connection, target: usize) -> Result<usize, String> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| format!("cannot read the schema version: {e}"))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > LATEST {
        return Err(format!(
            "the database has schema version {current}, newer than this ferry knows ({LATEST}): it was written by a newer ferry; upgrade ferry"
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let version = i + 1;
        let tx = conn
            .transaction()
            .map_err(|e| format!("migration {version}: {e}"))?;
        tx.execute_batch(step)
            .and_then(|()| tx.pragma_update(None, "user_version", version as i64))
            .and_then(|()| tx.commit())
            .map_err(|e| format!("migration {version} failed: {e}"))?;
        tracing::debug!("database migrated to schema version {version}");
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_dialects_have_every_step() {
        assert_eq!(super::MIGRATIONS.len(), super::POSTGRES.len());
    }
}
