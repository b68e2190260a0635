//! The sending side of one connection, shared by every layer that sends to it: the connection
//! (replies), the hub (events), the sessions (revocation) and the adapter's writer (which drains
//! it). A bounded queue of encoded frames and a close signal; it knows nothing of what the frames
//! say, so it imports nothing of the crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

/// One encoded frame (JSON text), shared without copying by every subscriber that gets it.
pub type Frame = Bytes;

/// Why the server closes a connection: a WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    /// The server is shutting down.
    pub const GOING_AWAY: Self = Self {
        code: 1001,
        reason: "server shutting down",
    };
    /// The client sent a frame larger than the limit.
    pub const TOO_BIG: Self = Self {
        code: 1009,
        reason: "frame too large",
    };
    /// The principal's session was revoked.
    pub const REVOKED: Self = Self {
        code: 4003,
        reason: "session revoked",
    };
    /// The client did not read fast enough; it may reconnect and resume with `since`.
    pub const SLOW_CONSUMER: Self = Self {
        code: 4008,
        reason: "client did not read fast enough",
    };
}

/// The sending side of a connection: a bounded frame queue and a close signal.
pub struct Outbox {
    id: u64,
    frames: mpsc::Sender<Frame>,
    close: watch::Sender<Option<CloseReason>>,
}

/// What the adapter's writer task drains: frames to send, and when to close.
pub struct Outgoing {
    pub frames: mpsc::Receiver<Frame>,
    pub close: watch::Receiver<Option<CloseReason>>,
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

impl Outbox {
    /// A new outbox holding at most `capacity` frames, with a process-unique id, and its
    /// draining side.
    pub fn open(capacity: usize) -> (Arc<Self>, Outgoing) {
        let (frames_tx, frames_rx) = mpsc::channel(capacity.max(1));
        let (close_tx, close_rx) = watch::channel(None);
        let outbox = Arc::new(Self {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            frames: frames_tx,
            close: close_tx,
        });
        let outgoing = Outgoing {
            frames: frames_rx,
            close: close_rx,
        };
        (outbox, outgoing)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// How many frames the queue holds.
    pub fn capacity(&self) -> usize {
        self.frames.max_capacity()
    }

    /// Whether the writer is gone (nothing queued will be sent any more).
    pub fn is_gone(&self) -> bool {
        self.frames.is_closed()
    }

    /// Queues an event without waiting; a full queue closes the connection (4008).
    pub fn push_event(&self, frame: Frame) {
        if self.close.borrow().is_some() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.frames.try_send(frame) {
            tracing::warn!(
                connection = self.id,
                "outgoing queue full; closing with 4008"
            );
            self.close(CloseReason::SLOW_CONSUMER);
        }
    }

    /// Queues a frame, waiting for room (replies and replays: the reader waits, not the hub).
    /// False once the connection is gone.
    pub async fn send(&self, frame: Frame) -> bool {
        self.frames.send(frame).await.is_ok()
    }

    /// Asks the writer to close the connection (the first reason wins).
    pub fn close(&self, reason: CloseReason) {
        self.close.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// A receiver that changes when the connection is told to close.
    pub fn closing(&self) -> watch::Receiver<Option<CloseReason>> {
        self.close.subscribe()
    }
}
