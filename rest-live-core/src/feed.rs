//! The feed hands each committed change to the hub, in seq order per stream.
//!
//! A local commit queues its changes here as it commits, and they are published from memory. That
//! queue also decouples the writer from the fan-out: while subscribers' sockets are being
//! written, later commits pile up and go out together, so each socket write carries several
//! events. Whatever cannot go out that way (the queue was full, a change is not the next of its
//! stream, the writer was cancelled) wakes the feed to read the log instead, as do other
//! processes' commits (PostgreSQL LISTEN/NOTIFY, see [`listen`]) and a timer, the fallback.
//!
//! The log is followed by `seq > delivered`: committed seqs of a stream have no holes (see
//! [`crate::store::changelog`]), so this never steps over a change that commits late.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::hub::Hub;
use crate::store::changelog;
use crate::store::{Committed, Store};

/// How many changes one read of the log takes.
const BATCH: i64 = 512;

/// Local commits queued for publishing before the feed falls back to reading the log.
const QUEUE: usize = 1024;

/// Starts following the log of `streams` from where the hub stands, and publishing the store's
/// local commits.
pub fn spawn(
    store: Store,
    hub: Arc<Hub>,
    streams: Vec<&'static str>,
    poll: Duration,
) -> JoinHandle<()> {
    let committed = store.committed();
    let (queue, mut local) = mpsc::channel::<Committed>(QUEUE);
    store.publish_to(queue);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = committed.notified() => {}
                commit = local.recv() => {
                    // The store (held here) keeps the queue open: `None` cannot happen.
                    let Some(commit) = commit else { return };
                    // The commits queued now are one burst: each writer is woken once for all.
                    hub.hold_wakes();
                    publish(&store, &hub, commit).await;
                    while let Ok(commit) = local.try_recv() {
                        publish(&store, &hub, commit).await;
                    }
                    hub.release_wakes();
                    continue;
                }
                _ = hub.work_queued() => {
                    serve_windows(&store, &hub).await;
                    continue;
                }
                _ = tokio::time::sleep(poll) => {}
            }
            // What the log holds beyond what was handed out is one burst too.
            hub.hold_wakes();
            for &stream in &streams {
                catch_up(&store, &hub, stream).await;
            }
            hub.release_wakes();
        }
    })
}

/// Hands a local commit's changes to the hub (see [`Hub::publish_committed`]); whatever cannot go
/// out in order stays with `commit`, whose drop wakes the feed to read it from the log.
async fn publish(store: &Store, hub: &Hub, commit: Committed) {
    let mut all = true;
    for change in commit.changes() {
        all &= hub.publish_committed(std::slice::from_ref(change));
        serve_windows(store, hub).await;
    }
    if all {
        commit.delivered();
    }
}

/// Performs the reads that live-query windows wait for (a first load, or the rows that follow a
/// window a row left), before anything else is published: so a window sees every change in
/// order, and a refill's events go out with the seq of the change that caused it.
async fn serve_windows(store: &Store, hub: &Hub) {
    while let Some(work) = hub.next_work() {
        let Some(read) = hub.read_for(&work) else {
            continue;
        };
        // Nothing held waits for the read.
        hub.wake_held();
        let result = match read.binding.collection() {
            None => Err(crate::error::ApiError::internal(
                "a live query on a stream that is not a collection",
            )),
            Some(collection) => {
                let stream = read.binding.meta().stream;
                store
                    .read(move |mut c| {
                        let rows = collection.ranked(
                            c.reborrow(),
                            &read.principal,
                            &read.query,
                            read.after.as_deref(),
                            read.limit,
                        )?;
                        let head = if read.head {
                            changelog::stream_head(c, stream)?
                        } else {
                            0
                        };
                        Ok((rows, head))
                    })
                    .await
            }
        };
        hub.finish(&work, result);
    }
}

async fn catch_up(store: &Store, hub: &Hub, stream: &'static str) {
    loop {
        let after = hub.delivered(stream);
        // Nothing held waits for the read.
        hub.wake_held();
        let batch = store
            .read(move |c| {
                let upto = after.saturating_add(BATCH);
                Ok(changelog::read_stream(c, stream, after, upto, BATCH)?)
            })
            .await;
        let changes = match batch {
            Ok(changes) => changes,
            Err(error) => {
                tracing::warn!(%error, stream, "reading the change log failed; retrying");
                return;
            }
        };
        for change in &changes {
            hub.publish(change);
            serve_windows(store, hub).await;
        }
        if (changes.len() as i64) < BATCH {
            return;
        }
    }
}

/// On PostgreSQL (with [`Config::listen`]), a task that LISTENs for other processes'
/// commits on a dedicated connection and wakes the feed; it reconnects when the connection drops
/// (the feed polls meanwhile and catches up from the last seq it delivered).
#[cfg(feature = "postgres")]
pub fn listen(store: &Store, config: &Config) -> Option<JoinHandle<()>> {
    use crate::store::DatabaseUrl;
    let DatabaseUrl::Postgres(url) = store.url() else {
        return None;
    };
    if !config.listen {
        return None;
    }
    let (url, wake) = (url.clone(), store.committed());
    Some(tokio::spawn(async move {
        const FIRST: Duration = Duration::from_millis(100);
        let mut backoff = FIRST;
        loop {
            let started = tokio::time::Instant::now();
            match listen_once(&url, &wake).await {
                Ok(()) => tracing::warn!("change-log listener ended; reconnecting"),
                Err(error) => tracing::warn!(%error, "change-log listener failed; reconnecting"),
            }
            // Catch up on whatever was committed while not listening.
            wake.notify_one();
            if started.elapsed() > Duration::from_secs(30) {
                // It had been working: this is a new outage, not the same one going on.
                backoff = FIRST;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }))
}

#[cfg(not(feature = "postgres"))]
pub fn listen(_store: &Store, _config: &Config) -> Option<JoinHandle<()>> {
    None
}

#[cfg(feature = "postgres")]
async fn listen_once(url: &str, wake: &tokio::sync::Notify) -> Result<(), tokio_postgres::Error> {
    use futures_util::StreamExt;
    use tokio_postgres::AsyncMessage;

    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    // The connection must be polled for its messages (spawning it would drop notifications).
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {}", changelog::NOTIFY_CHANNEL);
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            result = &mut listen, if !listening => {
                result?;
                listening = true;
                tracing::debug!("listening for commits of other processes");
                wake.notify_one();
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
        }
    }
}
