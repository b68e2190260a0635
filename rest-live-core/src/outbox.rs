//! The sending side of one connection, shared by every layer that sends to it: the connection
//! (replies), the hub (events), the sessions (revocation, shutdown) and the adapter's writer
//! (which drains it). A queue of encoded frames bounded in bytes and in frames, and a close
//! signal; it knows nothing of what the frames say, so it imports nothing of the crate.
//!
//! The bound holds for replies and events together (docs/protocol.md §6). An event that does not fit
//! is not queued: the hub never waits for one connection, and catches the subscription up later
//! (see `crate::hub`). A reply, or a caught-up event, that does not fit waits for the writer to
//! make room, so the connection reads no further request meanwhile (backpressure); a client that
//! makes no room within the send timeout is not reading, and is closed with 4008. A frame larger than the whole bound is still queued when the queue
//! is empty, or it could never be sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::{Notify, watch};

/// One encoded frame (JSON text), shared without copying by every subscriber that gets it.
pub type Frame = Bytes;

/// Why the server closes a connection: a WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// The WebSocket close code.
    pub code: u16,
    /// The close frame's reason text.
    pub reason: &'static str,
}

impl CloseReason {
    /// The server is shutting down.
    pub const GOING_AWAY: Self = Self {
        code: 1001,
        reason: "server shutting down",
    };
    /// The peer did not answer a ping in time (it is gone, or not reading at all).
    pub const UNRESPONSIVE: Self = Self {
        code: 1001,
        reason: "no answer to ping",
    };
    /// The client broke the WebSocket protocol (an unmasked frame, a reserved opcode or bit, a
    /// fragmented control frame, a bad close frame).
    pub const PROTOCOL_ERROR: Self = Self {
        code: 1002,
        reason: "protocol error",
    };
    /// The client sent a text frame that is not UTF-8.
    pub const INVALID_UTF8: Self = Self {
        code: 1007,
        reason: "text frame is not UTF-8",
    };
    /// The client started a frame and did not finish it in time.
    pub const FRAME_TIMEOUT: Self = Self {
        code: 1008,
        reason: "frame not completed in time",
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
    /// The server could not keep a subscription true (a live query's window could not be read
    /// from the database); the client may reconnect and subscribe again.
    pub const INTERNAL: Self = Self {
        code: 1011,
        reason: "internal error",
    };
}

/// What the writer is asked to send.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded frame (text).
    Frame(Frame),
    /// A ping, to learn whether an idle peer is still there.
    Ping,
    /// Bytes to write to the socket as they are: whole frames the adapter's protocol layer
    /// wrote (the pong to a ping, the answer to a close).
    Raw(Bytes),
}

/// The bounds of one connection's queue.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Unsent bytes (frames queued and not yet handed to the socket).
    pub bytes: usize,
    /// Unsent frames.
    pub frames: usize,
    /// How long a reply waits for room before the connection is closed with 4008.
    pub send_timeout: Duration,
}

/// The sending side of a connection: a bounded frame queue and a close signal.
pub struct Outbox {
    id: u64,
    bounds: Bounds,
    shared: Arc<Shared>,
    close: watch::Sender<Option<CloseReason>>,
}

