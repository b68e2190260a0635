//! Where a request's credential comes from: `Authorization: Bearer <token>`, the auth cookie, or a
//! `token` query parameter (browsers cannot set headers on a WebSocket handshake), in that order.

use warp::http::HeaderMap;
use warp::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};

/// The query parameter that carries a token; it is never treated as a filter.
pub const TOKEN_PARAM: &str = "token";

pub fn token(headers: &HeaderMap, query: &str, cookie: &str) -> Option<String> {
    bearer(headers)
        .or_else(|| from_cookie(headers, cookie))
        .or_else(|| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == TOKEN_PARAM)
                .map(|(_, v)| v.into_owned())
        })
        .filter(|t| !t.is_empty())
}

/// Whether the credential [`token`] finds is the cookie (the one a browser sends by itself, so
/// the one a cross-site page could use).
pub fn is_cookie(headers: &HeaderMap, cookie: &str) -> bool {
    bearer(headers).filter(|t| !t.is_empty()).is_none()
        && from_cookie(headers, cookie).is_some_and(|t| !t.is_empty())
}

/// The origin a browser says the request comes from: its `Origin` header or, without one, `null`
/// when `Sec-Fetch-Site` says the request is cross-site. `None`: not known to be a browser's.
pub fn origin(headers: &HeaderMap) -> Option<&str> {
    match headers.get(ORIGIN) {
        Some(origin) => Some(origin.to_str().unwrap_or("null")),
        None => headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"))
            .then_some("null"),
    }
}

/// The request's `Host` header (the server's own origin, as the client reached it).
pub fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(HOST).and_then(|h| h.to_str().ok())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn from_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}
