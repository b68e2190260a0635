//! The browser inspector: one self-contained page (`inspector.html`, embedded; no CDN, no build
//! step) served at [`rest_live_core::Config::inspector_path`], and what it shows about the app as
//! JSON at `<path>/meta`: every stream with its fields, group keys and actions, and the endpoints.
//! Off unless the path is set: it is a development tool.

use bytes::Bytes;
use rest_live_core::App;
use rest_live_core::binding::Binding;
use rest_live_core::jobs::JOBS_STREAM;
use serde_json::{Value, json};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, header};
use warp::{Filter, Reply};

const PAGE: &str = include_str!("inspector.html");

/// `GET <inspector_path>` (the page) and `GET <inspector_path>/meta` (the metadata).
pub fn route(app: &App) -> BoxedFilter<(warp::reply::Response,)> {
    let Some(path) = app.config().inspector_path.clone() else {
        return crate::nothing();
    };
    let meta = Bytes::from(serde_json::to_vec(&metadata(app)).unwrap_or_default());
    let page = crate::path_prefix(&path)
        .and(warp::path::end())
        .and(warp::get())
        .map(|| {
            reply(
                Bytes::from_static(PAGE.as_bytes()),
                "text/html; charset=utf-8",
            )
        });
    let meta = crate::path_prefix(&path)
        .and(warp::path("meta"))
        .and(warp::path::end())
        .and(warp::get())
        .map(move || reply(meta.clone(), "application/json"));
    page.or(meta).unify().boxed()
}

fn reply(body: Bytes, content_type: &'static str) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page runs scripts of its own only.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:",
        ),
    );
    response.into_response()
}

/// What the page shows: the endpoints and every stream, from the registry.
pub fn metadata(app: &App) -> Value {
    let config = app.config();
    let streams: Vec<Value> = app.registry().iter().map(|b| stream(app, b)).collect();
    json!({
        "ws_path": config.ws_path,
        "drl_path": config.drl_path,
        "http_prefix": config.http_prefix,
        "openapi_path": config.openapi_path,
        "auth": {
            "authenticates": app.authenticates(),
            "anonymous": app.allows_anonymous(),
            "cookie": config.auth_cookie,
            "query_parameter": "token",
        },
        "streams": streams,
    })
}

fn stream(app: &App, binding: &'static dyn Binding) -> Value {
    let meta = binding.meta();
    let jobs: Vec<Value> = app
        .registry()
        .jobs()
        .iter()
        .filter(|j| j.resource().meta().stream == meta.stream)
        .map(|j| json!({"name": j.name(), "on_object": j.on_object()}))
        .collect();
    let mut actions: Vec<&str> = if meta.stream == JOBS_STREAM {
        // Job states are read and followed, never written by clients.
        vec!["retrieve"]
    } else {
        vec!["list", "retrieve", "create", "update", "patch", "delete"]
    };
    if meta.instance_subscribable {
        actions.extend(["subscribe_instance", "unsubscribe_instance"]);
    }
    if !meta.group_keys.is_empty() {
        actions.extend(["subscribe", "unsubscribe"]);
    }
    let fields: Vec<Value> = meta
        .fields
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "type": f.rust_type.split_whitespace().collect::<String>(),
                "read_only": f.read_only,
                "required": f.required,
                "filterable": f.filterable,
                "nullable": f.nullable,
                "max_length": f.max_length,
            })
        })
        .collect();
    json!({
        "stream": meta.stream,
        "label": meta.label,
        "pk": meta.pk,
        "fields": fields,
        "group_keys": meta.group_keys,
        "instance_subscribable": meta.instance_subscribable,
        "actions": actions,
        "jobs": jobs,
    })
}
