//! The WebSocket endpoints: one reader loop feeding the core [`Connection`], one writer task
//! draining its bounded outbox (batching what is queued), and the close codes of docs/protocol.md.
//! Every endpoint is the same code with another wire format ([`Codec`]): the protocol's
//! `{stream, payload}` envelope, and django-rest-live's subscription format; handshake, limits
//! and close codes are the same.
//!
//! The socket is split in two halves ([`halves`]): tungstenite's protocol engine reads the
//! peer's frames ([`reader`]), and server frames are written by hand ([`frames`]), many per
//! vectored write.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use rest_live_core::transport::{
    CloseReason, Codec, Connection, Drain, ENVELOPE, HttpResponse, Next,
};
use rest_live_core::{App, Principal};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use warp::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::credentials;
use crate::liveness::{Monitor, Peer};

mod frames;
mod halves;
mod reader;

use frames::FrameWriter;
use reader::FrameReader;

/// The protocol's endpoint, at [`rest_live_core::Config::ws_path`].
pub fn route(app: App) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let path = app.config().ws_path.clone();
    endpoint(app, path, ENVELOPE)
}

/// The endpoint at `path` speaking `codec`.
///
/// The upgrade is done here rather than with `warp::ws()`, for two things warp's `Ws` does not
/// expose: the socket's read buffer size (tungstenite's default, 128 KiB per connection, was most
/// of an idle connection's memory) and sending the hub's shared frame bytes without a copy per
/// subscriber (warp's `Message::text` takes only a `String`).
pub fn endpoint(
    app: App,
    path: String,
    codec: &'static dyn Codec,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let monitor = Monitor::new(app.config());
    crate::path_prefix(&path)
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(query)
        .and(crate::client_addr())
        .and_then(
            move |headers: HeaderMap,
                  on_upgrade: Option<OnUpgrade>,
                  query: String,
                  peer: Option<std::net::SocketAddr>| {
                let app = app.clone();
                let monitor = monitor.clone();
                async move {
                    let accept = match handshake(&headers) {
                        // Not a WebSocket handshake: not this route (as with `warp::ws()`).
                        Handshake::NotWebSocket => return Err(warp::reject::not_found()),
                        Handshake::Refused(response) => return Ok(response),
                        Handshake::Accept(accept) => accept,
                    };
                    let Some(on_upgrade) = on_upgrade else {
                        return Err(warp::reject::not_found());
                    };
                    let client = crate::http::client_ip(&app, peer, &headers);
                    Ok(upgrade(
                        app, monitor, accept, on_upgrade, headers, query, codec, client,
                    )
                    .await)
                }
            },
        )
}

/// What a request's headers make of it (RFC 6455 §4.2.1, docs/protocol.md §6).
enum Handshake {
    /// No `Upgrade: websocket`: an ordinary request.
    NotWebSocket,
    /// A handshake that cannot be accepted: 400, or 426 for another protocol version.
    Refused(warp::reply::Response),
    /// A valid handshake, with its `Sec-WebSocket-Accept` value.
    Accept(HeaderValue),
}

fn handshake(headers: &HeaderMap) -> Handshake {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(UPGRADE, "websocket") {
        return Handshake::NotWebSocket;
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = refusal(
            StatusCode::UPGRADE_REQUIRED,
            "Unsupported WebSocket version: this server speaks version 13.",
        );
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return Handshake::Refused(response);
    }
    if !has_token(CONNECTION, "upgrade") {
        return Handshake::Refused(refusal(
            StatusCode::BAD_REQUEST,
            "A WebSocket handshake needs \"Connection: Upgrade\".",
        ));
    }
    // The key must be 16 bytes, base64-encoded (24 characters, canonical padding).
    let key = headers.get(SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes);
    let valid = key.is_some_and(|key| {
        data_encoding::BASE64
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
    });
    match key {
        Some(key) if valid => {
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
            match HeaderValue::from_str(&accept) {
                Ok(accept) => Handshake::Accept(accept),
                Err(_) => Handshake::Refused(refusal(StatusCode::BAD_REQUEST, "Invalid key.")),
            }
        }
        _ => Handshake::Refused(refusal(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64.",
        )),
    }
}

