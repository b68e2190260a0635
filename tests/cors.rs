//! CORS on the HTTP API, end to end: a page of another origin (a front-end on another port) asks
//! with a real preflight (`OPTIONS` with `Origin`, `Access-Control-Request-Method` and
//! `Access-Control-Request-Headers`, as a browser sends it), then makes the request. Allowed are
//! exactly the `allowed_origins`, the list that also admits that page's WebSockets and
//! cookie-authenticated writes; `null` and every other origin get no CORS header. Off by
//! default: then nothing of today's answers changes (`OPTIONS` is 405).

mod common;

use common::models;
use rest_live::testing::{HttpResponse, Method, TestServer, WsClient};
use rest_live::{AppBuilder, Cors};
use serde_json::json;

/// The front-end's origin: a development server on another port.
const FRONT_END: &str = "http://localhost:5173";

/// The to-do app with sign-in, the front-end's origin listed and CORS on with `cors`.
fn with_cors(cors: Cors) -> AppBuilder {
    models::builder_with_users(models::demo_tokens())
        .allowed_origins([FRONT_END])
        .cors(cors)
}

/// A browser's preflight for `method` with `headers` from `origin`.
async fn preflight(
    server: &TestServer,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> HttpResponse {
    server
        .request(Method::OPTIONS, path)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
}

/// Every `Access-Control-*` header of a response.
fn cors_headers(response: &HttpResponse) -> Vec<String> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| format!("{name}: {value:?}"))
        .collect()
}

/// The comma-separated items of a header, lower case.
fn items(response: &HttpResponse, name: &str) -> Vec<String> {
    response
        .headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().expect("ASCII").split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

#[track_caller]
fn assert_allows(response: &HttpResponse, origin: &str) {
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(origin),
        "{response} {:?}",
        response.headers
    );
    assert!(
        items(response, "vary").contains(&"origin".to_owned()),
        "{response} {:?}",
        response.headers
    );
}

#[track_caller]
fn assert_no_cors(response: &HttpResponse) {
    assert_eq!(cors_headers(response), Vec::<String>::new(), "{response}");
}

/// The preflight is answered 204 on every API route (before authentication: a browser sends no
/// credential with it) with the origin, methods, headers, max age and credentials; the request
/// that follows, and its errors, carry the origin and expose the API's own headers.
#[tokio::test]
async fn a_preflight_from_the_front_end_is_answered_and_its_requests_carry_the_origin() {
    let server = TestServer::start(with_cors(Cors::new().allow_credentials(true))).await;
    let list = server
        .post("/api/lists/", json!({"name": "shared"}))
        .bearer("alice-token")
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");

    for (path, method) in [
        ("/api/lists/", "POST"),
        (&format!("/api/lists/{list}/") as &str, "PATCH"),
        ("/api/tasks/?list_id=1", "GET"),
        (&format!("/api/lists/{list}/archive_done/"), "POST"),
        ("/api/jobs/0/", "DELETE"),
        ("/api/nothing-here/", "PUT"),
    ] {
        let response = preflight(
            &server,
            path,
            FRONT_END,
            method,
            "authorization,content-type",
        )
        .await;
        assert_eq!(response.status, 204, "{path}: {response}");
        assert_eq!(response.text, "", "{path}");
        assert_allows(&response, FRONT_END);
        assert_eq!(
            response.header("access-control-allow-credentials"),
            Some("true")
        );
        let methods = items(&response, "access-control-allow-methods");
        for expected in ["get", "head", "post", "put", "patch", "delete"] {
            assert!(methods.contains(&expected.to_owned()), "{methods:?}");
        }
        let headers = items(&response, "access-control-allow-headers");
        assert!(headers.contains(&"authorization".to_owned()), "{headers:?}");
        assert!(headers.contains(&"content-type".to_owned()), "{headers:?}");
        assert_eq!(response.header("access-control-max-age"), Some("600"));
    }

    // The request itself.
    let created = server
        .post("/api/tasks/", json!({"text": "milk", "list_id": list}))
        .bearer("alice-token")
        .header("origin", FRONT_END)
        .await;
    assert_eq!(created.status, 201, "{created}");
    assert_allows(&created, FRONT_END);
    assert_eq!(
        created.header("access-control-allow-credentials"),
        Some("true")
    );
    let exposed = items(&created, "access-control-expose-headers");
    for header in ["location", "retry-after"] {
        assert!(exposed.contains(&header.to_owned()), "{exposed:?}");
    }
    // Errors too: a page can read why it failed.
    let invalid = server
        .post("/api/tasks/", json!({"list_id": list}))
        .bearer("alice-token")
        .header("origin", FRONT_END)
        .await;
    invalid.expect_field_errors(&["text"]);
    assert_allows(&invalid, FRONT_END);
    let missing = server
        .get("/api/lists/999999/")
        .bearer("alice-token")
        .header("origin", FRONT_END)
        .await;
    missing.expect_error(404);
    assert_allows(&missing, FRONT_END);
    let anonymous = server.get("/api/lists/").header("origin", FRONT_END).await;
    anonymous.expect_error(401);
    assert_allows(&anonymous, FRONT_END);
    // An OPTIONS that is no preflight is the API's, as without CORS.
    let options = server
        .request(Method::OPTIONS, "/api/lists/")
        .bearer("alice-token")
        .header("origin", FRONT_END)
        .await;
    options.expect_error(405);
    assert_allows(&options, FRONT_END);

    // The OpenAPI document is part of the API.
    let document = server
        .get("/api/openapi.json")
        .header("origin", FRONT_END)
        .await;
    assert_eq!(document.status, 200, "{document}");
    assert_allows(&document, FRONT_END);
}

