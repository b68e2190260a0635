//! Limits with defaults and settings (issue 3, point 6), end to end: requests per second per
//! connection (429), subscriptions per connection, page size, frame size (1009) and HTTP body
//! size (413), each configured small to show the setting is honoured.

mod common;

use std::time::Duration;

use rest_live::testing::{Closed, TestServer};
use serde_json::{Value, json};

async fn server_with(configure: impl FnOnce(&mut rest_live::Config)) -> TestServer {
    TestServer::start(common::models::builder().configure(configure)).await
}

fn status(reply: &Value) -> i64 {
    reply["payload"]["response_status"]
        .as_i64()
        .unwrap_or_else(|| panic!("no response_status in {reply}"))
}

#[tokio::test]
async fn the_defaults_bound_everything() {
    let config = rest_live::Config::default();
    assert_eq!(config.max_frame_bytes, 1 << 20);
    assert_eq!(config.max_body_bytes, 1 << 20);
    assert_eq!(config.max_page_size, 1000);
    assert_eq!(config.default_page_size, 25);
    assert!(config.outgoing_queue > 0);
    assert!(config.max_subscriptions > 0);
    assert!(config.requests_per_second > 0.0);
    assert!(config.request_burst >= 1.0);
}

#[tokio::test]
async fn a_connection_over_its_request_rate_gets_429_and_recovers() {
    let server = server_with(|c| {
        c.requests_per_second = 5.0;
        c.request_burst = 5.0;
    })
    .await;
    let mut ws = server.ws().await;
    // Twenty frames back to back, without waiting for replies.
    for i in 0..20 {
        ws.send(json!({"stream": "lists", "payload": {"action": "list", "request_id": i}}))
            .await;
    }
    // Malformed frames count too.
    ws.send_text("not json").await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        let reply = ws.recv_reply().await;
        assert_eq!(
            reply["payload"]["request_id"], i,
            "one reply per frame, in order: {reply}"
        );
        let code = status(&reply);
        if code == 429 {
            assert_eq!(
                reply,
                json!({"stream": "lists", "payload": {"action": "list", "request_id": i,
                    "response_status": 429, "errors": ["Request was throttled."], "data": null}})
            );
        } else {
            assert_eq!(code, 200, "{reply}");
        }
        statuses.push(code);
    }
    let reply = ws.recv_reply().await;
    assert_eq!(
        reply,
        json!({"stream": null, "payload": {"action": null, "request_id": null,
            "response_status": 429, "errors": ["Request was throttled."], "data": null}})
    );
    ws.expect_silence(Duration::from_millis(100)).await;
    assert!(
        statuses[..5].iter().all(|s| *s == 200),
        "the burst is admitted: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");

    // Another connection has its own budget.
    let mut other = server.ws().await;
    let reply = other
        .request(json!({"stream": "lists", "payload": {"action": "list", "request_id": "o"}}))
        .await;
    assert_eq!(status(&reply), 200, "{reply}");

    // The bucket refills at the sustained rate: a second later there are tokens again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        let reply = ws
            .request(json!({"stream": "lists", "payload": {"action": "list", "request_id": i}}))
            .await;
        assert_eq!(status(&reply), 200, "{reply}");
    }
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited_and_unsubscribing_frees_a_slot() {
    let server = server_with(|c| {
        c.max_subscriptions = 3;
        c.requests_per_second = 0.0;
    })
    .await;
    let list = common::create_list(&server, "Groceries").await;
    let mut ws = server.ws().await;
    let task = common::create_task(&mut ws, "milk", list).await;

    let group = |rid: &str| {
        json!({"stream": "tasks", "payload": {"action": "subscribe", "request_id": rid,
            "group": {"list_id": list}}})
    };
    assert_eq!(status(&ws.request(group("s1")).await), 201);
    assert_eq!(status(&ws.request(group("s2")).await), 201);
    let reply = ws
        .request(
            json!({"stream": "tasks", "payload": {"action": "subscribe_instance",
            "request_id": "s3", "pk": task["id"]}}),
        )
        .await;
    assert_eq!(status(&reply), 201, "{reply}");

    // The fourth, of either kind, is refused.
    for frame in [
        group("s4"),
        json!({"stream": "lists", "payload": {"action": "subscribe_instance",
            "request_id": "s4", "pk": list}}),
    ] {
        let reply = ws.request(frame).await;
        assert_eq!(
            reply["payload"],
            json!({"action": reply["payload"]["action"], "request_id": "s4",
                "response_status": 400,
                "errors": ["Too many subscriptions on this connection (limit 3)."],
                "data": null}),
            "{reply}"
        );
    }
    // The same subscription again is not a new one.
    assert_eq!(status(&ws.request(group("s1")).await), 201);

    // Unsubscribing frees a slot.
    let reply = ws
        .request(
            json!({"stream": "tasks", "payload": {"action": "unsubscribe", "request_id": "s1"}}),
        )
        .await;
    assert_eq!(status(&reply), 204, "{reply}");
    assert_eq!(status(&ws.request(group("s4")).await), 201);
    assert_eq!(status(&ws.request(group("s5")).await), 400);

    // The limit is per connection.
    let mut other = server.ws().await;
    assert_eq!(status(&other.request(group("s1")).await), 201);

    // The refused subscriptions receive nothing; the others do.
    let mut writer = server.ws().await;
    common::create_task(&mut writer, "eggs", list).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let event = ws.recv_event().await;
        assert_eq!(event["payload"]["action"], "create", "{event}");
        got.push(event["payload"]["request_id"].as_str().unwrap().to_owned());
    }
    got.sort();
    assert_eq!(got, ["s2", "s4"]);
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn page_size_is_clamped_to_the_configured_maximum() {
    let server = server_with(|c| {
        c.max_page_size = 10;
        c.requests_per_second = 0.0;
    })
    .await;
    let list = common::create_list(&server, "Groceries").await;
    let mut ws = server.ws().await;
    for i in 0..15 {
        common::create_task(&mut ws, &format!("t{i}"), list).await;
    }
    let list_frame = |extra: Value| {
        let mut payload = json!({"action": "list", "request_id": "l"});
        payload
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"stream": "tasks", "payload": payload})
    };
    for (extra, limit) in [
        (json!({"limit": 50}), 10),
        (json!({"limit": i64::MAX}), 10),
        (json!({"limit": 10}), 10),
        (json!({"limit": 3}), 3),
        // Without a limit, the default page (25) is above the maximum: clamped too.
        (json!({}), 10),
    ] {
        let reply = ws.request(list_frame(extra.clone())).await;
        assert_eq!(status(&reply), 200, "{reply}");
        let data = &reply["payload"]["data"];
        assert_eq!(data["limit"], limit, "{extra}: {reply}");
        assert_eq!(data["count"], 15, "{extra}");
        assert_eq!(data["results"].as_array().unwrap().len(), limit, "{extra}");
    }

    // The same over HTTP.
    for (query, limit) in [("?limit=50", 10), ("", 10), ("?limit=4&offset=12", 3)] {
        let response = server
            .http()
            .get(server.url(&format!("/api/tasks/{query}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(
            body["limit"],
            if query.contains("limit=4") { 4 } else { 10 }
        );
        assert_eq!(body["results"].as_array().unwrap().len(), limit, "{query}");
    }
}

#[tokio::test]
async fn frames_over_the_configured_size_close_the_socket_with_1009() {
    let server = server_with(|c| {
        c.max_frame_bytes = 1000;
        c.requests_per_second = 0.0;
    })
    .await;
    let list = common::create_list(&server, "Groceries").await;

    // A frame of exactly `size` bytes: a valid create padded with an ignored payload field.
    let frame_of = |size: usize| {
        let frame = |pad: &str| {
            json!({"stream": "tasks", "payload": {"action": "create", "request_id": "big",
                "data": {"text": "padded", "list_id": list}, "pad": pad}})
            .to_string()
        };
        let text = frame(&"x".repeat(size - frame("").len()));
        assert_eq!(text.len(), size);
        text
    };

    let mut ws = server.ws().await;
    ws.send_text(&frame_of(900)).await;
    let reply = ws.recv_reply().await;
    assert_eq!(status(&reply), 201, "{reply}");
    ws.send_text(&frame_of(1000)).await;
    assert_eq!(status(&ws.recv_reply().await), 201, "exactly at the limit");

    let mut bystander = server.ws().await;
    ws.send_text(&frame_of(2000)).await;
    assert_eq!(ws.recv_close().await, Closed::Code(1009));
    let mut ws = server.ws().await;
    ws.send_text(&frame_of(1001)).await;
    assert_eq!(ws.recv_close().await, Closed::Code(1009));

    // Nothing of the oversize frames was written; others are unaffected.
    let reply = bystander
        .request(json!({"stream": "tasks", "payload": {"action": "list", "request_id": 1}}))
        .await;
    assert_eq!(reply["payload"]["data"]["count"], 2, "{reply}");
}

#[tokio::test]
async fn http_bodies_over_the_configured_size_get_413() {
    let server = server_with(|c| c.max_body_bytes = 1000).await;
    let list = common::create_list(&server, "Groceries").await;
    let body_of = |size: usize| {
        let body = |pad: &str| json!({"text": "padded", "list_id": list, "pad": pad}).to_string();
        let text = body(&"x".repeat(size - body("").len()));
        assert_eq!(text.len(), size);
        text
    };
    let post = |body: String| {
        server
            .http()
            .post(server.url("/api/tasks/"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let response = post(body_of(2000)).await.expect("POST");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body, json!({"errors": ["Request body is too large."]}));

    let response = post(body_of(1001)).await.expect("POST");
    assert_eq!(response.status().as_u16(), 413);

    // Within the limit the body is read (and here refused for its unknown field, not its size).
    let response = post(body_of(900)).await.expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body, json!({"errors": [{"pad": ["Unknown field."]}]}));

    // Nothing was written, and the server serves.
    let response = server
        .http()
        .get(server.url("/api/tasks/"))
        .send()
        .await
        .expect("GET");
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["count"], 0);
}
