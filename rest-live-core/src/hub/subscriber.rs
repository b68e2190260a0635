//! One subscription's delivery state, and the index of a target's subscribers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::audience::Audience;
use super::encoder::EventEncoder;
use super::target::Target;
use crate::outbox::Outbox;

/// Writers to wake once a burst of events is queued.
pub(super) type Wakes = Vec<Arc<Outbox>>;

/// Delivery state of one subscription, shared between the hub and the connection.
pub struct SubState {
    /// Only changes with a larger seq are delivered.
    after: AtomicI64,
    inner: Mutex<Inner>,
    /// Who catches this subscription up when it falls behind (shared by the connection's
    /// subscriptions), and what it follows; `None` for subscriptions whose events cannot be
    /// read again from the log (a window's): those close with 4008.
    catch_up: Option<(Arc<dyn CatchUp>, Target)>,
}

/// Where a subscription's events go.
enum Phase {
    /// Straight into the connection's queue; `last` is the seq of the last one queued.
    Live { last: i64 },
    /// Held back (see the hub's docs) until released at a seq.
    Pending(Held),
    /// The connection's queue had no room: events are dropped (nothing is held) until the
    /// catch-up, which reads what came after `last` again, takes over.
    Behind { last: i64 },
    /// Unsubscribed: nothing more goes out.
    Ended,
}

/// Frames held back while a subscription is pending, and their bytes.
#[derive(Default)]
struct Held {
    frames: Vec<(i64, Bytes)>,
    bytes: usize,
    /// More came than a queue holds: the frames were dropped, and the catch-up reads them again.
    overrun: bool,
}

/// Catches a subscription up that fell behind: reads the changes after the seq it last queued
/// again (the hub's ring, then the change log), with the same target
/// ([`Subscriber::target`]) and permissions, queues them as the client makes room
/// ([`Subscriber::send_caught_up`]), and releases it at the seq it read up to, as a
/// subscription that resumes does. The connection implements it; the hub only tells it when.
pub trait CatchUp: Send + Sync {
    /// `subscriber` fell behind: start catching it up (without blocking: the hub is publishing).
    /// Called once per catch-up: not again until [`Subscriber::begin_catch_up`] says it is done.
    fn fell_behind(self: Arc<Self>, subscriber: Subscriber);
}

struct Inner {
    phase: Phase,
    /// A catch-up is running (it takes every later fall behind too).
    catching_up: bool,
}

impl SubState {
    fn new(pending: bool, catch_up: Option<(Arc<dyn CatchUp>, Target)>) -> Arc<Self> {
        let phase = if pending {
            Phase::Pending(Held::default())
        } else {
            Phase::Live { last: 0 }
        };
        Arc::new(Self {
            after: AtomicI64::new(0),
            inner: Mutex::new(Inner {
                phase,
                catching_up: false,
            }),
            catch_up,
        })
    }
}

/// One subscription: where to send, the id (as JSON text) its events carry, who it is for and
/// how its events are encoded.
#[derive(Clone)]
pub struct Subscriber {
    pub outbox: Arc<Outbox>,
    pub request_id: Arc<str>,
    pub state: Arc<SubState>,
    pub audience: Arc<Audience>,
    pub encoder: &'static dyn EventEncoder,
    /// Which encoder, as a key of the hub's frame cache.
    pub(super) format: std::any::TypeId,
    /// Whether its frames name the subscription (else subscribers of an audience share one).
    pub(super) names_subscription: bool,
    /// The request id, if short, kept here to compare without reading it.
    pub(super) short_id: ShortId,
}

/// A request id of up to 15 bytes, held in place (its length in the last byte, plus one), or
/// nothing for a longer one: two short ids are equal exactly when their `ShortId`s are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct ShortId(u128);

impl ShortId {
    /// The empty id (of frames that name no subscription).
    pub(super) const EMPTY: Self = Self(1 << 120);
    /// A long id: compare the text.
    const LONG: Self = Self(0);

    fn of(id: &str) -> Self {
        let bytes = id.as_bytes();
        if bytes.len() > 15 {
            return Self::LONG;
        }
        let mut word = [0u8; 16];
        word[..bytes.len()].copy_from_slice(bytes);
        word[15] = bytes.len() as u8 + 1;
        Self(u128::from_le_bytes(word))
    }

    /// Whether the ids are equal; `text` compares them in full when either is long.
    pub(super) fn same(self, other: Self, text: impl FnOnce() -> bool) -> bool {
        if self == Self::LONG || other == Self::LONG {
            text()
        } else {
            self == other
        }
    }
}

impl Subscriber {
    /// A live subscriber, or a pending one (see the hub's docs). With `catch_up` (who, and the
    /// subscription's target), one that falls behind its connection's queue is caught up from
    /// the log; without, the connection is closed with 4008.
    pub fn new(
        outbox: Arc<Outbox>,
        request_id: Arc<str>,
        audience: Arc<Audience>,
        encoder: &'static dyn EventEncoder,
        pending: bool,
        catch_up: Option<(Arc<dyn CatchUp>, Target)>,
    ) -> Self {
        let short_id = ShortId::of(&request_id);
        Self {
            outbox,
            request_id,
            state: SubState::new(pending, catch_up),
            audience,
            encoder,
            format: encoder.format(),
            names_subscription: encoder.names_subscription(),
            short_id,
        }
    }

