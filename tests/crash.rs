//! Crash safety (issue 3, point 8): the example server, as a child process, is killed with SIGKILL
//! while eight clients write continuously (so that SQLite's writer commits their writes in
//! batches, and the kill falls inside one), then restarted on the same database. Every write
//! acknowledged before the kill is there, and a client replaying the change log from 0 (`since:
//! 0`) rebuilds exactly the database: an event for every row that is in it, and for every row
//! that is not, a last event that deletes it.

#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::process::ExampleProcess;
use rest_live::testing::WsClient;
use serde_json::{Value, json};

/// Concurrent writers: enough that the SQLite writer commits them in batches (group commit),
/// so the kill also falls inside batches.
const WRITERS: usize = 8;
/// Acknowledged writes (all writers together) before the kill.
const WRITES_BEFORE_KILL: usize = 300;

/// One write a writer sent and got no reply for (the kill came first): it may or may not have
/// committed.
#[derive(Debug, Clone)]
enum InFlight {
    /// A create with this (unique) text.
    Create(String),
    /// A write of task `pk`; it leaves the task as `after` (`None`: deleted).
    Write { pk: i64, after: Option<Value> },
}

/// What a writer knows when the server dies.
#[derive(Debug, Default)]
struct Acknowledged {
    /// Each of the writer's tasks as the last acknowledged write left it (`None`: deleted).
    tasks: BTreeMap<i64, Option<Value>>,
    in_flight: Option<InFlight>,
    writes: usize,
}