/// What the outbox and its drain share (the drain must not keep the outbox alive: the writer ends
/// when the outbox is gone).
///
/// A plain queue under a lock rather than a channel: an idle connection's queue is empty, and an
/// empty `VecDeque` holds no memory, where a channel keeps a block of slots per connection (a
/// tenth of an idle connection's memory).
#[derive(Default)]
struct Shared {
    /// What is queued and not yet taken by the writer, in order.
    queue: Mutex<VecDeque<Outgoing>>,
    /// Bytes and frames queued and not yet taken by the writer.
    bytes: AtomicUsize,
    frames: AtomicUsize,
    /// Woken when something is queued, and when the outbox is gone (one waiter: the writer,
    /// which checks the queue again after it registers; cheaper than a `Notify` per wake).
    ready: AtomicWaker,
    /// Something queued should not wait for more to join it: a reply, a control frame, or a
    /// full batch. Cleared by the writer when it takes what is queued.
    urgent: AtomicBool,
    /// Woken when `urgent` is set, and when the outbox is gone (one waiter: a lingering writer).
    hurry: Notify,
    /// Woken when the writer takes frames (room for a waiting reply) and on close.
    room: Notify,
    /// The outbox is gone: the writer sends what is queued, then ends.
    gone: AtomicBool,
    /// The writer is gone: nothing queued will be sent any more.
    drained: AtomicBool,
    /// The writer waits for the socket to take bytes: the client has not read what the kernel
    /// holds for it (see [`Drain::set_stalled`]).
    stalled: AtomicBool,
    /// The connection was told to close (mirrors the close signal, for the hub to check per
    /// delivery without touching the signal's lock).
    closing: AtomicBool,
}

/// Room a queue keeps once it has emptied after a burst (more is given back).
const KEPT_CAPACITY: usize = 16;

/// Queued bytes that make a batch worth sending at once, lingering or not.
pub const FULL_BATCH: usize = 64 * 1024;

