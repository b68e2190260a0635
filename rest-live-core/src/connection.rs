//! One WebSocket connection, independent of the web framework: it decodes frames, runs actions,
//! keeps the connection's subscriptions, and queues replies and events on a bounded [`Outbox`]
//! that the adapter's single writer task drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use crate::actions::{self, Op};
use crate::app::App;
use crate::auth::Principal;
use crate::binding::{Binding, Input};
use crate::changelog;
use crate::error::ApiError;
use crate::hub::{Audience, Subscriber, Target};
use crate::permissions::Action;
use crate::protocol::{self, Request, to_raw};
use crate::throttle::Throttle;

/// Why the server closes a connection: a WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    /// The client sent a frame larger than the limit.
    pub const TOO_BIG: Self = Self {
        code: 1009,
        reason: "frame too large",
    };
    /// The principal's session was revoked.
    pub const REVOKED: Self = Self {
        code: 4003,
        reason: "session revoked",
    };
    /// The client did not read fast enough; it may reconnect and resume with `since`.
    pub const SLOW_CONSUMER: Self = Self {
        code: 4008,
        reason: "client did not read fast enough",
    };
}

/// The sending side of a connection: a bounded frame queue and a close signal.
pub struct Outbox {
    id: u64,
    frames: mpsc::Sender<Bytes>,
    close: watch::Sender<Option<CloseReason>>,
}

impl Outbox {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How many frames the queue holds.
    pub fn capacity(&self) -> usize {
        self.frames.max_capacity()
    }

    /// Queues an event without waiting; a full queue closes the connection (4008).
    pub fn push_event(&self, frame: Bytes) {
        if self.close.borrow().is_some() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.frames.try_send(frame) {
            tracing::warn!(
                connection = self.id,
                "outgoing queue full; closing with 4008"
            );
            self.close(CloseReason::SLOW_CONSUMER);
        }
    }

    /// Queues a frame, waiting for room (replies and replays: the reader waits, not the hub).
    /// False once the connection is gone.
    pub async fn send(&self, frame: Bytes) -> bool {
        self.frames.send(frame).await.is_ok()
    }

