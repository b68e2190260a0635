//! The OpenAPI 3.1 document of the HTTP API (docs/protocol.md §2), generated from the registered
//! resources, so that the fields, filters, paths and statuses it states come from the one model
//! the macro built. Adapters serve it at [`crate::Config::openapi_path`].
//!
//! What it states, per resource: the object schema (read-only fields marked `readOnly`; every
//! field required in responses unless the resource's policy may hide some), the input schemas of
//! create / full update (required fields) and partial update, unknown fields refused
//! (`additionalProperties: false`), list filters and `limit`/`offset` as query parameters, the
//! page `{count, results, limit, offset}`, `Location` on 201, and every error status with its
//! `{"errors": [...]}` body. Jobs, when any are declared, get their start endpoints and the job
//! state resource ([`job_paths`]).

use serde_json::{Map, Value, json};

use crate::app::App;
use crate::jobs::JOBS_STREAM;
use crate::resource::binding::Binding;
use crate::resource::{FieldMeta, Lookup, ResourceMeta};

/// The document for `app`, as JSON.
pub fn document(app: &App) -> Value {
    let config = app.config();
    let prefix = config.http_prefix.trim_end_matches('/').to_owned();
    let mut doc = Document {
        prefix,
        authenticates: app.authenticates(),
        throttles: crate::throttle::limits_http(config),
        paths: Map::new(),
        schemas: Map::new(),
    };
    doc.schemas.insert("Errors".into(), errors_schema());
    let mut names: Vec<String> = Vec::new();
    let mut schema_of_stream: Map<String, Value> = Map::new();
    for binding in app.registry().iter() {
        let meta = binding.meta();
        // The job state stream is served by the job endpoints, below.
        if meta.stream == JOBS_STREAM {
            continue;
        }
        let mut name = short_type_name(meta.type_name).to_owned();
        if names.contains(&name) {
            name = format!("{name}_{}", meta.stream);
        }
        names.push(name.clone());
        schema_of_stream.insert(meta.stream.into(), Value::from(name.clone()));
        doc.resource(binding, &name);
    }
    job_paths(app, &mut doc);
    action_paths(app, &mut doc, &schema_of_stream);

    let mut components = json!({
        "schemas": doc.schemas,
        "responses": error_responses(),
    });
    let mut out = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rest-live API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of a rest-live application: every resource over REST. \
                The same objects are live over the WebSocket protocol, which OpenAPI does not \
                describe: see docs/protocol.md in the rest-live repository.",
        },
        "paths": doc.paths,
    });
    if doc.authenticates {
        components["securitySchemes"] = json!({
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": config.auth_cookie},
            "token": {"type": "apiKey", "in": "query", "name": "token"},
        });
        let mut security = vec![
            json!({"bearer": []}),
            json!({"cookie": []}),
            json!({"token": []}),
        ];
        if app.allows_anonymous() {
            security.push(json!({}));
        }
        out["security"] = Value::from(security);
    }
    out["components"] = components;
    out
}

struct Document {
    prefix: String,
    authenticates: bool,
    throttles: bool,
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
}

impl Document {
    /// Adds `operation` as the `POST` of a job's or an action's path: `<stream>/{pk}/<name>/`
    /// (with the pk as a path parameter) on one object, else `<stream>/<name>/`.
    fn post_on(&mut self, meta: &ResourceMeta, name: &str, on_object: bool, mut operation: Value) {
        let stream = meta.stream;
        let path = if on_object {
            let pk = meta
                .field(meta.pk)
                .map_or(json!({}), |f| non_null(type_schema(f.rust_type)));
            operation["parameters"] =
                json!([{"name": meta.pk, "in": "path", "required": true, "schema": pk}]);
            format!("{}/{stream}/{{{}}}/{name}/", self.prefix, meta.pk)
        } else {
            format!("{}/{stream}/{name}/", self.prefix)
        };
        self.paths.insert(path, json!({"post": operation}));
    }

