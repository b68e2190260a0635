//! Duplicate JSON keys (issue 15, point 5; docs/protocol.md §6 "Frames"): a WebSocket frame in either
//! format, or an HTTP body, with a key repeated in any object at any depth is a malformed request,
//! 400, never last-wins; and nothing is written: no row, no change-log entry, no event, no job,
//! no subscription. Each case has a control: the same request without the repeat is served.

mod common;

use std::time::Duration;

use rest_live::testing::{Method, RECV_TIMEOUT, Received, TestServer, WsClient};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

/// The to-do app without request throttling; lists 1 and 2, task 1 "milk" in list 1.
async fn seeded() -> TestServer {
    let server =
        TestServer::start(common::models::builder().configure(|c| c.requests_per_second = 0.0))
            .await;
    assert_eq!(common::create_list(&server, "one").await, 1);
    assert_eq!(common::create_list(&server, "two").await, 2);
    let mut ws = server.ws().await;
    assert_eq!(common::create_task(&mut ws, "milk", 1).await["id"], 1);
    server
}

/// Everything a request could have written: the rows, and each stream's last seq and job rows.
async fn footprint(server: &TestServer) -> Value {
    let mut rows = serde_json::Map::new();
    for stream in ["lists", "tasks"] {
        let page = server
            .get(&format!("/api/{stream}/?limit=1000"))
            .await
            .expect(200);
        rows.insert(stream.into(), page["results"].clone());
    }
    let heads = server
        .app
        .read(|mut c| {
            let mut heads = Vec::new();
            for stream in ["lists", "tasks", "jobs"] {
                heads.push(rest_live::testing::internals::stream_head(
                    c.reborrow(),
                    stream,
                )?);
            }
            Ok(heads)
        })
        .await
        .expect("read the change log");
    json!({"rows": rows, "heads": heads})
}

/// A second socket following list 1 and task 1: it must hear nothing of a refused request.
async fn watcher(server: &TestServer) -> WsClient {
    let mut ws = server.ws().await;
    let group = json!({"request_id": "g", "group": {"list_id": 1}});
    ws.call("tasks", "subscribe", group).await.expect(201);
    let one = json!({"request_id": "i", "pk": 1});
    ws.call("tasks", "subscribe_instance", one)
        .await
        .expect(201);
    ws
}

