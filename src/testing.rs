//! Test helpers for applications built on rest-live (and for rest-live's own tests): a real server
//! on 127.0.0.1 port 0 with a throw-away SQLite database, a WebSocket client that tells replies
//! from events, and an HTTP client. Enable with the `testing` feature.
//!
//! ```no_run
//! # async fn demo(builder: rest_live::AppBuilder) {
//! use rest_live::testing::TestServer;
//! use serde_json::json;
//!
//! let server = TestServer::start(builder).await;
//! let mut ws = server.ws().await;
//! let reply = ws.request(json!({"stream": "tasks", "payload": {"action": "list", "request_id": 1}})).await;
//! assert_eq!(reply["payload"]["response_status"], 200);
//!
//! // The same, stating only the request and the answer: over the socket...
//! let reply = ws.call("tasks", "list", json!({})).await;
//! assert_eq!(reply.status, 200);
//! // ...and over HTTP, as a principal with a bearer token.
//! let page = server.get("/api/tasks/").bearer("alice-token").await.expect(200);
//! assert_eq!(page["count"], reply.data["count"]);
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{App, AppBuilder};

/// The framework's own rules (which event a subscription gets for a change, what an audience
/// sees) and tables, for differential tests that compute from the change log what each
/// subscriber must have received. Not a stable API: it follows the runtime, and it is hidden
/// from the documentation.
#[doc(hidden)]
pub mod internals {
    pub use rest_live_core::__internals::*;
}

/// The HTTP method type the HTTP helpers take (`Method::GET`, …).
pub use reqwest::Method;

/// How long a helper waits for an expected frame before failing the test.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A rest-live application served on 127.0.0.1 (port 0) over a fresh database: a SQLite file in
/// a temporary directory, or, when `REST_LIVE_TEST_DATABASE=postgres`, a new PostgreSQL
/// database (see [`TestDatabase`]).
pub struct TestServer {
    /// The app being served (to write through `App::transaction`, revoke, inspect).
    pub app: App,
    /// Where it listens: 127.0.0.1 and the port the system gave.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    client: HttpClient,
    // Dropped last: the database lives until the server is gone.
    _database: TestDatabase,
}

/// A database for one test: a SQLite file in a temporary directory, or a PostgreSQL database
/// created for the test and dropped after it.
pub struct TestDatabase {
    /// The URL to give the app builder.
    pub url: String,
    kind: DatabaseKind,
}

enum DatabaseKind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres {
        admin: String,
        name: String,
    },
}

