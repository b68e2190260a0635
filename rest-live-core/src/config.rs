//! Settings, each with a default. Every limit is here: nothing is unbounded.

use std::time::Duration;

use ipnet::IpNet;

use crate::error::ApiError;

/// Settings, each with a default. Every limit is here: nothing is unbounded.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database: `sqlite://path.db` (created if missing), `sqlite::memory:`, or `postgres://…` (with the `postgres` feature).
    pub database_url: String,
    /// Connections in the pool.
    pub pool_size: u32,
    /// HTTP API prefix.
    pub http_prefix: String,
    /// WebSocket endpoint path.
    pub ws_path: String,
    /// The WebSocket endpoint speaking django-rest-live's subscription format (`crate::protocol::drl`);
    /// `None` turns it off.
    pub drl_path: Option<String>,
    /// Where the OpenAPI 3.1 document of the HTTP API is served; `None` turns it off.
    pub openapi_path: Option<String>,
    /// Where the browser inspector (a page to try every stream and action, with a live log) is
    /// served, and its metadata at `<path>/meta`. Off by default: turn it on in development.
    pub inspector_path: Option<String>,
    /// `list` page size when the client gives none.
    pub default_page_size: i64,
    /// Largest `list` page; larger requests are clamped to it.
    pub max_page_size: i64,
    /// Largest WebSocket frame accepted; larger ones close the connection with 1009.
    pub max_frame_bytes: usize,
    /// Each WebSocket's read buffer (larger frames are read in several steps). It is most of an
    /// idle connection's memory: 4 KiB holds a typical request in one read.
    pub ws_read_buffer_bytes: usize,
    /// Largest HTTP request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Unsent frames one connection may have queued before it is closed with 4008 (besides
    /// [`Config::queue_bytes`]).
    pub outgoing_queue: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Live queries (PROTOCOL §4) one connection may hold, within
    /// [`Config::max_subscriptions`]; beyond, `subscribe` is answered 429.
    pub max_live_queries: usize,
    /// How often the feed polls the change log for commits of other processes. On PostgreSQL the
    /// listener wakes it at once; polling is the fallback while the listener reconnects.
    pub poll_interval: Duration,
    /// PostgreSQL: LISTEN for other processes' commits on a dedicated connection.
    pub listen: bool,
    /// How much of the change log is kept for clients resuming with `since`.
    pub retention: Retention,
    /// How often the change log is pruned.
    pub prune_interval: Duration,
    /// Sustained requests per second one WebSocket connection may make (0: no limit); beyond
    /// it, requests are answered 429.
    pub requests_per_second: f64,
    /// Requests a connection may make in a burst above the sustained rate.
    pub request_burst: f64,
    /// Largest group a `snapshot: true` subscription returns; a larger one is 400.
    pub max_snapshot: i64,
    /// How long a connection being closed (4008, 4003, 1001…) gets to send its close frame, and
    /// then for the client to answer it, before the TCP connection is dropped.
    pub close_grace: Duration,
    /// Sustained requests per second one signed-in principal may make over all its connections
    /// and HTTP requests (0: no limit). Default 50: far above what a person's pages and sockets
    /// send, far below what a script hammering the API does.
    pub principal_requests_per_second: f64,
    /// Requests a principal may make in a burst above the sustained rate (default 200: a page
    /// load firing every request at once).
    pub principal_request_burst: f64,
    /// Whether requests without a credential are served (as the anonymous principal). `None`:
    /// yes without an authenticator, no with one (adding authentication closes the API first).
    pub allow_anonymous: Option<bool>,
    /// Origins allowed besides the server's own (`https://app.example.com`, compared by scheme,
    /// host and port): to open WebSockets, to make cookie-authenticated writes and, with
    /// [`Config::cors`], to call the HTTP API from a browser. Empty, and without authentication,
    /// any origin may open a WebSocket ([`crate::App::check_origin`]); CORS allows only listed
    /// origins. A handshake without an Origin header (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// Cross-origin requests to the HTTP API from the [`Config::allowed_origins`] (CORS); `None`,
    /// the default, sends no CORS header and leaves `OPTIONS` to the API (405).
    pub cors: Option<Cors>,
    /// The cookie holding a token, for browsers.
    pub auth_cookie: String,
    /// Jobs one process runs at a time.
    pub job_workers: usize,
    /// How often workers look for jobs queued by other processes (local ones wake them at once).
    pub job_poll_interval: Duration,
    /// A running job's worker refreshes its claim this often (a third of it); a job whose claim
    /// is older (its process died) is run again.
    pub job_lease: Duration,
    /// Runs of one job at most (the first included) before it fails with "worker lost".
    pub job_max_attempts: u32,
    /// Finished jobs are kept this long, then pruned.
    pub job_retention: Duration,
    // Slow, stalled and idle WebSocket peers (docs/protocol.md §6).
    /// Unsent bytes one connection may have queued (replies and events together) before it is
    /// closed with 4008. A frame larger than this is still sent when nothing else is queued.
    pub queue_bytes: usize,
    /// How long a reply waits for room in a full queue (the connection reads no further request
    /// meanwhile) before the client is taken as not reading and closed with 4008.
    pub send_timeout: Duration,
    /// How long the writer of a busy connection may hold events so that they go out together:
    /// a connection that sent something less than this long ago waits until this long after
    /// it, or until a reply or 64 KiB is queued, then sends everything at once. One socket write
    /// costs about as much as the bytes of dozens of events, so under load this multiplies the
    /// events a server delivers per second (BENCHMARKS.md); an occasional event, and every
    /// reply, goes out at once. `Duration::ZERO` sends each event as soon as it is queued.
    /// It also bounds how long the hub holds back waking writers while it queues a burst of
    /// commits (so that each writer sends the whole burst at once).
    pub event_linger: Duration,
    /// How many of each stream's last changes are kept in memory for subscribers that fall
    /// behind. A subscription whose event finds its connection's queue full is not closed: it is
    /// caught up, from these changes while they still hold what it missed, from the change log
    /// once it has fallen off them (docs/protocol.md §6). `0` keeps none: every catch-up reads
    /// the log.
    pub event_ring: usize,
    /// A connection from which nothing has arrived for this long is pinged.
    pub ping_interval: Duration,
    /// A pinged connection from which nothing arrives for this long is closed (1001): the peer is
    /// gone. A live client's WebSocket library answers pings by itself, so an idle subscriber is
    /// never closed.
    pub pong_timeout: Duration,
    /// A frame the client started must be complete within this long, or the connection is closed
    /// (1008): a peer cannot hold a connection by sending a frame a byte at a time.
    pub frame_timeout: Duration,
    // Throttles (HTTP, per principal, per client address).
    /// Whether requests are throttled at all: `false` turns off every throttle (per connection,
    /// per principal, per client address) whatever the rates say, e.g. for benchmarks.
    pub throttle: bool,
    /// Sustained requests per second the anonymous principal may make from one client address,
    /// over HTTP and WebSocket together (0: no limit). An IPv6 address counts by its /64. Many
    /// people can share an address (NAT): raise it for a busy public, anonymous API.
    pub address_requests_per_second: f64,
    /// Requests an address may make anonymously in a burst above the sustained rate.
    pub address_request_burst: f64,
    /// Proxies (addresses or networks, `"10.0.0.0/8".parse()?`) whose `X-Forwarded-For` is
    /// believed: a request from one of them comes from the right-most address in that header
    /// which is not itself a trusted proxy. From any other peer the header is ignored. Empty by
    /// default: the client is the TCP peer.
    pub trusted_proxies: Vec<IpNet>,
    /// Buckets each of the per-principal and per-address throttles keeps at most (about 100 bytes
    /// each); refilled ones are dropped first, so only more live clients than this loosen it.
    pub max_throttle_buckets: usize,
    /// `serve`: a connection must send complete request headers within this long after it opens
    /// and after each response; else it is closed. An idle keep-alive connection is therefore
    /// closed after this long too.
    pub header_timeout: Duration,
    /// `serve`: open connections, HTTP and WebSocket together (a WebSocket counts for its whole
    /// life); beyond it, new connections are closed at once. `None`: derived from the process's
    /// open-file limit (its soft limit raised to the hard one, less a tenth, and at least 64,
    /// kept for files and database connections; see `rest_live_warp::serve`).
    pub max_connections: Option<usize>,
    /// `serve`: once told to stop, how long in-flight requests and closing WebSockets get before
    /// what is left is dropped.
    pub shutdown_grace: Duration,
}

