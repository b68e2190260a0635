//! One subscription's delivery state, and the index of a target's subscribers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::audience::Audience;
use super::encoder::EventEncoder;
use crate::outbox::{CloseReason, Outbox};

/// Delivery state of one subscription, shared between the hub and the connection.
pub struct SubState {
    /// Only changes with a larger seq are delivered.
    after: AtomicI64,
    /// `Some` while pending: held-back frames with their seq.
    held: Mutex<Option<Held>>,
}

/// Frames held back while a subscription is pending, and their bytes.
#[derive(Default)]
struct Held {
    frames: Vec<(i64, Bytes)>,
    bytes: usize,
}

impl SubState {
    fn new(pending: bool) -> Arc<Self> {
        Arc::new(Self {
            after: AtomicI64::new(0),
            held: Mutex::new(pending.then(Held::default)),
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
    /// Which encoder, as a key of the hub's frame cache (encoders are statics: their address).
    pub(super) format: usize,
    /// Whether its frames name the subscription (else subscribers of an audience share one).
    pub(super) names_subscription: bool,
}

impl Subscriber {
    /// A live subscriber, or a pending one (see the hub's docs).
    pub fn new(
        outbox: Arc<Outbox>,
        request_id: Arc<str>,
        audience: Arc<Audience>,
        encoder: &'static dyn EventEncoder,
        pending: bool,
    ) -> Self {
        Self {
            outbox,
            request_id,
            state: SubState::new(pending),
            audience,
            encoder,
            format: encoder as *const dyn EventEncoder as *const () as usize,
            names_subscription: encoder.names_subscription(),
        }
    }

    pub(super) fn deliver(&self, seq: i64, frame: Bytes) {
        if seq <= self.state.after.load(Ordering::Acquire) {
            return;
        }
        let mut held = self.state.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.as_mut() {
            Some(held) => {
                // A pending subscription holds at most one queue's worth, like a live one.
                let bounds = self.outbox.bounds();
                let full = held.frames.len() >= bounds.frames
                    || (!held.frames.is_empty() && held.bytes + frame.len() > bounds.bytes);
                if full {
                    self.outbox.close(CloseReason::SLOW_CONSUMER);
                } else {
                    held.bytes += frame.len();
                    held.frames.push((seq, frame));
                }
            }
            None => self.outbox.push_event(frame),
        }
    }

    /// Ends the pending phase: frames held with a seq after `after` go out in order, and from now
    /// on only changes after `after` are delivered.
    pub fn release(&self, after: i64) {
        let mut held = self.state.held.lock().unwrap_or_else(|p| p.into_inner());
        self.state.after.store(after, Ordering::Release);
        for (seq, frame) in held.take().unwrap_or_default().frames {
            if seq > after {
                self.outbox.push_event(frame);
            }
        }
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

    pub(super) fn remove(&mut self, conn: u64, request_id: &str) -> bool {
        let Some(positions) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        let Some(at) = positions
            .iter()
            .position(|&i| self.subs[i].key().1 == request_id)
        else {
            return false;
        };
        let index = positions.swap_remove(at);
        if positions.is_empty() {
            self.by_conn.remove(&conn);
        }
        let last = self.subs.len() - 1;
        self.subs.swap_remove(index);
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
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Member, SubList};

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
                    list.remove(key.0, &key.1),
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
