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
use super::tx::Tx;
use super::{Resource, ResourceMeta, as_object, equalities, readable, scope, to_raw};
use crate::auth::Principal;
use crate::error::{ApiError, FieldErrors};
pub use crate::query::parse::Input;
use crate::query::parse::QueryInput;
use crate::query::{Condition, Query, Slice, cursor};
use crate::store::AnyConn;

/// One page of `list`.
#[derive(Serialize)]
struct Page<T> {
    count: i64,
    results: Vec<T>,
    limit: i64,
    offset: i64,
    next: Option<String>,
}

/// Which page of a checked query `list` returns.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// At most this many rows (already bounded by the configuration).
    pub limit: i64,
    /// Skip this many rows, or (an opaque cursor) continue after the row a `next` named.
    pub start: Start,
}

/// Where a page starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// After this many rows.
    Offset(i64),
    /// After the row of a cursor (`next` of the page before).
    After(String),
}

fn invalid_cursor() -> ApiError {
    ApiError::Validation(FieldErrors::single("after", "Invalid cursor."))
}

/// One row of a live query's view: where it sorts and what the subscriber sees of it.
#[derive(Debug, Clone)]
pub struct Ranked {
    /// Canonical JSON of its primary key.
    pub pk: String,
    /// Its position in the query's order (see [`crate::query::position`]).
    pub position: Vec<Value>,
    /// The object as the principal sees it (JSON text).
    pub data: std::sync::Arc<str>,
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

    /// Checks a client's query against the declaration, for `principal` (who cannot filter or
    /// order on a field its presentation hides): 400 with the errors of PROTOCOL §3.
    fn parse_query(&self, principal: &Principal, input: &QueryInput) -> Result<Query, ApiError>;
}

