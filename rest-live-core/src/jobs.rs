//! Background jobs as live resources (PROTOCOL.md "Jobs"): a job is declared on a resource (on
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

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::auth::{BoxFuture, Principal};
use crate::binding::{Binding, Input, Written};
use crate::changelog::{ChangeAction, NewChange};
use crate::error::{ApiError, FieldErrors};
use crate::permissions::Action;
use crate::protocol::to_raw;
use crate::resource::{FieldMeta, Resource, ResourceMeta};
use crate::store::AnyConn;
use crate::tx::Tx;

diesel::table! {
    rest_live_jobs (id) {
        id -> Text,
        stream -> Text,
        name -> Text,
        pk -> Nullable<Text>,
        args -> Text,
        state -> Text,
        result -> Nullable<Text>,
        error -> Nullable<Text>,
        owner -> Nullable<Text>,
        principal -> Text,
        attempts -> Integer,
        worker -> Nullable<Text>,
        heartbeat_at -> Nullable<BigInt>,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

/// The stream of job states.
pub const JOBS_STREAM: &str = "jobs";

/// Where a job's state is, below the API prefix.
fn resource_uri(prefix: &str, id: &str) -> String {
    format!("{}/jobs/{id}/", prefix.trim_end_matches('/'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Started,
    Success,
    Failure,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Started => "STARTED",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Cancelled => "CANCELLED",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "PENDING" => Self::Pending,
            "STARTED" => Self::Started,
            "SUCCESS" => Self::Success,
            "CANCELLED" => Self::Cancelled,
            _ => Self::Failure,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Cancelled)
    }
}

/// Why a job failed; its result is `{"error": "<message>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError(pub String);

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ApiError> for JobError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Internal(_) => JobError("Internal error".into()),
            other => JobError(
                other
                    .errors()
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

impl From<String> for JobError {
    fn from(s: String) -> Self {
        JobError(s)
    }
}

impl From<&str> for JobError {
    fn from(s: &str) -> Self {
        JobError(s.to_owned())
    }
}

/// A job declared on a resource. Register it with [`crate::register_job!`] (or
/// [`crate::AppBuilder::job`]).
///
/// It is started with `POST /api/<stream>/<NAME>/` (or `POST /api/<stream>/<pk>/<NAME>/` when
/// [`Job::ON_OBJECT`]), or with the action `NAME` on the resource's WebSocket stream; the body
/// (or `data`) holds its arguments, checked before anything is queued (400).
pub trait Job: Send + Sync + 'static {
    type Resource: Resource;
    type Args: DeserializeOwned + Send + 'static;
    type Output: Serialize + Send + 'static;

    /// The action name; not one of the built-in actions.
    const NAME: &'static str;
    /// A job on one object (its pk is in [`JobContext::pk`]) rather than on the collection.
    const ON_OBJECT: bool = false;

    /// Checks arguments beyond their types, before the job is queued.
    fn validate(args: &Self::Args) -> Result<(), FieldErrors> {
        let _ = args;
        Ok(())
    }

    /// The work. Its writes go through [`JobContext::transaction`], so they produce events and
    /// stop once the job is cancelled.
    fn run(
        ctx: JobContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}

/// A registered job, type-erased.
pub trait JobBinding: Send + Sync + 'static {
    fn resource(&self) -> &'static dyn Binding;
    fn name(&self) -> &'static str;
    fn on_object(&self) -> bool;
    /// Checks the arguments (400 with what is wrong).
    fn check(&self, args: &Value) -> Result<(), ApiError>;
    fn run(&self, ctx: JobContext, args: Value) -> BoxFuture<'static, Result<Value, JobError>>;
}

/// The [`JobBinding`] of job `J`.
pub struct JobBound<J>(PhantomData<fn() -> J>);

impl<J> JobBound<J> {
    pub const INSTANCE: Self = JobBound(PhantomData);
}

fn parse_args<J: Job>(args: &Value) -> Result<J::Args, ApiError> {
    let args = J::Args::deserialize(args).map_err(|e| {
        ApiError::Validation(FieldErrors::single(FieldErrors::NON_FIELD, e.to_string()))
    })?;
    J::validate(&args)?;
    Ok(args)
}

impl<J: Job> JobBinding for JobBound<J> {
    fn resource(&self) -> &'static dyn Binding {
        &crate::binding::Bound::<J::Resource>::INSTANCE
    }

    fn name(&self) -> &'static str {
        J::NAME
    }

    fn on_object(&self) -> bool {
        J::ON_OBJECT
    }

    fn check(&self, args: &Value) -> Result<(), ApiError> {
        parse_args::<J>(args).map(|_| ())
    }

    fn run(&self, ctx: JobContext, args: Value) -> BoxFuture<'static, Result<Value, JobError>> {
        Box::pin(async move {
            let args = parse_args::<J>(&args)?;
            let output = J::run(ctx, args).await?;
            serde_json::to_value(output).map_err(|e| JobError(e.to_string()))
        })
    }
}

