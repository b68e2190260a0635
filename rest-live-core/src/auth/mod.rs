//! Who is asking. Every request and every connection carries a [`Principal`]; anonymous is one
//! too. An [`Authenticator`] turns the credential of a request (a bearer token from the
//! `Authorization` header, a cookie, or a `token` query parameter, since browsers cannot set
//! headers on WebSockets) into a principal, for HTTP and WebSocket alike.

mod authenticator;
mod principal;
mod sessions;

pub use authenticator::{Authenticator, BoxFuture, TokenStore};
pub use principal::Principal;
pub(crate) use sessions::Sessions;
