//! docs/protocol.md §2 (HTTP), end to end: real requests against the example to-do app on a real server.

mod common;

use std::time::Duration;

use reqwest::header::{ALLOW, CONTENT_TYPE, LOCATION};
use rest_live::testing::{Method, TestServer, WsClient};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Creates a task over HTTP and returns the stored object.
async fn create_task(server: &TestServer, text: &str, list_id: i64) -> Value {
    server
        .post("/api/tasks/", json!({"text": text, "list_id": list_id}))
        .await
        .expect(201)
}

/// Every task, in pk order.
async fn all_tasks(server: &TestServer) -> Value {
    server.get("/api/tasks/?limit=1000").await.expect(200)["results"].clone()
}

/// Asserts that the stored tasks are exactly `expected` (a JSON array): a rejected write changed nothing.
#[track_caller]
fn assert_same(actual: &Value, expected: &Value) {
    assert_eq!(actual, expected, "the tasks changed");
}

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

/// A WebSocket client subscribed to the tasks of list `list_id` with request_id `"s"`.
async fn subscribe_list(server: &TestServer, list_id: i64) -> WsClient {
    let mut ws = server.ws().await;
    let group = json!({"request_id": "s", "group": {"list_id": list_id}});
    let reply = ws.call("tasks", "subscribe", group).await;
    assert_eq!(reply.status, 201, "{reply}");
    assert!(reply.data["seq"].is_i64(), "{reply}");
    ws
}

/// Asserts an event of the `"s"` subscription; returns its seq.
#[track_caller]
fn check_event(event: &Value, action: &str, status: u16, data: &Value) -> i64 {
    assert_eq!(event["stream"], "tasks", "{event}");
    let payload = &event["payload"];
    assert_eq!(payload["action"], action, "{event}");
    assert_eq!(payload["request_id"], "s", "{event}");
    assert_eq!(payload["response_status"], status, "{event}");
    assert_eq!(payload["errors"], json!([]), "{event}");
    assert_eq!(&payload["data"], data, "{event}");
    payload["seq"].as_i64().expect("seq")
}

const SILENCE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_empty() {
    let server = common::server().await;
    let body = server.get("/api/tasks/").await.expect(200);
    assert_eq!(
        body,
        json!({"count": 0, "results": [], "limit": 25, "offset": 0, "next": null})
    );
}

#[tokio::test]
async fn list_trailing_slash_is_optional() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let task = create_task(&server, "milk", list).await;
    let expected = json!({"count": 1, "results": [task], "limit": 25, "offset": 0, "next": null});
    assert_eq!(server.get("/api/tasks").await.expect(200), expected);
    assert_eq!(server.get("/api/tasks/").await.expect(200), expected);
    assert_eq!(
        server.get("/api/tasks?limit=25").await.expect(200),
        expected
    );
    // And on objects.
    let path = format!("/api/tasks/{}", task["id"]);
    assert_eq!(server.get(&path).await.expect(200), task);
    assert_eq!(server.get(&format!("{path}/")).await.expect(200), task);
    // Creating without the slash works too.
    let created = server
        .post("/api/tasks", json!({"text": "eggs", "list_id": list}))
        .await
        .expect(201);
    assert_eq!(created["text"], "eggs");
}

