//! Issue 4, acceptance: who may see what. Authentication (401), action-level refusals (403),
//! read scopes (404, never 403: existence does not leak), events filtered per audience,
//! per-principal output (`owner` for admins only), revocation (4003), logout, Origin checks and
//! per-principal throttling (429), end to end over HTTP and WebSocket.
//!
//! The to-do example with demo users: alice and bob (users) own their lists and the tasks in
//! them; carol (admin) sees everything, `owner` included. The `notices` resource below exists only
//! in this test binary: it has the action-level refusals the example does not.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::models;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use rest_live::prelude::*;
use rest_live::testing::{
    Closed, HttpClient, HttpResponse, Method, Received, TestServer, WsClient,
};
use rest_live::{AppBuilder, TokenStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

const QUIET: Duration = Duration::from_millis(300);
/// A pk (and list id) that never exists.
const MISSING: i64 = 987_654;
const NOT_FOUND: &str = "Not found";
const FOREIGN_LIST: &str = "foreign key constraint violated: list_id";
const FORBIDDEN: &str = "You do not have permission to perform this action.";
const NO_CREDENTIALS: &str = "Authentication credentials were not provided.";
const INVALID_TOKEN: &str = "Invalid token.";
const THROTTLED: &str = "Request was throttled.";

// ---------------------------------------------------------------------------------------------
// A resource with action-level refusals (only in this test binary)
// ---------------------------------------------------------------------------------------------

const NOTICES_SQLITE: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/permissions-migrations/sqlite");
const NOTICES_POSTGRES: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/permissions-migrations/postgres");

diesel::table! {
    notices (id) {
        id -> Integer,
        body -> Text,
        author -> Nullable<Text>,
    }
}

/// A notice: everyone reads them; signed-in principals post and subscribe; only admins delete;
/// only the author (or an admin) edits one.
#[resource(stream = "notices", hooks, permissions = NoticePolicy)]
#[subscribable]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[diesel(table_name = notices)]
pub struct Notice {
    #[resource(read_only)]
    pub id: i32,
    #[resource(max_length = 200)]
    pub body: String,
    /// Set from the principal on create.
    #[resource(read_only, filter)]
    #[serde(default)]
    pub author: Option<String>,
}

pub struct NoticePolicy;

impl Permissions<Notice> for NoticePolicy {
    fn allows(principal: &Principal, action: Action) -> bool {
        match action {
            Action::Create | Action::Subscribe => !principal.is_anonymous(),
            Action::Delete => principal.has_role("admin"),
            Action::List | Action::Retrieve | Action::Update => true,
            Action::Custom(_) => true,
        }
    }

    fn can_write(principal: &Principal, object: &Map<String, Value>, action: Action) -> bool {
        let author = object.get("author").unwrap_or(&Value::Null);
        principal.has_role("admin")
            || action == Action::Create
            || (!principal.is_anonymous() && *author == json!(principal.id))
    }
}

impl Hooks for Notice {
    fn before_save(&mut self, tx: &mut Tx<'_>, old: Option<&Self>) -> Result<(), ApiError> {
        self.author = match old {
            Some(old) => old.author.clone(),
            None => tx.principal().id.clone(),
        };
        Ok(())
    }
}

/// The example with its demo users, plus the `notices` table (registered in every app of this
/// binary, so every app gets its migrations).
fn users_app(tokens: Arc<TokenStore>) -> AppBuilder {
    models::builder_with_users(tokens)
        .sqlite_migrations(NOTICES_SQLITE)
        .postgres_migrations(NOTICES_POSTGRES)
}

/// Unthrottled: the matrices make hundreds of requests per principal within seconds (the
/// throttles have their own tests, below and in tests/throttle.rs).
async fn users_server() -> TestServer {
    TestServer::start(users_app(models::demo_tokens()).throttle(false)).await
}

// ---------------------------------------------------------------------------------------------
// Principals, requests, replies
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// No credential.
    Anonymous,
    /// A token nobody issued.
    Forged,
    Alice,
    Bob,
    /// Admin.
    Carol,
}

impl Who {
    fn token(self) -> Option<&'static str> {
        match self {
            Who::Anonymous => None,
            Who::Forged => Some("forged-token"),
            Who::Alice => Some("alice-token"),
            Who::Bob => Some("bob-token"),
            Who::Carol => Some("carol-token"),
        }
    }

    /// The principal id as the `owner` field stores it.
    fn id(self) -> Value {
        match self {
            Who::Alice => json!("alice"),
            Who::Bob => json!("bob"),
            Who::Carol => json!("carol"),
            Who::Anonymous | Who::Forged => Value::Null,
        }
    }

    fn is_admin(self) -> bool {
        self == Who::Carol
    }

    /// Whose objects count as "other's" in the matrix.
    fn other(self) -> Who {
        match self {
            Who::Alice => Who::Bob,
            _ => Who::Alice,
        }
    }

    /// An HTTP client of this principal: its bearer token, none for anonymous.
    fn http(self, server: &TestServer) -> HttpClient {
        server.client().with_token(self.token())
    }

    /// A socket of this principal (anonymous: without a credential).
    async fn ws(self, server: &TestServer) -> WsClient {
        match self.token() {
            Some(token) => server.ws_as(token).await,
            None => server.ws().await,
        }
    }
}

/// A status and a body; WebSocket replies are normalized to the HTTP shape (`data` on success,
/// `{"errors": [...]}` on failure), so that one assertion holds both transports.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
}

impl From<HttpResponse> for Reply {
    fn from(response: HttpResponse) -> Self {
        Self {
            status: response.status,
            body: response.json(),
        }
    }
}

/// `action` on `stream` over the socket (`args` may carry the request_id; else a fresh one), its
/// envelope checked, as a [`Reply`].
async fn ws_do(ws: &mut WsClient, stream: &str, action: &str, args: Value) -> Reply {
    let reply = ws.call(stream, action, args).await;
    reply.assert_envelope();
    Reply {
        status: reply.status,
        body: reply.body(),
    }
}

/// [`ws_do`] with this request_id (it tags a subscription's events).
async fn ws_tagged(
    ws: &mut WsClient,
    stream: &str,
    action: &str,
    request_id: &str,
    mut args: Value,
) -> Reply {
    args["request_id"] = json!(request_id);
    ws_do(ws, stream, action, args).await
}

/// Subscribes `ws` to the tasks of `list`, tagged `request_id`.
async fn subscribe_group(ws: &mut WsClient, request_id: &str, list: &Value) -> Reply {
    let group = json!({ "group": { "list_id": list } });
    ws_tagged(ws, "tasks", "subscribe", request_id, group).await
}

fn object(pairs: &[(&str, Value)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

/// The field a write changes: `text` for tasks, `name` for lists.
fn label_field(stream: &str) -> &'static str {
    if stream == "tasks" { "text" } else { "name" }
}

async fn create_list_as(server: &TestServer, who: Who, name: &str) -> Value {
    let body = json!({ "name": name });
    let r = who.http(server).post("/api/lists/", body).await;
    assert_eq!(r.status, 201, "{who:?} creates list {name:?}: {}", r.text);
    r.json()
}

async fn create_task_as(server: &TestServer, who: Who, text: &str, list: &Value) -> Value {
    let body = json!({ "text": text, "list_id": list });
    let r = who.http(server).post("/api/tasks/", body).await;
    assert_eq!(r.status, 201, "{who:?} creates task {text:?}: {}", r.text);
    r.json()
}

async fn patch_as(server: &TestServer, who: Who, stream: &str, pk: &Value, data: Value) -> Value {
    let r = who
        .http(server)
        .patch(&format!("/api/{stream}/{pk}/"), data)
        .await;
    assert_eq!(r.status, 200, "{who:?} patches {stream} {pk}: {}", r.text);
    r.json()
}

/// `object` as `who` is shown it: only admins see `owner`.
fn presented(object: &Value, who: Who) -> Value {
    let mut object = object.clone();
    if !who.is_admin()
        && let Some(map) = object.as_object_mut()
    {
        map.remove("owner");
    }
    object
}

/// Every object (anything with an `id`) in `value` shows `owner` exactly when `who` is an admin.
#[track_caller]
fn assert_owner_shown_to_admins_only(value: &Value, who: Who, ctx: &str) {
    match value {
        Value::Object(map) => {
            if map.contains_key("id") {
                assert_eq!(
                    map.contains_key("owner"),
                    who.is_admin(),
                    "{ctx}: `owner` is for admins only: {value}"
                );
            }
            for v in map.values() {
                assert_owner_shown_to_admins_only(v, who, ctx);
            }
        }
        Value::Array(items) => {
            for v in items {
                assert_owner_shown_to_admins_only(v, who, ctx);
            }
        }
        _ => {}
    }
}

/// Everything in the database, as the admin sees it (with `owner`).
#[derive(Debug, Clone, PartialEq)]
struct Dump {
    lists: Vec<Value>,
    tasks: Vec<Value>,
}

impl Dump {
    fn of(&self, stream: &str) -> &Vec<Value> {
        if stream == "tasks" {
            &self.tasks
        } else {
            &self.lists
        }
    }

    fn find(&self, stream: &str, id: &Value) -> Option<&Value> {
        self.of(stream).iter().find(|o| o["id"] == *id)
    }

    fn without(&self, stream: &str, id: &Value) -> Dump {
        let mut dump = self.clone();
        let objects = if stream == "tasks" {
            &mut dump.tasks
        } else {
            &mut dump.lists
        };
        objects.retain(|o| o["id"] != *id);
        dump
    }
}

async fn dump(server: &TestServer) -> Dump {
    let mut all = Vec::new();
    for stream in ["lists", "tasks"] {
        let path = format!("/api/{stream}/?limit=1000");
        let r = Reply::from(Who::Carol.http(server).get(&path).await);
        assert_eq!(r.status, 200, "{}", r.body);
        let results = r.body["results"].as_array().expect("results").clone();
        assert_eq!(r.body["count"], results.len(), "the dump fits one page");
        all.push(results);
    }
    let tasks = all.pop().unwrap_or_default();
    let lists = all.pop().unwrap_or_default();
    Dump { lists, tasks }
}

// ---------------------------------------------------------------------------------------------
// 1. The permission matrix
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    List,
    Retrieve,
    Create,
    Update,
    Patch,
    /// Patch the actor's own task's `list_id` to the target list.
    MoveTo,
    Delete,
    SubscribeInstance,
    SubscribeGroup,
}

