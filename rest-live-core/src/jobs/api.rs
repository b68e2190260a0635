//! What clients do with jobs, over HTTP and WebSocket alike: start one (202 and its state),
//! read its state and result, cancel it.

use std::sync::atomic::Ordering;

use diesel::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::Jobs;
use super::declare::JobBinding;
use super::record::{
    JobRecord, JobState, load, load_locked, log, now_ms, rest_live_jobs, transition,
};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::resource::binding::Input;
use crate::resource::permissions::Action;
use crate::resource::to_raw;
use crate::resource::tx;

impl Jobs {
    /// Queues `job` for `principal` (checking its arguments and permissions first) and returns its
    /// state resource.
    pub async fn start(
        &self,
        principal: &Principal,
        job: &'static dyn JobBinding,
        pk: Option<Input>,
        args: Value,
    ) -> Result<Box<RawValue>, ApiError> {
        let binding = job.resource();
        job.check(&args)?;
        let pk = match (job.on_object(), pk) {
            (true, Some(pk)) => {
                if !binding.allows(principal, Action::Update) {
                    return Err(ApiError::PermissionDenied);
                }
                let canonical = binding.canonical_pk(&pk)?;
                let who = principal.clone();
                // Only an object the principal can read can have a job.
                self.store
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
        let prefix = self.prefix.clone();
        let stored = record.clone();
        tx::write(&self.store, Principal::system(), move |tx| {
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
        self.wake.notify_one();
        to_raw(&self.state_resource(&record))
    }

    /// A job's state as the principal may see it (404 if it may not).
    pub async fn record(&self, principal: &Principal, id: String) -> Result<JobRecord, ApiError> {
        let record = self
            .store
            .read(move |c| Ok(load(c, &id)?))
            .await?
            .ok_or(ApiError::NotFound)?;
        if !record.visible_to(principal) {
            return Err(ApiError::NotFound);
        }
        Ok(record)
    }

    /// The state resource of a job (without the owner).
    pub fn state_resource(&self, record: &JobRecord) -> Map<String, Value> {
        let mut state = record.state_json(&self.prefix);
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
    pub async fn cancel(&self, principal: &Principal, id: String) -> Result<(), ApiError> {
        let who = principal.clone();
        let prefix = self.prefix.clone();
        let target = id.clone();
        tx::write(&self.store, Principal::system(), move |tx| {
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
        if let Some(flag) = self.flag(&id) {
            flag.store(true, Ordering::Release);
        }
        Ok(())
    }
}
