//! CORS on the HTTP API: the core decides ([`App::cross_origin`]); here its headers are read from
//! the request and written onto the answer.

use rest_live_core::App;
use rest_live_core::transport::{CrossOrigin, Header};
use warp::http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use warp::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// What CORS makes of a request with this method and these headers.
pub fn decide(app: &App, method: &warp::http::Method, headers: &HeaderMap) -> CrossOrigin {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    app.cross_origin(
        method.as_str(),
        // An Origin that is not visible ASCII is no origin that could be listed.
        headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("null")),
        header(ACCESS_CONTROL_REQUEST_METHOD),
    )
}

/// The answer to an allowed preflight: 204 with the CORS headers.
pub fn preflight(headers: Vec<Header>) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(bytes::Bytes::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    add(&mut response, headers);
    response
}

/// Adds the CORS headers to an answer (appended: `Vary` may be there already).
pub fn add(response: &mut warp::reply::Response, headers: Vec<Header>) {
    for (name, value) in headers {
        // Values come from the configuration; one that is not a valid header is left out.
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .append(HeaderName::from_static(name), value);
        }
    }
}
