//! Credentials to principals: an [`Authenticator`] resolves a token (from a bearer header, a
//! cookie or a `token` query parameter) for HTTP and WebSocket alike; [`TokenStore`] is an
//! in-memory one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use super::principal::Principal;

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Resolves a credential (a token) to a principal; `None` means the credential is not valid
/// (→ 401). Configure one with [`crate::AppBuilder::authenticator`].
pub trait Authenticator: Send + Sync + 'static {
    /// The principal a token stands for; `None` when the token is not valid (401).
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Principal>>;
}

/// Any `Fn(&str) -> Option<Principal>` is an authenticator (for checks that need no I/O).
impl<F> Authenticator for F
where
    F: Fn(&str) -> Option<Principal> + Send + Sync + 'static,
{
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Principal>> {
        let principal = self(token);
        Box::pin(async move { principal })
    }
}

/// An in-memory token table: log in by inserting a token, log out by removing it (and
/// [`crate::App::revoke`] the principal's open sockets).
#[derive(Default)]
pub struct TokenStore {
    tokens: RwLock<HashMap<String, Principal>>,
}

impl TokenStore {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Signs `principal` in under `token` (replacing what it stood for before).
    pub fn insert(&self, token: impl Into<String>, principal: Principal) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.into(), principal);
    }

    /// Forgets a token; returns its principal.
    pub fn remove(&self, token: &str) -> Option<Principal> {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
    }

    /// The principal `token` stands for, if any.
    pub fn get(&self, token: &str) -> Option<Principal> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}

impl Authenticator for Arc<TokenStore> {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Principal>> {
        let principal = self.get(token);
        Box::pin(async move { principal })
    }
}