/// The PostgreSQL server tests use: `REST_LIVE_TEST_POSTGRES_URL`, by default the local one with
/// trust authentication.
pub fn postgres_admin_url() -> String {
    std::env::var("REST_LIVE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// [`postgres_admin_url`] when `REST_LIVE_TEST_POSTGRES_URL` is not set.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether `REST_LIVE_TEST_DATABASE=postgres` asks for every test server to run on PostgreSQL.
pub fn postgres_requested() -> bool {
    std::env::var("REST_LIVE_TEST_DATABASE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

impl TestDatabase {
    /// A fresh SQLite file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            kind: DatabaseKind::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database on [`postgres_admin_url`]'s server, or why there is none
    /// (no server, or no PostgreSQL support in this build). A test that cannot run without one
    /// takes [`TestDatabase::require_postgres`] instead.
    pub async fn postgres() -> Result<Self, String> {
        #[cfg(feature = "postgres")]
        {
            use crate::__private::diesel::{self, Connection, RunQueryDsl, pg::PgConnection};
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let admin = postgres_admin_url();
            let name = format!(
                "rest_live_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let (admin_c, name_c) = (admin.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                let mut conn = PgConnection::establish(&admin_c)
                    .map_err(|e| format!("PostgreSQL at {admin_c} is not reachable: {e}"))?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name_c} WITH (FORCE)"))
                    .execute(&mut conn)
                    .map_err(|e| e.to_string())?;
                diesel::sql_query(format!("CREATE DATABASE {name_c}"))
                    .execute(&mut conn)
                    .map_err(|e| format!("cannot create a test database: {e}"))?;
                Ok::<_, String>(())
            })
            .await
            .map_err(|e| e.to_string())??;
            let base = admin.split('?').next().unwrap_or(&admin);
            let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
            Ok(Self {
                url: format!("{base}/{name}"),
                kind: DatabaseKind::Postgres { admin, name },
            })
        }
        #[cfg(not(feature = "postgres"))]
        {
            Err("this build has no PostgreSQL support (feature `postgres`)".to_owned())
        }
    }

    /// A fresh PostgreSQL database, for a test that needs one. Mark such a test
    /// `#[ignore = "needs PostgreSQL: …"]`, so that `cargo test` shows it as ignored, with the
    /// reason, where no server is configured; run it with `-- --ignored`.
    ///
    /// # Panics
    /// If there is no PostgreSQL: a test run on purpose must not pass without it.
    ///
    /// ```no_run
    /// # use rest_live::testing::TestDatabase;
    /// #[tokio::test]
    /// #[ignore = "needs PostgreSQL: set REST_LIVE_TEST_POSTGRES_URL, run with --ignored"]
    /// async fn two_processes_share_one_database() {
    ///     let database = TestDatabase::require_postgres().await;
    ///     // … start two servers on database.url …
    /// }
    /// ```
    pub async fn require_postgres() -> Self {
        match Self::postgres().await {
            Ok(database) => database,
            Err(reason) => panic!(
                "this test needs PostgreSQL, but {reason}. Start a server, or set \
                 REST_LIVE_TEST_POSTGRES_URL to one (default {})",
                DEFAULT_POSTGRES_URL
            ),
        }
    }

    /// The database every [`TestServer`] uses: PostgreSQL if `REST_LIVE_TEST_DATABASE=postgres`,
    /// else SQLite.
    ///
    /// # Panics
    /// If PostgreSQL was asked for and cannot be had.
    pub async fn for_tests() -> Self {
        if postgres_requested() {
            match Self::postgres().await {
                Ok(db) => db,
                Err(reason) => panic!("REST_LIVE_TEST_DATABASE=postgres, but {reason}"),
            }
        } else {
            Self::sqlite()
        }
    }

    /// Whether the app runs on PostgreSQL (`REST_LIVE_TEST_DATABASE=postgres`).
    pub fn is_postgres(&self) -> bool {
        !matches!(self.kind, DatabaseKind::Sqlite(_))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let DatabaseKind::Postgres { admin, name } = &self.kind {
            use crate::__private::diesel::{self, Connection, RunQueryDsl, pg::PgConnection};
            // Best effort: CI also removes leftovers before it starts.
            if let Ok(mut conn) = PgConnection::establish(admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

impl TestServer {
    /// Builds the app on a new temporary database and serves it.
    ///
    /// # Panics
    /// If the app does not start: this is a test helper.
    pub async fn start(builder: AppBuilder) -> Self {
        Self::start_on(builder, TestDatabase::for_tests().await).await
    }

    /// Builds the app on `database` and serves it.
    ///
    /// # Panics
    /// If the app does not start.
    pub async fn start_on(builder: AppBuilder, database: TestDatabase) -> Self {
        let app = builder
            .database_url(database.url.clone())
            .build()
            .await
            .expect("rest-live app starts");
        Self::serve(app, database).await
    }

    /// Like [`TestServer::start`], serving the app's routes behind extra routes of the
    /// application: `extra(app.clone()).or(routes(app))` (e.g. a `POST /logout` filter).
    ///
    /// # Panics
    /// If the app does not start.
    pub async fn start_with_routes<X, F, R>(builder: AppBuilder, extra: X) -> Self
    where
        X: FnOnce(App) -> F,
        F: ::warp::Filter<Extract = (R,), Error = ::warp::Rejection>
            + Clone
            + Send
            + Sync
            + 'static,
        R: ::warp::Reply + Send + 'static,
    {
        let database = TestDatabase::for_tests().await;
        let app = builder
            .database_url(database.url.clone())
            .build()
            .await
            .expect("rest-live app starts");
        let routes = extra(app.clone()).or(crate::routes(app.clone()));
        Self::serve_routes(app, database, routes).await
    }

    async fn serve(app: App, database: TestDatabase) -> Self {
        let routes = crate::routes(app.clone());
        Self::serve_routes(app, database, routes).await
    }

    /// Serves `routes` with [`crate::serve`] on 127.0.0.1, port 0, until [`TestServer::stop`] or
    /// drop.
    async fn serve_routes<F, R>(app: App, database: TestDatabase, routes: F) -> Self
    where
        F: ::warp::Filter<Extract = (R,), Error = ::warp::Rejection>
            + Clone
            + Send
            + Sync
            + 'static,
        R: ::warp::Reply + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let server = crate::serve(app.clone(), routes, listener).with_shutdown(async {
            let _ = rx.await;
        });
        let task = tokio::spawn(server.into_future());
        Self {
            app,
            addr,
            shutdown: Some(tx),
            task: Some(task),
            client: HttpClient::new(format!("http://{addr}")),
            _database: database,
        }
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A connected WebSocket client on the app's WebSocket path.
    pub async fn ws(&self) -> WsClient {
        WsClient::connect(&self.ws_url()).await
    }

    /// A WebSocket client logged in with a bearer token.
    pub async fn ws_as(&self, token: &str) -> WsClient {
        WsClient::connect_as(&self.ws_url(), token).await
    }

    /// A WebSocket handshake with this bearer token, or with no credential for `None`;
    /// `Err(status)` when the server refuses the upgrade (401 for a missing or unknown token).
    pub async fn try_ws_as(&self, token: Option<&str>) -> Result<WsClient, u16> {
        match token {
            Some(token) => {
                let auth = format!("Bearer {token}");
                WsClient::connect_with(&self.ws_url(), &[("authorization", auth.as_str())]).await
            }
            None => WsClient::connect_with(&self.ws_url(), &[]).await,
        }
    }

    /// `ws://127.0.0.1:<port>/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.app.config().ws_path)
    }

    /// An HTTP client (keep-alive) for this server.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// An anonymous [`HttpClient`] of this server (keep-alive; redirects are not followed).
    pub fn client(&self) -> HttpClient {
        self.client.clone()
    }

    /// An [`HttpClient`] of this server that sends `Authorization: Bearer <token>`.
    pub fn client_as(&self, token: &str) -> HttpClient {
        self.client.with_token(Some(token))
    }

    /// `method path`, anonymous: add a body, headers or a token, then `.await` it.
    ///
    /// ```no_run
    /// # async fn demo(server: rest_live::testing::TestServer) {
    /// use rest_live::testing::Method;
    /// let response = server.request(Method::POST, "/api/tasks/")
    ///     .body(Some("text/plain"), "{}")
    ///     .await;
    /// assert_eq!(response.expect_error(415), "Unsupported media type: send application/json.");
    /// # }
    /// ```
    pub fn request(&self, method: Method, path: &str) -> HttpRequest {
        self.client.request(method, path)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> HttpRequest {
        self.client.get(path)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: Value) -> HttpRequest {
        self.client.post(path, body)
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: Value) -> HttpRequest {
        self.client.put(path, body)
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: Value) -> HttpRequest {
        self.client.patch(path, body)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> HttpRequest {
        self.client.delete(path)
    }

    /// A custom action (docs/protocol.md §5) in one line: `POST /api/<stream>/<pk>/<name>/`
    /// (or `/api/<stream>/<name>/` without a pk) with `args` as the body.
    ///
    /// ```no_run
    /// # async fn demo(server: rest_live::testing::TestServer) {
    /// use serde_json::json;
    /// let task = server.action("tasks", Some(7), "complete", json!({})).await.expect(200);
    /// let cleared = server.action("tasks", None::<i64>, "clear_done", json!({"list_id": 1})).await;
    /// # }
    /// ```
    pub fn action(
        &self,
        stream: &str,
        pk: Option<impl fmt::Display>,
        name: &str,
        args: Value,
    ) -> HttpRequest {
        self.client.action(stream, pk, name, args)
    }

    /// One request in a single call: `method path` with an optional JSON body and extra headers
    /// (e.g. `("authorization", "Bearer alice-token")`); `.await` it.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> HttpRequest {
        self.client.call(method, path, body, headers)
    }

    /// Shuts the server down gracefully, as on SIGTERM: it stops accepting, finishes the requests
    /// in flight, closes every WebSocket with 1001, and is gone within the app's
    /// `shutdown_grace`. Dropping the server instead closes every connection at once.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP client of one server, anonymous or as one principal (a bearer token on every
/// request). It keeps connections alive and does not follow redirects, so that a `303 See Other`
/// is seen as such. [`TestServer::client`] and [`TestServer::client_as`] make one for a test
/// server; [`HttpClient::new`] for any other (a child process, say).
///
/// ```no_run
/// # async fn demo(server: rest_live::testing::TestServer) {
/// use serde_json::json;
/// let alice = server.client_as("alice-token");
/// let list = alice.post("/api/lists/", json!({"name": "home"})).await.expect(201);
/// let path = format!("/api/lists/{}/", list["id"]);
/// assert_eq!(server.client_as("bob-token").get(&path).await.expect_error(404), "Not found");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HttpClient {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl HttpClient {
    /// An anonymous client of the server at `base` (`http://127.0.0.1:<port>`, no trailing
    /// slash): paths are appended to it.
    ///
    /// # Panics
    /// If the HTTP client cannot be built.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            token: None,
        }
    }

    /// The same client (sharing its connections) as the principal of `token`, or anonymous for
    /// `None`.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// `<base><path>`
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `method path`, with this client's token if it has one: add a body or headers, then
    /// `.await` it (or call [`HttpRequest::send`]).
    pub fn request(&self, method: Method, path: &str) -> HttpRequest {
        let request = HttpRequest {
            client: self.client.clone(),
            url: self.url(path),
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        };
        match &self.token {
            Some(token) => request.bearer(token),
            None => request,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> HttpRequest {
        self.request(Method::GET, path)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: Value) -> HttpRequest {
        self.request(Method::POST, path).json(&body)
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: Value) -> HttpRequest {
        self.request(Method::PUT, path).json(&body)
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: Value) -> HttpRequest {
        self.request(Method::PATCH, path).json(&body)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> HttpRequest {
        self.request(Method::DELETE, path)
    }

    /// A custom action: `POST /api/<stream>/<pk>/<name>/` (or `/api/<stream>/<name>/`), with
    /// `args` as the body (see [`TestServer::action`]).
    pub fn action(
        &self,
        stream: &str,
        pk: Option<impl fmt::Display>,
        name: &str,
        args: Value,
    ) -> HttpRequest {
        let path = match pk {
            Some(pk) => format!("/api/{stream}/{pk}/{name}/"),
            None => format!("/api/{stream}/{name}/"),
        };
        self.post(&path, args)
    }

    /// One request in a single call: `method path` with an optional JSON body and extra
    /// headers; `.await` it.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> HttpRequest {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
    }
}

/// One HTTP request being built by [`HttpClient`] or [`TestServer`]: `.await` it for its
/// [`HttpResponse`]. Nothing is sent until then.
#[must_use = "a request does nothing until it is awaited"]
pub struct HttpRequest {
    client: reqwest::Client,
    method: Method,
    url: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<reqwest::Body>,
}

impl HttpRequest {
    /// Adds a header (set again, the last value wins).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sends `Authorization: Bearer <token>` for `Some(token)`; nothing for `None` (anonymous).
    pub fn bearer_opt(self, token: Option<&str>) -> Self {
        match token {
            Some(token) => self.bearer(token),
            None => self,
        }
    }

    /// A JSON body, with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.body(Some("application/json"), body.to_string())
    }

    /// Exactly this body, with this content type or none (for malformed input).
    pub fn body(mut self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Self {
        if let Some(content_type) = content_type {
            self = self.header("content-type", content_type);
        }
        self.body = Some(body.into());
        self
    }

    /// Sends the request and reads the whole response.
    ///
    /// # Panics
    /// If the request cannot be sent or the response read (the panic names the request).
    pub async fn send(self) -> HttpResponse {
        let Self {
            client,
            method,
            url,
            path,
            headers,
            body,
        } = self;
        let mut request = client.request(method.clone(), url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        HttpResponse {
            method,
            path,
            status,
            headers,
            text,
        }
    }
}

impl IntoFuture for HttpRequest {
    type Output = HttpResponse;
    type IntoFuture = Pin<Box<dyn Future<Output = HttpResponse> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// What an HTTP request got back: status, headers and the body as text. The assertion helpers
/// know rest-live's error shape, `{"errors": [...]}`.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The request's method, for messages.
    pub method: Method,
    /// The request's path, for messages.
    pub path: String,
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as received.
    pub text: String,
}

impl HttpResponse {
    /// The body as JSON, `null` when it is empty.
    ///
    /// # Panics
    /// If the body is not JSON (the panic shows it).
    pub fn json(&self) -> Value {
        if self.text.is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "{} {}: the body is not JSON ({e}): {:?}",
                self.method, self.path, self.text
            )
        })
    }

    /// A header's value, if the response has it.
    ///
    /// # Panics
    /// If the value is not visible ASCII.
    pub fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header value"))
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.header(reqwest::header::LOCATION)
    }

    /// Asserts the status and a JSON body with a JSON content type; returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(
            self.header(reqwest::header::CONTENT_TYPE),
            Some("application/json"),
            "{self}"
        );
        self.json()
    }

    /// Asserts an error `status` with the body `{"errors": ["<one message>"]}`; returns the
    /// message.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> String {
        let body = self.expect(status);
        let errors = body["errors"].as_array().expect("an errors list");
        assert_eq!(errors.len(), 1, "{body}");
        assert_eq!(body.as_object().map(Map::len), Some(1), "{body}");
        let message = errors[0]
            .as_str()
            .unwrap_or_else(|| panic!("a string error: {body}"));
        assert!(!message.is_empty(), "{body}");
        message.to_owned()
    }

    /// Asserts 400 with the body `{"errors": [{"<field>": ["<message>", ...]}]}` naming exactly
    /// these fields, each with non-empty messages; returns that object.
    #[track_caller]
    pub fn expect_field_errors(&self, fields: &[&str]) -> Value {
        let body = self.expect(400);
        assert_eq!(body.as_object().map(Map::len), Some(1), "{body}");
        let errors = body["errors"].as_array().expect("an errors list");
        assert_eq!(errors.len(), 1, "{body}");
        let object = errors[0].as_object().unwrap_or_else(|| panic!("{body}"));
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = fields.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{body}");
        for (field, messages) in object {
            let messages = messages
                .as_array()
                .unwrap_or_else(|| panic!("{field}: {body}"));
            assert!(!messages.is_empty(), "{body}");
            assert!(
                messages
                    .iter()
                    .all(|m| m.as_str().is_some_and(|s| !s.is_empty())),
                "{body}"
            );
        }
        errors[0].clone()
    }
}

