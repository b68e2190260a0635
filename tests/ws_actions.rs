//! docs/protocol.md §1 over a real socket: every action, every applicable error status, request_id
//! echo, and malformed frames. Each test sends frames and asserts the exact reply.

mod common;

use std::time::Duration;

use rest_live::testing::{Closed, WsClient};
use serde_json::{Value, json};

/// `{"stream": stream, "payload": {"action": action, "request_id": "r", ...extra}}`
fn frame(stream: &str, action: &str, extra: Value) -> Value {
    let mut payload = json!({ "action": action, "request_id": "r" });
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({ "stream": stream, "payload": payload })
}

fn status(reply: &Value) -> i64 {
    reply["payload"]["response_status"]
        .as_i64()
        .unwrap_or_else(|| panic!("no response_status in {reply}"))
}

fn data(reply: &Value) -> &Value {
    &reply["payload"]["data"]
}

fn errors(reply: &Value) -> &Value {
    &reply["payload"]["errors"]
}

async fn setup() -> (rest_live::testing::TestServer, WsClient, i64) {
    let server = common::server().await;
    let list = common::create_list(&server, "Groceries").await;
    let ws = server.ws().await;
    (server, ws, list)
}

#[tokio::test]
async fn create_replies_201_with_the_stored_object() {
    let (_server, mut ws, list) = setup().await;
    let reply = ws
        .request(
            json!({"stream": "tasks", "payload": {"action": "create", "request_id": "r1",
            "data": {"text": "a", "list_id": list}}}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"stream": "tasks", "payload": {"action": "create", "request_id": "r1",
            "response_status": 201, "errors": [],
            "data": {"id": 1, "text": "a", "done": false, "list_id": list, "priority": 0, "note": null}}})
    );
}

#[tokio::test]
async fn request_id_is_echoed_verbatim() {
    let (_server, mut ws, _) = setup().await;
    for id in [json!("abc"), json!(42), json!(-7), json!(1.5), json!("")] {
        let reply = ws
            .request(json!({"stream": "lists", "payload": {"action": "list", "request_id": id}}))
            .await;
        assert_eq!(reply["payload"]["request_id"], id);
        assert_eq!(status(&reply), 200);
    }
    let reply = ws
        .request(json!({"stream": "lists", "payload": {"action": "list"}}))
        .await;
    assert_eq!(reply["payload"]["request_id"], Value::Null);
    assert!(
        reply["payload"]
            .as_object()
            .unwrap()
            .contains_key("request_id")
    );
}

#[tokio::test]
async fn retrieve_returns_the_object_or_404() {
    let (_server, mut ws, list) = setup().await;
    let task = common::create_task(&mut ws, "a", list).await;
    let reply = ws
        .request(frame("tasks", "retrieve", json!({"pk": task["id"]})))
        .await;
    assert_eq!(status(&reply), 200);
    assert_eq!(data(&reply), &task);
    assert_eq!(errors(&reply), &json!([]));

    let reply = ws
        .request(frame("tasks", "retrieve", json!({"pk": 999})))
        .await;
    assert_eq!(status(&reply), 404);
    assert_eq!(errors(&reply), &json!(["Not found"]));
    assert_eq!(data(&reply), &Value::Null);
    assert_eq!(reply["stream"], "tasks");
    assert_eq!(reply["payload"]["action"], "retrieve");
}

#[tokio::test]
async fn pk_of_the_wrong_type_or_missing_is_400() {
    let (_server, mut ws, _) = setup().await;
    for pk in [
        json!("abc"),
        json!({"id": 1}),
        json!([1]),
        json!(true),
        json!(1.5),
    ] {
        let reply = ws
            .request(frame("tasks", "retrieve", json!({"pk": pk})))
            .await;
        assert_eq!(status(&reply), 400, "pk {pk}: {reply}");
        assert!(
            errors(&reply)[0].as_str().unwrap().contains("pk"),
            "{reply}"
        );
    }
    let reply = ws.request(frame("tasks", "retrieve", json!({}))).await;
    assert_eq!(status(&reply), 400);
    assert_eq!(errors(&reply), &json!(["\"pk\" is required."]));
}

