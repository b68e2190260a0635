//! Whether each socket's peer is still there: one sweeper task per endpoint checks every socket
//! a few times per shortest timeout, instead of a timer in every socket's reader (an idle
//! connection's memory is mostly its tasks, and a timer with its state was a fifth of the reader).
//!
//! Per socket it knows the bytes received (counted by the socket's IO, [`Peer::received`]), how
//! many of them had arrived at the last whole message and when that was, since when bytes of an
//! unfinished frame have been waiting, and whether a ping is out. From that, at each sweep: a
//! frame started too long ago closes the socket (1008); a socket silent for the ping interval is
//! pinged; a ping unanswered for the pong timeout closes it (1001). Pings and closes go through
//! the connection's outbox, as any other frame; a close wakes the reader, which stops reading.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rest_live_core::Config;
use rest_live_core::transport::{CloseReason, Outbox};
use tokio::time::Instant;

/// The time limits of a socket (from the app's configuration).
#[derive(Clone, Copy)]
struct Timing {
    ping_interval: Duration,
    pong_timeout: Duration,
    frame_timeout: Duration,
}

/// No such instant (a time field of [`Peer`] that is unset).
const NEVER: u64 = u64::MAX;

/// One socket's liveness, shared by its IO (which counts the bytes), its reader (which tells of
/// whole messages) and the sweeper. Times are milliseconds since the monitor's epoch.
pub struct Peer {
    /// Bytes received so far.
    received: AtomicU64,
    /// Bytes received up to the last whole message.
    at_message: AtomicU64,
    last_message: AtomicU64,
    /// When bytes of an unfinished frame were first seen ([`NEVER`]: none).
    partial_since: AtomicU64,
    /// When the ping now unanswered was sent ([`NEVER`]: none).
    pinged: AtomicU64,
    /// Where pings and closes go, once the connection is open. Weak: the outbox lives as long as
    /// the connection, which the socket's IO (holding this) outlives.
    outbox: OnceLock<Weak<Outbox>>,
    epoch: Instant,
}

impl Peer {
    fn now(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// Counts bytes that arrived (from the socket's IO).
    pub fn received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The connection is open: pings and closes go to its outbox.
    pub fn open(&self, outbox: &Arc<Outbox>) {
        let _ = self.outbox.set(Arc::downgrade(outbox));
    }

    /// A whole message arrived: the peer is there, and no frame is unfinished.
    pub fn message(&self) {
        self.at_message
            .store(self.received.load(Ordering::Relaxed), Ordering::Relaxed);
        self.last_message.store(self.now(), Ordering::Relaxed);
        self.partial_since.store(NEVER, Ordering::Relaxed);
        self.pinged.store(NEVER, Ordering::Relaxed);
    }

    /// What to do now, and the state for the next check.
    fn check(&self, timing: Timing, now: u64) -> Check {
        let frame_timeout = millis(timing.frame_timeout);
        if self.received.load(Ordering::Relaxed) != self.at_message.load(Ordering::Relaxed) {
            // Bytes came and no whole message: a frame is in progress, and must end in time.
            let since = match self.partial_since.compare_exchange(
                NEVER,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => now,
                Err(since) => since,
            };
            return if now >= since.saturating_add(frame_timeout) {
                Check::Close(CloseReason::FRAME_TIMEOUT)
            } else {
                Check::Wait
            };
        }
        // No frame in progress (one that was has ended since the last check).
        self.partial_since.store(NEVER, Ordering::Relaxed);
        match self.pinged.load(Ordering::Relaxed) {
            NEVER => {
                let last = self.last_message.load(Ordering::Relaxed);
                if now >= last.saturating_add(millis(timing.ping_interval)) {
                    self.pinged.store(now, Ordering::Relaxed);
                    Check::Ping
                } else {
                    Check::Wait
                }
            }
            at if now >= at.saturating_add(millis(timing.pong_timeout)) => {
                Check::Close(CloseReason::UNRESPONSIVE)
            }
            _ => Check::Wait,
        }
    }
}

/// What a sweep does with one socket.
enum Check {
    Wait,
    Ping,
    Close(CloseReason),
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(NEVER - 1)
}

/// The sockets of one endpoint, and their sweeper.
pub struct Monitor {
    timing: Timing,
    /// How often the sweeper runs: a quarter of the shortest limit, between 10 ms and 1 s.
    tick: Duration,
    epoch: Instant,
    peers: Mutex<Vec<Weak<Peer>>>,
    started: AtomicBool,
}

impl Monitor {
    pub fn new(config: &Config) -> Arc<Self> {
        let timing = Timing {
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            frame_timeout: config.frame_timeout,
        };
        let shortest = timing
            .ping_interval
            .min(timing.pong_timeout)
            .min(timing.frame_timeout);
        Arc::new(Self {
            timing,
            tick: (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
            epoch: Instant::now(),
            peers: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
        })
    }

    /// A new socket's liveness, watched from now on (the sweeper starts with the first socket).
    pub fn watch(self: &Arc<Self>) -> Arc<Peer> {
        let peer = Arc::new(Peer {
            received: AtomicU64::new(0),
            at_message: AtomicU64::new(0),
            last_message: AtomicU64::new(millis(self.epoch.elapsed())),
            partial_since: AtomicU64::new(NEVER),
            pinged: AtomicU64::new(NEVER),
            outbox: OnceLock::new(),
            epoch: self.epoch,
        });
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&peer));
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
        peer
    }