/// `GET /path: 200 {"count": 0, ...}`
impl fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} {}",
            self.method, self.path, self.status, self.text
        )
    }
}

/// A WebSocket test client. Replies and events are told apart by the event's `payload.seq`;
/// frames of the other kind that arrive while waiting are kept for later calls.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    replies: VecDeque<Value>,
    events: VecDeque<Value>,
    /// The number in the next request_id [`call`](Self::call) makes up.
    next_request: u64,
}

/// `{"stream": stream, "payload": {"action": action, <args>}}`: a request frame, for
/// [`WsClient::request`] and [`WsClient::send`]. `args` is a JSON object (or `{}`); no
/// `request_id` is added (see [`WsClient::call`] for that).
///
/// # Panics
/// If `args` is not an object.
pub fn frame(stream: &str, action: &str, args: Value) -> Value {
    let mut payload = Map::new();
    payload.insert("action".into(), Value::from(action));
    payload.extend(object_of(args, "frame"));
    json!({ "stream": stream, "payload": payload })
}

fn object_of(args: Value, what: &str) -> Map<String, Value> {
    match args {
        Value::Object(map) => map,
        other => panic!("{what}: the arguments must be a JSON object, not {other}"),
    }
}

/// A reply to [`WsClient::call`]: the frame sent, the frame received, and the reply's status,
/// `data` and `errors` taken out of its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct WsReply {
    /// The request frame that was sent.
    pub request: Value,
    /// The reply frame as received.
    pub frame: Value,
    /// `payload.response_status`.
    pub status: u16,
    /// `payload.data`.
    pub data: Value,
    /// `payload.errors`.
    pub errors: Value,
}

