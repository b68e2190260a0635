//! Wire types of PROTOCOL.md §1: the `{stream, payload}` envelope, replies and events.
//! Decoding is strict about the envelope and lenient about nothing else; encoding writes the field
//! order of the protocol's examples.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::changelog::ChangeAction;
use crate::error::ApiError;

/// A decoded request frame.
#[derive(Debug)]
pub struct Request {
    pub stream: String,
    pub action: Option<String>,
    /// Echoed verbatim: a string, a number, or `null` when absent.
    pub request_id: Value,
    pub payload: Map<String, Value>,
}

/// A frame that could not become a [`Request`], with what the reply can still echo.
#[derive(Debug)]
pub struct Rejected {
    pub stream: Option<String>,
    pub action: Option<String>,
    pub request_id: Value,
    pub error: ApiError,
}

/// Decodes one text frame.
// `Rejected` is only built for a malformed frame: its size costs nothing on the valid path.
#[allow(clippy::result_large_err)]
pub fn decode(text: &str) -> Result<Request, Rejected> {
    let unparsable = |message: String| Rejected {
        stream: None,
        action: None,
        request_id: Value::Null,
        error: ApiError::BadRequest(message),
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| unparsable(format!("Invalid JSON: {e}")))?;
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
                stream: Some(stream),
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
                stream: Some(stream),
                action,
                request_id: Value::Null,
                error: ApiError::bad_request("\"request_id\" must be a string or a number."),
            });
        }
    };
    Ok(Request {
        stream,
        action,
        request_id,
        payload,
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
pub fn reply_frame(
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
pub fn error_frame(
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
pub fn event_frame(
    stream: &str,
    action: ChangeAction,
    request_id: &str,
    seq: i64,
    data: &str,
) -> Bytes {
    let status = match action {
        ChangeAction::Create => 201,
        ChangeAction::Update => 200,
        ChangeAction::Delete => 204,
    };
    let stream = Value::from(stream).to_string();
    let mut out = String::with_capacity(stream.len() + request_id.len() + data.len() + 112);
    out.push_str("{\"stream\":");
    out.push_str(&stream);
    out.push_str(",\"payload\":{\"action\":\"");
    out.push_str(action.as_str());
    out.push_str("\",\"request_id\":");
    out.push_str(request_id);
    out.push_str(",\"response_status\":");
    out.push_str(&status.to_string());
    out.push_str(",\"errors\":[],\"seq\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"data\":");
    out.push_str(data);
    out.push_str("}}");
    Bytes::from(out)
}

/// Serializes `value` as a raw JSON value for a reply's `data`.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value).map_err(ApiError::internal)
}
