//! Group commit on SQLite. One thread owns the writes: writers queue their transaction bodies
//! to it, and it commits what is queued together, in one transaction, each body inside a
//! `SAVEPOINT` of its own. A body that fails (or panics) is rolled back to its savepoint and
//! answered with its error; the others commit. So a write costs one commit only when it is
//! alone, and no write waits for SQLite's lock or a thread of the blocking pool.
//!
//! Order is the queue's: the changes of each body are appended to the log in that order (the
//! stream counter gives their seqs inside the transaction, and a body rolled back releases the
//! seqs it took), and after the commit each body's changes are handed to the feed in that
//! order, before its writer is answered. Nothing is answered or published before the commit:
//! a crash loses only writes that nobody was told had committed.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use diesel::Connection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sqlite::SqliteConnection;
use tokio::sync::{Notify, mpsc, oneshot};

use super::changelog;
use super::commit::{Committed, Finished};
use super::conn::AnyConn;
use crate::error::{ApiError, panic_message};

/// Bodies committed together at most.
const MAX_BATCH: usize = 64;
/// Bodies waiting for the writer at most (then writers wait to queue).
const QUEUE: usize = 1024;

/// A write transaction's body, its value type erased.
pub(super) type Body =
    Box<dyn FnOnce(AnyConn<'_>) -> Result<Finished<Box<dyn Any + Send>>, ApiError> + Send>;

struct Job {
    body: Body,
    done: oneshot::Sender<Result<Box<dyn Any + Send>, ApiError>>,
}

/// The queue to the writer thread; the thread ends when this is dropped.
pub(super) struct Writer {
    queue: mpsc::Sender<Job>,
    /// Batches taken from the queue so far.
    batches: Arc<std::sync::atomic::AtomicU64>,
}

/// What the writer thread needs of the store.
pub(super) struct Shared {
    pub(super) pool: Pool<ConnectionManager<SqliteConnection>>,
    pub(super) committed: Arc<Notify>,
    pub(super) publish: Arc<OnceLock<mpsc::Sender<Committed>>>,
}

impl Writer {
    /// Starts the writer thread, inside `runtime` (after-commit hooks may spawn tasks).
    pub(super) fn spawn(shared: Shared, runtime: tokio::runtime::Handle) -> std::io::Result<Self> {
        let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
        let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = batches.clone();
        std::thread::Builder::new()
            .name("rest-live-writer".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                while let Some(first) = jobs.blocking_recv() {
                    let mut batch = Vec::with_capacity(8);
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    commit(&shared, batch);
                }
            })?;
        Ok(Self { queue, batches })
    }

    /// How many batches the writer has taken so far (each is committed, or fails, as one).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `body` and waits for its outcome once its batch committed (or failed).
    pub(super) async fn write(&self, body: Body) -> Result<Box<dyn Any + Send>, ApiError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Job { body, done })
            .await
            .map_err(|_| ApiError::internal("the writer thread is gone"))?;
        outcome
            .await
            .map_err(|_| ApiError::internal("the writer thread stopped before answering"))?
    }
}

/// Runs one body inside its savepoint: its error, or its panic, rolls back only its own writes.
fn run_one(
    conn: &mut SqliteConnection,
    body: Body,
) -> Result<Finished<Box<dyn Any + Send>>, ApiError> {
    conn.transaction(|c| {
        match catch_unwind(AssertUnwindSafe(|| {
            let mut any = AnyConn::Sqlite(c);
            let finished = body(any.reborrow())?;
            if !finished.changes.is_empty() {
                changelog::notify_commit(any)?;
            }
            Ok(finished)
        })) {
            Ok(outcome) => outcome,
            Err(payload) => Err(ApiError::internal(format!(
                "a write panicked: {}",
                panic_message(payload.as_ref())
            ))),
        }
    })
}