impl WsReply {
    /// The reply's payload.
    pub fn payload(&self) -> &Value {
        &self.frame["payload"]
    }

    /// The request_id the request carried.
    pub fn request_id(&self) -> &Value {
        &self.request["payload"]["request_id"]
    }

    /// The reply in the shape an HTTP response has: `data` on success (2xx), `{"errors": [...]}`
    /// otherwise, so that one assertion can hold for both transports.
    pub fn body(&self) -> Value {
        if (200..300).contains(&self.status) {
            self.data.clone()
        } else {
            json!({ "errors": self.errors })
        }
    }

    /// Asserts the status; returns `data`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self}");
        self.data.clone()
    }

    /// Asserts docs/protocol.md's reply envelope: the reply echoes the request's stream, action and
    /// request_id; a success has `errors: []`, a failure `data: null`.
    #[track_caller]
    pub fn assert_envelope(&self) {
        let (sent, got) = (&self.request["payload"], self.payload());
        assert_eq!(self.frame["stream"], self.request["stream"], "{self}");
        assert_eq!(got["action"], sent["action"], "{self}");
        assert_eq!(got["request_id"], sent["request_id"], "{self}");
        if (200..300).contains(&self.status) {
            assert_eq!(self.errors, json!([]), "{self}");
        } else {
            assert_eq!(self.data, Value::Null, "{self}");
        }
    }
}

