//! docs/protocol.md §4 (live queries), end to end against the example's tasks: the events of a
//! view without and with a limit, resuming, sharing, limits and errors; and a seeded property
//! test where several principals follow several live queries through random writes, and every
//! view equals `list` with the same query after each change (SQLite here, PostgreSQL with
//! `-- --ignored`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rest_live::testing::{Received, TestDatabase, TestServer, WsClient};
use serde_json::{Value, json};

fn anonymous() -> rest_live::AppBuilder {
    common::models::builder().throttle(false)
}

async fn task(server: &TestServer, list: i64, text: &str, priority: i64, done: bool) -> i64 {
    server
        .post(
            "/api/tasks/",
            json!({"text": text, "list_id": list, "priority": priority, "done": done}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id")
}

/// The next event as (action, request_id, pk, seq).
async fn event(ws: &mut WsClient) -> (String, Value, i64, i64) {
    let e = ws.next_event().await;
    let p = &e["payload"];
    let pk = p["data"]["id"]
        .as_i64()
        .or_else(|| p["data"]["pk"].as_i64())
        .unwrap_or_else(|| panic!("an event with a pk: {e}"));
    (
        p["action"].as_str().expect("action").to_owned(),
        p["request_id"].clone(),
        pk,
        p["seq"].as_i64().expect("seq"),
    )
}

fn ids(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .unwrap_or_else(|| panic!("rows: {rows}"))
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn a_view_without_limit_sees_rows_enter_change_and_leave() {
    let server = TestServer::start(anonymous()).await;
    let (one, two) = (
        common::create_list(&server, "one").await,
        common::create_list(&server, "two").await,
    );
    let early = task(&server, one, "early", 5, false).await;
    task(&server, one, "low", 1, false).await;
    task(&server, two, "elsewhere", 7, false).await;
    let mut ws = server.ws().await;
    let reply = ws
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "q", "snapshot": true,
                   "query": {"filter": {"list_id": one, "priority__gte": 3}, "ordering": ["-priority"]}}),
        )
        .await;
    let data = reply.expect(201);
    assert_eq!(ids(&data["results"]), vec![early], "{reply}");
    let seq = data["seq"].as_i64().expect("seq");

    // Created matching: create. Created not matching: nothing.
    let hot = task(&server, one, "hot", 9, false).await;
    task(&server, one, "cold", 0, false).await;
    assert_eq!(
        event(&mut ws).await,
        ("create".into(), json!("q"), hot, seq + 1)
    );
    // Changed and still matching: update; changed so that it no longer matches: delete.
    server
        .patch(&format!("/api/tasks/{hot}/"), json!({"text": "hotter"}))
        .await
        .expect(200);
    let (action, _, pk, _) = event(&mut ws).await;
    assert_eq!((action.as_str(), pk), ("update", hot));
    server
        .patch(&format!("/api/tasks/{hot}/"), json!({"priority": 2}))
        .await
        .expect(200);
    let e = ws.next_event().await;
    assert_eq!(e["payload"]["action"], "delete", "{e}");
    assert_eq!(e["payload"]["data"], json!({"pk": hot}), "{e}");
    // Moved into the other list: it leaves; moved back with a matching priority: it enters.
    server
        .patch(&format!("/api/tasks/{early}/"), json!({"list_id": two}))
        .await
        .expect(200);
    assert_eq!(event(&mut ws).await.0, "delete");
    server
        .patch(&format!("/api/tasks/{hot}/"), json!({"priority": 8}))
        .await
        .expect(200);
    assert_eq!(event(&mut ws).await.0, "create");
    server.delete(&format!("/api/tasks/{hot}/")).send().await;
    assert_eq!(event(&mut ws).await.0, "delete");
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_window_keeps_the_first_rows_deletes_first_and_refills_from_the_database() {
    let server = TestServer::start(anonymous()).await;
    let list = common::create_list(&server, "one").await;
    let a = task(&server, list, "a", 8, false).await;
    let b = task(&server, list, "b", 7, false).await;
    let c = task(&server, list, "c", 6, false).await;
    let d = task(&server, list, "d", 5, false).await;
    let mut ws = server.ws().await;
    let query = json!({"filter": {"list_id": list}, "ordering": ["-priority"], "limit": 2});
    let reply = ws
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "top", "snapshot": true, "query": query}),
        )
        .await;
    assert_eq!(ids(&reply.expect(201)["results"]), vec![a, b], "{reply}");

    // A row that sorts first pushes the last one out: delete first, then create, one seq.
    let first = task(&server, list, "first", 9, false).await;
    let (out, _, out_pk, s1) = event(&mut ws).await;
    let (into, _, in_pk, s2) = event(&mut ws).await;
    assert_eq!(
        (out.as_str(), out_pk, into.as_str(), in_pk),
        ("delete", b, "create", first)
    );
    assert_eq!(s1, s2);

    // A row that leaves is replaced by the next one, read from the database.
    server.delete(&format!("/api/tasks/{first}/")).send().await;
    let (out, _, out_pk, s1) = event(&mut ws).await;
    let (into, _, in_pk, s2) = event(&mut ws).await;
    assert_eq!(
        (out.as_str(), out_pk, into.as_str(), in_pk),
        ("delete", first, "create", b)
    );
    assert_eq!(s1, s2);

    // A row of the window that moves past the last one but stays first of the rest: update.
    server
        .patch(&format!("/api/tasks/{a}/"), json!({"priority": 6}))
        .await
        .expect(200);
    // a (6, pk a) sorts before c (6, pk c): it stays, after b.
    assert_eq!(
        event(&mut ws).await,
        ("update".into(), json!("top"), a, s1 + 1)
    );
    // Moving further down, past c: it leaves, and c comes in.
    server
        .patch(&format!("/api/tasks/{a}/"), json!({"priority": 1}))
        .await
        .expect(200);
    let (out, _, out_pk, _) = event(&mut ws).await;
    let (into, _, in_pk, _) = event(&mut ws).await;
    assert_eq!(
        (out.as_str(), out_pk, into.as_str(), in_pk),
        ("delete", a, "create", c)
    );
    // A change below the window: nothing.
    server
        .patch(&format!("/api/tasks/{d}/"), json!({"text": "dd"}))
        .await
        .expect(200);
    ws.expect_silence(Duration::from_millis(200)).await;

    let list_reply = ws
        .call(
            "tasks",
            "list",
            json!({"filter": {"list_id": list}, "ordering": ["-priority"], "limit": 2}),
        )
        .await
        .expect(200);
    assert_eq!(ids(&list_reply["results"]), vec![b, c]);
}