#[tokio::test]
async fn list_pagination() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    for i in 1..=30 {
        let task = create_task(&server, &format!("task {i}"), list).await;
        assert_eq!(task["id"], i, "{task}");
    }

    // Default page: the first 25, in pk order.
    let page = server.get("/api/tasks/").await.expect(200);
    assert_eq!(page["count"], 30);
    assert_eq!(page["limit"], 25);
    assert_eq!(page["offset"], 0);
    assert_eq!(ids(&page), (1..=25).collect::<Vec<_>>());
    assert_eq!(
        page["results"][0],
        json!({"id": 1, "text": "task 1", "done": false, "list_id": list, "priority": 0, "note": null})
    );

    let page = server
        .get("/api/tasks/?limit=5&offset=10")
        .await
        .expect(200);
    assert_eq!(page["count"], 30);
    assert_eq!(page["limit"], 5);
    assert_eq!(page["offset"], 10);
    assert_eq!(ids(&page), vec![11, 12, 13, 14, 15]);

    // The last, partial page, and a page past the end.
    let page = server.get("/api/tasks/?offset=25").await.expect(200);
    assert_eq!(ids(&page), vec![26, 27, 28, 29, 30]);
    assert_eq!(
        (page["count"].clone(), page["limit"].clone()),
        (json!(30), json!(25))
    );
    let page = server.get("/api/tasks/?offset=100").await.expect(200);
    assert_eq!(
        page,
        json!({"count": 30, "results": [], "limit": 25, "offset": 100, "next": null})
    );

    // Above the maximum: clamped to 1000.
    let page = server.get("/api/tasks/?limit=5000").await.expect(200);
    assert_eq!(page["limit"], 1000);
    assert_eq!(page["count"], 30);
    assert_eq!(ids(&page), (1..=30).collect::<Vec<_>>());
    let page = server.get("/api/tasks/?limit=1000").await.expect(200);
    assert_eq!(page["limit"], 1000);
}

#[tokio::test]
async fn list_invalid_paging_is_400() {
    let server = common::server().await;
    for query in [
        "limit=abc",
        "limit=0",
        "limit=-1",
        "limit=",
        "limit=1.5",
        "offset=-1",
        "offset=abc",
    ] {
        let response = server.get(&format!("/api/tasks/?{query}")).await;
        let message = response.expect_error(400);
        let name = query.split('=').next().unwrap_or_default();
        assert!(message.contains(name), "{query}: {message}");
    }
}

#[tokio::test]
async fn list_filters() {
    let server = common::server().await;
    let home = common::create_list(&server, "home").await;
    let work = common::create_list(&server, "work").await;
    let milk = create_task(&server, "milk", home).await;
    let report = create_task(&server, "report", work).await;
    let eggs = create_task(&server, "eggs", home).await;
    let eggs = server
        .patch(
            &format!("/api/tasks/{}/", eggs["id"]),
            json!({"done": true}),
        )
        .await
        .expect(200);

    let page = server
        .get(&format!("/api/tasks/?list_id={home}"))
        .await
        .expect(200);
    assert_eq!(
        page,
        json!({"count": 2, "results": [milk, eggs], "limit": 25, "offset": 0, "next": null})
    );
    let page = server
        .get(&format!("/api/tasks/?list_id={work}"))
        .await
        .expect(200);
    assert_eq!(page["results"], json!([report]));
    assert_eq!(page["count"], 1);

    let page = server.get("/api/tasks/?done=true").await.expect(200);
    assert_eq!(page["results"], json!([eggs]));
    assert_eq!(page["count"], 1);
    // The pk is filterable too.
    let page = server
        .get(&format!("/api/tasks/?id={}", report["id"]))
        .await
        .expect(200);
    assert_eq!(page["results"], json!([report]));
    let page = server.get("/api/tasks/?done=false").await.expect(200);
    assert_eq!(page["results"], json!([milk, report]));
    assert_eq!(page["count"], 2);

    // Filters combine (AND), and with paging.
    let page = server
        .get(&format!("/api/tasks/?list_id={home}&done=false"))
        .await
        .expect(200);
    assert_eq!(page["results"], json!([milk]));
    let page = server
        .get(&format!("/api/tasks/?list_id={home}&limit=1&offset=1"))
        .await
        .expect(200);
    assert_eq!(
        page,
        json!({"count": 2, "results": [eggs], "limit": 1, "offset": 1, "next": null})
    );
    // No match is an empty page, not an error.
    let page = server.get("/api/tasks/?list_id=999").await.expect(200);
    assert_eq!(
        page,
        json!({"count": 0, "results": [], "limit": 25, "offset": 0, "next": null})
    );

    // A lookup the field does not allow, an unknown field, and ill-typed values: 400, keyed
    // by the condition as sent (docs/protocol.md §3).
    for (query, key) in [
        ("note__lt=x", "note__lt"),
        ("nope=1", "nope"),
        ("done=maybe", "done"),
        ("list_id=abc", "list_id"),
        ("list_id=1.5", "list_id"),
    ] {
        let response = server.get(&format!("/api/tasks/?{query}")).await;
        response.expect_field_errors(&[key]);
    }
}

