//! Graceful shutdown (docs/protocol.md §6, "Shutdown"): on SIGTERM the example process stops accepting,
//! finishes the requests in flight, sends 1001 to every WebSocket and exits 0 within its grace
//! period, dropping what is left when the grace runs out. `TestServer::stop` does the same in
//! process.
//!
//! The example must be built first: `cargo build --example todo`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::ExampleProcess;
use rest_live::testing::{Closed, RECV_TIMEOUT, TestServer, WsClient};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `POST /api/lists/` whose body is sent in two halves. It asks for `100 Continue`, which the
/// server sends once the handler reads the body: then the request is in flight for sure.
struct HalfSentRequest {
    stream: TcpStream,
    rest: &'static [u8],
}

const BODY: &str = r#"{"name": "finished after SIGTERM"}"#;

impl HalfSentRequest {
    async fn start(addr: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /api/lists/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            BODY.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send head");
        let continued = read_until(&mut stream, b"\r\n\r\n").await;
        assert!(
            continued.starts_with("HTTP/1.1 100"),
            "100 Continue first: {continued}"
        );
        let (first, rest) = BODY.as_bytes().split_at(BODY.len() / 2);
        stream.write_all(first).await.expect("send half the body");
        Self { stream, rest }
    }

    /// Sends the rest of the body; returns everything the server sends until it closes.
    async fn finish(mut self) -> String {
        self.stream
            .write_all(self.rest)
            .await
            .expect("send the rest");
        let mut response = Vec::new();
        tokio::time::timeout(RECV_TIMEOUT, self.stream.read_to_end(&mut response))
            .await
            .expect("the reply, then the close")
            .expect("read the reply");
        String::from_utf8_lossy(&response).into_owned()
    }
}

async fn read_until(stream: &mut TcpStream, end: &[u8]) -> String {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(end) {
        let n = tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut byte))
            .await
            .expect("the server answers")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&bytes));
        bytes.push(byte[0]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// SIGTERM, as a service manager sends it.
fn terminate(process: &ExampleProcess) {
    let sent = Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status()
        .expect("run kill -TERM");
    assert!(sent.success(), "kill -TERM {}: {sent}", process.pid());
}

/// Waits until connecting to `addr` is refused (the listener is closed).
async fn refused(addr: &str) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        match TcpStream::connect(addr).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(error) => panic!("connect failed otherwise: {error}"),
            Ok(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting {RECV_TIMEOUT:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn example(grace: Duration) -> (ExampleProcess, tempfile::TempDir) {
    let (dir, database_url) = common::process::temp_sqlite();
    let grace = grace.as_millis().to_string();
    let env = [("REST_LIVE_SHUTDOWN_GRACE_MS", grace.as_str())];
    let process = ExampleProcess::start_quiet("shutdown", &database_url, &env, &[]).await;
    (process, dir)
}

/// A WebSocket subscribed to the tasks of a new list.
async fn subscribed(process: &ExampleProcess) -> WsClient {
    let mut ws = WsClient::connect(&process.ws_url()).await;
    let list = ws
        .call("lists", "create", json!({"data": {"name": "watched"}}))
        .await
        .expect(201);
    ws.call(
        "tasks",
        "subscribe",
        json!({"group": {"list_id": list["id"]}}),
    )
    .await
    .expect(201);
    ws
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_requests_in_flight_finish_websockets_get_1001_and_the_process_exits_0() {
    let grace = Duration::from_secs(30);
    let (mut process, _dir) = example(grace).await;
    let addr = process.addr().to_owned();
    let mut ws = subscribed(&process).await;
    let request = HalfSentRequest::start(&addr).await;

    terminate(&process);
    let signalled = Instant::now();

    assert_eq!(ws.recv_close().await, Closed::Code(1001), "going away");
    refused(&addr).await;
    // The request in flight still gets its normal reply, and then the connection closes.
    let response = request.finish().await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("finished after SIGTERM"), "{response}");

    let status = process.wait().await;
    assert!(status.success(), "exit status 0: {status}");
    assert!(
        signalled.elapsed() < grace,
        "exited after {:?}, past its grace of {grace:?}",
        signalled.elapsed()
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_does_not_hold_the_process_past_its_grace() {
    let grace = Duration::from_millis(500);
    let (mut process, _dir) = example(grace).await;
    let addr = process.addr().to_owned();
    let mut ws = subscribed(&process).await;
    // A request that never completes, and a WebSocket client that never reads.
    let mut request = HalfSentRequest::start(&addr).await;

    terminate(&process);
    let signalled = Instant::now();
    let status = process.wait().await;
    assert!(status.success(), "exit status 0: {status}");
    // Exiting took the grace and little more (the bound is loose: only a process that waited for
    // the client, which never finishes, would miss it).
    assert!(
        signalled.elapsed() < grace + Duration::from_secs(15),
        "exited after {:?}",
        signalled.elapsed()
    );
    // The unfinished request was dropped, not answered.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(RECV_TIMEOUT, request.stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "dropped: {read:?} {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(ws.recv_close().await, Closed::Code(1001));
}

#[tokio::test]
async fn test_server_stop_closes_websockets_with_1001_and_ends() {
    let server = TestServer::start(common::models::builder()).await;
    let mut ws = server.ws().await;
    let reply = ws.call("lists", "list", json!({})).await;
    assert_eq!(reply.status, 200, "{reply}");
    let addr = server.addr;
    let stopped = tokio::spawn(server.stop());
    assert_eq!(ws.recv_close().await, Closed::Code(1001));
    tokio::time::timeout(RECV_TIMEOUT, stopped)
        .await
        .expect("stop returns once every connection is closed")
        .expect("stop");
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "no longer listening");
}

#[tokio::test]
async fn test_server_stop_drops_what_is_left_when_the_grace_ends() {
    let builder =
        common::models::builder().configure(|c| c.shutdown_grace = Duration::from_millis(300));
    let server = TestServer::start(builder).await;
    let mut request = HalfSentRequest::start(&server.addr.to_string()).await;
    tokio::time::timeout(RECV_TIMEOUT, server.stop())
        .await
        .expect("stop returns once the grace has passed");
    // The task serving the unfinished request is gone too (the runtime goes on here), and with
    // it the connection: closed, unanswered.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(RECV_TIMEOUT, request.stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "dropped: {read:?} {:?}",
        String::from_utf8_lossy(&rest)
    );
}
