//! docs/protocol.md §6, the connection rules, through a real server and real sockets: origins (and
//! CSRF), handshakes, bad frames, started frames that never end, idle peers, and the byte-bounded
//! outgoing queue with its backpressure. Where a WebSocket library would refuse to send the bad
//! bytes, a raw TCP client ([`raw`]) sends them.

mod common;

use std::time::Duration;

use common::models::{self, Task};
use rest_live::AppBuilder;
use rest_live::testing::{Closed, Received, TestServer, WsClient};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket client over a raw TCP socket: it sends frames exactly as given (masked or not,
/// any opcode, any bits) and reads the server's frames as they are.
mod raw {
    use super::*;

    pub struct RawWs {
        pub socket: TcpStream,
        buffer: Vec<u8>,
    }

    /// A server frame: opcode and payload.
    #[derive(Debug)]
    pub struct ServerFrame {
        pub opcode: u8,
        pub payload: Vec<u8>,
    }

    impl ServerFrame {
        /// The close code of a close frame.
        pub fn close_code(&self) -> Option<u16> {
            (self.opcode == 0x8 && self.payload.len() >= 2)
                .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
        }
    }

    /// The response head to `request` on a fresh connection, and the connection.
    pub async fn exchange(addr: std::net::SocketAddr, request: &str) -> (String, RawWs) {
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("send");
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
                .await
                .expect("a response head within 10 s")
                .expect("read");
            assert!(n > 0, "closed before a response head");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        (head, RawWs { socket, buffer })
    }

    pub fn handshake_request(path: &str, headers: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
        )
    }

    impl RawWs {
        /// Opens a WebSocket at `path` (asserting the upgrade).
        pub async fn connect(addr: std::net::SocketAddr, path: &str) -> Self {
            let (head, ws) = exchange(addr, &handshake_request(path, "")).await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            ws
        }

        /// Sends one frame: `first` is the first header byte (FIN, RSV bits, opcode).
        pub async fn send_frame(&mut self, first: u8, masked: bool, payload: &[u8]) {
            let bytes = frame_bytes(first, masked, payload);
            self.socket.write_all(&bytes).await.expect("send a frame");
        }

        /// Sends raw bytes.
        #[allow(dead_code)]
        pub async fn send_bytes(&mut self, bytes: &[u8]) {
            self.socket.write_all(bytes).await.expect("send bytes");
        }

        /// The next server frame; `None` at the end of the stream.
        pub async fn next_frame(&mut self, wait: Duration) -> Option<ServerFrame> {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                if let Some((frame, used)) = parse(&self.buffer) {
                    self.buffer.drain(..used);
                    return Some(frame);
                }
                let mut chunk = [0u8; 8192];
                let n = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                    .await
                    .expect("a frame or the end of the stream in time")
                    .unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.buffer.extend_from_slice(&chunk[..n]);
            }
        }

        /// Reads frames until a close frame, returning its code (panics if the stream ends
        /// without one).
        pub async fn expect_close(&mut self, wait: Duration) -> u16 {
            loop {
                match self.next_frame(wait).await {
                    Some(frame) if frame.opcode == 0x8 => {
                        return frame.close_code().expect("a close code");
                    }
                    Some(_) => continue,
                    None => panic!("the stream ended without a close frame"),
                }
            }
        }
    }

    /// A client frame (masked with a fixed key when `masked`).
    pub fn frame_bytes(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// One unmasked server frame from the front of `buffer`, and its length.
    fn parse(buffer: &[u8]) -> Option<(ServerFrame, usize)> {
        if buffer.len() < 2 {
            return None;
        }
        let opcode = buffer[0] & 0x0F;
        let (len, header) = match buffer[1] & 0x7F {
            126 if buffer.len() >= 4 => (u16::from_be_bytes([buffer[2], buffer[3]]) as usize, 4),
            127 if buffer.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&buffer[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if buffer.len() < header + len {
            return None;
        }
        let payload = buffer[header..header + len].to_vec();
        Some((ServerFrame { opcode, payload }, header + len))
    }
}

use raw::RawWs;

const TEXT: u8 = 0x81;
const WAIT: Duration = Duration::from_secs(10);

async fn server_with(builder: AppBuilder) -> TestServer {
    TestServer::start(builder).await
}

/// The server still serves a new client.
async fn still_serves(server: &TestServer) {
    let mut ws = server.ws().await;
    let reply = ws.call("lists", "list", json!({})).await;
    assert_eq!(reply.status, 200, "{reply}");
}

// ---------------------------------------------------------------------------------------------
// Origins: cross-site WebSocket hijacking and CSRF
// ---------------------------------------------------------------------------------------------

/// With authentication configured and no origin listed, only the server's own origin (and no
/// Origin at all) may open a socket, whatever the credential; `null` never may. An app without
/// authentication has no credential to hijack, and takes any origin.
#[tokio::test]
async fn only_the_servers_own_origin_may_open_an_authenticated_socket() {
    let server = server_with(models::builder_with_users(models::demo_tokens())).await;
    let own = format!("http://{}", server.addr);
    let own_https = format!("https://{}", server.addr);
    let url = server.ws_url();
    let with_token = format!("{url}?token=alice-token");
    let cookie = ("cookie", "rest_live_token=alice-token");
    let bearer = ("authorization", "Bearer alice-token");
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Result<(), u16>);
    let cases: Vec<Case> = vec![
        (
            "cookie, foreign",
            &url,
            vec![cookie, ("origin", "http://evil.example")],
            Err(403),
        ),
        (
            "?token, foreign",
            &with_token,
            vec![("origin", "http://evil.example")],
            Err(403),
        ),
        (
            "bearer, foreign",
            &url,
            vec![bearer, ("origin", "http://evil.example")],
            Err(403),
        ),
        (
            "cookie, null",
            &url,
            vec![cookie, ("origin", "null")],
            Err(403),
        ),
        (
            "?token, null",
            &with_token,
            vec![("origin", "null")],
            Err(403),
        ),
        // Another port of the same host is another origin.
        (
            "cookie, other port",
            &url,
            vec![cookie, ("origin", "http://127.0.0.1:1")],
            Err(403),
        ),
        (
            "no credential, foreign",
            &url,
            vec![("origin", "http://evil.example")],
            Err(403),
        ),
        (
            "cookie, own",
            &url,
            vec![cookie, ("origin", own.as_str())],
            Ok(()),
        ),
        (
            "cookie, own over https",
            &url,
            vec![cookie, ("origin", own_https.as_str())],
            Ok(()),
        ),
        (
            "?token, own",
            &with_token,
            vec![("origin", own.as_str())],
            Ok(()),
        ),
        ("cookie, no Origin", &url, vec![cookie], Ok(())),
        ("?token, no Origin", &with_token, vec![], Ok(())),
        // The own origin still needs a credential.
        (
            "no credential, own",
            &url,
            vec![("origin", own.as_str())],
            Err(401),
        ),
    ];
    for (name, url, headers, expected) in cases {
        let result = WsClient::connect_with(url, &headers).await.map(|mut ws| {
            // Keep the socket only to prove it works below.
            tokio::spawn(async move {
                let reply = ws.call("lists", "list", json!({})).await;
                assert_eq!(reply.status, 200, "{reply}");
            })
        });
        match (result, expected) {
            (Ok(check), Ok(())) => check.await.expect("the socket serves"),
            (Err(status), Err(want)) => assert_eq!(status, want, "{name}"),
            (Ok(_), Err(want)) => panic!("{name}: upgraded, expected {want}"),
            (Err(status), Ok(())) => panic!("{name}: refused with {status}"),
        }
    }

    // Without authentication, any origin (there is no credential to steal).
    let open = server_with(models::builder()).await;
    for origin in ["http://evil.example", "null"] {
        let ws = WsClient::connect_with(&open.ws_url(), &[("origin", origin)]).await;
        assert!(ws.is_ok(), "{origin}: {:?}", ws.err());
    }
}

/// Listed origins are allowed besides the server's own; the comparison is by scheme, host and
/// port, never by prefix.
#[tokio::test]
async fn listed_origins_are_allowed_besides_the_own() {
    let server = server_with(
        models::builder_with_users(models::demo_tokens())
            .allowed_origins(["https://app.example", "http://localhost:3000"]),
    )
    .await;
    let url = format!("{}?token=alice-token", server.ws_url());
    let own = format!("http://{}", server.addr);
    for (origin, expected) in [
        ("https://app.example", Ok(())),
        ("https://APP.example:443", Ok(())),
        ("http://localhost:3000", Ok(())),
        (own.as_str(), Ok(())),
        ("http://app.example", Err(403)),
        ("https://app.example.evil.example", Err(403)),
        ("http://localhost:3001", Err(403)),
        ("null", Err(403)),
    ] {
        let result = WsClient::connect_with(&url, &[("origin", origin)])
            .await
            .map(|_| ());
        assert_eq!(result, expected, "{origin}");
    }
}

/// A write authenticated by the cookie (which a browser sends whatever page asks) must come from
/// an allowed origin: from another one it is 403 and writes nothing. Reads, and writes with a
/// credential a foreign page cannot attach (a bearer token), are not affected.
#[tokio::test]
async fn cookie_authenticated_writes_from_a_foreign_origin_are_refused() {
    let server = server_with(models::builder_with_users(models::demo_tokens())).await;
    let own = format!("http://{}", server.addr);
    let cookie = "rest_live_token=alice-token";
    let count = || async {
        server
            .get("/api/lists/")
            .bearer("alice-token")
            .send()
            .await
            .expect(200)["count"]
            .as_i64()
            .expect("count")
    };
    let before = count().await;
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = server.post("/api/lists/", json!({"name": "csrf"}));
        for (name, value) in headers {
            request = request.header(name, &value);
        }
        request.send()
    };
    let evil = "http://evil.example".to_owned();
    let refused = [
        vec![("cookie", cookie.to_owned()), ("origin", evil.clone())],
        vec![("cookie", cookie.to_owned()), ("origin", "null".to_owned())],
        // No Origin, but the browser says the request is cross-site.
        vec![
            ("cookie", cookie.to_owned()),
            ("sec-fetch-site", "cross-site".to_owned()),
        ],
    ];
    for headers in refused {
        let context = format!("{headers:?}");
        let response = post(headers).await;
        assert_eq!(
            response.expect_error(403),
            "Origin not allowed.",
            "{context}"
        );
    }
    assert_eq!(count().await, before, "nothing was written");

    // A delete is a write too.
    let list = post(vec![("authorization", "Bearer alice-token".to_owned())])
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");
    let response = server
        .delete(&format!("/api/lists/{list}/"))
        .header("cookie", cookie)
        .header("origin", &evil)
        .send()
        .await;
    response.expect_error(403);

    let allowed = [
        vec![("cookie", cookie.to_owned()), ("origin", own.clone())],
        vec![("cookie", cookie.to_owned())],
        vec![
            ("authorization", "Bearer alice-token".to_owned()),
            ("origin", evil.clone()),
        ],
    ];
    for headers in allowed {
        let context = format!("{headers:?}");
        let response = post(headers).await;
        assert_eq!(response.status, 201, "{context}: {response}");
    }
    assert_eq!(count().await, before + 4);
    // A read with the cookie from anywhere is answered (what a foreign page may read of it is
    // CORS's business).
    let response = server
        .get("/api/lists/")
        .header("cookie", cookie)
        .header("origin", &evil)
        .send()
        .await;
    assert_eq!(response.status, 200, "{response}");
}

