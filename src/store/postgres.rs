//! The PostgreSQL backend (`[storage] url = "postgres://…"`): the state
//! several ferry instances share.
//!
//! Layout: one schema per bridge (`ferry_<bridge>`), holding the same
//! tables as a bridge's SQLite file, so that the statements of the store
//! are the same for both backends, a bridge's data stays apart from every
//! other's exactly as with one file per bridge, and an operator can move,
//! dump or drop one bridge with `pg_dump -n` / `DROP SCHEMA`. The schema
//! version lives in the schema (`schema_version`), migrations run under an
//! advisory lock so that instances starting together migrate once.
//!
//! Threads: the driver is tokio-postgres with a deadpool pool, on a
//! runtime of its own (one thread, shared by every store). The store's API
//! stays synchronous: a read is sent to that runtime and the caller waits
//! for the answer, handing its tokio worker's other tasks to another thread
//! first ([`blocking`]); the writer thread sends each batch as one
//! transaction, its statements pipelined (one round trip for a batch, not
//! one per statement), falling back to one savepoint per write only when a
//! write of the batch fails.
//!
//! When the database goes away the writer keeps the batch and retries it
//! on a new connection with backoff: nothing waiting for a commit is
//! answered before the commit, and writes queued meanwhile are applied in
//! order once the server is back. A caller that waits longer than
//! [`PATIENCE`] gets an error (its write stays queued).

use std::error::Error as StdError;
use std::str::FromStr as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use ferry_bridge::StoreError;
use tokio_postgres::Config;
#[cfg(test)]
use tokio_postgres::NoTls;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::schema;
use super::sql::{Row, Stmt, Value};
use super::writer::{Apply, Op, Outcome};

/// How long a caller waits for an unavailable database before it gets an
/// error.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per bridge (the writer's and the readers').
const POOL_SIZE: usize = 8;
/// How long a store being dropped keeps retrying its last writes.
const GIVE_UP_WHEN_CLOSING: Duration = Duration::from_secs(10);

/// The runtime the driver runs on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("store-pg")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the PostgreSQL runtime: {e}"))
    })
}

/// Runs `f`, which blocks: on a worker of a multi-threaded tokio runtime,
/// the worker's other tasks move to another thread meanwhile.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs `fut` on the driver's runtime and waits for its outcome.
fn run<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    blocking(|| rx.recv()).map_err(|_| StoreError("the PostgreSQL runtime has stopped".into()))?
}

/// The schema of a bridge: `ferry_` and its name, in lowercase letters,
/// digits and `_`.
pub fn schema_name(bridge: &str) -> String {
    let clean: String = bridge
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ferry_{clean}")
}

/// Checks a `[storage] url` (without connecting).
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".into());
    }
    let config = Config::from_str(url).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    if config.get_hosts().is_empty() {
        return Err("names no host".into());
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    let Ok(config) = Config::from_str(url) else {
        return "(an invalid PostgreSQL URL)".into();
    };
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// The pool of one bridge's schema.
pub(super) struct Pg {
    pool: Pool,
}

/// Opens a bridge's schema (creating and migrating it to `version`).
pub(super) fn open(
    url: &str,
    ca_file: Option<&std::path::Path>,
    bridge: &str,
    version: usize,
) -> Result<(Box<dyn Apply>, Pg), StoreError> {
    check_url(url).map_err(|e| StoreError(format!("[storage] url: {e}")))?;
    let mut config =
        Config::from_str(url).map_err(|e| StoreError(format!("[storage] url: {e}")))?;
    let schema = schema_name(bridge);
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c search_path={schema}"),
        _ => format!("-c search_path={schema}"),
    };
    config.options(&options);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("ferry");
    }
    let tls = super::pg_tls::connector(ca_file)
        .map_err(|e| StoreError(format!("[storage] ca_file: {e}")))?;
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(PATIENCE))
        .build()
        .map_err(|e| StoreError(format!("cannot set up the PostgreSQL pool: {e}")))?;
    let where_ = redacted(url);
    let p = pool.clone();
    let s = schema.clone();
    let from = run(async move {
        let mut client = p.get().await.map_err(|e| {
            let why = chain(&e);
            let hint = if why.contains("certificate") {
                " (is the server's CA among the system's or in [storage] ca_file, \
                 and its certificate issued for this host name?)"
            } else {
                ""
            };
            StoreError(format!(
                "cannot connect to PostgreSQL at {where_}: {why}{hint}"
            ))
        })?;
        migrate(&mut client, &s, version)
            .await
            .map_err(|e| StoreError(format!("PostgreSQL at {where_}, schema {s}: {e}")))
    })?;
    if from < version {
        tracing::info!(
            "database {} schema {schema} migrated from schema version {from} to {version}",
            redacted(url)
        );
    }
    Ok((
        Box::new(PgApply {
            pool: pool.clone(),
            client: None,
        }),
        Pg { pool },
    ))
}

