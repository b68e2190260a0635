//! The type-erased view of a resource that the runtime routes to: JSON in, JSON out, with the
//! resource's policy applied. One generic implementation ([`Bound`]) over the macro-generated
//! [`Resource`] impl serves every struct.
//!
//! A stream answers what every stream can ([`Binding`]: its metadata, its policy, `retrieve`)
//! and, if it is a collection of rows, the rest ([`Collection`]: `list`, group members and the
//! writes). A special stream (the `jobs` stream of job states) implements only the first; the
//! actions it lacks answer 405.

use std::any::TypeId;
use std::marker::PhantomData;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::permissions::{Action, AllowAll, Permissions, Scope};
use super::tx::{FilterValue, Tx, parse_filters};
use super::{Resource, ResourceMeta, to_raw};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::AnyConn;

/// A client-supplied value: JSON (WebSocket, bodies) or text (URL path and query string).
#[derive(Debug, Clone)]
pub enum Input {
    Json(Value),
    Text(String),
}

impl Input {
    fn as_filter(&self) -> FilterValue<'_> {
        match self {
            Input::Json(v) => FilterValue::Json(v),
            Input::Text(t) => FilterValue::Text(t),
        }
    }
}

/// One page of `list`.
#[derive(Serialize)]
struct Page<T> {
    count: i64,
    results: Vec<T>,
    limit: i64,
    offset: i64,
}

/// A stored object as a reply carries it.
pub struct Written {
    /// The primary key as it appears in a URL (`7`, or `abc` for a string key).
    pub pk_path: String,
    pub data: Box<RawValue>,
}

/// Object-safe operations every stream has. Implemented once, generically, by [`Bound`].
pub trait Binding: Send + Sync + 'static {
    fn meta(&self) -> &'static ResourceMeta;
    fn type_id(&self) -> TypeId;
    /// Canonical JSON of a pk (the key of instance subscriptions); 400 if it has the wrong type.
    fn canonical_pk(&self, pk: &Input) -> Result<String, ApiError>;
    /// Canonical JSON of a group value; `None` if `key` is not a group key.
    fn canonical_group(&self, key: &str, value: &Value) -> Option<Result<String, ApiError>>;

    /// Action-level permission.
    fn allows(&self, principal: &Principal, action: Action) -> bool;
    /// Whether the policy may restrict or reshape anything (if not, events skip the checks and
    /// go to everyone as recorded). Only the framework's own policies can say no.
    fn restricted(&self) -> bool;
    /// The audience key of a principal that is not the system (see [`Permissions::audience`]).
    fn audience(&self, principal: &Principal) -> String;
    /// Whether `principal` may read the object.
    fn visible(&self, principal: &Principal, object: &Map<String, Value>) -> bool;
    /// What `principal` sees of the object.
    fn present(&self, principal: &Principal, object: &mut Map<String, Value>);

    fn retrieve(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        pk: &Input,
    ) -> Result<Box<RawValue>, ApiError>;

    /// The rest of the actions, for a stream that is a collection of rows; `None` otherwise.
    fn collection(&self) -> Option<&dyn Collection>;

    /// The SQL table of the application's that holds the stream's objects, if there is one.
    fn table(&self) -> Option<&'static str>;
    /// Reads no row of [`Binding::table`], but with every column the resource maps: fails when
    /// the table or a column is missing (start-up checks it).
    fn probe_table(&self, conn: AnyConn<'_>) -> diesel::QueryResult<()>;
    /// The fields the policy's scope for `principal` names that lists cannot filter by (which
    /// would make every list and group snapshot of that principal fail); start-up checks that
    /// there are none. Empty when the principal may neither list nor subscribe.
    fn unfilterable_scope(&self, principal: &Principal) -> Vec<String>;
}

