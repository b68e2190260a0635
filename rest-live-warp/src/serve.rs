//! [`serve`]: the way to run a rest-live app. It owns the accept loop, so that every limit of a
//! connection is ours rather than left open by the HTTP server:
//!
//! - request headers must arrive within [`Config::header_timeout`] of a connection opening and of
//!   each response (so an idle keep-alive connection is closed after that long too);
//! - at most [`Config::max_connections`] connections are open, HTTP and WebSocket together (a
//!   WebSocket counts until its socket is closed); beyond, a new connection is closed at once;
//! - on its shutdown signal it stops accepting, lets the requests in flight finish, closes every
//!   WebSocket with 1001 and returns within [`Config::shutdown_grace`], dropping what is left.
//!
//! Each request carries the connection's peer address as a [`ClientAddr`] extension.
//!
//! [`Config::header_timeout`]: rest_live_core::Config::header_timeout
//! [`Config::max_connections`]: rest_live_core::Config::max_connections
//! [`Config::shutdown_grace`]: rest_live_core::Config::shutdown_grace

mod fd_limit;
mod socket;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rest_live_core::App;
use rest_live_core::transport::CloseReason;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::{Filter, Rejection, Reply};

use crate::ClientAddr;
pub(crate) use socket::Socket;
use socket::Sockets;

pub use fd_limit::default_max_connections;

/// Serves `filter` (usually [`crate::routes`]`(app.clone())`, perhaps behind routes of your own)
/// on `listener`, with the limits of `app`'s configuration. Await it; it runs until the signal
/// given to [`Server::with_shutdown`], if any.
///
/// ```no_run
/// # async fn demo(app: rest_live_core::App) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// let routes = rest_live_warp::routes(app.clone());
/// rest_live_warp::serve(app, routes, listener)
///     .with_shutdown(async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await;
/// # Ok(())
/// # }
/// ```
///
/// Dropping the future drops every connection it serves, WebSockets included.
pub fn serve<F, R>(app: App, filter: F, listener: TcpListener) -> Server<F>
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    Server {
        app,
        filter,
        listener,
        shutdown: Box::pin(std::future::pending()),
    }
}

/// A server to await, made by [`serve`].
pub struct Server<F> {
    app: App,
    filter: F,
    listener: TcpListener,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<F> Server<F> {
    /// Shuts down gracefully once `signal` resolves (Ctrl-C or SIGTERM, say): stops accepting
    /// (the listener is closed), lets the HTTP requests in flight finish (each connection closes
    /// after its response), closes every WebSocket with 1001 (going away), and returns once every
    /// connection is closed or [`Config::shutdown_grace`](rest_live_core::Config::shutdown_grace)
    /// has passed, closing what is left.
    pub fn with_shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Box::pin(signal);
        self
    }
}

impl<F, R> IntoFuture for Server<F>
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self))
    }
}

/// Where the server is, as its connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Finish the request in flight, then close.
    Draining,
    /// Close now.
    Forced,
}

/// How long the accept loop waits after an error that is not one connection's (out of file
/// descriptors, say), for some to be freed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one log line per this long for a repeated event (refused connections, accept errors).
const LOG_EVERY: Duration = Duration::from_secs(10);

async fn run<F, R>(server: Server<F>)
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    let Server {
        app,
        filter,
        listener,
        mut shutdown,
    } = server;
    let config = app.config();
    let max = fd_limit::max_connections(config.max_connections);
    let sockets = Sockets::new(max);
    // Whatever way this future ends (the grace elapsed, or it was dropped), no socket outlives it.
    let _close_left = CloseLeft(sockets.clone());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let (phase, phases) = watch::channel(Phase::Serving);
    let mut refused = Repeated::default();
    let mut accept_errors = Repeated::default();
    tracing::info!(max_connections = max, header_timeout = ?config.header_timeout, "serving");

    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The connection went before it was accepted: nothing to wait for.
            Err(error) if is_per_connection(&error) => continue,
            Err(error) => {
                if let Some(errors) = accept_errors.hit() {
                    tracing::error!(%error, errors, "accepting connections failed; retrying");
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Some(socket) = sockets.admit(stream) else {
            if let Some(refused) = refused.hit() {
                tracing::warn!(
                    max_connections = max,
                    refused,
                    "connection limit reached: new connections are closed at once"
                );
            }
            continue;
        };
        // The routes, with the connection's peer address in each request's extensions.
        let routes = TowerToHyperService::new(warp::service(filter.clone()));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer));
            hyper::service::Service::call(&routes, request)
        });
        let connection = http
            .serve_connection(TokioIo::new(socket), service)
            .with_upgrades();
        let mut phases = phases.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = reached(&mut phases, Phase::Draining) => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = connection.as_mut() => result,
                        () = reached(&mut phases, Phase::Forced) => Ok(()),
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    phase.send_replace(Phase::Draining);
    let websockets = app.close_all(CloseReason::GOING_AWAY);
    let grace = config.shutdown_grace;
    tracing::info!(
        connections = sockets.open(),
        websockets,
        ?grace,
        "shutting down: no longer accepting; finishing requests, closing websockets (1001)"
    );
    if tokio::time::timeout(grace, sockets.all_closed())
        .await
        .is_ok()
    {
        tracing::info!("shut down: every connection closed");
    } else {
        tracing::warn!(
            left = sockets.open(),
            ?grace,
            "shutdown grace elapsed: closing the connections left"
        );
        phase.send_replace(Phase::Forced);
    }
}

/// Resolves once the server reaches `phase` (or is gone).
async fn reached(phases: &mut watch::Receiver<Phase>, phase: Phase) {
    let _ = phases.wait_for(|now| *now >= phase).await;
}

/// Errors of one connection that ended before it was accepted; the next one may be fine.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// Closes the sockets still open when the server's future ends.
struct CloseLeft(Arc<Sockets>);

impl Drop for CloseLeft {
    fn drop(&mut self) {
        self.0.close_all();
    }
}

/// Counts a repeated event, to log it at most once per [`LOG_EVERY`].
#[derive(Default)]
struct Repeated {
    logged: Option<Instant>,
    since: u64,
}

impl Repeated {
    /// Counts one; returns how many there were since the last log line when one is due now.
    fn hit(&mut self) -> Option<u64> {
        self.since += 1;
        let due = self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if !due {
            return None;
        }
        self.logged = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}
