//! The django-rest-live subscription format: a second codec over the same hub, so that front-ends
//! written for django-rest-live's `SubscriptionConsumer` connect unchanged (the warp adapter serves
//! it at [`crate::Config::drl_path`], `/ws/subscribe/` by default).
//!
//! Client → server, one JSON object per text frame:
//! - `{"model": "todolist.Task", "pk": 1}` follows one object (a `#[subscribable]` resource);
//! - `{"model": "todolist.Task", "list_id": 1}` follows a group (any declared group key);
//! - the same with `"unsubscribe": true` stops following it;
//! - an optional `"request_id"` (a string or a number) asks for a reply on success as well.
//!
//! Server → client:
//! - events: `{"model": "todolist.Task", "payload": {…}, "action": "CREATED" | "UPDATED" | "DELETED"}`,
//!   relative to the subscription exactly as on the main endpoint (a task leaving list 1 is
//!   `DELETED` for list 1's subscribers); a `DELETED` payload is the object as the subscriber last
//!   saw it;
//! - replies, only for messages with a `request_id`: `{"model", "request_id", "status"}` with 201
//!   (subscribed) or 204 (unsubscribed);
//! - errors, always (django-rest-live stays silent instead): `{"model", "request_id", "status",
//!   "error"}`, e.g. 404 `Unknown model "todolist.Nope"`, 400 for an unknown key, 403, 404 for an
//!   object that does not exist or may not be read, 429 when throttled.
//!
//! Model labels come from `#[resource(label = "…")]` (by default the struct's name).
//! Authentication, permissions (the [`Audience`] of the main endpoint), throttling, limits and
//! close codes are those of the main endpoint: this module only decodes and encodes.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::app::App;
use crate::auth::Principal;
use crate::binding::{Binding, Input};
use crate::changelog::{self, ChangeAction};
use crate::connection::{CloseReason, Connection, Outgoing};
use crate::error::ApiError;
use crate::hub::{Audience, EventFormat, Subscriber, Target};
use crate::permissions::Action;

/// What a django-rest-live client did wrong, with the status its error frame carries.
#[derive(Debug, thiserror::Error)]
pub enum DrlError {
    /// No resource has this label.
    #[error("Unknown model {}", Value::from(.0.as_str()))]
    UnknownModel(String),
    /// Several resources share a label: a server-side mistake, named so that it gets fixed.
    #[error(
        "Model label {} names several resources ({}): give them distinct #[resource(label = …)]",
        Value::from(*.label), .streams.join(", ")
    )]
    AmbiguousModel {
        label: &'static str,
        streams: Vec<&'static str>,
    },
    /// Everything the main endpoint also answers (400, 403, 404, 429, 500).
    #[error("{}", api_message(.0))]
    Api(#[from] ApiError),
}

impl DrlError {
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownModel(_) => 404,
            Self::AmbiguousModel { .. } => 500,
            Self::Api(error) => error.status(),
        }
    }
}

/// The first message of an [`ApiError`] as text.
fn api_message(error: &ApiError) -> String {
    match error.errors().into_iter().next() {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => error.to_string(),
    }
}

/// One decoded client message; its key is checked against the model once the model is known.
#[derive(Debug)]
pub struct Message {
    pub model: String,
    pub request_id: Value,
    pub unsubscribe: bool,
    /// Every other member: `pk` or a group key (exactly one is valid).
    pub keys: Map<String, Value>,
}

/// A message that could not be decoded, with what its error frame can still echo.
#[derive(Debug)]
pub struct Rejected {
    pub model: Option<String>,
    pub request_id: Value,
    pub error: DrlError,
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<Message, Box<Rejected>> {
    let reject = |model: Option<String>, request_id: Value, message: String| {
        Box::new(Rejected {
            model,
            request_id,
            error: ApiError::BadRequest(message).into(),
        })
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| reject(None, Value::Null, format!("Invalid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(reject(
            None,
            Value::Null,
            "A message must be a JSON object.".into(),
        ));
    };
    let request_id = match object.remove("request_id") {
        None => Value::Null,
        Some(v @ (Value::Null | Value::String(_) | Value::Number(_))) => v,
        Some(_) => {
            return Err(reject(
                None,
                Value::Null,
                "\"request_id\" must be a string or a number.".into(),
            ));
        }
    };
    let model = match object.remove("model") {
        Some(Value::String(model)) => model,
        Some(_) => {
            return Err(reject(
                None,
                request_id,
                "\"model\" must be a string (\"app.Model\").".into(),
            ));
        }
        None => {
            return Err(reject(
                None,
                request_id,
                "\"model\" is required (\"app.Model\").".into(),
            ));
        }
    };
    let unsubscribe = match object.remove("unsubscribe") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(reject(
                Some(model),
                request_id,
                "\"unsubscribe\" must be a boolean.".into(),
            ));
        }
    };
    Ok(Message {
        model,
        request_id,
        unsubscribe,
        keys: object,
    })
}

