//! Request throttling (docs/protocol.md §6 "Throttling", README "Security"): on by default, per
//! signed-in principal across HTTP and WebSocket, per client address for anonymous requests, a
//! proxy's `X-Forwarded-For` believed only from a trusted proxy, 429 with `Retry-After`, and off
//! with `AppBuilder::throttle(false)` or the example's `REST_LIVE_THROTTLE=off`.

mod common;

use std::time::Instant;

use common::models;
use common::process::ExampleProcess;
use rest_live::AppBuilder;
use rest_live::testing::{HttpClient, HttpResponse, TestDatabase, TestServer};
use serde_json::{Value, json};

const THROTTLED: &str = "Request was throttled.";

/// One token a minute: a spent bucket stays spent for the whole test.
const PER_MINUTE: f64 = 1.0 / 60.0;

/// The to-do app with the demo users (alice, bob: users; carol: admin).
fn users() -> AppBuilder {
    models::builder_with_users(models::demo_tokens())
}

/// Asserts a throttled answer: 429, `{"errors": ["Request was throttled."]}` as JSON, and a
/// `Retry-After` of whole seconds, at least 1; returns it.
#[track_caller]
fn expect_throttled(response: &HttpResponse) -> u64 {
    assert_eq!(
        response.expect(429),
        json!({ "errors": [THROTTLED] }),
        "{response}"
    );
    let retry_after = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {response}"));
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not whole seconds"));
    assert!(seconds >= 1, "{response}");
    seconds
}

/// `count` GETs of the task list, all in flight at once; their responses.
async fn concurrent_gets(client: &HttpClient, count: usize) -> Vec<HttpResponse> {
    let requests = (0..count).map(|_| client.get("/api/tasks/").send());
    futures_util::future::join_all(requests).await
}

#[tokio::test]
async fn a_throttled_request_gets_429_with_the_errors_body_and_a_retry_after_from_its_bucket() {
    let server = TestServer::start(users().configure(|c| {
        c.principal_requests_per_second = PER_MINUTE;
        c.principal_request_burst = 1.0;
    }))
    .await;
    let alice = server.client_as("alice-token");
    let start = Instant::now();
    alice.get("/api/tasks/").await.expect(200);
    let refused = alice.get("/api/tasks/").await;
    let elapsed = start.elapsed().as_secs_f64();
    // The bucket is empty: its next token comes 60 s after the first request, less what has
    // passed since, rounded up to whole seconds.
    let retry_after = expect_throttled(&refused);
    assert!(
        (60.0 - elapsed) <= retry_after as f64 && retry_after <= 60,
        "Retry-After {retry_after} after {elapsed:.3} s"
    );
    // Every method and path is counted, errors included.
    expect_throttled(&alice.get("/api/no-such-stream/").await);
    expect_throttled(&alice.post("/api/lists/", json!({"name": "x"})).await);
    // Another user has a bucket of their own.
    server
        .client_as("bob-token")
        .get("/api/tasks/")
        .await
        .expect(200);
}

#[tokio::test]
async fn with_the_defaults_a_page_load_is_never_throttled() {
    // A page firing 100 requests at once (far more than most) is admitted in full; 600 at once
    // are not (the example process test below: that many connections on both sides of one
    // process could exceed a descriptor limit of 1024).
    let server = TestServer::start(users()).await;
    let alice = server.client_as("alice-token");
    let responses = concurrent_gets(&alice, 100).await;
    let refused: Vec<&HttpResponse> = responses.iter().filter(|r| r.status != 200).collect();
    assert!(refused.is_empty(), "{}", refused[0]);
}

#[tokio::test]
async fn a_principals_http_and_websocket_requests_share_one_bucket() {
    let server = TestServer::start(users().configure(|c| {
        c.principal_requests_per_second = PER_MINUTE;
        c.principal_request_burst = 3.0;
    }))
    .await;
    // Alice spends her burst over HTTP: her socket is refused.
    let alice = server.client_as("alice-token");
    let mut alice_ws = server.ws_as("alice-token").await;
    for _ in 0..3 {
        alice.get("/api/tasks/").await.expect(200);
    }
    let reply = alice_ws.call("tasks", "list", json!({})).await;
    reply.assert_envelope();
    assert_eq!(
        (reply.status, reply.body()),
        (429, json!({ "errors": [THROTTLED] }))
    );
    // Bob spends his over the socket: his HTTP requests are refused.
    let mut bob_ws = server.ws_as("bob-token").await;
    for _ in 0..3 {
        bob_ws.call("tasks", "list", json!({})).await.expect(200);
    }
    expect_throttled(&server.client_as("bob-token").get("/api/tasks/").await);
    // A throttled socket stays open and is still refused, not closed.
    assert_eq!(alice_ws.call("tasks", "list", json!({})).await.status, 429);
    // Carol was never throttled.
    server
        .client_as("carol-token")
        .get("/api/tasks/")
        .await
        .expect(200);
}

