//! docs/guide.md stays true: every Rust block in it is a slice of the guide's project (this
//! package, which `cargo test` compiles) or of this file, every SQL block a slice of its
//! migrations, its `Cargo.toml` the package's, and the app it builds does what the guide says.

#[path = "../src/models.rs"]
#[allow(dead_code)]
mod models;

use std::time::Duration;

use rest_live::testing::TestServer;
use serde_json::{Value, json};

#[path = "../../../tests/common/markdown.rs"]
mod markdown;

use markdown::{blocks, is_slice_of, read};

#[test]
fn every_code_block_of_the_guide_is_checked_code() {
    let guide = read("../../docs/guide.md");
    let rust: Vec<String> = ["src/models.rs", "src/main.rs", "tests/guide.rs"]
        .iter()
        .map(|p| read(p))
        .collect();
    let sql = read("migrations/sqlite/2026-11-23-000001_create_lists_and_tasks/up.sql");
    // The guide's Cargo.toml, with rest-live from a clone next to the project.
    let manifest = read("Cargo.toml");
    let blocks = blocks(&guide);
    assert!(blocks.iter().filter(|(l, _)| l == "rust").count() >= 8);
    for (lang, body) in &blocks {
        match lang.as_str() {
            "rust" => assert!(
                rust.iter().any(|source| is_slice_of(body, source)),
                "this Rust block of docs/guide.md is not in examples/guide/src/ or examples/guide/tests/guide.rs:\n{body}"
            ),
            "sql" => assert!(
                is_slice_of(body, &sql),
                "this SQL block of docs/guide.md is not in the guide's migrations:\n{body}"
            ),
            "toml" => assert!(
                is_slice_of(&body.replace("\"../rest-live\"", "\"../..\""), &manifest),
                "this TOML block of docs/guide.md is not examples/guide/Cargo.toml's:\n{body}"
            ),
            "" => {
                panic!("a code block without a language (rustdoc would take it for Rust):\n{body}")
            }
            _ => {}
        }
    }
}

// The guide quotes this test.
#[tokio::test]
async fn alice_sees_her_tasks_live() {
    let server = TestServer::start(models::builder(models::demo_tokens())).await;
    let mut alice = server.ws_as("alice-token").await;
    let reply = alice
        .request(json!({"stream": "lists", "payload": {
            "action": "create", "request_id": 1, "data": {"name": "Groceries"}}}))
        .await;
    let list_id = reply["payload"]["data"]["id"].clone();
    let reply = alice
        .request(json!({"stream": "tasks", "payload": {
            "action": "subscribe", "request_id": "s1", "group": {"list_id": list_id}}}))
        .await;
    assert_eq!(reply["payload"]["response_status"], 201);

    // A write over HTTP reaches the subscriber.
    let created = server
        .http()
        .post(server.url("/api/tasks/"))
        .bearer_auth("alice-token")
        .header("content-type", "application/json")
        .body(json!({"text": "milk", "list_id": list_id}).to_string())
        .send()
        .await
        .expect("POST /api/tasks/");
    assert_eq!(created.status().as_u16(), 201);
    let event = alice.recv_event().await;
    assert_eq!(event["payload"]["action"], "create");
    assert_eq!(event["payload"]["data"]["text"], "milk");
    // One write, one event.
    alice.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn the_guide_app_does_what_the_guide_says() {
    let server = TestServer::start(models::builder(models::demo_tokens())).await;
    let http = server.http();
    let post = |token: &'static str, path: String, body: Value| {
        let http = http.clone();
        let url = server.url(&path);
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("POST");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
            (status, body)
        }
    };

    // Sign-in is required.
    let anonymous = http
        .get(server.url("/api/lists/"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status().as_u16(), 401);

    // Hooks: trimmed, blank refused, owner set.
    let (status, list) = post(
        "alice-token",
        "/api/lists/".into(),
        json!({"name": "  Home "}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(list["name"], "Home");
    assert_eq!(list["owner"], "alice");
    let (status, errors) = post("alice-token", "/api/lists/".into(), json!({"name": " "})).await;
    assert_eq!(status, 400);
    assert_eq!(
        errors,
        json!({"errors": [{"name": ["This field may not be blank."]}]})
    );

    // Permissions: bob neither sees nor writes into alice's list.
    let bobs_view = http
        .get(server.url(&format!("/api/lists/{}/", list["id"])))
        .bearer_auth("bob-token")
        .send()
        .await
        .expect("GET");
    assert_eq!(bobs_view.status().as_u16(), 404);
    let (status, _) = post(
        "bob-token",
        "/api/tasks/".into(),
        json!({"text": "intrude", "list_id": list["id"]}),
    )
    .await;
    assert_eq!(status, 409);

    // Resume: a client that saw seq S gets what came after it.
    let mut alice = server.ws_as("alice-token").await;
    let (_, first) = post(
        "alice-token",
        "/api/tasks/".into(),
        json!({"text": "one", "list_id": list["id"]}),
    )
    .await;
    let reply = alice
        .request(json!({"stream": "tasks", "payload": {"action": "subscribe",
            "request_id": "s", "group": {"list_id": list["id"]}, "snapshot": true}}))
        .await;
    assert_eq!(reply["payload"]["data"]["results"], json!([first]));
    let seen = reply["payload"]["data"]["seq"].as_i64().expect("seq");
    drop(alice);
    post(
        "alice-token",
        "/api/tasks/".into(),
        json!({"text": "two", "done": true, "list_id": list["id"]}),
    )
    .await;
    let mut alice = server.ws_as("alice-token").await;
    let reply = alice
        .request(json!({"stream": "tasks", "payload": {"action": "subscribe",
            "request_id": "s", "group": {"list_id": list["id"]}, "since": seen}}))
        .await;
    assert_eq!(reply["payload"]["response_status"], 201);
    let missed = alice.recv_event().await;
    assert_eq!(missed["payload"]["data"]["text"], "two");

    // The job: 202, then the done task's delete event.
    let (status, state) = post(
        "alice-token",
        format!("/api/lists/{}/clear_done/", list["id"]),
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{state}");
    let deleted = alice.recv_event().await;
    assert_eq!(deleted["payload"]["action"], "delete");
    assert_eq!(
        deleted["payload"]["data"],
        json!({"pk": missed["payload"]["data"]["id"]})
    );
    alice.expect_silence(Duration::from_millis(200)).await;

    // Actions: complete (on one task) and reopen (on the collection), with their events.
    let (status, done) = post(
        "alice-token",
        format!("/api/tasks/{}/complete/", first["id"]),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["done"], true);
    let completed = alice.recv_event().await;
    assert_eq!(completed["payload"]["action"], "update");
    assert_eq!(completed["payload"]["data"], done);
    let (status, bobs) = post(
        "bob-token",
        format!("/api/tasks/{}/complete/", first["id"]),
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "{bobs}");
    let (status, reopened) = post(
        "alice-token",
        "/api/tasks/reopen/".into(),
        json!({"list_id": list["id"]}),
    )
    .await;
    assert_eq!(status, 200, "{reopened}");
    assert_eq!(reopened, json!({"reopened": 1}));
    assert_eq!(alice.recv_event().await["payload"]["data"]["done"], false);

    // Server-side writes.
    let seeded = models::seed(&server.app, "bob").await.expect("seed");
    assert_eq!(seeded.owner.as_deref(), Some("bob"));
}