/// Submitted by [`crate::register_job!`].
pub struct JobRegistration {
    pub job: &'static dyn JobBinding,
}

inventory::collect!(JobRegistration);

/// Registers a [`Job`] so that every app serves it: `rest_live::register_job!(ArchiveDone);`
#[macro_export]
macro_rules! register_job {
    ($job:ty) => {
        $crate::__private::inventory::submit! {
            $crate::jobs::JobRegistration { job: &$crate::jobs::JobBound::<$job>::INSTANCE }
        }
    };
}

/// What a running job has at hand.
pub struct JobContext {
    app: App,
    id: String,
    principal: Principal,
    pk: Option<String>,
    cancelled: Arc<AtomicBool>,
}

impl JobContext {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Who started the job; its writes are made as this principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The object's pk, for a job on one object.
    pub fn pk<P: DeserializeOwned>(&self) -> Result<P, JobError> {
        let pk = self.pk.as_deref().ok_or("this job is not on an object")?;
        serde_json::from_str(pk).map_err(|e| JobError(e.to_string()))
    }

    /// Whether the job was cancelled: stop as soon as convenient.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Waits, or returns an error at once if the job is cancelled meanwhile.
    pub async fn sleep(&self, duration: Duration) -> Result<(), JobError> {
        let step = Duration::from_millis(20);
        let mut left = duration;
        while !left.is_zero() {
            if self.is_cancelled() {
                return Err("The job was cancelled.".into());
            }
            let now = left.min(step);
            tokio::time::sleep(now).await;
            left -= now;
        }
        if self.is_cancelled() {
            return Err("The job was cancelled.".into());
        }
        Ok(())
    }

    /// Runs `f` in a write transaction as the job's principal. Refused once the job is no longer
    /// running (cancelled, or taken over after a lost heartbeat): checked inside the transaction,
    /// so a cancelled job's writes stop.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let (id, worker) = (self.id.clone(), self.app.jobs().worker.clone());
        let result = self
            .app
            .store()
            .write(self.principal.clone(), move |tx| {
                if !is_running(tx.conn(), &id, &worker)? {
                    return Err(ApiError::Conflict("The job was cancelled.".into()));
                }
                f(tx)
            })
            .await;
        result.map_err(JobError::from)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

type JobRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i32,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
);

/// One job as stored.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub stream: String,
    pub name: String,
    pub pk: Option<String>,
    pub args: String,
    pub state: JobState,
    pub result: Option<String>,
    pub error: Option<String>,
    pub owner: Option<String>,
    pub principal: String,
    pub attempts: i32,
    pub worker: Option<String>,
}

impl From<JobRow> for JobRecord {
    fn from(r: JobRow) -> Self {
        Self {
            id: r.0,
            stream: r.1,
            name: r.2,
            pk: r.3,
            args: r.4,
            state: JobState::parse(&r.5),
            result: r.6,
            error: r.7,
            owner: r.8,
            principal: r.9,
            attempts: r.10,
            worker: r.11,
        }
    }
}

impl JobRecord {
    /// The state resource: `{"id", "state", "resource_uri"}`, plus `"result_uri"` when finished
    /// and `"owner"` (which [`JobsBinding`] hides from clients; audiences check it).
    fn state_json(&self, prefix: &str) -> Map<String, Value> {
        let uri = resource_uri(prefix, &self.id);
        let mut map = Map::new();
        map.insert("id".into(), Value::from(self.id.clone()));
        map.insert("state".into(), Value::from(self.state.as_str()));
        map.insert("resource_uri".into(), Value::from(uri.clone()));
        if self.state.is_finished() {
            map.insert("result_uri".into(), Value::from(format!("{uri}result/")));
        }
        map.insert(
            "owner".into(),
            self.owner.clone().map_or(Value::Null, Value::from),
        );
        map
    }

