//! What the runtime knows of one resource, built by the macro from the struct (one source of
//! truth for field lists, group keys and the pk).

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
    /// The fields, in declaration order.
    pub fields: &'static [FieldMeta],
    /// Group keys clients may `subscribe` by, in declaration order.
    pub group_keys: &'static [&'static str],
    /// Whether `subscribe_instance` (by pk) is allowed.
    pub instance_subscribable: bool,
}

/// One field of a resource, as declared.
#[derive(Debug)]
pub struct FieldMeta {
    /// The field's name on the wire.
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
    /// `#[resource(max_length = N)]`: the most characters a text may have.
    pub max_length: Option<usize>,
}

impl ResourceMeta {
    /// The field named `name`, if there is one.
    pub fn field(&self, name: &str) -> Option<&'static FieldMeta> {
        self.fields.iter().find(|f| f.name == name)
    }
}