/// `<request> -> <reply>`
impl fmt::Display for WsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.request, self.frame)
    }
}

/// How a socket ended, as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The stream ended without a close frame.
    Ended,
}

/// One thing read from the socket by [`WsClient::recv_any`].
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A reply frame (no `seq`).
    Reply(Value),
    /// An event frame (with `seq`).
    Event(Value),
    /// The socket ended.
    Closed(Closed),
}

impl WsClient {
    fn over(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            socket,
            replies: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 1,
        }
    }

    /// Connects to `url` (`ws://…`).
    ///
    /// # Panics
    /// If the handshake fails.
    pub async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        Self::over(socket)
    }

    /// Connects over a TCP socket whose kernel receive buffer is about `bytes` (the kernel rounds
    /// it): a client that stops reading backs up after little data, which makes slow-reader
    /// tests fast and their volume predictable.
    pub async fn connect_with_receive_buffer(url: &str, bytes: u32) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let request = url.into_client_request().expect("a ws:// URL");
        let host = request.uri().host().expect("a host").to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the host")
            .next()
            .expect("an address");
        let tcp = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .expect("a TCP socket");
        tcp.set_recv_buffer_size(bytes)
            .expect("set the receive buffer");
        let stream = tcp.connect(addr).await.expect("connect");
        let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket handshake");
        Self::over(socket)
    }

    /// Connects with extra handshake headers; `Err(status)` when the server refuses the upgrade.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let mut request = url.into_client_request().expect("a ws:// URL");
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(Self::over(socket)),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("websocket handshake: {e}"),
        }
    }

    /// Connects to `url` as the principal of `token` (`Authorization: Bearer <token>`).
    ///
    /// # Panics
    /// If the server refuses the handshake.
    pub async fn connect_as(url: &str, token: &str) -> Self {
        let auth = format!("Bearer {token}");
        Self::connect_with(url, &[("authorization", auth.as_str())])
            .await
            .unwrap_or_else(|status| panic!("handshake refused with HTTP {status}"))
    }

    /// How many frames (replies and events) have arrived and not been taken yet, after reading
    /// whatever the server has sent within a short moment.
    pub async fn pending_count(&mut self) -> usize {
        while self.read_one(Duration::from_millis(50)).await.is_some() {}
        self.replies.len() + self.events.len()
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends a raw text frame (for malformed input).
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .expect("websocket send");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::binary(bytes))
            .await
            .expect("websocket send");
    }

    /// Sends `frame` and returns the next reply (events arriving meanwhile are kept).
    pub async fn request(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.recv_reply().await
    }

    /// Sends `{"stream": stream, "payload": {"action": action, "request_id": …, <args>}}` and
    /// returns its reply (events arriving meanwhile are kept). The request_id is the one in
    /// `args` if it has one (to tag a subscription's events, say), else a fresh one of this
    /// client (`"r1"`, `"r2"`, …).
    ///
    /// ```no_run
    /// # async fn demo(mut ws: rest_live::testing::WsClient) {
    /// use serde_json::json;
    /// let reply = ws.call("tasks", "subscribe", json!({"request_id": "home", "group": {"list_id": 1}})).await;
    /// assert_eq!(reply.status, 201, "{reply}");
    /// let event = ws.next_event().await;
    /// assert_eq!(event["payload"]["request_id"], "home");
    /// # }
    /// ```
    ///
    /// # Panics
    /// If `args` is not an object, or no reply with a `response_status` arrives within
    /// [`RECV_TIMEOUT`].
    pub async fn call(&mut self, stream: &str, action: &str, args: Value) -> WsReply {
        let mut args = object_of(args, "call");
        let request_id = args.remove("request_id").unwrap_or_else(|| {
            let id = format!("r{}", self.next_request);
            self.next_request += 1;
            Value::from(id)
        });
        let mut payload = Map::new();
        payload.insert("action".into(), Value::from(action));
        payload.insert("request_id".into(), request_id);
        payload.extend(args);
        self.call_frame(json!({ "stream": stream, "payload": payload }))
            .await
    }

    /// Like [`call`](Self::call), for a request frame made by hand (one without a request_id,
    /// say: see [`frame`]): sends it as it is and returns its reply.
    ///
    /// # Panics
    /// If no reply with a `response_status` arrives within [`RECV_TIMEOUT`].
    pub async fn call_frame(&mut self, request: Value) -> WsReply {
        let frame = self.request(request.clone()).await;
        let p = &frame["payload"];
        let status = p["response_status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("a reply with a response_status: {request} -> {frame}"));
        WsReply {
            data: p["data"].clone(),
            errors: p["errors"].clone(),
            status,
            request,
            frame,
        }
    }

    /// The next event frame: [`recv_event`](Self::recv_event) by the name that reads best next
    /// to [`call`](Self::call).
    ///
    /// # Panics
    /// If none arrives within [`RECV_TIMEOUT`].
    pub async fn next_event(&mut self) -> Value {
        self.recv_event().await
    }

    /// The next reply frame.
    ///
    /// # Panics
    /// If none arrives within [`RECV_TIMEOUT`].
    pub async fn recv_reply(&mut self) -> Value {
        loop {
            if let Some(reply) = self.replies.pop_front() {
                return reply;
            }
            self.read_one(RECV_TIMEOUT).await.expect("a reply frame");
        }
    }

    /// The next event frame.
    ///
    /// # Panics
    /// If none arrives within [`RECV_TIMEOUT`].
    pub async fn recv_event(&mut self) -> Value {
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            self.read_one(RECV_TIMEOUT).await.expect("an event frame");
        }
    }

    /// Asserts that no frame (reply or event) arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(frame) = self.replies.front().or(self.events.front()) {
            panic!("expected silence, but {frame} is pending");
        }
        if let Some(frame) = self.read_one(wait).await {
            panic!("expected silence, got {frame}");
        }
    }

    /// Reads until the server closes the socket, returning how it closed.
    pub async fn recv_close(&mut self) -> Closed {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the server closes the socket");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(Closed::Ended, |f| Closed::Code(u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Closed::Ended,
            }
        }
    }

    /// The next frame of either kind, or how the socket ended; `None` if nothing arrives within
    /// `wait`. Frames kept by earlier calls come first (replies, then events). Unlike the other
    /// helpers it does not panic when the server closes the socket.
    pub async fn recv_any(&mut self, wait: Duration) -> Option<Received> {
        if let Some(reply) = self.replies.pop_front() {
            return Some(Received::Reply(reply));
        }
        if let Some(event) = self.events.pop_front() {
            return Some(Received::Event(event));
        }
        self.read_frame(wait).await
    }

    /// Like [`request`](Self::request), but a socket that is closed or fails before the reply is
    /// reported instead of panicking (events arriving meanwhile are kept).
    ///
    /// # Panics
    /// If the socket stays open and no reply arrives within [`RECV_TIMEOUT`].
    pub async fn try_request(&mut self, frame: Value) -> Result<Value, Closed> {
        if self
            .socket
            .send(Message::text(frame.to_string()))
            .await
            .is_err()
        {
            return Err(Closed::Ended);
        }
        loop {
            if let Some(reply) = self.replies.pop_front() {
                return Ok(reply);
            }
            match self.read_frame(RECV_TIMEOUT).await.expect("a reply frame") {
                Received::Reply(reply) => return Ok(reply),
                Received::Event(event) => self.events.push_back(event),
                Received::Closed(closed) => return Err(closed),
            }
        }
    }

    /// The events received so far, without waiting for more.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Reads one frame without queueing it; `None` on timeout.
    async fn read_frame(&mut self, wait: Duration) -> Option<Received> {
        // One deadline for the call: pings and pongs do not extend it.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(_)) | None => return Some(Received::Closed(Closed::Ended)),
            };
            let text = match message {
                Message::Text(t) => t,
                Message::Close(frame) => {
                    let closed = frame.map_or(Closed::Ended, |f| Closed::Code(u16::from(f.code)));
                    return Some(Received::Closed(closed));
                }
                Message::Binary(_) => panic!("the server sent a binary frame"),
                _ => continue,
            };
            let frame: Value = serde_json::from_str(&text).expect("the server sends JSON");
            return Some(if frame["payload"].get("seq").is_some() {
                Received::Event(frame)
            } else {
                Received::Reply(frame)
            });
        }
    }

    /// Reads one frame into the reply or event queue; `None` on timeout.
    async fn read_one(&mut self, wait: Duration) -> Option<&Value> {
        // One deadline for the call: pings and pongs do not extend it.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => panic!("websocket closed by the server"),
            };
            let text = match message {
                Message::Text(t) => t,
                Message::Close(frame) => panic!("websocket closed by the server: {frame:?}"),
                Message::Binary(_) => panic!("the server sent a binary frame"),
                _ => continue,
            };
            let frame: Value = serde_json::from_str(&text).expect("the server sends JSON");
            let queue = if frame["payload"].get("seq").is_some() {
                &mut self.events
            } else {
                &mut self.replies
            };
            queue.push_back(frame);
            return queue.back();
        }
    }
}