/// An event frame.
pub fn event_frame(label: &str, action: ChangeAction, data: &str) -> Bytes {
    let action = match action {
        ChangeAction::Create => "CREATED",
        ChangeAction::Update => "UPDATED",
        ChangeAction::Delete => "DELETED",
    };
    let label = Value::from(label).to_string();
    let mut out = String::with_capacity(label.len() + data.len() + 48);
    out.push_str("{\"model\":");
    out.push_str(&label);
    out.push_str(",\"payload\":");
    out.push_str(data);
    out.push_str(",\"action\":\"");
    out.push_str(action);
    out.push_str("\"}");
    Bytes::from(out)
}

/// The reply to a successful message that carried a `request_id`.
pub fn reply_frame(model: Option<&str>, request_id: &Value, status: u16) -> Bytes {
    let frame = serde_json::json!({"model": model, "request_id": request_id, "status": status});
    Bytes::from(frame.to_string())
}

/// The reply to a failed message.
pub fn error_frame(model: Option<&str>, request_id: &Value, error: &DrlError) -> Bytes {
    let frame = serde_json::json!({
        "model": model,
        "request_id": request_id,
        "status": error.status(),
        "error": error.to_string(),
    });
    Bytes::from(frame.to_string())
}

/// The resource a model label names.
pub fn resolve(app: &App, label: &str) -> Result<&'static dyn Binding, DrlError> {
    let found: Vec<&'static dyn Binding> = app
        .registry()
        .iter()
        .filter(|b| b.meta().label == label)
        .collect();
    match found.as_slice() {
        [] => Err(DrlError::UnknownModel(label.to_owned())),
        [one] => Ok(*one),
        many => {
            let error = DrlError::AmbiguousModel {
                label: many[0].meta().label,
                streams: many.iter().map(|b| b.meta().stream).collect(),
            };
            tracing::warn!(%error, "ambiguous model label");
            Err(error)
        }
    }
}

/// The hub identifies a subscription by connection and `request_id` within its target; this
/// format has no `request_id`, and one connection follows a target once.
const SUBSCRIPTION_ID: &str = "\"django-rest-live\"";

struct Subscription {
    stream: &'static str,
    target: Target,
}

/// One connection speaking this format: the main endpoint's [`Connection`] (outbox, throttles,
/// principal, audiences, revocation) with subscriptions of its own.
pub struct DrlConnection {
    inner: Connection,
    subscriptions: Vec<Subscription>,
    id: Arc<str>,
}

impl DrlConnection {
    /// Opens a connection's state for `principal`.
    pub fn open(app: &App, principal: Principal) -> (Self, Outgoing) {
        let (inner, outgoing) = app.connect(principal);
        let connection = Self {
            inner,
            subscriptions: Vec::new(),
            id: Arc::from(SUBSCRIPTION_ID),
        };
        (connection, outgoing)
    }

    pub fn id(&self) -> u64 {
        self.inner.id()
    }

    /// Closes the connection from the server side.
    pub fn close(&self, reason: CloseReason) {
        self.inner.close(reason);
    }

    /// A receiver that changes when the connection is told to close.
    pub fn closing(&self) -> watch::Receiver<Option<CloseReason>> {
        self.inner.closing()
    }

    /// Handles one text frame. Returns false once the connection is gone.
    pub async fn handle_text(&mut self, text: &str) -> bool {
        let admitted = self.inner.admit();
        let (model, request_id, result) = match decode(text) {
            Err(rejected) => {
                let error = if admitted {
                    rejected.error
                } else {
                    ApiError::Throttled.into()
                };
                (rejected.model, rejected.request_id, Err(error))
            }
            Ok(message) if !admitted => (
                Some(message.model),
                message.request_id,
                Err(ApiError::Throttled.into()),
            ),
            Ok(message) => {
                let result = self.dispatch(&message).await;
                (Some(message.model), message.request_id, result)
            }
        };
        match result {
            Ok(()) => true,
            Err(error) => {
                let frame = error_frame(model.as_deref(), &request_id, &error);
                self.inner.outbox().send(frame).await
            }
        }
    }

    /// Answers a binary frame: the format is JSON text only.
    pub async fn handle_binary(&mut self) -> bool {
        let error: DrlError = if self.inner.admit() {
            ApiError::bad_request("Binary frames are not supported: send JSON text.").into()
        } else {
            ApiError::Throttled.into()
        };
        let frame = error_frame(None, &Value::Null, &error);
        self.inner.outbox().send(frame).await
    }

