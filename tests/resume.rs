//! Resume (`since`), snapshots and bulk writes: nothing missed, nothing twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::models::Task;
use rest_live::testing::{TestServer, WsClient};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

async fn subscribe(ws: &mut WsClient, request_id: &str, list: i64, extra: Value) -> Value {
    let mut payload =
        json!({"action": "subscribe", "request_id": request_id, "group": {"list_id": list}});
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    ws.request(json!({"stream": "tasks", "payload": payload}))
        .await
}

async fn patch(ws: &mut WsClient, pk: &Value, data: Value) -> Value {
    let reply = ws
        .request(
            json!({"stream": "tasks", "payload": {"action": "patch", "request_id": "w",
            "pk": pk, "data": data}}),
        )
        .await;
    assert_eq!(reply["payload"]["response_status"], 200, "{reply}");
    reply["payload"]["data"].clone()
}

async fn wait_delivered(server: &TestServer, seq: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.app.delivered("tasks") < seq {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed did not reach seq {seq}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn summary(event: &Value) -> (i64, String, Value) {
    let p = &event["payload"];
    (
        p["seq"].as_i64().expect("seq"),
        p["action"].as_str().expect("action").to_owned(),
        p["data"].clone(),
    )
}

#[tokio::test]
async fn since_replays_what_was_missed_then_continues_live() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let other = common::create_list(&server, "other").await;
    let mut writer = server.ws().await;

    let mut first = server.ws().await;
    let reply = subscribe(&mut first, "g", list, json!({})).await;
    assert_eq!(reply["payload"]["response_status"], 201);
    let a = common::create_task(&mut writer, "a", list).await;
    let last_seen = summary(&first.recv_event().await).0;
    drop(first);

    // Missed while away: an update, a create, a move out, a change elsewhere, a delete.
    let a2 = patch(&mut writer, &a["id"], json!({"done": true})).await;
    let b = common::create_task(&mut writer, "b", list).await;
    let c = common::create_task(&mut writer, "c", list).await;
    patch(&mut writer, &c["id"], json!({"list_id": other})).await;
    common::create_task(&mut writer, "elsewhere", other).await;
    let reply = writer
        .request(json!({"stream": "tasks", "payload": {"action": "delete", "pk": b["id"]}}))
        .await;
    assert_eq!(reply["payload"]["response_status"], 204);
    wait_delivered(&server, 7).await;

    let mut again = server.ws().await;
    let reply = subscribe(&mut again, "g", list, json!({"since": last_seen})).await;
    assert_eq!(
        reply,
        json!({"stream": "tasks", "payload": {"action": "subscribe", "request_id": "g",
            "response_status": 201, "errors": [], "data": {"seq": 7}}})
    );
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(summary(&again.recv_event().await));
    }
    assert_eq!(
        got,
        vec![
            (2, "update".into(), a2),
            (3, "create".into(), b.clone()),
            (4, "create".into(), c.clone()),
            (5, "delete".into(), json!({"pk": c["id"]})),
            (7, "delete".into(), json!({"pk": b["id"]})),
        ]
    );
    again.expect_silence(QUIET).await;

    // And live from there, with the same request_id.
    let d = common::create_task(&mut writer, "d", list).await;
    let event = again.recv_event().await;
    assert_eq!(event["payload"]["request_id"], "g");
    assert_eq!(summary(&event), (8, "create".into(), d));
}

#[tokio::test]
async fn since_works_for_instance_subscriptions_too() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    let a = common::create_task(&mut writer, "a", list).await;
    let b = common::create_task(&mut writer, "b", list).await;
    let a2 = patch(&mut writer, &a["id"], json!({"text": "A"})).await;
    patch(&mut writer, &b["id"], json!({"text": "B"})).await;
    let reply = writer
        .request(json!({"stream": "tasks", "payload": {"action": "delete", "pk": a["id"]}}))
        .await;
    assert_eq!(reply["payload"]["response_status"], 204);
    wait_delivered(&server, 5).await;

    // The object is gone, but a client that saw it at seq 1 learns what became of it.
    let mut ws = server.ws().await;
    let reply = ws
        .request(
            json!({"stream": "tasks", "payload": {"action": "subscribe_instance",
            "request_id": "i", "pk": a["id"], "since": 1}}),
        )
        .await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    assert_eq!(reply["payload"]["data"], json!({"seq": 5}));
    assert_eq!(summary(&ws.recv_event().await), (3, "update".into(), a2));
    assert_eq!(
        summary(&ws.recv_event().await),
        (5, "delete".into(), json!({"pk": a["id"]}))
    );
    ws.expect_silence(QUIET).await;
}

