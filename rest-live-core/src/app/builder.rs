//! Building an [`App`]: settings, authentication, migrations, explicit registrations; then
//! [`AppBuilder::build`] collects the registry, opens the store, and starts the feed, the pruner
//! and the job workers.

use std::sync::Arc;

use diesel_migrations::EmbeddedMigrations;

use super::{App, AppInner, checks, pruner};
use crate::auth::{Authenticator, Sessions};
use crate::config::{Config, Cors, Retention};
use crate::error::Error;
use crate::feed;
use crate::hub::Hub;
use crate::jobs::{Job, JobBinding, JobBound, Jobs, worker};
use crate::registry::Registry;
use crate::resource::Resource;
use crate::resource::binding::{Binding, Bound};
use crate::store::{DatabaseUrl, Migrations, Store, changelog};
use crate::throttle::Throttles;

impl App {
    /// Starts building an app: settings, resources, migrations, authentication.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
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

    /// Origins allowed besides the server's own ([`Config::allowed_origins`]): to open WebSockets
    /// (cross-site WebSocket hijacking protection), to make cookie-authenticated writes (CSRF)
    /// and, with [`AppBuilder::cors`], to call the HTTP API from a browser.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Lets pages of the [`AppBuilder::allowed_origins`] call the HTTP API (CORS): a preflight
    /// from one of them is answered 204, and every answer to one of them (errors included)
    /// carries `Access-Control-Allow-Origin`. A preflight from any other origin is 403, and the
    /// API's answers to it carry no CORS header. Off by default ([`Config::cors`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rest_live_core::Error> {
    /// use rest_live_core::{App, Cors};
    ///
    /// let app = App::builder()
    ///     .allowed_origins(["http://localhost:5173"])
    ///     .cors(Cors::new().allow_credentials(true))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cors(mut self, cors: Cors) -> Self {
        self.config.cors = Some(cors);
        self
    }

    /// Keeps, for each stream, the newest `changes` of the change log, for clients that resume
    /// with `since`; a client resuming from before them gets 410 `["resync required"]` and
    /// refetches. Applied at once to `since` and, in the background (in small batches, so that
    /// writes go on), to the rows within about a second. Default: 1,000,000 per stream.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rest_live_core::Error> {
    /// let app = rest_live_core::App::builder()
    ///     .retain_changes(10_000)
    ///     .retain_for(std::time::Duration::from_secs(24 * 3600))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn retain_changes(mut self, changes: u64) -> Self {
        self.config.retention.max_rows = Some(i64::try_from(changes).unwrap_or(i64::MAX));
        self
    }

    /// Keeps the changes of the last `age` in the change log (older `since` is 410), pruned
    /// every [`Config::prune_interval`]. Default: 7 days.
    pub fn retain_for(mut self, age: std::time::Duration) -> Self {
        self.config.retention.max_age = Some(age);
        self
    }

    /// Both retention bounds at once; a `None` lifts that bound
    /// (`Retention { max_age: None, max_rows: None }` keeps every change forever).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.config.retention = retention;
        self
    }

    /// `false` turns off every request throttle: per connection, per principal and per client
    /// address ([`Config::throttle`]). For benchmarks and load tests, not for production.
    pub fn throttle(mut self, on: bool) -> Self {
        self.config.throttle = on;
        self
    }

    /// Proxies whose `X-Forwarded-For` names the client ([`Config::trusted_proxies`]); the
    /// header of any other peer is ignored.
    ///
    /// ```
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let builder = rest_live_core::App::builder()
    ///     .trusted_proxies(["10.0.0.0/8".parse()?, "127.0.0.1/32".parse()?]);
    /// # Ok(()) }
    /// ```
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        self.config.trusted_proxies = proxies.into_iter().collect();
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
    ///
    /// It checks first what would otherwise fail requests later, and returns one message per
    /// problem, naming the resource and the fix: a database that cannot be opened (at once, not
    /// after the pool's retries), a resource whose table or a column of it is missing
    /// ([`Error::Database`]), a policy whose scope names a field that is not filterable
    /// ([`Error::Registry`]), an allowed origin that can never match (no scheme, a path:
    /// [`Error::Config`]).
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
                "expected streams not registered: {} (is the crate declaring them linked? see \"Registrations that vanish\" in the rest_live docs)",
                missing.join(", ")
            )));
        }
        checks::scopes(
            &registry,
            super::allows_anonymous(&self.config, self.authenticator.is_some()),
        )?;
        let unusable: Vec<String> = self
            .config
            .allowed_origins
            .iter()
            .filter_map(|o| super::origin::invalid(o).map(|why| format!("{o:?} ({why})")))
            .collect();
        if !unusable.is_empty() {
            // Such an entry would silently never match: the front-end it was meant for is refused.
            return Err(Error::Config(format!(
                "allowed_origins: {} can never match an Origin header; list origins as \"scheme://host[:port]\"",
                unusable.join(", ")
            )));
        }
        if self.config.cors.is_some() && self.config.allowed_origins.is_empty() {
            tracing::warn!(
                "CORS is on but no origin is listed in allowed_origins: no page of another origin may call the API"
            );
        }
        let url = DatabaseUrl::parse(&self.config.database_url)?;
        let store = Store::open(
            &url,
            self.config.pool_size,
            self.migrations,
            registry.streams(),
        )
        .await?;
        checks::tables(&registry, &store, &url).await?;
        let (_, seqs) = store
            .read(|c| Ok(changelog::heads(c)?))
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        let hub = Arc::new(Hub::new(
            registry.streams().into_iter().map(|s| {
                let seq = seqs
                    .iter()
                    .find(|(name, _)| name == s)
                    .map_or(0, |(_, seq)| *seq);
                (s, seq)
            }),
            self.config.event_ring,
            self.config.event_linger,
        ));
        let mut tasks = vec![feed::spawn(
            store.clone(),
            hub.clone(),
            registry.streams(),
            self.config.poll_interval,
        )];
        if let Some(listener) = feed::listen(&store, &self.config) {
            tasks.push(listener);
        }
        let pruner = pruner::spawn(
            store.clone(),
            hub.clone(),
            registry.streams(),
            self.config.clone(),
        );
        tracing::info!(streams = ?registry.streams(), "rest-live application ready");
        if self.config.drl_path.is_some() {
            registry.check_labels()?;
        }
        let jobs = Arc::new(Jobs::new(
            registry.jobs().to_vec(),
            store.clone(),
            self.config.http_prefix.clone(),
        ));
        let workers = std::sync::OnceLock::new();
        if !jobs.is_empty() {
            let _ = workers.set(worker::spawn(&jobs, &self.config));
        }
        let app = App {
            inner: Arc::new(AppInner {
                jobs,
                throttles: Throttles::new(&self.config),
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
                workers,
            }),
        };
        Ok(app)
    }
}
