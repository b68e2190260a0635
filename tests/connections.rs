//! The server's connection rules (docs/protocol.md §6, "Slow and idle peers"), through raw TCP
//! sockets: a connection that does not send complete request headers in time is closed (also
//! between keep-alive requests), and the open connections, HTTP and WebSocket together, are
//! capped; beyond the cap new ones are closed at once, and admitted again once some close.

mod common;

use std::time::Duration;

use rest_live::testing::{RECV_TIMEOUT, TestServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header timeout of these tests: short, so that they are quick. Nothing below measures it.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

async fn server_with(configure: impl FnOnce(&mut rest_live::Config)) -> TestServer {
    TestServer::start(common::models::builder().configure(configure)).await
}

const LIST_REQUEST: &str = "GET /api/lists/ HTTP/1.1\r\nHost: test\r\n\r\n";

/// Reads one HTTP response (its head and a `Content-Length` body); `None` if the server closes
/// the connection first.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response and no close within {RECV_TIMEOUT:?}"),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        match tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the body did not arrive within {RECV_TIMEOUT:?}"),
        }
    }
    let body = String::from_utf8_lossy(&bytes[head_end..head_end + length]).into_owned();
    Some((status, body))
}

/// Whether the server closes `stream` (end of stream or reset) before sending anything.
async fn closed_without_reply(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    match tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut chunk)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the connection was neither answered nor closed within {RECV_TIMEOUT:?}"),
    }
}

/// A keep-alive HTTP connection that has been answered once.
async fn answered_connection(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        still_served(&mut stream).await,
        "a connection within the cap is served"
    );
    stream
}

/// Sends a `list` request on `stream`; true if it is answered 200.
async fn still_served(stream: &mut TcpStream) -> bool {
    if stream.write_all(LIST_REQUEST.as_bytes()).await.is_err() {
        return false;
    }
    matches!(read_response(stream).await, Some((200, _)))
}

/// A new connection: `Some` (answered) if the server admits it, `None` if it closes it unanswered.
async fn try_connection(server: &TestServer) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(server.addr).await.ok()?;
    still_served(&mut stream).await.then_some(stream)
}

/// Retries new connections until one is admitted (the server notices closed ones
/// asynchronously).
async fn admitted_again(server: &TestServer) -> TcpStream {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        if let Some(stream) = try_connection(server).await {
            return stream;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new connection admitted within {RECV_TIMEOUT:?} after some closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connection_without_complete_request_headers_in_time_is_closed() {
    let server = server_with(|c| c.header_timeout = HEADER_TIMEOUT).await;
    // What a client sends before it stalls.
    let cases: [(&str, &str); 4] = [
        ("nothing", ""),
        ("half a request line", "GET /api/li"),
        (
            "the request line and half the headers",
            "GET /api/lists/ HTTP/1.1\r\nHost: test\r\nAccept: appl",
        ),
        (
            "all headers but the blank line that ends them",
            "GET /api/lists/ HTTP/1.1\r\nHost: test\r\n",
        ),
    ];
    for (case, sent) in cases {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(sent.as_bytes()).await.expect("send");
        assert!(
            closed_without_reply(&mut stream).await,
            "{case}: the server answered instead of closing"
        );
    }
    // A complete request is served as usual.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        still_served(&mut stream).await,
        "a complete request is served"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = server_with(|c| c.header_timeout = HEADER_TIMEOUT).await;
    let mut stream = answered_connection(&server).await;
    // A second request on the same connection is served too: it is kept alive...
    assert!(still_served(&mut stream).await, "keep-alive: served again");
    // ...but not forever once the client stops sending.
    assert!(
        closed_without_reply(&mut stream).await,
        "an idle keep-alive connection is closed"
    );
}

#[tokio::test]
async fn the_header_timeout_does_not_close_a_websocket() {
    let server = server_with(|c| c.header_timeout = HEADER_TIMEOUT).await;
    let mut ws = server.ws().await;
    // Idle for several header timeouts: the upgraded connection is not HTTP any more.
    ws.expect_silence(HEADER_TIMEOUT * 4).await;
    let reply = ws.call("lists", "list", json!({})).await;
    assert_eq!(reply.status, 200, "{reply}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_admitted_again_once_some_close() {
    let server = server_with(|c| c.max_connections = Some(2)).await;

    // The cap is reached by a WebSocket and an HTTP connection: the WebSocket counts.
    let mut ws = server.ws().await;
    let mut http = answered_connection(&server).await;
    let mut refused = TcpStream::connect(server.addr).await.expect("connect");
    let _ = refused.write_all(LIST_REQUEST.as_bytes()).await;
    assert!(
        closed_without_reply(&mut refused).await,
        "a third connection is closed unanswered"
    );

    // The two inside the cap keep working.
    assert!(
        still_served(&mut http).await,
        "the HTTP connection is still served"
    );
    let reply = ws.call("lists", "list", json!({})).await;
    assert_eq!(reply.status, 200, "{reply}");
    assert!(
        try_connection(&server).await.is_none(),
        "still full: refused again"
    );

    // The WebSocket closes: its slot is free again.
    drop(ws);
    let mut third = admitted_again(&server).await;
    assert!(
        try_connection(&server).await.is_none(),
        "full again with the new connection"
    );

    // An HTTP connection closes: its slot is free again too.
    drop(http);
    let mut fourth = admitted_again(&server).await;
    assert!(still_served(&mut third).await);
    assert!(still_served(&mut fourth).await);
}

#[tokio::test]
async fn a_refused_connection_does_not_stop_the_server() {
    let server = server_with(|c| c.max_connections = Some(1)).await;
    let mut held = answered_connection(&server).await;
    // Many refusals in a row (one log line, not one each); the server goes on.
    for _ in 0..50 {
        assert!(try_connection(&server).await.is_none(), "beyond the cap");
    }
    assert!(still_served(&mut held).await);
    drop(held);
    let mut again = admitted_again(&server).await;
    assert!(still_served(&mut again).await);
}
