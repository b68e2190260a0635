//! A bounded map of token buckets, one per key (a principal, a client address). A bucket that has
//! refilled to its burst behaves exactly like a missing one, so such buckets are swept out; and
//! the map never holds more than its cap.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::bucket::{Bucket, Rate};

/// Below this many buckets the map is not swept.
const MIN_SWEEP: usize = 1024;
/// At the cap, a sweep of the whole map is made at most this often; in between, a new key
/// replaces the fullest of a few buckets.
const SWEEP_PAUSE: Duration = Duration::from_secs(1);
/// How many buckets are looked at to choose the one a new key replaces.
const EVICTION_SAMPLE: usize = 8;
/// A map of at least [`MIN_SWEEP`] buckets is swept at least this often.
const IDLE_SWEEP: Duration = Duration::from_secs(10);

pub struct Buckets<K> {
    rate: Rate,
    cap: usize,
    /// Below this many buckets the map is not swept ([`MIN_SWEEP`]; tests lower it).
    min_sweep: usize,
    state: Mutex<State<K>>,
}

struct State<K> {
    buckets: HashMap<K, Bucket>,
    /// The next sweep is due at this size (twice what the last one left, so sweeps are amortized
    /// over the insertions in between).
    sweep_at: usize,
    swept: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Buckets of `rate`, at most `cap` of them (at least 1).
    pub fn new(rate: Rate, cap: usize) -> Self {
        Self::sweeping_from(rate, cap, MIN_SWEEP)
    }

    fn sweeping_from(rate: Rate, cap: usize, min_sweep: usize) -> Self {
        let cap = cap.max(1);
        let min_sweep = min_sweep.max(1);
        Self {
            rate,
            cap,
            min_sweep,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                sweep_at: min_sweep.min(cap),
                swept: None,
            }),
        }
    }

    pub fn is_off(&self) -> bool {
        self.rate.is_off()
    }

    /// Takes a token from `key`'s bucket at `now`; when there is none, how long until there is.
    pub fn take<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.rate.is_off() {
            return Ok(());
        }
        // Nothing below panics while the lock is held; a poisoned map is still consistent.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let taken = match state.buckets.get_mut(key) {
            Some(bucket) => bucket.take(self.rate, now),
            None => {
                self.make_room(&mut state, now);
                let mut bucket = Bucket::full(self.rate, now);
                let taken = bucket.take(self.rate, now);
                state.buckets.insert(key.to_owned(), bucket);
                taken
            }
        };
        // Buckets of clients that went away are dropped now and then, not only when the map grows.
        let idle = state
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= IDLE_SWEEP);
        if idle && state.buckets.len() >= self.min_sweep {
            self.sweep(&mut state, now);
        }
        taken
    }

    /// Before a new key goes in: sweeps when the map has doubled since the last sweep, and at the
    /// cap drops one bucket.
    fn make_room(&self, state: &mut State<K>, now: Instant) {
        if state.buckets.len() >= state.sweep_at {
            let at_cap = state.buckets.len() >= self.cap;
            let paused = state
                .swept
                .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_PAUSE);
            if !(at_cap && paused) {
                self.sweep(state, now);
            }
        }
        if state.buckets.len() >= self.cap {
            self.evict_one(state, now);
        }
    }

    /// Drops every bucket that has refilled (no behaviour changes).
    fn sweep(&self, state: &mut State<K>, now: Instant) {
        let rate = self.rate;
        state.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
        let left = state.buckets.len();
        state.sweep_at = left.saturating_mul(2).max(self.min_sweep).min(self.cap);
        // Give back the memory of a burst of keys that has passed.
        if state.buckets.capacity() > 4 * left.max(self.min_sweep) {
            state.buckets.shrink_to(2 * left);
        }
        state.swept = Some(now);
    }

    /// At the cap with no refilled bucket to drop: drops the fullest of a few (the one closest to
    /// behaving like no bucket). Only a client with more live keys than the cap gains from it.
    fn evict_one(&self, state: &mut State<K>, now: Instant) {
        let rate = self.rate;
        let victim = state
            .buckets
            .iter()
            .take(EVICTION_SAMPLE)
            .max_by(|a, b| a.1.tokens(rate, now).total_cmp(&b.1.tokens(rate, now)))
            .map(|(key, _)| key.clone());
        if let Some(key) = victim {
            state.buckets.remove(&key);
        }
    }

    /// How many buckets are held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Requests as (key, milliseconds since the previous request).
    fn requests(keys: u32) -> impl Strategy<Value = Vec<(u32, u64)>> {
        prop::collection::vec((0..keys, 0u64..400), 1..400)
    }

    proptest! {
        /// As long as no more keys are live than the cap, sweeping changes nothing: every
        /// answer is the one of an unbounded map of independent buckets. (Sweeps start at one
        /// bucket here, so that they happen all the time.)
        #[test]
        fn sweeping_refilled_buckets_changes_no_answer(
            cap in 1usize..6,
            per_second in 0.5f64..20.0,
            burst in 1.0f64..5.0,
            requests in requests(6),
        ) {
            let rate = Rate::new(per_second, burst);
            let map = Buckets::<u32>::sweeping_from(rate, cap, 1);
            let mut reference: HashMap<u32, Bucket> = HashMap::new();
            let mut now = Instant::now();
            let keys: Vec<u32> = requests.iter().map(|r| r.0 % cap as u32).collect();
            for ((_, dt), key) in requests.iter().zip(keys) {
                now += Duration::from_millis(*dt);
                let expected = reference
                    .entry(key)
                    .or_insert_with(|| Bucket::full(rate, now))
                    .take(rate, now);
                prop_assert_eq!(map.take(&key, now), expected, "key {}", key);
                prop_assert!(map.len() <= cap);
            }
        }

        /// However many keys come, the map holds at most its cap.
        #[test]
        fn the_map_never_exceeds_its_cap(
            cap in 1usize..40,
            requests in requests(10_000),
        ) {
            let map = Buckets::<u32>::sweeping_from(Rate::new(1.0, 10.0), cap, 1);
            let mut now = Instant::now();
            for (key, dt) in requests {
                now += Duration::from_micros(dt);
                let _ = map.take(&key, now);
                prop_assert!(map.len() <= cap, "{} > {}", map.len(), cap);
            }
        }
    }

    #[test]
    fn a_flood_of_keys_leaves_a_throttled_key_throttled_while_it_fits() {
        // One key empties its bucket; then 50,000 one-off keys come within a second. The map
        // keeps at most its cap, and sweeps only refilled buckets, so the throttled key (not
        // refilled) is still refused while the map has room for it.
        let rate = Rate::new(1.0, 2.0);
        let map = Buckets::<u32>::new(rate, 100_000);
        let t0 = Instant::now();
        assert!(map.take(&0, t0).is_ok());
        assert!(map.take(&0, t0).is_ok());
        assert!(map.take(&0, t0).is_err());
        for key in 1..50_000 {
            let _ = map.take(&key, t0 + Duration::from_micros(u64::from(key) * 10));
        }
        assert!(map.take(&0, t0 + Duration::from_millis(600)).is_err());
        // Later, when all have refilled, the next sweep drops them.
        let later = t0 + Duration::from_secs(20);
        let _ = map.take(&100_000, later);
        assert!(map.len() < 10_000, "{}", map.len());
    }
}