/// The actions of a stream that is a collection of rows.
pub trait Collection: Send + Sync {
    fn list(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        filters: &[(String, Input)],
        limit: i64,
        offset: i64,
    ) -> Result<Box<RawValue>, ApiError>;
    /// The members of one group (`key` = canonical JSON `value`) the principal may read, in pk
    /// order: their total count and at most `limit` of them as a JSON array.
    fn members(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        key: &str,
        value: &str,
        limit: i64,
    ) -> Result<(i64, Box<RawValue>), ApiError>;
    fn create(&self, tx: &mut Tx<'_>, data: &Map<String, Value>) -> Result<Written, ApiError>;
    fn update(
        &self,
        tx: &mut Tx<'_>,
        pk: &Input,
        data: &Map<String, Value>,
        partial: bool,
    ) -> Result<Written, ApiError>;
    fn delete(&self, tx: &mut Tx<'_>, pk: &Input) -> Result<(), ApiError>;
}

/// The `Binding` of resource `R`; generated code registers `&Bound::<R>::INSTANCE`.
pub struct Bound<R>(PhantomData<fn() -> R>);

impl<R> Bound<R> {
    /// The one value (it holds nothing).
    pub const INSTANCE: Self = Bound(PhantomData);
}

fn parse_pk<R: Resource>(pk: &Input) -> Result<R::Pk, ApiError> {
    let invalid = |e: String| ApiError::bad_request(format!("Invalid pk: {e}"));
    match pk {
        Input::Json(v) => R::parse_pk(v).map_err(invalid),
        Input::Text(t) => R::parse_pk(&Value::String(t.clone())).or_else(|e| {
            crate::json::from_str(t)
                .ok()
                .and_then(|v| R::parse_pk(&v).ok())
                .ok_or_else(|| invalid(e))
        }),
    }
}

fn scope<R: Resource>(principal: &Principal) -> Scope {
    if principal.is_system() {
        Scope::All
    } else {
        R::Policy::scope(principal)
    }
}

fn as_object<R: Resource>(row: &R) -> Result<Map<String, Value>, ApiError> {
    match serde_json::to_value(row).map_err(ApiError::internal)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::internal(
            "a resource must serialize to a JSON object",
        )),
    }
}

/// Whether `principal` may read `row`.
fn readable<R: Resource>(principal: &Principal, row: &R) -> Result<bool, ApiError> {
    Ok(match scope::<R>(principal) {
        Scope::All => true,
        Scope::Nothing => false,
        scope => scope.contains(&as_object(row)?),
    })
}

/// Whether `R`'s policy is the framework's own [`AllowAll`], which scopes and presents nothing:
/// its rows go out serialized straight from the struct, and its events skip the per-audience
/// work. Known by type, so that no setting of a user's policy can claim it.
fn open<R: Resource>() -> bool {
    TypeId::of::<R::Policy>() == TypeId::of::<AllowAll>()
}

/// Whether objects go to `principal` through [`Permissions::present`]: for every principal but
/// the application's own, unless the policy is [`AllowAll`].
fn presents<R: Resource>(principal: &Principal) -> bool {
    !open::<R>() && !principal.is_system()
}

/// `row` as `principal` sees it, or `None` when it may not read it: [`readable`] then [`output`],
/// turning the row into a map at most once.
fn view<R: Resource>(principal: &Principal, row: &R) -> Result<Option<Box<RawValue>>, ApiError> {
    if !presents::<R>(principal) {
        return to_raw(row).map(Some);
    }
    let scope = R::Policy::scope(principal);
    if scope == Scope::Nothing {
        return Ok(None);
    }
    let mut object = as_object(row)?;
    if !scope.contains(&object) {
        return Ok(None);
    }
    R::Policy::present(principal, &mut object);
    to_raw(&object).map(Some)
}

/// `row` as `principal` sees it, as JSON. Serialized straight from the struct when nothing is
/// presented (see [`presents`]); otherwise as a map, through [`Permissions::present`].
fn output<R: Resource>(principal: &Principal, row: &R) -> Result<Box<RawValue>, ApiError> {
    if !presents::<R>(principal) {
        return to_raw(row);
    }
    let mut object = as_object(row)?;
    R::Policy::present(principal, &mut object);
    to_raw(&object)
}

/// The scope as filters for a query; `None` when nothing is in scope.
fn scope_filters<R: Resource>(principal: &Principal) -> Result<Option<Vec<R::Filter>>, ApiError> {
    match scope::<R>(principal) {
        Scope::All => Ok(Some(Vec::new())),
        Scope::Nothing => Ok(None),
        Scope::Where(conditions) => parse_filters::<R>(
            conditions
                .iter()
                .map(|(k, v)| (k.as_str(), FilterValue::Json(v))),
        )
        .map(Some)
        .map_err(|e| {
            ApiError::internal(format!(
                "the scope of {} names a field that is not filterable: {e}",
                R::META.stream
            ))
        }),
    }
}

fn written<R: Resource>(principal: &Principal, row: &R) -> Result<Written, ApiError> {
    let pk_path = match serde_json::to_value(row.pk()).map_err(ApiError::internal)? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(Written {
        pk_path,
        data: output(principal, row)?,
    })
}

