//! The application: configuration, registry, store, hub and feed wired together by [`AppBuilder`].

use std::sync::Arc;
use std::time::Duration;

use diesel_migrations::EmbeddedMigrations;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::auth::{Authenticator, Principal, Sessions};
use crate::binding::{Binding, Bound};
use crate::changelog;
use crate::connection::{Connection, Outgoing};
use crate::error::{ApiError, Error};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::hub::Hub;
use crate::jobs::{Job, JobBinding, JobBound, Jobs};
use crate::registry::Registry;
use crate::resource::Resource;
use crate::store::{DatabaseUrl, Migrations, Store, Tx};
use crate::throttle::PrincipalThrottles;

/// Settings, each with a default. Every limit is here: nothing is unbounded.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    /// Connections in the pool.
    pub pool_size: u32,
    /// HTTP API prefix.
    pub http_prefix: String,
    /// WebSocket endpoint path.
    pub ws_path: String,
    /// The WebSocket endpoint speaking django-rest-live's subscription format ([`crate::drl`]);
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
    /// Frames queued for one connection before it is closed with 4008.
    pub outgoing_queue: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
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
    /// How long a connection being closed (4008, 4003) gets to flush its close frame.
    pub close_grace: Duration,
    /// Sustained requests per second one signed-in principal may make over all its connections
    /// and HTTP requests (0: no limit).
    pub principal_requests_per_second: f64,
    pub principal_request_burst: f64,
    /// Whether requests without a credential are served (as the anonymous principal). `None`:
    /// yes without an authenticator, no with one (adding authentication closes the API first).
    pub allow_anonymous: Option<bool>,
    /// Origins allowed to open WebSockets (`https://app.example.com`); empty allows any. A
    /// handshake without an Origin header (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
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
            poll_interval: Duration::from_millis(500),
            listen: true,
            retention: Retention::default(),
            prune_interval: Duration::from_secs(60),
            requests_per_second: 1000.0,
            request_burst: 1000.0,
            max_snapshot: 10_000,
            close_grace: Duration::from_secs(5),
            principal_requests_per_second: 0.0,
            principal_request_burst: 100.0,
            allow_anonymous: None,
            allowed_origins: Vec::new(),
            auth_cookie: "rest_live_token".into(),
            job_workers: 4,
            job_poll_interval: Duration::from_millis(500),
            job_lease: Duration::from_secs(30),
            job_max_attempts: 3,
            job_retention: Duration::from_secs(7 * 24 * 3600),
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

/// A running rest-live application. Cheap to clone; every clone is the same application.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

/// A handle that does not keep the app alive (for its own background tasks).
#[derive(Clone)]
pub struct WeakApp(std::sync::Weak<AppInner>);

impl WeakApp {
    pub fn upgrade(&self) -> Option<App> {
        self.0.upgrade().map(|inner| App { inner })
    }
}

struct AppInner {
    config: Config,
    jobs: Jobs,
    authenticator: Option<Box<dyn Authenticator>>,
    sessions: Sessions,
    throttles: PrincipalThrottles,
    registry: Registry,
    store: Store,
    hub: Arc<Hub>,
    tasks: Vec<JoinHandle<()>>,
    /// The job workers (they hold only a weak handle on the app).
    workers: std::sync::OnceLock<JoinHandle<()>>,
}

impl Drop for AppInner {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(self.workers.get()) {
            task.abort();
        }
    }
}

impl App {
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn downgrade(&self) -> WeakApp {
        WeakApp(Arc::downgrade(&self.inner))
    }

    /// The declared jobs and this process's workers.
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// The principal's rate limit (shared by its connections and HTTP requests).
    pub fn admit(&self, principal: &Principal) -> bool {
        self.inner.throttles.admit(principal)
    }