    /// References to the error responses an operation may give, besides `statuses`.
    fn errors(&self, statuses: &[u16]) -> Map<String, Value> {
        let mut all: Vec<u16> = statuses.to_vec();
        all.push(403);
        all.push(500);
        if self.authenticates {
            all.push(401);
        }
        if self.throttles {
            all.push(429);
        }
        all.sort_unstable();
        all.dedup();
        all.into_iter()
            .map(|s| {
                let name = error_name(s);
                (
                    s.to_string(),
                    json!({"$ref": format!("#/components/responses/{name}")}),
                )
            })
            .collect()
    }

    fn resource(&mut self, binding: &'static dyn Binding, name: &str) {
        let meta = binding.meta();
        let stream = meta.stream;
        let object_ref = json!({"$ref": format!("#/components/schemas/{name}")});
        let input_ref = json!({"$ref": format!("#/components/schemas/{name}Input")});
        let patch_ref = json!({"$ref": format!("#/components/schemas/{name}Patch")});
        let page_ref = json!({"$ref": format!("#/components/schemas/{name}Page")});
        // A policy that restricts may also hide fields (`Permissions::present`): then only the
        // pk is certain to be in a response.
        self.schemas
            .insert(name.into(), object_schema(meta, binding.restricted()));
        self.schemas
            .insert(format!("{name}Input"), input_schema(meta, false));
        self.schemas
            .insert(format!("{name}Patch"), input_schema(meta, true));
        self.schemas.insert(
            format!("{name}Page"),
            json!({
                "type": "object",
                "properties": {
                    "count": {"type": "integer", "minimum": 0, "description": "Objects matching the filters, on every page."},
                    "results": {"type": "array", "items": object_ref},
                    "limit": {"type": "integer", "minimum": 1},
                    "offset": {"type": "integer", "minimum": 0},
                    "next": {"type": ["string", "null"], "description": "The cursor of the next page (pass it as `after`); null on the last page."},
                },
                "required": ["count", "results", "limit", "offset", "next"],
                "additionalProperties": false,
            }),
        );

        let pk_field = meta.field(meta.pk);
        let pk_schema = pk_field.map_or(json!({}), |f| non_null(type_schema(f.rust_type)));
        let pk_param = json!({
            "name": meta.pk, "in": "path", "required": true, "schema": pk_schema,
            "description": format!("The primary key ({}).", meta.pk),
        });
        let json_body = |schema: &Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
        let ok = |description: &str, schema: &Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
        let with = |mut map: Map<String, Value>, status: &str, response: Value| {
            map.insert(status.into(), response);
            Value::Object(map)
        };
        let op = |id: &str, summary: String, responses: Value| {
            json!({
                "operationId": format!("{id}_{stream}"),
                "summary": summary,
                "tags": [stream],
                "responses": responses,
            })
        };
        let object_link = |operation: &str| {
            json!({
                "operationId": format!("{operation}_{stream}"),
                "parameters": {meta.pk: format!("$response.body#/{}", meta.pk)},
            })
        };

        let mut list = op(
            "list",
            format!(
                "List {stream}: filtered, ordered (by primary key unless `ordering` says otherwise) and paginated"
            ),
            with(
                self.errors(&[400]),
                "200",
                ok("A page of objects.", &page_ref),
            ),
        );
        list["parameters"] = Value::from(list_parameters(meta));

        let mut created = ok("Created: the object as stored.", &object_ref);
        created["headers"] = json!({"Location": {
            "description": "The new object's URL.",
            "schema": {"type": "string"},
            "required": true,
        }});
        created["links"] = json!({
            "retrieve": object_link("retrieve"),
            "update": object_link("update"),
            "partial_update": object_link("partial_update"),
            "destroy": object_link("destroy"),
        });
        let mut create = op(
            "create",
            format!("Create one of {stream}"),
            with(self.errors(&[400, 409, 413, 415]), "201", created),
        );
        create["requestBody"] = json_body(&input_ref);

        let retrieve = op(
            "retrieve",
            format!("Retrieve one of {stream}"),
            with(
                self.errors(&[400, 404]),
                "200",
                ok("The object.", &object_ref),
            ),
        );
        let mut update = op(
            "update",
            format!("Replace one of {stream} (every required field)"),
            with(
                self.errors(&[400, 404, 409, 413, 415]),
                "200",
                ok("The object as stored.", &object_ref),
            ),
        );
        update["requestBody"] = json_body(&input_ref);
        let mut patch = op(
            "partial_update",
            format!("Change some fields of one of {stream}"),
            with(
                self.errors(&[400, 404, 409, 413, 415]),
                "200",
                ok("The object as stored.", &object_ref),
            ),
        );
        patch["requestBody"] = json_body(&patch_ref);
        let destroy = op(
            "destroy",
            format!("Delete one of {stream}"),
            with(
                self.errors(&[400, 404, 409]),
                "204",
                json!({"description": "Deleted."}),
            ),
        );

        let base = format!("{}/{stream}/", self.prefix);
        self.paths
            .insert(base.clone(), json!({"get": list, "post": create}));
        self.paths.insert(
            format!("{base}{{{}}}/", meta.pk),
            json!({
                "parameters": [pk_param],
                "get": retrieve,
                "put": update,
                "patch": patch,
                "delete": destroy,
            }),
        );
    }
}

