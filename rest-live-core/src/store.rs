//! The store: a pool of diesel connections chosen from the database URL, embedded migrations, and
//! transactions whose writes append to the change log ([`crate::changelog`]) before they commit.
//!
//! diesel is blocking: every database call runs on tokio's blocking pool, never on the executor.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore};

use crate::changelog::{self, ChangeAction, NewChange};
use crate::error::{ApiError, Error};
use crate::resource::Resource;

const CORE_SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A borrowed connection of whichever backend the application runs on. Generated code matches on it
/// through [`crate::__with_conn!`], so one body of typed diesel code serves every backend.
pub enum AnyConn<'a> {
    Sqlite(&'a mut SqliteConnection),
}

impl AnyConn<'_> {
    /// A shorter-lived copy, to pass on while keeping this one.
    pub fn reborrow(&mut self) -> AnyConn<'_> {
        match self {
            AnyConn::Sqlite(c) => AnyConn::Sqlite(c),
        }
    }
}

/// Which database, parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://path/to/file.db`, `sqlite:///absolute/path.db`, or `sqlite::memory:`.
    Sqlite(String),
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
            return Err(Error::Config(
                "PostgreSQL is not supported by this build yet; use sqlite://…".into(),
            ));
        }
        Err(Error::Config(format!(
            "unsupported database URL {url:?}: expected sqlite://<file>"
        )))
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
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
}

/// Connection pool and transactions. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    pools: Pools,
    /// SQLite has one writer at a time: queue writers here rather than in SQLite's busy loop.
    write_gate: Semaphore,
    /// Signalled after every commit that appended to the change log.
    committed: Arc<Notify>,
}

impl Store {
    /// Opens the database, applies rest-live's migrations then the application's, and makes sure
    /// every stream has its sequence counter.
    pub async fn open(
        url: &DatabaseUrl,
        pool_size: u32,
        sqlite_migrations: Vec<EmbeddedMigrations>,
        streams: Vec<&'static str>,
    ) -> Result<Self, Error> {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let DatabaseUrl::Sqlite(path) = &url;
            let in_memory = path == ":memory:";
            let manager = ConnectionManager::<SqliteConnection>::new(path.clone());
            let pool = Pool::builder()
                // Every connection to ":memory:" is a database of its own: keep exactly one.
                .max_size(if in_memory { 1 } else { pool_size.max(2) })
                .connection_customizer(Box::new(SqlitePragmas))
                .build(manager)
                .map_err(|e| Error::Database(format!("cannot open {path}: {e}")))?;
            let mut conn = pool
                .get()
                .map_err(|e| Error::Database(format!("cannot open {path}: {e}")))?;
            if !in_memory {
                conn.batch_execute("PRAGMA journal_mode = WAL;")
                    .map_err(|e| Error::Database(e.to_string()))?;
            }
            conn.run_pending_migrations(CORE_SQLITE_MIGRATIONS)
                .map_err(|e| Error::Migration(format!("rest-live tables: {e}")))?;
            for migrations in sqlite_migrations {
                conn.run_pending_migrations(migrations)
                    .map_err(|e| Error::Migration(e.to_string()))?;
            }
            changelog::ensure_streams(AnyConn::Sqlite(&mut conn), &streams)
                .map_err(|e| Error::Database(e.to_string()))?;
            drop(conn);
            Ok(Store {
                inner: Arc::new(StoreInner {
                    pools: Pools::Sqlite(pool),
                    write_gate: Semaphore::new(1),
                    committed: Arc::new(Notify::new()),
                }),
            })
        })
        .await
        .map_err(|e| Error::Database(format!("store start-up panicked: {e}")))?
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
        tokio::task::spawn_blocking(move || match &inner.pools {
            Pools::Sqlite(pool) => {
                let mut conn = pool.get().map_err(ApiError::internal)?;
                conn.transaction(|c| f(AnyConn::Sqlite(c)))
            }
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Runs `f` in a write transaction. The changes it logs are committed with it, then the feed is
    /// woken and the after-commit hooks run. An error from `f` rolls everything back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let _permit = self
            .inner
            .write_gate
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let (value, after_commit, wrote) = match &inner.pools {
                Pools::Sqlite(pool) => {
                    let mut conn = pool.get().map_err(ApiError::internal)?;
                    conn.immediate_transaction(|c| {
                        let mut tx = Tx::new(AnyConn::Sqlite(c));
                        let value = f(&mut tx)?;
                        Ok::<_, ApiError>((value, tx.after_commit, tx.changes))
                    })?
                }
            };
            if wrote > 0 {
                inner.committed.notify_one();
            }
            for hook in after_commit {
                hook();
            }
            Ok(value)
        })
        .await
        .map_err(ApiError::internal)?
    }
}

