//! Shared by the job tests (`tests/jobs*.rs`): an HTTP client that follows jobs. (The example
//! binary as a child process is `common::process`.)
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use rest_live::testing::{HttpClient, HttpResponse, Method};
use serde_json::{Value, json};

/// How long a condition may take before the test fails (generous: nothing here is timed).
pub const PATIENCE: Duration = Duration::from_secs(60);
/// How often a condition is looked at again.
pub const POLL: Duration = Duration::from_millis(10);

/// What came back: status, `Location` and the body (`null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: Value,
}

impl From<HttpResponse> for Reply {
    fn from(response: HttpResponse) -> Self {
        Self {
            status: response.status,
            location: response.location().map(str::to_owned),
            body: response.json(),
        }
    }
}

/// An HTTP client of one principal (a bearer token, or anonymous) that does not follow
/// redirects, so that the 303 of a finished job is seen as such.
pub struct Api {
    http: HttpClient,
}

impl Api {
    /// A client of the server at `base` (`http://<addr>`).
    pub fn new(base: String, token: Option<&'static str>) -> Self {
        Self {
            http: HttpClient::new(base).with_token(token),
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: String,
    ) -> Reply {
        let request = self.http.request(method, path).body(content_type, body);
        Reply::from(request.await)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        match body {
            Some(body) => {
                self.raw(method, path, Some("application/json"), body.to_string())
                    .await
            }
            None => self.raw(method, path, None, String::new()).await,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn create_list(&self, name: &str) -> i64 {
        let reply = self.post("/api/lists/", json!({ "name": name })).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body["id"].as_i64().expect("list id")
    }

    /// A list with `done` done tasks and `open` open ones; returns its id and the done tasks' ids.
    pub async fn list_with_tasks(
        &self,
        name: &str,
        done: usize,
        open: usize,
    ) -> (i64, BTreeSet<i64>) {
        let list = self.create_list(name).await;
        let mut done_ids = BTreeSet::new();
        for i in 0..done + open {
            let is_done = i < done;
            let reply = self
                .post(
                    "/api/tasks/",
                    json!({"text": format!("{name} {i}"), "done": is_done, "list_id": list}),
                )
                .await;
            assert_eq!(reply.status, 201, "{reply:?}");
            if is_done {
                done_ids.insert(reply.body["id"].as_i64().expect("task id"));
            }
        }
        (list, done_ids)
    }

    /// The list's tasks as `(id, done)`.
    pub async fn tasks(&self, list: i64) -> Vec<(i64, bool)> {
        let reply = self
            .get(&format!("/api/tasks/?list_id={list}&limit=1000"))
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|t| {
                (
                    t["id"].as_i64().expect("id"),
                    t["done"].as_bool().expect("done"),
                )
            })
            .collect()
    }

    pub async fn done_count(&self, list: i64) -> usize {
        self.tasks(list).await.iter().filter(|(_, d)| *d).count()
    }

    /// Starts a job with `POST path body`: asserts 202, the `Location` and the exact body;
    /// returns the job id.
    pub async fn start(&self, path: &str, body: Value) -> String {
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, 202, "POST {path}: {reply:?}");
        let id = reply.body["id"].as_str().expect("a string id").to_owned();
        assert!(!id.is_empty());
        let uri = format!("/api/jobs/{id}/");
        assert_eq!(reply.location.as_deref(), Some(uri.as_str()), "{reply:?}");
        assert_eq!(
            reply.body,
            json!({"id": id, "state": "PENDING", "resource_uri": uri})
        );
        id
    }

    /// [`start`](Self::start)s the job `job` on list `list` (`POST /api/lists/<list>/<job>/`).
    pub async fn start_on_list(&self, list: i64, job: &str, body: Value) -> String {
        self.start(&format!("/api/lists/{list}/{job}/"), body).await
    }

    /// Polls the job's state resource until `done(state)`; returns that reply.
    pub async fn wait_state(
        &self,
        id: &str,
        what: &str,
        mut done: impl FnMut(&str) -> bool,
    ) -> Reply {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let reply = self.get(&format!("/api/jobs/{id}/")).await;
            assert!(
                reply.status == 200 || reply.status == 303,
                "GET job {id}: {reply:?}"
            );
            let state = reply.body["state"].as_str().expect("a state").to_owned();
            if done(&state) {
                return reply;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} not {what} within {PATIENCE:?}: {reply:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the job to finish; checks the 303 and its body; returns the state.
    pub async fn wait_finished(&self, id: &str) -> String {
        let reply = self
            .wait_state(id, "finished", |s| {
                matches!(s, "SUCCESS" | "FAILURE" | "CANCELLED")
            })
            .await;
        let uri = format!("/api/jobs/{id}/");
        let result_uri = format!("{uri}result/");
        assert_eq!(reply.status, 303, "{reply:?}");
        assert_eq!(reply.location.as_deref(), Some(result_uri.as_str()));
        let state = reply.body["state"].as_str().expect("state").to_owned();
        assert_eq!(
            reply.body,
            json!({"id": id, "state": state, "resource_uri": uri, "result_uri": result_uri})
        );
        state
    }

    pub async fn result(&self, id: &str) -> Value {
        let reply = self.get(&format!("/api/jobs/{id}/result/")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }
}