    async fn dispatch(&mut self, message: &Message) -> Result<(), DrlError> {
        let binding = resolve(self.inner.app(), &message.model)?;
        let (target, must_exist) = target(binding, &message.keys)?;
        let stream = binding.meta().stream;
        let request_id = &message.request_id;
        if message.unsubscribe {
            let before = self.subscriptions.len();
            self.subscriptions
                .retain(|s| !(s.stream == stream && s.target == target));
            if self.subscriptions.len() == before {
                return Err(ApiError::NotFound.into());
            }
            let conn = self.inner.id();
            self.inner
                .app()
                .hub()
                .unsubscribe(stream, &target, conn, &self.id);
            return self.reply(message, 204).await;
        }
        if !binding.allows(self.inner.principal(), Action::Subscribe) {
            return Err(ApiError::PermissionDenied.into());
        }
        if self
            .subscriptions
            .iter()
            .any(|s| s.stream == stream && s.target == target)
        {
            return self.reply(message, 201).await;
        }
        let limit = self.inner.app().config().max_subscriptions;
        if self.subscriptions.len() >= limit {
            return Err(ApiError::bad_request(format!(
                "Too many subscriptions on this connection (limit {limit})."
            ))
            .into());
        }
        // Registered pending, then released at the log's head read after the registration (as
        // on the main endpoint): exactly the changes committed after the subscription are sent.
        let audience: Arc<Audience> = self.inner.audience(binding);
        let format = EventFormat::DjangoRestLive {
            label: binding.meta().label,
        };
        let subscriber =
            Subscriber::new(self.inner.outbox().clone(), self.id.clone(), audience, true)
                .with_format(format);
        let hub = self.inner.app().hub();
        hub.subscribe(stream, &target, subscriber.clone());
        self.subscriptions.push(Subscription {
            stream,
            target: target.clone(),
        });
        let principal = self.inner.principal().clone();
        let head = self
            .inner
            .app()
            .store()
            .read(move |mut c| {
                if let Some(pk) = &must_exist {
                    binding.retrieve(c.reborrow(), &principal, pk)?;
                }
                Ok(changelog::stream_head(c, stream)?)
            })
            .await;
        let seq = match head {
            Ok(seq) => seq,
            Err(error) => {
                self.subscriptions
                    .retain(|s| !(s.stream == stream && s.target == target));
                let conn = self.inner.id();
                self.inner
                    .app()
                    .hub()
                    .unsubscribe(stream, &target, conn, &self.id);
                return Err(error.into());
            }
        };
        if !request_id.is_null() {
            let frame = reply_frame(Some(&message.model), request_id, 201);
            if !self.inner.outbox().send(frame).await {
                return Ok(());
            }
        }
        subscriber.release(seq);
        Ok(())
    }

    async fn reply(&self, message: &Message, status: u16) -> Result<(), DrlError> {
        if !message.request_id.is_null() {
            let frame = reply_frame(Some(&message.model), &message.request_id, status);
            self.inner.outbox().send(frame).await;
        }
        Ok(())
    }
}

impl Drop for DrlConnection {
    fn drop(&mut self) {
        let conn = self.inner.id();
        let hub = self.inner.app().hub();
        for s in &self.subscriptions {
            hub.unsubscribe(s.stream, &s.target, conn, &self.id);
        }
    }
}

/// What a message's key follows; for a pk, the pk whose object must exist and be readable.
fn target(
    binding: &'static dyn Binding,
    keys: &Map<String, Value>,
) -> Result<(Target, Option<Input>), DrlError> {
    let meta = binding.meta();
    let valid: Vec<&str> = meta
        .instance_subscribable
        .then_some("pk")
        .into_iter()
        .chain(meta.group_keys.iter().copied())
        .collect();
    let choices = || {
        if valid.is_empty() {
            format!("{} cannot be subscribed to", meta.label)
        } else {
            let quoted: Vec<String> = valid.iter().map(|k| Value::from(*k).to_string()).collect();
            format!("subscribe to {} by {}", meta.label, quoted.join(" or "))
        }
    };
    if let Some(unknown) = keys.keys().find(|k| !valid.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "Unknown key {}: {}.",
            Value::from(unknown.as_str()),
            choices()
        ))
        .into());
    }
    let mut keys = keys.iter();
    let (Some((key, value)), None) = (keys.next(), keys.next()) else {
        return Err(ApiError::bad_request(format!("Give exactly one key: {}.", choices())).into());
    };
    if key == "pk" {
        let pk = Input::Json(value.clone());
        return Ok((Target::Instance(binding.canonical_pk(&pk)?), Some(pk)));
    }
    let key = meta
        .group_keys
        .iter()
        .copied()
        .find(|k| *k == key.as_str())
        .ok_or(ApiError::NotFound)?;
    let value = binding
        .canonical_group(key, value)
        .ok_or(ApiError::NotFound)??;
    Ok((Target::Group(key, value), None))
}
