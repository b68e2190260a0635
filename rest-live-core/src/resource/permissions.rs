//! Who may do what. A resource's policy ([`Permissions`]) answers three questions for a
//! [`Principal`]: may it perform this action at all (no → 403), which objects may it read (its
//! [`Scope`]: anything else is 404, never 403, and is never sent in an event), and may it change
//! this object. It may also shape what the principal sees of an object ([`Permissions::present`]),
//! which applies everywhere an object goes out: replies, lists, snapshots, events and replays.
//!
//! Events are checked and encoded once per *audience*: principals whose
//! [`Permissions::audience`] keys are equal. By default every distinct principal is its own
//! audience (anonymous principals are all one), so nothing one principal may see reaches another;
//! a policy may share audiences more coarsely by overriding [`Permissions::audience`].
//!
//! The default policy, [`AllowAll`], lets every principal do everything; an app with an
//! [`crate::Authenticator`] refuses anonymous requests unless it allows them explicitly
//! ([`crate::AppBuilder::allow_anonymous`]), so adding authentication later closes the API first.
//! It is also the one policy the runtime knows to scope and present nothing: its rows go out as
//! serialized, and its events are encoded once for everyone.

use serde_json::{Map, Value};

use crate::auth::Principal;

/// An action, for action-level checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `list`.
    List,
    /// `retrieve`.
    Retrieve,
    /// `create`.
    Create,
    /// `update` and `patch`.
    Update,
    /// `delete`.
    Delete,
    /// `subscribe` and `subscribe_instance`.
    Subscribe,
    /// A custom action (`#[action]`), by name: `Action::Custom("complete")`.
    Custom(&'static str),
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

    /// A stable text form (part of the default audience key): equal scopes, equal keys.
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

    /// No longer read: [`Permissions::present`] is always applied.
    #[deprecated(
        note = "`PRESENTS` no longer does anything: present() is always applied; remove this constant"
    )]
    const PRESENTS: bool = false;

    /// No longer read: the runtime knows [`AllowAll`] by its type, and every other policy is
    /// checked per audience.
    #[deprecated(
        note = "`OPEN` no longer does anything: scope() and present() are always applied; remove this constant"
    )]
    const OPEN: bool = false;

    /// Shapes what `principal` sees of an object: remove or add fields. Applied to every object a
    /// principal is sent (HTTP replies and lists, WebSocket replies, snapshots, events and `since`
    /// replays, in every wire format), for every principal but the application's own
    /// ([`Principal::system`]).
    ///
    /// ```
    /// use rest_live_core::{Permissions, Principal};
    /// use serde_json::{Map, Value};
    ///
    /// /// Everyone reads everything, but only admins see `owner`.
    /// struct OwnerForAdmins;
    ///
    /// impl<R> Permissions<R> for OwnerForAdmins {
    ///     fn present(principal: &Principal, object: &mut Map<String, Value>) {
    ///         if !principal.has_role("admin") {
    ///             object.remove("owner");
    ///         }
    ///     }
    /// }
    /// ```
    fn present(principal: &Principal, object: &mut Map<String, Value>) {
        let _ = (principal, object);
    }

    /// The principal's audience key. Events are checked against [`Permissions::scope`], shaped by
    /// [`Permissions::present`] and encoded once per key, and that one encoding goes to every
    /// subscriber whose principal has the key: **equal keys must mean the same scope and the same
    /// presentation**, or one principal receives what only another may see.
    ///
    /// By default, the whole principal ([`Principal::key`]: its id, its roles as a set, whatever
    /// else it carries) with its scope's key: safe for any `scope` and `present`, at the cost of
    /// one check and one encoding per distinct principal subscribed, per event. Anonymous
    /// principals are all alike, so they share one.
    ///
    /// Override it to share encodings between principals that your policy treats alike, e.g. by
    /// role when `present` looks only at roles and `scope` only at the id:
    ///
    /// ```
    /// use rest_live_core::{Permissions, Principal, Scope};
    /// use serde_json::{Map, Value};
    ///
    /// /// Users read what they own, admins everything; only admins see `owner`.
    /// struct OwnerOnly;
    ///
    /// impl<R> Permissions<R> for OwnerOnly {
    ///     fn scope(principal: &Principal) -> Scope {
    ///         if principal.has_role("admin") {
    ///             Scope::All
    ///         } else {
    ///             Scope::field_equals("owner", principal.id.clone())
    ///         }
    ///     }
    ///     fn present(principal: &Principal, object: &mut Map<String, Value>) {
    ///         if !principal.has_role("admin") {
    ///             object.remove("owner");
    ///         }
    ///     }
    ///     /// Admins see the same: one encoding for all of them. Everyone else: one per owner.
    ///     fn audience(principal: &Principal) -> String {
    ///         if principal.has_role("admin") {
    ///             "admin".into()
    ///         } else {
    ///             format!("owner {}", <Self as Permissions<R>>::scope(principal).key())
    ///         }
    ///     }
    /// }
    /// ```
    fn audience(principal: &Principal) -> String {
        format!("{}\n{}", principal.key(), Self::scope(principal).key())
    }
}

/// The default policy: everything is allowed to everyone the app lets in. The runtime recognises
/// it (by type) and skips the per-principal work for it.
pub struct AllowAll;

impl<R> Permissions<R> for AllowAll {}

/// Makes a policy that still sets a retired constant warn where its resource names it: the code
/// `#[resource]` generates calls `SetsPresents::<{ P::PRESENTS }>::check()`, deprecated only when
/// the constant is `true`. (Rust does not warn about overriding a deprecated trait item itself.)
#[doc(hidden)]
pub struct SetsPresents<const SET: bool>;

impl SetsPresents<true> {
    #[deprecated(
        note = "the policy sets `PRESENTS`, which no longer does anything: present() is always applied; remove the constant"
    )]
    pub const fn check() {}
}

impl SetsPresents<false> {
    pub const fn check() {}
}

/// [`SetsPresents`] for `OPEN`.
#[doc(hidden)]
pub struct SetsOpen<const SET: bool>;

impl SetsOpen<true> {
    #[deprecated(
        note = "the policy sets `OPEN`, which no longer does anything: scope() and present() are always applied; remove the constant"
    )]
    pub const fn check() {}
}

impl SetsOpen<false> {
    pub const fn check() {}
}
