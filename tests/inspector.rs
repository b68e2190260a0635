//! The browser inspector's routes (the page itself is tested in a browser: tests/browser/).

mod common;

use rest_live::testing::TestServer;
use serde_json::{Value, json};

async fn get(server: &TestServer, path: &str) -> (u16, String, String) {
    let response = server
        .http()
        .get(server.url(path))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

#[tokio::test]
async fn the_inspector_is_off_by_default() {
    let server = common::server().await;
    assert_eq!(get(&server, "/inspector").await.0, 404);
    assert_eq!(get(&server, "/inspector/meta").await.0, 404);
}

#[tokio::test]
async fn the_inspector_serves_its_page_and_the_app_s_streams() {
    let builder = common::models::builder().configure(|c| {
        c.inspector_path = Some("/dev/inspector/".into());
    });
    let server = TestServer::start(builder).await;

    let (status, content_type, page) = get(&server, "/dev/inspector").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(page.contains("<title>rest-live inspector</title>"));
    // Self-contained: nothing is loaded from elsewhere.
    assert!(!page.contains("src=\"http"), "no external scripts");
    assert!(!page.contains("href=\"http"), "no external styles");

    let (status, content_type, meta) = get(&server, "/dev/inspector/meta").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let meta: Value = serde_json::from_str(&meta).expect("JSON");
    assert_eq!(meta["ws_path"], "/ws");
    assert_eq!(meta["drl_path"], "/ws/subscribe/");
    assert_eq!(meta["http_prefix"], "/api");
    // The page follows a job's 202 reply on this stream; without authentication it connects
    // without asking for a token.
    assert_eq!(meta["jobs_stream"], "jobs");
    assert_eq!(meta["auth"]["authenticates"], false);
    assert_eq!(meta["auth"]["anonymous"], true);
    let streams: Vec<&str> = meta["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["stream"].as_str())
        .collect();
    assert_eq!(streams, ["jobs", "lists", "tasks"]);
    let tasks = &meta["streams"][2];
    assert_eq!(tasks["label"], "todolist.Task");
    assert_eq!(tasks["pk"], "id");
    assert_eq!(tasks["group_keys"], json!(["list_id"]));
    assert_eq!(
        tasks["actions"],
        json!([
            "list",
            "retrieve",
            "create",
            "update",
            "patch",
            "delete",
            "subscribe_instance",
            "unsubscribe_instance",
            "subscribe",
            "unsubscribe",
            "clear_done",
            "complete"
        ])
    );
    // Custom actions (`#[actions]`), in the registry's order: on one object or the collection,
    // with the method's doc comment and the JSON Schema of the arguments (null: none).
    assert_eq!(
        tasks["custom_actions"],
        json!([
            {"name": "clear_done", "detail": false,
             "description": "Deletes the done tasks of a list that the caller may see, in one transaction.",
             "args": {"type": "object", "properties": {"list_id": {"type": "integer"}},
                      "required": ["list_id"]}},
            {"name": "complete", "detail": true,
             "description": "Marks the task done (a done task stays done).",
             "args": null},
        ])
    );
    assert_eq!(meta["streams"][1]["custom_actions"], json!([]));
    assert_eq!(meta["streams"][0]["custom_actions"], json!([]));
    assert_eq!(
        tasks["jobs"],
        json!([{"name": "archive_done", "on_object": false}])
    );
    assert_eq!(
        tasks["fields"][1],
        json!({"name": "text", "type": "String", "read_only": false, "required": true,
               "filterable": true, "nullable": false, "max_length": 140,
               "lookups": ["exact", "iexact", "contains", "icontains", "startswith", "istartswith"],
               "orderable": true})
    );
    // What a live query may name: each field's lookups, whether it orders; the default order.
    assert_eq!(
        tasks["fields"][4],
        json!({"name": "owner", "type": "Option<String>", "read_only": true, "required": false,
               "filterable": true, "nullable": true, "max_length": null,
               "lookups": ["exact", "isnull"], "orderable": false})
    );
    assert_eq!(tasks["ordering"], json!(["id"]));
    assert_eq!(tasks["live_queries"], true);
    // A collection without group keys takes live queries: subscribe and unsubscribe are listed.
    let lists = &meta["streams"][1];
    assert_eq!(lists["live_queries"], true);
    assert_eq!(lists["ordering"], json!(["id"]));
    assert_eq!(lists["group_keys"], json!([]));
    assert_eq!(
        lists["actions"],
        json!([
            "list",
            "retrieve",
            "create",
            "update",
            "patch",
            "delete",
            "subscribe_instance",
            "unsubscribe_instance",
            "subscribe",
            "unsubscribe"
        ])
    );
    // Job states are read and followed only.
    assert_eq!(
        meta["streams"][0]["actions"],
        json!(["retrieve", "subscribe_instance", "unsubscribe_instance"])
    );
    assert_eq!(meta["streams"][0]["live_queries"], false);
    assert_eq!(meta["streams"][0]["ordering"], json!([]));
}

#[tokio::test]
async fn the_meta_says_when_a_token_is_required() {
    let builder = common::models::builder_with_users(common::models::demo_tokens())
        .configure(|c| c.inspector_path = Some("/inspector".into()));
    let server = TestServer::start(builder).await;
    // Read without a credential: the page asks for a token instead of opening a socket that the
    // handshake would refuse (which a browser reports only as 1006).
    let (status, _, meta) = get(&server, "/inspector/meta").await;
    assert_eq!(status, 200);
    let meta: Value = serde_json::from_str(&meta).expect("JSON");
    assert_eq!(
        meta["auth"],
        json!({"authenticates": true, "anonymous": false, "cookie": "rest_live_token",
               "query_parameter": "token"})
    );
}