#[tokio::test]
async fn resuming_replays_a_view_exactly_and_resets_a_window() {
    let server = TestServer::start(anonymous()).await;
    let list = common::create_list(&server, "one").await;
    let kept = task(&server, list, "kept", 5, false).await;
    let leaves = task(&server, list, "leaves", 5, false).await;
    let mut ws = server.ws().await;
    let query = json!({"filter": {"list_id": list, "done": false}});
    let seq = ws
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "q", "query": query}),
        )
        .await
        .expect(201)["seq"]
        .as_i64()
        .expect("seq");
    drop(ws);
    server
        .patch(&format!("/api/tasks/{leaves}/"), json!({"done": true}))
        .await
        .expect(200);
    let arrives = task(&server, list, "arrives", 1, false).await;
    server
        .patch(&format!("/api/tasks/{kept}/"), json!({"text": "kept!"}))
        .await
        .expect(200);

    let mut ws = server.ws().await;
    let reply = ws
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "q", "since": seq, "query": query}),
        )
        .await;
    assert_eq!(reply.expect(201)["seq"], seq + 3, "{reply}");
    assert_eq!(
        event(&mut ws).await,
        ("delete".into(), json!("q"), leaves, seq + 1)
    );
    assert_eq!(
        event(&mut ws).await,
        ("create".into(), json!("q"), arrives, seq + 2)
    );
    assert_eq!(
        event(&mut ws).await,
        ("update".into(), json!("q"), kept, seq + 3)
    );

    // With a limit, resuming answers the window afresh.
    let windowed = json!({"filter": {"list_id": list}, "ordering": ["priority"], "limit": 1});
    let reply = ws
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "w", "since": seq, "query": windowed}),
        )
        .await;
    let data = reply.expect(201);
    assert_eq!(data["reset"], true, "{reply}");
    assert_eq!(ids(&data["results"]), vec![arrives], "{reply}");
    assert_eq!(data["seq"], seq + 3, "{reply}");
    // A since older than the log keeps for a view without a limit is 410 as before.
    let server = TestServer::start(anonymous().retain_changes(1)).await;
    let list = common::create_list(&server, "one").await;
    for i in 0..3 {
        task(&server, list, &format!("t{i}"), 1, false).await;
    }
    let mut ws = server.ws().await;
    let reply = ws
        .call(
            "tasks",
            "subscribe",
            json!({"since": 0, "query": {"filter": {"list_id": list}}}),
        )
        .await;
    // Pruning runs in the background; the log may still hold everything at first.
    assert!(matches!(reply.status, 201 | 410), "{reply}");
}

