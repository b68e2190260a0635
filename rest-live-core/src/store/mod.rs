//! The store: a pool of diesel connections for the backend named by the database URL (SQLite
//! embedded by default; PostgreSQL with the `postgres` feature), embedded migrations, read and
//! write transactions, and the change log ([`changelog`]) that write transactions append to.
//!
//! The store knows nothing of resources: a write hands it a body that returns what it appended
//! ([`Finished`]), and once committed those changes are handed on as one [`Committed`] through
//! the queue set with [`Store::publish_to`] (the feed's). It never calls anything above it.
//!
//! diesel is blocking: reads run on tokio's blocking pool (a point read on an idle SQLite
//! connection runs in place), never on the executor. On SQLite every write goes to one writer
//! thread that commits what is queued together ([`writer`]: group commit, each write in a
//! savepoint of its own); on PostgreSQL each write is a transaction of the pool.

pub mod changelog;
mod commit;
mod conn;
mod writer;

use std::sync::Arc;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::error::{ApiError, Error};
pub(crate) use commit::Committed;
pub use commit::Finished;
pub use conn::AnyConn;

const CORE_SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
const CORE_POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[cfg(feature = "postgres")]
use diesel::pg::PgConnection;

/// Which database, parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://path/to/file.db`, `sqlite:///absolute/path.db`, or `sqlite::memory:`.
    Sqlite(String),
    /// `postgres://user@host:port/database` (or `postgresql://…`), as given.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, Error> {
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(Self::Sqlite(":memory:".into()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(Error::Config(format!(
                    "database URL {url:?} names no file (e.g. sqlite://app.db)"
                )));
            }
            return Ok(Self::Sqlite(path.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if cfg!(feature = "postgres") {
                return Ok(Self::Postgres(url.to_owned()));
            }
            return Err(Error::Config(
                "this build has no PostgreSQL support: enable rest-live's `postgres` feature"
                    .into(),
            ));
        }
        Err(Error::Config(format!(
            "unsupported database URL {url:?}: expected sqlite://<file> or postgres://…"
        )))
    }
}

impl std::fmt::Display for DatabaseUrl {
    /// The URL for messages: a PostgreSQL password (in the user part or as a `password`
    /// parameter) is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) if path == ":memory:" => f.write_str("sqlite::memory:"),
            Self::Sqlite(path) => write!(f, "sqlite://{path}"),
            Self::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db?password=secret&sslmode=require` as
/// `postgres://user@host/db?sslmode=require`.
fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// How long start-up waits for the PostgreSQL server before it says it cannot be reached.
#[cfg(feature = "postgres")]
const CONNECT_TIMEOUT_SECS: u32 = 5;

/// Opens one connection, before any pool: a database that cannot be opened fails start-up at
/// once with one message (a pool would retry, and log each retry, for its whole checkout
/// timeout).
fn check_connection(url: &DatabaseUrl) -> Result<(), Error> {
    match url {
        DatabaseUrl::Sqlite(path) => SqliteConnection::establish(path).map(drop).map_err(|e| {
            Error::Database(format!(
                "cannot open {url}: {e}. Check that the directory exists and that this process may create and write files there (DATABASE_URL / AppBuilder::database_url)."
            ))
        }),
        #[cfg(feature = "postgres")]
        DatabaseUrl::Postgres(pg_url) => {
            let probe = if pg_url.contains("connect_timeout=") {
                pg_url.clone()
            } else {
                let sep = if pg_url.contains('?') { '&' } else { '?' };
                format!("{pg_url}{sep}connect_timeout={CONNECT_TIMEOUT_SECS}")
            };
            PgConnection::establish(&probe).map(drop).map_err(|e| {
                // libpq's message spans lines; one paragraph reads better in a log.
                let mut reason = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
                if !reason.ends_with(['.', '?', '!']) {
                    reason.push('.');
                }
                Error::Database(format!(
                    "cannot connect to {url}: {reason} Check that the PostgreSQL server is running and reachable at that host and port, and that the user, password and database in DATABASE_URL (AppBuilder::database_url) are right."
                ))
            })
        }
        #[cfg(not(feature = "postgres"))]
        DatabaseUrl::Postgres(_) => Ok(()),
    }
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // WAL lets readers run beside the single writer; busy_timeout covers other processes on the
        // same file; foreign keys are off by default in SQLite.
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        )
        .map_err(diesel::r2d2::Error::QueryError)?;
        // Unicode case folding for the case-insensitive lookups (SQLite's lower() is ASCII-only).
        crate::query::sql::register_sqlite(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    #[cfg(feature = "postgres")]
    Pg(Pool<ConnectionManager<PgConnection>>),
}

/// Migrations of the application, one set per backend (their SQL differs).
#[derive(Default)]
pub struct Migrations {
    pub sqlite: Vec<EmbeddedMigrations>,
    pub postgres: Vec<EmbeddedMigrations>,
}

/// Connection pool and transactions. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    pools: Pools,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    url: DatabaseUrl,
    /// SQLite has one writer at a time: queue writers here rather than in SQLite's busy loop.
    write_gate: Semaphore,
    /// Signalled after every commit that appended to the change log (and, on PostgreSQL, by the
    /// listener when another process commits).
    committed: Arc<Notify>,
    /// Where a commit's changes are handed at once (the feed's queue, see `crate::feed`);
    /// without it, the feed reads every change back from the log.
    publish: Arc<std::sync::OnceLock<mpsc::Sender<Committed>>>,
    /// SQLite: the thread that commits the writes, in batches (see [`writer`]).
    writer: Option<writer::Writer>,
}

