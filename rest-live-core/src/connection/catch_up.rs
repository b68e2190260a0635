//! Catching up a subscription that fell behind its connection's queue (docs/protocol.md §6).
//!
//! The hub never waits for one connection: an event that finds the queue full is dropped, and the
//! subscription remembers the seq it last queued. A task then reads the changes after that seq
//! again, from the hub's ring of recent changes while it holds them all, from the change log once
//! the subscription has fallen off it, judges each for this subscription as a resume with `since`
//! does (same target, same audience: same filter and permissions), and queues them as the client
//! makes room. Meanwhile new events are held back; once it has read up to the seq the hub had
//! handed out when it began, it releases them, and the subscription is live again (or behind
//! again, and the same task goes on). A client that stops reading altogether makes no room within
//! the send timeout and is closed with 4008.

use std::sync::Arc;

use bytes::Bytes;

use crate::app::App;
use crate::error::ApiError;
use crate::hub::{CatchUp, EventParts, Subscriber, Target};
use crate::meta::ResourceMeta;
use crate::outbox::CloseReason;
use crate::resource::binding::Binding;
use crate::store::changelog::{self, Change, ChangeAction};

/// Changes read from the log (or the ring) per query while replaying or catching up.
pub(super) const REPLAY_BATCH: i64 = 500;

/// The frame `change` makes for `subscriber` (following `target`), if it gets one: what a resume
/// with `since` and a catch-up send.
pub(super) fn event_frame(
    meta: &ResourceMeta,
    target: &Target,
    subscriber: &Subscriber,
    change: &Change,
) -> Option<Bytes> {
    event_frame_for(meta, target.action_for(change)?, subscriber, change)
}

/// [`event_frame`] for a change that is `base` for the subscription.
fn event_frame_for(
    meta: &ResourceMeta,
    base: ChangeAction,
    subscriber: &Subscriber,
    change: &Change,
) -> Option<Bytes> {
    let full_deletes = subscriber.encoder.full_deletes();
    let (action, data) = subscriber.audience.event_in(change, base, full_deletes)?;
    Some(subscriber.encoder.encode(&EventParts {
        stream: meta.stream,
        label: meta.label,
        action,
        subscription: &subscriber.request_id,
        seq: change.seq,
        data: &data,
    }))
}

/// What catching up a connection's subscriptions needs (one per connection; each subscription
/// carries its own target, and its audience the binding).
pub(super) struct Follow {
    app: App,
    /// Where the task runs: the hub may publish on a thread of its own.
    runtime: tokio::runtime::Handle,
}

impl Follow {
    /// The catch-up of a connection's subscriptions.
    pub(super) fn new(app: &App) -> Arc<Self> {
        Arc::new(Self {
            app: app.clone(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    async fn run(&self, subscriber: Subscriber) {
        let Some(target) = subscriber.target() else {
            return;
        };
        let binding = subscriber.audience.binding;
        let stream = binding.meta().stream;
        while let Some(mut cursor) = subscriber.begin_catch_up() {
            // Read after the subscription holds its events back: every change up to `head` was
            // dropped or is held (and not released: it is read here), every later one is held.
            let head = self.app.hub().delivered(stream);
            while cursor < head {
                let (batch, reached) = match self.read(stream, cursor, head).await {
                    Ok(Some(read)) => read,
                    Ok(None) => {
                        // Pruned from the log (retention) before it was sent: the client resumes,
                        // and learns that it must resync.
                        subscriber
                            .outbox
                            .close_slow("a subscription fell behind past what the log keeps");
                        return;
                    }
                    Err(error) => {
                        tracing::error!(
                            connection = subscriber.outbox.id(),
                            %error,
                            "catching up a subscription failed"
                        );
                        subscriber.outbox.close(CloseReason::INTERNAL);
                        return;
                    }
                };
                for change in &batch {
                    if let Some(frame) = self.frame(binding, target, &subscriber, change)
                        && !subscriber.send_caught_up(frame).await
                    {
                        return;
                    }
                }
                cursor = reached;
            }
            subscriber.release(head);
        }
    }

    /// The next changes of `stream` after `after`, up to `head`, from the ring or from the log,
    /// and the seq they cover up to (a batch ends before `head` only when it is full); `None`
    /// when the log no longer has them.
    async fn read(
        &self,
        stream: &'static str,
        after: i64,
        head: i64,
    ) -> Result<Option<(Vec<Arc<Change>>, i64)>, ApiError> {
        let max = usize::try_from(REPLAY_BATCH).unwrap_or(usize::MAX);
        if let Some(recent) = self.app.hub().recent(stream, after, head, max) {
            let upto = reached(&recent, head, max);
            return Ok(Some((recent, upto)));
        }
        let keep = self.app.config().retention.max_rows;
        let cutoff = crate::app::pruner::age_cutoff(self.app.config());
        self.app
            .store()
            .read(move |mut c| {
                if !changelog::can_resume(c.reborrow(), stream, after, head, keep, cutoff)? {
                    return Ok(None);
                }
                // Bounded by seq, not by LIMIT (see changelog::read_stream).
                let upto = head.min(after.saturating_add(REPLAY_BATCH));
                let batch: Vec<_> = changelog::read_stream(c, stream, after, upto, REPLAY_BATCH)?
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                let upto = reached(&batch, upto, max);
                Ok(Some((batch, upto)))
            })
            .await
    }

    /// What live delivery would have sent: as a resume does, except that a move between two
    /// groups this connection follows is one update, on the new group's subscription.
    fn frame(
        &self,
        binding: &'static dyn Binding,
        target: &Target,
        subscriber: &Subscriber,
        change: &Change,
    ) -> Option<Bytes> {
        let meta = binding.meta();
        let mut base = target.action_for(change)?;
        if let Some(other) = target.other_side(change)
            && self
                .app
                .hub()
                .follows(meta.stream, &other, subscriber.outbox.id())
        {
            match base {
                ChangeAction::Delete => return None,
                _ => base = ChangeAction::Update,
            }
        }
        event_frame_for(meta, base, subscriber, change)
    }
}

/// The seq a batch read up to `upto` covers: all of it, unless the batch is full.
fn reached(batch: &[Arc<Change>], upto: i64, max: usize) -> i64 {
    match batch.last() {
        Some(last) if batch.len() >= max => last.seq,
        _ => upto,
    }
}

impl CatchUp for Follow {
    fn fell_behind(self: Arc<Self>, subscriber: Subscriber) {
        let runtime = self.runtime.clone();
        runtime.spawn(async move { self.run(subscriber).await });
    }
}