/// A throttled request's 429 carries the origin, and lets the page read `Retry-After`.
#[tokio::test]
async fn a_throttled_answer_lets_the_page_read_retry_after() {
    let server = TestServer::start(with_cors(Cors::new()).configure(|c| {
        c.principal_requests_per_second = 0.01;
        c.principal_request_burst = 1.0;
    }))
    .await;
    let get = || {
        server
            .get("/api/lists/")
            .bearer("alice-token")
            .header("origin", FRONT_END)
            .send()
    };
    get().await.expect(200);
    let throttled = get().await;
    throttled.expect_error(429);
    assert!(throttled.header("retry-after").is_some(), "{throttled}");
    assert_allows(&throttled, FRONT_END);
    assert!(items(&throttled, "access-control-expose-headers").contains(&"retry-after".to_owned()));
}

/// Any other origin, `null`, another port, scheme or host, gets 403 for its preflight and no CORS
/// header on anything: the browser keeps the answers from its page.
#[tokio::test]
async fn other_origins_and_null_get_no_cors_headers() {
    let server = TestServer::start(with_cors(Cors::new().allow_credentials(true))).await;
    for origin in [
        "http://evil.example",
        "null",
        "http://localhost:5174",
        "https://localhost:5173",
        "http://localhost:5173.evil.example",
    ] {
        let response = preflight(&server, "/api/lists/", origin, "POST", "content-type").await;
        assert_eq!(
            response.expect_error(403),
            "Origin not allowed.",
            "{origin}"
        );
        assert_no_cors(&response);

        let response = server
            .get("/api/lists/")
            .bearer("alice-token")
            .header("origin", origin)
            .await;
        assert_eq!(response.status, 200, "{origin}: {response}");
        assert_no_cors(&response);
        // Caches must still know the answer depends on the origin.
        assert!(items(&response, "vary").contains(&"origin".to_owned()));
    }
    // Origins compare by scheme, host and port, as for WebSockets; the answer names the origin
    // exactly as the browser sent it.
    let response = preflight(&server, "/api/lists/", "http://LOCALHOST:5173", "GET", "").await;
    assert_eq!(response.status, 204, "{response}");
    assert_allows(&response, "http://LOCALHOST:5173");
}

/// Without `.cors(…)` nothing changes, even with the origin listed: a preflight is the API's
/// `OPTIONS` (405, or 401 where a credential is needed) and no answer has a CORS header.
#[tokio::test]
async fn without_the_setting_there_is_no_cors() {
    let open = TestServer::start(models::builder().allowed_origins([FRONT_END])).await;
    let response = preflight(&open, "/api/lists/", FRONT_END, "POST", "content-type").await;
    response.expect_error(405);
    assert_eq!(response.header("allow"), Some("GET, POST"));
    assert_no_cors(&response);
    let response = open.get("/api/lists/").header("origin", FRONT_END).await;
    assert_eq!(response.status, 200, "{response}");
    assert_no_cors(&response);
    assert_eq!(response.header("vary"), None);

    let signed_in = TestServer::start(
        models::builder_with_users(models::demo_tokens()).allowed_origins([FRONT_END]),
    )
    .await;
    let response = preflight(&signed_in, "/api/lists/", FRONT_END, "POST", "content-type").await;
    response.expect_error(401);
    assert_no_cors(&response);
}