/// Change-log retention. A client resuming from before what is kept gets 410 and refetches.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Changes older than this are pruned.
    pub max_age: Option<Duration>,
    /// Per stream, at most this many of the newest changes are kept.
    pub max_rows: Option<i64>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_rows: Some(1_000_000),
        }
    }
}

/// How the HTTP API answers browsers calling it from another origin (CORS): a front-end served
/// from another host or port. The origins are [`Config::allowed_origins`], the very list that
/// admits that front-end's WebSockets and cookie-authenticated writes, so an origin CORS lets in
/// is refused nowhere else. A response names the request's origin (never `*`) and says
/// `Vary: Origin`; `null` is never allowed.
///
/// ```
/// # fn demo() {
/// use rest_live_core::{App, Cors};
///
/// let builder = App::builder()
///     .allowed_origins(["http://localhost:5173"])
///     .cors(Cors::new().allow_credentials(true));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Cors {
    /// Methods a preflight allows (`Access-Control-Allow-Methods`). Default: every method of the
    /// API, `GET, HEAD, POST, PUT, PATCH, DELETE`.
    pub methods: Vec<String>,
    /// Request headers a preflight allows (`Access-Control-Allow-Headers`). Default:
    /// `authorization, content-type`.
    pub headers: Vec<String>,
    /// Whether the browser may send cookies and let the page read the answer
    /// (`Access-Control-Allow-Credentials: true`). Default: no.
    pub credentials: bool,
    /// How long a browser may reuse a preflight's answer (`Access-Control-Max-Age`). Default:
    /// 10 minutes.
    pub max_age: Duration,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
            headers: ["authorization", "content-type"].map(String::from).to_vec(),
            credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

