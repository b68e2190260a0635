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
use crate::error::ApiError;
use crate::hub::{Subscriber, Target};
use crate::protocol::{self, Request, to_raw};

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

    /// Queues an event without waiting; a full queue closes the connection (4008).
    pub fn push_event(&self, frame: Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.frames.try_send(frame) {
            tracing::warn!(
                connection = self.id,
                "outgoing queue full; closing with 4008"
            );
            self.close(CloseReason::SLOW_CONSUMER);
        }
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

/// The receiving side of one connection.
pub struct Connection {
    app: App,
    principal: Principal,
    outbox: Arc<Outbox>,
    subscriptions: Vec<Subscription>,
}

impl Connection {
    pub(crate) fn open(app: App, principal: Principal) -> (Self, Outgoing) {
        let (frames_tx, frames_rx) = mpsc::channel(app.config().outgoing_queue.max(1));
        let (close_tx, close_rx) = watch::channel(None);
        let outbox = Arc::new(Outbox {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            frames: frames_tx,
            close: close_tx,
        });
        let connection = Self {
            app,
            principal,
            outbox,
            subscriptions: Vec::new(),
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

    /// Handles one text frame and queues its reply. Returns false once the connection is gone.
    pub async fn handle_text(&mut self, text: &str) -> bool {
        let reply = match protocol::decode(text) {
            Err(rejected) => protocol::error_frame(
                rejected.stream.as_deref(),
                rejected.action.as_deref(),
                &rejected.request_id,
                &rejected.error,
            ),
            Ok(request) => {
                let result = self.dispatch(&request).await;
                let (stream, action) = (Some(request.stream.as_str()), request.action.as_deref());
                match result {
                    Ok((status, data)) => protocol::reply_frame(
                        stream,
                        action,
                        &request.request_id,
                        status,
                        &[],
                        data.as_deref(),
                    ),
                    Err(error) => {
                        protocol::error_frame(stream, action, &request.request_id, &error)
                    }
                }
            }
        };
        self.outbox.frames.send(reply).await.is_ok()
    }

    /// Answers a binary frame: the protocol is JSON text only.
    pub async fn handle_binary(&mut self) -> bool {
        let error = ApiError::bad_request("Binary frames are not supported: send JSON text.");
        let reply = protocol::error_frame(None, None, &Value::Null, &error);
        self.outbox.frames.send(reply).await.is_ok()
    }

    async fn dispatch(&mut self, req: &Request) -> Result<(u16, Option<Box<RawValue>>), ApiError> {
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
            "subscribe" => return self.subscribe_group(binding, req),
            "unsubscribe" => return self.unsubscribe_group(binding, req),
            other => return Err(ApiError::MethodNotAllowed(Some(other.to_owned()))),
        };
        let outcome = actions::execute(&self.app, &self.principal, binding, op).await?;
        Ok((outcome.status, outcome.data))
    }

    async fn subscribe_instance(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<(u16, Option<Box<RawValue>>), ApiError> {
        let meta = binding.meta();
        if !meta.instance_subscribable {
            return Err(ApiError::MethodNotAllowed(Some(
                "subscribe_instance".into(),
            )));
        }
        let pk = pk_arg(&req.payload)?;
        let key = binding.canonical_pk(&pk)?;
        // Only an object the principal can read can be followed.
        actions::execute(&self.app, &self.principal, binding, Op::Retrieve { pk }).await?;
        self.register(meta.stream, Target::Instance(key), &req.request_id)
    }

    fn unsubscribe_instance(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<(u16, Option<Box<RawValue>>), ApiError> {
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

    fn subscribe_group(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<(u16, Option<Box<RawValue>>), ApiError> {
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
        self.register(meta.stream, Target::Group(key, value), &req.request_id)
    }

    fn unsubscribe_group(
        &mut self,
        binding: &'static dyn Binding,
        req: &Request,
    ) -> Result<(u16, Option<Box<RawValue>>), ApiError> {
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

    fn register(
        &mut self,
        stream: &'static str,
        target: Target,
        request_id: &Value,
    ) -> Result<(u16, Option<Box<RawValue>>), ApiError> {
        let request_id: Arc<str> = Arc::from(request_id.to_string());
        let exists = self
            .subscriptions
            .iter()
            .any(|s| s.stream == stream && s.target == target && s.request_id == request_id);
        let limit = self.app.config().max_subscriptions;
        if !exists && self.subscriptions.len() >= limit {
            return Err(ApiError::bad_request(format!(
                "Too many subscriptions on this connection (limit {limit})."
            )));
        }
        let subscriber = Subscriber {
            outbox: self.outbox.clone(),
            request_id: request_id.clone(),
        };
        let seq = self.app.hub().subscribe(stream, &target, subscriber);
        if !exists {
            self.subscriptions.push(Subscription {
                stream,
                target,
                request_id,
            });
        }
        Ok((201, Some(to_raw(&json!({ "seq": seq }))?)))
    }

    fn unregister(
        &mut self,
        stream: &'static str,
        matches: impl Fn(&Target) -> bool,
        request_id: &Value,
    ) -> Result<(u16, Option<Box<RawValue>>), ApiError> {
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
        Ok((204, None))
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