/// Each custom action (docs/protocol.md §5): `POST` on its path, its arguments as the body (their
/// traced schema, or none for an action without arguments), 200 with its result (the resource's
/// schema when it returns objects of its resource), and its doc comment as the description.
fn action_paths(app: &App, doc: &mut Document, schema_of_stream: &Map<String, Value>) {
    use crate::resource::action::Returns;
    for action in app.registry().custom_actions() {
        let meta = action.resource().meta();
        let stream = meta.stream;
        let name = action.name();
        let object = schema_of_stream
            .get(stream)
            .and_then(Value::as_str)
            .map(|n| json!({"$ref": format!("#/components/schemas/{n}")}))
            .unwrap_or_else(|| json!({"type": "object"}));
        let result = match action.returns() {
            Returns::Object => object,
            Returns::Objects => json!({"type": "array", "items": object}),
            Returns::Value(schema) => schema.unwrap_or_else(|| json!({})),
        };
        let statuses: &[u16] = if action.detail() {
            &[400, 403, 404, 409, 413, 415]
        } else {
            &[400, 403, 409, 413, 415]
        };
        let mut responses = doc.errors(statuses);
        responses.insert(
            "200".into(),
            json!({
                "description": "What the action returns.",
                "content": {"application/json": {"schema": result}},
            }),
        );
        let kind = if action.detail() {
            "one object"
        } else {
            "the collection"
        };
        let description = if action.description().is_empty() {
            format!("The custom action {name} of {stream}, on {kind}.")
        } else {
            format!(
                "{}\n\nA custom action of {stream}, on {kind}.",
                action.description()
            )
        };
        let mut operation = json!({
            "operationId": format!("{name}_{stream}"),
            "summary": action
                .description()
                .lines()
                .next()
                .filter(|l| !l.is_empty())
                .map_or_else(|| format!("{name} ({stream})"), str::to_owned),
            "description": description,
            "tags": [stream],
            "responses": responses,
        });
        operation["requestBody"] = match action.args_schema() {
            Some(schema) => {
                json!({"required": true, "content": {"application/json": {"schema": schema}}})
            }
            // No arguments: an empty body, or `{}`.
            None => json!({"required": false, "content": {"application/json": {"schema": {
                "type": "object", "description": "No arguments: send nothing, or {}."}}}}),
        };
        doc.post_on(meta, name, action.detail(), operation);
    }
}

