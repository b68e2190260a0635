//! docs/protocol.md "Jobs", end to end on a real server: 202 + `Location`, the state resource (200 while
//! PENDING or STARTED, 303 See Other to the result once finished), results and errors,
//! cancellation (410, and the job's writes stop), 400 once finished, 404 for unknown or foreign
//! jobs, and the `jobs` stream (one `update` event per state, in order).
//!
//! The jobs are the example's: `archive_done` (on a list, or on the tasks collection with
//! `list_id`) deletes a list's done tasks one by one with `delay_ms` between them; `add_samples`
//! creates `count` tasks "<prefix> #i". Runs on SQLite, or on PostgreSQL with
//! `REST_LIVE_TEST_DATABASE=postgres`.

mod common;
mod jobs_support;

use std::collections::BTreeSet;
use std::time::Duration;

use diesel::prelude::*;
use jobs_support::{Api, PATIENCE, POLL};
use reqwest::Method;
use rest_live::testing::{TestServer, WsClient, WsReply, frame};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The last seq of the `jobs` stream and the number of job rows, read from the database.
async fn jobs_footprint(server: &TestServer) -> (i64, i64) {
    server
        .app
        .read(|mut c| {
            let head = rest_live::testing::internals::stream_head(c.reborrow(), "jobs")?;
            let rows: i64 = rest_live::__private::__with_conn!(c, |c| {
                rest_live::testing::internals::rest_live_jobs::table
                    .count()
                    .get_result(c)
            })?;
            Ok((head, rows))
        })
        .await
        .expect("read the jobs table")
}

/// Follows a job on the `jobs` stream from its start (`since: 0`); returns the reply.
async fn follow_job(ws: &mut WsClient, id: &str, request_id: &str) -> WsReply {
    let args = json!({"pk": id, "since": 0, "request_id": request_id});
    ws.call("jobs", "subscribe_instance", args).await
}

/// Follows a job from its start (201) and returns the states its events carry, up to a
/// finished one.
async fn followed_states(ws: &mut WsClient, id: &str, request_id: &str) -> Vec<Value> {
    let reply = follow_job(ws, id, request_id).await;
    assert_eq!(reply.status, 201, "{reply}");
    job_events_until_finished(ws, request_id)
        .await
        .into_iter()
        .map(|(_, d)| d["state"].clone())
        .collect()
}

/// The job events of one subscription up to a finished state: `(seq, data)`.
async fn job_events_until_finished(ws: &mut WsClient, request_id: &str) -> Vec<(i64, Value)> {
    let mut events = Vec::new();
    loop {
        let event = ws.next_event().await;
        assert_eq!(event["stream"], "jobs", "{event}");
        let p = &event["payload"];
        assert_eq!(p["request_id"], request_id, "{event}");
        assert_eq!(p["action"], "update", "{event}");
        assert_eq!(p["response_status"], 200, "{event}");
        assert_eq!(p["errors"], json!([]), "{event}");
        let data = p["data"].clone();
        let finished = matches!(
            data["state"].as_str(),
            Some("SUCCESS" | "FAILURE" | "CANCELLED")
        );
        events.push((p["seq"].as_i64().expect("seq"), data));
        if finished {
            return events;
        }
        assert!(events.len() < 20, "too many job events: {events:?}");
    }
}

/// An HTTP client of `server` for the principal of `token` (anonymous without).
fn client(server: &TestServer, token: Option<&'static str>) -> Api {
    Api::new(server.url(""), token)
}

