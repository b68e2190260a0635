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

/// How long a helper waits for an expected frame before failing the test.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A rest-live application served on 127.0.0.1 (port 0) over a fresh SQLite file.
pub struct TestServer {
    pub app: App,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    // Dropped last: the database file lives until the server is gone.
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Builds the app on a new temporary database and serves it.
    ///
    /// # Panics
    /// If the app does not start: this is a test helper.
    pub async fn start(builder: AppBuilder) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let app = builder
            .database_url(url)
            .build()
            .await
            .expect("rest-live app starts");
        Self::serve(app, dir).await
    }

    async fn serve(app: App, dir: tempfile::TempDir) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let routes = crate::warp::routes(app.clone());
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
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A connected WebSocket client on the app's WebSocket path.
    pub async fn ws(&self) -> WsClient {
        WsClient::connect(&format!("ws://{}{}", self.addr, self.app.config().ws_path)).await
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