    /// Asks the processor to load this subscription's state and its connection's outbox into
    /// the cache (a hint: it changes nothing).
    pub(super) fn prefetch(&self) {
        crate::outbox::prefetch(Arc::as_ptr(&self.state));
        crate::outbox::prefetch(Arc::as_ptr(&self.outbox));
    }

    /// What a subscription that can be caught up follows.
    pub fn target(&self) -> Option<&Target> {
        self.state.catch_up.as_ref().map(|(_, target)| target)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the event of change `seq` (or holds it, or drops it for a catch-up to read
    /// again). A writer that needs waking for it is added to `wakes`, for the hub to wake once
    /// it has queued the rest of the burst.
    pub(super) fn deliver(&self, seq: i64, frame: Bytes, wakes: &mut Wakes) {
        if seq <= self.state.after.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.inner();
        match &mut inner.phase {
            Phase::Live { last } => {
                let last = *last;
                if self.outbox.is_closing() {
                    return;
                }
                match self.outbox.try_push_event_quietly(frame) {
                    Some(needs_wake) => {
                        inner.phase = Phase::Live { last: seq };
                        if needs_wake {
                            wakes.push(self.outbox.clone());
                        }
                    }
                    None => self.fall_behind(&mut inner, last),
                }
            }
            Phase::Pending(held) => {
                if held.overrun {
                    return;
                }
                // A pending subscription holds at most one queue's worth, like a live one.
                let bounds = self.outbox.bounds();
                let full = held.frames.len() >= bounds.frames
                    || (!held.frames.is_empty() && held.bytes + frame.len() > bounds.bytes);
                if !full {
                    held.bytes += frame.len();
                    held.frames.push((seq, frame));
                } else if self.state.catch_up.is_some() && !self.outbox.is_stalled() {
                    // The catch-up after the release reads these again: hold nothing.
                    *held = Held {
                        overrun: true,
                        ..Held::default()
                    };
                } else {
                    self.slow_consumer();
                }
            }
            Phase::Behind { .. } | Phase::Ended => {}
        }
    }

    /// The queue had no room for the event after `last`: catch up from there, or, for a
    /// subscription that cannot be caught up or a client that stopped reading, close the
    /// connection.
    fn fall_behind(&self, inner: &mut Inner, last: i64) {
        // A client whose socket takes no more bytes has stopped reading: catching it up would
        // only wait for it (docs/protocol.md §6).
        let Some((catch_up, _)) = self
            .state
            .catch_up
            .as_ref()
            .filter(|_| !self.outbox.is_stalled())
        else {
            self.slow_consumer();
            return;
        };
        inner.phase = Phase::Behind { last };
        if !inner.catching_up {
            inner.catching_up = true;
            tracing::debug!(
                connection = self.outbox.id(),
                after = last,
                "subscription fell behind its queue; catching up"
            );
            catch_up.clone().fell_behind(self.clone());
        }
    }

    fn slow_consumer(&self) {
        self.outbox.close_slow("outgoing queue full");
    }

    /// Ends the pending phase: frames held with a seq after `after` go out in order, and from now
    /// on only changes after `after` are delivered. If more came meanwhile than the queue could
    /// take, the subscription falls behind at `after` instead and is caught up.
    pub fn release(&self, after: i64) {
        let mut inner = self.inner();
        self.state.after.store(after, Ordering::Release);
        let held = match std::mem::replace(&mut inner.phase, Phase::Live { last: after }) {
            Phase::Pending(held) => held,
            other => {
                inner.phase = other;
                return;
            }
        };
        if held.overrun {
            self.fall_behind(&mut inner, after);
            return;
        }
        let mut last = after;
        for (seq, frame) in held.frames {
            if seq <= after {
                continue;
            }
            if !self.outbox.try_push_event(frame) {
                self.fall_behind(&mut inner, last);
                return;
            }
            last = seq;
        }
        inner.phase = Phase::Live { last };
    }

    /// Starts (or goes on with) catching up: the seq to read the subscription's changes after,
    /// with its events held back from now on until [`Subscriber::release`]. `None` when it no
    /// longer needs it (it is live again, or ended): the catch-up is over.
    pub fn begin_catch_up(&self) -> Option<i64> {
        let mut inner = self.inner();
        match inner.phase {
            Phase::Behind { last } => {
                inner.phase = Phase::Pending(Held::default());
                Some(last)
            }
            _ => {
                inner.catching_up = false;
                None
            }
        }
    }

    /// Queues a frame the catch-up read again, waiting for room while the client reads (a client
    /// that makes none within the send timeout is closed with 4008). False once the subscription
    /// ended (nothing of it may follow its unsubscribe's reply) or the connection is closing.
    pub async fn send_caught_up(&self, frame: Bytes) -> bool {
        self.outbox
            .send_while(frame, || {
                let inner = self.inner();
                (!matches!(inner.phase, Phase::Ended)).then_some(inner)
            })
            .await
    }

    /// Unsubscribed: nothing more of it goes out, and a catch-up stops.
    pub(super) fn end(&self) {
        self.inner().phase = Phase::Ended;
        self.outbox.wake_senders();
    }
}

/// What a [`SubList`] holds: something keyed by (connection id, request id).
pub(super) trait Member {
    fn key(&self) -> (u64, &str);
}

impl Member for Subscriber {
    fn key(&self) -> (u64, &str) {
        (self.outbox.id(), &self.request_id)
    }
}

/// The subscribers of one target: a dense list for fan-out, indexed by connection so that
/// adding and removing one costs the same with 10 subscribers or 10,000.
pub(super) struct SubList<T = Subscriber> {
    subs: Vec<T>,
    /// Positions in `subs` of each connection's subscriptions.
    by_conn: HashMap<u64, Vec<usize>>,
}

impl<T> Default for SubList<T> {
    fn default() -> Self {
        Self {
            subs: Vec::new(),
            by_conn: HashMap::new(),
        }
    }
}

impl<T: Member> SubList<T> {
    pub(super) fn as_slice(&self) -> &[T] {
        &self.subs
    }

    pub(super) fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Whether connection `conn` has a subscription here.
    pub(super) fn has_conn(&self, conn: u64) -> bool {
        self.by_conn.contains_key(&conn)
    }

    /// Adds `sub` unless the same subscription (connection and request id) is already here.
    pub(super) fn insert(&mut self, sub: T) -> bool {
        let (conn, request_id) = sub.key();
        let positions = self.by_conn.entry(conn).or_default();
        if positions
            .iter()
            .any(|&i| self.subs[i].key().1 == request_id)
        {
            return false;
        }
        positions.push(self.subs.len());
        self.subs.push(sub);
        true
    }

    /// Removes the subscription (connection and request id) and gives it back.
    pub(super) fn remove(&mut self, conn: u64, request_id: &str) -> Option<T> {
        let positions = self.by_conn.get_mut(&conn)?;
        let at = positions
            .iter()
            .position(|&i| self.subs[i].key().1 == request_id)?;
        let index = positions.swap_remove(at);
        if positions.is_empty() {
            self.by_conn.remove(&conn);
        }
        let last = self.subs.len() - 1;
        let removed = self.subs.swap_remove(index);
        if index != last {
            // The last subscriber moved into the freed slot.
            let moved = self.subs[index].key().0;
            if let Some(p) = self
                .by_conn
                .get_mut(&moved)
                .and_then(|ps| ps.iter_mut().find(|p| **p == last))
            {
                *p = index;
            }
        }
        Some(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::{Member, ShortId, SubList};
    use proptest::prelude::*;

    proptest! {
        /// Two ids compare equal through their short forms exactly when their texts are equal,
        /// around the 15-byte edge and with multi-byte characters.
        #[test]
        fn short_ids_compare_as_their_texts(
            a in "[sé\\-]{0,17}",
            b in "[sé\\-]{0,17}",
        ) {
            let same = ShortId::of(&a).same(ShortId::of(&b), || a == b);
            prop_assert_eq!(same, a == b);
            prop_assert!(ShortId::of(&a).same(ShortId::of(&a), || true));
        }
    }

    impl Member for (u64, String) {
        fn key(&self) -> (u64, &str) {
            (self.0, &self.1)
        }
    }

    /// The index stays exact through any sequence of adds and removes: checked against a plain
    /// list on a deterministic pseudo-random sequence that revisits the same keys often.
    #[test]
    fn sub_list_matches_a_plain_list() {
        let mut list = SubList::<(u64, String)>::default();
        let mut model: Vec<(u64, String)> = Vec::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let key = (seed % 17, format!("r{}", (seed >> 8) % 5));
            if seed & (1 << 40) == 0 {
                let fresh = !model.contains(&key);
                assert_eq!(list.insert(key.clone()), fresh, "insert {key:?} at {step}");
                if fresh {
                    model.push(key);
                }
            } else {
                let present = model.iter().position(|m| *m == key);
                assert_eq!(
                    list.remove(key.0, &key.1).is_some(),
                    present.is_some(),
                    "remove {key:?}"
                );
                if let Some(i) = present {
                    model.remove(i);
                }
            }
            let mut have: Vec<_> = list.as_slice().to_vec();
            let mut want = model.clone();
            have.sort();
            want.sort();
            assert_eq!(have, want, "after step {step}");
            for (i, sub) in list.as_slice().iter().enumerate() {
                assert!(list.by_conn[&sub.0].contains(&i), "index of {sub:?}");
            }
            assert_eq!(
                list.by_conn.values().map(Vec::len).sum::<usize>(),
                model.len()
            );
        }
    }
}