/// A refused handshake: the status and the error body of docs/protocol.md §1.
fn refusal(status: StatusCode, message: &str) -> warp::reply::Response {
    let body = serde_json::json!({ "errors": [message] }).to_string();
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Checks the handshake (Origin, credential) before upgrading: a refusal is an HTTP 403 or 401.
#[allow(clippy::too_many_arguments)]
async fn upgrade(
    app: App,
    monitor: Arc<Monitor>,
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
    headers: HeaderMap,
    query: String,
    codec: &'static dyn Codec,
    client: Option<std::net::IpAddr>,
) -> warp::reply::Response {
    let origin = credentials::origin(&headers);
    if let Err(error) = app.check_origin(origin, credentials::host(&headers)) {
        tracing::info!(
            origin,
            "websocket handshake from a disallowed origin refused"
        );
        return crate::http::reply(HttpResponse::error(&error));
    }
    let token = credentials::token(&headers, &query, &app.config().auth_cookie);
    let principal = match app.authenticate(token.as_deref()).await {
        Ok(principal) => principal,
        Err(error) => return crate::http::reply(HttpResponse::error(&error)),
    };
    let config = app.config();
    let limit = config.max_frame_bytes;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.ws_read_buffer_bytes.max(256))
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let peer = monitor.watch();
                let (read, write, read_already) = halves::split(upgraded);
                let reader = FrameReader::new(read, read_already, peer.clone(), ws_config);
                let writer = FrameWriter::new(write);
                start(app, reader, writer, peer, principal, token, codec, client).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
    let mut response = warp::reply::Response::default();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Opens the connection and starts its reader and writer tasks. Each task holds only what it
/// needs while the connection is idle: its size is most of an idle connection's memory.
#[allow(clippy::too_many_arguments)]
async fn start(
    app: App,
    mut reader: FrameReader,
    writer: FrameWriter,
    peer: Arc<Peer>,
    principal: Principal,
    token: Option<String>,
    codec: &'static dyn Codec,
    client: Option<std::net::IpAddr>,
) {
    let grace = app.config().close_grace;
    let linger = app.config().event_linger;
    let signed_in = principal.id.is_some();
    let (mut connection, drain) = Connection::open(&app, principal, codec);
    connection.set_client(client);
    peer.open(connection.outbox());
    reader.answer_to(connection.outbox());
    // A revocation between the handshake's check and the registration above would have missed
    // this socket: check the credential once more now that revocations reach it.
    if signed_in && Box::pin(app.authenticate(token.as_deref())).await.is_err() {
        connection.close(CloseReason::REVOKED);
    }
    tracing::debug!(connection = connection.id(), "websocket opened");
    let writer = tokio::spawn(write(writer, drain, grace, linger));
    tokio::spawn(read(reader, connection, writer, peer, grace));
}

/// The reader of a socket: hands each frame to the connection, in order, until either side
/// closes (the endpoint's [`Monitor`] closes a peer that stopped answering or sends a frame too
/// slowly). Once the connection closes, it waits (within the grace) for the peer to answer the
/// close frame, so that the TCP connection ends only after the peer has read it.
async fn read(
    mut stream: FrameReader,
    mut connection: Connection,
    writer: tokio::task::JoinHandle<()>,
    peer: Arc<Peer>,
    grace: Duration,
) {
    let id = connection.id();
    let mut closing = connection.closing();
    let closed_by_server = loop {
        let message = tokio::select! {
            biased;
            // The server closes this connection (slow reader, revoked, shutdown, a peer gone
            // silent): stop reading.
            _ = closing.changed() => break true,
            message = stream.next() => message,
        };
        let Some(message) = message else { break false };
        peer.message();
        let alive = match message {
            // Boxed: a request's future lives only while it is handled, and inlined it would make
            // every idle connection's task kilobytes larger.
            Ok(Message::Text(text)) => Box::pin(connection.handle_text(text.as_str())).await,
            Ok(Message::Binary(_)) => Box::pin(connection.handle_binary()).await,
            Ok(Message::Close(_)) => false,
            // Ping and pong are answered by the WebSocket layer.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => true,
            Err(error) => {
                tracing::debug!(connection = id, %error, "websocket read failed");
                match close_reason(&error) {
                    Some(reason) => {
                        connection.close(reason);
                        break true;
                    }
                    None => false,
                }
            }
        };
        if !alive {
            // The reply could not be queued because the server is closing the connection.
            break connection.is_closing();
        }
    };
    // Dropping the connection removes its subscriptions; once nothing holds its outbox, the writer
    // drains what is queued and ends.
    drop(connection);
    if closed_by_server {
        // Read (and drop) what the peer still sends until it answers the close frame, or the
        // grace ends: twice the grace, once for the close frame to get out, once for the answer.
        let answered = async {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        };
        // Boxed: only a closing connection needs it; inlined, every idle one would carry it.
        let _ = Box::pin(tokio::time::timeout(2 * grace, answered)).await;
    }
    let _ = writer.await;
    tracing::debug!(connection = id, "websocket closed");
}

/// The close code for a read error, if one is to be sent (none when the peer is already gone).
fn close_reason(error: &WsError) -> Option<CloseReason> {
    match error {
        WsError::Capacity(_) => Some(CloseReason::TOO_BIG),
        WsError::Utf8(_) => Some(CloseReason::INVALID_UTF8),
        WsError::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::SendAfterClosing
            | ProtocolError::ReceivedAfterClosing,
        ) => None,
        WsError::Protocol(_) => Some(CloseReason::PROTOCOL_ERROR),
        _ => None,
    }
}

