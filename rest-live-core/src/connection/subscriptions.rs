//! Subscribing, so that no change is missed or sent twice at the seam between the reply (plain,
//! replayed from `since`, or with a snapshot) and the live events.

use std::sync::Arc;

use serde_json::json;
use serde_json::value::RawValue;

use super::catch_up::{REPLAY_BATCH, event_frame};
use super::{Connection, Handled};
use crate::error::{ApiError, FieldErrors};
use crate::hub::{LiveQuery, Snapshot, Subscriber, Target};
use crate::protocol::{Echo, Matching, Request, SubscribeOptions};
use crate::query::parse::QueryInput;
use crate::resource::binding::{Binding, Input};
use crate::resource::permissions::Action;
use crate::resource::to_raw;
use crate::store::changelog;

impl Connection {
    /// `subscribe` with `query` (PROTOCOL §4): the query is checked as `list` checks it (the
    /// errors of §3), for this principal, then followed like any other target.
    pub(super) async fn subscribe_query(
        &mut self,
        binding: &'static dyn Binding,
        input: &QueryInput,
        limit: Option<i64>,
        request: &Request,
        options: SubscribeOptions,
    ) -> Result<Handled, ApiError> {
        // A live query shows what `list` would: it needs both permissions.
        if !binding.allows(&self.principal, Action::List) {
            return Err(ApiError::PermissionDenied);
        }
        let query = binding.parse_query(&self.principal, input)?;
        let max = self.app.config().max_page_size;
        let limit = match limit {
            None => None,
            Some(l) if l < 1 => {
                return Err(FieldErrors::single(
                    "limit",
                    "Ensure this value is greater than or equal to 1.",
                )
                .into());
            }
            Some(l) if l > max => {
                return Err(FieldErrors::single(
                    "limit",
                    format!("Ensure this value is less than or equal to {max}."),
                )
                .into());
            }
            Some(l) => Some(usize::try_from(l).map_err(ApiError::internal)?),
        };
        let live = LiveQuery::new(binding.meta(), query, limit);
        self.subscribe(binding, Target::Query(live), request, options, None)
            .await
    }

    /// Registers a subscription and answers it: plainly, after replaying the log from `since`, or
    /// with a snapshot of the group, so that no change is missed or sent twice at the seam.
    ///
    /// Every subscription starts pending and is released at a seq read from the committed log
    /// after the registration: the reply's `seq` is the log's head as of the subscription, and
    /// the subscriber gets exactly the changes after it (not, say, the event of a write it made
    /// and saw answered just before subscribing).
    pub(super) async fn subscribe(
        &mut self,
        binding: &'static dyn Binding,
        target: Target,
        request: &Request,
        options: SubscribeOptions,
        must_exist: Option<Input>,
    ) -> Result<Handled, ApiError> {
        let stream = binding.meta().stream;
        if !binding.allows(&self.principal, Action::Subscribe) {
            return Err(ApiError::PermissionDenied);
        }
        let id = self.codec.subscription_id(&request.request_id);
        let plain = options.since.is_none() && !options.snapshot;
        if self.subscriptions.contains(stream, &id, &target) {
            // The same subscription again: a plain one stays as it is...
            if plain {
                let seq = self.app.hub().delivered(stream);
                return Ok(Handled::Reply(201, Some(to_raw(&json!({ "seq": seq }))?)));
            }
            // ...one that resumes or wants a snapshot starts over.
            self.forget(stream, &id, &target);
        } else {
            let limit = self.app.config().max_subscriptions;
            if self.subscriptions.len() >= limit {
                return Err(ApiError::bad_request(format!(
                    "Too many subscriptions on this connection (limit {limit})."
                )));
            }
            if matches!(target, Target::Query(_))
                && self.subscriptions.queries() >= self.app.config().max_live_queries
            {
                return Err(ApiError::TooManySubscriptions);
            }
        }
        let audience = self.audience(binding);
        // What can resume with `since` can be caught up; a window cannot (its events depend on
        // its other rows), and falling behind closes its connection with 4008.
        let catch_up = match &target {
            Target::Query(live) if live.limit.is_some() => None,
            _ => Some((self.follow(), target.clone())),
        };
        let subscriber = Subscriber::new(
            self.outbox.clone(),
            id.clone(),
            audience,
            self.codec,
            true,
            catch_up,
        );
        self.app
            .hub()
            .subscribe(stream, &target, subscriber.clone());
        self.subscriptions.insert(stream, &id, target.clone());
        let echo = request.echo();
        let window = match &target {
            Target::Query(live) if live.limit.is_some() => Some(live.clone()),
            _ => None,
        };
        let result = if let Some(live) = window {
            // A window is not replayed: resuming gets a fresh view (`reset`).
            let results = options.snapshot || options.since.is_some();
            self.window(
                binding,
                &live,
                &subscriber,
                &echo,
                results,
                options.since.is_some(),
            )
            .await
        } else if let Some(since) = options.since {
            self.replay(binding, &target, &subscriber, &echo, since, must_exist)
                .await
        } else if options.snapshot {
            self.snapshot(binding, &target, &subscriber, &echo).await
        } else {
            self.plain(binding, &subscriber, &echo, must_exist).await
        };
        if result.is_err() {
            self.forget(stream, &id, &target);
        }
        result
    }

