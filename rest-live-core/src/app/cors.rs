//! Cross-origin requests to the HTTP API (CORS, as the Fetch standard has it): what a preflight is
//! answered, and which headers an actual response carries. Only the origins of
//! [`Config::allowed_origins`] are allowed, the list [`App::check_origin`] reads for WebSockets
//! and cookie-authenticated writes: a front-end let in here is let in there too.

use super::{App, origin};
use crate::config::{Config, Cors};
use crate::error::ApiError;

/// A response header: its name and its value.
pub type Header = (&'static str, String);

/// Response headers the API sends that a page may read besides the CORS-safelisted ones.
const EXPOSED: &str = "Allow, Location, Retry-After";

/// What CORS makes of a request to the HTTP API ([`App::cross_origin`]).
#[derive(Debug)]
pub enum CrossOrigin {
    /// A preflight from an allowed origin: answer 204 with these headers, and nothing else.
    Preflight(Vec<Header>),
    /// A preflight from an origin that is not allowed (`null` included): answer this error
    /// (403) without any CORS header, and nothing else.
    Refused(ApiError),
    /// Not a preflight: handle the request as usual and add these headers to its answer, whatever
    /// it is (an error included). None while [`Config::cors`] is off.
    Request(Vec<Header>),
}

impl App {
    /// What CORS makes of an HTTP API request with this `method`, `Origin` header and
    /// `Access-Control-Request-Method` header (the two make an `OPTIONS` a preflight). While
    /// [`Config::cors`] is off, every request is [`CrossOrigin::Request`] without headers.
    ///
    /// The methods and headers a preflight asks for are not judged here: the answer lists those
    /// [`Cors`] allows, and the browser compares.
    pub fn cross_origin(
        &self,
        method: &str,
        origin: Option<&str>,
        request_method: Option<&str>,
    ) -> CrossOrigin {
        let config = self.config();
        let Some(cors) = &config.cors else {
            return CrossOrigin::Request(Vec::new());
        };
        let preflight =
            method.eq_ignore_ascii_case("OPTIONS") && origin.is_some() && request_method.is_some();
        let allowed = origin.filter(|origin| listed(config, origin));
        match (preflight, allowed) {
            (true, Some(origin)) => {
                let mut headers = allow(cors, origin);
                headers.push(("access-control-allow-methods", cors.methods.join(", ")));
                if !cors.headers.is_empty() {
                    headers.push(("access-control-allow-headers", cors.headers.join(", ")));
                }
                headers.push(("access-control-max-age", cors.max_age.as_secs().to_string()));
                CrossOrigin::Preflight(headers)
            }
            (true, None) => CrossOrigin::Refused(ApiError::OriginNotAllowed),
            (false, Some(origin)) => {
                let mut headers = allow(cors, origin);
                headers.push(("access-control-expose-headers", EXPOSED.to_owned()));
                CrossOrigin::Request(headers)
            }
            // The answer depends on the origin all the same: caches must know.
            (false, None) => CrossOrigin::Request(vec![vary_origin()]),
        }
    }
}

fn vary_origin() -> Header {
    ("vary", "Origin".to_owned())
}

/// Whether `origin` is one of the allowed origins (`null` never is).
fn listed(config: &Config, origin: &str) -> bool {
    let origin = origin.trim();
    origin != "null"
        && config
            .allowed_origins
            .iter()
            .any(|allowed| origin::same(allowed, origin))
}

/// The headers that let `origin` read an answer: the origin itself (as the browser sent it: it
/// compares the strings), `Vary: Origin`, and the credentials flag.
fn allow(cors: &Cors, origin: &str) -> Vec<Header> {
    let mut headers = vec![
        ("access-control-allow-origin", origin.trim().to_owned()),
        vary_origin(),
    ];
    if cors.credentials {
        headers.push(("access-control-allow-credentials", "true".to_owned()));
    }
    headers
}
