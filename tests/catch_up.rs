//! Issue 19: a subscription whose events find its connection's queue full is not closed: it
//! falls behind, and is caught up from the hub's ring of recent changes, or from the change log
//! once it has fallen off the ring, then goes live again. Its client still receives every event,
//! in order, exactly once.
//!
//! The queue holds 4 frames and the writer lingers 200 ms after each write, so events pile up far
//! beyond the queue while the writes go on: every subscription falls behind many times. With a ring
//! of 2 changes nearly every catch-up reads the log; with the default ring, memory.
//!
//! What each subscription must receive is worked out from the writes alone (a model of groups
//! and instances), and the instance's also compared with what a resume with `since` replays on a fresh socket.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use rest_live::testing::{Received, TestServer, WsClient};
use serde_json::{Value, json};

const WRITES: usize = 240;

/// One event as a subscription sees it: (seq, action, pk).
type Seen = (i64, String, i64);

async fn server(ring: usize) -> TestServer {
    TestServer::start(
        common::models::builder()
            .throttle(false)
            .configure(move |c| {
                c.outgoing_queue = 4;
                c.event_linger = Duration::from_millis(200);
                c.event_ring = ring;
            }),
    )
    .await
}

async fn subscribe(ws: &mut WsClient, request_id: &str, target: Value, since: Option<i64>) -> i64 {
    let mut args = json!({"request_id": request_id});
    for (k, v) in target.as_object().expect("target") {
        args[k] = v.clone();
    }
    if let Some(since) = since {
        args["since"] = json!(since);
    }
    let action = if target.get("pk").is_some() {
        "subscribe_instance"
    } else {
        "subscribe"
    };
    let reply = ws.call("tasks", action, args).await;
    assert_eq!(reply.status, 201, "{reply}");
    reply.data["seq"].as_i64().expect("seq")
}

/// What the writes make each subscription see, by request id: the groups of lists `a` and `b`,
/// and the first task.
#[derive(Default)]
struct Model {
    expected: HashMap<&'static str, Vec<(String, i64)>>,
    list_of: HashMap<i64, i64>,
}

impl Model {
    fn push(&mut self, id: &'static str, action: &str, pk: i64) {
        self.expected
            .entry(id)
            .or_default()
            .push((action.into(), pk));
    }
}

/// Receives until every subscription has what the model says (or 30 s pass without an event).
async fn receive(ws: &mut WsClient, want: usize) -> HashMap<String, Vec<Seen>> {
    let mut got: HashMap<String, Vec<Seen>> = HashMap::new();
    let mut count = 0;
    while count < want {
        match ws.recv_any(Duration::from_secs(30)).await {
            Some(Received::Event(event)) => {
                let payload = &event["payload"];
                let id = payload["request_id"]
                    .as_str()
                    .expect("request id")
                    .to_owned();
                let seq = payload["seq"].as_i64().expect("seq");
                let action = payload["action"].as_str().expect("action").to_owned();
                let pk = payload["data"]["id"]
                    .as_i64()
                    .or_else(|| payload["data"]["pk"].as_i64())
                    .expect("pk");
                got.entry(id).or_default().push((seq, action, pk));
                count += 1;
            }
            Some(Received::Reply(reply)) => panic!("an unexpected reply {reply}"),
            Some(Received::Closed(closed)) => {
                panic!("closed ({closed:?}) after {count} of {want} events")
            }
            None => {
                let by_id: Vec<_> = got.iter().map(|(id, seen)| (id, seen.len())).collect();
                panic!("{count} of {want} events came: {by_id:?}")
            }
        }
    }
    // Nothing more than that, and nothing twice.
    ws.expect_silence(Duration::from_millis(500)).await;
    got
}