impl Cors {
    /// The defaults: every method of the API, the `Authorization` and `Content-Type` headers, no
    /// credentials, 10 minutes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The methods a preflight allows, instead of the default ones.
    pub fn allow_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.methods = methods
            .into_iter()
            .map(|m| m.into().to_ascii_uppercase())
            .collect();
        self
    }

    /// The request headers a preflight allows, instead of the default ones.
    pub fn allow_headers<I, S>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.headers = headers
            .into_iter()
            .map(|h| h.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Whether the browser may send cookies (the auth cookie) and let the page read the answer.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// How long a browser may reuse a preflight's answer.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://rest-live.db".into(),
            pool_size: 8,
            http_prefix: "/api".into(),
            ws_path: "/ws".into(),
            drl_path: Some("/ws/subscribe/".into()),
            openapi_path: Some("/api/openapi.json".into()),
            inspector_path: None,
            default_page_size: 25,
            max_page_size: 1000,
            max_frame_bytes: 1 << 20,
            ws_read_buffer_bytes: 4096,
            max_body_bytes: 1 << 20,
            outgoing_queue: 1024,
            max_subscriptions: 1000,
            max_live_queries: 100,
            poll_interval: Duration::from_millis(500),
            listen: true,
            retention: Retention::default(),
            prune_interval: Duration::from_secs(60),
            requests_per_second: 1000.0,
            request_burst: 1000.0,
            max_snapshot: 10_000,
            close_grace: Duration::from_secs(5),
            principal_requests_per_second: 50.0,
            principal_request_burst: 200.0,
            allow_anonymous: None,
            allowed_origins: Vec::new(),
            cors: None,
            auth_cookie: "rest_live_token".into(),
            job_workers: 4,
            job_poll_interval: Duration::from_millis(500),
            job_lease: Duration::from_secs(30),
            job_max_attempts: 3,
            job_retention: Duration::from_secs(7 * 24 * 3600),
            queue_bytes: 4 << 20,
            send_timeout: Duration::from_secs(10),
            event_linger: Duration::from_millis(20),
            event_ring: 1024,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(20),
            frame_timeout: Duration::from_secs(10),
            // Throttles (HTTP, per principal, per client address).
            throttle: true,
            address_requests_per_second: 50.0,
            address_request_burst: 200.0,
            trusted_proxies: Vec::new(),
            max_throttle_buckets: 100_000,
            header_timeout: Duration::from_secs(10),
            max_connections: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Validates and fills in `list` paging.
    pub fn page(&self, limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
        let limit = match limit {
            // A default configured above the maximum is clamped like a requested size.
            None => self.default_page_size.min(self.max_page_size),
            Some(l) if l < 1 => {
                return Err(ApiError::bad_request("\"limit\": must be at least 1."));
            }
            Some(l) => l.min(self.max_page_size),
        };
        let offset = match offset {
            None => 0,
            Some(o) if o < 0 => {
                return Err(ApiError::bad_request("\"offset\": must not be negative."));
            }
            Some(o) => o,
        };
        Ok((limit, offset))
    }
}