// ---------------------------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_returns_201_with_location_and_the_stored_object() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;

    let response = server
        .post("/api/tasks/", json!({"text": "  milk ", "list_id": list}))
        .await;
    let task = response.expect(201);
    // The hook trimmed the text; the id was generated; done took its default.
    assert_eq!(
        task,
        json!({"id": 1, "text": "milk", "done": false, "list_id": list, "priority": 0, "note": null})
    );
    assert_eq!(response.header(LOCATION), Some("/api/tasks/1/"));
    // The Location is where the object lives.
    assert_eq!(server.get("/api/tasks/1/").await.expect(200), task);

    let response = server
        .post(
            "/api/tasks/",
            json!({"text": "eggs", "done": true, "list_id": list}),
        )
        .await;
    let task = response.expect(201);
    assert_eq!(
        task,
        json!({"id": 2, "text": "eggs", "done": true, "list_id": list, "priority": 0, "note": null})
    );
    assert_eq!(response.header(LOCATION), Some("/api/tasks/2/"));

    // Lists too.
    let response = server.post("/api/lists/", json!({"name": " work "})).await;
    assert_eq!(response.expect(201), json!({"id": 2, "name": "work"}));
    assert_eq!(response.header(LOCATION), Some("/api/lists/2/"));
}

#[tokio::test]
async fn create_ignores_read_only_id() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let response = server
        .post(
            "/api/tasks/",
            json!({"id": 999, "text": "milk", "list_id": list}),
        )
        .await;
    let task = response.expect(201);
    assert_eq!(
        task,
        json!({"id": 1, "text": "milk", "done": false, "list_id": list, "priority": 0, "note": null})
    );
    assert_eq!(response.header(LOCATION), Some("/api/tasks/1/"));
    server.get("/api/tasks/999/").await.expect_error(404);
}

#[tokio::test]
async fn create_validation_errors() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let existing = create_task(&server, "existing", list).await;
    let before = all_tasks(&server).await;
    assert_eq!(before, json!([existing]));

    let cases: Vec<(Value, &[&str])> = vec![
        // A required field is missing.
        (json!({"list_id": list}), &["text"]),
        (json!({"text": "milk"}), &["list_id"]),
        (json!({}), &["list_id", "text"]),
        // Wrong types.
        (json!({"text": 5, "list_id": list}), &["text"]),
        (json!({"text": "milk", "list_id": "one"}), &["list_id"]),
        (
            json!({"text": "milk", "done": "yes", "list_id": list}),
            &["done"],
        ),
        (json!({"text": null, "list_id": list}), &["text"]),
        // Longer than max_length (140).
        (json!({"text": "x".repeat(141), "list_id": list}), &["text"]),
        // Blank (refused by the hook, after trimming).
        (json!({"text": "   ", "list_id": list}), &["text"]),
        (json!({"text": "", "list_id": list}), &["text"]),
        // A field the resource does not have.
        (
            json!({"text": "milk", "list_id": list, "colour": "red"}),
            &["colour"],
        ),
    ];
    for (body, fields) in cases {
        let response = server.post("/api/tasks/", body.clone()).await;
        assert_eq!(response.header(LOCATION), None, "{body}");
        response.expect_field_errors(fields);
        assert_same(&all_tasks(&server).await, &before);
    }

    // The messages say what is wrong.
    let errors = server
        .post("/api/tasks/", json!({"list_id": list}))
        .await
        .expect_field_errors(&["text"]);
    assert_eq!(errors, json!({"text": ["This field is required."]}));
    let errors = server
        .post("/api/tasks/", json!({"text": " ", "list_id": list}))
        .await
        .expect_field_errors(&["text"]);
    assert_eq!(errors, json!({"text": ["This field may not be blank."]}));
    let errors = server
        .post(
            "/api/tasks/",
            json!({"text": "x".repeat(141), "list_id": list}),
        )
        .await
        .expect_field_errors(&["text"]);
    assert_eq!(
        errors,
        json!({"text": ["Ensure this field has no more than 140 characters."]})
    );

    // Exactly 140 characters is fine (counted in characters, not bytes).
    let long = "é".repeat(140);
    let task = create_task(&server, &long, list).await;
    assert_eq!(task["text"], long);
}

