//! The warp adapter: [`routes`] serves every registered resource over HTTP (PROTOCOL.md §2) and
//! over one multiplexed WebSocket (§1). It translates requests and frames; all decisions are made
//! by `rest-live-core`.
//!
//! ```no_run
//! # async fn demo(app: rest_live_core::App) {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await.unwrap();
//! warp::serve(rest_live_warp::routes(app)).incoming(listener).run().await;
//! # }
//! ```

mod credentials;
mod http;
mod ws;

use rest_live_core::App;
use warp::{Filter, Rejection, Reply};

/// HTTP API ∪ WebSocket endpoint, at the paths of the app's configuration (`/api`, `/ws`).
pub fn routes(app: App) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    ws::route(app.clone()).or(http::route(app))
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