/// Where jobs appear in the document: for each declared job, its start endpoint (202 with the
/// job's state resource and `Location`), and, once any job is declared, the job state resource
/// and its result (docs/protocol.md §2 "Jobs"). Arguments are free JSON: a job's `Args` type does not
/// describe itself to the runtime.
fn job_paths(app: &App, doc: &mut Document) {
    let jobs = app.registry().jobs();
    if jobs.is_empty() {
        return;
    }
    doc.schemas.insert(
        "JobState".into(),
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "state": {"enum": ["PENDING", "STARTED", "SUCCESS", "FAILURE", "CANCELLED"]},
                "resource_uri": {"type": "string"},
                "result_uri": {"type": "string"},
            },
            "required": ["id", "state", "resource_uri"],
        }),
    );
    let state_ref = json!({"$ref": "#/components/schemas/JobState"});
    let location = json!({"Location": {"schema": {"type": "string"}, "required": true}});
    for job in jobs {
        let meta = job.resource().meta();
        let stream = meta.stream;
        let name = job.name();
        let mut responses = doc.errors(&[400, 404, 413, 415]);
        responses.insert(
            "202".into(),
            json!({
                "description": "Queued: the job's state resource.",
                "headers": location,
                "content": {"application/json": {"schema": state_ref}},
            }),
        );
        let operation = json!({
            "operationId": format!("{name}_{stream}"),
            "summary": format!("Start the job {name} of {stream}"),
            "tags": [stream],
            // A job without arguments may be started with an empty body.
            "requestBody": {"required": false, "content": {"application/json": {"schema": {
                "type": "object",
                "description": "The job's arguments.",
            }}}},
            "responses": responses,
        });
        doc.post_on(meta, name, job.on_object(), operation);
    }
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let mut get = doc.errors(&[404]);
    get.insert(
        "200".into(),
        json!({"description": "Pending or running.", "content": {"application/json": {"schema": state_ref}}}),
    );
    get.insert(
        "303".into(),
        json!({"description": "Finished: see the result.", "headers": location,
               "content": {"application/json": {"schema": state_ref}}}),
    );
    let mut cancel = doc.errors(&[400, 404]);
    cancel.insert(
        "410".into(),
        json!({"description": "Cancelled: the job will not report SUCCESS.",
               "content": {"application/json": {"schema": state_ref}}}),
    );
    let mut result = doc.errors(&[404]);
    result.insert(
        "200".into(),
        json!({"description": "The result (SUCCESS) or the error (FAILURE).", "content": {"application/json": {"schema": {
            "oneOf": [
                {"type": "object", "properties": {"result": {}}, "required": ["result"]},
                {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
            ],
        }}}}),
    );
    let base = format!("{}/{JOBS_STREAM}/{{id}}/", doc.prefix);
    doc.paths.insert(
        base.clone(),
        json!({
            "parameters": id,
            "get": {"operationId": "retrieve_job", "tags": [JOBS_STREAM], "responses": get},
            "delete": {"operationId": "cancel_job", "tags": [JOBS_STREAM], "responses": cancel},
        }),
    );
    doc.paths.insert(
        format!("{base}result/"),
        json!({
            "parameters": id,
            "get": {"operationId": "job_result", "tags": [JOBS_STREAM], "responses": result},
        }),
    );
}