    fn visible_to(&self, principal: &Principal) -> bool {
        principal.is_system() || self.owner == principal.id
    }
}

fn load(conn: AnyConn<'_>, id: &str) -> QueryResult<Option<JobRecord>> {
    use rest_live_jobs::dsl as j;
    let row: Option<JobRow> = crate::__with_conn!(conn, |c| j::rest_live_jobs
        .find(id)
        .get_result(c)
        .optional())?;
    Ok(row.map(JobRecord::from))
}

/// [`load`] in a write transaction that then writes depending on what it read: on PostgreSQL the
/// row stays locked to the end of the transaction, so that a job's end, its cancellation and its
/// own writes are serialized (under READ COMMITTED, a cancel committed between the read and the
/// write was overwritten: SUCCESS after a 410). SQLite write transactions are exclusive already.
fn load_locked(conn: AnyConn<'_>, id: &str) -> QueryResult<Option<JobRecord>> {
    use rest_live_jobs::dsl as j;
    let row: Option<JobRow> = match conn {
        AnyConn::Sqlite(c) => j::rest_live_jobs.find(id).get_result(c).optional()?,
        #[cfg(feature = "postgres")]
        AnyConn::Pg(c) => j::rest_live_jobs
            .find(id)
            .for_update()
            .first(c)
            .optional()?,
    };
    Ok(row.map(JobRecord::from))
}

fn is_running(conn: AnyConn<'_>, id: &str, worker: &str) -> QueryResult<bool> {
    Ok(load_locked(conn, id)?
        .is_some_and(|j| j.state == JobState::Started && j.worker.as_deref() == Some(worker)))
}

/// Moves a job to `state` (only from one of `from`), logging the change for the `jobs` stream.
/// Returns the new record, or `None` if the job was not in one of `from`.
fn transition(
    tx: &mut Tx<'_>,
    prefix: &str,
    id: &str,
    from: &[JobState],
    state: JobState,
    set: impl FnOnce(&mut JobRecord),
) -> Result<Option<JobRecord>, ApiError> {
    use rest_live_jobs::dsl as j;
    let Some(old) = load_locked(tx.conn(), id)? else {
        return Ok(None);
    };
    if !from.contains(&old.state) {
        return Ok(None);
    }
    let mut new = old.clone();
    new.state = state;
    set(&mut new);
    let now = now_ms();
    let finished = state.is_finished().then_some(now);
    let heartbeat = (state == JobState::Started).then_some(now);
    crate::__with_conn!(tx.conn(), |c| {
        diesel::update(j::rest_live_jobs.find(id))
            .set((
                j::state.eq(state.as_str()),
                j::result.eq(&new.result),
                j::error.eq(&new.error),
                j::worker.eq(&new.worker),
                j::attempts.eq(new.attempts),
                j::heartbeat_at.eq(heartbeat),
                j::finished_at.eq(finished),
            ))
            .execute(c)
    })?;
    log(tx, prefix, Some(&old), &new)?;
    Ok(Some(new))
}

fn log(
    tx: &mut Tx<'_>,
    prefix: &str,
    old: Option<&JobRecord>,
    new: &JobRecord,
) -> Result<(), ApiError> {
    let row = |r: &JobRecord| Value::Object(r.state_json(prefix)).to_string();
    // Every state, the first (PENDING) included, is an `update` of the job: a client following
    // the job by id (with `since` to see it from the start) gets one event per state.
    tx.append(NewChange {
        stream: JOBS_STREAM,
        action: ChangeAction::Update,
        pk: Value::from(new.id.clone()).to_string(),
        old_groups: None,
        new_groups: None,
        row: row(new),
        old_row: Some(row(old.unwrap_or(new))),
        committed_at: now_ms(),
    })
}

/// The jobs of an app: the registered ones, this process's worker identity and its running jobs.
pub struct Jobs {
    by_key: HashMap<(&'static str, &'static str), &'static dyn JobBinding>,
    /// This process's worker identity (claims and heartbeats carry it).
    pub(crate) worker: String,
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    wake: Arc<Notify>,
}