/// Credentials are allowed only when asked for: without, neither the preflight nor the answer
/// says `Access-Control-Allow-Credentials`. The methods and headers allowed are the configured
/// ones.
#[tokio::test]
async fn credentials_methods_and_headers_are_the_configured_ones() {
    let server = TestServer::start(with_cors(
        Cors::new()
            .allow_methods(["get", "POST"])
            .allow_headers(["Authorization", "X-Request-Id"])
            .max_age(std::time::Duration::from_secs(60)),
    ))
    .await;
    let response = preflight(&server, "/api/lists/", FRONT_END, "POST", "x-request-id").await;
    assert_eq!(response.status, 204, "{response}");
    assert_allows(&response, FRONT_END);
    assert_eq!(response.header("access-control-allow-credentials"), None);
    assert_eq!(
        items(&response, "access-control-allow-methods"),
        ["get", "post"]
    );
    assert_eq!(
        items(&response, "access-control-allow-headers"),
        ["authorization", "x-request-id"]
    );
    assert_eq!(response.header("access-control-max-age"), Some("60"));
    let response = server
        .get("/api/lists/")
        .bearer("alice-token")
        .header("origin", FRONT_END)
        .await;
    assert_allows(&response, FRONT_END);
    assert_eq!(response.header("access-control-allow-credentials"), None);
}

/// The origin CORS lets in is let in everywhere else: its page's WebSocket (with a token or the
/// cookie) opens, and its cookie-authenticated writes pass the CSRF check. Another origin is
/// still refused on both.
#[tokio::test]
async fn the_front_ends_sockets_and_cookie_writes_are_allowed_too() {
    let server = TestServer::start(with_cors(Cors::new().allow_credentials(true))).await;
    let with_token = format!("{}?token=alice-token", server.ws_url());
    let cookie = ("cookie", "rest_live_token=alice-token");
    let mut ws = WsClient::connect_with(&with_token, &[("origin", FRONT_END)])
        .await
        .expect("the front-end's socket (token) opens");
    assert_eq!(ws.call("lists", "list", json!({})).await.status, 200);
    let mut ws = WsClient::connect_with(&server.ws_url(), &[cookie, ("origin", FRONT_END)])
        .await
        .expect("the front-end's socket (cookie) opens");
    assert_eq!(ws.call("lists", "list", json!({})).await.status, 200);
    let refused = WsClient::connect_with(&with_token, &[("origin", "http://evil.example")]).await;
    assert_eq!(refused.err(), Some(403));

    let write = |origin: &'static str| {
        server
            .post("/api/lists/", json!({"name": "from the page"}))
            .header("cookie", "rest_live_token=alice-token")
            .header("origin", origin)
            .send()
    };
    let created = write(FRONT_END).await;
    assert_eq!(created.status, 201, "{created}");
    assert_allows(&created, FRONT_END);
    assert_eq!(
        write("http://evil.example").await.expect_error(403),
        "Origin not allowed."
    );
}

/// The example turns CORS on, with credentials, for exactly the origins of
/// `REST_LIVE_ALLOWED_ORIGINS`.
#[tokio::test]
async fn the_example_allows_cors_from_its_allowed_origins() {
    let (_dir, database_url) = common::process::temp_sqlite();
    let example = common::process::ExampleProcess::start_quiet(
        "cors",
        &database_url,
        &[(
            "REST_LIVE_ALLOWED_ORIGINS",
            "http://localhost:5173, https://app.example",
        )],
        &["--demo-users"],
    )
    .await;
    let http = rest_live::testing::HttpClient::new(example.url(""));
    for (origin, status) in [
        ("http://localhost:5173", 204),
        ("https://app.example", 204),
        ("http://localhost:3000", 403),
    ] {
        let response = http
            .request(Method::OPTIONS, "/api/tasks/")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .await;
        assert_eq!(response.status, status, "{origin}: {response}");
        if status == 204 {
            assert_allows(&response, origin);
            assert_eq!(
                response.header("access-control-allow-credentials"),
                Some("true")
            );
        } else {
            assert_no_cors(&response);
        }
    }

    // Without the variable, no CORS.
    let (_dir, database_url) = common::process::temp_sqlite();
    let plain =
        common::process::ExampleProcess::start_quiet("no-cors", &database_url, &[], &[]).await;
    let response = rest_live::testing::HttpClient::new(plain.url(""))
        .request(Method::OPTIONS, "/api/tasks/")
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .await;
    response.expect_error(405);
    assert_no_cors(&response);
}
