//! The protocol's `{stream, payload}` envelope (docs/protocol.md §1): requests, replies and
//! events. Decoding is strict about the envelope and lenient about nothing else; encoding writes
//! the field order of the protocol's examples.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    Codec, Command, Declared, Echo, Matching, Rejected, Request, SubscribeOptions, Verb, pk_arg,
};
use crate::actions::Op;
use crate::error::{ApiError, FieldErrors};
use crate::hub::{EventEncoder, EventParts, Spliced, Target};
use crate::query::parse::QueryInput;
use crate::registry::Registry;
use crate::resource::binding::{Binding, Input};
use crate::store::changelog::ChangeAction;

/// The envelope codec.
pub struct Envelope;

/// The one instance of the envelope codec.
pub static ENVELOPE: Envelope = Envelope;

/// Decodes one text frame.
// `Rejected` is only built for a malformed frame: its size costs nothing on the valid path.
#[allow(clippy::result_large_err)]
fn decode(text: &str) -> Result<Request, Rejected> {
    let unparsable = |message: String| Rejected {
        resource: None,
        action: None,
        request_id: Value::Null,
        error: ApiError::BadRequest(message),
    };
    let value: Value =
        crate::json::from_str(text).map_err(|e| unparsable(format!("Invalid JSON: {e}")))?;
    let Value::Object(mut frame) = value else {
        return Err(unparsable("A frame must be a JSON object.".into()));
    };
    let payload = match frame.remove("payload") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err(unparsable("\"payload\" must be an object.".into())),
        None => return Err(unparsable("\"payload\" is required.".into())),
    };
    // From here on the payload is an object: a valid request_id in it is echoed by every reply,
    // so that the client can tell which of its frames was refused.
    let request_id = match payload.get("request_id") {
        None => Some(Value::Null),
        Some(v @ (Value::Null | Value::String(_) | Value::Number(_))) => Some(v.clone()),
        Some(_) => None,
    };
    let echo = || request_id.clone().unwrap_or(Value::Null);
    let stream = match frame.remove("stream") {
        Some(Value::String(s)) => s,
        other => {
            let message = match other {
                Some(_) => "\"stream\" must be a string.",
                None => "\"stream\" is required.",
            };
            return Err(Rejected {
                request_id: echo(),
                ..unparsable(message.into())
            });
        }
    };
    let action = match payload.get("action") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) => Some(a.clone()),
        Some(_) => {
            return Err(Rejected {
                resource: Some(stream),
                action: None,
                request_id: echo(),
                error: ApiError::bad_request("\"action\" must be a string."),
            });
        }
    };
    let request_id = match request_id {
        Some(request_id) => request_id,
        None => {
            return Err(Rejected {
                resource: Some(stream),
                action,
                request_id: Value::Null,
                error: ApiError::bad_request("\"request_id\" must be a string or a number."),
            });
        }
    };
    Ok(Request {
        resource: stream,
        verb: action.as_deref().map(Verb::parse),
        request_id,
        args: payload,
    })
}

#[derive(Serialize)]
struct Frame<'a, P> {
    stream: Option<&'a str>,
    payload: P,
}

#[derive(Serialize)]
struct ReplyPayload<'a> {
    action: Option<&'a str>,
    request_id: &'a Value,
    response_status: u16,
    errors: &'a [Value],
    data: Option<&'a RawValue>,
}

/// A reply frame (exactly one per request).
fn reply_frame(
    stream: Option<&str>,
    action: Option<&str>,
    request_id: &Value,
    status: u16,
    errors: &[Value],
    data: Option<&RawValue>,
) -> Bytes {
    let frame = Frame {
        stream,
        payload: ReplyPayload {
            action,
            request_id,
            response_status: status,
            errors,
            data,
        },
    };
    // Serializing these borrowed JSON values cannot fail.
    Bytes::from(serde_json::to_vec(&frame).unwrap_or_default())
}

/// The reply for a failed request.
fn error_frame(
    stream: Option<&str>,
    action: Option<&str>,
    request_id: &Value,
    error: &ApiError,
) -> Bytes {
    reply_frame(
        stream,
        action,
        request_id,
        error.status(),
        &error.errors(),
        None,
    )
}

/// An event frame. `request_id` and `data` are JSON text already (from the subscription and the
/// change log), so the frame is assembled without re-encoding the row.
fn event_frame(
    stream: &str,
    action: ChangeAction,
    request_id: &str,
    seq: i64,
    data: &str,
) -> Bytes {
    event_frame_parts(stream, action, seq, data).frame(request_id)
}