#[tokio::test]
async fn since_beyond_the_log_or_the_head_is_410_and_bad_since_is_400() {
    let builder = common::models::builder().configure(|c| {
        c.retention.max_rows = Some(3);
        c.retention.max_age = None;
    });
    let server = TestServer::start(builder).await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    for i in 0..6 {
        common::create_task(&mut writer, &format!("t{i}"), list).await;
    }
    wait_delivered(&server, 6).await;
    // The background pruner may have been first: either way, three changes are left.
    server.app.prune_now().await.expect("prune");
    let kept = server
        .app
        .read(|c| {
            Ok(rest_live::testing::internals::read_stream(
                c, "tasks", 0, 6, 100,
            )?)
        })
        .await
        .expect("read the log");
    let kept: Vec<i64> = kept.iter().map(|c| c.seq).collect();
    assert_eq!(kept, [4, 5, 6]);

    let mut ws = server.ws().await;
    for since in [0, 1, 2] {
        let reply = subscribe(&mut ws, "g", list, json!({"since": since})).await;
        assert_eq!(reply["payload"]["response_status"], 410, "since {since}");
        assert_eq!(reply["payload"]["errors"], json!(["resync required"]));
        assert_eq!(reply["payload"]["data"], Value::Null);
    }
    // A seq this log never handed out: the client's state is from another history.
    let reply = subscribe(&mut ws, "g", list, json!({"since": 99})).await;
    assert_eq!(reply["payload"]["response_status"], 410);
    for since in [json!(-1), json!("3"), json!(1.5)] {
        let reply = subscribe(&mut ws, "g", list, json!({"since": since})).await;
        assert_eq!(reply["payload"]["response_status"], 400, "since {since}");
    }
    // From what is still kept, resume works, and a refused attempt left no subscription behind.
    let reply = subscribe(&mut ws, "g", list, json!({"since": 3})).await;
    assert_eq!(reply["payload"]["response_status"], 201);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(summary(&ws.recv_event().await).0);
    }
    assert_eq!(got, vec![4, 5, 6]);
    ws.expect_silence(QUIET).await;
}

#[tokio::test]
async fn snapshot_returns_the_members_and_their_seq() {
    let server = common::server().await;
    let list = common::create_list(&server, "L").await;
    let other = common::create_list(&server, "other").await;
    let mut writer = server.ws().await;
    let a = common::create_task(&mut writer, "a", list).await;
    common::create_task(&mut writer, "elsewhere", other).await;
    let b = common::create_task(&mut writer, "b", list).await;

    let mut ws = server.ws().await;
    let reply = subscribe(&mut ws, "s", list, json!({"snapshot": true})).await;
    assert_eq!(
        reply,
        json!({"stream": "tasks", "payload": {"action": "subscribe", "request_id": "s",
            "response_status": 201, "errors": [], "data": {"seq": 3, "results": [a, b]}}})
    );
    let c = common::create_task(&mut writer, "c", list).await;
    assert_eq!(summary(&ws.recv_event().await), (4, "create".into(), c));

    let reply = subscribe(&mut ws, "x", list, json!({"snapshot": true, "since": 1})).await;
    assert_eq!(reply["payload"]["response_status"], 400);
    let reply = subscribe(&mut ws, "x", list, json!({"snapshot": "yes"})).await;
    assert_eq!(reply["payload"]["response_status"], 400);
}