#[tokio::test]
async fn identical_queries_share_a_view_and_unsubscribing_stops_only_one() {
    let server = TestServer::start(anonymous()).await;
    let list = common::create_list(&server, "one").await;
    let query = json!({"filter": {"list_id": list}, "ordering": ["-priority"], "limit": 3});
    let mut one = server.ws().await;
    let mut two = server.ws().await;
    for ws in [&mut one, &mut two] {
        ws.call(
            "tasks",
            "subscribe",
            json!({"request_id": "same", "query": query}),
        )
        .await
        .expect(201);
    }
    // The same query under another request id on the same socket is its own subscription.
    one.call(
        "tasks",
        "subscribe",
        json!({"request_id": "other", "query": query}),
    )
    .await
    .expect(201);
    let t = task(&server, list, "t", 1, false).await;
    let mut got: Vec<_> = vec![event(&mut one).await, event(&mut one).await];
    got.sort_by_key(|e| e.1.to_string());
    assert_eq!(got[0].1, json!("other"));
    assert_eq!(got[1].1, json!("same"));
    assert_eq!(event(&mut two).await.2, t);
    one.call("tasks", "unsubscribe", json!({"request_id": "other"}))
        .await
        .expect(204);
    task(&server, list, "u", 1, false).await;
    assert_eq!(event(&mut one).await.1, json!("same"));
    assert_eq!(event(&mut two).await.1, json!("same"));
    one.expect_silence(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn live_query_errors_follow_section_3() {
    let server = TestServer::start(anonymous().configure(|c| c.max_live_queries = 3)).await;
    let mut ws = server.ws().await;
    let cases = [
        (
            json!({"filter": {"text__regex": "a"}}),
            json!([{"text__regex": ["Unknown filter."]}]),
        ),
        (
            json!({"filter": {"priority__gte": "x"}}),
            json!([{"priority__gte": ["A valid integer is required."]}]),
        ),
        (
            json!({"ordering": ["secret"]}),
            json!([{"ordering": ["Unknown field \"secret\"."]}]),
        ),
        (
            json!({"offset": 2}),
            json!([{"offset": ["Not allowed in a live query."]}]),
        ),
        (
            json!({"after": "x"}),
            json!([{"after": ["Not allowed in a live query."]}]),
        ),
        (
            json!({"limit": 0}),
            json!([{"limit": ["Ensure this value is greater than or equal to 1."]}]),
        ),
        (
            json!({"limit": 1001}),
            json!([{"limit": ["Ensure this value is less than or equal to 1000."]}]),
        ),
    ];
    for (query, errors) in cases {
        let reply = ws.call("tasks", "subscribe", json!({"query": query})).await;
        assert_eq!(reply.status, 400, "{reply}");
        assert_eq!(reply.errors, errors, "{reply}");
        reply.assert_envelope();
    }
    for i in 0..3 {
        ws.call(
            "tasks",
            "subscribe",
            json!({"request_id": i, "query": {"filter": {"priority": i}}}),
        )
        .await
        .expect(201);
    }
    let reply = ws
        .call("tasks", "subscribe", json!({"request_id": 9, "query": {}}))
        .await;
    assert_eq!(reply.status, 429, "{reply}");
    assert_eq!(reply.errors, json!(["Too many subscriptions."]), "{reply}");
    // Group subscriptions are not live queries: they still fit.
    ws.call(
        "tasks",
        "subscribe",
        json!({"request_id": 10, "group": {"list_id": 1}}),
    )
    .await
    .expect(201);
    // One fewer, and there is room again.
    ws.call("tasks", "unsubscribe", json!({"request_id": 0}))
        .await
        .expect(204);
    ws.call("tasks", "subscribe", json!({"request_id": 9, "query": {}}))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_principal_sees_only_what_it_may_read_in_its_view() {
    let tokens = common::models::demo_tokens();
    let server =
        TestServer::start(common::models::builder_with_users(tokens).throttle(false)).await;
    let alice = server.client_as("alice-token");
    let carol = server.client_as("carol-token");
    let list_a = alice
        .post("/api/lists/", json!({"name": "a"}))
        .await
        .expect(201)["id"]
        .clone();
    let bob = server.client_as("bob-token");
    let list_b = bob
        .post("/api/lists/", json!({"name": "b"}))
        .await
        .expect(201)["id"]
        .clone();
    let mut ws_alice = server.ws_as("alice-token").await;
    let mut ws_carol = server.ws_as("carol-token").await;
    let query = json!({"filter": {"done": false}, "ordering": ["-priority"], "limit": 5});
    for ws in [&mut ws_alice, &mut ws_carol] {
        ws.call(
            "tasks",
            "subscribe",
            json!({"request_id": "q", "query": query}),
        )
        .await
        .expect(201);
    }
    let t = alice
        .post("/api/tasks/", json!({"text": "mine", "list_id": list_a}))
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");
    let e = ws_alice.next_event().await;
    assert_eq!(e["payload"]["action"], "create");
    assert!(e["payload"]["data"].get("owner").is_none(), "{e}");
    let e = ws_carol.next_event().await;
    assert_eq!(e["payload"]["data"]["owner"], "alice", "{e}");
    // Carol moves it to bob's list: it leaves alice's scope, and carol sees an update.
    carol
        .patch(&format!("/api/tasks/{t}/"), json!({"list_id": list_b}))
        .await
        .expect(200);
    assert_eq!(event(&mut ws_alice).await.0, "delete");
    assert_eq!(event(&mut ws_carol).await.0, "update");
    // A hidden field cannot be filtered on by who cannot see it.
    let reply = ws_alice
        .call(
            "tasks",
            "subscribe",
            json!({"query": {"filter": {"owner": "bob"}}}),
        )
        .await;
    assert_eq!(reply.status, 400, "{reply}");
}

// ---------------------------------------------------------------------------------------------
// The property: after every change, every view equals `list` with its query.

/// One client: who it is, its live queries (request id → query), and its views.
struct Follower {
    token: &'static str,
    ws: WsClient,
    queries: Vec<(String, Value)>,
    views: BTreeMap<String, BTreeMap<i64, Value>>,
    last_seq: BTreeMap<String, i64>,
    /// Events applied, by action.
    seen: BTreeMap<String, usize>,
    /// Per subscription, whether a create or update of the latest seq arrived.
    arrived: BTreeMap<String, usize>,
}

const QUERIES: &[&str] = &[
    r#"{}"#,
    r#"{"filter": {"done": false}}"#,
    r#"{"filter": {"priority__gte": 5}, "ordering": ["-priority"], "limit": 3}"#,
    r#"{"ordering": ["text"], "limit": 2}"#,
    r#"{"filter": {"text__icontains": "a"}, "ordering": ["-priority", "text"], "limit": 4}"#,
    r#"{"filter": {"priority__in": [1, 2, 3], "done": true}}"#,
    r#"{"filter": {"note__isnull": false}, "ordering": ["priority"], "limit": 1}"#,
];

/// A list's tasks query, made when the lists exist.
fn list_query(list: i64, limit: bool) -> Value {
    if limit {
        json!({"filter": {"list_id": list}, "ordering": ["-priority"], "limit": 2})
    } else {
        json!({"filter": {"list_id": list, "priority__lt": 6}})
    }
}

fn apply(view: &mut BTreeMap<i64, Value>, frame: &Value) {
    let p = &frame["payload"];
    match p["action"].as_str() {
        Some("create") | Some("update") => {
            view.insert(p["data"]["id"].as_i64().expect("id"), p["data"].clone());
        }
        Some("delete") => {
            view.remove(&p["data"]["pk"].as_i64().expect("pk"));
        }
        other => panic!("unexpected event {other:?}: {frame}"),
    }
}

/// What `list` says the view of `query` is for the client with `token`.
async fn expected(ws: &mut WsClient, query: &Value) -> BTreeMap<i64, Value> {
    let mut args = query.as_object().expect("a query").clone();
    args.entry("limit").or_insert(json!(1000));
    let page = ws
        .call("tasks", "list", Value::Object(args))
        .await
        .expect(200);
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["id"].as_i64().expect("id"), r.clone()))
        .collect()
}

/// Reads events until every view of `f` equals what `list` says (or the wait runs out).
async fn settle(lister: &mut WsClient, f: &mut Follower, step: usize, change: &str) {
    let mut want = BTreeMap::new();
    for (id, query) in &f.queries {
        want.insert(id.clone(), expected(lister, query).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.views != want {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match f.ws.recv_any(left).await {
            Some(Received::Event(frame)) => {
                let id = frame["payload"]["request_id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
                let seq = frame["payload"]["seq"].as_i64().expect("seq");
                let action = frame["payload"]["action"].as_str().unwrap_or("?");
                let last = f.last_seq.entry(id.clone()).or_insert(0);
                assert!(seq >= *last, "seq went back for {id}: {frame}");
                // The events of one change: deletes first.
                let arrived = f.arrived.entry(id.clone()).or_insert(0);
                if seq > *last {
                    *arrived = 0;
                }
                assert!(
                    action != "delete" || *arrived == 0,
                    "a delete after an arrival of the same change for {id}: {frame}"
                );
                if action != "delete" {
                    *arrived = 1;
                }
                *last = seq;
                apply(f.views.get_mut(&id).expect("a view"), &frame);
                let action = frame["payload"]["action"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                *f.seen.entry(action).or_default() += 1;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => {
                for (id, view) in &f.views {
                    assert_eq!(
                        view.keys().collect::<Vec<_>>(),
                        want[id].keys().collect::<Vec<_>>(),
                        "{} {id} ({}) after step {step} ({change})",
                        f.token,
                        f.queries.iter().find(|q| &q.0 == id).expect("query").1
                    );
                    assert_eq!(view, &want[id], "{} {id} after step {step}", f.token);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Change {
    Create {
        who: usize,
        list: usize,
        text: String,
        priority: i64,
        done: bool,
        note: bool,
    },
    Update {
        who: usize,
        pick: usize,
        priority: i64,
        done: bool,
        text: String,
    },
    Move {
        pick: usize,
        list: usize,
    },
    Delete {
        who: usize,
        pick: usize,
    },
}

fn change_strategy() -> impl Strategy<Value = Change> {
    let text = prop::sample::select(vec!["a", "b", "Ab", "ba", "c", "zz", "Äa", "q"]);
    prop_oneof![
        4 => (0..3usize, 0..4usize, text.clone(), 0..10i64, any::<bool>(), any::<bool>()).prop_map(
            |(who, list, text, priority, done, note)| Change::Create {
                who, list, text: text.into(), priority, done, note
            }
        ),
        4 => (0..3usize, any::<usize>(), 0..10i64, any::<bool>(), text).prop_map(
            |(who, pick, priority, done, text)| Change::Update { who, pick, priority, done, text: text.into() }
        ),
        1 => (any::<usize>(), 0..4usize).prop_map(|(pick, list)| Change::Move { pick, list }),
        2 => (0..3usize, any::<usize>()).prop_map(|(who, pick)| Change::Delete { who, pick }),
    ]
}

const TOKENS: [&str; 3] = ["alice-token", "bob-token", "carol-token"];

async fn views_equal_list_after_every_change(database: TestDatabase, steps: usize) {
    let tokens = common::models::demo_tokens();
    let server = TestServer::start_on(
        common::models::builder_with_users(tokens).throttle(false),
        database,
    )
    .await;
    // Two lists each for alice and bob (lists 0, 1 are alice's; 2, 3 bob's).
    let mut lists = Vec::new();
    for (token, name) in [(0, "a1"), (0, "a2"), (1, "b1"), (1, "b2")] {
        let client = server.client_as(TOKENS[token]);
        lists.push(
            client
                .post("/api/lists/", json!({ "name": name }))
                .await
                .expect(201)["id"]
                .as_i64()
                .expect("id"),
        );
    }
    let mut followers = Vec::new();
    for (i, token) in TOKENS.into_iter().enumerate() {
        // Two sockets per principal, with different queries (and one the same, shared).
        for socket in 0..2 {
            let mut queries: Vec<(String, Value)> = QUERIES
                .iter()
                .enumerate()
                .filter(|(q, _)| (q + i + socket) % 2 == 0 || *q == 2)
                .map(|(q, text)| (format!("q{q}"), serde_json::from_str(text).expect("query")))
                .collect();
            queries.push(("mine".into(), list_query(lists[(i % 2) * 2], socket == 0)));
            let mut ws = server.ws_as(token).await;
            let mut views = BTreeMap::new();
            for (id, query) in &queries {
                let reply = ws
                    .call(
                        "tasks",
                        "subscribe",
                        json!({"request_id": id, "snapshot": true, "query": query}),
                    )
                    .await;
                let data = reply.expect(201);
                views.insert(
                    id.clone(),
                    data["results"]
                        .as_array()
                        .expect("results")
                        .iter()
                        .map(|r| (r["id"].as_i64().expect("id"), r.clone()))
                        .collect(),
                );
            }
            followers.push(Follower {
                token,
                ws,
                queries,
                views,
                last_seq: BTreeMap::new(),
                seen: BTreeMap::new(),
                arrived: BTreeMap::new(),
            });
        }
    }
    let mut runner = TestRunner::new(Config {
        cases: 1,
        rng_seed: proptest::test_runner::RngSeed::Fixed(23),
        ..Config::default()
    });
    let changes = prop::collection::vec(change_strategy(), steps)
        .new_tree(&mut runner)
        .expect("changes")
        .current();
    let mut carol_ws = server.ws_as("carol-token").await;
    // One socket per principal that asks `list` what each view should be.
    let mut listers = Vec::new();
    for token in TOKENS {
        listers.push(server.ws_as(token).await);
    }
    // Every task: (id, list index).
    let mut tasks: Vec<(i64, usize)> = Vec::new();
    let mut applied = 0;
    for (step, change) in changes.iter().enumerate() {
        // Users write in their own lists; carol (admin) anywhere.
        let owns = |who: usize, list: usize| who == 2 || list / 2 == who;
        let mine = |who: usize, pick: usize| -> Option<(i64, usize)> {
            let own: Vec<_> = tasks.iter().filter(|(_, l)| owns(who, *l)).collect();
            (!own.is_empty()).then(|| *own[pick % own.len()])
        };
        let applied_now = match change.clone() {
            Change::Create {
                who,
                list,
                text,
                priority,
                done,
                note,
            } => {
                if !owns(who, list) {
                    continue;
                }
                let mut data = json!({"text": text, "list_id": lists[list], "priority": priority, "done": done});
                if note {
                    data["note"] = json!("n");
                }
                let id = if step % 2 == 0 {
                    server
                        .client_as(TOKENS[who])
                        .post("/api/tasks/", data)
                        .await
                        .expect(201)["id"]
                        .as_i64()
                } else {
                    let mut ws = server.ws_as(TOKENS[who]).await;
                    ws.call("tasks", "create", json!({"data": data}))
                        .await
                        .expect(201)["id"]
                        .as_i64()
                };
                tasks.push((id.expect("id"), list));
                true
            }
            Change::Update {
                who,
                pick,
                priority,
                done,
                text,
            } => {
                let Some((id, _)) = mine(who, pick) else {
                    continue;
                };
                let data = json!({"priority": priority, "done": done, "text": text});
                if step % 2 == 0 {
                    server
                        .client_as(TOKENS[who])
                        .patch(&format!("/api/tasks/{id}/"), data)
                        .await
                        .expect(200);
                } else {
                    carol_ws
                        .call("tasks", "patch", json!({"pk": id, "data": data}))
                        .await
                        .expect(200);
                }
                true
            }
            Change::Move { pick, list } => {
                let Some((id, _)) = mine(2, pick) else {
                    continue;
                };
                carol_ws
                    .call(
                        "tasks",
                        "patch",
                        json!({"pk": id, "data": {"list_id": lists[list]}}),
                    )
                    .await
                    .expect(200);
                if let Some(t) = tasks.iter_mut().find(|(t, _)| *t == id) {
                    t.1 = list;
                }
                true
            }
            Change::Delete { who, pick } => {
                let Some((id, _)) = mine(who, pick) else {
                    continue;
                };
                server
                    .client_as(TOKENS[who])
                    .delete(&format!("/api/tasks/{id}/"))
                    .send()
                    .await;
                tasks.retain(|(t, _)| *t != id);
                true
            }
        };
        if applied_now {
            applied += 1;
            let described = format!("{change:?}");
            for f in &mut followers {
                let who = TOKENS.iter().position(|t| *t == f.token).expect("a token");
                settle(&mut listers[who], f, step, &described).await;
            }
        }
    }
    // Nothing more arrives: no late or stray event.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in &mut followers {
        f.ws.expect_silence(Duration::from_millis(200)).await;
        for (action, n) in &f.seen {
            *seen.entry(action.clone()).or_default() += n;
        }
    }
    println!("{applied} changes applied, events seen: {seen:?}");
    // The run exercised every kind of event, many times (not a vacuous pass).
    assert!(
        applied > steps / 2,
        "only {applied} of {steps} changes applied"
    );
    for action in ["create", "update", "delete"] {
        assert!(seen.get(action).copied().unwrap_or(0) > 20, "{seen:?}");
    }
}

#[tokio::test]
async fn every_view_equals_list_after_every_change_on_sqlite() {
    views_equal_list_after_every_change(TestDatabase::sqlite(), 400).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: cargo test --test live_queries -- --ignored"]
async fn every_view_equals_list_after_every_change_on_postgres() {
    views_equal_list_after_every_change(TestDatabase::require_postgres().await, 400).await;
}