/// The actions of a stream that is a collection of rows.
pub trait Collection: Send + Sync {
    /// One page of a query (checked by [`Binding::parse_query`]), scoped to what `principal`
    /// may read: `{count, results, limit, offset, next}`.
    fn list(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        query: &Query,
        page: &PageRequest,
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
    /// The rows of a checked query that `principal` may read, in the query's order, after
    /// `after` (a position), at most `limit`: the window of a live query and its refills.
    fn ranked(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        query: &Query,
        after: Option<&[Value]>,
        limit: i64,
    ) -> Result<Vec<Ranked>, ApiError>;
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

pub(crate) fn parse_pk<R: Resource>(pk: &Input) -> Result<R::Pk, ApiError> {
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
pub(crate) fn output<R: Resource>(
    principal: &Principal,
    row: &R,
) -> Result<Box<RawValue>, ApiError> {
    if !presents::<R>(principal) {
        return to_raw(row);
    }
    let mut object = as_object(row)?;
    R::Policy::present(principal, &mut object);
    to_raw(&object)
}

/// The scope as conditions; `None` when nothing is in scope.
fn scope_conditions<R: Resource>(
    principal: &Principal,
) -> Result<Option<Vec<Condition>>, ApiError> {
    match scope::<R>(principal) {
        Scope::All => Ok(Some(Vec::new())),
        Scope::Nothing => Ok(None),
        Scope::Where(conditions) => {
            equalities::<R>(conditions.iter().map(|(k, v)| (k.as_str(), v)))
                .map(Some)
                .map_err(|e| {
                    ApiError::internal(format!(
                        "the scope of {} names a field that is not filterable: {e}",
                        R::META.stream
                    ))
                })
        }
    }
}

/// The fields `principal` does not see of `R`'s objects (its presentation removes them): found
/// by presenting an object whose every field is null.
fn hidden_fields<R: Resource>(principal: &Principal) -> Vec<&'static str> {
    if !presents::<R>(principal) {
        return Vec::new();
    }
    let mut object: Map<String, Value> = R::META
        .fields
        .iter()
        .map(|f| (f.name.to_owned(), Value::Null))
        .collect();
    R::Policy::present(principal, &mut object);
    R::META
        .fields
        .iter()
        .filter(|f| !object.contains_key(f.name))
        .map(|f| f.name)
        .collect()
}

/// The position a cursor holds, checked against the query and the fields' types.
fn cursor_position<R: Resource>(query: &Query, cursor: &str) -> Result<Vec<Value>, ApiError> {
    let fingerprint = cursor::fingerprint(R::META, query);
    let terms = crate::query::keyset_terms(&query.ordering, crate::query::pk_index(R::META));
    let values = cursor::decode(cursor, fingerprint, terms.len()).ok_or_else(invalid_cursor)?;
    terms
        .iter()
        .zip(&values)
        .map(|(t, v)| R::canonical_value(t.field, v).map_err(|_| invalid_cursor()))
        .collect()
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
                .filter(|(field, value)| equalities::<R>([(field.as_str(), *value)]).is_err())
                .map(|(field, _)| field.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn parse_query(&self, principal: &Principal, input: &QueryInput) -> Result<Query, ApiError> {
        let hidden = hidden_fields::<R>(principal);
        crate::query::parse::parse(R::META, &hidden, &R::canonical_value, input)
            .map_err(ApiError::Validation)
    }
}

impl<R: Resource> Collection for Bound<R> {
    fn list(
        &self,
        mut conn: AnyConn<'_>,
        principal: &Principal,
        query: &Query,
        page: &PageRequest,
    ) -> Result<Box<RawValue>, ApiError> {
        let after = match &page.start {
            Start::After(c) => Some(cursor_position::<R>(query, c)?),
            Start::Offset(_) => None,
        };
        let Some(scoped) = scope_conditions::<R>(principal)? else {
            return to_raw(&Page::<Box<RawValue>> {
                count: 0,
                results: Vec::new(),
                limit: page.limit,
                offset: match page.start {
                    Start::Offset(o) => o,
                    Start::After(_) => 0,
                },
                next: None,
            });
        };
        let mut full = query.clone();
        full.conditions.extend(scoped);
        let count = R::db_count(conn.reborrow(), &full, None)?;
        // One row more than the page, to know whether there is a next one.
        let (offset, slice) = match &page.start {
            Start::Offset(o) => (
                *o,
                Slice {
                    after: None,
                    limit: Some(page.limit.saturating_add(1)),
                    offset: *o,
                },
            ),
            // The rows at or before the cursor's position are the offset of this page.
            Start::After(_) => (
                R::db_count(conn.reborrow(), &full, after.as_deref())?,
                Slice {
                    after: after.as_deref(),
                    limit: Some(page.limit.saturating_add(1)),
                    offset: 0,
                },
            ),
        };
        let mut rows = R::db_select(conn.reborrow(), &full, slice)?;
        let more = rows.len() as i64 > page.limit;
        rows.truncate(usize::try_from(page.limit).unwrap_or(usize::MAX));
        let next = match rows.last() {
            Some(last) if more => {
                let position = crate::query::position(R::META, &query.ordering, &as_object(last)?);
                Some(cursor::encode(
                    cursor::fingerprint(R::META, query),
                    &position,
                ))
            }
            _ => None,
        };
        let results = rows
            .iter()
            .map(|r| output(principal, r))
            .collect::<Result<Vec<_>, _>>()?;
        to_raw(&Page {
            count,
            results,
            limit: page.limit,
            offset,
            next,
        })
    }

    fn members(
        &self,
        mut conn: AnyConn<'_>,
        principal: &Principal,
        key: &str,
        value: &str,
        limit: i64,
    ) -> Result<(i64, Box<RawValue>), ApiError> {
        let value: Value = serde_json::from_str(value).map_err(ApiError::internal)?;
        let Some(scoped) = scope_conditions::<R>(principal)? else {
            return Ok((0, to_raw(&Vec::<Value>::new())?));
        };
        let mut query = Query {
            conditions: equalities::<R>([(key, &value)]).map_err(ApiError::bad_request)?,
            ordering: Vec::new(),
        };
        query.conditions.extend(scoped);
        let count = R::db_count(conn.reborrow(), &query, None)?;
        let slice = Slice {
            after: None,
            limit: Some(limit),
            offset: 0,
        };
        let rows = R::db_select(conn, &query, slice)?
            .iter()
            .map(|r| output(principal, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((count, to_raw(&rows)?))
    }

    fn ranked(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        query: &Query,
        after: Option<&[Value]>,
        limit: i64,
    ) -> Result<Vec<Ranked>, ApiError> {
        let Some(scoped) = scope_conditions::<R>(principal)? else {
            return Ok(Vec::new());
        };
        let mut full = query.clone();
        full.conditions.extend(scoped);
        let slice = Slice {
            after,
            limit: Some(limit),
            offset: 0,
        };
        R::db_select(conn, &full, slice)?
            .iter()
            .map(|row| {
                let object = as_object(row)?;
                let pk = serde_json::to_string(&row.pk()).map_err(ApiError::internal)?;
                let position = crate::query::position(R::META, &query.ordering, &object);
                Ok(Ranked {
                    pk,
                    position,
                    data: std::sync::Arc::from(output(principal, row)?.get()),
                })
            })
            .collect()
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