    /// One sweep: acts on every live socket, forgets the closed ones.
    fn sweep(&self) {
        let now = millis(self.epoch.elapsed());
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = 0;
        while i < peers.len() {
            let Some(peer) = peers[i].upgrade() else {
                peers.swap_remove(i);
                continue;
            };
            i += 1;
            let Some(outbox) = peer.outbox.get().and_then(Weak::upgrade) else {
                // Not open yet, or closed already.
                continue;
            };
            match peer.check(self.timing, now) {
                Check::Wait => {}
                Check::Ping => outbox.ping(),
                Check::Close(reason) => {
                    tracing::debug!(connection = outbox.id(), reason = reason.reason, "closing");
                    outbox.close(reason);
                }
            }
        }
        // Room kept after a crowd left is given back once it is mostly empty.
        if peers.capacity() > 64 && peers.len() < peers.capacity() / 4 {
            let keep = peers.len() * 2;
            peers.shrink_to(keep);
        }
    }
}

/// The sweeper of one endpoint: runs until the endpoint is dropped.
async fn sweep(monitor: Weak<Monitor>) {
    let Some(tick) = monitor.upgrade().map(|m| m.tick) else {
        return;
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(monitor) = monitor.upgrade() else {
            return;
        };
        monitor.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        ping_interval: Duration::from_millis(300),
        pong_timeout: Duration::from_millis(200),
        frame_timeout: Duration::from_millis(100),
    };

    fn peer() -> Peer {
        Peer {
            received: AtomicU64::new(0),
            at_message: AtomicU64::new(0),
            last_message: AtomicU64::new(0),
            partial_since: AtomicU64::new(NEVER),
            pinged: AtomicU64::new(NEVER),
            outbox: OnceLock::new(),
            epoch: Instant::now(),
        }
    }

    #[test]
    fn a_silent_peer_is_pinged_then_closed_unless_it_answers() {
        let peer = peer();
        assert!(matches!(peer.check(TIMING, 299), Check::Wait));
        assert!(matches!(peer.check(TIMING, 300), Check::Ping));
        assert!(matches!(peer.check(TIMING, 499), Check::Wait));
        assert!(
            matches!(peer.check(TIMING, 500), Check::Close(r) if r == CloseReason::UNRESPONSIVE)
        );
        // An answer (any whole message) starts the count again.
        let peer = self::peer();
        assert!(matches!(peer.check(TIMING, 300), Check::Ping));
        peer.received(2);
        peer.at_message.store(2, Ordering::Relaxed);
        peer.last_message.store(350, Ordering::Relaxed);
        peer.pinged.store(NEVER, Ordering::Relaxed);
        assert!(matches!(peer.check(TIMING, 600), Check::Wait));
        assert!(matches!(peer.check(TIMING, 650), Check::Ping));
    }

    #[test]
    fn an_unfinished_frame_must_end_within_the_frame_timeout() {
        let peer = peer();
        peer.received(3);
        assert!(matches!(peer.check(TIMING, 50), Check::Wait));
        assert!(matches!(peer.check(TIMING, 149), Check::Wait));
        assert!(
            matches!(peer.check(TIMING, 150), Check::Close(r) if r == CloseReason::FRAME_TIMEOUT)
        );
        // A frame that ended between two checks leaves no trace for the next one.
        let peer = self::peer();
        peer.received(3);
        assert!(matches!(peer.check(TIMING, 10), Check::Wait));
        peer.at_message.store(3, Ordering::Relaxed);
        assert!(matches!(peer.check(TIMING, 20), Check::Wait));
        peer.received(1);
        assert!(matches!(peer.check(TIMING, 200), Check::Wait));
        assert!(matches!(peer.check(TIMING, 299), Check::Wait));
        assert!(matches!(peer.check(TIMING, 300), Check::Close(_)));
    }
}
