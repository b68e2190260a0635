//! Several server processes on one PostgreSQL database: the database is the bus.
//!
//! Two processes of the example app share a fresh database. Writers and subscribers are spread over
//! both; midway one process is killed with SIGKILL, and its clients fail over to the other (writers
//! retry the write whose reply was lost, subscribers resume with `since`). At the end, every
//! subscription must have received exactly its events as the committed change log defines them:
//! in `seq` order, no gap, no duplicate.
//!
//! Needs PostgreSQL (`REST_LIVE_TEST_POSTGRES_URL`, by default `postgres://postgres@127.0.0.1:5432/test`),
//! so the tests are `#[ignore]`d: `cargo test` lists them as ignored, with that reason. They start
//! the example binary `target/<profile>/examples/todo`, which `cargo test --workspace` (or `cargo
//! build --examples`) builds. The figures are printed: run with `cargo test --test multiprocess --
//! --ignored --nocapture`. Without PostgreSQL they fail, saying so.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::process::ExampleProcess;
use rest_live::Principal;
use rest_live::testing::internals::{self, Target};
use rest_live::testing::{Closed, Received, TestDatabase, WsClient};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

const LISTS: usize = 4;
const WRITERS: usize = 8;
/// Writes per writer: 8 × 520 = 4,160 in all.
const OPS_PER_WRITER: usize = 520;
/// Per process: one socket per subscription, one subscription per socket.
const GROUP_SUBSCRIBERS: usize = 9;
const INSTANCE_SUBSCRIBERS: usize = 3;
/// Writes a subscriber of the killed process lets pass before it reconnects (its resume replays
/// what it missed, then continues live).
const RECONNECT_LAG: usize = 400;
/// No frame for this long, after every subscriber has reached its last expected event, ends the run.
const QUIET: Duration = Duration::from_millis(500);
/// Generous bounds on waiting for the end state (reaching them fails the test with its report).
const SETTLE: Duration = Duration::from_secs(60);

/// `ws://<addr>/ws`, for clients that fail over between the processes' addresses.
fn ws_url(addr: &str) -> String {
    format!("ws://{addr}/ws")
}

/// A client's failover: the first server, from `from` on, that accepts connections.
async fn reachable(addrs: &[String], from: usize) -> usize {
    for i in 0..addrs.len() {
        let k = (from + i) % addrs.len();
        if tokio::net::TcpStream::connect(&addrs[k]).await.is_ok() {
            return k;
        }
    }
    panic!("no server accepts connections");
}

/// An HTTP request with a JSON body; `None` when the connection failed.
async fn http(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("the server answers JSON")
    };
    Some((status, body))
}

fn payload_seq(frame: &Value) -> i64 {
    frame["payload"]["seq"].as_i64().expect("seq")
}