#[tokio::test]
async fn create_in_a_missing_list_is_409() {
    let server = common::server().await;
    let message = server
        .post("/api/tasks/", json!({"text": "milk", "list_id": 999}))
        .await
        .expect_error(409);
    assert!(message.to_lowercase().contains("foreign key"), "{message}");
    assert_eq!(all_tasks(&server).await, json!([]));
}

#[tokio::test]
async fn create_body_must_be_a_json_object() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let valid = json!({"text": "milk", "list_id": list}).to_string();

    for body in [
        "{not json",
        "",
        "[]",
        "[{\"text\": \"milk\"}]",
        "\"milk\"",
        "42",
        "null",
    ] {
        let response = server
            .request(Method::POST, "/api/tasks/")
            .body(Some("application/json"), body.to_owned())
            .await;
        response.expect_error(400);
        assert_eq!(all_tasks(&server).await, json!([]), "{body}");
    }

    // Media type: not JSON, or none at all, is 415 even with a valid JSON body.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let response = server
            .request(Method::POST, "/api/tasks/")
            .body(content_type, valid.clone())
            .await;
        response.expect_error(415);
        assert_eq!(all_tasks(&server).await, json!([]), "{content_type:?}");
    }

    // Parameters and case do not matter.
    let response = server
        .request(Method::POST, "/api/tasks/")
        .body(Some("Application/JSON; charset=utf-8"), valid.clone())
        .await;
    assert_eq!(response.expect(201)["text"], "milk");
}

#[tokio::test]
async fn create_body_over_the_limit_is_413() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let limit = server.app.config().max_body_bytes;
    assert_eq!(limit, 1 << 20);

    // A JSON object of exactly `size` bytes.
    let body_of = |size: usize| {
        let frame = json!({"text": "", "list_id": list}).to_string();
        let text = "x".repeat(size - frame.len());
        let body = json!({"text": text, "list_id": list}).to_string();
        assert_eq!(body.len(), size);
        body
    };

    let response = server
        .request(Method::POST, "/api/tasks/")
        .body(Some("application/json"), body_of(limit + 1))
        .await;
    response.expect_error(413);
    assert_eq!(all_tasks(&server).await, json!([]));

    // At the limit the body is read: here it fails validation (text too long), not 413.
    let response = server
        .request(Method::POST, "/api/tasks/")
        .body(Some("application/json"), body_of(limit))
        .await;
    response.expect_field_errors(&["text"]);
    assert_eq!(all_tasks(&server).await, json!([]));

    // The server is still fine.
    create_task(&server, "milk", list).await;
}

