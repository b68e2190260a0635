//! docs/protocol.md §5 (custom actions), end to end: the example's `complete` and `clear_done`
//! over HTTP and WebSocket, the events their writes send (group, instance and live-query
//! subscribers, with their seqs), and, on the `counters` resource below (only in this test
//! binary), actions that fail, panic or are refused, which write nothing and send nothing.

mod common;

use std::time::Duration;

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use rest_live::prelude::*;
use rest_live::testing::{TestServer, WsClient};
use rest_live::{AppBuilder, Permissions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(250);

const COUNTERS_SQLITE: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/actions-migrations/sqlite");
const COUNTERS_POSTGRES: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/actions-migrations/postgres");

diesel::table! {
    counters (id) {
        id -> Integer,
        value -> Integer,
    }
}

/// A counter, with actions for every way an action can end.
#[resource(stream = "counters", permissions = CounterPolicy)]
#[subscribable]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[diesel(table_name = counters)]
pub struct Counter {
    #[resource(read_only)]
    pub id: i32,
    pub value: i32,
}

/// Everything is allowed but the action `secret`.
pub struct CounterPolicy;

impl Permissions<Counter> for CounterPolicy {
    fn allows(_principal: &Principal, action: Action) -> bool {
        action != Action::Custom("secret")
    }
}

#[derive(Deserialize)]
pub struct Step {
    pub by: i32,
}

#[derive(Serialize, Deserialize)]
pub struct Total {
    pub total: i64,
}

#[actions]
impl Counter {
    /// Adds `by` to the counter.
    #[action(detail)]
    fn bump(&mut self, _tx: &mut Tx<'_>, step: Step) -> Result<Counter, ApiError> {
        self.value += step.by;
        Ok(self.clone())
    }

    /// The counter's value, changing nothing.
    #[action(detail)]
    fn peek(&self, _tx: &mut Tx<'_>) -> Result<i32, ApiError> {
        Ok(self.value)
    }

    /// Bumps the counter, creates another, then refuses: nothing of it stays.
    #[action(detail)]
    fn bump_then_refuse(&mut self, tx: &mut Tx<'_>) -> Result<Counter, ApiError> {
        self.value += 1;
        tx.create(Counter { id: 0, value: 100 })?;
        Err(FieldErrors::single("value", "Refused after writing.").into())
    }

    /// Creates a counter, then panics.
    #[action(collection)]
    fn explode(tx: &mut Tx<'_>) -> Result<Total, ApiError> {
        tx.create(Counter { id: 0, value: 666 })?;
        panic!("boom");
    }

    /// The sum of every counter.
    #[action(collection)]
    fn total(tx: &mut Tx<'_>) -> Result<Total, ApiError> {
        let all: Vec<Counter> = tx.filter(&serde_json::Map::new())?;
        Ok(Total {
            total: all.iter().map(|c| i64::from(c.value)).sum(),
        })
    }

    /// Never allowed (see the policy).
    #[action(collection)]
    fn secret(_tx: &mut Tx<'_>) -> Result<Total, ApiError> {
        Ok(Total { total: 42 })
    }
}

/// The example with the `counters` table (registered in every app of this binary).
fn app() -> AppBuilder {
    common::models::builder()
        .throttle(false)
        .sqlite_migrations(COUNTERS_SQLITE)
        .postgres_migrations(COUNTERS_POSTGRES)
}

async fn task(server: &TestServer, list: i64, text: &str, done: bool) -> i64 {
    server
        .post(
            "/api/tasks/",
            json!({"text": text, "list_id": list, "done": done}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id")
}

fn seq(event: &Value) -> i64 {
    event["payload"]["seq"].as_i64().expect("seq")
}

#[tokio::test]
async fn complete_marks_a_task_done_over_http_and_websocket_and_subscribers_see_it() {
    let server = TestServer::start(app()).await;
    let list = common::create_list(&server, "one").await;
    let a = task(&server, list, "a", false).await;
    let b = task(&server, list, "b", false).await;
    let mut watcher = server.ws().await;
    watcher
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "g", "group": {"list_id": list}}),
        )
        .await
        .expect(201);
    watcher
        .call(
            "tasks",
            "subscribe_instance",
            json!({"request_id": "i", "pk": a}),
        )
        .await
        .expect(201);
    let open = watcher
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "q", "snapshot": true, "query": {"filter": {"list_id": list, "done": false}}}),
        )
        .await
        .expect(201);
    assert_eq!(open["results"].as_array().map(Vec::len), Some(2));

    // HTTP: the task as stored, done.
    let done = server
        .action("tasks", Some(a), "complete", json!({}))
        .await
        .expect(200);
    assert_eq!(done["id"], a);
    assert_eq!(done["done"], true);
    assert_eq!(done["text"], "a");
    // One change: the group and the instance see an update, the open-tasks query a delete, all
    // with its seq.
    let mut events: Vec<Value> = Vec::new();
    for _ in 0..3 {
        events.push(watcher.next_event().await);
    }
    events.sort_by_key(|e| e["payload"]["request_id"].to_string());
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["payload"]["request_id"].as_str().expect("id"),
                e["payload"]["action"].as_str().expect("action"),
            )
        })
        .collect();
    assert_eq!(actions, [("g", "update"), ("i", "update"), ("q", "delete")]);
    assert!(events.iter().all(|e| seq(e) == seq(&events[0])));
    assert_eq!(events[0]["payload"]["data"], done);

    // A done task stays done: nothing changes, nothing is sent.
    // (Without a body: no arguments.)
    let again = server
        .request(
            rest_live::testing::Method::POST,
            &format!("/api/tasks/{a}/complete/"),
        )
        .await
        .expect(200);
    assert_eq!(again, done);
    watcher.expect_silence(QUIET).await;

    // WebSocket: the same action by name, with the pk.
    let mut ws = server.ws().await;
    let reply = ws
        .call("tasks", "complete", json!({"pk": b, "data": {}}))
        .await;
    reply.assert_envelope();
    assert_eq!(reply.expect(200)["done"], true);
    let event = watcher.next_event().await;
    assert_eq!(seq(&event), seq(&events[0]) + 1);
    // Without `data` at all: the same.
    ws.call("tasks", "complete", json!({"pk": b}))
        .await
        .expect(200);
    assert_eq!(
        server.get(&format!("/api/tasks/{b}/")).await.expect(200)["done"],
        true
    );
}

