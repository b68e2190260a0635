//! Who is asking. Every request and every connection carries a [`Principal`]; anonymous is one
//! too. An [`Authenticator`] turns the credential of a request (a bearer token from the
//! `Authorization` header, a cookie, or a `token` query parameter, since browsers cannot set
//! headers on WebSockets) into a principal, for HTTP and WebSocket alike.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::connection::{CloseReason, Outbox};

/// The identity a request or a connection acts as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    /// `None` for the anonymous principal.
    pub id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    system: bool,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A signed-in user.
    pub fn user(id: impl Into<String>, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            id: Some(id.into()),
            roles: roles.into_iter().map(Into::into).collect(),
            system: false,
        }
    }

    /// The application itself (server-side code, jobs): no policy applies to it.
    pub fn system() -> Self {
        Self {
            id: None,
            roles: Vec::new(),
            system: true,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.id.is_none() && !self.system
    }

    pub fn is_system(&self) -> bool {
        self.system
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Resolves a credential (a token) to a principal; `None` means the credential is not valid
/// (→ 401). Configure one with [`crate::AppBuilder::authenticator`].
pub trait Authenticator: Send + Sync + 'static {
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
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

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

/// Open sockets by principal, so that [`crate::App::revoke`] can close them.
#[derive(Default)]
pub(crate) struct Sessions {
    by_principal: Mutex<HashMap<String, Vec<Weak<Outbox>>>>,
}

impl Sessions {
    pub fn register(&self, principal: &Principal, outbox: &Arc<Outbox>) {
        let Some(id) = &principal.id else {
            return;
        };
        let mut map = self.by_principal.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(id.clone()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(outbox));
    }

    /// Closes every open socket of `principal_id` with 4003; returns how many.
    pub fn revoke(&self, principal_id: &str) -> usize {
        let list = self
            .by_principal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(principal_id)
            .unwrap_or_default();
        let mut closed = 0;
        for outbox in list.iter().filter_map(Weak::upgrade) {
            outbox.close(CloseReason::REVOKED);
            closed += 1;
        }
        closed
    }
}