impl Store {
    /// Runs `f` in a write transaction that maintains the framework's own tables (it appends no
    /// change and wakes nobody).
    pub async fn maintain<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(AnyConn<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let _permit = self
            .inner
            .write_gate
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || match &inner.pools {
            Pools::Sqlite(pool) => {
                let mut conn = pool.get().map_err(ApiError::internal)?;
                conn.immediate_transaction(|c| f(AnyConn::Sqlite(c)))
            }
        })
        .await
        .map_err(ApiError::internal)?
    }
}

/// An open write transaction. Every write made through it appends its change to the change log, so
/// it yields its events once (and only if) the transaction commits. Hooks receive it to make
/// further writes in the same transaction.
pub struct Tx<'a> {
    conn: AnyConn<'a>,
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    changes: usize,
    now_ms: i64,
}

impl<'a> Tx<'a> {
    fn new(conn: AnyConn<'a>) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        Self {
            conn,
            after_commit: Vec::new(),
            changes: 0,
            now_ms,
        }
    }

    /// The raw connection, for reads. Writes made through it bypass the change log and send no event.
    pub fn conn(&mut self) -> AnyConn<'_> {
        self.conn.reborrow()
    }

    pub fn get<R: Resource>(&mut self, pk: &R::Pk) -> Result<Option<R>, ApiError> {
        Ok(R::db_get(self.conn.reborrow(), pk)?)
    }

    /// Every object matching equality filters on filterable fields, e.g. `{"list_id": 1}`.
    pub fn filter<R: Resource>(
        &mut self,
        filters: &Map<String, Value>,
    ) -> Result<Vec<R>, ApiError> {
        let filters = parse_filters::<R>(
            filters
                .iter()
                .map(|(k, v)| (k.as_str(), FilterValue::Json(v))),
        )?;
        Ok(R::db_list(self.conn.reborrow(), &filters, None, 0)?.1)
    }

    /// Inserts `row` (read-only fields are generated by the database) after its `before_save` hook.
    pub fn create<R: Resource>(&mut self, mut row: R) -> Result<R, ApiError> {
        row.before_save(self, None)?;
        let stored = R::db_insert(self.conn.reborrow(), &row)?;
        self.log(ChangeAction::Create, None, &stored)?;
        let hook_row = stored.clone();
        self.after_commit
            .push(Box::new(move || hook_row.after_save(true)));
        Ok(stored)
    }

    /// Replaces the stored `old` with `new` (same primary key) after `new`'s `before_save` hook.
    pub fn update<R: Resource>(&mut self, old: &R, mut new: R) -> Result<R, ApiError> {
        new.before_save(self, Some(old))?;
        let stored = R::db_update(self.conn.reborrow(), &new)?;
        self.log(ChangeAction::Update, Some(old), &stored)?;
        let hook_row = stored.clone();
        self.after_commit
            .push(Box::new(move || hook_row.after_save(false)));
        Ok(stored)
    }

    /// Deletes the stored `row` after its `before_delete` hook.
    pub fn delete<R: Resource>(&mut self, row: R) -> Result<(), ApiError> {
        row.before_delete(self)?;
        if R::db_delete(self.conn.reborrow(), &row.pk())? == 0 {
            return Err(ApiError::NotFound);
        }
        self.log(ChangeAction::Delete, Some(&row), &row)?;
        self.after_commit.push(Box::new(move || row.after_delete()));
        Ok(())
    }

    /// Bulk create: every row goes through its hooks and the change log, so each yields its event.
    pub fn create_many<R: Resource>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<Vec<R>, ApiError> {
        rows.into_iter().map(|row| self.create(row)).collect()
    }

    /// Bulk update by filter: `change` is applied to every object matching `filters` (equality on
    /// filterable fields, e.g. `{"list_id": 1}`); each changed object is stored through its hooks
    /// and the change log (a change of a group key is a move, as for a single update). Returns
    /// the stored objects.
    pub fn update_where<R: Resource>(
        &mut self,
        filters: &Map<String, Value>,
        mut change: impl FnMut(&mut R),
    ) -> Result<Vec<R>, ApiError> {
        let mut stored = Vec::new();
        for old in self.filter::<R>(filters)? {
            let mut new = old.clone();
            change(&mut new);
            stored.push(self.update(&old, new)?);
        }
        Ok(stored)
    }

    /// Bulk delete by filter: every matching object is deleted through its hooks and the change
    /// log. Returns how many were deleted.
    pub fn delete_where<R: Resource>(
        &mut self,
        filters: &Map<String, Value>,
    ) -> Result<usize, ApiError> {
        let rows = self.filter::<R>(filters)?;
        let n = rows.len();
        for row in rows {
            self.delete(row)?;
        }
        Ok(n)
    }

    fn log<R: Resource>(
        &mut self,
        action: ChangeAction,
        old: Option<&R>,
        row: &R,
    ) -> Result<(), ApiError> {
        let groups = |r: &R| -> Result<Option<String>, ApiError> {
            if R::META.group_keys.is_empty() {
                return Ok(None);
            }
            let map: Map<String, Value> = r
                .group_values()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            serde_json::to_string(&map)
                .map(Some)
                .map_err(ApiError::internal)
        };
        let change = NewChange {
            stream: R::META.stream,
            action,
            pk: serde_json::to_string(&row.pk()).map_err(ApiError::internal)?,
            old_groups: match old {
                Some(o) => groups(o)?,
                None => None,
            },
            new_groups: match action {
                ChangeAction::Delete => None,
                _ => groups(row)?,
            },
            row: serde_json::to_string(row).map_err(ApiError::internal)?,
            committed_at: self.now_ms,
        };
        changelog::append(self.conn.reborrow(), &change)?;
        self.changes += 1;
        Ok(())
    }
}