/// Writes until the server goes away: creates, patches (text, done), moves between the lists and
/// deletes, only of its own tasks, so it knows what each of them must look like.
async fn writer(
    mut ws: WsClient,
    w: usize,
    lists: [i64; 2],
    acked: Arc<AtomicUsize>,
) -> Acknowledged {
    let mut state = Acknowledged::default();
    for i in 0usize.. {
        let live: Vec<(i64, Value)> = state
            .tasks
            .iter()
            .filter_map(|(pk, t)| t.clone().map(|t| (*pk, t)))
            .collect();
        let (payload, in_flight) = if live.len() < 3 || i % 4 == 0 {
            let text = format!("w{w}-{i}");
            let list = lists[i % 2];
            (
                json!({"action": "create", "data": {"text": text, "list_id": list}}),
                InFlight::Create(text),
            )
        } else {
            let (pk, task) = live[i % live.len()].clone();
            let mut after = task.clone();
            let payload = match i % 5 {
                0 | 1 => {
                    after["text"] = json!(format!("w{w}-{i} edited"));
                    json!({"action": "patch", "pk": pk, "data": {"text": after["text"]}})
                }
                2 => {
                    after["done"] = json!(!task["done"].as_bool().unwrap_or(false));
                    json!({"action": "patch", "pk": pk, "data": {"done": after["done"]}})
                }
                3 => {
                    let other = if task["list_id"] == lists[0] {
                        lists[1]
                    } else {
                        lists[0]
                    };
                    after["list_id"] = json!(other);
                    json!({"action": "patch", "pk": pk, "data": {"list_id": other}})
                }
                _ => json!({"action": "delete", "pk": pk}),
            };
            let after = (payload["action"] != "delete").then_some(after);
            (payload, InFlight::Write { pk, after })
        };
        let mut payload = payload;
        payload["request_id"] = json!(i);
        state.in_flight = Some(in_flight.clone());
        let reply = match ws
            .try_request(json!({"stream": "tasks", "payload": payload}))
            .await
        {
            Ok(reply) => reply,
            Err(_) => break, // the server is gone
        };
        let status = reply["payload"]["response_status"].as_i64().unwrap_or(0);
        match in_flight {
            InFlight::Create(_) => {
                assert_eq!(status, 201, "{reply}");
                let data = reply["payload"]["data"].clone();
                let pk = data["id"].as_i64().expect("id");
                state.tasks.insert(pk, Some(data));
            }
            InFlight::Write { pk, after } => {
                let expected = if after.is_some() { 200 } else { 204 };
                assert_eq!(status, expected, "{reply}");
                if let Some(after) = &after {
                    assert_eq!(&reply["payload"]["data"], after, "{reply}");
                }
                state.tasks.insert(pk, after);
            }
        }
        state.in_flight = None;
        state.writes += 1;
        acked.fetch_add(1, Ordering::SeqCst);
    }
    state
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON")
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_and_restart_replaying_the_log_from_0_rebuilds_exactly_the_database() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("todo.db").display());
    let client = reqwest::Client::new();

    // The example server as a child process; its log is discarded.
    // Unthrottled: four writers from one address, back to back.
    let quiet = [("RUST_LOG", "error"), ("REST_LIVE_THROTTLE", "off")];
    let mut server =
        ExampleProcess::start_quiet("before the kill", &database_url, &quiet, &[]).await;
    let mut lists = [0i64; 2];
    for (i, list) in lists.iter_mut().enumerate() {
        let response = client
            .post(server.url("/api/lists/"))
            .header("content-type", "application/json")
            .body(json!({ "name": format!("list {i}") }).to_string())
            .send()
            .await
            .expect("POST /api/lists/");
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        *list = body["id"].as_i64().expect("id");
    }

    // Four writers, continuously, until the kill.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let ws = WsClient::connect(&server.ws_url()).await;
        writers.push(tokio::spawn(writer(ws, w, lists, acked.clone())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < WRITES_BEFORE_KILL {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writers are stuck"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL: no shutdown, no flush, no goodbye.
    let status = server.kill();
    assert!(!status.success(), "killed: {status}");
    let mut states = Vec::new();
    for writer in writers {
        states.push(writer.await.expect("writer"));
    }
    let acknowledged: usize = states.iter().map(|s| s.writes).sum();
    let in_flight = states.iter().filter(|s| s.in_flight.is_some()).count();

    // Back up on the same database.
    let server = ExampleProcess::start_quiet("after the kill", &database_url, &quiet, &[]).await;

    // The database: every task of both lists.
    let mut database: BTreeMap<i64, Value> = BTreeMap::new();
    for list in lists {
        let (status, body) = get_json(
            &client,
            &server.url(&format!("/api/tasks/?list_id={list}&limit=1000")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["count"].as_i64().unwrap() < 1000);
        for task in body["results"].as_array().expect("results") {
            database.insert(task["id"].as_i64().expect("id"), task.clone());
        }
    }
    let (_, all) = get_json(&client, &server.url("/api/tasks/?limit=1000")).await;
    assert_eq!(
        all["count"].as_u64(),
        Some(database.len() as u64),
        "no task outside the two lists"
    );

    // 1. Every acknowledged write is there. A write without a reply may or may not be.
    let mut unexplained: Vec<&Value> = database.values().collect();
    for state in &states {
        for (pk, expected) in &state.tasks {
            let actual = database.get(pk);
            let in_flight_after = match &state.in_flight {
                Some(InFlight::Write { pk: p, after }) if p == pk => Some(after.as_ref()),
                _ => None,
            };
            let ok = actual == expected.as_ref() || in_flight_after == Some(actual);
            assert!(
                ok,
                "task {pk}: acknowledged {expected:?}, in flight {:?}, found {actual:?}",
                state.in_flight
            );
            unexplained.retain(|t| t["id"] != *pk);
        }
    }
    // A task no writer acknowledged can only be the create in flight at the kill.
    for task in unexplained {
        let explained = states
            .iter()
            .any(|s| matches!(&s.in_flight, Some(InFlight::Create(text)) if task["text"] == *text));
        assert!(explained, "a task nobody wrote: {task}");
    }

    // 2. Replaying the log from 0 rebuilds exactly the database, group by group.
    let mut replayed_events = 0;
    for list in lists {
        let mut ws = WsClient::connect(&server.ws_url()).await;
        let reply = ws
            .request(json!({"stream": "tasks", "payload": {"action": "subscribe",
                "request_id": "resume", "group": {"list_id": list}, "since": 0}}))
            .await;
        assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
        // The replay is queued before the reply to the next request: after it, it is all here.
        let ping = ws
            .request(
                json!({"stream": "lists", "payload": {"action": "list", "request_id": "ping"}}),
            )
            .await;
        assert_eq!(ping["payload"]["request_id"], "ping");
        let events = ws.take_events();
        replayed_events += events.len();

        let mut rebuilt: HashMap<i64, Value> = HashMap::new();
        let mut last_seq = 0;
        for event in &events {
            let payload = &event["payload"];
            let seq = payload["seq"].as_i64().expect("seq");
            assert!(seq > last_seq, "seqs increase: {event}");
            last_seq = seq;
            match payload["action"].as_str() {
                Some("create" | "update") => {
                    let pk = payload["data"]["id"].as_i64().expect("id");
                    assert_eq!(payload["data"]["list_id"], list, "{event}");
                    rebuilt.insert(pk, payload["data"].clone());
                }
                Some("delete") => {
                    let pk = payload["data"]["pk"].as_i64().expect("pk");
                    assert!(
                        rebuilt.remove(&pk).is_some(),
                        "a delete of a task never created in this group: {event}"
                    );
                }
                _ => panic!("{event}"),
            }
        }
        let expected: HashMap<i64, Value> = database
            .iter()
            .filter(|(_, t)| t["list_id"] == list)
            .map(|(pk, t)| (*pk, t.clone()))
            .collect();
        assert_eq!(
            rebuilt, expected,
            "list {list}: the replayed log is the database"
        );
        ws.expect_silence(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{acknowledged} writes acknowledged before SIGKILL ({in_flight} in flight), {} tasks after \
         restart, {replayed_events} events replayed from seq 0",
        database.len()
    );
    assert!(acknowledged >= WRITES_BEFORE_KILL);
}
