//! The django-rest-live subscription format on its own endpoint (`/ws/subscribe/`): a second codec
//! over the same hub. Send this message, expect that frame.

mod common;

use std::time::Duration;

use common::models;
use rest_live::testing::{Closed, RECV_TIMEOUT, Received, TestServer, WsClient};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

fn drl_url(server: &TestServer) -> String {
    let path = server
        .app
        .config()
        .drl_path
        .clone()
        .expect("drl endpoint on");
    format!("ws://{}{}", server.addr, path)
}

async fn drl(server: &TestServer) -> WsClient {
    WsClient::connect(&drl_url(server)).await
}

async fn drl_as(server: &TestServer, token: &str) -> WsClient {
    let auth = format!("Bearer {token}");
    WsClient::connect_with(&drl_url(server), &[("authorization", auth.as_str())])
        .await
        .unwrap_or_else(|status| panic!("handshake refused with HTTP {status}"))
}

/// The next frame, whatever it is (this format has no envelope to tell replies from events).
async fn next(ws: &mut WsClient) -> Value {
    match ws.recv_any(RECV_TIMEOUT).await {
        Some(Received::Reply(frame) | Received::Event(frame)) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Sends `message` and expects exactly `frame` back.
async fn exchange(ws: &mut WsClient, message: Value, frame: Value) {
    ws.send(message).await;
    assert_eq!(next(ws).await, frame);
}

async fn http(server: &TestServer, method: &str, path: &str, body: Value) -> Value {
    let response = server
        .http()
        .request(method.parse().expect("method"), server.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("HTTP request");
    assert!(
        response.status().is_success(),
        "{method} {path}: {response:?}"
    );
    serde_json::from_str(&response.text().await.expect("body")).unwrap_or(Value::Null)
}

async fn create_task(server: &TestServer, text: &str, list_id: i64) -> Value {
    http(
        server,
        "POST",
        "/api/tasks/",
        json!({"text": text, "list_id": list_id}),
    )
    .await
}

#[tokio::test]
async fn follows_one_object_by_pk_through_update_and_delete() {
    let server = common::server().await;
    let list = common::create_list(&server, "Groceries").await;
    let task = create_task(&server, "milk", list).await;
    let id = task["id"].clone();
    let mut ws = drl(&server).await;

    exchange(
        &mut ws,
        json!({"model": "todolist.Task", "pk": id, "request_id": "s1"}),
        json!({"model": "todolist.Task", "request_id": "s1", "status": 201}),
    )
    .await;

    http(
        &server,
        "PATCH",
        &format!("/api/tasks/{id}/"),
        json!({"done": true}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"model": "todolist.Task", "action": "UPDATED",
               "payload": {"id": id, "text": "milk", "done": true, "list_id": list, "priority": 0, "note": null}})
    );

    let deleted = server
        .http()
        .delete(server.url(&format!("/api/tasks/{id}/")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status().as_u16(), 204);
    // As in django-rest-live, a deletion carries the object (as the subscriber last saw it).
    assert_eq!(
        next(&mut ws).await,
        json!({"model": "todolist.Task", "action": "DELETED",
               "payload": {"id": id, "text": "milk", "done": true, "list_id": list, "priority": 0, "note": null}})
    );
    ws.expect_silence(QUIET).await;
}

#[tokio::test]
async fn follows_a_group_by_any_declared_key_relative_to_the_group() {
    let server = common::server().await;
    let one = common::create_list(&server, "one").await;
    let two = common::create_list(&server, "two").await;
    let mut first = drl(&server).await;
    let mut second = drl(&server).await;
    exchange(
        &mut first,
        json!({"model": "todolist.Task", "list_id": one, "request_id": 1}),
        json!({"model": "todolist.Task", "request_id": 1, "status": 201}),
    )
    .await;
    exchange(
        &mut second,
        json!({"model": "todolist.Task", "list_id": two, "request_id": 2}),
        json!({"model": "todolist.Task", "request_id": 2, "status": 201}),
    )
    .await;

    // Written over the main endpoint: the hub is the same.
    let mut envelope = server.ws().await;
    let task = common::create_task(&mut envelope, "bread", one).await;
    let id = task["id"].clone();
    assert_eq!(
        next(&mut first).await,
        json!({"model": "todolist.Task", "action": "CREATED",
               "payload": {"id": id, "text": "bread", "done": false, "list_id": one, "priority": 0, "note": null}})
    );

    // A move from list one to list two: it leaves one, arrives in two.
    http(
        &server,
        "PATCH",
        &format!("/api/tasks/{id}/"),
        json!({"list_id": two}),
    )
    .await;
    assert_eq!(
        next(&mut first).await,
        json!({"model": "todolist.Task", "action": "DELETED",
               "payload": {"id": id, "text": "bread", "done": false, "list_id": one, "priority": 0, "note": null}})
    );
    assert_eq!(
        next(&mut second).await,
        json!({"model": "todolist.Task", "action": "CREATED",
               "payload": {"id": id, "text": "bread", "done": false, "list_id": two, "priority": 0, "note": null}})
    );
    first.expect_silence(QUIET).await;
    second.expect_silence(QUIET).await;
}

#[tokio::test]
async fn success_is_silent_without_a_request_id_as_in_django_rest_live() {
    let server = common::server().await;
    let list = common::create_list(&server, "quiet").await;
    let mut ws = drl(&server).await;
    ws.send(json!({"model": "todolist.Task", "list_id": list}))
        .await;
    // Messages are handled in order: once this error is back, the subscription is in place.
    exchange(
        &mut ws,
        json!({"model": "todolist.Nope", "pk": 1}),
        json!({"model": "todolist.Nope", "request_id": null, "status": 404,
               "error": "Unknown model \"todolist.Nope\""}),
    )
    .await;
    let task = create_task(&server, "eggs", list).await;
    let event = next(&mut ws).await;
    assert_eq!(event["action"], "CREATED");
    assert_eq!(event["payload"], task);
}

#[tokio::test]
async fn unsubscribe_stops_the_events() {
    let server = common::server().await;
    let list = common::create_list(&server, "errands").await;
    let mut ws = drl(&server).await;
    exchange(
        &mut ws,
        json!({"model": "todolist.Task", "list_id": list, "request_id": "a"}),
        json!({"model": "todolist.Task", "request_id": "a", "status": 201}),
    )
    .await;
    exchange(
        &mut ws,
        json!({"model": "todolist.Task", "list_id": list, "unsubscribe": true, "request_id": "b"}),
        json!({"model": "todolist.Task", "request_id": "b", "status": 204}),
    )
    .await;
    create_task(&server, "stamps", list).await;
    ws.expect_silence(QUIET).await;
    // Nothing left to stop.
    exchange(
        &mut ws,
        json!({"model": "todolist.Task", "list_id": list, "unsubscribe": true}),
        json!({"model": "todolist.Task", "request_id": null, "status": 404, "error": "Not found"}),
    )
    .await;
}

#[tokio::test]
async fn subscribing_twice_is_one_subscription() {
    let server = common::server().await;
    let list = common::create_list(&server, "twice").await;
    let mut ws = drl(&server).await;
    for rid in ["x", "y"] {
        exchange(
            &mut ws,
            json!({"model": "todolist.Task", "list_id": list, "request_id": rid}),
            json!({"model": "todolist.Task", "request_id": rid, "status": 201}),
        )
        .await;
    }
    create_task(&server, "once", list).await;
    assert_eq!(next(&mut ws).await["action"], "CREATED");
    ws.expect_silence(QUIET).await;
}

#[tokio::test]
async fn errors_name_what_is_wrong_instead_of_silence() {
    let server = common::server().await;
    let mut ws = drl(&server).await;
    let error = |model: Value, status: u16, message: &str| json!({"model": model, "request_id": null, "status": status, "error": message});
    let cases = [
        (
            json!({"model": "todolist.Nope", "pk": 1}),
            error(
                json!("todolist.Nope"),
                404,
                "Unknown model \"todolist.Nope\"",
            ),
        ),
        (
            json!({"model": "todolist.Task", "owner": "x"}),
            error(
                json!("todolist.Task"),
                400,
                "Unknown key \"owner\": subscribe to todolist.Task by \"pk\" or \"list_id\".",
            ),
        ),
        (
            // Lists are followed by pk only.
            json!({"model": "todolist.List", "list_id": 1}),
            error(
                json!("todolist.List"),
                400,
                "Unknown key \"list_id\": subscribe to todolist.List by \"pk\".",
            ),
        ),
        (
            json!({"model": "todolist.Task"}),
            error(
                json!("todolist.Task"),
                400,
                "Give exactly one key: subscribe to todolist.Task by \"pk\" or \"list_id\".",
            ),
        ),
        (
            json!({"model": "todolist.Task", "pk": 1, "list_id": 1}),
            error(
                json!("todolist.Task"),
                400,
                "Give exactly one key: subscribe to todolist.Task by \"pk\" or \"list_id\".",
            ),
        ),
        (
            json!({"model": "todolist.Task", "pk": 424242}),
            error(json!("todolist.Task"), 404, "Not found"),
        ),
        (
            json!({"pk": 1}),
            error(Value::Null, 400, "\"model\" is required (\"app.Model\")."),
        ),
        (
            json!({"model": "todolist.Task", "list_id": 1, "unsubscribe": "yes"}),
            error(
                json!("todolist.Task"),
                400,
                "\"unsubscribe\" must be a boolean.",
            ),
        ),
    ];
    for (message, frame) in cases {
        exchange(&mut ws, message, frame).await;
    }
    // A request_id is echoed by errors too.
    exchange(
        &mut ws,
        json!({"model": "todolist.Task", "pk": "seven", "request_id": "bad-pk"}),
        json!({"model": "todolist.Task", "request_id": "bad-pk", "status": 400,
               "error": "Invalid pk: invalid type: string \"seven\", expected i32"}),
    )
    .await;
    ws.send_text("not json").await;
    let frame = next(&mut ws).await;
    assert_eq!(frame["status"], 400);
    assert_eq!(frame["model"], Value::Null);
    assert!(
        frame["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Invalid JSON")),
        "{frame}"
    );
    // The socket stays open after errors.
    let list = common::create_list(&server, "still open").await;
    exchange(
        &mut ws,
        json!({"model": "todolist.Task", "list_id": list, "request_id": "ok"}),
        json!({"model": "todolist.Task", "request_id": "ok", "status": 201}),
    )
    .await;
}

#[tokio::test]
async fn both_formats_get_the_same_change_from_one_hub() {
    let server = common::server().await;
    let list = common::create_list(&server, "shared").await;
    let mut old_style = drl(&server).await;
    exchange(
        &mut old_style,
        json!({"model": "todolist.Task", "list_id": list, "request_id": "d"}),
        json!({"model": "todolist.Task", "request_id": "d", "status": 201}),
    )
    .await;
    let mut envelope = server.ws().await;
    let reply = envelope
        .request(json!({"stream": "tasks", "payload": {
            "action": "subscribe", "request_id": "e", "group": {"list_id": list}}}))
        .await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");

    let task = create_task(&server, "both", list).await;
    let event = envelope.recv_event().await;
    assert_eq!(event["payload"]["action"], "create");
    assert_eq!(event["payload"]["data"], task);
    assert_eq!(
        next(&mut old_style).await,
        json!({"model": "todolist.Task", "action": "CREATED", "payload": task})
    );
}

#[tokio::test]
async fn authentication_and_permissions_are_those_of_the_main_endpoint() {
    let server = TestServer::start(models::builder_with_users(models::demo_tokens())).await;
    // No credential: refused before the upgrade, as on /ws.
    let refused = WsClient::connect_with(&drl_url(&server), &[]).await;
    assert_eq!(refused.err(), Some(401));

    let create = |token: &'static str, path: &'static str, body: Value| {
        let server = &server;
        async move {
            let response = server
                .http()
                .post(server.url(path))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("POST");
            assert_eq!(response.status().as_u16(), 201);
            serde_json::from_str::<Value>(&response.text().await.expect("body")).expect("JSON")
        }
    };
    let bobs_list = create("bob-token", "/api/lists/", json!({"name": "bob's"})).await;
    let bobs_task = create(
        "bob-token",
        "/api/tasks/",
        json!({"text": "secret", "list_id": bobs_list["id"]}),
    )
    .await;

    let mut alice = drl_as(&server, "alice-token").await;
    // Someone else's object answers like a missing one.
    exchange(
        &mut alice,
        json!({"model": "todolist.Task", "pk": bobs_task["id"]}),
        json!({"model": "todolist.Task", "request_id": null, "status": 404, "error": "Not found"}),
    )
    .await;
    // A group of someone else's objects: subscribed, but none of them is ever sent.
    exchange(
        &mut alice,
        json!({"model": "todolist.Task", "list_id": bobs_list["id"], "request_id": 1}),
        json!({"model": "todolist.Task", "request_id": 1, "status": 201}),
    )
    .await;
    create(
        "bob-token",
        "/api/tasks/",
        json!({"text": "also secret", "list_id": bobs_list["id"]}),
    )
    .await;
    alice.expect_silence(QUIET).await;

    // Her own objects reach her, presented as for her (no owner field: admins only).
    let alices_list = create("alice-token", "/api/lists/", json!({"name": "alice's"})).await;
    exchange(
        &mut alice,
        json!({"model": "todolist.Task", "list_id": alices_list["id"], "request_id": 2}),
        json!({"model": "todolist.Task", "request_id": 2, "status": 201}),
    )
    .await;
    let mine = create(
        "alice-token",
        "/api/tasks/",
        json!({"text": "mine", "list_id": alices_list["id"]}),
    )
    .await;
    let event = next(&mut alice).await;
    assert_eq!(event["action"], "CREATED");
    assert_eq!(event["payload"], mine);
    assert!(event["payload"].get("owner").is_none(), "{event}");

    // The admin sees the owner.
    let mut carol = drl_as(&server, "carol-token").await;
    exchange(
        &mut carol,
        json!({"model": "todolist.Task", "list_id": bobs_list["id"], "request_id": 3}),
        json!({"model": "todolist.Task", "request_id": 3, "status": 201}),
    )
    .await;
    create(
        "bob-token",
        "/api/tasks/",
        json!({"text": "seen by the admin", "list_id": bobs_list["id"]}),
    )
    .await;
    let event = next(&mut carol).await;
    assert_eq!(event["payload"]["owner"], "bob");

    // Revoking a principal closes its sockets on this endpoint too.
    assert_eq!(server.app.revoke("alice"), 1);
    assert_eq!(alice.recv_close().await, Closed::Code(4003));
}