// ---------------------------------------------------------------------------------------------
// Cross-process smoke check.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (REST_LIVE_TEST_POSTGRES_URL): run with -- --ignored"]
async fn a_write_on_one_process_reaches_subscribers_on_the_other() {
    let db = TestDatabase::require_postgres().await;
    let (a, b) = tokio::join!(
        ExampleProcess::start("A", &db.url, &[], &[]),
        ExampleProcess::start("B", &db.url, &[], &[])
    );
    let client = reqwest::Client::new();
    let (status, list) = http(
        &client,
        reqwest::Method::POST,
        a.url("/api/lists/"),
        Some(json!({"name": "shared"})),
    )
    .await
    .expect("POST /api/lists/");
    assert_eq!(status, 201, "{list}");
    let list = list["id"].clone();

    let subscribe = json!({"stream": "tasks", "payload": {
        "action": "subscribe", "request_id": "g", "group": {"list_id": list}}});
    let mut on_a = WsClient::connect(&a.ws_url()).await;
    let mut on_b = WsClient::connect(&b.ws_url()).await;
    for ws in [&mut on_a, &mut on_b] {
        let reply = ws.request(subscribe.clone()).await;
        assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    }

    // A write on A: both subscribers get the same event, with the same seq.
    let mut writer_a = WsClient::connect(&a.ws_url()).await;
    let task = common::create_task(&mut writer_a, "written on A", list.as_i64().expect("id")).await;
    let (from_a, from_b) = (on_a.recv_event().await, on_b.recv_event().await);
    assert_eq!(from_a["payload"]["action"], "create");
    assert_eq!(from_a["payload"]["data"], task);
    assert_eq!(from_a, from_b, "both processes send the same event");

    // And the other way round, with an instance subscription on A.
    let reply = on_a
        .request(json!({"stream": "tasks", "payload": {
            "action": "subscribe_instance", "request_id": "i", "pk": task["id"]}}))
        .await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    let mut writer_b = WsClient::connect(&b.ws_url()).await;
    let reply = writer_b
        .request(json!({"stream": "tasks", "payload": {
            "action": "patch", "request_id": "p", "pk": task["id"], "data": {"done": true}}}))
        .await;
    assert_eq!(reply["payload"]["response_status"], 200, "{reply}");
    let updated = reply["payload"]["data"].clone();
    let from_b = on_b.recv_event().await;
    assert_eq!(from_b["payload"]["request_id"], "g");
    assert_eq!(from_b["payload"]["data"], updated);
    assert_eq!(payload_seq(&from_b), payload_seq(&from_a) + 1);
    // On A, one event per subscription (group and instance), both with that seq.
    let mut on_a_events = [on_a.recv_event().await, on_a.recv_event().await];
    on_a_events.sort_by_key(|e| e["payload"]["request_id"].to_string());
    for (event, request_id) in on_a_events.iter().zip(["g", "i"]) {
        assert_eq!(event["payload"]["request_id"], request_id);
        assert_eq!(event["payload"]["action"], "update");
        assert_eq!(payload_seq(event), payload_seq(&from_b));
        assert_eq!(event["payload"]["data"], updated);
    }
    println!(
        "cross-process: create seq {} and update seq {} reached both processes",
        payload_seq(&from_a),
        payload_seq(&from_b)
    );
}

