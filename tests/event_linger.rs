//! Issue 19: the writer of a busy connection lingers so that events go out together
//! (`Config::event_linger`), but never holds back a reply, nor a full batch. The linger is set to
//! an hour here: anything it held would not arrive within the client's receive timeout.

mod common;

use std::time::Duration;

use rest_live::testing::{Received, TestServer, WsClient};
use serde_json::{Value, json};

const HOUR: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(10);

async fn server() -> TestServer {
    TestServer::start(common::models::builder().throttle(false).configure(|c| {
        c.event_linger = HOUR;
    }))
    .await
}

/// Subscribes to the list's tasks: the reply is a write, so from now on events linger.
async fn subscribe(ws: &mut WsClient, list: i64) {
    let reply = ws
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "home", "group": {"list_id": list}}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply}");
}

/// Retrieves the list until `want` events have come (with `events`, those that came already),
/// each request's reply right after the events it took along; the events, in arrival order.
/// An event is published a moment after its write's response, so a reply may come before the
/// last ones. Without a reply they would wait an hour; each reply comes at once.
async fn ask_until(
    ws: &mut WsClient,
    list: i64,
    mut events: Vec<Value>,
    want: usize,
) -> Vec<Value> {
    for attempt in 0.. {
        assert!(
            attempt < 100,
            "only {} of {want} events arrived",
            events.len()
        );
        ws.send(json!({"stream": "lists", "payload": {"action": "retrieve", "request_id": "get", "pk": list}}))
            .await;
        loop {
            match ws.recv_any(WAIT).await {
                Some(Received::Event(event)) => events.push(event),
                Some(Received::Reply(reply)) => {
                    assert_eq!(reply["payload"]["request_id"], "get", "{reply}");
                    assert_eq!(reply["payload"]["response_status"], 200, "{reply}");
                    break;
                }
                other => panic!("expected an event or the reply, got {other:?}"),
            }
        }
        if events.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    events
}

#[tokio::test]
async fn a_reply_goes_out_at_once_and_takes_the_waiting_events_along() {
    let server = server().await;
    let list = common::create_list(&server, "l").await;
    let mut ws = server.ws().await;
    subscribe(&mut ws, list).await;
    let mut created = Vec::new();
    for i in 0..3 {
        let task = server
            .post(
                "/api/tasks/",
                json!({"text": format!("t{i}"), "list_id": list}),
            )
            .await;
        assert_eq!(task.status, 201, "{task}");
        created.push(task.json()["id"].clone());
    }
    // The events wait (the connection wrote its reply a moment ago) until a reply takes them
    // along.
    let events = ask_until(&mut ws, list, Vec::new(), created.len()).await;
    // In order, each once.
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["payload"]["data"]["id"].clone())
        .collect();
    assert_eq!(ids, created);
    assert!(events.iter().all(|e| e["payload"]["action"] == "create"));
}

#[tokio::test]
async fn a_full_batch_of_events_goes_out_without_waiting() {
    let server = server().await;
    let list = common::create_list(&server, "l").await;
    let mut ws = server.ws().await;
    subscribe(&mut ws, list).await;
    // About 600 bytes per event: enough events for 64 KiB and then some.
    let text = "🦀".repeat(130);
    let count = 64 * 1024 / 600 + 20;
    for _ in 0..count {
        let task = server
            .post("/api/tasks/", json!({"text": text, "list_id": list}))
            .await;
        assert_eq!(task.status, 201, "{task}");
    }
    // No request: the events arrive because the batch filled up. All of them but the tail
    // that is still short of a full batch (it waits for the next one, or a reply).
    let mut arrived = Vec::new();
    while let Some(Received::Event(event)) = ws.recv_any(Duration::from_secs(2)).await {
        arrived.push(event);
    }
    let seqs: Vec<i64> = arrived
        .iter()
        .map(|e| e["payload"]["seq"].as_i64().expect("seq"))
        .collect();
    assert!(
        seqs.len() >= 64 * 1024 / 700 && seqs.len() <= count,
        "{} of {count} events arrived",
        seqs.len()
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    // The rest comes with the next replies.
    let total = ask_until(&mut ws, list, arrived, count).await.len();
    assert_eq!(total, count, "every event, once");
    ws.expect_silence(Duration::from_millis(200)).await;
}
