//! The token bucket: a sustained rate with a burst saved up, and how long a refused request must
//! wait for its next token.

use std::time::{Duration, Instant};

/// `per_second` tokens a second, at most `burst` saved up; a rate of 0 (or not a number) is no
/// limit.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            // `f64::max` ignores NaN: a NaN burst is 1.
            per_second: if per_second > 0.0 { per_second } else { 0.0 },
            burst: burst.max(1.0),
        }
    }

    pub const OFF: Self = Self {
        per_second: 0.0,
        burst: 1.0,
    };

    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }

    /// The tokens `bucket` holds at `now`.
    fn tokens(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        // Written so that an infinite rate with no time elapsed does not make NaN.
        if elapsed > 0.0 {
            (bucket.tokens + elapsed * self.per_second).min(self.burst)
        } else {
            bucket.tokens.min(self.burst)
        }
    }
}

/// A bucket's state; its [`Rate`] is kept by its owner (one rate for a whole map of buckets).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket with its whole burst available.
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    /// Takes a token at `now`; when there is none, how long until there is one. A refused
    /// request takes nothing.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        if rate.is_off() {
            return Ok(());
        }
        let tokens = rate.tokens(self, now);
        self.at = self.at.max(now);
        if tokens >= 1.0 {
            self.tokens = tokens - 1.0;
            Ok(())
        } else {
            self.tokens = tokens;
            let wait = (1.0 - tokens) / rate.per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }

    /// Whether the bucket has refilled to its burst by `now`: it is then the same as no bucket.
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        rate.tokens(self, now) >= rate.burst
    }

    /// The tokens it holds at `now` (to choose which bucket to drop first).
    pub fn tokens(&self, rate: Rate, now: Instant) -> f64 {
        rate.tokens(self, now)
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0));
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_then_the_rate() {
        let rate = Rate::new(2.0, 3.0);
        let t0 = Instant::now();
        let mut bucket = Bucket::full(rate, t0);
        for _ in 0..3 {
            assert_eq!(bucket.take(rate, t0), Ok(()));
        }
        // Empty: one token comes in half a second.
        assert_eq!(bucket.take(rate, t0), Err(Duration::from_millis(500)));
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(bucket.take(rate, t1), Err(Duration::from_millis(250)));
        let t2 = t0 + Duration::from_millis(500);
        assert_eq!(bucket.take(rate, t2), Ok(()));
        assert!(!bucket.is_full(rate, t2));
        assert!(bucket.is_full(rate, t2 + Duration::from_millis(1500)));
    }

    #[test]
    fn off_admits_everything() {
        let t0 = Instant::now();
        for rate in [Rate::OFF, Rate::new(0.0, 5.0), Rate::new(f64::NAN, 5.0)] {
            let mut bucket = Bucket::full(rate, t0);
            assert!((0..10_000).all(|_| bucket.take(rate, t0).is_ok()));
        }
    }

    #[test]
    fn a_tiny_rate_waits_long_without_panicking() {
        let rate = Rate::new(1e-300, 1.0);
        let t0 = Instant::now();
        let mut bucket = Bucket::full(rate, t0);
        assert_eq!(bucket.take(rate, t0), Ok(()));
        assert_eq!(bucket.take(rate, t0), Err(Duration::MAX));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(20)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }
}