impl Act {
    fn is_subscription(self) -> bool {
        matches!(self, Act::SubscribeInstance | Act::SubscribeGroup)
    }

    fn is_write(self) -> bool {
        matches!(
            self,
            Act::Create | Act::Update | Act::Patch | Act::MoveTo | Act::Delete
        )
    }
}

/// Whose object the action names: the actor's, the other principal's, or none that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Own,
    Other,
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Http,
    Ws,
}

type Row = (&'static str, Act, Target, u16);

/// Exact statuses for a signed-in user (alice, or bob the other way round); "Other" is the
/// other user's object.
fn user_matrix() -> Vec<Row> {
    use Act::*;
    use Target::*;
    vec![
        // `list` answers 200, and only with the user's own objects (see `check_list`).
        ("tasks", List, Own, 200),
        ("tasks", List, Other, 200), // ?list_id=<other's list>: empty
        ("tasks", List, Missing, 200),
        ("tasks", Retrieve, Own, 200),
        ("tasks", Retrieve, Other, 404),
        ("tasks", Retrieve, Missing, 404),
        ("tasks", Create, Own, 201),
        ("tasks", Create, Other, 409), // a task in the other's list: like a missing list
        ("tasks", Create, Missing, 409),
        ("tasks", Update, Own, 200),
        ("tasks", Update, Other, 404),
        ("tasks", Update, Missing, 404),
        ("tasks", Patch, Own, 200),
        ("tasks", Patch, Other, 404),
        ("tasks", Patch, Missing, 404),
        ("tasks", MoveTo, Own, 200),
        ("tasks", MoveTo, Other, 409),
        ("tasks", MoveTo, Missing, 409),
        ("tasks", Delete, Own, 204),
        ("tasks", Delete, Other, 404),
        ("tasks", Delete, Missing, 404),
        ("tasks", SubscribeInstance, Own, 201),
        ("tasks", SubscribeInstance, Other, 404),
        ("tasks", SubscribeInstance, Missing, 404),
        ("tasks", SubscribeGroup, Own, 201),
        ("tasks", SubscribeGroup, Other, 201), // accepted, but nothing of it is ever sent
        ("tasks", SubscribeGroup, Missing, 201),
        ("lists", List, Own, 200),
        ("lists", List, Other, 200), // ?owner=<other>: empty
        ("lists", List, Missing, 200),
        ("lists", Retrieve, Own, 200),
        ("lists", Retrieve, Other, 404),
        ("lists", Retrieve, Missing, 404),
        ("lists", Create, Own, 201),
        ("lists", Update, Own, 200),
        ("lists", Update, Other, 404),
        ("lists", Update, Missing, 404),
        ("lists", Patch, Own, 200),
        ("lists", Patch, Other, 404),
        ("lists", Patch, Missing, 404),
        ("lists", Delete, Own, 204),
        ("lists", Delete, Other, 404),
        ("lists", Delete, Missing, 404),
        ("lists", SubscribeInstance, Own, 201),
        ("lists", SubscribeInstance, Other, 404),
        ("lists", SubscribeInstance, Missing, 404),
    ]
}

/// Exact statuses for carol (admin); "Other" is alice's object.
fn admin_matrix() -> Vec<Row> {
    use Act::*;
    use Target::*;
    user_matrix()
        .into_iter()
        .map(|(stream, act, target, status)| {
            let status = match (act, target) {
                (_, Own | Missing) => status,
                (List, Other) => 200,
                (Retrieve | Update | Patch | MoveTo, Other) => 200,
                (Create | SubscribeInstance | SubscribeGroup, Other) => 201,
                (Delete, Other) => 204,
            };
            (stream, act, target, status)
        })
        .collect()
}

/// One principal's fresh objects: two lists and a task in the first.
struct Seed {
    list: Value,
    second_list: Value,
    task: Value,
}

impl Seed {
    fn object(&self, stream: &str) -> &Value {
        if stream == "tasks" {
            &self.task
        } else {
            &self.list
        }
    }
}

async fn seed(server: &TestServer, who: Who, tag: &str) -> Seed {
    let list = create_list_as(server, who, &format!("{tag} list")).await;
    let second_list = create_list_as(server, who, &format!("{tag} second list")).await;
    let task = create_task_as(server, who, &format!("{tag} task"), &list["id"]).await;
    Seed {
        list,
        second_list,
        task,
    }
}

/// One request: how it goes over HTTP and over the socket.
struct Call {
    /// Method, path and JSON body; `None` for subscriptions (WebSocket only).
    http: Option<(Method, String, Option<Value>)>,
    action: &'static str,
    args: Value,
}

impl Call {
    fn new(
        http: Option<(Method, String, Option<Value>)>,
        action: &'static str,
        args: Value,
    ) -> Self {
        Self { http, action, args }
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    who: Who,
    via: Via,
    stream: &'static str,
    act: Act,
    target: Target,
    expected: u16,
}

async fn run_matrix(who: Who, rows: Vec<Row>) {
    let server = users_server().await;
    let mut ran = 0;
    for (stream, act, target, expected) in rows {
        for via in [Via::Http, Via::Ws] {
            if via == Via::Http && act.is_subscription() {
                continue; // subscriptions are WebSocket only
            }
            let case = Case {
                who,
                via,
                stream,
                act,
                target,
                expected,
            };
            run_case(&server, case).await;
            ran += 1;
        }
    }
    assert!(ran >= 80, "{ran} cases");
}

/// Runs one cell of the matrix on fresh objects of the actor and of the other principal, and
/// checks the status, the body, what the database holds afterwards and (for subscriptions) what
/// the socket receives.
async fn run_case(server: &TestServer, case: Case) {
    let Case {
        who,
        via,
        stream,
        act,
        target,
        expected,
    } = case;
    let other = who.other();
    let mine = seed(server, who, "mine").await;
    let theirs = seed(server, other, "theirs").await;
    let ctx = format!("{who:?} over {via:?}: {act:?} on {target:?} ({stream})");
    let before = dump(server).await;

    // The object the request names, and its owner.
    let named: Option<(Value, Who)> = match (act, target) {
        (Act::List | Act::Create | Act::SubscribeGroup, _) => None,
        (Act::MoveTo, _) => Some((mine.task.clone(), who)),
        (_, Target::Own) => Some((mine.object(stream).clone(), who)),
        (_, Target::Other) => Some((theirs.object(stream).clone(), other)),
        (_, Target::Missing) => None,
    };
    let pk = named
        .as_ref()
        .map_or(json!(MISSING), |(o, _)| o["id"].clone());
    // The list a create, a move or a group subscription names.
    let group = match (act, target) {
        (Act::MoveTo, Target::Own) => mine.second_list["id"].clone(),
        (_, Target::Own) => mine.list["id"].clone(),
        (_, Target::Other) => theirs.list["id"].clone(),
        (_, Target::Missing) => json!(MISSING),
    };
    let field = label_field(stream);
    let collection = format!("/api/{stream}/");
    let member = format!("/api/{stream}/{pk}/");
    let list_filter: Option<(&str, Value)> = match (stream, target) {
        (_, Target::Own) => None,
        ("tasks", _) => Some(("list_id", group.clone())),
        // `owner` is shown to admins only, so only they may filter on it (docs/protocol.md §3):
        // the other's lists are named by id.
        (_, Target::Other | Target::Missing) => Some(("id", group.clone())),
    };

    let call = match act {
        Act::List => {
            let query = list_filter.as_ref().map_or(String::new(), |(k, v)| {
                format!(
                    "&{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            });
            let filters = list_filter
                .as_ref()
                .map_or(json!({}), |(k, v)| object(&[(k, v.clone())]));
            let path = format!("{collection}?limit=1000{query}");
            let args = json!({ "data": filters, "limit": 1000 });
            Call::new(Some((Method::GET, path, None)), "list", args)
        }
        Act::Retrieve => {
            let http = Some((Method::GET, member.clone(), None));
            Call::new(http, "retrieve", json!({ "pk": pk }))
        }
        Act::Create => {
            let data = if stream == "tasks" {
                json!({ "text": "created in the matrix", "list_id": group })
            } else {
                json!({ "name": "created in the matrix" })
            };
            let http = Some((Method::POST, collection.clone(), Some(data.clone())));
            Call::new(http, "create", json!({ "data": data }))
        }
        Act::Update => {
            let data = if stream == "tasks" {
                let list = named
                    .as_ref()
                    .map_or(mine.list["id"].clone(), |(o, _)| o["list_id"].clone());
                json!({ "text": "put in the matrix", "done": true, "list_id": list })
            } else {
                json!({ "name": "put in the matrix" })
            };
            let http = Some((Method::PUT, member.clone(), Some(data.clone())));
            Call::new(http, "update", json!({ "pk": pk, "data": data }))
        }
        Act::Patch | Act::MoveTo => {
            let data = if act == Act::MoveTo {
                json!({ "list_id": group })
            } else {
                object(&[(field, json!("patched in the matrix"))])
            };
            let http = Some((Method::PATCH, member.clone(), Some(data.clone())));
            Call::new(http, "patch", json!({ "pk": pk, "data": data }))
        }
        Act::Delete => {
            let http = Some((Method::DELETE, member.clone(), None));
            Call::new(http, "delete", json!({ "pk": pk }))
        }
        Act::SubscribeInstance => Call::new(None, "subscribe_instance", json!({ "pk": pk })),
        Act::SubscribeGroup => {
            let group = json!({ "group": { "list_id": group } });
            Call::new(None, "subscribe", group)
        }
    };

    let mut socket = None;
    let reply = match via {
        Via::Http => {
            let (method, path, body) = call.http.expect("an HTTP form");
            let response = who.http(server).call(method, &path, body.as_ref(), &[]);
            Reply::from(response.await)
        }
        Via::Ws => {
            let token = who.token().expect("a signed-in principal");
            let mut ws = server.ws_as(token).await;
            let reply = ws_tagged(&mut ws, stream, call.action, "sub", call.args).await;
            socket = Some(ws);
            reply
        }
    };
    assert_eq!(reply.status, expected, "{ctx}: {}", reply.body);
    match reply.status {
        404 => assert_eq!(reply.body, json!({ "errors": [NOT_FOUND] }), "{ctx}"),
        409 => assert_eq!(reply.body, json!({ "errors": [FOREIGN_LIST] }), "{ctx}"),
        _ => {}
    }
    assert_owner_shown_to_admins_only(&reply.body, who, &ctx);
    let ok = (200..300).contains(&reply.status);

    let after = dump(server).await;
    if !act.is_write() || !ok {
        assert_eq!(after, before, "{ctx}: nothing may change");
        // The named object, fetched as its owner, is as it was.
        if let Some((object, owner)) = &named {
            let path = format!("/api/{stream}/{}/", object["id"]);
            let r = Reply::from(owner.http(server).get(&path).await);
            assert_eq!(r.status, 200, "{ctx}: {}", r.body);
            let stored = before.find(stream, &object["id"]).expect("in the dump");
            assert_eq!(r.body, presented(stored, *owner), "{ctx}");
        }
    }

    match (act, ok) {
        (Act::List, _) => {
            let expected_results: Vec<Value> = before
                .of(stream)
                .iter()
                .filter(|o| who.is_admin() || o["owner"] == who.id())
                .filter(|o| list_filter.as_ref().is_none_or(|(k, v)| o[*k] == *v))
                .map(|o| presented(o, who))
                .collect();
            if !who.is_admin() {
                assert!(
                    before.of(stream).len() > expected_results.len(),
                    "{ctx}: the other's objects exist"
                );
            }
            if target == Target::Own {
                assert!(!expected_results.is_empty(), "{ctx}");
            }
            assert_eq!(reply.body["count"], expected_results.len(), "{ctx}");
            assert_eq!(reply.body["results"], json!(expected_results), "{ctx}");
        }
        (Act::Retrieve, true) => {
            let stored = before.find(stream, &pk).expect("in the dump");
            assert_eq!(reply.body, presented(stored, who), "{ctx}");
        }
        (Act::Create, true) => {
            let id = reply.body["id"].clone();
            let created = after.find(stream, &id).expect("created");
            assert_eq!(reply.body, presented(created, who), "{ctx}");
            // A task belongs to its list's owner; a list to its creator.
            let owner = match (stream, target) {
                ("tasks", Target::Other) => other.id(),
                _ => who.id(),
            };
            assert_eq!(created["owner"], owner, "{ctx}");
            assert_eq!(after.without(stream, &id), before, "{ctx}");
        }
        (Act::Update | Act::Patch | Act::MoveTo, true) => {
            let stored = after.find(stream, &pk).expect("still there");
            assert_eq!(reply.body, presented(stored, who), "{ctx}");
            match act {
                Act::MoveTo => {
                    assert_eq!(stored["list_id"], group, "{ctx}");
                    let owner = if target == Target::Other {
                        other.id()
                    } else {
                        who.id()
                    };
                    assert_eq!(stored["owner"], owner, "{ctx}: the new list's owner");
                }
                Act::Update => assert_eq!(stored[field], "put in the matrix", "{ctx}"),
                _ => assert_eq!(stored[field], "patched in the matrix", "{ctx}"),
            }
            assert_eq!(
                after.without(stream, &pk),
                before.without(stream, &pk),
                "{ctx}: nothing else changes"
            );
        }
        (Act::Delete, true) => {
            assert_eq!(reply.body, Value::Null, "{ctx}");
            let mut expected_dump = before.without(stream, &pk);
            if stream == "lists" {
                // A list's tasks go with it.
                expected_dump.tasks.retain(|t| t["list_id"] != pk);
            }
            assert_eq!(after, expected_dump, "{ctx}");
        }
        (Act::SubscribeInstance | Act::SubscribeGroup, _) => {
            let ws = socket.as_mut().expect("a socket");
            if ok {
                assert!(reply.body["seq"].is_i64(), "{ctx}: {}", reply.body);
            }
            check_subscription(server, ws, case, &mine, &pk, &group, ok, &ctx).await;
        }
        _ => {}
    }
}

/// After a subscription request: the owner of what it names writes to it, then the actor writes
/// to an object of its own that a second ("barrier") subscription follows. Events of a stream
/// arrive in seq order, so the barrier's event arriving first proves the owner's write was not
/// sent; a principal that may read it gets exactly its event, presented for it.
#[allow(clippy::too_many_arguments)]
async fn check_subscription(
    server: &TestServer,
    ws: &mut WsClient,
    case: Case,
    mine: &Seed,
    pk: &Value,
    group: &Value,
    subscribed: bool,
    ctx: &str,
) {
    let Case {
        who,
        stream,
        act,
        target,
        ..
    } = case;
    let field = label_field(stream);
    let own = mine.object(stream);
    let barrier = target != Target::Own;
    if barrier {
        let pk = json!({ "pk": own["id"] });
        let r = ws_tagged(ws, stream, "subscribe_instance", "barrier", pk).await;
        assert_eq!(r.status, 201, "{ctx}: {}", r.body);
    }
    let owner = match target {
        Target::Own => Some(who),
        Target::Other => Some(who.other()),
        Target::Missing => None,
    };
    // What the owner's write would be sent as: (action, id).
    let mut expected_event = None;
    if let Some(owner) = owner {
        if act == Act::SubscribeInstance {
            patch_as(
                server,
                owner,
                stream,
                pk,
                object(&[(field, json!("trigger"))]),
            )
            .await;
            expected_event = Some(("update", pk.clone()));
        } else {
            let task = create_task_as(server, owner, "trigger", group).await;
            expected_event = Some(("create", task["id"].clone()));
        }
    }
    let sees = subscribed && (target == Target::Own || who.is_admin());
    if let (true, Some((action, id))) = (sees, expected_event) {
        let event = ws.recv_event().await;
        let p = &event["payload"];
        assert_eq!(event["stream"], stream, "{ctx}: {event}");
        assert_eq!(p["request_id"], "sub", "{ctx}: {event}");
        assert_eq!(p["action"], action, "{ctx}: {event}");
        assert_eq!(p["data"]["id"], id, "{ctx}: {event}");
        assert_eq!(p["data"][field], "trigger", "{ctx}: {event}");
        assert_owner_shown_to_admins_only(&p["data"], who, ctx);
        if who.is_admin() {
            assert_eq!(
                Some(&p["data"]["owner"]),
                owner.map(Who::id).as_ref(),
                "{ctx}"
            );
        }
    }
    if barrier {
        patch_as(
            server,
            who,
            stream,
            &own["id"],
            object(&[(field, json!("barrier"))]),
        )
        .await;
        let event = ws.recv_event().await;
        assert_eq!(
            event["payload"]["request_id"], "barrier",
            "{ctx}: the first event after the owner's write must be the barrier's: {event}"
        );
        assert_eq!(event["payload"]["data"][field], "barrier", "{ctx}: {event}");
    }
    assert_eq!(ws.pending_count().await, 0, "{ctx}: {:?}", ws.take_events());
}

#[tokio::test]
async fn permission_matrix_alice() {
    run_matrix(Who::Alice, user_matrix()).await;
}

#[tokio::test]
async fn permission_matrix_bob() {
    run_matrix(Who::Bob, user_matrix()).await;
}

#[tokio::test]
async fn permission_matrix_carol_admin_sees_and_changes_everything_with_owner() {
    run_matrix(Who::Carol, admin_matrix()).await;
}

/// Anonymous requests and forged tokens: 401 for every action over HTTP, and the WebSocket
/// handshake refused with 401, whatever the object; nothing changes.
#[tokio::test]
async fn permission_matrix_anonymous_and_invalid_tokens_get_401() {
    let server = users_server().await;
    let as_anonymous = Who::Anonymous.http(&server);
    let alice = seed(&server, Who::Alice, "alice").await;
    let before = dump(&server).await;
    for who in [Who::Anonymous, Who::Forged] {
        let message = if who == Who::Anonymous {
            NO_CREDENTIALS
        } else {
            INVALID_TOKEN
        };
        for stream in ["tasks", "lists"] {
            let field = label_field(stream);
            for pk in [alice.object(stream)["id"].clone(), json!(MISSING)] {
                let member = format!("/api/{stream}/{pk}/");
                let body = object(&[(field, json!("x")), ("list_id", alice.list["id"].clone())]);
                let requests: [(Method, String, Option<&Value>); 6] = [
                    (Method::GET, format!("/api/{stream}/"), None),
                    (Method::GET, member.clone(), None),
                    (Method::POST, format!("/api/{stream}/"), Some(&body)),
                    (Method::PUT, member.clone(), Some(&body)),
                    (Method::PATCH, member.clone(), Some(&body)),
                    (Method::DELETE, member.clone(), None),
                ];
                for (method, path, body) in requests {
                    let response = who.http(&server).call(method.clone(), &path, body, &[]);
                    let r = Reply::from(response.await);
                    assert_eq!(r.status, 401, "{who:?} {method} {path}: {}", r.body);
                    assert_eq!(
                        r.body,
                        json!({ "errors": [message] }),
                        "{who:?} {method} {path}"
                    );
                }
            }
        }
        let refused = server.try_ws_as(who.token()).await.err();
        assert_eq!(refused, Some(401), "{who:?}: the handshake is refused");
    }
    // A forged token by cookie or query parameter is refused the same way.
    let cookie = WsClient::connect_with(&server.ws_url(), &[("cookie", "rest_live_token=forged")])
        .await
        .err();
    assert_eq!(cookie, Some(401));
    let query = WsClient::connect_with(&format!("{}?token=forged", server.ws_url()), &[])
        .await
        .err();
    assert_eq!(query, Some(401));
    let r = Reply::from(as_anonymous.get("/api/tasks/?token=forged").await);
    assert_eq!(r.status, 401);
    assert_eq!(r.body, json!({ "errors": [INVALID_TOKEN] }));
    assert_eq!(dump(&server).await, before, "nothing changed");

    // The same credentials work from the cookie and the query parameter (browsers cannot set
    // headers on a WebSocket handshake).
    let mut ws = WsClient::connect_with(&format!("{}?token=alice-token", server.ws_url()), &[])
        .await
        .expect("alice by query parameter");
    let r = ws_do(&mut ws, "tasks", "list", json!({})).await;
    assert_eq!((r.status, r.body["count"].clone()), (200, json!(1)));
    let mut ws =
        WsClient::connect_with(&server.ws_url(), &[("cookie", "rest_live_token=bob-token")])
            .await
            .expect("bob by cookie");
    let r = ws_do(&mut ws, "tasks", "list", json!({})).await;
    assert_eq!((r.status, r.body["count"].clone()), (200, json!(0)));
    let r = Reply::from(as_anonymous.get("/api/tasks/?token=alice-token").await);
    assert_eq!((r.status, r.body["count"].clone()), (200, json!(1)));
}

/// Where anonymous requests are allowed, anonymous is a principal with a scope of its own: it
/// shares what was made anonymously and sees nothing of the users'.
#[tokio::test]
async fn allowed_anonymous_principal_sees_only_anonymous_objects() {
    let server = TestServer::start(users_app(models::demo_tokens()).allow_anonymous(true)).await;
    let as_anonymous = Who::Anonymous.http(&server);
    let as_alice = Who::Alice.http(&server);
    let alice = seed(&server, Who::Alice, "alice").await;
    let anon_list = create_list_as(&server, Who::Anonymous, "shared").await;
    assert_eq!(anon_list.get("owner"), None, "{anon_list}");
    let mut anon = server.ws().await;
    for stream in ["tasks", "lists"] {
        let pk = &alice.object(stream)["id"];
        let r = Reply::from(as_anonymous.get(&format!("/api/{stream}/{pk}/")).await);
        assert_eq!(
            (r.status, r.body.clone()),
            (404, json!({ "errors": [NOT_FOUND] }))
        );
        let r = ws_do(&mut anon, stream, "subscribe_instance", json!({ "pk": pk })).await;
        assert_eq!(
            (r.status, r.body.clone()),
            (404, json!({ "errors": [NOT_FOUND] }))
        );
    }
    let r = Reply::from(as_anonymous.get("/api/lists/").await);
    assert_eq!(r.body["count"], 1, "{}", r.body);
    assert_eq!(r.body["results"][0]["id"], anon_list["id"]);
    let args = json!({ "data": { "text": "x", "list_id": alice.list["id"] } });
    let r = ws_do(&mut anon, "tasks", "create", args).await;
    assert_eq!(
        (r.status, r.body),
        (409, json!({ "errors": [FOREIGN_LIST] }))
    );
    // ...and alice sees nothing of the anonymous list.
    let path = format!("/api/lists/{}/", anon_list["id"]);
    let r = Reply::from(as_alice.get(&path).await);
    assert_eq!(r.status, 404);
}

/// `owner` is read-only: a client cannot plant an object in someone else's scope.
#[tokio::test]
async fn clients_cannot_set_the_owner() {
    let server = users_server().await;
    let as_alice = Who::Alice.http(&server);
    let as_bob = Who::Bob.http(&server);
    let list = Reply::from(
        as_alice
            .post("/api/lists/", json!({ "name": "planted", "owner": "bob" }))
            .await,
    );
    assert_eq!(list.status, 201, "{}", list.body);
    let task = create_task_as(&server, Who::Alice, "planted", &list.body["id"]).await;
    let r = Reply::from(
        as_alice
            .patch(
                &format!("/api/tasks/{}/", task["id"]),
                json!({ "owner": "bob" }),
            )
            .await,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let all = dump(&server).await;
    assert_eq!(all.lists[0]["owner"], "alice");
    assert_eq!(all.tasks[0]["owner"], "alice");
    for stream in ["lists", "tasks"] {
        let r = Reply::from(as_bob.get(&format!("/api/{stream}/")).await);
        assert_eq!(r.body["count"], 0, "{stream}: {}", r.body);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Action-level refusals: 403
// ---------------------------------------------------------------------------------------------

/// One request to `notices`, over HTTP or over a socket of `who`.
async fn notice_call(
    server: &TestServer,
    via: Via,
    who: Who,
    action: &str,
    pk: Option<&Value>,
    data: Option<Value>,
) -> Reply {
    match via {
        Via::Http => {
            let (method, path) = match (action, pk) {
                ("list", _) => (Method::GET, "/api/notices/".to_owned()),
                ("create", _) => (Method::POST, "/api/notices/".to_owned()),
                (_, Some(pk)) => {
                    let method = match action {
                        "retrieve" => Method::GET,
                        "update" => Method::PUT,
                        "patch" => Method::PATCH,
                        "delete" => Method::DELETE,
                        other => panic!("no HTTP form for {other:?}"),
                    };
                    (method, format!("/api/notices/{}/", text_pk(pk)))
                }
                other => panic!("no HTTP form for {other:?}"),
            };
            let response = who.http(server).call(method, &path, data.as_ref(), &[]);
            Reply::from(response.await)
        }
        Via::Ws => {
            let mut ws = who.ws(server).await;
            let mut args = Map::new();
            if let Some(pk) = pk {
                args.insert("pk".into(), pk.clone());
            }
            if let Some(data) = data {
                args.insert("data".into(), data);
            }
            ws_do(&mut ws, "notices", action, Value::Object(args)).await
        }
    }
}

fn text_pk(pk: &Value) -> String {
    pk.as_str().map_or_else(|| pk.to_string(), str::to_owned)
}

#[tokio::test]
async fn action_level_refusals_are_403_and_come_before_the_object() {
    use Who::{Alice, Anonymous, Bob, Carol};
    let server = TestServer::start(users_app(models::demo_tokens()).allow_anonymous(true)).await;
    let data = Some(json!({ "body": "alice's notice" }));
    let notice = notice_call(&server, Via::Http, Alice, "create", None, data).await;
    assert_eq!(notice.status, 201, "{}", notice.body);
    assert_eq!(notice.body["author"], "alice");
    let id = notice.body["id"].clone();
    let missing = json!(MISSING);
    let forbidden = json!({ "errors": [FORBIDDEN] });
    let not_found = json!({ "errors": [NOT_FOUND] });
    let body = || Some(json!({ "body": "changed" }));
    let empty = || Some(json!({}));
    let (on_notice, on_missing) = (Some(&id), Some(&missing));
    let (is_forbidden, is_not_found) = (Some(&forbidden), Some(&not_found));

    // (who, action, pk, data, status, body)
    type NoticeRow<'a> = (
        Who,
        &'a str,
        Option<&'a Value>,
        Option<Value>,
        u16,
        Option<&'a Value>,
    );
    let rows: Vec<NoticeRow<'_>> = vec![
        // Anonymous may read...
        (Anonymous, "list", None, None, 200, None),
        (Anonymous, "retrieve", on_notice, None, 200, None),
        // ...but not create: refused before the data is even looked at.
        (Anonymous, "create", None, body(), 403, is_forbidden),
        (Anonymous, "create", None, empty(), 403, is_forbidden),
        // Deleting is for admins: 403 whether or not the object exists (the action check comes
        // first, so the answer says nothing about the object).
        (Anonymous, "delete", on_notice, None, 403, is_forbidden),
        (Anonymous, "delete", on_missing, None, 403, is_forbidden),
        (Bob, "delete", on_notice, None, 403, is_forbidden),
        (Bob, "delete", on_missing, None, 403, is_forbidden),
        (Alice, "delete", on_notice, None, 403, is_forbidden),
        // Updating is allowed as an action; the object-level check refuses a notice the
        // principal can read but did not write (403), and a missing one is 404.
        (Anonymous, "update", on_notice, body(), 403, is_forbidden),
        (Anonymous, "patch", on_missing, body(), 404, is_not_found),
        (Bob, "patch", on_notice, body(), 403, is_forbidden),
        (Bob, "update", on_missing, body(), 404, is_not_found),
        (Carol, "delete", on_missing, None, 404, is_not_found),
    ];
    for via in [Via::Http, Via::Ws] {
        for (who, action, pk, data, status, expected_body) in rows.iter().cloned() {
            let ctx = format!("{who:?} over {via:?}: {action} {pk:?}");
            let before = notice_call(&server, Via::Http, Alice, "retrieve", on_notice, None)
                .await
                .body;
            let r = notice_call(&server, via, who, action, pk, data).await;
            assert_eq!(r.status, status, "{ctx}: {}", r.body);
            if let Some(expected_body) = expected_body {
                assert_eq!(&r.body, expected_body, "{ctx}");
            }
            // The notice, as its author sees it, is unchanged.
            let after = notice_call(&server, Via::Http, Alice, "retrieve", on_notice, None).await;
            assert_eq!((after.status, &after.body), (200, &before), "{ctx}");
        }
    }
    // Subscribing is refused to anonymous, for any pk (the action check comes first).
    let mut anon = server.ws().await;
    for pk in [id.clone(), missing.clone()] {
        let args = json!({ "pk": pk });
        let r = ws_do(&mut anon, "notices", "subscribe_instance", args).await;
        assert_eq!((r.status, &r.body), (403, &forbidden), "subscribe {pk}");
    }
    // An action-level refusal even comes before the pk is parsed.
    let not_a_number = "/api/notices/not-a-number/";
    let r = Reply::from(Bob.http(&server).delete(not_a_number).await);
    assert_eq!((r.status, &r.body), (403, &forbidden));
    let r = Reply::from(Carol.http(&server).delete(not_a_number).await);
    assert_eq!(r.status, 400, "{}", r.body);

    // What the policy allows works: bob posts and edits his own, carol deletes anything.
    let data = Some(json!({ "body": "bob's" }));
    let bobs = notice_call(&server, Via::Ws, Bob, "create", None, data).await;
    assert_eq!((bobs.status, &bobs.body["author"]), (201, &json!("bob")));
    let bobs_id = Some(&bobs.body["id"]);
    let r = notice_call(&server, Via::Http, Bob, "patch", bobs_id, body()).await;
    assert_eq!((r.status, &r.body["body"]), (200, &json!("changed")));
    let mut bob = server.ws_as("bob-token").await;
    let args = json!({ "pk": id });
    let r = ws_do(&mut bob, "notices", "subscribe_instance", args).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = notice_call(&server, Via::Ws, Carol, "delete", on_notice, None).await;
    assert_eq!((r.status, r.body), (204, Value::Null));
    let event = bob.next_event().await;
    assert_eq!(event["payload"]["action"], "delete", "{event}");
    assert_eq!(event["payload"]["data"], json!({ "pk": id }), "{event}");
    let r = notice_call(&server, Via::Http, Carol, "delete", bobs_id, None).await;
    assert_eq!(r.status, 204);
}

// ---------------------------------------------------------------------------------------------
// 3. The subscription matrix
// ---------------------------------------------------------------------------------------------

/// Alice's objects: every frame bob receives is checked against them.
#[derive(Default)]
struct Secrets {
    lists: Vec<Value>,
    tasks: Vec<Value>,
}

impl Secrets {
    /// Panics if `frame` carries anything of alice's: her texts and names (they all contain
    /// "alice"), her `owner` value, or the id of one of her objects (as `id`, `pk` or `list_id`).
    #[track_caller]
    fn assert_absent(&self, frame: &Value) {
        let text = frame.to_string();
        assert!(!text.contains("alice"), "alice's data leaked: {text}");
        assert!(!text.contains("owner"), "`owner` leaked to a user: {text}");
        let (ids, list_ids) = if frame["stream"] == "tasks" {
            (&self.tasks, &self.lists)
        } else {
            (&self.lists, &self.lists)
        };
        let data = &frame["payload"]["data"];
        for key in ["id", "pk"] {
            if let Some(v) = data.get(key) {
                assert!(!ids.contains(v), "the id of alice's object leaked: {text}");
            }
        }
        if frame["stream"] == "tasks"
            && let Some(v) = data.get("list_id")
        {
            assert!(!list_ids.contains(v), "alice's list id leaked: {text}");
        }
    }
}

#[tokio::test]
async fn subscription_matrix_bob_receives_nothing_of_alices_writes() {
    let server = users_server().await;
    let as_alice = Who::Alice.http(&server);
    let as_bob = Who::Bob.http(&server);
    let mut secrets = Secrets::default();
    // Interleaved, so that ids of both users mix.
    let b1 = create_list_as(&server, Who::Bob, "bob one").await;
    let a1 = create_list_as(&server, Who::Alice, "alice one").await;
    let b2 = create_list_as(&server, Who::Bob, "bob two").await;
    let a2 = create_list_as(&server, Who::Alice, "alice two").await;
    let b_task = create_task_as(&server, Who::Bob, "bob task", &b1["id"]).await;
    let a_task = create_task_as(&server, Who::Alice, "alice task zero", &a1["id"]).await;
    secrets.lists.extend([a1["id"].clone(), a2["id"].clone()]);
    secrets.tasks.push(a_task["id"].clone());
    let bob_lists = [b1["id"].clone(), b2["id"].clone()];

    // Alice and carol follow alice's first list.
    let mut alice = server.ws_as("alice-token").await;
    let mut carol = server.ws_as("carol-token").await;
    for ws in [&mut alice, &mut carol] {
        let r = subscribe_group(ws, "a1", &a1["id"]).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    // Bob subscribes every way he may, and names alice's objects every way he can.
    let mut bob = server.ws_as("bob-token").await;
    let mut statuses = Vec::new();
    // Groups: every list id that exists or will (alice's next lists included).
    for list in 1..=12 {
        let r = subscribe_group(&mut bob, &format!("g{list}"), &json!(list)).await;
        statuses.push(r.status);
        assert_eq!(r.status, 201, "group {list}: {}", r.body);
    }
    // Snapshots of alice's lists: accepted, and empty.
    for list in [&a1["id"], &a2["id"]] {
        let args = json!({ "group": { "list_id": list }, "snapshot": true });
        let r = ws_tagged(&mut bob, "tasks", "subscribe", &format!("snap{list}"), args).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(
            r.body["results"],
            json!([]),
            "a snapshot of alice's list: {}",
            r.body
        );
    }
    let args = json!({ "group": { "list_id": b1["id"] }, "snapshot": true });
    let r = ws_tagged(&mut bob, "tasks", "subscribe", "snap-own", args).await;
    assert_eq!(
        r.body["results"],
        json!([presented(&b_task, Who::Bob)]),
        "{}",
        r.body
    );
    // Resuming from the start of the log replays nothing of alice's.
    let args = json!({ "group": { "list_id": a1["id"] }, "since": 0 });
    let r = ws_tagged(&mut bob, "tasks", "subscribe", "since-a1", args).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // His own objects by pk.
    let args = json!({ "pk": b_task["id"] });
    let r = ws_tagged(&mut bob, "tasks", "subscribe_instance", "i-task", args).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for list in &bob_lists {
        let args = json!({ "pk": list });
        let r = ws_tagged(
            &mut bob,
            "lists",
            "subscribe_instance",
            &format!("i-list{list}"),
            args,
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // Alice's objects by pk: 404 exactly like a missing pk, never 403.
    for (stream, pk) in [
        ("tasks", &a_task["id"]),
        ("lists", &a1["id"]),
        ("lists", &a2["id"]),
        ("tasks", &json!(MISSING)),
    ] {
        let r = ws_do(&mut bob, stream, "subscribe_instance", json!({ "pk": pk })).await;
        statuses.push(r.status);
        assert_eq!(
            (r.status, &r.body),
            (404, &json!({ "errors": [NOT_FOUND] })),
            "{stream} {pk}"
        );
        for action in ["retrieve", "delete"] {
            let r = ws_do(&mut bob, stream, action, json!({ "pk": pk })).await;
            statuses.push(r.status);
            assert_eq!(
                (r.status, &r.body),
                (404, &json!({ "errors": [NOT_FOUND] })),
                "{action} {stream} {pk}"
            );
        }
        // Even with invalid data: the object is looked up (and hidden) before the data is.
        let args = json!({ "pk": pk, "data": { "done": "not a bool", "text": "", "name": "" } });
        let r = ws_do(&mut bob, stream, "patch", args).await;
        statuses.push(r.status);
        assert_eq!(
            (r.status, &r.body),
            (404, &json!({ "errors": [NOT_FOUND] })),
            "patch {stream} {pk}"
        );
    }
    // Resuming an instance subscription skips the existence check (the replay says what became
    // of the object): every pk that is not bob's, alice's or missing, answers the same 201, and
    // the replay and the live events carry nothing of alice's.
    let since = [
        ("tasks", "task", "since-t", 16, vec![b_task["id"].clone()]),
        ("lists", "list", "since-l", 12, bob_lists.to_vec()),
    ];
    for (stream, what, tag, last, bobs) in since {
        for pk in (1..=last).filter(|pk| !bobs.contains(&json!(pk))) {
            let args = json!({ "pk": pk, "since": 0 });
            let request_id = format!("{tag}{pk}");
            let r = ws_tagged(&mut bob, stream, "subscribe_instance", &request_id, args).await;
            statuses.push(r.status);
            assert_eq!(r.status, 201, "{what} {pk}: {}", r.body);
        }
    }
    assert!(!statuses.contains(&403), "never 403: {statuses:?}");
    // Nothing was replayed to bob (his own objects had no change after creation besides the
    // creates, which instance subscriptions do not get).
    assert_eq!(bob.pending_count().await, 0, "{:?}", bob.take_events());

    // Alice writes, over HTTP and over her socket, and the application writes for her.
    let mut writer = server.ws_as("alice-token").await;
    let a3 = create_list_as(&server, Who::Alice, "alice three").await;
    assert!(
        a3["id"].as_i64() <= Some(12),
        "bob follows the group of every list id"
    );
    secrets.lists.push(a3["id"].clone());
    let args = json!({ "data": { "text": "alice task one", "list_id": a1["id"] } });
    let t1 = ws_do(&mut writer, "tasks", "create", args).await;
    assert_eq!(t1.status, 201);
    let t1 = t1.body;
    let t2 = create_task_as(&server, Who::Alice, "alice task two", &a2["id"]).await;
    let args = json!({ "data": { "text": "alice task three", "list_id": a3["id"] } });
    let t3 = ws_do(&mut writer, "tasks", "create", args).await;
    assert_eq!(t3.status, 201);
    let t3 = t3.body;
    secrets
        .tasks
        .extend([t1["id"].clone(), t2["id"].clone(), t3["id"].clone()]);
    let args = json!({ "pk": t1["id"], "data": { "text": "alice task one, edited" } });
    let r = ws_do(&mut writer, "tasks", "patch", args).await;
    assert_eq!(r.status, 200);
    let data = json!({ "done": true });
    patch_as(&server, Who::Alice, "tasks", &t1["id"], data).await;
    let r = Reply::from(
        as_alice
            .put(
                &format!("/api/tasks/{}/", t2["id"]),
                json!({ "text": "alice task two, put", "done": false, "list_id": a2["id"], "priority": 0, "note": null}),
            )
            .await,
    );
    assert_eq!(r.status, 200);
    // Moves between her lists.
    let args = json!({ "pk": t1["id"], "data": { "list_id": a2["id"] } });
    let r = ws_do(&mut writer, "tasks", "patch", args).await;
    assert_eq!(r.status, 200);
    let data = json!({ "list_id": a3["id"] });
    patch_as(&server, Who::Alice, "tasks", &t2["id"], data).await;
    let data = json!({ "name": "alice one, renamed" });
    patch_as(&server, Who::Alice, "lists", &a1["id"], data).await;
    let args = json!({ "pk": a3["id"], "data": { "name": "alice three, renamed" } });
    let r = ws_do(&mut writer, "lists", "patch", args).await;
    assert_eq!(r.status, 200);
    let r = ws_do(&mut writer, "tasks", "delete", json!({ "pk": t3["id"] })).await;
    assert_eq!(r.status, 204);
    // The application's own bulk write on her tasks (one event per row).
    let bulk = server
        .app
        .bulk_update::<models::Task, _>(json!({ "owner": "alice" }), |t| t.done = !t.done)
        .await
        .expect("bulk update");
    assert_eq!(bulk.len(), 3);
    // Deleting a list deletes its tasks (t1 is in it now).
    let r = Reply::from(as_alice.delete(&format!("/api/lists/{}/", a2["id"])).await);
    assert_eq!(r.status, 204);
    let last = create_task_as(&server, Who::Alice, "alice last", &a1["id"]).await;
    assert!(last["id"].as_i64() <= Some(16), "bob follows every task pk");
    secrets.tasks.push(last["id"].clone());

    // Bob's barrier: his own writes on both streams, after all of alice's. Events of a stream
    // arrive in seq order, so everything of alice's bob could get would come before them.
    let data = json!({ "text": "bob barrier" });
    patch_as(&server, Who::Bob, "tasks", &b_task["id"], data).await;
    let data = json!({ "name": "bob barrier" });
    patch_as(&server, Who::Bob, "lists", &b1["id"], data).await;
    let mut frames = Vec::new();
    let (mut task_barrier, mut list_barrier) = (false, false);
    while !(task_barrier && list_barrier) {
        match bob.recv_any(rest_live::testing::RECV_TIMEOUT).await {
            Some(Received::Event(event)) => {
                let p = &event["payload"];
                task_barrier |= event["stream"] == "tasks" && p["data"]["text"] == "bob barrier";
                list_barrier |= event["stream"] == "lists" && p["data"]["name"] == "bob barrier";
                frames.push(event);
            }
            other => panic!("bob expected his barrier events, got {other:?} after {frames:?}"),
        }
    }
    while let Some(received) = bob.recv_any(QUIET).await {
        match received {
            Received::Event(event) => frames.push(event),
            other => panic!("bob got an unsolicited {other:?}"),
        }
    }
    for frame in &frames {
        secrets.assert_absent(frame);
        let p = &frame["payload"];
        assert!(
            [200, 201, 204].contains(&p["response_status"].as_u64().unwrap_or(0)),
            "not an event: {frame}"
        );
        assert_eq!(p["errors"], json!([]), "{frame}");
    }
    // Bob got his own events, on each subscription that follows them, and nothing else:
    // instance (task), group b1, snapshot of b1; instance (list b1).
    let mut tags: Vec<String> = frames
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["stream"].as_str().unwrap_or(""),
                f["payload"]["request_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    tags.sort();
    let mut expected = vec![
        "tasks:i-task".to_owned(),
        format!("tasks:g{}", b1["id"]),
        "tasks:snap-own".to_owned(),
        format!("lists:i-list{}", b1["id"]),
    ];
    expected.sort();
    assert_eq!(tags, expected, "{frames:?}");

    // Bob's reads see nothing of alice's either.
    for stream in ["tasks", "lists"] {
        let r = Reply::from(as_bob.get(&format!("/api/{stream}/?limit=1000")).await);
        for object in r.body["results"].as_array().expect("results") {
            secrets.assert_absent(&json!({ "stream": stream, "payload": { "data": object } }));
        }
    }

    // Meanwhile alice saw her own first list's events, and carol the same ones with `owner`.
    let ids = |events: &[Value]| -> Vec<(String, Value)> {
        events
            .iter()
            .map(|e| {
                let p = &e["payload"];
                let id = p["data"]
                    .get("id")
                    .or(p["data"].get("pk"))
                    .cloned()
                    .unwrap_or_default();
                (p["action"].as_str().unwrap_or("").to_owned(), id)
            })
            .collect()
    };
    let expected = vec![
        ("create".to_owned(), t1["id"].clone()),     // created in a1
        ("update".to_owned(), t1["id"].clone()),     // text
        ("update".to_owned(), t1["id"].clone()),     // done
        ("delete".to_owned(), t1["id"].clone()),     // moved to a2: it left the group
        ("update".to_owned(), a_task["id"].clone()), // the bulk write
        ("create".to_owned(), last["id"].clone()),
    ];
    for (who, ws) in [(Who::Alice, &mut alice), (Who::Carol, &mut carol)] {
        let mut events = Vec::new();
        while events.len() < expected.len() {
            events.push(ws.recv_event().await);
        }
        assert_eq!(ids(&events), expected, "{who:?}: {events:?}");
        for event in &events {
            let p = &event["payload"];
            assert_eq!(p["request_id"], "a1", "{event}");
            if p["action"] == "delete" {
                assert_eq!(p["data"], json!({ "pk": t1["id"] }), "{event}");
            } else {
                assert_owner_shown_to_admins_only(&p["data"], who, "a1 group");
                if who.is_admin() {
                    assert_eq!(p["data"]["owner"], "alice", "{event}");
                }
            }
        }
        assert_eq!(ws.pending_count().await, 0, "{who:?}");
    }
}

/// When a change takes an object out of what a subscriber may read, the subscriber is told it is
/// gone, with its pk and nothing more; who may read it afterwards gets it whole.
#[tokio::test]
async fn leaving_a_subscribers_scope_is_a_delete_with_only_the_pk() {
    let server = users_server().await;
    let as_alice = Who::Alice.http(&server);
    let a1 = create_list_as(&server, Who::Alice, "alice one").await;
    let b1 = create_list_as(&server, Who::Bob, "bob one").await;
    let task = create_task_as(&server, Who::Alice, "alice's task", &a1["id"]).await;

    let mut alice = server.ws_as("alice-token").await;
    let args = json!({ "pk": task["id"] });
    let r = ws_tagged(&mut alice, "tasks", "subscribe_instance", "one", args).await;
    assert_eq!(r.status, 201);
    let r = subscribe_group(&mut alice, "a1", &a1["id"]).await;
    assert_eq!(r.status, 201);
    let mut bob = server.ws_as("bob-token").await;
    let r = subscribe_group(&mut bob, "b1", &b1["id"]).await;
    assert_eq!(r.status, 201);
    let mut carol = server.ws_as("carol-token").await;
    for (rid, list) in [("a1", &a1["id"]), ("b1", &b1["id"])] {
        let r = subscribe_group(&mut carol, rid, list).await;
        assert_eq!(r.status, 201);
    }

    // Carol (admin) moves alice's task into bob's list: it becomes bob's.
    let data = json!({ "list_id": b1["id"] });
    let moved = patch_as(&server, Who::Carol, "tasks", &task["id"], data).await;
    assert_eq!(moved["owner"], "bob");

    let mut events = [alice.recv_event().await, alice.recv_event().await];
    events.sort_by_key(|e| e["payload"]["request_id"].as_str().unwrap_or("").to_owned());
    for (event, rid) in events.iter().zip(["a1", "one"]) {
        let p = &event["payload"];
        assert_eq!(p["request_id"], rid, "{event}");
        assert_eq!(p["action"], "delete", "{event}");
        assert_eq!(p["response_status"], 204, "{event}");
        assert_eq!(
            p["data"],
            json!({ "pk": task["id"] }),
            "only the pk: {event}"
        );
    }
    assert_eq!(alice.pending_count().await, 0);
    // Bob's list gained a task: bob gets it whole (as a user sees it).
    let event = bob.recv_event().await;
    assert_eq!(event["payload"]["action"], "create", "{event}");
    assert_eq!(
        event["payload"]["data"],
        presented(&moved, Who::Bob),
        "{event}"
    );
    // Carol follows both lists on one socket: one update, with `owner`.
    let event = carol.recv_event().await;
    assert_eq!(event["payload"]["action"], "update", "{event}");
    assert_eq!(event["payload"]["request_id"], "b1", "{event}");
    assert_eq!(event["payload"]["data"], moved, "{event}");
    assert_eq!(carol.pending_count().await, 0);

    // The task is now bob's: alice reads 404 and changes of it no longer reach her.
    let path = format!("/api/tasks/{}/", task["id"]);
    let r = Reply::from(as_alice.get(&path).await);
    assert_eq!(r.status, 404);
    let args = json!({ "pk": task["id"] });
    let r = ws_do(&mut alice, "tasks", "subscribe_instance", args).await;
    assert_eq!(r.status, 404);
    let data = json!({ "text": "bob's now" });
    patch_as(&server, Who::Bob, "tasks", &task["id"], data).await;
    assert_eq!(
        bob.recv_event().await["payload"]["data"]["text"],
        "bob's now"
    );
    alice.expect_silence(QUIET).await;
}

/// Subscribers of one group whose audiences and request ids alternate (the hub shares a frame
/// between consecutive subscribers of one audience and id, and tells them apart without reading
/// either): each gets exactly one event, with its own request id and its own principal's view.
#[tokio::test]
async fn alternating_audiences_and_request_ids_each_get_their_own_frame() {
    let server = users_server().await;
    let list = create_list_as(&server, Who::Alice, "shared").await;
    let long = "a-request-id-longer-than-fifteen-bytes";
    let plan = [
        (Who::Alice, "s"),
        (Who::Carol, "s"),
        (Who::Alice, "s"),
        (Who::Alice, long),
        (Who::Carol, long),
        (Who::Alice, "t"),
        (Who::Alice, "t"),
        (Who::Alice, "u"),
        (Who::Carol, "s"),
        (Who::Alice, "s"),
    ];
    let mut sockets = Vec::new();
    for (who, rid) in plan {
        let mut ws = who.ws(&server).await;
        let r = subscribe_group(&mut ws, rid, &list["id"]).await;
        assert_eq!(r.status, 201, "{who:?} {rid}");
        sockets.push((who, rid, ws));
    }
    let task = create_task_as(&server, Who::Alice, "for everyone", &list["id"]).await;
    // As an admin sees it: `owner` included.
    let path = format!("/api/tasks/{}/", task["id"]);
    let task = Who::Carol.http(&server).get(&path).await.json();
    assert_eq!(task["owner"], "alice", "{task}");
    for (who, rid, ws) in &mut sockets {
        let event = ws.recv_event().await;
        let p = &event["payload"];
        assert_eq!(p["request_id"], *rid, "{who:?}: {event}");
        assert_eq!(p["action"], "create", "{who:?}: {event}");
        assert_eq!(p["data"], presented(&task, *who), "{who:?}: {event}");
        assert_owner_shown_to_admins_only(&p["data"], *who, rid);
    }
    for (_, _, ws) in &mut sockets {
        ws.expect_silence(QUIET).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Revocation and logout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_closes_every_socket_of_the_principal_with_4003() {
    let server = users_server().await;
    let b1 = create_list_as(&server, Who::Bob, "bob one").await;
    let a1 = create_list_as(&server, Who::Alice, "alice one").await;
    let mut alice1 = server.ws_as("alice-token").await;
    let mut alice2 = server.ws_as("alice-token").await;
    let mut bob = server.ws_as("bob-token").await;
    let r = subscribe_group(&mut alice1, "a1", &a1["id"]).await;
    assert_eq!(r.status, 201);
    let r = subscribe_group(&mut bob, "b1", &b1["id"]).await;
    assert_eq!(r.status, 201);
    // A reply proves the socket is being served (registered as alice's).
    assert_eq!(
        ws_do(&mut alice2, "lists", "list", json!({})).await.status,
        200
    );

    assert_eq!(server.app.revoke("alice"), 2);
    assert_eq!(alice1.recv_close().await, Closed::Code(4003));
    assert_eq!(alice2.recv_close().await, Closed::Code(4003));
    assert_eq!(server.app.revoke("alice"), 0, "nothing left to close");
    assert_eq!(server.app.revoke("nobody"), 0);

    // Bob's socket stays open and working: requests and events.
    let r = ws_do(&mut bob, "lists", "list", json!({})).await;
    assert_eq!((r.status, r.body["count"].clone()), (200, json!(1)));
    create_task_as(&server, Who::Bob, "still live", &b1["id"]).await;
    let event = bob.recv_event().await;
    assert_eq!(event["payload"]["data"]["text"], "still live", "{event}");

    // Revoking closes sockets; the token itself is the authenticator's business (logout below).
    let mut again = server.ws_as("alice-token").await;
    assert_eq!(
        ws_do(&mut again, "lists", "list", json!({})).await.status,
        200
    );
    assert_eq!(server.app.revoke("alice"), 1);
    assert_eq!(again.recv_close().await, Closed::Code(4003));
}

#[tokio::test]
async fn logout_invalidates_the_token_and_closes_the_sockets() {
    let tokens = models::demo_tokens();
    let routes_tokens = tokens.clone();
    let server = TestServer::start_with_routes(users_app(tokens), move |app| {
        models::logout(app, routes_tokens)
    })
    .await;
    let as_alice = Who::Alice.http(&server);
    let as_anonymous = Who::Anonymous.http(&server);
    let as_bob = Who::Bob.http(&server);
    let mut alice1 = server.ws_as("alice-token").await;
    let mut alice2 = server.ws_as("alice-token").await;
    let mut bob = server.ws_as("bob-token").await;
    // A reply proves a socket is being served (registered as its principal's).
    for ws in [&mut alice1, &mut alice2, &mut bob] {
        assert_eq!(ws_do(ws, "lists", "list", json!({})).await.status, 200);
    }

    let r = Reply::from(as_alice.request(Method::POST, "/logout").await);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(alice1.recv_close().await, Closed::Code(4003));
    assert_eq!(alice2.recv_close().await, Closed::Code(4003));

    // The token is gone: 401 over HTTP and at the handshake.
    let r = Reply::from(as_alice.get("/api/tasks/").await);
    assert_eq!(
        (r.status, r.body),
        (401, json!({ "errors": [INVALID_TOKEN] }))
    );
    let refused =
        WsClient::connect_with(&server.ws_url(), &[("authorization", "Bearer alice-token")])
            .await
            .err();
    assert_eq!(refused, Some(401));
    let r = Reply::from(as_alice.request(Method::POST, "/logout").await);
    assert_eq!(r.status, 401, "logging out twice");
    let r = Reply::from(as_anonymous.request(Method::POST, "/logout").await);
    assert_eq!(r.status, 401, "logging out without a token");

    // Bob is unaffected.
    let r = ws_do(&mut bob, "tasks", "list", json!({})).await;
    assert_eq!(r.status, 200);
    let r = Reply::from(as_bob.get("/api/tasks/").await);
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 5. Origin
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn websocket_origin_must_be_allowed() {
    let server = TestServer::start(
        users_app(models::demo_tokens()).allowed_origins(["http://good.example"]),
    )
    .await;
    let url = server.ws_url();
    let auth = ("authorization", "Bearer alice-token");
    let connect = |headers: Vec<(&'static str, &'static str)>| {
        let url = url.clone();
        async move { WsClient::connect_with(&url, &headers).await }
    };
    let refusals = [
        (vec![auth, ("origin", "http://evil.example")], 403),
        // The Origin is checked first: no credential from there is still 403.
        (vec![("origin", "http://evil.example")], 403),
        (
            vec![auth, ("origin", "http://good.example.evil.example")],
            403,
        ),
        // An allowed Origin still needs a credential.
        (vec![("origin", "http://good.example")], 401),
    ];
    for (headers, status) in refusals {
        let context = format!("{headers:?}");
        assert_eq!(connect(headers).await.err(), Some(status), "{context}");
    }
    for headers in [vec![auth, ("origin", "http://good.example")], vec![auth]] {
        let mut ws = connect(headers.clone())
            .await
            .unwrap_or_else(|status| panic!("{headers:?}: refused with {status}"));
        let r = ws_do(&mut ws, "tasks", "list", json!({})).await;
        assert_eq!(r.status, 200, "{headers:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Throttling per principal
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn principal_throttle_is_shared_by_its_sockets_and_http_requests() {
    let server = TestServer::start(users_app(models::demo_tokens()).configure(|c| {
        c.principal_requests_per_second = 2.0;
        c.principal_request_burst = 3.0;
    }))
    .await;
    let as_alice = Who::Alice.http(&server);
    let as_bob = Who::Bob.http(&server);
    let throttled = json!({ "errors": [THROTTLED] });
    let mut alice1 = server.ws_as("alice-token").await;
    let mut alice2 = server.ws_as("alice-token").await;
    let mut bob = server.ws_as("bob-token").await;

    // Alice's burst of 3 is spent across both sockets...
    for first in [true, false, true] {
        let ws = if first { &mut alice1 } else { &mut alice2 };
        assert_eq!(ws_do(ws, "tasks", "list", json!({})).await.status, 200);
    }
    // ...so the next request is refused on either socket, and over HTTP.
    for ws in [&mut alice2, &mut alice1] {
        let r = ws_do(ws, "tasks", "list", json!({})).await;
        assert_eq!((r.status, &r.body), (429, &throttled));
    }
    let r = Reply::from(as_alice.get("/api/tasks/").await);
    assert_eq!((r.status, &r.body), (429, &throttled), "HTTP counts too");
    // Bob has a budget of his own.
    for _ in 0..3 {
        assert_eq!(
            ws_do(&mut bob, "tasks", "list", json!({})).await.status,
            200
        );
    }
    let r = Reply::from(as_bob.get("/api/tasks/").await);
    assert_eq!((r.status, &r.body), (429, &throttled));

    // The budget refills at 2 per second (refused requests do not spend it): one request gets
    // through over HTTP, after which the sockets are refused again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = Reply::from(as_alice.get("/api/tasks/").await);
        if r.status == 200 {
            break;
        }
        assert_eq!((r.status, &r.body), (429, &throttled));
        assert!(tokio::time::Instant::now() < deadline, "the budget refills");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = ws_do(&mut alice1, "tasks", "list", json!({})).await;
    assert_eq!(
        (r.status, &r.body),
        (429, &throttled),
        "the HTTP request spent it"
    );
    // A throttled socket stays open.
    assert_eq!(alice1.pending_count().await, 0);
}
