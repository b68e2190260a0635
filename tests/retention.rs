//! Change-log retention (issue 15, point 8): `AppBuilder::retain_changes` / `retain_for` and the
//! example's `REST_LIVE_LOG_RETAIN`. A `since` older than what is kept is 410 `["resync
//! required"]` at once (not only after the pruner ran), a recent one replays exactly; the pruner
//! bounds the rows soon after, in batches that let writes go on.

mod common;

use std::time::Duration;

use common::models::Task;
use common::process::ExampleProcess;
use diesel::prelude::*;
use rest_live::testing::{TestServer, WsClient};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);
/// How long the pruner may take to bound the rows: generous, nothing here is timed.
const PATIENCE: Duration = Duration::from_secs(60);

/// How many changes of `stream` the log holds.
async fn logged(server: &TestServer, stream: &'static str) -> i64 {
    server
        .app
        .read(move |c| {
            use rest_live::testing::internals::rest_live_changes::dsl as ch;
            Ok(rest_live::__private::__with_conn!(c, |c| {
                ch::rest_live_changes
                    .filter(ch::stream.eq(stream))
                    .count()
                    .get_result::<i64>(c)
            })?)
        })
        .await
        .expect("count the log")
}

async fn wait_delivered(server: &TestServer, stream: &str, seq: i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.app.delivered(stream) < seq {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq {seq} never delivered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Subscribes to list `list`'s tasks from `since`; returns the reply.
async fn resume(ws: &mut WsClient, request_id: &str, list: i64, since: i64) -> Value {
    ws.request(json!({"stream": "tasks", "payload": {"action": "subscribe",
        "request_id": request_id, "group": {"list_id": list}, "since": since}}))
        .await
}

#[track_caller]
fn assert_resync(reply: &Value, since: i64) {
    let p = &reply["payload"];
    assert_eq!(p["response_status"], 410, "since {since}: {reply}");
    assert_eq!(p["errors"], json!(["resync required"]), "since {since}");
    assert_eq!(p["data"], Value::Null, "since {since}");
}

/// The seqs and texts of the next `n` events.
async fn events(ws: &mut WsClient, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let event = ws.recv_event().await;
        let p = &event["payload"];
        got.push((
            p["seq"].as_i64().expect("seq"),
            p["data"]["text"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    got
}

#[tokio::test]
async fn an_older_since_is_410_at_once_and_a_recent_one_replays_exactly() {
    // The full prune pass is far away: what is answered cannot depend on it.
    let builder = common::models::builder()
        .retain_changes(3)
        .configure(|c| c.prune_interval = Duration::from_secs(3600));
    let server = TestServer::start(builder).await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    for i in 1..=10 {
        common::create_task(&mut writer, &format!("t{i}"), list).await;
    }
    wait_delivered(&server, "tasks", 10).await;

    let mut ws = server.ws().await;
    for since in 0..=6 {
        assert_resync(&resume(&mut ws, "g", list, since).await, since);
    }
    // An instance subscription resumes by the same rule.
    let reply = ws
        .request(
            json!({"stream": "tasks", "payload": {"action": "subscribe_instance",
            "request_id": "i", "pk": 1, "since": 2}}),
        )
        .await;
    assert_resync(&reply, 2);
    // From the oldest kept, exactly the three changes after it, then live events.
    let reply = resume(&mut ws, "g", list, 7).await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    assert_eq!(reply["payload"]["data"], json!({"seq": 10}));
    let expected: Vec<(i64, String)> = (8..=10).map(|i| (i, format!("t{i}"))).collect();
    assert_eq!(events(&mut ws, 3).await, expected);
    ws.expect_silence(QUIET).await;
    common::create_task(&mut writer, "t11", list).await;
    assert_eq!(events(&mut ws, 1).await, [(11, "t11".to_owned())]);
    // At the head, nothing to replay.
    let mut at_head = server.ws().await;
    let reply = resume(&mut at_head, "h", list, 11).await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    at_head.expect_silence(QUIET).await;

    // And the rows follow within about a second, without waiting for the full pass.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while logged(&server, "tasks").await > 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logged(&server, "tasks").await, 3);
    assert_resync(&resume(&mut ws, "g2", list, 7).await, 7);
    assert_eq!(
        resume(&mut ws, "g3", list, 8).await["payload"]["response_status"],
        201
    );
}

#[tokio::test]
async fn a_since_older_than_the_kept_age_is_410() {
    let builder = common::models::builder()
        .retain_for(Duration::from_millis(500))
        .configure(|c| c.prune_interval = Duration::from_secs(3600));
    let server = TestServer::start(builder).await;
    let list = common::create_list(&server, "L").await;
    let mut writer = server.ws().await;
    common::create_task(&mut writer, "old", list).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    common::create_task(&mut writer, "new", list).await;
    wait_delivered(&server, "tasks", 2).await;

    let mut ws = server.ws().await;
    // The change after 0 is older than what is kept, though its row is still there.
    assert_eq!(logged(&server, "tasks").await, 2);
    assert_resync(&resume(&mut ws, "g", list, 0).await, 0);
    let reply = resume(&mut ws, "g", list, 1).await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    assert_eq!(events(&mut ws, 1).await, [(2, "new".to_owned())]);
    // Pruning by age removes exactly what the rule already refused.
    server.app.prune_now().await.expect("prune");
    assert_eq!(logged(&server, "tasks").await, 1);
    assert_eq!(logged(&server, "lists").await, 0);
}

#[tokio::test]
async fn writes_go_on_while_a_large_prune_runs() {
    const KEEP: i64 = 10;
    const ROWS: i64 = 20_000;
    // Unthrottled: one anonymous address writes back to back while the prune runs.
    let server = TestServer::start(
        common::models::builder()
            .retain_changes(KEEP as u64)
            .throttle(false),
    )
    .await;
    let list = common::create_list(&server, "L").await as i32;
    let rows: Vec<Task> = (0..ROWS)
        .map(|i| Task {
            id: 0,
            text: format!("bulk {i}"),
            done: false,
            list_id: list,
            owner: None,
            priority: 0,
            note: None,
        })
        .collect();
    // One transaction: the whole log lands at once, far past its bound.
    server.app.bulk_create(rows).await.expect("bulk create");
    let total = logged(&server, "tasks").await;
    assert!(total >= ROWS, "{total}");

    // Write, one request after the other, until the pruner is through; after each reply, see
    // how far it has got.
    let client = server.client();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let body = json!({"name": format!("during {}", seen.len())});
        client.post("/api/lists/", body).await.expect(201);
        let left = logged(&server, "tasks").await;
        seen.push(left);
        if left <= KEEP {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log was not pruned: {seen:?}"
        );
    }
    // Some write was served while part of the log was pruned and part was not: the prune went
    // in batches, with the writes between them (one DELETE would leave nothing in between).
    let midway = seen.iter().filter(|&&n| n < total && n > 2_000).count();
    assert!(midway > 0, "no write between the batches: {seen:?}");
    assert_eq!(logged(&server, "tasks").await, KEEP);
    // The lists written meanwhile are all there.
    let page = client.get("/api/lists/?limit=1000").await.expect(200);
    assert_eq!(page["count"], seen.len() + 1);
}

#[tokio::test]
async fn the_example_keeps_rest_live_log_retain_changes_per_stream() {
    let (_dir, database_url) = common::process::temp_sqlite();
    let example = ExampleProcess::start_quiet(
        "retain 3",
        &database_url,
        &[("REST_LIVE_LOG_RETAIN", "3")],
        &[],
    )
    .await;
    let client = rest_live::testing::HttpClient::new(example.url(""));
    let list = client
        .post("/api/lists/", json!({"name": "L"}))
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");
    for i in 1..=10 {
        let task = json!({"text": format!("t{i}"), "list_id": list});
        client.post("/api/tasks/", task).await.expect(201);
    }
    let mut ws = WsClient::connect(&example.ws_url()).await;
    for since in [0, 3, 6] {
        assert_resync(&resume(&mut ws, "g", list, since).await, since);
    }
    let reply = resume(&mut ws, "g", list, 7).await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    let expected: Vec<(i64, String)> = (8..=10).map(|i| (i, format!("t{i}"))).collect();
    assert_eq!(events(&mut ws, 3).await, expected);
    ws.expect_silence(QUIET).await;
}
