//! The pruner: keeps the change log within [`Config::retention`] and drops finished jobs after
//! [`Config::job_retention`], in the background, without holding up writes.
//!
//! - **Never blocking writes.** Rows go in batches of [`PRUNE_BATCH`], each in its own short
//!   write transaction; between two batches the write gate is free, and writers waiting for it
//!   (the gate is fair) go first. One large `DELETE` would hold SQLite's single write lock for as
//!   long as it runs.
//! - **Promptly.** Every [`CHECK_EVERY`] the pruner compares, in memory, each stream's newest
//!   delivered seq with what it has pruned: a stream past its row bound is pruned then, not at
//!   the next [`Config::prune_interval`] (which runs the full pass: age, rows, jobs). A burst of
//!   commits costs one pass, not one per commit.
//! - **Exact for clients either way.** Whether a `since` can resume is decided by the rule
//!   ([`changelog::can_resume`]), not by whether the rows are gone yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::store::{Store, changelog};

/// Changes deleted per transaction.
pub(crate) const PRUNE_BATCH: i64 = 1000;

/// How often the pruner looks (in memory) for a stream past its row bound.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The wall-clock time in milliseconds (as `committed_at` is written).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The oldest `committed_at` that `config` keeps, if it bounds the age of changes.
pub(crate) fn age_cutoff(config: &Config) -> Option<i64> {
    let age = config.retention.max_age?;
    Some(now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
}

/// Deletes the changes of `stream` with `seq <= upto`, batch by batch; returns how many went.
async fn prune_stream(store: &Store, stream: String, upto: i64) -> Result<usize, ApiError> {
    let mut removed = 0;
    loop {
        let name = stream.clone();
        let n = store
            .maintain(move |c| Ok(changelog::prune_stream(c, &name, upto, PRUNE_BATCH)?))
            .await?;
        removed += n;
        if (n as i64) < PRUNE_BATCH {
            return Ok(removed);
        }
        tokio::task::yield_now().await;
    }
}

/// Everything retention and job retention allow to go, now; returns how many changes went.
pub(crate) async fn prune_all(store: &Store, config: &Config) -> Result<usize, ApiError> {
    let mut removed = 0;
    if let Some(cutoff) = age_cutoff(config) {
        loop {
            let n = store
                .maintain(move |c| Ok(changelog::prune_aged(c, cutoff, PRUNE_BATCH)?))
                .await?;
            removed += n;
            if (n as i64) < PRUNE_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    if let Some(keep) = config.retention.max_rows {
        let (_, heads) = store.read(|c| Ok(changelog::heads(c)?)).await?;
        for (stream, head) in heads {
            let upto = head.saturating_sub(keep);
            if upto > 0 {
                removed += prune_stream(store, stream, upto).await?;
            }
        }
    }
    let jobs_before = now_ms()
        .saturating_sub(i64::try_from(config.job_retention.as_millis()).unwrap_or(i64::MAX));
    store
        .maintain(move |c| Ok(crate::jobs::record::prune(c, jobs_before)?))
        .await?;
    Ok(removed)
}

/// Starts the pruner (see the module docs).
pub(crate) fn spawn(
    store: Store,
    hub: Arc<Hub>,
    streams: Vec<&'static str>,
    config: Config,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let check = CHECK_EVERY.min(config.prune_interval);
        let mut next_full = Instant::now() + config.prune_interval;
        // Per stream, the seq up to which the log is known to be pruned (0: not yet looked at).
        let mut pruned: HashMap<&'static str, i64> = HashMap::new();
        loop {
            tokio::time::sleep(check).await;
            let result = if Instant::now() >= next_full {
                next_full = Instant::now() + config.prune_interval;
                prune_all(&store, &config).await
            } else {
                prune_past_bound(&store, &hub, &streams, &config, &mut pruned).await
            };
            match result {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "change log pruned"),
                Err(error) => tracing::warn!(%error, "pruning the change log failed"),
            }
        }
    })
}

/// Prunes each stream whose newest delivered seq is past its row bound; returns how many went.
async fn prune_past_bound(
    store: &Store,
    hub: &Hub,
    streams: &[&'static str],
    config: &Config,
    pruned: &mut HashMap<&'static str, i64>,
) -> Result<usize, ApiError> {
    let Some(keep) = config.retention.max_rows else {
        return Ok(0);
    };
    let mut removed = 0;
    for &stream in streams {
        let upto = hub.delivered(stream).saturating_sub(keep);
        let done = pruned.entry(stream).or_insert(0);
        if upto > *done {
            removed += prune_stream(store, stream.to_owned(), upto).await?;
            *done = upto;
        }
    }
    Ok(removed)
}