/// Sends a chunked POST (no Content-Length) over a plain socket; returns the response head and body.
async fn post_chunked(server: &TestServer, path: &str, body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let addr = server.addr;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in body.chunks(64 * 1024) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The server may answer (and stop reading) before the whole body is sent.
        let _ = socket.write_all(&request);
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(_) if !response.is_empty() => break,
                Err(e) => panic!("reading the response: {e}"),
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .expect("the blocking client")
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let limit = server.app.config().max_body_bytes;
    let frame = json!({"text": "", "list_id": list}).to_string();
    let body = json!({"text": "x".repeat(limit + 1 - frame.len()), "list_id": list}).to_string();
    assert_eq!(body.len(), limit + 1);

    let response = post_chunked(&server, "/api/tasks/", body.into_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(all_tasks(&server).await, json!([]));

    // A small chunked body is read as usual.
    let small = json!({"text": "milk", "list_id": list}).to_string();
    let response = post_chunked(&server, "/api/tasks/", small.into_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("location: /api/tasks/1/"),
        "{response}"
    );
}

// ---------------------------------------------------------------------------------------------
// retrieve
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retrieve() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let task = create_task(&server, "milk", list).await;

    let body = server
        .get(&format!("/api/tasks/{}/", task["id"]))
        .await
        .expect(200);
    assert_eq!(
        body,
        json!({"id": 1, "text": "milk", "done": false, "list_id": list, "priority": 0, "note": null})
    );
    let body = server.get(&format!("/api/lists/{list}/")).await.expect(200);
    assert_eq!(body, json!({"id": list, "name": "home"}));

    let message = server.get("/api/tasks/2/").await.expect_error(404);
    assert_eq!(message, "Not found");
    let message = server.get("/api/tasks/999/").await.expect_error(404);
    assert_eq!(message, "Not found");

    // A pk of the wrong type is 400, not 404.
    for pk in ["abc", "1.5", "true", "99999999999999999999"] {
        server
            .get(&format!("/api/tasks/{pk}/"))
            .await
            .expect_error(400);
    }
}

// ---------------------------------------------------------------------------------------------
// update (PUT), patch, delete
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn update_replaces_all_writable_fields() {
    let server = common::server().await;
    let home = common::create_list(&server, "home").await;
    let work = common::create_list(&server, "work").await;
    let task = create_task(&server, "milk", home).await;
    let path = format!("/api/tasks/{}/", task["id"]);

    let body = server
        .put(
            &path,
            json!({"text": " report ", "done": true, "list_id": work}),
        )
        .await
        .expect(200);
    let updated = json!({"id": 1, "text": "report", "done": true, "list_id": work, "priority": 0, "note": null});
    assert_eq!(body, updated);
    assert_eq!(server.get(&path).await.expect(200), updated);

    // The read-only id in the body is ignored.
    let body = server
        .put(
            &path,
            json!({"id": 5, "text": "report", "done": true, "list_id": work, "priority": 0, "note": null}),
        )
        .await
        .expect(200);
    assert_eq!(body, updated);
    server.get("/api/tasks/5/").await.expect_error(404);
}