    /// Resolves a request's credential: a valid token gives its principal; an invalid one is 401;
    /// none is the anonymous principal where anonymous requests are allowed, else 401.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Principal, ApiError> {
        match (token, &self.inner.authenticator) {
            (Some(token), Some(auth)) => auth
                .authenticate(token)
                .await
                .ok_or(ApiError::Unauthorized("Invalid token.")),
            _ if self.allows_anonymous() => Ok(Principal::anonymous()),
            _ => Err(ApiError::Unauthorized(
                "Authentication credentials were not provided.",
            )),
        }
    }

    /// Whether the app has an [`Authenticator`] (credentials are checked; an invalid one is 401).
    pub fn authenticates(&self) -> bool {
        self.inner.authenticator.is_some()
    }

    /// Whether requests without a credential are served, as the anonymous principal.
    pub fn allows_anonymous(&self) -> bool {
        self.inner
            .config
            .allow_anonymous
            .unwrap_or(self.inner.authenticator.is_none())
    }

    /// Checks a WebSocket handshake's Origin against [`Config::allowed_origins`].
    pub fn check_origin(&self, origin: Option<&str>) -> Result<(), ApiError> {
        let allowed = &self.inner.config.allowed_origins;
        match origin {
            Some(origin) if !allowed.is_empty() && !allowed.iter().any(|a| a == origin) => {
                Err(ApiError::OriginNotAllowed)
            }
            _ => Ok(()),
        }
    }

    /// Closes every open WebSocket of the principal `principal_id` with 4003 (its session was
    /// revoked, e.g. on logout); returns how many were closed. The authenticator must also stop
    /// accepting the principal's credential, or it could simply reconnect.
    pub fn revoke(&self, principal_id: &str) -> usize {
        self.inner.sessions.revoke(principal_id)
    }

    /// Opens a WebSocket connection's state for `principal`.
    pub fn connect(&self, principal: Principal) -> (Connection, Outgoing) {
        Connection::open(self.clone(), principal)
    }

    /// Answers one HTTP API request.
    pub async fn http(&self, principal: &Principal, request: HttpRequest) -> HttpResponse {
        http::handle(self, principal, request).await
    }

    /// Creates all `rows` in one transaction; each yields its `create` event. This (and the other
    /// `bulk_*` methods) is the way to make bulk writes: unlike raw SQL, every affected row goes
    /// through hooks and the change log.
    pub async fn bulk_create<R: Resource>(&self, rows: Vec<R>) -> Result<Vec<R>, ApiError> {
        self.transaction(move |tx| tx.create_many(rows)).await
    }

    /// Applies `change` to every object matching `filters` (a JSON object of equality filters on
    /// filterable fields, e.g. `json!({"list_id": 1})`) in one transaction; each stored object
    /// yields its event, and a changed group key moves the object between groups.
    pub async fn bulk_update<R, F>(&self, filters: Value, change: F) -> Result<Vec<R>, ApiError>
    where
        R: Resource,
        F: FnMut(&mut R) + Send + 'static,
    {
        let filters = filter_object(filters)?;
        self.transaction(move |tx| tx.update_where(&filters, change))
            .await
    }

    /// Deletes every object matching `filters` in one transaction; each yields its `delete` event.
    pub async fn bulk_delete<R: Resource>(&self, filters: Value) -> Result<usize, ApiError> {
        let filters = filter_object(filters)?;
        self.transaction(move |tx| tx.delete_where::<R>(&filters))
            .await
    }

    /// Prunes the change log (per [`Config::retention`]) and finished jobs (per
    /// [`Config::job_retention`]) now; returns how many changes went. (It also runs every
    /// [`Config::prune_interval`].)
    pub async fn prune_now(&self) -> Result<usize, ApiError> {
        prune(&self.inner.store, &self.inner.config).await
    }

    /// Runs `f` in one write transaction: its writes commit together and their events go out
    /// after the commit, in order; an error rolls all of them back and sends nothing.
    ///
    /// ```no_run
    /// # async fn demo(app: rest_live_core::App) -> Result<(), rest_live_core::ApiError> {
    /// app.transaction(|tx| {
    ///     // tx.create(…)?; tx.update(…)?; tx.delete(…)?;
    ///     Ok(())
    /// })
    /// .await
    /// # }
    /// ```
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.inner.store.write(Principal::system(), f).await
    }
}

/// Builds an [`App`]: `App::builder().database_url("sqlite://todo.db").build().await?`.
#[derive(Default)]
pub struct AppBuilder {
    config: Config,
    authenticator: Option<Box<dyn Authenticator>>,
    migrations: Migrations,
    explicit: Vec<&'static dyn Binding>,
    explicit_jobs: Vec<&'static dyn JobBinding>,
    expected: Vec<String>,
}

