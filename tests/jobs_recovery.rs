//! A job whose process dies while it runs is recovered as the `Job` docs say: once its
//! heartbeat is older than the lease, it is queued again and re-run (it must be idempotent), at
//! most `job_max_attempts` runs in all, after which it fails with "worker lost". Never left
//! STARTED.
//!
//! The example binary (`target/<profile>/examples/todo`: `cargo build --examples` first when the
//! tests are selected with `--test`, which does not build examples) runs on a SQLite file, with
//! `REST_LIVE_JOB_LEASE_MS=1000`; it is killed with SIGKILL mid-job and started again on the same
//! database.

mod common;
mod jobs_support;

use std::time::Duration;

use common::models::tasks;
use common::process::ExampleProcess;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use jobs_support::{Api, PATIENCE, POLL};
use rest_live::testing::internals::rest_live_jobs;
use rest_live::testing::{TestDatabase, TestServer, WsClient};
use serde_json::json;

const LEASE_MS: &str = "1000";
const DONE: usize = 6;

/// What the database holds while no process runs: the list's done tasks left, and the job's
/// state and attempts so far.
fn inspect(database_url: &str, list: i64, job: &str) -> (usize, String, i32) {
    let path = database_url
        .strip_prefix("sqlite://")
        .expect("a sqlite:// URL");
    let mut conn = SqliteConnection::establish(path).expect("open the SQLite file");
    let left: i64 = tasks::table
        .filter(tasks::list_id.eq(list as i32))
        .filter(tasks::done.eq(true))
        .count()
        .get_result(&mut conn)
        .expect("count done tasks");
    let (state, attempts): (String, i32) = rest_live_jobs::table
        .find(job)
        .select((rest_live_jobs::state, rest_live_jobs::attempts))
        .first(&mut conn)
        .expect("the job's row");
    (left as usize, state, attempts)
}

/// Starts `archive_done` (700 ms between tasks) on a list of `DONE` done tasks and one open task,
/// waits until it has archived at least one, then kills the process. Returns the list, the job
/// id and how many done tasks were left.
async fn kill_mid_job(database_url: &str) -> (i64, String, usize) {
    let mut first = ExampleProcess::start(
        "first",
        database_url,
        &[("REST_LIVE_JOB_LEASE_MS", LEASE_MS)],
        &[],
    )
    .await;
    let api = Api::new(first.url(""), None);
    let (list, _) = api.list_with_tasks("L", DONE, 1).await;
    let id = api
        .start(
            &format!("/api/lists/{list}/archive_done/"),
            json!({"delay_ms": 700}),
        )
        .await;
    api.wait_state(&id, "STARTED", |s| s == "STARTED").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while api.done_count(list).await == DONE {
        assert!(tokio::time::Instant::now() < deadline, "nothing archived");
        tokio::time::sleep(POLL).await;
    }
    first.kill();

    let (left, state, attempts) = inspect(database_url, list, &id);
    assert_eq!(state, "STARTED", "killed while it ran");
    assert_eq!(attempts, 1);
    assert!(
        (1..DONE).contains(&left),
        "killed mid-job: {left} of {DONE} done tasks left"
    );
    (list, id, left)
}

/// Every state of the job from its start, over the socket: `subscribe_instance` with `since: 0`.
async fn job_states(ws_url: &str, id: &str) -> Vec<String> {
    let mut ws = WsClient::connect(ws_url).await;
    let reply = ws
        .request(
            json!({"stream": "jobs", "payload": {"action": "subscribe_instance",
            "pk": id, "since": 0, "request_id": "job"}}),
        )
        .await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    let mut states = Vec::new();
    let mut last_seq = 0;
    loop {
        let event = ws.recv_event().await;
        let p = &event["payload"];
        assert_eq!(p["action"], "update", "{event}");
        let seq = p["seq"].as_i64().expect("seq");
        assert!(seq > last_seq, "seqs increase: {event}");
        last_seq = seq;
        let state = p["data"]["state"].as_str().expect("state").to_owned();
        let finished = matches!(state.as_str(), "SUCCESS" | "FAILURE" | "CANCELLED");
        states.push(state);
        if finished {
            return states;
        }
        assert!(states.len() < 20, "{states:?}");
    }
}

/// Polls until the job is finished (never stuck STARTED); returns the distinct states seen in a
/// row.
async fn follow_to_the_end(api: &Api, id: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    api.wait_state(id, "finished after the restart", |s| {
        if seen.last().map(String::as_str) != Some(s) {
            seen.push(s.to_owned());
        }
        matches!(s, "SUCCESS" | "FAILURE" | "CANCELLED")
    })
    .await;
    seen
}

#[cfg(unix)]
#[tokio::test]
async fn a_job_killed_mid_run_is_run_again_after_the_lease() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("todo.db").display());
    let (list, id, left) = kill_mid_job(&database_url).await;

    let second = ExampleProcess::start(
        "second",
        &database_url,
        &[("REST_LIVE_JOB_LEASE_MS", LEASE_MS)],
        &[],
    )
    .await;
    let api = Api::new(second.url(""), None);
    let seen = follow_to_the_end(&api, &id).await;
    assert_eq!(api.wait_finished(&id).await, "SUCCESS", "seen: {seen:?}");
    // The second run archived what the first left.
    assert_eq!(api.result(&id).await, json!({"result": {"archived": left}}));
    assert_eq!(api.done_count(list).await, 0);
    assert_eq!(api.tasks(list).await.len(), 1, "the open task stays");
    // As logged: claimed, lost, queued again, claimed again, done.
    assert_eq!(
        job_states(&second.ws_url(), &id).await,
        ["PENDING", "STARTED", "PENDING", "STARTED", "SUCCESS"]
    );
    println!(
        "recovered: {} of {DONE} done tasks archived before the kill, {left} by the re-run; \
         states polled after the restart: {seen:?}",
        DONE - left
    );
    drop(second);
    let (_, state, attempts) = inspect(&database_url, list, &id);
    assert_eq!((state.as_str(), attempts), ("SUCCESS", 2));
}

#[cfg(unix)]
#[tokio::test]
async fn a_job_out_of_attempts_fails_with_worker_lost() {
    let database = TestDatabase::sqlite();
    let database_url = database.url.clone();
    let (list, id, left) = kill_mid_job(&database_url).await;

    // Restarted with one attempt in all: the lost run was the last.
    let builder = common::models::builder().configure(|c| {
        c.job_lease = Duration::from_millis(1000);
        c.job_max_attempts = 1;
    });
    let server = TestServer::start_on(builder, database).await;
    let api = Api::new(server.url(""), None);
    let seen = follow_to_the_end(&api, &id).await;
    assert_eq!(api.wait_finished(&id).await, "FAILURE", "seen: {seen:?}");
    assert_eq!(api.result(&id).await, json!({"error": "worker lost"}));
    // Not run again: what the first run left stays.
    assert_eq!(api.done_count(list).await, left);
    assert_eq!(
        job_states(&server.ws_url(), &id).await,
        ["PENDING", "STARTED", "FAILURE"]
    );
    let reply = api.delete(&format!("/api/jobs/{id}/")).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body, json!({"errors": ["Job already finished"]}));
}
