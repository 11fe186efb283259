//! The SQLite backend: one file per bridge in WAL mode, the writer's own
//! connection ([`SqliteApply`]) and read connections kept for reuse.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ferry_bridge::StoreError;
use rusqlite::Connection;

use super::schema;
use super::sql::{Row, Stmt, Value};
use super::writer::{Apply, SqliteApply, sqlite_params};

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        .map_err(|e| StoreError(format!("cannot configure {}: {e}", path.display())))?;
    Ok(conn)
}

/// The writer's connection applies every write (10,000 archive rows a
/// second with 1,000 users in busy rooms): a page cache that holds a whole
/// batch's dirty pages (so a batch does not spill pages into the WAL before
/// its commit, to write them again at the commit), checkpoints of the WAL
/// every ~16 MiB instead of 4 (a page written by many batches is copied
/// into the database once per checkpoint), and room for every statement
/// the writes use in the prepared statement cache.
fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens (creating and migrating to `version`) the file at `path`.
pub(super) fn open(path: &Path, version: usize) -> Result<(Box<dyn Apply>, Readers), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    let mut conn = open_connection(path)?;
    let from = schema::migrate(&mut conn, version)
        .map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
    if from < version {
        tracing::info!(
            "database {} migrated from schema version {from} to {version}",
            path.display()
        );
    }
    configure_writer(&conn)
        .map_err(|e| StoreError(format!("configuring the database writer: {e}")))?;
    Ok((
        Box::new(SqliteApply(conn)),
        Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        },
    ))
}

/// Read connections of one file.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Runs a query on a read connection.
    pub(super) fn query(&self, stmt: &Stmt) -> Result<Vec<Row>, StoreError> {
        let conn = match self.idle.lock().ok().and_then(|mut r| r.pop()) {
            Some(c) => c,
            None => {
                let c = open_connection(&self.path)?;
                c.pragma_update(None, "query_only", true)
                    .map_err(|e| StoreError(format!("configuring a reader: {e}")))?;
                c
            }
        };
        let result = run(&conn, stmt).map_err(|e| StoreError(e.to_string()));
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }
}

fn run(conn: &Connection, stmt: &Stmt) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare_cached(stmt.sql.sqlite())?;
    rows(&mut st, &stmt.params)
}

/// Runs a prepared statement and collects its rows as values.
pub(super) fn rows(
    st: &mut rusqlite::Statement<'_>,
    params: &[Value],
) -> rusqlite::Result<Vec<Row>> {
    let columns = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(sqlite_params(params)))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(n) => Value::Int(n),
                rusqlite::types::ValueRef::Real(f) => Value::Int(f as i64),
                rusqlite::types::ValueRef::Text(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}