impl AppBuilder {
    /// `sqlite://path.db` (created if missing) or `sqlite::memory:`.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.config.database_url = url.into();
        self
    }

    /// The application's migrations for SQLite, applied after rest-live's own at start-up.
    pub fn sqlite_migrations(mut self, migrations: EmbeddedMigrations) -> Self {
        self.migrations.sqlite.push(migrations);
        self
    }

    /// The application's migrations for PostgreSQL, applied after rest-live's own at start-up.
    pub fn postgres_migrations(mut self, migrations: EmbeddedMigrations) -> Self {
        self.migrations.postgres.push(migrations);
        self
    }

    /// Registers a resource explicitly. Registrations are normally collected automatically; this is
    /// the remedy when they vanish because the binary never names the crate that declares them.
    pub fn register<R: Resource>(mut self) -> Self {
        self.explicit.push(&Bound::<R>::INSTANCE);
        self
    }

    /// Registers a job explicitly (normally [`crate::register_job!`] does).
    pub fn job<J: Job>(mut self) -> Self {
        self.explicit_jobs.push(&JobBound::<J>::INSTANCE);
        self
    }

    /// Fails start-up unless each of these streams is registered.
    pub fn expect_streams<I, S>(mut self, streams: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expected.extend(streams.into_iter().map(Into::into));
        self
    }

    /// How requests are authenticated (a token from `Authorization: Bearer`, the auth cookie, or
    /// a `token` query parameter). With one, anonymous requests are refused (401) unless
    /// [`AppBuilder::allow_anonymous`] says otherwise.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Box::new(authenticator));
        self
    }

    /// Serve requests without a credential as the anonymous principal (policies decide what it
    /// may do).
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.config.allow_anonymous = Some(allow);
        self
    }

    /// Origins allowed to open WebSockets (cross-site WebSocket hijacking protection).
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the whole configuration (the database URL included).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Adjusts the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Collects the registry, opens the database, runs migrations and starts the feed.
    pub async fn build(self) -> Result<App, Error> {
        let registry = Registry::collect(&self.explicit, &self.explicit_jobs)?;
        let missing: Vec<&str> = self
            .expected
            .iter()
            .map(String::as_str)
            .filter(|s| registry.get(s).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Registry(format!(
                "expected streams not registered: {} (is the crate declaring them linked? see rest_live::registry)",
                missing.join(", ")
            )));
        }
        let url = DatabaseUrl::parse(&self.config.database_url)?;
        let store = Store::open(
            &url,
            self.config.pool_size,
            self.migrations,
            registry.streams(),
        )
        .await?;
        let (_, seqs) = store
            .read(|c| Ok(changelog::heads(c)?))
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        let hub = Arc::new(Hub::new(registry.streams().into_iter().map(|s| {
            let seq = seqs
                .iter()
                .find(|(name, _)| name == s)
                .map_or(0, |(_, seq)| *seq);
            (s, seq)
        })));
        let mut tasks = vec![crate::feed::spawn(
            store.clone(),
            hub.clone(),
            registry.streams(),
            self.config.poll_interval,
        )];
        if let Some(listener) = crate::feed::listen(&store, &self.config) {
            tasks.push(listener);
        }
        let pruner = {
            let (store, config, every) = (
                store.clone(),
                self.config.clone(),
                self.config.prune_interval,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match prune(&store, &config).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(removed = n, "change log pruned"),
                        Err(error) => tracing::warn!(%error, "pruning the change log failed"),
                    }
                }
            })
        };
        tracing::info!(streams = ?registry.streams(), "rest-live application ready");
        let jobs = Jobs::new(registry.jobs().to_vec());
        let app = App {
            inner: Arc::new(AppInner {
                jobs,
                throttles: PrincipalThrottles::new(
                    self.config.principal_requests_per_second,
                    self.config.principal_request_burst,
                ),
                config: self.config,
                authenticator: self.authenticator,
                sessions: Sessions::default(),
                registry,
                store,
                hub,
                tasks: {
                    tasks.push(pruner);
                    tasks
                },
                workers: std::sync::OnceLock::new(),
            }),
        };
        if !app.jobs().is_empty() {
            let _ = app
                .inner
                .workers
                .set(crate::jobs::spawn_workers(app.clone()));
        }
        Ok(app)
    }
}

async fn prune(store: &Store, config: &Config) -> Result<usize, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let before = |age: Duration| now.saturating_sub(age).as_millis() as i64;
    let cutoff = config.retention.max_age.map(before);
    let keep = config.retention.max_rows;
    let jobs_before = before(config.job_retention);
    store
        .maintain(move |mut c| {
            crate::jobs::prune(c.reborrow(), jobs_before)?;
            Ok(changelog::prune(c, cutoff, keep)?)
        })
        .await
}

fn filter_object(filters: Value) -> Result<serde_json::Map<String, Value>, ApiError> {
    match filters {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(serde_json::Map::new()),
        _ => Err(ApiError::bad_request("Filters must be a JSON object.")),
    }
}