// ---------------------------------------------------------------------------------------------
// Handshakes
// ---------------------------------------------------------------------------------------------

/// A key that is not 16 bytes of base64 is 400; another version is 426 naming 13; nothing is
/// upgraded, and the server keeps serving.
#[tokio::test]
async fn malformed_handshakes_are_refused_before_the_upgrade() {
    let server = common::server().await;
    let request = |version: &str, key: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    let cases = [
        ("13", "not base64 at all!", "400"),
        ("13", "", "400"),
        // 15 and 17 bytes.
        ("13", "AAAAAAAAAAAAAAAAAAAA", "400"),
        ("13", "AAAAAAAAAAAAAAAAAAAAAAA=", "400"),
        // Non-canonical padding bits.
        ("13", "dGhlIHNhbXBsZSBub25jZR==", "400"),
        ("8", "dGhlIHNhbXBsZSBub25jZQ==", "426"),
        ("14", "dGhlIHNhbXBsZSBub25jZQ==", "426"),
        ("13, 8", "dGhlIHNhbXBsZSBub25jZQ==", "426"),
        ("13", "dGhlIHNhbXBsZSBub25jZQ==", "101"),
    ];
    for (version, key, status) in cases {
        let (head, _) = raw::exchange(server.addr, &request(version, key)).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "version {version:?}, key {key:?}: expected {status}, got {head}"
        );
        let lower = head.to_ascii_lowercase();
        if status == "426" {
            assert!(
                lower.contains("\r\nsec-websocket-version: 13\r\n"),
                "{head}"
            );
        }
        if status != "101" {
            assert!(!lower.contains("sec-websocket-accept"), "{head}");
        }
    }
    still_serves(&server).await;
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// Each bad frame gets its close code (1007 for text that is not UTF-8, 1002 for a protocol
/// violation, 1009 for a frame over the limit) rather than a dropped connection, and no other
/// connection notices.
#[tokio::test]
async fn bad_frames_are_closed_with_their_code() {
    let server = server_with(models::builder().configure(|c| c.max_frame_bytes = 4096)).await;
    let mut bystander = server.ws().await;
    let cases: [(&str, u8, bool, Vec<u8>, u16); 9] = [
        (
            "text that is not UTF-8",
            TEXT,
            true,
            vec![b'{', 0xff, 0xfe, b'}'],
            1007,
        ),
        (
            "a truncated UTF-8 sequence",
            TEXT,
            true,
            "é".as_bytes()[..1].to_vec(),
            1007,
        ),
        ("an unmasked frame", TEXT, false, b"{}".to_vec(), 1002),
        ("a reserved data opcode", 0x83, true, b"{}".to_vec(), 1002),
        ("a reserved control opcode", 0x8B, true, vec![], 1002),
        ("a fragmented ping", 0x09, true, vec![], 1002),
        ("a reserved bit", 0xC1, true, b"{}".to_vec(), 1002),
        (
            "a continuation with nothing to continue",
            0x80,
            true,
            b"{}".to_vec(),
            1002,
        ),
        ("a frame over the limit", TEXT, true, vec![b' '; 5000], 1009),
    ];
    for (name, first, masked, payload, code) in cases {
        let mut ws = RawWs::connect(server.addr, "/ws").await;
        ws.send_frame(first, masked, &payload).await;
        assert_eq!(ws.expect_close(WAIT).await, code, "{name}");
        let reply = bystander.call("lists", "list", json!({})).await;
        assert_eq!(
            reply.status, 200,
            "{name}: the bystander is served: {reply}"
        );
    }
    // An invalid close frame (a reserved code) is a protocol error too.
    let mut ws = RawWs::connect(server.addr, "/ws").await;
    ws.send_frame(0x88, true, &1005u16.to_be_bytes()).await;
    assert_eq!(ws.expect_close(WAIT).await, 1002, "close code 1005");
    still_serves(&server).await;
}

