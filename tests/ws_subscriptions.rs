//! Subscriptions and events (docs/protocol.md §1 "Events"): who receives what, tagged how, exactly once,
//! only after commit, in seq order.

mod common;

use std::time::Duration;

use rest_live::testing::{WsClient, WsReply};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

/// `action` on `stream` with request_id `request_id` and `args`.
async fn call(
    ws: &mut WsClient,
    stream: &str,
    action: &str,
    request_id: &str,
    args: Value,
) -> WsReply {
    let mut args = args;
    args["request_id"] = json!(request_id);
    ws.call(stream, action, args).await
}

async fn subscribe_group(ws: &mut WsClient, request_id: &str, list: i64) -> i64 {
    let group = json!({"group": {"list_id": list}});
    let reply = call(ws, "tasks", "subscribe", request_id, group).await;
    assert_eq!(reply.status, 201, "{reply}");
    assert_eq!(reply.payload()["request_id"], request_id);
    reply.data["seq"].as_i64().expect("seq")
}

async fn subscribe_instance(ws: &mut WsClient, stream: &str, request_id: &str, pk: &Value) {
    let reply = call(
        ws,
        stream,
        "subscribe_instance",
        request_id,
        json!({"pk": pk}),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply}");
    assert!(reply.data["seq"].is_i64(), "{reply}");
}

/// A write of the writer socket (request_id `"w"`).
async fn write(ws: &mut WsClient, stream: &str, action: &str, args: Value) -> WsReply {
    call(ws, stream, action, "w", args).await
}

async fn patch(ws: &mut WsClient, pk: &Value, data: Value) -> Value {
    let reply = write(ws, "tasks", "patch", json!({"pk": pk, "data": data})).await;
    assert_eq!(reply.status, 200, "{reply}");
    reply.data
}

/// Asserts an event's envelope and returns its seq.
fn check_event(event: &Value, action: &str, request_id: &str, data: &Value) -> i64 {
    let status = match action {
        "create" => 201,
        "update" => 200,
        _ => 204,
    };
    assert_eq!(event["stream"], "tasks", "{event}");
    let p = &event["payload"];
    assert_eq!(p["action"], action, "{event}");
    assert_eq!(p["request_id"], request_id, "{event}");
    assert_eq!(p["response_status"], status, "{event}");
    assert_eq!(p["errors"], json!([]), "{event}");
    assert_eq!(&p["data"], data, "{event}");
    p["seq"].as_i64().expect("seq")
}

#[tokio::test]
async fn instance_subscription_receives_update_and_delete_tagged_with_its_request_id() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    let task = common::create_task(&mut writer, "a", list).await;
    subscribe_instance(&mut sub, "tasks", "mine", &task["id"]).await;

    let updated = patch(&mut writer, &task["id"], json!({"done": true})).await;
    let s1 = check_event(&sub.next_event().await, "update", "mine", &updated);

    let reply = write(&mut writer, "tasks", "delete", json!({"pk": task["id"]})).await;
    assert_eq!(reply.status, 204);
    let s2 = check_event(
        &sub.next_event().await,
        "delete",
        "mine",
        &json!({"pk": task["id"]}),
    );
    assert!(s2 > s1);

    // A create in the same list is not this subscription's business.
    common::create_task(&mut writer, "b", list).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn subscribing_to_a_missing_object_is_404() {
    let server = common::server().await;
    let mut ws = server.ws().await;
    let reply = call(
        &mut ws,
        "tasks",
        "subscribe_instance",
        "s",
        json!({"pk": 999}),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.errors, json!(["Not found"]));
    let reply = call(
        &mut ws,
        "tasks",
        "subscribe_instance",
        "s",
        json!({"pk": "x"}),
    )
    .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn two_subscriptions_on_one_socket_are_told_apart() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    let a = common::create_task(&mut writer, "a", list).await;
    let b = common::create_task(&mut writer, "b", list).await;
    subscribe_instance(&mut sub, "tasks", "sub-a", &a["id"]).await;
    subscribe_instance(&mut sub, "tasks", "sub-b", &b["id"]).await;

    let b2 = patch(&mut writer, &b["id"], json!({"text": "B"})).await;
    check_event(&sub.next_event().await, "update", "sub-b", &b2);
    let a2 = patch(&mut writer, &a["id"], json!({"text": "A"})).await;
    check_event(&sub.next_event().await, "update", "sub-a", &a2);
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn unsubscribe_instance_stops_events() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    let task = common::create_task(&mut writer, "a", list).await;
    subscribe_instance(&mut sub, "tasks", "s1", &task["id"]).await;

    let pk = json!({"pk": task["id"]});
    let reply = call(&mut sub, "tasks", "unsubscribe_instance", "s1", pk.clone()).await;
    assert_eq!(
        reply.frame,
        json!({"stream": "tasks", "payload": {"action": "unsubscribe_instance", "request_id": "s1",
            "response_status": 204, "errors": [], "data": null}})
    );
    patch(&mut writer, &task["id"], json!({"done": true})).await;
    sub.expect_silence(QUIET).await;

    // Unsubscribing again, or a subscription that never was, is 404.
    let reply = call(&mut sub, "tasks", "unsubscribe_instance", "s1", pk).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.errors, json!(["Not found"]));
}

