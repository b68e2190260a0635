//! Resources: what `#[resource]` implements on a model struct (its metadata, JSON ⇄ struct with
//! field errors, its diesel CRUD for each backend), the user's [`Hooks`] and [`Permissions`], the
//! write transaction [`Tx`] that runs them and logs every change, and the type-erased
//! [`Binding`] the layers above route requests to.

pub mod action;
pub mod args;
pub mod binding;
pub mod generated;
pub mod permissions;
pub mod tx;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::error::{ApiError, FieldErrors};
use crate::meta::Lookup as LookupKind;
pub use crate::meta::{FieldMeta, Kind, Lookup, ResourceMeta};
use crate::query::{Condition, Fetched, Operand, Query, Read, Slice, field_index};
use crate::store::AnyConn;
pub use permissions::Permissions;
use permissions::Scope;
use tx::Tx;

/// Implemented by `#[resource]`; not meant to be implemented by hand.
pub trait Resource: Serialize + Clone + Send + Sync + Sized + 'static {
    /// The primary key's type.
    type Pk: Serialize + Clone + Send + Sync + 'static;
    /// The resource's policy (`#[resource(permissions = …)]`; [`permissions::AllowAll`]
    /// when none is declared).
    type Policy: Permissions<Self>;

    /// What was declared: stream, fields, group keys.
    const META: &'static ResourceMeta;
    /// The SQL table (`#[diesel(table_name = …)]`), for messages.
    const TABLE: &'static str;

    /// The object's primary key.
    fn pk(&self) -> Self::Pk;
    /// A primary key given by a client; the error says what is wrong.
    fn parse_pk(value: &Value) -> Result<Self::Pk, String>;
    /// A client's value for field number `field` (of [`ResourceMeta::fields`]) as canonical
    /// JSON of the field's type (the type inside an `Option`); the error says what is wrong.
    fn canonical_value(field: usize, value: &Value) -> Result<Value, String>;
    /// Canonical JSON of a group value given by a client; `None` when `key` is not a group key.
    fn parse_group_value(key: &str, value: &Value) -> Option<Result<String, String>>;
    /// The object's value of every group key, as canonical JSON.
    fn group_values(&self) -> Vec<(&'static str, Value)>;

    /// Builds a new object from `create` data; read-only fields take their defaults.
    fn from_input(data: &Map<String, Value>) -> Result<Self, FieldErrors>;
    /// Applies `update` (`partial == false`: all required fields) or `patch` data; on error nothing changed.
    fn apply_input(&mut self, data: &Map<String, Value>, partial: bool) -> Result<(), FieldErrors>;

    /// The object with primary key `pk`, if any.
    fn db_get(conn: AnyConn<'_>, pk: &Self::Pk) -> diesel::QueryResult<Option<Self>>;
    /// Runs a checked [`Query`]: its rows (a slice of them, in order) or their count.
    fn db_read(
        conn: AnyConn<'_>,
        query: &Query,
        read: Read<'_>,
    ) -> diesel::QueryResult<Fetched<Self>>;

    /// The rows of `query` in `slice`, in order.
    fn db_select(
        conn: AnyConn<'_>,
        query: &Query,
        slice: Slice<'_>,
    ) -> diesel::QueryResult<Vec<Self>> {
        match Self::db_read(conn, query, Read::Rows(slice))? {
            Fetched::Rows(rows) => Ok(rows),
            Fetched::Count(_) => Err(crate::query::sql::bad_operand()),
        }
    }

    /// How many rows match `query` (with `upto`: at or before that position).
    fn db_count(
        conn: AnyConn<'_>,
        query: &Query,
        upto: Option<&[Value]>,
    ) -> diesel::QueryResult<i64> {
        match Self::db_read(conn, query, Read::Count { upto })? {
            Fetched::Count(n) => Ok(n),
            Fetched::Rows(_) => Err(crate::query::sql::bad_operand()),
        }
    }
    /// Inserts `row`; the stored row, generated fields filled in.
    fn db_insert(conn: AnyConn<'_>, row: &Self) -> diesel::QueryResult<Self>;
    /// Updates the row with `row`'s primary key; the stored row.
    fn db_update(conn: AnyConn<'_>, row: &Self) -> diesel::QueryResult<Self>;
    /// Deletes the row with primary key `pk`; how many rows went (0 or 1).
    fn db_delete(conn: AnyConn<'_>, pk: &Self::Pk) -> diesel::QueryResult<usize>;
    /// Reads no row, but with every column of the struct: fails when the table or a column is
    /// missing (start-up checks it).
    fn db_probe(conn: AnyConn<'_>) -> diesel::QueryResult<()>;

    /// [`Hooks::before_save`] when the type implements [`Hooks`], else nothing: the macro
    /// generates these four and picks the user's impl if there is one.
    fn hook_before_save(&mut self, tx: &mut Tx<'_>, old: Option<&Self>) -> Result<(), ApiError>;
    /// [`Hooks::before_delete`], if implemented.
    fn hook_before_delete(&self, tx: &mut Tx<'_>) -> Result<(), ApiError>;
    /// [`Hooks::after_save`], if implemented.
    fn hook_after_save(&self, created: bool);
    /// [`Hooks::after_delete`], if implemented.
    fn hook_after_delete(&self);
}

/// Life-cycle hooks of a resource: implement the methods you need (`impl Hooks for Task { … }`);
/// the others do nothing. `#[resource]` finds the impl by itself (the `hooks` flag of
/// `#[resource(stream = "…", hooks)]` is optional: it only states, checked, that there is one).
///
/// `before_*` run inside the write's transaction: they may change the row, write other resources
/// through `tx` (those writes produce events too), or refuse the write with an error (for example
/// [`FieldErrors`] → 400) so that nothing is written. `after_*` run once the transaction committed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Hooks`",
    label = "`hooks` in #[resource(…)] says it does",
    note = "write `impl Hooks for {Self} {{ … }}`, or remove `hooks`: #[resource] finds an impl without it"
)]
pub trait Hooks: Sized {
    /// Before a create (`old == None`) or an update/patch (`old` = the stored row).
    fn before_save(&mut self, tx: &mut Tx<'_>, old: Option<&Self>) -> Result<(), ApiError> {
        let _ = (tx, old);
        Ok(())
    }

    /// Before a delete.
    fn before_delete(&self, tx: &mut Tx<'_>) -> Result<(), ApiError> {
        let _ = tx;
        Ok(())
    }

    /// After the transaction that created (`created == true`) or updated the row committed.
    /// On SQLite it runs on the writer thread, before the writes queued after it commit: keep it
    /// short, and spawn slow work (a tokio runtime is entered there).
    fn after_save(&self, created: bool) {
        let _ = created;
    }

    /// After the transaction that deleted the row committed.
    fn after_delete(&self) {}
}

/// Equality conditions of `R` (a policy's scope, a group, [`Tx::filter`]): each field must
/// allow `exact`, each value must be of its type. The error names what is wrong.
pub(crate) fn equalities<'a, R: Resource>(
    pairs: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<Vec<Condition>, String> {
    pairs
        .into_iter()
        .map(|(name, value)| {
            let field = field_index(R::META, name)
                .filter(|&i| R::META.fields[i].allows(LookupKind::Exact))
                .ok_or_else(|| {
                    let names: Vec<&str> = R::META
                        .fields
                        .iter()
                        .filter(|f| f.allows(LookupKind::Exact))
                        .map(|f| f.name)
                        .collect();
                    format!(
                        "cannot filter on {}: filterable fields are {}",
                        Value::from(name),
                        names.join(", ")
                    )
                })?;
            let operand = match value {
                Value::Null if R::META.fields[field].nullable => Value::Null,
                v => R::canonical_value(field, v).map_err(|e| format!("filter {name}: {e}"))?,
            };
            Ok(Condition {
                field,
                lookup: LookupKind::Exact,
                operand: Operand::Value(operand),
            })
        })
        .collect()
}

/// Serializes `value` as a raw JSON value for a reply's `data`.
pub(crate) fn to_raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value).map_err(ApiError::internal)
}

/// What `principal` may read of `R` (everything for the application's own principal).
pub(crate) fn scope<R: Resource>(principal: &Principal) -> Scope {
    if principal.is_system() {
        Scope::All
    } else {
        R::Policy::scope(principal)
    }
}

/// `row` as a JSON object (a resource serializes to one).
pub(crate) fn as_object<R: Resource>(row: &R) -> Result<Map<String, Value>, ApiError> {
    match serde_json::to_value(row).map_err(ApiError::internal)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::internal(
            "a resource must serialize to a JSON object",
        )),
    }
}

/// Whether `principal` may read `row`.
pub(crate) fn readable<R: Resource>(principal: &Principal, row: &R) -> Result<bool, ApiError> {
    Ok(match scope::<R>(principal) {
        Scope::All => true,
        Scope::Nothing => false,
        scope => scope.contains(&as_object(row)?),
    })
}
