//! The one seam a web-framework adapter needs (`rest-live-warp` is one): what to do with an HTTP
//! request below the API prefix, and how to run a WebSocket connection in a wire format. An
//! adapter authenticates the request ([`crate::App::authenticate`], after
//! [`crate::App::check_origin`] for a WebSocket handshake), then hands requests and frames over
//! and sends back what comes out. Every decision is made behind this seam. The client's address
//! for the throttles is [`crate::App::client_ip`] of the peer's address and its
//! `X-Forwarded-For` lines: an HTTP request carries it in [`HttpRequest::client`]; a 429 carries
//! [`HttpResponse::retry_after`], to send as `Retry-After`. Before any of it, an HTTP request goes
//! through [`crate::App::cross_origin`] (CORS): a preflight is answered there, and the headers it
//! gives go on the answer.
//!
//! A WebSocket connection, in an adapter:
//! 1. `let (mut connection, outgoing) = Connection::open(&app, principal, ENVELOPE);` and
//!    `connection.set_client(app.client_ip(peer, forwarded_for));`
//! 2. a reader task passes each text frame to [`Connection::handle_text`] (binary frames to
//!    [`Connection::handle_binary`]) until it returns false or [`Connection::closing`] changes;
//! 3. a writer task sends what [`Drain::next`] gives ([`Outgoing`] frames and pings), and once
//!    [`Drain::close_signal`] gives a [`CloseReason`], sends that close frame.

use crate::app::App;
pub use crate::app::cors::{CrossOrigin, Header};
use crate::auth::Principal;
pub use crate::connection::Connection;
pub use crate::http::{HttpRequest, HttpResponse};
pub use crate::outbox::{CloseReason, Drain, FULL_BATCH, Frame, Next, Outbox, Outgoing};
pub use crate::protocol::Codec;

/// The protocol's `{stream, payload}` envelope (the main WebSocket endpoint).
pub static ENVELOPE: &dyn Codec = &crate::protocol::envelope::ENVELOPE;

/// django-rest-live's subscription format (its endpoint at [`crate::Config::drl_path`]).
pub static DJANGO_REST_LIVE: &dyn Codec = &crate::protocol::drl::DJANGO_REST_LIVE;

/// Answers one HTTP API request made by `principal`.
pub async fn handle_http(app: &App, principal: &Principal, request: HttpRequest) -> HttpResponse {
    crate::http::handle(app, principal, request).await
}

/// The OpenAPI 3.1 document of the app's HTTP API, as JSON.
pub fn openapi_document(app: &App) -> serde_json::Value {
    crate::describe::openapi::document(app)
}

/// What the browser inspector shows of the app (its `<inspector_path>/meta`), as JSON.
pub fn inspector_metadata(app: &App) -> serde_json::Value {
    crate::describe::inspector::metadata(app)
}