impl<R: Resource> Binding for Bound<R> {
    fn meta(&self) -> &'static ResourceMeta {
        R::META
    }

    fn type_id(&self) -> TypeId {
        TypeId::of::<R>()
    }

    fn canonical_pk(&self, pk: &Input) -> Result<String, ApiError> {
        let pk = parse_pk::<R>(pk)?;
        serde_json::to_string(&pk).map_err(ApiError::internal)
    }

    fn canonical_group(&self, key: &str, value: &Value) -> Option<Result<String, ApiError>> {
        R::parse_group_value(key, value).map(|r| {
            r.map_err(|e| ApiError::bad_request(format!("Invalid value for group key {key}: {e}")))
        })
    }

    fn allows(&self, principal: &Principal, action: Action) -> bool {
        principal.is_system() || R::Policy::allows(principal, action)
    }

    fn restricted(&self) -> bool {
        !open::<R>()
    }

    fn audience(&self, principal: &Principal) -> String {
        R::Policy::audience(principal)
    }

    fn visible(&self, principal: &Principal, object: &Map<String, Value>) -> bool {
        scope::<R>(principal).contains(object)
    }

    fn present(&self, principal: &Principal, object: &mut Map<String, Value>) {
        if presents::<R>(principal) {
            R::Policy::present(principal, object);
        }
    }

    fn retrieve(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        pk: &Input,
    ) -> Result<Box<RawValue>, ApiError> {
        let pk = parse_pk::<R>(pk)?;
        let row = R::db_get(conn, &pk)?.ok_or(ApiError::NotFound)?;
        view(principal, &row)?.ok_or(ApiError::NotFound)
    }

    fn collection(&self) -> Option<&dyn Collection> {
        Some(self)
    }

    fn table(&self) -> Option<&'static str> {
        Some(R::TABLE)
    }

    fn probe_table(&self, conn: AnyConn<'_>) -> diesel::QueryResult<()> {
        R::db_probe(conn)
    }

    fn unfilterable_scope(&self, principal: &Principal) -> Vec<String> {
        let reads = [Action::List, Action::Subscribe]
            .into_iter()
            .any(|action| self.allows(principal, action));
        match scope::<R>(principal) {
            Scope::Where(conditions) if reads => conditions
                .iter()
                .filter(|(field, value)| R::parse_filter(field, value).is_none())
                .map(|(field, _)| field.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl<R: Resource> Collection for Bound<R> {
    fn list(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        filters: &[(String, Input)],
        limit: i64,
        offset: i64,
    ) -> Result<Box<RawValue>, ApiError> {
        let mut filters =
            parse_filters::<R>(filters.iter().map(|(k, v)| (k.as_str(), v.as_filter())))?;
        let (count, rows) = match scope_filters::<R>(principal)? {
            None => (0, Vec::new()),
            Some(scoped) => {
                filters.extend(scoped);
                R::db_list(conn, &filters, Some(limit), offset)?
            }
        };
        let results = rows
            .iter()
            .map(|r| output(principal, r))
            .collect::<Result<Vec<_>, _>>()?;
        to_raw(&Page {
            count,
            results,
            limit,
            offset,
        })
    }

    fn members(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        key: &str,
        value: &str,
        limit: i64,
    ) -> Result<(i64, Box<RawValue>), ApiError> {
        let value: Value = serde_json::from_str(value).map_err(ApiError::internal)?;
        let mut filters = parse_filters::<R>(std::iter::once((key, FilterValue::Json(&value))))?;
        let Some(scoped) = scope_filters::<R>(principal)? else {
            return Ok((0, to_raw(&Vec::<Value>::new())?));
        };
        filters.extend(scoped);
        let (count, rows) = R::db_list(conn, &filters, Some(limit), 0)?;
        let rows = rows
            .iter()
            .map(|r| output(principal, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((count, to_raw(&rows)?))
    }

    fn create(&self, tx: &mut Tx<'_>, data: &Map<String, Value>) -> Result<Written, ApiError> {
        let row = R::from_input(data)?;
        let stored = tx.create(row)?;
        written(tx.principal(), &stored)
    }

    fn update(
        &self,
        tx: &mut Tx<'_>,
        pk: &Input,
        data: &Map<String, Value>,
        partial: bool,
    ) -> Result<Written, ApiError> {
        let pk = parse_pk::<R>(pk)?;
        let old: R = tx.get_for_update::<R>(&pk)?.ok_or(ApiError::NotFound)?;
        if !readable(tx.principal(), &old)? {
            return Err(ApiError::NotFound);
        }
        let mut new = old.clone();
        new.apply_input(data, partial)?;
        let stored = tx.update(&old, new)?;
        written(tx.principal(), &stored)
    }

    fn delete(&self, tx: &mut Tx<'_>, pk: &Input) -> Result<(), ApiError> {
        let pk = parse_pk::<R>(pk)?;
        let row: R = tx.get_for_update::<R>(&pk)?.ok_or(ApiError::NotFound)?;
        if !readable(tx.principal(), &row)? {
            return Err(ApiError::NotFound);
        }
        tx.delete(row)
    }
}