impl Jobs {
    pub(crate) fn new(jobs: Vec<&'static dyn JobBinding>) -> Self {
        Self {
            by_key: jobs
                .into_iter()
                .map(|j| ((j.resource().meta().stream, j.name()), j))
                .collect(),
            worker: uuid::Uuid::new_v4().simple().to_string(),
            running: Mutex::default(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The job `name` of `stream`, if declared.
    pub fn get(&self, stream: &str, name: &str) -> Option<&'static dyn JobBinding> {
        self.by_key
            .iter()
            .find(|((s, n), _)| *s == stream && *n == name)
            .map(|(_, j)| *j)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every declared job, ordered by stream and name.
    pub fn iter(&self) -> Vec<&'static dyn JobBinding> {
        let mut all: Vec<_> = self.by_key.values().copied().collect();
        all.sort_by_key(|j| (j.resource().meta().stream, j.name()));
        all
    }

    fn flag(&self, id: &str) -> Option<Arc<AtomicBool>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

/// Queues `job` for `principal` (checking its arguments and permissions first) and returns its
/// state resource.
pub async fn start(
    app: &App,
    principal: &Principal,
    job: &'static dyn JobBinding,
    pk: Option<Input>,
    args: Value,
) -> Result<Box<RawValue>, ApiError> {
    let binding = job.resource();
    job.check(&args)?;
    let pk = match (job.on_object(), pk) {
        (true, Some(pk)) => {
            let action = Action::Update;
            if !binding.allows(principal, action) {
                return Err(ApiError::PermissionDenied);
            }
            let canonical = binding.canonical_pk(&pk)?;
            let who = principal.clone();
            // Only an object the principal can read can have a job.
            app.store()
                .read(move |c| binding.retrieve(c, &who, &pk))
                .await?;
            Some(canonical)
        }
        (true, None) => return Err(ApiError::bad_request("\"pk\" is required.")),
        (false, _) => {
            if !binding.allows(principal, Action::Create) {
                return Err(ApiError::PermissionDenied);
            }
            None
        }
    };
    let record = JobRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        stream: binding.meta().stream.to_owned(),
        name: job.name().to_owned(),
        pk,
        args: args.to_string(),
        state: JobState::Pending,
        result: None,
        error: None,
        owner: principal.id.clone(),
        principal: serde_json::to_string(principal).map_err(ApiError::internal)?,
        attempts: 0,
        worker: None,
    };
    let prefix = app.config().http_prefix.clone();
    let stored = record.clone();
    app.store()
        .write(Principal::system(), move |tx| {
            use rest_live_jobs::dsl as j;
            let r = &stored;
            crate::__with_conn!(tx.conn(), |c| {
                diesel::insert_into(j::rest_live_jobs)
                    .values((
                        j::id.eq(&r.id),
                        j::stream.eq(&r.stream),
                        j::name.eq(&r.name),
                        j::pk.eq(&r.pk),
                        j::args.eq(&r.args),
                        j::state.eq(r.state.as_str()),
                        j::owner.eq(&r.owner),
                        j::principal.eq(&r.principal),
                        j::attempts.eq(0),
                        j::created_at.eq(now_ms()),
                    ))
                    .execute(c)
            })?;
            log(tx, &prefix, None, r)
        })
        .await?;
    app.jobs().wake.notify_one();
    let mut state = record.state_json(&app.config().http_prefix);
    state.remove("owner");
    to_raw(&state)
}

/// A job's state as the principal may see it (404 if it may not).
pub async fn get(app: &App, principal: &Principal, id: String) -> Result<JobRecord, ApiError> {
    let record = app
        .store()
        .read(move |c| Ok(load(c, &id)?))
        .await?
        .ok_or(ApiError::NotFound)?;
    if !record.visible_to(principal) {
        return Err(ApiError::NotFound);
    }
    Ok(record)
}

/// The state resource of a job (without the owner).
pub fn state_resource(app: &App, record: &JobRecord) -> Map<String, Value> {
    let mut state = record.state_json(&app.config().http_prefix);
    state.remove("owner");
    state
}

/// `{"result": …}` after SUCCESS, `{"error": …}` after FAILURE or cancellation; 404 before.
pub fn result_resource(record: &JobRecord) -> Result<Value, ApiError> {
    match record.state {
        JobState::Success => {
            let result = record
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .unwrap_or(Value::Null);
            Ok(json!({ "result": result }))
        }
        JobState::Failure => Ok(json!({ "error": record.error.clone().unwrap_or_default() })),
        JobState::Cancelled => Ok(json!({ "error": "The job was cancelled." })),
        _ => Err(ApiError::NotFound),
    }
}

/// Cancels a pending or running job: Ok if it was, 400 if it had finished, 404 if unknown.
pub async fn cancel(app: &App, principal: &Principal, id: String) -> Result<(), ApiError> {
    let who = principal.clone();
    let prefix = app.config().http_prefix.clone();
    let target = id.clone();
    app.store()
        .write(Principal::system(), move |tx| {
            let record = load_locked(tx.conn(), &target)?.ok_or(ApiError::NotFound)?;
            if !record.visible_to(&who) {
                return Err(ApiError::NotFound);
            }
            if record.state.is_finished() {
                return Err(ApiError::bad_request("Job already finished"));
            }
            transition(
                tx,
                &prefix,
                &target,
                &[JobState::Pending, JobState::Started],
                JobState::Cancelled,
                |_| {},
            )?;
            Ok(())
        })
        .await?;
    if let Some(flag) = app.jobs().flag(&id) {
        flag.store(true, Ordering::Release);
    }
    Ok(())
}

/// The worker pool: claims pending jobs while it has room, runs them, and re-queues jobs whose
/// worker stopped sending heartbeats.
pub(crate) fn spawn_workers(app: App) -> tokio::task::JoinHandle<()> {
    let weak = app.downgrade();
    drop(app);
    tokio::spawn(async move {
        let Some(app) = weak.upgrade() else { return };
        let config = app.config().clone();
        let slots = Arc::new(Semaphore::new(config.job_workers.max(1)));
        drop(app);
        let mut last_recovery = tokio::time::Instant::now() - config.job_lease;
        loop {
            let Some(app) = weak.upgrade() else { return };
            if last_recovery.elapsed() >= config.job_lease / 2 {
                last_recovery = tokio::time::Instant::now();
                if let Err(error) = recover(&app).await {
                    tracing::warn!(%error, "recovering stale jobs failed");
                }
            }
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                match claim(&app).await {
                    Ok(Some(record)) => {
                        tokio::spawn(run(app.clone(), record, permit));
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "claiming a job failed");
                        break;
                    }
                }
            }
            // Wait without holding the app, so that dropping it stops the workers promptly.
            let wake = app.jobs().wake.clone();
            drop(app);
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(config.job_poll_interval) => {}
            }
        }
    })
}