#[tokio::test]
async fn update_rejections_change_nothing() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let task = create_task(&server, "milk", list).await;
    let path = format!("/api/tasks/{}/", task["id"]);
    let before = all_tasks(&server).await;

    // A required field is missing: PUT is not PATCH.
    let errors = server
        .put(&path, json!({"done": true, "list_id": list}))
        .await
        .expect_field_errors(&["text"]);
    assert_eq!(errors, json!({"text": ["This field is required."]}));
    assert_same(&all_tasks(&server).await, &before);

    // Validation, and the hook.
    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"text": "x".repeat(141), "done": true, "list_id": list}),
            &["text"],
        ),
        (
            json!({"text": "  ", "done": true, "list_id": list}),
            &["text"],
        ),
        (
            json!({"text": "eggs", "done": 1, "list_id": list}),
            &["done"],
        ),
        (
            json!({"text": "eggs", "done": true, "list_id": list, "x": 1}),
            &["x"],
        ),
    ];
    for (body, fields) in cases {
        server
            .put(&path, body.clone())
            .await
            .expect_field_errors(fields);
        assert_same(&all_tasks(&server).await, &before);
    }

    // Moving to a list that does not exist.
    let message = server
        .put(&path, json!({"text": "eggs", "done": true, "list_id": 999}))
        .await
        .expect_error(409);
    assert!(message.to_lowercase().contains("foreign key"), "{message}");
    assert_same(&all_tasks(&server).await, &before);

    // Bodies.
    server
        .request(Method::PUT, &path)
        .body(Some("application/json"), "nope")
        .await
        .expect_error(400);
    server
        .request(Method::PUT, &path)
        .body(Some("application/json"), "[]")
        .await
        .expect_error(400);
    let valid = json!({"text": "eggs", "done": true, "list_id": list}).to_string();
    server
        .request(Method::PUT, &path)
        .body(Some("text/plain"), valid.clone())
        .await
        .expect_error(415);
    server
        .request(Method::PUT, &path)
        .body(None, valid)
        .await
        .expect_error(415);
    assert_same(&all_tasks(&server).await, &before);

    // No such object.
    let message = server
        .put(
            "/api/tasks/999/",
            json!({"text": "eggs", "done": true, "list_id": list}),
        )
        .await
        .expect_error(404);
    assert_eq!(message, "Not found");
    server
        .put("/api/tasks/abc/", json!({"text": "eggs", "list_id": list}))
        .await
        .expect_error(400);
    assert_same(&all_tasks(&server).await, &before);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let task = create_task(&server, "milk", list).await;
    let path = format!("/api/tasks/{}/", task["id"]);

    let body = server.patch(&path, json!({"done": true})).await.expect(200);
    let patched = json!({"id": 1, "text": "milk", "done": true, "list_id": list, "priority": 0, "note": null});
    assert_eq!(body, patched);
    assert_eq!(server.get(&path).await.expect(200), patched);

    let body = server
        .patch(&path, json!({"text": " oat milk  "}))
        .await
        .expect(200);
    let patched = json!({"id": 1, "text": "oat milk", "done": true, "list_id": list, "priority": 0, "note": null});
    assert_eq!(body, patched);

    // An empty patch changes nothing and answers the object.
    let body = server.patch(&path, json!({})).await.expect(200);
    assert_eq!(body, patched);
    assert_eq!(server.get(&path).await.expect(200), patched);

    // Rejected patches change nothing.
    let before = all_tasks(&server).await;
    server
        .patch(&path, json!({"text": "  "}))
        .await
        .expect_field_errors(&["text"]);
    server
        .patch(&path, json!({"done": "no"}))
        .await
        .expect_field_errors(&["done"]);
    server
        .patch(&path, json!({"text": null}))
        .await
        .expect_field_errors(&["text"]);
    server
        .patch(&path, json!({"colour": "red"}))
        .await
        .expect_field_errors(&["colour"]);
    server
        .patch(&path, json!({"list_id": 999}))
        .await
        .expect_error(409);
    server
        .request(Method::PATCH, &path)
        .body(Some("text/plain"), "{}")
        .await
        .expect_error(415);
    assert_same(&all_tasks(&server).await, &before);

    let message = server
        .patch("/api/tasks/999/", json!({"done": false}))
        .await
        .expect_error(404);
    assert_eq!(message, "Not found");
}

#[tokio::test]
async fn delete_answers_204_with_an_empty_body() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let milk = create_task(&server, "milk", list).await;
    let eggs = create_task(&server, "eggs", list).await;
    let path = format!("/api/tasks/{}/", milk["id"]);

    let response = server.delete(&path).await;
    assert_eq!(response.status, 204);
    assert_eq!(response.text, "");
    assert_eq!(response.header(CONTENT_TYPE), None);

    assert_eq!(server.get(&path).await.expect_error(404), "Not found");
    let again = server.delete(&path).await;
    assert_eq!(again.expect_error(404), "Not found");
    // The other task is untouched.
    assert_eq!(all_tasks(&server).await, json!([eggs]));

    server.delete("/api/tasks/999/").await.expect_error(404);
    server.delete("/api/tasks/abc/").await.expect_error(400);
    assert_eq!(all_tasks(&server).await, json!([eggs]));
}

