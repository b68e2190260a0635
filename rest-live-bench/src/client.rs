//! The benchmark's clients: WebSocket (tokio-tungstenite, small buffers, spread over 127.0.0.x
//! source addresses) and HTTP/1.1 keep-alive (hyper's connection API, one connection per worker).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::Result;

pub type Ws = WebSocketStream<TcpStream>;

/// Connections per 127.0.0.x source address: one (source address, server address) pair has about
/// 28,000 ephemeral ports in the default range, so the next address is used well before that.
const PER_SOURCE_ADDRESS: usize = 16_000;

/// The source address of the `i`th connection: 127.0.0.1, then 127.0.0.2, ...
pub fn source_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, (1 + i / PER_SOURCE_ADDRESS).min(254) as u8)
}

/// `IP_BIND_ADDRESS_NO_PORT`: a socket bound to an address only (port 0) gets its port at connect
/// time, unique per 4-tuple rather than per source address.
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the size passed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Opens WebSocket `i` to `ws://addr{path}`.
pub async fn ws_connect(addr: SocketAddr, path: &str, i: usize, read_buffer: usize) -> Result<Ws> {
    ws_connect_with(addr, path, i, read_buffer, None).await
}

/// [`ws_connect`], with the socket's kernel receive buffer set to `receive_buffer` bytes (the
/// kernel doubles it and keeps a minimum): a client that stops reading then fills quickly.
pub async fn ws_connect_with(
    addr: SocketAddr,
    path: &str,
    i: usize,
    read_buffer: usize,
    receive_buffer: Option<u32>,
) -> Result<Ws> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(bytes) = receive_buffer {
        socket
            .set_recv_buffer_size(bytes)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    // The source port is chosen at connect time, per destination, so that ports left in TIME_WAIT
    // by an earlier server (another port) do not run the range dry.
    socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
    bind_address_no_port(&socket);
    socket
        .bind(SocketAddr::from((source_address(i), 0)))
        .map_err(|e| format!("bind {}: {e}", source_address(i)))?;
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr} (connection {i}): {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}{path}"),
        stream,
        Some(config),
    )
    .await
    .map_err(|e| format!("handshake (connection {i}): {e}"))?;
    Ok(ws)
}

/// Sends `frame` and returns the next text frame.
pub async fn ws_request(ws: &mut Ws, frame: String) -> Result<String> {
    ws.send(Message::text(frame))
        .await
        .map_err(|e| format!("send: {e}"))?;
    ws_next_text(ws).await
}

/// The next text frame.
pub async fn ws_next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed by the server: {frame:?}"));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("receive: {e}")),
            None => return Err("closed by the server".into()),
        }
    }
}

/// Runs `open(i)` for `i` in `0..n`, `concurrency` at a time on the runtime's threads, and returns
/// the results in order; the first failure stops it.
pub async fn open_many<T, F, Fut>(n: usize, concurrency: usize, open: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut running = futures_util::stream::iter(0..n)
        .map(|i| {
            let task = tokio::spawn(open(i));
            async move { (i, task.await) }
        })
        .buffer_unordered(concurrency);
    while let Some((i, result)) = running.next().await {
        out[i] = Some(result.map_err(|e| e.to_string())??);
    }
    Ok(out.into_iter().flatten().collect())
}

/// One HTTP/1.1 keep-alive connection.
pub struct Http {
    send: SendRequest<Full<Bytes>>,
    host: String,
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(Self {
            send,
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole response: `(status, body)`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        json_body: Option<String>,
    ) -> Result<(u16, Bytes)> {
        self.send
            .ready()
            .await
            .map_err(|e| format!("HTTP connection: {e}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if json_body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let response = self
            .send
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP request: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("HTTP body: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    pub async fn get(&mut self, path: &str) -> Result<(u16, Bytes)> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: String) -> Result<(u16, Bytes)> {
        self.request(Method::POST, path, Some(body)).await
    }
}

/// The `"id"` of a JSON object in `body`.
pub fn id_of(body: &[u8]) -> Result<i64> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    value["id"]
        .as_i64()
        .ok_or_else(|| format!("no id in {value}"))
}

/// Creates a list and a task in it over HTTP: `(list id, task id)`.
pub async fn create_list_and_task(addr: SocketAddr, text: &str) -> Result<(i64, i64)> {
    let mut http = Http::connect(addr).await?;
    let (status, body) = http
        .post("/api/lists/", r#"{"name":"bench"}"#.to_owned())
        .await?;
    if status != 201 {
        return Err(format!("POST /api/lists/: {status} {body:?}"));
    }
    let list = id_of(&body)?;
    let (status, body) = http
        .post(
            "/api/tasks/",
            serde_json::json!({"text": text, "list_id": list}).to_string(),
        )
        .await?;
    if status != 201 {
        return Err(format!("POST /api/tasks/: {status} {body:?}"));
    }
    Ok((list, id_of(&body)?))
}

/// The frame subscribing to every task of `list`, with request id `"s"`, or `"s<i>"` when each
/// subscriber is to have its own (`--distinct-request-ids`).
pub fn subscribe_frame(list: i64, i: usize, distinct: bool) -> String {
    let request_id = if distinct {
        format!("s{i}")
    } else {
        "s".to_owned()
    };
    format!(
        r#"{{"stream":"tasks","payload":{{"action":"subscribe","request_id":"{request_id}","group":{{"list_id":{list}}}}}}}"#
    )
}

/// The frame subscribing to the live query of `list`'s tasks that are not done (PROTOCOL §4),
/// request ids as in [`subscribe_frame`]: the same tasks as the group, as a filtered query.
pub fn query_frame(list: i64, i: usize, distinct: bool) -> String {
    let request_id = if distinct {
        format!("s{i}")
    } else {
        "s".to_owned()
    };
    format!(
        r#"{{"stream":"tasks","payload":{{"action":"subscribe","request_id":"{request_id}","query":{{"filter":{{"list_id":{list},"done":false}}}}}}}}"#
    )
}

/// Opens `n` sockets to `path` and subscribes each to `list`, checking every reply.
pub async fn subscribers(
    addr: SocketAddr,
    path: &'static str,
    n: usize,
    list: i64,
    common: &crate::args::Common,
) -> Result<Vec<Ws>> {
    subscribers_with(addr, path, n, list, common, subscribe_frame).await
}

/// [`subscribers`] with another subscription frame (`frame(list, i, distinct)`).
pub async fn subscribers_with(
    addr: SocketAddr,
    path: &'static str,
    n: usize,
    list: i64,
    common: &crate::args::Common,
    frame: fn(i64, usize, bool) -> String,
) -> Result<Vec<Ws>> {
    let read_buffer = common.client_read_buffer;
    let distinct = common.distinct_request_ids;
    open_many(n, common.connect_concurrency, move |i| async move {
        let mut ws = ws_connect(addr, path, i, read_buffer).await?;
        let reply = ws_request(&mut ws, frame(list, i, distinct)).await?;
        if !reply.contains(r#""response_status":201"#) {
            return Err(format!("subscribe refused: {reply}"));
        }
        Ok(ws)
    })
    .await
}