/// Claims the oldest pending job for this worker.
async fn claim(app: &App) -> Result<Option<JobRecord>, ApiError> {
    let worker = app.jobs().worker.clone();
    let prefix = app.config().http_prefix.clone();
    app.store()
        .write(Principal::system(), move |tx| {
            use rest_live_jobs::dsl as j;
            let next = match tx.conn() {
                AnyConn::Sqlite(c) => j::rest_live_jobs
                    .filter(j::state.eq(JobState::Pending.as_str()))
                    .order((j::created_at.asc(), j::id.asc()))
                    .select(j::id)
                    .first::<String>(c)
                    .optional()?,
                // Another process's claim in flight holds its row: skip it, never wait or share.
                #[cfg(feature = "postgres")]
                AnyConn::Pg(c) => j::rest_live_jobs
                    .filter(j::state.eq(JobState::Pending.as_str()))
                    .order((j::created_at.asc(), j::id.asc()))
                    .select(j::id)
                    .for_update()
                    .skip_locked()
                    .first::<String>(c)
                    .optional()?,
            };
            let Some(id) = next else { return Ok(None) };
            transition(
                tx,
                &prefix,
                &id,
                &[JobState::Pending],
                JobState::Started,
                |r| {
                    r.worker = Some(worker);
                    r.attempts += 1;
                },
            )
        })
        .await
}

