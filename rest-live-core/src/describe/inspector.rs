//! What the browser inspector shows about an app (served by adapters as JSON at
//! `<inspector_path>/meta`): every stream with its fields (their lookups and whether they order),
//! group keys, default order and actions (custom actions with their descriptions and arguments),
//! whether it takes live queries, the endpoints, whether a credential is required, and the stream
//! that jobs are followed on.

use serde_json::{Value, json};

use crate::app::App;
use crate::resource::action::ActionBinding;
use crate::resource::binding::Binding;

/// What the page shows: the endpoints and every stream, from the registry.
pub fn metadata(app: &App) -> Value {
    let config = app.config();
    let streams: Vec<Value> = app.registry().iter().map(|b| stream(app, b)).collect();
    json!({
        "ws_path": config.ws_path,
        "drl_path": config.drl_path,
        "http_prefix": config.http_prefix,
        "openapi_path": config.openapi_path,
        // Where a job's 202 reply is followed (`subscribe_instance` by its id).
        "jobs_stream": crate::jobs::JOBS_STREAM,
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
    let mut actions: Vec<&str> = if binding.collection().is_some() {
        vec!["list", "retrieve", "create", "update", "patch", "delete"]
    } else {
        // Job states are read and followed, never written by clients.
        vec!["retrieve"]
    };
    if meta.instance_subscribable {
        actions.extend(["subscribe_instance", "unsubscribe_instance"]);
    }
    // `subscribe` follows a group, or (on every collection) keeps a live query's view.
    let live_queries = binding.collection().is_some();
    if !meta.group_keys.is_empty() || live_queries {
        actions.extend(["subscribe", "unsubscribe"]);
    }
    // Custom actions (`#[actions]`), in the registry's order: called like the built-in ones, with
    // `pk` where `detail`, and `data` as `args` describes it (`null`: it takes none).
    let custom: Vec<&'static dyn ActionBinding> = app
        .registry()
        .custom_actions()
        .filter(|a| a.resource().meta().stream == meta.stream)
        .collect();
    actions.extend(custom.iter().map(|a| a.name()));
    let custom_actions: Vec<Value> = custom
        .iter()
        .map(|a| {
            json!({
                "name": a.name(),
                "detail": a.detail(),
                "description": a.description(),
                "args": a.args_schema(),
            })
        })
        .collect();
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
                "lookups": f.lookups.iter().map(|l| l.name()).collect::<Vec<_>>(),
                "orderable": f.orderable,
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
        "ordering": meta.ordering,
        "live_queries": live_queries,
        "actions": actions,
        "custom_actions": custom_actions,
        "jobs": jobs,
    })
}
