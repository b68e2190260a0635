//! Request-rate limits: a token bucket per connection and, optionally, one per principal shared
//! by all its connections and HTTP requests. Over the limit, requests are answered 429.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` saved up. A rate of 0 means no limit.
pub struct Throttle {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl Throttle {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            refilled: Instant::now(),
        }
    }

    /// Takes a token; false when over the rate.
    pub fn admit(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One bucket per signed-in principal (anonymous requests are limited per connection only).
pub(crate) struct PrincipalThrottles {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Throttle>>,
}

/// Buckets kept at most; idle full ones are dropped first when it is reached.
const MAX_BUCKETS: usize = 100_000;

impl PrincipalThrottles {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::default(),
        }
    }

    pub fn admit(&self, principal: &crate::auth::Principal) -> bool {
        let Some(id) = &principal.id else {
            return true;
        };
        if self.rate <= 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(id) {
            buckets.clear();
        }
        buckets
            .entry(id.clone())
            .or_insert_with(|| Throttle::new(self.rate, self.burst))
            .admit()
    }
}
