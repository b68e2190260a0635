//! The application: configuration, registry, store, hub, jobs and background tasks, as wired by
//! [`AppBuilder`]. Every layer above (actions, connections, HTTP) works through an [`App`]; the
//! layers below never see it.

pub mod builder;
mod checks;
pub(crate) mod cors;
mod origin;
pub(crate) mod pruner;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::auth::{Authenticator, Principal, Sessions};
use crate::config::Config;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::jobs::Jobs;
use crate::registry::Registry;
use crate::resource::tx::{self, Tx};
use crate::resource::{Resource, ResourceMeta};
use crate::store::{AnyConn, Store};
use crate::throttle::{Throttles, client_ip};

/// A running rest-live application. Cheap to clone; every clone is the same application.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

/// A handle that does not keep the app alive (for its own background tasks).
#[derive(Clone)]
pub struct WeakApp(std::sync::Weak<AppInner>);

impl WeakApp {
    /// The app, if it is still running (some clone of it is alive).
    pub fn upgrade(&self) -> Option<App> {
        self.0.upgrade().map(|inner| App { inner })
    }
}

struct AppInner {
    config: Config,
    jobs: Arc<Jobs>,
    authenticator: Option<Box<dyn Authenticator>>,
    sessions: Sessions,
    throttles: Throttles,
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
    /// The app's settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Every registered stream, ordered by name (the built-in `jobs` stream included).
    pub fn streams(&self) -> Vec<&'static str> {
        self.inner.registry.streams()
    }

    /// What the resource of `stream` is (its fields, pk, group keys, type), if it is registered.
    pub fn resource(&self, stream: &str) -> Option<&'static ResourceMeta> {
        self.inner
            .registry
            .get(stream)
            .map(|binding| binding.meta())
    }

    /// The seq of the newest change of `stream` this process has handed to its subscribers.
    pub fn delivered(&self, stream: &str) -> i64 {
        self.inner.hub.delivered(stream)
    }

    /// Runs `f` on a pooled connection inside a read transaction (one consistent snapshot of
    /// your tables and rest-live's own, the change log included).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(AnyConn<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.inner.store.read(f).await
    }

    /// A handle that does not keep the app alive (for what the app itself holds, e.g. a hook's state).
    pub fn downgrade(&self) -> WeakApp {
        WeakApp(Arc::downgrade(&self.inner))
    }

    /// The declared jobs and this process's workers.
    pub(crate) fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Takes a token for a request of `principal` from `client`: a signed-in principal's bucket
    /// is shared by its connections and HTTP requests, the anonymous principal's is its client
    /// address's. When refused, how long until a token is there.
    pub(crate) fn admit(
        &self,
        principal: &Principal,
        client: Option<IpAddr>,
    ) -> Result<(), Duration> {
        self.inner.throttles.admit(principal, client)
    }

    /// The address a request comes from, for the per-address throttle: the TCP peer's, or, when
    /// the peer is one of [`Config::trusted_proxies`], the right-most address of its
    /// `X-Forwarded-For` header lines (given in order) that is not a trusted proxy. An adapter
    /// calls it for each HTTP request ([`crate::transport::HttpRequest::client`]) and WebSocket
    /// handshake ([`crate::transport::Connection::set_client`]).
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        client_ip::resolve(peer, forwarded_for, &self.inner.config.trusted_proxies)
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
        allows_anonymous(&self.inner.config, self.authenticates())
    }

    /// Checks the `Origin` of a WebSocket handshake, or of a cookie-authenticated HTTP request
    /// that writes (docs/protocol.md §6): once any authentication is configured (or
    /// [`Config::allowed_origins`] lists origins), only the server's own origin and the listed
    /// ones are allowed, and `null` never is. The server's own origin is the request's `host`
    /// (`Host` header) over http or https. A request without an Origin is not a browser's, and is
    /// judged by its credential alone.
    pub fn check_origin(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), ApiError> {
        let Some(origin) = origin.map(str::trim) else {
            return Ok(());
        };
        let listed = &self.inner.config.allowed_origins;
        if !self.authenticates() && listed.is_empty() {
            return Ok(());
        }
        let allowed = origin != "null"
            && (listed.iter().any(|a| origin::same(a, origin))
                || host.is_some_and(|host| origin::is_own(origin, host)));
        if allowed {
            Ok(())
        } else {
            Err(ApiError::OriginNotAllowed)
        }
    }

    /// Closes every open WebSocket of the principal `principal_id` with 4003 (its session was
    /// revoked, e.g. on logout); returns how many were closed. The authenticator must also stop
    /// accepting the principal's credential, or it could simply reconnect.
    pub fn revoke(&self, principal_id: &str) -> usize {
        self.inner.sessions.revoke(principal_id)
    }

    /// Closes every open WebSocket with `reason`, and every one that opens from now on (the
    /// server is shutting down: `CloseReason::GOING_AWAY`, 1001); returns how many were open.
    /// [`App::open_sockets`] tells when they are gone.
    pub fn close_all(&self, reason: crate::outbox::CloseReason) -> usize {
        self.inner.sessions.close_all(reason)
    }

    /// How many WebSockets are open (those closing included, until they are gone).
    pub fn open_sockets(&self) -> usize {
        self.inner.sessions.count()
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
    /// [`Config::job_retention`]) now, in batches like the background pruner; returns how many
    /// changes went. (The pruner runs it every [`Config::prune_interval`], and prunes a stream
    /// past its row bound within about a second.)
    pub async fn prune_now(&self) -> Result<usize, ApiError> {
        pruner::prune_all(&self.inner.store, &self.inner.config).await
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
        tx::write(&self.inner.store, Principal::system(), f).await
    }
}

/// Anonymous requests are served when the configuration says so, by default when nothing
/// authenticates.
fn allows_anonymous(config: &Config, authenticates: bool) -> bool {
    config.allow_anonymous.unwrap_or(!authenticates)
}

fn filter_object(filters: Value) -> Result<serde_json::Map<String, Value>, ApiError> {
    match filters {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(serde_json::Map::new()),
        _ => Err(ApiError::bad_request("Filters must be a JSON object.")),
    }
}
