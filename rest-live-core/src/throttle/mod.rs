//! Request-rate limits, as token buckets: one per WebSocket connection; one per signed-in
//! principal, shared by all its connections and HTTP requests; and one per client address,
//! shared by the anonymous requests (HTTP and WebSocket) from it. Over a limit, requests are
//! answered 429 (over HTTP with `Retry-After`). [`Config::throttle`] turns all of them off.

mod bucket;
mod buckets;
pub mod client_ip;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::auth::Principal;
use crate::config::Config;
pub use bucket::retry_after_secs;
use bucket::{Bucket, Rate};
use buckets::Buckets;

/// One connection's token bucket.
pub struct Throttle {
    rate: Rate,
    bucket: Bucket,
}

impl Throttle {
    /// `rate` requests a second, `burst` saved up (0: no limit).
    pub fn new(rate: f64, burst: f64) -> Self {
        Self::of(Rate::new(rate, burst))
    }

    /// A WebSocket connection's bucket, per [`Config::requests_per_second`] (none when
    /// [`Config::throttle`] is off).
    pub fn connection(config: &Config) -> Self {
        if config.throttle {
            Self::new(config.requests_per_second, config.request_burst)
        } else {
            Self::of(Rate::OFF)
        }
    }

    fn of(rate: Rate) -> Self {
        Self {
            rate,
            bucket: Bucket::full(rate, Instant::now()),
        }
    }

    /// Takes a token; false when over the rate.
    pub fn admit(&mut self) -> bool {
        self.bucket.take(self.rate, Instant::now()).is_ok()
    }
}

/// The application's shared buckets: per signed-in principal and per anonymous client address.
pub(crate) struct Throttles {
    principals: Buckets<String>,
    addresses: Buckets<IpAddr>,
    /// Whether "client address unknown" was logged (once).
    warned_unknown: AtomicBool,
}

impl Throttles {
    pub fn new(config: &Config) -> Self {
        let (principal, address) = if config.throttle {
            (
                Rate::new(
                    config.principal_requests_per_second,
                    config.principal_request_burst,
                ),
                Rate::new(
                    config.address_requests_per_second,
                    config.address_request_burst,
                ),
            )
        } else {
            (Rate::OFF, Rate::OFF)
        };
        Self {
            principals: Buckets::new(principal, config.max_throttle_buckets),
            addresses: Buckets::new(address, config.max_throttle_buckets),
            warned_unknown: AtomicBool::new(false),
        }
    }

    /// Takes a token for a request of `principal` from `client` (its address, if known): a
    /// signed-in principal's own bucket, else the address's. When refused, how long until a
    /// token is there. The system principal (the application's own code) is not limited.
    pub fn admit(&self, principal: &Principal, client: Option<IpAddr>) -> Result<(), Duration> {
        if let Some(id) = &principal.id {
            return self.principals.take(id.as_str(), Instant::now());
        }
        if principal.is_system() || self.addresses.is_off() {
            return Ok(());
        }
        match client {
            Some(ip) => self
                .addresses
                .take(&client_ip::throttle_key(ip), Instant::now()),
            // Not known to this adapter (not TCP, say): no address throttle rather than one
            // bucket shared by every anonymous client, which any of them could empty for all.
            None => {
                if !self.warned_unknown.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "a request's client address is unknown: anonymous requests without one are not throttled per address"
                    );
                }
                Ok(())
            }
        }
    }
}

/// Whether an HTTP request can be answered 429 (for the API's description).
pub fn limits_http(config: &Config) -> bool {
    config.throttle
        && (config.principal_requests_per_second > 0.0 || config.address_requests_per_second > 0.0)
}
