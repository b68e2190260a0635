//! The feed follows the committed change log and hands each change to the hub, in order. It wakes
//! right after a local commit and also polls, which picks up commits of other processes sharing
//! the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::changelog;
use crate::hub::Hub;
use crate::store::Store;

/// How many changes one read of the log takes.
const BATCH: i64 = 512;

/// Starts following the log after change `after`.
pub fn spawn(store: Store, hub: Arc<Hub>, mut after: i64, poll: Duration) -> JoinHandle<()> {
    let committed = store.committed();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = committed.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            loop {
                let from = after;
                let batch = store
                    .read(move |c| Ok(changelog::read_after(c, from, BATCH)?))
                    .await;
                let changes = match batch {
                    Ok(changes) => changes,
                    Err(error) => {
                        tracing::warn!(%error, "reading the change log failed; retrying");
                        break;
                    }
                };
                for change in &changes {
                    hub.publish(change);
                    after = change.id;
                }
                if (changes.len() as i64) < BATCH {
                    break;
                }
            }
        }
    })
}