#[tokio::test]
async fn clear_done_deletes_the_done_tasks_of_a_list_in_one_transaction() {
    let server = TestServer::start(app()).await;
    let (one, two) = (
        common::create_list(&server, "one").await,
        common::create_list(&server, "two").await,
    );
    let kept = task(&server, one, "open", false).await;
    let d1 = task(&server, one, "done 1", true).await;
    let d2 = task(&server, one, "done 2", true).await;
    let elsewhere = task(&server, two, "done elsewhere", true).await;
    let mut watcher = server.ws().await;
    watcher
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "g", "group": {"list_id": one}}),
        )
        .await
        .expect(201);

    let cleared = server
        .action("tasks", None::<i64>, "clear_done", json!({"list_id": one}))
        .await
        .expect(200);
    assert_eq!(cleared, json!({"deleted": 2}));
    let (e1, e2) = (watcher.next_event().await, watcher.next_event().await);
    let mut deleted = vec![
        e1["payload"]["data"]["pk"].clone(),
        e2["payload"]["data"]["pk"].clone(),
    ];
    deleted.sort_by_key(|v| v.as_i64());
    assert_eq!(deleted, [json!(d1), json!(d2)]);
    assert_eq!(e1["payload"]["action"], "delete");
    assert_eq!(
        seq(&e2),
        seq(&e1) + 1,
        "one event per deleted row, in order"
    );
    watcher.expect_silence(QUIET).await;
    let left = server
        .get(&format!("/api/tasks/?list_id={one}"))
        .await
        .expect(200);
    assert_eq!(left["results"][0]["id"], kept);
    assert_eq!(left["count"], 1);
    server
        .get(&format!("/api/tasks/{elsewhere}/"))
        .await
        .expect(200);

    // Over the socket; nothing left to clear.
    let mut ws = server.ws().await;
    let reply = ws
        .call("tasks", "clear_done", json!({"data": {"list_id": one}}))
        .await;
    assert_eq!(reply.expect(200), json!({"deleted": 0}));
    // Argument errors name the argument.
    let reply = ws.call("tasks", "clear_done", json!({"data": {}})).await;
    assert_eq!(reply.status, 400, "{reply}");
    assert_eq!(
        reply.errors,
        json!([{"list_id": ["This field is required."]}])
    );
    let response = server
        .action(
            "tasks",
            None::<i64>,
            "clear_done",
            json!({"list_id": "one"}),
        )
        .await;
    response.expect_field_errors(&["list_id"]);
    let response = server
        .action("tasks", None::<i64>, "clear_done", json!({}))
        .await;
    assert_eq!(
        response.json(),
        json!({"errors": [{"list_id": ["This field is required."]}]})
    );
    // An empty body is no arguments.
    let response = server
        .request(rest_live::testing::Method::POST, "/api/tasks/clear_done/")
        .await;
    assert_eq!(response.status, 400, "{response}");
}