/// An error with its causes, on one line.
fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Brings the schema to version `target` in one transaction; returns the
/// version it had.
async fn migrate(client: &mut Object, schema: &str, target: usize) -> Result<usize, String> {
    let fail = |e: tokio_postgres::Error| chain(&e);
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("ferry schema {schema}")],
    )
    .await
    .map_err(fail)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
    ))
    .await
    .map_err(fail)?;
    let current = match tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(fail)?
    {
        Some(row) => row.try_get::<_, i32>(0).map_err(fail)?,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await
                .map_err(fail)?;
            0
        }
    };
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > schema::LATEST {
        return Err(format!(
            "the database has schema version {current}, newer than this ferry knows ({}): it was written by a newer ferry; upgrade ferry",
            schema::LATEST
        ));
    }
    for (i, step) in schema::POSTGRES
        .iter()
        .enumerate()
        .take(target)
        .skip(current)
    {
        tx.batch_execute(step)
            .await
            .map_err(|e| format!("migration {} failed: {}", i + 1, chain(&e)))?;
    }
    if target > current {
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&i32::try_from(target).unwrap_or(i32::MAX)],
        )
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)?;
    Ok(current)
}

impl Pg {
    /// Runs a query on a pooled connection.
    pub(super) fn query(&self, stmt: &Stmt) -> Result<Vec<Row>, StoreError> {
        let pool = self.pool.clone();
        let sql = stmt.sql.postgres();
        let params = stmt.params.clone();
        run(async move {
            let client = pool
                .get()
                .await
                .map_err(|e| StoreError(format!("the database is unavailable: {}", chain(&e))))?;
            let st = client
                .prepare_cached(&sql)
                .await
                .map_err(|e| StoreError(chain(&e)))?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = client
                .query(&st, &refs)
                .await
                .map_err(|e| StoreError(chain(&e)))?;
            rows.iter().map(row_values).collect()
        })
    }
}

fn row_values(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let e = |e: tokio_postgres::Error| StoreError(format!("column {}: {e}", column.name()));
        let ty = column.type_();
        let value = if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map_err(e)?
                .map(Value::Bool)
        } else if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i).map_err(e)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)
                .map_err(e)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)
                .map_err(e)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)
                .map_err(e)?
                .map(Value::Blob)
        } else {
            row.try_get::<_, Option<String>>(i)
                .map_err(e)?
                .map(Value::Text)
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => int_to_sql(*n, ty, out),
            Value::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::Bool(b) => int_to_sql(i64::from(*b), ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn int_to_sql(
    n: i64,
    ty: &Type,
    out: &mut bytes::BytesMut,
) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
    if *ty == Type::INT8 {
        n.to_sql(ty, out)
    } else if *ty == Type::INT4 {
        i32::try_from(n)?.to_sql(ty, out)
    } else if *ty == Type::INT2 {
        i16::try_from(n)?.to_sql(ty, out)
    } else if *ty == Type::BOOL {
        (n != 0).to_sql(ty, out)
    } else {
        Err(format!("an integer cannot be stored in a column of type {ty}").into())
    }
}

/// The database could not be reached: the batch is to be applied again.
struct Unavailable(String);

/// The PostgreSQL writer: one pooled connection, replaced when it breaks.
struct PgApply {
    pool: Pool,
    client: Option<Object>,
}

/// Whether an error means the connection (or the server) is gone, rather
/// than that a statement failed.
fn broken(e: &tokio_postgres::Error, client: &Object) -> bool {
    client.is_closed()
        || e.is_closed()
        || e.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("08") || code.starts_with("57P")
        })
}

