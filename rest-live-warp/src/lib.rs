//! The warp adapter: [`routes`] serves every registered resource over HTTP (docs/protocol.md §2) and
//! over one multiplexed WebSocket (§1); also, each at its configurable path, the django-rest-live
//! subscription endpoint, the OpenAPI document and (when enabled) the browser inspector. It
//! translates requests and frames; all decisions are made by `rest-live-core`. [`serve`] runs
//! them (or routes of your own around them) with the connection limits of the app's
//! configuration, and shuts down gracefully.
//!
//! ```no_run
//! # async fn demo(app: rest_live_core::App) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! rest_live_warp::serve(app.clone(), rest_live_warp::routes(app), listener).await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod addr;
mod cors;
mod credentials;
mod http;
mod inspector;
mod liveness;
mod openapi;
mod serve;
mod ws;

pub use addr::{ClientAddr, client_addr};
use rest_live_core::App;
pub use serve::{Server, default_max_connections, serve};
use warp::{Filter, Rejection, Reply};

/// HTTP API ∪ WebSocket endpoint ∪ django-rest-live endpoint ∪ OpenAPI document ∪ inspector, at
/// the paths of the app's configuration (`/api`, `/ws`, `/ws/subscribe/`, `/api/openapi.json`,
/// off by default).
pub fn routes(app: App) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    ws::route(app.clone())
        .or(drl_route(&app))
        .or(openapi::route(&app))
        .or(inspector::route(&app))
        .or(http::route(app))
}

/// The django-rest-live endpoint at [`rest_live_core::Config::drl_path`], if any.
fn drl_route(app: &App) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    match app.config().drl_path.clone() {
        Some(path) => ws::endpoint(
            app.clone(),
            path,
            rest_live_core::transport::DJANGO_REST_LIVE,
        )
        .map(Reply::into_response)
        .boxed(),
        None => nothing(),
    }
}

/// A route that matches nothing (an endpoint turned off).
fn nothing() -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    warp::any()
        .and_then(|| async { Err::<warp::reply::Response, Rejection>(warp::reject::not_found()) })
        .boxed()
}

/// Splits a configured path (`/api/v1`) into its segments.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A filter matching exactly the configured path segments, consuming them.
fn path_prefix(path: &str) -> warp::filters::BoxedFilter<()> {
    segments(path)
        .into_iter()
        .fold(warp::any().boxed(), |filter, segment| {
            filter.and(warp::path(segment)).boxed()
        })
}
