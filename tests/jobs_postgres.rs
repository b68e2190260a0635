//! Two server processes on one PostgreSQL database never run one job twice: a job is claimed
//! with `FOR UPDATE SKIP LOCKED`, by exactly one worker of one process.
//!
//! Two processes of the example app share a fresh database; 240 `add_samples` jobs (one task
//! each, with a prefix of its own) are started, half on each process. Once every job is
//! finished, every job must be SUCCESS, claimed once (attempts 1, one STARTED in the log), and
//! every prefix must appear exactly once among the list's tasks.
//!
//! Needs PostgreSQL (`REST_LIVE_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`), so the test is `#[ignore]`d: `cargo test` lists it
//! as ignored, with that reason; `cargo test --test jobs_postgres -- --ignored` runs it, and fails
//! without PostgreSQL. It starts the example binary `target/<profile>/examples/todo`, which `cargo
//! build --examples` builds (`cargo test` without `--test` filters does too). The figures are
//! printed: run with `--nocapture`.

mod common;
mod jobs_support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::process::ExampleProcess;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use futures_util::StreamExt;
use jobs_support::{Api, PATIENCE};
use rest_live::AnyConn;
use rest_live::testing::TestDatabase;
use rest_live::testing::internals::rest_live_jobs;
use serde_json::{Value, json};

const JOBS: usize = 240;
/// Starts in flight at once (over both processes).
const CONCURRENCY: usize = 16;