    /// Removes one subscription here and from the hub.
    fn forget(&mut self, stream: &'static str, id: &str, target: &Target) {
        self.subscriptions
            .remove(stream, id, &Matching::Exact(target.clone()));
        self.app
            .hub()
            .unsubscribe(stream, target, self.outbox.id(), id);
    }

    /// Sends a successful reply (if the format sends one); false once the connection is gone.
    async fn send_reply(&self, echo: &Echo<'_>, data: &RawValue) -> bool {
        match self.codec.reply(echo, 201, Some(data)) {
            Some(frame) => self.outbox.send(frame).await,
            None => true,
        }
    }

    /// Replies with the log's head (checking that a followed object exists as of it), then
    /// releases the live events after it.
    async fn plain(
        &mut self,
        binding: &'static dyn Binding,
        subscriber: &Subscriber,
        echo: &Echo<'_>,
        must_exist: Option<Input>,
    ) -> Result<Handled, ApiError> {
        let stream = binding.meta().stream;
        let principal = self.principal.clone();
        let seq = self
            .app
            .store()
            .read_point(move |mut c| {
                if let Some(pk) = &must_exist {
                    binding.retrieve(c.reborrow(), &principal, pk)?;
                }
                Ok(changelog::stream_head(c, stream)?)
            })
            .await?;
        if self
            .send_reply(echo, &to_raw(&json!({ "seq": seq }))?)
            .await
        {
            subscriber.release(seq);
        }
        Ok(Handled::Sent)
    }

    /// Replies (checking first, if it must, that a followed object exists as of `head`), then
    /// sends every change of the subscription in `(since, head]` in order, then
    /// releases the live events held since the registration that come after `head` (the log's
    /// head as read after registering: it may be ahead of this process's hub, e.g. when the client
    /// saw `since` from another process).
    async fn replay(
        &mut self,
        binding: &'static dyn Binding,
        target: &Target,
        subscriber: &Subscriber,
        echo: &Echo<'_>,
        since: i64,
        must_exist: Option<Input>,
    ) -> Result<Handled, ApiError> {
        let meta = binding.meta();
        let stream = meta.stream;
        let principal = self.principal.clone();
        let keep = self.app.config().retention.max_rows;
        let cutoff = crate::app::pruner::age_cutoff(self.app.config());
        let (start, resumable) = self
            .app
            .store()
            .read(move |mut c| {
                if let Some(pk) = &must_exist {
                    binding.retrieve(c.reborrow(), &principal, pk)?;
                }
                let head = changelog::stream_head(c.reborrow(), stream)?;
                // Not if `since` is past the head (a seq this log never handed out: the client's
                // state comes from another history), nor older than what retention keeps.
                let resumable = changelog::can_resume(c, stream, since, head, keep, cutoff)?;
                Ok((head, resumable))
            })
            .await?;
        if !resumable {
            return Err(ApiError::ResyncRequired);
        }
        if !self
            .send_reply(echo, &to_raw(&json!({ "seq": start }))?)
            .await
        {
            return Ok(Handled::Sent);
        }
        let mut cursor = since;
        while cursor < start {
            let from = cursor;
            let batch = self
                .app
                .store()
                .read(move |c| {
                    // Bounded by seq, not by LIMIT (see changelog::read_stream).
                    let upto = start.min(from.saturating_add(REPLAY_BATCH));
                    Ok(changelog::read_stream(c, stream, from, upto, REPLAY_BATCH)?)
                })
                .await?;
            let Some(last) = batch.last() else {
                break;
            };
            cursor = last.seq;
            for change in &batch {
                if let Some(frame) = event_frame(meta, target, subscriber, change)
                    && !self.outbox.send(frame).await
                {
                    return Ok(Handled::Sent);
                }
            }
        }
        subscriber.release(start);
        Ok(Handled::Sent)
    }