#[tokio::test]
async fn deleting_a_list_deletes_its_tasks() {
    let server = common::server().await;
    let home = common::create_list(&server, "home").await;
    let work = common::create_list(&server, "work").await;
    let milk = create_task(&server, "milk", home).await;
    let report = create_task(&server, "report", work).await;
    let eggs = create_task(&server, "eggs", home).await;

    let response = server.delete(&format!("/api/lists/{home}/")).await;
    assert_eq!(response.status, 204, "{response}");
    assert_eq!(response.text, "");

    server
        .get(&format!("/api/lists/{home}/"))
        .await
        .expect_error(404);
    for task in [&milk, &eggs] {
        server
            .get(&format!("/api/tasks/{}/", task["id"]))
            .await
            .expect_error(404);
    }
    let page = server
        .get(&format!("/api/tasks/?list_id={home}"))
        .await
        .expect(200);
    assert_eq!(
        page,
        json!({"count": 0, "results": [], "limit": 25, "offset": 0, "next": null})
    );
    assert_eq!(all_tasks(&server).await, json!([report]));
    let lists = server.get("/api/lists/").await.expect(200);
    assert_eq!(lists["results"], json!([{"id": work, "name": "work"}]));
}

// ---------------------------------------------------------------------------------------------
// routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_stream_is_404() {
    let server = common::server().await;
    for path in ["/api/nope/", "/api/nope", "/api/nope/1/"] {
        let message = server.get(path).await.expect_error(404);
        assert_eq!(message, "Unknown stream \"nope\"", "{path}");
    }
    let message = server
        .post("/api/nope/", json!({"text": "x"}))
        .await
        .expect_error(404);
    assert_eq!(message, "Unknown stream \"nope\"");
}

#[tokio::test]
async fn unsupported_methods_are_405_with_allow() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let task = create_task(&server, "milk", list).await;
    let object = format!("/api/tasks/{}/", task["id"]);
    let before = all_tasks(&server).await;

    let cases = [
        (Method::PUT, "/api/tasks/", "GET, POST"),
        (Method::PATCH, "/api/tasks/", "GET, POST"),
        (Method::DELETE, "/api/tasks/", "GET, POST"),
        (Method::POST, object.as_str(), "GET, PUT, PATCH, DELETE"),
    ];
    for (method, path, allow) in cases {
        let body = json!({"text": "eggs", "done": false, "list_id": list});
        let response = server.request(method.clone(), path).json(&body).await;
        let message = response.expect_error(405);
        assert_eq!(message, format!("Method \"{method}\" not allowed."));
        assert_eq!(response.header(ALLOW), Some(allow), "{method} {path}");
    }
    assert_same(&all_tasks(&server).await, &before);
}

#[tokio::test]
async fn paths_deeper_than_an_object_are_404() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    create_task(&server, "milk", list).await;
    for path in [
        "/api/tasks/1/extra/",
        "/api/tasks/1/extra",
        "/api/tasks/1/a/b/",
        "/api/",
    ] {
        let message = server.get(path).await.expect_error(404);
        assert_eq!(message, "Not found", "{path}");
    }
    let before = all_tasks(&server).await;
    server.delete("/api/tasks/1/extra/").await.expect_error(404);
    assert_same(&all_tasks(&server).await, &before);
}