#[tokio::test]
async fn group_subscription_sees_only_its_group() {
    let server = common::server().await;
    let one = common::create_list(&server, "one").await;
    let two = common::create_list(&server, "two").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    subscribe_group(&mut sub, "l1", one).await;

    let elsewhere = common::create_task(&mut writer, "other list", two).await;
    let here = common::create_task(&mut writer, "this list", one).await;
    check_event(&sub.next_event().await, "create", "l1", &here);
    patch(&mut writer, &elsewhere["id"], json!({"done": true})).await;
    let here2 = patch(&mut writer, &here["id"], json!({"done": true})).await;
    check_event(&sub.next_event().await, "update", "l1", &here2);
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_move_between_groups_gives_delete_create_update_exactly_once() {
    let server = common::server().await;
    let one = common::create_list(&server, "one").await;
    let two = common::create_list(&server, "two").await;
    let mut writer = server.ws().await;
    let mut old_group = server.ws().await;
    let mut new_group = server.ws().await;
    let mut both = server.ws().await;
    let mut instance = server.ws().await;
    let task = common::create_task(&mut writer, "moving", one).await;
    subscribe_group(&mut old_group, "old", one).await;
    subscribe_group(&mut new_group, "new", two).await;
    subscribe_group(&mut both, "b1", one).await;
    subscribe_group(&mut both, "b2", two).await;
    subscribe_instance(&mut instance, "tasks", "i", &task["id"]).await;

    let moved = patch(&mut writer, &task["id"], json!({"list_id": two})).await;

    let seq = check_event(
        &old_group.next_event().await,
        "delete",
        "old",
        &json!({"pk": task["id"]}),
    );
    assert_eq!(
        check_event(&new_group.next_event().await, "create", "new", &moved),
        seq
    );
    assert_eq!(
        check_event(&both.next_event().await, "update", "b2", &moved),
        seq
    );
    assert_eq!(
        check_event(&instance.next_event().await, "update", "i", &moved),
        seq
    );
    for ws in [&mut old_group, &mut new_group, &mut both, &mut instance] {
        ws.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn unsubscribe_group_stops_events_and_unknown_is_404() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    subscribe_group(&mut sub, "g", list).await;
    let reply = call(&mut sub, "tasks", "unsubscribe", "g", json!({})).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.data, Value::Null);
    common::create_task(&mut writer, "a", list).await;
    sub.expect_silence(QUIET).await;

    let reply = call(&mut sub, "tasks", "unsubscribe", "g", json!({})).await;
    assert_eq!(reply.status, 404);
    let reply = call(&mut sub, "tasks", "unsubscribe", "never", json!({})).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn subscribing_twice_with_one_request_id_delivers_once() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    subscribe_group(&mut sub, "g", list).await;
    subscribe_group(&mut sub, "g", list).await;
    let task = common::create_task(&mut writer, "a", list).await;
    check_event(&sub.next_event().await, "create", "g", &task);
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn bad_group_arguments_are_400() {
    let server = common::server().await;
    let mut ws = server.ws().await;
    for group in [
        json!(null),
        json!({}),
        json!({"list_id": 1, "done": true}),
        json!({"text": "a"}),
        json!({"list_id": "one"}),
        json!([1]),
    ] {
        let reply = call(&mut ws, "tasks", "subscribe", "g", json!({"group": group})).await;
        assert_eq!(reply.status, 400, "{group}: {reply}");
        assert!(reply.errors[0].is_string());
    }
}

#[tokio::test]
async fn rejected_or_failed_writes_send_nothing_and_change_nothing() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    let task = common::create_task(&mut writer, "a", list).await;
    subscribe_group(&mut sub, "g", list).await;
    subscribe_instance(&mut sub, "tasks", "i", &task["id"]).await;

    let pk = &task["id"];
    let attempts = [
        ("patch", json!({"pk": pk, "data": {"text": "  "}})), // hook: blank
        ("patch", json!({"pk": pk, "data": {"list_id": 999}})), // 409
        ("patch", json!({"pk": pk, "data": {"done": "yes"}})), // type
        ("create", json!({"data": {"text": "b", "list_id": 999}})), // 409
        ("create", json!({"data": {"list_id": list}})),       // required
    ];
    for (action, args) in attempts {
        let reply = write(&mut writer, "tasks", action, args).await;
        assert!(reply.status == 400 || reply.status == 409, "{reply}");
    }
    sub.expect_silence(QUIET).await;
    let reply = write(&mut writer, "tasks", "list", json!({})).await;
    assert_eq!(reply.data["results"], json!([task]));
}

#[tokio::test]
async fn seq_strictly_increases_per_stream() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let mut sub = server.ws().await;
    let start = subscribe_group(&mut sub, "g", list).await;
    let mut list_sub = server.ws().await;
    subscribe_instance(&mut list_sub, "lists", "l", &json!(list)).await;

    let mut last = start;
    for i in 0..20 {
        let task = common::create_task(&mut writer, &format!("t{i}"), list).await;
        let seq = check_event(&sub.next_event().await, "create", "g", &task);
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
    }
    // The lists stream counts on its own: its first change after the create is its seq 2.
    let rename = json!({"pk": list, "data": {"name": "renamed"}});
    let reply = write(&mut writer, "lists", "patch", rename).await;
    assert_eq!(reply.status, 200);
    let event = list_sub.next_event().await;
    assert_eq!(event["stream"], "lists");
    assert_eq!(event["payload"]["seq"], 2);
    assert_eq!(
        event["payload"]["data"],
        json!({"id": list, "name": "renamed"})
    );
}

