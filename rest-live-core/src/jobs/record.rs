//! One job as persisted (`rest_live_jobs`), its states, and the transitions between them; each
//! transition is logged as an `update` of the `jobs` stream in the same transaction.
// Hidden from the documentation: the jobs table, exposed only to tests (`__internals`).
#![allow(missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::resource::tx::Tx;
use crate::store::AnyConn;
use crate::store::changelog::{ChangeAction, NewChange};

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

/// The stream of job states: each transition of a job is an `update` of it.
pub const JOBS_STREAM: &str = "jobs";

/// Where a job's state is, below the API prefix.
pub(crate) fn resource_uri(prefix: &str, id: &str) -> String {
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

    pub(crate) fn parse(s: &str) -> Self {
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

pub(crate) fn now_ms() -> i64 {
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
    pub(crate) fn state_json(&self, prefix: &str) -> Map<String, Value> {
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

    pub(crate) fn visible_to(&self, principal: &Principal) -> bool {
        principal.is_system() || self.owner == principal.id
    }
}

pub(crate) fn load(conn: AnyConn<'_>, id: &str) -> QueryResult<Option<JobRecord>> {
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
pub(crate) fn load_locked(conn: AnyConn<'_>, id: &str) -> QueryResult<Option<JobRecord>> {
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

pub(crate) fn is_running(conn: AnyConn<'_>, id: &str, worker: &str) -> QueryResult<bool> {
    Ok(load_locked(conn, id)?
        .is_some_and(|j| j.state == JobState::Started && j.worker.as_deref() == Some(worker)))
}

/// Moves a job to `state` (only from one of `from`), logging the change for the `jobs` stream.
/// Returns the new record, or `None` if the job was not in one of `from`.
pub(crate) fn transition(
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

pub(crate) fn log(
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

/// Deletes finished jobs older than `retention`.
pub(crate) fn prune(conn: AnyConn<'_>, finished_before: i64) -> QueryResult<usize> {
    use rest_live_jobs::dsl as j;
    crate::__with_conn!(conn, |c| {
        diesel::delete(j::rest_live_jobs.filter(j::finished_at.lt(finished_before))).execute(c)
    })
}
