//! Custom actions (docs/protocol.md §5): a resource's verbs beside CRUD, declared with
//! `#[actions]` on an `impl` block of the model. Each one is a [`CustomAction`] (generated),
//! type-erased as an [`ActionBinding`] that the registry, HTTP, the WebSocket and the OpenAPI
//! document know it by.
//!
//! An action runs inside one write transaction ([`Tx`]): its writes are in the change log, their
//! events go out after the commit, and an error or a panic rolls everything back. A detail action
//! gets its object loaded through the principal's scope (404 otherwise, like a missing pk), and
//! what it changed on the object is saved as an `update` (hooks and write permissions included)
//! when it returns `Ok`.

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use super::binding::{Binding, Bound, Input, output, parse_pk};
use super::tx::Tx;
use super::{Resource, readable, to_raw};
use crate::error::{ApiError, panic_message};

/// One action as `#[actions]` declares it. Generated, not implemented by hand.
pub trait CustomAction: Send + Sync + 'static {
    /// The resource it is declared on.
    type Resource: Resource;
    /// Its arguments (`()` for none).
    type Args: DeserializeOwned;
    /// What it returns to the client.
    type Output: Serialize + 'static;
    /// The action's name (the method's).
    const NAME: &'static str;
    /// On one object (by pk) rather than on the collection.
    const DETAIL: bool;
    /// Whether it takes no arguments (any `data` is then ignored).
    const NO_ARGS: bool;
    /// The method's doc comment.
    const DESCRIPTION: &'static str;
    /// Where it is declared (`file:line`), for start-up errors.
    const LOCATION: &'static str;

    /// Calls the method: with the loaded object for a detail action.
    fn run(
        tx: &mut Tx<'_>,
        object: Option<&mut Self::Resource>,
        args: Self::Args,
    ) -> Result<Self::Output, ApiError>;

    /// The JSON Schema of the arguments, where their `Deserialize` can be traced.
    fn args_schema() -> Option<Value> {
        None
    }

    /// The JSON Schema of the result, where it can be traced.
    fn output_schema() -> Option<Value> {
        None
    }
}

/// What an action returns, for its description.
#[derive(Debug, Clone, PartialEq)]
pub enum Returns {
    /// One object of its resource (presented as for the principal).
    Object,
    /// A list of objects of its resource.
    Objects,
    /// Anything else, with its schema where it is known.
    Value(Option<Value>),
}

/// A registered action, type-erased.
pub trait ActionBinding: Send + Sync + 'static {
    fn resource(&self) -> &'static dyn Binding;
    fn name(&self) -> &'static str;
    fn detail(&self) -> bool;
    fn description(&self) -> &'static str;
    fn location(&self) -> &'static str;
    /// The JSON Schema of the arguments: `None` for an action without arguments, a free object
    /// where they cannot be traced.
    fn args_schema(&self) -> Option<Value>;
    fn returns(&self) -> Returns;
    /// Runs the action in `tx` (the caller commits it): 200's body, or the error.
    fn run(
        &self,
        tx: &mut Tx<'_>,
        pk: Option<&Input>,
        args: &Value,
    ) -> Result<Box<RawValue>, ApiError>;
}

/// The `ActionBinding` of action `A`.
pub struct ActionBound<A>(PhantomData<fn() -> A>);

impl<A> ActionBound<A> {
    /// The one value (it holds nothing).
    pub const INSTANCE: Self = ActionBound(PhantomData);
}

/// Submitted by `#[actions]`, one per action.
pub struct ActionRegistration {
    /// The action.
    pub action: &'static dyn ActionBinding,
}

inventory::collect!(ActionRegistration);

fn panicked(name: &str, payload: Box<dyn Any + Send>) -> ApiError {
    ApiError::internal(format!(
        "action {name:?} panicked: {}",
        panic_message(payload.as_ref())
    ))
}

fn same_pk<R: Resource>(a: &R, b: &R) -> bool {
    matches!(
        (serde_json::to_value(a.pk()), serde_json::to_value(b.pk())),
        (Ok(x), Ok(y)) if x == y
    )
}

impl<A: CustomAction> ActionBound<A> {
    /// The result as the principal may see it: objects of the resource are presented (a field
    /// the principal may not see never leaves through an action); `stored` replaces the object
    /// the action returned when it is the one it changed, so the client sees it as saved.
    fn reply(
        tx: &Tx<'_>,
        out: A::Output,
        stored: Option<&A::Resource>,
    ) -> Result<Box<RawValue>, ApiError> {
        let principal = tx.principal();
        let any: &dyn Any = &out;
        if let Some(object) = any.downcast_ref::<A::Resource>() {
            let object = match stored {
                Some(s) if same_pk::<A::Resource>(s, object) => s,
                _ => object,
            };
            return output(principal, object);
        }
        if let Some(objects) = any.downcast_ref::<Vec<A::Resource>>() {
            let presented = objects
                .iter()
                .map(|o| output(principal, o))
                .collect::<Result<Vec<_>, _>>()?;
            return to_raw(&presented);
        }
        to_raw(&out)
    }
}

impl<A: CustomAction> ActionBinding for ActionBound<A> {
    fn resource(&self) -> &'static dyn Binding {
        &Bound::<A::Resource>::INSTANCE
    }

    fn name(&self) -> &'static str {
        A::NAME
    }

    fn detail(&self) -> bool {
        A::DETAIL
    }

    fn description(&self) -> &'static str {
        A::DESCRIPTION
    }

    fn location(&self) -> &'static str {
        A::LOCATION
    }

    fn args_schema(&self) -> Option<Value> {
        if A::NO_ARGS {
            return None;
        }
        Some(A::args_schema().unwrap_or_else(|| serde_json::json!({"type": "object"})))
    }

    fn returns(&self) -> Returns {
        let out = TypeId::of::<A::Output>();
        if out == TypeId::of::<A::Resource>() {
            Returns::Object
        } else if out == TypeId::of::<Vec<A::Resource>>() {
            Returns::Objects
        } else {
            Returns::Value(A::output_schema())
        }
    }

    fn run(
        &self,
        tx: &mut Tx<'_>,
        pk: Option<&Input>,
        args: &Value,
    ) -> Result<Box<RawValue>, ApiError> {
        let args: A::Args = if A::NO_ARGS {
            super::args::parse(&Value::Null)?
        } else {
            super::args::parse(args)?
        };
        if !A::DETAIL {
            let out = catch_unwind(AssertUnwindSafe(|| A::run(tx, None, args)))
                .map_err(|p| panicked(A::NAME, p))??;
            return Self::reply(tx, out, None);
        }
        let pk = pk.ok_or(ApiError::NotFound)?;
        let pk = parse_pk::<A::Resource>(pk)?;
        let old: A::Resource = tx
            .get_for_update::<A::Resource>(&pk)?
            .ok_or(ApiError::NotFound)?;
        if !readable(tx.principal(), &old)? {
            return Err(ApiError::NotFound);
        }
        let mut object = old.clone();
        let out = catch_unwind(AssertUnwindSafe(|| A::run(tx, Some(&mut object), args)))
            .map_err(|p| panicked(A::NAME, p))??;
        let changed = serde_json::to_value(&object).map_err(ApiError::internal)?
            != serde_json::to_value(&old).map_err(ApiError::internal)?;
        let stored = if changed {
            Some(tx.update(&old, object)?)
        } else {
            None
        };
        Self::reply(tx, out, stored.as_ref())
    }
}