impl Shared {
    /// Accounts for a frame that left the queue (or never entered it).
    fn remove(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        self.frames.fetch_sub(1, Ordering::AcqRel);
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` unless the writer is gone.
    fn push(&self, item: Outgoing) -> bool {
        match self.push_quietly(item) {
            Some(true) => {
                self.ready.wake();
                true
            }
            Some(false) => true,
            None => false,
        }
    }

    /// Queues `item` without waking the writer, unless the writer is gone (`None`); whether the
    /// writer needs a wake for it. The writer waits only once it has found the queue empty, and
    /// it takes every item before it does: only the first item after that needs to wake it.
    fn push_quietly(&self, item: Outgoing) -> Option<bool> {
        if self.drained.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.queue();
        queue.push_back(item);
        Some(queue.len() == 1)
    }

    /// Tells a lingering writer to send what is queued now.
    fn hurry(&self) {
        if !self.urgent.swap(true, Ordering::AcqRel) {
            self.hurry.notify_one();
        }
    }

    /// Takes queued items in order, handing each to `take`, until the queue is empty or `take`
    /// says it has enough (it returns true); under one lock, with one wake for senders waiting
    /// for room, however many frames it took.
    fn take_until(&self, mut take: impl FnMut(Outgoing) -> bool) {
        let (mut bytes, mut frames) = (0, 0);
        {
            let mut queue = self.queue();
            while let Some(item) = queue.pop_front() {
                if let Outgoing::Frame(frame) = &item {
                    bytes += frame.len();
                    frames += 1;
                }
                if take(item) {
                    break;
                }
            }
            if queue.is_empty() && queue.capacity() > 4 * KEPT_CAPACITY {
                queue.shrink_to(KEPT_CAPACITY);
            }
        }
        if frames > 0 {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.frames.fetch_sub(frames, Ordering::AcqRel);
            self.room.notify_waiters();
        }
    }

    /// Takes the first queued item; taking a frame makes its room available again (it is now the
    /// socket's to send).
    fn pop(&self) -> Option<Outgoing> {
        let mut first = None;
        self.take_until(|item| {
            first = Some(item);
            true
        });
        first
    }

    /// Waits, from a writer's poll, until `ready` gives something: `ready` is tried, the waker
    /// registered, and `ready` tried again (a push, close or end before the registration woke
    /// nobody).
    fn poll_ready<T>(&self, cx: &mut Context<'_>, ready: impl Fn() -> Option<T>) -> Poll<T> {
        if let Some(next) = ready() {
            return Poll::Ready(next);
        }
        self.ready.register(cx.waker());
        ready().map_or(Poll::Pending, Poll::Ready)
    }
}

/// What [`Drain::next_or_close`] gives.
#[derive(Debug)]
pub enum Next {
    /// Something to send.
    Send(Outgoing),
    /// Close the connection, for this reason.
    Close(CloseReason),
    /// The outbox is gone and everything it queued was taken.
    End,
}

/// Asks the processor to load the cache line at `data` (a hint: nothing is read, and no address
/// can fault).
pub(crate) fn prefetch<T>(data: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault, whatever the address; SSE is part of
    // every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(data.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// What the adapter's writer task drains: frames to send, and when to close.
pub struct Drain {
    shared: Arc<Shared>,
    close: watch::Receiver<Option<CloseReason>>,
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

impl Outbox {
    /// A new outbox within `bounds`, with a process-unique id, and its draining side.
    pub fn open(bounds: Bounds) -> (Arc<Self>, Drain) {
        let (close_tx, close_rx) = watch::channel(None);
        let shared = Arc::new(Shared::default());
        let outbox = Arc::new(Self {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            bounds,
            shared: shared.clone(),
            close: close_tx,
        });
        let drain = Drain {
            shared,
            close: close_rx,
        };
        (outbox, drain)
    }

    /// Asks the processor to load the queue's shared state into the cache (a hint for the hub,
    /// which queues an event to thousands of outboxes in a row).
    pub(crate) fn prefetch_queue(&self) {
        prefetch(Arc::as_ptr(&self.shared));
    }

    /// A process-unique id (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The queue's bounds.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// Whether the writer is gone (nothing queued will be sent any more).
    pub fn is_gone(&self) -> bool {
        self.shared.drained.load(Ordering::Acquire)
    }

    /// Whether the connection was told to close.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }

    /// Queues an event without waiting, if it fits; false if it does not (the hub then catches
    /// its subscription up later, or closes the connection with 4008). A full queue is sent at
    /// once, lingering or not.
    pub fn try_push_event(&self, frame: Frame) -> bool {
        self.try_push(frame)
    }

    /// [`Outbox::try_push_event`] without waking the writer: `None` if the event did not fit,
    /// else whether the writer needs a wake ([`Outbox::wake`]) to send it. The hub wakes the
    /// writers of a burst of changes once, after the burst, so that each finds all of it.
    pub fn try_push_event_quietly(&self, frame: Frame) -> Option<bool> {
        self.try_push_quietly(frame)
    }

    /// Wakes the writer for what [`Outbox::try_push_event_quietly`] queued.
    pub fn wake(&self) {
        self.shared.ready.wake();
    }

    /// Queues a reply (or a replayed event), waiting for room while the client reads; a client
    /// that makes no room within the send timeout is closed with 4008. False once the
    /// connection is gone or closing (the caller stops reading).
    pub async fn send(&self, frame: Frame) -> bool {
        self.send_inner(frame, || Some(()), false).await
    }

    /// [`Outbox::send`], queueing only while `allowed` gives a guard: the guard is held while the
    /// frame is queued, so whatever ends what `allowed` checks under the same lock (and then
    /// [`Outbox::wake_senders`]) is never followed by the frame. False once it is not allowed.
    /// An event that finds no room while the socket is stalled (the client stopped reading)
    /// closes the connection with 4008 at once, as [`Outbox::try_push_event`]'s callers do.
    pub async fn send_while<G>(&self, frame: Frame, allowed: impl Fn() -> Option<G>) -> bool {
        self.send_inner(frame, allowed, true).await
    }

    async fn send_inner<G>(
        &self,
        frame: Frame,
        allowed: impl Fn() -> Option<G>,
        event: bool,
    ) -> bool {
        let mut closing = self.closing();
        let deadline = tokio::time::Instant::now() + self.bounds.send_timeout;
        loop {
            if self.is_closing() || self.is_gone() {
                return false;
            }
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before the attempt, so room made in between is not missed.
            room.as_mut().enable();
            {
                let Some(_guard) = allowed() else {
                    return false;
                };
                if self.try_push(frame.clone()) {
                    self.shared.hurry();
                    return true;
                }
            }
            if event && self.is_stalled() {
                self.close_slow("outgoing queue full and the client is not reading");
                return false;
            }
            tokio::select! {
                _ = &mut room => {}
                _ = closing.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    self.close_slow("client made no room for a reply");
                    return false;
                }
            }
        }
    }

    /// Closes the connection with 4008 (the client does not read fast enough), logging `why`.
    pub fn close_slow(&self, why: &str) {
        tracing::warn!(
            connection = self.id,
            queued_bytes = self.queued_bytes(),
            "{why}; closing with 4008"
        );
        self.close(CloseReason::SLOW_CONSUMER);
    }

    /// Whether the writer waits for the socket to take bytes (the client is not reading what
    /// the kernel already holds for it).
    pub fn is_stalled(&self) -> bool {
        self.shared.stalled.load(Ordering::Acquire)
    }

    /// Wakes whoever waits in [`Outbox::send_while`] to check again.
    pub fn wake_senders(&self) {
        self.shared.room.notify_waiters();
    }

    /// Queues `frame` if it fits (or the queue is empty); false if it does not.
    fn try_push(&self, frame: Frame) -> bool {
        let queued = self.try_push_quietly(frame);
        if queued == Some(true) {
            self.wake();
        }
        queued.is_some()
    }

    /// Queues `frame` if it fits (else `None`), without waking the writer: whether it needs a
    /// wake.
    fn try_push_quietly(&self, frame: Frame) -> Option<bool> {
        let len = frame.len();
        let before = self.shared.bytes.fetch_add(len, Ordering::AcqRel);
        let frames = self.shared.frames.fetch_add(1, Ordering::AcqRel);
        let fits =
            before == 0 || (before + len <= self.bounds.bytes && frames < self.bounds.frames);
        let queued = if fits {
            self.shared.push_quietly(Outgoing::Frame(frame))
        } else {
            None
        };
        let Some(needs_wake) = queued else {
            self.shared.remove(len);
            // Whatever waits for room: send what is queued now rather than linger.
            self.shared.hurry();
            return None;
        };
        if before < FULL_BATCH && before + len >= FULL_BATCH {
            self.shared.hurry();
        }
        Some(needs_wake)
    }

    /// Asks the writer to ping the peer (outside the bounds: it is a few bytes).
    pub fn ping(&self) {
        self.shared.push(Outgoing::Ping);
    }

    /// Queues bytes to be written as they are, at once (outside the bounds: control frames of a
    /// few bytes, at most one per frame the peer sent).
    pub fn push_raw(&self, bytes: Bytes) {
        if self.shared.push(Outgoing::Raw(bytes)) {
            self.shared.hurry();
        }
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
        // After the reason: whoever sees the flag finds the reason.
        self.shared.closing.store(true, Ordering::Release);
        self.shared.ready.wake();
        self.shared.room.notify_waiters();
    }

    /// A receiver that changes when the connection is told to close.
    pub fn closing(&self) -> watch::Receiver<Option<CloseReason>> {
        self.close.subscribe()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.gone.store(true, Ordering::Release);
        self.shared.ready.wake();
        self.shared.hurry();
    }
}

impl Drain {
    /// The next thing to send, once the queue has one; `None` once the outbox is gone and what
    /// it queued has been taken.
    pub async fn next(&mut self) -> Option<Outgoing> {
        let shared = &*self.shared;
        let ready = || {
            if let Some(item) = shared.pop() {
                return Some(Some(item));
            }
            // Queued before it went.
            shared.gone.load(Ordering::Acquire).then(|| shared.pop())
        };
        std::future::poll_fn(|cx| shared.poll_ready(cx, ready)).await
    }

    /// [`Drain::next`], or the close asked for, which comes first (what is still queued is
    /// then the caller's to drop): one wake-up source for a writer, so that its loop polls
    /// nothing else per wake.
    pub async fn next_or_close(&mut self) -> Next {
        let this = &*self;
        std::future::poll_fn(|cx| this.shared.poll_ready(cx, || this.ready_now())).await
    }

    fn ready_now(&self) -> Option<Next> {
        let shared = &*self.shared;
        if shared.closing.load(Ordering::Acquire)
            && let Some(reason) = *self.close.borrow()
        {
            return Some(Next::Close(reason));
        }
        if let Some(item) = shared.pop() {
            return Some(Next::Send(item));
        }
        // Queued before it went.
        shared
            .gone
            .load(Ordering::Acquire)
            .then(|| shared.pop().map_or(Next::End, Next::Send))
    }

    /// The next thing to send if one is queued now.
    pub fn try_next(&mut self) -> Option<Outgoing> {
        self.shared.pop()
    }

    /// Takes what is queued now, in order, handing each item to `take` until it returns true
    /// (it has enough) or the queue is empty: one lock and one wake for the whole batch, where
    /// [`Drain::try_next`] takes one of each per item.
    pub fn take_until(&mut self, take: impl FnMut(Outgoing) -> bool) {
        self.shared.take_until(take);
    }

    /// Waits for more events to join what is queued: until `deadline`, or until something is
    /// queued that should not wait (a reply, a control frame, a full batch), or the outbox is
    /// gone. The writer of a busy connection lingers so that one socket write carries many
    /// events: each write costs about as much as the bytes of dozens of events.
    pub async fn linger(&mut self, deadline: tokio::time::Instant) {
        loop {
            let hurry = self.shared.hurry.notified();
            tokio::pin!(hurry);
            hurry.as_mut().enable();
            if self.shared.urgent.load(Ordering::Acquire)
                || self.shared.gone.load(Ordering::Acquire)
            {
                return;
            }
            tokio::select! {
                _ = &mut hurry => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Tells the connection whether a write is waiting for the socket to take bytes: an event
    /// that then finds the queue full means a client that stopped reading (closed with 4008),
    /// not a burst (caught up). The writer sets it when a write does not complete at once, and
    /// clears it when it does.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::Release);
    }

    /// Whether something queued should not wait (see [`Drain::linger`]).
    pub fn is_urgent(&self) -> bool {
        self.shared.urgent.load(Ordering::Acquire)
    }

    /// The writer is taking everything queued now: what is queued from here on waits anew.
    pub fn take_all(&mut self) {
        self.shared.urgent.store(false, Ordering::Release);
    }

    /// Drops what is still queued (the connection is closing: its client resumes with `since`).
    pub fn discard(&mut self) {
        while self.try_next().is_some() {}
    }

    /// The close asked for, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.close.borrow()
    }

    /// A receiver that changes when the connection is told to close.
    pub fn close_signal(&self) -> watch::Receiver<Option<CloseReason>> {
        self.close.clone()
    }

    /// Bytes queued and not yet taken.
    pub fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.shared.drained.store(true, Ordering::Release);
        // Nothing will take these: give their memory (and their room) back now.
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(bytes: usize, frames: usize) -> Bounds {
        Bounds {
            bytes,
            frames,
            send_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn replies_wait_for_room_and_all_arrive_in_order() {
        let (outbox, mut drain) = Outbox::open(bounds(100, 8));
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = drain.next().await {
                if let Outgoing::Frame(frame) = item {
                    assert!(drain.queued_bytes() <= 100);
                    got.push(frame);
                }
            }
            got
        });
        for i in 0..10_000u32 {
            assert!(
                outbox.send(Bytes::from(format!("{i:>20}"))).await,
                "frame {i}"
            );
        }
        drop(outbox);
        let got = writer.await.unwrap();
        assert_eq!(got.len(), 10_000);
        for (i, frame) in got.iter().enumerate() {
            assert_eq!(frame, &Bytes::from(format!("{i:>20}")));
        }
    }
}
