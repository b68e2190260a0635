//! The HTTP API: one parametric filter below the prefix, whatever the resources; the body is read
//! with a size limit before it is handed to the core. CORS is decided before anything else (a
//! preflight is answered at once) and its headers go on every answer.

use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use rest_live_core::transport::{self, CrossOrigin, HttpRequest, HttpResponse};
use rest_live_core::{ApiError, App};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::{cors, credentials};
use warp::{Filter, Rejection, Reply};

pub fn route(app: App) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    crate::path_prefix(&app.config().http_prefix)
        .and(warp::path::tail())
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(crate::client_addr())
        .and(warp::body::stream())
        .then(
            move |tail: warp::path::Tail,
                  method: Method,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<SocketAddr>,
                  body| {
                let app = app.clone();
                async move {
                    // CORS first: a preflight carries no credential, and is answered here.
                    let cors = match cors::decide(&app, &method, &headers) {
                        CrossOrigin::Preflight(cors) => return cors::preflight(cors),
                        CrossOrigin::Refused(error) => {
                            tracing::info!(
                                origin = credentials::origin(&headers),
                                "CORS preflight from a disallowed origin refused"
                            );
                            return reply(HttpResponse::error(&error));
                        }
                        CrossOrigin::Request(cors) => cors,
                    };
                    let client = client_ip(&app, peer, &headers);
                    let response = handle(&app, tail, method, query, headers, client, body).await;
                    let mut response = reply(response);
                    cors::add(&mut response, cors);
                    response
                }
            },
        )
}

/// The client's address: the peer's, or what a trusted proxy forwarded (decided by the core).
pub(crate) fn client_ip(
    app: &App,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let forwarded = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok());
    app.client_ip(peer.map(|a| a.ip()), forwarded)
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

async fn handle<S, B>(
    app: &App,
    tail: warp::path::Tail,
    method: Method,
    query: String,
    headers: HeaderMap,
    client: Option<IpAddr>,
    body: S,
) -> HttpResponse
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let token = credentials::token(&headers, &query, &app.config().auth_cookie);
    // A browser sends the cookie by itself, whatever page asks: a write it authenticates must
    // come from an allowed origin (CSRF), by the WebSocket handshake's rule.
    let writes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && credentials::is_cookie(&headers, &app.config().auth_cookie) {
        let origin = credentials::origin(&headers);
        if let Err(error) = app.check_origin(origin, credentials::host(&headers)) {
            tracing::info!(
                origin,
                "cookie-authenticated write from a disallowed origin refused"
            );
            return HttpResponse::error(&error);
        }
    }
    let principal = match app.authenticate(token.as_deref()).await {
        Ok(principal) => principal,
        Err(error) => return HttpResponse::error(&error),
    };
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let content_type = header(header::CONTENT_TYPE).map(str::to_owned);
    let length = header(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let limit = app.config().max_body_bytes;
    let body = match read_body(body, length, limit).await {
        Ok(body) => body,
        Err(error) => return HttpResponse::error(&error),
    };
    let segments = tail
        .as_str()
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let request = HttpRequest {
        method: method.as_str().to_ascii_uppercase(),
        segments,
        query: form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k != credentials::TOKEN_PARAM)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        content_type,
        body,
        client,
    };
    transport::handle_http(app, &principal, request).await
}

async fn read_body<S, B>(mut body: S, length: Option<u64>, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if length.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("Cannot read body: {e}")))?;
        if out.len() + chunk.remaining() > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

pub(crate) fn reply(response: HttpResponse) -> warp::reply::Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = match response.body {
        Some(body) => {
            let mut r = warp::reply::Response::new(body.into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        None => warp::reply::Response::new(Bytes::new().into()),
    };
    *reply.status_mut() = status;
    if let Some(location) = response
        .location
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        reply.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(allow) = response.allow {
        reply
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(seconds) = response.retry_after {
        reply
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    reply
}