/// Re-queues (or fails, after too many attempts) started jobs whose heartbeat is stale.
async fn recover(app: &App) -> Result<(), ApiError> {
    let lease = app.config().job_lease;
    let max_attempts = app.config().job_max_attempts as i32;
    let prefix = app.config().http_prefix.clone();
    let stale_before = now_ms() - lease.as_millis() as i64;
    let recovered = app
        .store()
        .write(Principal::system(), move |tx| {
            use rest_live_jobs::dsl as j;
            let stale = j::rest_live_jobs
                .filter(j::state.eq(JobState::Started.as_str()))
                .filter(j::heartbeat_at.lt(stale_before))
                .select(j::id);
            let stale: Vec<String> = match tx.conn() {
                AnyConn::Sqlite(c) => stale.load(c)?,
                // Locked, and still stale once locked: another process's recovery (or a claim
                // that followed it) in flight is skipped, never undone.
                #[cfg(feature = "postgres")]
                AnyConn::Pg(c) => stale.for_update().skip_locked().load(c)?,
            };
            for id in &stale {
                let attempts = load(tx.conn(), id)?.map_or(0, |r| r.attempts);
                if attempts >= max_attempts {
                    transition(
                        tx,
                        &prefix,
                        id,
                        &[JobState::Started],
                        JobState::Failure,
                        |r| {
                            r.error = Some("worker lost".into());
                        },
                    )?;
                } else {
                    transition(
                        tx,
                        &prefix,
                        id,
                        &[JobState::Started],
                        JobState::Pending,
                        |r| {
                            r.worker = None;
                        },
                    )?;
                }
            }
            Ok(stale.len())
        })
        .await?;
    if recovered > 0 {
        tracing::warn!(recovered, "jobs whose worker stopped were recovered");
        app.jobs().wake.notify_one();
    }
    Ok(())
}

async fn run(app: App, record: JobRecord, permit: OwnedSemaphorePermit) {
    let id = record.id.clone();
    let flag = Arc::new(AtomicBool::new(false));
    app.jobs()
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), flag.clone());
    let heartbeat = tokio::spawn(heartbeat(app.clone(), id.clone(), flag.clone()));
    let outcome = match app.jobs().get(&record.stream, &record.name) {
        None => Err(JobError(format!(
            "no job {:?} on stream {:?} in this build",
            record.name, record.stream
        ))),
        Some(job) => {
            let principal: Principal =
                serde_json::from_str(&record.principal).unwrap_or_else(|_| Principal::anonymous());
            let ctx = JobContext {
                app: app.clone(),
                id: id.clone(),
                principal,
                pk: record.pk.clone(),
                cancelled: flag.clone(),
            };
            let args = serde_json::from_str(&record.args).unwrap_or(Value::Null);
            match AssertUnwindSafe(job.run(ctx, args)).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(_) => Err(JobError("The job panicked.".into())),
            }
        }
    };
    heartbeat.abort();
    let worker = app.jobs().worker.clone();
    let prefix = app.config().http_prefix.clone();
    let finished = app
        .store()
        .write(Principal::system(), move |tx| {
            // Only a job still running here is finished here: a cancelled one stays cancelled.
            if !is_running(tx.conn(), &id, &worker)? {
                return Ok(None);
            }
            let (state, result, error) = match outcome {
                Ok(value) => (JobState::Success, Some(value.to_string()), None),
                Err(e) => (JobState::Failure, None, Some(e.0)),
            };
            transition(tx, &prefix, &id, &[JobState::Started], state, |r| {
                r.result = result;
                r.error = error;
            })
        })
        .await;
    match finished {
        Ok(Some(r)) => tracing::debug!(job = %r.id, state = r.state.as_str(), "job finished"),
        Ok(None) => tracing::debug!(job = %record.id, "job ended after it was cancelled"),
        Err(error) => tracing::warn!(job = %record.id, %error, "recording a job's end failed"),
    }
    app.jobs()
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&record.id);
    drop(permit);
    app.jobs().wake.notify_one();
}

/// Keeps the claim alive while the job runs, and notices a cancellation made by any process.
async fn heartbeat(app: App, id: String, cancelled: Arc<AtomicBool>) {
    let every = (app.config().job_lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        let (id, worker) = (id.clone(), app.jobs().worker.clone());
        let alive = app
            .store()
            .maintain(move |c| {
                use rest_live_jobs::dsl as j;
                let updated = crate::__with_conn!(c, |c| {
                    diesel::update(
                        j::rest_live_jobs
                            .filter(j::id.eq(&id))
                            .filter(j::state.eq(JobState::Started.as_str()))
                            .filter(j::worker.eq(&worker)),
                    )
                    .set(j::heartbeat_at.eq(now_ms()))
                    .execute(c)
                })?;
                Ok(updated > 0)
            })
            .await;
        if let Ok(false) = alive {
            cancelled.store(true, Ordering::Release);
            return;
        }
    }
}

/// Deletes finished jobs older than `retention`.
pub(crate) fn prune(conn: AnyConn<'_>, finished_before: i64) -> QueryResult<usize> {
    use rest_live_jobs::dsl as j;
    crate::__with_conn!(conn, |c| {
        diesel::delete(j::rest_live_jobs.filter(j::finished_at.lt(finished_before))).execute(c)
    })
}