/// Commits one batch, then answers each writer in order (publishing each commit's changes
/// first).
fn commit(shared: &Shared, batch: Vec<Job>) {
    let mut conn = match shared.pool.get() {
        Ok(conn) => conn,
        Err(error) => {
            let error = ApiError::internal(error);
            for job in batch {
                let _ = job.done.send(Err(error.clone()));
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let committed = conn.immediate_transaction(|c| {
        for Job { body, done } in batch {
            let outcome = run_one(c, body);
            outcomes.push((done, outcome));
        }
        Ok::<_, diesel::result::Error>(())
    });
    drop(conn);
    if let Err(error) = committed {
        // Nothing committed: every body fails, those that had not with the commit's error.
        let error = ApiError::from(error);
        for (done, outcome) in outcomes {
            let reply = match outcome {
                Ok(_) => Err(error.clone()),
                Err(own) => Err(own),
            };
            let _ = done.send(reply);
        }
        return;
    }
    for (done, outcome) in outcomes {
        let reply = match outcome {
            Ok(finished) => {
                let changes = Committed {
                    changes: finished.changes,
                    feed: shared.committed.clone(),
                };
                let mut hooks_ran = Ok(());
                for hook in finished.after_commit {
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(hook)) {
                        hooks_ran = Err(ApiError::internal(format!(
                            "an after-commit hook panicked: {}",
                            panic_message(payload.as_ref())
                        )));
                    }
                }
                // In commit order. A full queue drops the changes, which wakes the feed to read
                // them from the log.
                if !changes.changes.is_empty()
                    && let Some(queue) = shared.publish.get()
                {
                    let _ = queue.try_send(changes);
                }
                hooks_ran.map(|()| finished.value)
            }
            Err(error) => Err(error),
        };
        let _ = done.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use diesel::RunQueryDsl;
    use diesel::connection::SimpleConnection;

    use super::*;

    fn insert(conn: AnyConn<'_>, x: &str) -> Result<(), ApiError> {
        let AnyConn::Sqlite(c) = conn else {
            unreachable!("a SQLite test")
        };
        diesel::sql_query(format!("INSERT INTO t (x) VALUES ('{x}')")).execute(c)?;
        Ok(())
    }

    fn finished(value: &'static str) -> Finished<Box<dyn Any + Send>> {
        Finished {
            value: Box::new(value),
            changes: Vec::new(),
            after_commit: Vec::new(),
        }
    }

    /// One batch holding a write that succeeds, one that fails after writing, one that panics
    /// after writing, one whose after-commit hook panics, and one more that succeeds: the
    /// failing and panicking ones are rolled back alone and answered with their errors, every
    /// other one commits and is answered with its value.
    #[tokio::test]
    async fn one_batch_commits_the_writes_that_succeed_and_reports_each_outcome() {
        let dir = std::env::temp_dir().join(format!("rest-live-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("writer.db");
        let _ = std::fs::remove_file(&path);
        let pool = Pool::builder()
            .max_size(2)
            .build(ConnectionManager::<SqliteConnection>::new(
                path.to_string_lossy().into_owned(),
            ))
            .expect("a pool");
        pool.get()
            .expect("a connection")
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x TEXT NOT NULL);")
            .expect("the table");
        let writer = Arc::new(
            Writer::spawn(
                Shared {
                    pool: pool.clone(),
                    committed: Arc::new(Notify::new()),
                    publish: Arc::new(OnceLock::new()),
                },
                tokio::runtime::Handle::current(),
            )
            .expect("the writer thread"),
        );
        // The first write holds the writer until the others are queued, so that they make one
        // batch after it.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(Box::new(move |c| {
                        hold.recv().ok();
                        insert(c, "first")?;
                        Ok(finished("first"))
                    }))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let hooks = Arc::new(AtomicUsize::new(0));
        let bodies: Vec<Body> = vec![
            Box::new(|c| {
                insert(c, "a")?;
                Ok(finished("a"))
            }),
            Box::new(|c| {
                insert(c, "refused")?;
                Err(ApiError::bad_request("refused after writing"))
            }),
            Box::new(|c| {
                insert(c, "panicked")?;
                panic!("a hook panicked before the save");
            }),
            Box::new({
                let hooks = hooks.clone();
                move |c| {
                    insert(c, "hooked")?;
                    let mut done = finished("hooked");
                    done.after_commit.push(Box::new(move || {
                        hooks.fetch_add(1, Ordering::SeqCst);
                        panic!("an after-commit hook panicked");
                    }));
                    Ok(done)
                }
            }),
            Box::new(|c| {
                insert(c, "b")?;
                Ok(finished("b"))
            }),
        ];
        let mut waiting = Vec::new();
        for body in bodies {
            let writer = writer.clone();
            waiting.push(tokio::spawn(async move { writer.write(body).await }));
            // Queued in this order.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        release.send(()).expect("release the first write");
        let value = |r: Result<Box<dyn Any + Send>, ApiError>| {
            r.map(|v| *v.downcast::<&'static str>().expect("a str"))
        };
        assert_eq!(value(first.await.expect("joined")).ok(), Some("first"));
        let mut outcomes = Vec::new();
        for w in waiting {
            outcomes.push(value(w.await.expect("joined")));
        }
        assert_eq!(outcomes[0].as_ref().ok(), Some(&"a"));
        assert!(
            matches!(&outcomes[1], Err(ApiError::BadRequest(m)) if m == "refused after writing"),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[2], Err(ApiError::Internal(_))),
            "{outcomes:?}"
        );
        // Committed, but its writer hears of the hook's panic.
        assert!(
            matches!(outcomes[3], Err(ApiError::Internal(_))),
            "{outcomes:?}"
        );
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
        assert_eq!(outcomes[4].as_ref().ok(), Some(&"b"));
        let rows: Vec<String> = {
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                x: String,
            }
            diesel::sql_query("SELECT x FROM t ORDER BY rowid")
                .load::<Row>(&mut *pool.get().expect("a connection"))
                .expect("rows")
                .into_iter()
                .map(|r| r.x)
                .collect()
        };
        assert_eq!(rows, ["first", "a", "hooked", "b"]);
        // The first write alone, then the five others together.
        assert_eq!(writer.batches(), 2);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