fn builder_with(f: impl FnOnce(&mut rest_live::Config)) -> rest_live::AppBuilder {
    common::models::builder().configure(f)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn starting_a_job_answers_202_with_location_and_the_pending_state() {
    let server = common::server().await;
    let api = client(&server, None);
    let (list, _) = api.list_with_tasks("L", 2, 1).await;

    // On one object...
    let id = api
        .start_on_list(list, "archive_done", json!({"delay_ms": 0}))
        .await;
    assert_eq!(api.wait_finished(&id).await, "SUCCESS");
    assert_eq!(api.result(&id).await, json!({"result": {"archived": 2}}));

    // ...and on the collection (nothing left to archive), with the trailing slash left out.
    let id2 = api
        .start(
            "/api/tasks/archive_done",
            json!({"list_id": list, "delay_ms": 0}),
        )
        .await;
    assert_ne!(id, id2);
    assert_eq!(api.wait_finished(&id2).await, "SUCCESS");
    assert_eq!(api.result(&id2).await, json!({"result": {"archived": 0}}));
    assert_eq!(api.tasks(list).await.len(), 1, "the open task stays");

    // A job without required arguments starts with an empty body (the default delay).
    let (other, _) = api.list_with_tasks("M", 1, 0).await;
    let reply = api
        .raw(
            Method::POST,
            &format!("/api/lists/{other}/archive_done/"),
            None,
            String::new(),
        )
        .await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let id3 = reply.body["id"].as_str().expect("id").to_owned();
    assert_eq!(api.wait_finished(&id3).await, "SUCCESS");
    assert_eq!(api.result(&id3).await, json!({"result": {"archived": 1}}));
}

#[tokio::test]
async fn a_running_job_is_started_then_303_to_its_result() {
    let server = common::server().await;
    let api = client(&server, None);
    let (list, _) = api.list_with_tasks("L", 4, 1).await;
    let id = api
        .start_on_list(list, "archive_done", json!({"delay_ms": 400}))
        .await;
    let uri = format!("/api/jobs/{id}/");

    // While it runs: 200 with the state, no result yet.
    let running = api
        .wait_state(&id, "STARTED", |s| {
            assert!(
                matches!(s, "PENDING" | "STARTED"),
                "{s} before STARTED was seen"
            );
            s == "STARTED"
        })
        .await;
    assert_eq!(running.status, 200, "{running:?}");
    assert_eq!(running.location, None);
    assert_eq!(
        running.body,
        json!({"id": id, "state": "STARTED", "resource_uri": uri})
    );
    let early = api.get(&format!("/api/jobs/{id}/result/")).await;
    assert_eq!(early.status, 404, "no result before the end: {early:?}");
    assert_eq!(early.body, json!({"errors": ["Not found"]}));

    // Progress is visible while it runs: tasks go one by one.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while api.done_count(list).await == 4 {
        assert!(tokio::time::Instant::now() < deadline, "nothing archived");
        tokio::time::sleep(POLL).await;
    }

    // Finished: 303 See Other to the result, which holds the job's output.
    assert_eq!(api.wait_finished(&id).await, "SUCCESS");
    assert_eq!(api.result(&id).await, json!({"result": {"archived": 4}}));
    assert_eq!(api.done_count(list).await, 0);
    assert_eq!(api.tasks(list).await.len(), 1, "the open task stays");
}

#[tokio::test]
async fn a_queued_job_is_pending_while_the_workers_are_busy() {
    let server = TestServer::start(builder_with(|c| c.job_workers = 1)).await;
    let api = client(&server, None);
    let (busy_list, _) = api.list_with_tasks("busy", 5, 0).await;
    let other = api.create_list("other").await;

    // The only worker is busy for 10 s unless cancelled.
    let busy = api
        .start_on_list(busy_list, "archive_done", json!({"delay_ms": 2000}))
        .await;
    api.wait_state(&busy, "STARTED", |s| s == "STARTED").await;

    let queued = api
        .start_on_list(
            other,
            "add_samples",
            json!({"count": 2, "prefix": "queued"}),
        )
        .await;
    let reply = api.get(&format!("/api/jobs/{queued}/")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({"id": queued, "state": "PENDING", "resource_uri": format!("/api/jobs/{queued}/")})
    );
    let result = api.get(&format!("/api/jobs/{queued}/result/")).await;
    assert_eq!(result.status, 404, "{result:?}");

    // Cancelling the busy one frees the worker: the queued job runs.
    let cancelled = api.delete(&format!("/api/jobs/{busy}/")).await;
    assert_eq!(cancelled.status, 410, "{cancelled:?}");
    assert_eq!(api.wait_finished(&queued).await, "SUCCESS");
    assert_eq!(api.result(&queued).await, json!({"result": {"created": 2}}));
    assert_eq!(api.tasks(other).await.len(), 2);
    assert_eq!(api.wait_finished(&busy).await, "CANCELLED");
}