/// A live query's view on one process, kept by its events; writes on the other process.
#[tokio::test]
#[ignore = "needs PostgreSQL (REST_LIVE_TEST_POSTGRES_URL): run with -- --ignored"]
async fn live_queries_on_one_process_follow_writes_on_the_other() {
    let db = TestDatabase::require_postgres().await;
    let (a, b) = tokio::join!(
        ExampleProcess::start("A", &db.url, &[], &[]),
        ExampleProcess::start("B", &db.url, &[], &[])
    );
    let client = reqwest::Client::new();
    let (_, list) = http(
        &client,
        reqwest::Method::POST,
        b.url("/api/lists/"),
        Some(json!({"name": "shared"})),
    )
    .await
    .expect("POST /api/lists/");
    let list = list["id"].as_i64().expect("id");
    let queries = [
        (
            "window",
            json!({"filter": {"list_id": list}, "ordering": ["-priority"], "limit": 2}),
        ),
        ("open", json!({"filter": {"list_id": list, "done": false}})),
    ];
    let mut on_a = WsClient::connect(&a.ws_url()).await;
    let mut views: Vec<std::collections::BTreeMap<i64, Value>> = Vec::new();
    for (id, query) in &queries {
        let reply = on_a
            .request(json!({"stream": "tasks", "payload": {
                "action": "subscribe", "request_id": id, "snapshot": true, "query": query}}))
            .await;
        assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
        assert_eq!(reply["payload"]["data"]["results"], json!([]), "{reply}");
        views.push(Default::default());
    }
    let mut on_b = WsClient::connect(&b.ws_url()).await;
    let mut tasks = Vec::new();
    // Creates, reorders (rows leave the window and the refill on A reads what B wrote), and
    // deletes, all on B.
    let mut writes: Vec<(String, Value)> = Vec::new();
    for (i, priority) in [3, 7, 1, 9, 5].into_iter().enumerate() {
        writes.push((
            "create".into(),
            json!({"data": {"text": format!("t{i}"), "list_id": list, "priority": priority}}),
        ));
    }
    for step in 0..writes.len() + 6 {
        let (action, args) = if step < writes.len() {
            writes[step].clone()
        } else {
            let pk = tasks[(step * 3) % tasks.len()];
            match step % 3 {
                0 => (
                    "patch".to_owned(),
                    json!({"pk": pk, "data": {"priority": 0}}),
                ),
                1 => (
                    "patch".to_owned(),
                    json!({"pk": pk, "data": {"done": true, "priority": 8}}),
                ),
                _ => ("delete".to_owned(), json!({"pk": pk})),
            }
        };
        let reply = on_b.call("tasks", &action, args).await;
        assert!(reply.status < 300, "{reply}");
        if action == "create" {
            tasks.push(reply.data["id"].as_i64().expect("id"));
        } else if action == "delete" {
            let pk = reply.request["payload"]["pk"].as_i64().expect("pk");
            tasks.retain(|t| *t != pk);
        }
        // What `list` on B says each view should be now.
        for (k, (id, query)) in queries.iter().enumerate() {
            let mut args = query.as_object().expect("query").clone();
            args.entry("limit").or_insert(json!(1000));
            let page = on_b
                .call("tasks", "list", Value::Object(args))
                .await
                .expect(200);
            let want: std::collections::BTreeMap<i64, Value> = page["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| (r["id"].as_i64().expect("id"), r.clone()))
                .collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while views[k] != want {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let Some(Received::Event(frame)) = on_a.recv_any(left).await else {
                    panic!(
                        "view {id} on A after step {step}: {:?}, list on B: {:?}",
                        views[k].keys(),
                        want.keys()
                    );
                };
                let p = &frame["payload"];
                let view = &mut views[if p["request_id"] == "window" { 0 } else { 1 }];
                match p["action"].as_str() {
                    Some("delete") => {
                        view.remove(&p["data"]["pk"].as_i64().expect("pk"));
                    }
                    _ => {
                        view.insert(p["data"]["id"].as_i64().expect("id"), p["data"].clone());
                    }
                }
            }
        }
    }
    on_a.expect_silence(Duration::from_millis(300)).await;
    println!(
        "cross-process: {} tasks left, both views equal list",
        tasks.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Subscribers.

#[derive(Debug, Clone, PartialEq)]
struct Event {
    seq: i64,
    action: String,
    data: Value,
}

struct Subscription {
    name: String,
    /// The process it first connects to.
    home: usize,
    target: Target,
    /// The subscribe payload, without `since`.
    payload: Value,
}

impl Subscription {
    fn frame(&self, since: Option<i64>) -> Value {
        let mut payload = self.payload.clone();
        if let Some(since) = since {
            payload["since"] = json!(since);
        }
        json!({"stream": "tasks", "payload": payload})
    }
}

/// What the subscribers have seen, for the test to wait on.
struct Progress {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last frame any subscriber received.
    last_frame: AtomicU64,
    /// Per subscriber, the newest seq seen (its subscription's start seq at first).
    seen: Vec<AtomicI64>,
    /// Writes acknowledged so far, and whether the writers are done.
    acknowledged: Arc<AtomicUsize>,
    writes_done: AtomicBool,
}

impl Progress {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_frame.fetch_max(now, Ordering::Relaxed);
    }

    /// Waits until `n` more writes are acknowledged (or the writers are done).
    async fn let_writes_pass(&self, n: usize) {
        let target = self.acknowledged.load(Ordering::Relaxed) + n;
        while self.acknowledged.load(Ordering::Relaxed) < target
            && !self.writes_done.load(Ordering::Relaxed)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn since_last_frame(&self) -> Duration {
        let last = Duration::from_millis(self.last_frame.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

struct Followed {
    /// The seq the first subscribe reply returned: events are expected after it.
    start: i64,
    events: Vec<Event>,
    /// How each connection ended before the subscriber resumed elsewhere.
    closes: Vec<Closed>,
    /// Events received from a resume's replay (at or before its reply's seq).
    replayed: usize,
}

/// Subscribes, records every event until `stop`, and on a closed socket reconnects to the next
/// process that accepts connections and resumes with `since: <last seq seen>`.
async fn follow(
    index: usize,
    sub: Arc<Subscription>,
    addrs: Arc<Vec<String>>,
    progress: Arc<Progress>,
    subscribed: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Followed {
    let mut server = sub.home;
    let mut ws = WsClient::connect(&ws_url(&addrs[server])).await;
    let reply = ws.request(sub.frame(None)).await;
    assert_eq!(
        reply["payload"]["response_status"], 201,
        "{}: {reply}",
        sub.name
    );
    let start = reply["payload"]["data"]["seq"].as_i64().expect("seq");
    progress.seen[index].store(start, Ordering::Relaxed);
    let _ = subscribed.send(());

    let (mut events, mut closes, mut position) = (Vec::new(), Vec::new(), start);
    let (mut replay_upto, mut replayed) = (start, 0);
    loop {
        let received = tokio::select! {
            received = ws.recv_any(SETTLE) => received,
            _ = stop.changed() => break,
        };
        match received {
            Some(Received::Event(frame)) => {
                let p = &frame["payload"];
                assert_eq!(p["request_id"], sub.name.as_str(), "{frame}");
                let event = Event {
                    seq: p["seq"].as_i64().expect("seq"),
                    action: p["action"].as_str().expect("action").to_owned(),
                    data: p["data"].clone(),
                };
                position = event.seq;
                if event.seq <= replay_upto {
                    replayed += 1;
                }
                progress.seen[index].fetch_max(position, Ordering::Relaxed);
                progress.touch();
                events.push(event);
            }
            Some(Received::Reply(frame)) => panic!("{}: unexpected reply {frame}", sub.name),
            Some(Received::Closed(how)) => {
                closes.push(how);
                // Like a client backing off before it reconnects: writes go on meanwhile.
                progress.let_writes_pass(RECONNECT_LAG).await;
                // Fail over to the other process and resume after the last seq seen.
                loop {
                    server = reachable(&addrs, server + 1).await;
                    ws = WsClient::connect(&ws_url(&addrs[server])).await;
                    match ws.try_request(sub.frame(Some(position))).await {
                        Ok(reply) => {
                            assert_eq!(
                                reply["payload"]["response_status"], 201,
                                "{} resuming after {position}: {reply}",
                                sub.name
                            );
                            replay_upto = reply["payload"]["data"]["seq"].as_i64().expect("seq");
                            break;
                        }
                        Err(how) => closes.push(how),
                    }
                }
                progress.touch();
            }
            None => {}
        }
    }
    Followed {
        start,
        events,
        closes,
        replayed,
    }
}

// ---------------------------------------------------------------------------------------------
// Writers.

enum Op {
    Create { list: i64, text: String },
    Patch { pk: i64, data: Value },
    Move { pk: i64, list: i64 },
    Delete { pk: i64 },
}

#[derive(Default, Debug)]
struct WriterStats {
    acknowledged: usize,
    creates: usize,
    patches: usize,
    moves: usize,
    deletes: usize,
    /// Writes sent again after their connection was lost without a reply.
    retried: usize,
    failovers: usize,
}

struct Writer {
    index: usize,
    addrs: Arc<Vec<String>>,
    server: usize,
    /// `None`: this writer uses HTTP.
    ws: Option<WsClient>,
    client: reqwest::Client,
    lists: Vec<i64>,
    rng: u64,
    /// This writer's tasks (pk, list); the seed task is followed by instance subscribers and only
    /// deleted by the writer's last write.
    own: Vec<(i64, i64)>,
    seed: (i64, i64),
    stats: WriterStats,
    acknowledged: Arc<AtomicUsize>,
}

impl Writer {
    fn random(&mut self, n: usize) -> usize {
        // xorshift64: deterministic per writer, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % n as u64) as usize
    }

    /// A task of this writer to change: one of its own, or its seed.
    fn pick(&mut self) -> (i64, i64) {
        let i = self.random(self.own.len() + 1);
        self.own.get(i).copied().unwrap_or(self.seed)
    }

    fn next_op(&mut self, n: usize) -> Op {
        let roll = self.random(100);
        if self.own.len() < 3 || roll < 30 {
            let i = self.random(self.lists.len());
            let list = self.lists[i];
            let text = format!("w{}-{n}", self.index);
            return Op::Create { list, text };
        }
        if roll < 55 {
            let (pk, _) = self.pick();
            let data =
                json!({"text": format!("w{}-{n} edited", self.index), "done": n.is_multiple_of(2)});
            return Op::Patch { pk, data };
        }
        if roll < 80 {
            let (pk, from) = self.pick();
            let others: Vec<i64> = self.lists.iter().copied().filter(|l| *l != from).collect();
            let list = others[self.random(others.len())];
            return Op::Move { pk, list };
        }
        let i = self.random(self.own.len());
        Op::Delete { pk: self.own[i].0 }
    }

    async fn send(&mut self, op: &Op) -> Option<(u16, Value)> {
        let (action, pk, data) = match op {
            Op::Create { list, text } => ("create", None, json!({"text": text, "list_id": list})),
            Op::Patch { pk, data } => ("patch", Some(*pk), data.clone()),
            Op::Move { pk, list } => ("patch", Some(*pk), json!({"list_id": list})),
            Op::Delete { pk } => ("delete", Some(*pk), Value::Null),
        };
        if let Some(ws) = &mut self.ws {
            let mut payload = json!({"action": action, "request_id": self.index, "data": data});
            if let Some(pk) = pk {
                payload["pk"] = json!(pk);
            }
            let reply = ws
                .try_request(json!({"stream": "tasks", "payload": payload}))
                .await
                .ok()?;
            let p = &reply["payload"];
            let status = p["response_status"].as_u64().expect("status") as u16;
            return Some((status, p["data"].clone()));
        }
        let base = format!("http://{}/api/tasks/", self.addrs[self.server]);
        let (method, url, body) = match (action, pk) {
            ("create", _) => (reqwest::Method::POST, base, Some(data)),
            ("patch", Some(pk)) => (reqwest::Method::PATCH, format!("{base}{pk}/"), Some(data)),
            (_, pk) => (
                reqwest::Method::DELETE,
                format!("{base}{}/", pk.unwrap_or_default()),
                None,
            ),
        };
        http(&self.client, method, url, body).await
    }

    /// Sends `op` until it is answered, failing over to the other process when the connection
    /// is lost. A write whose reply was lost may or may not have committed: the log says which.
    async fn perform(&mut self, op: &Op) -> (u16, Value, bool) {
        let mut retried = false;
        loop {
            if let Some((status, data)) = self.send(op).await {
                return (status, data, retried);
            }
            retried = true;
            self.stats.retried += 1;
            self.server = reachable(&self.addrs, self.server + 1).await;
            if self.ws.is_some() {
                self.ws = Some(WsClient::connect(&ws_url(&self.addrs[self.server])).await);
            }
            self.stats.failovers += 1;
        }
    }

    async fn run(mut self) -> WriterStats {
        for n in 0..OPS_PER_WRITER {
            let op = if n + 1 == OPS_PER_WRITER {
                Op::Delete { pk: self.seed.0 }
            } else {
                self.next_op(n)
            };
            let (status, data, retried) = self.perform(&op).await;
            let ok = match &op {
                Op::Create { list, .. } => {
                    self.stats.creates += 1;
                    let made = status == 201;
                    if made {
                        self.own.push((data["id"].as_i64().expect("id"), *list));
                    }
                    made
                }
                Op::Patch { .. } => {
                    self.stats.patches += 1;
                    status == 200
                }
                Op::Move { pk, list } => {
                    self.stats.moves += 1;
                    for task in self.own.iter_mut().chain([&mut self.seed]) {
                        if task.0 == *pk {
                            task.1 = *list;
                        }
                    }
                    status == 200
                }
                Op::Delete { pk } => {
                    self.stats.deletes += 1;
                    self.own.retain(|t| t.0 != *pk);
                    // A retried delete whose first attempt committed finds nothing.
                    if retried && status == 404 {
                        continue;
                    }
                    status == 204
                }
            };
            assert!(ok, "writer {}: status {status}: {data}", self.index);
            self.stats.acknowledged += 1;
            self.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
    }
}

// ---------------------------------------------------------------------------------------------
// The multi-process run.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (REST_LIVE_TEST_POSTGRES_URL): run with -- --ignored"]
async fn two_processes_one_database_nothing_lost_nothing_twice_across_a_kill() {
    let db = TestDatabase::require_postgres().await;
    let began = Instant::now();
    // Both at once, as a deployment starts its replicas (they migrate the fresh database).
    // Unthrottled: eight writers from one address, back to back.
    let unthrottled = [("REST_LIVE_THROTTLE", "off")];
    let (a, b) = tokio::join!(
        ExampleProcess::start("A", &db.url, &unthrottled, &[]),
        ExampleProcess::start("B", &db.url, &unthrottled, &[])
    );
    let mut processes = vec![a, b];
    let addrs = Arc::new(
        processes
            .iter()
            .map(|p| p.addr().to_owned())
            .collect::<Vec<_>>(),
    );
    // In-process view of the same database, for the change log (the truth) at the end.
    let app = common::models::builder()
        .database_url(db.url.clone())
        .build()
        .await
        .expect("in-process app on the test database");

    // Lists, and one seed task per writer (instance subscribers follow some of them).
    let client = reqwest::Client::new();
    let mut lists = Vec::new();
    for i in 0..LISTS {
        let url = format!("http://{}/api/lists/", addrs[i % 2]);
        let (status, list) = http(
            &client,
            reqwest::Method::POST,
            url,
            Some(json!({"name": format!("list {i}")})),
        )
        .await
        .expect("POST /api/lists/");
        assert_eq!(status, 201, "{list}");
        lists.push(list["id"].as_i64().expect("id"));
    }
    let mut seeds = Vec::new();
    for w in 0..WRITERS {
        let list = lists[w % LISTS];
        let url = format!("http://{}/api/tasks/", addrs[w % 2]);
        let body = json!({"text": format!("seed {w}"), "list_id": list});
        let (status, task) = http(&client, reqwest::Method::POST, url, Some(body))
            .await
            .expect("POST /api/tasks/");
        assert_eq!(status, 201, "{task}");
        seeds.push((task["id"].as_i64().expect("id"), list));
    }

    // Subscribers: on each process, group subscriptions spread over the lists and instance
    // subscriptions on seed tasks; one subscription per socket.
    let mut subscriptions = Vec::new();
    for home in 0..2 {
        for k in 0..GROUP_SUBSCRIBERS {
            let list = lists[(k + home) % LISTS];
            let name = format!("p{home}-group{k}-list{list}");
            subscriptions.push(Subscription {
                payload: json!({"action": "subscribe", "request_id": name, "group": {"list_id": list}}),
                target: Target::Group("list_id", list.to_string()),
                name,
                home,
            });
        }
        for k in 0..INSTANCE_SUBSCRIBERS {
            let pk = seeds[home * INSTANCE_SUBSCRIBERS + k].0;
            let name = format!("p{home}-task{pk}");
            subscriptions.push(Subscription {
                payload: json!({"action": "subscribe_instance", "request_id": name, "pk": pk}),
                target: Target::Instance(pk.to_string()),
                name,
                home,
            });
        }
    }
    let subscriptions: Vec<Arc<Subscription>> = subscriptions.into_iter().map(Arc::new).collect();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Progress {
        epoch: Instant::now(),
        last_frame: AtomicU64::new(0),
        seen: subscriptions.iter().map(|_| AtomicI64::new(0)).collect(),
        acknowledged: acknowledged.clone(),
        writes_done: AtomicBool::new(false),
    });
    let (stop, stopped) = watch::channel(false);
    let mut followers = Vec::new();
    let mut ready = Vec::new();
    for (i, sub) in subscriptions.iter().enumerate() {
        let (subscribed, is_subscribed) = oneshot::channel();
        ready.push(is_subscribed);
        followers.push(tokio::spawn(follow(
            i,
            sub.clone(),
            addrs.clone(),
            progress.clone(),
            subscribed,
            stopped.clone(),
        )));
    }
    for is_subscribed in ready {
        is_subscribed.await.expect("a subscriber subscribed");
    }

    // Writers: half on each process, the last one of each over HTTP, the others over WebSocket.
    let mut writers = Vec::new();
    for (w, &seed) in seeds.iter().enumerate() {
        let server = w % 2;
        let ws = if w >= WRITERS - 2 {
            None
        } else {
            Some(WsClient::connect(&ws_url(&addrs[server])).await)
        };
        let writer = Writer {
            index: w,
            addrs: addrs.clone(),
            server,
            ws,
            client: reqwest::Client::new(),
            lists: lists.clone(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            own: Vec::new(),
            seed,
            stats: WriterStats::default(),
            acknowledged: acknowledged.clone(),
        };
        writers.push(tokio::spawn(writer.run()));
    }

    // Midway, kill process B (index 1) outright.
    let half = WRITERS * OPS_PER_WRITER / 2;
    let deadline = Instant::now() + SETTLE;
    while acknowledged.load(Ordering::Relaxed) < half {
        assert!(
            Instant::now() < deadline && !writers.iter().any(|w| w.is_finished()),
            "the writers did not reach {half} writes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    processes[1].kill();
    let killed_at = (acknowledged.load(Ordering::Relaxed), head(&app).await);

    let mut stats = Vec::new();
    for writer in writers {
        stats.push(writer.await.expect("writer"));
    }
    let writes_done = began.elapsed();
    progress.writes_done.store(true, Ordering::Relaxed);

    // The truth: the committed change log, and each subscription's events derived from it.
    let changes = app
        .read(|c| Ok(internals::read_stream(c, "tasks", 0, i64::MAX, 1_000_000)?))
        .await
        .expect("read the change log");
    let log_head = changes.last().map_or(0, |c| c.seq);
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (1..=log_head).collect::<Vec<_>>(),
        "the log's seqs are 1..=head"
    );
    // Wait until every subscriber has seen the last change of its subscription, then for silence.
    let expected_last: Vec<i64> = subscriptions
        .iter()
        .map(|sub| {
            changes
                .iter()
                .rev()
                .find(|c| sub.target.action_for(c).is_some())
                .map_or(0, |c| c.seq)
        })
        .collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let behind = (0..subscriptions.len())
            .filter(|&i| progress.seen[i].load(Ordering::Relaxed) < expected_last[i])
            .count();
        if behind == 0 {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("{behind} subscribers still behind after {SETTLE:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while progress.since_last_frame() < QUIET {
        tokio::time::sleep(QUIET - progress.since_last_frame()).await;
    }
    let _ = stop.send(true);
    let mut followed = Vec::new();
    for follower in followers {
        followed.push(follower.await.expect("subscriber"));
    }

    // Compare, and count.
    let audience =
        internals::audience(&app, "tasks", &Principal::anonymous()).expect("the tasks stream");
    let (mut delivered, mut duplicates, mut gaps, mut unexpected, mut disordered) = (0, 0, 0, 0, 0);
    let (mut resumed, mut replayed, mut slow_closes, mut mismatches) = (0, 0, 0, Vec::new());
    for (sub, got) in subscriptions.iter().zip(&followed) {
        let expected: Vec<Event> = changes
            .iter()
            .filter(|c| c.seq > got.start)
            .filter_map(|c| {
                // What the subscription gets, as its (anonymous) client may see it.
                let (action, data) = audience.event(c, sub.target.action_for(c)?)?;
                Some(Event {
                    seq: c.seq,
                    action: action.as_str().to_owned(),
                    data: serde_json::from_str(&data).expect("JSON"),
                })
            })
            .collect();
        let seqs: Vec<i64> = got.events.iter().map(|e| e.seq).collect();
        let unique: BTreeSet<i64> = seqs.iter().copied().collect();
        let wanted: BTreeSet<i64> = expected.iter().map(|e| e.seq).collect();
        delivered += seqs.len();
        duplicates += seqs.len() - unique.len();
        gaps += wanted.difference(&unique).count();
        unexpected += unique.difference(&wanted).count();
        disordered += seqs.windows(2).filter(|w| w[0] >= w[1]).count();
        if !got.closes.is_empty() {
            resumed += 1;
        }
        replayed += got.replayed;
        slow_closes += got
            .closes
            .iter()
            .filter(|c| **c == Closed::Code(4008))
            .count();
        if sub.home == 1 {
            assert!(
                !got.closes.is_empty(),
                "{}: a subscriber of the killed process did not resume",
                sub.name
            );
        }
        if got.events != expected {
            let at = got
                .events
                .iter()
                .zip(&expected)
                .position(|(g, e)| g != e)
                .unwrap_or(got.events.len().min(expected.len()));
            mismatches.push(format!(
                "{} (after seq {}): got {} events, expected {}; first difference at #{at}: got {:?}, expected {:?}",
                sub.name,
                got.start,
                got.events.len(),
                expected.len(),
                got.events.get(at),
                expected.get(at)
            ));
        }
    }
    let total: WriterStats = stats.iter().fold(WriterStats::default(), |mut t, s| {
        t.acknowledged += s.acknowledged;
        t.creates += s.creates;
        t.patches += s.patches;
        t.moves += s.moves;
        t.deletes += s.deletes;
        t.retried += s.retried;
        t.failovers += s.failovers;
        t
    });
    let figures = format!(
        "multi-process run (2 processes, one PostgreSQL database, {} s for the writes):\n\
         \x20 writes: {} acknowledged by {WRITERS} writers ({} creates, {} patches, {} group moves, {} deletes), \
         {} retried after a lost reply; change log of tasks: {log_head} changes\n\
         \x20 process B killed (SIGKILL) after {} writes, at tasks seq {}; {} writers failed over\n\
         \x20 subscribers: {} ({} group, {} instance; one socket each), {resumed} resumed with since ({slow_closes} after a 4008 close), \
         receiving {replayed} missed events from the log\n\
         \x20 events delivered: {delivered}; duplicates = {duplicates}, gaps = {gaps}, unexpected = {unexpected}, out of order = {disordered}",
        writes_done.as_secs_f64().round(),
        total.acknowledged,
        total.creates,
        total.patches,
        total.moves,
        total.deletes,
        total.retried,
        killed_at.0,
        killed_at.1,
        stats.iter().filter(|s| s.failovers > 0).count(),
        subscriptions.len(),
        2 * GROUP_SUBSCRIBERS,
        2 * INSTANCE_SUBSCRIBERS,
    );
    println!("{figures}");

    assert!(
        mismatches.is_empty(),
        "{} subscriptions differ from the log:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!((duplicates, gaps, unexpected, disordered), (0, 0, 0, 0));
    assert!(total.acknowledged >= 4000, "at least 4,000 writes");
    // The in-process app first (its background tasks stop with its last handle: wait for that,
    // or they would keep asking for connections to the database dropped below), then the
    // servers, then their database.
    let app_handle = app.downgrade();
    drop(app);
    let deadline = Instant::now() + SETTLE;
    while app_handle.upgrade().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(processes);
    drop(db);
}

/// The last committed seq of the tasks stream.
async fn head(app: &rest_live::App) -> i64 {
    app.read(|c| Ok(internals::stream_head(c, "tasks")?))
        .await
        .expect("stream head")
}