impl PgApply {
    async fn attempt(&mut self, ops: &[Op]) -> Result<Vec<Outcome>, Unavailable> {
        if self.client.is_none() {
            let client = self.pool.get().await.map_err(|e| Unavailable(chain(&e)))?;
            self.client = Some(client);
        }
        let Some(client) = self.client.as_ref() else {
            return Err(Unavailable("no connection".into()));
        };
        let down = |e: &tokio_postgres::Error| Unavailable(chain(e));
        client.batch_execute("BEGIN").await.map_err(|e| down(&e))?;
        // Fast path: every statement prepared (cached per connection), then
        // all of them sent at once and committed.
        let mut prepared = Vec::new();
        let mut fast = true;
        for stmt in ops.iter().flatten() {
            match client.prepare_cached(&stmt.sql.postgres()).await {
                Ok(st) => prepared.push((st, stmt)),
                Err(e) if broken(&e, client) => return Err(down(&e)),
                Err(_) => {
                    fast = false;
                    break;
                }
            }
        }
        if fast {
            let params: Vec<Vec<&(dyn ToSql + Sync)>> = prepared
                .iter()
                .map(|(_, stmt)| {
                    stmt.params
                        .iter()
                        .map(|p| p as &(dyn ToSql + Sync))
                        .collect()
                })
                .collect();
            let results = futures::future::join_all(
                prepared
                    .iter()
                    .zip(&params)
                    .map(|((st, _), p)| client.query(st, p)),
            )
            .await;
            if let Some(e) = results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .find(|e| broken(e, client))
            {
                return Err(down(e));
            }
            if results.iter().all(Result::is_ok) {
                // Each op's rows: its statements' results, in order.
                let mut results = results.into_iter().flatten();
                let mut outcomes = Vec::with_capacity(ops.len());
                for op in ops {
                    let mut rows = Vec::new();
                    for _ in op {
                        for row in results.next().unwrap_or_default() {
                            match row_values(&row) {
                                Ok(r) => rows.push(r),
                                Err(e) => {
                                    return Ok(ops.iter().map(|_| Err(e.clone())).collect());
                                }
                            }
                        }
                    }
                    outcomes.push(Ok(rows));
                }
                return match client.batch_execute("COMMIT").await {
                    Ok(()) => Ok(outcomes),
                    Err(e) if broken(&e, client) => Err(down(&e)),
                    Err(e) => Ok(ops
                        .iter()
                        .map(|_| Err(StoreError(format!("commit failed: {}", chain(&e)))))
                        .collect()),
                };
            }
        }
        // Slow path: a write failed; again, each write in its savepoint,
        // so that it is undone alone.
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| down(&e))?;
        client.batch_execute("BEGIN").await.map_err(|e| down(&e))?;
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            client
                .batch_execute("SAVEPOINT w")
                .await
                .map_err(|e| down(&e))?;
            let mut result: Outcome = Ok(Vec::new());
            for stmt in op {
                let params: Vec<&(dyn ToSql + Sync)> = stmt
                    .params
                    .iter()
                    .map(|p| p as &(dyn ToSql + Sync))
                    .collect();
                let done = match client.prepare_cached(&stmt.sql.postgres()).await {
                    Ok(st) => client.query(&st, &params).await,
                    Err(e) => Err(e),
                };
                let rows = match done {
                    Ok(rows) => rows,
                    Err(e) if broken(&e, client) => return Err(down(&e)),
                    Err(e) => {
                        result = Err(StoreError(chain(&e)));
                        break;
                    }
                };
                match rows.iter().map(row_values).collect::<Result<Vec<Row>, _>>() {
                    Ok(more) => {
                        if let Ok(all) = &mut result {
                            all.extend(more);
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if result.is_err() {
                client
                    .batch_execute("ROLLBACK TO w")
                    .await
                    .map_err(|e| down(&e))?;
            }
            client
                .batch_execute("RELEASE w")
                .await
                .map_err(|e| down(&e))?;
            outcomes.push(result);
        }
        match client.batch_execute("COMMIT").await {
            Ok(()) => Ok(outcomes),
            Err(e) if broken(&e, client) => Err(down(&e)),
            Err(e) => Ok(ops
                .iter()
                .map(|_| Err(StoreError(format!("commit failed: {}", chain(&e)))))
                .collect()),
        }
    }
}

impl Apply for PgApply {
    fn apply(&mut self, ops: &[Op], closing: &dyn Fn() -> bool) -> Vec<Outcome> {
        let mut delay = Duration::from_millis(100);
        let mut outage: Option<Instant> = None;
        loop {
            match runtime().block_on(self.attempt(ops)) {
                Ok(outcomes) => {
                    if let Some(since) = outage {
                        tracing::warn!(
                            "database: PostgreSQL is back after {:.1} s; the {} writes kept meanwhile are committed",
                            since.elapsed().as_secs_f64(),
                            ops.len()
                        );
                    }
                    return outcomes;
                }
                Err(Unavailable(e)) => {
                    // The connection is dropped: the server rolled the
                    // transaction back, the pool makes a new one.
                    self.client = None;
                    let since = *outage.get_or_insert_with(|| {
                        tracing::error!(
                            "database: PostgreSQL is unavailable ({e}); {} writes kept, retrying",
                            ops.len()
                        );
                        Instant::now()
                    });
                    if closing() && since.elapsed() > GIVE_UP_WHEN_CLOSING {
                        tracing::error!(
                            "database: shutting down while PostgreSQL is unavailable: {} writes lost",
                            ops.len()
                        );
                        return ops
                            .iter()
                            .map(|_| Err(StoreError(format!("the database is unavailable: {e}"))))
                            .collect();
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Drops a bridge's schema and everything in it (tests).
#[cfg(test)]
pub(crate) fn drop_schema(url: &str, bridge: &str) {
    let schema = schema_name(bridge);
    if let Err(e) = execute(url, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")) {
        eprintln!("cannot drop the test schema of {bridge}: {e}");
    }
}

/// Runs SQL on a connection of its own (tests).
#[cfg(test)]
pub(crate) fn tests_execute(url: &str, sql: &str) {
    execute(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[cfg(test)]
fn execute(url: &str, sql: &str) -> Result<(), StoreError> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    run(async move {
        let (client, conn) = tokio_postgres::connect(&url, NoTls)
            .await
            .map_err(|e| StoreError(chain(&e)))?;
        tokio::spawn(conn);
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| StoreError(chain(&e)))
    })
}