#[tokio::test]
#[ignore = "needs PostgreSQL (REST_LIVE_TEST_POSTGRES_URL): run with -- --ignored"]
async fn two_processes_never_run_one_job_twice() {
    let database = TestDatabase::require_postgres().await;
    // One after the other: the first creates the tables.
    // Unthrottled: 240 jobs started and polled from one address.
    let unthrottled = [("REST_LIVE_THROTTLE", "off")];
    let a = ExampleProcess::start("a", &database.url, &unthrottled, &[]).await;
    let b = ExampleProcess::start("b", &database.url, &unthrottled, &[]).await;
    let apis = [Api::new(a.url(""), None), Api::new(b.url(""), None)];
    let list = apis[0].create_list("samples").await;

    // Start every job, alternating between the processes.
    let began = Instant::now();
    let started: Vec<(usize, String, String)> = futures_util::stream::iter(0..JOBS)
        .map(|i| {
            let api = &apis[i % 2];
            async move {
                let prefix = format!("job-{i:03}");
                let id = api
                    .start(
                        &format!("/api/lists/{list}/add_samples/"),
                        json!({"count": 1, "prefix": prefix}),
                    )
                    .await;
                (i % 2, id, prefix)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let all_started = began.elapsed();

    // Wait until every job is finished (303), polling each process for half of them.
    let mut unfinished: Vec<&(usize, String, String)> = started.iter().collect();
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    while !unfinished.is_empty() {
        let mut still = Vec::new();
        for job in unfinished {
            let reply = apis[job.0].get(&format!("/api/jobs/{}/", job.1)).await;
            match reply.status {
                303 => {}
                200 => still.push(job),
                _ => panic!("job {}: {reply:?}", job.1),
            }
        }
        unfinished = still;
        if !unfinished.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} jobs not finished, e.g. {:?}",
                unfinished.len(),
                unfinished.first()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let all_finished = began.elapsed();

    // Every job succeeded, seen from either process.
    for (n, (_, id, _)) in started.iter().enumerate() {
        let api = &apis[(n + 1) % 2];
        assert_eq!(api.wait_finished(id).await, "SUCCESS", "job {id}");
        assert_eq!(api.result(id).await, json!({"result": {"created": 1}}));
    }

    // Every prefix exactly once among the list's tasks.
    let tasks = apis[1]
        .get(&format!("/api/tasks/?list_id={list}&limit=1000"))
        .await;
    assert_eq!(tasks.status, 200, "{tasks:?}");
    assert_eq!(tasks.body["count"], JOBS, "one task per job");
    let mut texts: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks.body["results"].as_array().expect("results") {
        *texts
            .entry(task["text"].as_str().expect("text").to_owned())
            .or_default() += 1;
    }
    let duplicates: Vec<_> = texts.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = started
        .iter()
        .filter(|(_, _, prefix)| !texts.contains_key(&format!("{prefix} #1")))
        .map(|(_, id, prefix)| (id, prefix))
        .collect();

    // From the database: each job claimed once, and by which worker (one per process).
    let (claims, started_events, span) = claims(&database.url).await;
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for (id, (worker, attempts)) in &claims {
        assert_eq!(*attempts, 1, "job {id} was claimed {attempts} times");
        *by_worker
            .entry(worker.clone().unwrap_or_else(|| "none".into()))
            .or_default() += 1;
    }
    let twice: Vec<_> = started_events.iter().filter(|(_, n)| **n != 1).collect();
    let per_worker: Vec<usize> = by_worker.values().copied().collect();
    println!(
        "jobs: {JOBS} started ({} on each process) in {all_started:?}; first queued to last \
         finished {span:?} ({:.0} jobs/s; seen finished by polling after {all_finished:?}); \
         ran per process (worker): {per_worker:?}; duplicates: {}, missing: {}",
        JOBS / 2,
        JOBS as f64 / span.as_secs_f64().max(0.001),
        duplicates.len(),
        missing.len()
    );
    assert!(duplicates.is_empty(), "tasks made twice: {duplicates:?}");
    assert!(missing.is_empty(), "jobs without their task: {missing:?}");
    assert!(twice.is_empty(), "jobs not STARTED exactly once: {twice:?}");
    assert_eq!(claims.len(), JOBS);
    assert_eq!(started_events.len(), JOBS);
    assert!(by_worker.len() <= 2, "one worker identity per process");
    drop((a, b));
}

/// Per job: the worker that claimed it and how many runs it had; how many STARTED states the
/// `jobs` stream logged for it; and the time from the first job queued to the last finished.
async fn claims(
    url: &str,
) -> (
    HashMap<String, (Option<String>, i32)>,
    HashMap<String, usize>,
    Duration,
) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).expect("connect to the test database");
        let rows: Vec<(String, Option<String>, i32)> = rest_live_jobs::table
            .select((
                rest_live_jobs::id,
                rest_live_jobs::worker,
                rest_live_jobs::attempts,
            ))
            .load(&mut conn)
            .expect("the jobs");
        let claims = rows
            .into_iter()
            .map(|(id, worker, attempts)| (id, (worker, attempts)))
            .collect();
        let (first_queued, last_finished): (Option<i64>, Option<i64>) = rest_live_jobs::table
            .select((
                diesel::dsl::min(rest_live_jobs::created_at),
                diesel::dsl::max(rest_live_jobs::finished_at),
            ))
            .first(&mut conn)
            .expect("the jobs' times");
        let span = Duration::from_millis(
            last_finished
                .unwrap_or_default()
                .saturating_sub(first_queued.unwrap_or_default()) as u64,
        );
        let head = rest_live::testing::internals::stream_head(AnyConn::Pg(&mut conn), "jobs")
            .expect("the jobs stream's head");
        let changes = rest_live::testing::internals::read_stream(
            AnyConn::Pg(&mut conn),
            "jobs",
            0,
            head,
            i64::MAX,
        )
        .expect("the jobs stream");
        let mut started: HashMap<String, usize> = HashMap::new();
        for change in changes {
            let row: Value = serde_json::from_str(&change.row).expect("a JSON row");
            let id: String = serde_json::from_str(&change.pk).expect("a JSON pk");
            let entry = started.entry(id).or_default();
            if row["state"] == "STARTED" {
                *entry += 1;
            }
        }
        (claims, started, span)
    })
    .await
    .expect("read the database")
}
