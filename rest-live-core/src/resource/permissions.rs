//! Who may do what. A resource's policy ([`Permissions`]) answers three questions for a
//! [`Principal`]: may it perform this action at all (no → 403), which objects may it read (its
//! [`Scope`]: anything else is 404, never 403, and is never sent in an event), and may it change
//! this object. It may also shape what the principal sees of an object ([`Permissions::present`]).
//!
//! Events are checked once per *audience*: principals whose [`Permissions::audience`] keys are
//! equal see the same objects, presented the same way, so one check and one encoding serve them all.
//!
//! The default policy, [`AllowAll`], lets every principal do everything; an app with an
//! [`crate::Authenticator`] refuses anonymous requests unless it allows them explicitly
//! ([`crate::AppBuilder::allow_anonymous`]), so adding authentication later closes the API first.

use serde_json::{Map, Value};

use crate::auth::Principal;

/// An action, for action-level checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    List,
    Retrieve,
    Create,
    /// `update` and `patch`.
    Update,
    Delete,
    /// `subscribe` and `subscribe_instance`.
    Subscribe,
}

/// The objects a principal may read, as equality conditions on the object's fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Every object.
    All,
    /// No object.
    Nothing,
    /// Objects whose fields equal these values (e.g. `{"owner": "alice"}`). The fields must be
    /// filterable (`#[resource(filter)]`), because lists apply them as filters.
    Where(Map<String, Value>),
}

impl Scope {
    /// Objects whose `field` equals `value`.
    pub fn field_equals(field: &str, value: impl Into<Value>) -> Self {
        let mut map = Map::new();
        map.insert(field.to_owned(), value.into());
        Scope::Where(map)
    }

    /// Whether the object (as JSON) is in scope.
    pub fn contains(&self, object: &Map<String, Value>) -> bool {
        match self {
            Scope::All => true,
            Scope::Nothing => false,
            Scope::Where(conditions) => conditions
                .iter()
                .all(|(k, v)| object.get(k).unwrap_or(&Value::Null) == v),
        }
    }

    /// A stable text form, the default audience key.
    pub fn key(&self) -> String {
        match self {
            Scope::All => "*".into(),
            Scope::Nothing => "-".into(),
            Scope::Where(conditions) => Value::Object(conditions.clone()).to_string(),
        }
    }
}

/// A resource's policy. Implement the methods you need; declare it with
/// `#[resource(stream = "…", permissions = MyPolicy)]` (a type implementing `Permissions<R>`), or
/// with the bare `permissions` flag to implement it on the resource type itself.
///
/// ```
/// use rest_live_core::{Action, Permissions, Principal, Scope};
///
/// /// Signed-in users read and write only what they own.
/// struct OwnerOnly;
///
/// impl<R> Permissions<R> for OwnerOnly {
///     fn allows(principal: &Principal, _action: Action) -> bool {
///         !principal.is_anonymous()
///     }
///     fn scope(principal: &Principal) -> Scope {
///         Scope::field_equals("owner", principal.id.clone())
///     }
/// }
/// ```
pub trait Permissions<R>: 'static {
    /// Action-level: may `principal` perform `action` on this resource at all? (No → 403.)
    fn allows(principal: &Principal, action: Action) -> bool {
        let _ = (principal, action);
        true
    }

    /// The objects `principal` may read: lists, retrieves, snapshots, subscriptions and events
    /// see only these. Objects outside answer 404, exactly like missing ones.
    fn scope(principal: &Principal) -> Scope {
        let _ = principal;
        Scope::All
    }

    /// Object-level: may `principal` change `object` (the stored object for update and delete,
    /// the new one for create, after its `before_save` hook)? By default: if it may read it.
    /// Refusing an object the principal can read is 403; one it cannot read was already 404.
    fn can_write(principal: &Principal, object: &Map<String, Value>, action: Action) -> bool {
        let _ = action;
        Self::scope(principal).contains(object)
    }

    /// Whether [`Permissions::present`] changes anything (lets the runtime skip it).
    const PRESENTS: bool = false;

    /// Whether every principal reads everything (lets events skip the per-audience checks).
    /// Only [`AllowAll`] says so; leave it `false` in your own policies.
    const OPEN: bool = false;

    /// Shapes what `principal` sees of an object in replies and events: remove or add fields.
    fn present(principal: &Principal, object: &mut Map<String, Value>) {
        let _ = (principal, object);
    }

    /// Principals with equal keys form one audience: they must have the same scope and be
    /// presented objects the same way. By default, the scope's key.
    fn audience(principal: &Principal) -> String {
        Self::scope(principal).key()
    }
}

/// The default policy: everything is allowed to everyone the app lets in.
pub struct AllowAll;

impl<R> Permissions<R> for AllowAll {
    const OPEN: bool = true;
}