#[tokio::test]
async fn list_pages_and_filters() {
    let (server, mut ws, list) = setup().await;
    let other = common::create_list(&server, "Other").await;
    for i in 0..30 {
        common::create_task(
            &mut ws,
            &format!("t{i}"),
            if i % 3 == 0 { other } else { list },
        )
        .await;
    }
    let reply = ws.request(frame("tasks", "list", json!({}))).await;
    assert_eq!(status(&reply), 200);
    assert_eq!(data(&reply)["count"], 30);
    assert_eq!(data(&reply)["limit"], 25);
    assert_eq!(data(&reply)["offset"], 0);
    assert_eq!(data(&reply)["results"].as_array().unwrap().len(), 25);

    let reply = ws
        .request(frame("tasks", "list", json!({"limit": 5, "offset": 10})))
        .await;
    let ids: Vec<i64> = data(&reply)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![11, 12, 13, 14, 15]);
    assert_eq!(data(&reply)["limit"], 5);
    assert_eq!(data(&reply)["offset"], 10);

    let reply = ws
        .request(frame("tasks", "list", json!({"data": {"list_id": other}})))
        .await;
    assert_eq!(data(&reply)["count"], 10);
    assert!(
        data(&reply)["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["list_id"] == other)
    );

    let reply = ws
        .request(frame("tasks", "list", json!({"limit": 5000})))
        .await;
    assert_eq!(data(&reply)["limit"], 1000);
}

#[tokio::test]
async fn list_rejects_bad_arguments() {
    let (_server, mut ws, _) = setup().await;
    // Conditions are refused in the validation shape, keyed as sent (docs/protocol.md §3).
    for (extra, key) in [
        (json!({"data": {"note__lt": "a"}}), "note__lt"), // a lookup the field does not declare
        (json!({"data": {"nope": 1}}), "nope"),           // no such field
        (json!({"data": {"list_id": "x"}}), "list_id"),   // wrong type
    ] {
        let reply = ws.request(frame("tasks", "list", extra.clone())).await;
        assert_eq!(status(&reply), 400, "{extra}: {reply}");
        assert!(errors(&reply)[0][key][0].is_string(), "{reply}");
        assert_eq!(data(&reply), &Value::Null);
    }
    for extra in [
        json!({"data": [1]}),   // not an object
        json!({"limit": "10"}), // wrong type
        json!({"limit": 0}),
        json!({"offset": -1}),
        json!({"offset": 1.5}),
    ] {
        let reply = ws.request(frame("tasks", "list", extra.clone())).await;
        assert_eq!(status(&reply), 400, "{extra}: {reply}");
        assert!(errors(&reply)[0].is_string(), "{reply}");
        assert_eq!(data(&reply), &Value::Null);
    }
}

