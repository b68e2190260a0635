//! The django-rest-live subscription format: a second codec over the same hub, so that front-ends
//! written for django-rest-live's `SubscriptionConsumer` connect unchanged (adapters serve
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
//! Authentication, permissions (the audiences of the main endpoint), throttling, limits and
//! close codes are those of the main endpoint: this module only decodes and encodes.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Codec, Command, Declared, Echo, Matching, Rejected, Request, SubscribeOptions, Verb};
use crate::error::ApiError;
use crate::hub::{EventEncoder, EventParts, Target};
use crate::registry::Registry;
use crate::resource::binding::{Binding, Input};
use crate::store::changelog::ChangeAction;

/// The django-rest-live codec.
pub struct DjangoRestLive;

/// The one instance of the django-rest-live codec.
pub static DJANGO_REST_LIVE: DjangoRestLive = DjangoRestLive;

/// The hub identifies a subscription by connection and id within its target; this format has no
/// `request_id` for subscriptions, and one connection follows a target once.
const SUBSCRIPTION_ID: &str = "\"django-rest-live\"";

/// The text of an error frame: a model that names nothing says so in this format's words.
fn message(error: &ApiError) -> String {
    if let ApiError::UnknownStream(label) = error {
        return format!("Unknown model {}", Value::from(label.as_str()));
    }
    match error.errors().into_iter().next() {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => error.to_string(),
    }
}

/// Decodes one text frame.
// `Rejected` is only built for a malformed frame: its size costs nothing on the valid path.
#[allow(clippy::result_large_err)]
fn decode(text: &str) -> Result<Request, Rejected> {
    let reject = |resource: Option<String>, request_id: Value, message: String| Rejected {
        resource,
        action: None,
        request_id,
        error: ApiError::BadRequest(message),
    };
    let value: Value = crate::json::from_str(text)
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
    // The format has two verbs, told apart by a flag.
    let verb = if unsubscribe {
        Verb::Unsubscribe
    } else {
        Verb::Subscribe
    };
    Ok(Request {
        resource: model,
        verb: Some(verb),
        request_id,
        args: object,
    })
}

/// An event frame.
fn event_frame(label: &str, action: ChangeAction, data: &str) -> Bytes {
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
fn reply_frame(model: Option<&str>, request_id: &Value, status: u16) -> Bytes {
    let frame = serde_json::json!({"model": model, "request_id": request_id, "status": status});
    Bytes::from(frame.to_string())
}

/// The reply to a failed message.
fn error_frame(model: Option<&str>, request_id: &Value, error: &ApiError) -> Bytes {
    let frame = serde_json::json!({
        "model": model,
        "request_id": request_id,
        "status": error.status(),
        "error": message(error),
    });
    Bytes::from(frame.to_string())
}

impl EventEncoder for DjangoRestLive {
    fn encode(&self, event: &EventParts<'_>) -> Bytes {
        event_frame(event.label, event.action, event.data)
    }

    /// Events carry no request id: one frame per audience and action serves every subscriber.
    fn names_subscription(&self) -> bool {
        false
    }

    /// A `DELETED` payload is the object as the subscriber last saw it.
    fn full_deletes(&self) -> bool {
        true
    }
}

impl Codec for DjangoRestLive {
    fn decode(&self, text: &str) -> Result<Request, Rejected> {
        decode(text)
    }

    /// Resources are named by model label (distinct ones: checked at start-up).
    fn resolve(
        &self,
        registry: &Registry,
        request: &Request,
    ) -> Result<&'static dyn Binding, ApiError> {
        registry
            .by_label(&request.resource)
            .ok_or_else(|| ApiError::UnknownStream(request.resource.clone()))
    }

    fn command(
        &self,
        binding: &'static dyn Binding,
        _declared: Declared<'_>,
        request: &Request,
    ) -> Result<Command, ApiError> {
        let (target, must_exist) = target(binding, &request.args)?;
        Ok(match request.verb {
            Some(Verb::Unsubscribe) => Command::Unsubscribe(Matching::Exact(target)),
            _ => Command::Subscribe {
                target,
                options: SubscribeOptions::default(),
                must_exist,
            },
        })
    }

    fn subscription_id(&self, _request_id: &Value) -> Arc<str> {
        Arc::from(SUBSCRIPTION_ID)
    }

    /// Only a message with a `request_id` is answered on success.
    fn reply(&self, echo: &Echo<'_>, status: u16, _data: Option<&RawValue>) -> Option<Bytes> {
        (!echo.request_id.is_null()).then(|| reply_frame(echo.resource, echo.request_id, status))
    }

    fn error(&self, echo: &Echo<'_>, error: &ApiError) -> Bytes {
        error_frame(echo.resource, echo.request_id, error)
    }
}

/// What a message's key follows; for a pk, the pk whose object must exist and be readable.
fn target(
    binding: &'static dyn Binding,
    keys: &Map<String, Value>,
) -> Result<(Target, Option<Input>), ApiError> {
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
        )));
    }
    let mut keys = keys.iter();
    let (Some((key, value)), None) = (keys.next(), keys.next()) else {
        return Err(ApiError::bad_request(format!(
            "Give exactly one key: {}.",
            choices()
        )));
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
