//! The WebSocket endpoints: one reader loop feeding the core [`Connection`], one writer task
//! draining its bounded outbox (batching what is queued), and the close codes of PROTOCOL.md.
//! Every endpoint is the same code with another wire format ([`Codec`]): the protocol's
//! `{stream, payload}` envelope, and django-rest-live's subscription format; handshake, limits
//! and close codes are the same.

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use rest_live_core::transport::{
    CloseReason, Codec, Connection, ENVELOPE, Frame, HttpResponse, Outgoing,
};
use rest_live_core::{App, Principal};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use warp::http::header::{
    CONNECTION, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::credentials;

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
                async move {
                    // Not a WebSocket handshake: not this route (as with `warp::ws()`).
                    let Some(accept) = accept_key(&headers) else {
                        return Err(warp::reject::not_found());
                    };
                    let Some(on_upgrade) = on_upgrade else {
                        return Err(warp::reject::not_found());
                    };
                    let client = crate::http::client_ip(&app, peer, &headers);
                    Ok(upgrade(app, accept, on_upgrade, headers, query, codec, client).await)
                }
            },
        )
}

/// The `Sec-WebSocket-Accept` value for a valid handshake request (RFC 6455 §4.2.1), or `None`.
fn accept_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let upgrade = has_token(CONNECTION, "upgrade") && has_token(UPGRADE, "websocket");
    let version = headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        == Some(b"13");
    let key = headers.get(SEC_WEBSOCKET_KEY)?;
    if !(upgrade && version) {
        return None;
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    HeaderValue::from_str(&accept).ok()
}

/// Checks the handshake (Origin, credential) before upgrading: a refusal is an HTTP 403 or 401.
async fn upgrade(
    app: App,
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
    headers: HeaderMap,
    query: String,
    codec: &'static dyn Codec,
    client: Option<std::net::IpAddr>,
) -> warp::reply::Response {
    let origin = headers.get(ORIGIN).and_then(|o| o.to_str().ok());
    if let Err(error) = app.check_origin(origin) {
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
        // Queued frames are written out in one go past this size (and at every flush). The
        // buffer keeps its size after a burst, so tungstenite's default (128 KiB) would be kept
        // by every connection that once had a long queue.
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config));
                start(app, socket.await, principal, token, codec, client).await;
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

type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// See `write_buffer_size` in [`upgrade`]: room for ~80 typical events per socket write.
const WRITE_BUFFER: usize = 16 * 1024;

/// Opens the connection and starts its reader and writer tasks. Each task holds only what it
/// needs while the connection is idle: its size is most of an idle connection's memory.
async fn start(
    app: App,
    socket: WebSocket,
    principal: Principal,
    token: Option<String>,
    codec: &'static dyn Codec,
    client: Option<std::net::IpAddr>,
) {
    let grace = app.config().close_grace;
    let (sink, stream) = socket.split();
    let signed_in = principal.id.is_some();
    let (mut connection, outgoing) = Connection::open(&app, principal, codec);
    connection.set_client(client);
    // A revocation between the handshake's check and the registration above would have missed
    // this socket: check the credential once more now that revocations reach it.
    if signed_in && Box::pin(app.authenticate(token.as_deref())).await.is_err() {
        connection.close(CloseReason::REVOKED);
    }
    tracing::debug!(connection = connection.id(), "websocket opened");
    let writer = tokio::spawn(write(sink, outgoing, grace));
    tokio::spawn(read(stream, connection, writer));
}

/// The reader of a socket: hands each frame to the connection, in order, until either side
/// closes.
async fn read(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    mut connection: Connection,
    writer: tokio::task::JoinHandle<()>,
) {
    let id = connection.id();
    let mut closing = connection.closing();
    loop {
        let message = tokio::select! {
            // The server closes this connection (slow reader, revoked): stop reading.
            _ = closing.changed() => break,
            message = stream.next() => message,
        };
        let Some(message) = message else { break };
        let alive = match message {
            // Boxed: a request's future lives only while it is handled, and inlined it would make
            // every idle connection's task kilobytes larger.
            Ok(Message::Text(text)) => Box::pin(connection.handle_text(text.as_str())).await,
            Ok(Message::Binary(_)) => Box::pin(connection.handle_binary()).await,
            Ok(Message::Close(_)) => false,
            // Ping and pong are answered by the WebSocket layer.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => true,
            Err(error) => {
                if is_too_big(&error) {
                    connection.close(CloseReason::TOO_BIG);
                }
                tracing::debug!(connection = id, %error, "websocket read failed");
                false
            }
        };
        if !alive {
            break;
        }
    }
    // Dropping the connection removes its subscriptions; once nothing holds its outbox, the writer
    // drains what is queued and ends.
    drop(connection);
    let _ = writer.await;
    tracing::debug!(connection = id, "websocket closed");
}

/// The single writer of a socket: sends queued frames, batching what is waiting into one flush,
/// until the queue ends or a close is asked for. A close is sent after what was already handed to
/// the socket, and the socket is dropped if the client does not take it within `grace`.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    out: Outgoing,
    grace: std::time::Duration,
) {
    let Outgoing {
        mut frames,
        mut close,
    } = out;
    {
        // One close future for the connection's life, not one per wake-up (it showed in profiles).
        let closed = close.changed();
        tokio::pin!(closed);
        loop {
            let frame = tokio::select! {
                biased;
                _ = &mut closed => break,
                frame = frames.recv() => frame,
            };
            let Some(frame) = frame else {
                let _ = sink.close().await;
                return;
            };
            let send = async {
                sink.feed(text(frame)).await?;
                while let Ok(frame) = frames.try_recv() {
                    sink.feed(text(frame)).await?;
                }
                sink.flush().await
            };
            // A client that does not read blocks the send; a close must still get through.
            let sent = tokio::select! {
                biased;
                _ = &mut closed => break,
                sent = send => sent,
            };
            if sent.is_err() {
                return;
            }
        }
    }
    let reason = *close.borrow();
    if let Some(reason) = reason {
        let close = sink.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(reason.code),
            reason: Utf8Bytes::from_static(reason.reason),
        })));
        let _ = tokio::time::timeout(grace, close).await;
    }
}

fn text(frame: Frame) -> Message {
    // Frames are JSON produced by serde_json, hence UTF-8: the check is one pass over the bytes,
    // and the bytes themselves are shared with every other subscriber of the event, not copied.
    let text = Utf8Bytes::try_from(frame.clone())
        .unwrap_or_else(|_| String::from_utf8_lossy(&frame).into_owned().into());
    Message::Text(text)
}

fn is_too_big(error: &WsError) -> bool {
    matches!(
        error,
        WsError::Capacity(CapacityError::MessageTooLong { .. })
    )
}
