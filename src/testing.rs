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
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{App, AppBuilder};

/// The framework's own rules (which event a subscription gets for a change, what an audience
/// sees) and tables, for differential tests that compute from the change log what each
/// subscriber must have received. Not a stable API: it follows the runtime.
pub mod internals {
    pub use rest_live_core::__internals::*;
}

/// How long a helper waits for an expected frame before failing the test.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A rest-live application served on 127.0.0.1 (port 0) over a fresh database: a SQLite file in
/// a temporary directory, or, when `REST_LIVE_TEST_DATABASE=postgres`, a new PostgreSQL
/// database (see [`TestDatabase`]).
pub struct TestServer {
    pub app: App,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
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
    std::env::var("REST_LIVE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

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
    /// (no server, or no PostgreSQL support in this build): tests that need it print the reason
    /// and skip.
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

    /// Serves `routes` on 127.0.0.1, port 0, until [`TestServer::stop`] or drop.
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
        let task = tokio::spawn(async move {
            ::warp::serve(routes)
                .incoming(listener)
                .graceful(async {
                    let _ = rx.await;
                })
                .run()
                .await;
        });
        Self {
            app,
            addr,
            shutdown: Some(tx),
            task: Some(task),
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
        let auth = format!("Bearer {token}");
        WsClient::connect_with(&self.ws_url(), &[("authorization", auth.as_str())])
            .await
            .unwrap_or_else(|status| panic!("handshake refused with HTTP {status}"))
    }

    /// `ws://127.0.0.1:<port>/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.app.config().ws_path)
    }

    /// An HTTP client (keep-alive) for this server.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
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

/// A WebSocket test client. Replies and events are told apart by the event's top-level `seq`;
/// frames of the other kind that arrive while waiting are kept for later calls.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    replies: VecDeque<Value>,
    events: VecDeque<Value>,
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
    /// Connects to `url` (`ws://…`).
    ///
    /// # Panics
    /// If the handshake fails.
    pub async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        Self {
            socket,
            replies: VecDeque::new(),
            events: VecDeque::new(),
        }
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
        Self {
            socket,
            replies: VecDeque::new(),
            events: VecDeque::new(),
        }
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
            Ok((socket, _)) => Ok(Self {
                socket,
                replies: VecDeque::new(),
                events: VecDeque::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("websocket handshake: {e}"),
        }
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
        loop {
            let next = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
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
        loop {
            let next = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
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