/// A frame that was started must be finished in time: a peer sending one a byte at a time is
/// closed (1008), while the connection was otherwise fine.
#[tokio::test]
async fn a_frame_sent_a_byte_at_a_time_is_cut_off() {
    let server = server_with(models::builder().configure(|c| {
        c.frame_timeout = Duration::from_millis(400);
    }))
    .await;
    let mut ws = RawWs::connect(server.addr, "/ws").await;
    // A whole request first: the connection works.
    let request = json!({"stream": "lists", "payload": {"action": "list", "request_id": 1}});
    ws.send_frame(TEXT, true, request.to_string().as_bytes())
        .await;
    let reply = ws.next_frame(WAIT).await.expect("a reply");
    assert_eq!(reply.opcode, 0x1, "{reply:?}");
    // Then a frame of 100 bytes, one byte every 100 ms (it would take 10 s).
    let bytes = raw::frame_bytes(TEXT, true, &[b' '; 100]);
    let mut closed = None;
    for byte in bytes {
        if ws.socket.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut peek = [0u8; 1];
        let peeked =
            tokio::time::timeout(Duration::from_millis(1), ws.socket.peek(&mut peek)).await;
        if let Ok(Ok(n)) = peeked
            && n > 0
        {
            closed = Some(ws.expect_close(WAIT).await);
            break;
        }
    }
    assert_eq!(closed, Some(1008), "the slow frame is cut off with 1008");
    still_serves(&server).await;
}