/// The `jobs` stream as a resource: clients `retrieve` and `subscribe_instance` a job by id (its
/// owner only); nothing else.
pub struct JobsBinding;

pub static JOBS_BINDING: JobsBinding = JobsBinding;

const JOB_FIELDS: &[FieldMeta] = &[
    field("id", "String"),
    field("state", "String"),
    field("resource_uri", "String"),
    field("result_uri", "Option<String>"),
];

const fn field(name: &'static str, rust_type: &'static str) -> FieldMeta {
    FieldMeta {
        name,
        rust_type,
        read_only: true,
        required: false,
        filterable: false,
        nullable: false,
        max_length: None,
    }
}

static JOBS_META: ResourceMeta = ResourceMeta {
    stream: JOBS_STREAM,
    label: "rest_live.Job",
    type_name: "rest_live_core::jobs::Job",
    location: concat!(file!(), ":", line!()),
    pk: "id",
    fields: JOB_FIELDS,
    group_keys: &[],
    instance_subscribable: true,
};

fn job_id(pk: &Input) -> Result<String, ApiError> {
    match pk {
        Input::Json(Value::String(s)) | Input::Text(s) => Ok(s.clone()),
        _ => Err(ApiError::bad_request("Invalid pk: a job id is a string.")),
    }
}

fn not_allowed(action: &str) -> ApiError {
    ApiError::MethodNotAllowed(Some(action.to_owned()))
}

impl Binding for JobsBinding {
    fn meta(&self) -> &'static ResourceMeta {
        &JOBS_META
    }

    fn type_id(&self) -> std::any::TypeId {
        std::any::TypeId::of::<JobsBinding>()
    }

    fn canonical_pk(&self, pk: &Input) -> Result<String, ApiError> {
        Ok(Value::from(job_id(pk)?).to_string())
    }

    fn canonical_group(&self, _key: &str, _value: &Value) -> Option<Result<String, ApiError>> {
        None
    }

    /// Anyone may ask: which job a principal sees is decided per job (its owner), and the actions
    /// the stream does not support answer 405 from the methods below (not 403, which would say
    /// that someone else may).
    fn allows(&self, _principal: &Principal, _action: Action) -> bool {
        true
    }

    fn restricted(&self) -> bool {
        true
    }

    fn audience(&self, principal: &Principal) -> String {
        format!("job-owner:{}", Value::from(principal.id.clone()))
    }

    fn visible(&self, principal: &Principal, object: &Map<String, Value>) -> bool {
        principal.is_system()
            || object.get("owner").unwrap_or(&Value::Null) == &Value::from(principal.id.clone())
    }

    fn present(&self, _principal: &Principal, object: &mut Map<String, Value>) {
        object.remove("owner");
    }

    fn list(
        &self,
        _conn: AnyConn<'_>,
        _principal: &Principal,
        _filters: &[(String, Input)],
        _limit: i64,
        _offset: i64,
    ) -> Result<Box<RawValue>, ApiError> {
        Err(not_allowed("list"))
    }

    fn retrieve(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        pk: &Input,
    ) -> Result<Box<RawValue>, ApiError> {
        let id = job_id(pk)?;
        let record = load(conn, &id)?.ok_or(ApiError::NotFound)?;
        if !record.visible_to(principal) {
            return Err(ApiError::NotFound);
        }
        // The prefix is not known here; the default one is used for the URIs of a retrieve.
        let mut state = record.state_json(&crate::Config::default().http_prefix);
        state.remove("owner");
        to_raw(&state)
    }

    fn members(
        &self,
        _conn: AnyConn<'_>,
        _principal: &Principal,
        _key: &str,
        _value: &str,
        _limit: i64,
    ) -> Result<(i64, Box<RawValue>), ApiError> {
        Err(not_allowed("subscribe"))
    }

    fn create(&self, _tx: &mut Tx<'_>, _data: &Map<String, Value>) -> Result<Written, ApiError> {
        Err(not_allowed("create"))
    }

    fn update(
        &self,
        _tx: &mut Tx<'_>,
        _pk: &Input,
        _data: &Map<String, Value>,
        partial: bool,
    ) -> Result<Written, ApiError> {
        Err(not_allowed(if partial { "patch" } else { "update" }))
    }

    fn delete(&self, _tx: &mut Tx<'_>, _pk: &Input) -> Result<(), ApiError> {
        Err(not_allowed("delete"))
    }
}
