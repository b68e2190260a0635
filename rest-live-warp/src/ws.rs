//! The WebSocket endpoint: one reader loop feeding the core [`Connection`], one writer task draining
//! its bounded outbox (batching what is queued), and the close codes of PROTOCOL.md.

use futures_util::{SinkExt, StreamExt};
use rest_live_core::http::HttpResponse;
use rest_live_core::{App, CloseReason, Outgoing, Principal};
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::http::HeaderMap;
use warp::http::header::ORIGIN;
use warp::{Filter, Rejection, Reply};

use crate::credentials;

pub fn route(app: App) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    crate::path_prefix(&app.config().ws_path)
        .and(warp::path::end())
        .and(warp::ws())
        .and(warp::header::headers_cloned())
        .and(query)
        .then(move |ws: Ws, headers: HeaderMap, query: String| {
            let app = app.clone();
            async move { upgrade(app, ws, headers, query).await }
        })
}

/// Checks the handshake (Origin, credential) before upgrading: a refusal is an HTTP 403 or 401.
async fn upgrade(app: App, ws: Ws, headers: HeaderMap, query: String) -> warp::reply::Response {
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
    let limit = app.config().max_frame_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve(app, socket, principal))
        .into_response()
}

async fn serve(app: App, socket: WebSocket, principal: Principal) {
    let grace = app.config().close_grace;
    let (sink, mut stream) = socket.split();
    let (mut connection, outgoing) = app.connect(principal);
    let mut closing = connection.closing();
    let id = connection.id();
    tracing::debug!(connection = id, "websocket opened");
    let writer = tokio::spawn(write(sink, outgoing, grace));
    loop {
        let message = tokio::select! {
            // The server closes this connection (slow reader, revoked): stop reading.
            _ = closing.changed() => break,
            message = stream.next() => message,
        };
        let Some(message) = message else { break };
        let alive = match message {
            Ok(m) if m.is_text() => match m.to_str() {
                Ok(text) => connection.handle_text(text).await,
                Err(()) => connection.handle_binary().await,
            },
            Ok(m) if m.is_binary() => connection.handle_binary().await,
            Ok(m) if m.is_close() => false,
            Ok(_) => true, // ping and pong are answered by the WebSocket layer
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
    mut out: Outgoing,
    grace: std::time::Duration,
) {
    loop {
        let frame = tokio::select! {
            biased;
            _ = out.close.changed() => break,
            frame = out.frames.recv() => frame,
        };
        let Some(frame) = frame else {
            let _ = sink.close().await;
            return;
        };
        let send = async {
            sink.feed(text(frame)).await?;
            while let Ok(frame) = out.frames.try_recv() {
                sink.feed(text(frame)).await?;
            }
            sink.flush().await
        };
        // A client that does not read blocks the send; a close must still get through.
        let sent = tokio::select! {
            biased;
            _ = out.close.changed() => break,
            sent = send => sent,
        };
        if sent.is_err() {
            return;
        }
    }
    let reason = *out.close.borrow();
    if let Some(reason) = reason {
        let close = sink.send(Message::close_with(reason.code, reason.reason));
        let _ = tokio::time::timeout(grace, close).await;
    }
}

fn text(frame: bytes::Bytes) -> Message {
    // Frames are JSON produced by serde_json, hence UTF-8.
    Message::text(String::from_utf8_lossy(&frame).into_owned())
}

fn is_too_big(error: &warp::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("Space limit exceeded") || text.contains("too long") {
            return true;
        }
        source = e.source();
    }
    false
}
