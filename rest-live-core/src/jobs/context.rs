//! What a running job has at hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::error::JobError;
use super::record::is_running;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::resource::tx::{self, Tx};
use crate::store::{AnyConn, Store};

/// What a running job has at hand.
pub struct JobContext {
    pub(crate) store: Store,
    /// This process's worker identity (the job's claim carries it).
    pub(crate) worker: String,
    pub(crate) id: String,
    pub(crate) principal: Principal,
    pub(crate) pk: Option<String>,
    pub(crate) cancelled: Arc<AtomicBool>,
}

impl JobContext {
    /// The job's id (the `<id>` of `/api/jobs/<id>/`).
    pub fn id(&self) -> &str {
        &self.id
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
        let (id, worker) = (self.id.clone(), self.worker.clone());
        let result = tx::write(&self.store, self.principal.clone(), move |tx| {
            if !is_running(tx.conn(), &id, &worker)? {
                return Err(ApiError::Conflict("The job was cancelled.".into()));
            }
            f(tx)
        })
        .await;
        result.map_err(JobError::from)
    }

    /// Runs `f` on a connection inside a read transaction (one consistent snapshot).
    pub async fn read<T, F>(&self, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce(AnyConn<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.store.read(f).await.map_err(JobError::from)
    }
}
