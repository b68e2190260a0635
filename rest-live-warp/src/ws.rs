//! The WebSocket endpoint: one reader loop feeding the core [`Connection`], one writer task draining
//! its bounded outbox (batching what is queued), and the close codes of PROTOCOL.md.

use futures_util::{SinkExt, StreamExt};
use rest_live_core::{App, CloseReason, Outgoing, Principal};
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::{Filter, Rejection, Reply};

pub fn route(app: App) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let limit = app.config().max_frame_bytes;
    crate::path_prefix(&app.config().ws_path)
        .and(warp::path::end())
        .and(warp::ws())
        .map(move |ws: Ws| {
            let app = app.clone();
            ws.max_message_size(limit)
                .max_frame_size(limit)
                .on_upgrade(move |socket| serve(app, socket))
        })
}

async fn serve(app: App, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let (mut connection, outgoing) = app.connect(Principal::anonymous());
    let id = connection.id();
    tracing::debug!(connection = id, "websocket opened");
    let writer = tokio::spawn(write(sink, outgoing));
    while let Some(message) = stream.next().await {
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

async fn write(mut sink: futures_util::stream::SplitSink<WebSocket, Message>, mut out: Outgoing) {
    loop {
        tokio::select! {
            biased;
            changed = out.close.changed() => {
                let reason = *out.close.borrow();
                if let (Ok(()), Some(reason)) = (changed, reason) {
                    let _ = sink.send(Message::close_with(reason.code, reason.reason)).await;
                }
                break;
            }
            frame = out.frames.recv() => {
                let Some(frame) = frame else {
                    let _ = sink.close().await;
                    break;
                };
                if sink.feed(text(frame)).await.is_err() {
                    break;
                }
                // Batch whatever else is queued into one flush.
                let mut failed = false;
                while let Ok(frame) = out.frames.try_recv() {
                    if sink.feed(text(frame)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || sink.flush().await.is_err() {
                    break;
                }
            }
        }
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