// ---------------------------------------------------------------------------------------------
// HTTP writes and WebSocket subscribers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn http_writes_reach_websocket_subscribers() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let mut ws = subscribe_list(&server, list).await;

    let task = create_task(&server, "milk", list).await;
    let id = task["id"].clone();
    let seq1 = check_event(&ws.next_event().await, "create", 201, &task);

    let path = format!("/api/tasks/{id}/");
    let patched = server.patch(&path, json!({"done": true})).await.expect(200);
    let seq2 = check_event(&ws.next_event().await, "update", 200, &patched);

    let put = server
        .put(
            &path,
            json!({"text": "oat milk", "done": false, "list_id": list}),
        )
        .await
        .expect(200);
    let seq3 = check_event(&ws.next_event().await, "update", 200, &put);

    let response = server.delete(&path).await;
    assert_eq!(response.status, 204);
    let seq4 = check_event(&ws.next_event().await, "delete", 204, &json!({"pk": id}));

    assert!(
        seq1 < seq2 && seq2 < seq3 && seq3 < seq4,
        "{seq1} {seq2} {seq3} {seq4}"
    );
    ws.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn http_writes_are_sent_relative_to_the_group() {
    let server = common::server().await;
    let home = common::create_list(&server, "home").await;
    let work = common::create_list(&server, "work").await;
    let mut home_ws = subscribe_list(&server, home).await;
    let mut work_ws = subscribe_list(&server, work).await;

    // A change in another group is not sent.
    let task = create_task(&server, "milk", home).await;
    check_event(&home_ws.next_event().await, "create", 201, &task);
    work_ws.expect_silence(SILENCE).await;

    // Moving the task from home to work: home is told it left, work that it arrived.
    let path = format!("/api/tasks/{}/", task["id"]);
    let moved = server
        .patch(&path, json!({"list_id": work}))
        .await
        .expect(200);
    assert_eq!(moved["list_id"], work);
    check_event(
        &home_ws.next_event().await,
        "delete",
        204,
        &json!({"pk": task["id"]}),
    );
    check_event(&work_ws.next_event().await, "create", 201, &moved);
    home_ws.expect_silence(SILENCE).await;
    work_ws.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn deleting_a_list_over_http_tells_task_subscribers() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    // Subscribed before the writes it follows: a subscription made after a write has returned
    // may still receive that write (it starts at the seq the hub has delivered, which can lag).
    let mut ws = subscribe_list(&server, list).await;
    let milk = create_task(&server, "milk", list).await;
    check_event(&ws.next_event().await, "create", 201, &milk);
    let eggs = create_task(&server, "eggs", list).await;
    let mut last = check_event(&ws.next_event().await, "create", 201, &eggs);

    let response = server.delete(&format!("/api/lists/{list}/")).await;
    assert_eq!(response.status, 204);
    let mut deleted = Vec::new();
    for _ in 0..2 {
        let event = ws.next_event().await;
        let pk = event["payload"]["data"]["pk"].clone();
        let seq = check_event(&event, "delete", 204, &json!({"pk": pk}));
        assert!(seq > last, "{event}");
        last = seq;
        deleted.push(pk);
    }
    deleted.sort_by_key(|pk| pk.as_i64());
    assert_eq!(deleted, vec![milk["id"].clone(), eggs["id"].clone()]);
    ws.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn rejected_http_writes_send_no_event() {
    let server = common::server().await;
    let list = common::create_list(&server, "home").await;
    let mut ws = subscribe_list(&server, list).await;
    let task = create_task(&server, "milk", list).await;
    check_event(&ws.next_event().await, "create", 201, &task);
    let path = format!("/api/tasks/{}/", task["id"]);

    server
        .post("/api/tasks/", json!({"list_id": list}))
        .await
        .expect_field_errors(&["text"]);
    ws.expect_silence(SILENCE).await;

    server
        .post("/api/tasks/", json!({"text": "  ", "list_id": list}))
        .await
        .expect_field_errors(&["text"]);
    server
        .patch(&path, json!({"text": ""}))
        .await
        .expect_field_errors(&["text"]);
    server
        .patch(&path, json!({"list_id": 999}))
        .await
        .expect_error(409);
    server
        .request(Method::POST, "/api/tasks/")
        .body(Some("text/plain"), "{}")
        .await
        .expect_error(415);
    server.delete("/api/tasks/999/").await.expect_error(404);
    ws.expect_silence(SILENCE).await;

    // The subscription is still live: the next accepted write arrives.
    let created = create_task(&server, "eggs", list).await;
    check_event(&ws.next_event().await, "create", 201, &created);
}