/// The single writer of a socket: sends queued frames, batching what is waiting into one
/// vectored write, until the queue ends or a close is asked for. A connection that wrote less
/// than `linger` ago waits for more events to join the batch (see
/// [`rest_live_core::Config::event_linger`]). On a close, what is still queued is dropped (the
/// client resumes with `since`), and the close frame follows what was already handed to the
/// socket; the socket is dropped if the client does not take it within `grace`.
async fn write(mut frames: FrameWriter, mut drain: Drain, grace: Duration, linger: Duration) {
    let mut signal = drain.close_signal();
    let reason = {
        // One close future for the connection's life, not one per wake-up (it showed in profiles).
        // Scoped: its room in the task is reused by the close below.
        let closed = closed(&mut signal);
        tokio::pin!(closed);
        // When the socket was last written to (never, at first).
        let mut last: Option<tokio::time::Instant> = None;
        loop {
            // A close comes this way too: nothing else is polled per wake-up.
            let item = match drain.next_or_close().await {
                Next::Send(item) => item,
                Next::Close(reason) => break reason,
                Next::End => {
                    // The connection is gone: what it queued last (the answer to a close) goes
                    // out.
                    let _ = tokio::time::timeout(grace, frames.flush()).await;
                    return;
                }
            };
            if let Some(last) = last.filter(|last| last.elapsed() < linger)
                && !drain.is_urgent()
            {
                tokio::select! {
                    biased;
                    reason = &mut closed => break reason,
                    // Boxed: only a busy connection lingers; inlined, its timer would make every
                    // idle connection's task larger.
                    () = Box::pin(drain.linger(last + linger)) => {}
                }
            }
            drain.take_all();
            frames.push(item);
            if !frames.is_full() {
                drain.take_until(|item| {
                    frames.push(item);
                    frames.is_full()
                });
            }
            // A client that does not read blocks the write; a close must still get through.
            // While it blocks, an event that overflows the queue closes it (4008): it has not
            // read what the kernel holds for it.
            // The write first: most complete at once, and the close is then polled only while
            // one waits.
            let sent = tokio::select! {
                biased;
                sent = frames.flush_noting(|stalled| drain.set_stalled(stalled)) => sent,
                reason = &mut closed => break reason,
            };
            if sent.is_err() {
                return;
            }
            last = Some(tokio::time::Instant::now());
        }
    };
    drain.discard();
    // After the rest of a batch cut short (a frame is never cut), the close frame.
    frames.push_close(reason);
    let _ = tokio::time::timeout(grace, frames.flush()).await;
}

/// Completes when the connection is told to close, with why (never if it is dropped unclosed:
/// then the queue ends, and the writer with it).
async fn closed(signal: &mut watch::Receiver<Option<CloseReason>>) -> CloseReason {
    loop {
        if let Some(reason) = *signal.borrow_and_update() {
            return reason;
        }
        if signal.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