#[tokio::test]
async fn subscribe_reply_seq_is_the_position_events_follow() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    for i in 0..3 {
        common::create_task(&mut writer, &format!("t{i}"), list).await;
    }
    let mut sub = server.ws().await;
    // Wait until the feed has handed out the three creates (it follows the committed log).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.app.delivered("tasks") < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "feed did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seq = subscribe_group(&mut sub, "g", list).await;
    assert_eq!(seq, 3);
    let task = common::create_task(&mut writer, "t3", list).await;
    assert_eq!(
        check_event(&sub.next_event().await, "create", "g", &task),
        4
    );
}

#[tokio::test]
async fn deleting_a_list_tells_every_subscriber_of_its_tasks() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let a = common::create_task(&mut writer, "a", list).await;
    let b = common::create_task(&mut writer, "b", list).await;
    let mut sub = server.ws().await;
    subscribe_group(&mut sub, "g", list).await;
    subscribe_instance(&mut sub, "lists", "list", &json!(list)).await;

    let reply = write(&mut writer, "lists", "delete", json!({"pk": list})).await;
    assert_eq!(reply.status, 204);
    let mut deleted = Vec::new();
    for _ in 0..3 {
        let event = sub.next_event().await;
        assert_eq!(event["payload"]["action"], "delete");
        deleted.push((
            event["stream"].clone(),
            event["payload"]["data"]["pk"].clone(),
        ));
    }
    deleted.sort_by_key(|(s, pk)| (s.to_string(), pk.to_string()));
    assert_eq!(
        deleted,
        vec![
            (json!("lists"), json!(list)),
            (json!("tasks"), a["id"].clone()),
            (json!("tasks"), b["id"].clone()),
        ]
    );
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_malformed_frame_does_not_disturb_other_connections() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut sub = server.ws().await;
    subscribe_group(&mut sub, "g", list).await;
    let mut rogue = server.ws().await;
    for junk in ["{", "[]", "\u{0}", r#"{"stream": null, "payload": {}}"#] {
        rogue.send_text(junk).await;
        assert_eq!(rogue.recv_reply().await["payload"]["response_status"], 400);
    }
    let task = common::create_task(&mut rogue, "fine", list).await;
    check_event(&sub.next_event().await, "create", "g", &task);
}