    /// Asks the writer to close the connection (the first reason wins).
    pub fn close(&self, reason: CloseReason) {
        self.close.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// What the adapter's writer task drains: frames to send, and when to close.
pub struct Outgoing {
    pub frames: mpsc::Receiver<Bytes>,
    pub close: watch::Receiver<Option<CloseReason>>,
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

struct Subscription {
    stream: &'static str,
    target: Target,
    /// The subscription's `request_id` as JSON text.
    request_id: Arc<str>,
}

/// What a handler did: a reply still to send, or everything already sent (a reply followed by a
/// replay must go out in that order).
enum Handled {
    Reply(u16, Option<Box<RawValue>>),
    Sent,
}

/// The receiving side of one connection.
pub struct Connection {
    app: App,
    principal: Principal,
    outbox: Arc<Outbox>,
    subscriptions: Vec<Subscription>,
    throttle: Throttle,
    /// This connection's audience per stream, made on first use.
    audiences: Vec<Arc<Audience>>,
}

impl Connection {
    pub(crate) fn open(app: App, principal: Principal) -> (Self, Outgoing) {
        let config = app.config();
        let (frames_tx, frames_rx) = mpsc::channel(config.outgoing_queue.max(1));
        let (close_tx, close_rx) = watch::channel(None);
        let throttle = Throttle::new(config.requests_per_second, config.request_burst);
        let outbox = Arc::new(Outbox {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            frames: frames_tx,
            close: close_tx,
        });
        app.sessions().register(&principal, &outbox);
        let connection = Self {
            app,
            principal,
            outbox,
            subscriptions: Vec::new(),
            throttle,
            audiences: Vec::new(),
        };
        let outgoing = Outgoing {
            frames: frames_rx,
            close: close_rx,
        };
        (connection, outgoing)
    }

    pub fn id(&self) -> u64 {
        self.outbox.id
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Closes the connection from the server side.
    pub fn close(&self, reason: CloseReason) {
        self.outbox.close(reason);
    }

    /// A receiver that changes when the connection is told to close (the adapter stops reading).
    pub fn closing(&self) -> watch::Receiver<Option<CloseReason>> {
        self.outbox.close.subscribe()
    }

    /// Handles one text frame and queues its reply. Returns false once the connection is gone.
    pub async fn handle_text(&mut self, text: &str) -> bool {
        let request = match protocol::decode(text) {
            Ok(request) => request,
            Err(rejected) => {
                let error = if self.admit() {
                    rejected.error
                } else {
                    ApiError::Throttled
                };
                let reply = protocol::error_frame(
                    rejected.stream.as_deref(),
                    rejected.action.as_deref(),
                    &rejected.request_id,
                    &error,
                );
                return self.outbox.send(reply).await;
            }
        };
        let result = if self.admit() {
            self.dispatch(&request).await
        } else {
            Err(ApiError::Throttled)
        };
        let (stream, action) = (Some(request.stream.as_str()), request.action.as_deref());
        let reply = match result {
            Ok(Handled::Sent) => return !self.outbox.frames.is_closed(),
            Ok(Handled::Reply(status, data)) => protocol::reply_frame(
                stream,
                action,
                &request.request_id,
                status,
                &[],
                data.as_deref(),
            ),
            Err(error) => protocol::error_frame(stream, action, &request.request_id, &error),
        };
        self.outbox.send(reply).await
    }

    /// Answers a binary frame: the protocol is JSON text only.
    pub async fn handle_binary(&mut self) -> bool {
        let error = if self.admit() {
            ApiError::bad_request("Binary frames are not supported: send JSON text.")
        } else {
            ApiError::Throttled
        };
        let reply = protocol::error_frame(None, None, &Value::Null, &error);
        self.outbox.send(reply).await
    }

    /// The connection's and the principal's rate limits.
    pub(crate) fn admit(&mut self) -> bool {
        self.throttle.admit() && self.app.admit(&self.principal)
    }

    /// The app this connection belongs to.
    pub(crate) fn app(&self) -> &App {
        &self.app
    }

    /// Where this connection's frames go (other codecs queue their frames here too).
    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// This connection's audience for `binding`'s events (one per stream).
    pub(crate) fn audience(&mut self, binding: &'static dyn Binding) -> Arc<Audience> {
        let stream = binding.meta().stream;
        if let Some(a) = self
            .audiences
            .iter()
            .find(|a| a.binding.meta().stream == stream)
        {
            return a.clone();
        }
        let audience = Audience::new(binding, &self.principal);
        self.audiences.push(audience.clone());
        audience
    }

    async fn dispatch(&mut self, req: &Request) -> Result<Handled, ApiError> {
        let binding = self
            .app
            .registry()
            .get(&req.stream)
            .ok_or_else(|| ApiError::UnknownStream(req.stream.clone()))?;
        let action = req
            .action
            .as_deref()
            .ok_or(ApiError::MethodNotAllowed(None))?;
        let p = &req.payload;
        let op = match action {
            "list" => Op::List {
                filters: match p.get("data") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Object(m)) => m
                        .iter()
                        .map(|(k, v)| (k.clone(), Input::Json(v.clone())))
                        .collect(),
                    Some(_) => {
                        return Err(ApiError::bad_request(
                            "\"data\" must be an object of filters.",
                        ));
                    }
                },
                limit: int_arg(p, "limit")?,
                offset: int_arg(p, "offset")?,
            },
            "retrieve" => Op::Retrieve { pk: pk_arg(p)? },
            "create" => Op::Create { data: data_arg(p)? },
            "update" | "patch" => Op::Update {
                pk: pk_arg(p)?,
                data: data_arg(p)?,
                partial: action == "patch",
            },
            "delete" => Op::Delete { pk: pk_arg(p)? },
            "subscribe_instance" => return self.subscribe_instance(binding, req).await,
            "unsubscribe_instance" => return self.unsubscribe_instance(binding, req),
            "subscribe" => return self.subscribe_group(binding, req).await,
            "unsubscribe" => return self.unsubscribe_group(binding, req),
            other => {
                let Some(job) = self.app.jobs().get(binding.meta().stream, other) else {
                    return Err(ApiError::MethodNotAllowed(Some(other.to_owned())));
                };
                let pk = if job.on_object() {
                    Some(pk_arg(p)?)
                } else {
                    None
                };
                let args = Value::Object(data_arg(p)?);
                let state = crate::jobs::start(&self.app, &self.principal, job, pk, args).await?;
                return Ok(Handled::Reply(202, Some(state)));
            }
        };
        let outcome = actions::execute(&self.app, &self.principal, binding, op).await?;
        Ok(Handled::Reply(outcome.status, outcome.data))
    }

    async fn subscribe_instance(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<Handled, ApiError> {
        let meta = binding.meta();
        if !meta.instance_subscribable {
            return Err(ApiError::MethodNotAllowed(Some(
                "subscribe_instance".into(),
            )));
        }
        let pk = pk_arg(&req.payload)?;
        let key = binding.canonical_pk(&pk)?;
        let options = SubscribeOptions::parse(&req.payload, false)?;
        // Without `since`, only an object that exists can be followed (checked with the
        // registration); a client resuming with `since` learns from the replay what became of it.
        let must_exist = options.since.is_none().then_some(pk);
        self.subscribe(
            binding,
            Target::Instance(key),
            &req.request_id,
            options,
            must_exist,
        )
        .await
    }

    fn unsubscribe_instance(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<Handled, ApiError> {
        let meta = binding.meta();
        if !meta.instance_subscribable {
            return Err(ApiError::MethodNotAllowed(Some(
                "unsubscribe_instance".into(),
            )));
        }
        let key = binding.canonical_pk(&pk_arg(&req.payload)?)?;
        let target = Target::Instance(key);
        self.unregister(meta.stream, |t| *t == target, &req.request_id)
    }

    async fn subscribe_group(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<Handled, ApiError> {
        let meta = binding.meta();
        if meta.group_keys.is_empty() {
            return Err(ApiError::MethodNotAllowed(Some("subscribe".into())));
        }
        let keys = meta.group_keys.join(", ");
        let group = match req.payload.get("group") {
            Some(Value::Object(g)) if g.len() == 1 => g,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "\"group\" must be an object with exactly one group key ({keys}) and its value."
                )));
            }
        };
        let (key, value) = group.iter().next().ok_or(ApiError::NotFound)?;
        let Some(&key) = meta.group_keys.iter().find(|k| **k == key.as_str()) else {
            return Err(ApiError::bad_request(format!(
                "Unknown group key {}: declared group keys are {keys}.",
                Value::from(key.as_str())
            )));
        };
        let value = binding
            .canonical_group(key, value)
            .ok_or(ApiError::NotFound)??;
        let options = SubscribeOptions::parse(&req.payload, true)?;
        self.subscribe(
            binding,
            Target::Group(key, value),
            &req.request_id,
            options,
            None,
        )
        .await
    }

    fn unsubscribe_group(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<Handled, ApiError> {
        let meta = binding.meta();
        if meta.group_keys.is_empty() {
            return Err(ApiError::MethodNotAllowed(Some("unsubscribe".into())));
        }
        self.unregister(
            meta.stream,
            |t| matches!(t, Target::Group(..)),
            &req.request_id,
        )
    }

    /// Registers a subscription and answers it: plainly, after replaying the log from `since`, or
    /// with a snapshot of the group, so that no change is missed or sent twice at the seam.
    ///
    /// Every subscription starts pending and is released at a seq read from the committed log
    /// after the registration: the reply's `seq` is the log's head as of the subscription, and
    /// the subscriber gets exactly the changes after it (not, say, the event of a write it made
    /// and saw answered just before subscribing).
    async fn subscribe(
        &mut self,
        binding: &'static dyn Binding,
        target: Target,
        request_id: &Value,
        options: SubscribeOptions,
        must_exist: Option<Input>,
    ) -> Result<Handled, ApiError> {
        let stream = binding.meta().stream;
        if !binding.allows(&self.principal, Action::Subscribe) {
            return Err(ApiError::PermissionDenied);
        }
        let request_id: Arc<str> = Arc::from(request_id.to_string());
        let position = self
            .subscriptions
            .iter()
            .position(|s| s.stream == stream && s.target == target && s.request_id == request_id);
        let plain = options.since.is_none() && !options.snapshot;
        match position {
            // The same subscription again: a plain one stays as it is...
            Some(_) if plain => {
                let seq = self.app.hub().delivered(stream);
                return Ok(Handled::Reply(201, Some(to_raw(&json!({ "seq": seq }))?)));
            }
            // ...one that resumes or wants a snapshot starts over.
            Some(i) => {
                let old = self.subscriptions.swap_remove(i);
                self.app
                    .hub()
                    .unsubscribe(stream, &old.target, self.outbox.id, &old.request_id);
            }
            None => {
                let limit = self.app.config().max_subscriptions;
                if self.subscriptions.len() >= limit {
                    return Err(ApiError::bad_request(format!(
                        "Too many subscriptions on this connection (limit {limit})."
                    )));
                }
            }
        }
        let audience = self.audience(binding);
        let subscriber = Subscriber::new(self.outbox.clone(), request_id.clone(), audience, true);
        self.app
            .hub()
            .subscribe(stream, &target, subscriber.clone());
        self.subscriptions.push(Subscription {
            stream,
            target: target.clone(),
            request_id: request_id.clone(),
        });
        let result = if let Some(since) = options.since {
            self.replay(binding, &target, &subscriber, since).await
        } else if options.snapshot {
            self.snapshot(binding, &target, &subscriber).await
        } else {
            self.plain(binding, &target, &subscriber, must_exist).await
        };
        if result.is_err() {
            self.subscriptions.retain(|s| {
                !(s.stream == stream && s.target == target && s.request_id == request_id)
            });
            self.app
                .hub()
                .unsubscribe(stream, &target, self.outbox.id, &request_id);
        }
        result
    }

    /// Replies with the log's head (checking that a followed object exists as of it), then
    /// releases the live events after it.
    async fn plain(
        &mut self,
        binding: &'static dyn Binding,
        target: &Target,
        subscriber: &Subscriber,
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
        let reply = protocol::reply_frame(
            Some(stream),
            Some(self.current_action(target)),
            &serde_json::from_str(&subscriber.request_id).unwrap_or(Value::Null),
            201,
            &[],
            Some(&to_raw(&json!({ "seq": seq }))?),
        );
        if self.outbox.send(reply).await {
            subscriber.release(seq);
        }
        Ok(Handled::Sent)
    }

    /// Replies, then sends every change of the subscription in `(since, head]` in order, then
    /// releases the live events held since the registration that come after `head` (the log's
    /// head as read after registering: it may be ahead of this process's hub, e.g. when the client
    /// saw `since` from another process).
    async fn replay(
        &mut self,
        binding: &'static dyn Binding,
        target: &Target,
        subscriber: &Subscriber,
        since: i64,
    ) -> Result<Handled, ApiError> {
        let stream = binding.meta().stream;
        let (start, retained) = self
            .app
            .store()
            .read(move |mut c| {
                let head = changelog::stream_head(c.reborrow(), stream)?;
                let retained = changelog::count_stream(c, stream, since, head)?;
                Ok((head, retained))
            })
            .await?;
        if since > start {
            // A seq this log never handed out: the client's state comes from another history.
            return Err(ApiError::ResyncRequired);
        }
        if retained != start - since {
            return Err(ApiError::ResyncRequired);
        }
        let reply = protocol::reply_frame(
            Some(stream),
            Some(self.current_action(target)),
            &serde_json::from_str(&subscriber.request_id).unwrap_or(Value::Null),
            201,
            &[],
            Some(&to_raw(&json!({ "seq": start }))?),
        );
        if !self.outbox.send(reply).await {
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
                let event = target
                    .action_for(change)
                    .and_then(|base| subscriber.audience.event(change, base));
                if let Some((action, data)) = event {
                    let frame = protocol::event_frame(
                        stream,
                        action,
                        &subscriber.request_id,
                        change.seq,
                        &data,
                    );
                    if !self.outbox.send(frame).await {
                        return Ok(Handled::Sent);
                    }
                }
            }
        }
        subscriber.release(start);
        Ok(Handled::Sent)
    }

    /// Replies with the group's members and the seq they are current at, then releases the live
    /// events after that seq.
    async fn snapshot(
        &mut self,
        binding: &'static dyn Binding,
        target: &Target,
        subscriber: &Subscriber,
    ) -> Result<Handled, ApiError> {
        let Target::Group(key, value) = target.clone() else {
            return Err(ApiError::bad_request(
                "\"snapshot\" is for group subscriptions.",
            ));
        };
        let stream = binding.meta().stream;
        let max = self.app.config().max_snapshot;
        let principal = self.principal.clone();
        // One read transaction: the members are exactly those as of `seq`.
        let (seq, count, results) = self
            .app
            .store()
            .read(move |mut c| {
                let seq = changelog::stream_head(c.reborrow(), stream)?;
                let (count, results) = binding.members(c, &principal, key, &value, max)?;
                Ok((seq, count, results))
            })
            .await?;
        if count > max {
            return Err(ApiError::bad_request(format!(
                "The group has {count} members, more than a snapshot holds ({max}): use list."
            )));
        }
        let data = format!("{{\"seq\":{seq},\"results\":{}}}", results.get());
        let data = RawValue::from_string(data).map_err(ApiError::internal)?;
        let reply = protocol::reply_frame(
            Some(stream),
            Some("subscribe"),
            &serde_json::from_str(&subscriber.request_id).unwrap_or(Value::Null),
            201,
            &[],
            Some(&data),
        );
        if self.outbox.send(reply).await {
            subscriber.release(seq);
        }
        Ok(Handled::Sent)
    }

    fn current_action(&self, target: &Target) -> &'static str {
        match target {
            Target::Instance(_) => "subscribe_instance",
            Target::Group(..) => "subscribe",
        }
    }