/// An event frame around the request id: what comes before it and what comes after (the hub
/// splices each subscriber's id in).
fn event_frame_parts(stream: &str, action: ChangeAction, seq: i64, data: &str) -> Spliced {
    let status = match action {
        ChangeAction::Create => 201,
        ChangeAction::Update => 200,
        ChangeAction::Delete => 204,
    };
    let stream = Value::from(stream).to_string();
    let mut head = String::with_capacity(stream.len() + 48);
    head.push_str("{\"stream\":");
    head.push_str(&stream);
    head.push_str(",\"payload\":{\"action\":\"");
    head.push_str(action.as_str());
    head.push_str("\",\"request_id\":");
    let mut tail = String::with_capacity(data.len() + 64);
    tail.push_str(",\"response_status\":");
    tail.push_str(&status.to_string());
    tail.push_str(",\"errors\":[],\"seq\":");
    tail.push_str(&seq.to_string());
    tail.push_str(",\"data\":");
    tail.push_str(data);
    tail.push_str("}}");
    Spliced {
        head: Bytes::from(head),
        tail: Bytes::from(tail),
    }
}

impl EventEncoder for Envelope {
    fn encode(&self, event: &EventParts<'_>) -> Bytes {
        event_frame(
            event.stream,
            event.action,
            event.subscription,
            event.seq,
            event.data,
        )
    }

    fn spliced(&self, event: &EventParts<'_>) -> Option<Spliced> {
        Some(event_frame_parts(
            event.stream,
            event.action,
            event.seq,
            event.data,
        ))
    }
}

impl Codec for Envelope {
    fn decode(&self, text: &str) -> Result<Request, Rejected> {
        decode(text)
    }

    fn resolve(
        &self,
        registry: &Registry,
        request: &Request,
    ) -> Result<&'static dyn Binding, ApiError> {
        registry
            .get(&request.resource)
            .ok_or_else(|| ApiError::UnknownStream(request.resource.clone()))
    }

    fn command(
        &self,
        binding: &'static dyn Binding,
        declared: Declared<'_>,
        request: &Request,
    ) -> Result<Command, ApiError> {
        let verb = request
            .verb
            .as_ref()
            .ok_or(ApiError::MethodNotAllowed(None))?;
        let meta = binding.meta();
        let not_allowed = || ApiError::MethodNotAllowed(Some(verb.as_str().to_owned()));
        let p = &request.args;
        let op = match verb {
            Verb::List => Op::List {
                query: query_input(p)?,
                limit: int_arg(p, "limit")?,
                offset: int_arg(p, "offset")?,
                after: p
                    .get("after")
                    .filter(|v| !v.is_null())
                    .map(|v| Input::Json(v.clone())),
            },
            Verb::Retrieve => Op::Retrieve { pk: pk_arg(p)? },
            Verb::Create => Op::Create { data: data_arg(p)? },
            Verb::Update | Verb::Patch => Op::Update {
                pk: pk_arg(p)?,
                data: data_arg(p)?,
                partial: *verb == Verb::Patch,
            },
            Verb::Delete => Op::Delete { pk: pk_arg(p)? },
            Verb::SubscribeInstance => {
                if !meta.instance_subscribable {
                    return Err(not_allowed());
                }
                let pk = pk_arg(p)?;
                let key = binding.canonical_pk(&pk)?;
                let options = subscribe_options(p, false)?;
                // A client resuming with `since` learns from the replay what became of the
                // object (it may have been deleted meanwhile). An object of a stream that is no
                // collection (a job) is never deleted through the log: resumed or not, it must
                // exist and be readable, so another principal's job is 404 like a missing one.
                let must_exist =
                    (options.since.is_none() || binding.collection().is_none()).then_some(pk);
                return Ok(Command::Subscribe {
                    target: Target::Instance(key),
                    options,
                    must_exist,
                });
            }
            Verb::UnsubscribeInstance => {
                if !meta.instance_subscribable {
                    return Err(not_allowed());
                }
                let key = binding.canonical_pk(&pk_arg(p)?)?;
                return Ok(Command::Unsubscribe(Matching::Exact(Target::Instance(key))));
            }
            Verb::Subscribe => {
                if let Some(query) = p.get("query").filter(|v| !v.is_null()) {
                    if binding.collection().is_none() {
                        return Err(not_allowed());
                    }
                    return live_query(p, query);
                }
                if meta.group_keys.is_empty() {
                    return Err(not_allowed());
                }
                let target = group_target(binding, p)?;
                let options = subscribe_options(p, true)?;
                return Ok(Command::Subscribe {
                    target,
                    options,
                    must_exist: None,
                });
            }
            Verb::Unsubscribe => {
                if meta.group_keys.is_empty() && binding.collection().is_none() {
                    return Err(not_allowed());
                }
                return Ok(Command::Unsubscribe(Matching::AnySubscription));
            }
            Verb::Other(name) => {
                if let Some(action) = declared.registry.action(meta.stream, name) {
                    let pk = if action.detail() {
                        Some(pk_arg(p)?)
                    } else {
                        None
                    };
                    let args = Value::Object(data_arg(p)?);
                    return Ok(Command::Action { action, pk, args });
                }
                let job = declared
                    .jobs
                    .declared(meta.stream, name)
                    .ok_or_else(not_allowed)?;
                let pk = if job.on_object() {
                    Some(pk_arg(p)?)
                } else {
                    None
                };
                let args = Value::Object(data_arg(p)?);
                return Ok(Command::Job { job, pk, args });
            }
        };
        Ok(Command::Crud(op))
    }

    fn subscription_id(&self, request_id: &Value) -> Arc<str> {
        Arc::from(request_id.to_string())
    }

    fn reply(&self, echo: &Echo<'_>, status: u16, data: Option<&RawValue>) -> Option<Bytes> {
        Some(reply_frame(
            echo.resource,
            echo.action,
            echo.request_id,
            status,
            &[],
            data,
        ))
    }

    fn error(&self, echo: &Echo<'_>, error: &ApiError) -> Bytes {
        error_frame(echo.resource, echo.action, echo.request_id, error)
    }
}

