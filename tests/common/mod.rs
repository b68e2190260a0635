//! Shared by the end-to-end tests: the example's resources on a real server.
#![allow(dead_code)]

#[path = "../../examples/todo/models.rs"]
pub mod models;
pub mod process;

use rest_live::testing::{TestServer, WsClient};
use serde_json::{Value, json};

/// The to-do app on 127.0.0.1, port 0, with a fresh SQLite database.
pub async fn server() -> TestServer {
    TestServer::start(models::builder()).await
}

/// Creates a list over HTTP and returns its id.
pub async fn create_list(server: &TestServer, name: &str) -> i64 {
    let response = server.post("/api/lists/", json!({ "name": name })).await;
    assert_eq!(response.status, 201, "{response}");
    response.json()["id"].as_i64().expect("id")
}

/// Creates a task over the socket and returns the stored object.
pub async fn create_task(ws: &mut WsClient, text: &str, list_id: i64) -> Value {
    let data = json!({"text": text, "list_id": list_id});
    ws.call(
        "tasks",
        "create",
        json!({"request_id": "create-task", "data": data}),
    )
    .await
    .expect(201)
}