/// An idle peer is pinged; one that does not answer is closed (1001), while an idle client whose
/// WebSocket library answers pings stays open as long as it likes and still gets its events.
#[tokio::test]
async fn idle_peers_are_pinged_and_closed_only_if_they_stop_answering() {
    let server = server_with(models::builder().configure(|c| {
        c.ping_interval = Duration::from_millis(200);
        c.pong_timeout = Duration::from_millis(300);
    }))
    .await;
    // The raw client reads but never answers.
    let mut silent = RawWs::connect(server.addr, "/ws").await;
    let ping = silent.next_frame(WAIT).await.expect("a ping");
    assert_eq!(ping.opcode, 0x9, "{ping:?}");
    assert_eq!(silent.expect_close(WAIT).await, 1001);

    // A raw client that answers the ping stays.
    let mut answering = RawWs::connect(server.addr, "/ws").await;
    for _ in 0..3 {
        let ping = answering.next_frame(WAIT).await.expect("a ping");
        assert_eq!(ping.opcode, 0x9, "{ping:?}");
        answering.send_frame(0x8A, true, &ping.payload).await;
    }

    // A live subscriber idle for many ping intervals (tungstenite answers the pings while the
    // client reads) still gets its event.
    let list = common::create_list(&server, "quiet").await;
    let mut ws = server.ws().await;
    let reply = ws
        .call(
            "tasks",
            "subscribe",
            json!({"request_id": "s", "group": {"list_id": list}}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply}");
    ws.expect_silence(Duration::from_millis(1500)).await;
    let created = server
        .post(
            "/api/tasks/",
            json!({"text": "still here", "list_id": list}),
        )
        .send()
        .await;
    assert_eq!(created.status, 201, "{created}");
    let event = ws.next_event().await;
    assert_eq!(event["payload"]["data"]["text"], "still here", "{event}");
}

// ---------------------------------------------------------------------------------------------
// The byte-bounded queue and backpressure
// ---------------------------------------------------------------------------------------------

/// `rows` tasks of 140 characters in a new list: about 200 bytes each in a reply.
async fn seed(server: &TestServer, rows: usize) -> i64 {
    let list = common::create_list(server, "big").await;
    let rows = (0..rows)
        .map(|i| Task {
            id: 0,
            text: format!("{i:0>140}"),
            done: false,
            list_id: list as i32,
            owner: None,
            priority: 0,
            note: None,
        })
        .collect();
    server.app.bulk_create(rows).await.expect("seed");
    list
}

fn list_request(i: usize) -> serde_json::Value {
    json!({"stream": "tasks", "payload": {"action": "list", "request_id": i, "limit": 1000}})
}

/// A client that sends requests and does not read is closed with 4008 once its queue is full and
/// the next reply finds no room in time; when it reads again it gets the replies that were
/// queued, in order, then the close frame (never just the end of the stream); others are served
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_sees_4008_after_its_queued_replies() {
    let server = server_with(models::builder().configure(|c| {
        c.queue_bytes = 256 << 10;
        c.send_timeout = Duration::from_millis(500);
        // Long enough for the close frame to wait for the client to read again.
        c.close_grace = Duration::from_secs(60);
        c.requests_per_second = 0.0;
    }))
    .await;
    seed(&server, 1000).await;
    let url = server.ws_url();
    let mut stalled = WsClient::connect_with_receive_buffer(&url, 4096).await;
    // 60 replies of ~200 KB: far more than the TCP buffers and the queue hold.
    for i in 0..60 {
        stalled.send(list_request(i)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Meanwhile another client is served.
    still_serves(&server).await;

    let mut replies = Vec::new();
    let closed = loop {
        match stalled.recv_any(WAIT).await.expect("a frame or the close") {
            Received::Reply(reply) => {
                assert_eq!(reply["payload"]["response_status"], 200);
                replies.push(reply["payload"]["request_id"].as_u64().expect("request_id"));
            }
            Received::Event(event) => panic!("no event was asked for: {event}"),
            Received::Closed(closed) => break closed,
        }
    };
    assert_eq!(
        closed,
        Closed::Code(4008),
        "after {} replies",
        replies.len()
    );
    assert!(
        replies.len() < 60,
        "the queue is bounded: {} replies were kept",
        replies.len()
    );
    let expected: Vec<u64> = (0..replies.len() as u64).collect();
    assert_eq!(replies, expected, "what was queued is delivered in order");
    still_serves(&server).await;
}

/// A client that reads slowly is never closed: its replies wait for room (the server reads no
/// further request meanwhile), and every one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_held_back_not_closed() {
    let server = server_with(models::builder().configure(|c| {
        c.queue_bytes = 256 << 10;
        c.send_timeout = Duration::from_secs(5);
        c.requests_per_second = 0.0;
    }))
    .await;
    seed(&server, 1000).await;
    let mut ws = WsClient::connect_with_receive_buffer(&server.ws_url(), 4096).await;
    let total = 40;
    for i in 0..total {
        ws.send(list_request(i)).await;
    }
    for i in 0..total {
        // Slow, but steady.
        tokio::time::sleep(Duration::from_millis(20)).await;
        match ws.recv_any(WAIT).await.expect("a reply") {
            Received::Reply(reply) => {
                assert_eq!(
                    reply["payload"]["request_id"], i as u64,
                    "{}",
                    reply["payload"]
                );
                assert_eq!(
                    reply["payload"]["data"]["results"].as_array().map(Vec::len),
                    Some(1000)
                );
            }
            other => panic!("reply {i}: {other:?}"),
        }
    }
}

/// The resident memory of process `pid`, in bytes (Linux).
fn rss(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The reproduction of the issue, against the example process with its defaults (4 MiB per
/// connection): three clients each ask for 200 pages of 1,000 tasks and never read. Unbounded,
/// that is ~150 MB of replies per connection; bounded, the server grows by at most the three
/// queues plus a fixed margin (the replies being built, allocator slack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_that_never_read_cannot_grow_the_server_past_its_bounds() {
    let Some(_) = rss(std::process::id()) else {
        eprintln!("skipped: no /proc/<pid>/status to read the server's memory from");
        return;
    };
    let (_dir, database_url) = common::process::temp_sqlite();
    let example = common::process::ExampleProcess::start_quiet(
        "memory",
        &database_url,
        &[("REST_LIVE_THROTTLE", "off")],
        &[],
    )
    .await;
    let http = rest_live::testing::HttpClient::new(example.url(""));
    let list = http
        .post("/api/lists/", json!({"name": "big"}))
        .await
        .expect(201)["id"]
        .as_i64()
        .expect("id");
    let seeding: Vec<_> = (0..8)
        .map(|worker| {
            let http = http.clone();
            tokio::spawn(async move {
                for i in (worker..1000).step_by(8) {
                    let text = format!("{i:0>140}");
                    http.post("/api/tasks/", json!({"text": text, "list_id": list}))
                        .await
                        .expect(201);
                }
            })
        })
        .collect();
    for worker in seeding {
        worker.await.expect("seeding");
    }
    // Warm up: one full page read by a reading client.
    let mut reader = WsClient::connect(&example.ws_url()).await;
    let reply = reader.call("tasks", "list", json!({"limit": 1000})).await;
    assert_eq!(reply.status, 200, "{reply}");
    let page_bytes = reply.frame.to_string().len();
    let before = rss(example.pid()).expect("the server's RSS");

    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut ws = WsClient::connect_with_receive_buffer(&example.ws_url(), 4096).await;
        for i in 0..200 {
            ws.send(list_request(i)).await;
        }
        stalled.push(ws);
    }
    let mut peak = before;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss(example.pid()).expect("the server's RSS"));
    }
    let queues = 3 * (4 << 20);
    let margin = 48 << 20;
    eprintln!(
        "RSS {} MiB before, peak {} MiB with 3 stalled clients ({} KiB per page)",
        before >> 20,
        peak >> 20,
        page_bytes >> 10
    );
    assert!(
        peak < before + queues + margin,
        "the server grew by {} MiB (bound {} MiB)",
        (peak - before) >> 20,
        (queues + margin) >> 20
    );
    // The server still serves.
    let reply = reader.call("lists", "list", json!({})).await;
    assert_eq!(reply.status, 200, "{reply}");
    drop(stalled);
}
