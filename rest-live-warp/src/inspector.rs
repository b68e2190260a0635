//! The browser inspector: one self-contained page (`inspector.html`, embedded; no CDN, no build
//! step) served at [`rest_live_core::Config::inspector_path`], and what it shows about the app as
//! JSON at `<path>/meta`: every stream with its fields, group keys and actions, and the endpoints.
//! Off unless the path is set: it is a development tool.

use bytes::Bytes;
use rest_live_core::App;
use rest_live_core::transport;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, header};
use warp::{Filter, Reply};

const PAGE: &str = include_str!("inspector.html");

/// `GET <inspector_path>` (the page) and `GET <inspector_path>/meta` (the metadata).
pub fn route(app: &App) -> BoxedFilter<(warp::reply::Response,)> {
    let Some(path) = app.config().inspector_path.clone() else {
        return crate::nothing();
    };
    let meta =
        Bytes::from(serde_json::to_vec(&transport::inspector_metadata(app)).unwrap_or_default());
    let page = crate::path_prefix(&path)
        .and(warp::path::end())
        .and(warp::get())
        .map(|| {
            reply(
                Bytes::from_static(PAGE.as_bytes()),
                "text/html; charset=utf-8",
            )
        });
    let meta = crate::path_prefix(&path)
        .and(warp::path("meta"))
        .and(warp::path::end())
        .and(warp::get())
        .map(move || reply(meta.clone(), "application/json"));
    page.or(meta).unify().boxed()
}

fn reply(body: Bytes, content_type: &'static str) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page runs scripts of its own only.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:",
        ),
    );
    response.into_response()
}