async fn falls_behind_and_catches_up(ring: usize) {
    let server = server(ring).await;
    let a = common::create_list(&server, "a").await;
    let b = common::create_list(&server, "b").await;
    let mut ws = server.ws().await;
    let start = subscribe(&mut ws, "a", json!({"group": {"list_id": a}}), None).await;
    subscribe(&mut ws, "b", json!({"group": {"list_id": b}}), None).await;

    // Creates in both lists, moves between them, updates in place and deletes, in a fixed
    // pseudo-random order.
    let mut model = Model::default();
    let mut tasks: Vec<i64> = Vec::new();
    let mut first: Option<i64> = None;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..WRITES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let group = |list: i64| if list == a { "a" } else { "b" };
        if tasks.len() < 4 || seed.is_multiple_of(4) {
            let list = if seed & 16 == 0 { a } else { b };
            let created = server
                .post(
                    "/api/tasks/",
                    json!({"text": format!("task {i}"), "list_id": list}),
                )
                .await
                .expect(201);
            let pk = created["id"].as_i64().expect("id");
            tasks.push(pk);
            model.list_of.insert(pk, list);
            model.push(group(list), "create", pk);
            if first.is_none() {
                first = Some(pk);
                // An instance subscription too, on the same connection.
                subscribe(&mut ws, "one", json!({"pk": pk}), None).await;
            }
            continue;
        }
        let pk = tasks[(seed >> 8) as usize % tasks.len()];
        let list = model.list_of[&pk];
        match seed % 4 {
            1 => {
                let to = if list == a { b } else { a };
                server
                    .patch(&format!("/api/tasks/{pk}/"), json!({"list_id": to}))
                    .await
                    .expect(200);
                model.list_of.insert(pk, to);
                // One connection follows both groups: it sees one update, on the new group's
                // subscription, rather than a delete and a create.
                model.push(group(to), "update", pk);
            }
            2 => {
                server
                    .patch(
                        &format!("/api/tasks/{pk}/"),
                        json!({"text": format!("edit {i}")}),
                    )
                    .await
                    .expect(200);
                model.push(group(list), "update", pk);
            }
            _ if first == Some(pk) => continue,
            _ => {
                let response = server.delete(&format!("/api/tasks/{pk}/")).await;
                assert_eq!(response.status, 204, "{response}");
                tasks.retain(|t| *t != pk);
                model.list_of.remove(&pk);
                model.push(group(list), "delete", pk);
            }
        }
        if first == Some(pk) {
            // Moved or edited: an instance subscription sees an update either way.
            model.push("one", "update", pk);
        }
    }

    let want: usize = model.expected.values().map(Vec::len).sum();
    let got = receive(&mut ws, want).await;
    for (id, expected) in &model.expected {
        let seen = got.get(*id).cloned().unwrap_or_default();
        let seqs: Vec<i64> = seen.iter().map(|s| s.0).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "ring {ring}, {id}: in seq order, each once: {seqs:?}"
        );
        let events: Vec<(String, i64)> = seen.iter().map(|s| (s.1.clone(), s.2)).collect();
        assert_eq!(&events, expected, "ring {ring}, {id}: every event");
    }

    // A resume from the start on a fresh socket replays the instance's events with the same
    // seqs. (Not the groups': a resumed connection follows one group before the other, so a
    // move between them is a delete and a create there.)
    let mut fresh = server.ws().await;
    subscribe(&mut fresh, "one", json!({"pk": first}), Some(start)).await;
    let replayed = receive(&mut fresh, model.expected["one"].len()).await;
    assert_eq!(
        replayed["one"], got["one"],
        "ring {ring}: as a resume replays it"
    );
    eprintln!("ring {ring}: {want} events, every one in order, once");
}

/// A ring of two changes: a subscription that falls behind has nearly always fallen off it, and
/// is caught up from the change log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_falls_off_a_tiny_ring_is_caught_up_from_the_log() {
    falls_behind_and_catches_up(2).await;
}

/// The default ring holds what a subscription missed: it is caught up from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_falls_behind_is_caught_up_from_the_ring() {
    falls_behind_and_catches_up(1024).await;
}