/// A filter value as it arrives: JSON (WebSocket) or text (an HTTP query string).
pub enum FilterValue<'a> {
    Json(&'a Value),
    Text(&'a str),
}

/// Parses equality filters for `R`; unknown or unfilterable fields and ill-typed values are 400.
pub fn parse_filters<'a, R: Resource>(
    filters: impl Iterator<Item = (&'a str, FilterValue<'a>)>,
) -> Result<Vec<R::Filter>, ApiError> {
    let mut parsed = Vec::new();
    for (field, value) in filters {
        let result = match value {
            FilterValue::Json(v) => R::parse_filter(field, v),
            // A query string has no types: try the text as a string, then as JSON (numbers, booleans).
            FilterValue::Text(t) => match R::parse_filter(field, &Value::String(t.to_owned())) {
                Some(Err(e)) => match serde_json::from_str::<Value>(t) {
                    Ok(v) => R::parse_filter(field, &v).map(|r| r.map_err(|_| e)),
                    Err(_) => Some(Err(e)),
                },
                other => other,
            },
        };
        match result {
            None => {
                return Err(ApiError::bad_request(format!(
                    "Cannot filter on {}: filterable fields are {}.",
                    Value::from(field),
                    filterable_list(R::META)
                )));
            }
            Some(Err(e)) => return Err(ApiError::bad_request(format!("Filter {field}: {e}"))),
            Some(Ok(f)) => parsed.push(f),
        }
    }
    Ok(parsed)
}

fn filterable_list(meta: &crate::resource::ResourceMeta) -> String {
    let names: Vec<String> = meta
        .fields
        .iter()
        .filter(|f| f.filterable)
        .map(|f| f.name.to_owned())
        .collect();
    names.join(", ")
}