/// `(what, frame with a repeated key, the key, the same frame without the repeat)`.
fn envelope_cases() -> Vec<(&'static str, String, &'static str, Value)> {
    let t = |payload: &str| format!(r#"{{"stream": "tasks", "payload": {payload}}}"#);
    vec![
        (
            "action: a filter reads a retrieve, last-wins deletes",
            t(r#"{"action": "retrieve", "request_id": "d", "pk": 1, "action": "delete"}"#),
            "action",
            json!({"stream": "tasks", "payload": {"action": "retrieve", "request_id": "d", "pk": 1}}),
        ),
        (
            "stream at the top",
            r#"{"stream": "lists", "payload": {"action": "delete", "request_id": "d", "pk": 2}, "stream": "tasks"}"#.into(),
            "stream",
            json!({"stream": "tasks", "payload": {"action": "retrieve", "request_id": "d", "pk": 1}}),
        ),
        (
            "pk of a delete",
            t(r#"{"action": "delete", "request_id": "d", "pk": 99, "pk": 1}"#),
            "pk",
            json!({"stream": "tasks", "payload": {"action": "retrieve", "request_id": "d", "pk": 1}}),
        ),
        (
            "a field of a create",
            t(r#"{"action": "create", "request_id": "d", "data": {"text": "a", "list_id": 1, "text": "b"}}"#),
            "text",
            json!({"stream": "tasks", "payload": {"action": "create", "request_id": "d", "data": {"text": "b", "list_id": 1}}}),
        ),
        (
            "a field of a patch, written as an escape",
            t(r#"{"action": "patch", "request_id": "d", "pk": 1, "data": {"done": false, "\u0064one": true}}"#),
            "done",
            json!({"stream": "tasks", "payload": {"action": "patch", "request_id": "d", "pk": 1, "data": {"done": true}}}),
        ),
        (
            "deep inside an array of an update",
            t(r#"{"action": "update", "request_id": "d", "pk": 1, "data": {"text": "x", "list_id": 1}, "extra": [1, [{"a": {"b": 1, "b": 2}}]]}"#),
            "b",
            json!({"stream": "tasks", "payload": {"action": "update", "request_id": "d", "pk": 1, "data": {"text": "x", "list_id": 1}, "extra": [1, [{"a": {"b": 2}}]]}}),
        ),
        (
            "an argument of a job",
            r#"{"stream": "lists", "payload": {"action": "add_samples", "request_id": "d", "pk": 1, "data": {"count": 1, "count": 2}}}"#.into(),
            "count",
            json!({"stream": "lists", "payload": {"action": "add_samples", "request_id": "d", "pk": 1, "data": {"count": 2}}}),
        ),
        (
            "the group of a subscribe",
            t(r#"{"action": "subscribe", "request_id": "d", "group": {"list_id": 1, "list_id": 2}}"#),
            "list_id",
            json!({"stream": "tasks", "payload": {"action": "subscribe", "request_id": "d", "group": {"list_id": 2}}}),
        ),
    ]
}

#[tokio::test]
async fn ws_frames_with_a_duplicate_key_are_400_and_write_nothing() {
    let server = seeded().await;
    let mut watcher = watcher(&server).await;
    let before = footprint(&server).await;
    let mut ws = server.ws().await;
    for (what, text, key, _) in envelope_cases() {
        ws.send_text(&text).await;
        let reply = ws.recv_reply().await;
        let p = &reply["payload"];
        // A frame that could not be parsed: nothing of it is echoed.
        assert_eq!(reply["stream"], Value::Null, "{what}: {reply}");
        assert_eq!(p["action"], Value::Null, "{what}: {reply}");
        assert_eq!(p["request_id"], Value::Null, "{what}: {reply}");
        assert_eq!(p["response_status"], 400, "{what}: {reply}");
        assert_eq!(p["data"], Value::Null, "{what}: {reply}");
        let errors = p["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{what}: {reply}");
        let message = errors[0].as_str().expect("a message");
        let expected = format!(
            "Invalid JSON: duplicate key {} at line 1 column ",
            json!(key)
        );
        assert!(message.starts_with(&expected), "{what}: {message}");
    }
    assert_eq!(footprint(&server).await, before, "a refused frame wrote");
    // No subscription was made by the refused subscribe: a change to list 2 reaches nobody.
    let created = server
        .post("/api/tasks/", json!({"text": "in two", "list_id": 2}))
        .await
        .expect(201);
    ws.expect_silence(QUIET).await;
    watcher.expect_silence(QUIET).await;
    server
        .delete(&format!("/api/tasks/{}/", created["id"]))
        .await;

    // The controls: the same frames without the repeat are served on the same socket.
    for (what, _, _, control) in envelope_cases() {
        let reply = ws.request(control).await;
        let status = reply["payload"]["response_status"].as_u64();
        assert!(
            matches!(status, Some(200..=299)),
            "{what}: the control was refused: {reply}"
        );
    }
}

#[tokio::test]
async fn drl_messages_with_a_duplicate_key_are_400_and_subscribe_nothing() {
    let server = seeded().await;
    let path = server.app.config().drl_path.clone().expect("drl endpoint");
    let mut drl = WsClient::connect(&format!("ws://{}{path}", server.addr)).await;
    let cases = [
        (
            r#"{"model": "todolist.Task", "pk": 2, "pk": 1, "request_id": 1}"#,
            "pk",
        ),
        (
            r#"{"model": "todolist.List", "model": "todolist.Task", "list_id": 1, "request_id": 1}"#,
            "model",
        ),
        (
            r#"{"model": "todolist.Task", "list_id": 1, "unsubscribe": true, "unsubscribe": false}"#,
            "unsubscribe",
        ),
    ];
    for (text, key) in cases {
        drl.send_text(text).await;
        let frame = match drl.recv_any(RECV_TIMEOUT).await {
            Some(Received::Reply(f) | Received::Event(f)) => f,
            other => panic!("{text}: expected an error frame, got {other:?}"),
        };
        assert_eq!(frame["status"], 400, "{text}: {frame}");
        assert_eq!(frame["model"], Value::Null, "{text}: {frame}");
        assert_eq!(frame["request_id"], Value::Null, "{text}: {frame}");
        let error = frame["error"].as_str().expect("an error message");
        let expected = format!(
            "Invalid JSON: duplicate key {} at line 1 column ",
            json!(key)
        );
        assert!(error.starts_with(&expected), "{text}: {error}");
    }
    // Nothing is followed: a change to task 1 (and to list 1's tasks) sends nothing.
    server
        .patch("/api/tasks/1/", json!({"done": true}))
        .await
        .expect(200);
    drl.expect_silence(QUIET).await;
    // The control: without the repeat, the same subscription is made.
    drl.send(json!({"model": "todolist.Task", "pk": 1, "request_id": 1}))
        .await;
    let frame = match drl.recv_any(RECV_TIMEOUT).await {
        Some(Received::Reply(f) | Received::Event(f)) => f,
        other => panic!("expected a reply, got {other:?}"),
    };
    assert_eq!(frame["status"], 201, "{frame}");
}

#[tokio::test]
async fn http_bodies_with_a_duplicate_key_are_400_and_write_nothing() {
    let server = seeded().await;
    let mut watcher = watcher(&server).await;
    let before = footprint(&server).await;
    // (method, path, body with a repeated key, the key, the body without the repeat)
    let cases = [
        (
            Method::POST,
            "/api/tasks/",
            r#"{"text": "a", "list_id": 2, "list_id": 1}"#,
            "list_id",
            r#"{"text": "a", "list_id": 1}"#,
        ),
        (
            Method::PUT,
            "/api/tasks/1/",
            r#"{"text": "milk", "list_id": 1, "done": false, "done": true}"#,
            "done",
            r#"{"text": "milk", "list_id": 1, "done": true}"#,
        ),
        (
            Method::PATCH,
            "/api/tasks/1/",
            r#"{"text": "x", "t\u0065xt": "y"}"#,
            "text",
            r#"{"text": "y"}"#,
        ),
        (
            Method::PATCH,
            "/api/lists/1/",
            r#"{"name": "n", "meta": [{"a": 1}, {"a": {"z": 1, "y": 2, "z": 3}}]}"#,
            "z",
            r#"{"name": "n"}"#,
        ),
        (
            Method::POST,
            "/api/lists/1/add_samples/",
            r#"{"count": 1, "count": 3}"#,
            "count",
            r#"{"count": 3}"#,
        ),
    ];
    let client = server.client();
    for (method, path, body, key, _) in &cases {
        let response = client
            .request(method.clone(), path)
            .body(Some("application/json"), body.to_string())
            .await;
        let message = response.expect_error(400);
        let expected = format!(
            "Invalid JSON: duplicate key {} at line 1 column ",
            json!(key)
        );
        assert!(message.starts_with(&expected), "{response}");
    }
    assert_eq!(footprint(&server).await, before, "a refused body wrote");
    watcher.expect_silence(QUIET).await;

    // The controls are served.
    for (method, path, _, _, control) in &cases {
        let response = client
            .request(method.clone(), path)
            .body(Some("application/json"), control.to_string())
            .await;
        assert!(
            (200..300).contains(&response.status),
            "the control was refused: {response}"
        );
    }
}