/// Writers keep changing the group while a client subscribes with a snapshot: every change is
/// either in the snapshot or an event after it, never both, never neither.
#[tokio::test]
async fn snapshot_is_atomic_with_the_registration() {
    // Unthrottled: three writers from one address, back to back.
    let server = TestServer::start(common::models::builder().throttle(false)).await;
    let list = common::create_list(&server, "L").await;
    let url = format!("ws://{}/ws", server.addr);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut ws = WsClient::connect(&url).await;
                for i in 0..60 {
                    let task = common::create_task(&mut ws, &format!("w{w}-{i}"), list).await;
                    if i % 3 == 0 {
                        patch(&mut ws, &task["id"], json!({"done": true})).await;
                    }
                    if i % 5 == 0 {
                        let reply = ws
                            .request(json!({"stream": "tasks", "payload": {"action": "delete",
                                "pk": task["id"]}}))
                            .await;
                        assert_eq!(reply["payload"]["response_status"], 204);
                    }
                }
            })
        })
        .collect();

    // Subscribe mid-way through the writes.
    let mut sub = server.ws().await;
    while server.app.delivered("tasks") < 40 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let reply = subscribe(&mut sub, "s", list, json!({"snapshot": true})).await;
    assert_eq!(reply["payload"]["response_status"], 201);
    let snapshot_seq = reply["payload"]["data"]["seq"].as_i64().unwrap();
    let mut state: BTreeMap<i64, Value> = reply["payload"]["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t.clone()))
        .collect();

    for w in writers {
        w.await.expect("writer");
    }
    let head = server
        .app
        .read(|c| Ok(rest_live::testing::internals::stream_head(c, "tasks")?))
        .await
        .unwrap();
    let mut last = snapshot_seq;
    while last < head {
        let (seq, action, data) = summary(&sub.recv_event().await);
        assert_eq!(
            seq,
            last + 1,
            "events follow the snapshot with no gap and no overlap"
        );
        last = seq;
        let pk = data
            .get("id")
            .or(data.get("pk"))
            .and_then(Value::as_i64)
            .unwrap();
        match action.as_str() {
            "create" => assert!(state.insert(pk, data).is_none(), "create of a known object"),
            "update" => assert!(
                state.insert(pk, data).is_some(),
                "update of an unknown object"
            ),
            "delete" => assert!(state.remove(&pk).is_some(), "delete of an unknown object"),
            other => panic!("unexpected action {other}"),
        }
    }
    sub.expect_silence(QUIET).await;

    let mut http = server.ws().await;
    let reply = http
        .request(
            json!({"stream": "tasks", "payload": {"action": "list", "limit": 1000,
            "data": {"list_id": list}}}),
        )
        .await;
    let stored: BTreeMap<i64, Value> = reply["payload"]["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t.clone()))
        .collect();
    assert_eq!(state, stored, "snapshot + events = the database");
}

#[tokio::test]
async fn bulk_writes_send_one_event_per_row_and_move_groups() {
    let server = common::server().await;
    let one = common::create_list(&server, "one").await as i32;
    let two = common::create_list(&server, "two").await as i32;
    let mut sub_one = server.ws().await;
    let mut sub_two = server.ws().await;
    subscribe(&mut sub_one, "one", one.into(), json!({})).await;
    subscribe(&mut sub_two, "two", two.into(), json!({})).await;

    let rows: Vec<Task> = (0..5)
        .map(|i| Task {
            id: 0,
            text: format!("bulk {i}"),
            done: false,
            list_id: one,
            owner: None,
            priority: 0,
            note: None,
        })
        .collect();
    let created = server.app.bulk_create(rows).await.expect("bulk create");
    assert_eq!(created.len(), 5);
    for task in &created {
        let (_, action, data) = summary(&sub_one.recv_event().await);
        assert_eq!(
            (action.as_str(), data["id"].as_i64()),
            ("create", Some(task.id.into()))
        );
    }

    // Move the even ones to list two: list one sees them leave, list two sees them arrive.
    let moved = server
        .app
        .bulk_update::<Task, _>(json!({"list_id": one, "done": false}), move |t| {
            if t.id % 2 == 0 {
                t.list_id = two;
            } else {
                t.done = true;
            }
        })
        .await
        .expect("bulk update");
    assert_eq!(moved.len(), 5);
    for task in &moved {
        let (_, action, data) = summary(&sub_one.recv_event().await);
        if task.list_id == two {
            assert_eq!(
                (action.as_str(), &data),
                ("delete", &json!({"pk": task.id}))
            );
            let (_, action, data) = summary(&sub_two.recv_event().await);
            assert_eq!(
                (action.as_str(), data["id"].as_i64()),
                ("create", Some(task.id.into()))
            );
        } else {
            assert_eq!(
                (action.as_str(), data["done"].as_bool()),
                ("update", Some(true))
            );
        }
    }

    let deleted = server
        .app
        .bulk_delete::<Task>(json!({"list_id": two}))
        .await
        .expect("bulk delete");
    assert_eq!(deleted, 2);
    for _ in 0..2 {
        assert_eq!(summary(&sub_two.recv_event().await).1, "delete");
    }
    sub_one.expect_silence(QUIET).await;
    sub_two.expect_silence(QUIET).await;

    let bad = server.app.bulk_delete::<Task>(json!({"nope": "x"})).await;
    assert!(matches!(bad, Err(rest_live::ApiError::BadRequest(_))));
}