#[tokio::test]
async fn anonymous_requests_are_throttled_per_client_address() {
    let server = TestServer::start(users().allow_anonymous(true).configure(|c| {
        c.address_requests_per_second = PER_MINUTE;
        c.address_request_burst = 3.0;
    }))
    .await;
    let anonymous = server.client();
    for _ in 0..3 {
        anonymous.get("/api/tasks/").await.expect(200);
    }
    let retry_after = expect_throttled(&anonymous.get("/api/tasks/").await);
    assert!((58..=60).contains(&retry_after), "{retry_after}");
    // The address's anonymous WebSocket requests share the bucket.
    let mut ws = server.ws().await;
    assert_eq!(ws.call("tasks", "list", json!({})).await.status, 429);
    // A signed-in user on the same address is counted as that user, not as the address.
    server
        .client_as("alice-token")
        .get("/api/tasks/")
        .await
        .expect(200);
    assert_eq!(
        server
            .ws_as("alice-token")
            .await
            .call("tasks", "list", json!({}))
            .await
            .status,
        200
    );
    // Another address has a bucket of its own (the whole of 127.0.0.0/8 is loopback on Linux).
    #[cfg(target_os = "linux")]
    {
        let other = reqwest::Client::builder()
            .local_address("127.0.0.2".parse::<std::net::IpAddr>().ok())
            .build()
            .expect("an HTTP client on 127.0.0.2");
        for _ in 0..3 {
            let response = other
                .get(server.url("/api/tasks/"))
                .send()
                .await
                .expect("GET");
            assert_eq!(response.status(), 200);
        }
        let response = other
            .get(server.url("/api/tasks/"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 429, "127.0.0.2 has spent its own burst");
    }
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = TestServer::start(models::builder().configure(|c| {
        c.address_requests_per_second = PER_MINUTE;
        c.address_request_burst = 2.0;
    }))
    .await;
    let client = server.client();
    let get = |forwarded: &str| {
        client
            .get("/api/tasks/")
            .header("x-forwarded-for", forwarded)
            .send()
    };
    get("198.51.100.1").await.expect(200);
    get("198.51.100.2").await.expect(200);
    // Each claims another address, but all come from 127.0.0.1, which is not a trusted proxy.
    for forwarded in ["198.51.100.3", "198.51.100.3, 198.51.100.4", "::1"] {
        expect_throttled(&get(forwarded).await);
    }
    expect_throttled(&client.get("/api/tasks/").await);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled() {
    let server = TestServer::start(
        models::builder()
            .trusted_proxies(["127.0.0.1/32".parse().expect("a network")])
            .configure(|c| {
                c.address_requests_per_second = PER_MINUTE;
                c.address_request_burst = 2.0;
            }),
    )
    .await;
    let client = server.client();
    let get = |forwarded: &'static str| {
        client
            .get("/api/tasks/")
            .header("x-forwarded-for", forwarded)
            .send()
    };
    get("198.51.100.1").await.expect(200);
    get("198.51.100.1").await.expect(200);
    expect_throttled(&get("198.51.100.1").await);
    // What the client wrote itself, left of what the proxy appended, changes nothing.
    expect_throttled(&get("203.0.113.9, 198.51.100.1").await);
    // Another client behind the proxy, and the proxy's own requests, are counted apart.
    get("198.51.100.2").await.expect(200);
    get("2001:db8::1").await.expect(200);
    client.get("/api/tasks/").await.expect(200);
    // An IPv6 client counts by its /64.
    get("2001:db8::2").await.expect(200);
    expect_throttled(&get("2001:db8::3").await);
    // The proxy's anonymous WebSocket requests count as the client it forwards.
    let mut ws = rest_live::testing::WsClient::connect_with(
        &server.ws_url(),
        &[("x-forwarded-for", "198.51.100.1")],
    )
    .await
    .expect("the handshake is accepted");
    assert_eq!(ws.call("tasks", "list", json!({})).await.status, 429);
}

#[tokio::test]
async fn a_flood_of_addresses_does_not_free_a_throttled_client() {
    // A client cycling through addresses fills the map of buckets up to its cap; the buckets
    // dropped to make room are the fullest, never the one of a client that is being throttled.
    let server = TestServer::start(
        models::builder()
            .trusted_proxies(["127.0.0.1/32".parse().expect("a network")])
            .configure(|c| {
                c.address_requests_per_second = PER_MINUTE;
                c.address_request_burst = 2.0;
                c.max_throttle_buckets = 16;
            }),
    )
    .await;
    let client = server.client();
    let get = |forwarded: String| {
        client
            .get("/api/tasks/")
            .header("x-forwarded-for", &forwarded)
            .send()
    };
    get("198.51.100.1".into()).await.expect(200);
    get("198.51.100.1".into()).await.expect(200);
    expect_throttled(&get("198.51.100.1".into()).await);
    for i in 0..300u32 {
        let address = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        get(address).await.expect(200);
    }
    expect_throttled(&get("198.51.100.1".into()).await);
}

#[tokio::test]
async fn with_throttling_off_nothing_is_throttled() {
    // Every limit as low as it goes, then `throttle(false)`.
    let server = TestServer::start(
        users()
            .allow_anonymous(true)
            .configure(|c| {
                c.requests_per_second = PER_MINUTE;
                c.request_burst = 1.0;
                c.principal_requests_per_second = PER_MINUTE;
                c.principal_request_burst = 1.0;
                c.address_requests_per_second = PER_MINUTE;
                c.address_request_burst = 1.0;
            })
            .throttle(false),
    )
    .await;
    let alice = server.client_as("alice-token");
    let anonymous = server.client();
    let mut alice_ws = server.ws_as("alice-token").await;
    let mut anonymous_ws = server.ws().await;
    for _ in 0..20 {
        alice.get("/api/tasks/").await.expect(200);
        anonymous.get("/api/tasks/").await.expect(200);
        alice_ws.call("tasks", "list", json!({})).await.expect(200);
        anonymous_ws
            .call("tasks", "list", json!({}))
            .await
            .expect(200);
    }
    let responses = concurrent_gets(&alice, 300).await;
    assert!(responses.iter().all(|r| r.status == 200));
    // The API's description no longer mentions 429.
    let document = server.get("/api/openapi.json").await.expect(200);
    assert!(!document.to_string().contains("\"429\""));
}

#[tokio::test]
async fn the_api_description_documents_429_by_default() {
    let server = TestServer::start(models::builder()).await;
    let document: Value = server.get("/api/openapi.json").await.expect(200);
    let list = &document["paths"]["/api/tasks/"]["get"]["responses"]["429"];
    assert_eq!(list, &json!({"$ref": "#/components/responses/Throttled"}));
    let throttled = &document["components"]["responses"]["Throttled"];
    assert_eq!(
        throttled["headers"]["Retry-After"]["schema"],
        json!({"type": "integer", "minimum": 1}),
        "{throttled}"
    );
}

#[tokio::test]
async fn the_example_throttles_by_default_and_not_with_rest_live_throttle_off() {
    let on_db = TestDatabase::sqlite();
    let off_db = TestDatabase::sqlite();
    let (on, off) = tokio::join!(
        ExampleProcess::start_quiet("throttled", &on_db.url, &[], &["--demo-users"]),
        ExampleProcess::start_quiet(
            "unthrottled",
            &off_db.url,
            &[("REST_LIVE_THROTTLE", "off")],
            &["--demo-users"],
        ),
    );
    let alice = |process: &ExampleProcess| {
        HttpClient::new(format!("http://{}", process.addr())).with_token(Some("alice-token"))
    };

    // The reproduction: 600 concurrent GETs by one signed-in user.
    let responses = concurrent_gets(&alice(&on), 600).await;
    let throttled: Vec<&HttpResponse> = responses.iter().filter(|r| r.status != 200).collect();
    assert!(!throttled.is_empty(), "600 concurrent GETs, none throttled");
    for response in throttled {
        expect_throttled(response);
    }
    let bob = HttpClient::new(format!("http://{}", on.addr())).with_token(Some("bob-token"));
    bob.get("/api/tasks/").await.expect(200);

    let responses = concurrent_gets(&alice(&off), 600).await;
    let refused: Vec<&HttpResponse> = responses.iter().filter(|r| r.status != 200).collect();
    assert!(refused.is_empty(), "REST_LIVE_THROTTLE=off: {}", refused[0]);
}