fn list_parameters(meta: &ResourceMeta) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "limit", "in": "query", "required": false,
               "description": "Page size; larger values are clamped to the maximum.",
               "schema": {"type": "integer", "minimum": 1, "maximum": i64::MAX}}),
        json!({"name": "offset", "in": "query", "required": false,
               "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}}),
    ];
    params.push(json!({"name": "after", "in": "query", "required": false,
        "description": "The `next` cursor of the page before: continues the same filter and ordering (not with `offset`).",
        "schema": {"type": "string"}}));
    let orderable: Vec<&str> = meta
        .fields
        .iter()
        .filter(|f| f.orderable)
        .map(|f| f.name)
        .collect();
    params.push(json!({"name": "ordering", "in": "query", "required": false,
        "description": format!(
            "Comma-separated fields to order by, each optionally prefixed `-` (descending); the primary key breaks ties. Orderable: {}.",
            orderable.join(", ")
        ),
        "schema": {"type": "string"}}));
    for field in meta.fields.iter().filter(|f| f.filterable) {
        for lookup in field.lookups {
            let name = match lookup {
                Lookup::Exact => field.name.to_owned(),
                other => format!("{}__{}", field.name, other.name()),
            };
            let value = non_null(type_schema(field.rust_type));
            let (schema, what) = match lookup {
                Lookup::In => (
                    json!({"type": "string"}),
                    "is one of these comma-separated values",
                ),
                Lookup::IsNull => (
                    json!({"type": "boolean"}),
                    "is null (`true`) or not (`false`)",
                ),
                Lookup::Exact => (value, "equals this value"),
                Lookup::Ne => (value, "does not equal this value"),
                Lookup::Lt => (value, "is less than this value"),
                Lookup::Lte => (value, "is at most this value"),
                Lookup::Gt => (value, "is greater than this value"),
                Lookup::Gte => (value, "is at least this value"),
                Lookup::Contains => (value, "contains this text"),
                Lookup::StartsWith => (value, "starts with this text"),
                Lookup::IContains => (value, "contains this text, ignoring case"),
                Lookup::IStartsWith => (value, "starts with this text, ignoring case"),
                Lookup::IExact => (value, "equals this text, ignoring case"),
            };
            params.push(json!({
                "name": name, "in": "query", "required": false,
                "description": format!("Only objects whose {} {what}.", field.name),
                "schema": schema,
            }));
        }
    }
    params
}

fn object_schema(meta: &ResourceMeta, restricted: bool) -> Value {
    let properties: Map<String, Value> = meta
        .fields
        .iter()
        .map(|f| {
            let mut schema = field_schema(f);
            if f.read_only {
                schema["readOnly"] = Value::Bool(true);
            }
            (f.name.to_owned(), schema)
        })
        .collect();
    let required: Vec<&str> = if restricted {
        vec![meta.pk]
    } else {
        meta.fields.iter().map(|f| f.name).collect()
    };
    json!({
        "type": "object",
        "title": meta.label,
        "properties": properties,
        "required": required,
    })
}

/// Input of create and full update (`partial == false`: required fields must be present), or of
/// partial update. Read-only fields are accepted and ignored, so any value of them is valid.
fn input_schema(meta: &ResourceMeta, partial: bool) -> Value {
    let properties: Map<String, Value> = meta
        .fields
        .iter()
        .map(|f| {
            let schema = if f.read_only {
                json!({"readOnly": true, "description": "Read-only: ignored in input."})
            } else {
                let mut schema = field_schema(f);
                if is_string(&schema) {
                    // The runtime refuses NUL in text (PostgreSQL cannot store it).
                    schema["pattern"] = Value::from("^[^\\u0000]*$");
                }
                schema
            };
            (f.name.to_owned(), schema)
        })
        .collect();
    let required: Vec<&str> = if partial {
        Vec::new()
    } else {
        meta.fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect()
    };
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn field_schema(field: &FieldMeta) -> Value {
    let mut schema = type_schema(field.rust_type);
    if let Some(n) = field.max_length {
        schema["maxLength"] = Value::from(n);
    }
    schema
}

fn is_string(schema: &Value) -> bool {
    match &schema["type"] {
        Value::String(t) => t == "string",
        Value::Array(ts) => ts.iter().any(|t| t == "string"),
        _ => false,
    }
}

/// The JSON Schema of a Rust field type as serde writes it (`Option<T>` adds `null`). Types it
/// does not know are left open, with their Rust name as the description.
pub fn type_schema(rust_type: &str) -> Value {
    let t: String = rust_type.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(inner) = generic_arg(&t, "Option") {
        let mut schema = type_schema(inner);
        if let Some(Value::String(ty)) = schema.get("type").cloned() {
            schema["type"] = json!([ty, "null"]);
        }
        return schema;
    }
    if let Some(inner) = generic_arg(&t, "Vec") {
        return json!({"type": "array", "items": type_schema(inner)});
    }
    let base = t.split('<').next().unwrap_or(&t);
    let base = base
        .rsplit("::")
        .next()
        .unwrap_or(base)
        .trim_start_matches('&');
    let int = |min: i128, max: i128| json!({"type": "integer", "minimum": min, "maximum": max});
    match base {
        "i8" => int(i8::MIN.into(), i8::MAX.into()),
        "i16" => int(i16::MIN.into(), i16::MAX.into()),
        "i32" => int(i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => int(i64::MIN.into(), i64::MAX.into()),
        "u8" => int(0, u8::MAX.into()),
        "u16" => int(0, u16::MAX.into()),
        "u32" => int(0, u32::MAX.into()),
        "u64" | "usize" => int(0, u64::MAX.into()),
        "f32" | "f64" => json!({"type": "number"}),
        "bool" => json!({"type": "boolean"}),
        "String" | "str" | "char" => json!({"type": "string"}),
        "Uuid" => json!({"type": "string", "format": "uuid"}),
        "DateTime" => json!({"type": "string", "format": "date-time"}),
        "NaiveDate" => json!({"type": "string", "format": "date"}),
        "Value" => json!({}),
        _ => json!({"description": format!("Rust type {t}")}),
    }
}

/// `Name<Inner>` → `Inner`, for a type whose last path segment is `name`.
fn generic_arg<'a>(t: &'a str, name: &str) -> Option<&'a str> {
    let open = t.find('<')?;
    let head = &t[..open];
    let last = head.rsplit("::").next().unwrap_or(head);
    (last == name && t.ends_with('>')).then(|| &t[open + 1..t.len() - 1])
}

