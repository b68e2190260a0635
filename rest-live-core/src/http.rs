//! The HTTP API (docs/protocol.md §2), independent of the web framework: an adapter hands over
//! method, path segments, query pairs, content type and body, and sends back the
//! [`HttpResponse`].

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::actions::{self, Op};
use crate::app::App;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::jobs::{JOBS_STREAM, JobBinding, Jobs};
use crate::query::parse::QueryInput;
use crate::resource::action::ActionBinding;
use crate::resource::binding::Input;
use crate::throttle::retry_after_secs;

/// An HTTP request below the API prefix.
#[derive(Debug)]
pub struct HttpRequest {
    /// Upper case: `GET`, `POST`, …
    pub method: String,
    /// Decoded path segments below the prefix; a trailing empty segment (trailing slash) is ignored.
    pub segments: Vec<String>,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The request body.
    pub body: Bytes,
    /// The client's address ([`App::client_ip`]); `None` if the adapter does not know it. The
    /// anonymous principal is throttled per address.
    pub client: Option<std::net::IpAddr>,
}

/// What to answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// JSON, or `None` for an empty body (204).
    pub body: Option<Vec<u8>>,
    /// For 201 and 202: the `Location` of what was made.
    pub location: Option<String>,
    /// For 405: the methods that are allowed.
    pub allow: Option<&'static str>,
    /// For 429: `Retry-After`, in whole seconds (at least 1).
    pub retry_after: Option<u64>,
}

impl HttpResponse {
    /// The answer to a failed request: its status and `{"errors": [...]}`.
    pub fn error(error: &ApiError) -> Self {
        Self {
            status: error.status(),
            body: Some(
                serde_json::to_vec(&json!({ "errors": error.errors() })).unwrap_or_default(),
            ),
            location: None,
            allow: None,
            retry_after: None,
        }
    }
}

const COLLECTION_METHODS: &str = "GET, POST";
const OBJECT_METHODS: &str = "GET, PUT, PATCH, DELETE";
const POST_ONLY: &str = "POST";

/// 405 for a method other than `POST` on a job's or an action's path.
fn post_only(method: &str) -> Failure {
    (
        ApiError::MethodNotAllowed(Some(method.to_owned())),
        Some(POST_ONLY),
    )
}

/// Handles one API request (the principal is the one the adapter authenticated).
pub async fn handle(app: &App, principal: &Principal, req: HttpRequest) -> HttpResponse {
    // A signed-in principal's rate limit is shared by its sockets and its HTTP requests; the
    // anonymous principal's is its address's.
    if let Err(wait) = app.admit(principal, req.client) {
        return HttpResponse {
            retry_after: Some(retry_after_secs(wait)),
            ..HttpResponse::error(&ApiError::Throttled)
        };
    }
    match route(app, principal, req).await {
        Ok(response) => response,
        Err((error, allow)) => HttpResponse {
            allow,
            ..HttpResponse::error(&error)
        },
    }
}