#[tokio::test]
async fn actions_are_scoped_to_what_the_principal_may_read() {
    let tokens = common::models::demo_tokens();
    let server = TestServer::start(
        common::models::builder_with_users(tokens)
            .throttle(false)
            .sqlite_migrations(COUNTERS_SQLITE)
            .postgres_migrations(COUNTERS_POSTGRES),
    )
    .await;
    let alice = server.client_as("alice-token");
    let bob = server.client_as("bob-token");
    let list = alice
        .post("/api/lists/", json!({"name": "a"}))
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");
    let t = alice
        .post(
            "/api/tasks/",
            json!({"text": "mine", "list_id": list, "done": true}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");
    // Bob cannot see alice's task: 404, exactly like a missing one.
    let response = bob.action("tasks", Some(t), "complete", json!({})).await;
    assert_eq!(response.expect_error(404), "Not found");
    let response = bob
        .action("tasks", Some(987_654), "complete", json!({}))
        .await;
    assert_eq!(response.expect_error(404), "Not found");
    // Nor clear her list: nothing deleted.
    let cleared = bob
        .action("tasks", None::<i64>, "clear_done", json!({"list_id": list}))
        .await
        .expect(200);
    assert_eq!(cleared, json!({"deleted": 0}));
    alice.get(&format!("/api/tasks/{t}/")).await.expect(200);
    // Alice's own: the reply is presented for her (no `owner`).
    let reopened = alice
        .patch(&format!("/api/tasks/{t}/"), json!({"done": false}))
        .await
        .expect(200);
    assert!(reopened.get("owner").is_none());
    let done = alice
        .action("tasks", Some(t), "complete", json!({}))
        .await
        .expect(200);
    assert_eq!(done["done"], true);
    assert!(done.get("owner").is_none(), "{done}");
    let cleared = alice
        .action("tasks", None::<i64>, "clear_done", json!({"list_id": list}))
        .await
        .expect(200);
    assert_eq!(cleared, json!({"deleted": 1}));
}

#[tokio::test]
async fn an_action_that_fails_or_panics_writes_nothing_and_sends_nothing() {
    let server = TestServer::start(app()).await;
    let counter = server
        .post("/api/counters/", json!({"value": 1}))
        .await
        .expect(201);
    let id = counter["id"].as_i64().expect("id");
    let mut watcher = server.ws().await;
    watcher
        .call(
            "counters",
            "subscribe_instance",
            json!({"request_id": "c", "pk": id}),
        )
        .await
        .expect(201);
    let mut all = server.ws().await;
    all.call(
        "counters",
        "subscribe",
        json!({"request_id": "all", "query": {}}),
    )
    .await
    .expect(201);

    // An error after writing: the error, and nothing written.
    let response = server
        .action("counters", Some(id), "bump_then_refuse", json!({}))
        .await;
    assert_eq!(
        response.json(),
        json!({"errors": [{"value": ["Refused after writing."]}]}),
        "{response}"
    );
    // A panic after writing: 500, nothing written, over both transports.
    let response = server
        .action("counters", None::<i64>, "explode", json!({}))
        .await;
    assert_eq!(response.expect_error(500), "Internal error");
    let mut ws = server.ws().await;
    let reply = ws.call("counters", "explode", json!({})).await;
    assert_eq!(reply.status, 500, "{reply}");
    assert_eq!(reply.errors, json!(["Internal error"]));
    watcher.expect_silence(QUIET).await;
    all.expect_silence(QUIET).await;
    let page = server.get("/api/counters/").await.expect(200);
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(page["results"][0]["value"], 1);

    // The server, the socket and the pool go on: the next actions work.
    let bumped = ws
        .call("counters", "bump", json!({"pk": id, "data": {"by": 5}}))
        .await
        .expect(200);
    assert_eq!(bumped, json!({"id": id, "value": 6}));
    let event = watcher.next_event().await;
    assert_eq!(event["payload"]["action"], "update");
    assert_eq!(event["payload"]["data"], bumped);
    assert_eq!(all.next_event().await["payload"]["data"], bumped);
    // A read-only detail action returns any value and sends nothing.
    let peeked = server
        .action("counters", Some(id), "peek", json!({}))
        .await
        .expect(200);
    assert_eq!(peeked, json!(6));
    let total = server
        .action("counters", None::<i64>, "total", json!({}))
        .await
        .expect(200);
    assert_eq!(total, json!({"total": 6}));
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn refusals_and_unknown_actions_get_their_status() {
    let server = TestServer::start(app()).await;
    let counter = server
        .post("/api/counters/", json!({"value": 1}))
        .await
        .expect(201);
    let id = counter["id"].as_i64().expect("id");
    let mut ws: WsClient = server.ws().await;
    // 403: the policy refuses this action.
    let response = server
        .action("counters", None::<i64>, "secret", json!({}))
        .await;
    assert_eq!(
        response.expect_error(403),
        "You do not have permission to perform this action."
    );
    let reply = ws.call("counters", "secret", json!({})).await;
    assert_eq!(reply.status, 403, "{reply}");
    // 400: the arguments, named.
    let reply = ws
        .call("counters", "bump", json!({"pk": id, "data": {"by": "x"}}))
        .await;
    assert_eq!(reply.status, 400, "{reply}");
    assert_eq!(
        reply.errors[0].as_object().map(|o| o.contains_key("by")),
        Some(true)
    );
    let reply = ws.call("counters", "bump", json!({"pk": id})).await;
    assert_eq!(reply.errors, json!([{"by": ["This field is required."]}]));
    // A detail action needs its pk, of the right type.
    let reply = ws
        .call("counters", "bump", json!({"data": {"by": 1}}))
        .await;
    assert_eq!(reply.status, 400, "{reply}");
    let response = server
        .action("counters", Some("x"), "bump", json!({"by": 1}))
        .await;
    assert_eq!(response.status, 400, "{response}");
    // 404: no such object.
    let reply = ws
        .call(
            "counters",
            "bump",
            json!({"pk": 987_654, "data": {"by": 1}}),
        )
        .await;
    assert_eq!(reply.status, 404, "{reply}");
    // 405: an unknown action, as before.
    let reply = ws.call("counters", "explodee", json!({})).await;
    assert_eq!(reply.status, 405, "{reply}");
    assert_eq!(reply.errors, json!(["Method \"explodee\" not allowed."]));
    // An action's path takes only POST.
    let response = server.get("/api/counters/total/").await;
    assert_eq!(response.status, 405, "{response}");
    assert_eq!(response.header("allow"), Some("POST"));
    let response = server.get(&format!("/api/counters/{id}/bump/")).await;
    assert_eq!(response.status, 405, "{response}");
    // A detail action is not a collection action, nor the other way round.
    let response = server
        .action("counters", None::<i64>, "bump", json!({"by": 1}))
        .await;
    assert_eq!(response.status, 405, "{response}");
    let response = server
        .action("counters", Some(id), "total", json!({}))
        .await;
    assert_eq!(response.status, 404, "{response}");
    // Nothing of that changed the counter.
    assert_eq!(
        server
            .get(&format!("/api/counters/{id}/"))
            .await
            .expect(200)["value"],
        1
    );
}
