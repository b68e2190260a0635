//! The worker pool: claims pending jobs (exactly one worker per job, across processes), runs
//! them with a lease kept alive by a heartbeat, and re-queues the jobs of workers that died.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Jobs;
use super::context::JobContext;
use super::error::JobError;
use super::record::{JobRecord, JobState, is_running, load, now_ms, rest_live_jobs, transition};
use crate::auth::Principal;
use crate::config::Config;
use crate::error::ApiError;
use crate::resource::tx;
use crate::store::AnyConn;

/// The worker pool: claims pending jobs while it has room, runs them, and re-queues jobs whose
/// worker stopped sending heartbeats.
pub(crate) fn spawn(jobs: &Arc<Jobs>, config: &Config) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(jobs);
    let config = Arc::new(config.clone());
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(config.job_workers.max(1)));
        let mut last_recovery = tokio::time::Instant::now() - config.job_lease;
        loop {
            let Some(jobs) = weak.upgrade() else { return };
            if last_recovery.elapsed() >= config.job_lease / 2 {
                last_recovery = tokio::time::Instant::now();
                if let Err(error) = recover(&jobs, &config).await {
                    tracing::warn!(%error, "recovering stale jobs failed");
                }
            }
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                match claim(&jobs).await {
                    Ok(Some(record)) => {
                        tokio::spawn(run(jobs.clone(), config.clone(), record, permit));
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "claiming a job failed");
                        break;
                    }
                }
            }
            // Wait without holding the jobs (nor, through them, the store), so that dropping the
            // app stops the workers promptly.
            let wake = jobs.wake.clone();
            drop(jobs);
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(config.job_poll_interval) => {}
            }
        }
    })
}

/// Claims the oldest pending job for this worker.
async fn claim(jobs: &Jobs) -> Result<Option<JobRecord>, ApiError> {
    let worker = jobs.worker.clone();
    let prefix = jobs.prefix.clone();
    tx::write(&jobs.store, Principal::system(), move |tx| {
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
async fn recover(jobs: &Jobs, config: &Config) -> Result<(), ApiError> {
    let lease = config.job_lease;
    let max_attempts = config.job_max_attempts as i32;
    let prefix = jobs.prefix.clone();
    let stale_before = now_ms() - lease.as_millis() as i64;
    let recovered = tx::write(&jobs.store, Principal::system(), move |tx| {
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
        jobs.wake.notify_one();
    }
    Ok(())
}

async fn run(
    jobs: Arc<Jobs>,
    config: Arc<Config>,
    record: JobRecord,
    permit: OwnedSemaphorePermit,
) {
    let id = record.id.clone();
    let flag = Arc::new(AtomicBool::new(false));
    jobs.set_running(&id, Some(flag.clone()));
    let every = (config.job_lease / 3).max(Duration::from_millis(50));
    let heartbeat = tokio::spawn(heartbeat(jobs.clone(), every, id.clone(), flag.clone()));
    let outcome = match jobs.declared(&record.stream, &record.name) {
        None => Err(JobError(format!(
            "no job {:?} on stream {:?} in this build",
            record.name, record.stream
        ))),
        Some(job) => {
            let principal: Principal =
                serde_json::from_str(&record.principal).unwrap_or_else(|_| Principal::anonymous());
            let ctx = JobContext {
                store: jobs.store.clone(),
                worker: jobs.worker.clone(),
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
    let worker = jobs.worker.clone();
    let prefix = jobs.prefix.clone();
    let finished = tx::write(&jobs.store, Principal::system(), move |tx| {
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
    jobs.set_running(&record.id, None);
    drop(permit);
    jobs.wake.notify_one();
}

/// Keeps the claim alive while the job runs, and notices a cancellation made by any process.
async fn heartbeat(jobs: Arc<Jobs>, every: Duration, id: String, cancelled: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(every).await;
        let (id, worker) = (id.clone(), jobs.worker.clone());
        let alive = jobs
            .store
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