    /// Answers a subscription to a windowed live query from its window, once the feed has
    /// loaded it: with its rows when `results` (and `"reset": true` when it resumes), always
    /// with the seq they are current at, after which its events are released.
    async fn window(
        &mut self,
        binding: &'static dyn Binding,
        live: &Arc<LiveQuery>,
        subscriber: &Subscriber,
        echo: &Echo<'_>,
        results: bool,
        reset: bool,
    ) -> Result<Handled, ApiError> {
        let stream = binding.meta().stream;
        let audience = subscriber.audience.key.clone();
        let mut closing = self.outbox.closing();
        loop {
            match self.app.hub().snapshot(stream, live, &audience) {
                Snapshot::Ready { seq, rows } => {
                    let mut data = format!("{{\"seq\":{seq}");
                    if results {
                        data.push_str(",\"results\":[");
                        for (i, row) in rows.iter().enumerate() {
                            if i > 0 {
                                data.push(',');
                            }
                            data.push_str(row);
                        }
                        data.push(']');
                    }
                    if reset {
                        data.push_str(",\"reset\":true");
                    }
                    data.push('}');
                    let data = RawValue::from_string(data).map_err(ApiError::internal)?;
                    if self.send_reply(echo, &data).await {
                        subscriber.release(seq);
                    }
                    return Ok(Handled::Sent);
                }
                Snapshot::Wait(mut settled) => {
                    tokio::select! {
                        changed = settled.changed() => {
                            if changed.is_err() {
                                return Err(ApiError::internal("a live query's window went away"));
                            }
                        }
                        _ = closing.changed() => return Ok(Handled::Sent),
                    }
                }
                Snapshot::Failed => {
                    return Err(ApiError::internal(
                        "a live query's window could not be read",
                    ));
                }
            }
        }
    }

    /// Replies with the group's members and the seq they are current at, then releases the live
    /// events after that seq.
    async fn snapshot(
        &mut self,
        binding: &'static dyn Binding,
        target: &Target,
        subscriber: &Subscriber,
        echo: &Echo<'_>,
    ) -> Result<Handled, ApiError> {
        let Some(collection) = binding.collection() else {
            return Err(ApiError::MethodNotAllowed(Some("subscribe".into())));
        };
        let target_kind = match target {
            Target::Query(_) => "query",
            _ => "group",
        };
        let stream = binding.meta().stream;
        let max = self.app.config().max_snapshot;
        let principal = self.principal.clone();
        let target = target.clone();
        // One read transaction: the members are exactly those as of `seq`.
        let (seq, count, results) = self
            .app
            .store()
            .read(move |mut c| {
                let seq = changelog::stream_head(c.reborrow(), stream)?;
                let (count, results) = match target {
                    Target::Group(key, value) => {
                        collection.members(c, &principal, key, &value, max)?
                    }
                    Target::Query(live) => {
                        // One more than a snapshot holds tells that it would not hold them.
                        let rows = collection.ranked(c, &principal, &live.query, None, max + 1)?;
                        let data: Vec<&RawValue> = rows
                            .iter()
                            .map(|r| serde_json::from_str(&r.data))
                            .collect::<Result<_, _>>()
                            .map_err(ApiError::internal)?;
                        (rows.len() as i64, crate::resource::to_raw(&data)?)
                    }
                    Target::Instance(_) => {
                        return Err(ApiError::bad_request(
                            "\"snapshot\" is for group subscriptions.",
                        ));
                    }
                };
                Ok((seq, count, results))
            })
            .await?;
        if count > max {
            return Err(ApiError::bad_request(match target_kind {
                "query" => format!(
                    "The query has more rows than a snapshot holds ({max}): use list, or a limit."
                ),
                _ => format!(
                    "The group has {count} members, more than a snapshot holds ({max}): use list."
                ),
            }));
        }
        let data = format!("{{\"seq\":{seq},\"results\":{}}}", results.get());
        let data = RawValue::from_string(data).map_err(ApiError::internal)?;
        if self.send_reply(echo, &data).await {
            subscriber.release(seq);
        }
        Ok(Handled::Sent)
    }
}
