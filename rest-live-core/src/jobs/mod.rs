//! Background jobs as live resources (docs/protocol.md "Jobs"): a job is declared on a resource (on
//! the collection, or on one object), started with 202 + `Location`, persisted as a row of
//! `rest_live_jobs`, run by a bounded worker pool, and its state is the live stream `jobs`: every
//! state change goes through the change log, so subscribers get an `update` event, in order.
//!
//! Guarantees: a job is claimed by exactly one worker (an atomic claim on SQLite, `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, also across processes). A worker refreshes a heartbeat while it runs a
//! job; a job whose heartbeat is older than [`crate::Config::job_lease`] (its process died) is
//! queued again, at most [`crate::Config::job_max_attempts`] times in all, after which it fails
//! with "worker lost": so a job may run more than once after a crash, and must be idempotent.
//! A cancelled job never reports SUCCESS: its state is CANCELLED at once, the job sees
//! [`JobContext::is_cancelled`], and [`JobContext::transaction`] refuses to write for it.
//!
//! The files: [`declare`] (the [`Job`] trait and its registration), [`args`] (decoding a job's
//! arguments, with errors that name the argument), [`context`] (what a running
//! job has), [`record`] (the persisted row and its transitions), [`worker`] (claims, leases,
//! recovery), [`api`] (start, state, result, cancel, for HTTP and WebSocket alike) and [`stream`]
//! (the `jobs` stream as a read-only resource).

pub mod api;
pub mod context;
pub mod declare;
pub mod error;
pub mod record;
pub mod stream;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::store::Store;
pub use context::JobContext;
pub use declare::{Job, JobBinding, JobBound, JobRegistration};
pub use error::JobError;
pub use record::JOBS_STREAM;
pub use stream::JOBS_BINDING;

/// The jobs of an app: the registered ones, this process's worker identity, its running jobs,
/// and the store and API prefix they work with.
pub struct Jobs {
    by_key: HashMap<(&'static str, &'static str), &'static dyn JobBinding>,
    /// This process's worker identity (claims and heartbeats carry it).
    pub(crate) worker: String,
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) store: Store,
    /// The HTTP API prefix, for the URIs in job states.
    pub(crate) prefix: String,
}

impl Jobs {
    pub(crate) fn new(jobs: Vec<&'static dyn JobBinding>, store: Store, prefix: String) -> Self {
        Self {
            by_key: jobs
                .into_iter()
                .map(|j| ((j.resource().meta().stream, j.name()), j))
                .collect(),
            worker: uuid::Uuid::new_v4().simple().to_string(),
            running: Mutex::default(),
            wake: Arc::new(Notify::new()),
            store,
            prefix,
        }
    }

    /// The job `name` of `stream`, if declared.
    pub fn declared(&self, stream: &str, name: &str) -> Option<&'static dyn JobBinding> {
        self.by_key
            .iter()
            .find(|((s, n), _)| *s == stream && *n == name)
            .map(|(_, j)| *j)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every declared job, ordered by stream and name.
    pub fn all(&self) -> Vec<&'static dyn JobBinding> {
        let mut all: Vec<_> = self.by_key.values().copied().collect();
        all.sort_by_key(|j| (j.resource().meta().stream, j.name()));
        all
    }

    /// The cancellation flag of a job running in this process.
    fn flag(&self, id: &str) -> Option<Arc<AtomicBool>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Notes a job running here (its flag is set when it is cancelled), or that it ended.
    fn set_running(&self, id: &str, flag: Option<Arc<AtomicBool>>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match flag {
            Some(flag) => running.insert(id.to_owned(), flag),
            None => running.remove(id),
        };
    }
}