/// The two kinds of transaction, each the right one for its backend.
#[derive(Clone, Copy)]
enum Kind {
    /// One consistent snapshot (PostgreSQL: read-only, repeatable read).
    Read,
    /// A write (SQLite: `BEGIN IMMEDIATE`, so that it never has to upgrade a read lock).
    Write,
}

/// Runs `f` in one transaction of `kind` on a pooled connection, on the calling thread.
fn transact<T>(
    pools: &Pools,
    kind: Kind,
    f: impl FnOnce(AnyConn<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    match pools {
        Pools::Sqlite(pool) => {
            let mut conn = checkout(pool)?;
            match kind {
                Kind::Read => conn.transaction(|c| f(AnyConn::Sqlite(c))),
                Kind::Write => conn.immediate_transaction(|c| f(AnyConn::Sqlite(c))),
            }
        }
        #[cfg(feature = "postgres")]
        Pools::Pg(pool) => {
            let mut conn = checkout(pool)?;
            match kind {
                Kind::Read => conn
                    .build_transaction()
                    .read_only()
                    .repeatable_read()
                    .run(|c| f(AnyConn::Pg(c))),
                Kind::Write => conn.transaction(|c| f(AnyConn::Pg(c))),
            }
        }
    }
}

fn open_error(what: &DatabaseUrl, e: impl std::fmt::Display) -> Error {
    Error::Database(format!("cannot open {what}: {e}"))
}

impl Store {
    /// Opens the database, applies rest-live's migrations then the application's, and makes sure
    /// every stream has its sequence counter.
    pub async fn open(
        url: &DatabaseUrl,
        pool_size: u32,
        mut migrations: Migrations,
        streams: Vec<&'static str>,
    ) -> Result<Self, Error> {
        let url = url.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            check_connection(&url)?;
            let (pools, gate) = match &url {
                DatabaseUrl::Sqlite(path) => {
                    let in_memory = path == ":memory:";
                    let pool = Pool::builder()
                        // Every connection to ":memory:" is a database of its own: keep one.
                        .max_size(if in_memory { 1 } else { pool_size.max(2) })
                        .connection_customizer(Box::new(SqlitePragmas))
                        // A file on this machine does not go stale like a network connection:
                        // no `SELECT 1` before every use.
                        .test_on_check_out(false)
                        .build(ConnectionManager::<SqliteConnection>::new(path.clone()))
                        .map_err(|e| open_error(&url, e))?;
                    let mut conn = pool.get().map_err(|e| open_error(&url, e))?;
                    if !in_memory {
                        conn.batch_execute("PRAGMA journal_mode = WAL;")
                            .map_err(|e| Error::Database(e.to_string()))?;
                    }
                    migrate(&mut *conn, CORE_SQLITE_MIGRATIONS, &mut migrations.sqlite)?;
                    changelog::ensure_streams(AnyConn::Sqlite(&mut conn), &streams)
                        .map_err(|e| Error::Database(e.to_string()))?;
                    (Pools::Sqlite(pool), 1)
                }
                #[cfg(feature = "postgres")]
                DatabaseUrl::Postgres(pg_url) => {
                    let pool = Pool::builder()
                        .max_size(pool_size.max(2))
                        .build(ConnectionManager::<PgConnection>::new(pg_url.clone()))
                        .map_err(|e| open_error(&url, e))?;
                    let mut conn = pool.get().map_err(|e| open_error(&url, e))?;
                    // Processes starting together on a fresh database would race to create the
                    // same tables (and fail on PostgreSQL's catalog constraints): one migrates at
                    // a time, the others then find nothing pending. A session lock, as each
                    // migration runs in a transaction of its own.
                    let lock = |sql: &str, conn: &mut PgConnection| {
                        diesel::RunQueryDsl::execute(diesel::sql_query(sql), conn)
                            .map_err(|e| Error::Database(format!("migration lock: {e}")))
                    };
                    lock("SELECT pg_advisory_lock(7215387450962201345)", &mut conn)?;
                    let migrated = migrate(
                        &mut *conn,
                        CORE_POSTGRES_MIGRATIONS,
                        &mut migrations.postgres,
                    )
                    .and_then(|()| {
                        changelog::ensure_streams(AnyConn::Pg(&mut conn), &streams)
                            .map_err(|e| Error::Database(e.to_string()))
                    });
                    let unlocked =
                        lock("SELECT pg_advisory_unlock(7215387450962201345)", &mut conn);
                    migrated.and(unlocked)?;
                    (Pools::Pg(pool), pool_size.max(1) as usize)
                }
                #[cfg(not(feature = "postgres"))]
                DatabaseUrl::Postgres(_) => {
                    return Err(Error::Config("no PostgreSQL support in this build".into()));
                }
            };
            let committed = Arc::new(Notify::new());
            let publish = Arc::new(std::sync::OnceLock::new());
            let writer = match &pools {
                Pools::Sqlite(pool) => Some(
                    writer::Writer::spawn(
                        writer::Shared {
                            pool: pool.clone(),
                            committed: committed.clone(),
                            publish: publish.clone(),
                        },
                        runtime,
                    )
                    .map_err(|e| Error::Database(format!("cannot start the writer thread: {e}")))?,
                ),
                #[cfg(feature = "postgres")]
                Pools::Pg(_) => None,
            };
            Ok(Store {
                inner: Arc::new(StoreInner {
                    pools,
                    url,
                    write_gate: Semaphore::new(gate),
                    committed,
                    publish,
                    writer,
                }),
            })
        })
        .await
        .map_err(|e| Error::Database(format!("store start-up panicked: {e}")))?
    }

    /// The database this store is connected to (the PostgreSQL listener connects to it too).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn url(&self) -> &DatabaseUrl {
        &self.inner.url
    }

    /// From now on, hand each local commit's changes to `queue` as soon as it commits.
    pub(crate) fn publish_to(&self, queue: mpsc::Sender<Committed>) {
        let _ = self.inner.publish.set(queue);
    }

    /// Signalled after each commit that wrote changes (the feed waits on it).
    pub fn committed(&self) -> Arc<Notify> {
        self.inner.committed.clone()
    }

    /// Runs `f` on a pooled connection inside a read transaction (one consistent snapshot).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(AnyConn<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || transact(&inner.pools, Kind::Read, f))
            .await
            .map_err(ApiError::internal)?
    }

    /// [`Store::read`] for a read of a few rows found by key (a `retrieve`), whose cost is a few
    /// microseconds on SQLite: there it runs right here, on the calling task's thread, when a
    /// pooled connection is idle, instead of a round trip through the blocking pool (two thread
    /// hand-offs, which cost more than the read). Readers never wait for writers in SQLite's WAL
    /// mode, so this does not stall the runtime. On PostgreSQL (a network round trip) and when
    /// every connection is busy, it is [`Store::read`].
    pub async fn read_point<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(AnyConn<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        if let Pools::Sqlite(pool) = &self.inner.pools
            && let Some(mut conn) = pool.try_get()
        {
            return conn.transaction(|c| f(AnyConn::Sqlite(c)));
        }
        self.read(f).await
    }

    /// Runs `f` in a write transaction. The changes it appended are committed with it, then the
    /// after-commit hooks run and the changes are handed on (see the module docs). An error from
    /// `f` rolls everything back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(AnyConn<'_>) -> Result<Finished<T>, ApiError> + Send + 'static,
    {
        if let Some(writer) = &self.inner.writer {
            let value = writer
                .write(Box::new(move |c| {
                    let finished = f(c)?;
                    Ok(Finished {
                        value: Box::new(finished.value) as Box<dyn std::any::Any + Send>,
                        changes: finished.changes,
                        after_commit: finished.after_commit,
                    })
                }))
                .await?;
            return value
                .downcast::<T>()
                .map(|v| *v)
                .map_err(|_| ApiError::internal("a write's value came back as another type"));
        }
        let _permit = self.write_permit().await?;
        let inner = self.inner.clone();
        let (value, committed) = tokio::task::spawn_blocking(move || {
            let finished = transact(&inner.pools, Kind::Write, |mut c| {
                let finished = f(c.reborrow())?;
                if !finished.changes.is_empty() {
                    // Delivered to the other processes' listeners at commit, never before.
                    changelog::notify_commit(c)?;
                }
                Ok(finished)
            })?;
            // Built before the hooks run: if one panics, dropping it still wakes the feed.
            let committed = Committed {
                changes: finished.changes,
                feed: inner.committed.clone(),
            };
            for hook in finished.after_commit {
                hook();
            }
            Ok::<_, ApiError>((finished.value, committed))
        })
        .await
        .map_err(ApiError::internal)??;
        // The write gate is still held, so on SQLite (one writer) commits are queued in seq order.
        // A full queue drops the commit's changes, which wakes the feed to read them from the log.
        if !committed.changes.is_empty()
            && let Some(queue) = self.inner.publish.get()
        {
            let _ = queue.try_send(committed);
        }
        Ok(value)
    }

    /// Runs `f` in a write transaction that maintains the framework's own tables (it appends no
    /// change and wakes nobody).
    pub async fn maintain<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(AnyConn<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        if self.inner.writer.is_some() {
            // On SQLite, in the writer's queue with the other writes.
            return self
                .write(move |c| {
                    Ok(Finished {
                        value: f(c)?,
                        changes: Vec::new(),
                        after_commit: Vec::new(),
                    })
                })
                .await;
        }
        let _permit = self.write_permit().await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || transact(&inner.pools, Kind::Write, f))
            .await
            .map_err(ApiError::internal)?
    }

    /// A writer's turn (SQLite: one at a time).
    async fn write_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        self.inner
            .write_gate
            .acquire()
            .await
            .map_err(ApiError::internal)
    }
}

fn checkout<C>(
    pool: &Pool<ConnectionManager<C>>,
) -> Result<PooledConnection<ConnectionManager<C>>, ApiError>
where
    C: diesel::r2d2::R2D2Connection + 'static,
{
    pool.get().map_err(ApiError::internal)
}

fn migrate<C>(
    conn: &mut C,
    core: EmbeddedMigrations,
    app: &mut Vec<EmbeddedMigrations>,
) -> Result<(), Error>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.run_pending_migrations(core)
        .map_err(|e| Error::Migration(format!("rest-live tables: {e}")))?;
    for migrations in app.drain(..) {
        conn.run_pending_migrations(migrations)
            .map_err(|e| Error::Migration(e.to_string()))?;
    }
    Ok(())
}
