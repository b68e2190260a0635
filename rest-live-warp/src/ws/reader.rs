//! The read side of a WebSocket: tungstenite's protocol engine parses the peer's frames (masking,
//! fragmentation, control frames, UTF-8, limits), reading from the socket's reading half. What it
//! would write itself (the pong to a ping, the answer to a close) is taken from it and queued in
//! the connection's outbox, so that only the writer task writes to the socket.

use std::io::{self, Read, Write};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use rest_live_core::transport::Outbox;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use super::halves::ReadHalf;
use crate::liveness::Peer;

/// The reading half of a WebSocket and its protocol state.
pub(crate) struct FrameReader {
    context: WebSocketContext,
    io: ReadHalf,
    peer: Arc<Peer>,
    /// What tungstenite wrote (whole control frames), not yet queued.
    control: Vec<u8>,
    /// Where those frames go. Weak: once the connection is gone, its writer must end.
    outbox: Weak<Outbox>,
}

impl FrameReader {
    /// The reader of `io`, whose first bytes are `read` (read already by the HTTP server).
    pub fn new(io: ReadHalf, read: Bytes, peer: Arc<Peer>, config: WebSocketConfig) -> Self {
        let context = if read.is_empty() {
            WebSocketContext::new(Role::Server, Some(config))
        } else {
            WebSocketContext::from_partially_read(read.to_vec(), Role::Server, Some(config))
        };
        Self {
            context,
            io,
            peer,
            control: Vec::new(),
            outbox: Weak::new(),
        }
    }

    /// Queues the control frames the protocol answers with in `outbox`.
    pub fn answer_to(&mut self, outbox: &Arc<Outbox>) {
        self.outbox = Arc::downgrade(outbox);
    }

    /// The next message; `None` once the stream has ended (closed by the peer, or gone).
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        let mut stream = Stream {
            io: &mut self.io,
            cx,
            peer: &self.peer,
            control: &mut self.control,
        };
        let read = self.context.read(&mut stream);
        if let Ok(Message::Close(_)) = read {
            // The answer to the peer's close is written on the next write: now.
            let _ = self.context.flush(&mut stream);
        }
        if !self.control.is_empty() {
            let frames = Bytes::from(std::mem::take(&mut self.control));
            if let Some(outbox) = self.outbox.upgrade() {
                outbox.push_raw(frames);
            }
        }
        match read {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(WsError::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }
}

/// The socket as tungstenite's blocking `Read + Write`: a read that would wait is `WouldBlock`
/// (the task is woken when the socket is readable), and writes are kept for the writer task.
struct Stream<'a, 'b> {
    io: &'a mut ReadHalf,
    cx: &'a mut Context<'b>,
    peer: &'a Peer,
    control: &'a mut Vec<u8>,
}

impl Read for Stream<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io.poll_read_into(self.cx, buf) {
            Poll::Ready(Ok(read)) => {
                if read > 0 {
                    self.peer.received(read);
                }
                Ok(read)
            }
            Poll::Ready(Err(error)) => Err(error),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Stream<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.control.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