type Failure = (ApiError, Option<&'static str>);

async fn route(
    app: &App,
    principal: &Principal,
    req: HttpRequest,
) -> Result<HttpResponse, Failure> {
    let mut segments: &[String] = &req.segments;
    if let [rest @ .., last] = segments
        && last.is_empty()
    {
        segments = rest;
    }
    let method = req.method.as_str();
    if let [first, rest @ ..] = segments
        && first == JOBS_STREAM
    {
        return job_state(app, principal, method, rest).await;
    }
    let (stream, pk) = match segments {
        [stream] => (stream, None),
        [stream, pk] if !pk.is_empty() => (stream, Some(pk.clone())),
        [stream, pk, name]
            if !pk.is_empty()
                && let Some(action) = app.registry().action(stream, name)
                && action.detail() =>
        {
            if method != "POST" {
                return Err(post_only(method));
            }
            return run_action(app, principal, action, Some(Input::Text(pk.clone())), &req).await;
        }
        [stream, pk, job] if !pk.is_empty() && method == "POST" => {
            let binding = app
                .registry()
                .get(stream)
                .ok_or_else(|| (ApiError::UnknownStream(stream.clone()), None))?;
            return match app.jobs().declared(binding.meta().stream, job) {
                Some(job) if job.on_object() => {
                    start_job(app, principal, job, Some(Input::Text(pk.clone())), &req).await
                }
                _ => Err((ApiError::NotFound, None)),
            };
        }
        // A job's path takes only POST.
        [stream, pk, job]
            if !pk.is_empty()
                && app
                    .jobs()
                    .declared(stream, job)
                    .is_some_and(|j| j.on_object()) =>
        {
            return Err(post_only(method));
        }
        _ => return Err((ApiError::NotFound, None)),
    };
    let binding = app
        .registry()
        .get(stream)
        .ok_or_else(|| (ApiError::UnknownStream(stream.clone()), None))?;
    if let Some(name) = &pk
        && let Some(action) = app.registry().action(binding.meta().stream, name)
        && !action.detail()
    {
        if method != "POST" {
            // An action's path takes only POST.
            return Err(post_only(method));
        }
        return run_action(app, principal, action, None, &req).await;
    }
    if let Some(name) = &pk
        && let Some(job) = app.jobs().declared(binding.meta().stream, name)
        && !job.on_object()
    {
        if method != "POST" {
            // A job's path takes only POST.
            return Err(post_only(method));
        }
        return start_job(app, principal, job, None, &req).await;
    }
    let op = match (method, pk) {
        ("GET", None) => list_op(&req.query).map_err(|e| (e, None))?,
        ("POST", None) => Op::Create {
            data: body_object(&req).map_err(|e| (e, None))?,
        },
        ("GET", Some(pk)) => Op::Retrieve {
            pk: Input::Text(pk),
        },
        ("PUT" | "PATCH", Some(pk)) => Op::Update {
            pk: Input::Text(pk),
            data: body_object(&req).map_err(|e| (e, None))?,
            partial: method == "PATCH",
        },
        ("DELETE", Some(pk)) => Op::Delete {
            pk: Input::Text(pk),
        },
        (other, pk) => {
            let allow = if pk.is_some() {
                OBJECT_METHODS
            } else {
                COLLECTION_METHODS
            };
            return Err((
                ApiError::MethodNotAllowed(Some(other.to_owned())),
                Some(allow),
            ));
        }
    };
    let outcome = actions::execute(app, principal, binding, op)
        .await
        .map_err(|e| (e, None))?;
    let location = outcome.created_pk.map(|pk| {
        format!(
            "{}/{}/{}/",
            app.config().http_prefix.trim_end_matches('/'),
            binding.meta().stream,
            encode_segment(&pk)
        )
    });
    Ok(HttpResponse {
        status: outcome.status,
        body: outcome.data.map(|d| d.get().as_bytes().to_vec()),
        location,
        allow: None,
        retry_after: None,
    })
}

/// The arguments of a job or an action: the body's object; an empty body is no arguments.
fn args_of(req: &HttpRequest) -> Result<Map<String, Value>, Failure> {
    if req.body.iter().all(u8::is_ascii_whitespace) && req.content_type.is_none() {
        Ok(Map::new())
    } else {
        body_object(req).map_err(|e| (e, None))
    }
}

/// 200 with what the custom action returned.
async fn run_action(
    app: &App,
    principal: &Principal,
    action: &'static dyn ActionBinding,
    pk: Option<Input>,
    req: &HttpRequest,
) -> Result<HttpResponse, Failure> {
    let args = args_of(req)?;
    let outcome = actions::custom(app, principal, action, pk, Value::Object(args))
        .await
        .map_err(|e| (e, None))?;
    Ok(HttpResponse {
        status: outcome.status,
        body: outcome.data.map(|d| d.get().as_bytes().to_vec()),
        location: None,
        allow: None,
        retry_after: None,
    })
}

/// 202 Accepted with `Location` to the job's state.
async fn start_job(
    app: &App,
    principal: &Principal,
    job: &'static dyn JobBinding,
    pk: Option<Input>,
    req: &HttpRequest,
) -> Result<HttpResponse, Failure> {
    // A job without arguments may be started with an empty body.
    let args = args_of(req)?;
    let state = app
        .jobs()
        .start(principal, job, pk, Value::Object(args))
        .await
        .map_err(|e| (e, None))?;
    let location = serde_json::from_str::<Value>(state.get())
        .ok()
        .and_then(|v| v["resource_uri"].as_str().map(str::to_owned));
    Ok(HttpResponse {
        status: 202,
        body: Some(state.get().as_bytes().to_vec()),
        location,
        allow: None,
        retry_after: None,
    })
}

const JOB_METHODS: &str = "GET, DELETE";

/// `/jobs/<id>/` (GET: state, or 303 to the result once finished; DELETE: cancel) and
/// `/jobs/<id>/result/`.
async fn job_state(
    app: &App,
    principal: &Principal,
    method: &str,
    rest: &[String],
) -> Result<HttpResponse, Failure> {
    let json = |status: u16, value: &Value, location: Option<String>| HttpResponse {
        status,
        body: Some(serde_json::to_vec(value).unwrap_or_default()),
        location,
        allow: None,
        retry_after: None,
    };
    match (method, rest) {
        ("GET", [id]) => {
            let record = app
                .jobs()
                .record(principal, id.clone())
                .await
                .map_err(|e| (e, None))?;
            let state = Value::Object(app.jobs().state_resource(&record));
            if record.state.is_finished() {
                let result = state["result_uri"].as_str().map(str::to_owned);
                Ok(json(303, &state, result))
            } else {
                Ok(json(200, &state, None))
            }
        }
        ("DELETE", [id]) => {
            app.jobs()
                .cancel(principal, id.clone())
                .await
                .map_err(|e| (e, None))?;
            let record = app
                .jobs()
                .record(principal, id.clone())
                .await
                .map_err(|e| (e, None))?;
            Ok(json(
                410,
                &Value::Object(app.jobs().state_resource(&record)),
                None,
            ))
        }
        ("GET", [id, result]) if result == "result" => {
            let record = app
                .jobs()
                .record(principal, id.clone())
                .await
                .map_err(|e| (e, None))?;
            let body = Jobs::result_resource(&record).map_err(|e| (e, None))?;
            Ok(json(200, &body, None))
        }
        (_, [_]) => Err((
            ApiError::MethodNotAllowed(Some(method.to_owned())),
            Some(JOB_METHODS),
        )),
        (_, [_, result]) if result == "result" => Err((
            ApiError::MethodNotAllowed(Some(method.to_owned())),
            Some("GET"),
        )),
        _ => Err((ApiError::NotFound, None)),
    }
}

/// The query parameters that are not conditions (PROTOCOL §3). `token` is the credential
/// (adapters take it out before; it is never a filter).
const RESERVED: &[&str] = &["limit", "offset", "after", "ordering", "format", "token"];

fn list_op(query: &[(String, String)]) -> Result<Op, ApiError> {
    let mut limit = None;
    let mut offset = None;
    let mut after = None;
    let mut input = QueryInput::default();
    for (key, value) in query {
        let parse = |v: &str| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "{}: must be an integer.",
                    Value::from(key.as_str())
                ))
            })
        };
        match key.as_str() {
            "limit" => limit = Some(parse(value)?),
            "offset" => offset = Some(parse(value)?),
            "after" => after = Some(Input::Text(value.clone())),
            "ordering" => input.ordering = Some(Input::Text(value.clone())),
            k if RESERVED.contains(&k) => {}
            _ => input.filter.push((key.clone(), Input::Text(value.clone()))),
        }
    }
    Ok(Op::List {
        query: input,
        limit,
        offset,
        after,
    })
}

fn body_object(req: &HttpRequest) -> Result<Map<String, Value>, ApiError> {
    let is_json = req.content_type.as_deref().is_some_and(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    match crate::json::from_slice(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::bad_request(format!("Invalid JSON: {e}"))),
    }
}

/// Percent-encodes a path segment (a string primary key in a `Location`).
fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