#[tokio::test]
async fn update_replaces_all_writable_fields() {
    let (server, mut ws, list) = setup().await;
    let other = common::create_list(&server, "Other").await;
    let task = common::create_task(&mut ws, "a", list).await;
    let reply = ws
        .request(frame(
            "tasks",
            "update",
            json!({"pk": task["id"], "data": {"id": 555, "text": "b", "done": true, "list_id": other, "priority": 0, "note": null}}),
        ))
        .await;
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(
        data(&reply),
        &json!({"id": task["id"], "text": "b", "done": true, "list_id": other, "priority": 0, "note": null})
    );

    // A full update without a required field is refused and changes nothing.
    let reply = ws
        .request(frame(
            "tasks",
            "update",
            json!({"pk": task["id"], "data": {"done": false}}),
        ))
        .await;
    assert_eq!(status(&reply), 400);
    assert_eq!(
        errors(&reply),
        &json!([{"list_id": ["This field is required."], "text": ["This field is required."]}])
    );
    let reply = ws
        .request(frame("tasks", "retrieve", json!({"pk": task["id"]})))
        .await;
    assert_eq!(data(&reply)["done"], true);

    let reply = ws
        .request(frame(
            "tasks",
            "update",
            json!({"pk": 999, "data": {"text": "x", "list_id": list}}),
        ))
        .await;
    assert_eq!(status(&reply), 404);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields() {
    let (_server, mut ws, list) = setup().await;
    let task = common::create_task(&mut ws, "a", list).await;
    let reply = ws
        .request(frame(
            "tasks",
            "patch",
            json!({"pk": task["id"], "data": {"done": true}}),
        ))
        .await;
    assert_eq!(status(&reply), 200);
    assert_eq!(
        data(&reply),
        &json!({"id": task["id"], "text": "a", "done": true, "list_id": list, "priority": 0, "note": null})
    );
    let reply = ws
        .request(frame(
            "tasks",
            "patch",
            json!({"pk": 999, "data": {"done": true}}),
        ))
        .await;
    assert_eq!(status(&reply), 404);
}

#[tokio::test]
async fn delete_replies_204_and_the_object_is_gone() {
    let (_server, mut ws, list) = setup().await;
    let task = common::create_task(&mut ws, "a", list).await;
    let reply = ws
        .request(frame("tasks", "delete", json!({"pk": task["id"]})))
        .await;
    assert_eq!(
        reply,
        json!({"stream": "tasks", "payload": {"action": "delete", "request_id": "r",
            "response_status": 204, "errors": [], "data": null}})
    );
    let reply = ws
        .request(frame("tasks", "retrieve", json!({"pk": task["id"]})))
        .await;
    assert_eq!(status(&reply), 404);
    let reply = ws
        .request(frame("tasks", "delete", json!({"pk": task["id"]})))
        .await;
    assert_eq!(status(&reply), 404);
}

#[tokio::test]
async fn validation_failures_are_400_with_field_errors() {
    let (_server, mut ws, list) = setup().await;
    let cases = [
        (
            json!({"list_id": list}),
            json!({"text": ["This field is required."]}),
        ),
        (
            json!({"text": 5, "list_id": list}),
            json!({"text": ["Invalid value: invalid type: integer `5`, expected a string."]}),
        ),
        (
            json!({"text": null, "list_id": list}),
            json!({"text": ["This field may not be null."]}),
        ),
        (
            json!({"text": "x".repeat(141), "list_id": list}),
            json!({"text": ["Ensure this field has no more than 140 characters."]}),
        ),
        (
            json!({"text": "   ", "list_id": list}),
            json!({"text": ["This field may not be blank."]}),
        ),
        (
            json!({"text": "a", "list_id": list, "colour": "red"}),
            json!({"colour": ["Unknown field."]}),
        ),
    ];
    for (input, expected) in cases {
        let reply = ws
            .request(frame("tasks", "create", json!({"data": input})))
            .await;
        assert_eq!(status(&reply), 400, "{input}: {reply}");
        assert_eq!(errors(&reply), &json!([expected]), "{input}");
        assert_eq!(data(&reply), &Value::Null);
    }
    // Exactly 140 characters is fine; nothing above was stored.
    let reply = ws
        .request(frame(
            "tasks",
            "create",
            json!({"data": {"text": "x".repeat(140), "list_id": list}}),
        ))
        .await;
    assert_eq!(status(&reply), 201);
    let reply = ws.request(frame("tasks", "list", json!({}))).await;
    assert_eq!(data(&reply)["count"], 1);
}

#[tokio::test]
async fn constraint_violation_is_409_and_writes_nothing() {
    let (_server, mut ws, _) = setup().await;
    let reply = ws
        .request(frame(
            "tasks",
            "create",
            json!({"data": {"text": "a", "list_id": 999}}),
        ))
        .await;
    assert_eq!(status(&reply), 409, "{reply}");
    assert!(
        errors(&reply)[0].as_str().unwrap().contains("foreign key"),
        "{reply}"
    );
    let reply = ws.request(frame("tasks", "list", json!({}))).await;
    assert_eq!(data(&reply)["count"], 0);
}

#[tokio::test]
async fn unknown_stream_is_404() {
    let (_server, mut ws, _) = setup().await;
    let reply = ws.request(frame("nope", "list", json!({}))).await;
    assert_eq!(
        reply,
        json!({"stream": "nope", "payload": {"action": "list", "request_id": "r",
            "response_status": 404, "errors": ["Unknown stream \"nope\""], "data": null}})
    );
}

#[tokio::test]
async fn unknown_missing_or_disallowed_action_is_405() {
    let (_server, mut ws, _) = setup().await;
    let reply = ws.request(frame("tasks", "frobnicate", json!({}))).await;
    assert_eq!(status(&reply), 405);
    assert_eq!(
        errors(&reply),
        &json!(["Method \"frobnicate\" not allowed."])
    );

    let reply = ws
        .request(json!({"stream": "tasks", "payload": {"request_id": "r"}}))
        .await;
    assert_eq!(status(&reply), 405);
    assert_eq!(reply["payload"]["action"], Value::Null);
    assert_eq!(errors(&reply), &json!(["Method \"null\" not allowed."]));

    // Lists declare no group key: group subscriptions are not an action of theirs.
    let reply = ws
        .request(frame("lists", "subscribe", json!({"group": {"id": 1}})))
        .await;
    assert_eq!(status(&reply), 405);
    assert_eq!(
        errors(&reply),
        &json!(["Method \"subscribe\" not allowed."])
    );
}

#[tokio::test]
async fn malformed_frames_get_400_with_null_stream_and_action() {
    let (_server, mut ws, list) = setup().await;
    let bad = [
        "not json",
        "{",
        "[1, 2]",
        "\"text\"",
        "42",
        "null",
        "{}",
        r#"{"stream": "tasks"}"#,
        r#"{"stream": "tasks", "payload": 5}"#,
        r#"{"stream": "tasks", "payload": [1]}"#,
        r#"{"stream": 7, "payload": {"action": "list"}}"#,
        r#"{"payload": {"action": "list"}}"#,
    ];
    for text in bad {
        ws.send_text(text).await;
        let reply = ws.recv_reply().await;
        assert_eq!(reply["stream"], Value::Null, "{text}: {reply}");
        assert_eq!(reply["payload"]["action"], Value::Null, "{text}");
        assert_eq!(reply["payload"]["request_id"], Value::Null, "{text}");
        assert_eq!(status(&reply), 400, "{text}");
        assert_eq!(data(&reply), &Value::Null, "{text}");
        assert!(errors(&reply)[0].is_string(), "{text}");
    }
    // The same socket keeps working.
    let task = common::create_task(&mut ws, "still here", list).await;
    assert_eq!(task["text"], "still here");
}

#[tokio::test]
async fn wrong_argument_types_are_400() {
    let (_server, mut ws, list) = setup().await;
    let reply = ws
        .request(json!({"stream": "tasks", "payload": {"action": 5, "request_id": "r"}}))
        .await;
    assert_eq!(status(&reply), 400);
    assert_eq!(errors(&reply), &json!(["\"action\" must be a string."]));

    let reply = ws
        .request(json!({"stream": "tasks", "payload": {"action": "list", "request_id": {"a": 1}}}))
        .await;
    assert_eq!(status(&reply), 400);
    assert_eq!(reply["payload"]["request_id"], Value::Null);

    let reply = ws
        .request(frame("tasks", "create", json!({"data": "text"})))
        .await;
    assert_eq!(status(&reply), 400);
    assert_eq!(errors(&reply), &json!(["\"data\" must be an object."]));
    assert_eq!(reply["stream"], "tasks");
    assert_eq!(reply["payload"]["action"], "create");

    ws.send_binary(b"{\"stream\":\"tasks\"}".to_vec()).await;
    let reply = ws.recv_reply().await;
    assert_eq!(status(&reply), 400);
    assert_eq!(reply["stream"], Value::Null);

    common::create_task(&mut ws, "after", list).await;
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_socket_with_1009() {
    let (server, mut ws, list) = setup().await;
    let mut bystander = server.ws().await;
    let reply = bystander
        .request(frame(
            "tasks",
            "subscribe",
            json!({"group": {"list_id": list}}),
        ))
        .await;
    assert_eq!(status(&reply), 201);

    let huge = format!(
        r#"{{"stream": "tasks", "payload": {{"action": "create", "data": {{"text": "{}", "list_id": {list}}}}}}}"#,
        "x".repeat((1 << 20) + 10)
    );
    ws.send_text(&huge).await;
    assert_eq!(ws.recv_close().await, Closed::Code(1009));

    // Nobody else noticed, and nothing was written.
    let mut writer = server.ws().await;
    let task = common::create_task(&mut writer, "small", list).await;
    let event = bystander.recv_event().await;
    assert_eq!(event["payload"]["action"], "create");
    assert_eq!(event["payload"]["data"], task);
    let reply = writer.request(frame("tasks", "list", json!({}))).await;
    assert_eq!(data(&reply)["count"], 1);
    bystander.expect_silence(Duration::from_millis(200)).await;
}