/// The schema without `null` (path and query values are never null).
fn non_null(mut schema: Value) -> Value {
    if let Some(Value::Array(types)) = schema.get("type") {
        let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = match types.as_slice() {
            [one] => one.clone(),
            _ => Value::from(types),
        };
    }
    schema
}

fn short_type_name(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

fn errors_schema() -> Value {
    json!({
        "type": "object",
        "description": "An error: messages, or for a validation failure one object of field → messages.",
        "properties": {
            "errors": {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [
                    {"type": "string"},
                    {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                ]},
            },
        },
        "required": ["errors"],
        "additionalProperties": false,
    })
}

fn error_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        429 => "Throttled",
        _ => "InternalError",
    }
}

fn error_responses() -> Value {
    let described = [
        (
            400,
            "Malformed request, bad argument types, or validation failure.",
        ),
        (401, "Missing or invalid credentials."),
        (403, "The principal may not perform this action."),
        (404, "No such object, or one the principal may not read."),
        (409, "The write conflicts with a constraint."),
        (413, "The body is larger than the limit."),
        (415, "The body is not application/json."),
        (429, "Too many requests."),
        (500, "Unexpected failure; details are in the server log."),
    ];
    let responses: Map<String, Value> = described
        .into_iter()
        .map(|(status, description)| {
            let mut response = json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
            });
            if status == 429 {
                response["headers"] = json!({"Retry-After": {
                    "description": "Seconds until the request would be admitted.",
                    "required": true,
                    "schema": {"type": "integer", "minimum": 1},
                }});
            }
            (error_name(status).to_owned(), response)
        })
        .collect();
    Value::Object(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_map_to_json_schema() {
        assert_eq!(type_schema("String"), json!({"type": "string"}));
        assert_eq!(
            type_schema("Option < String >"),
            json!({"type": ["string", "null"]})
        );
        assert_eq!(type_schema("bool"), json!({"type": "boolean"}));
        assert_eq!(
            type_schema("std::option::Option<i32>")["type"],
            json!(["integer", "null"])
        );
        assert_eq!(type_schema("Vec<f64>")["items"], json!({"type": "number"}));
        assert_eq!(type_schema("serde_json::Value"), json!({}));
        assert!(type_schema("MyEnum")["description"].is_string());
    }
}