#[tokio::test]
async fn a_failing_job_reports_its_error() {
    let server = common::server().await;
    let api = client(&server, None);
    let id = api
        .start(
            "/api/tasks/archive_done/",
            json!({"list_id": 999, "delay_ms": 0}),
        )
        .await;
    assert_eq!(api.wait_finished(&id).await, "FAILURE");
    assert_eq!(
        api.result(&id).await,
        json!({"error": "List 999 does not exist."})
    );
    // Finished all the same: cancelling is refused.
    let reply = api.delete(&format!("/api/jobs/{id}/")).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, json!({"errors": ["Job already finished"]}));
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_is_queued() {
    let server = common::server().await;
    let api = client(&server, None);
    let (list, _) = api.list_with_tasks("L", 2, 0).await;
    let before = jobs_footprint(&server).await;
    assert_eq!(before, (0, 0));

    let on_list = format!("/api/lists/{list}/archive_done/");
    let on_list = on_list.as_str();
    let samples = format!("/api/lists/{list}/add_samples/");
    let samples = samples.as_str();
    let no_job = format!("/api/lists/{list}/nope/");
    let as_json = Some("application/json");
    let list_in_body = format!(r#"{{"list_id": {list}}}"#);
    // (what, path, content type, body, status)
    let cases = [
        (
            "wrong type",
            on_list,
            as_json,
            r#"{"delay_ms": "soon"}"#,
            400,
        ),
        ("negative", on_list, as_json, r#"{"delay_ms": -1}"#, 400),
        ("too long", on_list, as_json, r#"{"delay_ms": 20000}"#, 400),
        ("list in the body", on_list, as_json, &list_in_body, 400),
        ("unknown field", on_list, as_json, r#"{"nope": 1}"#, 400),
        ("no list_id", "/api/tasks/archive_done/", as_json, "{}", 400),
        ("count 0", samples, as_json, r#"{"count": 0}"#, 400),
        ("count 101", samples, as_json, r#"{"count": 101}"#, 400),
        ("no count", samples, as_json, "{}", 400),
        ("not an object", samples, as_json, "[1]", 400),
        ("not JSON", samples, as_json, "{count: 1", 400),
        (
            "not JSON at all",
            samples,
            Some("text/plain"),
            r#"{"count": 1}"#,
            415,
        ),
        (
            "no such list",
            "/api/lists/999/add_samples/",
            as_json,
            r#"{"count": 1}"#,
            404,
        ),
        ("no such job", &no_job, as_json, "{}", 404),
    ];
    for (what, path, content_type, body, status) in cases {
        let reply = api
            .raw(Method::POST, path, content_type, body.to_owned())
            .await;
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        let errors = reply.body["errors"].as_array().expect("errors");
        assert!(!errors.is_empty(), "{what}: {reply:?}");
        assert_eq!(reply.location, None, "{what}");
        assert_eq!(
            jobs_footprint(&server).await,
            before,
            "{what}: a job was queued"
        );
    }
    // The field at fault is named.
    let reply = api.post(on_list, json!({"delay_ms": 20000})).await;
    assert_eq!(
        reply.body,
        json!({"errors": [{"delay_ms": ["Ensure this value is less than or equal to 10000."]}]})
    );
    let reply = api
        .post("/api/tasks/archive_done/", json!({"delay_ms": 0}))
        .await;
    assert_eq!(
        reply.body,
        json!({"errors": [{"list_id": ["This field is required."]}]})
    );

    // The same over the socket.
    let mut ws = server.ws().await;
    let (delay, count) = (json!({"delay_ms": "soon"}), json!({"count": 0}));
    for (stream, action, args) in [
        ("lists", "archive_done", json!({"pk": list, "data": delay})),
        ("lists", "archive_done", json!({"data": {}})),
        ("lists", "add_samples", json!({"pk": list, "data": count})),
        ("tasks", "archive_done", json!({"data": {"delay_ms": 0}})),
    ] {
        let reply = ws.call_frame(frame(stream, action, args)).await;
        assert_eq!(reply.status, 400, "{reply}");
        assert_eq!(reply.data, Value::Null);
    }
    assert_eq!(jobs_footprint(&server).await, before);
    assert_eq!(api.done_count(list).await, 2);
    // And no job can be looked at.
    let reply = api.get("/api/jobs/1/").await;
    assert_eq!(reply.status, 404, "{reply:?}");
}

#[tokio::test]
async fn cancelling_a_running_job_stops_its_writes() {
    // One worker: once another job has run, the cancelled one's run is over.
    let server = TestServer::start(builder_with(|c| c.job_workers = 1)).await;
    let api = client(&server, None);
    let (list, done) = api.list_with_tasks("L", 6, 1).await;
    let delay = Duration::from_millis(300);
    let started_at = tokio::time::Instant::now();
    let id = api
        .start_on_list(
            list,
            "archive_done",
            json!({"delay_ms": delay.as_millis() as u64}),
        )
        .await;
    api.wait_state(&id, "STARTED", |s| s == "STARTED").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while api.done_count(list).await == done.len() {
        assert!(tokio::time::Instant::now() < deadline, "nothing archived");
        tokio::time::sleep(POLL).await;
    }

    let reply = api.delete(&format!("/api/jobs/{id}/")).await;
    assert_eq!(reply.status, 410, "{reply:?}");
    assert_eq!(reply.body["id"], id.as_str());
    assert_eq!(reply.body["state"], "CANCELLED", "{reply:?}");
    let left_at_cancel = api.done_count(list).await;
    assert!(
        left_at_cancel > 0,
        "the job finished before it was cancelled"
    );

    // Finished at once: 303 to an error result; a second DELETE is refused.
    assert_eq!(api.wait_finished(&id).await, "CANCELLED");
    assert_eq!(
        api.result(&id).await,
        json!({"error": "The job was cancelled."})
    );
    let again = api.delete(&format!("/api/jobs/{id}/")).await;
    assert_eq!(again.status, 400, "{again:?}");
    assert_eq!(again.body, json!({"errors": ["Job already finished"]}));

    // The worker is free again only after the cancelled run returned.
    let other = api.create_list("probe").await;
    let probe = api
        .start_on_list(other, "add_samples", json!({"count": 1}))
        .await;
    assert_eq!(api.wait_finished(&probe).await, "SUCCESS");
    // And past the time the whole job would have taken.
    tokio::time::sleep_until(started_at + delay * (done.len() as u32 + 2)).await;

    assert_eq!(
        api.done_count(list).await,
        left_at_cancel,
        "the job wrote after it was cancelled"
    );
    assert_eq!(api.wait_finished(&id).await, "CANCELLED");
    assert_eq!(
        api.result(&id).await,
        json!({"error": "The job was cancelled."})
    );
}

#[tokio::test]
async fn cancelling_a_pending_job_means_it_never_runs() {
    let server = TestServer::start(builder_with(|c| c.job_workers = 1)).await;
    let api = client(&server, None);
    let (busy_list, _) = api.list_with_tasks("busy", 5, 0).await;
    let (list, _) = api.list_with_tasks("L", 2, 0).await;
    let busy = api
        .start_on_list(busy_list, "archive_done", json!({"delay_ms": 2000}))
        .await;
    api.wait_state(&busy, "STARTED", |s| s == "STARTED").await;
    let queued = api
        .start_on_list(list, "archive_done", json!({"delay_ms": 0}))
        .await;
    let reply = api.delete(&format!("/api/jobs/{queued}/")).await;
    assert_eq!(reply.status, 410, "{reply:?}");
    assert_eq!(reply.body["state"], "CANCELLED");
    let reply = api.delete(&format!("/api/jobs/{busy}/")).await;
    assert_eq!(reply.status, 410, "{reply:?}");

    // A job queued after both runs once the worker is free; the cancelled one never did.
    let probe = api
        .start(
            "/api/tasks/archive_done/",
            json!({"list_id": busy_list, "delay_ms": 0}),
        )
        .await;
    assert_eq!(api.wait_finished(&probe).await, "SUCCESS");
    assert_eq!(api.wait_finished(&queued).await, "CANCELLED");
    assert_eq!(api.done_count(list).await, 2);
}

#[tokio::test]
async fn cancelling_a_finished_job_is_refused() {
    let server = common::server().await;
    let api = client(&server, None);
    let (list, _) = api.list_with_tasks("L", 1, 0).await;
    let id = api
        .start_on_list(list, "add_samples", json!({"count": 3, "prefix": "idea"}))
        .await;
    assert_eq!(api.wait_finished(&id).await, "SUCCESS");
    let reply = api.delete(&format!("/api/jobs/{id}/")).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, json!({"errors": ["Job already finished"]}));
    // Still a success, with its result.
    assert_eq!(api.wait_finished(&id).await, "SUCCESS");
    assert_eq!(api.result(&id).await, json!({"result": {"created": 3}}));
    let mut texts: Vec<String> = api
        .get(&format!("/api/tasks/?list_id={list}&done=false"))
        .await
        .body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|t| t["text"].as_str().expect("text").to_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["idea #1", "idea #2", "idea #3"]);
}

#[tokio::test]
async fn a_cancel_that_races_the_end_never_leaves_a_success_behind() {
    // One worker: once a job queued last has run, every run before it is over. Unthrottled: 80
    // starts and cancels back to back, then polling.
    let server = TestServer::start(builder_with(|c| c.job_workers = 1).throttle(false)).await;
    let api = client(&server, None);
    let list = api.create_list("L").await;
    let mut outcomes = Vec::new();
    for i in 0..80u64 {
        let id = api
            .start_on_list(
                list,
                "add_samples",
                json!({"count": 1, "prefix": format!("race {i}")}),
            )
            .await;
        // Right away, or a moment later: around the time it runs and finishes.
        if i % 3 > 0 {
            tokio::time::sleep(Duration::from_millis(i % 3)).await;
        }
        let reply = api.delete(&format!("/api/jobs/{id}/")).await;
        outcomes.push((id, reply));
    }
    let probe = api
        .start_on_list(list, "add_samples", json!({"count": 1, "prefix": "probe"}))
        .await;
    assert_eq!(api.wait_finished(&probe).await, "SUCCESS");

    // Every state each job went through, as logged (what subscribers were sent).
    let changes = server
        .app
        .read(|mut c| {
            let head = rest_live::testing::internals::stream_head(c.reborrow(), "jobs")?;
            Ok(rest_live::testing::internals::read_stream(
                c,
                "jobs",
                0,
                head,
                i64::MAX,
            )?)
        })
        .await
        .expect("read the log");
    let mut logged: std::collections::HashMap<String, Vec<String>> = Default::default();
    for change in changes {
        let row: Value = serde_json::from_str(&change.row).expect("a JSON row");
        let id: String = serde_json::from_str(&change.pk).expect("a JSON pk");
        let state = row["state"].as_str().expect("state").to_owned();
        logged.entry(id).or_default().push(state);
    }

    let (mut cancelled, mut too_late) = (0, 0);
    for (id, reply) in &outcomes {
        let state = api.wait_finished(id).await;
        let states = &logged[id];
        match reply.status {
            410 => {
                cancelled += 1;
                assert_eq!(reply.body["state"], "CANCELLED", "{reply:?}");
                assert_eq!(
                    state, "CANCELLED",
                    "job {id} is {state} after a 410: {states:?}"
                );
                assert!(
                    states == &["PENDING", "CANCELLED"]
                        || states == &["PENDING", "STARTED", "CANCELLED"],
                    "job {id} after a 410: {states:?}"
                );
                let result = api.result(id).await;
                assert_eq!(result, json!({"error": "The job was cancelled."}));
            }
            400 => {
                too_late += 1;
                assert_eq!(reply.body, json!({"errors": ["Job already finished"]}));
                assert_eq!(state, "SUCCESS", "job {id}");
                assert_eq!(states, &["PENDING", "STARTED", "SUCCESS"], "job {id}");
                assert_eq!(api.result(id).await, json!({"result": {"created": 1}}));
            }
            _ => panic!("DELETE answered {reply:?}"),
        }
    }
    println!("cancel races: {cancelled} cancelled (410), {too_late} already finished (400)");
}

#[tokio::test]
async fn unknown_jobs_are_404() {
    let server = common::server().await;
    let api = client(&server, None);
    for id in ["0123456789abcdef0123456789abcdef", "nope", "1"] {
        for reply in [
            api.get(&format!("/api/jobs/{id}/")).await,
            api.get(&format!("/api/jobs/{id}/result/")).await,
            api.delete(&format!("/api/jobs/{id}/")).await,
        ] {
            assert_eq!(reply.status, 404, "{id}: {reply:?}");
            assert_eq!(reply.body, json!({"errors": ["Not found"]}));
        }
    }
    let mut ws = server.ws().await;
    let unknown = json!({"pk": "0123456789abcdef0123456789abcdef", "request_id": "s"});
    let reply = ws.call("jobs", "subscribe_instance", unknown).await;
    assert_eq!(reply.status, 404, "{reply}");
    let reply = ws
        .call_frame(frame("jobs", "retrieve", json!({"pk": "nope"})))
        .await;
    assert_eq!(reply.status, 404, "{reply}");
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn job_states_arrive_over_the_socket_in_order() {
    let server = common::server().await;
    let api = client(&server, None);
    let (list, done) = api.list_with_tasks("L", 3, 1).await;

    // A subscriber of the list's tasks sees the job's deletes like any other.
    let mut group = server.ws().await;
    let args = json!({"request_id": "g", "group": {"list_id": list}});
    let reply = group.call("tasks", "subscribe", args).await;
    assert_eq!(reply.status, 201, "{reply}");

    let id = api
        .start_on_list(list, "archive_done", json!({"delay_ms": 50}))
        .await;
    let mut ws = server.ws().await;
    let reply = follow_job(&mut ws, &id, "job").await;
    assert_eq!(reply.status, 201, "{reply}");
    assert!(reply.data["seq"].as_i64().is_some(), "{reply}");

    let events = job_events_until_finished(&mut ws, "job").await;
    let states: Vec<&str> = events
        .iter()
        .map(|(_, d)| d["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["PENDING", "STARTED", "SUCCESS"], "{events:?}");
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "seqs increase: {events:?}"
    );
    let uri = format!("/api/jobs/{id}/");
    for (_, data) in &events[..2] {
        assert_eq!(
            data,
            &json!({"id": id, "state": data["state"], "resource_uri": uri})
        );
    }
    assert_eq!(
        events[2].1,
        json!({"id": id, "state": "SUCCESS", "resource_uri": uri,
            "result_uri": format!("{uri}result/")})
    );
    ws.expect_silence(QUIET).await;

    let mut deleted = BTreeSet::new();
    let mut last_seq = 0;
    for _ in 0..done.len() {
        let event = group.next_event().await;
        let p = &event["payload"];
        assert_eq!(p["action"], "delete", "{event}");
        assert_eq!(p["request_id"], "g", "{event}");
        let seq = p["seq"].as_i64().expect("seq");
        assert!(seq > last_seq, "{event}");
        last_seq = seq;
        deleted.insert(p["data"]["pk"].as_i64().expect("pk"));
    }
    assert_eq!(deleted, done);
    group.expect_silence(QUIET).await;
    assert_eq!(api.result(&id).await, json!({"result": {"archived": 3}}));

    // The jobs stream answers retrieve, and nothing that would change a job.
    let reply = ws
        .call_frame(frame("jobs", "retrieve", json!({"pk": id})))
        .await;
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.data["state"], "SUCCESS");
    for action in ["list", "create", "update", "patch", "delete"] {
        let args = json!({"pk": id, "data": {}});
        let reply = ws.call_frame(frame("jobs", action, args)).await;
        assert_eq!(reply.status, 405, "{action}: {reply}");
    }
}

#[tokio::test]
async fn a_job_is_an_action_on_its_resource_stream() {
    let server = common::server().await;
    let api = client(&server, None);
    let (list, _) = api.list_with_tasks("L", 2, 0).await;
    let mut ws = server.ws().await;

    let args = json!({"pk": list, "data": {"delay_ms": 0}, "request_id": "j"});
    let reply = ws.call("lists", "archive_done", args).await;
    let id = reply.data["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a job id: {reply}"))
        .to_owned();
    assert_eq!(
        reply.frame,
        json!({"stream": "lists", "payload": {"action": "archive_done", "request_id": "j",
            "response_status": 202, "errors": [],
            "data": {"id": id, "state": "PENDING", "resource_uri": format!("/api/jobs/{id}/")}}})
    );
    let states = followed_states(&mut ws, &id, "follow").await;
    assert_eq!(
        states,
        [json!("PENDING"), json!("STARTED"), json!("SUCCESS")]
    );
    assert_eq!(api.result(&id).await, json!({"result": {"archived": 2}}));

    // On the collection, with the list in the arguments.
    let args = json!({"data": {"list_id": list, "delay_ms": 0}, "request_id": 7});
    let reply = ws.call("tasks", "archive_done", args).await;
    assert_eq!(reply.status, 202, "{reply}");
    assert_eq!(reply.payload()["request_id"], 7);
    assert_eq!(reply.data["state"], "PENDING");
    let id = reply.data["id"].as_str().expect("id").to_owned();
    assert_eq!(api.wait_finished(&id).await, "SUCCESS");
    assert_eq!(api.result(&id).await, json!({"result": {"archived": 0}}));

    // A job name on a stream that does not declare it is an unknown action.
    let reply = ws
        .call_frame(frame("lists", "nope", json!({"pk": list})))
        .await;
    assert_eq!(reply.status, 405, "{reply}");
}

// ---------------------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_job_is_its_owners_only() {
    let server = TestServer::start(common::models::builder_with_users(
        common::models::demo_tokens(),
    ))
    .await;
    let alice = client(&server, Some("alice-token"));
    let bob = client(&server, Some("bob-token"));
    let (list, _) = alice.list_with_tasks("alice's", 3, 0).await;
    let (kept, _) = alice.list_with_tasks("alice's other", 2, 0).await;
    let id = alice
        .start_on_list(list, "archive_done", json!({"delay_ms": 300}))
        .await;

    // Bob cannot see, follow or cancel it.
    let mut bob_ws = server.ws_as("bob-token").await;
    for reply in [
        bob.get(&format!("/api/jobs/{id}/")).await,
        bob.get(&format!("/api/jobs/{id}/result/")).await,
        bob.delete(&format!("/api/jobs/{id}/")).await,
    ] {
        assert_eq!(reply.status, 404, "{reply:?}");
        assert_eq!(reply.body, json!({"errors": ["Not found"]}));
    }
    let args = json!({"pk": id, "request_id": "s"});
    let reply = bob_ws.call("jobs", "subscribe_instance", args).await;
    assert_eq!(reply.status, 404, "{reply}");
    let reply = bob_ws
        .call_frame(frame("jobs", "retrieve", json!({"pk": id})))
        .await;
    assert_eq!(reply.status, 404, "{reply}");
    // Following it from the log's start shows him nothing of it either.
    let resumed = follow_job(&mut bob_ws, &id, "r").await;

    // Nor start a job on her list (it answers like a missing one), and nothing is queued.
    let before = jobs_footprint(&server).await;
    for (path, args) in [
        (
            format!("/api/lists/{list}/archive_done/"),
            json!({"delay_ms": 0}),
        ),
        (
            format!("/api/lists/{list}/add_samples/"),
            json!({"count": 1}),
        ),
    ] {
        let reply = bob.post(&path, args).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }
    let args = json!({"pk": list, "data": {"count": 1}});
    let reply = bob_ws.call_frame(frame("lists", "add_samples", args)).await;
    assert_eq!(reply.status, 404, "{reply}");
    assert_eq!(jobs_footprint(&server).await.1, before.1);

    // A job of bob's naming her list in its arguments fails as if it did not exist.
    let bobs = bob
        .start(
            "/api/tasks/archive_done/",
            json!({"list_id": kept, "delay_ms": 0}),
        )
        .await;
    assert_eq!(bob.wait_finished(&bobs).await, "FAILURE");
    assert_eq!(
        bob.result(&bobs).await,
        json!({"error": format!("List {kept} does not exist.")})
    );
    assert_eq!(alice.done_count(kept).await, 2);
    // And alice cannot see bob's job.
    assert_eq!(alice.get(&format!("/api/jobs/{bobs}/")).await.status, 404);

    // Alice's job was not cancelled by bob's DELETE, and she follows it.
    let mut alice_ws = server.ws_as("alice-token").await;
    let states = followed_states(&mut alice_ws, &id, "a").await;
    assert_eq!(
        states,
        [json!("PENDING"), json!("STARTED"), json!("SUCCESS")]
    );
    assert_eq!(alice.wait_finished(&id).await, "SUCCESS");
    assert_eq!(alice.result(&id).await, json!({"result": {"archived": 3}}));

    // Bob's resumed subscription was refused like one to a job that does not exist.
    assert_eq!(resumed.status, 404, "{resumed}");
    let frames = bob_ws.pending_count().await;
    let events = bob_ws.take_events();
    assert_eq!(frames, 0, "bob received {events:?}");
}

#[tokio::test]
async fn another_principals_job_answers_exactly_like_a_missing_one() {
    let server = TestServer::start(common::models::builder_with_users(
        common::models::demo_tokens(),
    ))
    .await;
    let alice = client(&server, Some("alice-token"));
    let bob = client(&server, Some("bob-token"));
    let (list, _) = alice.list_with_tasks("alice's", 2, 0).await;
    let id = alice
        .start_on_list(list, "archive_done", json!({"delay_ms": 200}))
        .await;
    let missing = "0123456789abcdef0123456789abcdef".to_owned();
    let mut bob_ws = server.ws_as("bob-token").await;
    let head = jobs_footprint(&server).await.0;

    // Every per-object request, over HTTP and the socket, for her job and for no job at all.
    let mut answers = Vec::new();
    for job in [&id, &missing] {
        let mut got = Vec::new();
        for path in [
            format!("/api/jobs/{job}/"),
            format!("/api/jobs/{job}/result/"),
        ] {
            let reply = bob.get(&path).await;
            got.push((reply.status, reply.body));
        }
        let reply = bob.delete(&format!("/api/jobs/{job}/")).await;
        got.push((reply.status, reply.body));
        let requests = [
            ("retrieve", json!({"pk": job})),
            ("subscribe_instance", json!({"pk": job, "request_id": "s"})),
            (
                "subscribe_instance",
                json!({"pk": job, "since": 0, "request_id": "s0"}),
            ),
            (
                "subscribe_instance",
                json!({"pk": job, "since": head, "request_id": "sh"}),
            ),
        ];
        for (action, args) in requests {
            let reply = bob_ws.call("jobs", action, args).await;
            got.push((reply.status, json!({"errors": reply.errors})));
        }
        answers.push(got);
    }
    assert!(
        answers[0]
            .iter()
            .all(|(status, body)| *status == 404 && *body == json!({"errors": ["Not found"]})),
        "{:?}",
        answers[0]
    );
    assert_eq!(answers[0], answers[1], "her job is told apart from none");

    // Her job runs to its end; bob, who asked to follow it three ways, hears nothing of it.
    assert_eq!(alice.wait_finished(&id).await, "SUCCESS");
    let frames = bob_ws.pending_count().await;
    assert_eq!(frames, 0, "bob received {:?}", bob_ws.take_events());
    // While alice follows it, resumed from the start, as before.
    let mut alice_ws = server.ws_as("alice-token").await;
    let states = followed_states(&mut alice_ws, &id, "a").await;
    assert_eq!(
        states,
        [json!("PENDING"), json!("STARTED"), json!("SUCCESS")]
    );
}

#[tokio::test]
async fn an_argument_error_names_the_argument() {
    let server = common::server().await;
    let api = client(&server, None);
    let (list, _) = api.list_with_tasks("L", 1, 0).await;
    let before = jobs_footprint(&server).await;
    // (job, arguments, the errors)
    let cases = [
        (
            "archive_done",
            json!({"delay_ms": "x"}),
            json!([{"delay_ms": ["A valid integer is required."]}]),
        ),
        (
            "archive_done",
            json!({"delay_ms": 2.5}),
            json!([{"delay_ms": ["A valid integer is required."]}]),
        ),
        (
            "archive_done",
            json!({"delay_ms": -1}),
            json!([{"delay_ms": ["Ensure this value is greater than or equal to 0."]}]),
        ),
        (
            "archive_done",
            json!({"nope": 1}),
            json!([{"nope": ["Unknown field."]}]),
        ),
        (
            "add_samples",
            json!({"prefix": "p"}),
            json!([{"count": ["This field is required."]}]),
        ),
        (
            "add_samples",
            json!({"count": null}),
            json!([{"count": ["This field may not be null."]}]),
        ),
        (
            "add_samples",
            json!({"count": 1, "prefix": 7}),
            json!([{"prefix": ["Not a valid string."]}]),
        ),
        (
            "add_samples",
            json!({"count": 4294967296_u64}),
            json!([{"count": ["Ensure this value is less than or equal to 4294967295."]}]),
        ),
    ];
    let mut ws = server.ws().await;
    for (job, args, errors) in cases {
        let reply = api
            .post(&format!("/api/lists/{list}/{job}/"), args.clone())
            .await;
        assert_eq!(reply.status, 400, "{job} {args}: {reply:?}");
        assert_eq!(reply.body, json!({ "errors": errors }), "{job} {args}");
        let request = json!({"pk": list, "data": args});
        let reply = ws.call("lists", job, request).await;
        assert_eq!(reply.status, 400, "{job} {args}: {reply}");
        assert_eq!(reply.errors, errors, "{job} {args}");
        assert_eq!(reply.data, Value::Null);
    }
    assert_eq!(jobs_footprint(&server).await, before, "a job was queued");
}