/// The target of `subscribe`: `{"group": {"<key>": value}}`, one declared group key.
fn group_target(
    binding: &'static dyn Binding,
    payload: &Map<String, Value>,
) -> Result<Target, ApiError> {
    let meta = binding.meta();
    let keys = meta.group_keys.join(", ");
    let group = match payload.get("group") {
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
    Ok(Target::Group(key, value))
}

/// `subscribe` with `query`: `{"filter", "ordering", "limit"}` (PROTOCOL §4; `data` is
/// accepted for `filter` as in `list`). A page's `offset` or `after` has no meaning for a view.
fn live_query(payload: &Map<String, Value>, query: &Value) -> Result<Command, ApiError> {
    if payload.get("group").is_some_and(|g| !g.is_null()) {
        return Err(ApiError::bad_request(
            "\"group\" and \"query\" cannot be combined.",
        ));
    }
    let Value::Object(q) = query else {
        return Err(ApiError::bad_request(
            "\"query\" must be an object: {\"filter\", \"ordering\", \"limit\"}.",
        ));
    };
    let mut errors = FieldErrors::new();
    for key in q.keys() {
        match key.as_str() {
            "filter" | "data" | "ordering" | "limit" => {}
            "offset" | "after" => errors.add(key, "Not allowed in a live query."),
            _ => errors.add(key, "Unknown query argument."),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Command::SubscribeQuery {
        query: query_input(q)?,
        limit: int_arg(q, "limit")?,
        options: subscribe_options(payload, true)?,
    })
}

/// `since` and `snapshot` of a subscribe request.
fn subscribe_options(
    payload: &Map<String, Value>,
    group: bool,
) -> Result<SubscribeOptions, ApiError> {
    let since =
        match payload.get("since") {
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
    Ok(SubscribeOptions { since, snapshot })
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

/// The filter (`filter`, or v1's `data`) and `ordering` of a `list` or a live query.
pub(crate) fn query_input(p: &Map<String, Value>) -> Result<QueryInput, ApiError> {
    let key = if p.get("filter").is_some_and(|v| !v.is_null()) {
        "filter"
    } else {
        "data"
    };
    let filter = match p.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), Input::Json(v.clone())))
            .collect(),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{}: must be an object of conditions.",
                Value::from(key)
            )));
        }
    };
    Ok(QueryInput {
        filter,
        ordering: p.get("ordering").map(|v| Input::Json(v.clone())),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::event_frame;
    use crate::store::changelog::ChangeAction;

    proptest! {
        /// The event frame, spliced around any request id, is byte for byte what serde_json makes
        /// of the protocol's event (docs/protocol.md §1, "Events"), for any stream, id, seq and
        /// data.
        #[test]
        fn spliced_frames_are_the_protocol_s_event(
            stream in "\\PC{0,12}",
            action in prop::sample::select(vec![ChangeAction::Create, ChangeAction::Update, ChangeAction::Delete]),
            id in prop_oneof![
                any::<i64>().prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::from),
                Just(Value::Null),
            ],
            seq in any::<i64>(),
            text in "\\PC{0,40}",
        ) {
            let data = serde_json::json!({"id": 7, "text": text});
            let status = match action {
                ChangeAction::Create => 201,
                ChangeAction::Update => 200,
                ChangeAction::Delete => 204,
            };
            let expected = serde_json::json!({"stream": stream, "payload": {
                "action": action.as_str(), "request_id": id, "response_status": status,
                "errors": [], "seq": seq, "data": data}})
            .to_string();
            let spliced = event_frame(&stream, action, &id.to_string(), seq, &data.to_string());
            prop_assert_eq!(std::str::from_utf8(&spliced).expect("UTF-8"), expected);
        }
    }
}