    fn unregister(
        &mut self,
        stream: &'static str,
        matches: impl Fn(&Target) -> bool,
        request_id: &Value,
    ) -> Result<Handled, ApiError> {
        let request_id = request_id.to_string();
        let hub = self.app.hub();
        let conn = self.outbox.id;
        let before = self.subscriptions.len();
        self.subscriptions.retain(|s| {
            let hit = s.stream == stream && matches(&s.target) && *s.request_id == *request_id;
            if hit {
                hub.unsubscribe(stream, &s.target, conn, &s.request_id);
            }
            !hit
        });
        if self.subscriptions.len() == before {
            return Err(ApiError::NotFound);
        }
        Ok(Handled::Reply(204, None))
    }
}

/// Changes read from the log per query while replaying.
const REPLAY_BATCH: i64 = 500;

/// `since` and `snapshot` of a subscribe request.
struct SubscribeOptions {
    since: Option<i64>,
    snapshot: bool,
}

impl SubscribeOptions {
    fn parse(payload: &Map<String, Value>, group: bool) -> Result<Self, ApiError> {
        let since = match payload.get("since") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().filter(|s| *s >= 0).ok_or_else(|| {
                ApiError::bad_request("\"since\" must be a non-negative integer.")
            })?),
        };
        let snapshot = match payload.get("snapshot") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::bad_request("\"snapshot\" must be a boolean.")),
        };
        if snapshot && !group {
            return Err(ApiError::bad_request(
                "\"snapshot\" is for group subscriptions (subscribe).",
            ));
        }
        if snapshot && since.is_some() {
            return Err(ApiError::bad_request(
                "\"since\" and \"snapshot\" cannot be combined.",
            ));
        }
        Ok(Self { since, snapshot })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let hub = self.app.hub();
        for s in &self.subscriptions {
            hub.unsubscribe(s.stream, &s.target, self.outbox.id, &s.request_id);
        }
    }
}

fn pk_arg(payload: &Map<String, Value>) -> Result<Input, ApiError> {
    match payload.get("pk") {
        None | Some(Value::Null) => Err(ApiError::bad_request("\"pk\" is required.")),
        Some(pk) => Ok(Input::Json(pk.clone())),
    }
}

fn data_arg(payload: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    match payload.get("data") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request("\"data\" must be an object.")),
    }
}

fn int_arg(payload: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("{}: must be an integer.", Value::from(name)))
        }),
    }
}
