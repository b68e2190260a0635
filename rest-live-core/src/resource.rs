//! The traits `#[resource]` implements on a model struct: its metadata, JSON ⇄ struct with field
//! errors, and its diesel CRUD for each backend. Users implement [`Hooks`]; the rest is generated.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};
use crate::permissions::Permissions;
use crate::store::{AnyConn, Tx};

/// What the runtime knows of one resource, built by the macro from the struct (one source of truth).
#[derive(Debug)]
pub struct ResourceMeta {
    /// Stream name: the WebSocket `stream` and the HTTP path segment.
    pub stream: &'static str,
    /// The model label clients of the django-rest-live format name (`"todolist.Task"`);
    /// `#[resource(label = "…")]`, by default the type's name.
    pub label: &'static str,
    /// The Rust type, for messages (`my_app::models::Task`).
    pub type_name: &'static str,
    /// Where the declaration is, for messages (`src/models.rs:12`).
    pub location: &'static str,
    /// The primary-key field.
    pub pk: &'static str,
    pub fields: &'static [FieldMeta],
    /// Group keys clients may `subscribe` by, in declaration order.
    pub group_keys: &'static [&'static str],
    /// Whether `subscribe_instance` (by pk) is allowed.
    pub instance_subscribable: bool,
}

#[derive(Debug)]
pub struct FieldMeta {
    pub name: &'static str,
    /// The Rust type as written, for documentation (OpenAPI, the inspector).
    pub rust_type: &'static str,
    /// Never taken from input; filled by the database or by hooks.
    pub read_only: bool,
    /// Must be present on create and full update.
    pub required: bool,
    /// May be used as an equality filter on `list`.
    pub filterable: bool,
    /// `None` is a valid value.
    pub nullable: bool,
    pub max_length: Option<usize>,
}

impl ResourceMeta {
    pub fn field(&self, name: &str) -> Option<&'static FieldMeta> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Implemented by `#[resource]`; not meant to be implemented by hand.
pub trait Resource: Hooks + Serialize + Clone + Send + Sync + Sized + 'static {
    type Pk: Serialize + Clone + Send + Sync + 'static;
    /// The resource's policy (`#[resource(permissions = …)]`; [`crate::permissions::AllowAll`]
    /// when none is declared).
    type Policy: Permissions<Self>;
    /// One typed equality filter (`list_id = 1`).
    type Filter: Send + Sync + 'static;

    const META: &'static ResourceMeta;

    fn pk(&self) -> Self::Pk;
    fn parse_pk(value: &Value) -> Result<Self::Pk, String>;
    /// `None` when `field` is not filterable.
    fn parse_filter(field: &str, value: &Value) -> Option<Result<Self::Filter, String>>;
    /// Canonical JSON of a group value given by a client; `None` when `key` is not a group key.
    fn parse_group_value(key: &str, value: &Value) -> Option<Result<String, String>>;
    /// The object's value of every group key, as canonical JSON.
    fn group_values(&self) -> Vec<(&'static str, Value)>;

    /// Builds a new object from `create` data; read-only fields take their defaults.
    fn from_input(data: &Map<String, Value>) -> Result<Self, FieldErrors>;
    /// Applies `update` (`partial == false`: all required fields) or `patch` data; on error nothing changed.
    fn apply_input(&mut self, data: &Map<String, Value>, partial: bool) -> Result<(), FieldErrors>;

    fn db_get(conn: AnyConn<'_>, pk: &Self::Pk) -> diesel::QueryResult<Option<Self>>;
    /// `(count, page)`, ordered by primary key.
    fn db_list(
        conn: AnyConn<'_>,
        filters: &[Self::Filter],
        limit: Option<i64>,
        offset: i64,
    ) -> diesel::QueryResult<(i64, Vec<Self>)>;
    fn db_insert(conn: AnyConn<'_>, row: &Self) -> diesel::QueryResult<Self>;
    fn db_update(conn: AnyConn<'_>, row: &Self) -> diesel::QueryResult<Self>;
    fn db_delete(conn: AnyConn<'_>, pk: &Self::Pk) -> diesel::QueryResult<usize>;
}

/// Life-cycle hooks of a resource. Declare `#[resource(stream = "…", hooks)]` and implement the
/// methods you need; the others do nothing.
///
/// `before_*` run inside the write's transaction: they may change the row, write other resources
/// through `tx` (those writes produce events too), or refuse the write with an error (for example
/// [`FieldErrors`] → 400) so that nothing is written. `after_*` run once the transaction committed.
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
    fn after_save(&self, created: bool) {
        let _ = created;
    }

    /// After the transaction that deleted the row committed.
    fn after_delete(&self) {}
}
